//! What can go wrong, by cause. Every message names the thing at fault and, where there is
//! one, the command or setting that fixes it.

use std::path::PathBuf;

use crate::settings::SettingsError;

/// A deployer failure.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The defaults file.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A flag or file that cannot be used; found before anything was created.
    #[error("{0}")]
    Invalid(String),
    /// `init` without a role.
    #[error("no IAM role for the function: pass --role ARN or set aws.role in {settings}")]
    NoRole {
        /// The defaults file.
        settings: PathBuf,
    },
    /// The role does not exist or cannot be read.
    #[error("IAM role {role} cannot be used: {message}")]
    Role {
        /// Its ARN.
        role: String,
        /// IAM's answer.
        message: String,
    },
    /// No AWS region anywhere.
    #[error("no AWS region: set AWS_REGION, aws.region in the defaults file, or pass --region")]
    NoRegion,
    /// A function that is not there.
    #[error("no function named {0} (deployer ls lists them)")]
    NoFunction(String),
    /// A function this deployer did not create.
    #[error("function {0} was not created by the deployer; it is left alone")]
    NotManaged(String),
    /// `init` of a name already taken.
    #[error("function {0} already exists (deployer rm -n {0} removes it)")]
    FunctionExists(String),
    /// A bucket that exists but is not reachable with these credentials.
    #[error("bucket {bucket} exists but belongs to another account or denies access: {message}")]
    BucketNotOwned {
        /// The bucket.
        bucket: String,
        /// S3's answer.
        message: String,
    },
    /// No layer published for the architecture.
    #[error(
        "no runtime layer for {arch} in this region: run `deployer layer publish --arch {arch}`, or pass --layer ARN or --runtime-in-package"
    )]
    NoLayer {
        /// The architecture.
        arch: &'static str,
    },
    /// No HTTP endpoint on the function.
    #[error("function {0} has no HTTP endpoint (create it with init -api NAME)")]
    NoEndpoint(String),
    /// An AWS call failed.
    #[error("{operation}: {message}")]
    Aws {
        /// The call, e.g. `lambda:CreateFunction`.
        operation: &'static str,
        /// The SDK's error with its causes.
        message: String,
    },
    /// A local file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A zip could not be made or read.
    #[error("{path}: {message}")]
    Package {
        /// The zip or input file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The image could not be read or staged.
    #[error("staging image {image}: {message}")]
    Staging {
        /// The image.
        image: String,
        /// What went wrong.
        message: String,
    },
    /// An HTTP call to the function's endpoint failed.
    #[error("{url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// `init --preheat`: the function was created, but its first invocation failed.
    #[error(
        "function {name} was created, but its preheat invocation failed: {message} (deployer run -n {name} tries again; deployer rm -n {name} removes it)"
    )]
    Preheat {
        /// The function.
        name: String,
        /// Lambda's error, as `ErrorType: message`.
        message: String,
    },
    /// A step of `init` failed; what had been created was removed again.
    #[error("{cause}{}", undo_report(.undo_failures))]
    RolledBack {
        /// The failure.
        cause: Box<DeployError>,
        /// Resources that could not be removed, with why.
        undo_failures: Vec<String>,
    },
}

fn undo_report(failures: &[String]) -> String {
    if failures.is_empty() {
        " (everything created before the failure was removed again)".into()
    } else {
        format!(
            " (and these could not be removed, delete them by hand: {})",
            failures.join("; ")
        )
    }
}

impl DeployError {
    /// Wraps an SDK error with the operation's name: the service's code and message when
    /// it answered, else the whole cause chain (a connection error, a timeout).
    pub fn aws<E>(operation: &'static str) -> impl FnOnce(E) -> Self
    where
        E: aws_sdk_lambda::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        move |e| {
            let message = match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
            };
            Self::Aws { operation, message }
        }
    }

    /// A file that could not be put into or fetched from S3: its file's error, or S3's.
    pub fn transfer(e: scar_image::s3::TransferError) -> Self {
        match e {
            scar_image::s3::TransferError::File { path, source } => Self::Io { path, source },
            scar_image::s3::TransferError::S3 { operation, message } => {
                Self::Aws { operation, message }
            }
        }
    }

    /// Wraps a file error with its path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io {
            path: path.into(),
            source,
        }
    }
}
