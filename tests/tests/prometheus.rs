//! A real Prometheus server (Debian's `prometheus` package) scrapes itself and remote-writes
//! through a local Function URL front to the real `ingest` binary; the series are read back
//! from the local emulator's CloudWatch.

use std::process::Stdio;
use std::time::Duration as StdDuration;

use chrono::Utc;
use vigil_e2e::{Function, FunctionUrl, LocalAws, binary, unique};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn prometheus_binary() -> String {
    std::env::var("VIGIL_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned())
}

#[tokio::test]
async fn a_real_prometheus_remote_writes_into_cloudwatch() {
    let aws = LocalAws::connect().await;
    let namespace = unique("E2E/Prometheus");
    let dir = std::env::temp_dir().join(unique("vigil-prometheus"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ingest_config = dir.join("ingest.yaml");
    std::fs::write(
        &ingest_config,
        format!("remote_write:\n  namespace: {namespace}\n  rename: {{job: service}}\n"),
    )
    .expect("ingest config");

    let function = Function::start(
        "ingest",
        &binary("ingest"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_INGEST_CONFIG", ingest_config.to_str().expect("path")),
        ],
    )
    .await;
    let url = FunctionUrl::serve(function).await;

    let web = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n\
             \x20 - job_name: vigil-e2e\n\
             \x20   static_configs: [{{targets: ['127.0.0.1:{web}']}}]\n\
             remote_write:\n\
             \x20 - url: {}\n\
             \x20   queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 500}}\n",
            url.url("/api/v1/write")
        ),
    )
    .expect("prometheus config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let mut prometheus = tokio::process::Command::new(prometheus_binary())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}): install Debian's prometheus package (scripts/test does)")
        });

    // Wait for `up` of the self-scrape (a gauge: `instance` dropped by default, `job` renamed to
    // `service`) and for the buckets of a histogram, which Prometheus fills from its second
    // scrape on.
    let bucket = "prometheus_http_request_duration_seconds_bucket";
    let mut points = Vec::new();
    let mut buckets = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        let now = Utc::now();
        if points.is_empty() {
            points = aws
                .points_near(
                    &namespace,
                    "up",
                    &[("service", "vigil-e2e")],
                    "Maximum",
                    now,
                )
                .await;
        }
        buckets = aws
            .cloudwatch
            .list_metrics()
            .namespace(&namespace)
            .metric_name(bucket)
            .send()
            .await
            .expect("ListMetrics")
            .metrics()
            .to_vec();
        if !points.is_empty() && !buckets.is_empty() {
            break;
        }
    }
    let _ = prometheus.start_kill();
    let _ = prometheus.wait().await;
    let prometheus_log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert!(
        !points.is_empty(),
        "no `up` series reached CloudWatch within 60 s; prometheus log:\n{prometheus_log}"
    );
    assert!(points.iter().all(|(_, v)| *v == 1.0), "{points:?}");

    // Histogram buckets arrive one series per `le`, with `le` kept as a dimension; being
    // cumulative, they keep `instance` too (never merged across Prometheus servers or pods).
    assert!(!buckets.is_empty(), "no {bucket} series within 60 s");
    for m in &buckets {
        let names: Vec<&str> = m.dimensions().iter().filter_map(|d| d.name()).collect();
        assert!(
            names.contains(&"le") && names.contains(&"service"),
            "{names:?}"
        );
        assert!(names.contains(&"instance"), "{names:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
