//! `deployer log`: a function's CloudWatch log, one stream, or one request.

use std::collections::HashMap;

use crate::aws::Aws;
use crate::error::DeployError;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Line {
    /// Its stream.
    pub stream: String,
    /// The message, without a trailing newline.
    pub message: String,
}

/// Reads the log: one stream when `stream` is given, else the whole group; then narrows it to
/// `request_id` when given.
pub async fn fetch(
    aws: &Aws,
    function: &str,
    stream: Option<&str>,
    request_id: Option<&str>,
) -> Result<Vec<Line>, DeployError> {
    let group = format!("/aws/lambda/{function}");
    let mut lines = Vec::new();
    match stream {
        Some(stream) => {
            let mut token: Option<String> = None;
            loop {
                let page = aws
                    .logs
                    .get_log_events()
                    .log_group_name(&group)
                    .log_stream_name(stream)
                    .start_from_head(true)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_not_found_exception())
                        {
                            DeployError::Invalid(format!("no log stream {stream:?} in {group}"))
                        } else {
                            DeployError::aws("logs:GetLogEvents")(e)
                        }
                    })?;
                let events = page.events();
                lines.extend(events.iter().map(|e| Line {
                    stream: stream.to_owned(),
                    message: e.message().unwrap_or_default().trim_end().to_owned(),
                }));
                let next = page.next_forward_token().map(str::to_owned);
                if events.is_empty() || next.is_none() || next == token {
                    break;
                }
                token = next;
            }
        }
        None => {
            let mut pages = aws
                .logs
                .filter_log_events()
                .log_group_name(&group)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = match page {
                    Ok(page) => page,
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_not_found_exception()) =>
                    {
                        return Ok(Vec::new());
                    }
                    Err(e) => return Err(DeployError::aws("logs:FilterLogEvents")(e)),
                };
                lines.extend(page.events().iter().map(|e| Line {
                    stream: e.log_stream_name().unwrap_or_default().to_owned(),
                    message: e.message().unwrap_or_default().trim_end().to_owned(),
                }));
            }
        }
    }
    Ok(match request_id {
        Some(id) => of_request(&lines, id),
        None => lines,
    })
}

/// The lines of one request: from Lambda's `START RequestId: ID` to its `REPORT RequestId: ID`
/// in the same stream (a warm sandbox serves requests one after another), plus any other line
/// that names the id.
pub fn of_request(lines: &[Line], id: &str) -> Vec<Line> {
    let start = format!("START RequestId: {id}");
    let report = format!("REPORT RequestId: {id}");
    let mut inside: HashMap<&str, bool> = HashMap::new();
    let mut picked = Vec::new();
    for line in lines {
        let open = inside.entry(line.stream.as_str()).or_default();
        if line.message.starts_with(&start) {
            *open = true;
        }
        if *open || line.message.contains(id) {
            picked.push(line.clone());
        }
        if line.message.starts_with(&report) {
            *open = false;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: &str, message: &str) -> Line {
        Line {
            stream: stream.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_request_is_its_window_in_its_stream() {
        let lines = [
            line("s1", "START RequestId: a Version: $LATEST"),
            line("s1", "pulling image"),
            line("s2", "START RequestId: b Version: $LATEST"),
            line("s2", "other request's output"),
            line("s1", "END RequestId: a"),
            line("s1", "REPORT RequestId: a Duration: 3 ms"),
            line("s1", "START RequestId: c Version: $LATEST"),
            line("s2", "{\"requestId\":\"a\",\"late\":true}"),
        ];
        let got: Vec<_> = of_request(&lines, "a")
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(
            got,
            [
                "START RequestId: a Version: $LATEST",
                "pulling image",
                "END RequestId: a",
                "REPORT RequestId: a Duration: 3 ms",
                "{\"requestId\":\"a\",\"late\":true}",
            ]
        );
    }
}
