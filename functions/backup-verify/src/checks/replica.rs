//! A replica of the newest backup is the same backup when its bytes are. Replication keeps the
//! ETag; a copy made by another tool (another part size, `aws s3 cp`, rclone, AWS Backup) has
//! another ETag for the same bytes. Then the stored checksums are compared when they are
//! comparable (the same algorithm over the whole object, or over the same parts), else the
//! replica's stored whole-object checksum with the value the primary's restore computed, else
//! both copies are streamed and their SHA-256 compared.

use serde_json::json;
use vigil_shared::{
    BucketInspector, ChecksumType, ObjectHead, ObjectInfo, ObjectStreamer, StoredChecksum,
};

use super::{Attempt, Outcome};
use crate::budget::Budget;
use crate::checksum::{Comparison, same_stored};
use crate::config::{BackupSet, Replica};
use crate::report::{Check, CheckResult};
use crate::restore::{self, Pass, RestoreError, Restored};

/// The replica key of a backup.
pub fn key(set: &BackupSet, replica: &Replica, key: &str) -> String {
    let relative = key.strip_prefix(&set.prefix).unwrap_or(key);
    format!(
        "{}{relative}",
        replica.prefix.as_deref().unwrap_or(&set.prefix)
    )
}

/// How the bytes of the two copies were found to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// The same ETag: a replication copy.
    SameEtag,
    /// Both stored checksums, comparable: equal or not.
    Stored {
        algorithm: &'static str,
        equal: bool,
    },
    /// The replica's stored whole-object checksum against the primary's bytes as read.
    Computed {
        algorithm: &'static str,
        equal: bool,
    },
    /// Both copies streamed: their SHA-256 (hex).
    Streamed { primary: String, replica: String },
}

/// What is known of the primary before the replicas are looked at.
pub struct Primary<'a> {
    pub object: &'a ObjectInfo,
    pub stored: Option<&'a StoredChecksum>,
    pub restored: Option<&'a Restored>,
}

/// Checks one replica, with the checksum S3 stored for its copy of the newest backup (read
/// once by the run). `primary_sha` caches the primary's streamed SHA-256 across replicas.
pub async fn run(
    inspector: &impl BucketInspector,
    streamer: &impl ObjectStreamer,
    set: &BackupSet,
    primary: &Primary<'_>,
    (replica, stored): (&Replica, vigil_shared::Result<Option<StoredChecksum>>),
    primary_sha: &mut Option<String>,
    budget: &Budget,
) -> Outcome {
    let newest = primary.object;
    let key = key(set, replica, &newest.key);
    let location = format!("s3://{}/{key}", replica.bucket);
    let head = inspector
        .head(&replica.bucket, &key)
        .await
        .or_error(Check::Replica, || format!("read {location}"))?;
    let Some(head) = head else {
        return Ok(decide(newest, &location, None, None));
    };
    if head.size != newest.size {
        return Ok(decide(newest, &location, Some(&head), None));
    }
    if head.etag == newest.etag {
        return Ok(decide(
            newest,
            &location,
            Some(&head),
            Some(Bytes::SameEtag),
        ));
    }
    let stored = stored.or_error(Check::Replica, || {
        format!("read the checksum of {location}")
    })?;
    if let Some(stored) = &stored {
        if let Some(equal) = primary.stored.and_then(|p| same_stored(p, stored)) {
            let algorithm = stored.algorithm.as_s3();
            let bytes = Bytes::Stored { algorithm, equal };
            return Ok(decide(newest, &location, Some(&head), Some(bytes)));
        }
        if let (Some(read), ChecksumType::FullObject) = (primary.restored, stored.kind) {
            let equal = match read.digests.compare(stored) {
                Comparison::Same => Some(true),
                Comparison::Differs { .. } => Some(false),
                Comparison::NotComparable(_) => None,
            };
            if let Some(equal) = equal {
                let algorithm = stored.algorithm.as_s3();
                let bytes = Bytes::Computed { algorithm, equal };
                return Ok(decide(newest, &location, Some(&head), Some(bytes)));
            }
        }
    }
    if budget.exhausted() {
        return Err(out_of_time(&location, "before its bytes could be compared"));
    }
    if primary_sha.is_none() {
        *primary_sha = Some(match primary.restored {
            Some(r) => r.sha256.clone(),
            None => streamed_sha256(streamer, &set.bucket, &newest.key, budget).await?,
        });
    }
    let replica_sha = streamed_sha256(streamer, &replica.bucket, &key, budget).await?;
    let bytes = Bytes::Streamed {
        primary: primary_sha.clone().unwrap_or_default(),
        replica: replica_sha,
    };
    Ok(decide(newest, &location, Some(&head), Some(bytes)))
}

/// The run's time ran out before the copies were compared: nothing is known, no finding.
fn out_of_time(location: &str, when: &str) -> CheckResult {
    CheckResult::skipped(
        Check::Replica,
        format!("the run's time ran out {when}: {location} was not compared"),
        json!({ "replica": location, "out_of_time": true }),
    )
}

/// SHA-256 of a whole object, streamed (never whole in memory) until the run's deadline; the
/// `Err` is the check's `error` (a read that fails says nothing of the object) or `skipped`.
async fn streamed_sha256(
    streamer: &impl ObjectStreamer,
    bucket: &str,
    key: &str,
    budget: &Budget,
) -> std::result::Result<String, CheckResult> {
    let pass = Pass {
        deadline: budget.until,
        ..Pass::default()
    };
    let read = streamer
        .read_with(bucket, key, move |r| {
            restore::validate(r, restore::Format::Raw, &pass)
        })
        .await
        .or_error(Check::Replica, || format!("read s3://{bucket}/{key}"))?;
    read.map(|r| r.sha256).map_err(|e| match e {
        RestoreError::OutOfTime(why) => out_of_time(
            &format!("s3://{bucket}/{key}"),
            &format!("while reading ({why})"),
        ),
        e => CheckResult::unreadable(
            Check::Replica,
            format!("could not read s3://{bucket}/{key} to compare the copies: {e}"),
            json!({ "key": key }),
        ),
    })
}

/// The verdict: present, the same size, and the same bytes by the strongest evidence there
/// was.
pub fn decide(
    newest: &ObjectInfo,
    location: &str,
    head: Option<&ObjectHead>,
    bytes: Option<Bytes>,
) -> CheckResult {
    let mut evidence = json!({
        "key": newest.key,
        "size": newest.size,
        "etag": newest.etag,
        "replica": location,
        "replica_size": head.map(|h| h.size),
        "replica_etag": head.map(|h| h.etag.clone()),
    });
    let judged = |ok, detail| CheckResult::judged(Check::Replica, ok, detail, evidence.clone());
    let Some(h) = head else {
        return judged(
            false,
            format!(
                "{location} is missing: the backup exists in one copy only; check the replication rule or copy job"
            ),
        );
    };
    if h.size != newest.size {
        return judged(
            false,
            format!(
                "{location} differs from the primary (size {} vs {}): the copies are not the same backup",
                h.size, newest.size
            ),
        );
    }
    let (ok, detail) = match bytes {
        None => (
            false,
            format!(
                "{location} has another ETag ({} vs {}) and its bytes were not compared",
                h.etag, newest.etag
            ),
        ),
        Some(Bytes::SameEtag) => (
            true,
            format!("{location} holds the same backup (same size and ETag)"),
        ),
        Some(Bytes::Stored { algorithm, equal }) => (
            equal,
            if equal {
                format!(
                    "{location} holds the same bytes: S3 stored the same {algorithm} for both copies (another ETag: copied by another tool)"
                )
            } else {
                format!(
                    "{location} holds other bytes of the same size: S3 stored another {algorithm} for each copy"
                )
            },
        ),
        Some(Bytes::Computed { algorithm, equal }) => (
            equal,
            if equal {
                format!(
                    "{location} holds the same bytes: its stored {algorithm} is the primary's as read (another ETag: copied by another tool)"
                )
            } else {
                format!(
                    "{location} holds other bytes of the same size: its stored {algorithm} is not the primary's as read"
                )
            },
        ),
        Some(Bytes::Streamed { primary, replica }) => {
            evidence["sha256"] = json!(primary);
            evidence["replica_sha256"] = json!(replica);
            if primary == replica {
                (
                    true,
                    format!(
                        "{location} holds the same bytes (SHA-256 {primary}), copied by another tool (another ETag)"
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "{location} holds other bytes of the same size (SHA-256 {replica} vs {primary}): the copies are not the same backup"
                    ),
                )
            }
        }
    };
    CheckResult::judged(Check::Replica, ok, detail, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{head, object};
    use crate::report::Status;

    #[test]
    fn replicas_must_hold_the_same_bytes() {
        let newest = object("db/3", 1050, 48);
        let same = head(1050, "\"1050\"");
        let other = head(1050, "\"x\"");
        let at = "s3://dr/db/3";
        assert_eq!(
            decide(&newest, at, Some(&same), Some(Bytes::SameEtag)).status,
            Status::Ok
        );
        let streamed = |p: &str, r: &str| Bytes::Streamed {
            primary: p.into(),
            replica: r.into(),
        };
        let copy = decide(&newest, at, Some(&other), Some(streamed("ab", "ab")));
        assert_eq!(copy.status, Status::Ok, "{}", copy.detail);
        assert!(copy.detail.contains("another tool"));
        let drifted = decide(&newest, at, Some(&other), Some(streamed("ab", "cd")));
        assert_eq!(drifted.status, Status::Failed);
        assert!(drifted.detail.contains("other bytes"));
        let by_crc = Bytes::Stored {
            algorithm: "CRC64NVME",
            equal: true,
        };
        assert_eq!(
            decide(&newest, at, Some(&other), Some(by_crc)).status,
            Status::Ok
        );
        let shorter = head(1000, "\"1050\"");
        assert!(
            decide(&newest, at, Some(&shorter), None)
                .detail
                .contains("differs")
        );
        let missing = decide(&newest, at, None, None);
        assert_eq!(
            missing.status,
            Status::Failed,
            "a missing copy is a finding, never an error"
        );
        assert!(missing.detail.contains("missing"));
    }
}
