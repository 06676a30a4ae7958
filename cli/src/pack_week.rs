//! A synthetic week for a rule pack: what its rules would send over days of one-minute data
//! with incidents and noise, through the alert function's own evaluation ([`crate::sim`]).
//!
//! The series come from the pack's own tests: each test's input series gives a normal value
//! (its first point) and a bad one (its point 50 minutes before its end, inside the tests'
//! incident). Every series with a bad value then gets, from a seed: incidents of 45 to 120
//! minutes (one every two and a half days), two one-minute spikes a day and ten minutes of
//! flapping (bad and normal minutes in turn, as in the tests) every two days, both an hour or
//! more away from any incident; between them it holds its normal value. The rules are evaluated
//! every minute from the first hour on, so that every look-back starts on data. A notification counts for an incident
//! when its rule reads the incident's series (the same labels) and it is sent while the
//! incident lasts; every other firing notification is noise. Rules tested on another interval
//! than one minute (backup-verify's daily run) are left out.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use vigil_alert::Rule;
use vigil_alert::policy::Policy;
use vigil_alert::state::Status;

use crate::coin::SplitMix64;
use crate::pack::Pack;
use crate::rules_test::{TestFile, TestGroup};
use crate::sim::{ReplayReader, SeriesKey, replay};
use crate::values::{self, Point};

/// What one pack's rules sent over the synthetic days.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Week {
    pub pack: String,
    pub days: i64,
    /// Rules replayed (those tested on one-minute data).
    pub rules: usize,
    pub incidents: usize,
    /// Incidents at least one notification was sent for, and those a `page` rule fired for.
    pub detected: usize,
    pub paged: usize,
    /// Minutes from an incident's start to its first notification.
    pub detect_minutes_median: Option<i64>,
    pub detect_minutes_max: Option<i64>,
    pub spikes: usize,
    pub flaps: usize,
    /// Firing notifications of `page` and `ticket` rules, and those outside every incident.
    pub pages: usize,
    pub pages_outside: usize,
    pub tickets: usize,
    pub tickets_outside: usize,
    /// Incidents nothing was sent for: series and start.
    pub missed: Vec<String>,
    /// Firing notifications outside every incident: rule, labels and minute.
    pub noise: Vec<String>,
    /// Of those, the ones of burn-rate rules: noise that spent the objective's budget.
    pub noise_burning_budget: usize,
    /// The run that asked `GetMetricData` for the most metrics (what CloudWatch bills for the
    /// reads): how many series it evaluated, and how many metrics it asked for.
    pub series_per_run: usize,
    pub metrics_per_run: usize,
}

struct Shape {
    key: SeriesKey,
    normal: Point,
    bad: Option<Point>,
}

/// The tests of `tests` whose values are one minute apart (as `rules test` spaces them: the
/// group's interval, else the file's evaluation interval, else a minute).
fn one_minute(tests: &TestFile) -> impl Iterator<Item = &TestGroup> {
    tests.tests.iter().filter(|group| {
        group
            .interval
            .or(tests.evaluation_interval)
            .map_or(60, |s| s.seconds())
            == 60
    })
}

/// The series of the pack's one-minute tests, each once, with its normal and bad values.
fn shapes(tests: &TestFile) -> Result<Vec<Shape>, String> {
    let mut out: Vec<Shape> = Vec::new();
    for group in one_minute(tests) {
        for input in &group.input_series {
            let points = values::parse(&input.values)?;
            let key = input.metric.key();
            if out.iter().any(|s| s.key == key) || points.len() < 60 {
                continue;
            }
            let (normal, bad) = (points[0], points[points.len() - 50]);
            out.push(Shape {
                key,
                normal,
                bad: (bad != normal).then_some(bad),
            });
        }
    }
    Ok(out)
}

/// A minute of `span` far from every interval of `taken` (an hour each side), if one is found.
fn free_minute(
    rng: &mut SplitMix64,
    span: (i64, i64),
    len: i64,
    taken: &[(i64, i64)],
) -> Option<i64> {
    (0..50).find_map(|_| {
        let start = span.0 + rng.below((span.1 - span.0 - len).max(1) as u64) as i64;
        taken
            .iter()
            .all(|&(s, e)| start + len + 60 <= s || start >= e + 60)
            .then_some(start)
    })
}

/// How the pack's rules are replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// As the pack ships them.
    Shipped,
    /// The baseline: the same thresholds firing on one data point (1 of 1, no `for`), the
    /// rule a team writes first. Burn-rate rules stay as they are.
    OnePoint,
}

/// Replays `pack` (its default parameters) over `days` of synthetic data from `seed`.
pub async fn simulate(pack: &Pack, days: i64, seed: u64, how: Rules) -> Result<Week, String> {
    let values = pack.values(&[])?;
    let (all_rules, _) =
        vigil_alert::load_set(pack.name, &pack.rules(&values)?, &[]).map_err(|e| e.to_string())?;
    let tests: TestFile = vigil_shared::config::parse_yaml(pack.name, &pack.tests(&values)?)
        .map_err(|e| e.to_string())?;
    let shapes = shapes(&tests)?;
    let tested: BTreeSet<&str> = one_minute(&tests)
        .flat_map(|g| g.alert_rule_test.iter().map(|t| t.alertname.as_str()))
        .collect();
    let rules: Vec<Rule> = all_rules
        .into_iter()
        .filter(|r| tested.contains(r.alert.as_str()))
        .map(|mut r| {
            if how == Rules::OnePoint && r.burn.is_none() {
                r.evaluation_periods = Some(1);
                r.datapoints_to_alarm = Some(1);
                r.lookback = None;
                r.for_ = vigil_shared::duration::Span(0);
            }
            r
        })
        .collect();

    let minutes = days * 1_440;
    let since = crate::rules_test::origin();
    let mut rng = SplitMix64::new(seed);
    let mut week = Week {
        pack: pack.name.to_owned(),
        days,
        rules: rules.len(),
        ..Week::default()
    };
    let mut reader = ReplayReader::default();
    // Per series with a bad value: its incidents, in minutes from `since`.
    let mut incidents: Vec<(usize, i64, i64)> = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let mut points: Vec<Point> = vec![shape.normal; minutes as usize];
        if let Some(bad) = shape.bad {
            let mut taken: Vec<(i64, i64)> = Vec::new();
            let count = ((days as f64 / 2.5).round() as usize).max(1);
            for _ in 0..count {
                let length = 45 + rng.below(76) as i64;
                if let Some(start) = free_minute(&mut rng, (120, minutes - 120), length, &taken) {
                    taken.push((start, start + length));
                    incidents.push((i, start, start + length));
                    for p in &mut points[start as usize..(start + length) as usize] {
                        *p = bad;
                    }
                }
            }
            for _ in 0..days * 2 {
                if let Some(m) = free_minute(&mut rng, (60, minutes - 60), 1, &taken) {
                    points[m as usize] = bad;
                    taken.push((m, m + 1));
                    week.spikes += 1;
                }
            }
            for _ in 0..(days / 2).max(1) {
                if let Some(m) = free_minute(&mut rng, (60, minutes - 60), 10, &taken) {
                    for k in (0..10).step_by(2) {
                        points[(m + k) as usize] = bad;
                    }
                    taken.push((m, m + 10));
                    week.flaps += 1;
                }
            }
        }
        let series = points
            .iter()
            .enumerate()
            .filter_map(|(m, p)| p.map(|v| (since + Duration::minutes(m as i64), v)))
            .collect();
        reader.series.push((shape.key.clone(), series));
    }
    week.incidents = incidents.len();

    let times: Vec<DateTime<Utc>> = (60..minutes)
        .map(|m| since + Duration::minutes(m))
        .collect();
    let replayed = replay(&reader, &rules, &Policy::NONE, &times, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let sent = crate::sent::messages(&replayed.sent)?;
    if let Some(run) = replayed.runs.iter().max_by_key(|r| r.metrics_requested) {
        week.series_per_run = run.rules.len();
        week.metrics_per_run = run.metrics_requested;
    }

    // Whether rule `rule` with these labels reads the series of shape `i`.
    let reads = |rule: &Rule, labels: &BTreeMap<String, String>, i: usize| {
        let key = &shapes[i].key;
        let named = (rule.metric.namespace == key.namespace && rule.metric.name == key.metric)
            || rule
                .inputs
                .values()
                .any(|input| input.namespace == key.namespace && input.name == key.metric);
        named
            && key
                .dimensions
                .iter()
                .all(|d| labels.get(&d.name).is_none_or(|v| *v == d.value))
    };
    let mut first_sent: BTreeMap<usize, i64> = BTreeMap::new();
    let mut paged: BTreeSet<usize> = BTreeSet::new();
    for message in &sent {
        let at = (message.at - since).num_minutes();
        for alert in message.alerts.iter().filter(|a| a.status == Status::Firing) {
            let Some(rule) = rules.iter().find(|r| r.alert == alert.alertname) else {
                continue;
            };
            let page = rule.labels.get("severity").is_some_and(|s| s == "page");
            let hit: Vec<usize> = incidents
                .iter()
                .enumerate()
                .filter(|(_, (i, start, end))| {
                    at >= *start && at <= *end && reads(rule, &alert.labels, *i)
                })
                .map(|(n, _)| n)
                .collect();
            match (page, hit.is_empty()) {
                (true, true) => week.pages_outside += 1,
                (false, true) => week.tickets_outside += 1,
                _ => {}
            }
            if hit.is_empty() && rule.burn.is_some() {
                week.noise_burning_budget += 1;
            }
            if hit.is_empty() {
                week.noise.push(format!(
                    "{} {:?} at minute {at}",
                    alert.alertname, alert.labels
                ));
            }
            if page {
                week.pages += 1;
            } else {
                week.tickets += 1;
            }
            for n in hit {
                let delay = at - incidents[n].1;
                first_sent
                    .entry(n)
                    .and_modify(|d| *d = (*d).min(delay))
                    .or_insert(delay);
                if page {
                    paged.insert(n);
                }
            }
        }
    }
    week.detected = first_sent.len();
    week.paged = paged.len();
    let mut delays: Vec<i64> = first_sent.values().copied().collect();
    delays.sort_unstable();
    week.detect_minutes_median = delays.get(delays.len() / 2).copied();
    week.detect_minutes_max = delays.last().copied();
    for (n, &(i, start, _)) in incidents.iter().enumerate() {
        if !first_sent.contains_key(&n) {
            week.missed.push(format!(
                "{} {:?} at minute {start}",
                shapes[i].key.metric, shapes[i].key.dimensions
            ));
        }
    }
    Ok(week)
}
