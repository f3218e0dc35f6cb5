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

/// Calls `url`: POST of `data` when given, else GET. `asynchronous` asks API Gateway to
/// invoke the function as an event (the API maps `X-Amz-Invocation-Type`).
pub async fn call(
    url: &str,
    data: Option<&Path>,
    asynchronous: bool,
) -> Result<Response, DeployError> {
    let fail = |message: String| DeployError::Http {
        url: url.to_owned(),
        message,
    };
    let client = reqwest::Client::new();
    let mut request = match data {
        Some(path) => {
            let body = tokio::fs::read(path).await.map_err(DeployError::io(path))?;
            client
                .post(url)
                .header("content-type", "application/octet-stream")
                .body(body)
        }
        None => client.get(url),
    };
    if asynchronous {
        request = request.header("X-Amz-Invocation-Type", "Event");
    }
    let response = request.send().await.map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
    Ok(Response {
        status,
        body: body.to_vec(),
    })
}
