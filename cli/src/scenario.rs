//! A synthetic history with known incidents and noise, for measuring what a rule set is worth
//! (the scored backtest's figures in BENCHMARKS.md, and a test that holds Vigil's features to
//! beating a naive rule and a coin flip on it).
//!
//! Ten services, one-minute data: latency (Average, ms), requests and errors (Sum). Normal
//! latency is about 120 ms; each day every service has a few one-minute spikes to 300-500 ms
//! (a GC pause, a cold cache: nothing a user notices) and, now and then, a quarter hour of
//! flapping around 260 ms. The incidents are hours of real trouble: latency at 350-600 ms and
//! a tenth of requests failing, on one service at a time.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use vigil_alert::Rule;
use vigil_shared::reader::Series;

use crate::backtest::summarize;
use crate::coin::SplitMix64;
use crate::incidents::Incident;
use crate::score::{Scored, Scoring, score_backtest};
use crate::sent::messages;
use crate::sim::{Replay, ReplayReader, SeriesKey, episodes};

pub const NAMESPACE: &str = "Scenario/Shop";
pub const SERVICES: usize = 10;

/// The history and the incidents in it.
pub struct Scenario {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub reader: ReplayReader,
    pub incidents: Vec<Incident>,
}

fn service(i: usize) -> String {
    format!("svc{i}")
}

/// `days` of history from `since`, with about one incident every `incident_every` days in all,
/// from `seed`.
pub fn generate(since: DateTime<Utc>, days: i64, incident_every: f64, seed: u64) -> Scenario {
    let mut rng = SplitMix64::new(seed);
    let mut unit = move || rng.below(1 << 30) as f64 / f64::from(1u32 << 30);
    let minutes = days * 1_440;
    let until = since + Duration::minutes(minutes);

    // Incidents: start anywhere but the first and last hours, last 20 to 120 minutes.
    let count = ((days as f64 / incident_every).round() as usize).max(1);
    let mut incidents = Vec::with_capacity(count);
    for n in 0..count {
        let start = 60 + (unit() * (minutes - 240) as f64) as i64;
        let length = 20 + (unit() * 100.0) as i64;
        let svc = (unit() * SERVICES as f64) as usize % SERVICES;
        incidents.push(Incident {
            id: format!("INC-{}", n + 1),
            title: format!("{} degraded", service(svc)),
            start: since + Duration::minutes(start),
            end: since + Duration::minutes(start + length),
            labels: BTreeMap::from([("service".to_owned(), service(svc))]),
        });
    }
    incidents.sort_by_key(|i| i.start);

    let mut reader = ReplayReader::default();
    for svc in 0..SERVICES {
        let name = service(svc);
        let mine: Vec<&Incident> = incidents
            .iter()
            .filter(|i| i.labels["service"] == name)
            .collect();
        let (mut latency, mut requests, mut errors): (Series, Series, Series) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut flapping_until = -1i64;
        for m in 0..minutes {
            let t = since + Duration::minutes(m);
            let trouble = mine.iter().any(|i| t >= i.start && t < i.end);
            // About 1.5 spikes a day, one quarter hour of flapping every 4 days.
            let spike = unit() < 1.5 / 1_440.0;
            if unit() < 1.0 / (4.0 * 1_440.0) {
                flapping_until = m + 15;
            }
            let noise = (unit() + unit() + unit() - 1.5) * 20.0;
            let l = if trouble {
                350.0 + unit() * 250.0
            } else if spike {
                300.0 + unit() * 200.0
            } else if m < flapping_until {
                if m % 2 == 0 { 262.0 } else { 238.0 }
            } else {
                120.0 + noise
            };
            let r = (400.0 + noise * 5.0).round();
            let e = if trouble {
                (r * (0.08 + unit() * 0.06)).round()
            } else if unit() < 0.02 {
                (r * 0.06).round()
            } else {
                (unit() * 2.0).floor()
            };
            latency.push((t, l));
            requests.push((t, r));
            if e > 0.0 {
                errors.push((t, e));
            }
        }
        let dims = [("service", name.as_str())];
        reader.set(SeriesKey::metric(NAMESPACE, "latency", &dims), latency);
        reader.set(SeriesKey::metric(NAMESPACE, "requests", &dims), requests);
        reader.set(SeriesKey::metric(NAMESPACE, "errors", &dims), errors);
    }
    Scenario {
        since,
        until,
        reader,
        incidents,
    }
}

/// The scenario's score for `rules` from their replay over it.
pub fn score_replayed(
    s: &Scenario,
    rules: &[Rule],
    replayed: &Replay,
    scoring: &Scoring,
) -> Result<Scored, String> {
    let found = episodes(&replayed.runs);
    let sent = messages(&replayed.sent)?;
    let report = summarize(
        rules,
        replayed,
        &sent,
        &found,
        s.since,
        s.until,
        Duration::minutes(1),
        0,
    );
    Ok(score_backtest(
        rules,
        &report.rules,
        &sent,
        &s.incidents,
        s.since,
        s.until,
        scoring,
    ))
}

/// The rule a first draft has: latency above 250 ms, one data point, per service.
pub fn naive_rules() -> Vec<Rule> {
    let mut yaml = String::from("groups:\n  - name: naive\n    rules:\n");
    for svc in 0..SERVICES {
        let s = service(svc);
        yaml.push_str(&format!(
            "      - alert: Latency_{s}\n        metric: {{namespace: {NAMESPACE}, name: latency, dimensions: {{service: {s}}}, stat: Average, period: 1m}}\n        condition: {{operator: \">\", threshold: 250}}\n        labels: {{severity: page, service: {s}}}\n"
        ));
    }
    vigil_alert::load("naive.yaml", &yaml).unwrap_or_default()
}

/// The same question asked with Vigil's features, 20 rules: latency in 3 of the last 5 minutes
/// and, with metric math, the error ratio in 3 of 5, each kept firing 10 minutes so one
/// episode stays one page.
pub fn vigil_rules() -> Vec<Rule> {
    let mut yaml = String::from("groups:\n  - name: vigil\n    rules:\n");
    for svc in 0..SERVICES {
        let s = service(svc);
        yaml.push_str(&format!(
            "      - alert: Latency_{s}\n        metric: {{namespace: {NAMESPACE}, name: latency, dimensions: {{service: {s}}}, stat: Average, period: 1m}}\n        condition: {{operator: \">\", threshold: 250}}\n        evaluation_periods: 5\n        datapoints_to_alarm: 3\n        keep_firing_for: 10m\n        labels: {{severity: page, service: {s}}}\n        annotations: {{runbook_url: https://runbooks.example.com/latency}}\n      - alert: ErrorRatio_{s}\n        metric: {{namespace: {NAMESPACE}, name: requests, dimensions: {{service: {s}}}, stat: Sum, period: 1m}}\n        expression: \"100 * FILL(errors, 0) / m\"\n        inputs:\n          errors: {{namespace: {NAMESPACE}, name: errors, dimensions: {{service: {s}}}, stat: Sum}}\n        condition: {{operator: \">\", threshold: 5}}\n        evaluation_periods: 5\n        datapoints_to_alarm: 3\n        keep_firing_for: 10m\n        labels: {{severity: page, service: {s}}}\n        annotations: {{runbook_url: https://runbooks.example.com/errors}}\n"
        ));
    }
    vigil_alert::load("vigil.yaml", &yaml).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::schedule;
    use crate::score::QuietHours;
    use crate::sim::replay;
    use vigil_alert::policy::Policy;

    #[test]
    fn the_rule_sets_load_and_the_scenario_is_reproducible() {
        assert_eq!(naive_rules().len(), SERVICES);
        assert_eq!(vigil_rules().len(), 2 * SERVICES);
        let since: DateTime<Utc> = "2026-11-02T00:00:00Z".parse().expect("time");
        let a = generate(since, 2, 1.0, 3);
        let b = generate(since, 2, 1.0, 3);
        assert_eq!(a.incidents, b.incidents);
        assert_eq!(a.reader.series, b.reader.series);
        assert_eq!(a.incidents.len(), 2);
        assert_eq!(a.reader.series.len(), 3 * SERVICES);
    }

    /// Three days, three incidents: the naive rule pages on every spike; Vigil's rules page
    /// for every incident and seldom otherwise, better than the naive rule and the coin.
    #[tokio::test]
    async fn vigils_rules_beat_the_naive_rule_and_the_coin_flip() {
        let since: DateTime<Utc> = "2026-11-02T00:00:00Z".parse().expect("time");
        let s = generate(since, 3, 1.0, 11);
        let times = schedule(
            s.since + Duration::minutes(10),
            s.until,
            Duration::minutes(1),
        );
        let scoring = Scoring {
            quiet: QuietHours::parse("22:00-07:00", "UTC").expect("quiet"),
            margin: Duration::zero(),
            draws: 300,
            seed: 1,
        };
        let mut scores = Vec::new();
        for rules in [naive_rules(), vigil_rules()] {
            let replayed = replay(&s.reader, &rules, &Policy::default(), &times, |_| {})
                .await
                .expect("replay");
            let scored = score_replayed(&s, &rules, &replayed, &scoring).expect("score");
            scores.push(scored.overall);
        }
        let (naive, vigil) = (&scores[0], &scores[1]);
        assert_eq!(vigil.recall, Some(1.0), "{vigil:?}");
        let (np, vp) = (
            naive.precision.expect("naive pages"),
            vigil.precision.expect("vigil pages"),
        );
        assert!(vp > np + 0.3, "vigil {vp} vs naive {np}");
        assert!(
            vp > 2.0 * vigil.coin_flip.precision.expect("coin"),
            "{vigil:?}"
        );
        assert!(naive.pages > 3 * vigil.pages, "{naive:?} vs {vigil:?}");
    }
}
