//! `bootstrap pull IMAGE`: fill the cache and print the rootfs path.

use std::io::IsTerminal;

use anyhow::Context;
use scar_image::{ImageReference, Puller};

use crate::cli::PullFlags;

pub(crate) async fn pull(image: &str, settings: &PullFlags) -> anyhow::Result<i32> {
    let reference: ImageReference = image.parse()?;
    let options =
        scar_runtime::pull_options(&|var| settings.lookup(var), std::io::stderr().is_terminal())?;
    let puller = Puller::new(options)?;
    let started = std::time::Instant::now();
    let pulled = puller
        .pull(&reference)
        .await
        .with_context(|| format!("cannot pull {reference}"))?;
    tracing::info!(
        image = %reference,
        digest = %pulled.image.meta.manifest_digest,
        cached = pulled.cached,
        secs = started.elapsed().as_secs_f64(),
        "rootfs ready"
    );
    println!("{}", pulled.image.rootfs.display());
    Ok(0)
}
