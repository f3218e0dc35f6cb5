//! `deployer init`.

use std::io::Write;
use std::path::Path;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::{EndpointAuth, InitArgs};
use crate::error::DeployError;
use crate::init::{self, Created};
use crate::settings::Settings;

impl Report for Created {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "function  {}", self.function_arn)?;
        writeln!(out, "image     {}", self.image)?;
        match &self.layer {
            Some(layer) => writeln!(out, "layer     {layer}")?,
            None => writeln!(out, "runtime   in the function package")?,
        }
        if let Some(trigger) = &self.trigger {
            writeln!(out, "trigger   uploads to {trigger}")?;
        }
        if let Some(endpoint) = &self.endpoint {
            writeln!(out, "endpoint  {endpoint}")?;
        }
        Ok(())
    }
}

pub(crate) async fn run(
    aws: &Aws,
    settings: &Settings,
    settings_path: &Path,
    args: &InitArgs,
) -> Result<u8, DeployError> {
    let open = (args.api_gateway_name.is_some() && args.api_auth == EndpointAuth::None)
        || (args.url && args.url_auth == EndpointAuth::None);
    if open {
        eprintln!(
            "warning: the endpoint takes unsigned requests: anyone who finds its URL runs the function under its role"
        );
    }
    let plan = init::plan(aws, settings, settings_path, args).await?;
    emit(&init::init(aws, plan).await?, args.json)?;
    Ok(0)
}
