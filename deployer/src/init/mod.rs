//! `deployer init`: every input is checked before anything is created (the plan); then the
//! steps run in order, each recording what it made, and a failing step undoes the others.

mod plan;
mod wire;

use std::time::Duration;

use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, EphemeralStorage, FunctionCode, Runtime};

pub(crate) use plan::bucket_exists;
pub use plan::{BucketNeed, Plan, check_name, free_name, name_for_image, plan};
pub(crate) use plan::{
    add_variables, application_log_level, check_memory, check_threshold, check_time,
    container_variable, logging_config, tag_value,
};
pub(crate) use wire::{ensure_bucket, tag};

use crate::aws::Aws;
use crate::error::DeployError;
use crate::layer::architecture;
use crate::resources::{self, Resource};

/// What `init` made, for the user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    /// The function's ARN.
    pub function_arn: String,
    /// The layer attached, or none with --runtime-in-package.
    pub layer: Option<String>,
    /// The image reference the function pulls.
    pub image: String,
    /// `s3://BUCKET/PREFIX` that runs the function on upload.
    pub trigger: Option<String>,
    /// The HTTP endpoint.
    pub endpoint: Option<String>,
}

/// Runs `init`: plans, creates, and undoes on failure.
pub async fn init(aws: &Aws, plan: Plan) -> Result<Created, DeployError> {
    let mut created = Vec::new();
    match create(aws, &plan, &mut created).await {
        Ok(result) => Ok(result),
        Err(cause) => {
            tracing::warn!(error = %cause, steps = created.len(), "init failed; undoing");
            let undo_failures = resources::undo(aws, &created).await;
            Err(DeployError::RolledBack {
                cause: Box::new(cause),
                undo_failures,
            })
        }
    }
}

async fn create(
    aws: &Aws,
    plan: &Plan,
    created: &mut Vec<Resource>,
) -> Result<Created, DeployError> {
    for bucket in &plan.buckets {
        wire::ensure_bucket(aws, bucket, created).await?;
    }
    let mut tags = plan.tags.clone();
    let image = match &plan.staging {
        Some(staging) => {
            let staged = crate::staging::stage(aws, staging).await;
            // Recorded before the result is checked: a half-written prefix is removed too.
            created.push(Resource::Staged {
                bucket: staging.bucket.clone(),
                prefix: staging.prefix.clone(),
            });
            tags.insert(
                resources::TAG_STAGED.into(),
                format!("{}/{}", staging.bucket, staging.prefix),
            );
            staged?
        }
        None => plan.image.clone(),
    };
    if wire::ensure_log_group(aws, &plan.log_group, plan.log_retention_days).await? {
        created.push(Resource::LogGroup(plan.log_group.clone()));
        tags.insert(resources::TAG_LOG_GROUP.into(), plan.log_group.clone());
    }
    let mut variables = plan.variables.clone();
    variables.insert("SCAR_IMAGE".into(), image.clone());
    let function_arn = match &plan.package_bucket {
        None => {
            let code = FunctionCode::builder()
                .zip_file(Blob::new(plan.package.clone()))
                .build();
            create_function(aws, plan, variables, tags, code).await?
        }
        Some(bucket) => {
            // Lambda copies the package when it creates the function: the object is only
            // needed until then, and removed whatever the outcome.
            let key = format!("{PACKAGE_PREFIX}{}.zip", plan.name);
            aws.s3
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(plan.package.clone().into())
                .send()
                .await
                .map_err(DeployError::aws("s3:PutObject (the function package)"))?;
            let code = FunctionCode::builder()
                .s3_bucket(bucket)
                .s3_key(&key)
                .build();
            let created = create_function(aws, plan, variables, tags, code).await;
            if let Err(e) = aws.s3.delete_object().bucket(bucket).key(&key).send().await {
                tracing::warn!(bucket = %bucket, key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "cannot remove the uploaded function package");
            }
            created?
        }
    };
    created.push(Resource::Function(plan.name.clone()));
    aws.lambda
        .wait_until_function_active_v2()
        .function_name(&plan.name)
        .wait(Duration::from_secs(300))
        .await
        .map_err(DeployError::aws("lambda:GetFunction (waiting for Active)"))?;

    let account = function_arn
        .split(':')
        .nth(4)
        .unwrap_or_default()
        .to_owned();
    let trigger = match &plan.event_source {
        Some(bucket) => {
            let id = wire::add_trigger(aws, plan, bucket, &function_arn, &account).await?;
            created.push(Resource::Trigger {
                bucket: bucket.clone(),
                id: id.clone(),
            });
            wire::tag(
                aws,
                &function_arn,
                resources::TAG_TRIGGER,
                &format!("{bucket}/{id}"),
            )
            .await?;
            Some(format!("s3://{bucket}/{}", plan.input_folder))
        }
        None => None,
    };
    let api = match &plan.api_name {
        Some(name) => {
            let api = wire::create_api(aws, name, plan.api_auth, &function_arn, &account, created)
                .await?;
            wire::tag(aws, &function_arn, resources::TAG_API, &api).await?;
            Some(api)
        }
        None => None,
    };
    let url = match plan.url {
        Some(auth) => {
            let url = wire::create_url(aws, &function_arn, auth).await?;
            wire::tag(aws, &function_arn, resources::TAG_URL, &url).await?;
            Some(url)
        }
        None => None,
    };
    // The endpoint shown (the REST API, else the URL) and who may call it, for `invoke`.
    let endpoint_auth = plan.api_name.as_ref().map(|_| plan.api_auth).or(plan.url);
    if let Some(auth) = endpoint_auth {
        let auth = auth.as_str();
        wire::tag(aws, &function_arn, resources::TAG_ENDPOINT_AUTH, auth).await?;
    }
    let endpoint = api.map(|api| crate::endpoint::api_url(aws, &api)).or(url);
    Ok(Created {
        function_arn,
        layer: plan.layer.clone(),
        image,
        trigger,
        endpoint,
    })
}

/// Where a package too large for a request waits in the deployment bucket for Lambda to copy it.
pub const PACKAGE_PREFIX: &str = "scar-rs-packages/";

async fn create_function(
    aws: &Aws,
    plan: &Plan,
    variables: std::collections::BTreeMap<String, String>,
    tags: std::collections::BTreeMap<String, String>,
    code: FunctionCode,
) -> Result<String, DeployError> {
    // A role created moments ago may not be assumable yet (IAM is eventually consistent):
    // Lambda says so explicitly, and a short wait fixes it.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = aws
            .lambda
            .create_function()
            .function_name(&plan.name)
            .runtime(Runtime::Providedal2023)
            .handler("scar")
            .role(&plan.role)
            .description(&plan.description)
            .memory_size(plan.memory)
            .timeout(plan.time)
            .architectures(architecture(plan.arch))
            .ephemeral_storage(
                EphemeralStorage::builder()
                    .size(plan.ephemeral_storage)
                    .build()
                    .map_err(|e| DeployError::Invalid(e.to_string()))?,
            )
            .set_layers(plan.layer.clone().map(|l| vec![l]))
            .environment(
                Environment::builder()
                    .set_variables(Some(variables.clone().into_iter().collect()))
                    .build(),
            )
            .set_tags(Some(tags.clone().into_iter().collect()))
            .set_logging_config(plan.log_level.map(plan::logging_config))
            .code(code.clone())
            .send()
            .await;
        match result {
            Ok(out) => return Ok(out.function_arn().unwrap_or_default().to_owned()),
            Err(e)
                if attempt < 6
                    && e.as_service_error().is_some_and(|s| {
                        s.is_invalid_parameter_value_exception()
                            && s.to_string().contains("cannot be assumed")
                    }) =>
            {
                tracing::info!(attempt, "the role is not assumable yet; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => return Err(DeployError::aws("lambda:CreateFunction")(e)),
        }
    }
}
