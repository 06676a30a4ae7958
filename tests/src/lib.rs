//! Harness for Vigil's end-to-end tests and local demo: the real function bootstraps behind a
//! local Lambda Runtime API ([`runtime`]), against a local AWS emulator ([`aws`]).

pub mod aws;
pub mod runtime;
pub mod url;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

pub use aws::{LocalAws, unique};
pub use runtime::{Function, Outcome, binary};
pub use url::FunctionUrl;

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

/// The sample scheduled event, with its `time` set to `at`.
pub fn scheduled_event(at: DateTime<Utc>) -> Value {
    let mut event = sample_event("eventbridge-scheduled.json");
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
