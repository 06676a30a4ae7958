//! The checks, one file each: a pure decision over what S3 answered (tested without a
//! network) and, where the check asks S3 something, the asking through the capability traits.
//! [`crate::verify`] runs them in order for each set.

pub mod count;
pub mod encryption;
pub mod freshness;
pub mod integrity;
pub mod object_lock;
pub mod replica;
pub mod restore;
pub mod size;
pub mod velero_archives;
pub mod velero_volumes;
pub mod versioning;

use crate::report::{Check, CheckResult};

/// A check's result, or the result that stopped it early (a call that failed is the check's
/// `error`): checks use `?` on [`Attempt::or_error`] and [`settle`] joins both sides.
pub type Outcome = std::result::Result<CheckResult, CheckResult>;

/// Either side of an [`Outcome`].
pub fn settle(outcome: Outcome) -> CheckResult {
    outcome.unwrap_or_else(|stopped| stopped)
}

/// Turns a failed call to storage into the check's `error` result.
pub trait Attempt<T> {
    /// `what` says what the check tried to do ("read the versioning of b").
    fn or_error(
        self,
        check: Check,
        what: impl FnOnce() -> String,
    ) -> std::result::Result<T, CheckResult>;
}

impl<T> Attempt<T> for vigil_shared::Result<T> {
    fn or_error(
        self,
        check: Check,
        what: impl FnOnce() -> String,
    ) -> std::result::Result<T, CheckResult> {
        self.map_err(|e| CheckResult::errored(check, &what(), &e))
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Sets, times and listings for the checks' tests.
    use chrono::{DateTime, Utc};
    use vigil_shared::{ObjectHead, ObjectInfo};

    use crate::config::BackupSet;

    /// A set `db` on `backups/db/` with `extra` YAML fields (", min_count: 3").
    pub fn set(extra: &str) -> BackupSet {
        crate::config::load(
            "s.yaml",
            &format!(
                "backup_sets:\n  - {{name: db, bucket: backups, prefix: db/, max_age: 26h{extra}}}\n"
            ),
        )
        .expect("valid")
        .remove(0)
    }

    /// `h` hours after a fixed instant.
    pub fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_593_600 + h * 3600, 0).expect("time")
    }

    /// An object listed at `t(h)` whose ETag is its size.
    pub fn object(key: &str, size: u64, h: i64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            last_modified: t(h),
            etag: format!("\"{size}\""),
        }
    }

    pub fn head(size: u64, etag: &str) -> ObjectHead {
        ObjectHead {
            size,
            etag: etag.into(),
            encryption: Some("AES256".into()),
            kms_key_id: None,
        }
    }
}
