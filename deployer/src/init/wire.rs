//! The resources around the function: buckets, its log group, the S3 trigger and the REST API.

use aws_sdk_apigateway::types::IntegrationType;
use aws_sdk_lambda::types::FunctionUrlAuthType;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Event, FilterRule, FilterRuleName,
    LambdaFunctionConfiguration, NotificationConfigurationFilter, S3KeyFilter,
};

use super::Plan;
use super::plan::BucketNeed;
use crate::aws::Aws;
use crate::cli::EndpointAuth;
use crate::error::DeployError;
use crate::resources::{self, Resource, STAGE};

/// Creates the bucket when missing and its folder placeholders when missing.
pub async fn ensure_bucket(
    aws: &Aws,
    need: &BucketNeed,
    created: &mut Vec<Resource>,
) -> Result<(), DeployError> {
    if !need.exists {
        let mut request = aws.s3.create_bucket().bucket(&need.name);
        // us-east-1 is the one region that refuses an explicit constraint.
        if aws.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(aws.region.as_str()))
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(DeployError::aws("s3:CreateBucket"))?;
        created.push(Resource::Bucket {
            name: need.name.clone(),
            created: true,
            keys: Vec::new(),
        });
    }
    let mut keys = Vec::new();
    for folder in &need.folders {
        let present = aws
            .s3
            .head_object()
            .bucket(&need.name)
            .key(folder)
            .send()
            .await
            .is_ok();
        if !present {
            aws.s3
                .put_object()
                .bucket(&need.name)
                .key(folder)
                .send()
                .await
                .map_err(DeployError::aws("s3:PutObject"))?;
            keys.push(folder.clone());
        }
    }
    match created.last_mut() {
        Some(Resource::Bucket {
            name, keys: made, ..
        }) if *name == need.name => made.extend(keys),
        _ if !keys.is_empty() => created.push(Resource::Bucket {
            name: need.name.clone(),
            created: false,
            keys,
        }),
        _ => {}
    }
    Ok(())
}

/// Creates the log group with its retention; `false` when it already existed (Lambda makes
/// it at the first invoke, so an old one may be left from an earlier function).
pub async fn ensure_log_group(aws: &Aws, name: &str, days: i32) -> Result<bool, DeployError> {
    let made = match aws
        .logs
        .create_log_group()
        .log_group_name(name)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            false
        }
        Err(e) => return Err(DeployError::aws("logs:CreateLogGroup")(e)),
    };
    aws.logs
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .map_err(DeployError::aws("logs:PutRetentionPolicy"))?;
    Ok(made)
}

/// Adds one tag to the function.
pub async fn tag(aws: &Aws, arn: &str, key: &str, value: &str) -> Result<(), DeployError> {
    aws.lambda
        .tag_resource()
        .resource(arn)
        .tags(key, value)
        .send()
        .await
        .map_err(DeployError::aws("lambda:TagResource"))?;
    Ok(())
}

/// Lets S3 invoke the function and adds an `ObjectCreated` entry for the input folder to the
/// bucket's notifications, keeping every entry already there. Returns the entry's Id.
pub async fn add_trigger(
    aws: &Aws,
    plan: &Plan,
    bucket: &str,
    function_arn: &str,
    account: &str,
) -> Result<String, DeployError> {
    aws.lambda
        .add_permission()
        .function_name(function_arn)
        .statement_id(format!("scar-s3-{bucket}"))
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .source_arn(format!("arn:aws:s3:::{bucket}"))
        .source_account(account)
        .send()
        .await
        .map_err(DeployError::aws("lambda:AddPermission"))?;
    let id = format!("scar-{}", plan.name);
    let mut config = resources::notifications(aws, bucket).await?;
    let mut entries: Vec<_> = config
        .lambda_function_configurations()
        .iter()
        .filter(|c| c.id() != Some(id.as_str()))
        .cloned()
        .collect();
    let mut filter = S3KeyFilter::builder();
    if !plan.input_folder.is_empty() {
        filter = filter.filter_rules(
            FilterRule::builder()
                .name(FilterRuleName::Prefix)
                .value(&plan.input_folder)
                .build(),
        );
    }
    entries.push(
        LambdaFunctionConfiguration::builder()
            .id(&id)
            .lambda_function_arn(function_arn)
            .events(Event::S3ObjectCreated)
            .filter(
                NotificationConfigurationFilter::builder()
                    .key(filter.build())
                    .build(),
            )
            .build()
            .map_err(|e| DeployError::Invalid(e.to_string()))?,
    );
    config.lambda_function_configurations = Some(entries);
    aws.s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(config)
        .send()
        .await
        .map_err(|e| {
            let overlap = aws_sdk_s3::error::DisplayErrorContext(&e)
                .to_string()
                .contains("overlap");
            if overlap {
                DeployError::Invalid(format!(
                    "bucket {bucket} already sends ObjectCreated events for {:?} elsewhere; pick another --input-folder",
                    plan.input_folder
                ))
            } else {
                DeployError::aws("s3:PutBucketNotificationConfiguration")(e)
            }
        })?;
    Ok(id)
}

/// A REST API whose root and every path (`{proxy+}`) run the function through a Lambda proxy
/// integration, deployed to the `scar` stage. Returns its id.
pub async fn create_api(
    aws: &Aws,
    name: &str,
    auth: EndpointAuth,
    function_arn: &str,
    account: &str,
    created: &mut Vec<Resource>,
) -> Result<String, DeployError> {
    let api = aws
        .apigw
        .create_rest_api()
        .name(name)
        .description(format!("runs {function_arn}"))
        .binary_media_types("*/*")
        .send()
        .await
        .map_err(DeployError::aws("apigateway:CreateRestApi"))?;
    let api_id = api.id().unwrap_or_default().to_owned();
    created.push(Resource::Api(api_id.clone()));
    let resources = aws
        .apigw
        .get_resources()
        .rest_api_id(&api_id)
        .send()
        .await
        .map_err(DeployError::aws("apigateway:GetResources"))?;
    let root = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id())
        .unwrap_or_default()
        .to_owned();
    let proxy = aws
        .apigw
        .create_resource()
        .rest_api_id(&api_id)
        .parent_id(&root)
        .path_part("{proxy+}")
        .send()
        .await
        .map_err(DeployError::aws("apigateway:CreateResource"))?;
    let uri = format!(
        "arn:aws:apigateway:{}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
        aws.region
    );
    for resource in [root.as_str(), proxy.id().unwrap_or_default()] {
        aws.apigw
            .put_method()
            .rest_api_id(&api_id)
            .resource_id(resource)
            .http_method("ANY")
            .authorization_type(match auth {
                EndpointAuth::Iam => "AWS_IAM",
                EndpointAuth::None => "NONE",
            })
            .request_parameters("method.request.header.X-Amz-Invocation-Type", false)
            .send()
            .await
            .map_err(DeployError::aws("apigateway:PutMethod"))?;
        aws.apigw
            .put_integration()
            .rest_api_id(&api_id)
            .resource_id(resource)
            .http_method("ANY")
            .r#type(IntegrationType::AwsProxy)
            .integration_http_method("POST")
            .uri(&uri)
            .request_parameters(
                "integration.request.header.X-Amz-Invocation-Type",
                "method.request.header.X-Amz-Invocation-Type",
            )
            .send()
            .await
            .map_err(DeployError::aws("apigateway:PutIntegration"))?;
    }
    aws.apigw
        .create_deployment()
        .rest_api_id(&api_id)
        .stage_name(STAGE)
        .send()
        .await
        .map_err(DeployError::aws("apigateway:CreateDeployment"))?;
    aws.lambda
        .add_permission()
        .function_name(function_arn)
        .statement_id("scar-apigateway")
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .source_arn(format!(
            "arn:aws:execute-api:{}:{account}:{api_id}/*",
            aws.region
        ))
        .send()
        .await
        .map_err(DeployError::aws("lambda:AddPermission"))?;
    Ok(api_id)
}

/// A Function URL; with `none`, the permission that lets anyone call it. Returns the URL.
/// (Deleting the function deletes its URL, so `rm` needs no step of its own.)
pub async fn create_url(
    aws: &Aws,
    function_arn: &str,
    auth: EndpointAuth,
) -> Result<String, DeployError> {
    let auth_type = match auth {
        EndpointAuth::Iam => FunctionUrlAuthType::AwsIam,
        EndpointAuth::None => FunctionUrlAuthType::None,
    };
    let url = aws
        .lambda
        .create_function_url_config()
        .function_name(function_arn)
        .auth_type(auth_type.clone())
        .send()
        .await
        .map_err(DeployError::aws("lambda:CreateFunctionUrlConfig"))?;
    if auth == EndpointAuth::None {
        aws.lambda
            .add_permission()
            .function_name(function_arn)
            .statement_id("scar-function-url")
            .action("lambda:InvokeFunctionUrl")
            .principal("*")
            .function_url_auth_type(auth_type)
            .send()
            .await
            .map_err(DeployError::aws("lambda:AddPermission"))?;
    }
    Ok(url.function_url().to_owned())
}
