//! Byte counting for `vigil backup verify`: an S3 store whose streamed reads report the bytes
//! they pass to a callback (the command's progress bar), everything else delegated unchanged.

use std::io::Read;
use std::sync::Arc;

use vigil_shared::Result;
use vigil_shared::inspect::{BucketInspector, ObjectHead, ObjectStreamer, Retention};
use vigil_shared::store::{ObjectInfo, ObjectStore};

/// Hears how many bytes were just read.
pub type OnBytes = Arc<dyn Fn(u64) + Send + Sync>;

pub struct Counted<S> {
    pub inner: S,
    pub on_bytes: OnBytes,
}

struct CountingReader<'a> {
    inner: &'a mut dyn Read,
    on_bytes: OnBytes,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

impl<S: ObjectStreamer> ObjectStreamer for Counted<S> {
    async fn read_with<T, F>(&self, bucket: &str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> T + Send + 'static,
    {
        let on_bytes = self.on_bytes.clone();
        self.inner
            .read_with(bucket, key, move |reader| {
                let mut counting = CountingReader {
                    inner: reader,
                    on_bytes,
                };
                f(&mut counting)
            })
            .await
    }
}

impl<S: ObjectStore> ObjectStore for Counted<S> {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(bucket, prefix).await
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.inner.get(bucket, key).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) -> Result<()> {
        self.inner.put(bucket, key, body, content_type).await
    }
    async fn get_tagged(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        self.inner.get_tagged(bucket, key).await
    }
    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        self.inner.put_if(bucket, key, body, expected).await
    }
}

impl<S: BucketInspector> BucketInspector for Counted<S> {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>> {
        self.inner.head(bucket, key).await
    }
    async fn versioning(&self, bucket: &str) -> Result<Option<String>> {
        self.inner.versioning(bucket).await
    }
    async fn retention(&self, bucket: &str, key: &str) -> Result<Option<Retention>> {
        self.inner.retention(bucket, key).await
    }
    async fn default_encryption(&self, bucket: &str) -> Result<Option<String>> {
        self.inner.default_encryption(bucket).await
    }
    async fn stored_sha256(&self, bucket: &str, key: &str) -> Result<Option<String>> {
        self.inner.stored_sha256(bucket, key).await
    }
}
