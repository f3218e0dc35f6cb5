//! A panic anywhere in the runtime reaches Lambda as an error before the process ends: the
//! invocation under way gets `Scar.Panic` (or the init, when none is), then the process
//! aborts, so that Lambda starts the next invocation in a clean process rather than one whose
//! state a panic left half-changed. Posted with a plain blocking request from the panic hook:
//! the async runtime may be the thing that panicked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::error::ErrorDocument;

/// `errorType` of a panic.
pub const PANIC_ERROR: &str = "Scar.Panic";

/// Installs the hook for the Runtime API at `api` (`host:port[/prefix]`, or a URL).
pub fn install_panic_reporter(api: &str) {
    let api = api.to_owned();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let message = match (
            info.payload().downcast_ref::<&str>(),
            info.payload().downcast_ref::<String>(),
        ) {
            (Some(text), _) => (*text).to_owned(),
            (None, Some(text)) => text.clone(),
            (None, None) => "a panic".to_owned(),
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let request = crate::logging::current_request();
        if let Err(error) = post(&api, request.as_deref(), &format!("{message}{at}")) {
            eprintln!("bootstrap: cannot report the panic to the Runtime API: {error}");
        }
        std::process::abort();
    }));
}

/// Posts `message` as the error of `request_id` (or of the init).
fn post(api: &str, request_id: Option<&str>, message: &str) -> std::io::Result<u16> {
    let address = api.split_once("://").map_or(api, |(_, rest)| rest);
    let (host, prefix) = address
        .split_once('/')
        .map_or((address, ""), |(host, prefix)| (host, prefix));
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    };
    let path = match request_id {
        Some(id) => format!("{prefix}/2018-06-01/runtime/invocation/{id}/error"),
        None => format!("{prefix}/2018-06-01/runtime/init/error"),
    };
    let body = serde_json::to_string(&ErrorDocument {
        error_type: PANIC_ERROR.to_owned(),
        error_message: message.to_owned(),
    })
    .map_err(std::io::Error::other)?;
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nLambda-Runtime-Function-Error-Type: {PANIC_ERROR}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head)?;
    let status = std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(listener: &std::net::TcpListener) -> String {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&request).contains("}") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        String::from_utf8(request).unwrap()
    }

    #[test]
    fn a_panic_is_posted_as_the_invocations_error_or_the_inits() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let api = format!("http://127.0.0.1:{port}/rt");
        let poster = std::thread::spawn(move || post(&api, Some("req-9"), "boom \"quoted\""));
        let request = receive(&listener);
        assert_eq!(poster.join().unwrap().unwrap(), 202);
        assert!(
            request.starts_with("POST /rt/2018-06-01/runtime/invocation/req-9/error HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Lambda-Runtime-Function-Error-Type: Scar.Panic\r\n"));
        let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
        let document: ErrorDocument = serde_json::from_str(body).unwrap();
        assert_eq!(document.error_type, "Scar.Panic");
        assert_eq!(document.error_message, "boom \"quoted\"");

        let api = format!("127.0.0.1:{port}");
        let poster = std::thread::spawn(move || post(&api, None, "at init"));
        let request = receive(&listener);
        poster.join().unwrap().unwrap();
        assert!(
            request.starts_with("POST /2018-06-01/runtime/init/error "),
            "{request}"
        );
    }
}
