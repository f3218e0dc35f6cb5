//! When a registry's answer means "later", and how long later is.
//!
//! Registries throttle (Docker Hub answers 429 with `Retry-After` once an address has pulled
//! its share) and fail briefly (a 503 while a node restarts, a reset connection). A pull that
//! gives up on the first such answer fails a cold start that a second try a moment later
//! would have served, and Lambda retries an asynchronous event twice more at full cost. So a
//! request is sent up to [`ATTEMPTS`] times, waiting what `Retry-After` asks or else a
//! doubling backoff; a wait longer than [`MAX_WAIT`] is not worth the function's time and
//! fails at once, saying how long the registry asked for. Answers that will not change
//! (401, 404, other 4xx) are final at once.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

/// How many times one request is sent before its error is final.
pub const ATTEMPTS: u32 = 5;

/// The first backoff when the registry does not say how long to wait; each next one doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait one answer may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send the request again after this long.
    RetryAfter(Duration),
    /// The answer is final: report it.
    Fail,
    /// The registry asked for a wait longer than [`MAX_WAIT`]: report it with that wait.
    TooLong(Duration),
}

/// Whether `status` means "try again later".
pub fn is_transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// The doubling backoff before attempt `attempt + 1` (attempts count from 1).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(6))
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What to do after answer `status` to attempt `attempt`, given its `Retry-After`.
pub fn after_status(status: StatusCode, retry_after: Option<Duration>, attempt: u32) -> Next {
    if !is_transient(status) || attempt >= ATTEMPTS {
        return Next::Fail;
    }
    match retry_after {
        Some(wait) if wait > MAX_WAIT => Next::TooLong(wait),
        Some(wait) => Next::RetryAfter(wait),
        None => Next::RetryAfter(backoff(attempt)),
    }
}

/// What to do after a request that got no answer at all (`connect` refused or reset, or
/// timed out before the headers).
pub fn after_no_answer(attempt: u32) -> Next {
    if attempt >= ATTEMPTS {
        Next::Fail
    } else {
        Next::RetryAfter(backoff(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 03:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 03:00:20 GMT", now),
            Some(Duration::from_secs(20))
        );
        // A date already past means "now", not an error.
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 02:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retried_the_rest_is_final() {
        for status in [429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(after_status(status, None, 1), Next::RetryAfter(backoff(1)));
            assert_eq!(after_status(status, None, ATTEMPTS), Next::Fail);
        }
        for status in [400, 401, 403, 404, 405, 416, 501] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(after_status(status, None, 1), Next::Fail, "{status}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_longest_wait() {
        let throttled = StatusCode::TOO_MANY_REQUESTS;
        let two = Duration::from_secs(2);
        assert_eq!(after_status(throttled, Some(two), 1), Next::RetryAfter(two));
        assert_eq!(
            after_status(throttled, Some(MAX_WAIT), 4),
            Next::RetryAfter(MAX_WAIT)
        );
        let hour = Duration::from_secs(3600);
        assert_eq!(after_status(throttled, Some(hour), 1), Next::TooLong(hour));
    }

    #[test]
    fn backoff_doubles_and_stays_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(32));
        assert_eq!(after_no_answer(1), Next::RetryAfter(backoff(1)));
        assert_eq!(after_no_answer(ATTEMPTS), Next::Fail);
    }
}
