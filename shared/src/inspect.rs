//! What a backup check asks of S3 beyond objects: an object's metadata, and a bucket's
//! protections (versioning, object lock, default encryption).

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::store::S3Store;
use crate::{Error, Result};

/// An object's metadata, without its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: String,
    /// The object's server-side encryption (`AES256`, `aws:kms`, `aws:kms:dsse`), as
    /// `HeadObject` answers it.
    pub encryption: Option<String>,
    /// The KMS key of an SSE-KMS object.
    pub kms_key_id: Option<String>,
}

/// A checksum algorithm S3 stores for an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    /// S3's name of the algorithm.
    pub fn as_s3(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }
}

/// What a stored checksum is a checksum of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChecksumType {
    /// Of the whole object's bytes (a single-part upload, or a multipart upload made with
    /// `ChecksumType: FULL_OBJECT`, which CRC64NVME always is).
    FullObject,
    /// A multipart upload's checksum of its parts' checksums: equal to another only for the
    /// same algorithm over the same part boundaries.
    Composite,
}

/// One part of a multipart upload, as `GetObjectAttributes` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartChecksum {
    pub size: u64,
    /// The part's own checksum (base64), in the object's algorithm.
    pub checksum: Option<String>,
}

/// The checksum S3 stored for an object, as `GetObjectAttributes` returns it: base64, without
/// the `-N` suffix `HeadObject` shows on a composite.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredChecksum {
    pub algorithm: ChecksumAlgorithm,
    pub value: String,
    pub kind: ChecksumType,
    /// The parts of a multipart upload (listed for a composite checksum only; S3 omits them
    /// when the parts carried no checksums).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartChecksum>,
    /// How many parts the upload had, when it was multipart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_count: Option<u32>,
}

/// An object's lock retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    pub retain_until: DateTime<Utc>,
}

/// Bucket and object metadata.
pub trait BucketInspector: Send + Sync {
    /// `None` when there is no such object.
    fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectHead>>> + Send;
    /// The versioning status: `Enabled`, `Suspended`, or `None` when never enabled.
    fn versioning(&self, bucket: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The object's lock retention, `None` when it has none.
    fn retention(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Retention>>> + Send;
    /// The default encryption algorithm (`AES256`, `aws:kms`, ...), `None` when none is set.
    fn default_encryption(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The checksum S3 stored for the object, with its type and (for a composite) its parts;
    /// `None` when it was uploaded without one, or there is no such object.
    fn stored_checksum(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredChecksum>>> + Send;
}

/// The one checksum S3 stored (an object has one algorithm), and which it is.
fn stored_value(c: &aws_sdk_s3::types::Checksum) -> Option<(ChecksumAlgorithm, &str)> {
    [
        (ChecksumAlgorithm::Sha256, c.checksum_sha256()),
        (ChecksumAlgorithm::Crc64Nvme, c.checksum_crc64_nvme()),
        (ChecksumAlgorithm::Crc32c, c.checksum_crc32_c()),
        (ChecksumAlgorithm::Crc32, c.checksum_crc32()),
        (ChecksumAlgorithm::Sha1, c.checksum_sha1()),
    ]
    .into_iter()
    .find_map(|(a, v)| v.filter(|v| !v.is_empty()).map(|v| (a, v)))
}

/// Whether S3 listed every part with its size, adding up to the object.
pub fn complete_layout(
    parts: &[PartChecksum],
    count: Option<u32>,
    object_size: Option<u64>,
) -> bool {
    let sum = parts
        .iter()
        .try_fold(0u64, |acc, p| acc.checked_add(p.size));
    !parts.is_empty()
        && count.is_some_and(|n| n as usize == parts.len())
        && parts.iter().all(|p| p.size > 0)
        && sum.is_some()
        && sum == object_size
}

fn part_value(
    part: &aws_sdk_s3::types::ObjectPart,
    algorithm: ChecksumAlgorithm,
) -> Option<String> {
    match algorithm {
        ChecksumAlgorithm::Sha256 => part.checksum_sha256(),
        ChecksumAlgorithm::Crc64Nvme => part.checksum_crc64_nvme(),
        ChecksumAlgorithm::Crc32c => part.checksum_crc32_c(),
        ChecksumAlgorithm::Crc32 => part.checksum_crc32(),
        ChecksumAlgorithm::Sha1 => part.checksum_sha1(),
    }
    .map(str::to_owned)
}

fn code_of<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> Option<String> {
    e.code().map(str::to_owned)
}

impl BucketInspector for S3Store {
    async fn stored_checksum(&self, bucket: &str, key: &str) -> Result<Option<StoredChecksum>> {
        use aws_sdk_s3::types::ObjectAttributes;
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut request = self
                .client()
                .get_object_attributes()
                .bucket(bucket)
                .key(key)
                .object_attributes(ObjectAttributes::Checksum)
                .object_attributes(ObjectAttributes::ObjectParts)
                .object_attributes(ObjectAttributes::ObjectSize)
                .max_parts(1000);
            if let Some(m) = &marker {
                request = request.part_number_marker(m);
            }
            let out = match request.send().await {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                    return Ok(None);
                }
                Err(e) => return Err(Error::aws("S3", "GetObjectAttributes", e)),
            };
            let Some((algorithm, value)) = out.checksum().and_then(stored_value) else {
                return Ok(None);
            };
            let object_parts = out.object_parts();
            let parts_count = object_parts
                .and_then(|p| p.total_parts_count())
                .and_then(|n| u32::try_from(n).ok());
            let kind = match out.checksum().and_then(|c| c.checksum_type()) {
                Some(aws_sdk_s3::types::ChecksumType::FullObject) => ChecksumType::FullObject,
                Some(aws_sdk_s3::types::ChecksumType::Composite) => ChecksumType::Composite,
                // Objects stored before S3 named the type: a multipart upload's checksum was
                // composite, a single part's of the whole object.
                _ if parts_count.is_some_and(|n| n > 0) => ChecksumType::Composite,
                _ => ChecksumType::FullObject,
            };
            if let Some(p) = object_parts {
                parts.extend(p.parts().iter().map(|part| PartChecksum {
                    // A part without a size makes the list unusable (see `complete` below).
                    size: part.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    checksum: part_value(part, algorithm),
                }));
            }
            let next = object_parts
                .filter(|p| p.is_truncated() == Some(true))
                .and_then(|p| p.next_part_number_marker())
                .map(str::to_owned);
            // A page that ends no later than it began would loop for ever: stop there.
            if kind == ChecksumType::Composite && next.is_some() && next != marker {
                marker = next;
                continue;
            }
            let object_size = out.object_size().and_then(|s| u64::try_from(s).ok());
            let complete = kind == ChecksumType::Composite
                && complete_layout(&parts, parts_count, object_size);
            return Ok(Some(StoredChecksum {
                algorithm,
                value: value.to_owned(),
                kind,
                // A partial or inconsistent list cannot be recomputed over: no parts, so the
                // composite is "not comparable", never a mismatch.
                parts: if complete { parts } else { Vec::new() },
                parts_count,
            }));
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>> {
        match self
            .client()
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectHead {
                size: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
                etag: out.e_tag().unwrap_or_default().to_owned(),
                encryption: out.server_side_encryption().map(|e| e.as_str().to_owned()),
                kms_key_id: out.ssekms_key_id().map(str::to_owned),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(Error::aws("S3", "HeadObject", e)),
        }
    }

    async fn versioning(&self, bucket: &str) -> Result<Option<String>> {
        let out = self
            .client()
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| Error::aws("S3", "GetBucketVersioning", e))?;
        Ok(out.status().map(|s| s.as_str().to_owned()))
    }

    async fn retention(&self, bucket: &str, key: &str) -> Result<Option<Retention>> {
        match self
            .client()
            .get_object_retention()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(out.retention().and_then(|r| {
                let until = r.retain_until_date()?.to_millis().ok()?;
                Some(Retention {
                    mode: r.mode().map(|m| m.as_str().to_owned()).unwrap_or_default(),
                    retain_until: DateTime::from_timestamp_millis(until)?,
                })
            })),
            Err(e) => {
                let code = e.as_service_error().and_then(code_of);
                match code.as_deref() {
                    Some("NoSuchObjectLockConfiguration")
                    | Some("ObjectLockConfigurationNotFoundError")
                    | Some("InvalidRequest") => Ok(None),
                    _ => Err(Error::aws("S3", "GetObjectRetention", e)),
                }
            }
        }
    }

    async fn default_encryption(&self, bucket: &str) -> Result<Option<String>> {
        match self
            .client()
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| d.sse_algorithm().as_str().to_owned())),
            Err(e) => {
                let code = e.as_service_error().and_then(code_of);
                if code.as_deref() == Some("ServerSideEncryptionConfigurationNotFoundError") {
                    Ok(None)
                } else {
                    Err(Error::aws("S3", "GetBucketEncryption", e))
                }
            }
        }
    }
}

/// Streams an object through a blocking reader: the body arrives in chunks over a bounded
/// channel, so memory stays at a few chunks whatever the object's size.
pub trait ObjectStreamer: Send + Sync {
    /// Runs `f` on a blocking thread with a reader over the object's bytes.
    fn read_with<T, F>(
        &self,
        bucket: &str,
        key: &str,
        f: F,
    ) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static;
}

/// Chunks in flight between the download and the reader.
const STREAM_CHUNKS: usize = 8;

struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl ObjectStreamer for S3Store {
    async fn read_with<T, F>(&self, bucket: &str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    {
        let out = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::aws("S3", "GetObject", e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS);
        let reader = tokio::task::spawn_blocking(move || {
            let mut r = ChannelReader {
                chunks: rx,
                current: bytes::Bytes::new(),
            };
            f(&mut r)
        });
        let mut body = out.body;
        loop {
            let next = body.next().await;
            let item = match next {
                None => break,
                Some(Ok(chunk)) => Ok(chunk),
                Some(Err(e)) => Err(std::io::Error::other(format!(
                    "reading s3://{bucket}/{key}: {e}"
                ))),
            };
            let failed = item.is_err();
            // A closed channel means the reader stopped early (it found what it needed).
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        reader.await.map_err(|e| Error::Aws {
            service: "S3",
            operation: "GetObject",
            message: format!("the reader of s3://{bucket}/{key} failed: {e}"),
            retryable: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(size: u64) -> PartChecksum {
        PartChecksum {
            size,
            checksum: None,
        }
    }

    /// A parts list is used only when S3 gave all of it: every part, each with its size, adding
    /// up to the object. Anything less would make a healthy backup look broken.
    #[test]
    fn only_a_complete_parts_list_is_used() {
        let parts = [part(5), part(4)];
        assert!(complete_layout(&parts, Some(2), Some(9)));
        assert!(!complete_layout(&parts, Some(3), Some(9)), "a page missing");
        assert!(
            !complete_layout(&parts, Some(2), Some(10)),
            "sizes do not add up"
        );
        assert!(!complete_layout(&parts, Some(2), None));
        assert!(
            !complete_layout(&[part(5), part(0)], Some(2), Some(5)),
            "a size missing"
        );
        assert!(!complete_layout(&[], Some(0), Some(0)));
        assert!(!complete_layout(
            &[part(u64::MAX), part(2)],
            Some(2),
            Some(1)
        ));
    }
}
