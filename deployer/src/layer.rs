//! `layer build` and `layer publish`: the runtime as a shared Lambda layer, one per
//! architecture, and finding its newest version for `init`.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Runtime};

use crate::aws::Aws;
use crate::cli::{Arch, LayerBuildArgs, LayerPublishArgs};
use crate::error::DeployError;
use crate::package::{self, RuntimeSource};

/// The layer's name for `arch`: one per architecture, since a version lists the
/// architectures it is compatible with.
pub fn layer_name(arch: Arch) -> String {
    format!("scar-rs-runtime-{}", arch.as_str())
}

/// Lambda's name for `arch`.
pub fn architecture(arch: Arch) -> Architecture {
    match arch {
        Arch::X86_64 => Architecture::X8664,
        Arch::Arm64 => Architecture::Arm64,
    }
}

/// Writes the layer zip and returns its size in bytes.
pub fn build(args: &LayerBuildArgs) -> Result<u64, DeployError> {
    let source = RuntimeSource::Files {
        bootstrap: args.bootstrap.clone(),
        shim_dir: args.shim_dir.clone(),
    };
    let zip = package::layer_zip(&source, args.arch)?;
    if let Some(dir) = args.output.parent() {
        std::fs::create_dir_all(dir).map_err(DeployError::io(dir))?;
    }
    let partial = args.output.with_extension("zip.partial");
    std::fs::write(&partial, &zip).map_err(DeployError::io(&partial))?;
    std::fs::rename(&partial, &args.output).map_err(DeployError::io(&args.output))?;
    Ok(zip.len() as u64)
}

/// A published version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    /// The version's ARN.
    pub arn: String,
    /// Its number.
    pub version: i64,
    /// The zip's size.
    pub bytes: usize,
}

/// Publishes a version and shares it as asked.
pub async fn publish(aws: &Aws, args: &LayerPublishArgs) -> Result<Published, DeployError> {
    let source = RuntimeSource::from_flags(&args.files, args.arch);
    let zip = package::layer_zip(&source, args.arch)?;
    package::check_upload_size(&zip, "layer")?;
    let bytes = zip.len();
    let name = layer_name(args.arch);
    let out = aws
        .lambda
        .publish_layer_version()
        .layer_name(&name)
        .description(format!(
            "scar-rs {} runtime: bootstrap and the fakechroot shims",
            env!("CARGO_PKG_VERSION")
        ))
        .license_info("Apache-2.0")
        .compatible_runtimes(Runtime::Providedal2023)
        .compatible_runtimes(Runtime::Providedal2)
        .compatible_architectures(architecture(args.arch))
        .content(
            aws_sdk_lambda::types::LayerVersionContentInput::builder()
                .zip_file(Blob::new(zip))
                .build(),
        )
        .send()
        .await
        .map_err(DeployError::aws("lambda:PublishLayerVersion"))?;
    let version = out.version();
    let arn = out.layer_version_arn().unwrap_or_default().to_owned();
    let principal = match (&args.public, &args.principal) {
        (true, _) => Some("*"),
        (false, Some(account)) => Some(account.as_str()),
        (false, None) => None,
    };
    if let Some(principal) = principal {
        aws.lambda
            .add_layer_version_permission()
            .layer_name(&name)
            .version_number(version)
            .statement_id(if principal == "*" {
                "scar-public".to_owned()
            } else {
                format!("scar-account-{principal}")
            })
            .action("lambda:GetLayerVersion")
            .principal(principal)
            .send()
            .await
            .map_err(DeployError::aws("lambda:AddLayerVersionPermission"))?;
    }
    Ok(Published {
        arn,
        version,
        bytes,
    })
}

/// The newest version's ARN for `arch`.
pub async fn newest(aws: &Aws, arch: Arch) -> Result<String, DeployError> {
    let mut newest: Option<(i64, String)> = None;
    let mut pages = aws
        .lambda
        .list_layer_versions()
        .layer_name(layer_name(arch))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                break;
            }
            Err(e) => return Err(DeployError::aws("lambda:ListLayerVersions")(e)),
        };
        for version in page.layer_versions() {
            let compatible = version.compatible_architectures().is_empty()
                || version
                    .compatible_architectures()
                    .contains(&architecture(arch));
            if let (true, Some(arn)) = (compatible, version.layer_version_arn())
                && newest.as_ref().is_none_or(|(v, _)| version.version() > *v)
            {
                newest = Some((version.version(), arn.to_owned()));
            }
        }
    }
    newest.map(|(_, arn)| arn).ok_or(DeployError::NoLayer {
        arch: arch.as_str(),
    })
}
