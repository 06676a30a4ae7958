//! In-memory and fault-injecting implementations of the capability traits (feature `testing`):
//! one set of fakes for the functions' unit tests and the command line's replay.
//!
//! - [`MemoryStore`]: objects in a map with S3's conditional-write semantics (`If-Match`,
//!   `If-None-Match: *`, 404 for `If-Match` on a missing object).
//! - [`FaultyStore`]: a [`MemoryStore`] that throttles, times out, loses the answer of a
//!   conditional write that landed, and pauses after a write so that another run overlaps.
//! - [`RecordingNotifier`]: records what it publishes; with [`NotifierFaults`] it denies topics
//!   (AuthorizationError), refuses oversized messages (InvalidParameter), throttles, and times
//!   out before or after SNS accepted the message.
//! - [`SeriesReader`]: metric series served from memory, with CloudWatch's range rules.
//!
//! Randomness comes from [`Dice`], a seeded generator, so a failing interleaving can be
//! replayed from its seed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use crate::http::{HttpPost, Reply};
use crate::limits::SNS_MAX_MESSAGE_BYTES;
use crate::notify::{DEDUP_KEY_ATTRIBUTE, Envelope, Notification, Notifier, Refusal};
use crate::reader::{Fetched, Math, MetricReader, Series, StatQuery};
use crate::secret::{SecretRef, Secrets};
use crate::store::{ObjectInfo, ObjectStore};
use crate::{Dimension, Error, Result};

/// A small seeded random generator (SplitMix64): the same seed, the same choices.
#[derive(Clone, Debug)]
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A number in `0..n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// (bucket, key) → (body, version); the entity tag is the version, quoted.
type Objects = HashMap<(String, String), (Vec<u8>, u64)>;

/// Objects in a map, with S3's conditional-write semantics.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
    /// Versions ever written, so tags never repeat. S3's can (the same bytes written again
    /// have the same MD5), which only makes this store the stricter judge of a claim.
    version: Mutex<u64>,
    /// Checksums "S3 stored" for objects, as a test sets them.
    checksums: Mutex<HashMap<(String, String), crate::StoredChecksum>>,
}

fn tag(version: u64) -> String {
    format!("\"{version}\"")
}

impl MemoryStore {
    /// The object's body, if there is one.
    pub fn body(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        lock(&self.objects)
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|(b, _)| b.clone())
    }

    /// Records the checksum S3 would return for the object (`GetObjectAttributes`).
    pub fn set_checksum(&self, bucket: &str, key: &str, checksum: crate::StoredChecksum) {
        lock(&self.checksums).insert((bucket.to_owned(), key.to_owned()), checksum);
    }

    fn next_version(&self) -> u64 {
        let mut v = lock(&self.version);
        *v += 1;
        *v
    }
}

impl ObjectStore for MemoryStore {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out: Vec<ObjectInfo> = lock(&self.objects)
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), (body, v))| ObjectInfo {
                key: k.clone(),
                size: body.len() as u64,
                last_modified: DateTime::UNIX_EPOCH,
                etag: tag(*v),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.body(bucket, key)
            .ok_or_else(|| Error::Config(format!("s3://{bucket}/{key}: no such object")))
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, _: &str) -> Result<()> {
        let next = self.next_version();
        lock(&self.objects).insert((bucket.to_owned(), key.to_owned()), (body, next));
        Ok(())
    }

    async fn get_tagged(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        Ok(lock(&self.objects)
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|(body, v)| (body.clone(), tag(*v))))
    }

    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let next = self.next_version();
        let mut objects = lock(&self.objects);
        let id = (bucket.to_owned(), key.to_owned());
        let current = objects.get(&id).map(|(_, v)| tag(*v));
        if current.is_none() && expected.is_some() {
            // S3 answers If-Match on a missing object with 404, which S3Store reports as an
            // error, not as a lost race.
            return Err(Error::InvalidInput(format!(
                "s3://{bucket}/{key}: no such object to match"
            )));
        }
        if current.as_deref() != expected {
            return Ok(None);
        }
        objects.insert(id, (body, next));
        Ok(Some(tag(next)))
    }
}

/// A bucket in memory has no protections (no versioning, lock or default encryption), as S3
/// reports a bucket where none was set; stored checksums are those set with
/// [`MemoryStore::set_checksum`].
impl crate::BucketInspector for MemoryStore {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<crate::ObjectHead>> {
        Ok(lock(&self.objects)
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|(body, v)| crate::ObjectHead {
                size: body.len() as u64,
                etag: tag(*v),
                encryption: None,
                kms_key_id: None,
            }))
    }

    async fn versioning(&self, _: &str) -> Result<Option<String>> {
        Ok(None)
    }

    async fn retention(&self, _: &str, _: &str) -> Result<Option<crate::Retention>> {
        Ok(None)
    }

    async fn default_encryption(&self, _: &str) -> Result<Option<String>> {
        Ok(None)
    }

    async fn stored_checksum(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<crate::StoredChecksum>> {
        let id = (bucket.to_owned(), key.to_owned());
        if !lock(&self.objects).contains_key(&id) {
            return Ok(None);
        }
        Ok(lock(&self.checksums).get(&id).cloned())
    }
}

/// Streams an object of a [`MemoryStore`] through the reader, on a blocking thread as
/// [`crate::S3Store`] does; with `drop_after`, the connection drops after that many bytes.
impl MemoryStore {
    pub async fn read_dropping<T, F>(
        &self,
        bucket: &str,
        key: &str,
        drop_after: Option<usize>,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    {
        let body = self
            .body(bucket, key)
            .ok_or_else(|| Error::Config(format!("s3://{bucket}/{key}: no such object")))?;
        tokio::task::spawn_blocking(move || {
            let mut reader = DroppingReader::new(body, drop_after);
            f(&mut reader)
        })
        .await
        .map_err(|e| Error::Internal(format!("the reader failed: {e}")))
    }
}

impl crate::ObjectStreamer for MemoryStore {
    async fn read_with<T, F>(&self, bucket: &str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    {
        self.read_dropping(bucket, key, None, f).await
    }
}

/// A body read in uneven chunks, as a network delivers it, that with `drop_after` fails after
/// that many bytes like a reset connection.
#[derive(Debug)]
pub struct DroppingReader {
    data: Vec<u8>,
    pos: usize,
    drop_after: Option<usize>,
}

impl DroppingReader {
    pub fn new(data: Vec<u8>, drop_after: Option<usize>) -> Self {
        Self {
            data,
            pos: 0,
            drop_after,
        }
    }
}

impl std::io::Read for DroppingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.data.len() {
            return Ok(0);
        }
        let end = self.drop_after.unwrap_or(usize::MAX).min(self.data.len());
        if self.pos >= end {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ));
        }
        let n = buf.len().min(end - self.pos).min(1 + self.pos % 7919);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A [`MemoryStore`] whose streams drop at an offset drawn per read, as connections do.
#[derive(Debug)]
pub struct DroppingStreams<'a> {
    pub inner: &'a MemoryStore,
    pub dice: Mutex<Dice>,
    /// Probability that a stream drops before its end.
    pub drop: f64,
}

impl ObjectStore for DroppingStreams<'_> {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(bucket, prefix).await
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.inner.get(bucket, key).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, ct: &str) -> Result<()> {
        self.inner.put(bucket, key, body, ct).await
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

impl crate::BucketInspector for DroppingStreams<'_> {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<crate::ObjectHead>> {
        self.inner.head(bucket, key).await
    }
    async fn versioning(&self, bucket: &str) -> Result<Option<String>> {
        self.inner.versioning(bucket).await
    }
    async fn retention(&self, bucket: &str, key: &str) -> Result<Option<crate::Retention>> {
        self.inner.retention(bucket, key).await
    }
    async fn default_encryption(&self, bucket: &str) -> Result<Option<String>> {
        self.inner.default_encryption(bucket).await
    }
    async fn stored_checksum(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<crate::StoredChecksum>> {
        self.inner.stored_checksum(bucket, key).await
    }
}

impl crate::ObjectStreamer for DroppingStreams<'_> {
    async fn read_with<T, F>(&self, bucket: &str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    {
        let size = self.inner.body(bucket, key).map_or(0, |b| b.len());
        let at = {
            let mut dice = lock(&self.dice);
            dice.chance(self.drop)
                .then(|| dice.below(size as u64 + 1) as usize)
        };
        self.inner.read_dropping(bucket, key, at, f).await
    }
}

/// What a [`FaultyStore`] does wrong, each with its probability per call.
#[derive(Clone, Debug, Default)]
pub struct StoreFaults {
    /// A read or write answered `SlowDown` (HTTP 503) without effect.
    pub throttle: f64,
    /// A conditional write that landed, whose answer was lost: the caller sees a timeout.
    pub lost_answer: f64,
    /// After a successful write, the caller waits up to this long (real time), so that an
    /// overlapping run gets between its claim and its next step.
    pub pause_after_write: StdDuration,
}

/// A [`MemoryStore`] with faults; records every state it accepted.
#[derive(Debug)]
pub struct FaultyStore<'a> {
    pub inner: &'a MemoryStore,
    pub faults: StoreFaults,
    pub dice: Mutex<Dice>,
    /// Every body a conditional write stored, in order.
    pub written: Mutex<Vec<Vec<u8>>>,
    /// Faults injected so far, by kind.
    pub injected: Mutex<std::collections::BTreeMap<&'static str, usize>>,
    /// Only keys under this prefix see faults (all keys when empty).
    pub scope: String,
}

impl<'a> FaultyStore<'a> {
    pub fn new(inner: &'a MemoryStore, faults: StoreFaults, seed: u64) -> Self {
        Self {
            inner,
            faults,
            dice: Mutex::new(Dice::new(seed)),
            written: Mutex::new(Vec::new()),
            injected: Mutex::new(std::collections::BTreeMap::new()),
            scope: String::new(),
        }
    }

    /// Faults only on keys under `prefix` (a function's state), the rest served cleanly.
    pub fn scoped(mut self, prefix: &str) -> Self {
        self.scope = prefix.to_owned();
        self
    }

    fn roll(&self, p: f64) -> bool {
        lock(&self.dice).chance(p)
    }

    fn faulty(&self, key: &str) -> bool {
        key.starts_with(&self.scope)
    }

    fn count(&self, kind: &'static str) {
        *lock(&self.injected).entry(kind).or_default() += 1;
    }

    fn throttled(operation: &'static str) -> Error {
        Error::Aws {
            service: "S3",
            operation,
            message: "SlowDown (HTTP 503): Please reduce your request rate.".to_owned(),
            retryable: true,
        }
    }

    async fn pause(&self) {
        let max = self.faults.pause_after_write.as_millis() as u64;
        if max > 0 {
            let ms = lock(&self.dice).below(max + 1);
            tokio::time::sleep(StdDuration::from_millis(ms)).await;
        }
    }
}

impl ObjectStore for FaultyStore<'_> {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(bucket, prefix).await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.inner.get(bucket, key).await
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, ct: &str) -> Result<()> {
        self.inner.put(bucket, key, body, ct).await
    }

    async fn get_tagged(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        if self.faulty(key) && self.roll(self.faults.throttle) {
            self.count("S3 SlowDown");
            return Err(Self::throttled("GetObject"));
        }
        self.inner.get_tagged(bucket, key).await
    }

    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        if !self.faulty(key) {
            return self.inner.put_if(bucket, key, body, expected).await;
        }
        if self.roll(self.faults.throttle) {
            self.count("S3 SlowDown");
            return Err(Self::throttled("PutObject"));
        }
        let stored = self
            .inner
            .put_if(bucket, key, body.clone(), expected)
            .await?;
        if stored.is_none() {
            self.count("lost conditional write");
        }
        if stored.is_some() {
            lock(&self.written).push(body);
            if self.roll(self.faults.lost_answer) {
                self.count("S3 answer lost after the write");
                return Err(Error::Aws {
                    service: "S3",
                    operation: "PutObject",
                    message: "request timed out".to_owned(),
                    retryable: true,
                });
            }
            if !self.faults.pause_after_write.is_zero() {
                self.count("pause after a write");
            }
            self.pause().await;
        }
        Ok(stored)
    }
}

/// What a [`RecordingNotifier`] does wrong.
#[derive(Clone, Debug, Default)]
pub struct NotifierFaults {
    /// Topics the role may not publish to: AuthorizationError, every time.
    pub denied: BTreeSet<String>,
    /// Probability of `Throttled` per message (nothing published).
    pub throttle: f64,
    /// Probability of a timeout before SNS accepted the message (nothing published).
    pub timeout_before: f64,
    /// Probability of a timeout after SNS accepted the message: published, but the caller
    /// cannot know. Only a receiver that drops repeated `dedup_key`s avoids the copy a retry
    /// makes (or a FIFO topic's deduplication).
    pub timeout_after: f64,
    /// Most messages accepted per batch call before the rest are throttled (0: no limit).
    pub rate: usize,
}

/// One message a [`RecordingNotifier`] accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub at: DateTime<Utc>,
    pub topic_arn: String,
    /// The `dedup_key` attribute (empty when published outside a batch).
    pub key: String,
    pub notification: Notification,
}

impl Published {
    /// A message attribute (`alertname`, `status`, `severity`, ...).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.notification
            .attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A [`Notifier`] that records what it accepts, stamped with its clock (set by the caller),
/// and checks each message against SNS's size limit as SNS does.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    pub now: Mutex<DateTime<Utc>>,
    pub sent: Mutex<Vec<Published>>,
    pub faults: NotifierFaults,
    pub dice: Mutex<Option<Dice>>,
    /// Publish calls and batch calls made.
    pub calls: Mutex<usize>,
    /// Faults injected so far, by kind.
    pub injected: Mutex<std::collections::BTreeMap<&'static str, usize>>,
    /// What receivers outside SNS accepted ([`HttpPost`]), stamped with the clock.
    pub posts: Mutex<Vec<Posted>>,
    /// Faults of those receivers.
    pub http_faults: HttpFaults,
    /// The secrets it holds ([`Secrets`]), by parameter name; any other is ParameterNotFound.
    pub secrets: Mutex<std::collections::BTreeMap<String, String>>,
    /// Secrets a reader asked to forget, and the value each is read as afterwards (a rotation).
    pub rotated: Mutex<std::collections::BTreeMap<String, String>>,
    /// How often a secret was forgotten.
    pub forgotten: Mutex<usize>,
}

/// Faults of a receiver outside SNS (PagerDuty's Events API, a webhook).
#[derive(Clone, Debug, Default)]
pub struct HttpFaults {
    /// Probability of a 429 (nothing accepted).
    pub too_many: f64,
    /// Probability of a dropped connection before the endpoint took the post.
    pub drop_before: f64,
    /// Probability of a dropped connection after the endpoint took the post: accepted, and
    /// the sender cannot know.
    pub drop_after: f64,
    /// Every post is answered with this status (nothing accepted), e.g. 400.
    pub status: Option<u16>,
}

/// One post a [`RecordingNotifier`] accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Posted {
    pub at: DateTime<Utc>,
    pub url: String,
    pub body: serde_json::Value,
}

impl HttpPost for RecordingNotifier {
    async fn post_json(&self, url: &str, body: &[u8]) -> Result<Reply> {
        *lock(&self.calls) += 1;
        let dropped = |after: bool| Error::Http {
            endpoint: crate::http::host_of(url),
            message: format!(
                "connection reset{}",
                if after {
                    " (after the post was taken)"
                } else {
                    ""
                }
            ),
            retryable: true,
        };
        if let Some(status) = self.http_faults.status {
            self.count("HTTP refusal");
            return Ok(Reply {
                status,
                retry_after: None,
                body: r#"{"status":"invalid event","message":"Event object is invalid","errors":["injected"]}"#.to_owned(),
            });
        }
        if self.roll(self.http_faults.too_many) {
            self.count("HTTP 429");
            return Ok(Reply {
                status: 429,
                retry_after: Some(1),
                body: String::new(),
            });
        }
        if self.roll(self.http_faults.drop_before) {
            self.count("HTTP dropped before");
            return Err(dropped(false));
        }
        let parsed: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| Error::InvalidInput(format!("a post that is not JSON: {e}")))?;
        let dedup = parsed["dedup_key"].clone();
        lock(&self.posts).push(Posted {
            at: *lock(&self.now),
            url: url.to_owned(),
            body: parsed,
        });
        if self.roll(self.http_faults.drop_after) {
            self.count("HTTP dropped after");
            return Err(dropped(true));
        }
        Ok(Reply {
            status: 202,
            retry_after: None,
            body: serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": dedup})
                .to_string(),
        })
    }
}

impl Secrets for RecordingNotifier {
    async fn secret(&self, reference: &SecretRef) -> Result<String> {
        lock(&self.secrets)
            .get(&reference.parameter_name())
            .cloned()
            .ok_or_else(|| Error::Aws {
                service: "SSM",
                operation: "GetParameter",
                message: format!("{reference}: ParameterNotFound (HTTP 400)"),
                retryable: false,
            })
    }

    fn forget(&self, reference: &SecretRef) {
        *lock(&self.forgotten) += 1;
        let name = reference.parameter_name();
        if let Some(next) = lock(&self.rotated).remove(&name) {
            lock(&self.secrets).insert(name, next);
        }
    }
}

impl RecordingNotifier {
    /// Holds `value` as the secret `reference`.
    pub fn with_secret(self, reference: &SecretRef, value: &str) -> Self {
        lock(&self.secrets).insert(reference.parameter_name(), value.to_owned());
        self
    }

    /// What receivers outside SNS accepted so far.
    pub fn posted(&self) -> Vec<Posted> {
        lock(&self.posts).clone()
    }
}

impl RecordingNotifier {
    pub fn with_faults(faults: NotifierFaults, seed: u64) -> Self {
        Self {
            faults,
            dice: Mutex::new(Some(Dice::new(seed))),
            ..Self::default()
        }
    }

    pub fn set_now(&self, now: DateTime<Utc>) {
        *lock(&self.now) = now;
    }

    /// What was accepted so far.
    pub fn published(&self) -> Vec<Published> {
        lock(&self.sent).clone()
    }

    /// Removes and returns what was accepted so far.
    pub fn take(&self) -> Vec<Published> {
        std::mem::take(&mut *lock(&self.sent))
    }

    fn roll(&self, p: f64) -> bool {
        lock(&self.dice).as_mut().is_some_and(|d| d.chance(p))
    }

    fn count(&self, kind: &'static str) {
        *lock(&self.injected).entry(kind).or_default() += 1;
    }

    fn one(&self, topic_arn: &str, key: &str, n: &Notification) -> Result<String, Refusal> {
        if self.faults.denied.contains(topic_arn) {
            self.count("SNS AuthorizationError");
            return Err(Refusal::Permanent(format!(
                "AuthorizationError: not authorized to perform SNS:Publish on resource {topic_arn}"
            )));
        }
        let n = n.clone().sanitized().map_err(|e| {
            self.count("SNS InvalidParameter (oversized)");
            Refusal::Permanent(format!("InvalidParameter: {e}"))
        })?;
        if self.roll(self.faults.throttle) {
            self.count("SNS throttling");
            return Err(Refusal::Retryable("Throttled: Rate exceeded".to_owned()));
        }
        if self.roll(self.faults.timeout_before) {
            self.count("SNS timeout before acceptance");
            return Err(Refusal::Retryable("request timed out".to_owned()));
        }
        let mut sent = lock(&self.sent);
        sent.push(Published {
            at: *lock(&self.now),
            topic_arn: topic_arn.to_owned(),
            key: key.to_owned(),
            notification: n,
        });
        let id = format!("msg-{}", sent.len());
        drop(sent);
        if self.roll(self.faults.timeout_after) {
            self.count("SNS timeout after acceptance");
            return Err(Refusal::Retryable(
                "request timed out (after the message was accepted)".to_owned(),
            ));
        }
        Ok(id)
    }
}

impl Notifier for RecordingNotifier {
    async fn publish(&self, topic_arn: &str, notification: &Notification) -> Result<String> {
        *lock(&self.calls) += 1;
        let key = notification
            .attributes
            .iter()
            .find(|(k, _)| k == DEDUP_KEY_ATTRIBUTE)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.one(topic_arn, &key, notification)
            .map_err(|refusal| Error::Aws {
                service: "SNS",
                operation: "Publish",
                retryable: !refusal.is_permanent(),
                message: refusal.reason().to_owned(),
            })
    }

    async fn publish_batch(
        &self,
        topic_arn: &str,
        batch: &[Envelope<'_>],
    ) -> Vec<std::result::Result<String, Refusal>> {
        *lock(&self.calls) += 1;
        let total: usize = batch.iter().map(|e| e.notification.wire_size()).sum();
        if batch.len() > crate::limits::SNS_MAX_BATCH_ENTRIES
            || total > crate::limits::SNS_MAX_BATCH_BYTES
        {
            let why = Refusal::Permanent(format!(
                "InvalidParameter: batch of {} entries, {total} bytes",
                batch.len()
            ));
            return batch.iter().map(|_| Err(why.clone())).collect();
        }
        batch
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if self.faults.rate > 0 && i >= self.faults.rate {
                    return Err(Refusal::Retryable("Throttled: Rate exceeded".to_owned()));
                }
                self.one(topic_arn, e.key, e.notification)
            })
            .collect()
    }
}

/// Checks that a message fits SNS as the service would, for fakes that must refuse what SNS
/// refuses.
pub fn fits_sns(n: &Notification) -> bool {
    n.wire_size() <= SNS_MAX_MESSAGE_BYTES
}

/// Which recorded series answers a query: everything but the query's id. `stat` and `period`
/// of `None` match any (a test file may leave them out).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesKey {
    pub namespace: String,
    pub metric: String,
    /// Sorted.
    pub dimensions: Vec<Dimension>,
    pub stat: Option<String>,
    pub period: Option<u32>,
    /// The metric-math expression the series is the result of (recorded from CloudWatch);
    /// synthetic series have none, and no expression query matches them.
    pub math: Option<Math>,
}

impl SeriesKey {
    pub fn of(query: &StatQuery) -> Self {
        let mut dimensions = query.dimensions.clone();
        dimensions.sort();
        Self {
            namespace: query.namespace.clone(),
            metric: query.metric.clone(),
            dimensions,
            stat: Some(query.stat.clone()),
            period: Some(query.period),
            math: query.math.clone(),
        }
    }

    /// A plain statistic of any period: `namespace`, `metric`, dimensions as pairs.
    pub fn metric(namespace: &str, metric: &str, dimensions: &[(&str, &str)]) -> Self {
        let mut dimensions: Vec<Dimension> = dimensions
            .iter()
            .map(|(n, v)| Dimension {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect();
        dimensions.sort();
        Self {
            namespace: namespace.to_owned(),
            metric: metric.to_owned(),
            dimensions,
            stat: None,
            period: None,
            math: None,
        }
    }

    fn answers(&self, query: &StatQuery) -> bool {
        let mut dims = query.dimensions.clone();
        dims.sort();
        query.math == self.math
            && self.namespace == query.namespace
            && self.metric == query.metric
            && self.dimensions == dims
            && self.stat.as_ref().is_none_or(|s| *s == query.stat)
            && self.period.is_none_or(|p| p == query.period)
    }
}

/// A [`MetricReader`] over series held in memory, oldest point first in each.
#[derive(Clone, Debug, Default)]
pub struct SeriesReader {
    pub series: Vec<(SeriesKey, Series)>,
}

impl SeriesReader {
    /// The points of the series answering `query`, if one does.
    pub fn points(&self, query: &StatQuery) -> Option<&Series> {
        self.series
            .iter()
            .find(|(k, _)| k.answers(query))
            .map(|(_, s)| s)
    }

    /// Sets (or replaces) the points of the series `key`.
    pub fn set(&mut self, key: SeriesKey, points: Series) {
        match self.series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, s)) => *s = points,
            None => self.series.push((key, points)),
        }
    }

    /// Whether a series is held under `key`.
    pub fn has(&self, key: &SeriesKey) -> bool {
        self.series.iter().any(|(k, _)| k == key)
    }
}

impl MetricReader for SeriesReader {
    async fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Fetched> {
        let mut fetched = Fetched {
            calls: queries
                .len()
                .div_ceil(crate::limits::CW_MAX_QUERIES_PER_GET),
            metrics_requested: crate::reader::metrics_requested(queries),
            ..Fetched::default()
        };
        // The candidates of each metric, so that many queries cost one pass, not one each.
        let mut by_metric: HashMap<(&str, &str, &[Dimension]), Vec<usize>> = HashMap::new();
        for (i, (k, _)) in self.series.iter().enumerate() {
            by_metric
                .entry((&k.namespace, &k.metric, &k.dimensions))
                .or_default()
                .push(i);
        }
        for q in queries {
            let mut dims = q.dimensions.clone();
            dims.sort();
            let found = by_metric
                .get(&(q.namespace.as_str(), q.metric.as_str(), dims.as_slice()))
                .and_then(|c| c.iter().find(|&&i| self.series[i].0.answers(q)))
                .map(|&i| &self.series[i].1);
            if let Some(points) = found {
                // CloudWatch's range: start inclusive, end exclusive.
                let from = points.partition_point(|(t, _)| *t < start);
                let to = points.partition_point(|(t, _)| *t < end);
                fetched
                    .series
                    .insert(q.id.clone(), points[from..to.max(from)].to_vec());
            }
        }
        Ok(fetched)
    }

    async fn list_series(
        &self,
        namespace: &str,
        metric: &str,
        fixed: &[Dimension],
        any: &[String],
    ) -> Result<Vec<Vec<Dimension>>> {
        let mut found: Vec<Vec<Dimension>> = self
            .series
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.namespace == namespace && k.metric == metric)
            .filter(|k| k.dimensions.len() == fixed.len() + any.len())
            .filter(|k| fixed.iter().all(|f| k.dimensions.contains(f)))
            .filter(|k| {
                any.iter()
                    .all(|n| k.dimensions.iter().any(|d| d.name == *n))
            })
            .map(|k| k.dimensions.clone())
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_claims_like_s3() {
        let store = MemoryStore::default();
        let first = store
            .put_if("b", "k", b"1".to_vec(), None)
            .await
            .expect("put")
            .expect("created");
        assert_eq!(
            store
                .put_if("b", "k", b"2".to_vec(), None)
                .await
                .expect("put"),
            None,
            "If-None-Match fails once the object exists"
        );
        let second = store
            .put_if("b", "k", b"2".to_vec(), Some(&first))
            .await
            .expect("put")
            .expect("matched");
        assert_eq!(
            store
                .put_if("b", "k", b"3".to_vec(), Some(&first))
                .await
                .expect("put"),
            None,
            "a stale tag loses"
        );
        assert_eq!(
            store.get_tagged("b", "k").await.expect("get"),
            Some((b"2".to_vec(), second.clone()))
        );
        assert!(
            store
                .put_if("b", "other", b"1".to_vec(), Some(&second))
                .await
                .is_err(),
            "If-Match on a missing object is an error, as S3's 404"
        );
    }

    #[test]
    fn dice_replay_from_their_seed() {
        let roll = |seed| {
            let mut d = Dice::new(seed);
            (0..8).map(|_| d.below(100)).collect::<Vec<_>>()
        };
        assert_eq!(roll(7), roll(7));
        assert_ne!(roll(7), roll(8));
        let mut d = Dice::new(1);
        let hits = (0..10_000).filter(|_| d.chance(0.25)).count();
        assert!((2_300..2_700).contains(&hits), "{hits}");
    }

    #[tokio::test]
    async fn the_notifier_refuses_what_sns_refuses() {
        let faults = NotifierFaults {
            denied: ["arn:denied".to_owned()].into(),
            ..NotifierFaults::default()
        };
        let notifier = RecordingNotifier::with_faults(faults, 1);
        let small = Notification {
            subject: "s".into(),
            message: "m".into(),
            attributes: vec![],
            details: None,
        };
        let big = Notification {
            message: "x".repeat(SNS_MAX_MESSAGE_BYTES + 1),
            ..small.clone()
        };
        let out = notifier
            .publish_batch(
                "arn:ok",
                &[Envelope {
                    key: "a",
                    notification: &small,
                }],
            )
            .await;
        assert!(out[0].is_ok());
        let out = notifier
            .publish_batch(
                "arn:ok",
                &[Envelope {
                    key: "b",
                    notification: &big,
                }],
            )
            .await;
        assert!(matches!(&out[0], Err(Refusal::Permanent(_))), "{out:?}");
        let denied = notifier
            .publish_batch(
                "arn:denied",
                &[Envelope {
                    key: "c",
                    notification: &small,
                }],
            )
            .await;
        assert!(
            matches!(&denied[0], Err(Refusal::Permanent(r)) if r.starts_with("AuthorizationError"))
        );
        let sent = notifier.published();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].key, "a");
    }
}
