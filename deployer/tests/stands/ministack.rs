//! End to end on ministack (127.0.0.1:4566, started by setup.sh), which really runs
//! functions: `init` with an image and the runtime in the package (the kit's test layer: the
//! debug bootstrap and the shims, zipped by `deployer layer build`), `run` with a script and
//! with a command, an upload into `input/` producing its output object, `invoke` over HTTP,
//! `log` and `rm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::time::{Duration, Instant};

use common::{MINISTACK, Stand, layer_zip, unique, work};

const IMAGE: &str = images::DEBIAN;

#[tokio::test]
#[ignore = "needs the harness and ministack (make test)"]
async fn init_run_upload_invoke_log_rm_on_a_local_lambda() {
    let stand = Stand::new(MINISTACK, "us-east-1").await;
    let role = stand.role().await;
    let (name, bucket, api) = (unique("e2e"), unique("e2e-data"), unique("e2e-api"));
    let init_script = stand.home.path().join("upper.sh");
    std::fs::write(
        &init_script,
        "set -e\nif [ -n \"$HTTP_QUERY_WHO\" ]; then echo \"hello $HTTP_QUERY_WHO ($HTTP_QUERY_N)\"; exit 0; fi\nout=\"$SCAR_OUTPUT_DIR/$(basename \"$SCAR_INPUT_FILE\").upper\"\ntr a-z A-Z < \"$SCAR_INPUT_FILE\" > \"$out\"\ncat \"$out\"\n",
    )
    .unwrap();
    let cache = work().join("cache-deployer-e2e");
    let ran = stand
        .deployer(&[
            "init",
            "-n",
            &name,
            "-i",
            IMAGE,
            "-s",
            init_script.to_str().unwrap(),
            "-t",
            "120",
            "-tt",
            "5",
            "-es",
            &bucket,
            "-api",
            &api,
            "--role",
            &role,
            "-e",
            "GREETING=hello from the container",
            "--runtime-in-package",
            "--layer-zip",
            layer_zip().to_str().unwrap(),
            "--function-env",
            &format!("AWS_ENDPOINT_URL={MINISTACK}"),
            "--function-env",
            &format!("SCAR_CACHE_DIR={}", cache.display()),
        ])
        .ok();
    let endpoint = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("endpoint  "))
        .unwrap()
        .to_owned();

    // run with a script: the first invocation pulls the image.
    let job = stand.home.path().join("job.sh");
    std::fs::write(
        &job,
        "echo \"$GREETING\"\n/usr/games/cowsay -f tux moo | head -2\n",
    )
    .unwrap();
    let ran = stand
        .deployer(&["run", "-n", &name, "-s", job.to_str().unwrap()])
        .ok();
    assert_eq!(
        ran.stdout, "hello from the container\n _____\n< moo >\n",
        "{ran:?}"
    );
    // run with a command; the container's exit status becomes the deployer's.
    let ran = stand.deployer(&[
        "run",
        "-n",
        &name,
        "--",
        "/bin/sh",
        "-c",
        "echo $0 args; exit 3",
        "two",
    ]);
    assert_eq!(
        (ran.status, ran.stdout.as_str()),
        (3, "two args\n"),
        "{ran:?}"
    );

    // An upload into input/ runs the init script; its output file lands in output/.
    stand
        .s3
        .put_object()
        .bucket(&bucket)
        .key("input/notes.txt")
        .body(b"abc def\n".to_vec().into())
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let produced = loop {
        match stand
            .s3
            .get_object()
            .bucket(&bucket)
            .key("output/notes.txt.upper")
            .send()
            .await
        {
            Ok(object) => break object.body.collect().await.unwrap().into_bytes(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            Err(e) => panic!("no output object: {e:?}"),
        }
    };
    assert_eq!(&produced[..], b"ABC DEF\n");

    // invoke: POST a file through API Gateway; the script's output comes back.
    let posted = stand.home.path().join("posted.txt");
    std::fs::write(&posted, "over http\n").unwrap();
    let ran = stand
        .deployer(&["invoke", "-n", &name, "-d", posted.to_str().unwrap()])
        .ok();
    assert_eq!(ran.stdout, "OVER HTTP\n", "{ran:?}");
    // invoke -p: SCAR's parameters, as the query string the script reads.
    let ran = stand
        .deployer(&[
            "invoke",
            "-n",
            &name,
            "-p",
            r#"{"who": "tux & co", "n": 2}"#,
        ])
        .ok();
    assert_eq!(ran.stdout, "hello tux & co (2)\n", "{ran:?}");
    let listed = stand.deployer(&["ls"]).ok().stdout;
    assert!(listed.contains(&endpoint), "{listed}");

    // log: Lambda's lines for these requests, and what the S3-triggered script printed
    // (its response went nowhere: the runtime wrote its output to the log as it ran).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = stand.deployer(&["log", "-n", &name]).ok().stdout;
        if log.contains("REPORT RequestId") && log.contains("\tABC DEF") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no REPORT line or no script output in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    stand.deployer(&["rm", "-n", &name]).ok();
    assert!(!stand.function_exists(&name).await);
    let apis = stand.apigw.get_rest_apis().send().await.unwrap();
    assert!(!apis.items().iter().any(|a| a.name() == Some(api.as_str())));
}

/// Reliability, issue #17 item 6: SCAR's event launcher over many objects on ministack. Every
/// object is processed exactly once (each run writes an output named after its input and its
/// request id, so a second run of one input shows), the launcher's summary adds up, and the
/// figures are printed. `LAUNCH_OBJECTS` sets the count: 100 in `make test`, 1,000 with
/// `make launch`.
#[tokio::test]
#[ignore = "needs the harness and ministack (make test)"]
async fn the_event_launcher_processes_every_object_exactly_once() {
    use futures_util::StreamExt as _;
    let objects: usize = std::env::var("LAUNCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let stand = Stand::new(MINISTACK, "us-east-1").await;
    let role = stand.role().await;
    let (name, bucket) = (unique("launch"), unique("launch-data"));
    stand
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let script = stand.home.path().join("copy.sh");
    std::fs::write(
        &script,
        "set -e\ncp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/$(basename \"$SCAR_INPUT_FILE\").$REQUEST_ID\"\n",
    )
    .unwrap();
    let cache = work().join("cache-deployer-launch");
    let ran_init = stand
        .init_packaged_with(
            &name,
            IMAGE,
            &role,
            &[
                "-s",
                script.to_str().unwrap(),
                "-t",
                "60",
                "--preheat",
                "--function-env",
                &format!("AWS_ENDPOINT_URL={MINISTACK}"),
                "--function-env",
                &format!("SCAR_CACHE_DIR={}", cache.display()),
            ],
        )
        .ok();
    // --preheat: the image is pulled before the launcher's first event.
    assert!(
        ran_init
            .stderr
            .contains(&format!("preheated {name}: the image is pulled and cached")),
        "{ran_init:?}"
    );
    let uploads = futures_util::stream::iter(0..objects)
        .map(|i| {
            let s3 = stand.s3.clone();
            let bucket = bucket.clone();
            async move {
                s3.put_object()
                    .bucket(&bucket)
                    .key(format!("input/object-{i:05}.txt"))
                    .body(format!("object {i}\n").into_bytes().into())
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>();
    uploads.await;

    let started = Instant::now();
    let ran = stand
        .deployer(&["run", "-n", &name, "-es", &bucket, "--concurrency", "32"])
        .ok();
    let launched = started.elapsed();
    let summary = format!(
        "1 event run synchronously, {} sent asynchronously, 0 failed",
        objects - 1
    );
    assert!(ran.stderr.contains(&summary), "{ran:?}");

    // Every input has exactly one output, with its content.
    let deadline = Instant::now() + Duration::from_secs(60 + objects as u64);
    let outputs = loop {
        let mut keys = Vec::new();
        let mut pages = stand
            .s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("output/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page.unwrap().contents() {
                keys.extend(object.key().map(str::to_owned));
            }
        }
        if keys.len() >= objects || Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let processed = started.elapsed();
    let mut per_input = std::collections::BTreeMap::<String, usize>::new();
    for key in &outputs {
        let input = key
            .strip_prefix("output/")
            .and_then(|k| k.split_once(".txt."))
            .map(|(stem, _)| stem.to_owned())
            .unwrap_or_else(|| panic!("unexpected output {key}"));
        *per_input.entry(input).or_default() += 1;
    }
    let missing: Vec<usize> = (0..objects)
        .filter(|i| !per_input.contains_key(&format!("object-{i:05}")))
        .collect();
    let twice: Vec<_> = per_input.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "| objects | launched in | all processed in | missing | processed twice |\n|---:|---:|---:|---:|---:|\n| {objects} | {:.1} s | {:.1} s | {} | {} |",
        launched.as_secs_f64(),
        processed.as_secs_f64(),
        missing.len(),
        twice.len()
    );
    assert!(missing.is_empty(), "never processed: {missing:?}");
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    let sample = &outputs[outputs.len() / 2];
    let body = stand.object(&bucket, sample).await;
    let index: usize = sample["output/object-".len()..]
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body, format!("object {index}\n").as_bytes());
    stand.deployer(&["rm", "-n", &name]).ok();
}

#[tokio::test]
#[ignore = "needs the harness and ministack (make test)"]
async fn a_definition_file_ships_its_extra_payload_sets_the_log_level_and_updates_in_place() {
    let stand = Stand::new(MINISTACK, "us-east-1").await;
    let role = stand.role().await;
    let name = unique("defs");
    let dir = stand.home.path();
    std::fs::create_dir_all(dir.join("payload/models")).unwrap();
    std::fs::write(dir.join("payload/models/weights.txt"), "0.5 0.25\n").unwrap();
    let cache = work().join("cache-deployer-e2e");
    let file = dir.join("functions.yaml");
    let write_file = |environment: &str, memory: u32| {
        std::fs::write(
            &file,
            format!(
                "functions:\n  {name}:\n    image: {IMAGE}\n    memory: {memory}\n    time: 120\n    \
                 log_level: INFO\n    extra_payload: payload\n    environment: {environment}\n    \
                 runtime_environment: {{AWS_ENDPOINT_URL: '{MINISTACK}', SCAR_CACHE_DIR: '{}'}}\n",
                cache.display()
            ),
        )
        .unwrap();
    };
    write_file("{A: one}", 256);
    let zip = layer_zip();
    let file_arg = file.to_str().unwrap();
    stand
        .deployer(&[
            "init",
            "-f",
            file_arg,
            "--role",
            &role,
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ])
        .ok();
    let config = stand
        .lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let logging = config.logging_config().unwrap();
    assert_eq!(
        logging.application_log_level().map(|l| l.as_str()),
        Some("INFO")
    );
    assert_eq!(logging.log_format().map(|f| f.as_str()), Some("JSON"));

    // The command reads the payload where $EXTRA_PAYLOAD says, inside the container.
    let job = dir.join("job.sh");
    std::fs::write(
        &job,
        "echo \"A=${A:-unset} B=${B:-unset}\"\ncat \"$EXTRA_PAYLOAD/models/weights.txt\"\n",
    )
    .unwrap();
    let ran = stand
        .deployer(&["run", "-f", file_arg, "-s", job.to_str().unwrap()])
        .ok();
    assert_eq!(ran.stdout, "A=one B=unset\n0.5 0.25\n", "{ran:?}");

    // The file changes: update -f brings the function to it, in place.
    write_file("{B: two}", 512);
    let updated = stand.deployer(&["update", "-f", file_arg]).ok();
    for said in [
        "memory 256 -> 512 MB",
        "CONT_VAR_B set to",
        "CONT_VAR_A removed",
    ] {
        assert!(updated.stdout.contains(said), "{said:?} not in {updated:?}");
    }
    let ran = stand
        .deployer(&["run", "-f", file_arg, "-s", job.to_str().unwrap()])
        .ok();
    assert_eq!(ran.stdout, "A=unset B=two\n0.5 0.25\n", "{ran:?}");
    // Nothing left to change is said, not refused.
    let again = stand.deployer(&["update", "-f", file_arg]).ok();
    assert_eq!(again.stdout, format!("{name}: unchanged\n"), "{again:?}");

    stand.deployer(&["rm", "-f", file_arg]).ok();
}

/// The AWS fault proxy in front of ministack (`scripts/aws_fault_proxy.py`).
const FAULTS: &str = "http://127.0.0.1:4567";

/// Invokes the AWS fault proxy logged for `invokes` (its request line): how many were
/// accepted (200 or 202) and how many throttled (429).
fn invokes_answered(invokes: &str) -> (usize, usize) {
    let log = std::fs::read_to_string(work().join("aws-fault-proxy.requests")).unwrap();
    let count = |status: &str| {
        log.lines()
            .filter(|l| l.starts_with(invokes) && l.ends_with(status))
            .count()
    };
    (count(" 202") + count(" 200"), count(" 429"))
}

/// An image staged and read through S3 that throttles: the proxy answers the first two
/// requests for every object 503 SlowDown (the staging's uploads included). The frames'
/// ranged GETs are retried and the pull gives the tree a registry pull gives.
#[tokio::test]
#[ignore = "needs the harness and ministack (make test)"]
async fn frames_read_through_s3_throttling_give_the_registry_tree() {
    let through_faults = Stand::new(FAULTS, "us-east-1").await;
    let bucket = unique("slowdown-staged");
    through_faults
        .deployer(&["stage", "-n", "glibc", "-i", images::GLIBC, "-db", &bucket])
        .ok();
    let (by_frames, from_registry) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let framed = through_faults.pull_with_runtime(
        &format!("s3://{bucket}/scar-rs/shared-images/glibc/"),
        by_frames.path(),
    );
    let eager = through_faults.pull_with_runtime(images::GLIBC, from_registry.path());
    common::assert_same(
        "staged by frames through throttling against the registry",
        &common::tree(&framed, Some(&framed)),
        &common::tree(&eager, Some(&eager)),
    );
    let log = std::fs::read_to_string(work().join("aws-fault-proxy.requests")).unwrap();
    let throttled_reads = log
        .lines()
        .filter(|l| l.starts_with(&format!("GET /{bucket}/")) && l.ends_with(" 503"))
        .count();
    // index.json, the manifest, the config, and per layer its frame index and its frames.
    assert!(
        throttled_reads >= 2 * 5,
        "{throttled_reads} throttled reads:\n{log}"
    );
}

#[tokio::test]
#[ignore = "needs the harness and ministack (make test)"]
async fn throttled_invokes_are_retried_and_what_stays_throttled_is_named() {
    use futures_util::StreamExt as _;
    let objects = 24;
    let stand = Stand::new(MINISTACK, "us-east-1").await;
    let role = stand.role().await;
    // The proxy throttles every invoke of a throttled-* function twice.
    let (name, bucket) = (unique("throttled"), unique("throttle-data"));
    stand
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let script = stand.home.path().join("true.sh");
    std::fs::write(&script, "true\n").unwrap();
    let cache = work().join("cache-deployer-launch");
    stand
        .init_packaged_with(
            &name,
            IMAGE,
            &role,
            &[
                "-s",
                script.to_str().unwrap(),
                "--function-env",
                &format!("AWS_ENDPOINT_URL={MINISTACK}"),
                "--function-env",
                &format!("SCAR_CACHE_DIR={}", cache.display()),
            ],
        )
        .ok();
    let keys: Vec<String> = (0..objects)
        .map(|i| format!("input/object-{i:03}.txt"))
        .chain(["input/zz-always-throttled.txt".to_owned()])
        .collect();
    futures_util::stream::iter(keys.clone())
        .map(|key| {
            let (s3, bucket) = (stand.s3.clone(), bucket.clone());
            async move {
                s3.put_object()
                    .bucket(&bucket)
                    .key(key)
                    .body(b"x\n".to_vec().into())
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;

    let through_faults = Stand::new(FAULTS, "us-east-1").await;
    let failed_keys = stand.home.path().join("failed-keys");
    let launch = |extra: &[&str]| {
        let failed = failed_keys.to_str().unwrap();
        let mut args = vec!["run", "-n", &name, "-es", &bucket, "--failed-keys", failed];
        args.extend(extra);
        through_faults.deployer(&args)
    };
    let ran = launch(&["--concurrency", "16"]);
    assert_eq!(ran.status, 1, "one event stayed throttled: {ran:?}");
    let summary = format!(
        "1 event run synchronously, {} sent asynchronously, 1 failed",
        objects - 1
    );
    assert!(ran.stderr.contains(&summary), "{ran:?}");
    assert!(
        ran.stderr
            .contains("failed: input/zz-always-throttled.txt:")
            && ran.stderr.contains("TooManyRequests"),
        "{ran:?}"
    );
    // Every other event was throttled twice, then accepted: each was retried, none dropped.
    // Two 429s for each accepted event, and the SDK's three attempts for the one that stays
    // throttled.
    let invokes = format!("POST /2015-03-31/functions/{name}/invocations");
    assert_eq!(invokes_answered(&invokes), (objects, 2 * objects + 3));
    assert_eq!(
        std::fs::read_to_string(&failed_keys).unwrap(),
        "input/zz-always-throttled.txt\n"
    );

    // Re-sending only what failed (plus one key that went through and one that is not there):
    // exactly those events are sent, and what fails again is written again.
    let mut keys = std::fs::read_to_string(&failed_keys).unwrap();
    keys.push_str("input/object-000.txt\n\ninput/not-there.txt\n");
    let keys_file = stand.home.path().join("keys");
    std::fs::write(&keys_file, keys).unwrap();
    let ran = launch(&["--keys", keys_file.to_str().unwrap()]);
    assert_eq!(ran.status, 1, "{ran:?}");
    assert!(
        ran.stderr
            .contains("1 event run synchronously, 0 sent asynchronously, 2 failed"),
        "{ran:?}"
    );
    let mut failed: Vec<String> = std::fs::read_to_string(&failed_keys)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        ["input/not-there.txt", "input/zz-always-throttled.txt"]
    );
    assert_eq!(
        invokes_answered(&invokes),
        (objects + 1, 2 * objects + 3 + 3)
    );
    stand.deployer(&["rm", "-n", &name]).ok();
}

/// In an account where others deploy, a function can be deleted between `ls`'s ListFunctions
/// and its ListTags: the proxy answers ListTags of every `vanished-*` function 404, as Lambda
/// does then. `ls` passes over it and lists the rest.
#[tokio::test]
#[ignore = "needs the harness and ministack (make test)"]
async fn ls_passes_over_a_function_deleted_while_it_lists() {
    let stand = Stand::new(MINISTACK, "us-east-1").await;
    let role = stand.role().await;
    let zip = std::fs::read(layer_zip()).unwrap();
    let (vanished, listed) = (unique("vanished"), unique("listed"));
    for name in [&vanished, &listed] {
        stand
            .lambda
            .create_function()
            .function_name(name)
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .role(&role)
            .handler("x")
            .tags("scar-rs:managed-by", "scar-rs-deployer")
            .tags("scar-rs:image", IMAGE)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(zip.clone()))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let through_faults = Stand::new(FAULTS, "us-east-1").await;
    let ran = through_faults.deployer(&["ls", "--json"]).ok();
    let functions: Vec<serde_json::Value> = serde_json::from_str(&ran.stdout).unwrap();
    let names: Vec<&str> = functions
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(names.contains(&listed.as_str()), "{ran:?}");
    assert!(!names.contains(&vanished.as_str()), "{ran:?}");
    // The 404 was met, not avoided: ls asked for the vanished function's tags.
    let log = std::fs::read_to_string(work().join("aws-fault-proxy.requests")).unwrap();
    assert!(
        log.lines().any(|l| l.starts_with("GET /2017-03-31/tags/")
            && l.contains(&vanished)
            && l.ends_with(" 404")),
        "{log}"
    );
    for name in [&vanished, &listed] {
        stand
            .lambda
            .delete_function()
            .function_name(name)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
#[ignore = "needs the harness and ministack (make test)"]
async fn a_two_function_pipeline_from_a_file_processes_a_put_file_through_both() {
    let stand = Stand::new(MINISTACK, "us-east-1").await;
    let role = stand.role().await;
    let (first, second, bucket) = (unique("upper"), unique("tag"), unique("pipeline"));
    let dir = stand.home.path();
    std::fs::write(
        dir.join("upper.sh"),
        "tr a-z A-Z < \"$SCAR_INPUT_FILE\" > \"$SCAR_OUTPUT_DIR/$(basename \"$SCAR_INPUT_FILE\")\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("tag.sh"),
        "sed 's/^/second: /' \"$SCAR_INPUT_FILE\" > \"$SCAR_OUTPUT_DIR/$(basename \"$SCAR_INPUT_FILE\")\"\n",
    )
    .unwrap();
    let runtime = format!(
        "{{AWS_ENDPOINT_URL: '{MINISTACK}', SCAR_CACHE_DIR: '{}'}}",
        work().join("cache-deployer-e2e").display()
    );
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "functions:\n  {first}:\n    image: {IMAGE}\n    init_script: upper.sh\n    runtime_environment: {runtime}\n    \
             s3: {{input_bucket: {bucket}, input_folder: in/, output_folder: mid/}}\n  {second}:\n    image: {IMAGE}\n    \
             init_script: tag.sh\n    runtime_environment: {runtime}\n    s3: {{input_bucket: {bucket}, input_folder: mid/, output_folder: out/}}\n"
        ),
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let zip = layer_zip();
    stand
        .deployer(&[
            "init",
            "-f",
            file_arg,
            "--role",
            &role,
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ])
        .ok();

    // put into the first function's input: its output is the second's input.
    let local = dir.join("notes.txt");
    std::fs::write(&local, "hello pipeline\n").unwrap();
    stand
        .deployer(&[
            "put",
            "-b",
            &bucket,
            "--bf",
            "in",
            "-p",
            local.to_str().unwrap(),
        ])
        .ok();
    let outputs = dir.join("outputs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        stand
            .deployer(&[
                "get",
                "-b",
                &bucket,
                "--bf",
                "out",
                "-p",
                outputs.to_str().unwrap(),
            ])
            .ok();
        match std::fs::read_to_string(outputs.join("notes.txt")) {
            Ok(text) => break text,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the pipeline produced nothing in out/: {e}"),
        }
    };
    assert_eq!(got, "second: HELLO PIPELINE\n");
    // The intermediate object is there too, as the first function wrote it.
    let middle = stand.object(&bucket, "mid/notes.txt").await;
    assert_eq!(&middle[..], b"HELLO PIPELINE\n");

    stand.deployer(&["rm", "-f", file_arg]).ok();
    // Both functions are gone; their triggers with them (the bucket, data, stays).
    for name in [&first, &second] {
        assert!(!stand.function_exists(name).await, "{name} left");
    }
    assert!(stand.notification_ids(&bucket).await.is_empty());
}
