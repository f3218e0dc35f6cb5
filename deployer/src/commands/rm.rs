//! `deployer rm`: a function and what init recorded in its tags, or every managed function.

use std::io::Write;

use serde::Serialize;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::RmArgs;
use crate::definitions::Definitions;
use crate::error::DeployError;
use crate::remove;

/// What was removed, one resource a line.
#[derive(Debug, Serialize)]
struct Removed {
    removed: Vec<String>,
}

impl Report for Removed {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.removed
            .iter()
            .try_for_each(|what| writeln!(out, "removed {what}"))
    }
}

pub(crate) async fn run(aws: &Aws, args: &RmArgs) -> Result<u8, DeployError> {
    let removed = match (&args.name, &args.file) {
        (Some(name), _) => remove::remove_named(aws, name).await?,
        (None, Some(file)) => {
            let mut removed = Vec::new();
            for name in Definitions::load(file)?.names() {
                removed.extend(remove::remove_named(aws, &name).await?);
            }
            removed
        }
        (None, None) => remove::remove_all(aws).await?,
    };
    emit(&Removed { removed }, args.json)?;
    Ok(0)
}
