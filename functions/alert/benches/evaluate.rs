//! CPU time of one evaluation of 1,000 rules × 10 series (each rule has a `*` dimension that
//! matches 10 series, each series has 10 one-minute data points): building the 10,000
//! GetMetricData queries, evaluating every condition (3 of the newest 5 points) and stepping
//! every state machine, against building the queries alone, measured in the same run.
//!
//! `cargo bench -p vigil-alert --bench evaluate`

use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use vigil_alert::state::{AlertState, step};
use vigil_alert::{Rule, Target, evaluate, load, observe, query_for_series};
use vigil_shared::Dimension;

const RULES: usize = 1_000;
const SERIES: usize = 10;
const POINTS: i64 = 10;

fn rules() -> Vec<Rule> {
    let mut yaml = String::from("groups:\n  - name: bench\n    rules:\n");
    for i in 0..RULES {
        yaml.push_str(&format!(
            "      - alert: Rule{i}\n        metric: {{namespace: Bench, name: latency{i}, dimensions: {{service: \"*\"}}, stat: Average, period: 1m}}\n        condition: {{operator: \">\", threshold: 250}}\n        evaluation_periods: 5\n        datapoints_to_alarm: 3\n        lookback: 10m\n        for: 2m\n"
        ));
    }
    load("bench.yaml", &yaml).expect("rules")
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let targets: Vec<Target<'_>> = rules
        .iter()
        .flat_map(|r| {
            (0..SERIES).map(move |s| {
                Target::series(
                    r,
                    vec![Dimension {
                        name: "service".into(),
                        value: format!("s{s}"),
                    }],
                )
            })
        })
        .collect();
    let now = DateTime::from_timestamp(1_795_593_600, 0).expect("time");
    let series: Vec<Vec<(DateTime<Utc>, f64)>> = (0..targets.len())
        .map(|i| {
            (0..POINTS)
                .map(|p| {
                    (
                        now - Duration::minutes(POINTS - p),
                        200.0 + ((i as i64 * 7 + p * 13) % 100) as f64,
                    )
                })
                .collect()
        })
        .collect();
    let states: Vec<Option<AlertState>> = vec![None; targets.len()];
    let queries = || -> Vec<_> {
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| query_for_series(t.rule, t.dimensions.clone(), i))
            .collect()
    };

    let mut group = c.benchmark_group("alert_1000_rules_x_10_series");
    group.bench_function("queries (baseline)", |b| b.iter(|| black_box(queries())));
    group.bench_function("queries + evaluate + step", |b| {
        b.iter(|| {
            let q = queries();
            let mut firing = 0;
            for ((target, s), prev) in targets.iter().zip(&series).zip(&states) {
                let rule = target.rule;
                let outcome = evaluate(rule, s, now);
                let (next, _) = step(prev.as_ref(), observe(rule, &outcome), rule.timing(), now);
                firing += usize::from(next.is_some());
            }
            black_box((q, firing))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
