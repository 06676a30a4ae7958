//! CloudWatch alarm state changes, as CloudWatch itself emits them, through the same
//! notification policy as Vigil's rules: routes, silences, inhibition, deduplication.
//!
//! Two shapes arrive: the Lambda alarm-action payload (`"source": "aws.cloudwatch"`,
//! `alarmData`) when the function is an alarm's action, and the EventBridge event
//! (`"detail-type": "CloudWatch Alarm State Change"`, `detail`) when a rule forwards every
//! alarm's changes.
//!
//! Only alarms that opt in page: a line of the description `vigil: severity=page team=checkout
//! service=api runbook_url=https://...` (which also gives the labels), or a name starting with
//! one of `policy.alarms.name_prefixes`. `alertname` is the alarm's name.
//!
//! An episode is the time an alarm spends in ALARM: entering ALARM fires once, and every way
//! out of it (to OK or to INSUFFICIENT_DATA) resolves once, when the firing was notified.
//! Changes are applied in the order of their state timestamps: a redelivered or late event
//! (EventBridge does not promise order) changes nothing.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_shared::{Error, Notification, Result};

use crate::history::{Episode, Source};
use crate::outbox::{Kind, Owed, StateFile};
use crate::policy::{AlarmOptIn, Muted, Policy, Silence};
use crate::state::{Phase, Status};

/// A CloudWatch alarm's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    fn parse(text: &str) -> Result<Self> {
        match text {
            "OK" => Ok(Self::Ok),
            "ALARM" => Ok(Self::Alarm),
            "INSUFFICIENT_DATA" => Ok(Self::InsufficientData),
            other => Err(Error::InvalidInput(format!(
                "alarm state {other:?} is not OK, ALARM or INSUFFICIENT_DATA"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// One alarm's change of state.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmChange {
    pub name: String,
    pub arn: String,
    pub state: AlarmState,
    pub previous: Option<AlarmState>,
    pub reason: String,
    pub description: String,
    pub timestamp: DateTime<Utc>,
}

/// What Vigil keeps of an alarm that opted in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NativeAlarm {
    pub state: AlarmState,
    /// The state timestamp of the last change applied.
    pub last_change: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    /// In ALARM: when the episode began (its identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// In ALARM: whether its firing was notified (a muted one resolves silently).
    #[serde(default)]
    pub notified: bool,
    /// In ALARM and muted: the firing message, sent by a scheduled run once the silence or
    /// the inhibiting alert has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Notification>,
    /// In ALARM: when its firing message went out (none: not yet, or muted throughout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged_at: Option<DateTime<Utc>>,
}

impl NativeAlarm {
    pub fn in_alarm(&self) -> bool {
        self.state == AlarmState::Alarm
    }

    /// When its firing message went out; for one notified before that was kept, its start.
    pub fn page_times(&self) -> Vec<DateTime<Utc>> {
        self.paged_at
            .or(if self.notified { self.since } else { None })
            .into_iter()
            .collect()
    }

    /// The episode of an alarm in ALARM, ending at `at`.
    fn episode(&self, name: &str, at: DateTime<Utc>) -> Episode {
        let since = self.since.unwrap_or(self.last_change);
        Episode {
            alert: name.to_owned(),
            key: name.to_owned(),
            source: Source::Alarm,
            severity: self.labels.get("severity").cloned().unwrap_or_default(),
            labels: self.labels.clone(),
            active_since: since,
            fired_at: since,
            resolved_at: at,
            pages: self.page_times(),
        }
    }

    /// An alarm an earlier version knew to be in ALARM (and notified).
    pub fn legacy(labels: BTreeMap<String, String>, now: DateTime<Utc>) -> Self {
        Self {
            state: AlarmState::Alarm,
            last_change: DateTime::UNIX_EPOCH,
            labels,
            since: Some(now),
            notified: true,
            held: None,
            paged_at: None,
        }
    }
}

/// One key per alarm, episode (its start) and status: a redelivered event is not sent twice,
/// and an episode resolves once whichever way it ends.
pub fn dedup_key(alarm: &str, since: DateTime<Utc>, status: Status) -> String {
    format!("{}/{}", episode(alarm, since), status.as_str())
}

/// The episode an alarm's notifications belong to: its name and when it entered ALARM. A
/// receiver that opens an incident (PagerDuty) resolves it by this.
pub fn episode(alarm: &str, since: DateTime<Utc>) -> String {
    format!("cloudwatch/{alarm}/{}", since.timestamp_millis())
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
    let previous = match text(data, "/previousState/value").as_str() {
        "" => None,
        p => Some(AlarmState::parse(p)?),
    };
    Ok(AlarmChange {
        name,
        arn,
        state: AlarmState::parse(&state)?,
        previous,
        reason: text(data, "/state/reason"),
        description: text(data, "/configuration/description"),
        timestamp,
    })
}

/// What applying one change did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Applied {
    /// The alarm did not opt in: not Vigil's to page.
    Ignored,
    /// This change, or a newer one, was applied before (a redelivery, a late event).
    AlreadyApplied,
    /// Applied; `status` is what it notifies (none: no notification is owed).
    Changed {
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<Status>,
        #[serde(skip_serializing_if = "Option::is_none")]
        muted: Option<Muted>,
    },
}

/// Applies `change` to the state: the episode it opens or ends, and the notification that
/// owes. Idempotent: the same change applied again is [`Applied::AlreadyApplied`].
pub fn apply(
    state: &mut StateFile,
    change: &AlarmChange,
    policy: &Policy,
    silences: &[Silence],
    default_topic: &str,
    now: DateTime<Utc>,
) -> Applied {
    let known = state.native.get(&change.name).cloned();
    if known
        .as_ref()
        .is_some_and(|k| change.timestamp <= k.last_change)
    {
        return Applied::AlreadyApplied;
    }
    // An alarm that does not (or no longer) opt in is forgotten, unless it has a notified
    // episode open: that one still resolves, once. (Earlier versions recorded every alarm of
    // the account in ALARM; this is how those leave the state.)
    let open_notified = known.as_ref().is_some_and(|k| k.in_alarm() && k.notified);
    if !change.opted_in(&policy.alarms) && !open_notified {
        if let Some(open) = known.as_ref().filter(|k| k.in_alarm()) {
            state
                .history
                .record(open.episode(&change.name, change.timestamp));
        }
        state.native.remove(&change.name);
        return Applied::Ignored;
    }
    let labels = change.labels();
    let episode = known.as_ref().filter(|k| k.in_alarm());
    let keys: HashSet<String> = state.known_keys();
    let mut next = NativeAlarm {
        state: change.state,
        last_change: change.timestamp,
        labels: labels.clone(),
        since: None,
        notified: false,
        held: None,
        paged_at: None,
    };
    let mut outcome = Applied::Changed {
        status: None,
        muted: None,
    };
    let mut owe = None;
    match (change.state, episode) {
        (AlarmState::Alarm, Some(open)) => {
            next.since = open.since;
            next.notified = open.notified;
            next.held = open.held.clone();
            next.paged_at = open.paged_at;
        }
        (AlarmState::Alarm, None) => {
            let firing: Vec<&BTreeMap<String, String>> = state
                .alerts
                .values()
                .filter(|s| s.phase == Phase::Firing)
                .map(|s| &s.labels)
                .chain(
                    state
                        .native
                        .iter()
                        .filter(|(n, a)| **n != change.name && a.in_alarm())
                        .map(|(_, a)| &a.labels),
                )
                .collect();
            let muted = policy.muted(&labels, silences, &firing, now);
            next.since = Some(change.timestamp);
            let key = change.dedup_key(change.timestamp, Status::Firing);
            if muted.is_none() && !keys.contains(&key) {
                next.notified = true;
                next.paged_at = Some(now);
                owe = Some((key, Status::Firing, change.timestamp));
            } else if muted.is_some() {
                next.held = Some(change.notification(Status::Firing, change.timestamp));
            }
            outcome = Applied::Changed {
                status: Some(Status::Firing),
                muted,
            };
        }
        (_, Some(open)) => {
            let since = open.since.unwrap_or(open.last_change);
            state
                .history
                .record(open.episode(&change.name, change.timestamp));
            let key = change.dedup_key(since, Status::Resolved);
            if open.notified && !keys.contains(&key) {
                owe = Some((key, Status::Resolved, since));
            }
            outcome = Applied::Changed {
                status: open.notified.then_some(Status::Resolved),
                muted: None,
            };
        }
        (_, None) => {}
    }
    if let Some((key, status, since)) = owe {
        let owed = Owed {
            key,
            topic_arn: policy.topic(&labels, default_topic).to_owned(),
            rule: change.name.clone(),
            severity: labels.get("severity").cloned().unwrap_or_default(),
            labels,
            status,
            kind: Kind::Alert,
            members: Vec::new(),
            notification: change.notification(status, since),
            attempts: 0,
            lease: None,
            last_error: None,
            channel: Default::default(),
            episode: self::episode(&change.name, since),
        };
        state.enqueue(policy, owed, now);
    }
    state.native.insert(change.name.clone(), next);
    outcome
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

    /// Whether the alarm asked to page through Vigil: a `vigil:` line in its description, or
    /// a name with one of the configured prefixes.
    pub fn opted_in(&self, opt_in: &AlarmOptIn) -> bool {
        self.description
            .lines()
            .any(|l| l.trim().starts_with("vigil:"))
            || opt_in
                .name_prefixes
                .iter()
                .any(|p| !p.is_empty() && self.name.starts_with(p.as_str()))
    }

    /// This alarm's [`dedup_key`] for the episode that began at `since`.
    pub fn dedup_key(&self, since: DateTime<Utc>, status: Status) -> String {
        dedup_key(&self.name, since, status)
    }

    /// The message for people and the attributes for filters, for the episode that began at
    /// `since`.
    pub fn notification(&self, status: Status, since: DateTime<Utc>) -> Notification {
        let labels = self.labels();
        let previous = self.previous.map_or("?", AlarmState::as_str);
        let mut message = format!(
            "CloudWatch alarm {} is {} ({previous} → {}) at {}.\n\nReason: {}\n",
            self.name,
            match status {
                Status::Firing => "FIRING",
                Status::Resolved => "RESOLVED",
            },
            self.state.as_str(),
            self.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.reason
        );
        if self.state == AlarmState::InsufficientData {
            message.push_str(
                "\nThe alarm left ALARM for INSUFFICIENT_DATA: its metric has too little data to \
                 evaluate. Vigil ends the episode here; check that the metric is still reported.\n",
            );
        }
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
            ("status".to_owned(), status.as_str().to_owned()),
        ];
        for label in crate::message::ATTRIBUTE_LABELS {
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
                "active_since": since,
            })),
            subject: format!(
                "[{}] {}: {reason}",
                status.as_str().to_uppercase(),
                self.name
            ),
            message,
            attributes,
        }
        .fitted(crate::message::MESSAGE_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The payload a Lambda alarm action receives ("Using Amazon CloudWatch alarms", CloudWatch
    /// User Guide, "Lambda alarm actions": `source`, `alarmArn`, `alarmData` with `state`,
    /// `previousState` and `configuration`).
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

    /// The same alarm's change to `state` at `stamp`, in the EventBridge shape ("CloudWatch
    /// events sent to EventBridge", CloudWatch User Guide: `detail-type` "CloudWatch Alarm
    /// State Change", `resources` holding the alarm's ARN, `detail` as `alarmData` above).
    fn eventbridge(state: &str, previous: &str, stamp: &str) -> Value {
        json!({
            "version": "0", "id": "x", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "account": "123456789012", "time": stamp, "region": "us-east-1",
            "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-5xx"],
            "detail": {
                "alarmName": "checkout-5xx",
                "state": {"value": state, "reason": "r", "timestamp": stamp},
                "previousState": {"value": previous, "reason": "x", "timestamp": "2026-11-25T07:00:00.000+0000"},
                "configuration": {"description": "vigil: severity=page team=checkout", "metrics": []}
            }
        })
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn reads_the_lambda_action_payload() {
        let change = parse(&lambda_action()).expect("parses");
        assert_eq!(change.name, "checkout-5xx");
        assert_eq!(change.state, AlarmState::Alarm);
        assert_eq!(change.previous, Some(AlarmState::Ok));
        assert_eq!(change.timestamp.to_rfc3339(), "2026-11-25T08:00:00+00:00");
        let labels = change.labels();
        assert_eq!(labels["severity"], "page");
        assert_eq!(labels["alertname"], "checkout-5xx");
        let n = change.notification(Status::Firing, change.timestamp);
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
        let ev = eventbridge("OK", "ALARM", "2026-11-25T08:05:00.000+0000");
        assert!(is_alarm_event(&ev));
        let change = parse(&ev).expect("parses");
        assert_eq!(change.state, AlarmState::Ok);
        assert_eq!(
            change.arn,
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-5xx"
        );
        assert_eq!(
            change.dedup_key(t("2026-11-25T08:00:00Z"), Status::Resolved),
            "cloudwatch/checkout-5xx/1795593600000/resolved"
        );
    }

    #[test]
    fn bad_events_are_refused() {
        let mut ev = lambda_action();
        ev["alarmData"]["state"]["value"] = json!("PANIC");
        assert!(parse(&ev).is_err());
        let mut ev = lambda_action();
        ev["alarmData"]["state"]["timestamp"] = json!("yesterday");
        assert!(parse(&ev).is_err());
        assert!(parse(&json!({"source": "aws.cloudwatch", "alarmData": {}})).is_err());
        assert!(!is_alarm_event(&json!({"source": "aws.events"})));
    }

    /// Applies events in order; returns the statuses owed, in order.
    fn run(events: &[Value], policy: &Policy) -> (Vec<Status>, StateFile) {
        let mut state = StateFile::default();
        for ev in events {
            let change = parse(ev).expect("parses");
            apply(
                &mut state,
                &change,
                policy,
                &[],
                "arn:default",
                t("2026-11-25T09:00:00Z"),
            );
        }
        (state.outbox.iter().map(|o| o.status).collect(), state)
    }

    #[test]
    fn every_way_out_of_alarm_resolves_once() {
        let p = Policy::default();
        let alarm = eventbridge("ALARM", "OK", "2026-11-25T08:00:00.000+0000");
        let insufficient =
            eventbridge("INSUFFICIENT_DATA", "ALARM", "2026-11-25T08:05:00.000+0000");
        let ok = eventbridge("OK", "INSUFFICIENT_DATA", "2026-11-25T08:10:00.000+0000");
        let (owed, state) = run(&[alarm.clone(), insufficient.clone(), ok.clone()], &p);
        assert_eq!(owed, [Status::Firing, Status::Resolved]);
        assert!(
            state.outbox[1]
                .notification
                .message
                .contains("INSUFFICIENT_DATA")
        );
        let (owed, _) = run(
            &[
                alarm.clone(),
                eventbridge("OK", "ALARM", "2026-11-25T08:05:00.000+0000"),
            ],
            &p,
        );
        assert_eq!(owed, [Status::Firing, Status::Resolved]);
        // Redelivered and late events change nothing.
        let (owed, _) = run(
            &[
                alarm.clone(),
                alarm.clone(),
                insufficient.clone(),
                alarm.clone(),
                insufficient,
                ok,
            ],
            &p,
        );
        assert_eq!(owed, [Status::Firing, Status::Resolved]);
        // A new episode after the first: firing again, with its own keys.
        let again = eventbridge("ALARM", "OK", "2026-11-25T08:20:00.000+0000");
        let (owed, state) = run(
            &[
                alarm,
                eventbridge("OK", "ALARM", "2026-11-25T08:05:00.000+0000"),
                again,
            ],
            &p,
        );
        assert_eq!(owed, [Status::Firing, Status::Resolved, Status::Firing]);
        let keys: HashSet<&str> = state.outbox.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn only_alarms_that_opt_in_page() {
        let mut autoscaling = eventbridge("ALARM", "OK", "2026-11-25T08:00:00.000+0000");
        autoscaling["detail"]["alarmName"] = json!("TargetTracking-table/orders-AlarmHigh-1f2e");
        autoscaling["detail"]["configuration"]["description"] = json!(
            "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy arn:aws:autoscaling:..."
        );
        let mut state = StateFile::default();
        let change = parse(&autoscaling).expect("parses");
        let p = Policy::default();
        assert_eq!(
            apply(
                &mut state,
                &change,
                &p,
                &[],
                "arn:default",
                t("2026-11-25T09:00:00Z")
            ),
            Applied::Ignored
        );
        assert!(state.outbox.is_empty() && state.native.is_empty());
        let by_prefix = Policy {
            alarms: AlarmOptIn {
                name_prefixes: vec!["TargetTracking-".into()],
            },
            ..Policy::default()
        };
        assert!(matches!(
            apply(
                &mut state,
                &change,
                &by_prefix,
                &[],
                "arn:default",
                t("2026-11-25T09:00:00Z")
            ),
            Applied::Changed {
                status: Some(Status::Firing),
                ..
            }
        ));
    }

    /// Earlier versions kept every alarm of the account that was in ALARM. Such an alarm that
    /// never opted in resolves its episode once and is then forgotten: it never pages.
    #[test]
    fn an_alarm_kept_by_an_earlier_version_resolves_once_then_is_ignored() {
        let mut state: StateFile = serde_json::from_value(json!({
            "alarms": {"TargetTracking-orders-AlarmLow": {"alertname": "TargetTracking-orders-AlarmLow"}}
        }))
        .expect("earlier state");
        state.migrate(t("2026-11-25T07:00:00Z"));
        let p = Policy::default();
        let mut seen = Vec::new();
        for (value, stamp) in [
            ("OK", "2026-11-25T08:00:00.000+0000"),
            ("ALARM", "2026-11-25T08:10:00.000+0000"),
            ("OK", "2026-11-25T08:20:00.000+0000"),
        ] {
            let mut ev = eventbridge(value, "ALARM", stamp);
            ev["detail"]["alarmName"] = json!("TargetTracking-orders-AlarmLow");
            ev["detail"]["configuration"]["description"] = json!("DO NOT EDIT OR DELETE.");
            let change = parse(&ev).expect("parses");
            seen.push(apply(
                &mut state,
                &change,
                &p,
                &[],
                "arn:default",
                t("2026-11-25T09:00:00Z"),
            ));
        }
        assert!(matches!(
            seen[0],
            Applied::Changed {
                status: Some(Status::Resolved),
                ..
            }
        ));
        assert_eq!(seen[1..], [Applied::Ignored, Applied::Ignored]);
        let statuses: Vec<Status> = state.outbox.iter().map(|o| o.status).collect();
        assert_eq!(statuses, [Status::Resolved]);
        assert!(state.native.is_empty());
    }

    #[test]
    fn a_muted_alarm_resolves_silently() {
        let p = Policy::default();
        let silence = Silence {
            id: String::new(),
            matchers: vec![crate::silence::Matcher::equal("alertname", "checkout-5xx")],
            starts_at: None,
            ends_at: t("2026-11-25T10:00:00Z"),
            created_by: "on-call".into(),
            comment: "deploy".into(),
            created_at: None,
        };
        let mut state = StateFile::default();
        for ev in [
            eventbridge("ALARM", "OK", "2026-11-25T08:00:00.000+0000"),
            eventbridge("OK", "ALARM", "2026-11-25T08:05:00.000+0000"),
        ] {
            let change = parse(&ev).expect("parses");
            apply(
                &mut state,
                &change,
                &p,
                std::slice::from_ref(&silence),
                "arn:default",
                t("2026-11-25T09:00:00Z"),
            );
        }
        assert!(state.outbox.is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(name in ".{0,20}", state in ".{0,12}", stamp in ".{0,30}", desc in ".{0,80}") {
            let ev = json!({"source": "aws.cloudwatch", "alarmData": {"alarmName": name,
                "state": {"value": state, "timestamp": stamp}, "configuration": {"description": desc}}});
            if let Ok(change) = parse(&ev) {
                let _ = change.labels();
                let _ = change.notification(Status::Firing, change.timestamp);
            }
        }

        /// Whatever order and repetition the changes of one alarm arrive in, each episode
        /// that is seen fires at most once and resolves at most once, resolving only what
        /// fired.
        #[test]
        fn episodes_fire_and_resolve_once(
            changes in proptest::collection::vec((0usize..3, 0i64..20), 0..30),
        ) {
            let states = ["OK", "ALARM", "INSUFFICIENT_DATA"];
            let mut state = StateFile::default();
            for (s, minute) in changes {
                let stamp = (t("2026-11-25T08:00:00Z") + chrono::Duration::minutes(minute))
                    .format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
                let change = parse(&eventbridge(states[s], "OK", &stamp)).expect("parses");
                apply(&mut state, &change, &Policy::default(), &[], "arn:default", t("2026-11-25T09:00:00Z"));
            }
            let keys: Vec<&str> = state.outbox.iter().map(|o| o.key.as_str()).collect();
            let unique: HashSet<&str> = keys.iter().copied().collect();
            prop_assert_eq!(unique.len(), keys.len());
            for o in state.outbox.iter().filter(|o| o.status == Status::Resolved) {
                let firing = o.key.replace("/resolved", "/firing");
                prop_assert!(unique.contains(firing.as_str()), "{} resolved without firing", o.key);
            }
        }
    }
}
