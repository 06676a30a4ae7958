//! A JSON state object in S3, changed only by conditional writes: read it with its entity tag,
//! apply a change, write it back with `If-Match` (or `If-None-Match: *` for the first one).
//! A write that loses to another writer, or whose answer is lost, applies the change again to
//! a fresh read, so the change must be idempotent. Both functions that keep state (alert and
//! backup-verify) go through [`update`].

use std::time::Duration as StdDuration;

use serde::Serialize;

use crate::{Error, ObjectStore, Result};

/// Tries of one change before the run fails with [`Error::LostRace`].
pub const MAX_WRITE_ATTEMPTS: usize = 8;

/// Where a state object lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateLocation {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// A short pause before the next try of `attempt` (0-based): 50 ms doubling, with jitter from
/// `salt`, at most 2 s.
pub fn backoff(attempt: usize, salt: u64) -> StdDuration {
    let base = 50u64 << attempt.min(5);
    StdDuration::from_millis((base + salt % base.max(1)).min(2_000))
}

/// Reads the state object and its entity tag through `parse`; no object yet is the default
/// state and no tag.
pub async fn load<T: Default>(
    store: &impl ObjectStore,
    location: &StateLocation,
    parse: impl Fn(&[u8]) -> Result<T>,
) -> Result<(T, Option<String>)> {
    match store.get_tagged(&location.bucket, &location.key).await? {
        Some((bytes, tag)) => Ok((parse(&bytes)?, Some(tag))),
        None => Ok((T::default(), None)),
    }
}

/// Applies `change` to the state and writes it conditionally, starting from `first` when given
/// (a state just read), else from a fresh read through `parse`. When the write loses, or its
/// answer is lost, `change` is applied again to a fresh read, at most [`MAX_WRITE_ATTEMPTS`]
/// times; then [`Error::LostRace`]. `what` names the state in logs and errors.
pub async fn update<T, R>(
    store: &impl ObjectStore,
    location: &StateLocation,
    what: &str,
    first: Option<(T, Option<String>)>,
    parse: impl Fn(&[u8]) -> Result<T>,
    mut change: impl FnMut(&mut T) -> R,
) -> Result<(T, String, R)>
where
    T: Default + Serialize,
{
    let mut next = first;
    let mut last_error = None;
    for attempt in 0..MAX_WRITE_ATTEMPTS {
        let (mut state, tag) = match next.take() {
            Some(read) => read,
            None => match load(store, location, &parse).await {
                Ok(read) => read,
                Err(e) if e.is_retryable() => {
                    last_error = Some(e.to_string());
                    tokio::time::sleep(backoff(attempt, attempt as u64 * 7)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let out = change(&mut state);
        let body = serde_json::to_vec(&state)
            .map_err(|e| Error::Internal(format!("{what} not serializable: {e}")))?;
        match store
            .put_if(&location.bucket, &location.key, body, tag.as_deref())
            .await
        {
            Ok(Some(tag)) => return Ok((state, tag, out)),
            Ok(None) => {
                tracing::info!(
                    attempt,
                    state = what,
                    "the state changed under this run; applying the change to a fresh read"
                );
                last_error = Some("another writer changed the state first".to_owned());
                // Writers that collide back off by different amounts.
                let salt = u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .subsec_nanos(),
                );
                tokio::time::sleep(backoff(attempt, salt)).await;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(attempt, state = what, error = %e, "writing the state failed; reading it again");
                last_error = Some(e.to_string());
                tokio::time::sleep(backoff(attempt, attempt as u64 * 13)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::LostRace(format!(
        "{location}: the {what} could not be written in {MAX_WRITE_ATTEMPTS} attempts ({})",
        last_error.unwrap_or_default()
    )))
}
