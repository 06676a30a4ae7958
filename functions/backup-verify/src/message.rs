//! The messages an operator gets: one per failing set and fault (a check that found something,
//! or that could not be made for two scheduled runs in a row), repeated while it lasts, and one
//! when it ends. Each says what failed, since when, and what to do.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use vigil_shared::Notification;

use crate::report::{Check, CheckResult, Status};

/// Whether a fault is a finding about the backup or a check that could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The check found the backup at fault.
    Failing,
    /// The check could not be made, run after run: nothing is known of the backup.
    Unverified,
}

impl Standing {
    pub fn of(status: Status) -> Option<Standing> {
        match status {
            Status::Failed => Some(Standing::Failing),
            Status::Error => Some(Standing::Unverified),
            _ => None,
        }
    }
}

/// Which message of an episode this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    First,
    /// The n-th reminder (1 for the first) of a fault that lasts.
    Repeat(u32),
    Resolved,
}

/// The set a message is about.
pub struct About<'a> {
    pub set: &'a str,
    pub location: String,
    pub labels: &'a BTreeMap<String, String>,
    pub report: &'a str,
}

fn attributes(about: &About<'_>, check: Check, status: &str) -> Vec<(String, String)> {
    let mut attributes = vec![
        (
            "alertname".to_owned(),
            format!("BackupVerify:{}", about.set),
        ),
        ("status".to_owned(), status.to_owned()),
        ("check".to_owned(), check.name().to_owned()),
    ];
    for label in ["severity", "team", "service"] {
        if let Some(v) = about.labels.get(label) {
            attributes.push((label.to_owned(), v.clone()));
        }
    }
    attributes
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A fault: the first message of its episode, or a reminder.
pub fn fault(
    about: &About<'_>,
    result: &CheckResult,
    standing: Standing,
    since: DateTime<Utc>,
    kind: Kind,
) -> Notification {
    let (word, what) = match standing {
        Standing::Failing => ("FAILED", "FAILING"),
        Standing::Unverified => ("UNVERIFIED", "NOT VERIFIED"),
    };
    let reminder = match kind {
        Kind::Repeat(n) => format!(" (reminder {n}: still so since {})", at(since)),
        _ => String::new(),
    };
    let advice = match standing {
        Standing::Failing => {
            "Restore from another backup or copy if this one is needed now; fix the backup job or the bucket as the detail says."
        }
        Standing::Unverified => {
            "Nothing is known of this backup: the check failed to read it in two scheduled runs. Check the function's access to the bucket (and the KMS key), then the report."
        }
    };
    Notification {
        subject: format!("[BACKUP {word}] {}: {}", about.set, result.check),
        message: format!(
            "Backup set {} ({}) is {what}: {}{reminder}.\n\n{}\n\n{advice}\n\nFull report: {}",
            about.set, about.location, result.check, result.detail, about.report
        ),
        attributes: attributes(about, result.check, "firing"),
        details: Some(serde_json::json!({
            "version": 2,
            "set": about.set,
            "status": "firing",
            "standing": standing,
            "since": at(since),
            "check": result,
            "report": about.report,
        })),
    }
}

/// The end of an episode, with why it ended.
pub fn resolved(
    about: &About<'_>,
    check: Check,
    standing: Standing,
    since: DateTime<Utc>,
    why: &str,
) -> Notification {
    Notification {
        subject: format!("[BACKUP RESOLVED] {}: {check}", about.set),
        message: format!(
            "Backup set {} ({}): {check} is no longer {} ({why}); it was since {}.\n\nFull report: {}",
            about.set,
            about.location,
            match standing {
                Standing::Failing => "failing",
                Standing::Unverified => "unverified",
            },
            at(since),
            about.report
        ),
        attributes: attributes(about, check, "resolved"),
        details: Some(serde_json::json!({
            "version": 2,
            "set": about.set,
            "status": "resolved",
            "standing": standing,
            "since": at(since),
            "check": check,
            "why": why,
            "report": about.report,
        })),
    }
}
