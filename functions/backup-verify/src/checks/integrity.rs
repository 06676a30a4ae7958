//! The checksum S3 stored for the newest backup agrees with its manifest and with the bytes
//! the test restore read, compared like with like: a composite checksum (a multipart upload's
//! checksum of its parts' checksums) is never compared with a whole-file value, and a
//! manifest's SHA-256 only with a whole-object SHA-256. What S3 stored in another algorithm is
//! recomputed by the restore in the same pass; when nothing is comparable the check is
//! `skipped` with the reason.

use serde_json::json;
use vigil_shared::{ChecksumAlgorithm, ChecksumType, ObjectInfo, StoredChecksum};

use crate::checksum::Comparison;
use crate::manifest::Manifest;
use crate::report::{Check, CheckResult};
use crate::restore::Restored;

/// SHA-256 in S3's base64 as lower-case hex.
fn hex_of(b64: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `restored`: the newest backup as this run's restore read it, if it did.
pub fn decide(
    newest: &ObjectInfo,
    stored: Option<&StoredChecksum>,
    manifest: Option<&Manifest>,
    restored: Option<&Restored>,
) -> CheckResult {
    let evidence = json!({
        "key": newest.key,
        "stored": stored,
        "manifest_sha256": manifest.map(|m| m.sha256.as_str()),
        "restored": restored.is_some(),
    });
    let Some(stored) = stored else {
        return CheckResult::skipped(
            Check::Integrity,
            format!(
                "S3 holds no checksum for {} (uploaded without one){}",
                newest.key,
                if restored.is_some() {
                    "; the test restore's SHA-256 is the record"
                } else {
                    ""
                }
            ),
            evidence,
        );
    };
    let name = format!(
        "{} {}",
        match stored.kind {
            ChecksumType::FullObject => "whole-object",
            ChecksumType::Composite => "composite",
        },
        stored.algorithm.as_s3()
    );
    let mut agreed = Vec::new();
    let mut problems = Vec::new();
    let mut not_comparable = Vec::new();
    match manifest {
        Some(m)
            if stored.algorithm == ChecksumAlgorithm::Sha256
                && stored.kind == ChecksumType::FullObject =>
        {
            let hex = hex_of(&stored.value).unwrap_or_default();
            if hex.eq_ignore_ascii_case(&m.sha256) {
                agreed.push("the manifest".to_owned());
            } else {
                problems.push(format!(
                    "S3 holds SHA-256 {hex} for {}, the manifest says {}",
                    newest.key, m.sha256
                ));
            }
        }
        Some(_) => not_comparable.push(format!(
            "the manifest's whole-file SHA-256 is not comparable with S3's {name}"
        )),
        None => {}
    }
    match restored.map(|r| r.digests.compare(stored)) {
        Some(Comparison::Same) => agreed.push("the bytes read".to_owned()),
        Some(Comparison::Differs { computed }) => problems.push(format!(
            "S3 holds {name} {} for {}, the bytes read give {computed}",
            stored.value, newest.key
        )),
        Some(Comparison::NotComparable(why)) => not_comparable.push(why),
        None => not_comparable.push(format!(
            "{} was not restored this run, so nothing recomputed S3's {name}",
            newest.key
        )),
    }
    let evidence =
        json!({ "not_comparable": not_comparable, "agreed_with": agreed, "details": evidence });
    if !problems.is_empty() {
        return CheckResult::judged(
            Check::Integrity,
            false,
            format!(
                "{}; the stored bytes are not the backup that was written",
                problems.join("; ")
            ),
            evidence,
        );
    }
    if agreed.is_empty() {
        return CheckResult::skipped(
            Check::Integrity,
            format!("{}: {}", newest.key, not_comparable.join("; ")),
            evidence,
        );
    }
    CheckResult::judged(
        Check::Integrity,
        true,
        format!(
            "{}: S3's {name} agrees with {}",
            newest.key,
            agreed.join(" and ")
        ),
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::object;
    use crate::checksum::{Hasher, Wanted};
    use crate::report::Status;
    use crate::restore::Format;
    use vigil_shared::PartChecksum;

    fn restored(data: &[u8], wanted: &Wanted) -> Restored {
        let mut h = Hasher::new(wanted);
        h.update(data);
        let digests = h.finish();
        Restored {
            format: Format::Raw,
            bytes: data.len() as u64,
            sha256: digests.sha256_hex(),
            digests,
            entries: None,
            names: Vec::new(),
        }
    }

    fn full(algorithm: ChecksumAlgorithm, value: &str) -> StoredChecksum {
        StoredChecksum {
            algorithm,
            value: value.to_owned(),
            kind: ChecksumType::FullObject,
            parts: Vec::new(),
            parts_count: None,
        }
    }

    fn manifest(sha256: &str) -> Manifest {
        Manifest {
            key: "db/3".into(),
            size: 9,
            sha256: sha256.into(),
        }
    }

    #[test]
    fn a_stored_sha256_is_compared_with_the_manifest_without_download() {
        let newest = object("db/3", 9, 48);
        // base64 of 32 bytes of 0x11 and its hex.
        let b64 = "ERERERERERERERERERERERERERERERERERERERERERE=";
        let stored = full(ChecksumAlgorithm::Sha256, b64);
        let ok = decide(
            &newest,
            Some(&stored),
            Some(&manifest(&"11".repeat(32))),
            None,
        );
        assert_eq!(ok.status, Status::Ok, "{}", ok.detail);
        let bad = decide(
            &newest,
            Some(&stored),
            Some(&manifest(&"22".repeat(32))),
            None,
        );
        assert_eq!(bad.status, Status::Failed);
        assert!(bad.detail.contains("the manifest says"));
    }

    /// S3's default since 2025: a CRC64NVME of the whole object. The manifest's SHA-256 is not
    /// comparable with it, so the restore recomputes the CRC64NVME in its pass.
    #[test]
    fn a_crc64nvme_is_recomputed_by_the_restore() {
        let newest = object("db/3", 9, 48);
        let stored = full(ChecksumAlgorithm::Crc64Nvme, "rsrzr5yYqFU=");
        let mut wanted = Wanted::default();
        wanted.add(&stored);
        let read = restored(b"test data", &wanted);
        let m = manifest(&read.sha256);
        let c = decide(&newest, Some(&stored), Some(&m), Some(&read));
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        assert!(
            c.detail.contains("CRC64NVME agrees with the bytes read"),
            "{}",
            c.detail
        );
        let other = restored(b"test datA", &wanted);
        assert_eq!(
            decide(&newest, Some(&stored), Some(&m), Some(&other)).status,
            Status::Failed
        );
        let unread = decide(&newest, Some(&stored), Some(&m), None);
        assert_eq!(unread.status, Status::Skipped, "{}", unread.detail);
        assert!(
            unread.detail.contains("not comparable"),
            "{}",
            unread.detail
        );
    }

    /// A composite SHA-256 (GetObjectAttributes gives it without `-N`) is never compared with
    /// the manifest: a healthy multipart backup is not a finding.
    #[test]
    fn a_composite_is_never_compared_with_a_whole_file_value() {
        let newest = object("db/3", 9, 48);
        let data = b"test data";
        let part = |d: &[u8]| {
            let mut h = Hasher::new(&Wanted::default());
            h.update(d);
            h.finish().full[&ChecksumAlgorithm::Sha256].clone()
        };
        let composite = StoredChecksum {
            algorithm: ChecksumAlgorithm::Sha256,
            value: {
                use base64::Engine;
                let raw: Vec<u8> = [&data[..5], &data[5..]]
                    .iter()
                    .flat_map(|p| {
                        base64::engine::general_purpose::STANDARD
                            .decode(part(p))
                            .expect("b64")
                    })
                    .collect();
                part(&raw)
            },
            kind: ChecksumType::Composite,
            parts: vec![
                PartChecksum {
                    size: 5,
                    checksum: None,
                },
                PartChecksum {
                    size: 4,
                    checksum: None,
                },
            ],
            parts_count: Some(2),
        };
        let whole = restored(data, &Wanted::default());
        let m = manifest(&whole.sha256);
        let unread = decide(&newest, Some(&composite), Some(&m), None);
        assert_eq!(unread.status, Status::Skipped, "{}", unread.detail);
        let mut wanted = Wanted::default();
        wanted.add(&composite);
        let read = restored(data, &wanted);
        let c = decide(&newest, Some(&composite), Some(&m), Some(&read));
        assert_eq!(c.status, Status::Ok, "{}", c.detail);
        assert!(c.detail.contains("composite SHA256"), "{}", c.detail);
        assert_eq!(
            decide(&newest, None, Some(&m), Some(&read)).status,
            Status::Skipped
        );
    }
}
