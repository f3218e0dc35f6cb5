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

    /// OpenSSL's test server on a free loopback port with a fresh self-signed certificate
    /// for 127.0.0.1; killed on drop.
    struct OpensslServer {
        child: std::process::Child,
        port: u16,
        cert: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    impl OpensslServer {
        fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let made = std::process::Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                // A server's own certificate, not a CA's: webpki refuses a CA as end entity.
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .unwrap();
            assert!(made.status.success(), "{made:?}");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("openssl")
                .args(["s_server", "-www", "-quiet", "-accept"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "s_server did not start"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Self {
                child,
                port,
                cert,
                _dir: dir,
            }
        }
    }

    impl Drop for OpensslServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    #[ignore = "harness tier: a TLS handshake with OpenSSL's s_server (setup.sh installs openssl)"]
    async fn reqwest_and_the_aws_sdk_complete_tls_handshakes_on_ring() {
        let server = OpensslServer::start();
        let url = format!("https://127.0.0.1:{}/", server.port);

        // reqwest, trusting the server's certificate: s_server -www answers with its status page.
        let pem = std::fs::read(&server.cert).unwrap();
        let client = http_client_builder()
            .tls_certs_merge([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap();
        let page = client.get(&url).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("s_server"), "{page}");
        // Without trusting it, the same request is refused by certificate verification.
        let refused = http_client_builder()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await;
        assert!(refused.is_err(), "an unknown certificate was accepted");

        // The SDK's client reads its roots from SSL_CERT_FILE (rustls-native-certs): the
        // handshake succeeds and the error, if any, is about the answer, not the connection.
        // SAFETY: each test of this crate runs in a process of its own (nextest), and this
        // one sets the variable before any thread of its own reads the environment.
        unsafe { std::env::set_var("SSL_CERT_FILE", &server.cert) };
        let shared = aws_config_loader()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .build(),
        );
        match s3.list_buckets().send().await {
            Err(aws_sdk_s3::error::SdkError::DispatchFailure(failure)) => {
                panic!("no TLS connection: {failure:?}")
            }
            Err(aws_sdk_s3::error::SdkError::TimeoutError(e)) => panic!("timed out: {e:?}"),
            _ => {}
        }
    }
}
