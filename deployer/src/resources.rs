//! What `init` creates, recorded so that a failed `init` and `rm` remove exactly that.
//!
//! A function's tags are the record: `rm` rebuilds the list from them, so it never touches
//! a trigger, API or log group the deployer did not make. Buckets are data: `rm` leaves
//! them; only an `init` that fails right after creating one removes it again.

use std::collections::HashMap;

use aws_sdk_s3::types::NotificationConfiguration;

use crate::aws::Aws;
use crate::error::DeployError;

/// Marks a function as the deployer's.
pub const TAG_MANAGED: &str = "scar-rs:managed-by";
/// `TAG_MANAGED`'s value.
pub const MANAGED_BY: &str = "scar-rs-deployer";
/// The image reference the user gave.
pub const TAG_IMAGE: &str = "scar-rs:image";
/// `BUCKET/ID` of the S3 notification entry init added.
pub const TAG_TRIGGER: &str = "scar-rs:trigger";
/// The REST API init created.
pub const TAG_API: &str = "scar-rs:api";
/// Who may call the function's endpoint (`iam` or `none`).
pub const TAG_ENDPOINT_AUTH: &str = "scar-rs:endpoint-auth";
/// The function's Function URL, when init made one.
pub const TAG_URL: &str = "scar-rs:url";
/// `BUCKET/PREFIX` of the staged image.
pub const TAG_STAGED: &str = "scar-rs:staged";
/// The log group, when init created it (not when it already existed).
pub const TAG_LOG_GROUP: &str = "scar-rs:log-group";

/// The REST API's stage, as SCAR named it.
pub const STAGE: &str = "scar";

/// One thing created for a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The function (its resource policy goes with it).
    Function(String),
    /// Its log group.
    LogGroup(String),
    /// A bucket, or folder placeholders in an existing one.
    Bucket {
        /// The bucket.
        name: String,
        /// Whether init created the bucket itself.
        created: bool,
        /// Placeholder keys init wrote.
        keys: Vec<String>,
    },
    /// One entry of a bucket's notification configuration.
    Trigger {
        /// The bucket.
        bucket: String,
        /// The entry's Id.
        id: String,
    },
    /// A REST API.
    Api(String),
    /// A staged image: every object below a prefix.
    Staged {
        /// The bucket.
        bucket: String,
        /// The prefix, ending in `/`.
        prefix: String,
    },
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Function(name) => write!(f, "function {name}"),
            Self::LogGroup(name) => write!(f, "log group {name}"),
            Self::Bucket {
                name,
                created: true,
                ..
            } => write!(f, "bucket {name}"),
            Self::Bucket { name, keys, .. } => write!(f, "{keys:?} in bucket {name}"),
            Self::Trigger { bucket, id } => write!(f, "trigger {id} on bucket {bucket}"),
            Self::Api(id) => write!(f, "REST API {id}"),
            Self::Staged { bucket, prefix } => write!(f, "staged image s3://{bucket}/{prefix}"),
        }
    }
}

/// The resources recorded in a function's tags, in removal order.
pub fn from_tags(function: &str, tags: &HashMap<String, String>) -> Vec<Resource> {
    let mut resources = Vec::new();
    if let Some(api) = tags.get(TAG_API) {
        resources.push(Resource::Api(api.clone()));
    }
    if let Some((bucket, id)) = tags.get(TAG_TRIGGER).and_then(|t| t.split_once('/')) {
        resources.push(Resource::Trigger {
            bucket: bucket.to_owned(),
            id: id.to_owned(),
        });
    }
    resources.push(Resource::Function(function.to_owned()));
    if let Some((bucket, prefix)) = tags.get(TAG_STAGED).and_then(|t| t.split_once('/')) {
        resources.push(Resource::Staged {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    if let Some(group) = tags.get(TAG_LOG_GROUP) {
        resources.push(Resource::LogGroup(group.clone()));
    }
    resources
}

/// Whether a function's tags mark it as the deployer's.
pub fn is_managed(tags: &HashMap<String, String>) -> bool {
    tags.get(TAG_MANAGED).map(String::as_str) == Some(MANAGED_BY)
}

impl Resource {
    /// Removes it; a resource already gone counts as removed.
    pub async fn remove(&self, aws: &Aws) -> Result<(), DeployError> {
        match self {
            Self::Function(name) => {
                match aws
                    .lambda
                    .delete_function()
                    .function_name(name)
                    .send()
                    .await
                {
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_not_found_exception()) =>
                    {
                        Ok(())
                    }
                    other => other
                        .map(drop)
                        .map_err(DeployError::aws("lambda:DeleteFunction")),
                }
            }
            Self::LogGroup(name) => {
                match aws
                    .logs
                    .delete_log_group()
                    .log_group_name(name)
                    .send()
                    .await
                {
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_not_found_exception()) =>
                    {
                        Ok(())
                    }
                    other => other
                        .map(drop)
                        .map_err(DeployError::aws("logs:DeleteLogGroup")),
                }
            }
            Self::Bucket {
                name,
                created,
                keys,
            } => {
                for key in keys {
                    aws.s3
                        .delete_object()
                        .bucket(name)
                        .key(key)
                        .send()
                        .await
                        .map_err(DeployError::aws("s3:DeleteObject"))?;
                }
                if *created {
                    aws.s3
                        .delete_bucket()
                        .bucket(name)
                        .send()
                        .await
                        .map_err(DeployError::aws("s3:DeleteBucket"))?;
                }
                Ok(())
            }
            Self::Trigger { bucket, id } => remove_trigger(aws, bucket, id).await,
            Self::Api(id) => match aws.apigw.delete_rest_api().rest_api_id(id).send().await {
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_not_found_exception()) =>
                {
                    Ok(())
                }
                other => other
                    .map(drop)
                    .map_err(DeployError::aws("apigateway:DeleteRestApi")),
            },
            Self::Staged { bucket, prefix } => remove_prefix(aws, bucket, prefix).await,
        }
    }
}

/// Removes `resources` in reverse creation order, carrying on past failures.
pub async fn undo(aws: &Aws, resources: &[Resource]) -> Vec<String> {
    let mut failures = Vec::new();
    for resource in resources.iter().rev() {
        if let Err(e) = resource.remove(aws).await {
            failures.push(format!("{resource}: {e}"));
        }
    }
    failures
}

/// Reads a bucket's notification configuration.
pub async fn notifications(
    aws: &Aws,
    bucket: &str,
) -> Result<NotificationConfiguration, DeployError> {
    let current = match aws
        .s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(current) => current,
        // moto answers an empty configuration with a root element S3 never sends; the SDK
        // cannot parse it. An answer with no entry at all is an empty configuration.
        Err(e)
            if e.raw_response().is_some_and(|r| {
                r.status().is_success()
                    && r.body()
                        .bytes()
                        .is_some_and(|b| !String::from_utf8_lossy(b).contains("Configuration>"))
            }) =>
        {
            return Ok(NotificationConfiguration::builder().build());
        }
        Err(e) => return Err(DeployError::aws("s3:GetBucketNotificationConfiguration")(e)),
    };
    Ok(NotificationConfiguration::builder()
        .set_lambda_function_configurations(current.lambda_function_configurations)
        .set_queue_configurations(current.queue_configurations)
        .set_topic_configurations(current.topic_configurations)
        .set_event_bridge_configuration(current.event_bridge_configuration)
        .build())
}

/// Takes one entry out of a bucket's notifications, keeping every other.
async fn remove_trigger(aws: &Aws, bucket: &str, id: &str) -> Result<(), DeployError> {
    let mut config = notifications(aws, bucket).await?;
    let before = config.lambda_function_configurations().len();
    let kept: Vec<_> = config
        .lambda_function_configurations()
        .iter()
        .filter(|c| c.id() != Some(id))
        .cloned()
        .collect();
    if kept.len() == before {
        return Ok(());
    }
    config.lambda_function_configurations = Some(kept);
    aws.s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(config)
        .send()
        .await
        .map_err(DeployError::aws("s3:PutBucketNotificationConfiguration"))?;
    Ok(())
}

/// Every object under `prefix` (key, size), through all pages.
pub async fn objects_under(
    aws: &Aws,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, u64)>, DeployError> {
    let mut pages = aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut objects = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(DeployError::aws("s3:ListObjectsV2"))?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                let size = object.size().unwrap_or_default().max(0) as u64;
                objects.push((key.to_owned(), size));
            }
        }
    }
    Ok(objects)
}

async fn remove_prefix(aws: &Aws, bucket: &str, prefix: &str) -> Result<(), DeployError> {
    for (key, _) in objects_under(aws, bucket, prefix).await? {
        aws.s3
            .delete_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(DeployError::aws("s3:DeleteObject"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_give_back_what_init_created_in_removal_order() {
        let tags: HashMap<String, String> = [
            (TAG_MANAGED, MANAGED_BY),
            (TAG_API, "a1b2"),
            (TAG_TRIGGER, "data/scar-f"),
            (TAG_STAGED, "deploy/scar-rs/images/f/"),
            (TAG_LOG_GROUP, "/aws/lambda/f"),
            (TAG_IMAGE, "grycap/cowsay"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(is_managed(&tags));
        assert_eq!(
            from_tags("f", &tags),
            [
                Resource::Api("a1b2".into()),
                Resource::Trigger {
                    bucket: "data".into(),
                    id: "scar-f".into()
                },
                Resource::Function("f".into()),
                Resource::Staged {
                    bucket: "deploy".into(),
                    prefix: "scar-rs/images/f/".into()
                },
                Resource::LogGroup("/aws/lambda/f".into()),
            ]
        );
        // A function with no tags of ours is only itself, and is not managed.
        assert_eq!(
            from_tags("g", &HashMap::new()),
            [Resource::Function("g".into())]
        );
        assert!(!is_managed(&HashMap::new()));
    }
}
