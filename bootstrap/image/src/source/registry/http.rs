//! The registry's reads, over our own HTTP client, with oci-client answering the
//! authentication challenge.
//!
//! oci-client's token dance (the `WWW-Authenticate` challenge, the token endpoint, basic
//! credentials) is the part worth reusing. Its reads are not enough for a pull that must stay
//! bounded: it reads a manifest whole (a registry whose manifest never ends exhausts the
//! function's memory), hides `Retry-After`, and retries nothing. Here a manifest or config is
//! read up to [`MAX_METADATA_BYTES`], every request is retried as [`retry`] decides, a blob
//! is streamed under the read timeout, and an expired token is renewed once.

use std::time::{Duration, SystemTime};

use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::{Response, StatusCode, header};
use tokio::sync::Mutex;

use super::retry::{self, Next};
use super::{SourceError, registry_error};
use crate::source::digest_of;
use crate::source::layout::MAX_METADATA_BYTES;

/// The manifest media types a pull accepts, best first.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// How much of an error answer is read for its message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// What a request carries to prove who asks.
#[derive(Debug, Clone)]
enum Credential {
    Anonymous,
    Basic(String, String),
    Bearer(String),
}

/// One image's registry: where it is, how to reach it, and the credential in use.
pub struct Session {
    http: reqwest::Client,
    oci: oci_client::Client,
    reference: Reference,
    auth: RegistryAuth,
    /// `scheme://host/v2/repository`.
    base: String,
    read_timeout: Duration,
    credential: Mutex<Option<Credential>>,
}

impl Session {
    /// A session for `reference`; nothing is sent yet.
    pub fn new(
        reference: Reference,
        auth: RegistryAuth,
        oci: oci_client::Client,
        plain_http: bool,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Self, SourceError> {
        let http = crate::net::http_client_builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .user_agent(concat!("scar-bootstrap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Registry {
                registry: reference.registry().into(),
                message: format!("cannot make an HTTP client: {e}"),
                status: None,
            })?;
        let scheme = if plain_http { "http" } else { "https" };
        let base = format!(
            "{scheme}://{}/v2/{}",
            reference.resolve_registry(),
            reference.repository()
        );
        Ok(Self {
            http,
            oci,
            reference,
            auth,
            base,
            read_timeout,
            credential: Mutex::new(None),
        })
    }

    /// The reference this session reads.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn fail(&self, message: String, status: Option<u16>) -> SourceError {
        SourceError::Registry {
            registry: self.reference.registry().into(),
            message,
            status,
        }
    }

    /// `?ns=` for a registry mirror of another registry's namespace, as oci-client adds it.
    fn url(&self, kind: &str, name: &str) -> String {
        let ns = self
            .reference
            .namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default();
        format!("{}/{kind}/{name}{ns}", self.base)
    }

    /// The manifest URL of the reference itself (tag or digest) or of `digest`.
    pub fn manifest_url(&self, digest: Option<&str>) -> String {
        let name = digest
            .or(self.reference.digest())
            .or(self.reference.tag())
            .unwrap_or("latest");
        self.url("manifests", name)
    }

    /// The URL of blob `digest`.
    pub fn blob_url(&self, digest: &str) -> String {
        self.url("blobs", digest)
    }

    /// The credential to send, asking the registry's token service the first time (or again
    /// when `renew`: a token expired during a long pull).
    async fn credential(&self, renew: bool) -> Result<Credential, SourceError> {
        let mut slot = self.credential.lock().await;
        if let (Some(known), false) = (slot.as_ref(), renew) {
            return Ok(known.clone());
        }
        let token = self
            .oci
            .auth(&self.reference, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| registry_error(&self.reference, e))?;
        let credential = match (token, &self.auth) {
            (Some(token), _) => Credential::Bearer(token),
            (None, RegistryAuth::Basic(user, password)) => {
                Credential::Basic(user.clone(), password.clone())
            }
            (None, _) => Credential::Anonymous,
        };
        *slot = Some(credential.clone());
        Ok(credential)
    }

    /// Sends `method url` until it is answered with success, retrying what [`retry`] says
    /// to; `what` names the object in errors ("the manifest", "layer sha256:…").
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response, SourceError> {
        self.send_with(method, url, accept, None, what).await
    }

    /// [`Self::send`], asking for the byte `range` (an HTTP `Range` value) if one is given.
    async fn send_with(
        &self,
        method: reqwest::Method,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
        what: &str,
    ) -> Result<Response, SourceError> {
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let credential = self.credential(false).await?;
            let mut request = self.http.request(method.clone(), url);
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(range) = range {
                request = request.header(header::RANGE, range);
            }
            request = match &credential {
                Credential::Anonymous => request,
                Credential::Basic(user, password) => request.basic_auth(user, Some(password)),
                Credential::Bearer(token) => request.bearer_auth(token),
            };
            let next = match request.send().await {
                Ok(answer) if answer.status().is_success() => return Ok(answer),
                Ok(answer)
                    if answer.status() == StatusCode::UNAUTHORIZED
                        && matches!(credential, Credential::Bearer(_))
                        && !renewed =>
                {
                    renewed = true;
                    attempt -= 1;
                    self.credential(true).await?;
                    continue;
                }
                Ok(answer) => {
                    let retry_after = answer
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
                    match retry::after_status(answer.status(), retry_after, attempt) {
                        Next::RetryAfter(wait) => {
                            tracing::warn!(
                                status = answer.status().as_u16(),
                                attempt,
                                wait = wait.as_secs_f64(),
                                "{what}: the registry asks to try again"
                            );
                            wait
                        }
                        Next::Fail => {
                            return Err(self.answer_error(answer, what, attempt, None).await);
                        }
                        Next::TooLong(wait) => {
                            return Err(self.answer_error(answer, what, attempt, Some(wait)).await);
                        }
                    }
                }
                Err(e) if e.is_builder() || e.is_redirect() => {
                    return Err(self.fail(format!("{what}: request failed: {e}"), None));
                }
                Err(e) => match retry::after_no_answer(attempt) {
                    Next::RetryAfter(wait) => {
                        tracing::warn!(attempt, error = %e, "{what}: no answer from the registry; trying again");
                        wait
                    }
                    _ => {
                        return Err(self.fail(
                            format!(
                                "{what}: request failed after {attempt} attempts: {}",
                                chain(&e)
                            ),
                            None,
                        ));
                    }
                },
            };
            tokio::time::sleep(next).await;
        }
    }

    /// The error an unsuccessful answer means, with the registry's own message.
    async fn answer_error(
        &self,
        mut answer: Response,
        what: &str,
        attempt: u32,
        asked_wait: Option<Duration>,
    ) -> SourceError {
        let status = answer.status();
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_BYTES {
            match answer.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let said = registry_message(&body);
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        let tries = if attempt > 1 {
            format!(" after {attempt} attempts")
        } else {
            String::new()
        };
        let code = Some(status.as_u16());
        let message = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "access to {} denied ({status}){said} (check the registry credentials)",
                self.reference.repository()
            ),
            StatusCode::NOT_FOUND => {
                format!(
                    "{} not found: {what} ({status}){said}",
                    self.reference.whole()
                )
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = asked_wait.map_or(String::new(), |w| {
                    format!(", and asks to wait {} s", w.as_secs())
                });
                format!(
                    "{what}: the registry refuses more pulls for now ({status}{tries}{wait}){said}; \
                     pull with an account (SCAR_REGISTRY_USERNAME, SCAR_REGISTRY_PASSWORD) or stage \
                     the image in S3 (deployer init -db)"
                )
            }
            _ => format!("{what}: {status}{tries}{said}"),
        };
        self.fail(message, code)
    }

    /// Reads a manifest or config answer whole, refusing one over [`MAX_METADATA_BYTES`]
    /// by its declared length or as soon as it passes that.
    pub async fn read_capped(
        &self,
        mut answer: Response,
        what: &str,
    ) -> Result<Vec<u8>, SourceError> {
        let too_big = || {
            self.fail(
                format!("{what} is larger than {MAX_METADATA_BYTES} bytes: refused unread"),
                None,
            )
        };
        if answer
            .content_length()
            .is_some_and(|n| n > MAX_METADATA_BYTES)
        {
            return Err(too_big());
        }
        self.read_at_most(&mut answer, MAX_METADATA_BYTES, what, too_big)
            .await
    }

    /// An answer's body, failing with `too_much` as soon as it passes `cap` bytes.
    async fn read_at_most(
        &self,
        answer: &mut Response,
        cap: u64,
        what: &str,
        too_much: impl Fn() -> SourceError,
    ) -> Result<Vec<u8>, SourceError> {
        let mut body = Vec::new();
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) if (body.len() + chunk.len()) as u64 > cap => {
                    return Err(too_much());
                }
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(
                        self.fail(format!("reading {what}: {}", self.transfer_error(&e)), None)
                    );
                }
            }
        }
    }

    /// The words for a body that stopped arriving: a timeout names the setting that bounds it.
    pub fn transfer_error(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                "the registry sent nothing for {} s (SCAR_REGISTRY_TIMEOUT)",
                self.read_timeout.as_secs_f64()
            )
        } else {
            chain(e)
        }
    }

    /// Reads `len` bytes of blob `digest` at `offset` (one ranged GET, retried as every
    /// request is). A registry that answers with the whole blob is refused unread: a lazy
    /// tree reads a few MiB at a time and must not be sent a gigabyte into memory.
    pub async fn read_blob_range(
        &self,
        digest: &str,
        offset: u64,
        len: u64,
        what: &str,
    ) -> Result<Vec<u8>, SourceError> {
        let range = format!("bytes={offset}-{}", (offset + len).saturating_sub(1));
        let url = self.blob_url(digest);
        let mut answer = self
            .send_with(reqwest::Method::GET, &url, None, Some(&range), what)
            .await?;
        if answer.status() != StatusCode::PARTIAL_CONTENT {
            return Err(self.fail(
                format!(
                    "{what}: asked for {range}, the registry answered {} (ranged reads unsupported)",
                    answer.status()
                ),
                Some(answer.status().as_u16()),
            ));
        }
        let too_much = || {
            self.fail(
                format!("{what}: asked for {len} bytes, the registry sends more"),
                None,
            )
        };
        self.read_at_most(&mut answer, len, what, too_much).await
    }

    /// Streams blob `digest` after a successful answer.
    pub async fn open_blob(&self, digest: &str, what: &str) -> Result<Response, SourceError> {
        self.send(reqwest::Method::GET, &self.blob_url(digest), None, what)
            .await
    }
}

/// An error with its causes, which reqwest keeps apart ("error sending request" alone says
/// nothing about a refused connection).
fn chain(e: &dyn std::error::Error) -> String {
    let mut words = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        words.push_str(": ");
        words.push_str(&cause.to_string());
        source = cause.source();
    }
    words
}

/// The messages of an OCI error body (`{"errors":[{"code","message"}]}`), or its text.
fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        return envelope
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_owned())
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    text.trim().to_owned()
}

/// Whether a blob or manifest body is what `digest` names.
pub fn matches_digest(body: &[u8], digest: &str) -> bool {
    digest_of(body) == digest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_messages_are_read_from_the_oci_envelope_or_the_text() {
        let hub = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        assert_eq!(
            registry_message(hub),
            "TOOMANYREQUESTS You have reached your pull rate limit."
        );
        assert_eq!(
            registry_message(b"<html>Bad\ngateway</html>"),
            "<html>Badgateway</html>"
        );
        assert_eq!(registry_message(b""), "");
    }

    #[test]
    fn digests_are_checked_by_sha256() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches_digest(b"", empty));
        assert!(!matches_digest(b"x", empty));
        assert!(!matches_digest(b"", "sha512:e3b0"));
        assert_eq!(digest_of(b""), empty);
    }
}
