//! `bootstrap --emulate EVENT.json`: one invocation through the runtime's own handler, on any
//! machine. Prints the response (or `{errorType, errorMessage}`) and exits 0 when the command
//! succeeded, 1 when it failed, 2 when the invocation failed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use scar_runtime::lambda::{CONFIG_ERROR, Emulated};

pub(crate) async fn emulate(
    event: &Path,
    image: Option<String>,
    timeout: Duration,
    env: Vec<(String, String)>,
) -> anyhow::Result<i32> {
    let text = if event.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the event from stdin")?
    } else {
        std::fs::read_to_string(event)
            .with_context(|| format!("cannot read {}", event.display()))?
    };
    let event: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", event.display()))?;
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if let Some(image) = image {
        vars.push(("SCAR_IMAGE".to_owned(), image));
    }
    vars.extend(env.into_iter().map(|(k, v)| (format!("CONT_VAR_{k}"), v)));
    let emulated = scar_runtime::lambda::emulate(event, vars, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{CONFIG_ERROR}: {e}"))?;
    let (text, code) = match &emulated {
        Emulated::Reply(reply) => (
            serde_json::to_string_pretty(reply)?,
            if reply.succeeded() { 0 } else { 1 },
        ),
        Emulated::Failed(error) => (serde_json::to_string_pretty(error)?, 2),
    };
    println!("{text}");
    Ok(code)
}
