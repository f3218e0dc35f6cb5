//! The Lambda custom runtime: the invocation loop (through `lambda_runtime`), SCAR's events,
//! the timeout threshold, and the emulation that `--emulate` runs through the same
//! [`Handler`] on any machine.
//!
//! | part | file |
//! |---|---|
//! | what an event asks for | `event.rs` |
//! | the request directory | `request_dir.rs` |
//! | the image, once per environment | `image.rs` |
//! | one invocation | `handler.rs` |
//! | the typed response, HTTP replies | `response.rs`, `http.rs` |
//! | inputs in, outputs out | `s3.rs` |
//! | why an invocation failed | `error.rs` |

mod environment;
mod error;
mod event;
mod handler;
mod http;
mod image;
mod panic;
mod request_dir;
mod response;
mod s3;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::Instrument as _;

pub use environment::{HTTP_QUERY_PREFIX, http_query_variable, names};
pub use error::{ErrorDocument, InvokeError};
pub use event::{BatchSource, DirectInvoke, Event, EventError};
pub use handler::{Handler, Invocation, Runner, SandboxRunner};
pub use image::{Images, Prepared, PullInfo, PulledImage};
pub use panic::{PANIC_ERROR, install_panic_reporter};
pub use response::{
    BatchReport, HttpReply, ItemFailure, LAMBDA_RESPONSE_LIMIT, Reply, Response, RunReport,
    RunResult,
};

use crate::config::{ConfigError, FunctionConfig};

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

/// Why the runtime stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable (already reported to `/runtime/init/error`).
    #[error("{0}")]
    Config(ConfigError),
    /// The init error could not be reported.
    #[error("cannot post the init error to {url}: {message}")]
    InitReport {
        /// The Runtime API endpoint.
        url: String,
        /// Why.
        message: String,
    },
    /// The invocation loop ended.
    #[error("the runtime loop stopped: {0}")]
    Loop(String),
}

/// The Runtime API address as a URL when the variable lacks a scheme (`host:port[/prefix]`
/// → `http://host:port[/prefix]`); `None` when it needs no change.
pub fn runtime_api_url(value: Option<String>) -> Option<String> {
    value
        .filter(|v| !v.is_empty() && !v.contains("://"))
        .map(|v| format!("http://{v}"))
}

/// Reports an init failure to `/runtime/init/error`, as Lambda expects before exiting.
async fn report_init_error(api: &str, error: &ConfigError) -> Result<(), ServeError> {
    // The variable may carry a path prefix (`127.0.0.1:9001/.rt`): never host:port parsing.
    let base = runtime_api_url(Some(api.to_owned())).unwrap_or_else(|| api.to_owned());
    let url = format!(
        "{}/2018-06-01/runtime/init/error",
        base.trim_end_matches('/')
    );
    let body = ErrorDocument {
        error_type: CONFIG_ERROR.to_owned(),
        error_message: error.to_string(),
    };
    let failed = |e: reqwest::Error| ServeError::InitReport {
        url: url.clone(),
        message: e.to_string(),
    };
    scar_image::http_client_builder()
        .build()
        .map_err(failed)?
        .post(&url)
        .header("Lambda-Runtime-Function-Error-Type", CONFIG_ERROR)
        .json(&body)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(failed)?;
    Ok(())
}

/// Serves invocations until Lambda ends the environment; `vars` is the process environment.
pub async fn serve(
    api: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ServeError> {
    let config = match FunctionConfig::from_vars(vars) {
        Ok(config) => config,
        Err(error) => {
            // Logged once, by the caller that prints the returned error.
            report_init_error(api, &error).await?;
            return Err(ServeError::Config(error));
        }
    };
    install_panic_reporter(api);
    map_large_buffers();
    tracing::info!(image = %config.image, threshold = ?config.timeout_threshold, "runtime ready");
    let init_pull_budget = config.init_pull_budget;
    let handler = Arc::new(Handler::new(config, std::env::temp_dir()));
    Arc::clone(&handler).pull_at_init(init_pull_budget).await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = Arc::clone(&handler);
        async move {
            let context = &event.context;
            let json = |value: Option<String>| value.filter(|text| text != "null");
            let invocation = Invocation {
                request_id: context.request_id.clone(),
                deadline: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(context.deadline)),
                trace_id: context.xray_trace_id.clone(),
                client_context: json(
                    context
                        .client_context
                        .as_ref()
                        .and_then(|c| serde_json::to_string(c).ok()),
                ),
                identity: json(
                    context
                        .identity
                        .as_ref()
                        .and_then(|c| serde_json::to_string(c).ok()),
                ),
            };
            crate::logging::set_current_request(Some(&invocation.request_id));
            let span = tracing::info_span!("invoke", request_id = %invocation.request_id);
            let result = handler
                .handle(event.payload, &invocation)
                .instrument(span.clone())
                .await;
            if let Err(error) = &result {
                let _guard = span.enter();
                tracing::error!(error_type = error.error_type(), %error, "invocation failed");
            }
            crate::logging::set_current_request(None);
            result
        }
    }))
    .await
    .map_err(|e| ServeError::Loop(e.to_string()))
}

/// What one emulated invocation gave.
#[derive(Debug)]
pub enum Emulated {
    /// The invocation answered (the command may still have failed: see [`Reply::succeeded`]).
    Reply(Box<Reply>),
    /// The invocation failed.
    Failed(ErrorDocument),
}

/// Runs one invocation of `event` locally through the same handler, configured from `vars`
/// like the function, with `timeout` as the function's timeout.
pub async fn emulate(
    event: Value,
    vars: Vec<(String, String)>,
    timeout: Duration,
) -> Result<Emulated, ConfigError> {
    let config = FunctionConfig::from_vars(vars)?;
    let handler = Handler::new(config, std::env::temp_dir());
    let invocation = Invocation {
        request_id: format!("emulated-{:016x}", rand_u64()),
        deadline: Some(SystemTime::now() + timeout),
        ..Invocation::default()
    };
    Ok(match handler.handle(event, &invocation).await {
        Ok(reply) => Emulated::Reply(Box::new(reply)),
        Err(error) => Emulated::Failed(error.to_error_document()),
    })
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

/// Buffers of a megabyte or more (a captured output, the response's JSON) get pages of their
/// own from the kernel, grow in place and go back when freed. glibc would otherwise raise
/// its threshold to the size of the first such buffer freed, after which the next ones come
/// from the heap: copied as they grow and kept after they are freed, which is how an
/// invocation printing megabytes left the runtime ten megabytes larger. Fixing the
/// threshold turns that adjustment off. (musl's allocator maps large blocks by itself.)
fn map_large_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's policy for later allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Freed buffers (the pull's, an invocation's) stay with glibc's allocator; handing them
/// back keeps a warm, waiting environment small. It costs microseconds on a small heap.
/// (musl's allocator returns large blocks by itself.)
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
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
