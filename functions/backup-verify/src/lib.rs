//! Vigil `backup-verify`: proves on a schedule that backups in S3 are fresh.
//!
//! The pure part (backup sets, checks, the report) plus [`verify`], generic over an
//! [`ObjectStore`]; `main.rs` only wires it to the Lambda runtime.
//!
//! Backup sets are a YAML file:
//!
//! ```yaml
//! backup_sets:
//!   - name: orders-db
//!     bucket: acme-backups
//!     prefix: orders/
//!     max_age: 26h
//! ```

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_shared::aws::required_env;
use vigil_shared::config::parse_yaml;
use vigil_shared::{ConfigSource, Error, ObjectInfo, ObjectStore, Result, Span};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupSetsFile {
    pub backup_sets: Vec<BackupSet>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupSet {
    pub name: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// The recovery point objective: the newest backup must be younger.
    pub max_age: Span,
}

/// Parses and validates a backup sets file.
pub fn load(origin: &str, text: &str) -> Result<Vec<BackupSet>> {
    let file: BackupSetsFile = parse_yaml(origin, text)?;
    let mut names = BTreeSet::new();
    for set in &file.backup_sets {
        let fail = |field: &str, why: &str| {
            Err(Error::Config(format!(
                "{origin}: backup set {:?}: {field}: {why}",
                set.name
            )))
        };
        if set.name.is_empty() {
            return fail("name", "must not be empty");
        }
        if !names.insert(set.name.as_str()) {
            return fail("name", "the name is used twice in the file");
        }
        if set.bucket.len() < 3 {
            return fail("bucket", "not a valid bucket name");
        }
        if set.max_age.seconds() == 0 {
            return fail("max_age", "must be more than zero");
        }
    }
    Ok(file.backup_sets)
}

/// A check's verdict. `Error` means the check could not be made; it is never an `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Error,
}

/// One check of one set, with what it saw.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    pub evidence: Value,
}

/// The freshness check on a listing made at `now`.
pub fn check_freshness(set: &BackupSet, objects: &[ObjectInfo], now: DateTime<Utc>) -> CheckResult {
    let newest = objects.iter().max_by_key(|o| (o.last_modified, &o.key));
    let max_age = set.max_age.seconds();
    let Some(newest) = newest else {
        return CheckResult {
            check: "freshness",
            status: Status::Failed,
            detail: format!(
                "no backup under s3://{}/{}: check that the backup job runs and writes there",
                set.bucket, set.prefix
            ),
            evidence: serde_json::json!({ "objects": 0, "max_age_seconds": max_age }),
        };
    };
    let age = now
        .signed_duration_since(newest.last_modified)
        .num_seconds();
    let fresh = age <= i64::try_from(max_age).unwrap_or(i64::MAX);
    CheckResult {
        check: "freshness",
        status: if fresh { Status::Ok } else { Status::Failed },
        detail: if fresh {
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
        evidence: serde_json::json!({
            "objects": objects.len(),
            "newest_key": newest.key,
            "newest_size": newest.size,
            "newest_last_modified": newest.last_modified.to_rfc3339_opts(SecondsFormat::Secs, true),
            "age_seconds": age,
            "max_age_seconds": max_age,
        }),
    }
}

/// One set's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SetReport {
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub status: Status,
    pub checks: Vec<CheckResult>,
}

/// The report of one run, written to S3 as JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub run_at: DateTime<Utc>,
    pub sets: Vec<SetReport>,
    pub summary: Summary,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub sets: usize,
    pub ok: usize,
    pub failed: usize,
    pub error: usize,
}

/// A set's status: the worst of its checks (error over failed over ok).
fn worst(checks: &[CheckResult]) -> Status {
    if checks.iter().any(|c| c.status == Status::Error) {
        Status::Error
    } else if checks.iter().any(|c| c.status == Status::Failed) {
        Status::Failed
    } else {
        Status::Ok
    }
}

/// Runs every check of every set. A storage error becomes that check's `error`; the other sets
/// are still checked.
pub async fn verify(store: &impl ObjectStore, sets: &[BackupSet], now: DateTime<Utc>) -> Report {
    let mut reports = Vec::with_capacity(sets.len());
    let mut summary = Summary::default();
    for set in sets {
        let checks = match store.list(&set.bucket, &set.prefix).await {
            Ok(objects) => vec![check_freshness(set, &objects, now)],
            Err(e) => vec![CheckResult {
                check: "freshness",
                status: Status::Error,
                detail: format!("could not list s3://{}/{}: {e}", set.bucket, set.prefix),
                evidence: Value::Null,
            }],
        };
        let status = worst(&checks);
        match status {
            Status::Ok => summary.ok += 1,
            Status::Failed => summary.failed += 1,
            Status::Error => summary.error += 1,
        }
        tracing::info!(set = %set.name, status = ?status, "backup set verified");
        reports.push(SetReport {
            name: set.name.clone(),
            bucket: set.bucket.clone(),
            prefix: set.prefix.clone(),
            status,
            checks,
        });
    }
    summary.sets = sets.len();
    Report {
        report_version: 1,
        run_at: now,
        sets: reports,
        summary,
    }
}

/// Where the report of the run at `run_at` goes: one key per scheduled run, so a retried
/// invocation overwrites its own report instead of adding a second one.
pub fn report_key(prefix: &str, run_at: DateTime<Utc>) -> String {
    format!(
        "{prefix}{}.json",
        run_at.format("%Y/%m/%d/%Y-%m-%dT%H-%M-%SZ")
    )
}

/// Where the function finds its backup sets and writes its reports.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// `VIGIL_BACKUP_SETS`: `s3://bucket/key` or a file path.
    pub backup_sets: ConfigSource,
    /// `VIGIL_REPORT_BUCKET`.
    pub report_bucket: String,
    /// `VIGIL_REPORT_PREFIX`, default `reports/backup-verify/`.
    pub report_prefix: String,
}

impl VerifyConfig {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            backup_sets: required_env("VIGIL_BACKUP_SETS")?.parse()?,
            report_bucket: required_env("VIGIL_REPORT_BUCKET")?,
            report_prefix: std::env::var("VIGIL_REPORT_PREFIX")
                .unwrap_or_else(|_| "reports/backup-verify/".to_owned()),
        })
    }
}

/// The Lambda handler for a scheduled event: verify every set at the scheduled time, write the
/// report, and return where it went with the summary. A run with a check in `error` fails
/// after writing its report, so Lambda retries it.
pub async fn handle_scheduled(
    store: &impl ObjectStore,
    config: &VerifyConfig,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Value> {
    let run_at = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    let text = config.backup_sets.read(store).await?;
    let sets = load(&config.backup_sets.to_string(), &text)?;
    // Ages are measured at the moment of the check, not at the scheduled time.
    let report = verify(store, &sets, now).await;
    let key = report_key(&config.report_prefix, run_at);
    let body = serde_json::to_vec_pretty(&report)
        .map_err(|e| Error::InvalidInput(format!("report not serializable: {e}")))?;
    store
        .put(&config.report_bucket, &key, body, "application/json")
        .await?;
    let location = format!("s3://{}/{key}", config.report_bucket);
    tracing::info!(report = %location, ok = report.summary.ok, failed = report.summary.failed,
        error = report.summary.error, "report written");
    if report.summary.error > 0 {
        return Err(Error::Aws {
            service: "S3",
            operation: "backup checks",
            message: format!(
                "{} backup set(s) could not be checked; report at {location}",
                report.summary.error
            ),
            retryable: true,
        });
    }
    Ok(serde_json::json!({ "report": location, "summary": report.summary }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn set() -> BackupSet {
        load(
            "sets.yaml",
            "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 26h}\n",
        )
        .expect("valid")
        .remove(0)
    }

    fn object(key: &str, at: DateTime<Utc>) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            last_modified: at,
        }
    }

    #[test]
    fn fresh_stale_and_missing() {
        let now = t("2026-11-25T08:00:00Z");
        let objects = vec![
            object("db/1.tar.gz", now - Duration::hours(50)),
            object("db/2.tar.gz", now - Duration::hours(2)),
        ];
        let fresh = check_freshness(&set(), &objects, now);
        assert_eq!(fresh.status, Status::Ok);
        assert_eq!(fresh.evidence["newest_key"], "db/2.tar.gz");
        assert_eq!(fresh.evidence["age_seconds"], 7200);

        let stale = check_freshness(&set(), &objects[..1], now);
        assert_eq!(stale.status, Status::Failed);
        assert!(stale.detail.contains("2d2h old"), "{}", stale.detail);

        let none = check_freshness(&set(), &[], now);
        assert_eq!(none.status, Status::Failed);
        assert_eq!(none.evidence["objects"], 0);
    }

    #[test]
    fn config_errors_are_named() {
        let err = load(
            "sets.yaml",
            "backup_sets:\n  - {name: db, bucket: backups, max_age: soon}\n",
        )
        .expect_err("bad duration")
        .to_string();
        assert!(err.contains("sets.yaml:2:"), "{err}");
        let err = load(
            "sets.yaml",
            "backup_sets:\n  - {name: db, bucket: b, max_age: 1h}\n",
        )
        .expect_err("bad bucket")
        .to_string();
        assert!(err.contains("\"db\": bucket"), "{err}");
    }

    #[test]
    fn report_keys_are_one_per_run() {
        assert_eq!(
            report_key("reports/", t("2026-11-25T08:00:00Z")),
            "reports/2026/11/25/2026-11-25T08-00-00Z.json"
        );
    }

    #[test]
    fn worst_status_wins() {
        let c = |status| CheckResult {
            check: "x",
            status,
            detail: String::new(),
            evidence: Value::Null,
        };
        assert_eq!(worst(&[c(Status::Ok), c(Status::Failed)]), Status::Failed);
        assert_eq!(worst(&[c(Status::Error), c(Status::Failed)]), Status::Error);
        assert_eq!(worst(&[c(Status::Ok)]), Status::Ok);
    }
}
