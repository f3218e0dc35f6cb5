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
//! Relative paths (`init_script`, `image_file`) are taken from the file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{Arch, EndpointAuth, InitArgs, RuntimeFiles};
use crate::error::DeployError;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    functions: UniqueMap<Function>,
}

/// One function, with SCAR's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Function {
    image: Option<String>,
    image_file: Option<PathBuf>,
    init_script: Option<PathBuf>,
    description: Option<String>,
    memory: Option<i32>,
    time: Option<i32>,
    timeout_threshold: Option<u32>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Variables for the runtime itself (`SCAR_*`).
    #[serde(default)]
    runtime_environment: BTreeMap<String, String>,
    #[serde(default)]
    s3: S3,
    api_gateway: Option<ApiGateway>,
    url: Option<Url>,
    architecture: Option<Arch>,
    ephemeral_storage: Option<i32>,
    layer: Option<String>,
    role: Option<String>,
    #[serde(default)]
    fakeroot: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3 {
    input_bucket: Option<String>,
    input_folder: Option<String>,
    output_bucket: Option<String>,
    output_folder: Option<String>,
    deployment_bucket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiGateway {
    name: String,
    auth: Option<EndpointAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Url {
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
