//! Fuzzing of every parser here that reads outside input, as property tests with generated
//! inputs (stable toolchain, no extra tool): image references, image configs, manifests and
//! indexes, compressed framing (gzip, zstd, plain), the tar/whiteout applier, and eStargz and
//! zstd:chunked layers (footer, TOC, chunks) as a lazy tree reads them. None may
//! panic or hang, and the applier writes nothing outside its staging directory. `PROPTEST_CASES` raises the cases
//! per target (`make fuzz` runs 50,000 each); a failure is kept in `proptest-regressions/`.

use std::io::Read;

use proptest::prelude::*;

use crate::oci::{Compression, parse_config};
use crate::reference::ImageReference;
use crate::unpack::LayerApplier;
use crate::unpack::blob::{FaultSlot, decompressed};

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Reference-like text: registry, path, tag and digest pieces mixed with noise.
fn reference_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("docker.io".to_owned()),
        Just("localhost:5000".to_owned()),
        Just("[::1]:5000".to_owned()),
        Just("library".to_owned()),
        Just("@sha256:".to_owned()),
        Just(":".to_owned()),
        Just("/".to_owned()),
        Just("oci:".to_owned()),
        Just("s3://".to_owned()),
        "[a-z0-9._-]{0,12}",
        "[0-9a-f]{64}",
        ".{0,8}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

/// A valid tar header block followed by arbitrary bytes, or arbitrary bytes alone: the
/// first reaches the applier's entry handling, the second its framing.
fn tar_bytes() -> impl Strategy<Value = Vec<u8>> {
    let entry = (
        "[a-z./]{0,12}(\\.wh\\.[a-z.]{0,4})?",
        prop::sample::select(vec![b'0', b'1', b'2', b'5', b'x', b'g', b'L', b'S', b'7']),
        "[a-z./]{0,12}",
        0u64..4096,
        prop::collection::vec(any::<u8>(), 0..1024),
    )
        .prop_map(|(name, kind, link, size, data)| {
            let mut header = tar::Header::new_ustar();
            let _ = header.set_path(&name);
            header.set_entry_type(tar::EntryType::new(kind));
            let _ = header.set_link_name(&link);
            header.set_size(size);
            header.set_mode(0o755);
            header.set_cksum();
            let mut bytes = header.as_bytes().to_vec();
            bytes.extend(data);
            bytes
        });
    prop_oneof![
        prop::collection::vec(entry, 1..6).prop_map(|e| e.concat()),
        prop::collection::vec(any::<u8>(), 0..4096),
    ]
}

/// Layers whose entries reuse a few names, so that they collide as real layers do: a file
/// replaces a lower file, directory or symlink, a directory a file, whiteouts and opaque
/// markers remove what a lower layer made, hard links name files of this layer and lower
/// ones, and some files are skeleton placeholders (their size and offset in PAX records).
fn colliding_layers() -> impl Strategy<Value = Vec<Vec<u8>>> {
    const NAMES: &[&str] = &["a", "a/b", "a/b/c", "a/d", "e", "e/f", "a/b/g", "h"];
    const WHITEOUTS: &[&str] = &["a/.wh.b", ".wh.a", "a/.wh..wh..opq", "e/.wh.f", ".wh.h"];
    let entry = (
        0usize..NAMES.len() + WHITEOUTS.len(),
        prop::sample::select(vec![b'0', b'0', b'0', b'5', b'5', b'2', b'1']),
        prop::sample::select(NAMES.to_vec()),
        prop::option::of(0u64..100_000),
        0usize..200,
        0u32..0o1000,
    );
    let layer = prop::collection::vec(entry, 1..10).prop_map(|entries| {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link, left_out, data, mode) in entries {
            let (name, kind) = match NAMES.get(name) {
                Some(name) => (*name, kind),
                None => (WHITEOUTS[name - NAMES.len()], b'0'),
            };
            let mut header = tar::Header::new_ustar();
            let _ = header.set_path(name);
            header.set_entry_type(tar::EntryType::new(kind));
            header.set_mode(mode | 0o400);
            header.set_mtime(1_000_000 + data as u64);
            let data = match kind {
                b'0' => vec![data as u8; data],
                _ => {
                    let _ = header.set_link_name(link);
                    Vec::new()
                }
            };
            if let (Some(size), b'0') = (left_out, kind) {
                let size = size.to_string();
                let records = [
                    (crate::skeleton::SIZE_RECORD, size.as_bytes()),
                    (crate::skeleton::OFFSET_RECORD, b"512".as_slice()),
                ];
                let _ = builder.append_pax_extensions(records);
                header.set_size(0);
                header.set_cksum();
                let _ = builder.append(&header, &[][..]);
                continue;
            }
            header.set_size(data.len() as u64);
            header.set_cksum();
            let _ = builder.append(&header, &data[..]);
        }
        builder.into_inner().unwrap_or_default()
    });
    prop::collection::vec(layer, 1..4)
}

/// `layers` applied as skeletons into a new directory of `dir`, by `applier`: the tree, the
/// placeholders (with the name of the file each inode is) and links, or the error (its paths
/// relative to the tree).
fn skeleton_tree(
    dir: &std::path::Path,
    name: &str,
    layers: &[Vec<u8>],
    applier: fn(std::path::PathBuf, std::path::PathBuf) -> LayerApplier,
) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let root = dir.join(name);
    std::fs::create_dir(&root).map_err(|e| e.to_string())?;
    let mut applier = applier(root.clone(), root.clone());
    let relative = |e: crate::unpack::UnpackError| {
        format!("error: {e}").replace(&format!("{}/", root.display()), "")
    };
    for layer in layers {
        applier.apply(&layer[..]).map_err(relative)?;
    }
    let lazy = applier.take_lazy_files();
    applier.finish().map_err(relative)?;
    // A directory no entry named was made when first needed: its time is the clock's.
    let made_now = |text: &str| match text.rsplit_once(" mtime ") {
        Some((kind, time)) if time.parse::<u64>().is_ok_and(|t| t > 1_500_000_000) => {
            format!("{kind} mtime (made now)")
        }
        _ => text.to_string(),
    };
    let tree: Vec<(String, String)> = crate::lazy::tests::walk(&root, true)
        .into_iter()
        .map(|(name, text)| (name, made_now(&text)))
        .collect();
    let mut placeholders: Vec<String> = lazy
        .files
        .iter()
        .map(|(rel, p)| {
            let inode_is_the_files = std::fs::symlink_metadata(root.join(rel))
                .is_ok_and(|m| (m.dev(), m.ino()) == p.inode);
            format!(
                "{} {} {} {} {inode_is_the_files}",
                rel.display(),
                p.layer,
                p.offset,
                p.size
            )
        })
        .collect();
    placeholders.sort();
    let mut links: Vec<_> = lazy.links.iter().collect();
    links.sort();
    Ok(format!("{tree:#?}\n{placeholders:#?}\n{links:?}"))
}

/// A registry's image manifest (two layers) and index, to mutate.
const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1200},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":30000000},{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":1024}]}"#;
const INDEX: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","size":500,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:5555555555555555555555555555555555555555555555555555555555555555","size":500,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;

/// A manifest's bytes are parsed, and what parses is taken as far as the pull takes it:
/// an index to a platform, an image to its layer descriptors (each with a size).
fn check_manifest(bytes: &[u8]) {
    use oci_client::manifest::OciManifest;
    match crate::source::parse_manifest(bytes) {
        Ok(OciManifest::Image(image)) => {
            let layers = crate::source::layer_descriptors(&image.layers);
            if let Ok(layers) = layers {
                assert!(layers.iter().all(|l| l.size.is_some()));
            }
        }
        Ok(OciManifest::ImageIndex(index)) => {
            for platform in ["linux/amd64", "linux/arm64/v8", "linux/s390x"] {
                if let Ok(platform) = platform.parse::<crate::platform::Platform>() {
                    let _ = platform.select(&index.manifests);
                }
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// Checks that `dir` holds the names `expected` (sorted) and nothing else: what a target
/// wrote stayed inside the directories it was given.
fn only_these_in(dir: &std::path::Path, expected: &[&str]) -> Result<(), TestCaseError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    let expected: Vec<std::ffi::OsString> = expected.iter().map(Into::into).collect();
    prop_assert_eq!(names, expected);
    Ok(())
}

/// A small layer as eStargz (`zstd`: zstd:chunked) whose TOC's JSON text has `byte` at `at`
/// (its digest the manifest's, so the damage reaches the TOC's reader) and whose blob has
/// `flip` at `flip_at` (not covered by that digest: the chunks' digests must catch it). It
/// opens or is refused; opened, its tree is built and filled, or a file is refused, and
/// nothing is written outside the tree's directory.
fn check_stargz(
    zstd: bool,
    at: usize,
    byte: u8,
    flip_at: usize,
    flip: u8,
) -> Result<(), TestCaseError> {
    use std::sync::Arc;
    static TAR: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let tar = TAR.get_or_init(|| {
        let mut builder = tar::Builder::new(Vec::new());
        for (n, size) in [3000usize, 0, 70_000, 10].into_iter().enumerate() {
            let mut header = tar::Header::new_gnu();
            header.set_size(size as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            let _ = builder.append_data(
                &mut header,
                format!("d/f{n}"),
                vec![n as u8; size].as_slice(),
            );
        }
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Link);
        link.set_size(0);
        link.set_mode(0o644);
        link.set_mtime(0);
        let _ = builder.append_link(&mut link, "d/hard", "d/f0");
        builder.into_inner().unwrap_or_default()
    });
    let compression = if zstd {
        Compression::Zstd
    } else {
        Compression::Gzip
    };
    let (mut blob, toc) = crate::stargz::tests::encode_json(
        tar,
        16 << 10,
        |value| {
            let mut json = serde_json::to_vec(&value).unwrap_or_default();
            if !json.is_empty() {
                let at = at % json.len();
                json[at] = byte;
            }
            json
        },
        compression,
    );
    if flip != 0 && !blob.is_empty() {
        let flip_at = flip_at % blob.len();
        blob[flip_at] ^= flip;
    }
    let size = blob.len() as u64;
    let source = Arc::new(crate::frames::tests::Memory(blob, Default::default()));
    let Ok(layer) = crate::stargz::open(source, "sha256:layer", size, &toc, compression) else {
        return Ok(());
    };
    let outside = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (root, aside) = (outside.path().join("rootfs"), outside.path().join("aside"));
    for dir in [&root, &aside] {
        std::fs::create_dir(dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    if let Ok((tree, _)) = crate::lazy::LazyTree::build(
        root.clone(),
        root,
        aside,
        vec![layer.framed],
        &[layer.skeleton],
    ) {
        let _ = tree.fill_all();
    }
    only_these_in(outside.path(), &["aside", "rootfs"])
}

proptest! {
    // Fewer cases by default: a damaged chunk is read again after 0.2 and 0.4 s, as a
    // transfer fault would be.
    #![proptest_config(cases(300))]

    #[test]
    fn estargz_and_zstd_chunked_layers_open_fill_or_are_refused(
        zstd in any::<bool>(),
        at in 0usize..4096,
        byte in any::<u8>(),
        flip_at in any::<usize>(),
        flip in prop_oneof![Just(0u8), any::<u8>()],
    ) {
        check_stargz(zstd, at, byte, flip_at, flip)?;
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn references_parse_or_are_refused_and_print_back(text in reference_text()) {
        if let Ok(reference) = text.parse::<ImageReference>() {
            let printed = reference.to_string();
            let again: ImageReference = printed.parse().map_err(|e| {
                TestCaseError::fail(format!("{text:?} printed as {printed:?}, which fails: {e}"))
            })?;
            prop_assert_eq!(again.to_string(), printed);
        }
    }

    #[test]
    fn image_configs_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_config(&bytes);
    }

    #[test]
    fn manifests_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_manifest(&bytes);
    }

    #[test]
    fn mutated_manifests_parse_or_are_refused(at in 0usize..2000, byte in any::<u8>(), index in any::<bool>()) {
        let mut manifest = if index { INDEX.to_vec() } else { MANIFEST.to_vec() };
        let at = at % manifest.len();
        manifest[at] = byte;
        check_manifest(&manifest);
    }

    #[test]
    fn mutated_configs_parse_or_are_refused(at in 0usize..400, byte in any::<u8>()) {
        let mut config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":["/bin/sh"],"Cmd":["-c","echo"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#.to_vec();
        let at = at % config.len();
        config[at] = byte;
        let _ = parse_config(&config);
    }

    #[test]
    fn compressed_framing_fails_cleanly(
        magic in prop::sample::select(vec![&[0x1f, 0x8b, 0x08][..], &[0x28, 0xb5, 0x2f, 0xfd][..], &b""[..]]),
        rest in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend(rest);
        let faults = FaultSlot::default();
        let declared = [None, Some(Compression::Gzip), Some(Compression::Zstd)];
        for declared in declared {
            if let Ok(mut reader) = decompressed(&bytes[..], declared, &faults) {
                // Bounded: a bomb is the unpacker's size checks' job, not this target's.
                let mut sink = Vec::new();
                let _ = reader.by_ref().take(1 << 20).read_to_end(&mut sink);
            }
        }
    }

    #[test]
    fn skeletons_give_one_tree_whether_the_finisher_makes_their_files_or_the_applier_does(
        layers in colliding_layers(),
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let alone = skeleton_tree(
            dir.path(),
            "alone",
            &layers,
            LayerApplier::for_skeletons_on_one_thread,
        );
        let handed = skeleton_tree(dir.path(), "handed", &layers, LayerApplier::for_skeletons);
        prop_assert_eq!(alone, handed);
    }

    #[test]
    fn the_applier_refuses_or_applies_and_stays_inside(bytes in tar_bytes()) {
        let outside = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let staging = outside.path().join("staging");
        std::fs::create_dir(&staging).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut applier = LayerApplier::new(staging.clone(), staging.clone());
        if applier.apply(&bytes[..]).is_ok() {
            let _ = applier.finish();
        }
        only_these_in(outside.path(), &["staging"])?;
    }
}
