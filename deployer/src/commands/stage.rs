//! `deployer stage`: an image copied into a bucket once, under a shared name, for several
//! functions to point at (`init -i s3://BUCKET/scar-rs/shared-images/NAME/`). It is staged as
//! `init -db` stages a function's own image, re-encoded for parallel cold starts; it lives
//! outside every function's prefix, so removing a function never removes it.

use std::io::Write;

use serde::Serialize;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::StageArgs;
use crate::error::DeployError;
use crate::init::{BucketNeed, bucket_exists, check_name, ensure_bucket};
use crate::staging::{StagingSource, stage};

/// What was staged, and the reference functions use.
#[derive(Debug, Serialize)]
struct Staged {
    image: String,
    reference: String,
}

impl Report for Staged {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{}\t{}", self.image, self.reference)
    }
}

pub(crate) async fn run(aws: &Aws, args: &StageArgs) -> Result<u8, DeployError> {
    check_name(&args.name).map_err(|_| {
        DeployError::Invalid(format!(
            "-n {:?}: use 1 to 64 letters, digits, '-' or '_'",
            args.name
        ))
    })?;
    let image = match (&args.image, &args.image_file) {
        (Some(image), _) => image.clone(),
        (None, Some(file)) => format!("docker-archive:{}", file.display()),
        (None, None) => {
            return Err(DeployError::Invalid(
                "stage needs -i IMAGE or --image-file FILE".into(),
            ));
        }
    };
    let reference = image
        .parse::<scar_image::ImageReference>()
        .map_err(|e| DeployError::Invalid(format!("-i {image}: {e}")))?;
    let plan = StagingSource {
        reference,
        bucket: args.deployment_bucket.clone(),
        arch: args.arch,
    }
    .shared(&args.name);
    let need = BucketNeed {
        name: args.deployment_bucket.clone(),
        exists: bucket_exists(aws, &args.deployment_bucket).await?,
        folders: Vec::new(),
    };
    ensure_bucket(aws, &need, &mut Vec::new()).await?;
    let reference = stage(aws, &plan).await?;
    emit(&Staged { image, reference }, args.json)?;
    Ok(0)
}
