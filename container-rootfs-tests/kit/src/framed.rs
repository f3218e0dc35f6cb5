//! Images staged as `deployer stage` stages them, as OCI layouts on disk: each layer
//! re-encoded as frames with its index and skeleton, for the frame and lazy-loading tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// [`framed_layout`] readable by the Lambda uid, which runs `bootstrap` in the tests.
pub fn framed_layout_for_lambda(src: &std::path::Path, tag: &str) -> tempfile::TempDir {
    let staged = framed_layout(src, tag);
    let status = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(staged.path())
        .status()
        .unwrap();
    assert!(status.success(), "chmod of {}", staged.path().display());
    staged
}

/// A copy of the layout's image `tag` as `deployer stage` stages it: each layer re-encoded as
/// frames, with its frame index and skeleton named on the layer's descriptor. The original
/// layer blobs are left out, so a pull that succeeds read the frames.
pub fn framed_layout(src: &std::path::Path, tag: &str) -> tempfile::TempDir {
    use scar_image::frames;
    use serde_json::Value;
    use sha2::{Digest as _, Sha256};
    let dst = tempfile::tempdir().unwrap();
    let blobs = dst.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let original = |digest: &str| {
        src.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let mut manifest: Value = serde_json::from_slice(
        &std::fs::read(original(entry["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    put(&std::fs::read(original(manifest["config"]["digest"].as_str().unwrap())).unwrap());
    for layer in manifest["layers"].as_array_mut().unwrap() {
        let digest = layer["digest"].as_str().unwrap().to_string();
        let (mut framed, mut skeleton) = (Vec::new(), Vec::new());
        let frame_index = frames::encode(
            std::fs::File::open(original(&digest)).unwrap(),
            &digest,
            &mut framed,
            &mut skeleton,
        )
        .unwrap();
        assert_eq!(put(&framed), frame_index.blob);
        let index_digest = put(&serde_json::to_vec(&frame_index).unwrap());
        layer["annotations"] = serde_json::json!({
            frames::ANNOTATION: index_digest,
            scar_image::skeleton::ANNOTATION: put(&skeleton),
        });
    }
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(&manifest),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(
        dst.path().join("index.json"),
        serde_json::to_vec(&top).unwrap(),
    )
    .unwrap();
    dst
}

/// The layers of a layout made by [`framed_layout`], ready for a lazy tree: each layer's
/// frames (read from the blob on disk) and skeleton.
pub fn lazy_layers(
    layout: &std::path::Path,
) -> (Vec<scar_image::frames::FramedLayer>, Vec<Vec<u8>>) {
    use scar_image::{frames, skeleton};
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let (mut layers, mut skeletons) = (Vec::new(), Vec::new());
    for layer in manifest["layers"].as_array().unwrap() {
        let notes = &layer["annotations"];
        let index_digest = notes[frames::ANNOTATION].as_str().unwrap();
        let index = frames::FrameIndex::parse(
            &std::fs::read(blob(index_digest)).unwrap(),
            index_digest,
            layer["digest"].as_str().unwrap(),
        )
        .unwrap();
        let file = std::fs::File::open(blob(&index.blob)).unwrap();
        layers.push(frames::FramedLayer {
            index,
            source: std::sync::Arc::new(frames::FileRanges(file)),
            codec: frames::FrameCodec::Zstd,
        });
        skeletons.push(std::fs::read(blob(notes[skeleton::ANNOTATION].as_str().unwrap())).unwrap());
    }
    (layers, skeletons)
}

/// Flips a byte in the middle of the layout's largest blob (the big layer's frames), as a
/// transfer or a disk could.
pub fn corrupt_largest_blob(layout: &std::path::Path) {
    let largest = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&largest, bytes).unwrap();
}
