//! `bootstrap --emulate EVENT.json`: one invocation through the runtime's own handler, on any
//! machine. Prints the response (or `{errorType, errorMessage}`) and exits 0 when the command
//! succeeded, 1 when it failed, 2 when the invocation failed (an unreadable or malformed
//! event, a bad configuration, a failed pull…): the codes never mix a command's failure with
//! the runtime's.

use std::path::Path;
use std::time::Duration;

use scar_runtime::lambda::{CONFIG_ERROR, Emulated, ErrorDocument};
use scar_runtime::settings;

/// `errorType` of an event file that cannot be read or is not JSON.
const INVALID_EVENT: &str = "Scar.InvalidEvent";

fn failed(error_type: &str, message: String) -> anyhow::Result<i32> {
    let document = ErrorDocument {
        error_type: error_type.to_owned(),
        error_message: message,
    };
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(2)
}

pub(crate) async fn emulate(
    event: &Path,
    image: Option<String>,
    timeout: Duration,
    env: Vec<(String, String)>,
) -> anyhow::Result<i32> {
    let text = if event.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(event)
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            return failed(
                INVALID_EVENT,
                format!("cannot read {}: {e}", event.display()),
            );
        }
    };
    let event_value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => {
            return failed(
                INVALID_EVENT,
                format!("{} is not JSON: {e}", event.display()),
            );
        }
    };
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if let Some(image) = image {
        vars.push(("SCAR_IMAGE".to_owned(), image));
    }
    vars.extend(
        env.into_iter()
            .map(|(k, v)| (format!("{}{k}", settings::CONTAINER_PREFIX), v)),
    );
    let emulated = match scar_runtime::lambda::emulate(event_value, vars, timeout).await {
        Ok(emulated) => emulated,
        Err(e) => return failed(CONFIG_ERROR, e.to_string()),
    };
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
