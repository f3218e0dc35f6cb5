//! An OCI layout under an S3 prefix (`s3://BUCKET/PREFIX`), as `deployer init -db` stages
//! images: cold starts then read layers from S3 in the function's region instead of a
//! registry, through the same streaming unpacker (no compressed copy on disk).

use std::io;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::layout::LayoutStore;
use super::{BlobReader, CHANNEL_CHUNKS, ChannelReader};
use crate::frames::RangeSource;

/// The layout's files in S3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    runtime: Handle,
}

impl S3Store {
    /// A store for `s3://bucket/prefix`; must be called inside the tokio runtime.
    pub async fn connect(bucket: String, prefix: String) -> Self {
        Self {
            client: crate::s3::client().await,
            bucket,
            prefix,
            runtime: Handle::current(),
        }
    }

    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

fn s3_error<E: std::error::Error + 'static>(
    e: aws_sdk_s3::error::SdkError<E>,
    missing: bool,
) -> io::Error {
    let kind = if missing {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

impl LayoutStore for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Called on a blocking thread (the layout is resolved there).
    fn read_at_most(&self, path: &str, max: u64) -> io::Result<Vec<u8>> {
        self.runtime.block_on(async {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.key(path))
                .send()
                .await
                .map_err(|e| {
                    let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                    s3_error(e, missing)
                })?;
            let declared = object.content_length().unwrap_or(0);
            if u64::try_from(declared).unwrap_or(0) > max {
                return Err(super::layout::too_large(path, max));
            }
            let body = object.body.collect().await.map_err(io::Error::other)?;
            super::layout::read_capped(body.into_bytes().as_ref(), path, max)
        })
    }

    fn open(&self, path: &str) -> io::Result<BlobReader> {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key(path));
        self.runtime.spawn(async move {
            let object = match client.get_object().bucket(bucket).key(key).send().await {
                Ok(object) => object,
                Err(e) => {
                    let _ = tx.send(Err(s3_error(e, false))).await;
                    return;
                }
            };
            let mut body = object.body;
            loop {
                let chunk = match body.try_next().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => return,
                    Err(e) => Err(io::Error::other(e)),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader::new(rx)))
    }

    /// Called on a blocking thread; one PutObject replaces the object whole.
    fn write(&self, path: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.runtime.block_on(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(path))
                .body(bytes.into())
                .send()
                .await
                .map(drop)
                .map_err(|e| s3_error(e, false))
        })
    }

    fn ranges(&self, path: &str) -> io::Result<Arc<dyn RangeSource>> {
        Ok(Arc::new(S3Ranges {
            store: self.clone(),
            key: self.key(path),
        }))
    }
}

/// One object read by ranged GETs, each on the calling (blocking) thread: the frame readers
/// run several at once. The SDK retries throttling and 5xx answers itself.
#[derive(Debug)]
struct S3Ranges {
    store: S3Store,
    key: String,
}

impl RangeSource for S3Ranges {
    fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let last = (offset + len).saturating_sub(1);
        self.store.runtime.block_on(async {
            let object = self
                .store
                .client
                .get_object()
                .bucket(&self.store.bucket)
                .key(&self.key)
                .range(format!("bytes={offset}-{last}"))
                .send()
                .await
                .map_err(|e| s3_error(e, false))?;
            // A store that ignores the range would send the whole blob: not into memory.
            let declared = object.content_length().unwrap_or(0);
            if u64::try_from(declared).map_or(true, |d| d > len) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("asked for {len} bytes, the store answers {declared}"),
                ));
            }
            let body = object.body.collect().await.map_err(io::Error::other)?;
            Ok(body.into_bytes().into())
        })
    }
}
