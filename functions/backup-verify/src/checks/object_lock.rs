//! The newest backup is under object lock retention for long enough, in the required mode:
//! GOVERNANCE can be lifted by anyone allowed `s3:BypassGovernanceRetention`, COMPLIANCE by
//! nobody.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::json;
use vigil_shared::{BucketInspector, ObjectInfo, Retention};

use super::{Attempt, Outcome};
use crate::config::{BackupSet, LockMode};
use crate::report::{Check, CheckResult};

pub async fn run(
    inspector: &impl BucketInspector,
    set: &BackupSet,
    newest: &ObjectInfo,
    days: u64,
    now: DateTime<Utc>,
) -> Outcome {
    let retention = inspector
        .retention(&set.bucket, &newest.key)
        .await
        .or_error(Check::ObjectLock, || {
            format!("read the retention of {}", newest.key)
        })?;
    Ok(decide(
        newest,
        days,
        set.require.object_lock_mode,
        retention.as_ref(),
        now,
    ))
}

/// The newest backup is under object lock retention for at least `days` from its creation.
pub fn decide(
    newest: &ObjectInfo,
    days: u64,
    mode: Option<LockMode>,
    retention: Option<&Retention>,
    now: DateTime<Utc>,
) -> CheckResult {
    let needed = newest.last_modified + Duration::days(i64::try_from(days).unwrap_or(36_500));
    let evidence = json!({
        "key": newest.key,
        "required_days": days,
        "required_mode": mode.map(LockMode::as_s3),
        "mode": retention.map(|r| r.mode.clone()),
        "retain_until": retention.map(|r| r.retain_until.to_rfc3339_opts(SecondsFormat::Secs, true)),
    });
    match retention {
        None => CheckResult::judged(
            Check::ObjectLock,
            false,
            format!(
                "{} has no object lock retention: the credentials that wrote it can delete it; enable object lock with a default retention",
                newest.key
            ),
            evidence,
        ),
        Some(r) if r.retain_until < needed || r.retain_until <= now => CheckResult::judged(
            Check::ObjectLock,
            false,
            format!(
                "{} is retained until {} only, less than the required {days} days",
                newest.key,
                r.retain_until.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            evidence,
        ),
        Some(r) if mode.is_some_and(|m| !r.mode.eq_ignore_ascii_case(m.as_s3())) => {
            CheckResult::judged(
                Check::ObjectLock,
                false,
                format!(
                    "{} is locked in {} mode, not {}: {}",
                    newest.key,
                    r.mode,
                    mode.map_or("", LockMode::as_s3),
                    if r.mode.eq_ignore_ascii_case("GOVERNANCE") {
                        "anyone allowed s3:BypassGovernanceRetention can delete it; write backups with COMPLIANCE retention"
                    } else {
                        "set the bucket's default retention mode to the one required"
                    }
                ),
                evidence,
            )
        }
        Some(r) => CheckResult::judged(
            Check::ObjectLock,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{object, t};
    use crate::report::Status;

    #[test]
    fn retention_must_be_long_enough() {
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
            decide(&newest, 30, None, Some(&long), t(1)).status,
            Status::Ok
        );
        assert_eq!(
            decide(&newest, 30, None, Some(&short), t(1)).status,
            Status::Failed
        );
        assert_eq!(decide(&newest, 30, None, None, t(1)).status, Status::Failed);
    }

    /// GOVERNANCE retention can be lifted by a privileged user: a set that requires
    /// COMPLIANCE finds it, and the report names the mode either way.
    #[test]
    fn a_required_compliance_mode_finds_governance() {
        use LockMode::Compliance;
        let newest = object("db/3", 1050, 0);
        let governance = Retention {
            mode: "GOVERNANCE".into(),
            retain_until: t(24 * 40),
        };
        let compliance = Retention {
            mode: "COMPLIANCE".into(),
            ..governance.clone()
        };
        let found = decide(&newest, 30, Some(Compliance), Some(&governance), t(1));
        assert_eq!(found.status, Status::Failed);
        assert!(
            found.detail.contains("GOVERNANCE mode, not COMPLIANCE"),
            "{}",
            found.detail
        );
        assert!(found.detail.contains("BypassGovernanceRetention"));
        let ok = decide(&newest, 30, Some(Compliance), Some(&compliance), t(1));
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.detail.contains("COMPLIANCE"));
        let named = decide(&newest, 30, None, Some(&governance), t(1));
        assert_eq!(named.status, Status::Ok);
        assert!(named.detail.contains("GOVERNANCE"), "{}", named.detail);
    }
}
