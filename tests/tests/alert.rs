//! `alert` end to end: metrics in the local emulator's CloudWatch, the rules file in its S3,
//! notifications read back from an SQS queue subscribed to the SNS topic.

use std::time::Duration as StdDuration;

use aws_sdk_cloudwatch::primitives::DateTime as CwDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use vigil_e2e::{
    Function, LocalAws, binary, sample_config, scheduled_event, unique, whole_minute_ago,
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

struct Setup {
    aws: LocalAws,
    namespace: String,
    bucket: String,
    topic: String,
    queue: String,
}

async fn setup() -> Setup {
    let aws = LocalAws::connect().await;
    let namespace = unique("Vigil/Alert");
    let bucket = aws.create_bucket("vigil-rules").await;
    let rules = sample_config("rules.example.yaml").replace("Vigil/Demo", &namespace);
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
    let rules = format!("s3://{}/{rules_key}", s.bucket);
    Function::start(
        "alert",
        &binary("alert"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", s.aws.endpoint.as_str()),
            ("VIGIL_RULES", rules.as_str()),
            ("VIGIL_ALERT_TOPIC_ARN", s.topic.as_str()),
        ],
    )
    .await
}

#[tokio::test]
async fn a_breaching_metric_sends_one_notification_with_its_attributes() {
    let s = setup().await;
    let now = whole_minute_ago(0);
    // Latency breaches 250 ms; orders keep flowing, so only the latency rule fires.
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
    let rules = summary["rules"].as_array().expect("rules");
    assert_eq!(rules[0]["alert"], "CheckoutLatencyHigh");
    assert_eq!(rules[0]["state"], "firing");
    assert_eq!(rules[0]["value"], 330.0);
    assert_eq!(rules[1]["state"], "ok");

    let messages = s
        .aws
        .receive_sns(&s.queue, 1, StdDuration::from_secs(20))
        .await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["MessageId"], rules[0]["message_id"]);
    assert_eq!(
        m["Subject"],
        "[FIRING] CheckoutLatencyHigh: latency 330 > 250"
    );
    let text = m["Message"].as_str().expect("message");
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
    put_points(
        &s.aws,
        &s.namespace,
        "orders",
        &[(now - Duration::minutes(1), 12.0)],
    )
    .await;
    let mut function = alert(&s, "rules.yaml").await;
    let summary = function
        .invoke(&scheduled_event(now))
        .await
        .expect_response();
    let states: Vec<&str> = summary["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["ok", "ok"]);
    assert_eq!(summary["rules"][0]["value"], 90.0);
    let messages = s
        .aws
        .receive_sns(&s.queue, 1, StdDuration::from_secs(3))
        .await;
    assert!(messages.is_empty(), "{messages:?}");
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
