//! `vigil-sink-baseline`: the load test's baseline, measured in the same run. The datums one
//! load-test remote-write request becomes after ingest's default mapping (150 series, 500
//! samples: `job`, `route`, `code`, `method`), written back to back with ingest's own
//! CloudWatch sink, straight to the emulator: no HTTP front, no Runtime API, no decoding.
//! Prints `{"p50_ms", "p99_ms", "rps"}`.
//!
//! Environment: `VIGIL_AWS_ENDPOINT_URL` (the emulator), `VIGIL_BASELINE_CALLS` (default 40).

use std::time::Instant;

use chrono::Utc;
use vigil_e2e::LocalAws;
use vigil_shared::{CloudWatchSink, Datum, Dimension, MetricSink, Unit};

fn datums() -> Vec<Datum> {
    let now = Utc::now();
    (0..500)
        .map(|i| {
            let mut dimensions = vec![
                Dimension {
                    name: "code".into(),
                    value: ["200", "404", "500"][i % 3].into(),
                },
                Dimension {
                    name: "job".into(),
                    value: "baseline".into(),
                },
                Dimension {
                    name: "method".into(),
                    value: ["GET", "POST"][i % 2].into(),
                },
                Dimension {
                    name: "route".into(),
                    value: format!("/r{}", i % 50),
                },
            ];
            dimensions.sort();
            Datum {
                name: "http_requests_total".into(),
                dimensions,
                value: i as f64,
                unit: Unit::None,
                timestamp: now,
                resolution: Default::default(),
            }
        })
        .collect()
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
