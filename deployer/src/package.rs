//! Zips in the layout Lambda expects.
//!
//! | entry | in a layer, seen at | in a function package, seen at |
//! |---|---|---|
//! | `bootstrap` | `/opt/bootstrap` | `/var/task/bootstrap` |
//! | `lib/scar-fakechroot-glibc.so` | `/opt/lib/…` | `/var/task/lib/…` |
//! | `lib/scar-fakechroot-musl.so` | `/opt/lib/…` | `/var/task/lib/…` |
//! | `init-script.sh` (functions only) | | `/var/task/init-script.sh` |
//! | `extra-payload/…` (functions only, `init -ep DIR`) | | `/var/task/extra-payload/…` |
//!
//! bootstrap finds the shims in `lib/` beside itself, so both placements work unchanged.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use zip::write::SimpleFileOptions;

use crate::cli::Arch;
use crate::error::DeployError;

/// The shims' entry names.
pub const SHIM_ENTRIES: [&str; 2] = [
    "lib/scar-fakechroot-glibc.so",
    "lib/scar-fakechroot-musl.so",
];
/// The init script's entry name (the runtime resolves it against `LAMBDA_TASK_ROOT`).
pub const INIT_SCRIPT_ENTRY: &str = "init-script.sh";
/// The extra payload's folder in the package (`SCAR_EXTRA_PAYLOAD`, resolved the same way).
pub const EXTRA_PAYLOAD_ENTRY: &str = "extra-payload";
/// The largest zip Lambda accepts in a request (larger ones must come through S3).
pub const DIRECT_UPLOAD_LIMIT: usize = 50 * 1024 * 1024;

/// Where the runtime's files are.
#[derive(Debug, Clone)]
pub enum RuntimeSource {
    /// A zip made by `layer build`.
    Zip(PathBuf),
    /// The bootstrap binary and the directory of shims.
    Files {
        /// bootstrap.
        bootstrap: PathBuf,
        /// The shims' directory.
        shim_dir: PathBuf,
    },
}

impl RuntimeSource {
    /// From the flags; the default is the zip `make layer` builds.
    pub fn from_flags(files: &crate::cli::RuntimeFiles, arch: Arch) -> Self {
        match (&files.layer_zip, &files.bootstrap, &files.shim_dir) {
            (Some(zip), _, _) => Self::Zip(zip.clone()),
            (None, Some(bootstrap), Some(shim_dir)) => Self::Files {
                bootstrap: bootstrap.clone(),
                shim_dir: shim_dir.clone(),
            },
            _ => Self::Zip(PathBuf::from(format!(
                "target/layer/scar-layer-{}.zip",
                arch.as_str()
            ))),
        }
    }

    /// The files as (entry name, mode, bytes), checked to be built for `arch`.
    fn entries(&self, arch: Arch) -> Result<Vec<Entry>, DeployError> {
        let entries = match self {
            Self::Files {
                bootstrap,
                shim_dir,
            } => {
                let read = |p: PathBuf| std::fs::read(&p).map_err(DeployError::io(p));
                let mut entries = vec![("bootstrap".to_owned(), 0o755, read(bootstrap.clone())?)];
                for entry in SHIM_ENTRIES {
                    let file = entry.trim_start_matches("lib/");
                    entries.push((entry.to_owned(), 0o755, read(shim_dir.join(file))?));
                }
                entries
            }
            Self::Zip(path) => {
                let bytes = std::fs::read(path).map_err(DeployError::io(path))?;
                let mut archive =
                    zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| DeployError::Package {
                        path: path.clone(),
                        message: format!("not a zip: {e}"),
                    })?;
                let mut entries = Vec::new();
                for name in std::iter::once("bootstrap").chain(SHIM_ENTRIES) {
                    let mut file = archive.by_name(name).map_err(|e| DeployError::Package {
                        path: path.clone(),
                        message: format!(
                            "no {name} in the layer zip: {e} (build it with `make layer`)"
                        ),
                    })?;
                    let mut data = Vec::with_capacity(file.size() as usize);
                    file.read_to_end(&mut data)
                        .map_err(DeployError::io(path.clone()))?;
                    entries.push((name.to_owned(), 0o755, data));
                }
                entries
            }
        };
        for (name, _, data) in &entries {
            check_elf(name, data, arch, self)?;
        }
        Ok(entries
            .into_iter()
            .map(|(name, mode, data)| Entry::File { name, mode, data })
            .collect())
    }
}

/// Refuses a binary built for the other architecture: Lambda would only say
/// "exec format error" at the first cold start.
fn check_elf(
    name: &str,
    data: &[u8],
    arch: Arch,
    source: &RuntimeSource,
) -> Result<(), DeployError> {
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    let path = match source {
        RuntimeSource::Zip(p) => p.clone(),
        RuntimeSource::Files { .. } => PathBuf::from(name),
    };
    if data.len() < 20 || &data[..4] != b"\x7fELF" {
        return Err(DeployError::Package {
            path,
            message: format!("{name} is not an ELF binary"),
        });
    }
    let machine = u16::from_le_bytes([data[18], data[19]]);
    let wanted = match arch {
        Arch::X86_64 => EM_X86_64,
        Arch::Arm64 => EM_AARCH64,
    };
    if machine != wanted {
        let found = match machine {
            EM_X86_64 => "x86_64",
            EM_AARCH64 => "arm64",
            _ => "another architecture",
        };
        return Err(DeployError::Package {
            path,
            message: format!("{name} is built for {found}, not {}", arch.as_str()),
        });
    }
    Ok(())
}

/// One entry of a zip.
#[derive(Debug)]
enum Entry {
    File {
        name: String,
        mode: u32,
        data: Vec<u8>,
    },
    Dir {
        name: String,
        mode: u32,
    },
    Link {
        name: String,
        target: String,
    },
}

fn zip_entries(entries: &[Entry], path: &Path) -> Result<Vec<u8>, DeployError> {
    let fail = |e: zip::result::ZipError| DeployError::Package {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let options = |mode: u32| {
        SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9))
            .unix_permissions(mode)
    };
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries {
        match entry {
            Entry::File { name, mode, data } => {
                zip.start_file(name.as_str(), options(*mode))
                    .map_err(fail)?;
                zip.write_all(data).map_err(DeployError::io(path))?;
            }
            Entry::Dir { name, mode } => zip.add_directory(name, options(*mode)).map_err(fail)?,
            Entry::Link { name, target } => {
                zip.add_symlink(name, target, options(0o777))
                    .map_err(fail)?;
            }
        }
    }
    Ok(zip.finish().map_err(fail)?.into_inner())
}

/// The extra payload's tree under [`EXTRA_PAYLOAD_ENTRY`]: folders, files with their modes
/// and symbolic links as they are (Lambda unpacks them as links). Anything else (a socket, a
/// device, a FIFO) has no place in a zip and is refused by name.
fn extra_payload_entries(dir: &Path) -> Result<Vec<Entry>, DeployError> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    for item in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let item = item.map_err(|e| DeployError::Package {
            path: e.path().unwrap_or(dir).to_path_buf(),
            message: e.to_string(),
        })?;
        let path = item.path();
        let relative = path.strip_prefix(dir).unwrap_or(path);
        let Some(relative) = relative.to_str() else {
            return Err(DeployError::Package {
                path: path.to_path_buf(),
                message: "the name is not UTF-8, which zip entries are".into(),
            });
        };
        let name = if relative.is_empty() {
            EXTRA_PAYLOAD_ENTRY.to_owned()
        } else {
            format!("{EXTRA_PAYLOAD_ENTRY}/{relative}")
        };
        let meta = item.metadata().map_err(|e| DeployError::Package {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = item.file_type();
        if kind.is_dir() {
            entries.push(Entry::Dir { name, mode });
        } else if kind.is_file() {
            let data = std::fs::read(path).map_err(DeployError::io(path))?;
            entries.push(Entry::File { name, mode, data });
        } else if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(DeployError::io(path))?;
            entries.push(Entry::Link {
                name,
                target: target.to_string_lossy().into_owned(),
            });
        } else {
            return Err(DeployError::Package {
                path: path.to_path_buf(),
                message: "neither a file, a folder nor a link: a zip cannot hold it".into(),
            });
        }
    }
    Ok(entries)
}

/// The small manifest every function package carries (Lambda refuses an empty package).
#[derive(Debug, Serialize)]
struct FunctionManifest<'a> {
    image: &'a str,
}

/// The layer zip for `arch`.
pub fn layer_zip(source: &RuntimeSource, arch: Arch) -> Result<Vec<u8>, DeployError> {
    let entries = source.entries(arch)?;
    zip_entries(&entries, Path::new("layer.zip"))
}

/// What goes into a function package besides its manifest.
#[derive(Debug, Default, Clone, Copy)]
pub struct FunctionFiles<'a> {
    /// The init script's text.
    pub script: Option<&'a [u8]>,
    /// A folder shipped as [`EXTRA_PAYLOAD_ENTRY`].
    pub extra_payload: Option<&'a Path>,
    /// The runtime, when it does not come from a layer.
    pub runtime: Option<(&'a RuntimeSource, Arch)>,
}

/// A function package: the init script, the extra payload, and the runtime when it does not
/// come from a layer. A package is never empty: Lambda refuses that, so a small manifest
/// names the image.
pub fn function_zip(files: FunctionFiles<'_>, image: &str) -> Result<Vec<u8>, DeployError> {
    let manifest = serde_json::to_vec_pretty(&FunctionManifest { image }).map_err(|e| {
        DeployError::Package {
            path: PathBuf::from("scar-function.json"),
            message: e.to_string(),
        }
    })?;
    let mut entries = vec![Entry::File {
        name: "scar-function.json".to_owned(),
        mode: 0o644,
        data: manifest,
    }];
    if let Some(script) = files.script {
        entries.push(Entry::File {
            name: INIT_SCRIPT_ENTRY.to_owned(),
            mode: 0o755,
            data: script.to_vec(),
        });
    }
    if let Some(dir) = files.extra_payload {
        entries.extend(extra_payload_entries(dir)?);
    }
    if let Some((source, arch)) = files.runtime {
        entries.extend(source.entries(arch)?);
    }
    zip_entries(&entries, Path::new("function.zip"))
}

/// Lambda's limit on a function's unzipped package (layers included, which this does not
/// know of).
pub const UNZIPPED_LIMIT: u64 = 250 * 1024 * 1024;

/// Refuses a function package Lambda would refuse once unzipped, before anything is created.
pub fn check_unzipped_size(zip: &[u8]) -> Result<(), DeployError> {
    check_unzipped_size_under(zip, UNZIPPED_LIMIT)
}

fn check_unzipped_size_under(zip: &[u8], limit: u64) -> Result<(), DeployError> {
    let fail = |message: String| DeployError::Package {
        path: PathBuf::from("function.zip"),
        message,
    };
    let archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| fail(e.to_string()))?;
    let unzipped = archive.decompressed_size().unwrap_or(u128::MAX);
    if unzipped > u128::from(limit) {
        return Err(fail(format!(
            "the function package unzips to {:.1} MB; Lambda takes at most {} MB (the extra payload is too large: put it in S3 or in the image)",
            unzipped as f64 / 1048576.0,
            limit / 1048576
        )));
    }
    Ok(())
}

/// Refuses a zip Lambda would refuse in a request, before any resource is created.
pub fn check_upload_size(zip: &[u8], what: &str) -> Result<(), DeployError> {
    if zip.len() > DIRECT_UPLOAD_LIMIT {
        return Err(DeployError::Invalid(format!(
            "the {what} zip is {:.1} MB; Lambda takes at most {} MB in a request",
            zip.len() as f64 / 1048576.0,
            DIRECT_UPLOAD_LIMIT / 1048576
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_elf(machine: u16) -> Vec<u8> {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(18, 0);
        elf.extend_from_slice(&machine.to_le_bytes());
        elf.resize(64, 0);
        elf
    }

    fn files(dir: &Path, machine: u16) -> RuntimeSource {
        std::fs::write(dir.join("bootstrap"), fake_elf(machine)).unwrap();
        std::fs::write(dir.join("scar-fakechroot-glibc.so"), fake_elf(machine)).unwrap();
        std::fs::write(dir.join("scar-fakechroot-musl.so"), fake_elf(machine)).unwrap();
        RuntimeSource::Files {
            bootstrap: dir.join("bootstrap"),
            shim_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn the_layer_holds_an_executable_bootstrap_at_its_root_and_the_shims_in_lib() {
        let dir = tempfile::tempdir().unwrap();
        let zip = layer_zip(&files(dir.path(), 62), Arch::X86_64).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip.clone())).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.map(|n| n.into_owned()).unwrap())
            .collect();
        assert_eq!(names, ["bootstrap", SHIM_ENTRIES[0], SHIM_ENTRIES[1]]);
        assert_eq!(
            archive.by_name("bootstrap").unwrap().unix_mode(),
            Some(0o100755)
        );

        // A zip from `layer build` feeds a function package unchanged.
        let built = dir.path().join("layer.zip");
        std::fs::write(&built, &zip).unwrap();
        let source = RuntimeSource::Zip(built);
        let files = FunctionFiles {
            script: Some(b"echo hi"),
            runtime: Some((&source, Arch::X86_64)),
            ..FunctionFiles::default()
        };
        let package = function_zip(files, "img").unwrap();
        let archive = zip::ZipArchive::new(Cursor::new(package)).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.map(|n| n.into_owned()).unwrap())
            .collect();
        assert!(
            names.iter().any(|n| n == "bootstrap") && names.iter().any(|n| n == INIT_SCRIPT_ENTRY),
            "{names:?}"
        );
    }

    #[test]
    fn binaries_for_the_other_architecture_or_not_elf_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = layer_zip(&files(dir.path(), 62), Arch::Arm64).unwrap_err();
        assert!(
            err.to_string().contains("built for x86_64, not arm64"),
            "{err}"
        );
        std::fs::write(dir.path().join("bootstrap"), "#!/bin/sh\n").unwrap();
        let source = RuntimeSource::Files {
            bootstrap: dir.path().join("bootstrap"),
            shim_dir: dir.path().to_path_buf(),
        };
        let err = layer_zip(&source, Arch::X86_64).unwrap_err();
        assert!(err.to_string().contains("not an ELF"), "{err}");
    }

    /// Every path under `root` with what `lstat` says of it: kind, mode, contents or target.
    fn tree(root: &Path) -> Vec<(String, String)> {
        use std::os::unix::fs::PermissionsExt;
        walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.path().symlink_metadata().unwrap();
                let what = if meta.is_symlink() {
                    format!(
                        "link -> {}",
                        std::fs::read_link(e.path()).unwrap().display()
                    )
                } else if meta.is_dir() {
                    format!("dir {:o}", meta.permissions().mode() & 0o7777)
                } else {
                    let data = std::fs::read(e.path()).unwrap();
                    format!(
                        "file {:o} {}",
                        meta.permissions().mode() & 0o7777,
                        String::from_utf8_lossy(&data)
                    )
                };
                let name = e.path().strip_prefix(root).unwrap().display().to_string();
                (name, what)
            })
            .collect()
    }

    #[test]
    #[ignore = "harness tier: compares with Info-ZIP's unzip, which setup.sh installs"]
    fn the_extra_payload_unzips_as_the_folder_it_was() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("payload");
        std::fs::create_dir_all(payload.join("models/empty")).unwrap();
        std::fs::create_dir_all(payload.join("bin")).unwrap();
        std::fs::write(payload.join("models/weights.txt"), "0.5 0.25\n").unwrap();
        std::fs::write(payload.join("bin/run.sh"), "#!/bin/sh\necho run\n").unwrap();
        std::fs::set_permissions(
            payload.join("bin/run.sh"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::symlink("../models/weights.txt", payload.join("bin/weights")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", payload.join("host")).unwrap();
        let files = FunctionFiles {
            extra_payload: Some(&payload),
            ..FunctionFiles::default()
        };
        let zip = dir.path().join("function.zip");
        std::fs::write(&zip, function_zip(files, "img").unwrap()).unwrap();
        let out = dir.path().join("unzipped");
        let status = std::process::Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(tree(&out.join(EXTRA_PAYLOAD_ENTRY)), tree(&payload));
    }

    #[test]
    fn a_package_over_lambdas_unzipped_limit_is_refused_before_upload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zeros"), vec![0u8; 3 * 1024 * 1024]).unwrap();
        let files = FunctionFiles {
            extra_payload: Some(dir.path()),
            ..FunctionFiles::default()
        };
        let zip = function_zip(files, "img").unwrap();
        assert!(zip.len() < 1024 * 1024, "zeros compress: {}", zip.len());
        let err = check_unzipped_size_under(&zip, 2 * 1024 * 1024)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unzips to 3.0 MB; Lambda takes at most 2 MB"),
            "{err}"
        );
        check_unzipped_size_under(&zip, 4 * 1024 * 1024).unwrap();
    }

    #[test]
    fn an_extra_payload_holding_a_fifo_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("queue");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let files = FunctionFiles {
            extra_payload: Some(dir.path()),
            ..FunctionFiles::default()
        };
        let err = function_zip(files, "img").unwrap_err().to_string();
        assert!(
            err.contains("queue") && err.contains("a zip cannot hold it"),
            "{err}"
        );
    }

    #[test]
    fn a_zip_without_the_runtime_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.zip");
        std::fs::write(
            &path,
            function_zip(FunctionFiles::default(), "img").unwrap(),
        )
        .unwrap();
        let err = layer_zip(&RuntimeSource::Zip(path), Arch::X86_64).unwrap_err();
        assert!(
            err.to_string().contains("no bootstrap in the layer zip"),
            "{err}"
        );
    }
}
