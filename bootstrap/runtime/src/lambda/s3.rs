//! Input objects in, output files out, through the AWS SDK (which honours the standard
//! `AWS_ENDPOINT_URL`, so the same code talks to S3 or to a local stand-in).

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures_util::StreamExt;

use super::event::S3Object;

/// Files up to this size are uploaded in one PutObject; larger ones in parts, several at
/// once (one PutObject takes at most 5 GiB, and /tmp holds up to 10 GiB).
const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// The smallest part: S3's minimum is 5 MiB; the AWS CLI's default is 8 MiB.
const MIN_PART: u64 = 8 << 20;
/// S3's limit on the parts of one upload.
const MAX_PARTS: u64 = 10_000;
/// Files uploaded at once, and parts of one file at once. Each part streams from the file,
/// so memory does not grow with them.
const CONCURRENT_FILES: usize = 4;
const CONCURRENT_PARTS: usize = 4;

/// The SDK's error with its whole chain of causes.
fn sdk_message(e: impl std::error::Error) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}

/// `(part number, offset, length)` of each part of a `size`-byte file: parts of at least
/// [`MIN_PART`], whole MiBs, no more than [`MAX_PARTS`] of them.
fn parts_of(size: u64) -> Vec<(i32, u64, u64)> {
    let part = size
        .div_ceil(MAX_PARTS)
        .next_multiple_of(1 << 20)
        .max(MIN_PART);
    (0..size.div_ceil(part))
        .map(|n| {
            let offset = n * part;
            // At most MAX_PARTS parts: the number fits.
            (n as i32 + 1, offset, part.min(size - offset))
        })
        .collect()
}

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
        let response = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| fail(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        let mut body = response.body.into_async_read();
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let copied = tokio::io::copy(&mut body, &mut file).await;
        drop(file);
        if let Err(e) = copied {
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
            match self.upload_file(&file, bucket, &key).await {
                Ok(()) => Ok(format!("s3://{bucket}/{key}")),
                Err(message) => Err(S3Error {
                    op: "upload",
                    bucket: bucket.to_owned(),
                    key,
                    message,
                }),
            }
        });
        let results: Vec<_> = futures_util::stream::iter(uploads)
            .buffered(CONCURRENT_FILES)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn upload_file(&self, file: &Path, bucket: &str, key: &str) -> Result<(), String> {
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|e| e.to_string())?
            .len();
        if size <= MULTIPART_THRESHOLD {
            let body = ByteStream::from_path(file)
                .await
                .map_err(|e| e.to_string())?;
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body)
                .send()
                .await
                .map_err(sdk_message)?;
            return Ok(());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(sdk_message)?;
        let upload_id = created
            .upload_id()
            .ok_or("S3 started a multipart upload without an id")?;
        let completed = match self.upload_parts(file, bucket, key, upload_id, size).await {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(drop)
                .map_err(sdk_message),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Its parts would be stored (and billed) until the bucket's lifecycle ends them.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
        }
        completed
    }

    async fn upload_parts(
        &self,
        file: &Path,
        bucket: &str,
        key: &str,
        upload_id: &str,
        size: u64,
    ) -> Result<Vec<CompletedPart>, String> {
        let parts = parts_of(size)
            .into_iter()
            .map(|(number, offset, length)| async move {
                let body = ByteStream::read_from()
                    .path(file)
                    .offset(offset)
                    .length(Length::Exact(length))
                    .build()
                    .await
                    .map_err(|e| e.to_string())?;
                let done = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("part {number}: {}", sdk_message(e)))?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(done.e_tag().map(str::to_owned))
                    .set_checksum_crc32(done.checksum_crc32().map(str::to_owned))
                    .build())
            });
        let results: Vec<Result<CompletedPart, String>> = futures_util::stream::iter(parts)
            .buffered(CONCURRENT_PARTS)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_within_s3s_limits() {
        for size in [
            MULTIPART_THRESHOLD + 1,
            MIN_PART * 3,
            MIN_PART * 3 + 1,
            5 << 30,
            10 << 30,
            5 << 40,
        ] {
            let parts = parts_of(size);
            assert!(
                parts.len() as u64 <= MAX_PARTS,
                "{size}: {} parts",
                parts.len()
            );
            let mut next = 0;
            for (index, (number, offset, length)) in parts.iter().enumerate() {
                assert_eq!(*number as usize, index + 1);
                assert_eq!(*offset, next, "{size}: contiguous");
                let last = index + 1 == parts.len();
                assert!(last || *length >= 5 << 20, "{size}: S3's 5 MiB minimum");
                assert!(
                    *length > 0 && *length <= 5 << 30,
                    "{size}: S3's 5 GiB maximum"
                );
                next += length;
            }
            assert_eq!(next, size, "{size}: every byte once");
        }
        assert_eq!(parts_of(MIN_PART * 3).len(), 3);
        assert_eq!(parts_of(MIN_PART * 3 + 1).len(), 4);
    }
}
