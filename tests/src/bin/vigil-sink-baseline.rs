//! `vigil-sink-baseline`: the load test's baseline, measured in the same run. The datums one
//! load-test remote-write request becomes (the series `tests/load/locustfile.py` sends, mapped
//! by ingest's own default mapping: 500 series of a counter, which keeps its `instance` and
//! `pod`), written back to back with ingest's own CloudWatch sink, straight to the emulator: no
//! HTTP front, no Runtime API, no decoding. Prints `{"p50_ms", "p99_ms", "rps"}`.
//!
//! Environment: `VIGIL_AWS_ENDPOINT_URL` (the emulator), `VIGIL_BASELINE_CALLS` (default 40),
//! `VIGIL_LOAD_SERIES` (series per request, default 500, as the load test).

use std::time::Instant;

use chrono::Utc;
use vigil_e2e::LocalAws;
use vigil_ingest::mapping::{MappingConfig, map_request};
use vigil_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use vigil_shared::{CloudWatchSink, Datum, MetricSink};

/// The locustfile's remote-write request from one worker, mapped as ingest maps it.
fn datums() -> Vec<Datum> {
    let series: usize = std::env::var("VIGIL_LOAD_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let now = Utc::now();
    let worker = 7;
    let request = WriteRequest {
        timeseries: (0..series)
            .map(|i| TimeSeries {
                labels: vec![
                    Label::new("__name__", "http_requests_total"),
                    Label::new("job", "load"),
                    Label::new("instance", &format!("worker-{worker}")),
                    Label::new("route", &format!("/r{}", i % 50)),
                    Label::new("code", ["200", "404", "500"][i % 3]),
                    Label::new("method", ["GET", "POST"][i % 2]),
                    Label::new("pod", &format!("load-{worker}-{}", i % 7)),
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: now.timestamp_millis(),
                }],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    map_request(request, &MappingConfig::default(), now).datums
}

#[tokio::main]
async fn main() {
    let aws = LocalAws::connect().await;
    let sink = CloudWatchSink::new(aws.cloudwatch.clone());
    let calls: usize = std::env::var("VIGIL_BASELINE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    // One call first, unmeasured: the emulator loads its CloudWatch provider on first use.
    let _ = sink.put("Load/Baseline", &datums()).await;
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let batch = datums();
        let started = Instant::now();
        if let Err(e) = sink.put("Load/Baseline", &batch).await {
            eprintln!("vigil-sink-baseline: PutMetricData failed: {e}");
            std::process::exit(1);
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    let p99 = times[((times.len() - 1) as f64 * 0.99) as usize];
    eprintln!(
        "baseline: ingest's sink alone, one request's datums back to back: p50 {p50:.1} ms, p99 {p99:.1} ms, {:.1} calls/s",
        1000.0 / p50
    );
    println!(
        "{}",
        serde_json::json!({"p50_ms": (p50 * 10.0).round() / 10.0, "p99_ms": (p99 * 10.0).round() / 10.0, "rps": (1000.0 / p50 * 100.0).round() / 100.0})
    );
}
