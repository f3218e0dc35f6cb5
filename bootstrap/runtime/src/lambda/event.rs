//! What an invocation asks for, from its event JSON, in the shapes AWS documents:
//! - a direct invoke (SCAR's `script`, `cmd_args`, `env`);
//! - S3 notifications, also wrapped in SQS messages, SNS notifications, or SNS inside SQS;
//! - SQS messages and SNS notifications (one run per record, the body as the input file);
//! - EventBridge events: S3 "Object Created" like an S3 notification, anything else (a
//!   scheduled event) as one run;
//! - an HTTP request from API Gateway (REST v1, HTTP API v2), a Function URL (v2) or an
//!   Application Load Balancer;
//! - any other JSON value (an array, a string, a number, null too): one run with the event
//!   in `$SCAR_EVENT_FILE`.
//!
//! A malformed event of a known shape is refused with the field named; nothing here turns
//! a caller's text into a path or a variable name (the handler does, through one rule).

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::alb::AlbTargetGroupRequest;
use aws_lambda_events::event::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A malformed or unsupported event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The event has the shape of a kind but does not parse as it.
    #[error("malformed {kind} event: {reason}")]
    Malformed {
        /// Which kind it looked like.
        kind: &'static str,
        /// serde's message, naming the field.
        reason: String,
    },
    /// Records from a source this runtime does not know.
    #[error("unsupported event source {0:?}: records from aws:s3, aws:sqs and aws:sns are handled")]
    Source(String),
    /// `script` is not base64.
    #[error("\"script\" must be a base64-encoded shell script: {0}")]
    Script(base64::DecodeError),
    /// An HTTP body marked base64 is not.
    #[error("the HTTP body is marked isBase64Encoded but is not base64: {0}")]
    Body(base64::DecodeError),
}

/// SCAR's direct invoke payload; the deployer sends what the runtime reads.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectInvoke {
    /// A base64 shell script, run with `/bin/sh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The command's arguments (after the image's Entrypoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd_args: Option<Vec<String>>,
    /// Variables for the container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The fields that make an object a direct invoke.
const DIRECT_FIELDS: [&str; 3] = ["script", "cmd_args", "env"];

/// One uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// The bucket.
    pub bucket: String,
    /// The key, URL-decoded.
    pub key: String,
}

/// Which proxy format to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    /// API Gateway REST proxy.
    RestV1,
    /// HTTP API payload 2.0 and Function URLs.
    V2,
    /// An Application Load Balancer's target group.
    Alb,
}

/// An Application Load Balancer takes at most 1 MB of response JSON from a function
/// (a larger one is the caller's 502), where API Gateway and Function URLs take Lambda's 6 MB.
pub const ALB_RESPONSE_LIMIT: usize = 1024 * 1024;

impl HttpFormat {
    /// The largest response JSON the caller's side accepts.
    pub fn response_limit(self) -> usize {
        match self {
            Self::Alb => ALB_RESPONSE_LIMIT,
            Self::RestV1 | Self::V2 => super::response::LAMBDA_RESPONSE_LIMIT,
        }
    }
}

/// An HTTP request, as the command sees it in `$SCAR_HTTP_REQUEST_FILE`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRequest {
    /// How to answer.
    #[serde(skip)]
    pub format: HttpFormat,
    /// `GET`, `POST`…
    pub method: String,
    /// The path as the caller sent it.
    pub path: String,
    /// Query parameters, in order, the first value of each.
    pub query: Vec<(String, String)>,
    /// Request headers (lower-cased names).
    pub headers: BTreeMap<String, String>,
    /// The request body, decoded (written to `input/body`, not into the request file).
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
}

/// What a batch event's records came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchSource {
    /// S3 notifications (directly, or wrapped in SQS or SNS).
    S3,
    /// SQS messages.
    Sqs,
    /// SNS notifications.
    Sns,
    /// EventBridge's S3 "Object Created" events.
    Eventbridge,
}

/// What one run of a batch reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An S3 object, downloaded into the input directory.
    Object(S3Object),
    /// A message body, written into the input directory as `message`.
    Message(Vec<u8>),
}

/// One run of a batch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What the report names it by: `s3://bucket/key`, or the message id.
    pub name: String,
    /// Its input.
    pub input: Input,
    /// When the record's event happened, as the event wrote it.
    pub event_time: Option<String>,
    /// The SQS message id Lambda retries by when this run fails.
    pub sqs_message_id: Option<String>,
}

/// What an invocation asks for.
#[derive(Debug)]
pub enum Event {
    /// A direct invoke.
    Direct(DirectInvoke),
    /// Records: one run each.
    Batch {
        /// What they came from.
        source: BatchSource,
        /// The runs, in order.
        items: Vec<Item>,
        /// Folder placeholder keys (and S3 test events) that were skipped.
        skipped: Vec<String>,
    },
    /// An HTTP request.
    Http(HttpRequest),
    /// Any other event (a scheduled event, EventBridge, custom JSON): one run of the
    /// function's command, with the event in `$SCAR_EVENT_FILE`.
    Other {
        /// What it looked like: `eventbridge:<source>/<detail-type>`, or `json`.
        kind: String,
    },
}

fn malformed(kind: &'static str) -> impl Fn(serde_json::Error) -> EventError {
    move |e| EventError::Malformed {
        kind,
        reason: e.to_string(),
    }
}

/// `+` is a space in S3 event keys, then percent-decoding.
pub fn decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// A key that only marks a folder (`input/`), which consoles and tools create.
fn is_placeholder(key: &str, input_prefix: &str) -> bool {
    key.ends_with('/') || (!input_prefix.is_empty() && key == input_prefix.trim_end_matches('/'))
}

/// The fields of an S3 notification record that matter. Not `aws_lambda_events`' `S3Event`:
/// that requires every field of a real notification, and SCAR's event launcher and users'
/// test events carry only these.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    #[serde(default)]
    event_time: Option<String>,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: Named,
    object: Keyed,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Keyed {
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SqsRecord {
    message_id: String,
    body: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsRecord {
    sns: SnsMessage,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsMessage {
    message_id: String,
    message: String,
    #[serde(default)]
    timestamp: Option<String>,
}

/// An EventBridge event's envelope (the fields every event has).
#[derive(Debug, Deserialize)]
struct EventBridge {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    detail: Value,
}

/// EventBridge's S3 "Object Created" detail (keys are not URL-encoded there).
#[derive(Debug, Deserialize)]
struct S3Detail {
    bucket: Named,
    object: Keyed,
}

/// Collects the runs of a batch; S3 objects are decoded and placeholders skipped.
struct Batch<'a> {
    input_prefix: &'a str,
    items: Vec<Item>,
    skipped: Vec<String>,
}

impl Batch<'_> {
    fn object(&mut self, bucket: String, key: String, time: Option<String>, sqs: Option<&str>) {
        if is_placeholder(&key, self.input_prefix) {
            self.skipped.push(key);
            return;
        }
        self.items.push(Item {
            name: format!("s3://{bucket}/{key}"),
            input: Input::Object(S3Object { bucket, key }),
            event_time: time,
            sqs_message_id: sqs.map(str::to_owned),
        });
    }

    /// The records of an S3 notification; `sqs` is the message that carried it.
    fn s3_records(&mut self, records: &[Value], sqs: Option<&str>) -> Result<(), EventError> {
        for record in records {
            let record: S3Record =
                serde_json::from_value(record.clone()).map_err(malformed("S3"))?;
            let key = decode_key(&record.s3.object.key);
            self.object(record.s3.bucket.name, key, record.event_time, sqs);
        }
        Ok(())
    }

    /// A message body: an S3 notification (or an SNS notification of one) becomes its
    /// objects, S3's test event is skipped, anything else is the run's input.
    fn message(
        &mut self,
        id: &str,
        body: &str,
        time: Option<String>,
        sqs: Option<&str>,
    ) -> Result<(), EventError> {
        let parsed: Option<Map<String, Value>> = serde_json::from_str(body).ok();
        if let Some(object) = &parsed {
            if let Some(Value::Array(records)) = object.get("Records")
                && records.iter().all(|r| r.get("s3").is_some())
            {
                return self.s3_records(records, sqs);
            }
            if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
                self.skipped.push(format!("s3:TestEvent ({id})"));
                return Ok(());
            }
            // SNS delivered to SQS without raw delivery: the notification's own envelope.
            if object.get("Type").and_then(Value::as_str) == Some("Notification")
                && let Some(message) = object.get("Message").and_then(Value::as_str)
            {
                let time = object
                    .get("Timestamp")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or(time);
                return self.message(id, message, time, sqs);
            }
        }
        self.items.push(Item {
            name: id.to_owned(),
            input: Input::Message(body.as_bytes().to_vec()),
            event_time: time,
            sqs_message_id: sqs.map(str::to_owned),
        });
        Ok(())
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Event {
    /// Classifies and parses an event.
    pub fn parse(value: Value, input_prefix: &str) -> Result<Self, EventError> {
        let Value::Object(map) = &value else {
            // Lambda takes any JSON value as a payload (Step Functions hands arrays and
            // strings on): it is one run with the event in `$SCAR_EVENT_FILE`.
            return Ok(Self::Other {
                kind: "json".to_owned(),
            });
        };
        if let Some(records) = map.get("Records") {
            return Self::parse_records(records, input_prefix);
        }
        if map.contains_key("requestContext") {
            return Self::parse_http(value).map(Self::Http);
        }
        if map.contains_key("detail-type") && map.contains_key("source") {
            return Self::parse_eventbridge(value, input_prefix);
        }
        if map.keys().all(|k| DIRECT_FIELDS.contains(&k.as_str())) {
            let direct: DirectInvoke =
                serde_json::from_value(value).map_err(malformed("direct invoke"))?;
            if let Some(script) = &direct.script {
                base64::engine::general_purpose::STANDARD
                    .decode(script.trim())
                    .map_err(EventError::Script)?;
            }
            return Ok(Self::Direct(direct));
        }
        if map.keys().any(|k| DIRECT_FIELDS.contains(&k.as_str())) {
            // SCAR's fields with others beside them: a direct invoke with a typo.
            let unknown = map
                .keys()
                .find(|k| !DIRECT_FIELDS.contains(&k.as_str()))
                .cloned()
                .unwrap_or_default();
            return Err(EventError::Malformed {
                kind: "direct invoke",
                reason: format!(
                    "unknown field `{unknown}`, expected one of `script`, `cmd_args`, `env`"
                ),
            });
        }
        Ok(Self::Other {
            kind: "json".to_owned(),
        })
    }

    fn parse_records(records: &Value, input_prefix: &str) -> Result<Self, EventError> {
        let Value::Array(records) = records else {
            return Err(EventError::Malformed {
                kind: "Records",
                reason: format!("\"Records\" must be an array, got {}", kind_name(records)),
            });
        };
        let source_of = |r: &Value| {
            r.get("eventSource")
                .or_else(|| r.get("EventSource"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                // SCAR's event launcher and hand-made test events omit it.
                .unwrap_or_else(|| if r.get("s3").is_some() { "aws:s3" } else { "" }.to_owned())
        };
        let mut batch = Batch {
            input_prefix,
            items: Vec::new(),
            skipped: Vec::new(),
        };
        let mut source = None;
        for record in records {
            let this = source_of(record);
            let kind = match this.as_str() {
                "aws:s3" => BatchSource::S3,
                "aws:sqs" => BatchSource::Sqs,
                "aws:sns" => BatchSource::Sns,
                _ => return Err(EventError::Source(this)),
            };
            if *source.get_or_insert(kind) != kind {
                return Err(EventError::Malformed {
                    kind: "Records",
                    reason: format!("records from more than one source ({this} among others)"),
                });
            }
            match kind {
                BatchSource::S3 => batch.s3_records(std::slice::from_ref(record), None)?,
                BatchSource::Sqs => {
                    let r: SqsRecord =
                        serde_json::from_value(record.clone()).map_err(malformed("SQS"))?;
                    let time = r.attributes.get("SentTimestamp").cloned();
                    batch.message(&r.message_id, &r.body, time, Some(&r.message_id))?;
                }
                BatchSource::Sns | BatchSource::Eventbridge => {
                    let r: SnsRecord =
                        serde_json::from_value(record.clone()).map_err(malformed("SNS"))?;
                    batch.message(&r.sns.message_id, &r.sns.message, r.sns.timestamp, None)?;
                }
            }
        }
        Ok(Self::Batch {
            source: source.unwrap_or(BatchSource::S3),
            items: batch.items,
            skipped: batch.skipped,
        })
    }

    fn parse_eventbridge(value: Value, input_prefix: &str) -> Result<Self, EventError> {
        let event: EventBridge = serde_json::from_value(value).map_err(malformed("EventBridge"))?;
        if event.source == "aws.s3" && event.detail_type == "Object Created" {
            let detail: S3Detail =
                serde_json::from_value(event.detail).map_err(malformed("EventBridge S3"))?;
            let mut batch = Batch {
                input_prefix,
                items: Vec::new(),
                skipped: Vec::new(),
            };
            batch.object(detail.bucket.name, detail.object.key, event.time, None);
            return Ok(Self::Batch {
                source: BatchSource::Eventbridge,
                items: batch.items,
                skipped: batch.skipped,
            });
        }
        Ok(Self::Other {
            kind: format!("eventbridge:{}/{}", event.source, event.detail_type),
        })
    }

    fn parse_http(value: Value) -> Result<HttpRequest, EventError> {
        if value.pointer("/requestContext/elb").is_some() {
            return Self::parse_alb(value);
        }
        let v2 = value.get("version").and_then(Value::as_str) == Some("2.0");
        let query = query_pairs(&value, "queryStringParameters");
        if v2 {
            let r: ApiGatewayV2httpRequest =
                serde_json::from_value(value).map_err(malformed("HTTP (payload 2.0)"))?;
            let mut headers = header_values(&r.headers);
            // Payload 2.0 moves the request's cookies out of its headers.
            if let Some(cookies) = r.cookies.filter(|c| !c.is_empty()) {
                headers.insert("cookie".to_owned(), cookies.join("; "));
            }
            return Ok(HttpRequest {
                format: HttpFormat::V2,
                method: r.request_context.http.method.to_string(),
                path: r.raw_path.unwrap_or_default(),
                query,
                headers,
                body: body(r.body, r.is_base64_encoded)?,
            });
        }
        let r: ApiGatewayProxyRequest =
            serde_json::from_value(value).map_err(malformed("API Gateway REST"))?;
        Ok(HttpRequest {
            format: HttpFormat::RestV1,
            method: r.http_method.to_string(),
            path: r.path.unwrap_or_default(),
            query,
            headers: header_values(&r.headers),
            body: body(r.body, r.is_base64_encoded)?,
        })
    }

    /// A load balancer passes the query as the caller wrote it (percent-encoded, where API
    /// Gateway decodes it), and with its target group's multi-value headers on, only the
    /// multi-value maps.
    fn parse_alb(value: Value) -> Result<HttpRequest, EventError> {
        let multi_value = value.get("multiValueHeaders").is_some_and(Value::is_object);
        let query = query_pairs(
            &value,
            if multi_value {
                "multiValueQueryStringParameters"
            } else {
                "queryStringParameters"
            },
        );
        let r: AlbTargetGroupRequest =
            serde_json::from_value(value).map_err(malformed("Application Load Balancer"))?;
        let headers = if multi_value {
            &r.multi_value_headers
        } else {
            &r.headers
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        Ok(HttpRequest {
            format: HttpFormat::Alb,
            method: r.http_method.to_string(),
            path: r.path.unwrap_or_default(),
            query: first_values(query.iter().map(|(k, v)| (decode(k), decode(v)))),
            headers: header_values(headers),
            body: body(r.body, r.is_base64_encoded)?,
        })
    }
}

/// The first value of each name.
fn first_values(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    pairs
        .filter(|(name, _)| seen.insert(name.clone()))
        .collect()
}

/// Headers with every value of a repeated name joined by `, `, HTTP's own rule for
/// combining them (a multi-value map repeats names).
fn header_values(map: &aws_lambda_events::http::HeaderMap) -> BTreeMap<String, String> {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in map {
        let value = String::from_utf8_lossy(value.as_bytes());
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|all| {
                all.push_str(", ");
                all.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    joined
}

/// The first value of each query parameter in the event's `field` (a name to a string, or
/// to a list of strings in the multi-value maps). Read from the JSON itself: the event
/// types' `QueryMap` panics when it iterates a parameter with an empty list, which a
/// caller can send.
fn query_pairs(event: &Value, field: &str) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = event.get(field) else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(name, value)| {
            let first = match value {
                Value::String(one) => Some(one.as_str()),
                Value::Array(many) => many.first().and_then(Value::as_str),
                _ => None,
            }?;
            Some((name.clone(), first.to_owned()))
        })
        .collect()
}

fn body(body: Option<String>, base64_encoded: bool) -> Result<Option<Vec<u8>>, EventError> {
    match body {
        None => Ok(None),
        Some(text) if base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Some)
            .map_err(EventError::Body),
        Some(text) => Ok(Some(text.into_bytes())),
    }
}

impl DirectInvoke {
    /// The decoded script (validated by [`Event::parse`]).
    pub fn script_bytes(&self) -> Option<Vec<u8>> {
        self.script.as_ref().and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
        })
    }
}

#[cfg(test)]
mod tests;
