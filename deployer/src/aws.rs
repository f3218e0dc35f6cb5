//! The AWS clients, from the standard credential and region chain.

use aws_config::{Region, SdkConfig};

use crate::error::DeployError;

/// Every client the deployer uses, sharing one configuration.
#[derive(Debug, Clone)]
pub struct Aws {
    /// Lambda.
    pub lambda: aws_sdk_lambda::Client,
    /// S3 (path-style when a custom endpoint is set: local stand-ins have no DNS).
    pub s3: aws_sdk_s3::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// API Gateway (REST).
    pub apigw: aws_sdk_apigateway::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// The region in use.
    pub region: String,
    /// `AWS_ENDPOINT_URL` (or the profile's `endpoint_url`), when set.
    pub endpoint: Option<String>,
    /// The credentials the clients use, to sign requests to IAM-authorized endpoints.
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl Aws {
    /// Loads the standard chain; `region` wins over it when given.
    pub async fn connect(region: Option<&str>) -> Result<Self, DeployError> {
        let mut loader = scar_image::aws_config_loader();
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        let config = loader.load().await;
        Self::from_config(&config)
    }

    /// Clients for a loaded configuration.
    pub fn from_config(config: &SdkConfig) -> Result<Self, DeployError> {
        let region = config
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or(DeployError::NoRegion)?;
        let endpoint = config.endpoint_url().map(str::to_owned);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .force_path_style(endpoint.is_some())
                .build(),
        );
        Ok(Self {
            lambda: aws_sdk_lambda::Client::new(config),
            s3,
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            apigw: aws_sdk_apigateway::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            region,
            endpoint,
            credentials: config.credentials_provider(),
        })
    }
}
