//! What every receiver format reads from an owed message: its status, name, labels,
//! annotations and times, taken from the message's details (rules, CloudWatch alarms, groups
//! and the Watchdog each write their own).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::outbox::Owed;
use crate::state::Status;

/// The facts of one owed message.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub status: Status,
    pub alertname: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the episode began (its condition first held, or the alarm entered ALARM).
    pub starts_at: Option<DateTime<Utc>>,
    /// When this message's transition happened.
    pub at: Option<DateTime<Utc>>,
}

fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl Facts {
    pub fn of(owed: &Owed) -> Self {
        let details = owed.notification.details.as_ref();
        let get = |k: &str| details.and_then(|d| d.get(k));
        let mut labels = owed.labels.clone();
        if labels.is_empty() {
            labels = strings(get("labels"));
        }
        let alertname = labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| owed.rule.clone());
        labels
            .entry("alertname".to_owned())
            .or_insert_with(|| alertname.clone());
        let mut annotations = strings(get("annotations"));
        // A CloudWatch alarm has no annotations: its description and a runbook label stand in.
        if annotations.is_empty() {
            if let Some(reason) = get("reason").and_then(Value::as_str) {
                annotations.insert("description".to_owned(), reason.to_owned());
            }
            if let Some(url) = labels.get("runbook_url") {
                annotations.insert("runbook_url".to_owned(), url.clone());
            }
        }
        Facts {
            status: owed.status,
            alertname,
            labels,
            annotations,
            starts_at: time(get("active_since")),
            at: time(get("at")),
        }
    }

    /// The summary annotation, else the subject without its `[STATUS]` prefix.
    pub fn summary(&self, subject: &str) -> String {
        match self
            .annotations
            .get("summary")
            .filter(|s| !s.trim().is_empty())
        {
            Some(s) => s.clone(),
            None => subject
                .split_once("] ")
                .map_or(subject, |(_, rest)| rest)
                .to_owned(),
        }
    }

    /// The runbook's URL, when it is one.
    pub fn runbook(&self) -> Option<&str> {
        self.annotations
            .get("runbook_url")
            .map(String::as_str)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
    }
}
