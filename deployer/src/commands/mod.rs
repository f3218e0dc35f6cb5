//! One file per command; each returns a value that [`report`] renders as text or JSON.

mod init;
mod invoke;
mod layer;
mod log;
mod ls;
mod objects;
mod report;
mod rm;
mod run;
mod stage;
mod update;

use crate::aws::Aws;
use crate::cli::{Cli, Command, LayerCommand};
use crate::error::DeployError;
use crate::settings::Settings;

/// Runs one command, printing its result; returns the process exit status.
pub(crate) async fn execute(cli: Cli) -> Result<u8, DeployError> {
    if let Command::Layer(LayerCommand::Build(args)) = &cli.command {
        return layer::build(args);
    }
    let settings_path = match &cli.config {
        Some(path) => path.clone(),
        None => Settings::default_path()?,
    };
    let settings = Settings::load_or_create(&settings_path)?;
    let region = cli.region.as_deref().or(settings.region());
    let aws = Aws::connect(region).await?;
    match &cli.command {
        Command::Layer(LayerCommand::Build(args)) => layer::build(args),
        Command::Layer(LayerCommand::Publish(args)) => layer::publish(&aws, args).await,
        Command::Init(args) => init::run(&aws, &settings, &settings_path, args).await,
        Command::Update(args) => update::run(&aws, args).await,
        Command::Run(args) => run::run(&aws, args).await,
        Command::Invoke(args) => invoke::run(&aws, args).await,
        Command::Ls(args) => ls::run(&aws, args).await,
        Command::Log(args) => log::run(&aws, args).await,
        Command::Rm(args) => rm::run(&aws, args).await,
        Command::Put(args) => objects::put(&aws, args).await,
        Command::Get(args) => objects::get(&aws, args).await,
        Command::Stage(args) => stage::run(&aws, args).await,
    }
}
