//! The newest backup is younger than the set's `max_age` (its recovery point objective), at
//! the moment of the check.

use chrono::{DateTime, SecondsFormat, Utc};
use vigil_shared::{ObjectInfo, Span};

use crate::config::BackupSet;
use crate::report::{Check, CheckResult};

pub fn check(set: &BackupSet, objects: &[ObjectInfo], now: DateTime<Utc>) -> CheckResult {
    let newest = objects.iter().max_by_key(|o| (o.last_modified, &o.key));
    let max_age = set.max_age.seconds();
    let Some(newest) = newest else {
        return CheckResult::judged(
            Check::Freshness,
            false,
            format!(
                "no backup under s3://{}/{}: check that the backup job runs and writes there",
                set.bucket, set.prefix
            ),
            serde_json::json!({ "objects": 0, "max_age_seconds": max_age }),
        );
    };
    let age = now
        .signed_duration_since(newest.last_modified)
        .num_seconds();
    let fresh = age <= i64::try_from(max_age).unwrap_or(i64::MAX);
    CheckResult::judged(
        Check::Freshness,
        fresh,
        if fresh {
            format!(
                "newest backup is {} old (limit {})",
                Span(age.max(0).unsigned_abs()),
                set.max_age
            )
        } else {
            format!(
                "newest backup is {} old, older than the limit of {}: the backup job has stopped or fails",
                Span(age.unsigned_abs()),
                set.max_age
            )
        },
        serde_json::json!({
            "objects": objects.len(),
            "newest_key": newest.key,
            "newest_size": newest.size,
            "newest_last_modified": newest.last_modified.to_rfc3339_opts(SecondsFormat::Secs, true),
            "age_seconds": age,
            "max_age_seconds": max_age,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{object, set, t};
    use crate::report::Status;

    #[test]
    fn fresh_stale_and_missing() {
        let now = t(100);
        let objects = vec![object("db/1.tar.gz", 10, 50), object("db/2.tar.gz", 10, 98)];
        let fresh = check(&set(""), &objects, now);
        assert_eq!(fresh.status, Status::Ok);
        assert_eq!(fresh.evidence["newest_key"], "db/2.tar.gz");
        assert_eq!(fresh.evidence["age_seconds"], 7200);

        let stale = check(&set(""), &objects[..1], now);
        assert_eq!(stale.status, Status::Failed);
        assert!(stale.detail.contains("2d2h old"), "{}", stale.detail);

        let none = check(&set(""), &[], now);
        assert_eq!(none.status, Status::Failed);
        assert_eq!(none.evidence["objects"], 0);
    }
}
