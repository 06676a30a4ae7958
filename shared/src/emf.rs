//! CloudWatch Embedded Metric Format: one JSON log line that CloudWatch Logs turns into
//! metrics. Vigil reports its own counters this way (samples stored, rejected), which costs no
//! API call and keeps the figure and the log line that explains it together.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::metric::{Resolution, Unit};

/// Builds one EMF line: `metrics` (name, value, unit) in `namespace` under one dimension set
/// `dimensions`, with `fields` added at the root (log context, not metrics).
pub fn line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, Unit)],
    fields: Map<String, Value>,
    at: DateTime<Utc>,
) -> String {
    line_at_resolution(
        namespace,
        dimensions,
        metrics,
        fields,
        at,
        Resolution::Standard,
    )
}

/// [`line`] for metrics stored at `resolution` (EMF's `StorageResolution`, written only when
/// high: standard is the default).
pub fn line_at_resolution(
    namespace: &str,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, Unit)],
    fields: Map<String, Value>,
    at: DateTime<Utc>,
    resolution: Resolution,
) -> String {
    let definition = |name: &str, unit: Unit| match resolution {
        Resolution::Standard => json!({"Name": name, "Unit": unit.as_str()}),
        Resolution::High => {
            json!({"Name": name, "Unit": unit.as_str(), "StorageResolution": resolution.seconds()})
        }
    };
    let mut root = fields;
    for (k, v) in dimensions {
        root.insert((*k).to_owned(), Value::from(*v));
    }
    for (name, value, _) in metrics {
        // A value given in `fields` (an array of values) wins over the single value.
        if !root.contains_key(*name) {
            root.insert((*name).to_owned(), json!(value));
        }
    }
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(n, _, u)| definition(n, *u)).collect::<Vec<_>>(),
            }],
        }),
    );
    Value::Object(root).to_string()
}

static SILENCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes an EMF line to stdout, where Lambda ships it to CloudWatch Logs.
pub fn emit(line: &str) {
    if !SILENCED.load(std::sync::atomic::Ordering::Relaxed) {
        println!("{line}");
    }
}

/// Stops [`emit`] for the rest of the process: for the command line, which replays the
/// functions' code on a terminal, where these lines would be noise and no metric is wanted.
pub fn silence() {
    SILENCED.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_format() {
        let mut fields = Map::new();
        fields.insert("message".into(), "push stored".into());
        let at = DateTime::from_timestamp_millis(1_795_593_600_000).expect("time");
        let text = line(
            "Vigil",
            &[("Function", "ingest"), ("Source", "json")],
            &[("SamplesStored", 3.0, Unit::Count)],
            fields,
            at,
        );
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["SamplesStored"], 3.0);
        assert_eq!(v["Source"], "json");
        assert_eq!(v["message"], "push stored");
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "Vigil");
        assert_eq!(d["Dimensions"], json!([["Function", "Source"]]));
        assert_eq!(
            d["Metrics"],
            json!([{"Name": "SamplesStored", "Unit": "Count"}])
        );
        assert_eq!(v["_aws"]["Timestamp"], 1_795_593_600_000i64);
    }

    #[test]
    fn high_resolution_is_written_as_storage_resolution_one() {
        let at = DateTime::from_timestamp(1_795_593_600, 0).expect("time");
        let metrics = [("m", 1.0, Unit::Count)];
        let high: Value = serde_json::from_str(&line_at_resolution(
            "N",
            &[],
            &metrics,
            Map::new(),
            at,
            Resolution::High,
        ))
        .expect("JSON");
        assert_eq!(
            high["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "m", "Unit": "Count", "StorageResolution": 1}])
        );
        let standard: Value =
            serde_json::from_str(&line("N", &[], &metrics, Map::new(), at)).expect("JSON");
        assert_eq!(
            standard["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "m", "Unit": "Count"}])
        );
    }
}
