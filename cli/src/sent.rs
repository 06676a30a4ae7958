//! The messages a replay sent, read as a subscriber reads them: each with its time, topic,
//! status, group and the alerts in it, from the JSON details every Vigil message carries. A
//! grouped message SNS received in parts (`group/<hash>/part-N`) is one message here.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_alert::state::Status;

use crate::sim::Sent;

/// One alert in a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentAlert {
    pub alertname: String,
    pub status: Status,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One message as its subscribers saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub at: DateTime<Utc>,
    pub topic: String,
    pub status: Status,
    /// The labels the group shares (a single alert's own labels).
    pub group: BTreeMap<String, String>,
    pub alerts: Vec<SentAlert>,
    /// How many SNS messages carried it (more than 1 for a large group).
    pub parts: usize,
}

impl Message {
    /// Whether it wakes someone: it says at least one alert is firing.
    pub fn pages(&self) -> bool {
        self.alerts.iter().any(|a| a.status == Status::Firing)
    }

    /// The firing alerts of rule `alert` in it (all of them with `None`).
    pub fn firing<'a>(&'a self, alert: Option<&'a str>) -> impl Iterator<Item = &'a SentAlert> {
        self.alerts.iter().filter(move |a| {
            a.status == Status::Firing && alert.is_none_or(|name| a.alertname == name)
        })
    }
}

#[derive(Deserialize)]
struct Details {
    status: Status,
    #[serde(default)]
    group: Option<BTreeMap<String, String>>,
    #[serde(default)]
    alerts: Option<Vec<Option<SentAlert>>>,
    #[serde(default)]
    alertname: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The key a message's parts share.
fn message_key(key: &str) -> &str {
    match key.rfind("/part-") {
        Some(i) if key.starts_with("group/") => &key[..i],
        _ => key,
    }
}

/// The messages of a replay, in the order sent; what cannot be read as Vigil's details is an
/// error naming the message, never skipped. A message published twice under one
/// `dedup_key` (a retry) is one message, as a subscriber that deduplicates sees it, and the
/// parts of a group (`group/<hash>/part-N`, same time and topic) are one message.
pub fn messages(sent: &[Sent]) -> Result<Vec<Message>, String> {
    let mut out: Vec<Message> = Vec::new();
    let mut seen_keys: HashSet<&str> = HashSet::new();
    let mut groups: HashMap<(&str, DateTime<Utc>, &str), usize> = HashMap::new();
    for s in sent {
        if !s.key.is_empty() && !seen_keys.insert(s.key.as_str()) {
            continue;
        }
        let value =
            s.notification.details.clone().ok_or_else(|| {
                format!("the message {:?} has no details", s.notification.subject)
            })?;
        let d: Details = serde_json::from_value(value)
            .map_err(|e| format!("the message {:?}: {e}", s.notification.subject))?;
        let alerts: Vec<SentAlert> = match (d.alerts, d.alertname) {
            (Some(alerts), _) => alerts.into_iter().flatten().collect(),
            (None, Some(alertname)) => vec![SentAlert {
                alertname,
                status: d.status,
                labels: d.labels.clone(),
            }],
            (None, None) => {
                return Err(format!(
                    "the message {:?} names no alert",
                    s.notification.subject
                ));
            }
        };
        let key = message_key(&s.key);
        let part_of = (key != s.key).then_some((key, s.at, s.topic_arn.as_str()));
        if let Some(&i) = part_of.and_then(|k| groups.get(&k)) {
            out[i].alerts.extend(alerts);
            out[i].parts += 1;
            continue;
        }
        if let Some(k) = part_of {
            groups.insert(k, out.len());
        }
        out.push(Message {
            at: s.at,
            topic: s.topic_arn.clone(),
            status: d.status,
            group: d.group.unwrap_or(d.labels),
            alerts,
            parts: 1,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_shared::Notification;

    fn sent(key: &str, details: serde_json::Value) -> Sent {
        Sent {
            at: "2026-11-02T03:10:00Z".parse().expect("time"),
            topic_arn: "arn:t".into(),
            key: key.into(),
            notification: Notification {
                subject: "s".into(),
                message: "m".into(),
                attributes: vec![],
                details: Some(details),
            },
        }
    }

    #[test]
    fn a_group_sent_in_parts_is_one_message() {
        let part = |n: u32, alert: &str| {
            sent(
                &format!("group/00ff/part-{n}"),
                serde_json::json!({
                    "status": "firing",
                    "group": {"service": "checkout"},
                    "alerts": [{"alertname": alert, "status": "firing", "labels": {"service": "checkout"}}],
                }),
            )
        };
        let single = sent(
            "HighLatency/ab/resolved",
            serde_json::json!({"status": "resolved", "alertname": "HighLatency", "labels": {"service": "api"}}),
        );
        let got = messages(&[part(1, "A"), single.clone(), part(2, "B"), part(2, "B")])
            .expect("messages");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].parts, 2);
        assert_eq!(
            got[0]
                .alerts
                .iter()
                .map(|a| a.alertname.as_str())
                .collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert!(got[0].pages());
        assert_eq!(got[1].group["service"], "api");
        assert_eq!(
            messages(&[single.clone(), single]).expect("messages").len(),
            1,
            "a retry under the same dedup_key is one message"
        );
        assert!(!got[1].pages(), "a resolved message wakes no one");
    }

    #[test]
    fn a_message_without_vigils_details_is_an_error() {
        let err =
            messages(&[sent("k", serde_json::json!({"status": "firing"}))]).expect_err("no alert");
        assert!(err.contains("names no alert"), "{err}");
        let err = messages(&[sent("k", serde_json::json!({"status": "open"}))])
            .expect_err("unknown status");
        assert!(err.contains("unknown variant"), "{err}");
    }
}
