//! The checks beyond freshness: how many backups are kept, whether the newest is suspiciously
//! small, whether every replica holds the same newest backup, and whether the bucket protects
//! it (versioning, object lock retention, default encryption).
//!
//! Each check is a pure decision over what S3 answered, so that the rules are tested without a
//! network; [`crate::verify`] does the asking.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use vigil_shared::{ObjectHead, ObjectInfo, Retention};

use crate::{BackupSet, CheckResult, Status};

fn result(check: &'static str, ok: bool, detail: String, evidence: Value) -> CheckResult {
    CheckResult {
        check,
        status: if ok { Status::Ok } else { Status::Failed },
        detail,
        evidence,
    }
}

/// At least `min_count` backups are kept.
pub fn count(set: &BackupSet, objects: &[ObjectInfo]) -> CheckResult {
    let ok = objects.len() >= set.min_count;
    result(
        "count",
        ok,
        if ok {
            format!(
                "{} backups kept (at least {})",
                objects.len(),
                set.min_count
            )
        } else {
            format!(
                "{} backups kept, fewer than {}: check the retention or lifecycle rules, and that the job has not been failing",
                objects.len(),
                set.min_count
            )
        },
        json!({ "objects": objects.len(), "min_count": set.min_count }),
    )
}

/// The newest backup is at least `min_size_bytes`, and not smaller than `1 - max_size_drop` of
/// the median of the (up to five) backups before it: a sudden drop in size is how a truncated
/// or empty dump shows.
pub fn size(set: &BackupSet, objects: &[ObjectInfo]) -> Option<CheckResult> {
    let mut sorted: Vec<&ObjectInfo> = objects.iter().collect();
    sorted.sort_by_key(|o| (o.last_modified, o.key.as_str()));
    let (newest, before) = sorted.split_last()?;
    let mut previous: Vec<u64> = before.iter().rev().take(5).map(|o| o.size).collect();
    previous.sort_unstable();
    let median = previous.get(previous.len() / 2).copied();
    let floor = median.map(|m| (m as f64 * (1.0 - set.max_size_drop)).floor() as u64);
    let too_small = newest.size < set.min_size_bytes;
    let dropped = floor.is_some_and(|f| newest.size < f);
    let detail = if too_small {
        format!(
            "newest backup {} is {} bytes, under the minimum of {}: the dump is probably empty or truncated",
            newest.key, newest.size, set.min_size_bytes
        )
    } else if dropped {
        format!(
            "newest backup {} is {} bytes, {:.0} % less than the median of the backups before it ({} bytes): check that the dump is complete",
            newest.key,
            newest.size,
            100.0 * (1.0 - newest.size as f64 / median.unwrap_or(1).max(1) as f64),
            median.unwrap_or(0)
        )
    } else {
        format!("newest backup is {} bytes", newest.size)
    };
    Some(result(
        "size",
        !too_small && !dropped,
        detail,
        json!({
            "newest_key": newest.key,
            "newest_size": newest.size,
            "min_size_bytes": set.min_size_bytes,
            "median_previous_size": median,
            "max_size_drop": set.max_size_drop,
        }),
    ))
}

/// The newest backup exists in a replica with the same size and entity tag.
/// A replica of the newest backup: present, the same size, and the same bytes. The ETag
/// tells only when it is equal (a replication copy); otherwise `sha256` holds the streamed
/// SHA-256 of the primary and of the replica.
pub fn replica(
    newest: &ObjectInfo,
    replica_bucket: &str,
    replica_key: &str,
    head: Option<&ObjectHead>,
    sha256: Option<(&str, &str)>,
) -> CheckResult {
    let location = format!("s3://{replica_bucket}/{replica_key}");
    let evidence = json!({
        "key": newest.key,
        "size": newest.size,
        "etag": newest.etag,
        "replica": location,
        "replica_size": head.map(|h| h.size),
        "replica_etag": head.map(|h| h.etag.clone()),
        "sha256": sha256.map(|(p, _)| p),
        "replica_sha256": sha256.map(|(_, r)| r),
    });
    match head {
        None => result(
            "replica",
            false,
            format!(
                "{location} is missing: the backup exists in one copy only; check the replication rule or copy job"
            ),
            evidence,
        ),
        Some(h) if h.size != newest.size => result(
            "replica",
            false,
            format!(
                "{location} differs from the primary (size {} vs {}): the copies are not the same backup",
                h.size, newest.size
            ),
            evidence,
        ),
        Some(h) if h.etag == newest.etag => result(
            "replica",
            true,
            format!("{location} holds the same backup (same size and ETag)"),
            evidence,
        ),
        Some(_) => match sha256 {
            Some((primary, copy)) if primary == copy => result(
                "replica",
                true,
                format!(
                    "{location} holds the same bytes (SHA-256 {primary}), copied by another tool (another ETag)"
                ),
                evidence,
            ),
            Some((primary, copy)) => result(
                "replica",
                false,
                format!(
                    "{location} holds other bytes of the same size (SHA-256 {copy} vs {primary}): the copies are not the same backup"
                ),
                evidence,
            ),
            None => result(
                "replica",
                false,
                format!(
                    "{location} has another ETag ({} vs {}) and its bytes were not compared",
                    head.map(|h| h.etag.as_str()).unwrap_or_default(),
                    newest.etag
                ),
                evidence,
            ),
        },
    }
}

/// S3's stored SHA-256 of the newest backup matches its manifest (and each replica's stored
/// checksum), without downloading it. A multipart upload's composite checksum (`...-N`) is not
/// a whole-object hash: it is compared with the replicas only.
pub fn integrity(
    newest: &ObjectInfo,
    stored_b64: &str,
    manifest_hex: Option<&str>,
    replicas: &[(String, Option<String>)],
) -> CheckResult {
    use base64::Engine;
    let composite = stored_b64.contains('-');
    let stored_hex = if composite {
        None
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(stored_b64)
            .ok()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
    };
    let mut problems = Vec::new();
    let mut compared = 0;
    let mut not_comparable = Vec::new();
    if let (Some(stored), Some(expected)) = (&stored_hex, manifest_hex) {
        compared += 1;
        if !stored.eq_ignore_ascii_case(expected) {
            problems.push(format!(
                "S3 holds SHA-256 {stored} for {}, the manifest says {expected}",
                newest.key
            ));
        }
    }
    if stored_hex.is_none() && manifest_hex.is_some() {
        not_comparable.push(format!(
            "the manifest's whole-file SHA-256 cannot be compared with S3's composite checksum {stored_b64} (a multipart upload); the test restore compares it"
        ));
    }
    // Like with like: a composite checksum (checksum of the parts' checksums, `-N`) equals
    // another only for the same parts; a full-object one only a full-object one.
    let parts = |c: &str| c.rsplit_once('-').map(|(_, n)| n.to_owned());
    for (replica, checksum) in replicas {
        if let Some(other) = checksum {
            if parts(other) != parts(stored_b64) {
                not_comparable.push(format!(
                    "{replica} stores {other}, which is not comparable with the primary's {stored_b64} (another part layout); the replica check compares the bytes"
                ));
                continue;
            }
            compared += 1;
            if other != stored_b64 {
                problems.push(format!(
                    "{replica} has checksum {other}, the primary {stored_b64}"
                ));
            }
        }
    }
    let evidence = json!({
        "key": newest.key,
        "stored_sha256": stored_b64,
        "composite": composite,
        "manifest_sha256": manifest_hex,
        "replicas": replicas.iter().map(|(r, c)| json!({"replica": r, "stored_sha256": c})).collect::<Vec<_>>(),
        "not_comparable": not_comparable,
    });
    if problems.is_empty() && compared == 0 {
        return CheckResult {
            check: "integrity",
            status: Status::Skipped,
            detail: format!("{}: {}", newest.key, not_comparable.join("; ")),
            evidence,
        };
    }
    if problems.is_empty() {
        result(
            "integrity",
            true,
            format!("{}: stored checksums agree", newest.key),
            evidence,
        )
    } else {
        result(
            "integrity",
            false,
            format!(
                "{}; the stored bytes are not the backup that was written",
                problems.join("; ")
            ),
            evidence,
        )
    }
}

/// Bucket versioning is enabled.
pub fn versioning(bucket: &str, status: Option<&str>) -> CheckResult {
    let ok = status == Some("Enabled");
    result(
        "versioning",
        ok,
        if ok {
            format!("versioning is enabled on {bucket}")
        } else {
            format!(
                "versioning is {} on {bucket}: an overwrite or delete destroys the backup; enable versioning",
                status.unwrap_or("off")
            )
        },
        json!({ "bucket": bucket, "status": status }),
    )
}

/// The newest backup is under object lock retention for at least `days` from its creation.
pub fn object_lock(
    newest: &ObjectInfo,
    days: u64,
    mode: Option<crate::LockMode>,
    retention: Option<&Retention>,
    now: DateTime<Utc>,
) -> CheckResult {
    let needed = newest.last_modified + Duration::days(i64::try_from(days).unwrap_or(36_500));
    let evidence = json!({
        "key": newest.key,
        "required_days": days,
        "required_mode": mode.map(crate::LockMode::as_s3),
        "mode": retention.map(|r| r.mode.clone()),
        "retain_until": retention.map(|r| r.retain_until.to_rfc3339_opts(SecondsFormat::Secs, true)),
    });
    match retention {
        None => result(
            "object_lock",
            false,
            format!(
                "{} has no object lock retention: the credentials that wrote it can delete it; enable object lock with a default retention",
                newest.key
            ),
            evidence,
        ),
        Some(r) if r.retain_until < needed || r.retain_until <= now => result(
            "object_lock",
            false,
            format!(
                "{} is retained until {} only, less than the required {days} days",
                newest.key,
                r.retain_until.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            evidence,
        ),
        Some(r) if mode.is_some_and(|m| !r.mode.eq_ignore_ascii_case(m.as_s3())) => result(
            "object_lock",
            false,
            format!(
                "{} is locked in {} mode, not {}: {}",
                newest.key,
                r.mode,
                mode.map_or("", crate::LockMode::as_s3),
                if r.mode.eq_ignore_ascii_case("GOVERNANCE") {
                    "anyone allowed s3:BypassGovernanceRetention can delete it; write backups with COMPLIANCE retention"
                } else {
                    "set the bucket's default retention mode to the one required"
                }
            ),
            evidence,
        ),
        Some(r) => result(
            "object_lock",
            true,
            format!(
                "{} is locked ({}) until {}",
                newest.key,
                r.mode,
                r.retain_until.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            evidence,
        ),
    }
}

/// The bucket encrypts objects by default.
/// The newest backup is encrypted with a KMS key (the given one, when a key is required), as
/// `HeadObject` reports it: a backup under SSE-S3 can be read by anyone who can read the
/// bucket, one under SSE-KMS also needs a grant on the key.
pub fn kms_encryption(
    newest: &ObjectInfo,
    key: Option<&str>,
    head: Option<&ObjectHead>,
) -> CheckResult {
    let algorithm = head.and_then(|h| h.encryption.as_deref());
    let used = head.and_then(|h| h.kms_key_id.as_deref());
    let evidence = json!({
        "key": newest.key,
        "algorithm": algorithm,
        "kms_key_id": used,
        "required_kms_key_id": key,
    });
    let kms = algorithm.is_some_and(|a| a.starts_with("aws:kms"));
    // A key may be named by its ARN, its id or an alias: compare the ends.
    let same_key = |want: &str, got: &str| {
        got == want || got.ends_with(&format!("/{want}")) || want.ends_with(&format!("/{got}"))
    };
    match (head, key) {
        (None, _) => result(
            "encryption",
            false,
            format!(
                "{} vanished before its encryption could be read",
                newest.key
            ),
            evidence,
        ),
        _ if !kms => result(
            "encryption",
            false,
            format!(
                "{} is encrypted with {}, not SSE-KMS: whoever can read the bucket can read the backup; set the bucket's default encryption to aws:kms or have the backup job use SSE-KMS",
                newest.key,
                algorithm.unwrap_or("nothing")
            ),
            evidence,
        ),
        (_, Some(want)) if !used.is_some_and(|got| same_key(want, got)) => result(
            "encryption",
            false,
            format!(
                "{} is encrypted with the KMS key {}, not the required {want}",
                newest.key,
                used.unwrap_or("(none named)")
            ),
            evidence,
        ),
        _ => result(
            "encryption",
            true,
            format!(
                "{} is encrypted with SSE-KMS ({})",
                newest.key,
                used.unwrap_or("the bucket's key")
            ),
            evidence,
        ),
    }
}

pub fn encryption(bucket: &str, algorithm: Option<&str>) -> CheckResult {
    result(
        "encryption",
        algorithm.is_some(),
        match algorithm {
            Some(a) => format!("{bucket} encrypts by default ({a})"),
            None => format!("{bucket} has no default encryption: set SSE-S3 or SSE-KMS"),
        },
        json!({ "bucket": bucket, "algorithm": algorithm }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(yaml: &str) -> BackupSet {
        crate::load(
            "s.yaml",
            &format!(
                "backup_sets:\n  - {{name: db, bucket: backups, prefix: db/, max_age: 26h{yaml}}}\n"
            ),
        )
        .expect("valid")
        .remove(0)
    }

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_593_600 + h * 3600, 0).expect("time")
    }

    fn object(key: &str, size: u64, h: i64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            last_modified: t(h),
            etag: format!("\"{size}\""),
        }
    }

    #[test]
    fn count_and_size() {
        let s = set(", min_count: 3, min_size_bytes: 100");
        let kept = [
            object("db/1", 1000, 0),
            object("db/2", 1100, 24),
            object("db/3", 1050, 48),
        ];
        assert_eq!(count(&s, &kept).status, Status::Ok);
        assert_eq!(count(&s, &kept[..2]).status, Status::Failed);
        assert_eq!(size(&s, &kept).map(|c| c.status), Some(Status::Ok));
        let dropped = [kept[0].clone(), kept[1].clone(), object("db/3", 400, 48)];
        let c = size(&s, &dropped).expect("check");
        assert_eq!(c.status, Status::Failed);
        assert!(c.detail.contains("less than the median"), "{}", c.detail);
        let tiny = [object("db/1", 50, 0)];
        assert!(
            size(&s, &tiny)
                .expect("check")
                .detail
                .contains("under the minimum")
        );
        assert!(size(&s, &[]).is_none());
    }

    fn head(size: u64, etag: &str) -> ObjectHead {
        ObjectHead {
            size,
            etag: etag.into(),
            encryption: Some("AES256".into()),
            kms_key_id: None,
        }
    }

    #[test]
    fn replicas_must_match() {
        let newest = object("db/3", 1050, 48);
        let same = head(1050, "\"1050\"");
        let other = head(1050, "\"x\"");
        assert_eq!(
            replica(&newest, "dr", "db/3", Some(&same), None).status,
            Status::Ok
        );
        // Another ETag: the same bytes are the same backup (a copy by another tool), other
        // bytes are not.
        let copy = replica(&newest, "dr", "db/3", Some(&other), Some(("ab", "ab")));
        assert_eq!(copy.status, Status::Ok, "{}", copy.detail);
        assert!(copy.detail.contains("another tool"));
        let drifted = replica(&newest, "dr", "db/3", Some(&other), Some(("ab", "cd")));
        assert_eq!(drifted.status, Status::Failed);
        assert!(drifted.detail.contains("other bytes"));
        let shorter = head(1000, "\"1050\"");
        assert!(
            replica(&newest, "dr", "db/3", Some(&shorter), None)
                .detail
                .contains("differs")
        );
        let missing = replica(&newest, "dr", "db/3", None, None);
        assert_eq!(
            missing.status,
            Status::Failed,
            "a missing copy is a finding, never an error"
        );
        assert!(missing.detail.contains("missing"));
    }

    #[test]
    fn stored_checksums_are_compared_without_download() {
        let newest = object("db/3", 1050, 48);
        // base64 of 32 bytes of 0x11 and its hex.
        let b64 = "ERERERERERERERERERERERERERERERERERERERERERE=";
        let hex = "11".repeat(32);
        assert_eq!(integrity(&newest, b64, Some(&hex), &[]).status, Status::Ok);
        let other = "22".repeat(32);
        assert!(
            integrity(&newest, b64, Some(&other), &[])
                .detail
                .contains("the manifest says")
        );
        let replicas = [("s3://dr/db/3".to_owned(), Some("AAAA".to_owned()))];
        assert_eq!(
            integrity(&newest, b64, None, &replicas).status,
            Status::Failed
        );
        // A composite checksum is never compared with the manifest's whole-file SHA-256: the
        // check says it cannot be made, neither ok nor a finding.
        let composite = integrity(&newest, "abc=-3", Some(&other), &[]);
        assert_eq!(composite.status, Status::Skipped, "{}", composite.detail);
        assert!(composite.detail.contains("composite"));
        // Like with like: a multipart primary and a single-part copy are not comparable by
        // checksum (no false finding); two composites of the same parts are.
        let single_part_copy = [("s3://dr/db/3".to_owned(), Some(b64.to_owned()))];
        assert_eq!(
            integrity(&newest, "abc=-3", None, &single_part_copy).status,
            Status::Skipped
        );
        let same_parts = [("s3://dr/db/3".to_owned(), Some("xyz=-3".to_owned()))];
        assert_eq!(
            integrity(&newest, "abc=-3", None, &same_parts).status,
            Status::Failed
        );
        let identical = [("s3://dr/db/3".to_owned(), Some("abc=-3".to_owned()))];
        assert_eq!(
            integrity(&newest, "abc=-3", None, &identical).status,
            Status::Ok
        );
    }

    #[test]
    fn protections() {
        assert_eq!(versioning("b", Some("Enabled")).status, Status::Ok);
        assert_eq!(versioning("b", Some("Suspended")).status, Status::Failed);
        assert_eq!(versioning("b", None).status, Status::Failed);
        assert_eq!(encryption("b", Some("AES256")).status, Status::Ok);
        assert_eq!(encryption("b", None).status, Status::Failed);
        let newest = object("db/3", 1050, 0);
        let long = Retention {
            mode: "COMPLIANCE".into(),
            retain_until: t(24 * 31),
        };
        let short = Retention {
            mode: "GOVERNANCE".into(),
            retain_until: t(24 * 5),
        };
        assert_eq!(
            object_lock(&newest, 30, None, Some(&long), t(1)).status,
            Status::Ok
        );
        assert_eq!(
            object_lock(&newest, 30, None, Some(&short), t(1)).status,
            Status::Failed
        );
        assert_eq!(
            object_lock(&newest, 30, None, None, t(1)).status,
            Status::Failed
        );
    }

    /// GOVERNANCE retention can be lifted by a privileged user: a set that requires
    /// COMPLIANCE finds it, and the report names the mode either way.
    #[test]
    fn a_required_compliance_mode_finds_governance() {
        use crate::LockMode::Compliance;
        let newest = object("db/3", 1050, 0);
        let governance = Retention {
            mode: "GOVERNANCE".into(),
            retain_until: t(24 * 40),
        };
        let compliance = Retention {
            mode: "COMPLIANCE".into(),
            ..governance.clone()
        };
        let found = object_lock(&newest, 30, Some(Compliance), Some(&governance), t(1));
        assert_eq!(found.status, Status::Failed);
        assert!(
            found.detail.contains("GOVERNANCE mode, not COMPLIANCE"),
            "{}",
            found.detail
        );
        assert!(found.detail.contains("BypassGovernanceRetention"));
        let ok = object_lock(&newest, 30, Some(Compliance), Some(&compliance), t(1));
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.detail.contains("COMPLIANCE"));
        let named = object_lock(&newest, 30, None, Some(&governance), t(1));
        assert_eq!(named.status, Status::Ok);
        assert!(named.detail.contains("GOVERNANCE"), "{}", named.detail);
    }

    /// SSE-S3 is on every bucket: a set that requires SSE-KMS (or a given key) finds it.
    #[test]
    fn a_required_kms_encryption_finds_sse_s3_and_other_keys() {
        let newest = object("db/3", 1050, 0);
        let sse_s3 = head(1050, "\"e\"");
        let kms = ObjectHead {
            encryption: Some("aws:kms".into()),
            kms_key_id: Some(
                "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                    .into(),
            ),
            ..sse_s3.clone()
        };
        let c = kms_encryption(&newest, None, Some(&sse_s3));
        assert_eq!(c.status, Status::Failed);
        assert!(c.detail.contains("AES256, not SSE-KMS"), "{}", c.detail);
        assert_eq!(kms_encryption(&newest, None, Some(&kms)).status, Status::Ok);
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(
            kms_encryption(&newest, Some(arn), Some(&kms)).status,
            Status::Ok
        );
        assert_eq!(
            kms_encryption(
                &newest,
                Some("1234abcd-12ab-34cd-56ef-1234567890ab"),
                Some(&kms)
            )
            .status,
            Status::Ok,
            "a key id names the same key as its ARN"
        );
        let other = kms_encryption(
            &newest,
            Some("arn:aws:kms:us-east-1:123456789012:key/other"),
            Some(&kms),
        );
        assert_eq!(other.status, Status::Failed);
        assert!(other.detail.contains("not the required"));
    }

    proptest! {
        #[test]
        fn size_never_panics(sizes in proptest::collection::vec(0u64..u64::MAX / 4, 0..12), drop in 0.0f64..1.0) {
            let mut s = set("");
            s.max_size_drop = drop;
            let objects: Vec<ObjectInfo> = sizes.iter().enumerate().map(|(i, z)| object(&format!("db/{i}"), *z, i as i64)).collect();
            let c = size(&s, &objects);
            prop_assert_eq!(c.is_some(), !objects.is_empty());
        }
    }
}
