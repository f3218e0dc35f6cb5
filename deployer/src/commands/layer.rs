//! `deployer layer build|publish`.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::{LayerBuildArgs, LayerPublishArgs};
use crate::error::DeployError;
use crate::layer::{self, Published};

/// A zip written by `layer build`.
#[derive(Debug, Serialize)]
struct Built {
    path: PathBuf,
    bytes: u64,
}

impl Report for Built {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{}\t{} bytes ({:.1} MB)",
            self.path.display(),
            self.bytes,
            self.bytes as f64 / 1048576.0
        )
    }
}

impl Report for Published {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{}\t{} bytes", self.arn, self.bytes)
    }
}

/// Builds the zip; needs neither AWS nor the defaults file.
pub(crate) fn build(args: &LayerBuildArgs) -> Result<u8, DeployError> {
    let bytes = layer::build(args)?;
    let built = Built {
        path: args.output.clone(),
        bytes,
    };
    emit(&built, args.json)?;
    Ok(0)
}

pub(crate) async fn publish(aws: &Aws, args: &LayerPublishArgs) -> Result<u8, DeployError> {
    emit(&layer::publish(aws, args).await?, args.json)?;
    Ok(0)
}
