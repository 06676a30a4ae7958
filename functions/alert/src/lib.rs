//! Vigil `alert`: evaluates alert rules on CloudWatch metrics and notifies through SNS.
//!
//! The pure part (rules, evaluation, the state machine, message text) plus [`run`], generic
//! over a [`MetricReader`], a [`Notifier`] and an [`ObjectStore`]; `main.rs` only wires it to
//! the Lambda runtime.
//!
//! One run evaluates every rule at one timestamp, the scheduled time of the EventBridge event,
//! so that a retried invocation evaluates the same instant. The state of every rule lives in
//! one JSON object in S3, written with conditional requests: a run first claims its
//! transitions (the new state with the notifications it owes, in an outbox) with `If-Match`,
//! then publishes, then records each publish as sent. Two overlapping runs cannot both claim;
//! a retried run publishes what the failed one still owed and nothing it already sent.

pub mod alarm;
/// The environment variables alert reads (the template sets them; a test checks both agree).
pub mod env {
    /// `s3://bucket/key` or a path of the rules file (with its `policy`).
    pub const RULES: &str = "VIGIL_RULES";
    /// The default topic of notifications.
    pub const TOPIC_ARN: &str = "VIGIL_ALERT_TOPIC_ARN";
    /// The bucket of the alert state.
    pub const STATE_BUCKET: &str = "VIGIL_STATE_BUCKET";
    /// Optional: the state's key (default `state/alert.json`).
    pub const STATE_KEY: &str = "VIGIL_STATE_KEY";
    /// Optional: `s3://bucket/key` or a path of the silences (JSON).
    pub const SILENCES: &str = "VIGIL_SILENCES";
    pub const REQUIRED: &[&str] = &[RULES, TOPIC_ARN, STATE_BUCKET];
    pub const OPTIONAL: &[&str] = &[STATE_KEY, SILENCES];
}
pub mod policy;
pub mod rules;
pub mod state;

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_shared::aws::required_env;
use vigil_shared::reader::{Series, StatQuery};
use vigil_shared::{
    ConfigSource, Error, MetricReader, Notification, Notifier, ObjectStore, Result, Span,
};

use policy::{Muted, Policy, Silence};
pub use rules::{MissingData, Rule, lint, load, load_file};
use state::{AlertState, Observation, Phase, Transition};

/// What one rule's condition showed at an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "condition")]
pub enum Outcome {
    /// At least M of the newest N complete data points breach; `value` is the newest.
    Breaching { value: f64, at: DateTime<Utc> },
    /// Fewer than M breach.
    Ok { value: f64, at: DateTime<Utc> },
    /// No complete data point in the lookback window.
    NoData,
}

/// Evaluates one rule's condition over its series at `now`. A data point counts once its
/// period has ended (`timestamp + period <= now`): a period still filling up would compare a
/// partial value. The newest `evaluation_periods` complete points are compared, and the
/// condition holds when `datapoints_to_alarm` of them breach.
pub fn evaluate(rule: &Rule, series: &[(DateTime<Utc>, f64)], now: DateTime<Utc>) -> Outcome {
    let secs = |n: u64| Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000));
    let period = secs(rule.metric.period.seconds());
    let window_start = now - secs(rule.lookback().seconds());
    let mut points: Vec<(DateTime<Utc>, f64)> = series
        .iter()
        .filter(|(t, v)| *t >= window_start && *t + period <= now && v.is_finite())
        .copied()
        .collect();
    points.sort_by_key(|(t, _)| *t);
    let n = rule.evaluation_periods() as usize;
    let newest = &points[points.len().saturating_sub(n)..];
    let Some(&(at, value)) = newest.last() else {
        return Outcome::NoData;
    };
    let c = rule.condition;
    let breaching = newest
        .iter()
        .filter(|(_, v)| c.operator.holds(*v, c.threshold))
        .count();
    if breaching >= rule.datapoints_to_alarm() as usize {
        Outcome::Breaching { value, at }
    } else {
        Outcome::Ok { value, at }
    }
}

/// The state machine's input for an outcome, after the rule's missing-data policy.
pub fn observe(rule: &Rule, outcome: &Outcome) -> Observation {
    match (outcome, rule.missing_data) {
        (Outcome::Breaching { value, .. }, _) => Observation::Breaching(Some(*value)),
        (Outcome::Ok { value, .. }, _) => Observation::NotBreaching(Some(*value)),
        (Outcome::NoData, MissingData::Ignore) => Observation::Unknown,
        (Outcome::NoData, MissingData::Breaching) => Observation::Breaching(None),
        (Outcome::NoData, MissingData::NotBreaching) => Observation::NotBreaching(None),
    }
}

/// The CloudWatch query for rule number `index`, on the rule's own dimensions.
pub fn query_for(rule: &Rule, index: usize) -> StatQuery {
    query_for_series(rule, rule.metric.dimensions(), index)
}

/// The CloudWatch query for one series of a rule (its `*` dimensions resolved to `dimensions`).
pub fn query_for_series(
    rule: &Rule,
    dimensions: Vec<vigil_shared::Dimension>,
    index: usize,
) -> StatQuery {
    StatQuery {
        id: format!("r{index}"),
        namespace: rule.metric.namespace.clone(),
        metric: rule.metric.name.clone(),
        dimensions,
        stat: rule.metric.stat.clone(),
        period: u32::try_from(rule.metric.period.seconds()).unwrap_or(u32::MAX),
        math: rule
            .expression
            .as_ref()
            .map(|expression| vigil_shared::Math {
                expression: expression.clone(),
                inputs: rule
                    .inputs
                    .iter()
                    .map(|(name, input)| {
                        (
                            name.clone(),
                            vigil_shared::MathInput {
                                namespace: input.namespace.clone(),
                                metric: input.name.clone(),
                                dimensions: input
                                    .dimensions
                                    .iter()
                                    .map(|(k, v)| vigil_shared::Dimension {
                                        name: k.clone(),
                                        value: v.clone(),
                                    })
                                    .collect(),
                                stat: input.stat.clone(),
                            },
                        )
                    })
                    .collect(),
            }),
    }
}

/// Labels that become SNS message attributes, so subscriptions can filter on them.
pub const ATTRIBUTE_LABELS: [&str; 3] = ["severity", "team", "service"];

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "no data".to_owned(), |v| v.to_string())
}

/// Fills `{{ $value }}` and `{{ $labels.NAME }}` in an annotation.
pub fn render(template: &str, value: Option<f64>, labels: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = rest[open + 2..open + close].trim();
        match inner {
            "$value" => out.push_str(&show(value)),
            _ => match inner.strip_prefix("$labels.") {
                Some(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
                None => out.push_str(&rest[open..open + close + 2]),
            },
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// The notification for a transition: a subject and text for people, attributes for filters.
pub fn notification(rule: &Rule, transition: &Transition, at: DateTime<Utc>) -> Notification {
    let target = Target::whole(rule);
    notification_for(&target, transition, at)
}

/// [`notification`] for one series of a rule.
pub fn notification_for(
    target: &Target<'_>,
    transition: &Transition,
    at: DateTime<Utc>,
) -> Notification {
    let rule = target.rule;
    let c = rule.condition;
    let (status, value) = match transition {
        Transition::Firing { value, .. } => ("firing", *value),
        Transition::Resolved { value, .. } => ("resolved", *value),
    };
    let dims = target
        .dimensions
        .iter()
        .map(|d| format!("{}={}", d.name, d.value))
        .collect::<Vec<_>>()
        .join(", ");
    let headline = match transition {
        Transition::Firing { active_since, .. } => format!(
            "{} is FIRING (condition first seen holding at {}).",
            rule.alert,
            active_since.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        Transition::Resolved { fired_at, .. } => format!(
            "{} is RESOLVED (fired at {}).",
            rule.alert,
            fired_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    };
    let measured = format!(
        "{metric} ({stat} per {period}) in {ns} {{{dims}}}",
        metric = rule.metric.name,
        stat = rule.metric.stat,
        period = rule.metric.period,
        ns = rule.metric.namespace,
    );
    let compared = match &rule.expression {
        None => measured,
        Some(e) => format!("{e} (m = {measured})"),
    };
    let mut text = format!(
        "{headline}\n\n{compared} was {value} at {at}; \
         the rule fires when {m} of {n} data points are {op} {threshold}.\n",
        value = show(value),
        at = at.to_rfc3339_opts(SecondsFormat::Secs, true),
        m = rule.datapoints_to_alarm(),
        n = rule.evaluation_periods(),
        op = c.operator.symbol(),
        threshold = c.threshold,
    );
    for (key, title) in [
        ("summary", "Summary"),
        ("description", "Description"),
        ("runbook_url", "Runbook"),
    ] {
        if let Some(v) = rule.annotations.get(key) {
            text.push_str(&format!("\n{title}: {}", render(v, value, &target.labels)));
        }
    }
    if !rule.labels.is_empty() {
        let labels: Vec<String> = rule
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!("\nLabels: {}", labels.join(", ")));
    }
    let mut attributes = vec![
        ("alertname".to_owned(), rule.alert.clone()),
        ("status".to_owned(), status.to_owned()),
    ];
    for label in ATTRIBUTE_LABELS {
        if let Some(v) = target.labels.get(label).filter(|v| !v.is_empty()) {
            attributes.push((label.to_owned(), v.clone()));
        }
    }
    let annotations: BTreeMap<&str, String> = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.as_str(), render(v, value, &target.labels)))
        .collect();
    let active_since = match transition {
        Transition::Firing { active_since, .. } | Transition::Resolved { active_since, .. } => {
            *active_since
        }
    };
    let details = serde_json::json!({
        "version": 1,
        "status": status,
        "alertname": rule.alert,
        "labels": target.labels,
        "annotations": annotations,
        "value": value,
        "at": at,
        "active_since": active_since,
        "condition": {
            "namespace": rule.metric.namespace,
            "metric": rule.metric.name,
            "dimensions": target.dimensions.iter().map(|d| (d.name.clone(), d.value.clone())).collect::<BTreeMap<_, _>>(),
            "stat": rule.metric.stat,
            "period_seconds": rule.metric.period.seconds(),
            "expression": rule.expression,
            "operator": c.operator.symbol(),
            "threshold": c.threshold,
            "datapoints_to_alarm": rule.datapoints_to_alarm(),
            "evaluation_periods": rule.evaluation_periods(),
        },
    });
    Notification {
        details: Some(details),
        subject: format!(
            "[{}] {}: {} {} {} {}",
            status.to_uppercase(),
            rule.alert,
            rule.metric.name,
            show(value),
            c.operator.symbol(),
            c.threshold
        ),
        message: text,
        attributes,
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Where one batched read starts: far enough back for the widest lookback, and on a boundary
/// of every rule's period, so that CloudWatch's period buckets start on whole periods (12:05,
/// not 12:05:21) whatever the second the run started at.
pub fn read_start(rules: &[Rule], now: DateTime<Utc>) -> DateTime<Utc> {
    let widest = rules
        .iter()
        .map(|r| r.lookback().seconds())
        .max()
        .unwrap_or(0);
    let mut align: u64 = 1;
    for r in rules {
        let p = r.metric.period.seconds().max(1);
        align = align / gcd(align, p) * p;
        if align > 86_400 {
            align = 86_400;
            break;
        }
    }
    let earliest = now.timestamp() - i64::try_from(widest).unwrap_or(i64::MAX / 2);
    let align = i64::try_from(align).unwrap_or(86_400);
    DateTime::from_timestamp(earliest.div_euclid(align) * align, 0).unwrap_or(now)
}

/// A notification claimed by a run and not yet accepted by SNS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owed {
    pub key: String,
    /// The topic the policy routed it to.
    pub topic_arn: String,
    /// For the per-notification metric.
    #[serde(default)]
    pub rule: String,
    #[serde(default)]
    pub severity: String,
    /// The alert's labels, for grouping.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// For a grouped message: the keys of the notifications it carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    pub notification: Notification,
}

/// Notifications of one group waiting for their message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    #[serde(default)]
    pub pending: Vec<Owed>,
    /// When the oldest pending notification arrived.
    pub since: DateTime<Utc>,
    /// When the group's last message was claimed.
    #[serde(default)]
    pub last_sent: Option<DateTime<Utc>>,
}

/// How many sent deduplication keys the state keeps.
pub const SENT_KEYS_KEPT: usize = 1000;

/// The persisted state of every rule: open episodes, owed notifications, recently sent keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertState>,
    #[serde(default)]
    pub outbox: Vec<Owed>,
    #[serde(default)]
    pub sent: VecDeque<String>,
    /// Labels of the CloudWatch alarms in ALARM, by alarm name: they can inhibit too.
    #[serde(default)]
    pub alarms: BTreeMap<String, BTreeMap<String, String>>,
    /// Groups with notifications waiting (`policy.group_by`), by group key.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupState>,
}

impl StateFile {
    fn knows(&self, key: &str) -> bool {
        self.sent.iter().any(|k| k == key)
            || self
                .outbox
                .iter()
                .any(|o| o.key == key || o.members.iter().any(|m| m == key))
            || self
                .groups
                .values()
                .any(|g| g.pending.iter().any(|o| o.key == key))
    }

    fn mark_sent(&mut self, key: &str) {
        let members: Vec<String> = self
            .outbox
            .iter()
            .filter(|o| o.key == key)
            .flat_map(|o| o.members.clone())
            .collect();
        self.outbox.retain(|o| o.key != key);
        for k in std::iter::once(key.to_owned()).chain(members) {
            self.sent.push_back(k);
        }
        while self.sent.len() > SENT_KEYS_KEPT {
            self.sent.pop_front();
        }
    }

    /// Queues a notification: straight to the outbox, or, with `group_by`, to its group.
    pub fn enqueue(&mut self, policy: &Policy, owed: Owed, now: DateTime<Utc>) {
        if policy.group_by.is_empty() {
            self.outbox.push(owed);
            return;
        }
        let mut key = owed.topic_arn.clone();
        for label in &policy.group_by {
            key.push('|');
            key.push_str(label);
            key.push('=');
            key.push_str(owed.labels.get(label).map_or("", String::as_str));
        }
        let group = self.groups.entry(key).or_insert_with(|| GroupState {
            pending: Vec::new(),
            since: now,
            last_sent: None,
        });
        if group.pending.is_empty() {
            group.since = now;
        }
        group.pending.push(owed);
    }

    /// Moves every group that is due into the outbox as one message: a new group once
    /// `group_wait` has passed, a notified group no sooner than `group_interval` after its last
    /// message.
    pub fn flush_groups(&mut self, policy: &Policy, now: DateTime<Utc>) {
        let secs =
            |s: Span| Duration::seconds(i64::try_from(s.seconds()).unwrap_or(i64::MAX / 1000));
        let (wait, interval) = (secs(policy.group_wait), secs(policy.group_interval));
        for (key, group) in &mut self.groups {
            if group.pending.is_empty() {
                continue;
            }
            let due = match group.last_sent {
                None => now - group.since >= wait,
                Some(last) => now - last >= interval,
            };
            if !due {
                continue;
            }
            let members = std::mem::take(&mut group.pending);
            group.last_sent = Some(now);
            self.outbox.push(grouped(key, &policy.group_by, members));
        }
        self.groups.retain(|_, g| {
            !g.pending.is_empty() || g.last_sent.is_some_and(|l| now - l < interval)
        });
    }
}

/// One message for the notifications of a group: the members' texts under a common subject.
fn grouped(group_key: &str, group_by: &[String], members: Vec<Owed>) -> Owed {
    if members.len() == 1 {
        let mut only = members;
        return only.remove(0);
    }
    let firing = members
        .iter()
        .filter(|m| {
            m.notification
                .attributes
                .iter()
                .any(|(k, v)| k == "status" && v == "firing")
        })
        .count();
    let status = if firing > 0 { "firing" } else { "resolved" };
    let common: BTreeMap<String, String> = group_by
        .iter()
        .filter_map(|l| members[0].labels.get(l).map(|v| (l.clone(), v.clone())))
        .collect();
    let names: Vec<&str> = members.iter().map(|m| m.rule.as_str()).collect();
    let group_text = common
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let subject = format!(
        "[{}:{}] {}: {}",
        status.to_uppercase(),
        if firing > 0 { firing } else { members.len() },
        if group_text.is_empty() {
            "alerts"
        } else {
            group_text.as_str()
        },
        names.join(", ")
    );
    let mut text = format!(
        "{} notifications for {}: {firing} firing, {} resolved.\n",
        members.len(),
        if group_text.is_empty() {
            "one group".to_owned()
        } else {
            group_text.clone()
        },
        members.len() - firing
    );
    for m in &members {
        text.push_str(&format!(
            "\n----- {}\n{}\n",
            m.notification.subject, m.notification.message
        ));
    }
    let mut attributes = vec![
        ("alertname".to_owned(), names.join(",")),
        ("status".to_owned(), status.to_owned()),
    ];
    for label in ATTRIBUTE_LABELS {
        let values: std::collections::BTreeSet<&str> = members
            .iter()
            .filter_map(|m| m.labels.get(label).map(String::as_str))
            .collect();
        if values.len() == 1 {
            if let Some(v) = values.first() {
                attributes.push((label.to_owned(), (*v).to_owned()));
            }
        }
    }
    let keys: Vec<String> = members.iter().map(|m| m.key.clone()).collect();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in keys.join("\n").bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Owed {
        key: format!("group/{hash:016x}"),
        topic_arn: members[0].topic_arn.clone(),
        rule: "group".to_owned(),
        severity: members[0].severity.clone(),
        labels: common.clone(),
        notification: Notification {
            subject,
            message: text,
            attributes,
            details: Some(serde_json::json!({
                "version": 1,
                "status": status,
                "group": common,
                "group_key": group_key,
                "alerts": members.iter().map(|m| m.notification.details.clone()).collect::<Vec<_>>(),
            })),
        },
        members: keys,
    }
}

/// Where the state object lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateLocation {
    pub bucket: String,
    pub key: String,
}

/// One rule's result in a run's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleResult {
    pub alert: String,
    /// The series' `*` dimensions, for a rule that watches several.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// `inactive`, `pending` or `firing` after this run.
    pub state: &'static str,
    /// `firing` or `resolved` when this run made a transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transition: Option<&'static str>,
    /// Why a notification this run owed was not sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted: Option<Muted>,
}

/// What a run did; the invocation's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunSummary {
    pub evaluated_at: DateTime<Utc>,
    pub get_metric_data_calls: usize,
    pub rules: Vec<RuleResult>,
    /// SNS message ids of the notifications this run delivered, by deduplication key.
    pub sent: BTreeMap<String, String>,
    /// True when another run changed the state first; this one then sent nothing.
    pub superseded: bool,
}

fn to_json(state: &StateFile) -> Result<Vec<u8>> {
    serde_json::to_vec(state)
        .map_err(|e| Error::InvalidInput(format!("state not serializable: {e}")))
}

/// The Watchdog's turn in a run: always firing, notified every `interval`.
fn heartbeat(
    state: &mut StateFile,
    policy: &Policy,
    watchdog: &policy::Watchdog,
    default_topic: &str,
    now: DateTime<Utc>,
) {
    let interval =
        Duration::seconds(i64::try_from(watchdog.interval.seconds()).unwrap_or(i64::MAX / 1000));
    let entry = state
        .alerts
        .entry(policy::WATCHDOG.to_owned())
        .or_insert_with(|| AlertState {
            phase: Phase::Firing,
            active_since: now,
            last_breach: now,
            fired_at: Some(now),
            value: None,
            notified_at: None,
            repeats: 0,
        });
    entry.last_breach = now;
    if entry.notified_at.is_some_and(|last| now - last < interval) {
        return;
    }
    let key = format!(
        "{}/{}/heartbeat/{}",
        policy::WATCHDOG,
        entry.active_since.timestamp(),
        entry.repeats
    );
    entry.notified_at = Some(now);
    entry.repeats += 1;
    if state.knows(&key) {
        return;
    }
    let mut labels = watchdog.labels.clone();
    labels.insert("alertname".to_owned(), policy::WATCHDOG.to_owned());
    let mut attributes = vec![
        ("alertname".to_owned(), policy::WATCHDOG.to_owned()),
        ("status".to_owned(), "firing".to_owned()),
    ];
    for label in ATTRIBUTE_LABELS {
        if let Some(v) = labels.get(label) {
            attributes.push((label.to_owned(), v.clone()));
        }
    }
    state.outbox.push(Owed {
        key,
        topic_arn: policy.topic(&labels, default_topic).to_owned(),
        rule: policy::WATCHDOG.to_owned(),
        severity: labels.get("severity").cloned().unwrap_or_default(),
        labels: labels.clone(),
        members: Vec::new(),
        notification: Notification {
            details: Some(serde_json::json!({
                "version": 1,
                "status": "firing",
                "alertname": policy::WATCHDOG,
                "labels": labels,
                "at": now,
            })),
            subject: "[FIRING] Watchdog: Vigil's alert evaluation is running".to_owned(),
            message: format!(
                "This message arrives every {} while Vigil evaluates its rules. It is not a \
                 problem; its absence is. Alarm on it not arriving (a dead man's switch).\n\n\
                 Sent at {}.",
                watchdog.interval,
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            attributes,
        },
    });
}

/// Reads the state object and its entity tag (none yet: the default state, no tag).
pub async fn load_state(
    store: &impl ObjectStore,
    location: &StateLocation,
) -> Result<(StateFile, Option<String>)> {
    match store.get_tagged(&location.bucket, &location.key).await? {
        Some((bytes, tag)) => {
            let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Config(format!(
                    "s3://{}/{}: unreadable alert state: {e}",
                    location.bucket, location.key
                ))
            })?;
            Ok((state, Some(tag)))
        }
        None => Ok((StateFile::default(), None)),
    }
}

/// Writes the state if it is still at version `tag` (absent for `None`); `None` back means
/// another run wrote first.
async fn save(
    store: &impl ObjectStore,
    location: &StateLocation,
    state: &StateFile,
    tag: Option<&str>,
) -> Result<Option<String>> {
    store
        .put_if(&location.bucket, &location.key, to_json(state)?, tag)
        .await
}

/// What [`commit`] delivered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivery {
    /// SNS message ids by deduplication key.
    pub sent: BTreeMap<String, String>,
    /// Another run changed the state first: nothing was claimed or sent.
    pub superseded: bool,
}

/// Claims `state` (the new state with its outbox) over the version tagged `tag`, then delivers
/// every owed notification, oldest first, recording each as sent. Only one run can move the
/// state from the version it read; the loser sends nothing.
pub async fn commit(
    notifier: &impl Notifier,
    store: &impl ObjectStore,
    location: &StateLocation,
    mut state: StateFile,
    mut tag: Option<String>,
    now: DateTime<Utc>,
) -> Result<Delivery> {
    let mut delivery = Delivery::default();
    match save(store, location, &state, tag.as_deref()).await? {
        Some(new_tag) => tag = Some(new_tag),
        None => {
            tracing::warn!("another run changed the alert state first; this run sends nothing");
            delivery.superseded = true;
            return Ok(delivery);
        }
    }
    for owed in state.outbox.clone() {
        let id = notifier
            .publish(&owed.topic_arn, &owed.notification)
            .await?;
        // One EMF line per notification: which rules page most, by severity.
        let mut fields = serde_json::Map::new();
        fields.insert("message".into(), "notification sent".into());
        fields.insert("key".into(), owed.key.clone().into());
        fields.insert("message_id".into(), id.clone().into());
        fields.insert("topic_arn".into(), owed.topic_arn.clone().into());
        vigil_shared::emf::emit(&vigil_shared::emf::line(
            "Vigil",
            &[
                ("Function", "alert"),
                ("Rule", &owed.rule),
                ("Severity", &owed.severity),
            ],
            &[("Notifications", 1.0, vigil_shared::Unit::Count)],
            fields,
            now,
        ));
        state.mark_sent(&owed.key);
        delivery.sent.insert(owed.key.clone(), id);
        match save(store, location, &state, tag.as_deref()).await? {
            Some(new_tag) => tag = Some(new_tag),
            None => {
                return Err(Error::Aws {
                    service: "S3",
                    operation: "PutObject",
                    message: "the alert state changed while this run was delivering".to_owned(),
                    retryable: true,
                });
            }
        }
    }
    Ok(delivery)
}

/// Evaluates every rule at `now` with one batched read, advances each rule's state, claims the
/// notifications the transitions imply, and delivers them to `topic_arn`. Any failure to read,
/// to persist or to publish fails the run; what was claimed and not delivered is delivered by
/// the next run (Lambda's retry of this one).
/// What one run evaluates and how it notifies.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub rules: &'a [Rule],
    pub policy: &'a Policy,
    pub silences: &'a [Silence],
    /// Where notifications go when no route matches.
    pub default_topic: &'a str,
    pub state: &'a StateLocation,
}

/// A rule's labels with `alertname`: what routes, silences and inhibitions match on.
pub fn alert_labels(rule: &Rule) -> BTreeMap<String, String> {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".to_owned(), rule.alert.clone());
    labels
}

/// One series a rule watches, with its own state: the rule's only series, or one of the
/// series its `*` dimensions match.
#[derive(Clone, Debug, PartialEq)]
pub struct Target<'a> {
    pub rule: &'a Rule,
    /// The series' dimensions.
    pub dimensions: Vec<vigil_shared::Dimension>,
    /// The `*` dimensions with this series' values (empty for a rule without `*`).
    pub series: BTreeMap<String, String>,
    /// The state key: the alert name, then `{name=value,...}` of `series` when there is one.
    pub key: String,
    /// The rule's labels, `alertname`, and `series`.
    pub labels: BTreeMap<String, String>,
}

impl<'a> Target<'a> {
    /// The rule's only series (no `*` dimension).
    pub fn whole(rule: &'a Rule) -> Self {
        Self::series(rule, rule.metric.dimensions())
    }

    /// The series of `rule` with these dimensions.
    pub fn series(rule: &'a Rule, dimensions: Vec<vigil_shared::Dimension>) -> Self {
        let series: BTreeMap<String, String> = dimensions
            .iter()
            .filter(|d| {
                rule.metric
                    .dimensions
                    .get(&d.name)
                    .is_some_and(|v| v == "*")
            })
            .map(|d| (d.name.clone(), d.value.clone()))
            .collect();
        let key = if series.is_empty() {
            rule.alert.clone()
        } else {
            let parts: Vec<String> = series.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{}{{{}}}", rule.alert, parts.join(","))
        };
        let mut labels = alert_labels(rule);
        labels.extend(series.clone());
        Self {
            rule,
            dimensions,
            series,
            key,
            labels,
        }
    }
}

/// Every series the rules watch: a rule without `*` is one; a rule with `*` dimensions is one
/// per series CloudWatch lists for it (`ListMetrics`, which only knows series that received
/// data in the last two weeks).
pub async fn targets<'a>(reader: &impl MetricReader, rules: &'a [Rule]) -> Result<Vec<Target<'a>>> {
    type Listing = (String, String, Vec<vigil_shared::Dimension>, Vec<String>);
    let mut listed: BTreeMap<Listing, Vec<Vec<vigil_shared::Dimension>>> = BTreeMap::new();
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let (any, fixed): (Vec<_>, Vec<_>) = rule
            .metric
            .dimensions()
            .into_iter()
            .partition(|d| d.value == "*");
        if any.is_empty() {
            out.push(Target::whole(rule));
            continue;
        }
        let names: Vec<String> = any.into_iter().map(|d| d.name).collect();
        // Rules that watch the same series share one listing.
        let listing = (
            rule.metric.namespace.clone(),
            rule.metric.name.clone(),
            fixed,
            names,
        );
        if !listed.contains_key(&listing) {
            let (namespace, metric, fixed, names) = &listing;
            let series = reader.list_series(namespace, metric, fixed, names).await?;
            listed.insert(listing.clone(), series);
        }
        for dims in listed.get(&listing).into_iter().flatten() {
            out.push(Target::series(rule, dims.clone()));
        }
    }
    Ok(out)
}

pub async fn run(
    reader: &impl MetricReader,
    notifier: &impl Notifier,
    store: &impl ObjectStore,
    plan: Plan<'_>,
    now: DateTime<Utc>,
) -> Result<RunSummary> {
    let Plan {
        rules,
        policy,
        silences,
        default_topic,
        state: location,
    } = plan;
    let (mut state, tag) = load_state(store, location).await?;

    let targets = targets(reader, rules).await?;
    let queries: Vec<StatQuery> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| query_for_series(t.rule, t.dimensions.clone(), i))
        .collect();
    let fetched = reader.fetch(&queries, read_start(rules, now), now).await?;
    let empty: Series = Vec::new();
    let mut summary = RunSummary {
        evaluated_at: now,
        get_metric_data_calls: fetched.calls,
        ..RunSummary::default()
    };
    let mut known: std::collections::BTreeSet<&str> =
        targets.iter().map(|t| t.key.as_str()).collect();
    if policy.watchdog.is_some() {
        known.insert(policy::WATCHDOG);
    }
    state.alerts.retain(|name, _| known.contains(name.as_str()));
    // Step every series first: inhibition needs to know which alerts fire after this run.
    let mut stepped = Vec::with_capacity(targets.len());
    for (target, query) in targets.iter().zip(&queries) {
        let rule = target.rule;
        let series = fetched.series.get(&query.id).unwrap_or(&empty);
        let outcome = evaluate(rule, series, now);
        let prev = state.alerts.get(&target.key).cloned();
        let (next, transition) =
            state::step(prev.as_ref(), observe(rule, &outcome), rule.timing(), now);
        stepped.push((target, outcome, prev, next, transition));
    }
    let alarms = state.alarms.clone();
    let firing: Vec<&BTreeMap<String, String>> = stepped
        .iter()
        .filter(|(_, _, _, next, _)| next.as_ref().is_some_and(|s| s.phase == Phase::Firing))
        .map(|(t, ..)| &t.labels)
        .chain(alarms.values())
        .collect();
    let repeat = policy
        .repeat_interval
        .map(|r| Duration::seconds(i64::try_from(r.seconds()).unwrap_or(i64::MAX / 1000)));

    for (target, outcome, prev, mut next, transition) in stepped {
        let (rule, labels) = (target.rule, &target.labels);
        // The message names the data point compared, or the evaluation for no data.
        let at = match &outcome {
            Outcome::Breaching { at, .. } | Outcome::Ok { at, .. } => *at,
            Outcome::NoData => now,
        };
        // What this rule owes: a resolved message for an episode that was notified; a firing
        // message for a firing episode never notified (new, or muted until now), or due again.
        let owed: Option<(String, Transition)> = match (&transition, next.as_mut()) {
            (Some(t @ Transition::Resolved { .. }), _) => prev
                .as_ref()
                .filter(|p| p.notified_at.is_some())
                .map(|_| (t.dedup_key(&target.key), t.clone())),
            (_, Some(s)) if s.phase == Phase::Firing => {
                let firing = Transition::Firing {
                    value: s.value,
                    active_since: s.active_since,
                };
                match s.notified_at {
                    None => Some((firing.dedup_key(&target.key), firing)),
                    Some(last) if repeat.is_some_and(|r| now - last >= r) => Some((
                        format!("{}/repeat/{}", firing.dedup_key(&target.key), s.repeats + 1),
                        firing,
                    )),
                    Some(_) => None,
                }
            }
            _ => None,
        };
        let mut muted = None;
        if let Some((key, t)) = owed {
            muted = policy.muted(labels, silences, &firing, now);
            if muted.is_none() && !state.knows(&key) {
                if let Some(s) = next.as_mut() {
                    if s.notified_at.is_some() {
                        s.repeats += 1;
                    }
                    s.notified_at = Some(now);
                }
                let owed = Owed {
                    key,
                    topic_arn: policy.topic(labels, default_topic).to_owned(),
                    rule: rule.alert.clone(),
                    severity: rule.labels.get("severity").cloned().unwrap_or_default(),
                    labels: labels.clone(),
                    members: Vec::new(),
                    notification: notification_for(target, &t, at),
                };
                state.enqueue(policy, owed, now);
            }
        }
        let phase = match &next {
            None => "inactive",
            Some(s) if s.phase == Phase::Pending => "pending",
            Some(_) => "firing",
        };
        match next {
            Some(s) => state.alerts.insert(target.key.clone(), s),
            None => state.alerts.remove(&target.key),
        };
        summary.rules.push(RuleResult {
            alert: rule.alert.clone(),
            series: target.series.clone(),
            outcome,
            state: phase,
            transition: transition.as_ref().map(Transition::status),
            muted,
        });
    }

    state.flush_groups(policy, now);
    if let Some(watchdog) = &policy.watchdog {
        heartbeat(&mut state, policy, watchdog, default_topic, now);
    }

    let delivery = commit(notifier, store, location, state, tag, now).await?;
    summary.superseded = delivery.superseded;
    summary.sent = delivery.sent;
    if summary.superseded {
        return Ok(summary);
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &summary.rules {
        *counts.entry(r.state).or_default() += 1;
    }
    tracing::info!(rules = rules.len(), calls = fetched.calls, states = ?counts,
        sent = summary.sent.len(), "evaluation done");
    Ok(summary)
}

/// Where the function finds its rules and where it notifies.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    /// `VIGIL_RULES`: `s3://bucket/key` or a file path.
    pub rules: ConfigSource,
    /// `VIGIL_ALERT_TOPIC_ARN`.
    pub topic_arn: String,
    /// `VIGIL_STATE_BUCKET` and `VIGIL_STATE_KEY` (default `state/alert.json`).
    pub state: StateLocation,
    /// `VIGIL_SILENCES`: a JSON list of silences (`s3://bucket/key` or a path); optional, and
    /// a missing object means no silence.
    pub silences: Option<ConfigSource>,
}

impl AlertConfig {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            rules: required_env(env::RULES)?.parse()?,
            topic_arn: required_env(env::TOPIC_ARN)?,
            state: StateLocation {
                bucket: required_env(env::STATE_BUCKET)?,
                key: std::env::var(env::STATE_KEY)
                    .unwrap_or_else(|_| "state/alert.json".to_owned()),
            },
            silences: match std::env::var(env::SILENCES) {
                Ok(v) if !v.trim().is_empty() => Some(v.parse()?),
                _ => None,
            },
        })
    }
}

/// The Lambda handler for a scheduled event: reads the rules (at every run, so a new file in
/// S3 takes effect without a deployment), evaluates them at the event's scheduled time and
/// returns the run's summary.
pub async fn handle_scheduled(
    reader: &impl MetricReader,
    notifier: &impl Notifier,
    store: &impl ObjectStore,
    config: &AlertConfig,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Value> {
    let at = evaluation_time(event, now);
    let (rules, policy, silences) = policy_and_silences(store, config).await?;
    for finding in lint(&rules) {
        tracing::warn!(finding = %finding, "rule lint");
    }
    let plan = Plan {
        rules: &rules,
        policy: &policy,
        silences: &silences,
        default_topic: &config.topic_arn,
        state: &config.state,
    };
    let summary = run(reader, notifier, store, plan, at).await?;
    vigil_shared::emf::emit(&heartbeat_line(&summary, now));
    serde_json::to_value(summary)
        .map_err(|e| Error::InvalidInput(format!("summary not serializable: {e}")))
}

/// The EMF line a completed evaluation writes: `Heartbeat` 1 (the stack's dead man's switch
/// alarms when it stops), with how many series were evaluated and how many are firing.
pub fn heartbeat_line(summary: &RunSummary, now: DateTime<Utc>) -> String {
    let firing = summary.rules.iter().filter(|r| r.state == "firing").count();
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), "evaluation completed".into());
    fields.insert(
        "evaluated_at".into(),
        summary.evaluated_at.to_rfc3339().into(),
    );
    fields.insert("sent".into(), summary.sent.len().into());
    fields.insert("superseded".into(), summary.superseded.into());
    vigil_shared::emf::line(
        "Vigil",
        &[("Function", "alert")],
        &[
            ("Heartbeat", 1.0, vigil_shared::Unit::Count),
            (
                "SeriesEvaluated",
                summary.rules.len() as f64,
                vigil_shared::Unit::Count,
            ),
            ("AlertsFiring", firing as f64, vigil_shared::Unit::Count),
        ],
        fields,
        now,
    )
}

/// The policy and silences in force: the rules file's `policy` and `VIGIL_SILENCES`.
async fn policy_and_silences(
    store: &impl ObjectStore,
    config: &AlertConfig,
) -> Result<(Vec<Rule>, Policy, Vec<Silence>)> {
    let text = config.rules.read(store).await?;
    let (rules, policy) = load_file(&config.rules.to_string(), &text)?;
    let silences: Vec<Silence> = match &config.silences {
        None => Vec::new(),
        Some(source) => match source.read_optional(store).await? {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                Error::Config(format!("{source}: not a JSON list of silences: {e}"))
            })?,
        },
    };
    Ok((rules, policy, silences))
}

/// The Lambda handler for a CloudWatch alarm state change (alarm action or EventBridge): the
/// change goes through the same policy as the rules (routes, silences, inhibition) and the same
/// claimed, deduplicated delivery.
pub async fn handle_alarm(
    notifier: &impl Notifier,
    store: &impl ObjectStore,
    config: &AlertConfig,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Value> {
    let change = alarm::parse(event)?;
    let (rules, policy, silences) = policy_and_silences(store, config).await?;
    let (mut state, tag) = load_state(store, &config.state).await?;
    let labels = change.labels();
    let rule_labels: BTreeMap<&str, BTreeMap<String, String>> = rules
        .iter()
        .map(|r| (r.alert.as_str(), alert_labels(r)))
        .collect();
    let firing: Vec<&BTreeMap<String, String>> = state
        .alerts
        .iter()
        .filter(|(_, s)| s.phase == Phase::Firing)
        .filter_map(|(name, _)| rule_labels.get(name.as_str()))
        .chain(
            state
                .alarms
                .iter()
                .filter(|(n, _)| **n != change.name)
                .map(|(_, l)| l),
        )
        .collect();
    let status = change.status();
    let muted = status.and_then(|_| policy.muted(&labels, &silences, &firing, now));
    let was_alarming = state.alarms.contains_key(&change.name);
    match change.state.as_str() {
        "ALARM" => {
            state.alarms.insert(change.name.clone(), labels.clone());
        }
        _ => {
            state.alarms.remove(&change.name);
        }
    }
    if let Some(status) = status.filter(|s| *s == "firing" || was_alarming) {
        let key = change.dedup_key(status);
        if muted.is_none() && !state.knows(&key) {
            let owed = Owed {
                key,
                topic_arn: policy.topic(&labels, &config.topic_arn).to_owned(),
                rule: change.name.clone(),
                severity: labels.get("severity").cloned().unwrap_or_default(),
                labels: labels.clone(),
                members: Vec::new(),
                notification: change.notification(status),
            };
            state.enqueue(&policy, owed, now);
        }
    }
    state.flush_groups(&policy, now);
    let delivery = commit(notifier, store, &config.state, state, tag, now).await?;
    tracing::info!(alarm = %change.name, state = %change.state, sent = delivery.sent.len(), "alarm change handled");
    Ok(serde_json::json!({
        "alarm": change.name,
        "state": change.state,
        "status": status,
        "muted": muted,
        "sent": delivery.sent,
        "superseded": delivery.superseded,
    }))
}

/// The Lambda handler: alarm state changes, else scheduled evaluations.
pub async fn handle_event(
    reader: &impl MetricReader,
    notifier: &impl Notifier,
    store: &impl ObjectStore,
    config: &AlertConfig,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Value> {
    if alarm::is_alarm_event(event) {
        handle_alarm(notifier, store, config, event, now).await
    } else {
        handle_scheduled(reader, notifier, store, config, event, now).await
    }
}

/// The evaluation instant of a scheduled event: its `time` (the scheduled minute), else `now`.
pub fn evaluation_time(event: &Value, now: DateTime<Utc>) -> DateTime<Utc> {
    event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vigil_shared::reader::Fetched;

    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: HighLatency
        metric: {namespace: Shop, name: latency, dimensions: {service: api}, stat: Average, period: 1m}
        condition: {operator: ">", threshold: 250}
        evaluation_periods: 3
        datapoints_to_alarm: 2
        labels: {severity: page, team: checkout, service: api, other: x}
        annotations:
          summary: "Checkout latency is {{ $value }} ms on {{ $labels.service }}"
          runbook_url: "https://runbooks.example.com/latency"
"#;

    fn rule() -> Rule {
        load("t.yaml", RULES).expect("valid").remove(0)
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn series(values: &[(&str, f64)]) -> Series {
        values.iter().map(|(at, v)| (t(at), *v)).collect()
    }

    #[test]
    fn m_of_n_on_complete_points() {
        let r = rule();
        let now = t("2026-11-25T08:00:00Z");
        let s = series(&[
            ("2026-11-25T07:56:00Z", 900.0),
            ("2026-11-25T07:57:00Z", 100.0),
            ("2026-11-25T07:58:00Z", 300.0),
            ("2026-11-25T07:59:00Z", 260.0),
            // still filling at 08:00: not compared
            ("2026-11-25T08:00:00Z", 10.0),
        ]);
        assert_eq!(
            evaluate(&r, &s, now),
            Outcome::Breaching {
                value: 260.0,
                at: t("2026-11-25T07:59:00Z")
            }
        );
        // 1 of the 2 points there are breaches: not enough.
        assert_eq!(
            evaluate(&r, &s[1..3], now),
            Outcome::Ok {
                value: 300.0,
                at: t("2026-11-25T07:58:00Z")
            }
        );
        assert_eq!(evaluate(&r, &[], now), Outcome::NoData);
        assert_eq!(
            evaluate(&r, &series(&[("2026-11-25T07:40:00Z", 999.0)]), now),
            Outcome::NoData
        );
    }

    #[test]
    fn metric_math_rules_query_and_describe_their_expression() {
        let math = RULES.replace(
            "        condition: {operator: \">\", threshold: 250}",
            "        expression: \"100 * errors / m\"\n        inputs:\n          errors: {namespace: Shop, name: errors, dimensions: {service: api}, stat: Sum}\n        condition: {operator: \">\", threshold: 5}",
        );
        let r = load("t.yaml", &math).expect("valid").remove(0);
        let q = query_for(&r, 4);
        let m = q.math.as_ref().expect("math");
        assert_eq!(m.expression, "100 * errors / m");
        assert_eq!(m.inputs[0].0, "errors");
        assert_eq!(m.inputs[0].1.dimensions[0].value, "api");
        let wire = vigil_shared::reader::wire_queries(&q);
        assert_eq!(
            wire.last().and_then(|w| w.expression()),
            Some("100 * r4_errors / r4_m")
        );
        let firing = Transition::Firing {
            value: Some(7.5),
            active_since: t("2026-11-25T07:58:00Z"),
        };
        let n = notification(&r, &firing, t("2026-11-25T08:00:00Z"));
        assert!(
            n.message.contains(
                "100 * errors / m (m = latency (Average per 1m) in Shop {service=api}) was 7.5"
            ),
            "{}",
            n.message
        );
        assert_eq!(
            n.details
                .as_ref()
                .map(|d| d["condition"]["expression"].clone()),
            Some(serde_json::json!("100 * errors / m"))
        );
    }

    #[test]
    fn missing_data_follows_the_policy() {
        let mut r = rule();
        assert_eq!(observe(&r, &Outcome::NoData), Observation::Unknown);
        r.missing_data = MissingData::Breaching;
        assert_eq!(observe(&r, &Outcome::NoData), Observation::Breaching(None));
        r.missing_data = MissingData::NotBreaching;
        assert_eq!(
            observe(&r, &Outcome::NoData),
            Observation::NotBreaching(None)
        );
    }

    #[test]
    fn annotations_are_templated() {
        let labels: BTreeMap<String, String> = [("service".to_owned(), "api".to_owned())].into();
        assert_eq!(
            render(
                "{{ $value }} on {{$labels.service}}{{ $labels.none }}",
                Some(3.5),
                &labels
            ),
            "3.5 on api"
        );
        assert_eq!(
            render("no data: {{ $value }}", None, &labels),
            "no data: no data"
        );
        assert_eq!(
            render("{{ other }} {{ unclosed", None, &labels),
            "{{ other }} {{ unclosed"
        );
    }

    #[test]
    fn notifications_are_actionable_and_filterable() {
        let r = rule();
        let firing = Transition::Firing {
            value: Some(312.5),
            active_since: t("2026-11-25T07:58:00Z"),
        };
        let n = notification(&r, &firing, t("2026-11-25T08:00:00Z"));
        assert_eq!(n.subject, "[FIRING] HighLatency: latency 312.5 > 250");
        assert!(
            n.message
                .contains("Summary: Checkout latency is 312.5 ms on api"),
            "{}",
            n.message
        );
        assert!(
            n.message
                .contains("Runbook: https://runbooks.example.com/latency")
        );
        assert!(n.message.contains("2 of 3 data points"));
        let attrs: BTreeMap<_, _> = n.attributes.iter().cloned().collect();
        assert_eq!(attrs.get("severity").map(String::as_str), Some("page"));
        assert_eq!(attrs.get("status").map(String::as_str), Some("firing"));
        assert!(!attrs.contains_key("other"));
        let resolved = Transition::Resolved {
            value: Some(90.0),
            active_since: t("2026-11-25T07:58:00Z"),
            fired_at: t("2026-11-25T07:59:00Z"),
        };
        let n = notification(&r, &resolved, t("2026-11-25T08:10:00Z"));
        assert_eq!(n.subject, "[RESOLVED] HighLatency: latency 90 > 250");
        assert!(
            n.message
                .starts_with("HighLatency is RESOLVED (fired at 2026-11-25T07:59:00Z).")
        );
    }

    #[test]
    fn reads_start_on_period_boundaries() {
        let mut a = rule();
        let mut b = rule();
        a.evaluation_periods = None;
        a.datapoints_to_alarm = None;
        b.metric.period = vigil_shared::Span(300);
        b.lookback = Some(vigil_shared::Span(900));
        let now = t("2026-11-25T08:07:21Z");
        assert_eq!(
            read_start(std::slice::from_ref(&a), now),
            t("2026-11-25T08:02:00Z")
        );
        assert_eq!(read_start(&[a, b], now), t("2026-11-25T07:50:00Z"));
        assert_eq!(read_start(&[], now), now);
    }

    #[test]
    fn evaluation_time_is_the_scheduled_time() {
        let now = t("2026-11-25T08:00:07Z");
        let ev = serde_json::json!({"time": "2026-11-25T08:00:00Z"});
        assert_eq!(evaluation_time(&ev, now), t("2026-11-25T08:00:00Z"));
        assert_eq!(evaluation_time(&serde_json::json!({}), now), now);
    }

    /// Serves one series to every query.
    struct FixedReader(Mutex<Series>);
    impl MetricReader for FixedReader {
        async fn list_series(
            &self,
            _: &str,
            _: &str,
            fixed: &[vigil_shared::Dimension],
            any: &[String],
        ) -> Result<Vec<Vec<vigil_shared::Dimension>>> {
            // Three series for each `*` dimension: a, b, c.
            Ok(["a", "b", "c"]
                .iter()
                .map(|v| {
                    let mut dims = fixed.to_vec();
                    dims.extend(any.iter().map(|n| vigil_shared::Dimension {
                        name: n.clone(),
                        value: (*v).to_owned(),
                    }));
                    dims.sort();
                    dims
                })
                .collect())
        }
        async fn fetch(
            &self,
            queries: &[StatQuery],
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Fetched> {
            let s = self.0.lock().expect("lock").clone();
            Ok(Fetched {
                series: queries.iter().map(|q| (q.id.clone(), s.clone())).collect(),
                calls: 1,
            })
        }
    }

    /// Records notifications and their topics; fails while `down` is set.
    #[derive(Default)]
    struct Outbox {
        sent: Mutex<Vec<Notification>>,
        topics: Mutex<Vec<String>>,
        down: Mutex<bool>,
    }
    impl Notifier for Outbox {
        async fn publish(&self, topic: &str, n: &Notification) -> Result<String> {
            self.topics.lock().expect("lock").push(topic.to_owned());
            if *self.down.lock().expect("lock") {
                return Err(Error::Aws {
                    service: "SNS",
                    operation: "Publish",
                    message: "down".into(),
                    retryable: true,
                });
            }
            let mut sent = self.sent.lock().expect("lock");
            sent.push(n.clone());
            Ok(format!("m{}", sent.len()))
        }
    }

    /// One object with an entity tag, honouring the preconditions like S3.
    #[derive(Default)]
    struct MemoryStore(Mutex<Option<(Vec<u8>, u64)>>);
    impl ObjectStore for MemoryStore {
        async fn list(&self, _: &str, _: &str) -> Result<Vec<vigil_shared::ObjectInfo>> {
            Ok(vec![])
        }
        async fn get(&self, _: &str, _: &str) -> Result<Vec<u8>> {
            Ok(vec![])
        }
        async fn put(&self, _: &str, _: &str, _: Vec<u8>, _: &str) -> Result<()> {
            Ok(())
        }
        async fn get_tagged(&self, _: &str, _: &str) -> Result<Option<(Vec<u8>, String)>> {
            Ok(self
                .0
                .lock()
                .expect("lock")
                .as_ref()
                .map(|(b, v)| (b.clone(), v.to_string())))
        }
        async fn put_if(
            &self,
            _: &str,
            _: &str,
            body: Vec<u8>,
            expected: Option<&str>,
        ) -> Result<Option<String>> {
            let mut slot = self.0.lock().expect("lock");
            let current = slot.as_ref().map(|(_, v)| v.to_string());
            if current.as_deref() != expected {
                return Ok(None);
            }
            let version = slot.as_ref().map_or(1, |(_, v)| v + 1);
            *slot = Some((body, version));
            Ok(Some(version.to_string()))
        }
    }

    static LOCATION: std::sync::LazyLock<StateLocation> =
        std::sync::LazyLock::new(|| StateLocation {
            bucket: "b".into(),
            key: "state.json".into(),
        });
    static NO_POLICY: Policy = Policy::NONE;

    fn plan(rules: &[Rule]) -> Plan<'_> {
        Plan {
            rules,
            policy: &NO_POLICY,
            silences: &[],
            default_topic: "arn:default",
            state: &LOCATION,
        }
    }

    #[tokio::test]
    async fn one_notification_per_transition_and_resolved_after() {
        let reader = FixedReader(Mutex::new(series(&[
            ("2026-11-25T07:58:00Z", 300.0),
            ("2026-11-25T07:59:00Z", 320.0),
        ])));
        let outbox = Outbox::default();
        let store = MemoryStore::default();
        let rules = [rule()];
        let s1 = run(
            &reader,
            &outbox,
            &store,
            plan(&rules),
            t("2026-11-25T08:00:00Z"),
        )
        .await
        .expect("run");
        assert_eq!(
            (s1.rules[0].state, s1.rules[0].transition),
            ("firing", Some("firing"))
        );
        // Still breaching a minute later: no second notification.
        let s2 = run(
            &reader,
            &outbox,
            &store,
            plan(&rules),
            t("2026-11-25T08:01:00Z"),
        )
        .await
        .expect("run");
        assert_eq!(
            (s2.rules[0].state, s2.rules[0].transition),
            ("firing", None)
        );
        assert_eq!(outbox.sent.lock().expect("lock").len(), 1);
        // Recovered: one resolved notification.
        *reader.0.lock().expect("lock") = series(&[
            ("2026-11-25T08:00:00Z", 100.0),
            ("2026-11-25T08:01:00Z", 90.0),
        ]);
        let s3 = run(
            &reader,
            &outbox,
            &store,
            plan(&rules),
            t("2026-11-25T08:02:00Z"),
        )
        .await
        .expect("run");
        assert_eq!(
            (s3.rules[0].state, s3.rules[0].transition),
            ("inactive", Some("resolved"))
        );
        let sent = outbox.sent.lock().expect("lock");
        let statuses: Vec<&str> = sent
            .iter()
            .map(|n| n.subject.split(']').next().unwrap_or_default())
            .collect();
        assert_eq!(statuses, ["[FIRING", "[RESOLVED"]);
    }

    #[tokio::test]
    async fn a_failed_publish_is_delivered_once_by_the_retry() {
        let reader = FixedReader(Mutex::new(series(&[
            ("2026-11-25T07:58:00Z", 300.0),
            ("2026-11-25T07:59:00Z", 320.0),
        ])));
        let outbox = Outbox::default();
        *outbox.down.lock().expect("lock") = true;
        let store = MemoryStore::default();
        let rules = [rule()];
        let now = t("2026-11-25T08:00:00Z");
        assert!(
            run(&reader, &outbox, &store, plan(&rules), now)
                .await
                .is_err()
        );
        *outbox.down.lock().expect("lock") = false;
        let retry = run(&reader, &outbox, &store, plan(&rules), now)
            .await
            .expect("retry");
        assert_eq!(retry.sent.len(), 1);
        let again = run(&reader, &outbox, &store, plan(&rules), now)
            .await
            .expect("again");
        assert!(again.sent.is_empty());
        assert_eq!(outbox.sent.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn a_run_that_loses_the_claim_sends_nothing() {
        let reader = FixedReader(Mutex::new(series(&[
            ("2026-11-25T07:58:00Z", 300.0),
            ("2026-11-25T07:59:00Z", 320.0),
        ])));
        let outbox = Outbox::default();
        let store = MemoryStore::default();
        // Another run wrote the state after this one would have read it.
        *store.0.lock().expect("lock") = Some((b"{}".to_vec(), 7));
        struct Stale<'a>(&'a MemoryStore);
        impl ObjectStore for Stale<'_> {
            async fn list(&self, b: &str, p: &str) -> Result<Vec<vigil_shared::ObjectInfo>> {
                self.0.list(b, p).await
            }
            async fn get(&self, b: &str, k: &str) -> Result<Vec<u8>> {
                self.0.get(b, k).await
            }
            async fn put(&self, b: &str, k: &str, body: Vec<u8>, c: &str) -> Result<()> {
                self.0.put(b, k, body, c).await
            }
            async fn get_tagged(&self, _: &str, _: &str) -> Result<Option<(Vec<u8>, String)>> {
                Ok(Some((b"{}".to_vec(), "6".to_owned())))
            }
            async fn put_if(
                &self,
                b: &str,
                k: &str,
                body: Vec<u8>,
                e: Option<&str>,
            ) -> Result<Option<String>> {
                self.0.put_if(b, k, body, e).await
            }
        }
        let summary = run(
            &reader,
            &outbox,
            &Stale(&store),
            plan(&[rule()]),
            t("2026-11-25T08:00:00Z"),
        )
        .await
        .expect("run");
        assert!(summary.superseded);
        assert!(outbox.sent.lock().expect("lock").is_empty());
    }

    fn breaching_reader() -> FixedReader {
        FixedReader(Mutex::new(series(&[
            ("2026-11-25T07:58:00Z", 300.0),
            ("2026-11-25T07:59:00Z", 320.0),
        ])))
    }

    fn subjects(outbox: &Outbox) -> Vec<String> {
        outbox
            .sent
            .lock()
            .expect("lock")
            .iter()
            .map(|n| n.subject.clone())
            .collect()
    }

    fn named(name: &str, threshold: f64) -> Rule {
        let mut r = rule();
        r.alert = name.to_owned();
        r.condition.threshold = threshold;
        r
    }

    /// Serves each rule's series by query id.
    struct PerRule(Mutex<BTreeMap<String, Series>>);
    impl MetricReader for PerRule {
        async fn list_series(
            &self,
            _: &str,
            _: &str,
            _: &[vigil_shared::Dimension],
            _: &[String],
        ) -> Result<Vec<Vec<vigil_shared::Dimension>>> {
            Ok(Vec::new())
        }
        async fn fetch(
            &self,
            queries: &[StatQuery],
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Fetched> {
            let map = self.0.lock().expect("lock");
            Ok(Fetched {
                series: queries
                    .iter()
                    .map(|q| (q.id.clone(), map.get(&q.id).cloned().unwrap_or_default()))
                    .collect(),
                calls: 1,
            })
        }
    }

    fn breaching_at(now: DateTime<Utc>) -> Series {
        vec![
            (now - Duration::minutes(2), 900.0),
            (now - Duration::minutes(1), 900.0),
        ]
    }

    #[tokio::test]
    async fn a_group_gets_one_message_then_waits_group_interval() {
        let (outbox, store) = (Outbox::default(), MemoryStore::default());
        let policy: Policy =
            vigil_shared::config::parse_yaml("p.yaml", "group_by: [team]\ngroup_interval: 5m\n")
                .expect("policy");
        let rules = [named("A", 250.0), named("B", 250.0), named("C", 250.0)];
        let p = Plan {
            policy: &policy,
            ..plan(&rules)
        };
        let t0 = t("2026-11-25T08:00:00Z");
        let reader = PerRule(Mutex::new(BTreeMap::new()));
        // A and B fire together at t0: one message for both.
        {
            let mut m = reader.0.lock().expect("lock");
            m.insert("r0".into(), breaching_at(t0));
            m.insert("r1".into(), breaching_at(t0));
        }
        let s0 = run(&reader, &outbox, &store, p, t0).await.expect("run");
        assert_eq!(s0.sent.len(), 1, "{:?}", s0.sent);
        assert_eq!(subjects(&outbox), ["[FIRING:2] team=checkout: A, B"]);
        // C joins a minute later: held until five minutes after the last message.
        for minute in 1..=5 {
            let now = t0 + Duration::minutes(minute);
            {
                let mut m = reader.0.lock().expect("lock");
                for id in ["r0", "r1", "r2"] {
                    m.insert(id.into(), breaching_at(now));
                }
            }
            run(&reader, &outbox, &store, p, now).await.expect("run");
            let expected = if minute < 5 { 1 } else { 2 };
            assert_eq!(
                outbox.sent.lock().expect("lock").len(),
                expected,
                "minute {minute}"
            );
        }
        assert_eq!(subjects(&outbox)[1], "[FIRING] C: latency 900 > 250");
        let sent = outbox.sent.lock().expect("lock");
        let body = sent[0].details.as_ref().expect("details");
        assert_eq!(body["alerts"].as_array().map(Vec::len), Some(2));
        assert!(
            sent[0]
                .message
                .contains("----- [FIRING] A: latency 900 > 250")
        );
    }

    #[tokio::test]
    async fn group_wait_collects_alerts_before_the_first_message() {
        let (outbox, store) = (Outbox::default(), MemoryStore::default());
        let policy: Policy =
            vigil_shared::config::parse_yaml("p.yaml", "group_by: [team]\ngroup_wait: 2m\n")
                .expect("policy");
        let rules = [named("A", 250.0), named("B", 250.0)];
        let p = Plan {
            policy: &policy,
            ..plan(&rules)
        };
        let t0 = t("2026-11-25T08:00:00Z");
        let reader = PerRule(Mutex::new(BTreeMap::new()));
        reader
            .0
            .lock()
            .expect("lock")
            .insert("r0".into(), breaching_at(t0));
        run(&reader, &outbox, &store, p, t0).await.expect("run");
        assert!(subjects(&outbox).is_empty());
        let t1 = t0 + Duration::minutes(1);
        {
            let mut m = reader.0.lock().expect("lock");
            m.insert("r0".into(), breaching_at(t1));
            m.insert("r1".into(), breaching_at(t1));
        }
        run(&reader, &outbox, &store, p, t1).await.expect("run");
        assert!(subjects(&outbox).is_empty());
        let t2 = t0 + Duration::minutes(2);
        {
            let mut m = reader.0.lock().expect("lock");
            m.insert("r0".into(), breaching_at(t2));
            m.insert("r1".into(), breaching_at(t2));
        }
        run(&reader, &outbox, &store, p, t2).await.expect("run");
        assert_eq!(subjects(&outbox), ["[FIRING:2] team=checkout: A, B"]);
        // Delivered members are never sent again.
        run(&reader, &outbox, &store, p, t2 + Duration::minutes(10))
            .await
            .expect("run");
        assert_eq!(outbox.sent.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn a_wildcard_rule_keeps_one_state_per_series() {
        let (reader, outbox, store) = (
            breaching_reader(),
            Outbox::default(),
            MemoryStore::default(),
        );
        let mut r = rule();
        r.metric.dimensions.insert("service".into(), "*".into());
        r.labels.remove("service");
        let rules = [r];
        let now = t("2026-11-25T08:00:00Z");
        let summary = run(&reader, &outbox, &store, plan(&rules), now)
            .await
            .expect("run");
        assert_eq!(summary.rules.len(), 3);
        let series: Vec<&str> = summary
            .rules
            .iter()
            .map(|r| r.series["service"].as_str())
            .collect();
        assert_eq!(series, ["a", "b", "c"]);
        assert_eq!(summary.sent.len(), 3);
        assert!(
            summary
                .sent
                .contains_key("HighLatency{service=b}/1795593600/firing"),
            "{:?}",
            summary.sent
        );
        let sent = outbox.sent.lock().expect("lock");
        assert!(sent.iter().any(|n| {
            n.attributes
                .contains(&("service".to_owned(), "c".to_owned()))
        }));
        assert!(
            sent[0].message.contains("{service=a}"),
            "{}",
            sent[0].message
        );
        drop(sent);
        let state: StateFile =
            serde_json::from_slice(&store.0.lock().expect("lock").as_ref().expect("state").0)
                .expect("state");
        assert_eq!(
            state.alerts.keys().cloned().collect::<Vec<_>>(),
            [
                "HighLatency{service=a}",
                "HighLatency{service=b}",
                "HighLatency{service=c}"
            ]
        );
    }

    #[tokio::test]
    async fn the_watchdog_beats_every_interval() {
        let (reader, outbox, store) = (
            breaching_reader(),
            Outbox::default(),
            MemoryStore::default(),
        );
        *reader.0.lock().expect("lock") = Vec::new();
        let policy: Policy = vigil_shared::config::parse_yaml(
            "p.yaml",
            "watchdog: {interval: 1h, labels: {severity: none, team: platform}}\n",
        )
        .expect("policy");
        let rules = [rule()];
        let p = Plan {
            policy: &policy,
            ..plan(&rules)
        };
        for minute in [0, 1, 59, 60, 90, 121] {
            run(
                &reader,
                &outbox,
                &store,
                p,
                t("2026-11-25T08:00:00Z") + Duration::minutes(minute),
            )
            .await
            .expect("run");
        }
        let sent = outbox.sent.lock().expect("lock");
        assert_eq!(sent.len(), 3, "at 08:00, 09:00 and 10:01");
        assert!(
            sent.iter()
                .all(|n| n.subject.starts_with("[FIRING] Watchdog"))
        );
        assert!(
            sent[0]
                .attributes
                .contains(&("team".to_owned(), "platform".to_owned()))
        );
    }

    #[test]
    fn a_completed_run_beats_the_heartbeat() {
        let at = t("2026-11-25T08:00:00Z");
        let result = |state| RuleResult {
            alert: "A".into(),
            series: BTreeMap::new(),
            outcome: Outcome::NoData,
            state,
            transition: None,
            muted: None,
        };
        let summary = RunSummary {
            evaluated_at: at,
            rules: vec![result("firing"), result("inactive"), result("firing")],
            ..RunSummary::default()
        };
        let line: Value = serde_json::from_str(&heartbeat_line(&summary, at)).expect("json");
        assert_eq!(line["Heartbeat"], 1.0);
        assert_eq!(line["SeriesEvaluated"], 3.0);
        assert_eq!(line["AlertsFiring"], 2.0);
        let names: Vec<&str> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert_eq!(names, ["Heartbeat", "SeriesEvaluated", "AlertsFiring"]);
    }

    #[tokio::test]
    async fn repeat_interval_resends_a_still_firing_alert() {
        let (reader, outbox, store) = (
            breaching_reader(),
            Outbox::default(),
            MemoryStore::default(),
        );
        let policy = Policy {
            repeat_interval: Some(vigil_shared::Span(3600)),
            ..Policy::default()
        };
        let rules = [rule()];
        let p = Plan {
            policy: &policy,
            ..plan(&rules)
        };
        for minute in [0, 30, 59, 60, 61, 120] {
            let now = t("2026-11-25T08:00:00Z") + Duration::minutes(minute);
            // Keep the two newest minutes breaching.
            *reader.0.lock().expect("lock") = vec![
                (now - Duration::minutes(2), 300.0),
                (now - Duration::minutes(1), 320.0),
            ];
            run(&reader, &outbox, &store, p, now).await.expect("run");
        }
        // First at 08:00, repeats at 09:00 and 10:00.
        assert_eq!(outbox.sent.lock().expect("lock").len(), 3);
    }

    #[tokio::test]
    async fn silences_mute_and_the_alert_notifies_once_they_end() {
        let (reader, outbox, store) = (
            breaching_reader(),
            Outbox::default(),
            MemoryStore::default(),
        );
        let silences = [Silence {
            matchers: [("alertname".to_owned(), "HighLatency".to_owned())].into(),
            starts_at: None,
            ends_at: t("2026-11-25T08:30:00Z"),
            created_by: "on-call".into(),
            comment: "database failover".into(),
        }];
        let rules = [rule()];
        let p = Plan {
            silences: &silences,
            ..plan(&rules)
        };
        let muted = run(&reader, &outbox, &store, p, t("2026-11-25T08:00:00Z"))
            .await
            .expect("run");
        assert!(
            matches!(&muted.rules[0].muted, Some(Muted::Silence { comment, .. }) if comment == "database failover")
        );
        assert_eq!(muted.rules[0].state, "firing");
        assert!(subjects(&outbox).is_empty());
        *reader.0.lock().expect("lock") = series(&[
            ("2026-11-25T08:58:00Z", 300.0),
            ("2026-11-25T08:59:00Z", 320.0),
        ]);
        run(&reader, &outbox, &store, p, t("2026-11-25T09:00:00Z"))
            .await
            .expect("run");
        assert_eq!(
            subjects(&outbox),
            ["[FIRING] HighLatency: latency 320 > 250"]
        );
    }

    #[tokio::test]
    async fn an_inhibited_alert_stays_quiet_and_routes_pick_topics() {
        let (reader, outbox, store) = (
            breaching_reader(),
            Outbox::default(),
            MemoryStore::default(),
        );
        let mut down = rule();
        down.alert = "CheckoutDown".into();
        down.labels.insert("team".into(), "payments".into());
        let policy: Policy = vigil_shared::config::parse_yaml(
            "p.yaml",
            "routes: [{match: {team: payments}, topic_arn: 'arn:payments'}]\n\
             inhibit: [{source_match: {alertname: CheckoutDown}, target_match: {alertname: HighLatency}, equal: [service]}]\n",
        )
        .expect("policy");
        let rules = [down, rule()];
        let p = Plan {
            policy: &policy,
            ..plan(&rules)
        };
        let summary = run(&reader, &outbox, &store, p, t("2026-11-25T08:00:00Z"))
            .await
            .expect("run");
        assert!(
            matches!(&summary.rules[1].muted, Some(Muted::Inhibition { source }) if source == "CheckoutDown")
        );
        assert_eq!(
            subjects(&outbox),
            ["[FIRING] CheckoutDown: latency 320 > 250"]
        );
        assert_eq!(*outbox.topics.lock().expect("lock"), ["arn:payments"]);
    }
}
