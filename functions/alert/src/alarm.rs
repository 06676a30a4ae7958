//! CloudWatch alarm state changes, as CloudWatch itself emits them, through the same
//! notification policy as Vigil's rules: routes, silences, inhibition, deduplication.
//!
//! Two shapes arrive: the Lambda alarm-action payload (`"source": "aws.cloudwatch"`,
//! `alarmData`) when the function is an alarm's action, and the EventBridge event
//! (`"detail-type": "CloudWatch Alarm State Change"`, `detail`) when a rule forwards every
//! alarm's changes.
//!
//! Alarms carry no labels; a line of the alarm's description may give them:
//! `vigil: severity=page team=checkout service=api runbook_url=https://...`.
//! `alertname` is the alarm's name.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use vigil_shared::{Error, Notification, Result};

/// One alarm's change of state.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmChange {
    pub name: String,
    pub arn: String,
    pub state: String,
    pub previous: String,
    pub reason: String,
    pub description: String,
    pub timestamp: DateTime<Utc>,
}

/// Whether an event is a CloudWatch alarm state change, in either shape.
pub fn is_alarm_event(event: &Value) -> bool {
    event.get("source").and_then(Value::as_str) == Some("aws.cloudwatch")
        && (event.get("alarmData").is_some()
            || event.get("detail-type").and_then(Value::as_str)
                == Some("CloudWatch Alarm State Change"))
}

fn text(v: &Value, path: &str) -> String {
    v.pointer(path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Reads either shape.
pub fn parse(event: &Value) -> Result<AlarmChange> {
    let (data, arn) = if let Some(data) = event.get("alarmData") {
        (data, text(event, "/alarmArn"))
    } else if let Some(detail) = event.get("detail") {
        (detail, text(event, "/resources/0"))
    } else {
        return Err(Error::InvalidInput(
            "alarm event without alarmData or detail".to_owned(),
        ));
    };
    let name = text(data, "/alarmName");
    let state = text(data, "/state/value");
    if name.is_empty() || state.is_empty() {
        return Err(Error::InvalidInput(
            "alarm event without alarmName or state.value".to_owned(),
        ));
    }
    let stamp = text(data, "/state/timestamp");
    let timestamp = DateTime::parse_from_rfc3339(&stamp)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            DateTime::parse_from_str(&stamp, "%Y-%m-%dT%H:%M:%S%.3f%z")
                .map(|t| t.with_timezone(&Utc))
        })
        .map_err(|_| {
            Error::InvalidInput(format!("alarm state timestamp {stamp:?} is unreadable"))
        })?;
    Ok(AlarmChange {
        name,
        arn,
        state,
        previous: text(data, "/previousState/value"),
        reason: text(data, "/state/reason"),
        description: text(data, "/configuration/description"),
        timestamp,
    })
}

impl AlarmChange {
    /// The labels policy matches on: `alertname`, `source`, and the description's `vigil:` line.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for line in self.description.lines() {
            if let Some(rest) = line.trim().strip_prefix("vigil:") {
                for pair in rest.split_whitespace() {
                    if let Some((k, v)) = pair.split_once('=') {
                        labels.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
        }
        labels.insert("alertname".to_owned(), self.name.clone());
        labels.insert("source".to_owned(), "cloudwatch".to_owned());
        labels
    }

    /// `firing` for ALARM, `resolved` for OK after ALARM; nothing else notifies.
    pub fn status(&self) -> Option<&'static str> {
        match (self.state.as_str(), self.previous.as_str()) {
            ("ALARM", _) => Some("firing"),
            ("OK", "ALARM") => Some("resolved"),
            _ => None,
        }
    }

    /// One key per alarm, change and status: a redelivered event is not sent twice.
    pub fn dedup_key(&self, status: &str) -> String {
        format!(
            "cloudwatch/{}/{}/{status}",
            self.name,
            self.timestamp.timestamp_millis()
        )
    }

    /// The message for people and the attributes for filters.
    pub fn notification(&self, status: &str) -> Notification {
        let labels = self.labels();
        let mut message = format!(
            "CloudWatch alarm {} is {} ({} → {}) at {}.\n\nReason: {}\n",
            self.name,
            if status == "firing" {
                "FIRING"
            } else {
                "RESOLVED"
            },
            self.previous,
            self.state,
            self.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.reason
        );
        let description: Vec<&str> = self
            .description
            .lines()
            .filter(|l| !l.trim().starts_with("vigil:"))
            .collect();
        if !description.join("").trim().is_empty() {
            message.push_str(&format!("\nDescription: {}", description.join("\n").trim()));
        }
        if let Some(url) = labels.get("runbook_url") {
            message.push_str(&format!("\nRunbook: {url}"));
        }
        if !self.arn.is_empty() {
            message.push_str(&format!("\nAlarm: {}", self.arn));
        }
        let mut attributes = vec![
            ("alertname".to_owned(), self.name.clone()),
            ("status".to_owned(), status.to_owned()),
        ];
        for label in crate::ATTRIBUTE_LABELS {
            if let Some(v) = labels.get(label).filter(|v| !v.is_empty()) {
                attributes.push((label.to_owned(), v.clone()));
            }
        }
        let reason: String = self.reason.chars().take(60).collect();
        Notification {
            details: Some(serde_json::json!({
                "version": 1,
                "status": status,
                "alertname": self.name,
                "labels": labels,
                "alarm_arn": self.arn,
                "state": self.state,
                "previous_state": self.previous,
                "reason": self.reason,
                "at": self.timestamp,
            })),
            subject: format!("[{}] {}: {reason}", status.to_uppercase(), self.name),
            message,
            attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn lambda_action() -> Value {
        json!({
            "source": "aws.cloudwatch",
            "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-5xx",
            "accountId": "123456789012",
            "time": "2026-11-25T08:00:00.000+0000",
            "region": "us-east-1",
            "alarmData": {
                "alarmName": "checkout-5xx",
                "state": {"value": "ALARM", "reason": "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).", "timestamp": "2026-11-25T08:00:00.000+0000"},
                "previousState": {"value": "OK", "reason": "ok", "timestamp": "2026-11-25T07:00:00.000+0000"},
                "configuration": {"description": "5xx on checkout.\nvigil: severity=page team=checkout service=checkout runbook_url=https://runbooks.example.com/5xx", "metrics": []}
            }
        })
    }

    #[test]
    fn reads_the_lambda_action_payload() {
        let change = parse(&lambda_action()).expect("parses");
        assert_eq!(change.name, "checkout-5xx");
        assert_eq!(change.status(), Some("firing"));
        assert_eq!(change.timestamp.to_rfc3339(), "2026-11-25T08:00:00+00:00");
        let labels = change.labels();
        assert_eq!(labels["severity"], "page");
        assert_eq!(labels["alertname"], "checkout-5xx");
        let n = change.notification("firing");
        assert!(
            n.subject
                .starts_with("[FIRING] checkout-5xx: Threshold Crossed"),
            "{}",
            n.subject
        );
        assert!(
            n.message
                .contains("Runbook: https://runbooks.example.com/5xx")
        );
        assert!(n.message.contains("Description: 5xx on checkout."));
        assert!(!n.message.contains("vigil:"));
        assert!(
            n.attributes
                .contains(&("team".to_owned(), "checkout".to_owned()))
        );
    }

    #[test]
    fn reads_the_eventbridge_event() {
        let ev = json!({
            "version": "0", "id": "x", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": "123456789012", "time": "2026-11-25T08:05:00Z", "region": "us-east-1",
            "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-5xx"],
            "detail": {
                "alarmName": "checkout-5xx",
                "state": {"value": "OK", "reason": "back to normal", "timestamp": "2026-11-25T08:05:00.000+0000"},
                "previousState": {"value": "ALARM", "reason": "x", "timestamp": "2026-11-25T08:00:00.000+0000"},
                "configuration": {"metrics": []}
            }
        });
        assert!(is_alarm_event(&ev));
        let change = parse(&ev).expect("parses");
        assert_eq!(change.status(), Some("resolved"));
        assert_eq!(
            change.arn,
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-5xx"
        );
        assert_eq!(
            change.dedup_key("resolved"),
            "cloudwatch/checkout-5xx/1795593900000/resolved"
        );
    }

    #[test]
    fn other_changes_do_not_notify_and_bad_events_are_refused() {
        let mut ev = lambda_action();
        ev["alarmData"]["state"]["value"] = json!("INSUFFICIENT_DATA");
        assert_eq!(parse(&ev).expect("parses").status(), None);
        ev["alarmData"]["state"]["timestamp"] = json!("yesterday");
        assert!(parse(&ev).is_err());
        assert!(parse(&json!({"source": "aws.cloudwatch", "alarmData": {}})).is_err());
        assert!(!is_alarm_event(&json!({"source": "aws.events"})));
    }

    proptest! {
        #[test]
        fn never_panics(name in ".{0,20}", state in ".{0,12}", stamp in ".{0,30}", desc in ".{0,80}") {
            let ev = json!({"source": "aws.cloudwatch", "alarmData": {"alarmName": name,
                "state": {"value": state, "timestamp": stamp}, "configuration": {"description": desc}}});
            if let Ok(change) = parse(&ev) {
                let _ = change.labels();
                let _ = change.notification("firing");
            }
        }
    }
}
