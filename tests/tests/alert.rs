//! `alert` end to end: metrics in the local emulator's CloudWatch, the rules file in its S3,
//! notifications read back from an SQS queue subscribed to the SNS topic.

use std::time::Duration as StdDuration;

use aws_sdk_cloudwatch::primitives::DateTime as CwDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use vigil_e2e::{
    Function, LocalAws, binary, review_event, sample_config, scheduled_event, unique,
    whole_minute_ago,
};

async fn put_points(aws: &LocalAws, namespace: &str, name: &str, points: &[(DateTime<Utc>, f64)]) {
    let data: Vec<MetricDatum> = points
        .iter()
        .map(|(t, v)| {
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(
                    Dimension::builder()
                        .name("service")
                        .value("checkout")
                        .build(),
                )
                .value(*v)
                .timestamp(CwDateTime::from_millis(t.timestamp_millis()))
                .build()
        })
        .collect();
    aws.cloudwatch
        .put_metric_data()
        .namespace(namespace)
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("PutMetricData");
}

/// Latency over 250 ms in the last two minutes, orders still coming in: only
/// CheckoutLatencyHigh fires.
async fn latency_breaching_orders_flowing(s: &Setup, now: DateTime<Utc>) {
    let minutes_ago = |m| now - Duration::minutes(m);
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[(minutes_ago(2), 400.0), (minutes_ago(1), 410.0)],
    )
    .await;
    put_points(
        &s.aws,
        &s.namespace,
        "orders",
        &[(minutes_ago(2), 5.0), (minutes_ago(1), 5.0)],
    )
    .await;
}

struct Setup {
    aws: LocalAws,
    namespace: String,
    bucket: String,
    topic: String,
    queue: String,
}

async fn setup() -> Setup {
    let aws = LocalAws::connect().await;
    let namespace = unique("E2E/Alert");
    let bucket = aws.create_bucket("vigil-rules").await;
    let rules = sample_config("rules.example.yaml").replace("Shop/Checkout", &namespace);
    aws.put_object(&bucket, "rules.yaml", rules).await;
    let (topic, queue) = aws.topic_with_queue("vigil-alerts").await;
    Setup {
        aws,
        namespace,
        bucket,
        topic,
        queue,
    }
}

async fn alert(s: &Setup, rules_key: &str) -> Function {
    alert_with(s, rules_key, &[]).await
}

/// The alert function with its rules, its state in the setup's bucket, notifying the setup's
/// topic, with `extra` settings.
async fn alert_with(s: &Setup, rules_key: &str, extra: &[(&str, &str)]) -> Function {
    let rules = format!("s3://{}/{rules_key}", s.bucket);
    let mut env = vec![
        ("VIGIL_AWS_ENDPOINT_URL", s.aws.endpoint.as_str()),
        ("VIGIL_RULES", rules.as_str()),
        ("VIGIL_ALERT_TOPIC_ARN", s.topic.as_str()),
        ("VIGIL_STATE_BUCKET", s.bucket.as_str()),
    ];
    env.extend_from_slice(extra);
    Function::start("alert", &binary("alert"), &env).await
}

/// The state of each rule in a run's summary, in file order.
fn states(summary: &Value) -> Vec<(String, String)> {
    summary["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["state"].as_str().expect("state").to_owned(),
                r["condition"].as_str().expect("condition").to_owned(),
            )
        })
        .collect()
}

/// The states of the example's checkout group; its rules on Prometheus's recorded series,
/// which these tests write no data for, checked to be inactive without data.
fn checkout_states(summary: &Value) -> Vec<(String, String)> {
    let mut all = states(summary);
    let recorded = all.split_off(2);
    assert_eq!(
        recorded,
        [pair("inactive", "no_data"), pair("inactive", "no_data")],
        "{summary}"
    );
    all
}

fn pair(state: &str, condition: &str) -> (String, String) {
    (state.to_owned(), condition.to_owned())
}

#[tokio::test]
async fn a_breaching_metric_sends_one_notification_with_its_attributes() {
    let s = setup().await;
    let now = whole_minute_ago(0);
    // Latency breaches 250 ms in two of the last three minutes; orders keep flowing.
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[
            (now - Duration::minutes(3), 120.0),
            (now - Duration::minutes(2), 310.0),
            (now - Duration::minutes(1), 330.0),
        ],
    )
    .await;
    put_points(
        &s.aws,
        &s.namespace,
        "orders",
        &[
            (now - Duration::minutes(3), 41.0),
            (now - Duration::minutes(2), 40.0),
            (now - Duration::minutes(1), 38.0),
        ],
    )
    .await;

    let mut function = alert(&s, "rules.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(summary["get_metric_data_calls"], 1, "{summary}");
    assert_eq!(
        checkout_states(&summary),
        [pair("firing", "breaching"), pair("inactive", "ok")]
    );
    assert_eq!(summary["rules"][0]["value"], 330.0);
    assert_eq!(summary["rules"][0]["transition"], "firing");

    let messages = s
        .aws
        .receive_sns(&s.queue, 1, StdDuration::from_secs(20))
        .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    let sent = summary["sent"].as_object().expect("sent");
    assert_eq!(sent.values().next(), Some(&m["MessageId"]));
    assert_eq!(
        m["Subject"],
        "[FIRING] CheckoutLatencyHigh: latency 330 > 250"
    );
    // An SQS subscriber gets the JSON body (MessageStructure json), the text inside it.
    let body: Value =
        serde_json::from_str(m["Message"].as_str().expect("message")).expect("JSON body");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alertname"], "CheckoutLatencyHigh");
    assert_eq!(body["value"], 330.0);
    assert_eq!(body["labels"]["team"], "checkout");
    assert_eq!(body["condition"]["threshold"], 250.0);
    assert_eq!(body["condition"]["datapoints_to_alarm"], 2);
    assert_eq!(
        body["annotations"]["summary"],
        "Checkout requests take 330 ms on average (limit 250 ms)."
    );
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("Runbook: https://runbooks.example.com/checkout/latency"),
        "{text}"
    );
    let attr = |k: &str| m["MessageAttributes"][k]["Value"].clone();
    assert_eq!(attr("severity"), Value::from("page"));
    assert_eq!(attr("team"), Value::from("checkout"));
    assert_eq!(attr("service"), Value::from("checkout"));
    assert_eq!(attr("alertname"), Value::from("CheckoutLatencyHigh"));
    assert_eq!(attr("status"), Value::from("firing"));

    // The state is in S3; the next run, still breaching, sends nothing more.
    let state: Value =
        serde_json::from_slice(&s.aws.get_object(&s.bucket, "state/alert.json").await)
            .expect("state");
    assert_eq!(state["alerts"]["CheckoutLatencyHigh"]["phase"], "firing");
    let again = function
        .invoke(&scheduled_event(now + Duration::seconds(20)))
        .await
        .expect_response();
    assert_eq!(states(&again)[0], pair("firing", "breaching"));
    assert!(
        s.aws
            .receive_sns(&s.queue, 1, StdDuration::from_secs(2))
            .await
            .is_empty()
    );
}

/// A rule on metric math, evaluated by the function itself (`VIGIL_METRIC_MATH=local`, as the
/// local stack runs it): LocalStack answers the two plain statistics, and the error ratio they
/// make (with `FILL` for a minute without errors) breaches in two of the last two minutes.
#[tokio::test]
async fn metric_math_evaluated_by_the_function_fires_on_the_error_ratio() {
    let s = setup().await;
    let now = whole_minute_ago(0);
    let ago = |m| now - Duration::minutes(m);
    put_points(
        &s.aws,
        &s.namespace,
        "requests",
        &[(ago(3), 100.0), (ago(2), 100.0), (ago(1), 200.0)],
    )
    .await;
    // No errors at all three minutes ago: FILL makes that minute's ratio 0, not missing.
    put_points(
        &s.aws,
        &s.namespace,
        "errors",
        &[(ago(2), 12.0), (ago(1), 30.0)],
    )
    .await;
    let ns = &s.namespace;
    let rules = format!(
        r#"groups:
  - name: math
    rules:
      - alert: ErrorRatioHigh
        metric: {{namespace: {ns}, name: requests, dimensions: {{service: checkout}}, stat: Sum, period: 1m}}
        expression: "100 * FILL(errors, 0) / m"
        inputs:
          errors: {{namespace: {ns}, name: errors, dimensions: {{service: checkout}}, stat: Sum}}
        condition: {{operator: ">", threshold: 5}}
        evaluation_periods: 3
        datapoints_to_alarm: 2
        labels: {{severity: page, service: checkout}}
"#
    );
    s.aws.put_object(&s.bucket, "math.yaml", rules).await;
    let mut function = alert_with(&s, "math.yaml", &[("VIGIL_METRIC_MATH", "local")]).await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(states(&summary), [pair("firing", "breaching")], "{summary}");
    assert_eq!(summary["rules"][0]["value"], 15.0, "100 * 30 / 200");
    assert_eq!(summary["get_metric_data_calls"], 1, "{summary}");
    assert_eq!(
        summary["metrics_requested"], 2,
        "requests and errors: {summary}"
    );
    let messages = s
        .aws
        .receive_sns(&s.queue, 1, StdDuration::from_secs(20))
        .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        messages[0]["Subject"],
        "[FIRING] ErrorRatioHigh: requests 15 > 5"
    );
}

/// An objective's burn-rate alerts in the function, against LocalStack: ten minutes of 3 %
/// errors against 99.9 % page (30× the budget's rate over the hour and its last 5 minutes),
/// in a read of their own beside the plain rules' one, and the page states the budget left.
#[tokio::test]
async fn an_slo_burning_its_budget_pages_once() {
    let s = setup().await;
    let now = whole_minute_ago(0);
    let minutes: Vec<DateTime<Utc>> = (1..=10).map(|m| now - Duration::minutes(m)).collect();
    let points = |v: f64| minutes.iter().map(|t| (*t, v)).collect::<Vec<_>>();
    put_points(&s.aws, &s.namespace, "requests", &points(1_000.0)).await;
    put_points(&s.aws, &s.namespace, "errors", &points(30.0)).await;
    let ns = &s.namespace;
    let rules = format!(
        r#"groups:
  - name: slo
    slos:
      - name: CheckoutAvailability
        objective: 99.9
        total: {{namespace: {ns}, name: requests, dimensions: {{service: checkout}}}}
        errors: {{namespace: {ns}, name: errors, dimensions: {{service: checkout}}}}
        labels: {{team: checkout}}
        annotations: {{runbook_url: "https://runbooks.example.com/slo"}}
"#
    );
    s.aws.put_object(&s.bucket, "slo.yaml", rules).await;
    let mut function = alert(&s, "slo.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(
        states(&summary),
        [
            pair("firing", "breaching"),
            pair("firing", "breaching"),
            pair("firing", "breaching"),
            pair("firing", "breaching")
        ],
        "every window burns faster than its factor: {summary}"
    );
    assert_eq!(summary["rules"][0]["value"], 30.0, "{summary}");
    assert_eq!(
        summary["get_metric_data_calls"], 2,
        "two reads: the burn rules' own, and their objective's window by the hour"
    );
    assert_eq!(
        summary["metrics_requested"], 4,
        "the four alerts read the objective's two counts once, and its hours once: {summary}"
    );
    let messages = s
        .aws
        .receive_sns(&s.queue, 4, StdDuration::from_secs(20))
        .await;
    let subjects: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["Subject"].as_str())
        .collect();
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert!(
        subjects.contains(
            &"[FIRING] CheckoutAvailabilityBurnRate1h: burn rate 30 > 14.4, budget spent"
        ),
        "{subjects:?}"
    );
    // The budget left counts the ten minutes, by the hour before the last hour boundary and
    // by the minute after it: 300 errors of 10,000 events, thirty times the 10 allowed.
    let page = messages
        .iter()
        .find(|m| {
            m["Subject"]
                .as_str()
                .is_some_and(|s| s.contains("BurnRate1h"))
        })
        .expect("the page");
    let body: Value =
        serde_json::from_str(page["Message"].as_str().expect("message")).expect("JSON body");
    let budget = &body["condition"]["slo"]["budget"];
    assert_eq!(budget["left_percent"], -2900.0, "{body}");
    assert_eq!(
        (&budget["events"], &budget["bad_events"]),
        (&Value::from(10_000.0), &Value::from(300.0)),
        "{body}"
    );
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("Error budget left: none: the 30d budget is spent (3000 % of it used)")
            && text.contains("300 of 10000 events were bad (3 %; the objective allows 0.1 %)"),
        "{text}"
    );
}

/// The weekly review against LocalStack: an episode fired and resolved by two scheduled runs,
/// then the review's scheduled invocation writes the review to S3 and sends one message to the
/// topic; its retry sends nothing more.
#[tokio::test]
async fn the_weekly_review_is_written_to_s3_and_sent_once() {
    let s = setup().await;
    let base = whole_minute_ago(8);
    let mut points = vec![(base - Duration::minutes(1), 400.0)];
    points.extend((0..4).map(|m| (base + Duration::minutes(m), 100.0)));
    put_points(&s.aws, &s.namespace, "latency", &points).await;
    let ns = &s.namespace;
    let rules = format!(
        "groups:\n  - name: g\n    rules:\n      - {{alert: BlipHigh, metric: {{namespace: {ns}, name: latency, dimensions: {{service: checkout}}, stat: Average, period: 1m}}, condition: {{operator: \">\", threshold: 250}}, labels: {{severity: page}}}}\n"
    );
    s.aws.put_object(&s.bucket, "review.yaml", rules).await;
    let mut function = alert(&s, "review.yaml").await;
    for (at, want) in [(base, "firing"), (base + Duration::minutes(2), "resolved")] {
        let summary = function
            .invoke(&scheduled_event(at))
            .await
            .expect_response();
        assert_eq!(summary["rules"][0]["transition"], want, "{summary}");
    }
    let until = base + Duration::minutes(3);
    let out = function
        .invoke(&review_event(until))
        .await
        .expect_response();
    assert_eq!(out["already_reviewed"], false, "{out}");
    assert_eq!(
        out["review"]["fix_first"],
        serde_json::json!(["BlipHigh"]),
        "{out}"
    );
    let key = format!("reviews/alert/{}.json", until.format("%Y-%m-%dT%H-%M-%SZ"));
    assert_eq!(out["location"], format!("s3://{}/{key}", s.bucket));
    let written: Value =
        serde_json::from_slice(&s.aws.get_object(&s.bucket, &key).await).expect("review JSON");
    let rule = &written["rules"][0];
    assert_eq!(
        (&rule["alert"], &rule["pages"], &rule["episodes"]),
        (&Value::from("BlipHigh"), &Value::from(1), &Value::from(1)),
        "{written}"
    );
    assert_eq!(rule["resolved_before_response"], 1, "{written}");
    // The history began with the first run: the review says so.
    assert!(written["complete_from"].is_string(), "{written}");

    let messages = s
        .aws
        .receive_sns(&s.queue, 3, StdDuration::from_secs(20))
        .await;
    let review: Vec<&Value> = messages
        .iter()
        .filter(|m| {
            m["Subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("[REVIEW]"))
        })
        .collect();
    assert_eq!(review.len(), 1, "{messages:?}");
    assert_eq!(
        review[0]["Subject"],
        "[REVIEW] Alerts, 7 days to ".to_owned()
            + &until.format("%Y-%m-%d").to_string()
            + ": 1 page, 1 rule to fix first"
    );
    let body: Value =
        serde_json::from_str(review[0]["Message"].as_str().expect("message")).expect("JSON body");
    assert_eq!(body["kind"], "review");
    assert_eq!(body["review"]["rules"][0]["alert"], "BlipHigh");

    let again = function
        .invoke(&review_event(until))
        .await
        .expect_response();
    assert_eq!(again["already_reviewed"], true, "{again}");
    assert_eq!(again["sent"], serde_json::json!({}), "{again}");
}

#[tokio::test]
async fn a_quiet_metric_sends_nothing() {
    let s = setup().await;
    let now = whole_minute_ago(0);
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[(now - Duration::minutes(1), 90.0)],
    )
    .await;
    // Orders in each of the last three minutes: with fewer real points than the rule's three
    // periods, CloudWatch's evaluation fills the missing ones by the rule's policy (breaching
    // for this rule), and two missing minutes would fire it.
    put_points(
        &s.aws,
        &s.namespace,
        "orders",
        &[
            (now - Duration::minutes(3), 9.0),
            (now - Duration::minutes(2), 11.0),
            (now - Duration::minutes(1), 12.0),
        ],
    )
    .await;
    let mut function = alert(&s, "rules.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(
        checkout_states(&summary),
        [pair("inactive", "ok"), pair("inactive", "ok")]
    );
    assert_eq!(summary["rules"][0]["value"], 90.0);
    let messages = s
        .aws
        .receive_sns(&s.queue, 1, StdDuration::from_secs(3))
        .await;
    assert!(messages.is_empty(), "{messages:?}");
    // A completed run writes the heartbeat the stack's dead man's switch alarm watches.
    let heartbeats: Vec<Value> = function
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("Heartbeat").is_some())
        .collect();
    assert_eq!(heartbeats.len(), 1, "{:?}", function.logs());
    let line = &heartbeats[0];
    assert_eq!(line["Heartbeat"], 1.0);
    // Every rule of the example counts, with data or without.
    assert_eq!(line["SeriesEvaluated"], 4.0);
    assert_eq!(line["AlertsFiring"], 0.0);
    // What the reads cost: one metric per series of the example's four plain statistics.
    assert_eq!(line["MetricsRequested"], 4.0);
    assert_eq!(line["Function"], "alert");
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Vigil");
    assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
}

/// pending (nothing sent during `for`) → firing (one message) → resolved (one message), with
/// evaluation times taken from the scheduled events.
#[tokio::test]
async fn pending_then_firing_then_resolved() {
    let s = setup().await;
    let rules = format!(
        "groups:\n  - name: g\n    rules:\n      - alert: SlowCheckout\n        \
         metric: {{namespace: {ns}, name: latency, dimensions: {{service: checkout}}, stat: Maximum, period: 1m}}\n        \
         condition: {{operator: \">\", threshold: 250}}\n        for: 2m\n        \
         labels: {{severity: page, service: checkout}}\n        \
         annotations: {{runbook_url: \"https://runbooks.example.com/slow\"}}\n",
        ns = s.namespace
    );
    s.aws.put_object(&s.bucket, "for.yaml", rules).await;
    let base = whole_minute_ago(12);
    let minute = |m: i64| base + Duration::minutes(m);
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[
            (minute(0), 300.0),
            (minute(1), 300.0),
            (minute(2), 300.0),
            (minute(3), 300.0),
            (minute(4), 100.0),
            (minute(5), 100.0),
        ],
    )
    .await;
    let mut function = alert(&s, "for.yaml").await;
    let mut seen = Vec::new();
    for m in [1, 2, 3, 4, 5, 6] {
        let summary = function
            .invoke(&scheduled_event(minute(m)))
            .await
            .expect_response();
        seen.push(states(&summary).remove(0).0);
    }
    assert_eq!(
        seen,
        [
            "pending", "pending", "firing", "firing", "inactive", "inactive"
        ]
    );
    let messages = s
        .aws
        .receive_sns(&s.queue, 2, StdDuration::from_secs(20))
        .await;
    let statuses: Vec<&str> = messages
        .iter()
        .map(|m| {
            m["MessageAttributes"]["status"]["Value"]
                .as_str()
                .expect("status")
        })
        .collect();
    assert_eq!(statuses, ["firing", "resolved"], "{messages:?}");
}

#[tokio::test]
async fn two_concurrent_runs_send_one_notification() {
    let s = setup().await;
    let now = whole_minute_ago(0);
    latency_breaching_orders_flowing(&s, now).await;
    let mut a = alert(&s, "rules.yaml").await;
    let mut b = alert(&s, "rules.yaml").await;
    let event = scheduled_event(now);
    let (ra, rb) = tokio::join!(a.invoke(&event), b.invoke(&event));
    let (ra, rb) = (ra.expect_response(), rb.expect_response());
    let superseded = [&ra, &rb]
        .iter()
        .filter(|r| r["superseded"] == true)
        .count();
    let sent: usize = [&ra, &rb]
        .iter()
        .map(|r| r["sent"].as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(sent, 1, "{ra}\n{rb}");
    assert!(superseded <= 1, "{ra}\n{rb}");
    let messages = s
        .aws
        .receive_sns(&s.queue, 1, StdDuration::from_secs(5))
        .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
}

/// A route to a topic that does not exist (SNS answers NotFound, as it answers
/// AuthorizationError for a topic the role may not use): that message is set aside and
/// announced on the default topic, and the other alert of the same run is delivered. Before,
/// the first failed publish failed the run and blocked every later message.
#[tokio::test]
async fn a_route_to_a_missing_topic_leaves_the_other_alerts_delivered() {
    let s = setup().await;
    let missing = format!(
        "arn:aws:sns:us-east-1:000000000000:{}",
        unique("vigil-deleted-topic")
    );
    let rules = format!(
        "policy:\n  routes:\n    - {{match: {{alertname: CheckoutOrdersStopped}}, topic_arn: \"{missing}\"}}\n{}",
        sample_config("rules.example.yaml").replace("Shop/Checkout", &s.namespace)
    );
    s.aws
        .put_object(&s.bucket, "missing-route.yaml", rules)
        .await;
    let now = whole_minute_ago(0);
    // Latency breaches and no orders arrive: both rules fire, one routed to the missing topic.
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[
            (now - Duration::minutes(2), 400.0),
            (now - Duration::minutes(1), 410.0),
        ],
    )
    .await;
    let mut function = alert_with(
        &s,
        "missing-route.yaml",
        &[("VIGIL_ALLOWED_TOPIC_ARNS", missing.as_str())],
    )
    .await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(
        checkout_states(&summary),
        [pair("firing", "breaching"), pair("firing", "no_data")]
    );
    assert_eq!(
        summary["set_aside"],
        serde_json::json!([format!("CheckoutOrdersStopped/{}/firing", now.timestamp())]),
        "{summary}"
    );
    let messages = s
        .aws
        .receive_sns(&s.queue, 2, StdDuration::from_secs(20))
        .await;
    let mut subjects: Vec<&str> = messages
        .iter()
        .map(|m| m["Subject"].as_str().unwrap_or_default())
        .collect();
    subjects.sort_unstable();
    assert_eq!(subjects.len(), 2, "{messages:?}");
    assert_eq!(
        subjects[0],
        "[FIRING] CheckoutLatencyHigh: latency 410 > 250"
    );
    assert!(
        subjects[1].starts_with("[UNDELIVERABLE] 1 notification(s) to vigil-deleted-topic"),
        "{}",
        subjects[1]
    );
    let announcement = messages
        .iter()
        .find(|m| m["MessageAttributes"]["alertname"]["Value"] == "VigilUndeliverable")
        .expect("announcement");
    let body: Value =
        serde_json::from_str(announcement["Message"].as_str().expect("message")).expect("JSON");
    assert!(
        body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("NotFound"),
        "{body}"
    );
    // Set aside once: the next run neither retries it nor announces it again.
    let next = function
        .invoke(&scheduled_event(now + Duration::minutes(1)))
        .await
        .expect_response();
    assert_eq!(next["set_aside"], Value::Null, "{next}");
    let state: Value =
        serde_json::from_slice(&s.aws.get_object(&s.bucket, "state/alert.json").await)
            .expect("state");
    assert_eq!(state["set_aside"].as_array().map(Vec::len), Some(1));
    assert_eq!(state["outbox"].as_array().map(Vec::len), Some(0));
}

/// Routes send by labels to another topic; a silence in S3 mutes an alert; the alert that
/// fires on missing data (no orders at all) is the one silenced.
#[tokio::test]
async fn routes_and_silences_from_s3() {
    let s = setup().await;
    let (team_topic, team_queue) = s.aws.topic_with_queue("vigil-checkout-team").await;
    let rules = format!(
        "policy:\n  routes:\n    - {{match: {{team: checkout}}, topic_arn: \"{team_topic}\"}}\n{}",
        sample_config("rules.example.yaml").replace("Shop/Checkout", &s.namespace)
    );
    s.aws.put_object(&s.bucket, "routed.yaml", rules).await;
    let until = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let silences = format!(
        r#"[{{"matchers": {{"alertname": "CheckoutOrdersStopped"}}, "ends_at": "{until}",
             "created_by": "on-call", "comment": "orders paused for a migration"}}]"#
    );
    s.aws.put_object(&s.bucket, "silences.json", silences).await;
    let now = whole_minute_ago(0);
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[
            (now - Duration::minutes(2), 400.0),
            (now - Duration::minutes(1), 410.0),
        ],
    )
    .await;

    let silences_location = format!("s3://{}/silences.json", s.bucket);
    let mut function = alert_with(
        &s,
        "routed.yaml",
        &[
            ("VIGIL_SILENCES", silences_location.as_str()),
            ("VIGIL_ALLOWED_TOPIC_ARNS", team_topic.as_str()),
        ],
    )
    .await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(
        checkout_states(&summary),
        [pair("firing", "breaching"), pair("firing", "no_data")]
    );
    assert_eq!(
        summary["rules"][1]["muted"]["muted_by"], "silence",
        "{summary}"
    );
    assert_eq!(
        summary["rules"][1]["muted"]["comment"],
        "orders paused for a migration"
    );

    let routed = s
        .aws
        .receive_sns(&team_queue, 1, StdDuration::from_secs(20))
        .await;
    assert_eq!(routed.len(), 1, "{routed:?}");
    assert_eq!(
        routed[0]["MessageAttributes"]["alertname"]["Value"],
        "CheckoutLatencyHigh"
    );
    assert!(
        s.aws
            .receive_sns(&s.queue, 1, StdDuration::from_secs(2))
            .await
            .is_empty()
    );
}

/// A native CloudWatch alarm through the same policy: its ALARM (as the Lambda alarm action
/// delivers it) pages once even when redelivered, and its OK (as EventBridge delivers it)
/// resolves.
#[tokio::test]
async fn cloudwatch_alarm_changes_notify_once_each() {
    let s = setup().await;
    let mut function = alert(&s, "rules.yaml").await;
    let alarm = vigil_e2e::sample_event("cloudwatch-alarm-lambda-action.json");
    let first = function.invoke(&alarm).await.expect_response();
    assert_eq!(first["status"], "firing", "{first}");
    assert_eq!(
        first["sent"].as_object().map(|o| o.len()),
        Some(1),
        "{first}"
    );
    let redelivered = function.invoke(&alarm).await.expect_response();
    assert_eq!(
        redelivered["sent"].as_object().map(|o| o.len()),
        Some(0),
        "{redelivered}"
    );
    let ok = vigil_e2e::sample_event("eventbridge-alarm-state-change.json");
    let resolved = function.invoke(&ok).await.expect_response();
    assert_eq!(resolved["status"], "resolved", "{resolved}");

    let messages = s
        .aws
        .receive_sns(&s.queue, 2, StdDuration::from_secs(20))
        .await;
    let seen: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                m["MessageAttributes"]["status"]["Value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                m["MessageAttributes"]["severity"]["Value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [pair("firing", "page"), pair("resolved", "page")],
        "{messages:?}"
    );
    let body: Value =
        serde_json::from_str(messages[0]["Message"].as_str().expect("message")).expect("JSON body");
    assert_eq!(
        body["alarm_arn"],
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-5xx"
    );
    assert_eq!(body["previous_state"], "OK");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("Runbook: https://runbooks.example.com/checkout/5xx"),
        "{text}"
    );
}

/// 1,000 rules over 1,000 series of 10 points: one evaluation reads them all in the fewest
/// GetMetricData calls the 500-queries-per-call limit allows, two.
#[tokio::test]
async fn a_thousand_rules_take_two_get_metric_data_calls() {
    let s = setup().await;
    let now = whole_minute_ago(0);
    let mut yaml = String::from("groups:\n  - name: many\n    rules:\n");
    for i in 0..1000 {
        yaml.push_str(&format!(
            "      - alert: R{i}\n        metric: {{namespace: {ns}, name: m, dimensions: {{service: s{i}}}, stat: Maximum, period: 1m}}\n        condition: {{operator: \">\", threshold: 1000}}\n        lookback: 10m\n",
            ns = s.namespace
        ));
    }
    s.aws.put_object(&s.bucket, "many.yaml", yaml).await;
    // 10 points for each of 1,000 series, 1,000 datums per PutMetricData request.
    let data: Vec<MetricDatum> = (0..1000)
        .flat_map(|i| {
            (1..=10).map(move |p| {
                MetricDatum::builder()
                    .metric_name("m")
                    .dimensions(
                        Dimension::builder()
                            .name("service")
                            .value(format!("s{i}"))
                            .build(),
                    )
                    .value(f64::from(i))
                    .timestamp(CwDateTime::from_millis(
                        (now - Duration::minutes(p)).timestamp_millis(),
                    ))
                    .build()
            })
        })
        .collect();
    for chunk in data.chunks(1000) {
        s.aws
            .cloudwatch
            .put_metric_data()
            .namespace(&s.namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutMetricData");
    }
    let mut function = alert(&s, "many.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(summary["get_metric_data_calls"], 2);
    // CloudWatch bills the metrics asked for, not the calls: one per series.
    assert_eq!(summary["metrics_requested"], 1000);
    let rules = summary["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1000);
    // Every rule saw its own series: R999 reads 999 (> threshold 1000 is false), R0 reads 0.
    assert_eq!(rules[999]["value"], 999.0, "{}", rules[999]);
    assert_eq!(rules[0]["value"], 0.0, "{}", rules[0]);
    assert!(rules.iter().all(|r| r["condition"] == "ok"));
}

/// With `group_by`, the alerts of one team that fire in the same run make one message.
#[tokio::test]
async fn alerts_of_a_group_arrive_as_one_message() {
    let s = setup().await;
    let rules = format!(
        "policy:\n  group_by: [team]\n{}",
        sample_config("rules.example.yaml").replace("Shop/Checkout", &s.namespace)
    );
    s.aws.put_object(&s.bucket, "grouped.yaml", rules).await;
    let now = whole_minute_ago(0);
    // Latency breaches and no orders arrive at all: both checkout rules fire.
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[
            (now - Duration::minutes(2), 400.0),
            (now - Duration::minutes(1), 410.0),
        ],
    )
    .await;
    let mut function = alert(&s, "grouped.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    assert_eq!(
        checkout_states(&summary),
        [pair("firing", "breaching"), pair("firing", "no_data")]
    );
    assert_eq!(
        summary["sent"].as_object().map(|o| o.len()),
        Some(1),
        "{summary}"
    );
    let messages = s
        .aws
        .receive_sns(&s.queue, 1, StdDuration::from_secs(20))
        .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        messages[0]["Subject"],
        "[FIRING:2] team=checkout: CheckoutLatencyHigh, CheckoutOrdersStopped"
    );
    let body: Value =
        serde_json::from_str(messages[0]["Message"].as_str().expect("message")).expect("JSON body");
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["group"]["team"], "checkout");
}

/// `service: "*"`: one alert per service CloudWatch lists, each with its own state.
#[tokio::test]
async fn a_wildcard_rule_alerts_per_series() {
    let s = setup().await;
    let rules = format!(
        "groups:\n  - name: g\n    rules:\n      - alert: SlowService\n        \
         metric: {{namespace: {ns}, name: latency, dimensions: {{service: \"*\"}}, stat: Maximum, period: 1m}}\n        \
         condition: {{operator: \">\", threshold: 250}}\n        labels: {{severity: page}}\n",
        ns = s.namespace
    );
    s.aws.put_object(&s.bucket, "wildcard.yaml", rules).await;
    let now = whole_minute_ago(0);
    for (service, value) in [("api", 400.0), ("web", 100.0), ("worker", 300.0)] {
        let datum = MetricDatum::builder()
            .metric_name("latency")
            .dimensions(Dimension::builder().name("service").value(service).build())
            .value(value)
            .timestamp(CwDateTime::from_millis(
                (now - Duration::minutes(1)).timestamp_millis(),
            ))
            .build();
        s.aws
            .cloudwatch
            .put_metric_data()
            .namespace(&s.namespace)
            .metric_data(datum)
            .send()
            .await
            .expect("PutMetricData");
    }
    let mut function = alert(&s, "wildcard.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    let seen: Vec<(String, String)> = summary["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["series"]["service"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            pair("api", "firing"),
            pair("web", "inactive"),
            pair("worker", "firing")
        ],
        "{summary}"
    );
    let messages = s
        .aws
        .receive_sns(&s.queue, 2, StdDuration::from_secs(20))
        .await;
    let mut services: Vec<&str> = messages
        .iter()
        .map(|m| {
            m["MessageAttributes"]["service"]["Value"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    services.sort_unstable();
    assert_eq!(services, ["api", "worker"], "{messages:?}");
}

#[tokio::test]
async fn an_invalid_rules_file_fails_with_file_line_and_field() {
    let s = setup().await;
    let broken = sample_config("rules.example.yaml").replace("stat: Average", "stat: Mean");
    s.aws.put_object(&s.bucket, "broken.yaml", broken).await;
    let mut function = alert(&s, "broken.yaml").await;
    let error = function
        .invoke(&scheduled_event(Utc::now()))
        .await
        .expect_error();
    assert_eq!(error["errorType"], "Vigil.Config");
    let message = error["errorMessage"].as_str().expect("message");
    assert!(
        message.contains(&format!("s3://{}/broken.yaml", s.bucket)),
        "{message}"
    );
    assert!(
        message.contains("CheckoutLatencyHigh") && message.contains("metric.stat"),
        "{message}"
    );

    let typo = sample_config("rules.example.yaml").replace("threshold: 250", "treshold: 250");
    s.aws.put_object(&s.bucket, "typo.yaml", typo).await;
    let mut function = alert(&s, "typo.yaml").await;
    let error = function
        .invoke(&scheduled_event(Utc::now()))
        .await
        .expect_error();
    let message = error["errorMessage"].as_str().expect("message");
    assert!(
        message.contains("typo.yaml:12:") && message.contains("treshold"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_setting_stops_the_start_with_a_logged_reason() {
    let aws = LocalAws::connect().await;
    let mut function = Function::start(
        "alert",
        &binary("alert"),
        &[("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str())],
    )
    .await;
    let (status, _) = function.exit().await;
    assert!(!status.success());
    let logs = function.logs();
    let line = logs
        .iter()
        .find(|l| l.contains("cannot start"))
        .unwrap_or_else(|| panic!("no start-up error in {logs:?}"));
    let entry: Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(entry["level"], "ERROR");
    assert!(
        entry["error"]
            .as_str()
            .expect("error")
            .contains("VIGIL_RULES"),
        "{entry}"
    );
}

/// Receivers end to end: a rule routed to a receiver with a chat topic, PagerDuty and a
/// webhook. The PagerDuty routing key is a SecureString and the webhook's URL a String in the
/// emulator's Parameter Store, read by the real function through the SDK; PagerDuty is a local
/// server holding to the Events API v2 contract, busy (429) for the first two posts. The page
/// reaches all three; PagerDuty opens one incident, which the resolution closes.
#[tokio::test]
async fn a_receiver_pages_pagerduty_a_webhook_and_chat_and_resolves_there() {
    let s = setup().await;
    let key = "R0UT1NGK3Y0000000000000000000E2E";
    let pagerduty = vigil_e2e::pagerduty::PagerDuty::start(key, 2).await;
    let prefix = format!("/vigil/receivers/{}", unique("e2e"));
    for (name, value, kind) in [
        (
            "pagerduty",
            key.to_owned(),
            aws_sdk_ssm::types::ParameterType::SecureString,
        ),
        (
            "hook",
            pagerduty.hook_url(),
            aws_sdk_ssm::types::ParameterType::String,
        ),
    ] {
        s.aws
            .ssm
            .put_parameter()
            .name(format!("{prefix}/{name}"))
            .value(value)
            .r#type(kind)
            .send()
            .await
            .expect("PutParameter");
    }
    let (chat, chat_queue) = s.aws.topic_with_queue("vigil-chat").await;
    let rules = format!(
        "policy:\n  receivers:\n    - name: checkout\n      \
         sns_configs: [{{topic_arn: \"{chat}\", format: chat}}]\n      \
         pagerduty_configs: [{{routing_key: {{ssm_parameter: {prefix}/pagerduty}}, url: \"{pd}\"}}]\n      \
         webhook_configs: [{{url: {{ssm_parameter: {prefix}/hook}}}}]\n  \
         routes: [{{match: {{team: checkout}}, receiver: checkout}}]\n\
         groups:\n  - name: g\n    rules:\n      - alert: SlowCheckout\n        \
         metric: {{namespace: {ns}, name: latency, dimensions: {{service: checkout}}, stat: Maximum, period: 1m}}\n        \
         condition: {{operator: \">\", threshold: 250}}\n        \
         labels: {{severity: page, team: checkout, service: checkout}}\n        \
         annotations: {{summary: \"Checkout latency is {{{{ $value }}}} ms\", runbook_url: \"https://runbooks.example.com/slow\"}}\n",
        pd = pagerduty.url(),
        ns = s.namespace
    );
    s.aws.put_object(&s.bucket, "receivers.yaml", rules).await;
    let base = whole_minute_ago(6);
    let minute = |m: i64| base + Duration::minutes(m);
    put_points(
        &s.aws,
        &s.namespace,
        "latency",
        &[
            (minute(0), 400.0),
            (minute(1), 400.0),
            (minute(2), 100.0),
            (minute(3), 100.0),
        ],
    )
    .await;
    let mut function = alert_with(
        &s,
        "receivers.yaml",
        &[("VIGIL_ALLOWED_TOPIC_ARNS", chat.as_str())],
    )
    .await;
    let firing = function
        .invoke(&scheduled_event(minute(2)))
        .await
        .expect_response();
    assert_eq!(states(&firing)[0].0, "firing", "{firing}");
    let resolved = function
        .invoke(&scheduled_event(minute(4)))
        .await
        .expect_response();
    assert_eq!(states(&resolved)[0].0, "inactive", "{resolved}");

    {
        let pd = pagerduty.seen();
        // Two 429s, retried within the run; then a trigger and its resolve, nothing refused
        // as invalid.
        assert_eq!(
            pd.refused.iter().map(|r| r.0).collect::<Vec<_>>(),
            [429, 429]
        );
        let actions: Vec<&str> = pd
            .events
            .iter()
            .map(|e| e["event_action"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(actions, ["trigger", "resolve"], "{:?}", pd.events);
        assert_eq!(pd.incidents, 1);
        assert!(pd.open.values().all(|open| !open), "{:?}", pd.open);
        assert_eq!(
            pd.events[0]["payload"]["summary"],
            "[FIRING] SlowCheckout: latency 400 > 250"
        );
        // The webhook: Alertmanager's payload, firing then resolved.
        let hooks: Vec<&str> = pd
            .hooks
            .iter()
            .map(|h| h["status"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(hooks, ["firing", "resolved"]);
        assert_eq!(pd.hooks[0]["version"], "4");
        assert_eq!(
            pd.hooks[0]["alerts"][0]["labels"]["alertname"],
            "SlowCheckout"
        );
    }
    // Chat: SNS delivered the custom notification as the message body.
    let messages = s
        .aws
        .receive_sns(&chat_queue, 2, StdDuration::from_secs(20))
        .await;
    let bodies: Vec<Value> = messages
        .iter()
        .map(|m| serde_json::from_str(m["Message"].as_str().unwrap_or("{}")).expect("chat JSON"))
        .collect();
    assert_eq!(bodies.len(), 2, "{messages:?}");
    assert_eq!(bodies[0]["source"], "custom");
    assert_eq!(
        bodies[0]["content"]["nextSteps"][0],
        "Follow the runbook: https://runbooks.example.com/slow"
    );
    assert_eq!(
        bodies[0]["metadata"]["threadId"],
        bodies[1]["metadata"]["threadId"]
    );
    // Nothing reached the default topic.
    let default = s
        .aws
        .receive_sns(&s.queue, 0, StdDuration::from_secs(2))
        .await;
    assert!(default.is_empty(), "{default:?}");
}

/// A rule pack as an engineer adds it: the real `vigil` command writes the container-insights
/// pack beside the rules file and names it there; both go to S3 as the README says; the real
/// alert binary reads the rules file and the pack it names, and opens a ticket for a cluster's
/// API server failing, from the metric Container Insights publishes
/// (`ContainerInsights` / `apiserver_request_total_5xx` by `ClusterName`). The emulator's
/// GetMetricData answers percentile statistics (the aws-lambda pack's p99 Duration) with a
/// 500, so this pack, on Maximum and Sum only, is the one run here.
#[tokio::test]
async fn a_pack_added_by_the_command_is_read_from_s3_with_the_rules_file() {
    let s = setup().await;
    let dir = std::env::temp_dir().join(unique("vigil-pack-e2e"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules_file = dir.join("rules.yaml");
    std::fs::write(
        &rules_file,
        sample_config("rules.example.yaml").replace("Shop/Checkout", &s.namespace),
    )
    .expect("write rules");
    let cluster = unique("prod");
    let out = std::process::Command::new(binary("vigil"))
        .args(["rules", "pack", "add", "container-insights", "--rules"])
        .arg(&rules_file)
        .args(["--set", &format!("cluster={cluster}")])
        .args(["--set", "team=platform-eks"])
        .env("NO_COLOR", "1")
        .output()
        .expect("vigil runs");
    assert!(out.status.success(), "{out:?}");
    let edited = std::fs::read_to_string(&rules_file).expect("read");
    assert!(
        edited.ends_with("rule_files:\n  - packs/container-insights.yaml\n"),
        "{edited}"
    );
    s.aws
        .put_object(&s.bucket, "config/rules.yaml", edited)
        .await;
    let pack = std::fs::read(dir.join("packs/container-insights.yaml")).expect("pack file");
    s.aws
        .put_object(&s.bucket, "config/packs/container-insights.yaml", pack)
        .await;
    let _ = std::fs::remove_dir_all(&dir);

    // 60 answers a minute with 5xx, five minutes running (the pack's limit: 10, 5 of 5).
    let now = whole_minute_ago(0);
    let data: Vec<MetricDatum> = (1..=6)
        .map(|m| {
            MetricDatum::builder()
                .metric_name("apiserver_request_total_5xx")
                .dimensions(
                    Dimension::builder()
                        .name("ClusterName")
                        .value(&cluster)
                        .build(),
                )
                .value(60.0)
                .timestamp(CwDateTime::from_millis(
                    (now - Duration::minutes(m)).timestamp_millis(),
                ))
                .build()
        })
        .collect();
    s.aws
        .cloudwatch
        .put_metric_data()
        .namespace("ContainerInsights")
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("PutMetricData");

    let mut function = alert(&s, "config/rules.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    let rules: Vec<(&str, &str)> = summary["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // The example's four rules, then the pack's two on the cluster as a whole (its five over
    // `*` nodes and pods watch no series here). The example's CheckoutOrdersStopped fires on
    // its missing orders, as it does with no data; the pack's APIServerErrors on the errors.
    let names: Vec<&str> = rules.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "CheckoutLatencyHigh",
            "CheckoutOrdersStopped",
            "CheckoutErrorsHigh",
            "CheckoutP99High",
            "ClusterNodesFailed",
            "APIServerErrors"
        ],
        "{summary}"
    );
    let firing: Vec<&str> = rules
        .iter()
        .filter(|(_, state)| *state == "firing")
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        firing,
        ["CheckoutOrdersStopped", "APIServerErrors"],
        "{summary}"
    );
    let messages = s
        .aws
        .receive_sns(&s.queue, 2, StdDuration::from_secs(20))
        .await;
    let pack_message = messages
        .iter()
        .find(|m| m["MessageAttributes"]["alertname"]["Value"] == "APIServerErrors")
        .unwrap_or_else(|| panic!("no APIServerErrors message: {messages:?}"));
    let attributes = &pack_message["MessageAttributes"];
    assert_eq!(attributes["alertname"]["Value"], "APIServerErrors");
    assert_eq!(attributes["team"]["Value"], "platform-eks");
    assert_eq!(attributes["severity"]["Value"], "ticket");
}
