//! SCAR's function definition files (`deployer init -f`, `rm -f`): one or several functions
//! in YAML, kept in version control.
//!
//! ```yaml
//! functions:
//!   resize:
//!     image: grycap/imagemagick
//!     init_script: resize.sh
//!     memory: 1024
//!     s3: {input_bucket: photos, output_bucket: photos-work, output_folder: small/}
//!   archive:
//!     image: debian:bookworm
//!     s3: {input_bucket: photos-work, input_folder: small/}
//! ```
//!
//! The file is checked whole before anything is created: an unknown key, a wrong type or a
//! missing field is an error naming the file, the key's path, line and column (the parser
//! gives them); a function named twice, a function without an image, and a trigger loop (a
//! function writing into its own input folder) are refused by name. One function's output
//! folder may be the next one's input: each function's `init` wires its own trigger.
//! Relative paths (`init_script`, `image_file`, `extra_payload`) are taken from the file's
//! directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;

use crate::cli::{Arch, EndpointAuth, InitArgs, LogLevel, RuntimeFiles, UpdateArgs};
use crate::error::DeployError;

/// The whole file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "scar-rs function definitions (deployer init|rm|update|run -f)")]
pub struct Definitions {
    /// The functions, by name (1 to 64 letters, digits, '-' or '_').
    functions: UniqueMap<Function>,
}

/// One function, with SCAR's keys.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Function {
    /// The image reference to run (a registry image, `oci:DIR:TAG`, `docker-archive:FILE`); give this or `image_file`.
    image: Option<String>,
    /// A `docker save` file, staged in `s3.deployment_bucket`; relative to this file.
    image_file: Option<PathBuf>,
    /// The script run when an event brings no command of its own; relative to this file.
    init_script: Option<PathBuf>,
    /// The function's description.
    description: Option<String>,
    /// Memory in MB (128 to 10240).
    memory: Option<i32>,
    /// Timeout in seconds (1 to 900).
    time: Option<i32>,
    /// Seconds kept back before the timeout to stop the command and upload its output.
    timeout_threshold: Option<u32>,
    /// The runtime's log level; Lambda then writes the log as JSON records.
    log_level: Option<LogLevel>,
    /// A folder shipped in the function package; commands find it at `$EXTRA_PAYLOAD`. Relative to this file.
    extra_payload: Option<PathBuf>,
    /// Variables for the container.
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Variables for the runtime itself (`SCAR_*`, see docs/configuration.md).
    #[serde(default)]
    runtime_environment: BTreeMap<String, String>,
    /// Buckets and folders: uploads to the input folder run the function, files it writes go to the output folder.
    #[serde(default)]
    s3: S3,
    /// A REST API whose every route runs the function.
    api_gateway: Option<ApiGateway>,
    /// A Function URL.
    url: Option<Url>,
    /// `x86_64` or `arm64`.
    architecture: Option<Arch>,
    /// Size of /tmp in MB (512 to 10240).
    ephemeral_storage: Option<i32>,
    /// The layer version ARN to attach (default: the newest `layer publish` made).
    layer: Option<String>,
    /// The IAM role ARN the function runs as.
    role: Option<String>,
    /// Run commands as a fake root, so that package managers can install.
    #[serde(default)]
    fakeroot: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct S3 {
    /// The bucket whose uploads run the function.
    input_bucket: Option<String>,
    /// The folder of the input bucket watched (default `input/`).
    input_folder: Option<String>,
    /// The bucket outputs go to (default: the input bucket).
    output_bucket: Option<String>,
    /// The folder outputs go to (default `output/`).
    output_folder: Option<String>,
    /// A bucket where the image is staged for cold starts.
    deployment_bucket: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ApiGateway {
    /// The REST API's name.
    name: String,
    /// Who may call it (default `iam`).
    auth: Option<EndpointAuth>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Url {
    /// Who may call it (default `iam`).
    auth: Option<EndpointAuth>,
}

/// A map whose keys must be unique (YAML parsers keep the last of two equal keys).
#[derive(Debug)]
struct UniqueMap<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for UniqueMap<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = UniqueMap<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of function names to their definitions")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if entries.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "function {name} is defined twice"
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((name, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A map of names to `T`, as the schema sees it: at least one entry, names Lambda accepts.
impl<T: JsonSchema> JsonSchema for UniqueMap<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "minProperties": 1,
            "propertyNames": { "pattern": "^[A-Za-z0-9_-]{1,64}$" },
            "additionalProperties": generator.subschema_for::<T>(),
        })
    }
}

/// `folder` as init takes it (`input/`).
fn folder(text: &str) -> String {
    let trimmed = text.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

impl Definitions {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, DeployError> {
        let text = std::fs::read_to_string(path).map_err(DeployError::io(path))?;
        Self::parse(&text)
            .map_err(|message| DeployError::Invalid(format!("{}: {message}", path.display())))
    }

    /// Parses and checks a file's text; the error is the reason, without the file's name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let definitions: Definitions = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        if definitions.functions.0.is_empty() {
            return Err("functions: no function is defined".into());
        }
        for (name, function) in &definitions.functions.0 {
            crate::init::check_name(name).map_err(|e| format!("functions.{name}: {e}"))?;
            if function.image.is_some() == function.image_file.is_some() {
                return Err(format!(
                    "functions.{name}: give exactly one of image and image_file"
                ));
            }
            let input_bucket = function.s3.input_bucket.as_deref();
            let output_bucket = function.s3.output_bucket.as_deref().or(input_bucket);
            if let (Some(input), Some(output)) = (input_bucket, output_bucket) {
                let input_folder = folder(function.s3.input_folder.as_deref().unwrap_or("input/"));
                let output_folder =
                    folder(function.s3.output_folder.as_deref().unwrap_or("output/"));
                if input == output && output_folder.starts_with(&input_folder) {
                    return Err(format!(
                        "functions.{name}.s3: the output folder s3://{output}/{output_folder} is inside the input folder s3://{input}/{input_folder}: every output would run the function again"
                    ));
                }
            }
        }
        Ok(definitions)
    }

    /// Each function as `deployer update` flags would give it: the values the file sets that
    /// `update` can change in place (an `image_file` stays staged where it is).
    pub fn update_args(&self, json: bool) -> Vec<(String, UpdateArgs)> {
        let pairs = |map: &BTreeMap<String, String>| -> Vec<(String, String)> {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        self.functions
            .0
            .iter()
            .map(|(name, f)| {
                let args = UpdateArgs {
                    name: Some(name.clone()),
                    file: None,
                    memory: f.memory,
                    time: f.time,
                    timeout_threshold: f.timeout_threshold,
                    env: pairs(&f.environment),
                    unset_env: Vec::new(),
                    function_env: pairs(&f.runtime_environment),
                    log_level: f.log_level,
                    image: f.image.clone(),
                    deployment_bucket: f.image.as_ref().and(f.s3.deployment_bucket.clone()),
                    json,
                };
                (name.clone(), args)
            })
            .collect()
    }

    /// The functions' names, in the file's order.
    pub fn names(&self) -> Vec<String> {
        self.functions.0.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Each function as `deployer init` flags would give it; relative paths are taken from
    /// `base` (the file's directory); `common` carries the command line's other options
    /// (role, layer, runtime files, --json).
    pub fn init_args(&self, base: &Path, common: &InitArgs) -> Vec<InitArgs> {
        let relative = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        self.functions
            .0
            .iter()
            .map(|(name, f)| InitArgs {
                name: name.clone(),
                file: None,
                image: f.image.clone(),
                image_file: f.image_file.as_ref().map(relative),
                script: f.init_script.as_ref().map(relative),
                memory: f.memory.or(common.memory),
                time: f.time.or(common.time),
                timeout_threshold: f.timeout_threshold.or(common.timeout_threshold),
                description: f.description.clone(),
                env: f
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                function_env: f
                    .runtime_environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                fakeroot: f.fakeroot,
                extra_payload: f.extra_payload.as_ref().map(relative),
                log_level: f.log_level.or(common.log_level),
                preheat: common.preheat,
                event_source: f.s3.input_bucket.clone(),
                output_bucket: f.s3.output_bucket.clone(),
                input_folder: f.s3.input_folder.clone().unwrap_or_else(|| "input/".into()),
                output_folder: f
                    .s3
                    .output_folder
                    .clone()
                    .unwrap_or_else(|| "output/".into()),
                api_gateway_name: f.api_gateway.as_ref().map(|a| a.name.clone()),
                api_auth: f
                    .api_gateway
                    .as_ref()
                    .and_then(|a| a.auth)
                    .unwrap_or(EndpointAuth::Iam),
                url: f.url.is_some(),
                url_auth: f
                    .url
                    .as_ref()
                    .and_then(|u| u.auth)
                    .unwrap_or(EndpointAuth::Iam),
                deployment_bucket: f.s3.deployment_bucket.clone(),
                arch: f.architecture.or(common.arch),
                ephemeral_storage: f.ephemeral_storage.or(common.ephemeral_storage),
                role: f.role.clone().or_else(|| common.role.clone()),
                layer: f.layer.clone().or_else(|| common.layer.clone()),
                runtime_in_package: common.runtime_in_package,
                files: RuntimeFiles {
                    layer_zip: common.files.layer_zip.clone(),
                    bootstrap: common.files.bootstrap.clone(),
                    shim_dir: common.files.shim_dir.clone(),
                },
                json: common.json,
            })
            .collect()
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = "functions:\n  first:\n    image: debian\n    s3: {input_bucket: in, output_bucket: mid, output_folder: stage1}\n  second:\n    image: debian\n    memory: 512\n    s3: {input_bucket: mid, input_folder: stage1/}\n";

    /// The JSON Schema of the file, for editors (`docs/scar-functions.schema.json`).
    fn json_schema() -> serde_json::Result<String> {
        let schema = schemars::schema_for!(Definitions);
        Ok(serde_json::to_string_pretty(&schema)? + "\n")
    }

    #[test]
    fn the_json_schema_in_docs_is_generated_from_these_types() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/scar-functions.schema.json"
        );
        let schema = json_schema().unwrap();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &schema).unwrap();
            return;
        }
        assert_eq!(
            std::fs::read_to_string(path).unwrap_or_default(),
            schema,
            "docs/scar-functions.schema.json disagrees with definitions.rs: run `make docs`"
        );
    }

    #[test]
    fn the_schema_lists_every_key_and_refuses_others() {
        let schema: serde_json::Value = serde_json::from_str(&json_schema().unwrap()).unwrap();
        let function = &schema["$defs"]["Function"];
        assert_eq!(function["additionalProperties"], false, "{function}");
        let keys: Vec<&str> = function["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in fuzz::KEYS.iter().filter(|k| **k != "memroy") {
            assert!(
                keys.contains(key),
                "{key} missing from the schema: {keys:?}"
            );
        }
        assert_eq!(keys.len(), fuzz::KEYS.len() - 1, "{keys:?}");
        assert_eq!(schema["$defs"]["S3"]["additionalProperties"], false);
        let functions = &schema["$defs"]["Map_of_Function"];
        assert_eq!(
            functions["propertyNames"]["pattern"],
            "^[A-Za-z0-9_-]{1,64}$"
        );
        assert_eq!(functions["minProperties"], 1);
        let levels = schema["$defs"]["LogLevel"]["enum"].as_array().unwrap();
        for level in ["info", "INFO", "fatal", "FATAL"] {
            assert!(levels.contains(&serde_json::json!(level)), "{levels:?}");
        }
        // Each accepted spelling parses, as the schema says.
        for level in levels {
            let text = format!(
                "functions:\n  a:\n    image: x\n    log_level: {}\n",
                level.as_str().unwrap()
            );
            Definitions::parse(&text).unwrap();
        }
    }

    #[test]
    fn the_documented_example_is_a_valid_file() {
        let doc = include_str!("../../docs/functions.md");
        let start = doc.find("```yaml\n").unwrap() + "```yaml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let definitions = Definitions::parse(&doc[start..end]).unwrap();
        assert_eq!(definitions.names(), ["resize", "archive"]);
    }

    #[test]
    fn update_args_carry_what_update_changes_in_place() {
        let d = Definitions::parse(
            "functions:\n  a:\n    image: debian\n    memory: 512\n    log_level: INFO\n    environment: {K: v}\n    runtime_environment: {SCAR_LOG_OUTPUT: 'off'}\n  b:\n    image_file: b.tar\n    s3: {deployment_bucket: d}\n",
        )
        .unwrap();
        let all = d.update_args(true);
        let (name, a) = &all[0];
        assert_eq!(name, "a");
        assert_eq!(a.memory, Some(512));
        assert_eq!(a.log_level, Some(LogLevel::Info));
        assert_eq!(a.env, [("K".to_owned(), "v".to_owned())]);
        assert_eq!(
            a.function_env,
            [("SCAR_LOG_OUTPUT".to_owned(), "off".to_owned())]
        );
        assert_eq!(a.image.as_deref(), Some("debian"));
        assert!(a.json);
        assert_eq!(
            all[1].1.image, None,
            "an image_file is not re-staged by update"
        );
    }

    #[test]
    fn a_pipeline_reads_in_order() {
        let d = Definitions::parse(PIPELINE).unwrap();
        assert_eq!(d.names(), ["first", "second"]);
    }

    #[test]
    fn bad_files_are_refused_with_the_key_and_line() {
        for (text, expected) in [
            (
                "functions:\n  a:\n    image: x\n    memroy: 5\n",
                "functions.a: unknown field `memroy`",
            ),
            (
                "functions:\n  a:\n    image: x\n    memory: lots\n",
                "functions.a.memory: invalid type",
            ),
            (
                "functions:\n  a:\n    image: x\n  a:\n    image: y\n",
                "function a is defined twice",
            ),
            (
                "functions:\n  a:\n    memory: 5\n",
                "exactly one of image and image_file",
            ),
            ("functions: {}\n", "no function is defined"),
            ("functions:\n  a b:\n    image: x\n", "functions.a b"),
            (
                "functions:\n  a:\n    image: x\n    s3: {input_bucket: b, input_folder: in, output_folder: in/out}\n",
                "every output would run the function again",
            ),
            (
                "functions:\n  a:\n    image: x\n    s3: {input_bucket: b, input_folder: data/, output_folder: data/}\n",
                "inside the input folder",
            ),
        ] {
            let error = Definitions::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let error =
            Definitions::parse("functions:\n  a:\n    image: x\n    memroy: 5\n").unwrap_err();
        assert!(error.contains("line 4"), "{error}");
    }
}
