//! Proxy responses for API Gateway (REST v1, HTTP API v2) and Function URLs.

use super::event::HttpFormat;
use super::response::{HttpReply, RunReport};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{HeaderMap, HeaderValue};

/// 200 when the command exited 0, 504 when it was timed out, 500 otherwise; the body is its
/// output; the exit status and the request id travel in headers.
pub(crate) fn response(format: HttpFormat, report: &RunReport, request_id: &str) -> HttpReply {
    let status = if report.timed_out {
        504
    } else if report.succeeded() {
        200
    } else {
        500
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
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
    let body = Some(Body::Text(report.output.clone()));
    match format {
        HttpFormat::RestV1 => {
            let mut r = ApiGatewayProxyResponse::default();
            r.status_code = status;
            r.headers = headers;
            r.body = body;
            HttpReply::RestV1(r)
        }
        HttpFormat::V2 => {
            let mut r = ApiGatewayV2httpResponse::default();
            r.status_code = status;
            r.headers = headers;
            r.body = body;
            HttpReply::V2(r)
        }
    }
}
