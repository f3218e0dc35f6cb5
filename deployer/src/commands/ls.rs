//! `deployer ls`: SCAR's table of the functions this deployer made.

use std::io::Write;

use serde::Serialize;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::LsArgs;
use crate::error::DeployError;
use crate::list::{self, ManagedFunction};

/// Every managed function.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Functions(Vec<ManagedFunction>);

impl Report for Functions {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(list::table(&self.0).as_bytes())
    }
}

pub(crate) async fn run(aws: &Aws, args: &LsArgs) -> Result<u8, DeployError> {
    if let Some(bucket) = &args.bucket {
        return super::objects::list(aws, bucket, args.bucket_folder.as_deref(), args.json).await;
    }
    emit(&Functions(list::list(aws).await?), args.json)?;
    Ok(0)
}
