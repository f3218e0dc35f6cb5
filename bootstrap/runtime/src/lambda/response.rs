//! The invocation's response, typed: one serde type that the handler writes, `--emulate`
//! prints and the deployer reads back. Direct invokes get one [`RunReport`], S3 events a
//! [`BatchReport`] with one per record, HTTP requests an API Gateway proxy response.

use std::time::Duration;

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use serde::{Deserialize, Serialize};

use crate::exec::Outcome;

/// What an invocation answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// A direct or S3 invocation.
    Run(Response),
    /// An HTTP request, in the format it came in.
    Http(HttpReply),
}

impl Reply {
    /// The command ran, exited 0 and was not timed out (HTTP: status 200).
    pub fn succeeded(&self) -> bool {
        match self {
            Self::Run(response) => response.result.succeeded(),
            Self::Http(HttpReply::RestV1(r)) => r.status_code == 200,
            Self::Http(HttpReply::V2(r)) => r.status_code == 200,
        }
    }
}

/// A proxy response for API Gateway REST (v1), or HTTP API 2.0 and Function URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HttpReply {
    /// API Gateway REST proxy.
    RestV1(ApiGatewayProxyResponse),
    /// HTTP API payload 2.0 and Function URLs.
    V2(ApiGatewayV2httpResponse),
}

/// A direct or S3 invocation's response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// The Lambda request id.
    pub request_id: String,
    /// The image reference.
    pub image: String,
    /// Its manifest digest.
    pub digest: String,
    /// True when this invocation found the rootfs ready.
    pub cached: bool,
    /// Seconds this invocation spent pulling.
    pub pull_seconds: f64,
    /// What ran.
    #[serde(flatten)]
    pub result: RunResult,
}

/// One run, or one per S3 record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunResult {
    /// An S3 event: a run per record.
    Batch(BatchReport),
    /// A direct invoke: one run.
    Single(RunReport),
}

impl RunResult {
    /// Every run exited 0 within the time.
    pub fn succeeded(&self) -> bool {
        match self {
            Self::Batch(batch) => batch.exit_code == Some(0) && !batch.timed_out,
            Self::Single(run) => run.succeeded(),
        }
    }

    /// The exit status to report for the whole invocation (`None`: a signal ended it).
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Batch(batch) => batch.exit_code,
            Self::Single(run) => run.exit_code,
        }
    }

    /// The output shown to a user.
    pub fn output(&self) -> &str {
        match self {
            Self::Batch(batch) => &batch.output,
            Self::Single(run) => &run.output,
        }
    }
}

/// An S3 event's runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReport {
    /// 0 when every record succeeded, else the first failing record's status.
    pub exit_code: Option<i32>,
    /// Any record was timed out.
    pub timed_out: bool,
    /// Every record's output under a `== s3://… ==` heading.
    pub output: String,
    /// One report per record, in order.
    pub records: Vec<RunReport>,
    /// Folder placeholder keys that were skipped.
    pub skipped: Vec<String>,
}

impl BatchReport {
    /// Sums up the records' reports.
    pub fn new(records: Vec<RunReport>, skipped: Vec<String>) -> Self {
        let failed = records.iter().find(|r| !r.succeeded());
        Self {
            exit_code: failed.map_or(Some(0), |r| r.exit_code),
            timed_out: records.iter().any(|r| r.timed_out),
            output: records
                .iter()
                .map(|r| format!("== {} ==\n{}", r.input.as_deref().unwrap_or(""), r.output))
                .collect::<Vec<_>>()
                .join("\n"),
            records,
            skipped,
        }
    }
}

/// One run of the command, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The exit status, or null when a signal ended the command.
    pub exit_code: Option<i32>,
    /// That signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Ended by the timeout threshold.
    pub timed_out: bool,
    /// stdout and stderr, interleaved, with markers for truncation and timeout.
    pub output: String,
    /// Output bytes not returned.
    pub output_truncated_bytes: u64,
    /// Seconds the command ran.
    pub exec_seconds: f64,
    /// `s3://` URIs of the uploaded output files.
    pub uploaded: Vec<String>,
    /// The input object, for S3 events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

impl RunReport {
    /// The report of `outcome`, with markers for what was cut and the timeout.
    pub fn new(outcome: Outcome, threshold: Duration) -> Self {
        let mut output = String::from_utf8_lossy(&outcome.output).into_owned();
        if outcome.dropped > 0 {
            output.push_str(&format!(
                "\n[scar: output truncated: {} more bytes not shown (SCAR_OUTPUT_LIMIT)]\n",
                outcome.dropped
            ));
        }
        if outcome.timed_out {
            output.push_str(&format!(
                "\n[scar: timed out: the command was ended {}s before the Lambda deadline (SCAR_TIMEOUT_THRESHOLD); output files written so far were uploaded]\n",
                threshold.as_secs_f64()
            ));
        }
        Self {
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            timed_out: outcome.timed_out,
            output,
            output_truncated_bytes: outcome.dropped,
            exec_seconds: outcome.duration.as_secs_f64(),
            uploaded: Vec::new(),
            input: None,
        }
    }

    /// Succeeded: exit status 0 within the time.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(code: Option<i32>, input: &str) -> RunReport {
        RunReport {
            exit_code: code,
            signal: None,
            timed_out: false,
            output: format!("out {input}\n"),
            output_truncated_bytes: 0,
            exec_seconds: 0.5,
            uploaded: vec![],
            input: Some(input.to_owned()),
        }
    }

    fn response(result: RunResult) -> Response {
        Response {
            request_id: "r".into(),
            image: "i".into(),
            digest: "sha256:0".into(),
            cached: true,
            pull_seconds: 0.0,
            result,
        }
    }

    #[test]
    fn a_batch_takes_the_first_failure_and_round_trips() {
        let batch = BatchReport::new(
            vec![
                report(Some(0), "s3://b/a"),
                report(Some(3), "s3://b/c"),
                report(Some(4), "s3://b/d"),
            ],
            vec!["input/".into()],
        );
        assert_eq!(batch.exit_code, Some(3));
        assert!(
            batch
                .output
                .starts_with("== s3://b/a ==\nout s3://b/a\n\n== s3://b/c ==")
        );
        let text = serde_json::to_string(&Reply::Run(response(RunResult::Batch(batch)))).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["records"][1]["exit_code"], 3, "{text}");
        assert_eq!(value["request_id"], "r");
        let back: Reply = serde_json::from_str(&text).unwrap();
        assert!(
            matches!(&back, Reply::Run(r) if matches!(&r.result, RunResult::Batch(b) if b.records.len() == 3))
        );
        assert!(!back.succeeded());
    }

    #[test]
    fn a_single_run_is_flat_and_round_trips() {
        let text = serde_json::to_string(&Reply::Run(response(RunResult::Single(report(
            Some(0),
            "x",
        )))))
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["exit_code"], 0);
        assert_eq!(value["output"], "out x\n");
        assert!(
            value.get("result").is_none() && value.get("records").is_none(),
            "{text}"
        );
        let back: Reply = serde_json::from_str(&text).unwrap();
        assert!(back.succeeded());
    }

    #[test]
    fn an_http_reply_is_a_proxy_response() {
        let mut r = ApiGatewayV2httpResponse::default();
        r.status_code = 504;
        let text = serde_json::to_string(&Reply::Http(HttpReply::V2(r))).unwrap();
        let back: Reply = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Reply::Http(_)), "{text}");
        assert!(!back.succeeded());
    }
}
