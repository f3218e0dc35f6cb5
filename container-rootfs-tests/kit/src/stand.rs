//! Drives the real `deployer` binary against a local AWS stand-in and checks the result
//! through separate SDK clients: the state the service holds, not what the deployer printed.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// moto server (control plane), started by setup.sh.
pub const MOTO: &str = "http://127.0.0.1:5001";
/// ministack (runs functions), started by setup.sh.
pub const MINISTACK: &str = "http://127.0.0.1:4566";

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{}", std::process::id(), nanos % 100_000)
}

/// The workspace root.
pub fn root() -> PathBuf {
    // This crate is container-rootfs-tests/kit.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The debug `deployer` the deployer's tests run (cargo builds it for them).
pub fn deployer_bin() -> PathBuf {
    crate::debug_bin("deployer")
}

/// An x86_64 layer zip for the deployer's tests, made by the deployer under test (`layer
/// build`, as `make layer` makes the real one) from the debug `bootstrap`, its debug info
/// stripped, and the shims of `make shim`. The static musl bootstrap is built and run by the
/// suite for arm64 only (`arm64_tools`): an x86_64 one would cost CI a third build of the
/// whole dependency graph, and what these tests check is the deployer's wiring and a bootstrap
/// that ministack really runs. Kept apart from target/layer, so that it is never mistaken for
/// a layer to publish. Made again whenever the bootstrap or a shim is newer; concurrent tests
/// each write files of their own and rename them over the shared ones.
pub fn layer_zip() -> PathBuf {
    let debug = crate::lambda::bootstrap_bin();
    let shims = crate::lambda::shim_dir();
    let built = [
        debug.clone(),
        shims.join("scar-fakechroot-glibc.so"),
        shims.join("scar-fakechroot-musl.so"),
    ]
    .iter()
    .map(|file| std::fs::metadata(file).and_then(|m| m.modified()).unwrap())
    .max()
    .unwrap();
    let dir = root().join("target/layer-test");
    let path = dir.join("scar-layer-x86_64.zip");
    let current = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|zipped| zipped >= built);
    if current {
        return path;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let pid = std::process::id();
    let bootstrap = dir.join(format!("bootstrap-{pid}"));
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&debug)
        .arg(&bootstrap)
        .status()
        .unwrap();
    assert!(
        stripped.success(),
        "objcopy --strip-debug {}",
        debug.display()
    );
    let own = dir.join(format!("scar-layer-x86_64-{pid}.zip"));
    let out = Command::new(deployer_bin())
        .args(["layer", "build", "--arch", "x86_64", "--bootstrap"])
        .arg(&bootstrap)
        .arg("--shim-dir")
        .arg(&shims)
        .arg("--output")
        .arg(&own)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deployer layer build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&bootstrap).unwrap();
    std::fs::rename(&own, &path).unwrap();
    path
}

/// What a deployer run printed.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(self) -> Self {
        assert_eq!(self.status, 0, "deployer failed: {self:?}");
        self
    }
    pub fn fails_with(self, fragment: &str) -> Self {
        assert_ne!(self.status, 0, "deployer should have failed: {self:?}");
        assert!(
            self.stderr.contains(fragment),
            "expected {fragment:?} in stderr: {self:?}"
        );
        self
    }
}

/// One isolated account view: a region of its own (functions and layers are regional) and
/// a defaults file of its own.
#[derive(Debug)]
pub struct Stand {
    pub endpoint: &'static str,
    pub region: String,
    pub home: tempfile::TempDir,
    pub lambda: aws_sdk_lambda::Client,
    pub s3: aws_sdk_s3::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub apigw: aws_sdk_apigateway::Client,
    pub iam: aws_sdk_iam::Client,
}

impl Stand {
    pub async fn new(endpoint: &'static str, region: &str) -> Self {
        let config = crate::sdk_config(endpoint, region).await;
        let s3 = crate::s3_client_for(&config);
        Self {
            endpoint,
            region: region.to_owned(),
            home: tempfile::tempdir().unwrap(),
            lambda: aws_sdk_lambda::Client::new(&config),
            s3,
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            apigw: aws_sdk_apigateway::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
        }
    }

    pub fn defaults_file(&self) -> PathBuf {
        self.home.path().join("deployer.toml")
    }

    /// Runs the deployer binary with this stand's endpoint, region and defaults file.
    pub fn deployer(&self, args: &[&str]) -> Ran {
        let out = Command::new(deployer_bin())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("AWS_ENDPOINT_URL", self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", &self.region)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SCAR_DEPLOYER_CONFIG", self.defaults_file())
            .current_dir(root())
            .output()
            .unwrap();
        Ran {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `deployer init` of `image` with the x86_64 layer's runtime in the package (so that no
    /// layer needs publishing first).
    pub fn init_packaged(&self, name: &str, image: &str, role: &str) -> Ran {
        self.init_packaged_with(name, image, role, &[])
    }

    /// [`Stand::init_packaged`] with more `init` flags.
    pub fn init_packaged_with(&self, name: &str, image: &str, role: &str, more: &[&str]) -> Ran {
        let zip = layer_zip();
        let mut args = vec![
            "init",
            "-n",
            name,
            "-i",
            image,
            "--role",
            role,
            "--runtime-in-package",
            "--layer-zip",
            zip.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        self.deployer(&args)
    }

    /// An IAM role Lambda may assume.
    pub async fn role(&self) -> String {
        let name = unique("scar-test-role");
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        self.iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(trust)
            .send()
            .await
            .unwrap()
            .role
            .unwrap()
            .arn
    }

    pub async fn function_exists(&self, name: &str) -> bool {
        match self.lambda.get_function().function_name(name).send().await {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    /// An object's bytes (the test fails if it is missing).
    pub async fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let object = self.s3.get_object().bucket(bucket).key(key).send().await;
        let object = object.unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e:?}"));
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }

    pub async fn bucket_exists(&self, bucket: &str) -> bool {
        self.s3.head_bucket().bucket(bucket).send().await.is_ok()
    }

    pub async fn log_group_exists(&self, group: &str) -> bool {
        self.logs
            .describe_log_groups()
            .log_group_name_prefix(group)
            .send()
            .await
            .unwrap()
            .log_groups()
            .iter()
            .any(|g| g.log_group_name() == Some(group))
    }

    pub async fn tags(&self, name: &str) -> std::collections::HashMap<String, String> {
        self.lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
    }

    pub async fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lambda
            .list_functions()
            .send()
            .await
            .unwrap()
            .functions()
            .iter()
            .filter_map(|f| f.function_name().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    pub async fn function_arn(&self, name: &str) -> String {
        self.lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .unwrap()
            .configuration()
            .unwrap()
            .function_arn()
            .unwrap()
            .to_owned()
    }

    /// The function's resource policy, as JSON text.
    pub async fn policy(&self, name: &str) -> String {
        self.lambda
            .get_policy()
            .function_name(name)
            .send()
            .await
            .unwrap()
            .policy
            .unwrap()
    }

    /// The function's resource policy, or "" when it has none.
    pub async fn policy_or_empty(&self, name: &str) -> String {
        match self.lambda.get_policy().function_name(name).send().await {
            Ok(out) => out.policy.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn log_retention(&self, group: &str) -> Option<i32> {
        self.logs
            .describe_log_groups()
            .log_group_name_prefix(group)
            .send()
            .await
            .unwrap()
            .log_groups()
            .first()
            .and_then(|g| g.retention_in_days())
    }

    /// The ids of the bucket's Lambda notifications, sorted.
    /// Pulls `image` into `cache` with the debug `bootstrap pull`, through this stand's
    /// endpoint, as a function would; the rootfs it reports.
    pub fn pull_with_runtime(&self, image: &str, cache: &std::path::Path) -> PathBuf {
        let pulled = Command::new(crate::debug_bin("bootstrap"))
            .args(["pull", image, "--cache-dir", cache.to_str().unwrap()])
            .env("AWS_ENDPOINT_URL", self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", &self.region)
            .output()
            .unwrap();
        assert!(pulled.status.success(), "{pulled:?}");
        PathBuf::from(String::from_utf8(pulled.stdout).unwrap().trim())
    }

    pub async fn notification_ids(&self, bucket: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .s3
            .get_bucket_notification_configuration()
            .bucket(bucket)
            .send()
            .await
            .unwrap()
            .lambda_function_configurations()
            .iter()
            .filter_map(|c| c.id().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }

    /// Gives `bucket` a notification of someone else's: uploads below `prefix` run
    /// `function_arn`.
    pub async fn add_foreign_notification(
        &self,
        bucket: &str,
        id: &str,
        function_arn: &str,
        prefix: &str,
    ) {
        use aws_sdk_s3::types::{
            Event, FilterRule, FilterRuleName, LambdaFunctionConfiguration,
            NotificationConfiguration, NotificationConfigurationFilter, S3KeyFilter,
        };
        let rule = FilterRule::builder()
            .name(FilterRuleName::Prefix)
            .value(prefix)
            .build();
        let filter = NotificationConfigurationFilter::builder()
            .key(S3KeyFilter::builder().filter_rules(rule).build())
            .build();
        let theirs = LambdaFunctionConfiguration::builder()
            .id(id)
            .lambda_function_arn(function_arn)
            .events(Event::S3ObjectCreated)
            .filter(filter)
            .build()
            .unwrap();
        let configuration = NotificationConfiguration::builder()
            .lambda_function_configurations(theirs)
            .build();
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(configuration)
            .send()
            .await
            .unwrap();
    }

    /// How a REST API is wired: its name, its `{proxy+}` route's integration, its stages.
    pub async fn rest_api(&self, api_id: &str) -> Option<RestApi> {
        let apis = self.apigw.get_rest_apis().send().await.unwrap();
        let name = apis
            .items()
            .iter()
            .find(|a| a.id() == Some(api_id))?
            .name()?
            .to_owned();
        let resources = self
            .apigw
            .get_resources()
            .rest_api_id(api_id)
            .send()
            .await
            .unwrap();
        let proxy = resources
            .items()
            .iter()
            .find(|r| r.path() == Some("/{proxy+}"))?;
        let integration = self
            .apigw
            .get_integration()
            .rest_api_id(api_id)
            .resource_id(proxy.id()?)
            .http_method("ANY")
            .send()
            .await
            .unwrap();
        let method = self
            .apigw
            .get_method()
            .rest_api_id(api_id)
            .resource_id(proxy.id()?)
            .http_method("ANY")
            .send()
            .await
            .unwrap();
        let stages = self
            .apigw
            .get_stages()
            .rest_api_id(api_id)
            .send()
            .await
            .unwrap();
        Some(RestApi {
            name,
            integration_type: integration.r#type()?.as_str().to_owned(),
            integration_uri: integration.uri()?.to_owned(),
            authorization: method.authorization_type()?.to_owned(),
            stages: stages
                .item()
                .iter()
                .filter_map(|s| s.stage_name().map(str::to_owned))
                .collect(),
        })
    }
}

/// A REST API as [`Stand::rest_api`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApi {
    pub name: String,
    /// The `{proxy+}` route's integration type (`AWS_PROXY`).
    pub integration_type: String,
    pub integration_uri: String,
    /// The `{proxy+}` route's authorization type (`AWS_IAM`, `NONE`).
    pub authorization: String,
    pub stages: Vec<String>,
}
