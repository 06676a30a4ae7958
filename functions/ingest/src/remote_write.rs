//! Prometheus remote-write 1.0: a snappy block-compressed protobuf `prometheus.WriteRequest`.
//!
//! The message types mirror `prompb/types.proto` and `prompb/remote.proto`. Label names and
//! values are read as bytes and checked as UTF-8 per series, so that one bad series is rejected
//! alone instead of failing the whole request. Exemplars are skipped; native histograms are
//! counted and rejected (CloudWatch has no equivalent). Metadata (a metric family's type)
//! counts where it arrives in the same request as its series, as some senders send it;
//! Prometheus sends its metadata in requests of their own, answered without storing anything,
//! and its series go by their names' suffixes.

use prost::Message;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.MetricMetadata`: a metric family's type, with its name as raw bytes (help and
/// unit are skipped).
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// `MetricType`: the same numbers as remote-write 2.0's.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub metric_family_name: Vec<u8>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms, kept undecoded: only their number matters here.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

/// `prometheus.Label`, with name and value as raw bytes.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The largest decompressed request accepted. Prometheus sends at most `max_samples_per_send`
/// (2,000 by default) samples per request, a few hundred KB; this leaves a wide margin and
/// still refuses a decompression bomb before any memory is spent on it.
pub const MAX_DECODED_BYTES: usize = 32 * 1024 * 1024;

/// The bit pattern Prometheus uses for a staleness marker (a series that disappeared).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Why a request body could not be read at all.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not valid snappy block data.
    Snappy(String),
    /// Decompressed size over [`MAX_DECODED_BYTES`].
    TooLarge(usize),
    /// Not a `WriteRequest`.
    Protobuf(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Snappy(e) => write!(f, "body is not snappy block-compressed data: {e}"),
            DecodeError::TooLarge(n) => write!(
                f,
                "body decompresses to {n} bytes; the limit is {MAX_DECODED_BYTES}"
            ),
            DecodeError::Protobuf(e) => write!(f, "body is not a prometheus.WriteRequest: {e}"),
        }
    }
}

/// Decompresses a snappy block, refusing before allocation anything that would exceed
/// [`MAX_DECODED_BYTES`].
pub fn decompress(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLarge(len));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))
}

/// Decodes a remote-write 1.0 body: snappy, then protobuf.
pub fn decode(body: &[u8]) -> Result<WriteRequest, DecodeError> {
    let raw = decompress(body)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Encodes a request the way Prometheus sends it (for tests, benchmarks and tools).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// A realistic request for benchmarks and tests: `series` series of one sample each, in the
/// shape a Kubernetes Prometheus sends (`labels` labels per series, `__name__` included, the
/// usual pod-level labels among them), stamped `timestamp_ms`.
pub fn sample_request(series: usize, labels: usize, timestamp_ms: i64) -> WriteRequest {
    const NAMES: [&str; 19] = [
        "job",
        "namespace",
        "pod",
        "instance",
        "container",
        "service",
        "endpoint",
        "node",
        "method",
        "code",
        "handler",
        "le",
        "cluster",
        "region",
        "zone",
        "app",
        "version",
        "team",
        "tier",
    ];
    let metrics = [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "process_cpu_seconds_total",
        "go_goroutines",
    ];
    WriteRequest {
        metadata: vec![],
        timeseries: (0..series)
            .map(|i| {
                let mut l = Vec::with_capacity(labels);
                l.push(Label::new("__name__", metrics[i % metrics.len()]));
                for (j, name) in NAMES.iter().take(labels.saturating_sub(1)).enumerate() {
                    let value = match *name {
                        "pod" => format!("checkout-7d9c5b6f4-{:05}", i % 500),
                        "instance" => format!("10.0.{}.{}:8080", (i / 250) % 256, i % 250),
                        "le" => ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "+Inf"][i % 8]
                            .to_owned(),
                        "handler" => format!("/api/v1/resource/{}", i % 40),
                        _ => format!("{name}-value-{}", (i + j) % 7),
                    };
                    l.push(Label::new(name, &value));
                }
                TimeSeries {
                    labels: l,
                    samples: vec![Sample {
                        value: i as f64 * 1.5,
                        timestamp: timestamp_ms,
                    }],
                    histograms: vec![],
                }
            })
            .collect(),
    }
}

impl Label {
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> WriteRequest {
        WriteRequest {
            metadata: vec![],
            timeseries: vec![TimeSeries {
                labels: vec![Label::new("__name__", "up"), Label::new("job", "api")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_795_593_600_000,
                }],
                histograms: vec![],
            }],
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(decode(&encode(&request())), Ok(request()));
    }

    #[test]
    fn bad_bodies_are_named() {
        assert!(matches!(
            decode(b"\xff\xff\xff\xff\xff\xff"),
            Err(DecodeError::Snappy(_))
        ));
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff")
            .expect("compress");
        assert!(matches!(decode(&not_proto), Err(DecodeError::Protobuf(_))));
        // A snappy header announcing 1 GiB: refused before decompression.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00];
        assert_eq!(decode(&bomb), Err(DecodeError::TooLarge(1 << 30)));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&body);
        }

        #[test]
        fn never_panics_on_arbitrary_protobuf(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let body = snap::raw::Encoder::new().compress_vec(&raw).expect("compress");
            let _ = decode(&body);
        }

        #[test]
        fn round_trips_any_request(
            series in proptest::collection::vec(
                (proptest::collection::vec(("[a-z_]{1,8}", ".{0,12}"), 0..6),
                 proptest::collection::vec((any::<f64>(), any::<i64>()), 0..4)),
                0..20)
        ) {
            let request = WriteRequest {
                metadata: vec![],
                timeseries: series.into_iter().map(|(labels, samples)| TimeSeries {
                    labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
                    samples: samples.into_iter().map(|(value, timestamp)| Sample { value, timestamp }).collect(),
                    histograms: vec![],
                }).collect(),
            };
            let decoded = decode(&encode(&request)).expect("decodes");
            prop_assert_eq!(decoded.timeseries.len(), request.timeseries.len());
            for (a, b) in decoded.timeseries.iter().zip(&request.timeseries) {
                prop_assert_eq!(&a.labels, &b.labels);
                prop_assert_eq!(a.samples.len(), b.samples.len());
                for (x, y) in a.samples.iter().zip(&b.samples) {
                    // proto3 leaves a zero out of the wire, so -0.0 comes back as 0.0.
                    let same = x.value.to_bits() == y.value.to_bits() || (x.value == 0.0 && y.value == 0.0);
                    prop_assert!(same, "{} != {}", x.value, y.value);
                    prop_assert_eq!(x.timestamp, y.timestamp);
                }
            }
        }
    }
}
