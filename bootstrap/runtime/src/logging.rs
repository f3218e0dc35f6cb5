//! The tracing subscriber: Lambda's `AWS_LAMBDA_LOG_LEVEL` / `AWS_LAMBDA_LOG_FORMAT` first,
//! then `RUST_LOG`, then INFO. Logs go to stderr (CloudWatch stamps each line, so no time).

use tracing_subscriber::EnvFilter;

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
            .without_time();
        let result = match self.format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
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
}
