//! From Prometheus series to CloudWatch datums: `__name__` becomes the metric name, the other
//! labels become dimensions under the configured rules (drop, keep, rename), and every sample is
//! checked against what CloudWatch accepts.
//!
//! Per-instance labels (`instance`, `pod`, ...) are dropped from gauges, whose coinciding series
//! then merge into one metric that CloudWatch's statistics aggregate. Cumulative series
//! (counters, and a histogram's or summary's `_bucket`, `_sum`, `_count`, by their OpenMetrics
//! suffixes) keep every label: the sum of three pods' cumulative counts means nothing, and a
//! pod's reset would be read as a drop. Send their rate instead (a Prometheus recording rule,
//! see the README). Histograms arrive as one series per `le` bucket and are stored that way,
//! `le` as a dimension.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vigil_shared::limits::CW_MAX_DIMENSIONS;
use vigil_shared::metric::{Datum, Dimension, Rejections, Resolution, Unit, validate_namespace};
use vigil_shared::{Error, Result};

use crate::remote_write::{STALE_NAN_BITS, TimeSeries, WriteRequest};
use crate::remote_write_v2::Kind;

/// Labels dropped by default: they are unique per pod, container or scrape target, so keeping
/// them would make one CloudWatch metric per instance (cardinality, and cost, explode).
pub const DEFAULT_DROP_LABELS: [&str; 15] = [
    "instance",
    // OpenTelemetry's Prometheus exporters: one value per process (a restart makes a new one).
    "service_instance_id",
    "pod",
    "pod_name",
    "pod_ip",
    "pod_uid",
    "uid",
    "id",
    "container_id",
    "image_id",
    "pod_template_hash",
    "controller_revision_hash",
    "pod_template_generation",
    // The external labels the Prometheus Operator adds to every series: the replica of an HA
    // pair, and which Prometheus sent it. Two replicas' gauges are one series.
    "prometheus_replica",
    "prometheus",
];

/// How series map to CloudWatch metrics (the `remote_write` section of the ingest config).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// Namespace the series are stored in.
    pub namespace: String,
    /// Labels never kept as dimensions. Replaces the default list when given.
    pub drop_labels: BTreeSet<String>,
    /// When set, only these labels are kept (after `drop_labels`).
    pub keep_labels: Option<BTreeSet<String>>,
    /// Label renames, applied after dropping and keeping: `{job: service}`.
    pub rename: BTreeMap<String, String>,
    /// Series accepted in one request; the rest are rejected as `series_limit`.
    pub max_series_per_request: usize,
    /// How finely CloudWatch stores the series: `60` (standard, the default) or `1` (high
    /// resolution, for senders that scrape or evaluate more often than once a minute and rules
    /// with periods under a minute).
    pub storage_resolution: Resolution,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            namespace: "Prometheus".to_owned(),
            drop_labels: DEFAULT_DROP_LABELS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            keep_labels: None,
            rename: BTreeMap::new(),
            max_series_per_request: 20_000,
            storage_resolution: Resolution::Standard,
        }
    }
}

impl MappingConfig {
    /// Checks the settings; errors name the field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        validate_namespace(&self.namespace)
            .map_err(|r| Error::Config(format!("{origin}: remote_write.namespace: {r}")))?;
        if self.max_series_per_request == 0 {
            return Err(Error::Config(format!(
                "{origin}: remote_write.max_series_per_request: must be at least 1"
            )));
        }
        for (from, to) in &self.rename {
            if to.is_empty() || to.starts_with("__") {
                return Err(Error::Config(format!(
                    "{origin}: remote_write.rename.{from}: {to:?} is not a usable dimension name"
                )));
            }
        }
        Ok(())
    }

    /// Whether a label of a series becomes a dimension. A cumulative series keeps all its
    /// labels: dropping one would merge series whose values cannot be merged.
    fn keeps(&self, label: &str, cumulative: bool) -> bool {
        !label.starts_with("__")
            && (cumulative
                || (!self.drop_labels.contains(label)
                    && self.keep_labels.as_ref().is_none_or(|k| k.contains(label))))
    }
}

/// OpenMetrics suffixes of cumulative series: counters (`_total`, `_created`), and a
/// histogram's or summary's buckets, sum and count.
pub const CUMULATIVE_SUFFIXES: [&str; 5] = ["_total", "_created", "_bucket", "_sum", "_count"];

/// Whether a metric name is that of a cumulative series.
pub fn is_cumulative(name: &str) -> bool {
    CUMULATIVE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// What a request mapped to.
#[derive(Debug, Default, PartialEq)]
pub struct Mapped {
    pub datums: Vec<Datum>,
    pub rejected: Rejections,
    /// Staleness markers: Prometheus's signal that a series ended. Not data; skipped.
    pub stale_markers: usize,
    pub series: usize,
}

/// Maps a decoded 1.0 request at `now`. Consumes it so that label strings move, not copy.
/// A series is cumulative by the type the request's metadata gives its family, else by its
/// name's suffix.
pub fn map_request(request: WriteRequest, config: &MappingConfig, now: DateTime<Utc>) -> Mapped {
    let families: HashMap<Vec<u8>, i32> = request
        .metadata
        .into_iter()
        .filter(|m| Kind::of_type(m.r#type) != Kind::Unspecified)
        .map(|m| (m.metric_family_name, m.r#type))
        .collect();
    map_series_list(
        request.timeseries.into_iter().map(|s| {
            let kind = if families.is_empty() {
                Kind::Unspecified
            } else {
                family_kind(&s, &families)
            };
            (s, kind)
        }),
        config,
        now,
    )
}

/// `MetricType` numbers of the families whose series carry a suffix.
const COUNTER: i32 = 1;
const HISTOGRAM: i32 = 3;
const GAUGE_HISTOGRAM: i32 = 4;
const SUMMARY: i32 = 5;

/// The kind the metadata gives a series: by its own name's family (a counter named without
/// `_total`, a gauge named like a count), or by the family it is a suffixed series of (a
/// counter's `_total`, a histogram's or summary's `_bucket`, `_sum`, `_count`, a gauge
/// histogram's `_bucket`). No family: the suffix decides.
fn family_kind(series: &TimeSeries, families: &HashMap<Vec<u8>, i32>) -> Kind {
    let Some(name) = series.labels.iter().find(|l| l.name == b"__name__") else {
        return Kind::Unspecified;
    };
    let name = name.value.as_slice();
    if let Some(metric_type) = families.get(name) {
        return Kind::of_type(*metric_type);
    }
    for suffix in CUMULATIVE_SUFFIXES {
        let Some(family) = name.strip_suffix(suffix.as_bytes()) else {
            continue;
        };
        match families.get(family) {
            Some(&(COUNTER | HISTOGRAM | SUMMARY)) => return Kind::Cumulative,
            Some(&GAUGE_HISTOGRAM) if suffix == "_bucket" => return Kind::Gauge,
            _ => {}
        }
    }
    Kind::Unspecified
}

/// Maps series whose kind the sender may have said (remote-write 2.0's metadata): a counter,
/// histogram or summary is cumulative, a gauge is not, and an unspecified one goes by its
/// name's suffix.
pub fn map_series_list(
    series: impl ExactSizeIterator<Item = (TimeSeries, Kind)>,
    config: &MappingConfig,
    now: DateTime<Utc>,
) -> Mapped {
    let mut mapped = Mapped {
        datums: Vec::with_capacity(series.len()),
        series: series.len(),
        ..Mapped::default()
    };
    for (index, (series, kind)) in series.enumerate() {
        if index >= config.max_series_per_request {
            let samples = series.samples.len() + series.histograms.len();
            mapped.rejected.add_many("series_limit", samples, || {
                format!(
                    "more than {} series in one request",
                    config.max_series_per_request
                )
            });
            continue;
        }
        map_series(series, kind, config, now, &mut mapped);
    }
    mapped
}

fn map_series(
    series: TimeSeries,
    kind: Kind,
    config: &MappingConfig,
    now: DateTime<Utc>,
    out: &mut Mapped,
) {
    let samples = series.samples.len();
    out.rejected
        .add_many("native_histogram", series.histograms.len(), || {
            "native histograms have no CloudWatch equivalent; use classic histograms".to_owned()
        });
    let mut name: Option<String> = None;
    let mut dimensions: Vec<Dimension> = Vec::with_capacity(series.labels.len());
    let cumulative = match kind {
        Kind::Cumulative => true,
        Kind::Gauge => false,
        Kind::Unspecified => series
            .labels
            .iter()
            .find(|l| l.name == b"__name__")
            .is_some_and(|l| std::str::from_utf8(&l.value).is_ok_and(is_cumulative)),
    };
    for label in series.labels {
        let (Ok(label_name), Ok(value)) = (
            String::from_utf8(label.name),
            String::from_utf8(label.value),
        ) else {
            out.rejected.add_many("invalid_utf8", samples, || {
                "a label name or value is not UTF-8".to_owned()
            });
            return;
        };
        if label_name == "__name__" {
            name = Some(value);
        } else if config.keeps(&label_name, cumulative) && !value.is_empty() {
            let label_name = config
                .rename
                .get(&label_name)
                .cloned()
                .unwrap_or(label_name);
            dimensions.push(Dimension {
                name: label_name,
                value,
            });
        }
    }
    let Some(name) = name else {
        out.rejected.add_many("missing_name", samples, || {
            "series without a __name__ label".to_owned()
        });
        return;
    };
    if dimensions.len() > CW_MAX_DIMENSIONS {
        let n = dimensions.len();
        out.rejected.add_many("too_many_dimensions", samples, || {
            if cumulative {
                format!("{name}: {n} labels; a cumulative series keeps them all (its pods' values cannot be merged) and CloudWatch takes {CW_MAX_DIMENSIONS}: send its rate from a recording rule")
            } else {
                format!("{name}: {n} dimensions after mapping; CloudWatch takes {CW_MAX_DIMENSIONS} (drop labels in the config)")
            }
        });
        return;
    }
    let mut template =
        Datum::new(name, dimensions, 0.0, Unit::None, now).at_resolution(config.storage_resolution);
    let last = samples.saturating_sub(1);
    for (i, sample) in series.samples.into_iter().enumerate() {
        if sample.value.to_bits() == STALE_NAN_BITS {
            out.stale_markers += 1;
            continue;
        }
        let Some(timestamp) = DateTime::from_timestamp_millis(sample.timestamp) else {
            out.rejected.add("bad_timestamp", || {
                format!(
                    "{}: timestamp {} ms is out of range",
                    template.name, sample.timestamp
                )
            });
            continue;
        };
        template.value = sample.value;
        template.timestamp = timestamp;
        if let Err(r) = template.validate(now) {
            out.rejected.reject(&r, || template.name.clone());
            continue;
        }
        // The last sample takes the series' strings; earlier ones copy them.
        if i == last {
            out.datums.push(template);
            return;
        }
        out.datums.push(template.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::{Label, Sample};
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_795_593_600_000).expect("time")
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
            histograms: vec![],
        }
    }

    const T: i64 = 1_795_593_590_000;

    /// Metadata sent with the series (as the OpenTelemetry Collector's exporter can) decides
    /// what is cumulative; without it, the suffix does.
    #[test]
    fn metadata_in_the_request_says_which_series_are_cumulative() {
        use crate::remote_write::MetricMetadata;
        let meta = |name: &str, t: i32| MetricMetadata {
            r#type: t,
            metric_family_name: name.as_bytes().to_vec(),
        };
        // Per name: whether its three pods stay apart.
        let cases = [
            ("legacy_requests", true),        // a counter without `_total`
            ("queue_depth_count", false),     // a gauge named like a count
            ("latency_seconds_bucket", true), // a histogram family's bucket
            ("inflight_bucket", false),       // a gauge histogram's bucket
            ("other_total", true),            // no metadata: the suffix
            ("memory_bytes", false),          // no metadata: the suffix
        ];
        let request = WriteRequest {
            metadata: vec![
                meta("legacy_requests", 1),
                meta("queue_depth_count", 2),
                meta("latency_seconds", 3),
                meta("inflight", 4),
                meta("unused", 0),
            ],
            timeseries: cases
                .iter()
                .flat_map(|(name, _)| {
                    (0..3).map(move |pod| {
                        series(
                            &[("__name__", name), ("pod", &format!("p{pod}"))],
                            &[(f64::from(pod), T)],
                        )
                    })
                })
                .collect(),
        };
        let mapped = map_request(request, &MappingConfig::default(), now());
        for (name, apart) in cases {
            let datums: Vec<&Datum> = mapped.datums.iter().filter(|d| d.name == name).collect();
            assert_eq!(datums.len(), 3, "{name}");
            let with_pod = datums
                .iter()
                .filter(|d| d.dimensions.iter().any(|x| x.name == "pod"))
                .count();
            assert_eq!(with_pod, if apart { 3 } else { 0 }, "{name}");
        }
    }

    #[test]
    fn the_configured_storage_resolution_reaches_every_datum() {
        let request = || WriteRequest {
            metadata: vec![],
            timeseries: vec![
                series(&[("__name__", "up"), ("job", "a")], &[(1.0, T)]),
                series(
                    &[("__name__", "http_requests_total"), ("job", "a")],
                    &[(7.0, T), (8.0, T + 1000)],
                ),
            ],
        };
        let standard = map_request(request(), &MappingConfig::default(), now());
        assert!(
            standard
                .datums
                .iter()
                .all(|d| d.resolution == Resolution::Standard)
        );
        let high = MappingConfig {
            storage_resolution: Resolution::High,
            ..MappingConfig::default()
        };
        let mapped = map_request(request(), &high, now());
        assert_eq!(mapped.datums.len(), 3);
        assert!(
            mapped
                .datums
                .iter()
                .all(|d| d.resolution == Resolution::High)
        );
    }

    #[test]
    fn maps_names_and_dimensions_under_the_config() {
        let config = MappingConfig {
            rename: [("job".to_owned(), "service".to_owned())].into(),
            ..MappingConfig::default()
        };
        let request = WriteRequest {
            metadata: vec![],
            timeseries: vec![series(
                &[
                    ("__name__", "process_resident_memory_bytes"),
                    ("job", "api"),
                    ("instance", "10.0.0.1:9090"),
                    ("pod", "api-7d9c"),
                    ("service_instance_id", "5f1b2c3d"),
                    ("zone", "a"),
                    ("empty", ""),
                ],
                &[(42.0, T), (43.0, T + 15_000)],
            )],
        };
        let mapped = map_request(request, &config, now());
        assert!(mapped.rejected.is_empty(), "{:?}", mapped.rejected);
        assert_eq!(mapped.datums.len(), 2);
        let d = &mapped.datums[0];
        assert_eq!(d.name, "process_resident_memory_bytes");
        let dims: Vec<(&str, &str)> = d
            .dimensions
            .iter()
            .map(|d| (d.name.as_str(), d.value.as_str()))
            .collect();
        assert_eq!(dims, [("service", "api"), ("zone", "a")]);
        assert_eq!(d.timestamp.timestamp_millis(), T);
        assert_eq!(mapped.datums[1].value, 43.0);
    }

    /// Three pods' series: a gauge's merge into one metric (CloudWatch's statistics aggregate
    /// them); a counter's, and a histogram's buckets, sum and count, stay one metric per pod,
    /// whatever drop_labels and keep_labels say: summing cumulative values across pods means
    /// nothing, and one pod's restart would read as a drop of the sum.
    #[test]
    fn cumulative_series_are_never_merged_across_dropped_labels() {
        use vigil_shared::sink::aggregate;
        let config = MappingConfig {
            keep_labels: Some(["job".to_owned(), "le".to_owned()].into()),
            ..MappingConfig::default()
        };
        for (name, cumulative) in [
            ("process_resident_memory_bytes", false),
            ("http_requests_total", true),
            ("http_request_duration_seconds_bucket", true),
            ("http_request_duration_seconds_sum", true),
            ("http_request_duration_seconds_count", true),
            ("process_start_time_seconds", false),
        ] {
            assert_eq!(is_cumulative(name), cumulative, "{name}");
            let request = WriteRequest {
                metadata: vec![],
                timeseries: (0..3)
                    .map(|pod| {
                        series(
                            &[
                                ("__name__", name),
                                ("job", "api"),
                                ("instance", &format!("10.0.0.{pod}:9090")),
                                ("pod", &format!("api-{pod}")),
                                ("le", "0.25"),
                            ],
                            &[(100.0 * f64::from(pod + 1), T)],
                        )
                    })
                    .collect(),
            };
            let mapped = map_request(request, &config, now());
            let metrics = aggregate(&mapped.datums).len();
            assert_eq!(metrics, if cumulative { 3 } else { 1 }, "{name}");
            if cumulative {
                assert!(
                    mapped
                        .datums
                        .iter()
                        .all(|d| d.dimensions.iter().any(|x| x.name == "pod")),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn keep_labels_restricts_dimensions() {
        let config = MappingConfig {
            keep_labels: Some(["job".to_owned()].into()),
            ..MappingConfig::default()
        };
        let request = WriteRequest {
            metadata: vec![],
            timeseries: vec![series(
                &[("__name__", "up"), ("job", "api"), ("zone", "a")],
                &[(1.0, T)],
            )],
        };
        let mapped = map_request(request, &config, now());
        assert_eq!(mapped.datums[0].dimensions.len(), 1);
    }

    #[test]
    fn rejects_per_sample_and_per_series_with_reasons() {
        let mut bad_utf8 = series(&[("__name__", "x")], &[(1.0, T)]);
        bad_utf8.labels.push(Label {
            name: b"job".to_vec(),
            value: vec![0xff, 0xfe],
        });
        let many: Vec<(String, String)> = (0..31)
            .map(|i| (format!("l{i:02}"), "v".to_owned()))
            .collect();
        let mut wide_labels: Vec<(&str, &str)> =
            many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        wide_labels.push(("__name__", "wide"));
        let mut histo = series(&[("__name__", "h")], &[]);
        histo.histograms.push(vec![1, 2, 3]);
        let request = WriteRequest {
            metadata: vec![],
            timeseries: vec![
                series(
                    &[("__name__", "ok")],
                    &[
                        (1.0, T),
                        (f64::NAN, T),
                        (f64::from_bits(STALE_NAN_BITS), T),
                        (f64::INFINITY, T),
                        (1.0, T - 20 * 86_400_000),
                        (2.0, T + 3 * 3_600_000 + 10_000),
                    ],
                ),
                series(&[("job", "no-name")], &[(1.0, T)]),
                bad_utf8,
                series(&wide_labels, &[(1.0, T), (2.0, T)]),
                histo,
            ],
        };
        let mapped = map_request(request, &MappingConfig::default(), now());
        assert_eq!(mapped.datums.len(), 1);
        assert_eq!(mapped.stale_markers, 1);
        let r = &mapped.rejected;
        assert_eq!(r.count("non_finite"), 2);
        assert_eq!(r.count("too_old"), 1);
        assert_eq!(r.count("in_future"), 1);
        assert_eq!(r.count("missing_name"), 1);
        assert_eq!(r.count("invalid_utf8"), 1);
        assert_eq!(r.count("too_many_dimensions"), 2);
        assert_eq!(r.count("native_histogram"), 1);
        assert_eq!(r.total(), 9);
    }

    #[test]
    fn series_over_the_limit_are_rejected_not_lost_silently() {
        let config = MappingConfig {
            max_series_per_request: 2,
            ..MappingConfig::default()
        };
        let request = WriteRequest {
            metadata: vec![],
            timeseries: (0..5)
                .map(|i| series(&[("__name__", "m"), ("k", &i.to_string())], &[(1.0, T)]))
                .collect(),
        };
        let mapped = map_request(request, &config, now());
        assert_eq!(mapped.datums.len(), 2);
        assert_eq!(mapped.rejected.count("series_limit"), 3);
    }

    #[test]
    fn config_validation_names_the_field() {
        let bad = MappingConfig {
            namespace: "AWS/Foo".into(),
            ..MappingConfig::default()
        };
        assert!(
            bad.validate("ingest.yaml")
                .expect_err("reserved")
                .to_string()
                .contains("remote_write.namespace")
        );
        let bad = MappingConfig {
            rename: [("job".into(), "__x".into())].into(),
            ..MappingConfig::default()
        };
        assert!(
            bad.validate("ingest.yaml")
                .expect_err("rename")
                .to_string()
                .contains("rename.job")
        );
    }

    /// 100,000 samples of a realistic request fill `PutMetricData` requests to the limits:
    /// the request count equals the theoretical minimum, the larger of the datum bound and the
    /// byte bound.
    #[test]
    fn a_large_request_needs_the_minimum_of_put_requests() {
        use vigil_shared::limits::{CW_MAX_DATUMS_PER_PUT, CW_MAX_PUT_BYTES};
        use vigil_shared::sink::{aggregate, build_requests, estimated_wire_bytes};
        let config = MappingConfig {
            max_series_per_request: 100_000,
            ..MappingConfig::default()
        };
        for keep_instance in [false, true] {
            let mut config = config.clone();
            if keep_instance {
                config.drop_labels.clear();
            }
            let request = crate::remote_write::sample_request(100_000, 20, T);
            let mapped = map_request(request, &config, now());
            assert_eq!(mapped.datums.len(), 100_000);
            let aggregates = aggregate(&mapped.datums);
            let bytes: usize = aggregates.iter().map(estimated_wire_bytes).sum();
            let minimum = aggregates
                .len()
                .div_ceil(CW_MAX_DATUMS_PER_PUT)
                .max(bytes.div_ceil(CW_MAX_PUT_BYTES));
            let requests = build_requests(&config.namespace, &mapped.datums);
            assert_eq!(requests.len(), minimum, "keep_instance={keep_instance}");
            let datums: usize = requests.iter().map(Vec::len).sum();
            assert_eq!(datums, aggregates.len());
            println!(
                "100,000 samples, drop_labels {}: {} datums after merging, {} PutMetricData requests (minimum {minimum})",
                if keep_instance { "none" } else { "default" },
                aggregates.len(),
                requests.len()
            );
        }
    }

    proptest! {
        #[test]
        fn every_sample_is_stored_rejected_or_a_stale_marker(
            input in proptest::collection::vec(
                (proptest::collection::vec(("[a-z_]{1,6}", "[a-z0-9]{0,6}"), 0..40),
                 proptest::option::of("[a-z_]{1,10}"),
                 proptest::collection::vec((any::<f64>(), -40i64..40), 0..5)),
                0..30)
        ) {
            let request = WriteRequest {
                metadata: vec![],
                timeseries: input.iter().map(|(labels, name, samples)| {
                    let mut s = TimeSeries {
                        labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
                        samples: samples.iter().map(|&(value, hours)| Sample { value, timestamp: T + hours * 3_600_000 }).collect(),
                        histograms: vec![],
                    };
                    if let Some(n) = name { s.labels.push(Label::new("__name__", n)); }
                    s
                }).collect(),
            };
            let total: usize = input.iter().map(|(_, _, s)| s.len()).sum();
            let mapped = map_request(request, &MappingConfig::default(), now());
            prop_assert_eq!(mapped.datums.len() + mapped.rejected.total() + mapped.stale_markers, total);
            for d in &mapped.datums {
                prop_assert!(d.validate(now()).is_ok());
            }
        }
    }
}
