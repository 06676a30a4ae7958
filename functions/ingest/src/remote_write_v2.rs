//! Prometheus remote-write 2.0: a snappy block-compressed protobuf
//! `io.prometheus.write.v2.Request` (Content-Type
//! `application/x-protobuf;proto=io.prometheus.write.v2.Request`, spec "Remote-Write 2.0").
//!
//! The message types mirror `prompb/io/prometheus/write/v2/types.proto`: strings are sent once
//! in `symbols` and referenced by index (`labels_refs` in name, value pairs). A series is
//! resolved to the same shape as 1.0's, so one mapping serves both, with its metadata type
//! telling a cumulative series (counter, histogram, summary) from a gauge where the name's
//! suffix does not. A series whose references point outside the symbols, or whose label list
//! is odd, is rejected alone; the rest of the request is kept.

use prost::Message;

use crate::remote_write::{DecodeError, Label, Sample, TimeSeries, decompress};

/// The `proto` parameter of a 2.0 request's Content-Type.
pub const PROTO: &str = "io.prometheus.write.v2.Request";

/// `io.prometheus.write.v2.Request`.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<Series>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct Series {
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms, kept undecoded: only their number matters here.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub histograms: Vec<Vec<u8>>,
    /// Exemplars, kept undecoded: CloudWatch has nowhere to put them.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub exemplars: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Metadata {
    /// `MetricType`: 0 unspecified, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram,
    /// 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// What the sender said a series is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Cumulative: a counter, a histogram's or a summary's series.
    Cumulative,
    /// A gauge (or a gauge histogram, info, stateset).
    Gauge,
    /// Not said: the name's suffix decides.
    Unspecified,
}

impl Kind {
    fn of(metadata: Option<Metadata>) -> Kind {
        Kind::of_type(metadata.map_or(0, |m| m.r#type))
    }

    /// The kind of a `MetricType` (1.0 and 2.0 number them alike): counter, histogram and
    /// summary are cumulative; gauge, gauge histogram, info and stateset are not.
    pub fn of_type(metric_type: i32) -> Kind {
        match metric_type {
            1 | 3 | 5 => Kind::Cumulative,
            2 | 4 | 6 | 7 => Kind::Gauge,
            _ => Kind::Unspecified,
        }
    }
}

/// A 2.0 request resolved to 1.0's series, each with its kind; series that cannot be resolved
/// are counted with their samples.
#[derive(Debug, Default, PartialEq)]
pub struct Resolved {
    pub series: Vec<(TimeSeries, Kind)>,
    /// Series whose references are broken, and the samples they carried.
    pub broken_series: usize,
    pub broken_samples: usize,
    /// Exemplars received (not stored).
    pub exemplars: usize,
}

/// Decodes a 2.0 body: snappy, then protobuf, then the symbol references.
pub fn decode(body: &[u8]) -> Result<Resolved, DecodeError> {
    let raw = decompress(body)?;
    let request = Request::decode(raw.as_slice())
        .map_err(|e| DecodeError::Protobuf(format!("not an {PROTO}: {e}")))?;
    Ok(resolve(request))
}

/// Resolves every series' label references against the request's symbols.
pub fn resolve(request: Request) -> Resolved {
    let mut out = Resolved::default();
    let symbols = &request.symbols;
    for series in request.timeseries {
        out.exemplars += series.exemplars.len();
        let samples = series.samples.len() + series.histograms.len();
        let labels: Option<Vec<Label>> = (series.labels_refs.len() % 2 == 0)
            .then(|| {
                series
                    .labels_refs
                    .chunks_exact(2)
                    .map(|pair| {
                        let name = symbols.get(pair[0] as usize)?;
                        let value = symbols.get(pair[1] as usize)?;
                        Some(Label {
                            name: name.as_bytes().to_vec(),
                            value: value.as_bytes().to_vec(),
                        })
                    })
                    .collect()
            })
            .flatten();
        let Some(labels) = labels else {
            out.broken_series += 1;
            out.broken_samples += samples;
            continue;
        };
        let kind = Kind::of(series.metadata);
        out.series.push((
            TimeSeries {
                labels,
                samples: series.samples,
                histograms: series.histograms,
            },
            kind,
        ));
    }
    out
}

/// One series to encode: its labels, samples and metadata type (`MetricType` number).
pub type Plain<'a> = (Vec<(&'a str, &'a str)>, Vec<Sample>, i32);

/// Encodes a request the way a 2.0 sender does (for tests and tools): symbols from the labels,
/// the empty string first as the spec requires.
pub fn encode(series: &[Plain<'_>]) -> Vec<u8> {
    let mut symbols: Vec<String> = vec![String::new()];
    let index = |s: &str, symbols: &mut Vec<String>| -> u32 {
        match symbols.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                symbols.push(s.to_owned());
                (symbols.len() - 1) as u32
            }
        }
    };
    let timeseries = series
        .iter()
        .map(|(labels, samples, kind)| {
            let mut refs = Vec::with_capacity(labels.len() * 2);
            for (n, v) in labels {
                refs.push(index(n, &mut symbols));
                refs.push(index(v, &mut symbols));
            }
            Series {
                labels_refs: refs,
                samples: samples.clone(),
                histograms: Vec::new(),
                exemplars: Vec::new(),
                metadata: Some(Metadata {
                    r#type: *kind,
                    help_ref: 0,
                    unit_ref: 0,
                }),
                created_timestamp: 0,
            }
        })
        .collect();
    let raw = Request {
        symbols,
        timeseries,
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn references_resolve_to_labels_and_types_are_read() {
        let body = encode(&[
            (
                vec![("__name__", "http_requests"), ("job", "api")],
                vec![Sample {
                    value: 7.0,
                    timestamp: 1_000,
                }],
                1,
            ),
            (
                vec![("__name__", "temperature"), ("job", "api")],
                vec![Sample {
                    value: 21.5,
                    timestamp: 1_000,
                }],
                2,
            ),
        ]);
        let resolved = decode(&body).expect("decoded");
        assert_eq!(resolved.series.len(), 2);
        let (first, kind) = &resolved.series[0];
        assert_eq!(*kind, Kind::Cumulative);
        assert_eq!(first.labels[0].name, b"__name__");
        assert_eq!(first.labels[0].value, b"http_requests");
        assert_eq!(first.labels[1].value, b"api");
        assert_eq!(resolved.series[1].1, Kind::Gauge);
    }

    /// A series whose references point outside the symbols, or that has an odd number of
    /// them, is rejected alone.
    #[test]
    fn broken_references_reject_their_series_only() {
        let request = Request {
            symbols: vec![String::new(), "__name__".into(), "up".into()],
            timeseries: vec![
                Series {
                    labels_refs: vec![1, 2],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    ..Series::default()
                },
                Series {
                    labels_refs: vec![1, 9],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    ..Series::default()
                },
                Series {
                    labels_refs: vec![1],
                    ..Series::default()
                },
            ],
        };
        let resolved = resolve(request);
        assert_eq!(resolved.series.len(), 1);
        assert_eq!((resolved.broken_series, resolved.broken_samples), (2, 1));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes);
            let compressed = snap::raw::Encoder::new().compress_vec(&bytes).unwrap_or_default();
            let _ = decode(&compressed);
        }

        #[test]
        fn never_panics_on_arbitrary_references(
            symbols in proptest::collection::vec("[a-z_]{0,8}", 0..6),
            refs in proptest::collection::vec(proptest::collection::vec(0u32..10, 0..7), 0..6),
        ) {
            let request = Request {
                symbols,
                timeseries: refs.into_iter().map(|labels_refs| Series { labels_refs, ..Series::default() }).collect(),
            };
            let n = request.timeseries.len();
            let resolved = resolve(request);
            prop_assert_eq!(resolved.series.len() + resolved.broken_series, n);
        }
    }
}
