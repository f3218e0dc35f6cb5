//! The one S3 client of the runtime: staged images are read through it, and the Lambda
//! handler downloads inputs and uploads outputs through it.

/// An S3 client from the standard AWS configuration (the function's role on Lambda). A
/// custom endpoint (a local stand-in) has no per-bucket DNS names, so it gets path style.
pub async fn client() -> aws_sdk_s3::Client {
    let shared = aws_config::load_from_env().await;
    let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
