//! A real Prometheus server (Debian's `prometheus` package) scrapes itself, or three pods,
//! and remote-writes through a local Function URL front to the real `ingest` binary; the
//! series are read back from the local emulator's CloudWatch, and the real `alert` binary
//! alerts on what Prometheus recorded.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use vigil_e2e::exporter::{Phase, Pods, Restart, Traffic};
use vigil_e2e::{Function, FunctionUrl, LocalAws, binary, scheduled_event, unique};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn prometheus_binary() -> String {
    std::env::var("VIGIL_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned())
}

/// Starts Prometheus with `config`, its data and log in `dir`, its web port `web`.
fn start_prometheus(dir: &Path, config: &Path, web: u16) -> tokio::process::Child {
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    tokio::process::Command::new(prometheus_binary())
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
        })
}

/// The real ingest binary behind a local Function URL front, with `config` as its ingest
/// settings (written into `dir`).
async fn ingest_url(aws: &LocalAws, dir: &Path, config: &str) -> FunctionUrl {
    let path = dir.join("ingest.yaml");
    std::fs::write(&path, config).expect("ingest config");
    let function = Function::start(
        "ingest",
        &binary("ingest"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_INGEST_CONFIG", path.to_str().expect("path")),
        ],
    )
    .await;
    FunctionUrl::serve(function).await
}

/// The emulator, a fresh namespace under `prefix` and a scratch directory.
async fn setup(prefix: &str) -> (LocalAws, String, std::path::PathBuf) {
    let aws = LocalAws::connect().await;
    let namespace = unique(&format!("E2E/{prefix}"));
    let dir = std::env::temp_dir().join(unique(&format!("vigil-{}", prefix.to_lowercase())));
    std::fs::create_dir_all(&dir).expect("temp dir");
    (aws, namespace, dir)
}

#[tokio::test]
async fn a_real_prometheus_remote_writes_into_cloudwatch() {
    let (aws, namespace, dir) = setup("Prometheus").await;
    let url = ingest_url(
        &aws,
        &dir,
        &format!("remote_write:\n  namespace: {namespace}\n  rename: {{job: service}}\n"),
    )
    .await;

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
    let mut prometheus = start_prometheus(&dir, &config, web);

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

/// The shipped recording rules with their one-minute windows and interval scaled to 5 s and
/// 1 s, so that a run of ninety seconds holds what an hour of real traffic would.
fn scaled_recording_rules() -> String {
    let shipped = std::fs::read_to_string(
        vigil_e2e::workspace_root().join("config/prometheus-recording-rules.yaml"),
    )
    .expect("config/prometheus-recording-rules.yaml");
    assert_eq!(shipped.matches("[1m]").count(), 3, "{shipped}");
    assert_eq!(shipped.matches("interval: 1m").count(), 1, "{shipped}");
    shipped
        .replace("[1m]", "[5s]")
        .replace("interval: 1m", "interval: 1s")
}

/// One alert rule group: `alert` when two 5 s periods of `stat` of checkout's `metric` are
/// over `threshold`.
fn threshold_rule(
    namespace: &str,
    group: &str,
    alert: &str,
    metric: &str,
    stat: &str,
    threshold: f64,
) -> String {
    format!(
        "\x20 - name: {group}\n\
         \x20   rules:\n\
         \x20     - alert: {alert}\n\
         \x20       metric: {{namespace: {namespace}, name: '{metric}', dimensions: {{service: checkout}}, stat: {stat}, period: 5s}}\n\
         \x20       condition: {{operator: '>', threshold: {threshold}}}\n\
         \x20       evaluation_periods: 2\n\
         \x20       labels: {{severity: ticket, service: checkout}}\n\
         \x20       annotations: {{runbook_url: 'https://runbooks.example.com/checkout/{group}'}}\n"
    )
}

/// When each rule was firing, from the alert function's summaries at `times`.
struct Timeline {
    times: Vec<DateTime<Utc>>,
    /// Per rule (file order), its state at each time.
    states: Vec<Vec<String>>,
}

impl Timeline {
    /// The first firing time of rule `i` and the first time after it that it was not firing,
    /// checking that it fired in one unbroken episode.
    fn episode(&self, i: usize) -> (DateTime<Utc>, DateTime<Utc>) {
        let states = &self.states[i];
        let first = states
            .iter()
            .position(|s| s == "firing")
            .unwrap_or_else(|| panic!("rule {i} never fired: {states:?}"));
        let end = first
            + states[first..]
                .iter()
                .position(|s| s != "firing")
                .unwrap_or_else(|| panic!("rule {i} never resolved: {states:?}"));
        assert!(
            states[..first].iter().all(|s| s == "inactive"),
            "rule {i} before it fired: {states:?}"
        );
        assert!(
            states[end..].iter().all(|s| s == "inactive"),
            "rule {i} fired again (a flap): {states:?}"
        );
        (self.times[first], self.times[end])
    }
}

/// Three pods' request counters and latency histograms, one pod restarting mid-way, scraped by
/// a real Prometheus whose recording rules (`config/prometheus-recording-rules.yaml`, scaled)
/// turn them into the job's request rate and p99, remote-written through the real ingest
/// binary at one-second resolution. The real alert binary, run every 5 s over the recorded
/// timeline, fires on the rate and on the p99 when traffic rises and resolves both when it
/// falls, and the restart neither resolves nor flaps either alert.
#[tokio::test]
async fn three_pods_counters_alert_on_their_rate_across_a_restart() {
    let (aws, namespace, dir) = setup("Rates").await;
    let url = ingest_url(
        &aws,
        &dir,
        &format!(
            "remote_write:\n  namespace: {namespace}\n  rename: {{job: service}}\n  storage_resolution: 1\n"
        ),
    )
    .await;

    // 5 requests/s per pod, all fast; then 20/s with 5 % slow (true p99: 0.8 s), pod 2
    // restarting in the middle; then 5/s again.
    let s = StdDuration::from_secs;
    let (rise, restart, fall, end) = (s(25), s(42), s(60), s(85));
    let traffic = Traffic {
        phases: vec![
            Phase {
                from: s(0),
                rate: 5.0,
                slow: 0.0,
            },
            Phase {
                from: rise,
                rate: 20.0,
                slow: 0.05,
            },
            Phase {
                from: fall,
                rate: 5.0,
                slow: 0.0,
            },
        ],
        restart: Some(Restart {
            pod: 2,
            at: restart,
            down: s(2),
        }),
    };
    let pods = Pods::start(3, traffic).await;
    let t0 = Utc::now();
    let at = |offset: StdDuration| t0 + Duration::from_std(offset).expect("offset");

    let rules = dir.join("rules.yml");
    std::fs::write(&rules, scaled_recording_rules()).expect("rules");
    let targets: Vec<String> = pods.addrs.iter().map(|a| format!("'{a}'")).collect();
    let web = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{rules}']\n\
             scrape_configs:\n\
             \x20 - job_name: checkout\n\
             \x20   static_configs: [{{targets: [{targets}]}}]\n\
             remote_write:\n\
             \x20 - url: {url}\n\
             \x20   queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 500, retry_on_http_429: true}}\n\
             \x20   write_relabel_configs:\n\
             \x20     - {{source_labels: [__name__], regex: 'job:.+', action: keep}}\n",
            rules = rules.display(),
            targets = targets.join(", "),
            url = url.url("/api/v1/write"),
        ),
    )
    .expect("prometheus config");
    let mut prometheus = start_prometheus(&dir, &config, web);
    tokio::time::sleep_until((pods.started + end + s(6)).into()).await;
    let _ = prometheus.start_kill();
    let _ = prometheus.wait().await;
    let prometheus_log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    // Nothing Prometheus sent was refused: samples, nor the metadata it sends in requests of
    // their own once a minute.
    let refused: Vec<&str> = prometheus_log
        .lines()
        .filter(|l| l.contains("level=error") && l.contains("remote"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");

    // What CloudWatch holds: the job's rate and p99 at one-second resolution, in 5 s points.
    let service = [("service", "checkout")];
    let rate = aws
        .metric_points(
            &namespace,
            "job:http_requests:rate1m",
            &service,
            "Average",
            5,
            t0,
            at(end),
        )
        .await;
    let p99 = aws
        .metric_points(
            &namespace,
            "job:http_request_duration_seconds:p99_1m",
            &service,
            "Maximum",
            5,
            t0,
            at(end),
        )
        .await;
    eprintln!("rate: {rate:?}\np99: {p99:?}");
    assert!(
        rate.len() >= 12,
        "too few rate points ({}); prometheus log:\n{prometheus_log}",
        rate.len()
    );
    let between = |points: &[(DateTime<Utc>, f64)], from: StdDuration, to: StdDuration| {
        points
            .iter()
            .filter(|(t, _)| *t >= at(from) && *t + Duration::seconds(5) <= at(to))
            .map(|(_, v)| *v)
            .collect::<Vec<f64>>()
    };
    // 3 × 5/s before the rise; 3 × 20/s after it, never below two pods' 40/s while pod 2
    // restarts (its reset is absorbed, not read as a drop or a negative rate).
    let quiet = between(&rate, s(10), rise);
    assert!(
        !quiet.is_empty() && quiet.iter().all(|v| (13.5..=16.5).contains(v)),
        "{quiet:?}"
    );
    let busy = between(&rate, rise + s(10), fall);
    assert!(
        !busy.is_empty() && busy.iter().all(|v| (38.0..=66.0).contains(v)),
        "{busy:?}"
    );
    // The p99 lies in the bucket of the true value: (0, 0.1] while all requests take 0.05 s,
    // (0.5, 1] while 5 % take 0.8 s.
    let fast = between(&p99, s(10), rise);
    assert!(
        !fast.is_empty() && fast.iter().all(|v| *v > 0.0 && *v <= 0.1),
        "{fast:?}"
    );
    let slow = between(&p99, rise + s(10), fall);
    assert!(
        !slow.is_empty() && slow.iter().all(|v| *v > 0.5 && *v <= 1.0),
        "{slow:?}"
    );

    // The alert function over the timeline, every 5 s.
    let bucket = aws.create_bucket("vigil-rates").await;
    // One group per alert, so that each has its own message.
    let alert_rules = format!(
        "groups:\n{}{}",
        threshold_rule(
            &namespace,
            "traffic",
            "CheckoutRequestRateHigh",
            "job:http_requests:rate1m",
            "Average",
            30.0
        ),
        threshold_rule(
            &namespace,
            "latency",
            "CheckoutP99High",
            "job:http_request_duration_seconds:p99_1m",
            "Maximum",
            0.5
        ),
    );
    aws.put_object(&bucket, "rules.yaml", alert_rules).await;
    let (topic, queue) = aws.topic_with_queue("vigil-rates").await;
    let rules_url = format!("s3://{bucket}/rules.yaml");
    let mut alert = Function::start(
        "alert",
        &binary("alert"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_RULES", rules_url.as_str()),
            ("VIGIL_ALERT_TOPIC_ARN", topic.as_str()),
            ("VIGIL_STATE_BUCKET", bucket.as_str()),
        ],
    )
    .await;
    let first = DateTime::from_timestamp(t0.timestamp().div_euclid(5) * 5 + 10, 0).expect("time");
    let mut timeline = Timeline {
        times: Vec::new(),
        states: vec![Vec::new(), Vec::new()],
    };
    let mut t = first;
    while t <= at(end) {
        let summary = alert.invoke(&scheduled_event(t)).await.expect_response();
        for (i, rule) in summary["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .enumerate()
        {
            timeline.states[i].push(rule["state"].as_str().expect("state").to_owned());
        }
        timeline.times.push(t);
        t += Duration::seconds(5);
    }
    eprintln!("alert states from {first}: {:?}", timeline.states);
    // Each fires within 25 s of the rise (the 5 s rate window, two 5 s periods, the 5 s
    // schedule and a scrape or two) and resolves within 25 s of the fall, once.
    let window = Duration::seconds(25);
    for (i, name) in ["CheckoutRequestRateHigh", "CheckoutP99High"]
        .iter()
        .enumerate()
    {
        let (fired, resolved) = timeline.episode(i);
        eprintln!(
            "{name}: fired {} s after the rise, resolved {} s after the fall",
            (fired - at(rise)).num_seconds(),
            (resolved - at(fall)).num_seconds()
        );
        assert!(
            fired > at(rise) && fired <= at(rise) + window,
            "{name} fired at {fired}, rise at {}",
            at(rise)
        );
        assert!(
            resolved > at(fall) && resolved <= at(fall) + window,
            "{name} resolved at {resolved}, fall at {}",
            at(fall)
        );
    }
    let messages = aws.receive_sns(&queue, 4, StdDuration::from_secs(30)).await;
    let mut sent: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            let attr = |k: &str| {
                m["MessageAttributes"][k]["Value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            (attr("alertname"), attr("status"))
        })
        .collect();
    sent.sort();
    let pair = |a: &str, s: &str| (a.to_owned(), s.to_owned());
    assert_eq!(
        sent,
        [
            pair("CheckoutP99High", "firing"),
            pair("CheckoutP99High", "resolved"),
            pair("CheckoutRequestRateHigh", "firing"),
            pair("CheckoutRequestRateHigh", "resolved"),
        ],
        "{messages:?}"
    );
    drop(pods);
    let _ = std::fs::remove_dir_all(&dir);
}
