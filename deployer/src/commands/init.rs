//! `deployer init`.

use std::io::Write;
use std::path::Path;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::{EndpointAuth, InitArgs};
use crate::definitions::Definitions;
use crate::error::DeployError;
use crate::init::{self, Created};
use crate::settings::Settings;
use scar_runtime::lambda::DirectInvoke;

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
    if let Some(file) = &args.file {
        return from_file(aws, settings, settings_path, file, args).await;
    }
    if args.name.is_empty() {
        // SCAR named a function after its image when -n was not given.
        let image_file_stem = args
            .image_file
            .as_deref()
            .and_then(Path::file_stem)
            .and_then(|s| s.to_str());
        let Some(source) = args.image.as_deref().or(image_file_stem) else {
            return Err(DeployError::Invalid(
                "init needs a function name (-n NAME), an image (-i) or a definition file (-f FILE)"
                    .into(),
            ));
        };
        let mut named = args.clone();
        named.name = init::free_name(aws, &init::name_for_image(source)).await?;
        eprintln!("no -n given: the function is named {}", named.name);
        one(aws, settings, settings_path, &named).await?;
        return Ok(0);
    }
    one(aws, settings, settings_path, args).await?;
    Ok(0)
}

/// The functions of a definition file, all or none: the file is checked whole first, and a
/// function that fails removes the ones created before it.
async fn from_file(
    aws: &Aws,
    settings: &Settings,
    settings_path: &Path,
    file: &Path,
    common: &InitArgs,
) -> Result<u8, DeployError> {
    let definitions = Definitions::load(file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut created: Vec<&str> = Vec::new();
    let all = definitions.init_args(base, common);
    for args in &all {
        // Planned one after the other: a pipeline's first function creates the bucket the
        // next one's trigger goes on.
        let result = match init::plan(aws, settings, settings_path, args).await {
            Ok(plan) => {
                say_what_to_grant(args);
                init::init(aws, plan).await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(report) => {
                emit(&report, args.json)?;
                created.push(&args.name);
            }
            Err(error) => {
                let mut undone = Vec::new();
                for name in created.iter().rev() {
                    if let Err(e) = crate::remove::remove_named(aws, name).await {
                        undone.push(format!("{name}: {e}"));
                    }
                }
                let removed = if undone.is_empty() {
                    format!("the {} created before it were removed", created.len())
                } else {
                    format!("these could not be removed: {}", undone.join("; "))
                };
                return Err(DeployError::Invalid(format!(
                    "{}: function {}: {error}; {removed}",
                    file.display(),
                    args.name
                )));
            }
        }
    }
    Ok(0)
}

/// Notes what the caller must grant, before anything is created: the role, and whether the
/// endpoint is open.
fn say_what_to_grant(args: &InitArgs) {
    // The registry as the runtime will resolve it, from the image engine's own parser.
    let on_ecr = match args.image.as_deref().map(str::parse) {
        Some(Ok(scar_image::ImageReference::Registry(r))) => {
            scar_image::ecr_registry(r.resolve_registry())
        }
        _ => None,
    };
    if let (Some(ecr), None) = (on_ecr, &args.deployment_bucket) {
        eprintln!(
            "note: the image is on ECR (account {}, {}): the runtime asks ECR for a token with the function's role, which needs ecr:GetAuthorizationToken, ecr:BatchGetImage and ecr:GetDownloadUrlForLayer (the managed policy AmazonEC2ContainerRegistryReadOnly)",
            ecr.account, ecr.region
        );
    }
    let open = (args.api_gateway_name.is_some() && args.api_auth == EndpointAuth::None)
        || (args.url && args.url_auth == EndpointAuth::None);
    if open {
        eprintln!(
            "warning: the endpoint takes unsigned requests: anyone who finds its URL runs the function under its role"
        );
    }
}

async fn one(
    aws: &Aws,
    settings: &Settings,
    settings_path: &Path,
    args: &InitArgs,
) -> Result<(), DeployError> {
    say_what_to_grant(args);
    let plan = init::plan(aws, settings, settings_path, args).await?;
    emit(&init::init(aws, plan).await?, args.json)?;
    if args.preheat {
        preheat(aws, &args.name).await?;
    }
    Ok(())
}

/// SCAR's `--preheat`: one invocation right after creation (a script of `true`), so that the
/// image is pulled and cached before the first request; it warms the one execution
/// environment it runs in.
async fn preheat(aws: &Aws, name: &str) -> Result<(), DeployError> {
    use base64::Engine as _;
    let started = std::time::Instant::now();
    let event = crate::run::direct(&DirectInvoke {
        script: Some(base64::engine::general_purpose::STANDARD.encode("true\n")),
        ..DirectInvoke::default()
    })?;
    let failed = |message: String| DeployError::Preheat {
        name: name.to_owned(),
        message,
    };
    let Some(outcome) = crate::run::invoke(aws, name, &event, false).await? else {
        return Err(failed("no response".into()));
    };
    if outcome.function_error.is_some() {
        let mut words = Vec::new();
        outcome
            .print(false, &mut std::io::sink(), &mut words)
            .map_err(DeployError::io("<preheat>"))?;
        return Err(failed(String::from_utf8_lossy(&words).trim().to_owned()));
    }
    let pulled = outcome.response().map_or(String::new(), |r| {
        format!("{:.1} s pulling, ", r.pull_seconds)
    });
    eprintln!(
        "preheated {name}: the image is pulled and cached ({pulled}{:.1} s in all)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
