//! Every deployer command against moto server (the AWS control plane on 127.0.0.1:5001,
//! started by setup.sh), each result read back through separate SDK clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scar_test_kit as common;
use scar_test_kit::images;

use std::collections::HashMap;

use common::{MOTO, Stand, layer_zip, unique};

const IMAGE: &str = images::DEBIAN;

#[test]
fn every_command_has_help_naming_scars_flags() {
    let stand = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Stand::new(MOTO, "us-east-1"));
    for (command, fragments) in [
        (
            &[][..],
            &[
                "layer", "init", "update", "run", "invoke", "ls", "log", "rm", "put", "get",
                "stage",
            ][..],
        ),
        (&["layer"], &["build", "publish"]),
        (
            &["layer", "build"],
            &["--bootstrap", "--shim-dir", "--output"],
        ),
        (
            &["layer", "publish"],
            &["--arch", "--public", "--principal"],
        ),
        (
            &["init"],
            &[
                "SCAR: -if",
                "SCAR: -f",
                "SCAR: -tt",
                "SCAR: -es",
                "SCAR: -api",
                "SCAR: -db",
                "SCAR: -p",
                "SCAR: -ep",
                "SCAR: -ll",
                "--runtime-in-package",
                "--ephemeral-storage",
            ],
        ),
        (
            &["run"],
            &["SCAR: -es", "SCAR: -f", "--async", "--json", "[CMD]..."],
        ),
        (&["invoke"], &["--data-binary", "--async", "SCAR: -p"]),
        (&["ls"], &["--json", "SCAR: ls -b", "SCAR: -bf"]),
        (&["put"], &["--bucket", "--path", "SCAR: -bf"]),
        (&["get"], &["--bucket", "--path", "SCAR: -bf"]),
        (&["log"], &["SCAR: -ls", "SCAR: -ri"]),
        (&["rm"], &["--all", "--name", "SCAR: -f"]),
        (
            &["stage"],
            &["--name", "--image-file", "SCAR: -db", "--arch"],
        ),
        (
            &["update"],
            &[
                "--memory",
                "SCAR: -tt",
                "--unset-env",
                "SCAR: -ll",
                "--image",
                "--file",
                "--deployment-bucket",
            ],
        ),
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let ran = stand.deployer(&args).ok();
        assert!(ran.stdout.contains("Usage: deployer"), "{ran:?}");
        for fragment in fragments {
            assert!(
                ran.stdout.contains(fragment),
                "{args:?} lacks {fragment:?}:\n{}",
                ran.stdout
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn layer_publish_shares_versions_and_init_attaches_the_newest() {
    let stand = Stand::new(MOTO, "us-east-2").await;
    let zip = layer_zip();
    let zip = zip.to_str().unwrap();
    let first = stand
        .deployer(&["layer", "publish", "--layer-zip", zip])
        .ok();
    let second = stand
        .deployer(&["layer", "publish", "--layer-zip", zip, "--public"])
        .ok();
    let third = stand
        .deployer(&[
            "layer",
            "publish",
            "--layer-zip",
            zip,
            "--principal",
            "210987654321",
        ])
        .ok();
    let arn = |ran: &common::Ran| ran.stdout.split('\t').next().unwrap().to_owned();
    let versions = stand
        .lambda
        .list_layer_versions()
        .layer_name("scar-rs-runtime-x86_64")
        .send()
        .await
        .unwrap();
    let published: Vec<_> = versions
        .layer_versions()
        .iter()
        .map(|v| v.layer_version_arn().unwrap().to_owned())
        .collect();
    // The server outlives a test run: earlier versions may be listed too.
    for ran in [&first, &second, &third] {
        assert!(
            published.contains(&arn(ran)),
            "{} not in {published:?}",
            arn(ran)
        );
    }
    let content = stand
        .lambda
        .get_layer_version()
        .layer_name("scar-rs-runtime-x86_64")
        .version_number(arn(&first).rsplit(':').next().unwrap().parse().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        content.content().unwrap().code_size(),
        std::fs::metadata(layer_zip()).unwrap().len() as i64,
        "the zip is published unchanged"
    );
    let policy = |version: i64| {
        let lambda = stand.lambda.clone();
        async move {
            lambda
                .get_layer_version_policy()
                .layer_name("scar-rs-runtime-x86_64")
                .version_number(version)
                .send()
                .await
                .ok()
                .and_then(|p| p.policy)
                .unwrap_or_default()
        }
    };
    let version = |ran: &common::Ran| arn(ran).rsplit(':').next().unwrap().parse::<i64>().unwrap();
    assert!(version(&first) < version(&second) && version(&second) < version(&third));
    assert!(!policy(version(&first)).await.contains("GetLayerVersion"));
    assert!(policy(version(&second)).await.contains("\"*\""));
    assert!(policy(version(&third)).await.contains("210987654321"));

    // An x86_64 zip is not published as arm64.
    stand
        .deployer(&["layer", "publish", "--layer-zip", zip, "--arch", "arm64"])
        .fails_with("built for x86_64, not arm64");
    let arm = stand
        .lambda
        .list_layer_versions()
        .layer_name("scar-rs-runtime-arm64")
        .send()
        .await;
    assert!(arm.map(|v| v.layer_versions().is_empty()).unwrap_or(true));

    // init picks the newest version by itself.
    let role = stand.role().await;
    let name = unique("layered");
    stand
        .deployer(&["init", "-n", &name, "-i", IMAGE, "--role", &role])
        .ok();
    let function = stand
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let layers: Vec<_> = function
        .configuration()
        .unwrap()
        .layers()
        .iter()
        .map(|l| l.arn().unwrap().to_owned())
        .collect();
    assert_eq!(layers, [arn(&third)]);
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn init_wires_everything_and_rm_takes_exactly_that_back() {
    let stand = Stand::new(MOTO, "us-east-1").await;
    let role = stand.role().await;
    let (name, bucket, api) = (unique("wired"), unique("wired-data"), unique("wired-api"));
    let script = stand.home.path().join("script.sh");
    std::fs::write(
        &script,
        "convert \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/out.png\"\n",
    )
    .unwrap();

    // The bucket exists already, with a notification of someone else's that must survive.
    stand
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let other = unique("other");
    stand.init_packaged(&other, IMAGE, &role).ok();
    let other_arn = stand.function_arn(&other).await;
    stand
        .add_foreign_notification(&bucket, "theirs", &other_arn, "elsewhere/")
        .await;

    let ran = stand
        .deployer(&[
            "init",
            "-n",
            &name,
            "-i",
            IMAGE,
            "-s",
            script.to_str().unwrap(),
            "-m",
            "1024",
            "-t",
            "60",
            "-tt",
            "5",
            "-d",
            "resize images",
            "-e",
            "GREETING=hi",
            "-es",
            &bucket,
            "-api",
            &api,
            "--role",
            &role,
            "--ephemeral-storage",
            "4096",
            "--fakeroot",
            "--runtime-in-package",
            "--layer-zip",
            layer_zip().to_str().unwrap(),
        ])
        .ok();
    assert!(
        ran.stdout
            .contains(&format!("uploads to s3://{bucket}/input/")),
        "{ran:?}"
    );

    // The function, as Lambda holds it.
    let function = stand
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let config = function.configuration().unwrap();
    assert_eq!(config.runtime().unwrap().as_str(), "provided.al2023");
    assert_eq!(
        (config.memory_size(), config.timeout()),
        (Some(1024), Some(60))
    );
    assert_eq!(config.description(), Some("resize images"));
    assert_eq!(config.role(), Some(role.as_str()));
    assert_eq!(config.ephemeral_storage().unwrap().size(), 4096);
    assert!(config.layers().is_empty(), "the runtime is in the package");
    let env = config.environment().unwrap().variables().unwrap();
    for (key, value) in [
        ("SCAR_IMAGE", format!("{IMAGE}:latest")),
        ("SCAR_TIMEOUT_THRESHOLD", "5".into()),
        ("SCAR_INIT_SCRIPT", "init-script.sh".into()),
        ("SCAR_INPUT_BUCKET", bucket.clone()),
        ("SCAR_INPUT_PREFIX", "input/".into()),
        ("SCAR_OUTPUT_PREFIX", "output/".into()),
        ("CONT_VAR_GREETING", "hi".into()),
        ("SCAR_FAKEROOT", "1".into()),
    ] {
        assert_eq!(env.get(key), Some(&value), "{key} in {env:?}");
    }
    let tags = stand.tags(&name).await;
    assert_eq!(
        tags.get("scar-rs:managed-by").map(String::as_str),
        Some("scar-rs-deployer")
    );
    assert_eq!(
        tags.get("scar-rs:trigger"),
        Some(&format!("{bucket}/scar-{name}"))
    );

    // Its log group, with the default retention.
    assert_eq!(
        stand.log_retention(&format!("/aws/lambda/{name}")).await,
        Some(30)
    );

    // The bucket: SCAR's folders, and both notifications.
    for folder in ["input/", "output/"] {
        stand
            .s3
            .head_object()
            .bucket(&bucket)
            .key(folder)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        stand.notification_ids(&bucket).await,
        [format!("scar-{name}"), "theirs".to_owned()]
    );

    // Permissions for S3 and API Gateway.
    let policy = stand.policy(&name).await;
    assert!(
        policy.contains("s3.amazonaws.com") && policy.contains(&format!("arn:aws:s3:::{bucket}")),
        "{policy}"
    );
    assert!(policy.contains("apigateway.amazonaws.com"), "{policy}");

    // The REST API: a proxy route, a Lambda proxy integration, the `scar` stage.
    let api_id = tags.get("scar-rs:api").unwrap();
    let wired = stand
        .rest_api(api_id)
        .await
        .expect("the REST API with a {proxy+} route");
    assert_eq!(wired.name, api);
    assert_eq!(wired.integration_type, "AWS_PROXY");
    assert_eq!(
        wired.authorization, "AWS_IAM",
        "endpoints need signed requests by default"
    );
    assert!(
        wired
            .integration_uri
            .contains(config.function_arn().unwrap())
    );
    assert!(wired.stages.iter().any(|s| s == "scar"), "{wired:?}");

    // ls shows it with its image and endpoint.
    let listed: serde_json::Value =
        serde_json::from_str(&stand.deployer(&["ls", "--json"]).ok().stdout).unwrap();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name.as_str())
        .unwrap();
    assert_eq!(row["image"], format!("{IMAGE}:latest"));
    assert_eq!(row["memory"], 1024);
    assert!(row["endpoint"].as_str().unwrap().contains(api_id.as_str()));
    let table = stand.deployer(&["ls"]).ok().stdout;
    assert!(
        table.starts_with("NAME") && table.contains(&name),
        "{table}"
    );

    // rm: the function, its log group, its trigger and its API; the bucket and the other
    // notification stay.
    stand.deployer(&["rm", "-n", &name]).ok();
    assert!(!stand.function_exists(&name).await);
    assert!(!stand.log_group_exists(&format!("/aws/lambda/{name}")).await);
    assert_eq!(stand.rest_api(api_id).await, None);
    assert_eq!(stand.notification_ids(&bucket).await, ["theirs"]);
    assert!(stand.bucket_exists(&bucket).await);
    assert!(stand.function_exists(&other).await);
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn init_refuses_bad_input_before_creating_anything() {
    let stand = Stand::new(MOTO, "us-west-1").await;
    let role = stand.role().await;
    let name = unique("refused");
    let zip = layer_zip();
    let zip = zip.to_str().unwrap();
    let base = |extra: &[&str]| {
        let mut args = vec![
            "init",
            "-n",
            name.as_str(),
            "-i",
            IMAGE,
            "--runtime-in-package",
            "--layer-zip",
            zip,
        ];
        args.extend_from_slice(extra);
        stand.deployer(&args)
    };
    // No role anywhere: the message names the defaults file, which was created with comments.
    let ran = base(&[]).fails_with("no IAM role");
    assert!(
        ran.stderr.contains(stand.defaults_file().to_str().unwrap()),
        "{ran:?}"
    );
    let defaults = std::fs::read_to_string(stand.defaults_file()).unwrap();
    assert!(defaults.contains("# ARN of the IAM role"), "{defaults}");
    base(&["--role", "arn:aws:iam::123456789012:role/does-not-exist"]).fails_with("cannot be used");
    base(&["--role", "scar-role"]).fails_with("is not an IAM role ARN");
    base(&["--role", &role, "-m", "64"]).fails_with("memory (MB) 64 is out of range");
    base(&["--role", &role, "-t", "10", "-tt", "10"]).fails_with("leaves no time");
    base(&["--role", &role, "--function-env", "SCAR_TIMEOUT_TRESHOLD=3"])
        .fails_with("no such setting");
    base(&["--role", &role, "--ephemeral-storage", "100"]).fails_with("ephemeral storage");
    stand
        .deployer(&[
            "init",
            "-n",
            &name,
            "-i",
            "oci:/tmp/layout",
            "--role",
            &role,
        ])
        .fails_with("stage it with -db BUCKET");
    stand
        .deployer(&["init", "-n", "bad name", "-i", IMAGE, "--role", &role])
        .fails_with("use 1 to 64 letters");
    // A strict defaults file: a typo is named.
    std::fs::write(stand.defaults_file(), "[lambda]\nmemroy = 1024\n").unwrap();
    base(&["--role", &role]).fails_with("memroy");
    std::fs::write(stand.defaults_file(), format!("[aws]\nrole = \"{role}\"\n")).unwrap();

    assert!(!stand.function_exists(&name).await);
    assert!(!stand.log_group_exists(&format!("/aws/lambda/{name}")).await);

    // The role from the defaults file works; a second init of the name is refused.
    base(&[]).ok();
    base(&[]).fails_with("already exists");
    assert_eq!(
        stand
            .function_names()
            .await
            .iter()
            .filter(|n| **n == name)
            .count(),
        1
    );
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn a_step_failing_halfway_leaves_nothing_behind() {
    let stand = Stand::new(MOTO, "eu-central-1").await;
    let role = stand.role().await;
    let (name, data, deploy) = (
        unique("halfway"),
        unique("halfway-data"),
        unique("halfway-deploy"),
    );
    let zip = layer_zip();
    // Buckets are made, then staging the image fails: it is not in the registry.
    let ran = stand
        .deployer(&[
            "init",
            "-n",
            &name,
            "-i",
            "127.0.0.1:5000/library/not-there",
            "-es",
            &data,
            "-db",
            &deploy,
            "--role",
            &role,
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ])
        .fails_with("staging image 127.0.0.1:5000/library/not-there");
    assert!(ran.stderr.contains("removed again"), "{ran:?}");
    assert!(
        !stand.bucket_exists(&data).await,
        "the event bucket init made is gone"
    );
    assert!(
        !stand.bucket_exists(&deploy).await,
        "the deployment bucket init made is gone"
    );
    assert!(!stand.function_exists(&name).await);

    // A corrupt docker-archive in an existing bucket: the bucket stays, the half-staged
    // prefix does not.
    stand
        .s3
        .create_bucket()
        .bucket(&deploy)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuCentral1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let archive = stand.home.path().join("broken.tar");
    std::fs::write(&archive, vec![b'x'; 4096]).unwrap();
    stand
        .deployer(&[
            "init",
            "-n",
            &name,
            "-if",
            archive.to_str().unwrap(),
            "-db",
            &deploy,
            "--role",
            &role,
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ])
        .fails_with("not a docker-archive");
    assert!(stand.bucket_exists(&deploy).await);
    let left = stand
        .s3
        .list_objects_v2()
        .bucket(&deploy)
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0), "{left:?}");
    assert!(!stand.function_exists(&name).await);
    assert!(!stand.log_group_exists(&format!("/aws/lambda/{name}")).await);
}

/// `deployer stage` puts one image under a shared prefix, re-encoded as frames; two functions
/// point at it, `ls` shows where each is staged, removing one leaves the image for the other,
/// and the runtime pulls it by its frames alone (the original layer blobs are deleted first)
/// into the tree a pull from the registry gives.
#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn one_image_staged_for_several_functions_is_pulled_by_its_frames() {
    let stand = Stand::new(MOTO, "eu-west-1").await;
    let role = stand.role().await;
    let bucket = unique("shared-images");
    let staged = stand
        .deployer(&[
            "stage",
            "-n",
            "glibc",
            "-i",
            images::GLIBC,
            "-db",
            &bucket,
            "--json",
        ])
        .ok();
    let staged: serde_json::Value = serde_json::from_str(&staged.stdout).unwrap();
    let prefix = "scar-rs/shared-images/glibc/";
    let reference = format!("s3://{bucket}/{prefix}");
    assert_eq!(staged["reference"], reference.as_str());
    let (first, second) = (unique("shared-a"), unique("shared-b"));
    for name in [&first, &second] {
        stand.init_packaged(name, &reference, &role).ok();
    }
    let listed = stand.deployer(&["ls"]).ok().stdout;
    let header = listed.lines().next().unwrap();
    assert!(header.contains("STAGED"), "{listed}");
    for name in [&first, &second] {
        let row = listed
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap();
        assert!(row.contains(&reference), "{listed}");
    }
    stand.deployer(&["rm", "-n", &first]).ok();
    // The original layers go: what is left to pull is the frames and their indexes.
    let read = |key: String| {
        let s3 = stand.s3.clone();
        let bucket = bucket.clone();
        async move {
            let object = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            object.body.collect().await.unwrap().into_bytes().to_vec()
        }
    };
    let blob_key = |digest: &str| format!("{prefix}blobs/{}", digest.replacen(':', "/", 1));
    let index: serde_json::Value =
        serde_json::from_slice(&read(format!("{prefix}index.json")).await).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &read(blob_key(index["manifests"][0]["digest"].as_str().unwrap())).await,
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for layer in layers {
        assert!(
            layer["annotations"][scar_image::frames::ANNOTATION].is_string(),
            "{layer}"
        );
        // The skeleton is staged too, and is a tar the lazy path can read (zstd).
        let skeleton = layer["annotations"][scar_image::skeleton::ANNOTATION]
            .as_str()
            .unwrap_or_else(|| panic!("no skeleton named on {layer}"));
        let skeleton = read(blob_key(skeleton)).await;
        assert_eq!(&skeleton[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        stand
            .s3
            .delete_object()
            .bucket(&bucket)
            .key(blob_key(layer["digest"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
    }
    let (by_frames, from_registry) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let framed = stand.pull_with_runtime(&reference, by_frames.path());
    let eager = stand.pull_with_runtime(images::GLIBC, from_registry.path());
    common::assert_same(
        "staged by frames against the registry",
        &common::tree(&framed, Some(&framed)),
        &common::tree(&eager, Some(&eager)),
    );
    stand.deployer(&["rm", "-n", &second]).ok();
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn image_staged_in_s3_is_an_oci_layout_the_function_points_at() {
    let stand = Stand::new(MOTO, "ap-south-1").await;
    let role = stand.role().await;
    let (name, deploy) = (unique("staged"), unique("staged-deploy"));
    stand
        .deployer(&[
            "init",
            "-n",
            &name,
            "-i",
            images::GLIBC,
            "-db",
            &deploy,
            "--role",
            &role,
            "--runtime-in-package",
            "--layer-zip",
            layer_zip().to_str().unwrap(),
        ])
        .ok();
    let prefix = format!("scar-rs/images/{name}/");
    let function = stand
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let env = function
        .configuration()
        .unwrap()
        .environment()
        .unwrap()
        .variables()
        .unwrap()
        .clone();
    assert_eq!(env["SCAR_IMAGE"], format!("s3://{deploy}/{prefix}"));
    // The staged layout is pulled (from S3, through the runtime's own code) into a rootfs.
    let cache = tempfile::tempdir().unwrap();
    let rootfs = stand.pull_with_runtime(&env["SCAR_IMAGE"], cache.path());
    assert!(rootfs.join("bin").exists(), "{}", rootfs.display());
    stand.deployer(&["rm", "-n", &name]).ok();
    let left = stand
        .s3
        .list_objects_v2()
        .bucket(&deploy)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0), "rm removes the staged image");
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn rm_all_removes_only_the_deployers_functions() {
    let stand = Stand::new(MOTO, "us-west-2").await;
    let role = stand.role().await;
    let zip = layer_zip();
    let ours = [unique("ours"), unique("ours")];
    for name in &ours {
        stand.init_packaged(name, IMAGE, &role).ok();
    }
    let theirs = unique("theirs");
    stand
        .lambda
        .create_function()
        .function_name(&theirs)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .role(&role)
        .handler("x")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(
                    std::fs::read(&zip).unwrap(),
                ))
                .build(),
        )
        .send()
        .await
        .unwrap();
    stand
        .deployer(&["rm", "-n", &theirs])
        .fails_with("not created by the deployer");
    let ran = stand.deployer(&["rm", "-a"]).ok();
    for name in &ours {
        assert!(
            ran.stdout.contains(&format!("removed function {name}")),
            "{ran:?}"
        );
        assert!(!stand.function_exists(name).await);
    }
    // What is left is only functions the deployer did not make (earlier runs leave theirs).
    let left = stand.function_names().await;
    assert!(left.contains(&theirs), "{left:?}");
    for name in left {
        assert!(
            !stand.tags(&name).await.contains_key("scar-rs:managed-by"),
            "{name}"
        );
    }
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn run_sends_scripts_commands_variables_and_one_event_per_input_object() {
    let stand = Stand::new(MOTO, "eu-west-1").await;
    let role = stand.role().await;
    let (name, bucket) = (unique("runner"), unique("runner-data"));
    stand.init_packaged(&name, IMAGE, &role).ok();
    // moto does not run functions: it answers with the event it received, which is what
    // these checks read (ministack runs them for real in ministack.rs).
    let script = stand.home.path().join("job.sh");
    std::fs::write(&script, "echo $GREETING\n").unwrap();
    let ran = stand
        .deployer(&[
            "run",
            "-n",
            &name,
            "-s",
            script.to_str().unwrap(),
            "-e",
            "GREETING=hola",
            "--json",
        ])
        .ok();
    let event: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    use base64::Engine;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(event["script"].as_str().unwrap())
        .unwrap();
    assert_eq!(sent, b"echo $GREETING\n");
    assert_eq!(event["env"]["GREETING"], "hola");
    let ran = stand
        .deployer(&[
            "run",
            "-n",
            &name,
            "--json",
            "/usr/games/cowsay",
            "-f",
            "tux",
            "moo",
        ])
        .ok();
    let event: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        event["cmd_args"],
        serde_json::json!(["/usr/games/cowsay", "-f", "tux", "moo"])
    );

    // The event launcher: the folder placeholder is skipped, keys are encoded as S3 does.
    stand
        .s3
        .create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for key in [
        "input/",
        "input/a b.png",
        "input/b.png",
        "input/c.png",
        "output/x.png",
    ] {
        stand
            .s3
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(b"img".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let ran = stand
        .deployer(&["run", "-n", &name, "-es", &bucket, "--json"])
        .ok();
    let first: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(first["Records"][0]["s3"]["object"]["key"], "input/a+b.png");
    assert_eq!(first["Records"][0]["s3"]["bucket"]["name"], bucket.as_str());
    assert!(
        ran.stderr
            .contains("1 event run synchronously, 2 sent asynchronously, 0 failed"),
        "{ran:?}"
    );

    stand
        .deployer(&["run", "-n", "no-such-function"])
        .fails_with("no function named no-such-function");
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn log_prints_a_stream_or_one_request_and_commands_name_missing_things() {
    let stand = Stand::new(MOTO, "eu-west-2").await;
    let role = stand.role().await;
    let name = unique("logged");
    stand.init_packaged(&name, IMAGE, &role).ok();
    let group = format!("/aws/lambda/{name}");
    let lines: HashMap<&str, Vec<&str>> = HashMap::from([
        (
            "2026/11/27/[$LATEST]aaa",
            vec![
                "START RequestId: req-a Version: $LATEST",
                "pulled in 2.1 s",
                "END RequestId: req-a",
                "REPORT RequestId: req-a Duration: 2100 ms",
                "START RequestId: req-b Version: $LATEST",
                "moo",
                "END RequestId: req-b",
                "REPORT RequestId: req-b Duration: 3 ms",
            ],
        ),
        (
            "2026/11/27/[$LATEST]bbb",
            vec![
                "START RequestId: req-c Version: $LATEST",
                "other sandbox",
                "REPORT RequestId: req-c Duration: 9 ms",
            ],
        ),
    ]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (stream, messages) in &lines {
        stand
            .logs
            .create_log_stream()
            .log_group_name(&group)
            .log_stream_name(*stream)
            .send()
            .await
            .unwrap();
        let events = messages.iter().enumerate().map(|(i, m)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now + i as i64)
                .message(*m)
                .build()
                .unwrap()
        });
        stand
            .logs
            .put_log_events()
            .log_group_name(&group)
            .log_stream_name(*stream)
            .set_log_events(Some(events.collect()))
            .send()
            .await
            .unwrap();
    }
    let ran = stand.deployer(&["log", "-n", &name, "-ri", "req-b"]).ok();
    assert_eq!(
        ran.stdout,
        "START RequestId: req-b Version: $LATEST\nmoo\nEND RequestId: req-b\nREPORT RequestId: req-b Duration: 3 ms\n"
    );
    let ran = stand
        .deployer(&["log", "-n", &name, "-ls", "2026/11/27/[$LATEST]bbb"])
        .ok();
    assert_eq!(
        ran.stdout,
        "START RequestId: req-c Version: $LATEST\nother sandbox\nREPORT RequestId: req-c Duration: 9 ms\n"
    );
    let all = stand.deployer(&["log", "-n", &name]).ok();
    assert_eq!(all.stdout.lines().count(), 11, "{all:?}");
    stand
        .deployer(&["log", "-n", &name, "-ls", "nope"])
        .fails_with("no log stream \"nope\"");

    stand
        .deployer(&["invoke", "-n", &name])
        .fails_with("has no HTTP endpoint");
    for command in ["log", "invoke", "rm"] {
        stand
            .deployer(&[command, "-n", "no-such-function"])
            .fails_with("no function named no-such-function");
    }
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn open_endpoints_are_asked_for_and_said_so() {
    let stand = Stand::new(MOTO, "ca-central-1").await;
    let role = stand.role().await;
    let (name, api) = (unique("open"), unique("open-api"));
    let zip = layer_zip();
    let ran = stand
        .deployer(&[
            "init",
            "-n",
            &name,
            "-i",
            IMAGE,
            "--role",
            &role,
            "-api",
            &api,
            "--api-auth",
            "none",
            "--url",
            "--url-auth",
            "none",
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ])
        .ok();
    assert!(
        ran.stderr
            .contains("warning: the endpoint takes unsigned requests"),
        "{ran:?}"
    );
    let tags = stand.tags(&name).await;
    assert_eq!(
        tags.get("scar-rs:endpoint-auth").map(String::as_str),
        Some("none")
    );
    let api_id = tags.get("scar-rs:api").unwrap();
    let wired = stand.rest_api(api_id).await.unwrap();
    assert_eq!(wired.authorization, "NONE");
    let url = stand
        .lambda
        .get_function_url_config()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(url.auth_type().as_str(), "NONE");
    assert_eq!(
        tags.get("scar-rs:url").map(String::as_str),
        Some(url.function_url())
    );
    let policy = stand.policy(&name).await;
    assert!(policy.contains("lambda:InvokeFunctionUrl"), "{policy}");

    // The default: signed requests only, and no warning.
    let signed = unique("signed");
    let ran = stand
        .deployer(&[
            "init",
            "-n",
            &signed,
            "-i",
            IMAGE,
            "--role",
            &role,
            "--url",
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ])
        .ok();
    assert!(!ran.stderr.contains("warning"), "{ran:?}");
    let url = stand
        .lambda
        .get_function_url_config()
        .function_name(&signed)
        .send()
        .await
        .unwrap();
    assert_eq!(url.auth_type().as_str(), "AWS_IAM");
    assert!(
        !stand
            .policy_or_empty(&signed)
            .await
            .contains("InvokeFunctionUrl")
    );
    stand.deployer(&["rm", "-n", &name]).ok();
    stand.deployer(&["rm", "-n", &signed]).ok();
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn put_ls_and_get_move_folders_and_refuse_bad_paths_and_keys() {
    let stand = Stand::new(MOTO, "eu-central-1").await;
    let bucket = unique("files");
    stand
        .s3
        .create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuCentral1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(local.path().join("batch/sub")).unwrap();
    std::fs::write(local.path().join("batch/a.txt"), "alpha").unwrap();
    std::fs::write(local.path().join("batch/sub/b.txt"), "beta!").unwrap();
    std::fs::write(local.path().join("single.csv"), "1,2").unwrap();
    // Over the multipart threshold: three parts, the last one short.
    let big: Vec<u8> = (0..scar_image::s3::MULTIPART_THRESHOLD + 3)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(local.path().join("batch/big.bin"), &big).unwrap();

    // A missing path uploads nothing.
    stand
        .deployer(&[
            "put",
            "-b",
            &bucket,
            "--bf",
            "input",
            "-p",
            "/nonexistent/x",
        ])
        .fails_with("/nonexistent/x");
    let batch = local.path().join("batch");
    let single = local.path().join("single.csv");
    stand
        .deployer(&[
            "put",
            "-b",
            &bucket,
            "--bf",
            "input",
            "-p",
            batch.to_str().unwrap(),
        ])
        .ok();
    stand
        .deployer(&[
            "put",
            "-b",
            &bucket,
            "--bf",
            "/input/",
            "-p",
            single.to_str().unwrap(),
        ])
        .ok();
    let listed = stand.deployer(&["ls", "-b", &bucket, "--bf", "input"]).ok();
    assert_eq!(
        listed.stdout,
        format!(
            "input/a.txt\t5\ninput/big.bin\t{}\ninput/single.csv\t3\ninput/sub/b.txt\t5\n",
            big.len()
        )
    );

    let out = tempfile::tempdir().unwrap();
    let got = stand
        .deployer(&[
            "get",
            "-b",
            &bucket,
            "--bf",
            "input",
            "-p",
            out.path().to_str().unwrap(),
            "--json",
        ])
        .ok();
    let report: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(report["objects"].as_array().unwrap().len(), 4, "{report}");
    assert!(
        std::fs::read(out.path().join("big.bin")).unwrap() == big,
        "big.bin came back different"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("a.txt")).unwrap(),
        "alpha"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("sub/b.txt")).unwrap(),
        "beta!"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("single.csv")).unwrap(),
        "1,2"
    );

    // A key written by someone else that climbs out of the target is refused, and nothing
    // of the folder is written.
    stand
        .s3
        .put_object()
        .bucket(&bucket)
        .key("output/../../escaped.txt")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    stand
        .s3
        .put_object()
        .bucket(&bucket)
        .key("output/fine.txt")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let inner = target.path().join("inner");
    stand
        .deployer(&[
            "get",
            "-b",
            &bucket,
            "--bf",
            "output",
            "-p",
            inner.to_str().unwrap(),
        ])
        .fails_with("would be written outside");
    assert!(!target.path().join("escaped.txt").exists());
    assert!(
        !inner.join("fine.txt").exists(),
        "refused before anything was written"
    );
}

/// SCAR's definition files: a two-function pipeline (the first one's output folder is the
/// second one's input) deploys from one YAML file, both triggers wired; `rm -f` removes it.
/// A file with a mistake creates nothing and names the key and line.
#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn a_pipeline_deploys_from_a_definition_file_and_bad_files_create_nothing() {
    let stand = Stand::new(MOTO, "eu-west-3").await;
    let role = stand.role().await;
    let (first, second) = (unique("resize"), unique("archive"));
    let (photos, work) = (unique("photos"), unique("work"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("resize.sh"),
        "echo resize \"$SCAR_INPUT_FILE\"\n",
    )
    .unwrap();
    let file = dir.path().join("functions.yaml");
    std::fs::write(
        &file,
        format!(
            "functions:\n  {first}:\n    image: {IMAGE}\n    init_script: resize.sh\n    memory: 1024\n    environment: {{SIZE: small}}\n    \
             s3: {{input_bucket: {photos}, output_bucket: {work}, output_folder: stage1/}}\n  {second}:\n    image: {IMAGE}\n    \
             time: 120\n    fakeroot: true\n    s3: {{input_bucket: {work}, input_folder: stage1/, output_folder: done/}}\n"
        ),
    )
    .unwrap();
    let zip = layer_zip();
    let common = [
        "--role",
        &role,
        "--runtime-in-package",
        "--layer-zip",
        zip.to_str().unwrap(),
    ];

    // A typo: nothing is created, the key and its line are named.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("functions:\n  {first}:\n    image: {IMAGE}\n    memroy: 1024\n"),
    )
    .unwrap();
    let mut args = vec!["init", "-f", bad.to_str().unwrap()];
    args.extend(common);
    stand
        .deployer(&args)
        .fails_with("unknown field `memroy`")
        .fails_with("line 4");
    assert!(
        stand
            .lambda
            .get_function()
            .function_name(&first)
            .send()
            .await
            .is_err()
    );

    let mut args = vec!["init", "-f", file.to_str().unwrap()];
    args.extend(common);
    stand.deployer(&args).ok();
    let env = |config: &aws_sdk_lambda::types::FunctionConfiguration| {
        config.environment().unwrap().variables().unwrap().clone()
    };
    let one = stand
        .lambda
        .get_function()
        .function_name(&first)
        .send()
        .await
        .unwrap();
    let one = one.configuration().unwrap();
    assert_eq!(one.memory_size(), Some(1024));
    let vars = env(one);
    for (key, value) in [
        ("SCAR_INPUT_BUCKET", photos.as_str()),
        ("SCAR_OUTPUT_BUCKET", work.as_str()),
        ("SCAR_OUTPUT_PREFIX", "stage1/"),
        ("CONT_VAR_SIZE", "small"),
        ("SCAR_INIT_SCRIPT", "init-script.sh"),
    ] {
        assert_eq!(
            vars.get(key).map(String::as_str),
            Some(value),
            "{key}: {vars:?}"
        );
    }
    let two = stand
        .lambda
        .get_function()
        .function_name(&second)
        .send()
        .await
        .unwrap();
    let two = two.configuration().unwrap();
    assert_eq!(two.timeout(), Some(120));
    let vars = env(two);
    for (key, value) in [
        ("SCAR_INPUT_BUCKET", work.as_str()),
        ("SCAR_INPUT_PREFIX", "stage1/"),
        ("SCAR_OUTPUT_PREFIX", "done/"),
        ("SCAR_FAKEROOT", "1"),
    ] {
        assert_eq!(
            vars.get(key).map(String::as_str),
            Some(value),
            "{key}: {vars:?}"
        );
    }
    assert_eq!(
        stand.notification_ids(&photos).await,
        [format!("scar-{first}")]
    );
    assert_eq!(
        stand.notification_ids(&work).await,
        [format!("scar-{second}")]
    );

    // update -f checks every function before it changes any: the second's memory is out of
    // range, so the first keeps its own.
    let update = dir.path().join("update.yaml");
    std::fs::write(
        &update,
        format!(
            "functions:\n  {first}:\n    image: {IMAGE}\n    memory: 2048\n  {second}:\n    image: {IMAGE}\n    memory: 64\n"
        ),
    )
    .unwrap();
    stand
        .deployer(&["update", "-f", update.to_str().unwrap()])
        .fails_with("memory (MB) 64 is out of range");
    let kept = stand
        .lambda
        .get_function_configuration()
        .function_name(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.memory_size(), Some(1024));

    let removed = stand.deployer(&["rm", "-f", file.to_str().unwrap()]).ok();
    assert!(
        removed.stdout.contains(&first) && removed.stdout.contains(&second),
        "{removed:?}"
    );
    for name in [&first, &second] {
        assert!(
            stand
                .lambda
                .get_function()
                .function_name(name)
                .send()
                .await
                .is_err(),
            "{name} left"
        );
    }
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn update_changes_settings_in_place_and_refuses_bad_values_changing_nothing() {
    let stand = Stand::new(MOTO, "sa-east-1").await;
    let role = stand.role().await;
    let name = unique("upd");
    let ran = stand.init_packaged(&name, IMAGE, &role);
    assert_eq!(ran.status, 0, "{ran:?}");
    let config = |stand: &Stand| {
        let name = name.clone();
        let lambda = stand.lambda.clone();
        async move {
            lambda
                .get_function_configuration()
                .function_name(&name)
                .send()
                .await
                .unwrap()
        }
    };
    let before = config(&stand).await;
    let before_vars = before.environment().unwrap().variables().unwrap().clone();

    let ran = stand
        .deployer(&[
            "update",
            "-n",
            &name,
            "-m",
            "1024",
            "-t",
            "120",
            "--timeout-threshold",
            "20",
            "-e",
            "COLOUR=blue",
            "-e",
            "SIZE=2",
            "--log-level",
            "debug",
        ])
        .ok();
    for said in [
        "memory ",
        "-> 1024 MB",
        "-> 120 s",
        "CONT_VAR_COLOUR set to \"blue\"",
        "SCAR_TIMEOUT_THRESHOLD",
        "log level DEBUG",
    ] {
        assert!(ran.stdout.contains(said), "{said:?} not in {ran:?}");
    }
    let after = config(&stand).await;
    assert_eq!(after.memory_size(), Some(1024));
    assert_eq!(after.timeout(), Some(120));
    let vars = after.environment().unwrap().variables().unwrap();
    assert_eq!(vars["CONT_VAR_COLOUR"], "blue");
    assert_eq!(vars["CONT_VAR_SIZE"], "2");
    assert_eq!(vars["SCAR_TIMEOUT_THRESHOLD"], "20");
    // What update was not asked to change is kept: the image, the folders.
    for kept in ["SCAR_IMAGE", "SCAR_INPUT_PREFIX", "SCAR_OUTPUT_PREFIX"] {
        assert_eq!(vars.get(kept), before_vars.get(kept), "{kept}");
    }
    // The same function: triggers and tags stay.
    assert!(stand.tags(&name).await.contains_key("scar-rs:managed-by"));

    // One variable removed, another image.
    stand
        .deployer(&[
            "update",
            "-n",
            &name,
            "--unset-env",
            "SIZE",
            "-i",
            "alpine:3.20",
        ])
        .ok();
    let vars = config(&stand)
        .await
        .environment()
        .unwrap()
        .variables()
        .unwrap()
        .clone();
    assert!(!vars.contains_key("CONT_VAR_SIZE"), "{vars:?}");
    assert_eq!(vars["CONT_VAR_COLOUR"], "blue");
    assert_eq!(vars["SCAR_IMAGE"], "alpine:3.20");

    // Refusals change nothing.
    let unchanged = config(&stand).await;
    for (args, said) in [
        (&["-t", "15"][..], "leaves no time to run"),
        (&["-m", "64"][..], "memory (MB) 64 is out of range"),
        (&["--unset-env", "NOPE"][..], "no container variable NOPE"),
        (
            &["--function-env", "SCAR_TIMEOUT_TRESHOLD=3"][..],
            "no such setting",
        ),
        (&["-e", "A-B=1"][..], "not a variable name"),
        (&["-i", "oci:"][..], "-i oci:"),
        (&["-m", "1024"][..], "nothing to change"),
    ] {
        let mut full = vec!["update", "-n", name.as_str()];
        full.extend_from_slice(args);
        stand.deployer(&full).fails_with(said);
    }
    let still = config(&stand).await;
    assert_eq!(still.memory_size(), unchanged.memory_size());
    assert_eq!(still.timeout(), unchanged.timeout());
    assert_eq!(still.environment(), unchanged.environment());
    stand
        .deployer(&["update", "-n", &unique("absent"), "-m", "256"])
        .fails_with("no function");
    stand.deployer(&["rm", "-n", &name]).ok();
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn functions_without_a_name_are_named_after_their_image_and_numbered() {
    let stand = Stand::new(MOTO, "ap-northeast-1").await;
    let role = stand.role().await;
    let zip = layer_zip();
    let init = || {
        stand.deployer(&[
            "init",
            "-i",
            IMAGE,
            "--role",
            &role,
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ])
    };
    let named = |ran: &common::Ran| {
        ran.stderr
            .lines()
            .find_map(|l| l.strip_prefix("no -n given: the function is named "))
            .unwrap_or_else(|| panic!("no name said: {ran:?}"))
            .to_owned()
    };
    let (first, second) = (named(&init().ok()), named(&init().ok()));
    let base = "scar-library-debian-cowsay";
    assert!(first.starts_with(base), "{first}");
    assert!(second.starts_with(&format!("{base}-")), "{second}");
    assert_ne!(first, second);
    for name in [&first, &second] {
        assert!(stand.function_exists(name).await, "{name}");
        stand.deployer(&["rm", "-n", name]).ok();
    }
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn a_package_over_the_request_limit_goes_through_the_deployment_bucket() {
    let stand = Stand::new(MOTO, "eu-central-1").await;
    let role = stand.role().await;
    let (name, bucket) = (unique("bigpkg"), unique("bigpkg-deploy"));
    let payload = stand.home.path().join("payload");
    std::fs::create_dir(&payload).unwrap();
    // 52 MiB that deflate cannot shrink (xorshift64), so that the package is over 50 MB.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..52 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::write(payload.join("noise.bin"), &noise).unwrap();
    let payload_arg = payload.to_str().unwrap();

    // No deployment bucket: refused before anything is created.
    stand
        .init_packaged_with(&name, images::GLIBC, &role, &["-ep", payload_arg])
        .fails_with("give a deployment bucket (-db BUCKET)");
    assert!(!stand.function_exists(&name).await);

    // With one: the function is made from the package in S3, which is then removed.
    stand
        .init_packaged_with(
            &name,
            images::GLIBC,
            &role,
            &["-ep", payload_arg, "-db", &bucket],
        )
        .ok();
    let config = stand
        .lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    assert!(
        config.code_size() > 50 * 1024 * 1024,
        "code size {}",
        config.code_size()
    );
    assert_eq!(
        config.environment().unwrap().variables().unwrap()["SCAR_EXTRA_PAYLOAD"],
        "extra-payload"
    );
    let left = stand
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("scar-rs-packages/")
        .send()
        .await
        .unwrap();
    assert_eq!(left.contents().len(), 0, "{left:?}");
    stand.deployer(&["rm", "-n", &name]).ok();
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn an_ecr_image_is_deployed_with_the_policy_its_role_needs_named() {
    let stand = Stand::new(MOTO, "us-west-2").await;
    let role = stand.role().await;
    let name = unique("ecr");
    let ran = stand
        .init_packaged(
            &name,
            "123456789012.dkr.ecr.us-west-2.amazonaws.com/team/app:1.0",
            &role,
        )
        .ok();
    for said in [
        "account 123456789012, us-west-2",
        "ecr:GetAuthorizationToken, ecr:BatchGetImage and ecr:GetDownloadUrlForLayer",
    ] {
        assert!(ran.stderr.contains(said), "{said:?} not in {ran:?}");
    }
    // A registry that is not ECR gets no such note.
    let plain = unique("plain");
    let ran = stand.init_packaged(&plain, IMAGE, &role).ok();
    assert!(!ran.stderr.contains("ecr:"), "{ran:?}");
    for function in [&name, &plain] {
        stand.deployer(&["rm", "-n", function]).ok();
    }
}

#[tokio::test]
#[ignore = "needs moto server (make test)"]
async fn update_stages_a_new_image_with_db_and_rm_removes_it() {
    let stand = Stand::new(MOTO, "ap-south-1").await;
    let role = stand.role().await;
    let (name, deploy) = (unique("restaged"), unique("restaged-deploy"));
    stand.init_packaged(&name, images::GLIBC, &role).ok();
    let ran = stand
        .deployer(&["update", "-n", &name, "-i", images::MUSL, "-db", &deploy])
        .ok();
    let prefix = format!("scar-rs/images/{name}/");
    assert!(
        ran.stdout
            .contains(&format!("staged in s3://{deploy}/{prefix}")),
        "{ran:?}"
    );
    let config = stand
        .lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let image = config.environment().unwrap().variables().unwrap()["SCAR_IMAGE"].clone();
    assert_eq!(image, format!("s3://{deploy}/{prefix}"));
    // What is staged is the new image: its rootfs has musl's loader.
    let cache = tempfile::tempdir().unwrap();
    let rootfs = stand.pull_with_runtime(&image, cache.path());
    let has_musl = std::fs::read_dir(rootfs.join("lib")).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("ld-musl")
    });
    assert!(has_musl, "{}", rootfs.display());
    // ls shows the image the user gave.
    let listed = stand.deployer(&["ls", "--json"]).ok();
    assert!(listed.stdout.contains(images::MUSL), "{listed:?}");

    // From a file, the same image in the same bucket is not staged again.
    let file = stand.home.path().join("f.yaml");
    std::fs::write(
        &file,
        format!(
            "functions:\n  {name}:\n    image: {}\n    s3: {{deployment_bucket: {deploy}}}\n",
            images::MUSL
        ),
    )
    .unwrap();
    let again = stand
        .deployer(&["update", "-f", file.to_str().unwrap()])
        .ok();
    assert_eq!(again.stdout, format!("{name}: unchanged\n"), "{again:?}");

    stand.deployer(&["rm", "-n", &name]).ok();
    let left = stand
        .s3
        .list_objects_v2()
        .bucket(&deploy)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0), "rm removes the staged image");
}
