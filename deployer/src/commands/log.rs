//! `deployer log`: a function's log, one stream, or one request.

use std::io::Write;

use serde::Serialize;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::LogArgs;
use crate::error::DeployError;
use crate::list;
use crate::logs::{self, Line};

/// The lines read.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Lines(Vec<Line>);

impl Report for Lines {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.0
            .iter()
            .try_for_each(|line| writeln!(out, "{}", line.message))
    }
}

pub(crate) async fn run(aws: &Aws, args: &LogArgs) -> Result<u8, DeployError> {
    list::lookup(aws, &args.name).await?;
    let lines = logs::fetch(
        aws,
        &args.name,
        args.log_stream_name.as_deref(),
        args.request_id.as_deref(),
    )
    .await?;
    emit(&Lines(lines), args.json)?;
    Ok(0)
}
