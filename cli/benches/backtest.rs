//! The scored backtest on the synthetic scenario (`vigil_cli::scenario`): 14 days of one-minute
//! data for ten services, scored against its incidents, for the naive one-data-point rule
//! (10 rules), Vigil's rules (20: M of N and metric math, kept firing) and the coin flip. It
//! prints the score of each, and the replay's wall and CPU time (this thread's, from
//! `/proc/thread-self/schedstat`) against the bare condition evaluation of the same rules at
//! the same times, measured in the same run.
//!
//! With `VIGIL_AWS_ENDPOINT_URL` set (a LocalStack from `scripts/local-aws start`, and
//! `AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1`), it also
//! writes one day of the scenario's 30 series there and times `vigil rules backtest`'s history
//! read of that day (`GetMetricData` through the SDK), the part of a backtest's wall time the
//! replay is not.
//!
//! `cargo bench -p vigil-cli --bench backtest`

use std::hint::black_box;
use std::time::Instant;

use aws_sdk_cloudwatch::primitives::DateTime as CwDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{DateTime, Duration, Utc};
use vigil_alert::policy::Policy;
use vigil_alert::{Rule, evaluate, query_for};
use vigil_cli::backtest::{fetch_history, human, schedule};
use vigil_cli::scenario::{self, Scenario};
use vigil_cli::score::{QuietHours, Score, Scoring};
use vigil_cli::sim::replay;
use vigil_shared::CloudWatchReader;
use vigil_shared::math::{LocalMath, MathMode};
use vigil_shared::reader::MetricReader;

/// This thread's CPU time so far (the replay runs on one thread).
fn cpu() -> std::time::Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}

struct Timed {
    wall: std::time::Duration,
    cpu: std::time::Duration,
}

async fn scored(s: &Scenario, rules: &[Rule], times: &[DateTime<Utc>]) -> (Score, Timed) {
    let (wall, cpu0) = (Instant::now(), cpu());
    let replayed = replay(&s.reader, rules, &Policy::default(), times, |_| {})
        .await
        .expect("replay");
    let timed = Timed {
        wall: wall.elapsed(),
        cpu: cpu() - cpu0,
    };
    let scoring = Scoring {
        quiet: QuietHours::parse("22:00-07:00", "Europe/Berlin").expect("quiet"),
        margin: Duration::zero(),
        draws: 1_000,
        seed: 1,
    };
    let score = scenario::score_replayed(s, rules, &replayed, &scoring).expect("score");
    (score.overall, timed)
}

/// The bare condition evaluation of `rules` at `times` over the scenario's series (the
/// expressions evaluated too): no state, no policy, no notifications.
async fn bare(s: &Scenario, rules: &[Rule], times: &[DateTime<Utc>]) -> Timed {
    let reader = LocalMath::new(&s.reader, MathMode::Local);
    let queries: Vec<_> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| query_for(r, i))
        .collect();
    let (wall, cpu0) = (Instant::now(), cpu());
    for &at in times {
        let start = vigil_alert::read_start(rules, at);
        let fetched = reader.fetch(&queries, start, at).await.expect("fetch");
        for (rule, q) in rules.iter().zip(&queries) {
            let points = fetched.series.get(&q.id).map(Vec::as_slice).unwrap_or(&[]);
            black_box(evaluate(rule, points, at));
        }
    }
    Timed {
        wall: wall.elapsed(),
        cpu: cpu() - cpu0,
    }
}

fn share(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn row(name: &str, s: &Score) {
    println!(
        "| {name} | {} | {} | {} | {}/{} | {} | {} | {:.1} | {} | {} |",
        s.pages,
        share(s.precision),
        share(s.coin_flip.precision),
        s.incidents_paged,
        s.incidents,
        share(s.recall),
        s.detect_median_seconds
            .map_or_else(|| "-".to_owned(), human),
        s.pages_per_week,
        s.night_pages,
        s.short_episodes
    );
}

/// Writes the first day of the scenario to LocalStack and times the backtest's history read
/// of it.
async fn history_read(s: &Scenario, rules: &[Rule], endpoint: &str) {
    let conf = vigil_shared::aws::sdk_config_with(Some(endpoint), vigil_shared::tls::Roots::System)
        .await
        .expect("config");
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let day_end = s.since + Duration::days(1);
    let put = Instant::now();
    let mut points = 0usize;
    for (key, series) in &s.reader.series {
        let service = key.dimensions[0].value.clone();
        let data: Vec<MetricDatum> = series
            .iter()
            .filter(|(t, _)| *t < day_end)
            .map(|(t, v)| {
                MetricDatum::builder()
                    .metric_name(&key.metric)
                    .dimensions(Dimension::builder().name("service").value(&service).build())
                    .value(*v)
                    .timestamp(CwDateTime::from_millis(t.timestamp_millis()))
                    .build()
            })
            .collect();
        points += data.len();
        for chunk in data.chunks(1_000) {
            cw.put_metric_data()
                .namespace(&key.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .expect("PutMetricData");
        }
    }
    let put = put.elapsed();
    let reader = CloudWatchReader::from_conf(&conf);
    let read = Instant::now();
    let history = fetch_history(&reader, rules, s.since, day_end)
        .await
        .expect("history");
    let read = read.elapsed();
    let got: usize = history.reader.series.iter().map(|(_, p)| p.len()).sum();
    println!();
    println!(
        "history read from LocalStack, one day of {} series ({points} points written in {:.1} s): \
         {:.2} s wall, {} GetMetricData calls, {got} points read",
        s.reader.series.len(),
        put.as_secs_f64(),
        read.as_secs_f64(),
        history.get_metric_data_calls
    );
}

fn main() {
    // A bench binary gets `--bench` from cargo; it takes no other argument.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The function's code writes EMF lines for CloudWatch Logs; here they are not wanted.
    vigil_shared::emf::silence();
    runtime.block_on(async {
        // Monday 2026-11-02, 00:00 UTC: 14 days, one incident every 1.5 days on average.
        let since = DateTime::from_timestamp(1_793_577_600, 0).expect("time");
        let generated = Instant::now();
        let s = scenario::generate(since, 14, 1.5, 7);
        let generated = generated.elapsed();
        let times = schedule(s.since + Duration::minutes(10), s.until, Duration::minutes(1));
        let naive = scenario::naive_rules();
        let vigil = scenario::vigil_rules();
        println!(
            "scenario: 14 days of one-minute data, {} series, {} incidents, {} evaluations (generated in {:.2} s)",
            s.reader.series.len(),
            s.incidents.len(),
            times.len(),
            generated.as_secs_f64()
        );
        println!();
        println!(
            "| rules | pages | precision | coin flip | incidents paged | recall | detect (median) | pages/week | night | short |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let (naive_score, _) = scored(&s, &naive, &times).await;
        row("naive: latency > 250, 1 of 1 (10)", &naive_score);
        // Twice, the first as a warm-up of the allocator and caches.
        let _ = scored(&s, &vigil, &times).await;
        let (vigil_score, replayed) = scored(&s, &vigil, &times).await;
        row("Vigil: 3 of 5, metric math, keep_firing_for (20)", &vigil_score);
        let _ = bare(&s, &vigil, &times).await;
        let baseline = bare(&s, &vigil, &times).await;
        println!();
        println!(
            "replay of 20 rules over 14 days ({} runs): {:.2} s wall, {:.2} s CPU; bare evaluation of the same rules at the same times: {:.2} s wall, {:.2} s CPU; replay / bare: {:.2}x CPU",
            times.len(),
            replayed.wall.as_secs_f64(),
            replayed.cpu.as_secs_f64(),
            baseline.wall.as_secs_f64(),
            baseline.cpu.as_secs_f64(),
            replayed.cpu.as_secs_f64() / baseline.cpu.as_secs_f64().max(1e-9)
        );
        if let Ok(endpoint) = std::env::var(vigil_shared::aws::ENDPOINT_ENV) {
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                eprintln!(
                    "the history read needs credentials for the emulator: AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
                );
                return;
            }
            history_read(&s, &vigil, &endpoint).await;
        }
    });
}
