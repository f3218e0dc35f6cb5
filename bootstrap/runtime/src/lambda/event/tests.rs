use serde_json::json;

use super::*;

/// A sample event from `examples/events/aws/`, as AWS documents it.
fn sample(name: &str) -> Value {
    let path = format!(
        "{}/../../examples/events/aws/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn batch(event: Value) -> (BatchSource, Vec<Item>, Vec<String>) {
    match Event::parse(event, "input/").unwrap() {
        Event::Batch {
            source,
            items,
            skipped,
        } => (source, items, skipped),
        other => panic!("not a batch: {other:?}"),
    }
}

fn s3_record(key: &str) -> Value {
    json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
           "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 3}}})
}

fn object(bucket: &str, key: &str) -> Input {
    Input::Object(S3Object {
        bucket: bucket.into(),
        key: key.into(),
    })
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
    let err = Event::parse(json!({"script": "ZWNobw==", "scirpt": "x"}), "").unwrap_err();
    assert!(err.to_string().contains("unknown field `scirpt`"), "{err}");
}

#[test]
fn any_other_json_value_is_one_run_with_the_event_file() {
    for event in [
        json!({"scirpt": "x"}),
        json!({"bucket": "b", "n": 3}),
        json!([1, "two"]),
        json!("a string"),
        json!(42),
        json!(null),
    ] {
        assert!(matches!(Event::parse(event, ""), Ok(Event::Other { kind }) if kind == "json"));
    }
    let Event::Other { kind } = Event::parse(sample("scheduled"), "input/").unwrap() else {
        panic!("a scheduled event is one run");
    };
    assert_eq!(kind, "eventbridge:aws.events/Scheduled Event");
}

#[test]
fn s3_notifications_as_aws_documents_them() {
    let (source, items, skipped) = batch(sample("s3-put"));
    assert_eq!(source, BatchSource::S3);
    assert!(skipped.is_empty());
    assert_eq!(
        items,
        [Item {
            name: "s3://DOC-EXAMPLE-BUCKET/input/b21b84d653bb07b05b1e6b33684dc11b".into(),
            input: object(
                "DOC-EXAMPLE-BUCKET",
                "input/b21b84d653bb07b05b1e6b33684dc11b"
            ),
            event_time: Some("2019-09-03T19:37:27.192Z".into()),
            sqs_message_id: None,
        }]
    );
}

#[test]
fn every_s3_record_decoded_and_placeholders_skipped() {
    let event = json!({"Records": [s3_record("input/"), s3_record("input/my+photo%281%29.jpg"), s3_record("input/b.txt")]});
    let (_, items, skipped) = batch(event);
    assert_eq!(
        items.iter().map(|i| i.input.clone()).collect::<Vec<_>>(),
        [
            object("b", "input/my photo(1).jpg"),
            object("b", "input/b.txt")
        ]
    );
    assert_eq!(skipped, ["input/"]);
    let mut other = s3_record("x");
    other["eventSource"] = json!("aws:kinesis");
    assert!(
        matches!(Event::parse(json!({"Records": [other]}), ""), Err(EventError::Source(s)) if s == "aws:kinesis")
    );
    let err = Event::parse(json!({"Records": "none"}), "").unwrap_err();
    assert!(err.to_string().contains("must be an array"), "{err}");
}

#[test]
fn sqs_messages_are_one_run_each_with_their_ids() {
    let (source, items, _) = batch(sample("sqs"));
    assert_eq!(source, BatchSource::Sqs);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].input, Input::Message(b"Test message.".to_vec()));
    assert_eq!(
        items[1].sqs_message_id.as_deref(),
        Some("2e1424d4-f796-459a-8184-9c92662be6da")
    );
    assert_eq!(items[0].event_time.as_deref(), Some("1545082649183"));
    let mut broken = sample("sqs");
    broken["Records"][0]
        .as_object_mut()
        .unwrap()
        .remove("messageId");
    let err = Event::parse(broken, "").unwrap_err();
    assert!(err.to_string().contains("messageId"), "{err}");
}

#[test]
fn sns_notifications_are_one_run_each() {
    let (source, items, _) = batch(sample("sns"));
    assert_eq!(source, BatchSource::Sns);
    assert_eq!(items[0].name, "95df01b4-ee98-5cb9-9903-4c221d41eb5e");
    assert_eq!(items[0].input, Input::Message(b"Hello from SNS!".to_vec()));
    assert_eq!(
        items[0].event_time.as_deref(),
        Some("2019-01-02T12:45:07.000Z")
    );
}

#[test]
fn s3_notifications_inside_sqs_and_sns_are_their_objects() {
    let notification = sample("s3-put").to_string();
    let mut sqs = sample("sqs");
    sqs["Records"][0]["body"] = json!(notification);
    sqs["Records"][1]["body"] =
        json!(json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}).to_string());
    let (_, items, skipped) = batch(sqs);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        items[0].input,
        object(
            "DOC-EXAMPLE-BUCKET",
            "input/b21b84d653bb07b05b1e6b33684dc11b"
        )
    );
    assert_eq!(
        items[0].sqs_message_id.as_deref(),
        Some("059f36b4-87a3-44ab-83d2-661975830a7d"),
        "a failed object retries its message"
    );
    assert_eq!(skipped.len(), 1, "the S3 test event");

    let mut sns = sample("sns");
    sns["Records"][0]["Sns"]["Message"] = json!(notification);
    let (_, items, _) = batch(sns);
    assert_eq!(
        items[0].input,
        object(
            "DOC-EXAMPLE-BUCKET",
            "input/b21b84d653bb07b05b1e6b33684dc11b"
        )
    );

    // SNS delivered to SQS (not raw): the SNS envelope is the SQS body.
    let envelope = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "t",
                          "Message": notification, "Timestamp": "2024-01-01T00:00:00Z"});
    let mut sqs = sample("sqs");
    sqs["Records"][0]["body"] = json!(envelope.to_string());
    let (_, items, _) = batch(sqs);
    assert_eq!(
        items[0].input,
        object(
            "DOC-EXAMPLE-BUCKET",
            "input/b21b84d653bb07b05b1e6b33684dc11b"
        )
    );
    assert_eq!(
        items[0].event_time.as_deref(),
        Some("2019-09-03T19:37:27.192Z"),
        "the S3 record's own time"
    );
}

#[test]
fn eventbridge_object_created_is_an_s3_object() {
    let (source, items, _) = batch(sample("eventbridge-s3-object-created"));
    assert_eq!(source, BatchSource::Eventbridge);
    assert_eq!(
        items[0].input,
        object("DOC-EXAMPLE-BUCKET1", "input/example key"),
        "EventBridge keys are not URL-encoded"
    );
    let mut broken = sample("eventbridge-s3-object-created");
    broken["detail"].as_object_mut().unwrap().remove("bucket");
    let err = Event::parse(broken, "").unwrap_err();
    assert!(err.to_string().contains("bucket"), "{err}");
}

#[test]
fn http_events_of_both_formats() {
    let v1 = json!({"httpMethod": "POST", "path": "/launch", "requestContext": {"httpMethod": "POST"},
                    "queryStringParameters": {"size": "64"}, "body": "aGk=", "isBase64Encoded": true,
                    "headers": {"Content-Type": "text/plain"}});
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
    assert_eq!((h.method.as_str(), h.path.as_str()), ("POST", "/launch"));
    assert_eq!(h.headers["content-type"], "text/plain");
    let v2 = json!({"version": "2.0", "routeKey": "$default", "rawPath": "/x", "rawQueryString": "",
                    "requestContext": {"http": {"method": "PUT", "path": "/x"}}, "body": "text body", "isBase64Encoded": false});
    let Event::Http(h) = Event::parse(v2, "").unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            h.format,
            h.body.as_deref(),
            h.method.as_str(),
            h.path.as_str()
        ),
        (HttpFormat::V2, Some(&b"text body"[..]), "PUT", "/x")
    );
    // Payload 2.0 carries cookies beside the headers; the command sees one cookie header.
    let with_cookies = json!({"version": "2.0", "rawPath": "/", "cookies": ["a=1", "b=2"],
                              "requestContext": {"http": {"method": "GET"}}});
    let Event::Http(h) = Event::parse(with_cookies, "").unwrap() else {
        panic!()
    };
    assert_eq!(h.headers["cookie"], "a=1; b=2");
}

#[test]
fn a_query_parameter_with_no_value_or_several_is_not_a_panic() {
    // The event types' QueryMap panics when it iterates an empty list (found by fuzzing).
    for event in [
        json!({"httpMethod": "GET", "path": "/", "requestContext": {"httpMethod": "GET"},
               "queryStringParameters": {"k": [], "a": ["1", "2"]}}),
        json!({"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "GET"}},
               "queryStringParameters": {"k": [], "a": ["1", "2"]}}),
        json!({"httpMethod": "GET", "path": "/", "requestContext": {"elb": {}},
               "multiValueHeaders": {}, "multiValueQueryStringParameters": {"k": [], "a": ["1", "2"]}}),
    ] {
        let Event::Http(h) = Event::parse(event.clone(), "").unwrap() else {
            panic!("{event}")
        };
        assert_eq!(h.query, [("a".to_owned(), "1".to_owned())], "{event}");
    }
    let number = json!({"httpMethod": "GET", "path": "/", "requestContext": {"httpMethod": "GET"},
                        "queryStringParameters": {"n": 3}});
    let err = Event::parse(number, "").unwrap_err();
    assert!(
        err.to_string().contains("malformed API Gateway REST event"),
        "{err}"
    );
}

#[test]
fn load_balancer_events_as_aws_documents_them() {
    let Event::Http(h) = Event::parse(sample("alb"), "").unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            h.format,
            h.method.as_str(),
            h.path.as_str(),
            h.body.as_deref()
        ),
        (HttpFormat::Alb, "GET", "/lambda", Some(&b""[..]))
    );
    assert_eq!(h.query, [("query".to_owned(), "1234ABCD".to_owned())]);
    assert_eq!(h.headers["x-forwarded-for"], "72.12.164.125");
    assert_eq!(h.headers.len(), 12);

    // Multi-value headers on: only the multi-value maps, a repeated header's values joined,
    // a repeated parameter's first value.
    let Event::Http(h) = Event::parse(sample("alb-multi-value"), "").unwrap() else {
        panic!()
    };
    assert_eq!(
        (h.format, h.path.as_str(), h.body.as_deref()),
        (HttpFormat::Alb, "/", Some(&b"request_body"[..]))
    );
    assert_eq!(h.query, [("myKey".to_owned(), "val1".to_owned())]);
    assert_eq!(h.headers["cookie"], "name1=value1, name2=value2");
    assert_eq!(h.headers["content-type"], "text/plain");

    // A load balancer does not decode the query, as API Gateway does.
    let mut encoded = sample("alb");
    encoded["queryStringParameters"] = json!({"na%20me": "a%2Fb+c%ZZ"});
    let Event::Http(h) = Event::parse(encoded, "").unwrap() else {
        panic!()
    };
    assert_eq!(h.query, [("na me".to_owned(), "a/b+c%ZZ".to_owned())]);

    let mut bad = sample("alb");
    bad["body"] = json!("%%%");
    bad["isBase64Encoded"] = json!(true);
    let err = Event::parse(bad, "").unwrap_err();
    assert!(err.to_string().contains("isBase64Encoded"), "{err}");
    let mut no_method = sample("alb");
    no_method.as_object_mut().unwrap().remove("httpMethod");
    let err = Event::parse(no_method, "").unwrap_err();
    assert!(
        err.to_string()
            .contains("malformed Application Load Balancer event"),
        "{err}"
    );
}

/// Fuzzing (issue #17): JSON trees built from the field names and values of every event
/// source, mixed with noise, and mutations of AWS's own samples. `Event::parse` classifies
/// each or refuses it with an error; it never panics. `PROPTEST_CASES` raises the cases.
mod fuzz {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::{Event, sample};

    const KEYS: &[&str] = &[
        "Records",
        "eventSource",
        "EventSource",
        "eventName",
        "s3",
        "bucket",
        "name",
        "object",
        "key",
        "size",
        "body",
        "messageId",
        "receiptHandle",
        "Sns",
        "Message",
        "MessageId",
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "requestContext",
        "http",
        "method",
        "path",
        "headers",
        "queryStringParameters",
        "isBase64Encoded",
        "httpMethod",
        "resource",
        "script",
        "cmd_args",
        "env",
        "source",
        "detail-type",
        "detail",
        "time",
        "id",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop::sample::select(vec![
                "aws:s3",
                "aws:sqs",
                "aws:sns",
                "aws:kinesis",
                "2.0",
                "1.0",
                "POST",
                "Object Created",
                "aws.s3",
                "%%%",
                "ZWNobyBoaQ==",
                "input/x",
                "ObjectCreated:Put"
            ])
            .prop_map(|s| Value::String(s.to_owned())),
            ".{0,16}".prop_map(Value::String),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                    |pairs| {
                        Value::Object(
                            pairs
                                .into_iter()
                                .map(|(k, v)| (k.to_owned(), v))
                                .collect::<Map<_, _>>(),
                        )
                    }
                ),
            ]
        })
    }

    fn cases(default: u32) -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default);
        ProptestConfig {
            cases,
            ..ProptestConfig::default()
        }
    }

    /// Replaces the value at a pseudo-random path of `event` with `with`.
    fn mutate(event: &mut Value, choice: usize, with: Value) {
        if choice.is_multiple_of(3) {
            *event = with;
            return;
        }
        match event {
            Value::Object(map) if !map.is_empty() => {
                let n = map.len();
                if let Some(child) = map.values_mut().nth(choice % n) {
                    mutate(child, choice / 3, with);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let n = items.len();
                mutate(&mut items[choice % n], choice / 3, with);
            }
            _ => *event = with,
        }
    }

    proptest! {
        #![proptest_config(cases(3000))]

        #[test]
        fn generated_events_are_classified_or_refused(event in tree()) {
            let _ = Event::parse(event, "input/");
        }

        #[test]
        fn mutated_aws_samples_are_classified_or_refused(
            which in prop::sample::select(vec!["s3-put", "sqs", "sns", "eventbridge-s3-object-created", "scheduled", "alb", "alb-multi-value"]),
            choice in any::<usize>(),
            with in tree(),
        ) {
            let mut event = sample(which);
            mutate(&mut event, choice, with);
            let _ = Event::parse(event, "input/");
        }
    }
}
