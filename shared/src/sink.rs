//! Where metrics go: the [`MetricSink`] trait and its CloudWatch `PutMetricData` implementation,
//! which fills each request up to the API limits.

use std::future::Future;
use std::ops::Range;

use aws_sdk_cloudwatch::primitives::DateTime as SdkDateTime;
use aws_sdk_cloudwatch::types::{Dimension as SdkDimension, MetricDatum, StandardUnit};

use crate::limits::{CW_MAX_DATUMS_PER_PUT, CW_MAX_PUT_BYTES};
use crate::metric::Datum;
use crate::{Error, Result};

/// What a sink stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    pub datums: usize,
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

/// Upper bound of the bytes one datum adds to a `PutMetricData` request body. The SDK encodes
/// the request as CBOR (or, for older endpoints, as a form); both spend less than this: field
/// names and framing are counted at 96 bytes, each dimension at 32 bytes plus its strings.
pub fn estimated_wire_bytes(datum: &Datum) -> usize {
    96 + datum.name.len()
        + datum
            .dimensions
            .iter()
            .map(|d| 32 + d.name.len() + d.value.len())
            .sum::<usize>()
}

/// Bytes reserved in every request for the namespace and the envelope.
const REQUEST_OVERHEAD_BYTES: usize = 1024;

/// Splits `datums` into consecutive ranges, each filling one `PutMetricData` request as far as
/// the datum count and body size limits allow. Empty input gives no batch.
pub fn plan_batches(datums: &[Datum], namespace: &str) -> Vec<Range<usize>> {
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
        Self::new(aws_sdk_cloudwatch::Client::new(conf))
    }
}

fn to_sdk(datum: &Datum) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(&datum.name)
        .set_dimensions(Some(
            datum
                .dimensions
                .iter()
                .map(|d| {
                    SdkDimension::builder()
                        .name(&d.name)
                        .value(&d.value)
                        .build()
                })
                .collect(),
        ))
        .value(datum.value)
        .unit(StandardUnit::from(datum.unit.as_str()))
        .timestamp(SdkDateTime::from_millis(datum.timestamp.timestamp_millis()))
        .build()
}

impl MetricSink for CloudWatchSink {
    async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<PutOutcome> {
        let mut outcome = PutOutcome::default();
        for range in plan_batches(datums, namespace) {
            let batch: Vec<MetricDatum> = datums[range.clone()].iter().map(to_sdk).collect();
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(batch))
                .send()
                .await
                .map_err(|e| Error::aws("CloudWatch", "PutMetricData", e))?;
            outcome.requests += 1;
            outcome.datums += range.len();
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Dimension, Unit};
    use chrono::Utc;
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

    #[test]
    fn fills_requests_to_the_datum_limit() {
        let datums = vec![datum(1, 3); 2500];
        let batches = plan_batches(&datums, "ns");
        assert_eq!(batches, vec![0..1000, 1000..2000, 2000..2500]);
    }

    #[test]
    fn respects_the_byte_limit_with_wide_datums() {
        // 30 dimensions of 1,000-character values: about 31 KB each, so about 31 per request.
        let datums = vec![datum(30, 1000); 100];
        let batches = plan_batches(&datums, "ns");
        for b in &batches {
            let bytes: usize = datums[b.clone()].iter().map(estimated_wire_bytes).sum();
            assert!(bytes <= CW_MAX_PUT_BYTES, "{bytes}");
        }
        let per = CW_MAX_PUT_BYTES / estimated_wire_bytes(&datums[0]);
        assert_eq!(batches.len(), 100usize.div_ceil(per));
    }

    #[test]
    fn no_batches_for_no_datums() {
        assert!(plan_batches(&[], "ns").is_empty());
    }

    proptest! {
        #[test]
        fn batches_cover_every_datum_once_within_limits(
            shapes in proptest::collection::vec((0usize..31, 0usize..1025), 0..3000)
        ) {
            let datums: Vec<Datum> = shapes.iter().map(|&(d, l)| datum(d, l)).collect();
            let batches = plan_batches(&datums, "ns");
            let mut next = 0;
            for b in &batches {
                prop_assert_eq!(b.start, next);
                prop_assert!(!b.is_empty());
                prop_assert!(b.len() <= CW_MAX_DATUMS_PER_PUT);
                let bytes: usize = datums[b.clone()].iter().map(estimated_wire_bytes).sum();
                prop_assert!(bytes + REQUEST_OVERHEAD_BYTES <= CW_MAX_PUT_BYTES);
                next = b.end;
            }
            prop_assert_eq!(next, datums.len());
        }
    }
}
