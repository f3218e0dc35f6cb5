//! One TLS stack for every client in the process: rustls with the `ring` provider.
//!
//! The AWS SDK and reqwest each default to a different stack (the SDK to aws-lc-rs plus a
//! legacy hyper 0.14 and rustls 0.21 graph, reqwest to aws-lc-rs), and aws-lc-sys is a large
//! C build: compiled for the host, the test build and both static layer targets, it was the
//! longest single item of CI. `ring` gives the same TLS 1.2/1.3 cipher suites, builds in a
//! fifth of the time and keeps the static layer smaller. Every client of the workspace is
//! made here so that no second provider can come back through a default feature.

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// Makes `ring` the process's rustls provider, which reqwest (built without a provider of
/// its own) and oci-client look up when they build a client. Idempotent: a provider already
/// installed, this one or another, is kept.
pub fn install_tls_provider() {
    // An Err only says a provider is installed already: exactly the state wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder whose TLS uses the process provider.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
}

/// The standard AWS configuration chain (environment, profile, the function's role),
/// with the SDK's HTTPS client on `ring`.
pub fn aws_config_loader() -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_provider_is_ring_and_clients_build() {
        install_tls_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().map(|p| {
            p.cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        });
        let suites = provider.unwrap_or_default();
        assert!(
            suites.iter().any(|s| s == "TLS13_AES_128_GCM_SHA256"),
            "{suites:?}"
        );
        assert!(http_client_builder().build().is_ok());
    }
}
