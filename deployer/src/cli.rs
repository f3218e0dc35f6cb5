//! The command line: SCAR's commands and flags, parsed by clap.
//!
//! SCAR spelled several flags as multi-letter single-dash options (`-if`, `-tt`, `-es`,
//! `-db`, `-api`, `-ls`, `-ri`, `-ep`, `-ll`), which no argument parser accepts as short flags. They are
//! rewritten to their long names before parsing, so both `-tt 20` and
//! `--timeout-threshold 20` work; [`SCAR_FLAGS`] is the table.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// SCAR's multi-letter single-dash flags and the long flags they stand for.
pub const SCAR_FLAGS: &[(&str, &str)] = &[
    ("-if", "--image-file"),
    ("-tt", "--timeout-threshold"),
    ("-es", "--event-source"),
    ("-db", "--deployment-bucket"),
    ("-api", "--api-gateway-name"),
    ("-ls", "--log-stream-name"),
    ("-ri", "--request-id"),
    ("-ep", "--extra-payload"),
    ("-ll", "--log-level"),
];

/// Rewrites SCAR's multi-letter flags (up to a `--`, after which arguments belong to the
/// container's command).
pub fn normalize_scar_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut passthrough = false;
    args.into_iter()
        .map(|arg| {
            if passthrough {
                return arg;
            }
            if arg == "--" {
                passthrough = true;
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            let (flag, value) = match text.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (text, None),
            };
            match SCAR_FLAGS.iter().find(|(scar, _)| *scar == flag) {
                Some((_, long)) => match value {
                    Some(v) => OsString::from(format!("{long}={v}")),
                    None => OsString::from(*long),
                },
                None => arg,
            }
        })
        .collect()
}

/// Run any OCI image as an AWS Lambda function: publish the runtime layer, then create,
/// run, list, follow and remove functions as SCAR did.
#[derive(Debug, Parser)]
#[command(name = "deployer", version, about, long_about = None)]
pub struct Cli {
    /// The defaults file [default: $SCAR_DEPLOYER_CONFIG, else ~/.config/scar/deployer.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AWS region (else the defaults file, else the standard AWS chain)
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build or publish the runtime layer (bootstrap and the fakechroot shims)
    #[command(subcommand)]
    Layer(LayerCommand),
    /// Create a function that runs an image
    Init(Box<InitArgs>),
    /// Change a function's memory, time, threshold, variables, log level or image, in place
    Update(UpdateArgs),
    /// Invoke a function and print the container's output
    Run(RunArgs),
    /// Call a function's HTTP endpoint (GET, or POST of a file)
    Invoke(InvokeArgs),
    /// List the functions this deployer created
    Ls(LsArgs),
    /// Print a function's logs
    Log(LogArgs),
    /// Remove a function and everything init created for it
    Rm(RmArgs),
    /// Upload a file or a folder to a bucket (into a function's input folder, it runs it)
    Put(PutArgs),
    /// Download a bucket folder's files (a function's outputs)
    Get(GetArgs),
    /// Copy an image into a bucket once, re-encoded for fast cold starts, for several functions to share (init -i s3://…)
    Stage(StageArgs),
}

/// `deployer stage`
#[derive(Debug, Clone, Args)]
pub struct StageArgs {
    /// Image reference (Docker Hub by default, any registry, oci:DIR or docker-archive:FILE)
    #[arg(
        short = 'i',
        long,
        required_unless_present = "image_file",
        conflicts_with = "image_file"
    )]
    pub image: Option<String>,
    /// A `docker save` file (SCAR: -if)
    #[arg(long, value_name = "FILE")]
    pub image_file: Option<PathBuf>,
    /// The bucket; created when missing (SCAR: -db)
    #[arg(long, value_name = "BUCKET")]
    pub deployment_bucket: String,
    /// The shared name: the image goes under s3://BUCKET/scar-rs/shared-images/NAME/
    #[arg(short = 'n', long)]
    pub name: String,
    /// Architecture, which picks the image from a multi-platform index
    #[arg(long, value_enum, default_value = "x86_64")]
    pub arch: Arch,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// Lambda's two architectures.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Intel/AMD.
    #[value(name = "x86_64")]
    #[serde(rename = "x86_64")]
    X86_64,
    /// Graviton.
    Arm64,
}

impl Arch {
    /// The name Lambda uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }
}

/// `deployer layer …`
#[derive(Debug, Subcommand)]
pub enum LayerCommand {
    /// Zip bootstrap and the shims in the layout Lambda expects, and print the size
    Build(LayerBuildArgs),
    /// Publish a layer version (built from the given files, or a zip from `layer build`)
    Publish(LayerPublishArgs),
}

/// Where the runtime's files come from.
#[derive(Debug, Clone, Args)]
pub struct RuntimeFiles {
    /// A zip made by `deployer layer build` [default: target/layer/scar-layer-ARCH.zip]
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bootstrap", "shim_dir"])]
    pub layer_zip: Option<PathBuf>,
    /// The bootstrap binary to package (instead of a layer zip)
    #[arg(long, value_name = "FILE", requires = "shim_dir")]
    pub bootstrap: Option<PathBuf>,
    /// The directory holding scar-fakechroot-glibc.so and scar-fakechroot-musl.so
    #[arg(long, value_name = "DIR", requires = "bootstrap")]
    pub shim_dir: Option<PathBuf>,
}

/// Who may call an HTTP endpoint.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointAuth {
    /// Only requests signed (SigV4) by a principal allowed to invoke the function.
    Iam,
    /// Anyone who knows the URL: every request runs the function under its role.
    None,
}

impl EndpointAuth {
    /// The tag value, and what the deployer reads back.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iam => "iam",
            Self::None => "none",
        }
    }
}

/// `deployer layer build`
#[derive(Debug, Args)]
pub struct LayerBuildArgs {
    /// The architecture the files are built for (checked)
    #[arg(long, value_enum, default_value = "x86_64")]
    pub arch: Arch,
    /// The bootstrap binary
    #[arg(long, value_name = "FILE")]
    pub bootstrap: PathBuf,
    /// The directory holding both shim builds
    #[arg(long, value_name = "DIR")]
    pub shim_dir: PathBuf,
    /// The zip to write
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `deployer layer publish`
#[derive(Debug, Args)]
pub struct LayerPublishArgs {
    /// The architecture the files are built for
    #[arg(long, value_enum, default_value = "x86_64")]
    pub arch: Arch,
    /// Share the layer version with every AWS account
    #[arg(long, conflicts_with = "principal")]
    pub public: bool,
    /// Share the layer version with one AWS account (or an organization's account id)
    #[arg(long, value_name = "ACCOUNT")]
    pub principal: Option<String>,
    /// The files to publish.
    #[command(flatten)]
    pub files: RuntimeFiles,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `deployer init`
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Function name [default: scar- and the image's name, numbered when taken, as SCAR named them]
    #[arg(short = 'n', long, default_value = "", hide_default_value = true)]
    pub name: String,
    /// A function definition file: every function in it, all or none (SCAR: -f; docs/functions.md)
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["image", "image_file", "script"])]
    pub file: Option<PathBuf>,
    /// Image reference (Docker Hub by default, any registry, oci:DIR or docker-archive:FILE)
    #[arg(
        short = 'i',
        long,
        required_unless_present_any = ["image_file", "file"],
        conflicts_with = "image_file"
    )]
    pub image: Option<String>,
    /// A `docker save` file to stage in the deployment bucket (SCAR: -if)
    #[arg(long, value_name = "FILE", requires = "deployment_bucket")]
    pub image_file: Option<PathBuf>,
    /// Shell script run by S3 and HTTP events and by `run` without a command
    #[arg(short = 's', long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Memory in MB (128 to 10240) [default: from the defaults file]
    #[arg(short = 'm', long)]
    pub memory: Option<i32>,
    /// Timeout in seconds (1 to 900) [default: from the defaults file]
    #[arg(short = 't', long)]
    pub time: Option<i32>,
    /// Seconds kept back before the timeout to stop the command and upload its output (SCAR: -tt)
    #[arg(long, value_name = "SECS")]
    pub timeout_threshold: Option<u32>,
    /// Description
    #[arg(short = 'd', long)]
    pub description: Option<String>,
    /// A variable for the container, KEY=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// A variable for the runtime itself (SCAR_*, AWS_ENDPOINT_URL…), KEY=VALUE (repeatable)
    #[arg(long = "function-env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub function_env: Vec<(String, String)>,
    /// Invoke the function once right after creating it, so that the image is pulled and cached before the first request (SCAR: -p)
    #[arg(short = 'p', long)]
    pub preheat: bool,
    /// Run the command as a fake root, so that apt-get, dpkg and pip can install into the image (SCAR_FAKEROOT=1)
    #[arg(long)]
    pub fakeroot: bool,
    /// A folder shipped in the function package; commands find it at $EXTRA_PAYLOAD (SCAR: -ep)
    #[arg(long, value_name = "DIR")]
    pub extra_payload: Option<PathBuf>,
    /// The runtime's log level; Lambda then writes its log as JSON records (SCAR: -ll)
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Bucket whose uploads into the input folder run the function; created with input/ and output/ if missing (SCAR: -es)
    #[arg(long, value_name = "BUCKET")]
    pub event_source: Option<String>,
    /// Bucket for output files [default: the event's bucket]
    #[arg(long, value_name = "BUCKET")]
    pub output_bucket: Option<String>,
    /// Input folder in the event bucket
    #[arg(long, value_name = "PREFIX", default_value = "input/")]
    pub input_folder: String,
    /// Output folder in the output bucket
    #[arg(long, value_name = "PREFIX", default_value = "output/")]
    pub output_folder: String,
    /// Create a REST API with this name whose every route runs the function (SCAR: -api)
    #[arg(long, value_name = "NAME")]
    pub api_gateway_name: Option<String>,
    /// Who may call the REST API: callers signing with AWS credentials (iam) or anyone (none)
    #[arg(long, value_enum, default_value = "iam", requires = "api_gateway_name")]
    pub api_auth: EndpointAuth,
    /// Create a Function URL for the function
    #[arg(long)]
    pub url: bool,
    /// Who may call the Function URL: callers signing with AWS credentials (iam) or anyone (none)
    #[arg(long, value_enum, default_value = "iam", requires = "url")]
    pub url_auth: EndpointAuth,
    /// Stage the image in this bucket so cold starts read it from S3, not the registry (SCAR: -db)
    #[arg(long, value_name = "BUCKET")]
    pub deployment_bucket: Option<String>,
    /// Architecture [default: from the defaults file]
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Size of /tmp in MB (512 to 10240) [default: from the defaults file]
    #[arg(long, value_name = "MB")]
    pub ephemeral_storage: Option<i32>,
    /// IAM role ARN the function runs as [default: from the defaults file]
    #[arg(long, value_name = "ARN")]
    pub role: Option<String>,
    /// Layer version ARN to attach [default: the newest version `layer publish` made]
    #[arg(long, value_name = "ARN", conflicts_with = "runtime_in_package")]
    pub layer: Option<String>,
    /// Put bootstrap and the shims into the function package instead of using a layer
    #[arg(long)]
    pub runtime_in_package: bool,
    /// The runtime's files, with --runtime-in-package.
    #[command(flatten)]
    pub files: RuntimeFiles,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `deployer run`
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Function name
    #[arg(
        short = 'n',
        long,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub name: Option<String>,
    /// Run every function of a definition file, in its order, with these options (SCAR: -f)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "event_source"
    )]
    pub file: Option<PathBuf>,
    /// A shell script to run instead of the function's
    #[arg(short = 's', long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// A variable for the container, KEY=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// Do not wait for the result
    #[arg(short = 'a', long = "async")]
    pub asynchronous: bool,
    /// Print the whole JSON response
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Send one S3 event per object in this bucket's input folder (SCAR: -es)
    #[arg(long, value_name = "BUCKET")]
    pub event_source: Option<String>,
    /// The input folder, with --event-source
    #[arg(long, value_name = "PREFIX", default_value = "input/")]
    pub input_folder: String,
    /// Asynchronous invokes in flight at once, with --event-source
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// With --event-source: send events only for the keys listed in FILE, one per line (what
    /// --failed-keys wrote, to re-send only what failed)
    #[arg(long, value_name = "FILE", requires = "event_source")]
    pub keys: Option<PathBuf>,
    /// With --event-source: write the keys whose event could not be sent to FILE, one per line
    #[arg(long, value_name = "FILE", requires = "event_source")]
    pub failed_keys: Option<PathBuf>,
    /// The command and arguments (after the image's entrypoint); `--` before it is optional
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `deployer invoke`
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Function name
    #[arg(short = 'n', long)]
    pub name: String,
    /// POST this file as the request body (else GET)
    #[arg(short = 'd', long = "data-binary", value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Parameters as a JSON object of strings, numbers or booleans, sent as the query string;
    /// the script reads each as `HTTP_QUERY_<NAME>` (SCAR: -p)
    #[arg(short = 'p', long, value_name = "JSON")]
    pub parameters: Option<String>,
    /// Ask API Gateway to run the function asynchronously
    #[arg(short = 'a', long = "async")]
    pub asynchronous: bool,
    /// Write the response body to this file instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `deployer ls`
#[derive(Debug, Args)]
pub struct LsArgs {
    /// List this bucket's files instead of the functions (SCAR: ls -b)
    #[arg(short = 'b', long)]
    pub bucket: Option<String>,
    /// Only the files under this folder of the bucket (SCAR: -bf)
    #[arg(
        long = "bucket-folder",
        alias = "bf",
        requires = "bucket",
        value_name = "FOLDER"
    )]
    pub bucket_folder: Option<String>,
    /// JSON instead of a table
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `deployer put`
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The bucket
    #[arg(short = 'b', long)]
    pub bucket: String,
    /// The folder of the bucket to upload into (SCAR: -bf) [default: the bucket's top]
    #[arg(long = "bucket-folder", alias = "bf", value_name = "FOLDER")]
    pub bucket_folder: Option<String>,
    /// A file, or a folder whose files are uploaded with their relative paths
    #[arg(short = 'p', long)]
    pub path: PathBuf,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `deployer get`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The bucket
    #[arg(short = 'b', long)]
    pub bucket: String,
    /// The folder of the bucket to download (SCAR: -bf) [default: the whole bucket]
    #[arg(long = "bucket-folder", alias = "bf", value_name = "FOLDER")]
    pub bucket_folder: Option<String>,
    /// Where to write the files, with their paths under the folder [default: .]
    #[arg(short = 'p', long, default_value = ".")]
    pub path: PathBuf,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `deployer log`
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Function name
    #[arg(short = 'n', long)]
    pub name: String,
    /// Only this log stream (SCAR: -ls)
    #[arg(long, value_name = "STREAM")]
    pub log_stream_name: Option<String>,
    /// Only the lines of this request (SCAR: -ri)
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// The levels Lambda's advanced logging controls take (`ApplicationLogLevel`); a definition
/// file may spell them as SCAR did (`INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    #[serde(alias = "TRACE")]
    Trace,
    /// The runtime's decisions (cache hits, exec plans).
    #[serde(alias = "DEBUG")]
    Debug,
    /// The default.
    #[serde(alias = "INFO")]
    Info,
    /// Only what went wrong or may go wrong.
    #[serde(alias = "WARN")]
    Warn,
    /// Only what went wrong.
    #[serde(alias = "ERROR")]
    Error,
    /// Only what ends the runtime.
    #[serde(alias = "FATAL")]
    Fatal,
}

/// Both spellings the parser takes (`info`, SCAR's `INFO`), so that an editor checking a
/// definition file accepts what the deployer accepts.
impl schemars::JsonSchema for LogLevel {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LogLevel".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<String> = Self::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .flat_map(|v| [v.get_name().to_owned(), v.get_name().to_uppercase()])
            .collect();
        schemars::json_schema!({
            "description": "Lambda's application log level (JSON log records)",
            "type": "string",
            "enum": names,
        })
    }
}

/// `deployer update`
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// Function name
    #[arg(
        short = 'n',
        long,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub name: Option<String>,
    /// Bring every function of a definition file to its memory, time, timeout_threshold, log_level, image and variables (the container's are replaced, the runtime's set)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with_all = ["memory", "time", "timeout_threshold", "env", "unset_env", "function_env", "log_level", "image", "deployment_bucket"]
    )]
    pub file: Option<PathBuf>,
    /// Memory in MB (128 to 10240)
    #[arg(short = 'm', long)]
    pub memory: Option<i32>,
    /// Timeout in seconds (1 to 900)
    #[arg(short = 't', long)]
    pub time: Option<i32>,
    /// Seconds kept back before the timeout to stop the command and upload its output (SCAR: -tt)
    #[arg(long, value_name = "SECS")]
    pub timeout_threshold: Option<u32>,
    /// Set a variable for the container, KEY=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// Remove a variable of the container (repeatable)
    #[arg(long = "unset-env", value_name = "KEY")]
    pub unset_env: Vec<String>,
    /// Set a variable for the runtime itself (SCAR_*, AWS_ENDPOINT_URL…), KEY=VALUE (repeatable)
    #[arg(long = "function-env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub function_env: Vec<(String, String)>,
    /// The runtime's log level; Lambda then writes its log as JSON records (SCAR: -ll)
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Another image reference for the function to pull
    #[arg(short = 'i', long)]
    pub image: Option<String>,
    /// Stage the new image in this bucket, as init -db does (the function's staged prefix is rewritten) (SCAR: -db)
    #[arg(long, value_name = "BUCKET", requires = "image")]
    pub deployment_bucket: Option<String>,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `deployer rm`
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Function name
    #[arg(
        short = 'n',
        long,
        required_unless_present_any = ["all", "file"],
        conflicts_with_all = ["all", "file"]
    )]
    pub name: Option<String>,
    /// Every function of a definition file (SCAR: -f)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "all"
    )]
    pub file: Option<PathBuf>,
    /// Every function this deployer created (found by its tag)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// JSON instead of text
    #[arg(short = 'j', long)]
    pub json: bool,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn scar_flags_become_long_flags_until_the_separator() {
        let got = normalize_scar_flags(os(&[
            "deployer", "init", "-n", "f", "-if", "img.tar", "-tt=5", "-api", "a", "--", "-es",
        ]));
        assert_eq!(
            got,
            os(&[
                "deployer",
                "init",
                "-n",
                "f",
                "--image-file",
                "img.tar",
                "--timeout-threshold=5",
                "--api-gateway-name",
                "a",
                "--",
                "-es"
            ])
        );
    }

    #[test]
    fn scar_command_lines_parse() {
        let cli = Cli::try_parse_from(normalize_scar_flags(os(&[
            "deployer",
            "init",
            "-n",
            "cow",
            "-i",
            "grycap/cowsay",
            "-m",
            "1024",
            "-t",
            "60",
            "-tt",
            "5",
            "-e",
            "A=1",
            "-e",
            "B=x=y",
            "-es",
            "bkt",
            "-api",
            "cowapi",
        ])))
        .unwrap();
        let Command::Init(init) = cli.command else {
            panic!("not init")
        };
        assert_eq!(init.image.as_deref(), Some("grycap/cowsay"));
        assert_eq!(
            (init.memory, init.time, init.timeout_threshold),
            (Some(1024), Some(60), Some(5))
        );
        assert_eq!(init.env[1], ("B".into(), "x=y".into()));
        assert_eq!(init.event_source.as_deref(), Some("bkt"));
        assert_eq!(init.api_gateway_name.as_deref(), Some("cowapi"));

        let cli = Cli::try_parse_from(os(&[
            "deployer",
            "run",
            "-n",
            "cow",
            "--",
            "/usr/games/cowsay",
            "-f",
            "tux",
        ]))
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["/usr/games/cowsay", "-f", "tux"]);
    }

    #[test]
    fn contradictions_are_refused() {
        for args in [
            &["deployer", "init", "-n", "f"][..],
            &[
                "deployer",
                "init",
                "-n",
                "f",
                "-i",
                "x",
                "--image-file",
                "y",
            ],
            &["deployer", "init", "-n", "f", "--image-file", "y"],
            &["deployer", "rm"],
            &["deployer", "rm", "-n", "f", "-a"],
            &["deployer", "init", "-n", "f", "-i", "x", "-e", "NOEQUALS"],
            &[
                "deployer",
                "layer",
                "publish",
                "--public",
                "--principal",
                "1",
            ],
        ] {
            assert!(Cli::try_parse_from(os(args)).is_err(), "{args:?}");
        }
    }
}
