//! Where metrics go: the [`MetricSink`] trait and its CloudWatch `PutMetricData` implementation,
//! which fills each request up to the API limits.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;

use aws_sdk_cloudwatch::primitives::DateTime as SdkDateTime;
use aws_sdk_cloudwatch::types::{Dimension as SdkDimension, MetricDatum, StandardUnit};

use crate::limits::{CW_MAX_DATUMS_PER_PUT, CW_MAX_PUT_BYTES, CW_MAX_VALUES_PER_DATUM};
use crate::metric::{Datum, Dimension, Resolution, Unit};
use crate::{Error, Result};

/// What a sink stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Samples stored (each input datum counts once, merged or not).
    pub datums: usize,
    /// API requests made.
    pub requests: usize,
}

/// A destination for validated datums. All or nothing from the caller's point of view: an
/// error means the caller must not report the datums as stored.
pub trait MetricSink: Send + Sync {
    fn put(
        &self,
        namespace: &str,
        datums: &[Datum],
    ) -> impl Future<Output = Result<PutOutcome>> + Send;
}

/// Samples of one series within one second, as one `MetricDatum`: its distinct values with
/// how often each occurred (`Values`/`Counts`). CloudWatch keeps at most one-second resolution,
/// so samples of a series in the same second lose nothing by sharing a datum.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate<'a> {
    /// The first sample: name, dimensions and unit of the series.
    pub series: &'a Datum,
    pub timestamp_secs: i64,
    /// Distinct values and their counts, at most [`CW_MAX_VALUES_PER_DATUM`].
    pub values: Vec<(f64, f64)>,
}

/// Merges samples of the same series (name, dimensions, unit, resolution) and second into [`Aggregate`]s,
/// in order of first appearance, each holding at most [`CW_MAX_VALUES_PER_DATUM`] distinct
/// values. Identical values are counted, not repeated.
pub fn aggregate(datums: &[Datum]) -> Vec<Aggregate<'_>> {
    type Key<'a> = (&'a str, &'a [Dimension], Unit, Resolution, i64);
    let mut open: HashMap<Key<'_>, usize> = HashMap::with_capacity(datums.len());
    let mut out: Vec<Aggregate<'_>> = Vec::with_capacity(datums.len());
    for d in datums {
        let secs = d.timestamp.timestamp();
        let key = (
            d.name.as_str(),
            d.dimensions.as_slice(),
            d.unit,
            d.resolution,
            secs,
        );
        if let Some(&i) = open.get(&key) {
            let values = &mut out[i].values;
            if let Some(slot) = values
                .iter_mut()
                .find(|(v, _)| v.to_bits() == d.value.to_bits())
            {
                slot.1 += 1.0;
                continue;
            }
            if values.len() < CW_MAX_VALUES_PER_DATUM {
                values.push((d.value, 1.0));
                continue;
            }
        }
        open.insert(key, out.len());
        out.push(Aggregate {
            series: d,
            timestamp_secs: secs,
            values: vec![(d.value, 1.0)],
        });
    }
    out
}

/// Upper bound of the bytes one datum adds to a `PutMetricData` request body. The SDK encodes
/// the request as CBOR (or, for older endpoints, as a form); both spend less than this: field
/// names and framing are counted at 96 bytes, each dimension at 32 bytes plus its strings, each
/// value with its count at 18 bytes.
pub fn estimated_wire_bytes(a: &Aggregate<'_>) -> usize {
    96 + a.series.name.len()
        + a.series
            .dimensions
            .iter()
            .map(|d| 32 + d.name.len() + d.value.len())
            .sum::<usize>()
        + 18 * a.values.len()
}

/// Bytes reserved in every request for the namespace and the envelope.
const REQUEST_OVERHEAD_BYTES: usize = 1024;

/// Splits `datums` into consecutive ranges, each filling one `PutMetricData` request as far as
/// the datum count and body size limits allow. Empty input gives no batch.
pub fn plan_batches(datums: &[Aggregate<'_>], namespace: &str) -> Vec<Range<usize>> {
    let budget = CW_MAX_PUT_BYTES - REQUEST_OVERHEAD_BYTES - namespace.len();
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, datum) in datums.iter().enumerate() {
        let size = estimated_wire_bytes(datum);
        if i > start && (i - start == CW_MAX_DATUMS_PER_PUT || bytes + size > budget) {
            batches.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < datums.len() {
        batches.push(start..datums.len());
    }
    batches
}

/// The fewest `PutMetricData` requests that can carry `datums`: what [`plan_batches`] achieves
/// when the byte limit does not bind first.
pub fn minimum_requests(datums: &[Datum]) -> usize {
    aggregate(datums).len().div_ceil(CW_MAX_DATUMS_PER_PUT)
}

/// [`MetricSink`] on CloudWatch `PutMetricData`.
#[derive(Clone, Debug)]
pub struct CloudWatchSink {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchSink {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }

    /// Builds the client from the shared SDK configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self::new(crate::aws::cloudwatch_client(conf))
    }
}

/// Dimensions in the SDK's type.
pub(crate) fn to_sdk_dimensions(dimensions: &[Dimension]) -> Vec<SdkDimension> {
    dimensions
        .iter()
        .map(|d| {
            SdkDimension::builder()
                .name(&d.name)
                .value(&d.value)
                .build()
        })
        .collect()
}

fn to_sdk(a: &Aggregate<'_>) -> MetricDatum {
    let datum = a.series;
    let mut builder = MetricDatum::builder()
        .metric_name(&datum.name)
        .set_dimensions(Some(to_sdk_dimensions(&datum.dimensions)))
        .unit(StandardUnit::from(datum.unit.as_str()))
        .timestamp(SdkDateTime::from_secs(a.timestamp_secs));
    if datum.resolution == Resolution::High {
        builder = builder.storage_resolution(1);
    }
    match a.values.as_slice() {
        [(value, count)] if *count == 1.0 => builder.value(*value).build(),
        values => builder
            .set_values(Some(values.iter().map(|(v, _)| *v).collect()))
            .set_counts(Some(values.iter().map(|(_, c)| *c).collect()))
            .build(),
    }
}

/// The `MetricData` of each `PutMetricData` request that stores `datums`: merged, batched to
/// the limits, and converted to the SDK's types.
pub fn build_requests(namespace: &str, datums: &[Datum]) -> Vec<Vec<MetricDatum>> {
    let aggregates = aggregate(datums);
    plan_batches(&aggregates, namespace)
        .into_iter()
        .map(|range| aggregates[range].iter().map(to_sdk).collect())
        .collect()
}

impl MetricSink for CloudWatchSink {
    async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<PutOutcome> {
        let mut outcome = PutOutcome::default();
        for batch in build_requests(namespace, datums) {
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(batch))
                .send()
                .await
                .map_err(|e| Error::aws("CloudWatch", "PutMetricData", e))?;
            outcome.requests += 1;
        }
        outcome.datums = datums.len();
        Ok(outcome)
    }
}

/// EMF allows at most this many values in one metric's array.
pub const EMF_MAX_VALUES: usize = 100;

/// [`MetricSink`] that writes CloudWatch Embedded Metric Format lines to stdout instead of
/// calling the API: CloudWatch Logs extracts the metrics from the function's log stream. No
/// request limits apply, but the metrics appear asynchronously and a failure to extract them is
/// not seen by the sender. One line per series and second, its values repeated by count.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmfSink;

impl EmfSink {
    /// The lines for `datums`, without writing them.
    pub fn lines(namespace: &str, datums: &[Datum]) -> Vec<String> {
        let mut lines = Vec::new();
        for a in aggregate(datums) {
            let mut values: Vec<f64> = Vec::new();
            for (v, c) in &a.values {
                values.extend(std::iter::repeat_n(*v, *c as usize));
            }
            let dims: Vec<(&str, &str)> = a
                .series
                .dimensions
                .iter()
                .map(|d| (d.name.as_str(), d.value.as_str()))
                .collect();
            for chunk in values.chunks(EMF_MAX_VALUES) {
                let mut fields = serde_json::Map::new();
                fields.insert(a.series.name.clone(), serde_json::json!(chunk));
                lines.push(crate::emf::line_at_resolution(
                    namespace,
                    &dims,
                    &[(a.series.name.as_str(), f64::NAN, a.series.unit)],
                    fields,
                    chrono::DateTime::from_timestamp(a.timestamp_secs, 0).unwrap_or_default(),
                    a.series.resolution,
                ));
            }
        }
        lines
    }
}

impl MetricSink for EmfSink {
    async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<PutOutcome> {
        let lines = Self::lines(namespace, datums);
        let mut out = std::io::stdout().lock();
        for line in &lines {
            use std::io::Write;
            writeln!(out, "{line}").map_err(|e| Error::Aws {
                service: "CloudWatch Logs",
                operation: "EMF",
                message: format!("writing to stdout: {e}"),
                retryable: true,
            })?;
        }
        Ok(PutOutcome {
            datums: datums.len(),
            requests: 0,
        })
    }
}

/// The variable that chooses the sink: `cloudwatch` (default) or `emf`.
pub const SINK_ENV: &str = "VIGIL_SINK";

/// The sink chosen by configuration (`VIGIL_SINK`: `cloudwatch`, the default, or `emf`).
#[derive(Clone, Debug)]
pub enum ConfiguredSink {
    CloudWatch(CloudWatchSink),
    Emf(EmfSink),
}

impl ConfiguredSink {
    /// Reads `VIGIL_SINK` and builds that sink.
    pub fn from_env(conf: &aws_config::SdkConfig) -> Result<Self> {
        match std::env::var(SINK_ENV).as_deref() {
            Err(_) | Ok("") | Ok("cloudwatch") => {
                Ok(Self::CloudWatch(CloudWatchSink::from_conf(conf)))
            }
            Ok("emf") => Ok(Self::Emf(EmfSink)),
            Ok(other) => Err(Error::Config(format!(
                "VIGIL_SINK: {other:?} is neither \"cloudwatch\" nor \"emf\""
            ))),
        }
    }
}

impl MetricSink for ConfiguredSink {
    async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<PutOutcome> {
        match self {
            Self::CloudWatch(s) => s.put(namespace, datums).await,
            Self::Emf(s) => s.put(namespace, datums).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use proptest::prelude::*;

    fn datum(dims: usize, value_len: usize) -> Datum {
        let dimensions = (0..dims)
            .map(|i| Dimension {
                name: format!("d{i}"),
                value: "v".repeat(value_len),
            })
            .collect();
        Datum::new("m", dimensions, 1.0, Unit::Count, Utc::now())
    }

    /// `n` distinct series (by a dimension value), one sample each.
    fn distinct(n: usize, dims: usize, value_len: usize) -> Vec<Datum> {
        (0..n)
            .map(|i| {
                let mut d = datum(dims, value_len);
                d.dimensions.push(Dimension {
                    name: "zz".into(),
                    value: i.to_string(),
                });
                d
            })
            .collect()
    }

    #[test]
    fn fills_requests_to_the_datum_limit() {
        let datums = distinct(2500, 1, 3);
        let aggregates = aggregate(&datums);
        assert_eq!(aggregates.len(), 2500);
        let batches = plan_batches(&aggregates, "ns");
        assert_eq!(batches, vec![0..1000, 1000..2000, 2000..2500]);
        assert_eq!(minimum_requests(&datums), 3);
    }

    #[test]
    fn respects_the_byte_limit_with_wide_datums() {
        // 30 dimensions of 1,000-character values: about 31 KB each, so about 31 per request.
        let datums = distinct(100, 29, 1000);
        let aggregates = aggregate(&datums);
        let batches = plan_batches(&aggregates, "ns");
        for b in &batches {
            let bytes: usize = aggregates[b.clone()].iter().map(estimated_wire_bytes).sum();
            assert!(bytes <= CW_MAX_PUT_BYTES, "{bytes}");
        }
        let per =
            (CW_MAX_PUT_BYTES - REQUEST_OVERHEAD_BYTES - 2) / estimated_wire_bytes(&aggregates[0]);
        assert_eq!(batches.len(), 100usize.div_ceil(per));
    }

    #[test]
    fn merges_samples_of_a_series_within_a_second() {
        let now = Utc::now();
        let mut datums = Vec::new();
        for (value, offset_ms) in [
            (1.0, 0),
            (2.0, 10),
            (1.0, 20),
            (5.0, 1000 - now.timestamp_subsec_millis() as i64),
        ] {
            let mut d = datum(1, 3);
            d.value = value;
            d.timestamp = now + Duration::milliseconds(offset_ms);
            datums.push(d);
        }
        let aggregates = aggregate(&datums);
        // The fourth sample falls in the next second.
        assert_eq!(aggregates.len(), 2);
        assert_eq!(aggregates[0].values, vec![(1.0, 2.0), (2.0, 1.0)]);
        assert_eq!(aggregates[1].values, vec![(5.0, 1.0)]);
    }

    #[test]
    fn high_resolution_datums_carry_it_and_never_share_a_datum_with_standard_ones() {
        let standard = datum(1, 3);
        let mut high = standard.clone().at_resolution(Resolution::High);
        high.value = 2.0;
        let requests = build_requests("ns", &[standard.clone(), high, standard]);
        let sent: Vec<(Option<i32>, Vec<f64>)> = requests[0]
            .iter()
            .map(|d| {
                let values = d.values().to_vec();
                (
                    d.storage_resolution(),
                    if values.is_empty() {
                        d.value().into_iter().collect()
                    } else {
                        values
                    },
                )
            })
            .collect();
        assert_eq!(sent, vec![(None, vec![1.0]), (Some(1), vec![2.0])]);
    }

    #[test]
    fn a_datum_holds_at_most_150_distinct_values() {
        let now = Utc::now();
        let datums: Vec<Datum> = (0..400)
            .map(|i| {
                let mut d = datum(1, 3);
                d.value = f64::from(i);
                d.timestamp = now;
                d
            })
            .collect();
        let aggregates = aggregate(&datums);
        let sizes: Vec<usize> = aggregates.iter().map(|a| a.values.len()).collect();
        assert_eq!(sizes, [150, 150, 100]);
    }

    #[test]
    fn emf_lines_carry_every_sample() {
        let now = Utc::now();
        let datums: Vec<Datum> = (0..250)
            .map(|i| {
                let mut d = datum(2, 3);
                d.value = f64::from(i % 3);
                d.timestamp = now;
                d
            })
            .collect();
        let lines = EmfSink::lines("Shop", &datums);
        let mut total = 0;
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let values = v["m"].as_array().expect("values");
            assert!(values.len() <= EMF_MAX_VALUES);
            total += values.len();
            assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Shop");
            assert_eq!(
                v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
                    .as_array()
                    .map(Vec::len),
                Some(2)
            );
            assert_eq!(v["d0"], "vvv");
        }
        assert_eq!(total, 250);
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn no_batches_for_no_datums() {
        assert!(plan_batches(&[], "ns").is_empty());
    }

    proptest! {
        // Each case builds up to 3,000 datums; 64 cases keep the suite fast.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn batches_cover_every_sample_once_within_limits(
            shapes in proptest::collection::vec((0usize..31, 0usize..1025, 0u8..4, 0u8..3), 0..3000)
        ) {
            let now = Utc::now();
            let datums: Vec<Datum> = shapes.iter().map(|&(d, l, series, value)| {
                let mut x = datum(d, l);
                x.name = format!("m{series}");
                x.value = f64::from(value);
                x.timestamp = now;
                x
            }).collect();
            let aggregates = aggregate(&datums);
            let counted: f64 = aggregates.iter().flat_map(|a| a.values.iter().map(|(_, c)| c)).sum();
            prop_assert_eq!(counted as usize, datums.len());
            for a in &aggregates {
                prop_assert!(a.values.len() <= CW_MAX_VALUES_PER_DATUM);
            }
            let batches = plan_batches(&aggregates, "ns");
            let mut next = 0;
            for b in &batches {
                prop_assert_eq!(b.start, next);
                prop_assert!(!b.is_empty());
                prop_assert!(b.len() <= CW_MAX_DATUMS_PER_PUT);
                let bytes: usize = aggregates[b.clone()].iter().map(estimated_wire_bytes).sum();
                prop_assert!(bytes + REQUEST_OVERHEAD_BYTES <= CW_MAX_PUT_BYTES);
                next = b.end;
            }
            prop_assert_eq!(next, aggregates.len());
        }
    }
}
