//! What the alert function's in-memory tests share: rules, series, invocations, state reads.

#![allow(dead_code)]

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use vigil_alert::outbox::{StateFile, StateLocation};
use vigil_alert::policy::Policy;
use vigil_alert::{Invocation, Plan, Rule, load};
use vigil_shared::reader::Series;
use vigil_shared::testing::{MemoryStore, SeriesKey, SeriesReader};

pub const RULES: &str = r#"
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

pub const DEFAULT_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:vigil-alerts";

pub fn rule() -> Rule {
    load("t.yaml", RULES).expect("valid").remove(0)
}

/// A rule named `name` on the series `service=name`.
pub fn named(name: &str) -> Rule {
    let mut r = rule();
    r.alert = name.to_owned();
    r.metric.dimensions.insert("service".into(), name.into());
    r
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

pub fn t0() -> DateTime<Utc> {
    t("2026-11-25T08:00:00Z")
}

pub static LOCATION: std::sync::LazyLock<StateLocation> =
    std::sync::LazyLock::new(|| StateLocation {
        bucket: "b".into(),
        key: "state/alert.json".into(),
    });

pub static NO_POLICY: Policy = Policy::NONE;

pub fn plan<'a>(rules: &'a [Rule], policy: &'a Policy) -> Plan<'a> {
    Plan {
        rules,
        policy,
        silences: &[],
        default_topic: DEFAULT_TOPIC,
        state: &LOCATION,
    }
}

/// A run for instant `at` by `id`, starting a few seconds after it, with 50 s to live.
pub fn inv(id: &str, at: DateTime<Utc>) -> Invocation {
    let now = at + Duration::seconds(3);
    Invocation {
        id: id.to_owned(),
        at,
        now,
        deadline: now + Duration::seconds(50),
        stop: Instant::now() + StdDuration::from_secs(30),
    }
}

/// Points of `service=name`'s latency: breaching (900) or fine (100), the two minutes
/// before `now`.
pub fn latency(reader: &mut SeriesReader, name: &str, now: DateTime<Utc>, breaching: bool) {
    let v = if breaching { 900.0 } else { 100.0 };
    let points: Series = (1..=3)
        .rev()
        .map(|m| (now - Duration::minutes(m), v))
        .collect();
    reader.set(
        SeriesKey::metric("Shop", "latency", &[("service", name)]),
        points,
    );
}

/// One `*` rule over the pods of service `api`, and `n` pods all breaching the three minutes
/// before `t0()`: a big outage.
pub fn outage(n: usize) -> (Vec<Rule>, SeriesReader) {
    let mut r = rule();
    r.metric.dimensions.insert("pod".into(), "*".into());
    let mut reader = SeriesReader::default();
    for i in 0..n {
        let pod = format!("checkout-{i:05}");
        reader.series.push((
            SeriesKey::metric("Shop", "latency", &[("service", "api"), ("pod", &pod)]),
            (1..=3)
                .rev()
                .map(|m| (t0() - Duration::minutes(m), 900.0))
                .collect(),
        ));
    }
    (vec![r], reader)
}

/// The invocation Lambda hands over at `now`, with 50 s to live.
pub fn call(id: &str, now: DateTime<Utc>) -> vigil_alert::Call {
    vigil_alert::Call {
        request_id: id.into(),
        now,
        deadline: now + Duration::seconds(50),
    }
}

/// A "CloudWatch Alarm State Change" event as EventBridge delivers it ("CloudWatch events sent
/// to EventBridge", CloudWatch User Guide), for alarm `name` entering `state` at `stamp`.
pub fn alarm_event(name: &str, state: &str, stamp: &str, description: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": "e", "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": "123456789012", "time": stamp, "region": "us-east-1",
        "resources": [format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")],
        "detail": {
            "alarmName": name,
            "state": {"value": state, "reason": "r", "timestamp": stamp},
            "previousState": {"value": "OK", "reason": "r", "timestamp": "2026-11-25T07:00:00.000+0000"},
            "configuration": {"description": description, "metrics": []}
        }
    })
}

pub fn state(store: &MemoryStore) -> StateFile {
    serde_json::from_slice(&store.body(&LOCATION.bucket, &LOCATION.key).expect("state"))
        .expect("state JSON")
}
