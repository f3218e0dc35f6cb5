//! What an invocation asks for, from its event JSON: a direct invoke (SCAR's `script`,
//! `cmd_args`, `env`), S3 `ObjectCreated` records, or an HTTP request from API Gateway
//! (REST v1, HTTP API v2) or a Function URL (the v2 format).

use std::collections::BTreeMap;

use aws_lambda_events::event::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// A malformed or unsupported event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not a JSON object.
    #[error("the event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// The event has the shape of a kind but does not parse as it.
    #[error("malformed {kind} event: {reason}")]
    Malformed {
        /// Which kind it looked like.
        kind: &'static str,
        /// serde's message, naming the field.
        reason: String,
    },
    /// Records from a source other than S3.
    #[error("unsupported event source {0:?}: only aws:s3 records are handled")]
    Source(String),
    /// `script` is not base64.
    #[error("\"script\" must be a base64-encoded shell script: {0}")]
    Script(base64::DecodeError),
    /// An HTTP body marked base64 is not.
    #[error("the HTTP body is marked isBase64Encoded but is not base64: {0}")]
    Body(base64::DecodeError),
}

/// SCAR's direct invoke payload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectInvoke {
    /// A base64 shell script, run with `/bin/sh`.
    pub script: Option<String>,
    /// The command's arguments (after the image's Entrypoint).
    pub cmd_args: Option<Vec<String>>,
    /// Variables for the container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

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
}

/// An HTTP request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// How to answer.
    pub format: HttpFormat,
    /// The request body, decoded.
    pub body: Option<Vec<u8>>,
    /// Query parameters (the first value of each), which become container variables.
    pub query: Vec<(String, String)>,
}

/// What an invocation asks for.
#[derive(Debug)]
pub enum Event {
    /// A direct invoke.
    Direct(DirectInvoke),
    /// S3 records (placeholders already dropped), and how many placeholders there were.
    S3 {
        /// The objects to process, in order.
        objects: Vec<S3Object>,
        /// Folder placeholder keys that were skipped.
        skipped: Vec<String>,
    },
    /// An HTTP request.
    Http(HttpRequest),
}

/// The fields of an S3 notification that matter. Not `aws_lambda_events`' `S3Event`: that
/// requires every field of a real notification (`eventTime`, `userIdentity`…), and SCAR's
/// event launcher and users' test events carry only these.
#[derive(Debug, Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    #[serde(default)]
    event_source: String,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: S3Named,
    object: S3Key,
}

#[derive(Debug, Deserialize)]
struct S3Named {
    name: String,
}

#[derive(Debug, Deserialize)]
struct S3Key {
    key: String,
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

impl Event {
    /// Classifies and parses an event.
    pub fn parse(value: Value, input_prefix: &str) -> Result<Self, EventError> {
        let Value::Object(map) = &value else {
            return Err(EventError::NotAnObject(match value {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }));
        };
        if map.contains_key("Records") {
            return Self::parse_s3(value, input_prefix);
        }
        if map.contains_key("requestContext") {
            let v2 = map.get("version").and_then(Value::as_str) == Some("2.0");
            // Both formats carry the same three things; only their envelopes differ.
            let (format, text, base64_encoded, query) = if v2 {
                let r: ApiGatewayV2httpRequest =
                    serde_json::from_value(value).map_err(malformed("HTTP (payload 2.0)"))?;
                (
                    HttpFormat::V2,
                    r.body,
                    r.is_base64_encoded,
                    r.query_string_parameters,
                )
            } else {
                let r: ApiGatewayProxyRequest =
                    serde_json::from_value(value).map_err(malformed("API Gateway REST"))?;
                (
                    HttpFormat::RestV1,
                    r.body,
                    r.is_base64_encoded,
                    r.query_string_parameters,
                )
            };
            let query = query
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            return Ok(Self::Http(HttpRequest {
                format,
                body: body(text, base64_encoded)?,
                query,
            }));
        }
        let direct: DirectInvoke =
            serde_json::from_value(value).map_err(malformed("direct invoke"))?;
        if let Some(script) = &direct.script {
            base64::engine::general_purpose::STANDARD
                .decode(script.trim())
                .map_err(EventError::Script)?;
        }
        Ok(Self::Direct(direct))
    }

    fn parse_s3(value: Value, input_prefix: &str) -> Result<Self, EventError> {
        let event: S3Notification = serde_json::from_value(value).map_err(malformed("S3"))?;
        let mut objects = Vec::new();
        let mut skipped = Vec::new();
        for record in event.records {
            if record.event_source != "aws:s3" {
                return Err(EventError::Source(record.event_source));
            }
            let key = decode_key(&record.s3.object.key);
            if is_placeholder(&key, input_prefix) {
                skipped.push(key);
            } else {
                objects.push(S3Object {
                    bucket: record.s3.bucket.name,
                    key,
                });
            }
        }
        Ok(Self::S3 { objects, skipped })
    }
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
mod tests {
    use super::*;
    use serde_json::json;

    fn s3_record(key: &str) -> Value {
        json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
               "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 3}}})
    }

    #[test]
    fn direct_invokes() {
        let Event::Direct(d) = Event::parse(json!({}), "input/").unwrap() else {
            panic!()
        };
        assert!(d.script.is_none() && d.cmd_args.is_none());
        let e = Event::parse(
            json!({"script": "ZWNobyBoaQo=", "env": {"A": "1"}}),
            "input/",
        )
        .unwrap();
        let Event::Direct(d) = e else { panic!() };
        assert_eq!(d.script_bytes().unwrap(), b"echo hi\n");
        assert_eq!(d.env["A"], "1");
        let err = Event::parse(json!({"script": "not base64!"}), "").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let err = Event::parse(json!({"cmd_args": "ls -l"}), "").unwrap_err();
        assert!(
            err.to_string().starts_with("malformed direct invoke event"),
            "{err}"
        );
        let err = Event::parse(json!({"scirpt": "x"}), "").unwrap_err();
        assert!(err.to_string().contains("unknown field `scirpt`"), "{err}");
        assert!(matches!(
            Event::parse(json!([1]), ""),
            Err(EventError::NotAnObject("an array"))
        ));
    }

    #[test]
    fn every_s3_record_decoded_and_placeholders_skipped() {
        let event = json!({"Records": [s3_record("input/"), s3_record("input/my+photo%281%29.jpg"), s3_record("input/b.txt")]});
        let Event::S3 { objects, skipped } = Event::parse(event, "input/").unwrap() else {
            panic!()
        };
        assert_eq!(
            objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["input/my photo(1).jpg", "input/b.txt"]
        );
        assert_eq!(skipped, ["input/"]);
        let mut other = s3_record("x");
        other["eventSource"] = json!("aws:sqs");
        assert!(
            matches!(Event::parse(json!({"Records": [other]}), ""), Err(EventError::Source(s)) if s == "aws:sqs")
        );
    }

    #[test]
    fn http_events_of_both_formats() {
        let v1 = json!({"httpMethod": "POST", "path": "/launch", "requestContext": {"httpMethod": "POST"},
                        "queryStringParameters": {"size": "64"}, "body": "aGk=", "isBase64Encoded": true, "headers": {}});
        let Event::Http(h) = Event::parse(v1, "").unwrap() else {
            panic!()
        };
        assert_eq!(
            (h.format, h.body.as_deref(), h.query.as_slice()),
            (
                HttpFormat::RestV1,
                Some(&b"hi"[..]),
                &[("size".to_owned(), "64".to_owned())][..]
            )
        );
        let v2 = json!({"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
                        "requestContext": {"http": {"method": "POST", "path": "/"}}, "body": "text body", "isBase64Encoded": false});
        let Event::Http(h) = Event::parse(v2, "").unwrap() else {
            panic!()
        };
        assert_eq!(
            (h.format, h.body.as_deref()),
            (HttpFormat::V2, Some(&b"text body"[..]))
        );
    }
}
