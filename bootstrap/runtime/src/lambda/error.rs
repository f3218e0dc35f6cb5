//! Why an invocation failed. The command failing is not one of these: it is reported in the
//! response. Each kind has a stable `errorType`, which Lambda shows the caller as
//! `{errorType, errorMessage}`.

use scar_image::{PullError, ReferenceError};

use super::event::EventError;
use super::s3::S3Error;
use crate::exec::ExecError;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// `Scar.InvalidEvent`.
    #[error(transparent)]
    Event(#[from] EventError),
    /// `Scar.ImageError`: the reference is wrong, the image is missing, a layer is corrupt…
    #[error("cannot pull {image}: {source}")]
    Image {
        /// The reference.
        image: String,
        /// Why.
        source: PullError,
    },
    /// `Scar.ImageError`: the reference does not parse.
    #[error("{image}: {source}")]
    Reference {
        /// The reference.
        image: String,
        /// Why.
        source: ReferenceError,
    },
    /// `Scar.NoSpace`: /tmp cannot hold the image (also [`ExecError::FetchNoSpace`]: a
    /// lazy tree's file that did not fit).
    #[error("{0}")]
    NoSpace(PullError),
    /// `Scar.Deadline`: no time was left for a stage.
    #[error("{0}")]
    Deadline(String),
    /// `Scar.ExecError`: the command could not be started.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// `Scar.S3Error`: an input could not be downloaded or an output uploaded.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// `Scar.IoError`: the request directory could not be prepared.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl InvokeError {
    /// The `errorType` Lambda reports.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Event(_) => "Scar.InvalidEvent",
            Self::Image { .. } | Self::Reference { .. } => "Scar.ImageError",
            Self::Exec(ExecError::Fetch(_)) => "Scar.ImageError",
            Self::NoSpace(_) | Self::Exec(ExecError::FetchNoSpace(_)) => "Scar.NoSpace",
            Self::Deadline(_) => "Scar.Deadline",
            Self::Exec(_) => "Scar.ExecError",
            Self::S3(_) => "Scar.S3Error",
            Self::Io { .. } => "Scar.IoError",
        }
    }

    /// The document Lambda (and `--emulate`) show for this error.
    pub fn to_error_document(&self) -> ErrorDocument {
        ErrorDocument {
            error_type: self.error_type().to_owned(),
            error_message: self.to_string(),
        }
    }
}

/// `{errorType, errorMessage}`, as Lambda reports a failed invocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDocument {
    /// A stable `Scar.*` name.
    pub error_type: String,
    /// What went wrong, in words.
    pub error_message: String,
}

/// An I/O failure while preparing `what`.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InvokeError {
    let what = what.into();
    move |source| InvokeError::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scar_image::lazy::LazyFault;

    /// A full /tmp is the function's configuration whichever stage found it; any other fetch
    /// fault is the image's.
    #[test]
    fn a_lazy_file_that_does_not_fit_is_no_space_and_other_faults_are_the_images() {
        let no_space = LazyFault::NoSpace {
            path: "usr/bin/perl".into(),
        };
        let error = InvokeError::Exec(ExecError::from(&no_space));
        assert_eq!(error.error_type(), "Scar.NoSpace");
        let message = error.to_string();
        assert!(
            message.contains("/usr/bin/perl") && message.contains("ephemeral storage"),
            "{message}"
        );
        let broken = LazyFault::Fetch {
            path: "usr/bin/perl".into(),
            problem: "digest mismatch".into(),
        };
        assert!(!broken.is_no_space());
        assert_eq!(
            InvokeError::Exec(ExecError::from(&broken)).error_type(),
            "Scar.ImageError"
        );
    }
}
