//! The one S3 client of the runtime: staged images are read through it, and the Lambda
//! handler downloads inputs and uploads outputs through it.

/// Attempts per S3 request: the SDK's standard retries (exponential backoff with jitter on
/// 503 SlowDown, 500, throttling and dropped connections), two more than its default of
/// three, as for a registry: S3 throttles a prefix that a thousand invocations hit at once.
pub const ATTEMPTS: u32 = 5;

/// An S3 client from the standard AWS configuration (the function's role on Lambda). A
/// custom endpoint (a local stand-in) has no per-bucket DNS names, so it gets path style.
pub async fn client() -> aws_sdk_s3::Client {
    let shared = crate::net::aws_config_loader().load().await;
    let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(custom_endpoint)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(ATTEMPTS))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
