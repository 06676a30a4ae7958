//! Harness for Vigil's end-to-end tests and local demo: the real function bootstraps behind a
//! local Lambda Runtime API ([`runtime`]), against a local AWS emulator ([`aws`]), with local
//! fronts for a Function URL ([`url`]) and Lambda's Invoke API ([`lambda_api`]), put together
//! as the stack the template deploys ([`stack`]).

pub mod aws;
pub mod exporter;
pub mod lambda_api;
pub mod pagerduty;
pub mod runtime;
pub mod serve;
pub mod stack;
pub mod url;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

pub use aws::{LocalAws, unique, workspace_root};
pub use runtime::{Function, Outcome, bin_dir, binary};
pub use url::FunctionUrl;

/// Returns at Ctrl-C or SIGTERM: a local front (`vigil-serve`, `vigil-stack`) then drops what
/// it runs, which stops the function processes too.
pub async fn until_stopped() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The start of the minute `minutes_ago` minutes before now: a timestamp whose one-minute
/// CloudWatch period has ended (for `minutes_ago` >= 1) and that reads back exactly.
pub fn whole_minute_ago(minutes_ago: i64) -> DateTime<Utc> {
    use chrono::DurationRound;
    (Utc::now() - chrono::Duration::minutes(minutes_ago))
        .duration_trunc(chrono::Duration::minutes(1))
        .expect("a minute boundary")
}

pub use vigil_shared::fixtures::{gzip, tar_gz};

/// The manifest a backup job writes beside `key`: `{"key", "size", "sha256"}`.
pub fn manifest(key: &str, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    serde_json::json!({"key": key, "size": data.len(), "sha256": sha})
        .to_string()
        .into_bytes()
}

/// A sample event from `events/`.
pub fn sample_event(name: &str) -> Value {
    let path = aws::workspace_root().join("events").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A file under `config/`.
pub fn sample_config(name: &str) -> String {
    let path = aws::workspace_root().join("config").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A Function URL event carrying `push` (a JSON push document) as its body.
pub fn json_push_event(push: &Value) -> Value {
    let mut event = sample_event("function-url-json-push.json");
    event["body"] = Value::String(push.to_string());
    event
}

/// The JSON push inside the sample Function URL event.
pub fn sample_push() -> Value {
    let event = sample_event("function-url-json-push.json");
    serde_json::from_str(event["body"].as_str().expect("body")).expect("push JSON")
}

/// Sets every metric's timestamp in a push to `at` (sample data carries fixed dates, and
/// CloudWatch refuses points older than two weeks).
pub fn stamp_push(push: &mut Value, at: DateTime<Utc>) {
    if let Some(metrics) = push["metrics"].as_array_mut() {
        for m in metrics {
            m["timestamp"] = Value::String(at.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
    }
}

/// Sets every sample timestamp in a remote-write Function URL event to `at`.
pub fn stamp_remote_write(event: &mut Value, at: DateTime<Utc>) {
    use base64::Engine;
    use vigil_ingest::remote_write;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64
        .decode(event["body"].as_str().expect("body"))
        .expect("base64 body");
    let mut request = remote_write::decode(&body).expect("remote-write body");
    for series in &mut request.timeseries {
        for sample in &mut series.samples {
            sample.timestamp = at.timestamp_millis();
        }
    }
    event["body"] = Value::String(b64.encode(remote_write::encode(&request)));
}

/// A CloudWatch Logs subscription event (the shape of `events/cloudwatch-logs-subscription.json`)
/// carrying `messages` from `log_group`, each at `at`.
pub fn log_batch_event(log_group: &str, messages: &[String], at: DateTime<Utc>) -> Value {
    use base64::Engine;
    use std::io::Write;
    let events: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(
            |(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": at.timestamp_millis(), "message": m}),
        )
        .collect();
    let batch = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": log_group,
        "logStream": "app/0f1e2d3c", "subscriptionFilters": ["vigil-ingest"], "logEvents": events});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch.to_string().as_bytes()).expect("gzip");
    serde_json::json!({"awslogs": {"data": base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))}})
}

/// Sets every log event's timestamp (and EMF `_aws.Timestamp`) in a CloudWatch Logs
/// subscription event to `at`, and the namespace of EMF lines to `namespace` when given.
pub fn stamp_logs(event: &mut Value, at: DateTime<Utc>, namespace: Option<&str>) {
    use base64::Engine;
    use std::io::{Read, Write};
    let b64 = base64::engine::general_purpose::STANDARD;
    let gz = b64
        .decode(event["awslogs"]["data"].as_str().expect("data"))
        .expect("base64 data");
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut text)
        .expect("gzip data");
    let mut batch: Value = serde_json::from_str(&text).expect("log batch");
    let ms = at.timestamp_millis();
    for e in batch["logEvents"].as_array_mut().into_iter().flatten() {
        e["timestamp"] = Value::from(ms);
        let message = e["message"].as_str().unwrap_or_default().to_owned();
        if let Ok(mut doc) = serde_json::from_str::<Value>(&message) {
            if doc.get("_aws").is_some() {
                doc["_aws"]["Timestamp"] = Value::from(ms);
                if let Some(ns) = namespace {
                    for d in doc["_aws"]["CloudWatchMetrics"]
                        .as_array_mut()
                        .into_iter()
                        .flatten()
                    {
                        d["Namespace"] = Value::from(ns);
                    }
                }
                e["message"] = Value::String(doc.to_string());
            }
        }
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(batch.to_string().as_bytes()).expect("gzip");
    event["awslogs"]["data"] = Value::String(b64.encode(enc.finish().expect("gzip")));
}

/// What EventBridge Scheduler sends the alert function (`events/scheduler-alert.json`): the
/// schedule's `Input` with its context attributes filled, `scheduled_time` set to `at`.
pub fn scheduled_event(at: DateTime<Utc>) -> Value {
    let mut event = sample_event("scheduler-alert.json");
    event["scheduled_time"] = Value::String(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    event
}

/// What the alert function's review schedule sends (`events/scheduler-alert-review.json`), for
/// the week ending at `at`.
pub fn review_event(at: DateTime<Utc>) -> Value {
    let mut event = sample_event("scheduler-alert-review.json");
    event["scheduled_time"] = Value::String(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    event
}

/// What EventBridge Scheduler sends backup-verify (`events/scheduler-backup-verify.json`): the
/// schedule's `Input` with its context attributes filled, `scheduled_time` set to `at`.
pub fn backup_verify_event(at: DateTime<Utc>) -> Value {
    let mut event = sample_event("scheduler-backup-verify.json");
    event["scheduled_time"] = Value::String(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    event
}

/// What the smoke test (`tests/smoke/smoke.py`) sends alert and backup-verify: the Scheduler
/// `Input`'s shape, marked `"vigil": "smoke"`, at `at`.
pub fn smoke_event(at: DateTime<Utc>) -> Value {
    let mut event = backup_verify_event(at);
    event["vigil"] = Value::String("smoke".into());
    event["execution_id"] = Value::String("smoke-e2e".into());
    event["schedule_arn"] = Value::String("scripts/smoke".into());
    event
}

/// What EventBridge Scheduler sends a target without `Input` (`events/scheduler-default.json`):
/// its default notification, `time` set to `at`.
pub fn scheduler_default_event(at: DateTime<Utc>) -> Value {
    let mut event = sample_event("scheduler-default.json");
    event["time"] = Value::String(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    event
}

/// The status code and decoded JSON body of a Function URL response.
pub fn http_response(response: &Value) -> (i64, Value) {
    let status = response["statusCode"].as_i64().expect("statusCode");
    let body = response["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// `template.yaml` as CloudFormation receives it: the SAM transform applied offline by
/// `scripts/sam-transform` (aws-sam-translator from the tools venv), parsed.
pub fn sam_transformed() -> Value {
    let script = aws::workspace_root().join("scripts/sam-transform");
    let out = std::process::Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", script.display()));
    assert!(
        out.status.success(),
        "sam-transform failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("transformed template is JSON")
}
