//! `deployer run`: one invocation, or SCAR's event launcher (`-es BUCKET`).

use crate::aws::Aws;
use crate::cli::RunArgs;
use crate::error::DeployError;
use crate::list;
use crate::run;

pub(crate) async fn run(aws: &Aws, args: &RunArgs) -> Result<u8, DeployError> {
    let write = DeployError::io("<stdout>");
    list::lookup(aws, &args.name).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(bucket) = &args.event_source {
        let launched = run::launch_events(
            aws,
            &args.name,
            bucket,
            &args.input_folder,
            usize::from(args.concurrency),
        )
        .await?;
        let Some(first) = &launched.first else {
            println!("no objects in s3://{bucket}/{}", args.input_folder);
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
    let event = run::payload(args)?;
    match run::invoke(aws, &args.name, &event, args.asynchronous).await? {
        Some(outcome) => {
            outcome
                .print(args.json, &mut out, &mut std::io::stderr())
                .map_err(write)?;
            Ok(u8::try_from(outcome.exit_code()).unwrap_or(1))
        }
        None => {
            println!("invoked {} asynchronously", args.name);
            Ok(0)
        }
    }
}
