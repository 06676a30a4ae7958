//! The weekly review through the function's handler: a week of scheduled runs records the
//! episodes in the state's history, then the review's scheduled invocation writes the review
//! to S3 and sends it once, however often it is retried.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{Value, json};
use vigil_alert::{AlertConfig, handle_event};
use vigil_shared::ObjectStore;
use vigil_shared::testing::{MemoryStore, RecordingNotifier, SeriesKey, SeriesReader};

const RULES_FILE: &str = r#"
policy:
  review: {quiet_hours: "22:00-07:00", timezone: Europe/Berlin}
groups:
  - name: g
    rules:
      - alert: NightlyBlip
        metric: {namespace: Shop, name: latency, dimensions: {service: blip}, stat: Average, period: 1m}
        condition: {operator: ">", threshold: 250}
        labels: {severity: page}
      - alert: CheckoutDown
        metric: {namespace: Shop, name: latency, dimensions: {service: down}, stat: Average, period: 1m}
        condition: {operator: ">", threshold: 250}
        labels: {severity: page}
"#;

async fn config(store: &MemoryStore) -> AlertConfig {
    store
        .put(
            "b",
            "rules.yaml",
            RULES_FILE.as_bytes().to_vec(),
            "text/yaml",
        )
        .await
        .expect("put");
    AlertConfig {
        rules: "s3://b/rules.yaml".parse().expect("location"),
        topic_arn: DEFAULT_TOPIC.into(),
        state: LOCATION.clone(),
        silences: None,
        allowed_topics: vigil_alert::config::allowed_topics(DEFAULT_TOPIC, ""),
        smoke: None,
        math: Default::default(),
        review_prefix: vigil_alert::config::REVIEW_PREFIX.to_owned(),
    }
}

/// Minute points of `service`'s latency over `from..until`: 900 in `bad`, 100 elsewhere.
fn points(reader: &mut SeriesReader, service: &str, windows: &[(DateTime<Utc>, i64, (i64, i64))]) {
    let mut series = Vec::new();
    for &(start, minutes, (bad_from, bad_to)) in windows {
        for m in 0..minutes {
            let v = if (bad_from..bad_to).contains(&m) {
                900.0
            } else {
                100.0
            };
            series.push((start + Duration::minutes(m), v));
        }
    }
    reader.set(
        SeriesKey::metric("Shop", "latency", &[("service", service)]),
        series,
    );
}

fn review_event(until: DateTime<Utc>) -> Value {
    json!({"vigil": "review", "scheduled_time": until.to_rfc3339(), "attempt": "1",
        "execution_id": "e", "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/r"})
}

#[tokio::test]
async fn a_week_of_runs_is_reviewed_once_with_the_rules_to_fix_first() {
    vigil_shared::emf::silence();
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let cfg = config(&store).await;
    let mut reader = SeriesReader::default();
    // Three nights at 02:00 in Berlin (01:00 UTC), three bad minutes; one afternoon outage of
    // forty minutes. The runs: the week's first hour, then around each episode.
    let night = |day: u32| t(&format!("2026-11-{day}T00:55:00Z"));
    points(
        &mut reader,
        "blip",
        &[
            (t("2026-11-23T07:00:00Z"), 5, (0, 0)),
            (night(24), 15, (5, 8)),
            (night(25), 15, (5, 8)),
            (night(26), 15, (5, 8)),
        ],
    );
    points(
        &mut reader,
        "down",
        &[
            (t("2026-11-23T07:00:00Z"), 5, (0, 0)),
            (t("2026-11-27T13:55:00Z"), 55, (5, 45)),
        ],
    );
    let mut runs: Vec<DateTime<Utc>> = (1..5)
        .map(|m| t("2026-11-23T07:00:00Z") + Duration::minutes(m))
        .collect();
    for day in 24..=26 {
        runs.extend((1..15).map(|m| night(day) + Duration::minutes(m)));
    }
    runs.extend((1..55).map(|m| t("2026-11-27T13:55:00Z") + Duration::minutes(m)));
    for (i, at) in runs.iter().enumerate() {
        let ev = json!({"vigil": "scheduled", "scheduled_time": at.to_rfc3339(), "attempt": "1"});
        handle_event(
            &reader,
            &notifier,
            &store,
            &cfg,
            &ev,
            &call(&format!("run-{i}"), *at + Duration::seconds(3)),
        )
        .await
        .expect("run");
    }
    let pages = notifier.published().len();
    assert_eq!(pages, 8, "4 episodes, each firing and resolved");

    let until = t("2026-11-30T08:00:00Z");
    let out = handle_event(
        &reader,
        &notifier,
        &store,
        &cfg,
        &review_event(until),
        &call("review", until + Duration::seconds(2)),
    )
    .await
    .expect("review");
    assert_eq!(out["review"]["fix_first"], json!(["NightlyBlip"]), "{out}");
    assert_eq!(out["already_reviewed"], false);
    let location = "s3://b/reviews/alert/2026-11-30T08-00-00Z.json";
    assert_eq!(out["location"], location);

    // The object in S3: every rule's numbers.
    let body = store
        .body("b", "reviews/alert/2026-11-30T08-00-00Z.json")
        .expect("the review in S3");
    let written: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(written["time_zone"], "Europe/Berlin");
    assert!(written.get("complete_from").is_none(), "{written}");
    let blip = &written["rules"][0];
    assert_eq!(blip["alert"], "NightlyBlip");
    for (field, want) in [
        ("pages", 3),
        ("night_pages", 3),
        ("episodes", 3),
        ("short_episodes", 3),
        ("resolved_before_response", 3),
        ("median_firing_seconds", 180),
    ] {
        assert_eq!(blip[field], want, "{field}: {blip}");
    }
    assert_eq!(
        blip["findings"],
        json!(["woke_someone_for_nothing", "not_actionable", "flapping"])
    );
    let down = &written["rules"][1];
    assert_eq!(down["alert"], "CheckoutDown");
    assert_eq!(
        (&down["pages"], &down["median_firing_seconds"]),
        (&json!(1), &json!(2_400)),
        "{down}"
    );
    assert_eq!(down["findings"], json!([]));

    // The message: once, on the stack's topic, naming the rule to fix and where the rest is.
    let reviews = |n: &RecordingNotifier| {
        n.published()
            .into_iter()
            .filter(|p| p.attribute("alertname") == Some("WeeklyReview"))
            .collect::<Vec<_>>()
    };
    let sent = reviews(&notifier);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic_arn, DEFAULT_TOPIC);
    assert_eq!(sent[0].key, format!("WeeklyReview/{}", until.timestamp()));
    let n = &sent[0].notification;
    assert_eq!(
        n.subject,
        "[REVIEW] Alerts, 7 days to 2026-11-30: 4 pages, 1 rule to fix first"
    );
    assert!(n.message.contains("1. NightlyBlip (page)"), "{}", n.message);
    assert!(n.message.contains(location), "{}", n.message);

    // A retry of the same week, and a late run for an older one, send nothing more.
    for (id, at) in [("retry", until), ("older", until - Duration::days(7))] {
        let again = handle_event(
            &reader,
            &notifier,
            &store,
            &cfg,
            &review_event(at),
            &call(id, until + Duration::minutes(3)),
        )
        .await
        .expect("again");
        assert_eq!(again["already_reviewed"], true, "{id}: {again}");
    }
    assert_eq!(reviews(&notifier).len(), 1);
}

/// A review of a week that has not ended (an invocation by hand with a wrong time) is refused:
/// it would mark every week up to it as reviewed.
#[tokio::test]
async fn a_week_not_ended_is_not_reviewed() {
    let store = MemoryStore::default();
    let cfg = config(&store).await;
    let now = t("2026-11-30T08:00:00Z");
    let err = handle_event(
        &SeriesReader::default(),
        &RecordingNotifier::default(),
        &store,
        &cfg,
        &review_event(now + Duration::days(7)),
        &call("early", now),
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("has not ended"), "{err}");
    assert!(
        store.body("b", "state/alert.json").is_none(),
        "nothing written"
    );
}

#[tokio::test]
async fn a_review_with_invalid_settings_is_refused_at_load() {
    let store = MemoryStore::default();
    let mut cfg = config(&store).await;
    let bad = RULES_FILE.replace("Europe/Berlin", "Mars/Olympus");
    store
        .put("b", "bad.yaml", bad.into_bytes(), "text/yaml")
        .await
        .expect("put");
    cfg.rules = "s3://b/bad.yaml".parse().expect("location");
    let until = t("2026-11-30T08:00:00Z");
    let err = handle_event(
        &SeriesReader::default(),
        &RecordingNotifier::default(),
        &store,
        &cfg,
        &review_event(until),
        &call("review", until),
    )
    .await
    .expect_err("refused");
    assert!(
        err.to_string().contains("policy.review") && err.to_string().contains("Mars/Olympus"),
        "{err}"
    );
}
