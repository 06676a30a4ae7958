//! CloudWatch Logs subscription events (`{"awslogs": {"data": base64(gzip(JSON))}}`) into
//! metrics.
//!
//! Lines in CloudWatch Embedded Metric Format (EMF) become the metrics they declare. Other lines
//! are matched against the configured extraction rules: a regular expression with named groups,
//! or a field of a JSON line, gives the value and the dimensions. `CONTROL_MESSAGE` batches
//! (sent when a subscription is created) are acknowledged and ignored.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use vigil_shared::metric::{Datum, Dimension, Rejections, Resolution, Unit, validate_namespace};
use vigil_shared::{Error, Result};

use crate::guard::Guard;

/// The largest decompressed batch accepted. Lambda caps an asynchronous event at 1 MB, and a
/// log batch compresses about ten to one; anything past this is a decompression bomb.
pub const MAX_DECODED_BYTES: u64 = 32 * 1024 * 1024;

/// EMF allows at most 100 values in one metric's array.
pub const EMF_MAX_VALUES: usize = 100;

/// A decoded subscription batch.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogsData {
    pub message_type: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub log_group: String,
    #[serde(default)]
    pub log_stream: String,
    #[serde(default)]
    pub log_events: Vec<LogEvent>,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct LogEvent {
    #[serde(default)]
    pub id: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

/// Decodes `awslogs.data`: base64, then gzip (bounded), then JSON.
pub fn decode(data: &str) -> Result<LogsData> {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| Error::InvalidInput(format!("awslogs.data is not base64: {e}")))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| Error::InvalidInput(format!("awslogs.data is not gzip data: {e}")))?;
    if json.len() as u64 > MAX_DECODED_BYTES {
        return Err(Error::InvalidInput(format!(
            "awslogs.data decompresses to more than {MAX_DECODED_BYTES} bytes"
        )));
    }
    serde_json::from_slice(&json)
        .map_err(|e| Error::InvalidInput(format!("awslogs.data is not a log batch: {e}")))
}

/// One extraction rule (the `log_rules` section of the ingest config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRule {
    /// Metric name.
    pub metric: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub unit: Option<Unit>,
    /// Only lines from log groups starting with this.
    #[serde(default)]
    pub log_group_prefix: Option<String>,
    /// A regular expression; named groups feed `value_from` and `dimensions`.
    #[serde(default, with = "serde_regex_opt")]
    pub pattern: Option<Regex>,
    /// For JSON lines: the line must have this top-level field (used as the value when
    /// `value_from` is not set).
    #[serde(default)]
    pub json_field: Option<String>,
    /// The named group or JSON field holding the value; without it each match counts 1.
    #[serde(default)]
    pub value_from: Option<String>,
    /// Dimension name → named group or JSON field it is read from.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// Dimensions with fixed values.
    #[serde(default)]
    pub static_dimensions: BTreeMap<String, String>,
}

mod serde_regex_opt {
    use regex::Regex;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        regex::RegexBuilder::new(&text)
            .size_limit(1 << 20)
            .build()
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

impl LogRule {
    /// Checks the rule; errors name the field.
    pub fn validate(&self, at: &str) -> Result<()> {
        let fail = |field: &str, why: String| Err(Error::Config(format!("{at}: {field}: {why}")));
        match (&self.pattern, &self.json_field) {
            (Some(_), Some(_)) => {
                return fail("pattern", "give pattern or json_field, not both".into());
            }
            (None, None) => return fail("pattern", "give pattern or json_field".into()),
            _ => {}
        }
        if self.metric.is_empty() {
            return fail("metric", "must not be empty".into());
        }
        if let Some(ns) = &self.namespace {
            validate_namespace(ns).map_err(|r| Error::Config(format!("{at}: namespace: {r}")))?;
        }
        if let Some(re) = &self.pattern {
            let groups: Vec<&str> = re.capture_names().flatten().collect();
            for source in self.value_from.iter().chain(self.dimensions.values()) {
                if !groups.contains(&source.as_str()) {
                    return fail(
                        "pattern",
                        format!("has no named group {source:?} (groups: {groups:?})"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The datum this rule extracts from a line, if it matches. `Err` is a match that could
    /// not become a datum (a value that is not a number, say).
    fn extract(
        &self,
        message: &str,
        json: Option<&Value>,
    ) -> Option<std::result::Result<(f64, Vec<Dimension>), String>> {
        let mut dimensions: Vec<Dimension> = self
            .static_dimensions
            .iter()
            .map(|(k, v)| Dimension {
                name: k.clone(),
                value: v.clone(),
            })
            .collect();
        let value_text: Option<String>;
        if let Some(re) = &self.pattern {
            let caps = re.captures(message)?;
            for (dim, group) in &self.dimensions {
                let value = caps.name(group).map(|m| m.as_str()).unwrap_or_default();
                dimensions.push(Dimension {
                    name: dim.clone(),
                    value: value.to_owned(),
                });
            }
            value_text = self.value_from.as_ref().map(|g| {
                caps.name(g)
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default()
            });
        } else {
            let json = json?;
            let field = self.json_field.as_deref()?;
            let present = json.get(field)?;
            for (dim, source) in &self.dimensions {
                let value = match json.get(source) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                dimensions.push(Dimension {
                    name: dim.clone(),
                    value,
                });
            }
            let source = self.value_from.as_deref().map(|f| json.get(f));
            value_text = Some(match source.unwrap_or(Some(present)) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            });
            if self.value_from.is_none() && !matches!(present, Value::Number(_)) {
                return Some(Err(format!("field {field:?} is not a number")));
            }
        }
        let value = match value_text {
            None => 1.0,
            Some(text) => match text.trim().parse::<f64>() {
                Ok(v) => v,
                Err(_) => return Some(Err(format!("value {:?} is not a number", truncate(&text)))),
            },
        };
        Some(Ok((value, dimensions)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Datums extracted from a batch, grouped by namespace.
#[derive(Debug, Default, PartialEq)]
pub struct Extracted {
    pub by_namespace: BTreeMap<String, Vec<Datum>>,
    pub rejected: Rejections,
    pub lines: usize,
    /// Lines that were neither EMF nor matched by a rule.
    pub unmatched: usize,
}

impl Extracted {
    pub fn datums(&self) -> usize {
        self.by_namespace.values().map(Vec::len).sum()
    }
}

/// Extracts metrics from every line of `batch` at `now`: EMF lines first, then the rules.
/// `guard` refuses EMF into Vigil's own namespaces, and EMF that CloudWatch already extracted
/// (a Lambda function's log group, unless the configuration opts in).
pub fn extract(
    batch: &LogsData,
    rules: &[LogRule],
    default_namespace: &str,
    guard: &Guard,
    now: DateTime<Utc>,
) -> Extracted {
    let emf_allowed = guard.emf_from(&batch.log_group);
    let mut out = Extracted {
        lines: batch.log_events.len(),
        ..Extracted::default()
    };
    for event in &batch.log_events {
        let json: Option<Value> = if event.message.trim_start().starts_with('{') {
            serde_json::from_str(&event.message).ok()
        } else {
            None
        };
        let mut matched = false;
        if let Some(doc) = json.as_ref().filter(|d| d.get("_aws").is_some()) {
            matched = true;
            if emf_allowed {
                emf(doc, &mut out, guard, now);
            } else {
                out.rejected.add("emf_extracted_by_cloudwatch", || {
                    format!(
                        "{} is a Lambda function's log group: CloudWatch extracted its EMF when it was written, and ingesting it again would count every value twice (set logs.emf_from_lambda: true if it does not)",
                        batch.log_group
                    )
                });
            }
        }
        for rule in rules {
            if rule
                .log_group_prefix
                .as_ref()
                .is_some_and(|p| !batch.log_group.starts_with(p.as_str()))
            {
                continue;
            }
            let Some(result) = rule.extract(&event.message, json.as_ref()) else {
                continue;
            };
            matched = true;
            let namespace = rule.namespace.as_deref().unwrap_or(default_namespace);
            match result {
                Ok((value, dimensions)) => {
                    let timestamp = DateTime::from_timestamp_millis(event.timestamp).unwrap_or(now);
                    let datum = Datum::new(
                        rule.metric.clone(),
                        dimensions,
                        value,
                        rule.unit.unwrap_or_default(),
                        timestamp,
                    );
                    match datum.validate(now) {
                        Ok(()) => out
                            .by_namespace
                            .entry(namespace.to_owned())
                            .or_default()
                            .push(datum),
                        Err(r) => out.rejected.reject(&r, || rule.metric.clone()),
                    }
                }
                Err(why) => out
                    .rejected
                    .add("unparsable_value", || format!("{}: {why}", rule.metric)),
            }
        }
        if !matched {
            out.unmatched += 1;
        }
    }
    out
}

/// Reads one EMF document (`_aws.CloudWatchMetrics` directives) into datums.
fn emf(doc: &Value, out: &mut Extracted, guard: &Guard, now: DateTime<Utc>) {
    let aws = &doc["_aws"];
    let timestamp = aws["Timestamp"]
        .as_i64()
        .and_then(DateTime::from_timestamp_millis);
    let Some(timestamp) = timestamp else {
        out.rejected.add("emf_invalid", || {
            "_aws.Timestamp is missing or not epoch milliseconds".to_owned()
        });
        return;
    };
    let Some(directives) = aws["CloudWatchMetrics"].as_array() else {
        out.rejected.add("emf_invalid", || {
            "_aws.CloudWatchMetrics is missing or not an array".to_owned()
        });
        return;
    };
    for directive in directives {
        let Some(namespace) = directive["Namespace"].as_str() else {
            out.rejected
                .add("emf_invalid", || "a directive has no Namespace".to_owned());
            continue;
        };
        if let Err(r) = validate_namespace(namespace).and_then(|()| guard.namespace(namespace)) {
            out.rejected
                .reject(&r, || format!("EMF namespace {:?}", truncate(namespace)));
            continue;
        }
        let dimension_sets: Vec<Vec<&str>> = match directive.get("Dimensions") {
            None => vec![vec![]],
            Some(Value::Array(sets)) => sets
                .iter()
                .map(|set| {
                    set.as_array()
                        .map(|s| s.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default()
                })
                .collect(),
            Some(_) => {
                out.rejected.add("emf_invalid", || {
                    "Dimensions is not an array of arrays".to_owned()
                });
                continue;
            }
        };
        let Some(metrics) = directive["Metrics"].as_array() else {
            out.rejected.add("emf_invalid", || {
                "a directive has no Metrics array".to_owned()
            });
            continue;
        };
        for metric in metrics {
            let Some(name) = metric["Name"].as_str() else {
                out.rejected
                    .add("emf_invalid", || "a metric has no Name".to_owned());
                continue;
            };
            let unit = match metric.get("Unit").and_then(Value::as_str) {
                None => Unit::None,
                Some(u) => match u.parse::<Unit>() {
                    Ok(u) => u,
                    Err(r) => {
                        out.rejected.reject(&r, || name.to_owned());
                        continue;
                    }
                },
            };
            let resolution = match metric.get("StorageResolution") {
                None => Resolution::Standard,
                Some(r) => match r
                    .as_u64()
                    .and_then(|s| u32::try_from(s).ok())
                    .ok_or_else(|| format!("storage resolution {r}: not a whole number"))
                    .and_then(Resolution::try_from)
                {
                    Ok(r) => r,
                    Err(m) => {
                        out.rejected.add("emf_invalid", || format!("{name}: {m}"));
                        continue;
                    }
                },
            };
            let values: Vec<f64> = match &doc[name] {
                Value::Number(n) => n.as_f64().into_iter().collect(),
                Value::Array(a) if a.len() <= EMF_MAX_VALUES => {
                    a.iter().filter_map(Value::as_f64).collect()
                }
                Value::Array(_) => {
                    out.rejected.add("emf_invalid", || {
                        format!("{name}: more than {EMF_MAX_VALUES} values")
                    });
                    continue;
                }
                _ => {
                    out.rejected.add("emf_invalid", || {
                        format!("{name}: no numeric value at the root")
                    });
                    continue;
                }
            };
            for set in &dimension_sets {
                let mut dimensions = Vec::with_capacity(set.len());
                for key in set {
                    let value = match &doc[*key] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    dimensions.push(Dimension {
                        name: (*key).to_owned(),
                        value,
                    });
                }
                for &value in &values {
                    let datum = Datum::new(name, dimensions.clone(), value, unit, timestamp)
                        .at_resolution(resolution);
                    match datum.validate(now) {
                        Ok(()) => out
                            .by_namespace
                            .entry(namespace.to_owned())
                            .or_default()
                            .push(datum),
                        Err(r) => out.rejected.reject(&r, || name.to_owned()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    pub(crate) fn encode(json: &Value) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.to_string().as_bytes()).expect("gzip");
        base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))
    }

    const T: i64 = 1_795_593_590_000;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_795_593_600_000).expect("time")
    }

    fn batch(messages: &[&str]) -> LogsData {
        LogsData {
            message_type: "DATA_MESSAGE".into(),
            owner: "123456789012".into(),
            log_group: "/ecs/checkout".into(),
            log_stream: "s".into(),
            log_events: messages
                .iter()
                .enumerate()
                .map(|(i, m)| LogEvent {
                    id: i.to_string(),
                    timestamp: T,
                    message: (*m).to_owned(),
                })
                .collect(),
        }
    }

    fn rules(yaml: &str) -> Vec<LogRule> {
        let rules: Vec<LogRule> = vigil_shared::config::parse_yaml("t.yaml", yaml).expect("rules");
        for r in &rules {
            r.validate("t.yaml").expect("valid rule");
        }
        rules
    }

    #[test]
    fn decodes_a_subscription_batch() {
        let json = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": "s",
            "subscriptionFilters": ["f"], "logEvents": [{"id": "1", "timestamp": T, "message": "hello"}]});
        let data = decode(&encode(&json)).expect("decodes");
        assert_eq!(data.log_events[0].message, "hello");
        assert_eq!(data.log_group, "g");
    }

    #[test]
    fn bad_data_is_refused_with_a_reason() {
        assert!(
            decode("!!!")
                .expect_err("base64")
                .to_string()
                .contains("base64")
        );
        let plain = base64::engine::general_purpose::STANDARD.encode(b"not gzip");
        assert!(
            decode(&plain)
                .expect_err("gzip")
                .to_string()
                .contains("gzip")
        );
        let not_batch = encode(&serde_json::json!([1, 2]));
        assert!(
            decode(&not_batch)
                .expect_err("shape")
                .to_string()
                .contains("log batch")
        );
        // 64 MiB of zeros gzip to about 64 KB: refused at the limit, not read whole.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).expect("gzip");
        }
        let bomb = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
        assert!(
            decode(&bomb)
                .expect_err("bomb")
                .to_string()
                .contains("more than")
        );
    }

    #[test]
    fn emf_lines_become_their_metrics() {
        let line = serde_json::json!({
            "_aws": {"Timestamp": T, "CloudWatchMetrics": [{"Namespace": "Shop", "Dimensions": [["service"], ["service", "route"]],
                "Metrics": [{"Name": "latency", "Unit": "Milliseconds", "StorageResolution": 1}, {"Name": "hits", "StorageResolution": 60}]}]},
            "service": "api", "route": "/buy", "latency": [12.0, 15.5], "hits": 1
        }).to_string();
        let out = extract(&batch(&[&line]), &[], "Logs", &Guard::default(), now());
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let shop = &out.by_namespace["Shop"];
        // latency: 2 values × 2 dimension sets; hits: 1 × 2.
        assert_eq!(shop.len(), 6);
        assert_eq!(shop[0].unit, Unit::Milliseconds);
        assert_eq!(shop[0].dimensions.len(), 1);
        assert_eq!(shop[2].dimensions.len(), 2);
        assert_eq!(shop[0].timestamp.timestamp_millis(), T);
        // Each metric at the resolution its definition asks for.
        assert_eq!(shop[0].resolution, Resolution::High);
        assert_eq!(shop[4].name, "hits");
        assert_eq!(shop[4].resolution, Resolution::Standard);
    }

    #[test]
    fn broken_emf_is_rejected_and_the_rest_kept() {
        let good = serde_json::json!({"_aws": {"Timestamp": T, "CloudWatchMetrics": [{"Namespace": "Shop", "Metrics": [{"Name": "ok"}]}]}, "ok": 1}).to_string();
        let no_ts = serde_json::json!({"_aws": {"CloudWatchMetrics": []}}).to_string();
        let no_value = serde_json::json!({"_aws": {"Timestamp": T, "CloudWatchMetrics": [{"Namespace": "Shop", "Metrics": [{"Name": "gone"}]}]}}).to_string();
        let bad_unit = serde_json::json!({"_aws": {"Timestamp": T, "CloudWatchMetrics": [{"Namespace": "Shop", "Metrics": [{"Name": "u", "Unit": "Parsecs"}]}]}, "u": 1}).to_string();
        let bad_resolution = serde_json::json!({"_aws": {"Timestamp": T, "CloudWatchMetrics": [{"Namespace": "Shop", "Metrics": [{"Name": "r", "StorageResolution": 5}]}]}, "r": 1}).to_string();
        let out = extract(
            &batch(&[
                &good,
                &no_ts,
                &no_value,
                &bad_unit,
                &bad_resolution,
                "plain text",
            ]),
            &[],
            "Logs",
            &Guard::default(),
            now(),
        );
        assert_eq!(out.datums(), 1);
        assert_eq!(out.rejected.count("emf_invalid"), 3);
        assert_eq!(out.rejected.count("unknown_unit"), 1);
        assert_eq!(out.unmatched, 1);
    }

    /// EMF into Vigil's own namespaces is refused (the rest of the line's directives kept), and
    /// EMF in a Lambda function's log group, which CloudWatch already extracted, is refused
    /// unless the configuration opts in.
    #[test]
    fn forged_and_already_extracted_emf_is_refused() {
        let forged = serde_json::json!({"_aws": {"Timestamp": T, "CloudWatchMetrics": [
            {"Namespace": "Vigil", "Dimensions": [["Function"]], "Metrics": [{"Name": "Heartbeat"}]},
            {"Namespace": "Shop", "Metrics": [{"Name": "orders"}]}]},
            "Function": "alert", "Heartbeat": 1, "orders": 3}).to_string();
        let out = extract(&batch(&[&forged]), &[], "Logs", &Guard::default(), now());
        assert_eq!(out.rejected.count("vigil_namespace"), 1);
        assert!(!out.by_namespace.contains_key("Vigil"));
        assert_eq!(out.by_namespace["Shop"].len(), 1);

        let mut lambda = batch(&[&forged]);
        lambda.log_group = "/aws/lambda/checkout".into();
        let out = extract(&lambda, &[], "Logs", &Guard::default(), now());
        assert_eq!(out.datums(), 0);
        assert_eq!(out.rejected.count("emf_extracted_by_cloudwatch"), 1);
        let opted = Guard {
            emf_from_lambda: true,
            ..Guard::default()
        };
        let out = extract(&lambda, &[], "Logs", &opted, now());
        assert_eq!(out.by_namespace["Shop"].len(), 1);
        assert_eq!(
            out.rejected.count("vigil_namespace"),
            1,
            "still never Vigil's own"
        );
    }

    #[test]
    fn pattern_rules_extract_values_and_dimensions() {
        let r = rules(
            r#"
- metric: request_latency
  namespace: Shop
  unit: Milliseconds
  pattern: 'status=(?P<status>\d{3}) latency=(?P<ms>[\d.]+)'
  value_from: ms
  dimensions: {status: status}
  static_dimensions: {service: checkout}
- metric: errors
  namespace: Shop
  log_group_prefix: /ecs/checkout
  pattern: 'ERROR'
"#,
        );
        let out = extract(
            &batch(&[
                "GET /buy status=200 latency=12.5",
                "ERROR boom status=500 latency=abc",
                "nothing here",
            ]),
            &r,
            "Logs",
            &Guard::default(),
            now(),
        );
        let shop = &out.by_namespace["Shop"];
        assert_eq!(shop.len(), 2);
        assert_eq!(shop[0].name, "request_latency");
        assert_eq!(shop[0].value, 12.5);
        let dims: Vec<(&str, &str)> = shop[0]
            .dimensions
            .iter()
            .map(|d| (d.name.as_str(), d.value.as_str()))
            .collect();
        assert_eq!(dims, [("service", "checkout"), ("status", "200")]);
        assert_eq!((shop[1].name.as_str(), shop[1].value), ("errors", 1.0));
        assert_eq!(out.unmatched, 1);
        assert_eq!(
            out.rejected.total(),
            0,
            "latency=abc does not match the pattern's number group"
        );
    }

    #[test]
    fn json_field_rules_read_json_lines() {
        let r = rules("- {metric: queue_depth, json_field: depth, dimensions: {queue: name}}\n");
        let out = extract(
            &batch(&[
                r#"{"depth": 17, "name": "orders"}"#,
                r#"{"depth": "deep"}"#,
                r#"{"other": 1}"#,
            ]),
            &r,
            "Logs",
            &Guard::default(),
            now(),
        );
        let logs = &out.by_namespace["Logs"];
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].value, 17.0);
        assert_eq!(logs[0].dimensions[0].value, "orders");
        assert_eq!(out.rejected.count("unparsable_value"), 1);
    }

    #[test]
    fn rule_errors_name_the_field() {
        let parsed: Vec<LogRule> = vigil_shared::config::parse_yaml(
            "t.yaml",
            "- {metric: m, pattern: 'a(?P<x>b)', value_from: y}\n",
        )
        .expect("parses");
        let err = parsed[0]
            .validate("t.yaml: log_rules[0]")
            .expect_err("unknown group")
            .to_string();
        assert!(
            err.contains("log_rules[0]: pattern") && err.contains("\"y\""),
            "{err}"
        );
        let err = vigil_shared::config::parse_yaml::<Vec<LogRule>>(
            "t.yaml",
            "- {metric: m, pattern: '(('}\n",
        )
        .expect_err("bad regex")
        .to_string();
        assert!(err.contains("t.yaml:1:"), "{err}");
    }

    proptest! {
        /// What the EMF sink writes, the EMF reader reads back: same series, same samples.
        #[test]
        fn emf_sink_lines_read_back(values in proptest::collection::vec((0u8..3, -1e6f64..1e6), 1..300)) {
            let datums: Vec<Datum> = values.iter().map(|&(series, v)| Datum::new(
                format!("m{series}"),
                vec![Dimension { name: "service".into(), value: "api".into() }],
                v, Unit::Milliseconds, now() - chrono::Duration::seconds(5),
            )).collect();
            let lines = vigil_shared::EmfSink::lines("Shop", &datums);
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let out = extract(&batch(&refs), &[], "Logs", &Guard::default(), now());
            prop_assert!(out.rejected.is_empty());
            let mut got: Vec<(String, u64)> = out.by_namespace["Shop"].iter().map(|d| (d.name.clone(), d.value.to_bits())).collect();
            let mut want: Vec<(String, u64)> = datums.iter().map(|d| (d.name.clone(), d.value.to_bits())).collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn decode_never_panics(data in ".{0,200}") {
            let _ = decode(&data);
        }

        #[test]
        fn extract_never_panics_and_accounts_for_every_line(lines in proptest::collection::vec(".{0,80}", 0..20)) {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let r = rules("- {metric: m, pattern: '(?P<v>[0-9]+)', value_from: v}\n");
            let out = extract(&batch(&refs), &r, "Logs", &Guard::default(), now());
            prop_assert_eq!(out.lines, lines.len());
            prop_assert!(out.unmatched <= lines.len());
            for ds in out.by_namespace.values() {
                for d in ds {
                    prop_assert!(d.validate(now()).is_ok());
                }
            }
        }

        #[test]
        fn emf_never_panics_on_arbitrary_json(doc in arbitrary_json()) {
            let wrapped = serde_json::json!({"_aws": {"Timestamp": T, "CloudWatchMetrics": [doc.clone()]}, "x": doc});
            let _ = extract(&batch(&[&wrapped.to_string()]), &[], "Logs", &Guard::default(), now());
        }
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-zA-Z]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("Namespace".to_owned()),
                        Just("Metrics".to_owned()),
                        Just("Name".to_owned()),
                        Just("Dimensions".to_owned()),
                        "[a-z]{1,4}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
