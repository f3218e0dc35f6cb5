//! Proxy responses for API Gateway (REST v1, HTTP API v2), Function URLs and Application
//! Load Balancers.
//!
//! By default the body is the command's output as text: 200 when it exited 0, 504 when the
//! threshold ended it, 500 otherwise. A command chooses its own response by writing files in
//! `$SCAR_HTTP_RESPONSE_DIR`: `body` (any bytes: an image, a PDF), `content-type` (default
//! `application/octet-stream` for such a body), `status` (a number from 100 to 599) and
//! `headers` (`Name: value` lines: a redirect's `Location`, `Set-Cookie`, caching). A body
//! that is not text travels base64-encoded with `isBase64Encoded`, which API Gateway and
//! Function URLs decode for the caller. The exit status and the request id are in headers.
//! A load balancer takes a response of 1 MB at most, API Gateway and Function URLs 6 MB:
//! a chosen body is refused over its format's bound, the output cut to fit it
//! (`Reply::fit`).

use std::path::Path;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::alb::AlbTargetGroupResponse;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::event::HttpFormat;
use super::response::{HttpReply, RunReport};

/// The largest body a command may choose: base64 makes it 4/3 larger, and the response must
/// stay under the format's bound with its headers.
pub fn max_body_bytes(format: HttpFormat) -> usize {
    (format.response_limit() - 64 * 1024) / 4 * 3
}

/// Whether a content type is text that travels as is.
fn is_text(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media.starts_with("text/")
        || media.ends_with("+json")
        || media.ends_with("+xml")
        || matches!(
            media.as_str(),
            "application/json" | "application/xml" | "application/javascript"
        )
}

/// What the command left in the response directory.
struct Chosen {
    /// The body, when it chose one (else the output is the body).
    body: Option<Vec<u8>>,
    content_type: String,
    status: Option<i64>,
    headers: HeaderMap,
}

fn chosen(dir: &Path, format: HttpFormat) -> Result<Option<Chosen>, String> {
    let body = chosen_body(dir, format)?;
    let small = |name: &str| -> Result<Option<String>, String> {
        Ok(read_response_file(dir, name, 1024)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|t| !t.is_empty()))
    };
    let status = match small("status")? {
        Some(text) => match text.parse::<i64>() {
            Ok(code @ 100..=599) => Some(code),
            _ => {
                return Err(format!(
                    "status {text:?} is not an HTTP status from 100 to 599"
                ));
            }
        },
        None => None,
    };
    let headers = chosen_headers(dir)?;
    if body.is_none() && status.is_none() && headers.is_empty() {
        return Ok(None);
    }
    Ok(Some(Chosen {
        body,
        content_type: small("content-type")?
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        status,
        headers,
    }))
}

fn chosen_body(dir: &Path, format: HttpFormat) -> Result<Option<Vec<u8>>, String> {
    let Some((file, len)) = open_response_file(dir, "body")? else {
        return Ok(None);
    };
    let max = max_body_bytes(format);
    if len > max as u64 {
        let through = match format {
            HttpFormat::Alb => "a load balancer (1 MB of JSON, base64)",
            HttpFormat::RestV1 | HttpFormat::V2 => "Lambda (6 MB, base64)",
        };
        return Err(format!(
            "the response body is {len} bytes, more than the {max} an HTTP response can carry through {through}; write it to $SCAR_OUTPUT_DIR and answer with its location (status 303 and a Location line in headers)"
        ));
    }
    read_whole(file, max as u64, &dir.join("body")).map(Some)
}

/// A file the command left in the response directory, opened without following a symlink
/// and without waiting on a FIFO (the command may have left either, or something may still
/// hold the name): `None` when there is none, refused when it is not a regular file.
fn open_response_file(dir: &Path, name: &str) -> Result<Option<(std::fs::File, u64)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!("{} is not a regular file", path.display()));
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok(Some((file, meta.len())))
}

/// The whole of an opened response file, `max` bytes at most.
fn read_whole(file: std::fs::File, max: u64, path: &Path) -> Result<Vec<u8>, String> {
    crate::exec::read_capped_from(file, max)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{} is over {max} bytes", path.display()))
}

/// A small response file, whole: `None` when there is none.
fn read_response_file(dir: &Path, name: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
    match open_response_file(dir, name)? {
        Some((file, _)) => read_whole(file, max, &dir.join(name)).map(Some),
        None => Ok(None),
    }
}

/// Headers the runtime sets itself, and the framing that the caller's side owns.
const NOT_CHOSEN: [&str; 6] = [
    "content-type",
    "x-scar-exit-code",
    "x-scar-timed-out",
    "amz-lambda-request-id",
    "content-length",
    "transfer-encoding",
];

/// The `headers` file: `Name: value` lines (64 KiB at most), a name repeated for several
/// values (`Set-Cookie`); blank lines are skipped, anything else that is not a header is
/// refused by its line.
fn chosen_headers(dir: &Path) -> Result<HeaderMap, String> {
    let Some(text) = read_response_file(dir, "headers", 64 * 1024)? else {
        return Ok(HeaderMap::new());
    };
    let mut headers = HeaderMap::new();
    for (at, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.trim_ascii().is_empty() {
            continue;
        }
        let number = at + 1;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(format!("headers line {number} is not `Name: value`"));
        };
        let given = line[..colon].trim_ascii();
        let name = HeaderName::from_bytes(given).map_err(|_| {
            format!(
                "headers line {number}: {:?} is not a header name",
                String::from_utf8_lossy(given)
            )
        })?;
        if NOT_CHOSEN.contains(&name.as_str()) {
            let instead = if name == "content-type" {
                " (write it in content-type)"
            } else {
                ""
            };
            return Err(format!(
                "headers line {number}: {name} is not the command's to set{instead}"
            ));
        }
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).map_err(|_| {
            format!("headers line {number}: the value of {name} holds a control character")
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The proxy response for `report`, with the body `response_dir` chooses, if any.
pub(crate) fn response(
    format: HttpFormat,
    report: &RunReport,
    request_id: &str,
    response_dir: &Path,
) -> HttpReply {
    let mut status = if report.timed_out {
        504
    } else if report.succeeded() {
        200
    } else {
        500
    };
    let mut content_type = "text/plain; charset=utf-8".to_owned();
    let mut body = Body::Text(report.output.clone());
    let mut base64 = false;
    let mut chosen_headers = HeaderMap::new();
    match chosen(response_dir, format) {
        Ok(Some(chosen)) => {
            if let Some(code) = chosen.status.filter(|_| !report.timed_out) {
                status = code;
            }
            if let Some(bytes) = chosen.body {
                base64 = !is_text(&chosen.content_type);
                body = if base64 {
                    Body::Binary(bytes)
                } else {
                    Body::Text(String::from_utf8_lossy(&bytes).into_owned())
                };
                content_type = chosen.content_type;
            }
            chosen_headers = chosen.headers;
        }
        Ok(None) => {}
        Err(problem) => {
            status = 500;
            body = Body::Text(format!(
                "[scar: the command's HTTP response was refused: {problem}]\n"
            ));
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_str(&content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    let exit = report
        .exit_code
        .map_or_else(|| "null".to_owned(), |c| c.to_string());
    if let Ok(v) = HeaderValue::from_str(&exit) {
        headers.insert("x-scar-exit-code", v);
    }
    headers.insert(
        "x-scar-timed-out",
        HeaderValue::from_static(if report.timed_out { "true" } else { "false" }),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("amz-lambda-request-id", v);
    }
    for (name, value) in &chosen_headers {
        headers.append(name, value.clone());
    }
    match format {
        HttpFormat::RestV1 => {
            let mut r = ApiGatewayProxyResponse::default();
            r.status_code = status;
            // API Gateway merges the two; the multi-value map keeps a repeated name's values.
            r.multi_value_headers = headers.clone();
            r.headers = headers;
            r.body = Some(body);
            r.is_base64_encoded = base64;
            HttpReply::RestV1(r)
        }
        HttpFormat::V2 => {
            let mut r = ApiGatewayV2httpResponse::default();
            r.status_code = status;
            // Payload 2.0 takes cookies apart (its headers join a repeated name by commas,
            // which a Set-Cookie value may hold).
            r.cookies = headers
                .get_all("set-cookie")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            headers.remove("set-cookie");
            r.headers = headers;
            r.body = Some(body);
            r.is_base64_encoded = base64;
            HttpReply::V2(r)
        }
        HttpFormat::Alb => {
            let mut r = AlbTargetGroupResponse::default();
            r.status_code = status;
            r.status_description = Some(status_line(status));
            // A target group reads `multiValueHeaders` when its multi-value setting is on,
            // `headers` when it is off: both carry the same.
            r.multi_value_headers = headers.clone();
            r.headers = headers;
            r.body = Some(body);
            r.is_base64_encoded = base64;
            HttpReply::Alb(r)
        }
    }
}

/// `200 OK`: what a load balancer puts on its status line.
fn status_line(code: i64) -> String {
    let reason = u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .and_then(|c| c.canonical_reason());
    match reason {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(code: i32) -> RunReport {
        RunReport {
            exit_code: Some(code),
            signal: None,
            timed_out: false,
            output: "printed\n".into(),
            output_truncated_bytes: 0,
            exec_seconds: 0.0,
            uploaded: vec![],
            input: None,
        }
    }

    fn json(reply: &HttpReply) -> serde_json::Value {
        serde_json::to_value(reply).unwrap()
    }

    #[test]
    fn the_output_is_the_body_unless_the_command_chooses_one() {
        let dir = tempfile::tempdir().unwrap();
        let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
        assert_eq!(reply["statusCode"], 200);
        assert_eq!(reply["body"], "printed\n");
        assert_eq!(reply["isBase64Encoded"], false);
        let failed = json(&response(HttpFormat::RestV1, &report(2), "r", dir.path()));
        assert_eq!(failed["statusCode"], 500);
        assert_eq!(failed["headers"]["x-scar-exit-code"], "2");
    }

    #[test]
    fn a_binary_body_travels_base64_with_its_type_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe";
        std::fs::write(dir.path().join("body"), png).unwrap();
        std::fs::write(dir.path().join("content-type"), "image/png\n").unwrap();
        std::fs::write(dir.path().join("status"), "201").unwrap();
        for format in [HttpFormat::RestV1, HttpFormat::V2] {
            let reply = json(&response(format, &report(0), "r", dir.path()));
            assert_eq!(reply["statusCode"], 201);
            assert_eq!(reply["isBase64Encoded"], true);
            assert_eq!(reply["headers"]["content-type"], "image/png");
            let body = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                reply["body"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(body, png);
        }
        std::fs::write(dir.path().join("content-type"), "application/json").unwrap();
        std::fs::write(dir.path().join("body"), "{\"a\":1}").unwrap();
        let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
        assert_eq!(
            (reply["isBase64Encoded"].clone(), reply["body"].clone()),
            (false.into(), "{\"a\":1}".into())
        );
    }

    #[test]
    fn a_load_balancer_gets_its_status_line_both_header_maps_and_its_own_bound() {
        let dir = tempfile::tempdir().unwrap();
        let reply = json(&response(HttpFormat::Alb, &report(0), "r", dir.path()));
        assert_eq!(reply["statusCode"], 200);
        assert_eq!(reply["statusDescription"], "200 OK");
        assert_eq!(
            reply["headers"]["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            reply["multiValueHeaders"]["content-type"],
            serde_json::json!(["text/plain; charset=utf-8"])
        );
        assert_eq!(reply["body"], "printed\n");
        let failed = json(&response(HttpFormat::Alb, &report(3), "r", dir.path()));
        assert_eq!(failed["statusDescription"], "500 Internal Server Error");

        // 900 KB fits through API Gateway, not through a load balancer (1 MB of JSON, base64).
        let big = std::fs::File::create(dir.path().join("body")).unwrap();
        big.set_len(900 * 1024).unwrap();
        let through_gateway = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
        assert_eq!(through_gateway["statusCode"], 200);
        let reply = json(&response(HttpFormat::Alb, &report(0), "r", dir.path()));
        assert_eq!(reply["statusCode"], 500);
        assert!(
            reply["body"].as_str().unwrap().contains("load balancer"),
            "{reply}"
        );
        assert_eq!(status_line(299), "299");
    }

    #[test]
    fn chosen_headers_a_redirect_and_cookies_in_each_format() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "302\n").unwrap();
        std::fs::write(
            dir.path().join("headers"),
            "Location: https://example.com/out.png\r\n\nSet-Cookie: a=1; Path=/\nset-cookie: b=2, c\nCache-Control:no-store\n",
        )
        .unwrap();
        for format in [HttpFormat::RestV1, HttpFormat::V2, HttpFormat::Alb] {
            let reply = json(&response(format, &report(0), "r", dir.path()));
            assert_eq!(reply["statusCode"], 302, "{format:?}");
            assert_eq!(
                reply["headers"]["location"], "https://example.com/out.png",
                "{format:?}"
            );
            assert_eq!(reply["headers"]["cache-control"], "no-store", "{format:?}");
            // No body chosen: the output stays the body, as text.
            assert_eq!(reply["body"], "printed\n", "{format:?}");
            assert_eq!(
                reply["headers"]["content-type"], "text/plain; charset=utf-8",
                "{format:?}"
            );
            let cookies = serde_json::json!(["a=1; Path=/", "b=2, c"]);
            match format {
                HttpFormat::V2 => {
                    assert_eq!(reply["cookies"], cookies);
                    assert!(reply["headers"].get("set-cookie").is_none(), "{reply}");
                }
                _ => assert_eq!(reply["multiValueHeaders"]["set-cookie"], cookies, "{reply}"),
            }
        }
    }

    #[test]
    fn headers_that_are_not_the_commands_or_not_headers_are_refused_by_line() {
        let dir = tempfile::tempdir().unwrap();
        for (file, named) in [
            (
                "X-Ok: 1\nno colon here\n",
                "headers line 2 is not `Name: value`",
            ),
            (
                "X-Scar-Exit-Code: 0\n",
                "x-scar-exit-code is not the command's",
            ),
            ("Content-Type: text/html\n", "write it in content-type"),
            ("Content-Length: 3\n", "content-length is not the command's"),
            ("Bad Name: 1\n", "is not a header name"),
            ("X-Bell: \u{7}\n", "holds a control character"),
        ] {
            std::fs::write(dir.path().join("headers"), file).unwrap();
            let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
            assert_eq!(reply["statusCode"], 500, "{file:?}");
            let body = reply["body"].as_str().unwrap();
            assert!(body.contains(named), "{file:?}: {body}");
        }
        let big = std::fs::File::create(dir.path().join("headers")).unwrap();
        big.set_len(64 * 1024 + 1).unwrap();
        let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
        assert!(
            reply["body"].as_str().unwrap().contains("over 65536 bytes"),
            "{reply}"
        );
    }

    #[test]
    fn a_fifo_or_a_symlink_left_in_the_response_directory_is_refused_without_waiting() {
        for name in ["body", "status", "content-type", "headers"] {
            let dir = tempfile::tempdir().unwrap();
            if name == "content-type" {
                // (read only for a chosen body)
                std::fs::write(dir.path().join("body"), "x").unwrap();
            }
            let fifo = std::ffi::CString::new(dir.path().join(name).as_os_str().as_encoded_bytes())
                .unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
            let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
            assert_eq!(reply["statusCode"], 500, "{name}");
            assert!(
                reply["body"]
                    .as_str()
                    .unwrap()
                    .contains("is not a regular file"),
                "{name}: {reply}"
            );
            let dir = tempfile::tempdir().unwrap();
            if name == "content-type" {
                std::fs::write(dir.path().join("body"), "x").unwrap();
            }
            std::os::unix::fs::symlink("/etc/hostname", dir.path().join(name)).unwrap();
            let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
            assert!(
                reply["body"]
                    .as_str()
                    .unwrap()
                    .contains("is not a regular file"),
                "{name}: {reply}"
            );
        }
    }

    #[test]
    fn a_bad_choice_is_a_500_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("body"), "x").unwrap();
        std::fs::write(dir.path().join("status"), "999").unwrap();
        let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
        assert_eq!(reply["statusCode"], 500);
        assert!(reply["body"].as_str().unwrap().contains("999"), "{reply}");
        std::fs::remove_file(dir.path().join("status")).unwrap();
        let big = std::fs::File::create(dir.path().join("body")).unwrap();
        big.set_len(max_body_bytes(HttpFormat::V2) as u64 + 1)
            .unwrap();
        let reply = json(&response(HttpFormat::V2, &report(0), "r", dir.path()));
        assert_eq!(reply["statusCode"], 500);
        assert!(
            reply["body"].as_str().unwrap().contains("SCAR_OUTPUT_DIR"),
            "{reply}"
        );
    }
}
