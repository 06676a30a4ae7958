//! Service level objectives, alerted on as the Google SRE workbook's "Alerting on SLOs"
//! chapter recommends: multiple windows, multiple burn rates. An objective (99.9 % of events
//! good over 30 days) allows an error budget (0.1 %); the burn rate is how many times faster
//! than that budget allows the errors of a window spend it. Each pair of windows is one alert
//! that fires when both burn faster than its factor: the long window proves the spend is
//! significant, the short one that it is still going on (so the alert resolves minutes after
//! the trouble stops, not hours).
//!
//! ```yaml
//! groups:
//!   - name: checkout-slo
//!     slos:
//!       - name: CheckoutAvailability
//!         objective: 99.9                # percent of events good
//!         window: 30d                    # the budget's period (default 30d)
//!         total: {namespace: Shop/Checkout, name: requests, dimensions: {service: checkout}}
//!         errors: {namespace: Shop/Checkout, name: errors, dimensions: {service: checkout}}
//!         # or good: {...}, the events that met the objective; or, instead of total and
//!         # errors, error_ratio: {namespace, name, dimensions, unit: fraction|percent}, one
//!         # series of the error ratio per period (Average), each period weighing the same
//!         labels: {team: checkout, service: checkout}
//!         annotations: {runbook_url: https://runbooks.example.com/checkout/slo}
//! ```
//!
//! By default (the workbook's table): page at 14.4× over 1 h and 5 m, and 6× over 6 h and
//! 30 m; ticket at 3× over 1 d and 2 h, and 1× over 3 d and 6 h. `page:` and `ticket:` lists
//! of `{factor, long, short}` replace them. Each pair becomes an ordinary rule named
//! `<name>BurnRate<long>` (`CheckoutAvailabilityBurnRate1h`), with `severity: page` or
//! `ticket` and `slo: <name>` among its labels, so routes, silences, grouping, `rules test`
//! and the backtest treat it as any other rule.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vigil_shared::Span;

use crate::evaluate::Outcome;
use crate::rules::{Condition, InputSpec, MetricSpec, MissingData, Operator, Rule};

/// The events a ratio counts (a Sum of one metric by default).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Events {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default = "sum")]
    pub stat: String,
}

fn sum() -> String {
    "Sum".to_owned()
}

fn average() -> String {
    "Average".to_owned()
}

/// How an error ratio is written: 0.02 or 2 for 2 %.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RatioUnit {
    #[default]
    Fraction,
    Percent,
}

/// An error ratio measured per period, such as a Prometheus recording rule's
/// `job:http_requests_errors:ratio_rate1m`: the share of a period's events that failed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ratio {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default = "average")]
    pub stat: String,
    #[serde(default)]
    pub unit: RatioUnit,
}

fn thirty_days() -> Span {
    Span(30 * 86_400)
}

fn one_minute() -> Span {
    Span(60)
}

/// One alert of an objective: both windows burn faster than `factor`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    pub factor: f64,
    pub long: Span,
    pub short: Span,
}

/// An objective as the rules file gives it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    /// Percent of events that must be good, in (0, 100).
    pub objective: f64,
    #[serde(default = "thirty_days")]
    pub window: Span,
    #[serde(default)]
    pub total: Option<Events>,
    #[serde(default)]
    pub errors: Option<Events>,
    #[serde(default)]
    pub good: Option<Events>,
    /// Instead of `total` and `errors` or `good`: one series of the error ratio per period.
    #[serde(default)]
    pub error_ratio: Option<Ratio>,
    /// The period of the data points summed (default 1m).
    #[serde(default = "one_minute")]
    pub period: Span,
    #[serde(default)]
    pub page: Option<Vec<Windows>>,
    #[serde(default)]
    pub ticket: Option<Vec<Windows>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What an objective's series count: the total events and the errors, or the good events; or
/// one series of the error ratio (in percent or as a fraction), each period weighing the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Errors,
    Good,
    Ratio { percent: bool },
}

/// What makes a compiled rule a burn-rate alert: its rule's `metric` is the total events,
/// its one input (`bad`) the errors or the good events.
#[derive(Clone, Debug, PartialEq)]
pub struct Burn {
    pub slo: String,
    /// A fraction: 0.999.
    pub objective: f64,
    pub window: Span,
    pub windows: Windows,
    pub counted: Counted,
}

impl Burn {
    /// The objective as the rules file gave it: 99.9.
    pub fn objective_percent(&self) -> f64 {
        (self.objective * 1e8).round() / 1e6
    }
}

/// The input name of the errors (or good events) in a burn-rate rule.
pub const COUNTED_INPUT: &str = "bad";

/// The workbook's defaults.
pub const PAGE: [Windows; 2] = [
    Windows {
        factor: 14.4,
        long: Span(3_600),
        short: Span(300),
    },
    Windows {
        factor: 6.0,
        long: Span(6 * 3_600),
        short: Span(1_800),
    },
];
pub const TICKET: [Windows; 2] = [
    Windows {
        factor: 3.0,
        long: Span(86_400),
        short: Span(2 * 3_600),
    },
    Windows {
        factor: 1.0,
        long: Span(3 * 86_400),
        short: Span(6 * 3_600),
    },
];

fn input(e: &Events) -> InputSpec {
    InputSpec {
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        dimensions: e.dimensions.clone(),
        stat: e.stat.clone(),
    }
}

/// The burn-rate rules of an objective, or why it is invalid (`at` names it).
pub fn compile(at: &str, slo: &Slo) -> Result<Vec<Rule>, String> {
    let fail = |field: &str, why: String| Err(format!("{at}: {field}: {why}"));
    if slo.name.is_empty()
        || !slo
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return fail("name", "letters, digits and _ only, not empty".to_owned());
    }
    if !(slo.objective > 0.0 && slo.objective < 100.0) {
        return fail(
            "objective",
            format!("{} is not a percentage between 0 and 100", slo.objective),
        );
    }
    // The budget left is read by the hour over the whole window.
    let hours_kept = vigil_shared::limits::cw_retention_seconds(crate::budget::HOUR as u64);
    if slo.window.seconds() < 3_600 || slo.window.seconds() > hours_kept {
        return fail(
            "window",
            format!(
                "{} must be between 1h and the {}d CloudWatch keeps hourly data",
                slo.window,
                hours_kept / 86_400
            ),
        );
    }
    let ratio_events;
    let (counted, measured, events) = match (&slo.total, &slo.errors, &slo.good, &slo.error_ratio) {
        (Some(t), Some(e), None, None) => (Counted::Errors, t, Some(("errors", e))),
        (Some(t), None, Some(g), None) => (Counted::Good, t, Some(("good", g))),
        (None, None, None, Some(r)) => {
            ratio_events = Events {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                dimensions: r.dimensions.clone(),
                stat: r.stat.clone(),
            };
            let percent = r.unit == RatioUnit::Percent;
            (Counted::Ratio { percent }, &ratio_events, None)
        }
        _ => {
            return fail(
                "errors",
                "give total with either errors or good, or an error_ratio alone".to_owned(),
            );
        }
    };
    if std::iter::once(measured)
        .chain(events.map(|(_, e)| e))
        .any(|e| e.dimensions.values().any(|v| v == "*"))
    {
        return fail(
            "dimensions",
            "an objective is over one series: `*` is for rules".to_owned(),
        );
    }
    // Whole minutes that divide an hour, so that the budget's hours start on a period.
    let p = slo.period.seconds();
    if p == 0 || p % 60 != 0 || 3_600 % p != 0 {
        return fail(
            "period",
            format!(
                "{}: a whole number of minutes that divides an hour",
                slo.period
            ),
        );
    }
    let first = if matches!(counted, Counted::Ratio { .. }) {
        "error_ratio"
    } else {
        "total"
    };
    for (field, e) in std::iter::once((first, measured)).chain(events) {
        if e.name.is_empty() {
            return fail(&format!("{field}.name"), "must not be empty".to_owned());
        }
        let (allowed, what): (&[&str], &str) = match counted {
            Counted::Ratio { .. } => (&["Average"], "a ratio is averaged per period (Average)"),
            _ => (
                &["Sum", "SampleCount"],
                "a burn rate counts events (Sum or SampleCount)",
            ),
        };
        if !allowed.contains(&e.stat.as_str()) {
            return fail(&format!("{field}.stat"), format!("{:?}: {what}", e.stat));
        }
    }
    let mut longs = Vec::new();
    let mut out = Vec::new();
    for (severity, windows) in [
        ("page", slo.page.clone().unwrap_or_else(|| PAGE.to_vec())),
        (
            "ticket",
            slo.ticket.clone().unwrap_or_else(|| TICKET.to_vec()),
        ),
    ] {
        for w in windows {
            if !(w.factor.is_finite() && w.factor > 0.0) {
                return fail(severity, format!("factor {} must be above 0", w.factor));
            }
            if w.short.seconds() < slo.period.seconds() || w.short >= w.long {
                return fail(
                    severity,
                    format!(
                        "short window {} must be at least one period and shorter than the long {}",
                        w.short, w.long
                    ),
                );
            }
            if w.long.seconds() % slo.period.seconds() != 0
                || w.short.seconds() % slo.period.seconds() != 0
            {
                return fail(
                    severity,
                    format!(
                        "windows {} and {} must be whole periods of {}",
                        w.long, w.short, slo.period
                    ),
                );
            }
            let kept = vigil_shared::limits::cw_retention_seconds(slo.period.seconds());
            if w.long.seconds() > kept {
                return fail(
                    severity,
                    format!(
                        "long window {} is longer than CloudWatch keeps {}-second data",
                        w.long,
                        slo.period.seconds()
                    ),
                );
            }
            if longs.contains(&w.long) {
                return fail(
                    severity,
                    format!(
                        "two alerts with the long window {}: each needs its own",
                        w.long
                    ),
                );
            }
            longs.push(w.long);
            if w.long > slo.window {
                return fail(
                    severity,
                    format!(
                        "long window {} is longer than the objective's {}",
                        w.long, slo.window
                    ),
                );
            }
            let mut labels = slo.labels.clone();
            labels.insert("severity".to_owned(), severity.to_owned());
            labels.insert("slo".to_owned(), slo.name.clone());
            let mut annotations = slo.annotations.clone();
            annotations.entry("summary".to_owned()).or_insert_with(|| {
                format!(
                    "{}: errors are spending the {} error budget of {} % {{{{ $value }}}} times as fast as it allows, over {} and {} (alert at {}x; {} of the budget gone in {} at this rate)",
                    slo.name,
                    days(slo.window),
                    slo.objective,
                    days(w.long),
                    days(w.short),
                    w.factor,
                    budget_share(w.factor, w.long, slo.window),
                    days(w.long)
                )
            });
            out.push(Rule {
                alert: format!("{}BurnRate{}", slo.name, days(w.long)),
                metric: MetricSpec {
                    namespace: measured.namespace.clone(),
                    name: measured.name.clone(),
                    dimensions: measured.dimensions.clone(),
                    stat: measured.stat.clone(),
                    period: slo.period,
                },
                expression: None,
                inputs: events
                    .map(|(_, e)| (COUNTED_INPUT.to_owned(), input(e)))
                    .into_iter()
                    .collect(),
                condition: Condition {
                    operator: Operator::Greater,
                    threshold: w.factor,
                },
                lookback: Some(w.long),
                for_: Span(0),
                keep_firing_for: Span(0),
                evaluation_periods: None,
                datapoints_to_alarm: None,
                missing_data: MissingData::Ignore,
                labels,
                annotations,
                burn: Some(Burn {
                    slo: slo.name.clone(),
                    objective: slo.objective / 100.0,
                    window: slo.window,
                    windows: w,
                    counted,
                }),
            });
        }
    }
    Ok(out)
}

/// A window as people say it: `30d`, `1h`.
pub(crate) fn days(span: Span) -> String {
    match span.seconds() {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ => span.to_string(),
    }
}

/// The share of the budget a burn rate spends over `long`, as text: 14.4× for 1 h of 30 d is
/// "2 %".
fn budget_share(factor: f64, long: Span, window: Span) -> String {
    let share = factor * long.seconds() as f64 / window.seconds().max(1) as f64 * 100.0;
    let text = format!("{share:.1}");
    format!("{} %", text.trim_end_matches('0').trim_end_matches('.'))
}

/// Whether the counted series may still lag its total in the points counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lag {
    /// The newest points: a total without its good count may only be early, and is left out.
    Possible,
    /// Points an hour old or more: a total without a good count had no good events.
    Settled,
}

/// The events and the bad events of the periods in `from..end`. Only periods with a total
/// count: an error count reported where no total is, or (while `lag` is possible) a total
/// whose good count has not arrived yet (the two metrics can land a minute apart), would
/// otherwise read as a burst. An error ratio counts each period as `weight` events (its
/// length), that share of them bad.
pub(crate) fn counts(
    burn: &Burn,
    total: &[(DateTime<Utc>, f64)],
    counted: &[(DateTime<Utc>, f64)],
    from: DateTime<Utc>,
    end: DateTime<Utc>,
    weight: f64,
    lag: Lag,
) -> (f64, f64) {
    let counted: BTreeMap<DateTime<Utc>, f64> = counted
        .iter()
        .filter(|(t, v)| *t >= from && *t < end && v.is_finite())
        .copied()
        .collect();
    let (mut all, mut bad) = (0.0, 0.0);
    for (t, v) in total {
        if *t < from || *t >= end || !v.is_finite() {
            continue;
        }
        match (burn.counted, counted.get(t)) {
            (Counted::Errors, c) => {
                all += v;
                bad += c.copied().unwrap_or(0.0);
            }
            (Counted::Good, Some(g)) => {
                all += v;
                bad += (v - g).max(0.0);
            }
            (Counted::Good, None) if lag == Lag::Settled => {
                all += v;
                bad += v;
            }
            (Counted::Good, None) => {}
            (Counted::Ratio { percent }, _) => {
                let share = if percent { v / 100.0 } else { *v };
                all += weight;
                bad += weight * share.clamp(0.0, 1.0);
            }
        }
    }
    (all, bad)
}

/// The bad share of the events of the periods in `from..end` ([`counts`]).
fn bad_share(
    burn: &Burn,
    total: &[(DateTime<Utc>, f64)],
    counted: &[(DateTime<Utc>, f64)],
    from: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<f64> {
    let (all, bad) = counts(burn, total, counted, from, end, 1.0, Lag::Possible);
    if all <= 0.0 {
        return None;
    }
    Some((bad / all).clamp(0.0, 1.0))
}

/// Where a burn-rate rule's windows end at `now`: the newest boundary of its period (on the
/// epoch, as the read starts), so each window holds whole periods.
pub(crate) fn window_end(rule: &Rule, now: DateTime<Utc>) -> DateTime<Utc> {
    let p = i64::try_from(rule.metric.period.seconds().max(1)).unwrap_or(60);
    DateTime::from_timestamp(now.timestamp().div_euclid(p) * p, 0).unwrap_or(now)
}

/// A burn-rate rule's outcome at `now`: the long window's burn rate as the value, breaching
/// when both windows burn faster than the factor, no data when the long window counted no
/// events.
pub fn evaluate(
    rule: &Rule,
    burn: &Burn,
    total: &[(DateTime<Utc>, f64)],
    counted: &[(DateTime<Utc>, f64)],
    now: DateTime<Utc>,
) -> Outcome {
    // A window of one period always holds the newest complete one, whatever second the run
    // starts at.
    let end = window_end(rule, now);
    let budget = 1.0 - burn.objective;
    let rate = |window: Span| {
        bad_share(burn, total, counted, end - window.signed(), end).map(|s| s / budget)
    };
    let Some(long) = rate(burn.windows.long) else {
        return Outcome::NoData;
    };
    let at = total
        .iter()
        .filter(|(t, _)| *t < end)
        .map(|(t, _)| *t)
        .max()
        .unwrap_or(now);
    let short = rate(burn.windows.short).unwrap_or(0.0);
    let value = (long * 100.0).round() / 100.0;
    if long > burn.windows.factor && short > burn.windows.factor {
        Outcome::Breaching { value, at }
    } else {
        Outcome::Ok { value, at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn slo(extra: &str) -> Slo {
        let yaml = format!(
            "name: CheckoutAvailability\nobjective: 99.9\ntotal: {{namespace: Shop, name: requests}}\nerrors: {{namespace: Shop, name: errors}}\nlabels: {{team: checkout}}\n{extra}"
        );
        serde_saphyr::from_str(&yaml).expect("slo")
    }

    #[test]
    fn an_objective_becomes_the_workbooks_four_alerts() {
        let rules = compile("r.yaml", &slo("")).expect("valid");
        let names: Vec<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
        assert_eq!(
            names,
            [
                "CheckoutAvailabilityBurnRate1h",
                "CheckoutAvailabilityBurnRate6h",
                "CheckoutAvailabilityBurnRate1d",
                "CheckoutAvailabilityBurnRate3d"
            ]
        );
        let severities: Vec<&str> = rules
            .iter()
            .map(|r| r.labels["severity"].as_str())
            .collect();
        assert_eq!(severities, ["page", "page", "ticket", "ticket"]);
        let factors: Vec<f64> = rules.iter().map(|r| r.condition.threshold).collect();
        assert_eq!(factors, [14.4, 6.0, 3.0, 1.0]);
        assert_eq!(rules[0].lookback(), Span(3_600));
        assert_eq!(rules[0].labels["slo"], "CheckoutAvailability");
        assert_eq!(rules[0].labels["team"], "checkout");
        let summary = &rules[0].annotations["summary"];
        assert!(
            summary.contains("2 % of the budget gone in 1h"),
            "{summary}"
        );
    }

    #[test]
    fn invalid_objectives_say_what_is_wrong() {
        let cases = [
            ("objective: 100\n", "objective"),
            (
                "good: {namespace: Shop, name: ok}\n",
                "either errors or good",
            ),
            (
                "page: [{factor: 14.4, long: 5m, short: 1h}]\n",
                "shorter than the long",
            ),
            (
                "window: 7d\nticket: [{factor: 1, long: 10d, short: 6h}]\n",
                "longer than the objective",
            ),
            ("period: 30s\n", "period"),
            ("window: 500d\n", "keeps hourly data"),
            (
                "page: [{factor: 14.4, long: 1h, short: 5m}, {factor: 6, long: 1h, short: 30m}]\n",
                "its own",
            ),
            (
                "ticket: [{factor: 1, long: 20d, short: 6h}]\n",
                "CloudWatch keeps",
            ),
            (
                "period: 5m\npage: [{factor: 14.4, long: 1h, short: 7m}]\n",
                "whole periods",
            ),
        ];
        for (extra, want) in cases {
            let mut s = slo("");
            let text = format!(
                "name: CheckoutAvailability\ntotal: {{namespace: Shop, name: requests}}\nerrors: {{namespace: Shop, name: errors}}\n{}{extra}",
                if extra.starts_with("objective") {
                    ""
                } else {
                    "objective: 99.9\n"
                }
            );
            s = serde_saphyr::from_str(&text).unwrap_or(s);
            let err = compile("r.yaml", &s).expect_err(extra);
            assert!(err.contains(want), "{extra}: {err}");
        }
        let mut per_series = slo("");
        per_series
            .total
            .as_mut()
            .expect("total")
            .dimensions
            .insert("service".into(), "*".into());
        let err = compile("r.yaml", &per_series).expect_err("*");
        assert!(err.contains("one series"), "{err}");
    }

    fn minutes(now: DateTime<Utc>, n: i64, value: f64) -> Vec<(DateTime<Utc>, f64)> {
        (1..=n)
            .map(|m| (now - Duration::minutes(m), value))
            .collect()
    }

    #[test]
    fn both_windows_must_burn_faster_than_the_factor() {
        let rules = compile("r.yaml", &slo("")).expect("valid");
        let (rule, burn) = (&rules[0], rules[0].burn.as_ref().expect("burn"));
        let now: DateTime<Utc> = "2026-11-02T12:00:00Z".parse().expect("time");
        let total = minutes(now, 60, 1_000.0);
        // 2 % errors for the whole hour: 20× the 0.1 % budget, in both windows.
        let steady = minutes(now, 60, 20.0);
        match evaluate(rule, burn, &total, &steady, now) {
            Outcome::Breaching { value, .. } => assert_eq!(value, 20.0),
            other => panic!("{other:?}"),
        }
        // The same errors, but over for the last 10 minutes: the hour still burns 16.7×, the
        // last 5 minutes not at all, so the alert resolves.
        let over: Vec<_> = steady
            .iter()
            .copied()
            .filter(|(t, _)| *t < now - Duration::minutes(10))
            .collect();
        match evaluate(rule, burn, &total, &over, now) {
            Outcome::Ok { value, .. } => assert!((value - 16.67).abs() < 0.01, "{value}"),
            other => panic!("{other:?}"),
        }
        // 10 % errors in the last 5 minutes alone: the hour has spent 8.3× its share, not
        // enough yet to page.
        let burst = minutes(now, 5, 100.0);
        assert!(matches!(
            evaluate(rule, burn, &total, &burst, now),
            Outcome::Ok { .. }
        ));
        assert_eq!(evaluate(rule, burn, &[], &steady, now), Outcome::NoData);
    }

    #[test]
    fn windows_hold_whole_periods_whatever_the_second_and_ignore_a_lagging_count() {
        let s = Slo {
            period: Span(300),
            page: Some(vec![Windows {
                factor: 14.4,
                long: Span(3_600),
                short: Span(300),
            }]),
            ticket: Some(vec![]),
            ..slo("")
        };
        let rules = compile("r.yaml", &s).expect("valid");
        let (rule, burn) = (&rules[0], rules[0].burn.as_ref().expect("burn"));
        let at: DateTime<Utc> = "2026-11-02T12:00:00Z".parse().expect("time");
        let five = |n: i64, v: f64| -> Vec<(DateTime<Utc>, f64)> {
            (1..=n)
                .map(|k| (at - Duration::minutes(5 * k), v))
                .collect()
        };
        let (total, errors) = (five(12, 5_000.0), five(12, 100.0));
        for second in [0, 60, 61, 299] {
            let now = at + Duration::seconds(second);
            assert!(
                matches!(
                    evaluate(rule, burn, &total, &errors, now),
                    Outcome::Breaching { .. }
                ),
                "at +{second}s the 5-minute window holds the newest period"
            );
        }
        // Errors reported for a period with no total yet count for nothing.
        let mut early = errors.clone();
        early.push((at, 5_000.0));
        let later = at + Duration::minutes(5);
        assert_eq!(
            evaluate(rule, burn, &total, &early, later),
            evaluate(rule, burn, &total, &errors, later),
        );
    }

    #[test]
    fn an_error_ratio_burns_its_average_each_period_weighing_the_same() {
        let ratio = |unit: &str| -> Slo {
            serde_saphyr::from_str(&format!(
                "name: Checkout\nobjective: 99.9\nerror_ratio: {{namespace: Prom, name: 'job:errors:ratio_rate1m', unit: {unit}}}\n"
            ))
            .expect("slo")
        };
        let now: DateTime<Utc> = "2026-11-02T12:00:00Z".parse().expect("time");
        for (unit, scale) in [("fraction", 1.0), ("percent", 100.0)] {
            let rules = compile("r.yaml", &ratio(unit)).expect("valid");
            let (rule, burn) = (&rules[0], rules[0].burn.as_ref().expect("burn"));
            assert!(rule.inputs.is_empty(), "one series");
            assert_eq!(rule.metric.stat, "Average");
            assert_eq!(
                burn.counted,
                Counted::Ratio {
                    percent: unit == "percent"
                }
            );
            // 3 % for the whole hour burns 30x; 3 % for the last 30 minutes (0 before) 15x.
            let all = minutes(now, 60, 0.03 * scale);
            match evaluate(rule, burn, &all, &[], now) {
                Outcome::Breaching { value, .. } => assert_eq!(value, 30.0, "{unit}"),
                other => panic!("{unit}: {other:?}"),
            }
            let mut half = minutes(now, 30, 0.03 * scale);
            half.extend((31..=60).map(|m| (now - Duration::minutes(m), 0.0)));
            match evaluate(rule, burn, &half, &[], now) {
                Outcome::Breaching { value, .. } => assert_eq!(value, 15.0, "{unit}"),
                other => panic!("{unit}: {other:?}"),
            }
            // A ratio above 100 % (a bad recording) counts as every event bad, no more.
            let wild = minutes(now, 60, 7.0 * scale);
            assert!(matches!(
                evaluate(rule, burn, &wild, &[], now),
                Outcome::Breaching { value, .. } if value == 1_000.0
            ));
        }
        for (yaml, want) in [
            (
                "name: C\nobjective: 99\ntotal: {namespace: S, name: r}\nerror_ratio: {namespace: S, name: e}\n",
                "error_ratio alone",
            ),
            (
                "name: C\nobjective: 99\nerror_ratio: {namespace: S, name: e, stat: Sum}\n",
                "averaged per period",
            ),
            (
                "name: C\nobjective: 99\nerrors: {namespace: S, name: e}\n",
                "total with",
            ),
        ] {
            let s: Slo = serde_saphyr::from_str(yaml).expect("slo");
            let err = compile("r.yaml", &s).expect_err(yaml);
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn good_events_count_the_complement() {
        let s = Slo {
            errors: None,
            good: Some(Events {
                namespace: "Shop".into(),
                name: "ok".into(),
                dimensions: BTreeMap::new(),
                stat: "Sum".into(),
            }),
            ..slo("")
        };
        let rules = compile("r.yaml", &s).expect("valid");
        let (rule, burn) = (&rules[0], rules[0].burn.as_ref().expect("burn"));
        let now: DateTime<Utc> = "2026-11-02T12:00:00Z".parse().expect("time");
        let total = minutes(now, 60, 1_000.0);
        let good = minutes(now, 60, 980.0);
        assert!(matches!(
            evaluate(rule, burn, &total, &good, now),
            Outcome::Breaching { .. }
        ));
        // A point still filling up (this minute) is not counted.
        let mut partial = total.clone();
        partial.push((now, 5.0));
        let mut good_partial = good.clone();
        good_partial.push((now, 0.0));
        assert_eq!(
            evaluate(rule, burn, &partial, &good_partial, now),
            evaluate(rule, burn, &total, &good, now)
        );
        // A total whose good count has not arrived is left out, not read as all bad.
        let ok = minutes(now, 60, 1_000.0);
        let mut lagging = ok.clone();
        lagging.remove(0);
        assert!(matches!(
            evaluate(rule, burn, &total, &lagging, now),
            Outcome::Ok { value, .. } if value == 0.0
        ));
    }
}
