//! Input objects in, output files out, through the AWS SDK (which honours the standard
//! `AWS_ENDPOINT_URL`, so the same code talks to S3 or to a local stand-in).

use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use super::event::S3Object;

/// An S3 transfer failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} s3://{bucket}/{key}: {message}")]
pub struct S3Error {
    /// `download` or `upload`.
    pub op: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The SDK's or the OS's explanation.
    pub message: String,
}

/// An S3 client, made on first use (a cold start that needs no S3 pays nothing for it).
#[derive(Debug, Clone)]
pub struct Storage {
    client: aws_sdk_s3::Client,
}

impl Storage {
    /// Loads the standard AWS configuration (the function's role credentials on Lambda).
    pub async fn connect() -> Self {
        Self {
            client: scar_image::s3_client().await,
        }
    }

    /// Downloads `object` into `dir` under its base name; the file appears whole or not
    /// at all.
    pub async fn download(&self, object: &S3Object, dir: &Path) -> Result<PathBuf, S3Error> {
        let fail = |message: String| S3Error {
            op: "download",
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            message,
        };
        let name = object
            .key
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("input");
        let path = dir.join(name);
        let partial = dir.join(format!(".{name}.partial"));
        if let Err(e) =
            scar_image::s3::get_file(&self.client, &object.bucket, &object.key, &partial).await
        {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(fail(e.to_string()));
        }
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(path)
    }

    /// Uploads every regular file below `dir` to `bucket` as `prefix` + its relative path,
    /// several at once; returns their `s3://` names in path order. Every file is tried; the
    /// first failure is returned. An object appears whole or not at all: a multipart upload
    /// that fails is aborted.
    pub async fn upload_dir(
        &self,
        dir: &Path,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<String>, S3Error> {
        let uploads = files_below(dir).into_iter().map(|file| async move {
            let relative = file
                .strip_prefix(dir)
                .unwrap_or(&file)
                .to_string_lossy()
                .into_owned();
            let key = format!("{prefix}{relative}");
            match scar_image::s3::put_file(&self.client, &file, bucket, &key).await {
                Ok(()) => Ok(format!("s3://{bucket}/{key}")),
                Err(e) => Err(S3Error {
                    op: "upload",
                    bucket: bucket.to_owned(),
                    key,
                    message: e.to_string(),
                }),
            }
        });
        let results: Vec<_> = futures_util::stream::iter(uploads)
            .buffered(scar_image::s3::CONCURRENT_FILES)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

/// Regular files below `dir`, sorted; symlinks are not followed (a link to /etc/passwd
/// left in the output folder must not upload the host's file).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    out.sort();
    out
}
