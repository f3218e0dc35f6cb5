//! `deployer invoke`: a GET, or a POST of a file, to the function's REST API.

use std::path::Path;

use crate::aws::Aws;
use crate::error::DeployError;
use crate::resources::STAGE;

/// The URL SCAR printed: `…/scar/launch` on the function's API. With a custom endpoint
/// (a local stand-in, which has no per-API DNS names) the path form is used instead.
pub fn api_url(aws: &Aws, api: &str) -> String {
    match &aws.endpoint {
        Some(endpoint) => format!(
            "{}/restapis/{api}/{STAGE}/_user_request_/launch",
            endpoint.trim_end_matches('/')
        ),
        None => format!(
            "https://{api}.execute-api.{}.amazonaws.com/{STAGE}/launch",
            aws.region
        ),
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Signs requests for an IAM-authorized endpoint (SigV4, service `execute-api` for a REST
/// API, `lambda` for a Function URL) with the deployer's own credentials.
#[derive(Debug, Clone)]
pub struct Signer {
    credentials: aws_credential_types::Credentials,
    region: String,
}

impl Signer {
    /// The deployer's current credentials.
    pub async fn of(aws: &Aws) -> Result<Self, DeployError> {
        use aws_credential_types::provider::ProvideCredentials as _;
        let provider = aws.credentials.as_ref().ok_or(DeployError::Http {
            url: "(signing)".into(),
            message: "no AWS credentials to sign the request with".into(),
        })?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| DeployError::Http {
                url: "(signing)".into(),
                message: format!("cannot load AWS credentials to sign the request: {e}"),
            })?;
        Ok(Self {
            credentials,
            region: aws.region.clone(),
        })
    }

    /// The headers that sign `method url` with `headers` and `body`.
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: std::time::SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let service = if url.contains(".lambda-url.") {
            "lambda"
        } else {
            "execute-api"
        };
        let identity = self.credentials.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

/// What a query string leaves as it is: RFC 3986's unreserved characters (SigV4 encodes the
/// same way, so the signed and the sent query agree).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `url` with the parameters of `json` (`invoke -p`, an object of strings, numbers or
/// booleans) appended as its query string, sorted by name.
pub fn with_query(url: &str, json: &str) -> Result<String, DeployError> {
    let invalid = |why: String| DeployError::Invalid(format!("-p {json}: {why}"));
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let serde_json::Value::Object(parameters) = value else {
        return Err(invalid(
            "give a JSON object, {\"NAME\": \"value\", …}".into(),
        ));
    };
    let mut query = Vec::with_capacity(parameters.len());
    for (name, value) in &parameters {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(invalid(format!(
                    "the value of {name} is not a string, a number or a boolean"
                )));
            }
        };
        query.push(format!(
            "{}={}",
            percent_encoding::utf8_percent_encode(name, QUERY_VALUE),
            percent_encoding::utf8_percent_encode(&text, QUERY_VALUE)
        ));
    }
    if query.is_empty() {
        return Ok(url.to_owned());
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}{}", query.join("&")))
}

/// Calls `url`: POST of `data` when given, else GET, signed when `signer` is given.
/// `asynchronous` asks API Gateway to invoke the function as an event (the API maps
/// `X-Amz-Invocation-Type`).
pub async fn call(
    url: &str,
    data: Option<&Path>,
    asynchronous: bool,
    signer: Option<&Signer>,
) -> Result<Response, DeployError> {
    let fail = |message: String| DeployError::Http {
        url: url.to_owned(),
        message,
    };
    let body = match data {
        Some(path) => Some(tokio::fs::read(path).await.map_err(DeployError::io(path))?),
        None => None,
    };
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if body.is_some() {
        headers.push(("content-type", "application/octet-stream"));
    }
    if asynchronous {
        headers.push(("x-amz-invocation-type", "Event"));
    }
    let method = if body.is_some() { "POST" } else { "GET" };
    let signed = match signer {
        Some(signer) => signer
            .headers(
                method,
                url,
                &headers,
                body.as_deref().unwrap_or_default(),
                std::time::SystemTime::now(),
            )
            .map_err(&fail)?,
        None => Vec::new(),
    };
    let client = scar_image::http_client_builder()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut request = match body {
        Some(body) => client.post(url).body(body),
        None => client.get(url),
    };
    for (name, value) in headers {
        request = request.header(name, value);
    }
    for (name, value) in signed {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
    Ok(Response {
        status,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_an_encoded_query_string() {
        let url = "https://abc.execute-api.us-east-1.amazonaws.com/scar/launch";
        assert_eq!(
            with_query(
                url,
                r#"{"animal": "tux", "n": 3, "loud": true, "q": "a b&c=d/é"}"#
            )
            .unwrap(),
            format!("{url}?animal=tux&loud=true&n=3&q=a%20b%26c%3Dd%2F%C3%A9")
        );
        assert_eq!(
            with_query(&format!("{url}?x=1"), r#"{"y":"2"}"#).unwrap(),
            format!("{url}?x=1&y=2")
        );
        assert_eq!(with_query(url, "{}").unwrap(), url);
        for (bad, why) in [
            ("[1]", "give a JSON object"),
            ("{\"a\": {\"b\": 1}}", "the value of a is not"),
            ("{\"a\": null}", "the value of a is not"),
            ("animal=tux", "not JSON"),
        ] {
            let error = with_query(url, bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn requests_to_an_iam_endpoint_carry_a_sigv4_signature() {
        let signer = Signer {
            credentials: aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ),
            region: "eu-west-1".into(),
        };
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let headers = signer
            .headers(
                "POST",
                "https://abc.execute-api.eu-west-1.amazonaws.com/scar/launch",
                &[("content-type", "application/octet-stream")],
                b"body",
                when,
            )
            .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let authorization = get("authorization").unwrap();
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/execute-api/aws4_request"
            ),
            "{authorization}"
        );
        assert!(
            authorization.contains("SignedHeaders=content-type;host;x-amz-date"),
            "{authorization}"
        );
        assert_eq!(get("x-amz-date"), Some("20231114T221320Z"));
        let url = signer
            .headers(
                "GET",
                "https://xyz.lambda-url.eu-west-1.on.aws/",
                &[],
                b"",
                when,
            )
            .unwrap();
        assert!(
            url.iter()
                .any(|(k, v)| k == "authorization" && v.contains("/eu-west-1/lambda/aws4_request")),
            "{url:?}"
        );
    }
}
