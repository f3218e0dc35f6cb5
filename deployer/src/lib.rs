//! The deployer: SCAR's command line (`init`, `run`, `invoke`, `ls`, `log`, `rm`) on the AWS
//! SDK, plus `layer` to publish the runtime. The runtime does the work; this crate only
//! publishes it and wires functions, triggers and endpoints to it.

pub mod aws;
pub mod cli;
pub mod endpoint;
pub mod error;
pub mod init;
pub mod layer;
pub mod list;
pub mod logs;
pub mod package;
pub mod remove;
pub mod resources;
pub mod run;
pub mod settings;
pub mod staging;

use std::io::Write;

use cli::{Cli, Command, LayerCommand};
use error::DeployError;
use settings::Settings;

/// Runs one command, printing its result; returns the process exit status.
pub async fn execute(cli: Cli) -> Result<u8, DeployError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let write = |e: std::io::Error| DeployError::Io {
        path: "<stdout>".into(),
        source: e,
    };
    if let Command::Layer(LayerCommand::Build(args)) = &cli.command {
        // Building needs neither AWS nor the defaults file.
        let bytes = layer::build(args)?;
        writeln!(
            out,
            "{}\t{} bytes ({:.1} MB)",
            args.output.display(),
            bytes,
            bytes as f64 / 1048576.0
        )
        .map_err(write)?;
        return Ok(0);
    }
    let settings_path = match &cli.config {
        Some(path) => path.clone(),
        None => Settings::default_path()?,
    };
    let settings = Settings::load_or_create(&settings_path)?;
    let region = cli.region.as_deref().or(settings.region());
    let aws = aws::Aws::connect(region).await?;
    match cli.command {
        Command::Layer(LayerCommand::Build(_)) => Ok(0),
        Command::Layer(LayerCommand::Publish(args)) => {
            let published = layer::publish(&aws, &args).await?;
            writeln!(out, "{}\t{} bytes", published.arn, published.bytes).map_err(write)?;
            Ok(0)
        }
        Command::Init(args) => {
            let plan = init::plan(&aws, &settings, &settings_path, &args).await?;
            let created = init::init(&aws, plan).await?;
            writeln!(out, "function  {}", created.function_arn).map_err(write)?;
            writeln!(out, "image     {}", created.image).map_err(write)?;
            match &created.layer {
                Some(layer) => writeln!(out, "layer     {layer}"),
                None => writeln!(out, "runtime   in the function package"),
            }
            .map_err(write)?;
            if let Some(trigger) = &created.trigger {
                writeln!(out, "trigger   uploads to {trigger}").map_err(write)?;
            }
            if let Some(endpoint) = &created.endpoint {
                writeln!(out, "endpoint  {endpoint}").map_err(write)?;
            }
            Ok(0)
        }
        Command::Run(args) => {
            list::lookup(&aws, &args.name).await?;
            if let Some(bucket) = &args.event_source {
                let launched = run::launch_events(
                    &aws,
                    &args.name,
                    bucket,
                    &args.input_folder,
                    usize::from(args.concurrency),
                )
                .await?;
                let Some(first) = &launched.first else {
                    writeln!(out, "no objects in s3://{bucket}/{}", args.input_folder)
                        .map_err(write)?;
                    return Ok(0);
                };
                first
                    .print(args.json, &mut out, &mut std::io::stderr())
                    .map_err(write)?;
                eprintln!(
                    "1 event run synchronously, {} sent asynchronously, {} failed",
                    launched.queued,
                    launched.failed.len()
                );
                for (key, reason) in &launched.failed {
                    eprintln!("failed: {key}: {reason}");
                }
                let status = if launched.failed.is_empty() {
                    first.exit_code()
                } else {
                    1
                };
                return Ok(u8::try_from(status).unwrap_or(1));
            }
            let event = run::payload(&args)?;
            match run::invoke(&aws, &args.name, &event, args.asynchronous).await? {
                Some(outcome) => {
                    outcome
                        .print(args.json, &mut out, &mut std::io::stderr())
                        .map_err(write)?;
                    Ok(u8::try_from(outcome.exit_code()).unwrap_or(1))
                }
                None => {
                    writeln!(out, "invoked {} asynchronously", args.name).map_err(write)?;
                    Ok(0)
                }
            }
        }
        Command::Invoke(args) => {
            let function = list::lookup(&aws, &args.name).await?;
            let url = function
                .endpoint
                .ok_or_else(|| DeployError::NoEndpoint(args.name.clone()))?;
            let response = endpoint::call(&url, args.data.as_deref(), args.asynchronous).await?;
            match &args.output {
                Some(path) => {
                    std::fs::write(path, &response.body).map_err(DeployError::io(path))?
                }
                None => out.write_all(&response.body).map_err(write)?,
            }
            if (200..300).contains(&response.status) {
                Ok(0)
            } else {
                eprintln!("HTTP {} from {url}", response.status);
                Ok(1)
            }
        }
        Command::Ls(args) => {
            let functions = list::list(&aws).await?;
            if args.json {
                let text = serde_json::to_string_pretty(&functions).unwrap_or_default();
                writeln!(out, "{text}").map_err(write)?;
            } else {
                out.write_all(list::table(&functions).as_bytes())
                    .map_err(write)?;
            }
            Ok(0)
        }
        Command::Log(args) => {
            list::lookup(&aws, &args.name).await?;
            let lines = logs::fetch(
                &aws,
                &args.name,
                args.log_stream_name.as_deref(),
                args.request_id.as_deref(),
            )
            .await?;
            for line in lines {
                writeln!(out, "{}", line.message).map_err(write)?;
            }
            Ok(0)
        }
        Command::Rm(args) => {
            let removed = match &args.name {
                Some(name) => remove::remove_named(&aws, name).await?,
                None => remove::remove_all(&aws).await?,
            };
            for what in removed {
                writeln!(out, "removed {what}").map_err(write)?;
            }
            Ok(0)
        }
    }
}
