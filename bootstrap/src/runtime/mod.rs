//! The Lambda custom runtime: the invocation loop (through `lambda_runtime`), SCAR's events,
//! the timeout threshold, and `--emulate`, which runs one invocation through the same
//! [`Handler`] on any machine.

pub mod config;
pub mod event;
mod handler;
mod http;
mod s3;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

pub use config::{ConfigError, FunctionConfig};
pub use handler::{Handler, Invocation, InvokeError, RunReport};

impl From<InvokeError> for Diagnostic {
    fn from(error: InvokeError) -> Self {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// `errorType` of a configuration the runtime cannot start with.
pub const CONFIG_ERROR: &str = "Scar.ConfigError";

/// The Runtime API address as a URL when the variable lacks a scheme (`host:port[/prefix]`
/// → `http://host:port[/prefix]`); `None` when it needs no change.
pub fn runtime_api_url(value: Option<String>) -> Option<String> {
    value
        .filter(|v| !v.is_empty() && !v.contains("://"))
        .map(|v| format!("http://{v}"))
}

/// Reports an init failure to `/runtime/init/error`, as Lambda expects before exiting.
async fn report_init_error(api: &str, error: &ConfigError) -> anyhow::Result<()> {
    // The variable may carry a path prefix (`127.0.0.1:9001/.rt`): never host:port parsing.
    let base = runtime_api_url(Some(api.to_owned())).unwrap_or_else(|| api.to_owned());
    let url = format!(
        "{}/2018-06-01/runtime/init/error",
        base.trim_end_matches('/')
    );
    let body = serde_json::json!({ "errorType": CONFIG_ERROR, "errorMessage": error.to_string() });
    reqwest::Client::new()
        .post(&url)
        .header("Lambda-Runtime-Function-Error-Type", CONFIG_ERROR)
        .json(&body)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot post the init error to {url}"))?;
    Ok(())
}

/// Serves invocations until Lambda ends the environment.
pub async fn serve(api: &str) -> anyhow::Result<()> {
    let config = match FunctionConfig::from_vars(std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "bad configuration");
            report_init_error(api, &error).await?;
            anyhow::bail!("{error}");
        }
    };
    tracing::info!(image = %config.image, threshold = config.timeout_threshold.as_secs_f64(), "runtime ready");
    let handler = Arc::new(Handler::new(config, std::env::temp_dir()));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = Arc::clone(&handler);
        async move {
            let invocation = Invocation {
                request_id: event.context.request_id.clone(),
                deadline: SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline),
            };
            let span = tracing::info_span!("invoke", request_id = %invocation.request_id);
            let _guard = span.enter();
            let result = handler.handle(event.payload, &invocation).await;
            if let Err(error) = &result {
                tracing::error!(error_type = error.error_type(), %error, "invocation failed");
            }
            result
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("the runtime loop stopped: {e}"))
}

/// What `--emulate` was given.
#[derive(Debug)]
pub struct Emulation {
    /// The event file (`-` for stdin).
    pub event: std::path::PathBuf,
    /// Overrides `SCAR_IMAGE`.
    pub image: Option<String>,
    /// The function timeout to emulate.
    pub timeout: Duration,
    /// Extra container variables, as `CONT_VAR_` would give.
    pub env: Vec<(String, String)>,
}

/// Runs one invocation locally through the same handler; prints the response JSON on
/// stdout and returns the process status: 0 when the invocation and the command both
/// succeeded, 1 when the command failed, 2 when the invocation failed.
pub async fn emulate(emulation: Emulation) -> anyhow::Result<i32> {
    let text = if emulation.event.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the event from stdin")?
    } else {
        std::fs::read_to_string(&emulation.event)
            .with_context(|| format!("cannot read {}", emulation.event.display()))?
    };
    let event: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", emulation.event.display()))?;
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if let Some(image) = emulation.image {
        vars.push(("SCAR_IMAGE".to_owned(), image));
    }
    vars.extend(
        emulation
            .env
            .into_iter()
            .map(|(k, v)| (format!("CONT_VAR_{k}"), v)),
    );
    let config =
        FunctionConfig::from_vars(vars).map_err(|e| anyhow::anyhow!("{CONFIG_ERROR}: {e}"))?;
    let handler = Handler::new(config, std::env::temp_dir());
    let invocation = Invocation {
        request_id: format!("emulated-{:016x}", rand_u64()),
        deadline: SystemTime::now() + emulation.timeout,
    };
    match handler.handle(event, &invocation).await {
        Ok(response) => {
            println!("{}", serde_json::to_string_pretty(&response)?);
            Ok(if command_succeeded(&response) { 0 } else { 1 })
        }
        Err(error) => {
            let document = serde_json::json!({ "errorType": error.error_type(), "errorMessage": error.to_string() });
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(2)
        }
    }
}

/// A direct/S3 response with exit_code 0 and no timeout, or an HTTP response with 200.
fn command_succeeded(response: &Value) -> bool {
    if let Some(status) = response.get("statusCode") {
        return status.as_i64() == Some(200);
    }
    response.get("exit_code").and_then(Value::as_i64) == Some(0)
        && response.get("timed_out") != Some(&Value::Bool(true))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_api_variable_becomes_a_url_keeping_any_prefix() {
        assert_eq!(
            runtime_api_url(Some("127.0.0.1:9001".into())).as_deref(),
            Some("http://127.0.0.1:9001")
        );
        assert_eq!(
            runtime_api_url(Some("127.0.0.1:9100/.rt".into())).as_deref(),
            Some("http://127.0.0.1:9100/.rt")
        );
        assert_eq!(runtime_api_url(Some("http://h:1/x".into())), None);
        assert_eq!(runtime_api_url(None), None);
    }
}
