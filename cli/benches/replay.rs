//! CPU time of `vigil rules backtest`'s replay: one day of one-minute evaluations (1,440 runs)
//! of 20 rules, each over its own series, through the alert function's whole run (queries,
//! evaluation, state machine, policy, the state object claimed and written, notifications
//! recorded), against the bare condition evaluation of the same rules at the same times,
//! measured in the same run.
//!
//! `cargo bench -p vigil-cli --bench replay`

use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use vigil_alert::policy::Policy;
use vigil_alert::{Rule, evaluate, load, query_for};
use vigil_cli::backtest::schedule;
use vigil_cli::sim::{ReplayReader, SeriesKey, replay};

const RULES: usize = 20;
const DAY_MINUTES: i64 = 1_440;

fn rules() -> Vec<Rule> {
    let mut yaml = String::from("groups:\n  - name: bench\n    rules:\n");
    for i in 0..RULES {
        yaml.push_str(&format!(
            "      - alert: Rule{i}\n        metric: {{namespace: Bench, name: latency{i}, stat: Average, period: 1m}}\n        condition: {{operator: \">\", threshold: 250}}\n        evaluation_periods: 3\n        datapoints_to_alarm: 2\n"
        ));
    }
    load("bench.yaml", &yaml).expect("rules")
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let start = DateTime::from_timestamp(1_795_593_600, 0).expect("time");
    let end = start + Duration::minutes(DAY_MINUTES);
    let times = schedule(start, end, Duration::minutes(1));
    // A wave with a breach of about 20 minutes every few hours per rule.
    let mut reader = ReplayReader::default();
    for (i, rule) in rules.iter().enumerate() {
        let points: Vec<(DateTime<Utc>, f64)> = (-10..DAY_MINUTES)
            .map(|m| {
                let phase = (m + 37 * i as i64).rem_euclid(240);
                let v = if phase < 20 {
                    320.0
                } else {
                    150.0 + (m % 17) as f64
                };
                (start + Duration::minutes(m), v)
            })
            .collect();
        reader
            .series
            .push((SeriesKey::of(&query_for(rule, i)), points));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let series: Vec<&Vec<(DateTime<Utc>, f64)>> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| reader.points(&query_for(r, i)).expect("series"))
        .collect();

    let mut group = c.benchmark_group("replay_20_rules_one_day");
    group.sample_size(10);
    group.bench_function("evaluate only (baseline)", |b| {
        b.iter(|| {
            let mut breaching = 0usize;
            for &at in &times {
                for (rule, points) in rules.iter().zip(&series) {
                    let from = points.partition_point(|(t, _)| *t < at - Duration::minutes(7));
                    let to = points.partition_point(|(t, _)| *t < at);
                    let outcome = evaluate(rule, &points[from..to], at);
                    breaching +=
                        usize::from(matches!(outcome, vigil_alert::Outcome::Breaching { .. }));
                }
            }
            black_box(breaching)
        })
    });
    group.bench_function("replay through the function's run", |b| {
        b.iter(|| {
            let replayed = runtime
                .block_on(replay(&reader, &rules, &Policy::NONE, &times, |_| {}))
                .expect("replay");
            black_box(replayed.sent.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
