//! Byte counting for `vigil backup verify`: a streamer whose reads report the bytes they pass
//! to a callback (the command's progress bar).

use std::io::Read;
use std::sync::Arc;

use vigil_shared::Result;
use vigil_shared::inspect::ObjectStreamer;

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
