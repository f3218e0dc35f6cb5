//! Registry credentials: explicit ones first, then `~/.docker/config.json` (`auths`).

use base64::Engine as _;
use serde::Deserialize;

/// A username/password pair for a registry (also used to obtain bearer tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Keys Docker writes for Docker Hub, besides the bare host names.
const DOCKER_HUB_KEYS: &[&str] = &[
    "https://index.docker.io/v1/",
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
];

fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Looks `registry` (as in a reference: `docker.io`, `127.0.0.1:5000`) up in the text of a
/// Docker `config.json`. Credential helpers (`credsStore`) are not consulted.
pub fn from_docker_config(config_json: &str, registry: &str) -> Option<Credentials> {
    let config: DockerConfig = serde_json::from_str(config_json).ok()?;
    let is_hub = DOCKER_HUB_KEYS.contains(&registry);
    let entry = config.auths.iter().find_map(|(key, auth)| {
        let matches = host_of(key) == registry
            || (is_hub && DOCKER_HUB_KEYS.contains(&host_of(key)))
            || (is_hub && DOCKER_HUB_KEYS.contains(&key.as_str()));
        matches.then_some(auth)
    })?;
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_deref()?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials {
        username: username.into(),
        password: password.into(),
    })
}

/// Reads `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn docker_config_text() -> Option<String> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker"))
        })?;
    std::fs::read_to_string(dir.join("config.json")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_auth_by_host_and_docker_hub_aliases() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b64}"}},
                "127.0.0.1:5000":{{"username":"bob","password":"pw"}}}}}}"#
        );
        let hub = from_docker_config(&json, "docker.io");
        assert_eq!(
            hub,
            Some(Credentials {
                username: "alice".into(),
                password: "s3cret".into()
            })
        );
        let local = from_docker_config(&json, "127.0.0.1:5000");
        assert_eq!(local.map(|c| c.username), Some("bob".into()));
        assert_eq!(from_docker_config(&json, "ghcr.io"), None);
        assert_eq!(from_docker_config("not json", "docker.io"), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
