//! Vigil `alert`: evaluates alert rules on CloudWatch metrics and notifies through SNS.
//!
//! The pure part (rules, evaluation, message text) plus [`run`], generic over a
//! [`MetricReader`] and a [`Notifier`]; `main.rs` only wires it to the Lambda runtime.
//!
//! One run evaluates every rule at one timestamp, the scheduled time of the EventBridge event,
//! so that a retried invocation evaluates the same instant.

pub mod rules;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use vigil_shared::aws::required_env;
use vigil_shared::reader::{Series, StatQuery};
use vigil_shared::{ConfigSource, MetricReader, Notification, Notifier, ObjectStore, Result};

pub use rules::{Rule, load};

/// What one rule's evaluation found.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Outcome {
    /// The newest complete data point breaches the condition.
    Firing { value: f64, at: DateTime<Utc> },
    /// The newest complete data point does not breach it.
    Ok { value: f64, at: DateTime<Utc> },
    /// No complete data point in the lookback window.
    NoData,
}

/// Evaluates one rule over its series at `now`. A data point counts once its period has ended
/// (`timestamp + period <= now`): a period still filling up would compare a partial value.
pub fn evaluate(rule: &Rule, series: &[(DateTime<Utc>, f64)], now: DateTime<Utc>) -> Outcome {
    let period = Duration::seconds(i64::try_from(rule.metric.period.seconds()).unwrap_or(i64::MAX));
    let window_start =
        now - Duration::seconds(i64::try_from(rule.lookback().seconds()).unwrap_or(i64::MAX));
    let newest = series
        .iter()
        .filter(|(t, v)| *t >= window_start && *t + period <= now && v.is_finite())
        .max_by_key(|(t, _)| *t);
    match newest {
        None => Outcome::NoData,
        Some(&(at, value))
            if rule
                .condition
                .operator
                .holds(value, rule.condition.threshold) =>
        {
            Outcome::Firing { value, at }
        }
        Some(&(at, value)) => Outcome::Ok { value, at },
    }
}

/// The CloudWatch query for rule number `index`.
pub fn query_for(rule: &Rule, index: usize) -> StatQuery {
    StatQuery {
        id: format!("r{index}"),
        namespace: rule.metric.namespace.clone(),
        metric: rule.metric.name.clone(),
        dimensions: rule.metric.dimensions(),
        stat: rule.metric.stat.clone(),
        period: u32::try_from(rule.metric.period.seconds()).unwrap_or(u32::MAX),
    }
}

/// Labels that become SNS message attributes, so subscriptions can filter on them.
pub const ATTRIBUTE_LABELS: [&str; 3] = ["severity", "team", "service"];

/// The notification for a firing rule: a subject and text for people, attributes for filters.
pub fn notification(rule: &Rule, value: f64, at: DateTime<Utc>) -> Notification {
    let c = rule.condition;
    let dims = rule
        .metric
        .dimensions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "{alert} is FIRING.\n\n{metric} ({stat} per {period}) in {ns} {{{dims}}} was {value} at {at}; \
         the rule fires when it is {op} {threshold}.\n",
        alert = rule.alert,
        metric = rule.metric.name,
        stat = rule.metric.stat,
        period = rule.metric.period,
        ns = rule.metric.namespace,
        at = at.to_rfc3339_opts(SecondsFormat::Secs, true),
        op = c.operator.symbol(),
        threshold = c.threshold,
    );
    for (key, title) in [
        ("summary", "Summary"),
        ("description", "Description"),
        ("runbook_url", "Runbook"),
    ] {
        if let Some(v) = rule.annotations.get(key) {
            text.push_str(&format!("\n{title}: {v}"));
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
        ("status".to_owned(), "firing".to_owned()),
    ];
    for label in ATTRIBUTE_LABELS {
        if let Some(v) = rule.labels.get(label).filter(|v| !v.is_empty()) {
            attributes.push((label.to_owned(), v.clone()));
        }
    }
    Notification {
        subject: format!(
            "[FIRING] {}: {} {} {} {}",
            rule.alert,
            rule.metric.name,
            value,
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

/// One rule's result in a run's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleResult {
    pub alert: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The SNS message id, when a notification was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// What a run did; the invocation's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    pub evaluated_at: DateTime<Utc>,
    pub get_metric_data_calls: usize,
    pub rules: Vec<RuleResult>,
}

/// Evaluates every rule at `now` with one batched read, and publishes one notification per
/// firing rule to `topic_arn`. Any failure to read or to publish fails the run.
pub async fn run(
    reader: &impl MetricReader,
    notifier: &impl Notifier,
    rules: &[Rule],
    topic_arn: &str,
    now: DateTime<Utc>,
) -> Result<RunSummary> {
    let queries: Vec<StatQuery> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| query_for(r, i))
        .collect();
    let start = read_start(rules, now);
    let fetched = reader.fetch(&queries, start, now).await?;
    let empty: Series = Vec::new();
    let mut results = Vec::with_capacity(rules.len());
    for (rule, query) in rules.iter().zip(&queries) {
        let series = fetched.series.get(&query.id).unwrap_or(&empty);
        let outcome = evaluate(rule, series, now);
        let message_id = match &outcome {
            Outcome::Firing { value, at } => {
                let id = notifier
                    .publish(topic_arn, &notification(rule, *value, *at))
                    .await?;
                tracing::info!(alert = %rule.alert, value, message_id = %id, "notification sent");
                Some(id)
            }
            Outcome::Ok { .. } | Outcome::NoData => None,
        };
        results.push(RuleResult {
            alert: rule.alert.clone(),
            outcome,
            message_id,
        });
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &results {
        let state = match r.outcome {
            Outcome::Firing { .. } => "firing",
            Outcome::Ok { .. } => "ok",
            Outcome::NoData => "no_data",
        };
        *counts.entry(state).or_default() += 1;
    }
    tracing::info!(rules = rules.len(), calls = fetched.calls, states = ?counts, "evaluation done");
    Ok(RunSummary {
        evaluated_at: now,
        get_metric_data_calls: fetched.calls,
        rules: results,
    })
}

/// Where the function finds its rules and where it notifies.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    /// `VIGIL_RULES`: `s3://bucket/key` or a file path.
    pub rules: ConfigSource,
    /// `VIGIL_ALERT_TOPIC_ARN`.
    pub topic_arn: String,
}

impl AlertConfig {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            rules: required_env("VIGIL_RULES")?.parse()?,
            topic_arn: required_env("VIGIL_ALERT_TOPIC_ARN")?,
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
    let text = config.rules.read(store).await?;
    let rules = load(&config.rules.to_string(), &text)?;
    let summary = run(reader, notifier, &rules, &config.topic_arn, at).await?;
    serde_json::to_value(summary)
        .map_err(|e| vigil_shared::Error::InvalidInput(format!("summary not serializable: {e}")))
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

    fn rule() -> Rule {
        load(
            "t.yaml",
            r#"
groups:
  - name: g
    rules:
      - alert: HighLatency
        metric: {namespace: Shop, name: latency, dimensions: {service: api}, stat: Average, period: 1m}
        condition: {operator: ">", threshold: 250}
        labels: {severity: page, team: checkout, service: api, other: x}
        annotations: {summary: "Checkout is slow", runbook_url: "https://runbooks.example.com/latency"}
"#,
        )
        .expect("valid")
        .remove(0)
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn compares_the_newest_complete_point() {
        let r = rule();
        let now = t("2026-11-25T08:00:00Z");
        let series = vec![
            (t("2026-11-25T07:57:00Z"), 100.0),
            (t("2026-11-25T07:58:00Z"), 300.0),
            // still filling at 08:00 (period ends 08:00:00 inclusive: complete)
            (t("2026-11-25T07:59:00Z"), 260.0),
            // not complete until 08:01
            (t("2026-11-25T08:00:00Z"), 10.0),
        ];
        assert_eq!(
            evaluate(&r, &series, now),
            Outcome::Firing {
                value: 260.0,
                at: t("2026-11-25T07:59:00Z")
            }
        );
        assert_eq!(
            evaluate(&r, &series[..1], now),
            Outcome::Ok {
                value: 100.0,
                at: t("2026-11-25T07:57:00Z")
            }
        );
    }

    #[test]
    fn old_or_absent_points_are_no_data() {
        let r = rule();
        let now = t("2026-11-25T08:00:00Z");
        assert_eq!(evaluate(&r, &[], now), Outcome::NoData);
        assert_eq!(
            evaluate(&r, &[(t("2026-11-25T07:50:00Z"), 999.0)], now),
            Outcome::NoData
        );
        assert_eq!(
            evaluate(&r, &[(t("2026-11-25T07:58:00Z"), f64::NAN)], now),
            Outcome::NoData
        );
    }

    #[test]
    fn notification_is_actionable_and_filterable() {
        let n = notification(&rule(), 312.5, t("2026-11-25T07:59:00Z"));
        assert_eq!(n.subject, "[FIRING] HighLatency: latency 312.5 > 250");
        assert!(
            n.message
                .contains("Runbook: https://runbooks.example.com/latency")
        );
        assert!(n.message.contains("{service=api}"));
        let attrs: BTreeMap<_, _> = n.attributes.iter().cloned().collect();
        assert_eq!(attrs.get("severity").map(String::as_str), Some("page"));
        assert_eq!(attrs.get("status").map(String::as_str), Some("firing"));
        assert_eq!(
            attrs.get("alertname").map(String::as_str),
            Some("HighLatency")
        );
        assert!(!attrs.contains_key("other"));
    }

    #[test]
    fn reads_start_on_period_boundaries() {
        let mut a = rule();
        let mut b = rule();
        a.metric.period = vigil_shared::Span(60);
        b.metric.period = vigil_shared::Span(300);
        b.lookback = Some(vigil_shared::Span(900));
        let now = t("2026-11-25T08:07:21Z");
        assert_eq!(read_start(&[a.clone()], now), t("2026-11-25T08:02:00Z"));
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

    struct FixedReader(Series);
    impl MetricReader for FixedReader {
        async fn fetch(
            &self,
            queries: &[StatQuery],
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Fetched> {
            Ok(Fetched {
                series: queries
                    .iter()
                    .map(|q| (q.id.clone(), self.0.clone()))
                    .collect(),
                calls: 1,
            })
        }
    }

    #[derive(Default)]
    struct Outbox(Mutex<Vec<Notification>>, bool);
    impl Notifier for Outbox {
        async fn publish(&self, _: &str, n: &Notification) -> Result<String> {
            if self.1 {
                return Err(vigil_shared::Error::Aws {
                    service: "SNS",
                    operation: "Publish",
                    message: "down".into(),
                    retryable: true,
                });
            }
            let mut out = self.0.lock().expect("lock");
            out.push(n.clone());
            Ok(format!("m{}", out.len()))
        }
    }

    #[tokio::test]
    async fn run_publishes_once_per_firing_rule_and_fails_when_sns_does() {
        let now = t("2026-11-25T08:00:00Z");
        let reader = FixedReader(vec![(t("2026-11-25T07:58:00Z"), 400.0)]);
        let outbox = Outbox::default();
        let summary = run(&reader, &outbox, &[rule()], "arn:topic", now)
            .await
            .expect("run");
        assert_eq!(summary.rules[0].message_id.as_deref(), Some("m1"));
        assert_eq!(outbox.0.lock().expect("lock").len(), 1);

        let quiet = FixedReader(vec![(t("2026-11-25T07:58:00Z"), 10.0)]);
        let summary = run(&quiet, &outbox, &[rule()], "arn:topic", now)
            .await
            .expect("run");
        assert_eq!(summary.rules[0].message_id, None);
        assert_eq!(outbox.0.lock().expect("lock").len(), 1);

        let broken = Outbox(Mutex::default(), true);
        assert!(
            run(&reader, &broken, &[rule()], "arn:topic", now)
                .await
                .is_err()
        );
    }
}
