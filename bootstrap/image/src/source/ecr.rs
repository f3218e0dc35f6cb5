//! Amazon ECR through the function's own role: an image on
//! `ACCOUNT.dkr.ecr.REGION.amazonaws.com` is pulled with a token from ECR's
//! `GetAuthorizationToken`, asked with the credentials the runtime has (on Lambda, the
//! function's role) in the registry's region. A token lasts 12 hours; one is asked for
//! at each pull that needs it, so a warm function pulling again never holds an expired one.
//! Explicit credentials (`SCAR_REGISTRY_USERNAME`, a Docker config) still win.

use base64::Engine as _;

use super::SourceError;
use super::auth::Credentials;

/// An ECR registry named by its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistry {
    /// The 12-digit account id.
    pub account: String,
    /// The region.
    pub region: String,
}

/// The ECR registry a `host[:port]` names: `ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com`
/// (or `.amazonaws.com.cn`); any other host is not ECR.
pub fn ecr_registry(registry: &str) -> Option<EcrRegistry> {
    let host = registry.split(':').next().unwrap_or(registry);
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (account, rest) = rest.split_once('.')?;
    let region = rest
        .strip_prefix("dkr.ecr.")
        .or_else(|| rest.strip_prefix("dkr.ecr-fips."))?;
    let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let valid_region = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (valid_account && valid_region).then(|| EcrRegistry {
        account: account.to_owned(),
        region: region.to_owned(),
    })
}

/// `AWS:PASSWORD`, base64-encoded as ECR hands it out, as registry credentials.
fn decode_token(registry: &str, token: &str) -> Result<Credentials, SourceError> {
    let fail = |why: &str| SourceError::Registry {
        registry: registry.to_owned(),
        message: format!("ECR's authorization token is not usable: {why}"),
        status: None,
    };
    let text = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| fail("not base64"))?;
    let text = String::from_utf8(text).map_err(|_| fail("not text"))?;
    let (username, password) = text.split_once(':').ok_or_else(|| fail("no user name"))?;
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Credentials for `registry` from ECR, asked with the process's AWS credentials.
pub async fn credentials(registry: &str, ecr: &EcrRegistry) -> Result<Credentials, SourceError> {
    let shared = crate::net::aws_config_loader()
        .region(aws_config::Region::new(ecr.region.clone()))
        .load()
        .await;
    let client = aws_sdk_ecr::Client::new(&shared);
    // A token opens every registry the principal may read: no registry id is needed.
    let answer = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| SourceError::Registry {
            registry: registry.to_owned(),
            message: format!(
                "ecr:GetAuthorizationToken for account {} failed: {}; the function's role needs ecr:GetAuthorizationToken, ecr:BatchGetImage and ecr:GetDownloadUrlForLayer (the managed policy AmazonEC2ContainerRegistryReadOnly)",
                ecr.account,
                aws_sdk_ecr::error::DisplayErrorContext(&e)
            ),
            status: None,
        })?;
    let token = answer
        .authorization_data()
        .iter()
        .find_map(|data| data.authorization_token())
        .ok_or_else(|| SourceError::Registry {
            registry: registry.to_owned(),
            message: "ecr:GetAuthorizationToken answered without a token".into(),
            status: None,
        })?;
    decode_token(registry, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts_are_recognised_and_others_are_not() {
        let ecr = |account: &str, region: &str| {
            Some(EcrRegistry {
                account: account.into(),
                region: region.into(),
            })
        };
        assert_eq!(
            ecr_registry("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            ecr("123456789012", "us-east-1")
        );
        assert_eq!(
            ecr_registry("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com:443"),
            ecr("123456789012", "us-gov-west-1")
        );
        assert_eq!(
            ecr_registry("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            ecr("123456789012", "cn-north-1")
        );
        for other in [
            "docker.io",
            "127.0.0.1:5000",
            "public.ecr.aws",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.s3.us-east-1.amazonaws.com",
        ] {
            assert_eq!(ecr_registry(other), None, "{other}");
        }
    }

    #[test]
    fn tokens_decode_to_the_aws_user() {
        let creds = decode_token("r", "QVdTOnNlY3JldDp3aXRoOmNvbG9ucw==").unwrap();
        assert_eq!(creds.username, "AWS");
        assert_eq!(creds.password, "secret:with:colons");
        for bad in ["!!!", "bm9jb2xvbg=="] {
            assert!(decode_token("r", bad).is_err(), "{bad}");
        }
    }
}
