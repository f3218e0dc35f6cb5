//! `deployer put`, `get` and `ls -b`: SCAR's file commands, for a function's input and
//! output folders.
//!
//! `put` checks every local file before the first upload, so a missing path uploads nothing.
//! `get` refuses a key that would land outside the target directory (`..`, an absolute
//! path), and writes each file aside and renames it, so no half-written file is left.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::report::{Report, emit};
use crate::aws::Aws;
use crate::cli::{GetArgs, PutArgs};
use crate::error::DeployError;

/// Uploads at once.
const PARALLEL: usize = 8;

/// `folder` as a key prefix: no leading `/`, one trailing `/`, empty for the top.
fn prefix(folder: Option<&str>) -> String {
    let folder = folder.unwrap_or_default().trim_matches('/');
    if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    }
}

/// One object moved or listed.
#[derive(Debug, Serialize)]
struct Object {
    key: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
}

/// The objects a command moved or listed.
#[derive(Debug, Serialize)]
struct Objects {
    bucket: String,
    objects: Vec<Object>,
}

impl Objects {
    fn emit(bucket: &str, objects: Vec<Object>, json: bool) -> Result<u8, DeployError> {
        let report = Objects {
            bucket: bucket.to_owned(),
            objects,
        };
        emit(&report, json)?;
        Ok(0)
    }
}

impl Report for Objects {
    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for object in &self.objects {
            match &object.path {
                Some(path) => writeln!(
                    out,
                    "{}\ts3://{}/{}\t{}",
                    path.display(),
                    self.bucket,
                    object.key,
                    object.size
                )?,
                None => writeln!(out, "{}\t{}", object.key, object.size)?,
            }
        }
        Ok(())
    }
}

/// The files to upload from `path`: itself, or every regular file under it, with the key
/// each gets below `prefix`.
fn files_to_put(path: &Path, prefix: &str) -> Result<Vec<(PathBuf, String, u64)>, DeployError> {
    let meta = std::fs::metadata(path).map_err(DeployError::io(path))?;
    if meta.is_file() {
        let name = path
            .file_name()
            .ok_or_else(|| DeployError::Invalid(format!("{}: not a file name", path.display())))?;
        return Ok(vec![(
            path.to_owned(),
            format!("{prefix}{}", name.to_string_lossy()),
            meta.len(),
        )]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(DeployError::io(&dir))? {
            let entry = entry.map_err(DeployError::io(&dir))?;
            let kind = entry.file_type().map_err(DeployError::io(entry.path()))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let full = entry.path();
                let relative = full.strip_prefix(path).unwrap_or(&full);
                let size = entry.metadata().map_err(DeployError::io(&full))?.len();
                let key = format!("{prefix}{}", relative.to_string_lossy());
                files.push((full, key, size));
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

pub(crate) async fn put(aws: &Aws, args: &PutArgs) -> Result<u8, DeployError> {
    let files = files_to_put(&args.path, &prefix(args.bucket_folder.as_deref()))?;
    if files.is_empty() {
        return Err(DeployError::Invalid(format!(
            "{}: no files to upload",
            args.path.display()
        )));
    }
    let bucket = args.bucket.as_str();
    let objects: Vec<Object> = futures_util::stream::iter(files)
        .map(|(path, key, size)| async move {
            scar_image::s3::put_file(&aws.s3, &path, bucket, &key)
                .await
                .map_err(DeployError::transfer)?;
            Ok::<_, DeployError>(Object {
                key,
                size,
                path: Some(path),
            })
        })
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    Objects::emit(&args.bucket, objects, args.json)
}

/// Every object under `prefix`.
async fn objects_under(aws: &Aws, bucket: &str, prefix: &str) -> Result<Vec<Object>, DeployError> {
    Ok(crate::resources::objects_under(aws, bucket, prefix)
        .await?
        .into_iter()
        .map(|(key, size)| Object {
            key,
            size,
            path: None,
        })
        .collect())
}

pub(crate) async fn list(
    aws: &Aws,
    bucket: &str,
    folder: Option<&str>,
    json: bool,
) -> Result<u8, DeployError> {
    let objects = objects_under(aws, bucket, &prefix(folder)).await?;
    Objects::emit(bucket, objects, json)
}

/// Where the object `key` goes below `dir`: its path under `prefix`, which must stay below
/// `dir` (a key is the bucket writer's choice: `../x` or `/etc/x` are refused by name).
fn local_path(dir: &Path, prefix: &str, key: &str) -> Result<PathBuf, DeployError> {
    let relative = Path::new(key.strip_prefix(prefix).unwrap_or(key));
    let normal = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if !normal || relative.as_os_str().is_empty() {
        return Err(DeployError::Invalid(format!(
            "object key {key:?} would be written outside {}: refused",
            dir.display()
        )));
    }
    Ok(dir.join(relative))
}

pub(crate) async fn get(aws: &Aws, args: &GetArgs) -> Result<u8, DeployError> {
    let prefix = prefix(args.bucket_folder.as_deref());
    let listed = objects_under(aws, &args.bucket, &prefix).await?;
    // Folder markers (`output/`) hold no file.
    let listed: Vec<Object> = listed
        .into_iter()
        .filter(|o| !o.key.ends_with('/'))
        .collect();
    let targets = listed
        .iter()
        .map(|o| local_path(&args.path, &prefix, &o.key))
        .collect::<Result<Vec<_>, _>>()?;
    let bucket = args.bucket.as_str();
    let objects: Vec<Object> = futures_util::stream::iter(listed.into_iter().zip(targets))
        .map(|(object, target)| async move {
            let dir = target.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(DeployError::io(dir))?;
            // Written aside and renamed: the target appears whole or not at all.
            let file = tempfile::NamedTempFile::new_in(dir).map_err(DeployError::io(dir))?;
            let size = scar_image::s3::get_file(&aws.s3, bucket, &object.key, file.path())
                .await
                .map_err(DeployError::transfer)?;
            file.persist(&target)
                .map_err(|e| DeployError::io(&target)(e.error))?;
            Ok::<_, DeployError>(Object {
                key: object.key,
                size,
                path: Some(target),
            })
        })
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    Objects::emit(&args.bucket, objects, args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_below_the_directory_or_are_refused() {
        let dir = Path::new("/out");
        assert_eq!(
            local_path(dir, "output/", "output/a/b.txt").unwrap(),
            Path::new("/out/a/b.txt")
        );
        for hostile in [
            "output/../x",
            "output//etc/passwd",
            "/etc/passwd",
            "output/",
            "output/./x/../../y",
        ] {
            assert!(local_path(dir, "output/", hostile).is_err(), "{hostile}");
        }
        assert_eq!(
            (prefix(None), prefix(Some("/in/")), prefix(Some("a/b"))),
            (String::new(), "in/".into(), "a/b/".into())
        );
    }
}
