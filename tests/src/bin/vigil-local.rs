//! `vigil-local`: Vigil's main job on this machine. Runs the three real function bootstraps
//! behind a local Lambda Runtime API, against the local AWS emulator, on the sample events in
//! `events/` and the sample configuration in `config/`, and prints what each one did, read
//! back from the emulator.
//!
//! Started by `scripts/demo`, which brings the emulator up and builds the binaries first.

use std::time::Duration as StdDuration;

use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use vigil_e2e::{
    Function, LocalAws, backup_verify_event, binary, http_response, json_push_event, sample_config,
    sample_event, sample_push, scheduled_event, stamp_logs, stamp_push, stamp_remote_write,
    whole_minute_ago,
};

fn section(title: &str) {
    println!("\n== {title}");
}

#[tokio::main]
async fn main() {
    let mut problems = Vec::new();
    let aws = LocalAws::connect().await;
    println!("Local AWS emulator at {}", aws.endpoint);
    let bucket = aws.create_bucket("vigil-demo").await;
    let (topic, queue) = aws.topic_with_queue("vigil-demo-alerts").await;
    println!("Created bucket {bucket}, topic {topic} with an SQS queue subscribed");

    // ingest: the sample Function URL push, sent for each of the last two whole minutes, so
    // that the alert rules (two of three minutes) have complete periods to evaluate.
    section("ingest: JSON push on the Function URL (events/function-url-json-push.json)");
    let at = whole_minute_ago(1);
    let mut push = sample_push();
    let namespace = push["namespace"]
        .as_str()
        .unwrap_or("Shop/Checkout")
        .to_owned();
    aws.put_object(
        &bucket,
        "config/ingest.yaml",
        sample_config("ingest.example.yaml"),
    )
    .await;
    let ingest_config = format!("s3://{bucket}/config/ingest.yaml");
    let mut ingest = Function::start(
        "ingest",
        &binary("ingest"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_INGEST_CONFIG", ingest_config.as_str()),
        ],
    )
    .await;
    for minute in [whole_minute_ago(2), at] {
        stamp_push(&mut push, minute);
        let (status, body) = http_response(
            &ingest
                .invoke(&json_push_event(&push))
                .await
                .expect_response(),
        );
        println!("HTTP {status} {body}");
    }
    let minute = at;
    for metric in push["metrics"].as_array().into_iter().flatten() {
        let name = metric["name"].as_str().unwrap_or_default();
        let points = aws
            .points_near(&namespace, name, &[("service", "checkout")], "Sum", minute)
            .await;
        if points.is_empty() {
            problems.push(format!("ingest: {name} was not read back from CloudWatch"));
        }
        for (t, v) in points {
            println!(
                "metric stored: {namespace} {name}{{service=checkout}} = {v} at {}",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
    }

    section(
        "ingest: Prometheus remote-write on the Function URL (events/function-url-remote-write.json)",
    );
    let mut rw = sample_event("function-url-remote-write.json");
    stamp_remote_write(&mut rw, at);
    let (status, body) = http_response(&ingest.invoke(&rw).await.expect_response());
    println!("HTTP {status} {body}");
    section("ingest: CloudWatch Logs subscription (events/cloudwatch-logs-subscription.json)");
    let mut logs = sample_event("cloudwatch-logs-subscription.json");
    stamp_logs(&mut logs, at, None);
    let out = ingest.invoke(&logs).await.expect_response();
    println!("{out}");
    for (name, dims, stat) in [
        ("up", vec![("service", "checkout")], "Maximum"),
        (
            "http_requests_total",
            vec![("code", "500"), ("method", "POST"), ("service", "checkout")],
            "Maximum",
        ),
        (
            "checkout_duration",
            vec![("service", "checkout")],
            "Average",
        ),
        (
            "request_latency",
            vec![("service", "checkout"), ("status", "502")],
            "Maximum",
        ),
    ] {
        let points = aws.points_near(&namespace, name, &dims, stat, minute).await;
        if points.is_empty() {
            problems.push(format!("ingest: {name} was not read back from CloudWatch"));
        }
        let labels: Vec<String> = dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (t, v) in points {
            println!(
                "metric stored: {namespace} {name}{{{}}} {stat} = {v} at {}",
                labels.join(","),
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
    }

    // alert: the sample rules evaluated on what ingest stored, on a scheduled event.
    section("alert: scheduled evaluation (events/scheduler-alert.json, config/rules.example.yaml)");
    aws.put_object(
        &bucket,
        "config/rules.yaml",
        sample_config("rules.example.yaml"),
    )
    .await;
    let rules = format!("s3://{bucket}/config/rules.yaml");
    let mut alert = Function::start(
        "alert",
        &binary("alert"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_RULES", rules.as_str()),
            ("VIGIL_ALERT_TOPIC_ARN", topic.as_str()),
            ("VIGIL_STATE_BUCKET", bucket.as_str()),
        ],
    )
    .await;
    let summary = alert
        .invoke(&scheduled_event(Utc::now()))
        .await
        .expect_response();
    for rule in summary["rules"].as_array().into_iter().flatten() {
        println!(
            "rule {}: condition {} (newest value {}), state {}",
            rule["alert"].as_str().unwrap_or_default(),
            rule["condition"].as_str().unwrap_or_default(),
            rule["value"],
            rule["state"].as_str().unwrap_or_default(),
        );
    }
    let expected = summary["sent"].as_object().map_or(0, |s| s.len());
    let messages = aws
        .receive_sns(&queue, expected, StdDuration::from_secs(20))
        .await;
    if expected == 0 || messages.len() != expected {
        problems.push(format!(
            "alert: {expected} rule(s) firing, {} message(s) delivered",
            messages.len()
        ));
    }
    for m in &messages {
        let attributes: Vec<String> = m["MessageAttributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v["Value"].as_str().unwrap_or_default()))
            .collect();
        // SQS subscribers get the JSON body; people (email) get its `text`.
        let body: Value =
            serde_json::from_str(m["Message"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
        println!(
            "SNS message delivered to the SQS queue: {}\n  attributes: {}\n  JSON body fields: {}\n  text:\n  {}",
            m["Subject"].as_str().unwrap_or_default(),
            attributes.join(", "),
            body.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            body["text"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', "\n  ")
        );
    }

    // backup-verify: one fresh backup in the sample backup set, checked on a schedule.
    section("backup-verify: scheduled check (config/backup-sets.example.yaml)");
    let backups = aws.create_bucket("vigil-demo-backups").await;
    let sets = sample_config("backup-sets.example.yaml").replace("acme-backups", &backups);
    aws.put_object(&bucket, "config/backup-sets.yaml", sets)
        .await;
    let key = format!("orders-db/{}.sql.gz", Utc::now().format("%Y-%m-%d"));
    let dump =
        vigil_e2e::gzip(b"-- orders-db dump\nCREATE TABLE orders (id bigint primary key);\n");
    aws.put_object(
        &backups,
        &format!("{key}.manifest.json"),
        vigil_e2e::manifest(&key, &dump),
    )
    .await;
    aws.put_object(&backups, &key, dump).await;
    println!("Uploaded backup s3://{backups}/{key}");
    let sets_location = format!("s3://{bucket}/config/backup-sets.yaml");
    let mut verifier = Function::start(
        "backup-verify",
        &binary("backup-verify"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_BACKUP_SETS", sets_location.as_str()),
            ("VIGIL_REPORT_BUCKET", bucket.as_str()),
        ],
    )
    .await;
    let response = verifier
        .invoke(&backup_verify_event(Utc::now()))
        .await
        .expect_response();
    let location = response["report"].as_str().unwrap_or_default();
    let report_key = location
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap_or_default();
    let report: Value =
        serde_json::from_slice(&aws.get_object(&bucket, report_key).await).unwrap_or(Value::Null);
    if report.is_null() {
        problems.push("backup-verify: the report was not read back from S3".to_owned());
    }
    println!("backup report written: {location}");
    for set in report["sets"].as_array().into_iter().flatten() {
        for check in set["checks"].as_array().into_iter().flatten() {
            println!(
                "  set {}: {} {} ({})",
                set["name"].as_str().unwrap_or_default(),
                check["check"].as_str().unwrap_or_default(),
                check["status"].as_str().unwrap_or_default(),
                check["detail"].as_str().unwrap_or_default()
            );
        }
    }
    if !problems.is_empty() {
        eprintln!("\nThe demo did not complete:");
        for p in &problems {
            eprintln!("  - {p}");
        }
        std::process::exit(1);
    }
    println!("\nAll three functions ran against the local emulator.");
}
