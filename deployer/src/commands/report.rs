//! What a command prints: every result is a value that renders as text for a person or, with
//! `--json`, as JSON for a script. Commands return values; only this file writes them.

use std::io::Write;

use serde::Serialize;

use crate::error::DeployError;

/// A command's result.
pub(crate) trait Report: Serialize {
    /// The text a person reads.
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// Writes `report` to stdout as text, or as pretty JSON.
pub(crate) fn emit(report: &impl Report, json: bool) -> Result<(), DeployError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write(report, json, &mut out)
}

/// [`emit`] into any writer.
pub(crate) fn write(
    report: &impl Report,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), DeployError> {
    let result = if json {
        serde_json::to_string_pretty(report)
            .map_err(std::io::Error::other)
            .and_then(|text| writeln!(out, "{text}"))
    } else {
        report.write_text(out)
    };
    result.map_err(|source| DeployError::Io {
        path: "<stdout>".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        name: &'static str,
    }

    impl Report for Sample {
        fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
            writeln!(out, "name {}", self.name)
        }
    }

    #[test]
    fn a_report_renders_as_text_or_json() {
        let mut text = Vec::new();
        write(&Sample { name: "f" }, false, &mut text).unwrap();
        assert_eq!(text, b"name f\n");
        let mut json = Vec::new();
        write(&Sample { name: "f" }, true, &mut json).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["name"], "f");
    }
}
