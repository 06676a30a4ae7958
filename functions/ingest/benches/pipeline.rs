//! The remote-write pipeline against bare decoding, measured in the same run.
//!
//! `cargo bench -p vigil-ingest --bench pipeline`; `scripts/bench` prints the ratios.
//!
//! Input: a realistic request of 10,000 samples (10,000 series of 20 labels each, one sample
//! each), snappy-compressed as Prometheus sends it.
//! - `decode`: snappy + protobuf, the baseline.
//! - `pipeline`: decode, map to datums (labels, validation), merge and batch into the
//!   `PutMetricData` requests the sink would send (SDK types built).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_ingest::mapping::{MappingConfig, map_request};
use vigil_ingest::remote_write;

const SAMPLES: usize = 10_000;

fn bench(c: &mut Criterion) {
    let now = chrono::Utc::now();
    let body = remote_write::encode(&remote_write::sample_request(
        SAMPLES,
        20,
        now.timestamp_millis(),
    ));
    let config = MappingConfig::default();

    let mut group = c.benchmark_group("remote_write_10k");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.bench_function("decode", |b| {
        b.iter(|| black_box(remote_write::decode(black_box(&body)).expect("decodes")))
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            let request = remote_write::decode(black_box(&body)).expect("decodes");
            let mapped = map_request(request, &config, now);
            black_box(vigil_shared::sink::build_requests(
                &config.namespace,
                &mapped.datums,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
