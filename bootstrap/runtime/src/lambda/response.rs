//! The invocation's response, typed: one serde type that the handler writes, `--emulate`
//! prints and the deployer reads back. Direct invokes get one [`RunReport`], batch events
//! (S3, SQS, SNS, EventBridge) a [`BatchReport`] with one per record, HTTP requests a proxy
//! response in their caller's format.
//!
//! Lambda refuses a response over 6 MB (and retries an asynchronous invocation that made
//! one), and a load balancer one over 1 MB, so every response is cut to fit
//! ([`Reply::fit`] to [`Reply::limit`]): the output appears once, the records of a batch
//! share one budget, and whatever is cut is counted and marked.

use std::time::Duration;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::alb::AlbTargetGroupResponse;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use serde::{Deserialize, Serialize};

use crate::exec::Outcome;
use crate::lambda::event::HttpFormat;

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
            Self::Http(HttpReply::Alb(r)) => r.status_code == 200,
        }
    }

    /// The largest JSON the caller takes: 1 MB for a load balancer, else Lambda's 6 MB.
    pub fn limit(&self) -> usize {
        match self {
            Self::Run(_) => LAMBDA_RESPONSE_LIMIT,
            Self::Http(reply) => reply.format().response_limit(),
        }
    }
}

/// Lambda's limit on a synchronous response: 6 MB.
pub const LAMBDA_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;

impl Reply {
    /// Cuts the outputs of a run reply until its JSON is at most `limit` bytes (escaping can
    /// make a text grow up to six times); each cut is counted in `output_truncated_bytes` and
    /// marked. An HTTP reply's body chosen by the command was sized where it was chosen; the
    /// output as its body is cut here, and marked.
    pub fn fit(&mut self, limit: usize) {
        let response = match self {
            Self::Run(response) => response,
            Self::Http(reply) => return reply.fit(limit),
        };
        let rounds = response.result.reports_mut().len() * 2 + 8;
        for _ in 0..rounds {
            let size = json_len(response);
            if size <= limit {
                return;
            }
            let mut reports = response.result.reports_mut();
            let Some(largest) = reports.iter_mut().max_by_key(|r| json_len(&r.output)) else {
                return;
            };
            let removed = cut_text(&mut largest.output, size - limit, limit);
            largest.output_truncated_bytes += removed as u64;
        }
    }
}

/// Cuts the end of `text` so that its JSON is about `excess` bytes shorter, and marks the
/// cut; returns the bytes removed. Each byte cut saves up to six escaped ones, so the cut is
/// the excess over the text's own ratio (a caller cuts again if that was not enough).
fn cut_text(text: &mut String, excess: usize, limit: usize) -> usize {
    let ratio = (json_len(&*text) / text.len().max(1)).max(1);
    let mut cut = text
        .len()
        .saturating_sub(excess / ratio + TRUNCATION_MARKER_ROOM);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let removed = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!(
        "\n[scar: response cut: {removed} more bytes not shown (the caller takes a response of {limit} bytes at most); the whole output is in the function's log]\n"
    ));
    removed
}

/// The length of `value` as JSON, counted without making the text: the response can hold
/// megabytes of output, and a copy only to measure it would raise the runtime's peak memory.
fn json_len(value: &impl Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing these plain structs cannot fail; a failure would count as empty.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// Room for the marker [`Reply::fit`] appends.
const TRUNCATION_MARKER_ROOM: usize = 256;

/// A proxy response for API Gateway REST (v1), HTTP API 2.0 and Function URLs, or an
/// Application Load Balancer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HttpReply {
    /// API Gateway REST proxy.
    RestV1(ApiGatewayProxyResponse),
    /// HTTP API payload 2.0 and Function URLs.
    V2(ApiGatewayV2httpResponse),
    /// An Application Load Balancer's target group.
    Alb(AlbTargetGroupResponse),
}

impl HttpReply {
    fn format(&self) -> HttpFormat {
        match self {
            Self::RestV1(_) => HttpFormat::RestV1,
            Self::V2(_) => HttpFormat::V2,
            Self::Alb(_) => HttpFormat::Alb,
        }
    }

    fn body_mut(&mut self) -> &mut Option<Body> {
        match self {
            Self::RestV1(r) => &mut r.body,
            Self::V2(r) => &mut r.body,
            Self::Alb(r) => &mut r.body,
        }
    }

    /// Cuts a text body (the command's output) until the JSON is at most `limit` bytes.
    fn fit(&mut self, limit: usize) {
        for _ in 0..8 {
            let size = json_len(self);
            if size <= limit {
                return;
            }
            let Some(Body::Text(text)) = self.body_mut() else {
                return;
            };
            cut_text(text, size - limit, limit);
        }
    }
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
    pub fn output(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Batch(batch) => batch.output().into(),
            Self::Single(run) => run.output.as_str().into(),
        }
    }

    fn reports_mut(&mut self) -> Vec<&mut RunReport> {
        match self {
            Self::Batch(batch) => batch.records.iter_mut().collect(),
            Self::Single(run) => vec![run],
        }
    }
}

/// A batch event's runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReport {
    /// 0 when every record succeeded, else the first failing record's status.
    pub exit_code: Option<i32>,
    /// Any record was timed out.
    pub timed_out: bool,
    /// One report per record, in order; each carries its own output.
    pub records: Vec<RunReport>,
    /// Folder placeholder keys and S3 test events that were skipped.
    pub skipped: Vec<String>,
    /// SQS: the messages whose run failed, which Lambda then retries alone (with
    /// `ReportBatchItemFailures` on the event source mapping).
    #[serde(
        default,
        rename = "batchItemFailures",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_item_failures: Option<Vec<ItemFailure>>,
}

/// One failed SQS message, as Lambda's partial batch response names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// The message id.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

impl BatchReport {
    /// Sums up the records' reports; `sqs_ids` (SQS events only) gives each record's message.
    pub fn new(
        records: Vec<RunReport>,
        skipped: Vec<String>,
        sqs_ids: Option<Vec<Option<String>>>,
    ) -> Self {
        let failed = records.iter().find(|r| !r.succeeded());
        let batch_item_failures = sqs_ids.map(|ids| {
            let mut failures: Vec<ItemFailure> = Vec::new();
            for (record, id) in records.iter().zip(ids) {
                if let Some(id) = id.filter(|_| !record.succeeded())
                    && !failures.iter().any(|f| f.item_identifier == id)
                {
                    failures.push(ItemFailure {
                        item_identifier: id,
                    });
                }
            }
            failures
        });
        Self {
            exit_code: failed.map_or(Some(0), |r| r.exit_code),
            timed_out: records.iter().any(|r| r.timed_out),
            records,
            skipped,
            batch_item_failures,
        }
    }

    /// Every record's output under a `== input ==` heading, for a person to read.
    pub fn output(&self) -> String {
        self.records
            .iter()
            .map(|r| format!("== {} ==\n{}", r.input.as_deref().unwrap_or(""), r.output))
            .collect::<Vec<_>>()
            .join("\n")
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
        // Valid UTF-8 (the usual case) becomes the text in place, without a copy.
        let mut output = String::from_utf8(outcome.output)
            .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
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
            None,
        );
        assert_eq!(batch.exit_code, Some(3));
        assert!(
            batch
                .output()
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

    #[test]
    fn sqs_failures_name_each_failed_message_once() {
        let batch = BatchReport::new(
            vec![
                report(Some(0), "m1"),
                report(Some(2), "m2"),
                report(None, "o1"),
                report(Some(0), "m3"),
            ],
            vec![],
            Some(vec![
                Some("m1".into()),
                Some("m2".into()),
                Some("m2".into()),
                Some("m3".into()),
            ]),
        );
        let value = serde_json::to_value(&batch).unwrap();
        assert_eq!(
            value["batchItemFailures"],
            serde_json::json!([{"itemIdentifier": "m2"}])
        );
        let plain = serde_json::to_value(BatchReport::new(vec![], vec![], None)).unwrap();
        assert!(plain.get("batchItemFailures").is_none());
        assert!(
            plain.get("output").is_none(),
            "the output appears once, in the records"
        );
    }

    #[test]
    fn an_http_replys_output_is_cut_to_its_callers_bound() {
        let dir = tempfile::tempdir().unwrap();
        let printed = RunReport {
            output: "\u{1}".repeat(3 * 1024 * 1024),
            ..report(Some(0), "r")
        };
        for format in [
            crate::lambda::event::HttpFormat::Alb,
            crate::lambda::event::HttpFormat::RestV1,
        ] {
            let mut reply = Reply::Http(crate::lambda::http::response(
                format,
                &printed,
                "r",
                dir.path(),
            ));
            let limit = reply.limit();
            assert_eq!(limit, format.response_limit());
            reply.fit(limit);
            let size = serde_json::to_vec(&reply).unwrap().len();
            assert!(size <= limit, "{format:?}: {size}");
            let text = serde_json::to_value(&reply).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(text.contains("[scar: response cut:"), "{format:?}");
            assert!(text.starts_with("\u{1}\u{1}"), "{format:?}");
        }
    }

    #[test]
    fn a_reply_is_cut_to_fit_whatever_the_output() {
        let control_chars = "\u{1}".repeat(3 * 1024 * 1024);
        let records = (0..10)
            .map(|i| RunReport {
                output: if i == 3 {
                    control_chars.clone()
                } else {
                    "x".repeat(1024 * 1024)
                },
                ..report(Some(0), "r")
            })
            .collect();
        let mut reply = Reply::Run(response(RunResult::Batch(BatchReport::new(
            records,
            vec![],
            None,
        ))));
        reply.fit(LAMBDA_RESPONSE_LIMIT);
        let size = serde_json::to_vec(&reply).unwrap().len();
        assert!(size <= LAMBDA_RESPONSE_LIMIT, "{size}");
        let Reply::Run(Response {
            result: RunResult::Batch(batch),
            ..
        }) = &reply
        else {
            panic!()
        };
        let cut: u64 = batch.records.iter().map(|r| r.output_truncated_bytes).sum();
        assert!(cut > 0);
        assert!(
            batch
                .records
                .iter()
                .any(|r| r.output.contains("[scar: response cut:"))
        );
    }
}
