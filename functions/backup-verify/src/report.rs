//! What a run found: each check's verdict with its evidence, each set's status, the report
//! written to S3, and the metrics the run emits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_shared::{Error, Unit, emf};

/// A check's verdict. `Error` means the check could not be made because reading failed;
/// `Skipped` that it cannot be made on what S3 holds, or not in the time left (the detail says
/// why). Neither is `Ok`. A set's status is `Ok`, `Failed`, `Error` or `NotReached` (the run's
/// time ran out before it); a skipped check neither passes nor fails it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Error,
    Skipped,
    NotReached,
}

/// The checks a set can be given, each in its own file under `checks/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Freshness,
    Count,
    Size,
    Replica,
    Integrity,
    Restore,
    ObjectLock,
    Versioning,
    Encryption,
    VeleroArchives,
    VeleroVolumes,
}

impl Check {
    /// The check's name in reports, messages and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Check::Freshness => "freshness",
            Check::Count => "count",
            Check::Size => "size",
            Check::Replica => "replica",
            Check::Integrity => "integrity",
            Check::Restore => "restore",
            Check::ObjectLock => "object_lock",
            Check::Versioning => "versioning",
            Check::Encryption => "encryption",
            Check::VeleroArchives => "velero_archives",
            Check::VeleroVolumes => "velero_volumes",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One check of one set, with what it saw.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: Check,
    pub status: Status,
    pub detail: String,
    pub evidence: Value,
}

impl CheckResult {
    /// `Ok` when `ok`, else `Failed`.
    pub fn judged(check: Check, ok: bool, detail: String, evidence: Value) -> Self {
        Self {
            check,
            status: if ok { Status::Ok } else { Status::Failed },
            detail,
            evidence,
        }
    }

    /// The check could not be made because a call to storage failed: an error, never a finding.
    pub fn errored(check: Check, what: &str, e: &Error) -> Self {
        Self::unreadable(check, format!("could not {what}: {e}"), Value::Null)
    }

    /// The check could not be made because reading failed, for the reason in `detail`.
    pub fn unreadable(check: Check, detail: String, evidence: Value) -> Self {
        Self {
            check,
            status: Status::Error,
            detail,
            evidence,
        }
    }

    /// The check cannot be made on what there is (the detail says why).
    pub fn skipped(check: Check, detail: String, evidence: Value) -> Self {
        Self {
            check,
            status: Status::Skipped,
            detail,
            evidence,
        }
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

impl SetReport {
    /// The check's result, when the set was given it.
    pub fn check(&self, check: Check) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == check)
    }
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
    pub not_reached: usize,
}

impl Summary {
    /// Counts a set's status.
    pub fn add(&mut self, status: Status) {
        self.sets += 1;
        match status {
            Status::Ok | Status::Skipped => self.ok += 1,
            Status::Failed => self.failed += 1,
            Status::Error => self.error += 1,
            Status::NotReached => self.not_reached += 1,
        }
    }
}

/// A set's status: the worst of its checks (error over failed over ok).
pub fn worst(checks: &[CheckResult]) -> Status {
    if checks.iter().any(|c| c.status == Status::Error) {
        Status::Error
    } else if checks.iter().any(|c| c.status == Status::Failed) {
        Status::Failed
    } else {
        Status::Ok
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

/// One EMF line per set: the age of its newest backup, its checks failed and in error, and the
/// bytes its test restores verified.
pub fn emit_metrics(set: &SetReport, now: DateTime<Utc>) {
    let count = |status| set.checks.iter().filter(|c| c.status == status).count() as f64;
    let verified: f64 = set
        .checks
        .iter()
        .filter(|c| c.check == Check::Restore && c.status == Status::Ok)
        .filter_map(|c| c.evidence["bytes"].as_f64())
        .sum();
    let mut metrics = vec![
        ("ChecksFailed", count(Status::Failed), Unit::Count),
        ("ChecksError", count(Status::Error), Unit::Count),
        ("BytesVerified", verified, Unit::Bytes),
        (
            "SetNotReached",
            f64::from(u8::from(set.status == Status::NotReached)),
            Unit::Count,
        ),
    ];
    if let Some(age) = set
        .check(Check::Freshness)
        .and_then(|c| c.evidence["age_seconds"].as_f64())
    {
        metrics.push(("NewestBackupAge", age, Unit::Seconds));
    }
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), "backup set verified".into());
    fields.insert("status".into(), serde_json::json!(set.status));
    emf::emit(&emf::line(
        "Vigil",
        &[("Function", "backup-verify"), ("Set", &set.name)],
        &metrics,
        fields,
        now,
    ));
}

/// Test restores the run's time cut short or did not start (`skipped`, `out_of_time`).
pub fn restores_out_of_time(report: &Report) -> usize {
    report
        .sets
        .iter()
        .flat_map(|s| &s.checks)
        .filter(|c| c.check == Check::Restore && c.evidence["out_of_time"] == true)
        .count()
}

/// One EMF line per run: sets the run's time did not reach, test restores it cut short, and
/// announcements SNS refused for good (the stack alarms on each).
pub fn emit_run_metrics(
    not_reached: usize,
    out_of_time: usize,
    set_aside: usize,
    now: DateTime<Utc>,
) {
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), "backup-verify run".into());
    emf::emit(&emf::line(
        "Vigil",
        &[("Function", "backup-verify")],
        &[
            ("SetsNotReached", not_reached as f64, Unit::Count),
            ("RestoresOutOfTime", out_of_time as f64, Unit::Count),
            ("AnnouncementsSetAside", set_aside as f64, Unit::Count),
        ],
        fields,
        now,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: Status) -> CheckResult {
        CheckResult {
            check: Check::Count,
            status,
            detail: String::new(),
            evidence: Value::Null,
        }
    }

    #[test]
    fn worst_status_wins() {
        assert_eq!(worst(&[c(Status::Ok), c(Status::Failed)]), Status::Failed);
        assert_eq!(worst(&[c(Status::Error), c(Status::Failed)]), Status::Error);
        assert_eq!(worst(&[c(Status::Ok), c(Status::Skipped)]), Status::Ok);
    }

    #[test]
    fn report_keys_are_one_per_run() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            report_key("reports/", at),
            "reports/2026/11/25/2026-11-25T08-00-00Z.json"
        );
    }

    #[test]
    fn check_names_are_their_serialized_names() {
        for check in [
            Check::Freshness,
            Check::ObjectLock,
            Check::VeleroArchives,
            Check::VeleroVolumes,
        ] {
            assert_eq!(
                serde_json::to_value(check).expect("json"),
                Value::String(check.name().to_owned())
            );
        }
    }
}
