//! Everything `init` checks before it creates anything: a bad flag, a missing role, a taken
//! name or a bucket owned elsewhere stops it with nothing to undo.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_lambda::types::{ApplicationLogLevel, LogFormat, LoggingConfig};
use scar_image::ImageReference;

use crate::aws::Aws;
use crate::cli::{Arch, EndpointAuth, InitArgs, LogLevel};
use crate::error::DeployError;
use crate::package::{self, RuntimeSource};
use crate::resources::{MANAGED_BY, TAG_IMAGE, TAG_MANAGED};
use crate::settings::Settings;
use crate::staging::StagingPlan;

/// A bucket init needs, and whether it exists.
#[derive(Debug, Clone)]
pub struct BucketNeed {
    /// The bucket.
    pub name: String,
    /// It exists and is reachable.
    pub exists: bool,
    /// Folder placeholders to create (SCAR's `input/` and `output/`).
    pub folders: Vec<String>,
}

/// A checked `init`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Function name.
    pub name: String,
    /// The image as the function will pull it (before staging).
    pub image: String,
    /// Role ARN.
    pub role: String,
    /// MB.
    pub memory: i32,
    /// Seconds.
    pub time: i32,
    /// Description.
    pub description: String,
    /// Architecture.
    pub arch: Arch,
    /// MB of /tmp.
    pub ephemeral_storage: i32,
    /// Layer ARN, unless the runtime is in the package.
    pub layer: Option<String>,
    /// The function package.
    pub package: Vec<u8>,
    /// The bucket the package goes through when it is over Lambda's request limit.
    pub package_bucket: Option<String>,
    /// Lambda's application log level (JSON log records), when set.
    pub log_level: Option<LogLevel>,
    /// The function's environment (SCAR_IMAGE is added after staging).
    pub variables: BTreeMap<String, String>,
    /// Tags (more are added as resources are created).
    pub tags: BTreeMap<String, String>,
    /// Buckets to make sure of, in order.
    pub buckets: Vec<BucketNeed>,
    /// The bucket whose uploads run the function.
    pub event_source: Option<String>,
    /// Its input folder.
    pub input_folder: String,
    /// The REST API to create.
    pub api_name: Option<String>,
    /// Who may call it.
    pub api_auth: EndpointAuth,
    /// The Function URL to create, and who may call it.
    pub url: Option<EndpointAuth>,
    /// The image to stage in S3.
    pub staging: Option<StagingPlan>,
    /// `/aws/lambda/NAME`.
    pub log_group: String,
    /// Days.
    pub log_retention_days: i32,
}

fn invalid(message: impl Into<String>) -> DeployError {
    DeployError::Invalid(message.into())
}

/// Lambda's rule for function names.
pub fn check_name(name: &str) -> Result<(), DeployError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "function name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

/// SCAR's name for a function made without `-n`: `scar-` and the image's repository path
/// (no registry host, tag or digest; a layout or archive by its file name), with what Lambda
/// does not accept in a name replaced by `-`, short enough for a numeric suffix.
pub fn name_for_image(image: &str) -> String {
    let path = if let Some(rest) = image
        .strip_prefix("oci:")
        .or_else(|| image.strip_prefix("docker-archive:"))
    {
        let file = rest.split(':').next().unwrap_or(rest).trim_end_matches('/');
        let file = file.rsplit('/').next().unwrap_or(file);
        file.split('.').next().unwrap_or(file).to_owned()
    } else {
        let image = image.split('@').next().unwrap_or(image);
        let mut parts: Vec<&str> = image.split('/').collect();
        if let Some(last) = parts.last_mut() {
            *last = last.split(':').next().unwrap_or(last);
        }
        if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            parts.remove(0);
        }
        parts.join("-")
    };
    let mut name: String = format!("scar-{path}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(60);
    name
}

/// `base`, or `base-1`, `base-2`… the first name no function has (SCAR's numeric suffix).
pub async fn free_name(aws: &Aws, base: &str) -> Result<String, DeployError> {
    for n in 0..100 {
        let name = if n == 0 {
            base.to_owned()
        } else {
            format!("{base}-{n}")
        };
        match aws.lambda.get_function().function_name(&name).send().await {
            Ok(_) => continue,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(name);
            }
            Err(e) => return Err(DeployError::aws("lambda:GetFunction")(e)),
        }
    }
    Err(invalid(format!(
        "{base} and its 99 numbered names are taken: give a name with -n"
    )))
}

fn check_range(
    what: &str,
    value: i32,
    range: std::ops::RangeInclusive<i32>,
) -> Result<(), DeployError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {value} is out of range: Lambda accepts {} to {}",
            range.start(),
            range.end()
        )))
    }
}

fn folder(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// The role's name from its ARN (`arn:aws:iam::ACCOUNT:role/PATH/NAME`).
pub fn role_name(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":role/")?;
    arn.starts_with("arn:")
        .then(|| rest.rsplit('/').next())
        .flatten()
        .filter(|n| !n.is_empty())
}

/// Lambda's memory range, in MB (`init` and `update`).
pub(crate) fn check_memory(mb: i32) -> Result<(), DeployError> {
    check_range("memory (MB)", mb, 128..=10240)
}

/// Lambda's timeout range, in seconds (`init` and `update`).
pub(crate) fn check_time(seconds: i32) -> Result<(), DeployError> {
    check_range("time (s)", seconds, 1..=900)
}

/// The timeout threshold must leave the command some of the function's time.
pub(crate) fn check_threshold(threshold: i64, time: i32) -> Result<(), DeployError> {
    if threshold >= i64::from(time) {
        return Err(invalid(format!(
            "timeout threshold {threshold}s leaves no time to run in a {time}s function"
        )));
    }
    Ok(())
}

/// The function variable that carries container variable `key` (`-e KEY=VALUE`).
pub(crate) fn container_variable(key: &str) -> Result<String, DeployError> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid(format!("-e {key}: not a variable name")));
    }
    Ok(format!("{}{key}", scar_runtime::settings::CONTAINER_PREFIX))
}

/// Adds `-e` (container) and `--function-env` (runtime) variables to a function's
/// environment; a `SCAR_` name the runtime does not read is refused (a typo would be
/// ignored silently otherwise).
pub(crate) fn add_variables(
    variables: &mut BTreeMap<String, String>,
    container: &[(String, String)],
    runtime: &[(String, String)],
) -> Result<(), DeployError> {
    for (key, value) in container {
        variables.insert(container_variable(key)?, value.clone());
    }
    for (key, value) in runtime {
        if key.starts_with("SCAR_") && !scar_runtime::settings::is_known_variable(key) {
            return Err(invalid(format!(
                "--function-env {key}: the runtime has no such setting (the README lists them)"
            )));
        }
        variables.insert(key.clone(), value.clone());
    }
    Ok(())
}

/// Checks the flags, the defaults and AWS's state; creates nothing.
pub async fn plan(
    aws: &Aws,
    settings: &Settings,
    settings_path: &Path,
    args: &InitArgs,
) -> Result<Plan, DeployError> {
    check_name(&args.name)?;
    let memory = args.memory.unwrap_or(settings.lambda.memory);
    check_memory(memory)?;
    let time = args.time.unwrap_or(settings.lambda.time);
    check_time(time)?;
    let threshold = args
        .timeout_threshold
        .unwrap_or(settings.lambda.timeout_threshold);
    check_threshold(i64::from(threshold), time)?;
    let ephemeral_storage = args
        .ephemeral_storage
        .unwrap_or(settings.lambda.ephemeral_storage);
    check_range("ephemeral storage (MB)", ephemeral_storage, 512..=10240)?;
    let arch = args.arch.unwrap_or(settings.lambda.architecture);

    let role = args
        .role
        .clone()
        .or_else(|| settings.role().map(str::to_owned))
        .ok_or_else(|| DeployError::NoRole {
            settings: settings_path.to_path_buf(),
        })?;
    let name = role_name(&role).ok_or_else(|| {
        invalid(format!(
            "{role:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        ))
    })?;

    let (image, staging) = image_and_staging(args, arch)?;
    let script = args
        .script
        .as_ref()
        .map(|p| std::fs::read(p).map_err(DeployError::io(p)))
        .transpose()?;
    let mut variables = BTreeMap::new();
    add_variables(&mut variables, &args.env, &args.function_env)?;
    variables.insert("SCAR_TIMEOUT_THRESHOLD".into(), threshold.to_string());
    if args.fakeroot {
        variables.insert(scar_runtime::settings::FAKEROOT.var.into(), "1".into());
    }
    if script.is_some() {
        variables.insert("SCAR_INIT_SCRIPT".into(), package::INIT_SCRIPT_ENTRY.into());
    }
    if let Some(dir) = &args.extra_payload {
        if !dir.is_dir() {
            return Err(invalid(format!(
                "--extra-payload {}: not a folder",
                dir.display()
            )));
        }
        variables.insert(
            scar_runtime::settings::EXTRA_PAYLOAD.var.into(),
            package::EXTRA_PAYLOAD_ENTRY.into(),
        );
    }
    let (input_folder, output_folder) = (folder(&args.input_folder), folder(&args.output_folder));
    variables.insert("SCAR_INPUT_PREFIX".into(), input_folder.clone());
    variables.insert("SCAR_OUTPUT_PREFIX".into(), output_folder.clone());
    if let Some(bucket) = &args.event_source {
        variables.insert("SCAR_INPUT_BUCKET".into(), bucket.clone());
    }
    if let Some(bucket) = &args.output_bucket {
        variables.insert("SCAR_OUTPUT_BUCKET".into(), bucket.clone());
    }

    let runtime = args
        .runtime_in_package
        .then(|| RuntimeSource::from_flags(&args.files, arch));
    let files = package::FunctionFiles {
        script: script.as_deref(),
        extra_payload: args.extra_payload.as_deref(),
        runtime: runtime.as_ref().map(|r| (r, arch)),
    };
    let package = package::function_zip(files, &image)?;
    package::check_unzipped_size(&package)?;
    // Larger than a request takes: through the deployment bucket, which Lambda copies from.
    let package_bucket = match (&args.deployment_bucket, package.len()) {
        (_, size) if size <= package::DIRECT_UPLOAD_LIMIT => None,
        (Some(bucket), _) => Some(bucket.clone()),
        (None, _) => {
            package::check_upload_size(&package, "function").map_err(|e| {
                invalid(format!(
                    "{e}: give a deployment bucket (-db BUCKET) to send it through S3"
                ))
            })?;
            None
        }
    };

    // What AWS holds: the role, the name, the buckets, the layer.
    match aws.iam.get_role().role_name(name).send().await {
        Ok(_) => {}
        // Users allowed to deploy are not always allowed to read IAM: then Lambda checks
        // the role itself at CreateFunction, before anything else is created.
        Err(e) if e.code() == Some("AccessDenied") => {
            tracing::warn!(role = %role, "cannot read IAM (iam:GetRole denied); Lambda will check the role");
        }
        Err(e) => {
            return Err(DeployError::Role {
                role: role.clone(),
                message: e.message().map_or_else(
                    || aws_sdk_iam::error::DisplayErrorContext(&e).to_string(),
                    str::to_owned,
                ),
            });
        }
    }
    match aws
        .lambda
        .get_function()
        .function_name(&args.name)
        .send()
        .await
    {
        Ok(_) => return Err(DeployError::FunctionExists(args.name.clone())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => return Err(DeployError::aws("lambda:GetFunction")(e)),
    }
    let mut buckets: Vec<BucketNeed> = Vec::new();
    let wanted = [
        (
            &args.event_source,
            vec![input_folder.clone(), output_folder.clone()],
        ),
        (&args.output_bucket, vec![output_folder.clone()]),
        (&args.deployment_bucket, vec![]),
    ];
    for (bucket, folders) in wanted {
        let Some(bucket) = bucket else { continue };
        if let Some(need) = buckets.iter_mut().find(|b| &b.name == bucket) {
            need.folders.extend(folders);
            continue;
        }
        let exists = bucket_exists(aws, bucket).await?;
        buckets.push(BucketNeed {
            name: bucket.clone(),
            exists,
            folders: folders.into_iter().filter(|f| !f.is_empty()).collect(),
        });
    }
    let layer = match (&args.layer, runtime) {
        (_, Some(_)) => None,
        (Some(arn), None) => Some(arn.clone()),
        (None, None) => Some(crate::layer::newest(aws, arch).await?),
    };
    let tags = BTreeMap::from([
        (TAG_MANAGED.to_owned(), MANAGED_BY.to_owned()),
        (TAG_IMAGE.to_owned(), tag_value(&image)),
    ]);
    Ok(Plan {
        name: args.name.clone(),
        image,
        role,
        memory,
        time,
        description: args
            .description
            .clone()
            .unwrap_or_else(|| settings.lambda.description.clone()),
        arch,
        ephemeral_storage,
        layer,
        package,
        package_bucket,
        log_level: args.log_level,
        variables,
        tags,
        buckets,
        event_source: args.event_source.clone(),
        input_folder,
        api_name: args.api_gateway_name.clone(),
        api_auth: args.api_auth,
        url: args.url.then_some(args.url_auth),
        staging: staging.map(|s| s.for_function(&args.name)),
        log_group: format!("/aws/lambda/{}", args.name),
        log_retention_days: settings.cloudwatch.log_retention_days,
    })
}

/// Lambda's name for a log level.
pub(crate) fn application_log_level(level: LogLevel) -> ApplicationLogLevel {
    match level {
        LogLevel::Trace => ApplicationLogLevel::Trace,
        LogLevel::Debug => ApplicationLogLevel::Debug,
        LogLevel::Info => ApplicationLogLevel::Info,
        LogLevel::Warn => ApplicationLogLevel::Warn,
        LogLevel::Error => ApplicationLogLevel::Error,
        LogLevel::Fatal => ApplicationLogLevel::Fatal,
    }
}

/// Application log levels apply to JSON log records only: setting one sets that format.
pub(crate) fn logging_config(level: LogLevel) -> LoggingConfig {
    LoggingConfig::builder()
        .log_format(LogFormat::Json)
        .application_log_level(application_log_level(level))
        .build()
}

/// Tag values allow a limited alphabet and 256 characters.
pub(crate) fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

fn image_and_staging(
    args: &InitArgs,
    arch: Arch,
) -> Result<(String, Option<crate::staging::StagingSource>), DeployError> {
    use crate::staging::StagingSource;
    let reference = match (&args.image, &args.image_file) {
        (_, Some(file)) => {
            if !file.is_file() {
                return Err(invalid(format!("-if {}: no such file", file.display())));
            }
            ImageReference::DockerArchive { file: file.clone() }
        }
        (Some(image), None) => {
            ImageReference::from_str(image).map_err(|e| invalid(e.to_string()))?
        }
        (None, None) => return Err(invalid("give an image with -i IMAGE or -if FILE")),
    };
    let local = reference.is_local();
    match (&args.deployment_bucket, local) {
        (Some(bucket), _) => Ok((
            reference.to_string(),
            Some(StagingSource {
                reference,
                bucket: bucket.clone(),
                arch,
            }),
        )),
        (None, true) => Err(invalid(format!(
            "{reference} is a local image: Lambda cannot read it; stage it with -db BUCKET"
        ))),
        (None, false) => Ok((reference.to_string(), None)),
    }
}

pub(crate) async fn bucket_exists(aws: &Aws, bucket: &str) -> Result<bool, DeployError> {
    match aws.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
            Err(DeployError::BucketNotOwned {
                bucket: bucket.to_owned(),
                message: "403 Forbidden".into(),
            })
        }
        Err(e) => Err(DeployError::aws("s3:HeadBucket")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_without_a_name_are_named_after_their_image() {
        for (image, name) in [
            ("grycap/cowsay", "scar-grycap-cowsay"),
            ("grycap/cowsay:1.2", "scar-grycap-cowsay"),
            ("alpine", "scar-alpine"),
            ("docker.io/library/alpine:3.20", "scar-library-alpine"),
            (
                "127.0.0.1:5000/library/debian-cowsay@sha256:abc",
                "scar-library-debian-cowsay",
            ),
            ("localhost/team/tool.v2", "scar-team-tool-v2"),
            ("oci:/images/my-layout:v1", "scar-my-layout"),
            ("docker-archive:/tmp/photo tools.tar.gz", "scar-photo-tools"),
        ] {
            assert_eq!(name_for_image(image), name, "{image}");
            assert!(check_name(&name_for_image(image)).is_ok());
        }
        let long = name_for_image(&"a".repeat(200));
        assert_eq!(long.len(), 60);
        assert!(check_name(&format!("{long}-99")).is_ok());
    }

    #[test]
    fn names_roles_and_folders() {
        assert!(check_name("scar-cowsay_1").is_ok());
        for bad in ["", "a b", "x".repeat(65).as_str(), "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            role_name("arn:aws:iam::123:role/svc/scar-lambda"),
            Some("scar-lambda")
        );
        assert_eq!(role_name("arn:aws:iam::123:role/r"), Some("r"));
        assert_eq!(role_name("scar-lambda"), None);
        assert_eq!(role_name("arn:aws:iam::123:role/"), None);
        assert_eq!(
            (folder("input"), folder("/in/put/"), folder("")),
            ("input/".into(), "in/put/".into(), String::new())
        );
        assert_eq!(tag_value("ghcr.io/o/i@sha256:ab"), "ghcr.io/o/i@sha256:ab");
        assert_eq!(tag_value("oci:/a b,c"), "oci:/a b_c");
    }
}
