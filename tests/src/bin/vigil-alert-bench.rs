//! `vigil-alert-bench [--old PATH] [N ...]`: a big outage through the real alert bootstrap.
//!
//! For each N (default 100 400 1600 10000): N pods of one service breach at once, one `*` rule
//! watches them, and one scheduled run must page for all of them, against the local emulator:
//! - baseline: the same N messages published by `PublishBatch` from this process, eight calls
//!   in flight (SNS's cost alone, the floor of any delivery);
//! - read: the rule's series listed and fetched from this process, as a run does
//!   (`ListMetrics`, `GetMetricData`): the emulator's share of every run;
//! - the alert bootstrap in `VIGIL_BIN_DIR` (one message per alert, then `group_by`);
//! - with `--old PATH`, another alert bootstrap (an earlier build) on the same data, sent the
//!   EventBridge shape it reads (`{"time": ...}`);
//! - the alert run in this process on the real S3 state and SNS (the SDK against the
//!   emulator) with the series served from memory: delivery without the emulator's read, which
//!   grows faster than linearly with the queries (`--in-process-only` runs only this and the
//!   baseline).
//!
//! Prints one table row per N and mode: wall time of the invocation, ratio to the baseline,
//! messages published, largest message. Needs the emulator (`scripts/local-aws start`).

use std::path::PathBuf;
use std::time::Instant;

use aws_sdk_cloudwatch::primitives::DateTime as CwDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{Duration, SecondsFormat, Utc};
use futures_util::StreamExt;
use serde_json::json;
use vigil_e2e::{Function, LocalAws, Outcome, binary, unique, whole_minute_ago};
use vigil_shared::notify::{Envelope, Notification, Notifier, SnsNotifier};

async fn put_pods(aws: &LocalAws, namespace: &str, n: usize, now: chrono::DateTime<Utc>) {
    let data: Vec<MetricDatum> = (0..n)
        .flat_map(|i| {
            (1..=3).map(move |m| {
                MetricDatum::builder()
                    .metric_name("latency")
                    .dimensions(
                        Dimension::builder()
                            .name("service")
                            .value("checkout")
                            .build(),
                    )
                    .dimensions(
                        Dimension::builder()
                            .name("pod")
                            .value(format!("checkout-{i:05}"))
                            .build(),
                    )
                    .value(900.0)
                    .timestamp(CwDateTime::from_millis(
                        (now - Duration::minutes(m)).timestamp_millis(),
                    ))
                    .build()
            })
        })
        .collect();
    for chunk in data.chunks(1000) {
        aws.cloudwatch
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutMetricData");
    }
}

fn rules(namespace: &str, grouped: bool) -> String {
    format!(
        "{}groups:\n  - name: g\n    rules:\n      - alert: PodSlow\n        \
         metric: {{namespace: {namespace}, name: latency, dimensions: {{service: checkout, pod: \"*\"}}, stat: Maximum, period: 1m}}\n        \
         condition: {{operator: \">\", threshold: 250}}\n        \
         labels: {{severity: page, team: checkout}}\n        \
         annotations: {{summary: \"{{{{ $labels.pod }}}} answers in {{{{ $value }}}} ms\", runbook_url: \"https://runbooks.example.com/pod-slow\"}}\n",
        if grouped {
            "policy:\n  group_by: [team]\n"
        } else {
            ""
        }
    )
}

/// The floor: N messages of the size an alert's takes, published as the outbox does.
async fn baseline(aws: &LocalAws, topic: &str, n: usize) -> f64 {
    let notifier = SnsNotifier::new(aws.sns.clone());
    let notifications: Vec<(String, Notification)> = (0..n)
        .map(|i| {
            (
                format!("PodSlow{{pod=checkout-{i:05}}}/1/firing"),
                Notification {
                    subject: format!("[FIRING] PodSlow: latency 900 > 250 (checkout-{i:05})"),
                    message: "x".repeat(700),
                    attributes: vec![("alertname".into(), "PodSlow".into())],
                    details: Some(json!({"status": "firing", "pad": "y".repeat(600)})),
                },
            )
        })
        .collect();
    let t = Instant::now();
    futures_util::stream::iter(notifications.chunks(10))
        .map(|chunk| {
            let notifier = &notifier;
            async move {
                let batch: Vec<Envelope<'_>> = chunk
                    .iter()
                    .map(|(key, notification)| Envelope { key, notification })
                    .collect();
                notifier.publish_batch(topic, &batch).await
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    t.elapsed().as_secs_f64()
}

struct Row {
    n: usize,
    mode: &'static str,
    secs: Option<f64>,
    sent: usize,
    note: String,
}

async fn run_alert(
    aws: &LocalAws,
    binary: &std::path::Path,
    namespace: &str,
    grouped: bool,
    old: bool,
    now: chrono::DateTime<Utc>,
) -> (Option<f64>, usize, String) {
    let bucket = aws.create_bucket("vigil-bench").await;
    aws.put_object(&bucket, "rules.yaml", rules(namespace, grouped))
        .await;
    let topic = aws.create_topic("vigil-bench").await;
    let location = format!("s3://{bucket}/rules.yaml");
    let mut f = Function::start(
        "alert",
        binary,
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_RULES", location.as_str()),
            ("VIGIL_ALERT_TOPIC_ARN", topic.as_str()),
            ("VIGIL_STATE_BUCKET", bucket.as_str()),
        ],
    )
    .await;
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let event = if old {
        json!({"time": at})
    } else {
        json!({"vigil": "scheduled", "scheduled_time": at, "attempt": "1"})
    };
    let t = Instant::now();
    let outcome = f.try_invoke(&event).await;
    let secs = t.elapsed().as_secs_f64();
    match outcome {
        Ok(Outcome::Response(summary)) => {
            let sent = summary["sent"].as_object().map_or(0, |o| o.len());
            let state = aws.get_object(&bucket, "state/alert.json").await;
            (
                Some(secs),
                sent,
                format!(
                    "state {} KB, deferred {}",
                    state.len() / 1000,
                    summary["deferred"].as_u64().unwrap_or(0)
                ),
            )
        }
        Ok(Outcome::Error(e)) => (
            Some(secs),
            0,
            format!(
                "failed: {}",
                e["errorMessage"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect::<String>()
            ),
        ),
        Err(e) => (None, 0, e),
    }
}

/// One scheduled run of the alert function's own code on the real S3 state and SNS topic, the
/// N pods' series served from memory.
async fn in_process(
    aws: &LocalAws,
    n: usize,
    grouped: bool,
    now: chrono::DateTime<Utc>,
) -> (f64, usize, String) {
    use vigil_shared::testing::{SeriesKey, SeriesReader};
    let namespace = unique("E2E/Bench");
    let (rules, policy) =
        vigil_alert::load_file("bench.yaml", &rules(&namespace, grouped)).expect("rules");
    let mut reader = SeriesReader::default();
    for i in 0..n {
        let pod = format!("checkout-{i:05}");
        reader.series.push((
            SeriesKey::metric(
                &namespace,
                "latency",
                &[("service", "checkout"), ("pod", &pod)],
            ),
            (1..=3)
                .rev()
                .map(|m| (now - Duration::minutes(m), 900.0))
                .collect(),
        ));
    }
    let bucket = aws.create_bucket("vigil-bench").await;
    let topic = aws.create_topic("vigil-bench").await;
    let store = vigil_shared::S3Store::new(aws.s3.clone());
    let notifier = vigil_shared::Outbound {
        sns: SnsNotifier::new(aws.sns.clone()),
        http: vigil_shared::HyperPost::new(),
        secrets: vigil_shared::SsmSecrets::from_conf(&aws.conf),
    };
    let location = vigil_alert::StateLocation {
        bucket: bucket.clone(),
        key: "state/alert.json".into(),
    };
    let plan = vigil_alert::Plan {
        rules: &rules,
        policy: &policy,
        silences: &[],
        default_topic: &topic,
        state: &location,
    };
    let started = Utc::now();
    let invocation = vigil_alert::Invocation {
        id: "bench".into(),
        at: now,
        now: started,
        deadline: started + Duration::seconds(50),
        stop: Instant::now() + std::time::Duration::from_secs(45),
    };
    let t = Instant::now();
    let summary = vigil_alert::run(&reader, &notifier, &store, plan, &invocation)
        .await
        .expect("run");
    let secs = t.elapsed().as_secs_f64();
    let state = aws.get_object(&bucket, "state/alert.json").await;
    (
        secs,
        summary.sent.len(),
        format!(
            "claim {} ms, deliver {} ms, state {} KB, deferred {}",
            summary.timings.claim_ms,
            summary.timings.deliver_ms,
            state.len() / 1000,
            summary.deferred
        ),
    )
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let old: Option<PathBuf> = match args.iter().position(|a| a == "--old") {
        Some(i) if i + 1 < args.len() => {
            let p = PathBuf::from(args.remove(i + 1));
            args.remove(i);
            Some(p)
        }
        _ => None,
    };
    let in_process_only = match args.iter().position(|a| a == "--in-process-only") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let sizes: Vec<usize> = if args.is_empty() {
        vec![100, 400, 1_600, 10_000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    vigil_shared::emf::silence();
    let aws = LocalAws::connect().await;
    let mut rows = Vec::new();
    for &n in &sizes {
        let now = whole_minute_ago(0);
        let topic = aws.create_topic("vigil-bench-floor").await;
        let floor = baseline(&aws, &topic, n).await;
        rows.push(Row {
            n,
            mode: "baseline: PublishBatch of N messages",
            secs: Some(floor),
            sent: n,
            note: String::new(),
        });
        for grouped in [false, true] {
            let (secs, sent, note) = in_process(&aws, n, grouped, now).await;
            rows.push(Row {
                n,
                mode: if grouped {
                    "alert run in process, series from memory, group_by"
                } else {
                    "alert run in process, series from memory"
                },
                secs: Some(secs),
                sent,
                note,
            });
        }
        if in_process_only {
            continue;
        }
        for grouped in [false, true] {
            let namespace = unique("E2E/Bench");
            put_pods(&aws, &namespace, n, now).await;
            if !grouped {
                let (rules, _) =
                    vigil_alert::load_file("bench.yaml", &rules(&namespace, false)).expect("rules");
                let reader = vigil_shared::CloudWatchReader::new(aws.cloudwatch.clone());
                let t = Instant::now();
                let targets = vigil_alert::targets(&reader, &rules)
                    .await
                    .expect("ListMetrics");
                let queries: Vec<_> = targets
                    .iter()
                    .enumerate()
                    .map(|(i, t)| vigil_alert::query_for_series(t.rule, t.dimensions.clone(), i))
                    .collect();
                use vigil_shared::MetricReader;
                let fetched = reader
                    .fetch(&queries, vigil_alert::read_start(&rules, now), now)
                    .await
                    .expect("GetMetricData");
                rows.push(Row {
                    n,
                    mode: "read: ListMetrics + GetMetricData of the N series",
                    secs: Some(t.elapsed().as_secs_f64()),
                    sent: 0,
                    note: format!("{} series, {} calls", targets.len(), fetched.calls),
                });
            }
            let (secs, sent, note) =
                run_alert(&aws, &binary("alert"), &namespace, grouped, false, now).await;
            rows.push(Row {
                n,
                mode: if grouped { "alert, group_by" } else { "alert" },
                secs,
                sent,
                note,
            });
            if let Some(old) = &old {
                let (secs, sent, note) = run_alert(&aws, old, &namespace, grouped, true, now).await;
                rows.push(Row {
                    n,
                    mode: if grouped {
                        "earlier alert, group_by"
                    } else {
                        "earlier alert"
                    },
                    secs,
                    sent,
                    note,
                });
            }
        }
    }
    println!("| alerts | run | wall time | / baseline | messages sent | notes |");
    println!("|---:|---|---:|---:|---:|---|");
    for r in &rows {
        let floor = rows
            .iter()
            .find(|b| b.n == r.n && b.mode.starts_with("baseline"))
            .and_then(|b| b.secs);
        let (time, ratio) = match (r.secs, floor) {
            (Some(s), Some(f)) => (format!("{s:.2} s"), format!("{:.1}x", s / f)),
            (Some(s), None) => (format!("{s:.2} s"), String::new()),
            (None, _) => ("no result".to_owned(), String::new()),
        };
        println!(
            "| {} | {} | {time} | {ratio} | {} | {} |",
            r.n, r.mode, r.sent, r.note
        );
    }
}
