//! The JSON push format, for scripts and services without Prometheus:
//!
//! ```json
//! {"namespace": "Shop/Checkout",
//!  "metrics": [{"name": "latency", "value": 12.5, "unit": "Milliseconds",
//!               "dimensions": {"service": "api"}, "timestamp": "2026-11-25T08:00:00Z"}]}
//! ```
//!
//! `namespace` falls back to the configured default; per metric, `unit` defaults to `None`,
//! `dimensions` to none, `timestamp` (RFC 3339 text or epoch milliseconds) to the time of
//! the request and `storage_resolution` to `60` (standard; `1` stores it at high resolution). A malformed metric entry is rejected alone; the others are still stored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vigil_shared::metric::{Datum, Dimension, Resolution, Unit, validate_namespace};

/// A push that could not be read at all.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// Not JSON, or not the push shape.
    Malformed(String),
    /// More metric entries than one request may carry.
    TooManyMetrics {
        count: usize,
        limit: usize,
    },
    BadNamespace(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Malformed(m) => write!(f, "malformed JSON push: {m}"),
            PushError::TooManyMetrics { count, limit } => {
                write!(f, "{count} metrics in one push; the limit is {limit}")
            }
            PushError::BadNamespace(m) => write!(f, "bad namespace: {m}"),
        }
    }
}

/// One metric entry that was not accepted, with why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub index: usize,
    /// The entry's name where it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stable reason code, for counting.
    pub reason: &'static str,
    /// Human explanation.
    pub detail: String,
}

/// A decoded push: the datums CloudWatch will take, and the entries it would not.
#[derive(Debug, PartialEq)]
pub struct Push {
    pub namespace: String,
    pub datums: Vec<Datum>,
    pub rejected: Vec<Rejected>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPush {
    namespace: Option<String>,
    metrics: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    value: f64,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
    #[serde(default)]
    timestamp: Option<RawTimestamp>,
    /// `1` (high resolution) or `60` (standard, the default), as `PutMetricData` takes it.
    #[serde(default)]
    storage_resolution: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTimestamp {
    EpochMillis(i64),
    Text(String),
}

impl RawTimestamp {
    fn resolve(self) -> Result<DateTime<Utc>, String> {
        match self {
            RawTimestamp::EpochMillis(ms) => DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| format!("timestamp {ms} ms is out of range")),
            RawTimestamp::Text(text) => DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("timestamp {:?} is not RFC 3339: {e}", truncate(&text))),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Decodes a JSON push received at `now`.
pub fn decode(
    body: &[u8],
    default_namespace: &str,
    max_metrics: usize,
    now: DateTime<Utc>,
) -> Result<Push, PushError> {
    let raw: RawPush =
        serde_json::from_slice(body).map_err(|e| PushError::Malformed(e.to_string()))?;
    if raw.metrics.len() > max_metrics {
        return Err(PushError::TooManyMetrics {
            count: raw.metrics.len(),
            limit: max_metrics,
        });
    }
    let namespace = raw
        .namespace
        .unwrap_or_else(|| default_namespace.to_owned());
    validate_namespace(&namespace).map_err(|r| PushError::BadNamespace(r.to_string()))?;

    let mut datums = Vec::with_capacity(raw.metrics.len());
    let mut rejected = Vec::new();
    for (index, entry) in raw.metrics.into_iter().enumerate() {
        let name = entry.get("name").and_then(|n| n.as_str()).map(truncate);
        match decode_metric(entry, now) {
            Ok(datum) => datums.push(datum),
            Err((reason, detail)) => rejected.push(Rejected {
                index,
                name,
                reason,
                detail,
            }),
        }
    }
    Ok(Push {
        namespace,
        datums,
        rejected,
    })
}

fn decode_metric(
    entry: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Datum, (&'static str, String)> {
    let raw: RawMetric =
        serde_json::from_value(entry).map_err(|e| ("malformed_metric", e.to_string()))?;
    let unit = match raw.unit.as_deref() {
        None => Unit::None,
        Some(u) => u
            .parse()
            .map_err(|r: vigil_shared::Rejection| (r.reason(), r.to_string()))?,
    };
    let timestamp = match raw.timestamp {
        None => now,
        Some(t) => t.resolve().map_err(|m| ("bad_timestamp", m))?,
    };
    let dimensions = raw
        .dimensions
        .into_iter()
        .map(|(name, value)| Dimension { name, value })
        .collect();
    let resolution = match raw.storage_resolution {
        None => Resolution::Standard,
        Some(seconds) => {
            Resolution::try_from(seconds).map_err(|m| ("bad_storage_resolution", m))?
        }
    };
    let datum =
        Datum::new(raw.name, dimensions, raw.value, unit, timestamp).at_resolution(resolution);
    datum
        .validate(now)
        .map_err(|r| (r.reason(), r.to_string()))?;
    Ok(datum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("fixed time")
    }

    #[test]
    fn decodes_the_documented_shape() {
        let body = br#"{"namespace":"Shop/Checkout","metrics":[
            {"name":"latency","value":12.5,"unit":"Milliseconds","dimensions":{"service":"api","az":"a"},"timestamp":"2026-11-25T07:59:00Z"},
            {"name":"orders","value":3,"timestamp":1795593540000,"storage_resolution":1}]}"#;
        let push = decode(body, "Vigil", 100, now()).expect("valid push");
        assert_eq!(push.namespace, "Shop/Checkout");
        assert!(push.rejected.is_empty());
        assert_eq!(push.datums.len(), 2);
        let latency = &push.datums[0];
        assert_eq!(latency.unit, Unit::Milliseconds);
        assert_eq!(latency.value, 12.5);
        assert_eq!(
            latency
                .dimensions
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["az", "service"]
        );
        assert_eq!(latency.timestamp.to_rfc3339(), "2026-11-25T07:59:00+00:00");
        assert_eq!(push.datums[1].unit, Unit::None);
        assert_eq!(latency.resolution, Resolution::Standard);
        assert_eq!(push.datums[1].resolution, Resolution::High);
        assert_eq!(
            push.datums[1].timestamp.timestamp_millis(),
            1_795_593_540_000
        );
    }

    #[test]
    fn defaults_namespace_and_timestamp() {
        let push = decode(
            br#"{"metrics":[{"name":"up","value":1}]}"#,
            "Vigil",
            10,
            now(),
        )
        .expect("valid push");
        assert_eq!(push.namespace, "Vigil");
        assert_eq!(push.datums[0].timestamp, now());
    }

    #[test]
    fn bad_entries_are_rejected_alone() {
        let body = br#"{"metrics":[
            {"name":"ok","value":1},
            {"name":"text","value":"NaN"},
            {"name":"huge","value":1e200},
            {"name":"old","value":1,"timestamp":"2026-10-01T00:00:00Z"},
            {"name":"unit","value":1,"unit":"Furlongs"},
            {"value":1},
            {"name":"fine","value":1,"storage_resolution":10},
            {"name":"ok2","value":2}]}"#;
        let push = decode(body, "Vigil", 100, now()).expect("push readable");
        assert_eq!(
            push.datums
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["ok", "ok2"]
        );
        let reasons: Vec<_> = push.rejected.iter().map(|r| (r.index, r.reason)).collect();
        assert_eq!(
            reasons,
            [
                (1, "malformed_metric"),
                (2, "out_of_range"),
                (3, "too_old"),
                (4, "unknown_unit"),
                (5, "malformed_metric"),
                (6, "bad_storage_resolution"),
            ]
        );
        assert_eq!(push.rejected[0].name.as_deref(), Some("text"));
    }

    #[test]
    fn unreadable_pushes_fail_whole() {
        assert!(matches!(
            decode(b"{", "V", 10, now()),
            Err(PushError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"[]", "V", 10, now()),
            Err(PushError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"metrics":[],"extra":1}"#, "V", 10, now()),
            Err(PushError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"namespace":"AWS/EC2","metrics":[]}"#, "V", 10, now()),
            Err(PushError::BadNamespace(_))
        ));
        assert_eq!(
            decode(br#"{"metrics":[1,2,3]}"#, "V", 2, now()),
            Err(PushError::TooManyMetrics { count: 3, limit: 2 })
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body, "Vigil", 100, now());
        }

        #[test]
        fn every_entry_is_stored_or_rejected(
            entries in proptest::collection::vec(
                (".{0,8}", proptest::num::f64::ANY, proptest::option::of("[A-Za-z/]{0,12}")),
                0..40)
        ) {
            let metrics: Vec<serde_json::Value> = entries.iter().map(|(name, value, unit)| {
                let mut m = serde_json::json!({"name": name, "value": value});
                if let Some(u) = unit { m["unit"] = serde_json::json!(u); }
                m
            }).collect();
            let body = serde_json::to_vec(&serde_json::json!({"metrics": metrics})).expect("json");
            let push = decode(&body, "Vigil", 100, now()).expect("well-formed push");
            prop_assert_eq!(push.datums.len() + push.rejected.len(), entries.len());
            for d in &push.datums {
                prop_assert!(d.validate(now()).is_ok());
            }
        }
    }
}
