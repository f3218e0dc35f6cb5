//! The tracing subscriber: Lambda's `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT` first,
//! then `RUST_LOG`, then INFO. Logs go to stderr, which Lambda sends to CloudWatch.
//!
//! Text lines carry no time (CloudWatch stamps each line) and no colour unless stderr is a
//! terminal. JSON lines are Lambda's log record, for CloudWatch Logs Insights: `timestamp`,
//! `level`, `requestId` (of the invocation under way), `message`, and every field typed
//! (numbers as numbers, an absent value absent).

use std::io::IsTerminal;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The invocation under way (Lambda runs one at a time per execution environment).
static CURRENT_REQUEST: Mutex<Option<String>> = Mutex::new(None);

/// Names the invocation under way for the log records (and the panic report); `None` between
/// invocations.
pub fn set_current_request(request_id: Option<&str>) {
    if let Ok(mut current) = CURRENT_REQUEST.lock() {
        *current = request_id.map(str::to_owned);
    }
}

/// The invocation under way, if any.
pub fn current_request() -> Option<String> {
    CURRENT_REQUEST.lock().ok().and_then(|c| c.clone())
}

/// Collects an event's fields as typed JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// Lambda's JSON log record.
struct LambdaJson;

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        writeln!(writer, "{}", json_record(event))
    }
}

fn json_record(event: &tracing::Event<'_>) -> Value {
    let mut fields = Fields(Map::new());
    event.record(&mut fields);
    let mut record = Map::new();
    record.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    record.insert("level".into(), event.metadata().level().as_str().into());
    if let Some(id) = current_request() {
        record.insert("requestId".into(), id.into());
    }
    record.insert(
        "message".into(),
        fields.0.remove("message").unwrap_or_else(|| "".into()),
    );
    record.extend(fields.0);
    Value::Object(record)
}

/// A logging variable with a value we do not know.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `AWS_LAMBDA_LOG_LEVEL` is not a level.
    #[error("AWS_LAMBDA_LOG_LEVEL={0:?} is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL")]
    Level(String),
    /// `AWS_LAMBDA_LOG_FORMAT` is not a format.
    #[error("AWS_LAMBDA_LOG_FORMAT={0:?} is not one of Text, JSON")]
    Format(String),
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG: {0}")]
    Filter(String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (CloudWatch structured logs).
    Json,
}

/// The parsed logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// An `EnvFilter` directive.
    pub filter: String,
    /// Output format.
    pub format: LogFormat,
}

impl LogSettings {
    /// Parses the settings from a variable lookup (the process environment in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LoggingError> {
        let filter = match lookup("AWS_LAMBDA_LOG_LEVEL") {
            Some(level) => match level.to_ascii_uppercase().as_str() {
                "TRACE" => "trace".to_string(),
                "DEBUG" => "debug".to_string(),
                "INFO" => "info".to_string(),
                "WARN" => "warn".to_string(),
                "ERROR" | "FATAL" => "error".to_string(),
                _ => return Err(LoggingError::Level(level)),
            },
            None => lookup("RUST_LOG").unwrap_or_else(|| "info".to_string()),
        };
        let format = match lookup("AWS_LAMBDA_LOG_FORMAT") {
            None => LogFormat::Text,
            Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(f) => return Err(LoggingError::Format(f)),
        };
        Ok(Self { filter, format })
    }

    /// Installs the global subscriber.
    pub fn install(&self) -> Result<(), LoggingError> {
        let filter =
            EnvFilter::try_new(&self.filter).map_err(|e| LoggingError::Filter(e.to_string()))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .without_time();
        let result = match self.format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.event_format(LambdaJson).try_init(),
        };
        // A second install (tests) keeps the first subscriber.
        let _ = result;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<LogSettings, LoggingError> {
        LogSettings::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn lambda_variables_win_and_are_strict() {
        let s = settings(&[
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "trace"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]);
        assert_eq!(
            s.ok(),
            Some(LogSettings {
                filter: "debug".into(),
                format: LogFormat::Json
            })
        );
        assert_eq!(
            settings(&[("RUST_LOG", "warn")]).ok().map(|s| s.filter),
            Some("warn".into())
        );
        assert_eq!(
            settings(&[]).ok().map(|s| (s.filter, s.format)),
            Some(("info".into(), LogFormat::Text))
        );
        assert!(matches!(
            settings(&[("AWS_LAMBDA_LOG_LEVEL", "LOUD")]),
            Err(LoggingError::Level(_))
        ));
        assert!(matches!(
            settings(&[("AWS_LAMBDA_LOG_FORMAT", "xml")]),
            Err(LoggingError::Format(_))
        ));
    }

    #[test]
    fn json_records_are_lambdas_with_typed_fields() {
        use tracing_subscriber::layer::SubscriberExt as _;
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .event_format(LambdaJson),
        );
        set_current_request(Some("req-7"));
        tracing::subscriber::with_default(subscriber, || {
            let exit: Option<i32> = Some(0);
            let signal: Option<i32> = None;
            tracing::info!(
                exit_code = exit,
                signal,
                secs = 1.5,
                timed_out = false,
                "command ended"
            );
        });
        set_current_request(None);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let record: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(record["message"], "command ended");
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["requestId"], "req-7");
        assert_eq!(record["exit_code"], 0, "a number, not \"Some(0)\": {text}");
        assert!(
            record.get("signal").is_none(),
            "an absent value is absent: {text}"
        );
        assert_eq!(record["secs"], 1.5);
        assert_eq!(record["timed_out"], false);
        assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
