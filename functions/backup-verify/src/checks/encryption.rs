//! The newest backup is encrypted as the set requires: SSE-KMS (optionally with a given key)
//! on the object itself, or, with `encryption: true`, a default encryption on the bucket
//! (which every S3 bucket has had since January 2023, so that form cannot fail on AWS).

use serde_json::json;
use vigil_shared::{BucketInspector, ObjectHead, ObjectInfo};

use super::{Attempt, Outcome};
use crate::config::{BackupSet, EncryptionRequirement};
use crate::report::{Check, CheckResult};

/// `None` when the set requires nothing, or requires SSE-KMS and has no backup to look at.
pub async fn run(
    inspector: &impl BucketInspector,
    set: &BackupSet,
    newest: Option<&ObjectInfo>,
) -> Option<Outcome> {
    match (&set.require.encryption, newest) {
        (EncryptionRequirement::None, _) | (EncryptionRequirement::Kms { .. }, None) => None,
        (EncryptionRequirement::BucketDefault, _) => Some(
            inspector
                .default_encryption(&set.bucket)
                .await
                .or_error(Check::Encryption, || {
                    format!("read the encryption of {}", set.bucket)
                })
                .map(|algorithm| bucket_default(&set.bucket, algorithm.as_deref())),
        ),
        (EncryptionRequirement::Kms { key }, Some(newest)) => Some(
            inspector
                .head(&set.bucket, &newest.key)
                .await
                .or_error(Check::Encryption, || {
                    format!("read the encryption of {}", newest.key)
                })
                .map(|head| kms_encryption(newest, key.as_deref(), head.as_ref())),
        ),
    }
}

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
        (None, _) => CheckResult::judged(
            Check::Encryption,
            false,
            format!(
                "{} vanished before its encryption could be read",
                newest.key
            ),
            evidence,
        ),
        _ if !kms => CheckResult::judged(
            Check::Encryption,
            false,
            format!(
                "{} is encrypted with {}, not SSE-KMS: whoever can read the bucket can read the backup; set the bucket's default encryption to aws:kms or have the backup job use SSE-KMS",
                newest.key,
                algorithm.unwrap_or("nothing")
            ),
            evidence,
        ),
        (_, Some(want)) if !used.is_some_and(|got| same_key(want, got)) => CheckResult::judged(
            Check::Encryption,
            false,
            format!(
                "{} is encrypted with the KMS key {}, not the required {want}",
                newest.key,
                used.unwrap_or("(none named)")
            ),
            evidence,
        ),
        _ => CheckResult::judged(
            Check::Encryption,
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

/// The bucket encrypts objects by default.
pub fn bucket_default(bucket: &str, algorithm: Option<&str>) -> CheckResult {
    CheckResult::judged(
        Check::Encryption,
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
    use crate::checks::fixtures::{head, object};
    use crate::report::Status;

    #[test]
    fn a_bucket_default_is_found() {
        assert_eq!(bucket_default("b", Some("AES256")).status, Status::Ok);
        assert_eq!(bucket_default("b", None).status, Status::Failed);
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
}
