//! `deployer run`: one invocation with a script or a command, or SCAR's event launcher
//! (`-es BUCKET`): one S3 event per object in the input folder, the first synchronous so
//! that it pulls the image once, the rest asynchronous with bounded concurrency.

use std::collections::BTreeSet;
use std::io::Write;

use aws_lambda_events::event::s3::{S3Bucket, S3Entity, S3Event, S3EventRecord, S3Object};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use base64::Engine;
use futures_util::StreamExt;
use serde_json::Value;

use scar_runtime::lambda::{DirectInvoke, ErrorDocument, Reply, Response};

use crate::aws::Aws;
use crate::cli::RunArgs;
use crate::error::DeployError;

/// The result of one synchronous invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The response document.
    pub payload: Value,
    /// Lambda's `FunctionError`, when the function failed.
    pub function_error: Option<String>,
}

impl Outcome {
    /// The response, typed, when the function answered with one (HTTP replies and other
    /// documents are `None`).
    pub fn response(&self) -> Option<Response> {
        match serde_json::from_value(self.payload.clone()) {
            Ok(Reply::Run(response)) => Some(response),
            _ => None,
        }
    }

    /// The exit status `deployer run` returns: the container's, else 1 for a failure.
    pub fn exit_code(&self) -> i32 {
        if self.function_error.is_some() {
            return 1;
        }
        match self.response().map(|r| r.result.exit_code()) {
            Some(Some(code)) => code,
            // Ended by a signal or by the timeout threshold.
            Some(None) => 1,
            None => 0,
        }
    }

    /// Prints what the user wants to see: the container's output, or the error.
    pub fn print(
        &self,
        json: bool,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> std::io::Result<()> {
        if json {
            return writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&self.payload).map_err(std::io::Error::other)?
            );
        }
        if self.function_error.is_some() {
            let error: ErrorDocument =
                serde_json::from_value(self.payload.clone()).unwrap_or_else(|_| ErrorDocument {
                    error_type: "Unknown".to_owned(),
                    error_message: self.payload.to_string(),
                });
            return writeln!(err, "{}: {}", error.error_type, error.error_message);
        }
        match self.response() {
            Some(response) => out.write_all(response.result.output().as_bytes()),
            None => writeln!(out, "{}", self.payload),
        }
    }
}

/// The direct-invoke payload for `args`.
pub fn payload(args: &RunArgs) -> Result<Value, DeployError> {
    let script = args
        .script
        .as_ref()
        .map(|path| std::fs::read(path).map_err(DeployError::io(path)))
        .transpose()?;
    direct(&DirectInvoke {
        script: script.map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
        cmd_args: (!args.command.is_empty()).then(|| args.command.clone()),
        env: args.env.iter().cloned().collect(),
    })
}

/// A direct invoke as the runtime reads it.
pub fn direct(invoke: &DirectInvoke) -> Result<Value, DeployError> {
    serde_json::to_value(invoke)
        .map_err(|e| DeployError::Invalid(format!("cannot encode the invoke payload: {e}")))
}

/// Invokes `name` with `event`; `None` for an asynchronous invoke.
pub async fn invoke(
    aws: &Aws,
    name: &str,
    event: &impl serde::Serialize,
    asynchronous: bool,
) -> Result<Option<Outcome>, DeployError> {
    let event = serde_json::to_vec(event)
        .map_err(|e| DeployError::Invalid(format!("cannot encode the event: {e}")))?;
    let response = aws
        .lambda
        .invoke()
        .function_name(name)
        .invocation_type(if asynchronous {
            InvocationType::Event
        } else {
            InvocationType::RequestResponse
        })
        .payload(Blob::new(event))
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception())
            {
                DeployError::NoFunction(name.to_owned())
            } else {
                DeployError::aws("lambda:Invoke")(e)
            }
        })?;
    if asynchronous {
        return Ok(None);
    }
    let bytes = response.payload().map(|p| p.as_ref()).unwrap_or_default();
    let payload = serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()));
    Ok(Some(Outcome {
        payload,
        function_error: response.function_error().map(str::to_owned),
    }))
}

/// An object of the input folder, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: i64,
    /// When it was written: the time S3 would have put on its `ObjectCreated` event, so that
    /// the event for one object is the same whenever it is sent again.
    pub written: chrono::DateTime<chrono::Utc>,
}

/// An S3 `ObjectCreated` event for one object, as S3 sends it (keys form-encoded), typed by
/// `aws_lambda_events` so that its shape is the documented one, not one written here.
pub fn s3_event(region: &str, bucket: &str, object: &Listed) -> S3Event {
    let Listed { key, size, written } = object;
    let encoded: String = key
        .split(' ')
        .map(|part| percent_encoding::utf8_percent_encode(part, KEY_SET).to_string())
        .collect::<Vec<_>>()
        .join("+");
    let mut s3_object = S3Object::default();
    s3_object.key = Some(encoded);
    s3_object.size = Some(*size);
    let mut s3_bucket = S3Bucket::default();
    s3_bucket.name = Some(bucket.to_owned());
    s3_bucket.arn = Some(format!("arn:aws:s3:::{bucket}"));
    let mut entity = S3Entity::default();
    entity.schema_version = Some("1.0".to_owned());
    entity.bucket = s3_bucket;
    entity.object = s3_object;
    let mut record = S3EventRecord::default();
    record.event_version = Some("2.1".to_owned());
    record.event_source = Some("aws:s3".to_owned());
    record.aws_region = Some(region.to_owned());
    record.event_time = *written;
    record.event_name = Some("ObjectCreated:Put".to_owned());
    record.s3 = entity;
    let mut event = S3Event::default();
    event.records = vec![record];
    event
}

/// S3 leaves `/` and unreserved characters as they are in event keys.
const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What the event launcher did.
#[derive(Debug, Default)]
pub struct Launched {
    /// The first, synchronous invocation.
    pub first: Option<Outcome>,
    /// Objects sent asynchronously.
    pub queued: usize,
    /// Keys whose asynchronous invoke failed, with why.
    pub failed: Vec<(String, String)>,
}

/// SCAR's event launcher: one event per object under `folder`, or, with `only`, per object
/// of that list (a listed key that is not there is a failure, not silently skipped).
pub async fn launch_events(
    aws: &Aws,
    name: &str,
    bucket: &str,
    folder: &str,
    concurrency: usize,
    only: Option<&BTreeSet<String>>,
) -> Result<Launched, DeployError> {
    let folder = match folder.trim_matches('/') {
        "" => String::new(),
        f => format!("{f}/"),
    };
    let mut objects = Vec::new();
    let mut pages = aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&folder)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(DeployError::aws("s3:ListObjectsV2"))?;
        for object in page.contents() {
            match object.key() {
                Some(key) if !key.ends_with('/') => {
                    let written = object
                        .last_modified()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                        .unwrap_or_default();
                    objects.push(Listed {
                        key: key.to_owned(),
                        size: object.size().unwrap_or_default(),
                        written,
                    });
                }
                _ => {}
            }
        }
    }
    let mut launched = Launched::default();
    if let Some(only) = only {
        objects.retain(|object| only.contains(&object.key));
        let found: BTreeSet<&String> = objects.iter().map(|object| &object.key).collect();
        for missing in only.iter().filter(|key| !found.contains(key)) {
            let reason = format!("no such object under s3://{bucket}/{folder}");
            launched.failed.push((missing.clone(), reason));
        }
    }
    let Some((first, rest)) = objects.split_first() else {
        return Ok(launched);
    };
    let event = s3_event(&aws.region, bucket, first);
    launched.first = invoke(aws, name, &event, false).await?;
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(rest.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let results: Vec<_> = futures_util::stream::iter(rest)
        .map(|object| {
            let event = s3_event(&aws.region, bucket, object);
            let progress = progress.clone();
            async move {
                let result = invoke(aws, name, &event, true).await;
                progress.inc(1);
                (object.key.clone(), result)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    progress.finish_and_clear();
    for (key, result) in results {
        match result {
            Ok(_) => launched.queued += 1,
            Err(e) => launched.failed.push((key, e.to_string())),
        }
    }
    Ok(launched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn launcher_events_encode_keys_as_s3_does() {
        let written = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let object = Listed {
            key: "input/a b/ü+1.png".to_owned(),
            size: 7,
            written,
        };
        let event = s3_event("eu-west-1", "b", &object);
        let event = serde_json::to_value(&event).unwrap();
        let record = &event["Records"][0];
        assert_eq!(record["s3"]["object"]["key"], "input/a+b/%C3%BC%2B1.png");
        assert_eq!(record["eventSource"], "aws:s3");
        assert_eq!(record["s3"]["bucket"]["arn"], "arn:aws:s3:::b");
        assert_eq!(record["eventTime"], "2023-11-14T22:13:20Z");
        let parsed = scar_runtime::lambda::Event::parse(event.clone(), "input/").unwrap();
        let debug = format!("{parsed:?}");
        assert!(debug.contains("input/a b/ü+1.png"), "{debug}");
    }

    #[test]
    fn exit_codes_follow_the_container() {
        let outcome = |payload: Value, error: Option<&str>| Outcome {
            payload,
            function_error: error.map(str::to_owned),
        };
        let run = |exit_code: Value, signal: Value| {
            json!({"request_id": "r", "image": "i", "digest": "d", "cached": true,
                   "pull_seconds": 0.0, "exit_code": exit_code, "signal": signal,
                   "timed_out": false, "output": "hi\n", "output_truncated_bytes": 0,
                   "exec_seconds": 0.1, "uploaded": []})
        };
        let ok = outcome(run(json!(0), Value::Null), None);
        assert_eq!(ok.exit_code(), 0);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        ok.print(false, &mut out, &mut err).unwrap();
        assert_eq!(out, b"hi\n");
        assert_eq!(outcome(run(json!(3), Value::Null), None).exit_code(), 3);
        assert_eq!(outcome(run(Value::Null, json!(9)), None).exit_code(), 1);
        let failed = outcome(
            json!({"errorType": "Scar.ImageError", "errorMessage": "no such image"}),
            Some("Unhandled"),
        );
        assert_eq!(failed.exit_code(), 1);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        failed.print(false, &mut out, &mut err).unwrap();
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "Scar.ImageError: no such image\n"
        );
    }
}
