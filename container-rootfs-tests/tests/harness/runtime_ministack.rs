//! End to end on a real local Lambda stand-in (ministack on 127.0.0.1:4566, started by
//! setup.sh): a `provided.al2023` function whose `bootstrap` is ours, reached the three ways
//! users reach it: a direct invoke with a script, an S3 upload into `input/` that must
//! produce `output/`, and an HTTP POST through API Gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use base64::Engine;
use common::lambda::{bootstrap_bin, shim_dir};
use common::work;
use serde_json::{Value, json};

const ENDPOINT: &str = "http://127.0.0.1:4566";
const IMAGE: &str = images::DEBIAN;

/// A function package whose `bootstrap` starts the bootstrap under test (copying 100 MB of
/// debug binary into every zip would only test zip).
fn package() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("bootstrap", options).unwrap();
    write!(
        zip,
        "#!/bin/sh\nexec {} \"$@\"\n",
        bootstrap_bin().display()
    )
    .unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
#[ignore = "needs the harness and ministack (make test)"]
fn s3_upload_direct_invoke_and_http_post_end_to_end() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(end_to_end());
}

async fn end_to_end() {
    let config = common::sdk_config(ENDPOINT, "us-east-1").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let lambda = aws_sdk_lambda::Client::new(&config);
    let apigw = aws_sdk_apigateway::Client::new(&config);
    let run = std::process::id();
    let (name, bucket) = (format!("scar-e2e-{run}"), format!("scar-e2e-{run}"));

    // The init script is what S3 and HTTP events run: upper-case the input into the output.
    let init = work().join(format!("e2e-init-{run}.sh"));
    std::fs::write(
        &init,
        "set -e\nout=\"$SCAR_OUTPUT_DIR/$(basename \"$SCAR_INPUT_FILE\").upper\"\ntr a-z A-Z < \"$SCAR_INPUT_FILE\" > \"$out\"\necho \"processed $(basename \"$SCAR_INPUT_FILE\")\"\ncat \"$out\"\n",
    )
    .unwrap();
    let env = aws_sdk_lambda::types::Environment::builder()
        .variables("SCAR_IMAGE", IMAGE)
        .variables("SCAR_INIT_SCRIPT", init.to_str().unwrap())
        .variables("SCAR_SHIM_DIR", shim_dir().to_str().unwrap())
        .variables(
            "SCAR_CACHE_DIR",
            work().join("cache-ministack").to_str().unwrap(),
        )
        .variables("SCAR_TIMEOUT_THRESHOLD", "5")
        .variables("AWS_ENDPOINT_URL", ENDPOINT)
        .variables("AWS_LAMBDA_LOG_LEVEL", "info")
        .build();
    let created = lambda
        .create_function()
        .function_name(&name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .role("arn:aws:iam::000000000000:role/scar-e2e")
        .handler("bootstrap")
        .timeout(120)
        .memory_size(512)
        .environment(env)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(Blob::new(package()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = created.function_arn().unwrap().to_owned();

    // 1. A direct invoke with a script.
    let script = base64::engine::general_purpose::STANDARD
        .encode("echo direct $REQUEST_ID | cut -c1-6; /usr/games/cowsay -f tux hi | head -1");
    let reply = lambda
        .invoke()
        .function_name(&name)
        .payload(Blob::new(json!({ "script": script }).to_string()))
        .send()
        .await
        .unwrap();
    assert!(reply.function_error().is_none(), "{:?}", reply.payload());
    let doc: Value = serde_json::from_slice(reply.payload().unwrap().as_ref()).unwrap();
    assert_eq!(doc["exit_code"], 0, "{doc}");
    assert_eq!(doc["output"], "direct\n ____\n");

    // 2. An S3 upload into input/ (and the folder placeholder, which must not fire a run).
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, LambdaFunctionConfiguration, NotificationConfiguration,
        NotificationConfigurationFilter, S3KeyFilter,
    };
    let rule = FilterRule::builder()
        .name(FilterRuleName::Prefix)
        .value("input/")
        .build();
    let trigger = LambdaFunctionConfiguration::builder()
        .lambda_function_arn(&arn)
        .events(Event::S3ObjectCreated)
        .filter(
            NotificationConfigurationFilter::builder()
                .key(S3KeyFilter::builder().filter_rules(rule).build())
                .build(),
        )
        .build()
        .unwrap();
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .lambda_function_configurations(trigger)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("input/")
        .body(Vec::new().into())
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("input/hello world.txt")
        .body(b"hello from s3\n".to_vec().into())
        .send()
        .await
        .unwrap();
    let key = "output/hello world.txt.upper";
    let started = Instant::now();
    let body = loop {
        if let Ok(object) = s3.get_object().bucket(&bucket).key(key).send().await {
            break object.body.collect().await.unwrap().into_bytes();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no {key} after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(&body[..], b"HELLO FROM S3\n");
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("output/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        [key],
        "the input/ placeholder must not have produced anything"
    );

    // 3. An HTTP POST through an API Gateway REST proxy integration.
    let api = apigw.create_rest_api().name(&name).send().await.unwrap();
    let api_id = api.id().unwrap().to_owned();
    let resources = apigw
        .get_resources()
        .rest_api_id(&api_id)
        .send()
        .await
        .unwrap();
    let root = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id())
        .unwrap()
        .to_owned();
    let resource = apigw
        .create_resource()
        .rest_api_id(&api_id)
        .parent_id(root)
        .path_part("launch")
        .send()
        .await
        .unwrap();
    let resource_id = resource.id().unwrap().to_owned();
    apigw
        .put_method()
        .rest_api_id(&api_id)
        .resource_id(&resource_id)
        .http_method("POST")
        .authorization_type("NONE")
        .send()
        .await
        .unwrap();
    apigw
        .put_integration()
        .rest_api_id(&api_id)
        .resource_id(&resource_id)
        .http_method("POST")
        .r#type(aws_sdk_apigateway::types::IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(format!(
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"
        ))
        .send()
        .await
        .unwrap();
    apigw
        .create_deployment()
        .rest_api_id(&api_id)
        .stage_name("prod")
        .send()
        .await
        .unwrap();
    let url = format!("{ENDPOINT}/restapis/{api_id}/prod/_user_request_/launch");
    let response = scar_image::http_client_builder()
        .build()
        .unwrap()
        .post(&url)
        .body("posted over http\n")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "processed body\nPOSTED OVER HTTP\n");

    let _ = lambda.delete_function().function_name(&name).send().await;
    let _ = std::fs::remove_file(init);
}
