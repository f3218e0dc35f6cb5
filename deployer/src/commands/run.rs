//! `deployer run`: one invocation, one for each function of a definition file (`-f`), or
//! SCAR's event launcher (`-es BUCKET`).

use crate::aws::Aws;
use crate::cli::RunArgs;
use crate::definitions::Definitions;
use crate::error::DeployError;
use crate::list;
use crate::run;

pub(crate) async fn run(aws: &Aws, args: &RunArgs) -> Result<u8, DeployError> {
    let names = match (&args.name, &args.file) {
        (Some(name), _) => vec![name.clone()],
        (None, Some(file)) => Definitions::load(file)?.names(),
        (None, None) => {
            return Err(DeployError::Invalid(
                "run needs a function name (-n NAME) or a definition file (-f FILE)".into(),
            ));
        }
    };
    // Every function is looked up first: a name missing from AWS runs none of them.
    for name in &names {
        list::lookup(aws, name).await?;
    }
    let mut status = 0;
    for name in &names {
        if names.len() > 1 {
            eprintln!("== {name}");
        }
        status = status.max(run_one(aws, name, args).await?);
    }
    Ok(status)
}

/// One function: an invocation, or the launcher over a bucket's objects.
async fn run_one(aws: &Aws, name: &str, args: &RunArgs) -> Result<u8, DeployError> {
    let write = DeployError::io("<stdout>");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(bucket) = &args.event_source {
        let only = args.keys.as_deref().map(read_keys).transpose()?;
        let launched = run::launch_events(
            aws,
            name,
            bucket,
            &args.input_folder,
            usize::from(args.concurrency),
            only.as_ref(),
        )
        .await?;
        if let Some(path) = &args.failed_keys {
            let lines: String = launched
                .failed
                .iter()
                .map(|(key, _)| format!("{key}\n"))
                .collect();
            std::fs::write(path, lines).map_err(DeployError::io(path))?;
        }
        for (key, reason) in &launched.failed {
            eprintln!("failed: {key}: {reason}");
        }
        let Some(first) = &launched.first else {
            println!("no objects in s3://{bucket}/{}", args.input_folder);
            return Ok(u8::from(!launched.failed.is_empty()));
        };
        first
            .print(args.json, &mut out, &mut std::io::stderr())
            .map_err(write)?;
        eprintln!(
            "1 event run synchronously, {} sent asynchronously, {} failed",
            launched.queued,
            launched.failed.len()
        );
        let status = if launched.failed.is_empty() {
            first.exit_code()
        } else {
            1
        };
        return Ok(u8::try_from(status).unwrap_or(1));
    }
    let event = run::payload(args)?;
    match run::invoke(aws, name, &event, args.asynchronous).await? {
        Some(outcome) => {
            outcome
                .print(args.json, &mut out, &mut std::io::stderr())
                .map_err(write)?;
            Ok(u8::try_from(outcome.exit_code()).unwrap_or(1))
        }
        None => {
            println!("invoked {name} asynchronously");
            Ok(0)
        }
    }
}

/// The keys of a `--keys` file: one per line, blank lines ignored.
fn read_keys(path: &std::path::Path) -> Result<std::collections::BTreeSet<String>, DeployError> {
    let text = std::fs::read_to_string(path).map_err(DeployError::io(path))?;
    Ok(text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect())
}
