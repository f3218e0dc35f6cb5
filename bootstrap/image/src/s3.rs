//! The one S3 client of the runtime: staged images are read through it, and the Lambda
//! handler downloads inputs and uploads outputs through it. Files go into and come out of
//! S3 here too, for the runtime (inputs, outputs) and the deployer (`put`, `get`, staging),
//! whole or not at all.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures_util::StreamExt;

/// Attempts per S3 request: the SDK's standard retries (exponential backoff with jitter on
/// 503 SlowDown, 500, throttling and dropped connections), two more than its default of
/// three, as for a registry: S3 throttles a prefix that a thousand invocations hit at once.
pub const ATTEMPTS: u32 = 5;

/// An S3 client from the standard AWS configuration (the function's role on Lambda). A
/// custom endpoint (a local stand-in) has no per-bucket DNS names, so it gets path style.
pub async fn client() -> aws_sdk_s3::Client {
    let shared = crate::net::aws_config_loader().load().await;
    let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(custom_endpoint)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(ATTEMPTS))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Files up to this size are put with one PutObject; larger ones in parts, several at once
/// (one PutObject takes at most 5 GiB, and Lambda's /tmp holds up to 10 GiB).
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// The smallest part: S3's minimum is 5 MiB; the AWS CLI's default is 8 MiB.
const MIN_PART: u64 = 8 << 20;
/// S3's limit on the parts of one upload.
const MAX_PARTS: u64 = 10_000;
/// Files a caller puts at once.
pub const CONCURRENT_FILES: usize = 4;
/// Parts of one file put at once. Each streams from the file, so memory does not grow
/// with them.
const CONCURRENT_PARTS: usize = 4;

/// Why a file could not be put or fetched.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// S3 refused a request, after the client's retries.
    #[error("{operation}: {message}")]
    S3 {
        /// The request, as IAM names it (`s3:PutObject`, `s3:UploadPart`…).
        operation: &'static str,
        /// S3's code and message, or the client's error.
        message: String,
    },
}

impl TransferError {
    /// S3's error about one piece of the object (`part 3`, `bytes 0-99`).
    fn about(self, piece: &str) -> Self {
        match self {
            Self::S3 { operation, message } => Self::S3 {
                operation,
                message: format!("{piece}: {message}"),
            },
            other => other,
        }
    }
}

fn s3_error<E>(operation: &'static str) -> impl FnOnce(E) -> TransferError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    move |e| TransferError::S3 {
        operation,
        message: match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        },
    }
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

/// Puts `file` at `bucket`/`key`: one PutObject up to [`MULTIPART_THRESHOLD`], else a
/// multipart upload whose parts stream from the file, CRC32-checked, several at once. A
/// multipart upload that fails is aborted, so the object appears whole or not at all.
pub async fn put_file(
    client: &aws_sdk_s3::Client,
    file: &Path,
    bucket: &str,
    key: &str,
) -> Result<(), TransferError> {
    let unreadable = |source| TransferError::File {
        path: file.to_path_buf(),
        source,
    };
    let size = tokio::fs::metadata(file).await.map_err(unreadable)?.len();
    if size <= MULTIPART_THRESHOLD {
        let body = ByteStream::from_path(file)
            .await
            .map_err(|e| unreadable(std::io::Error::other(e)))?;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(s3_error("s3:PutObject"))?;
        return Ok(());
    }
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .map_err(s3_error("s3:CreateMultipartUpload"))?;
    let upload_id = created.upload_id().ok_or_else(|| TransferError::S3 {
        operation: "s3:CreateMultipartUpload",
        message: "no upload id in the answer".to_owned(),
    })?;
    let completed = match put_parts(client, file, bucket, key, upload_id, size).await {
        Ok(parts) => client
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
            .map_err(s3_error("s3:CompleteMultipartUpload")),
        Err(e) => Err(e),
    };
    if completed.is_err() {
        // Its parts would be stored (and billed) until the bucket's lifecycle ends them.
        let _ = client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
    }
    completed
}

async fn put_parts(
    client: &aws_sdk_s3::Client,
    file: &Path,
    bucket: &str,
    key: &str,
    upload_id: &str,
    size: u64,
) -> Result<Vec<CompletedPart>, TransferError> {
    let parts = parts_of(size)
        .into_iter()
        .map(|(number, offset, length)| async move {
            let body = ByteStream::read_from()
                .path(file)
                .offset(offset)
                .length(Length::Exact(length))
                .build()
                .await
                .map_err(|e| TransferError::File {
                    path: file.to_path_buf(),
                    source: std::io::Error::other(e),
                })?;
            let done = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("s3:UploadPart")(e).about(&format!("part {number}")))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(done.e_tag().map(str::to_owned))
                .set_checksum_crc32(done.checksum_crc32().map(str::to_owned))
                .build())
        });
    let results: Vec<Result<CompletedPart, TransferError>> = futures_util::stream::iter(parts)
        .buffered(CONCURRENT_PARTS)
        .collect()
        .await;
    results.into_iter().collect()
}

/// An object larger than this is fetched by ranged GETs of this size, several at once (one
/// stream from S3 gives a fraction of what Lambda's network carries).
pub const GET_PART: u64 = 16 << 20;
/// Ranged GETs of one object at once; each streams into the file at its offset.
const CONCURRENT_GETS: usize = 4;
/// Attempts per ranged GET whose body breaks off mid-stream (the client retries a request
/// that fails before its body; nothing retries a body that stops).
const BODY_ATTEMPTS: u32 = 3;

/// Fetches `bucket`/`key` into `file` (created, or truncated): the first [`GET_PART`] bytes
/// by one GET, whose answer gives the object's size and ETag, the rest by ranged GETs
/// several at once, each bound to that ETag, so that an object replaced meanwhile fails
/// by name instead of mixing two versions. Returns the object's size.
pub async fn get_file(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    file: &Path,
) -> Result<u64, TransferError> {
    let unwritable = |source| TransferError::File {
        path: file.to_path_buf(),
        source,
    };
    tokio::fs::File::create(file).await.map_err(unwritable)?;
    let first = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes=0-{}", GET_PART - 1))
        .send()
        .await;
    let first = match first {
        // An empty object has no byte 0 to range over.
        Err(e) if e.code() == Some("InvalidRange") => client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error("s3:GetObject"))?,
        other => other.map_err(s3_error("s3:GetObject"))?,
    };
    // "bytes 0-16777215/123456789"; a server that ignores the range sends it all.
    let size = first
        .content_range()
        .and_then(|range| range.rsplit('/').next()?.parse::<u64>().ok());
    let etag = first.e_tag().map(str::to_owned);
    let got = write_at(file, 0, first.body).await?;
    let Some(size) = size.filter(|&size| size > got) else {
        return Ok(got);
    };
    if got != GET_PART {
        return Err(TransferError::S3 {
            operation: "s3:GetObject",
            message: format!("bytes 0-{} came back as {got} bytes", GET_PART - 1),
        });
    }
    let ranges = (GET_PART..size).step_by(GET_PART as usize).map(|start| {
        let end = (start + GET_PART).min(size);
        let etag = etag.clone();
        async move {
            let mut attempt = 1;
            loop {
                let answer = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .range(format!("bytes={start}-{}", end - 1))
                    .set_if_match(etag.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        s3_error("s3:GetObject")(e).about(&format!("bytes {start}-{}", end - 1))
                    })?;
                match write_at(file, start, answer.body).await {
                    Ok(n) if n == end - start => return Ok(()),
                    Ok(n) => {
                        return Err(TransferError::S3 {
                            operation: "s3:GetObject",
                            message: format!(
                                "bytes {start}-{} came back as {n} bytes",
                                end - 1
                            ),
                        });
                    }
                    Err(e @ TransferError::S3 { .. }) if attempt < BODY_ATTEMPTS => {
                        tracing::warn!(bucket, key, start, error = %e, "a ranged GET broke off; again");
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    });
    let results: Vec<Result<(), TransferError>> = futures_util::stream::iter(ranges)
        .buffer_unordered(CONCURRENT_GETS)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(size)
}

/// Streams `body` into `file` from `offset`; returns the bytes written. A body that
/// breaks off is S3's error; a write that fails (a full /tmp) is the file's.
async fn write_at(file: &Path, offset: u64, mut body: ByteStream) -> Result<u64, TransferError> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let failed = |source| TransferError::File {
        path: file.to_path_buf(),
        source,
    };
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .await
        .map_err(failed)?;
    out.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(failed)?;
    let mut written = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| TransferError::S3 {
            operation: "s3:GetObject",
            message: format!("the body broke off after {written} bytes: {e}"),
        })?;
        out.write_all(&chunk).await.map_err(failed)?;
        written += chunk.len() as u64;
    }
    out.flush().await.map_err(failed)?;
    Ok(written)
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
