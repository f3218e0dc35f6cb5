//! `deployer update`: a function's settings changed in place, without recreating it (its
//! triggers, endpoints, logs and cached image stay as they are). With `-f FILE`, every
//! function of a definition file is brought to the file's values: memory, time, threshold,
//! log level, image and variables, the container's replaced by the file's (a variable
//! removed from the file is removed from the function), the runtime's set. What `update`
//! cannot change in place (buckets, endpoints, the script, the architecture) is `rm` + `init`.
//!
//! The new configuration is computed from the current one and checked whole (ranges, the
//! threshold against the resulting time, variable names) before one
//! `UpdateFunctionConfiguration` carries it, guarded by the revision read (a change made
//! meanwhile by someone else fails the update instead of being overwritten); the command
//! returns once Lambda reports the update applied.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use aws_sdk_lambda::client::Waiters as _;
use aws_sdk_lambda::operation::update_function_configuration::builders::UpdateFunctionConfigurationFluentBuilder;
use aws_sdk_lambda::types::Environment;
use serde::Serialize;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::{Arch, UpdateArgs};
use crate::definitions::Definitions;
use crate::error::DeployError;
use crate::init::{
    BucketNeed, add_variables, application_log_level, bucket_exists, check_memory, check_threshold,
    check_time, container_variable, ensure_bucket, logging_config, tag, tag_value,
};
use crate::list;
use crate::resources::{TAG_IMAGE, TAG_STAGED};
use crate::staging::{StagingPlan, StagingSource, stage, staged_reference};

const THRESHOLD: &str = "SCAR_TIMEOUT_THRESHOLD";

/// What changed, one setting a line.
#[derive(Debug, Serialize)]
struct Updated {
    function: String,
    changes: Vec<String>,
}

impl Report for Updated {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.changes.is_empty() {
            writeln!(out, "{}: unchanged", self.function)?;
        }
        for change in &self.changes {
            writeln!(out, "{}: {change}", self.function)?;
        }
        Ok(())
    }
}

/// Each function's update, in the definition file's order.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct UpdatedAll(Vec<Updated>);

impl Report for UpdatedAll {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.0.iter().try_for_each(|u| u.write_text(out))
    }
}

/// The environment after the update, and the words for each variable that changed.
fn new_variables(
    current: &BTreeMap<String, String>,
    args: &UpdateArgs,
) -> Result<(BTreeMap<String, String>, Vec<String>), DeployError> {
    let mut variables = current.clone();
    add_variables(&mut variables, &args.env, &args.function_env)?;
    if let Some(threshold) = args.timeout_threshold {
        variables.insert(THRESHOLD.into(), threshold.to_string());
    }
    if let Some(image) = &args.image {
        let reference = image
            .parse::<scar_image::ImageReference>()
            .map_err(|e| DeployError::Invalid(format!("-i {image}: {e}")))?;
        let pulled = match &args.deployment_bucket {
            // What `stage` returns for the function's own prefix.
            Some(bucket) => staged_reference(bucket, args.name.as_deref().unwrap_or_default()),
            None if reference.is_local() => {
                return Err(DeployError::Invalid(format!(
                    "-i {image}: a local image: Lambda cannot read it; stage it with -db BUCKET"
                )));
            }
            None => image.clone(),
        };
        variables.insert("SCAR_IMAGE".into(), pulled);
    }
    for key in &args.unset_env {
        let name = container_variable(key)?;
        if variables.remove(&name).is_none() {
            return Err(DeployError::Invalid(format!(
                "--unset-env {key}: the function has no container variable {key}"
            )));
        }
    }
    let mut changes = Vec::new();
    for (name, value) in &variables {
        match current.get(name) {
            Some(old) if old == value => {}
            Some(old) => changes.push(format!("{name} {old:?} -> {value:?}")),
            None => changes.push(format!("{name} set to {value:?}")),
        }
    }
    for name in current.keys().filter(|n| !variables.contains_key(*n)) {
        changes.push(format!("{name} removed"));
    }
    Ok((variables, changes))
}

pub(crate) async fn run(aws: &Aws, args: &UpdateArgs) -> Result<u8, DeployError> {
    match (&args.name, &args.file) {
        (Some(name), _) => {
            let planned = plan(aws, name, args, false).await?;
            if planned.request.is_none() {
                return Err(DeployError::Invalid(format!(
                    "{name}: nothing to change (give -m, -t, --timeout-threshold, -e, --unset-env, --function-env, --log-level or -i with a new value)"
                )));
            }
            emit(&apply(aws, planned).await?, args.json)?;
        }
        (None, Some(file)) => {
            let definitions = Definitions::load(file)?;
            // Every function is checked before any is changed: a name missing from AWS or a
            // value out of range updates none.
            let mut planned = Vec::new();
            for (name, function_args) in definitions.update_args(args.json) {
                planned.push(plan(aws, &name, &function_args, true).await?);
            }
            let mut updated = Vec::new();
            for one in planned {
                updated.push(apply(aws, one).await?);
            }
            emit(&UpdatedAll(updated), args.json)?;
        }
        (None, None) => {
            return Err(DeployError::Invalid(
                "update needs a function name (-n NAME) or a definition file (-f FILE)".into(),
            ));
        }
    }
    Ok(0)
}

/// One function's update, checked against its current configuration and ready to send;
/// no request when nothing changes.
struct Planned {
    name: String,
    arn: String,
    updated: Updated,
    /// The image to stage and the bucket it goes to.
    staging: Option<(StagingPlan, BucketNeed)>,
    /// The image as `ls` shows it, when it changes.
    image_tag: Option<String>,
    request: Option<UpdateFunctionConfigurationFluentBuilder>,
}

/// Checks the update of `name` that `args` ask for; with `exact_env`, the container's
/// variables become exactly `args.env` (the others are removed). Sends nothing.
async fn plan(
    aws: &Aws,
    name: &str,
    args: &UpdateArgs,
    exact_env: bool,
) -> Result<Planned, DeployError> {
    let function = list::lookup(aws, name).await?;
    let current = aws
        .lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .map_err(DeployError::aws("lambda:GetFunctionConfiguration"))?;
    let variables: BTreeMap<String, String> = current
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();

    let mut changes = Vec::new();
    let memory = current.memory_size().unwrap_or(128);
    if let Some(new) = args.memory {
        check_memory(new)?;
        if new != memory {
            changes.push(format!("memory {memory} -> {new} MB"));
        }
    }
    let time = current.timeout().unwrap_or(3);
    if let Some(new) = args.time {
        check_time(new)?;
        if new != time {
            changes.push(format!("time {time} -> {new} s"));
        }
    }
    let (new_env, env_changes) = if exact_env {
        let mut exact = args.clone();
        exact.unset_env = variables
            .keys()
            .filter_map(|k| k.strip_prefix(scar_runtime::settings::CONTAINER_PREFIX))
            .filter(|k| !args.env.iter().any(|(given, _)| given == k))
            .map(str::to_owned)
            .collect();
        new_variables(&variables, &exact)?
    } else {
        new_variables(&variables, args)?
    };
    let resulting_time = args.time.unwrap_or(time);
    if let Some(threshold) = new_env.get(THRESHOLD).and_then(|t| t.parse::<i64>().ok()) {
        check_threshold(threshold, resulting_time)?;
    }
    changes.extend(env_changes.iter().cloned());
    let current_level = current
        .logging_config()
        .and_then(|l| l.application_log_level())
        .cloned();
    let new_level = args.log_level.map(application_log_level);
    if let Some(new) = &new_level
        && current_level.as_ref() != Some(new)
    {
        changes.push(format!("log level {} (JSON log records)", new.as_str()));
    }
    // Staging is a change even when the reference stays the function's prefix: new content.
    // From a file, only a new image is staged again (the file is read as the state wanted).
    let image_tag = args.image.as_deref().map(tag_value);
    let new_image = image_tag.as_deref() != Some(function.image.as_str());
    let staging = match (&args.image, &args.deployment_bucket) {
        (Some(image), Some(bucket)) if new_image || !exact_env => {
            let arch = match current.architectures().first() {
                Some(aws_sdk_lambda::types::Architecture::Arm64) => Arch::Arm64,
                _ => Arch::X86_64,
            };
            let reference = image
                .parse::<scar_image::ImageReference>()
                .map_err(|e| DeployError::Invalid(format!("-i {image}: {e}")))?;
            let staging = StagingSource {
                reference,
                bucket: bucket.clone(),
                arch,
            }
            .for_function(name);
            changes.push(format!(
                "image {image} staged in s3://{}/{}",
                staging.bucket, staging.prefix
            ));
            // A bucket owned elsewhere is refused now; a missing one is made, as init does.
            let need = BucketNeed {
                name: bucket.clone(),
                exists: bucket_exists(aws, bucket).await?,
                folders: Vec::new(),
            };
            Some((staging, need))
        }
        _ => None,
    };
    let updated = Updated {
        function: function.name,
        changes,
    };
    if updated.changes.is_empty() {
        return Ok(Planned {
            name: name.to_owned(),
            arn: function.arn,
            updated,
            staging,
            image_tag: None,
            request: None,
        });
    }

    let mut update = aws
        .lambda
        .update_function_configuration()
        .function_name(name)
        .set_revision_id(current.revision_id().map(str::to_owned))
        .set_memory_size(args.memory)
        .set_timeout(args.time);
    if !env_changes.is_empty() {
        update = update.environment(
            Environment::builder()
                .set_variables(Some(new_env.into_iter().collect()))
                .build(),
        );
    }
    if let Some(level) = args.log_level {
        update = update.logging_config(logging_config(level));
    }
    Ok(Planned {
        name: name.to_owned(),
        arn: function.arn,
        updated,
        staging,
        image_tag: image_tag.filter(|_| new_image),
        request: Some(update),
    })
}

/// Sends a planned update (guarded by the revision it was checked against) and waits until
/// Lambda has applied it.
async fn apply(aws: &Aws, planned: Planned) -> Result<Updated, DeployError> {
    let Some(request) = planned.request else {
        return Ok(planned.updated);
    };
    if let Some((staging, bucket)) = &planned.staging {
        // Staged first: the function points at the prefix only once it holds the image
        // (its index is written last), and `rm` removes it with the function. A bucket made
        // here is data, kept even if what follows fails, as `rm` keeps buckets.
        ensure_bucket(aws, bucket, &mut Vec::new()).await?;
        stage(aws, staging).await?;
        tag(
            aws,
            &planned.arn,
            TAG_STAGED,
            &format!("{}/{}", staging.bucket, staging.prefix),
        )
        .await?;
    }
    request
        .send()
        .await
        .map_err(DeployError::aws("lambda:UpdateFunctionConfiguration"))?;
    aws.lambda
        .wait_until_function_updated_v2()
        .function_name(&planned.name)
        .wait(Duration::from_secs(300))
        .await
        .map_err(DeployError::aws(
            "lambda:GetFunction (waiting for the update)",
        ))?;
    if let Some(image) = &planned.image_tag {
        tag(aws, &planned.arn, TAG_IMAGE, image).await?;
    }
    Ok(planned.updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(env: &[(&str, &str)], unset: &[&str], threshold: Option<u32>) -> UpdateArgs {
        UpdateArgs {
            name: Some("f".into()),
            file: None,
            memory: None,
            time: None,
            timeout_threshold: threshold,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            unset_env: unset.iter().map(|k| (*k).to_owned()).collect(),
            function_env: vec![],
            log_level: None,
            image: None,
            deployment_bucket: None,
            json: false,
        }
    }

    #[test]
    fn variables_are_merged_into_the_current_ones_and_each_change_is_said() {
        let current: BTreeMap<String, String> = [
            ("SCAR_IMAGE", "debian"),
            ("CONT_VAR_KEEP", "1"),
            ("CONT_VAR_OLD", "x"),
            ("CONT_VAR_CHANGE", "a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (new, changes) = new_variables(
            &current,
            &args(&[("CHANGE", "b"), ("NEW", "n")], &["OLD"], Some(5)),
        )
        .unwrap();
        assert_eq!(new["SCAR_IMAGE"], "debian");
        assert_eq!(new["CONT_VAR_KEEP"], "1");
        assert_eq!(new["CONT_VAR_CHANGE"], "b");
        assert_eq!(new["CONT_VAR_NEW"], "n");
        assert_eq!(new[THRESHOLD], "5");
        assert!(!new.contains_key("CONT_VAR_OLD"));
        assert_eq!(
            changes,
            [
                "CONT_VAR_CHANGE \"a\" -> \"b\"",
                "CONT_VAR_NEW set to \"n\"",
                "SCAR_TIMEOUT_THRESHOLD set to \"5\"",
                "CONT_VAR_OLD removed",
            ]
        );
    }

    #[test]
    fn bad_names_and_missing_variables_are_refused() {
        let current = BTreeMap::new();
        let refused = |a: UpdateArgs| new_variables(&current, &a).unwrap_err().to_string();
        assert!(refused(args(&[("A-B", "1")], &[], None)).contains("not a variable name"));
        assert!(refused(args(&[], &["GONE"], None)).contains("no container variable GONE"));
        let mut typo = args(&[], &[], None);
        typo.function_env = vec![("SCAR_TIMEOUT_TRESHOLD".into(), "5".into())];
        assert!(refused(typo).contains("no such setting"));
    }
}
