//! Evaluation: what a rule's condition shows over its series at one instant, which series a
//! rule watches, and the CloudWatch queries that read them.
//!
//! Missing data follows CloudWatch's documented evaluation ("Configuring how CloudWatch alarms
//! treat missing data", CloudWatch User Guide): the lookback is the evaluation range;
//! - with at least N real points in it, the newest N real points are compared and the
//!   missing-data policy plays no part;
//! - with none, the policy decides (`breaching`, `not_breaching`, or `ignore`: the state is
//!   kept);
//! - with some but fewer than N, the missing points are filled by the policy, as few as
//!   possible (N minus the real ones), and every real point is compared with them. With
//!   `ignore`, nothing is filled: the real points decide, except in the page's "premature
//!   alarm" case (fewer real points than M, the newest N periods holding a breach at least M
//!   periods old with only breaches or gaps after it), where the state is kept.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use vigil_shared::reader::StatQuery;
use vigil_shared::{Dimension, MetricReader, Result};

use crate::rules::{MissingData, Rule};
use crate::state::Observation;

/// What one rule's condition showed at an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "condition")]
pub enum Outcome {
    /// At least M of the N points compared breach; `value` is the newest real one.
    Breaching { value: f64, at: DateTime<Utc> },
    /// Fewer than M breach.
    Ok { value: f64, at: DateTime<Utc> },
    /// Too few real points to decide, and the policy (`ignore`) keeps the state as it is.
    Undecided { value: f64, at: DateTime<Utc> },
    /// No complete data point in the lookback window.
    NoData,
}

fn secs(n: u64) -> Duration {
    Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// Evaluates one rule's condition over its series at `now`. A data point counts once its
/// period has ended (`timestamp + period <= now`): a period still filling up would compare a
/// partial value.
pub fn evaluate(rule: &Rule, series: &[(DateTime<Utc>, f64)], now: DateTime<Utc>) -> Outcome {
    let period = secs(rule.metric.period.seconds());
    let window_start = now - secs(rule.lookback().seconds());
    let mut points: Vec<(DateTime<Utc>, f64)> = series
        .iter()
        .filter(|(t, v)| *t >= window_start && *t + period <= now && v.is_finite())
        .copied()
        .collect();
    points.sort_by_key(|(t, _)| *t);
    points.dedup_by_key(|(t, _)| *t);
    let Some(&(at, value)) = points.last() else {
        return Outcome::NoData;
    };
    let n = rule.evaluation_periods() as usize;
    let m = rule.datapoints_to_alarm() as usize;
    let c = rule.condition;
    let breaches = |p: &[(DateTime<Utc>, f64)]| {
        p.iter()
            .filter(|(_, v)| c.operator.holds(*v, c.threshold))
            .count()
    };
    let decided = |breaching: bool| {
        if breaching {
            Outcome::Breaching { value, at }
        } else {
            Outcome::Ok { value, at }
        }
    };
    if points.len() >= n {
        return decided(breaches(&points[points.len() - n..]) >= m);
    }
    let real_breaching = breaches(&points);
    let filled = n - points.len();
    match rule.missing_data {
        MissingData::Breaching => decided(real_breaching + filled >= m),
        MissingData::NotBreaching => decided(real_breaching >= m),
        MissingData::Ignore => {
            if real_breaching >= m {
                return decided(true);
            }
            // The newest N periods, 0 the newest complete one.
            let p = period.num_seconds().max(1);
            let newest = (now.timestamp() - p).div_euclid(p) * p;
            let age = |t: DateTime<Utc>| (newest - t.timestamp()).div_euclid(p);
            let recent: Vec<(i64, bool)> = points
                .iter()
                .map(|(t, v)| (age(*t), c.operator.holds(*v, c.threshold)))
                .filter(|(a, _)| (0..n as i64).contains(a))
                .collect();
            let oldest_breach = recent.iter().filter(|(_, b)| *b).map(|(a, _)| *a).max();
            let premature = points.len() < m
                && oldest_breach.is_some_and(|oldest| {
                    oldest + 1 >= m as i64 && recent.iter().all(|(a, b)| *b || *a > oldest)
                });
            if premature {
                Outcome::Undecided { value, at }
            } else {
                decided(false)
            }
        }
    }
}

/// The state machine's input for an outcome, after the rule's missing-data policy.
pub fn observe(rule: &Rule, outcome: &Outcome) -> Observation {
    match (outcome, rule.missing_data) {
        (Outcome::Breaching { value, .. }, _) => Observation::Breaching(Some(*value)),
        (Outcome::Ok { value, .. }, _) => Observation::NotBreaching(Some(*value)),
        (Outcome::Undecided { .. }, _) => Observation::Unknown,
        (Outcome::NoData, MissingData::Ignore) => Observation::Unknown,
        (Outcome::NoData, MissingData::Breaching) => Observation::Breaching(None),
        (Outcome::NoData, MissingData::NotBreaching) => Observation::NotBreaching(None),
    }
}

impl Outcome {
    /// The instant of the point compared, or `now` for no data.
    pub fn at_or(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Outcome::Breaching { at, .. }
            | Outcome::Ok { at, .. }
            | Outcome::Undecided { at, .. } => *at,
            Outcome::NoData => now,
        }
    }
}

/// The CloudWatch query for rule number `index`, on the rule's own dimensions.
pub fn query_for(rule: &Rule, index: usize) -> StatQuery {
    query_for_series(rule, rule.metric.dimensions(), index)
}

/// The CloudWatch query for one series of a rule (its `*` dimensions resolved to `dimensions`).
pub fn query_for_series(rule: &Rule, dimensions: Vec<Dimension>, index: usize) -> StatQuery {
    StatQuery {
        id: format!("r{index}"),
        namespace: rule.metric.namespace.clone(),
        metric: rule.metric.name.clone(),
        dimensions,
        stat: rule.metric.stat.clone(),
        period: u32::try_from(rule.metric.period.seconds()).unwrap_or(u32::MAX),
        // A burn-rate rule reads its events and its counted input as plain statistics (the
        // run asks for the parts, never for this expression): the math names them.
        math: rule
            .expression
            .clone()
            .or_else(|| {
                rule.burn
                    .as_ref()
                    .map(|_| crate::slo::COUNTED_INPUT.to_owned())
            })
            .map(|expression| vigil_shared::Math {
                expression,
                inputs: rule
                    .inputs
                    .iter()
                    .map(|(name, input)| {
                        (
                            name.clone(),
                            vigil_shared::MathInput {
                                namespace: input.namespace.clone(),
                                metric: input.name.clone(),
                                dimensions: input
                                    .dimensions
                                    .iter()
                                    .map(|(k, v)| Dimension {
                                        name: k.clone(),
                                        value: v.clone(),
                                    })
                                    .collect(),
                                stat: input.stat.clone(),
                            },
                        )
                    })
                    .collect(),
            }),
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Where one batched read starts: far enough back for the widest lookback, and on a boundary
/// of every rule's period, so that CloudWatch's period buckets start on whole periods (12:05,
/// not 12:05:21) whatever the second the run started at.
pub fn read_start(rules: &[Rule], now: DateTime<Utc>) -> DateTime<Utc> {
    read_start_of(rules.iter(), now)
}

/// [`read_start`] for some of the rules.
pub fn read_start_of<'a>(
    rules: impl Iterator<Item = &'a Rule> + Clone,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let widest = rules
        .clone()
        .map(|r| r.lookback().seconds())
        .max()
        .unwrap_or(0);
    let mut align: u64 = 1;
    for r in rules {
        let p = r.metric.period.seconds().max(1);
        align = align / gcd(align, p) * p;
        if align > 86_400 {
            align = 86_400;
            break;
        }
    }
    let earliest = now.timestamp() - i64::try_from(widest).unwrap_or(i64::MAX / 2);
    let align = i64::try_from(align).unwrap_or(86_400);
    DateTime::from_timestamp(earliest.div_euclid(align) * align, 0).unwrap_or(now)
}

/// A rule's labels with `alertname`: what routes, silences and inhibitions match on.
pub fn alert_labels(rule: &Rule) -> BTreeMap<String, String> {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".to_owned(), rule.alert.clone());
    labels
}

/// One series a rule watches, with its own state: the rule's only series, or one of the
/// series its `*` dimensions match.
#[derive(Clone, Debug, PartialEq)]
pub struct Target<'a> {
    pub rule: &'a Rule,
    /// The series' dimensions.
    pub dimensions: Vec<Dimension>,
    /// The `*` dimensions with this series' values (empty for a rule without `*`).
    pub series: BTreeMap<String, String>,
    /// The state key: the alert name, then `{name=value,...}` of `series` when there is one.
    pub key: String,
    /// The rule's labels, `alertname`, and `series`.
    pub labels: BTreeMap<String, String>,
}

impl<'a> Target<'a> {
    /// The rule's only series (no `*` dimension).
    pub fn whole(rule: &'a Rule) -> Self {
        Self::series(rule, rule.metric.dimensions())
    }

    /// The series of `rule` with these dimensions.
    pub fn series(rule: &'a Rule, dimensions: Vec<Dimension>) -> Self {
        let series: BTreeMap<String, String> = dimensions
            .iter()
            .filter(|d| {
                rule.metric
                    .dimensions
                    .get(&d.name)
                    .is_some_and(|v| v == "*")
            })
            .map(|d| (d.name.clone(), d.value.clone()))
            .collect();
        let key = if series.is_empty() {
            rule.alert.clone()
        } else {
            let parts: Vec<String> = series.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{}{{{}}}", rule.alert, parts.join(","))
        };
        let mut labels = alert_labels(rule);
        labels.extend(series.clone());
        Self {
            rule,
            dimensions,
            series,
            key,
            labels,
        }
    }
}

/// Every series the rules watch: a rule without `*` is one; a rule with `*` dimensions is one
/// per series CloudWatch lists for it (`ListMetrics`, which only knows series that received
/// data in the last two weeks).
pub async fn targets<'a>(reader: &impl MetricReader, rules: &'a [Rule]) -> Result<Vec<Target<'a>>> {
    type Listing = (String, String, Vec<Dimension>, Vec<String>);
    let mut listed: BTreeMap<Listing, Vec<Vec<Dimension>>> = BTreeMap::new();
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let (any, fixed): (Vec<_>, Vec<_>) = rule
            .metric
            .dimensions()
            .into_iter()
            .partition(|d| d.value == "*");
        if any.is_empty() {
            out.push(Target::whole(rule));
            continue;
        }
        let names: Vec<String> = any.into_iter().map(|d| d.name).collect();
        // Rules that watch the same series share one listing.
        let listing = (
            rule.metric.namespace.clone(),
            rule.metric.name.clone(),
            fixed,
            names,
        );
        if !listed.contains_key(&listing) {
            let (namespace, metric, fixed, names) = &listing;
            let series = reader.list_series(namespace, metric, fixed, names).await?;
            listed.insert(listing.clone(), series);
        }
        for dims in listed.get(&listing).into_iter().flatten() {
            out.push(Target::series(rule, dims.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::load;
    use proptest::prelude::*;

    const RULE: &str = r#"
groups:
  - name: g
    rules:
      - alert: HighLatency
        metric: {namespace: Shop, name: latency, dimensions: {service: api}, stat: Average, period: 1m}
        condition: {operator: ">", threshold: 250}
        evaluation_periods: 3
        datapoints_to_alarm: 2
        labels: {severity: page}
"#;

    fn rule() -> Rule {
        load("t.yaml", RULE).expect("valid").remove(0)
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn m_of_n_on_complete_points() {
        let r = rule();
        let now = t("2026-11-25T08:00:00Z");
        let s: Vec<_> = [
            ("2026-11-25T07:56:00Z", 900.0),
            ("2026-11-25T07:57:00Z", 100.0),
            ("2026-11-25T07:58:00Z", 300.0),
            ("2026-11-25T07:59:00Z", 260.0),
            // still filling at 08:00: not compared
            ("2026-11-25T08:00:00Z", 10.0),
        ]
        .iter()
        .map(|(a, v)| (t(a), *v))
        .collect();
        assert_eq!(
            evaluate(&r, &s, now),
            Outcome::Breaching {
                value: 260.0,
                at: t("2026-11-25T07:59:00Z")
            }
        );
        assert_eq!(evaluate(&r, &[], now), Outcome::NoData);
        assert_eq!(
            evaluate(&r, &[(t("2026-11-25T07:40:00Z"), 999.0)], now),
            Outcome::NoData
        );
    }

    /// One slot of the documentation's notation: `0` not breaching, `X` breaching, `-` missing.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Slot {
        Good,
        Bad,
        Missing,
    }

    /// The alarm state the documentation's tables give.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Doc {
        Ok,
        Alarm,
        /// All missing with `missing` (INSUFFICIENT_DATA) or "Retain current state".
        Keep,
    }

    fn slots(text: &str) -> Vec<Slot> {
        text.split_whitespace()
            .map(|s| match s {
                "0" => Slot::Good,
                "X" => Slot::Bad,
                _ => Slot::Missing,
            })
            .collect()
    }

    /// The reference, written from the page ("Configuring how CloudWatch alarms treat missing
    /// data") over its own notation: the evaluation range oldest first, newest last.
    fn reference(range: &[Slot], n: usize, m: usize, policy: MissingData) -> Doc {
        let real: Vec<bool> = range
            .iter()
            .filter(|s| **s != Slot::Missing)
            .map(|s| *s == Slot::Bad)
            .collect();
        let alarm = |b: bool| if b { Doc::Alarm } else { Doc::Ok };
        if real.len() >= n {
            return alarm(real[real.len() - n..].iter().filter(|b| **b).count() >= m);
        }
        if real.is_empty() {
            return match policy {
                MissingData::Breaching => Doc::Alarm,
                MissingData::NotBreaching => Doc::Ok,
                MissingData::Ignore => Doc::Keep,
            };
        }
        let bad = real.iter().filter(|b| **b).count();
        let fill = n - real.len();
        match policy {
            MissingData::Breaching => alarm(bad + fill >= m),
            MissingData::NotBreaching => alarm(bad >= m),
            MissingData::Ignore => {
                if bad >= m {
                    return Doc::Alarm;
                }
                // Premature alarm: the oldest breach among the newest N periods is at least M
                // periods old and everything newer breaches or is missing.
                let newest = &range[range.len().saturating_sub(n)..];
                let oldest = newest.iter().position(|s| *s == Slot::Bad);
                let premature = real.len() < m
                    && oldest.is_some_and(|i| {
                        newest.len() - i >= m && newest[i..].iter().all(|s| *s != Slot::Good)
                    });
                if premature { Doc::Keep } else { Doc::Ok }
            }
        }
    }

    /// `range` as a series ending one minute before `now`, for a rule of N, M and policy.
    fn run(range: &[Slot], n: u32, m: u32, policy: MissingData) -> Doc {
        let mut r = rule();
        r.evaluation_periods = Some(n);
        r.datapoints_to_alarm = Some(m);
        r.missing_data = policy;
        r.lookback = Some(vigil_shared::Span(60 * range.len() as u64));
        let now = t("2026-11-25T08:00:00Z");
        let series: Vec<_> = range
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let at = now - Duration::minutes((range.len() - i) as i64);
                match s {
                    Slot::Good => Some((at, 100.0)),
                    Slot::Bad => Some((at, 900.0)),
                    Slot::Missing => None,
                }
            })
            .collect();
        match observe(&r, &evaluate(&r, &series, now)) {
            Observation::Breaching(_) => Doc::Alarm,
            Observation::NotBreaching(_) => Doc::Ok,
            Observation::Unknown => Doc::Keep,
        }
    }

    /// Every row of the page's two tables (3 of 3 and 2 of 3, evaluation range 5), in the
    /// IGNORE, BREACHING and NOT BREACHING columns (Vigil has no INSUFFICIENT_DATA state; its
    /// `ignore` keeps the state where the page keeps it).
    #[test]
    fn the_documented_tables() {
        use Doc::{Alarm as A, Keep as K, Ok as O};
        use MissingData::{Breaching as B, Ignore as I, NotBreaching as G};
        let rows: [(&str, u32, u32, [Doc; 3]); 10] = [
            ("0 - X - X", 3, 3, [O, O, O]),
            ("0 - - - -", 3, 3, [O, O, O]),
            ("- - - - -", 3, 3, [K, A, O]),
            ("0 X X - X", 3, 3, [A, A, A]),
            ("- - X - -", 3, 3, [K, A, O]),
            ("0 - X - X", 3, 2, [A, A, A]),
            ("0 0 X 0 X", 3, 2, [A, A, A]),
            ("0 - X - -", 3, 2, [O, A, O]),
            ("- - - - 0", 3, 2, [O, A, O]),
            ("- - - X -", 3, 2, [K, A, O]),
        ];
        for (range, n, m, want) in rows {
            for (policy, want) in [I, B, G].into_iter().zip(want) {
                let s = slots(range);
                assert_eq!(
                    run(&s, n, m, policy),
                    want,
                    "{range} {m} of {n}, {policy:?}"
                );
                assert_eq!(reference(&s, n as usize, m as usize, policy), want);
            }
        }
    }

    fn slot() -> impl Strategy<Value = Slot> {
        prop_oneof![Just(Slot::Good), Just(Slot::Bad), Just(Slot::Missing)]
    }

    fn policy() -> impl Strategy<Value = MissingData> {
        prop_oneof![
            Just(MissingData::Ignore),
            Just(MissingData::Breaching),
            Just(MissingData::NotBreaching)
        ]
    }

    proptest! {
        /// The evaluation over timestamps agrees with the reference over the page's notation,
        /// for any range, M of N and policy.
        #[test]
        fn evaluation_follows_the_documented_reference(
            range in proptest::collection::vec(slot(), 1..12),
            n in 1u32..6,
            m_less in 0u32..6,
            policy in policy(),
        ) {
            let m = n - m_less.min(n - 1);
            prop_assume!(range.len() >= n as usize);
            prop_assert_eq!(run(&range, n, m, policy), reference(&range, n as usize, m as usize, policy));
        }
    }

    #[test]
    fn reads_start_on_period_boundaries() {
        let mut a = rule();
        let mut b = rule();
        a.evaluation_periods = None;
        a.datapoints_to_alarm = None;
        b.metric.period = vigil_shared::Span(300);
        b.lookback = Some(vigil_shared::Span(900));
        let now = t("2026-11-25T08:07:21Z");
        assert_eq!(
            read_start(std::slice::from_ref(&a), now),
            t("2026-11-25T08:02:00Z")
        );
        assert_eq!(read_start(&[a, b], now), t("2026-11-25T07:50:00Z"));
        assert_eq!(read_start(&[], now), now);
    }

    #[test]
    fn metric_math_rules_query_their_expression() {
        let math = RULE.replace(
            "        condition: {operator: \">\", threshold: 250}",
            "        expression: \"100 * errors / m\"\n        inputs:\n          errors: {namespace: Shop, name: errors, dimensions: {service: api}, stat: Sum}\n        condition: {operator: \">\", threshold: 5}",
        );
        let r = load("t.yaml", &math).expect("valid").remove(0);
        let q = query_for(&r, 4);
        let m = q.math.as_ref().expect("math");
        assert_eq!(m.expression, "100 * errors / m");
        assert_eq!(m.inputs[0].0, "errors");
        let wire = vigil_shared::reader::wire_queries(&q);
        assert_eq!(
            wire.last().and_then(|w| w.expression()),
            Some("100 * r4_errors / r4_m")
        );
    }
}
