//! The backtest scored against the team's incidents, per rule and overall:
//! - **precision**: of the pages (messages with a firing alert; a grouped message once), the
//!   share sent inside an incident the alert concerns (its labels carry the incident's);
//! - **recall**: of the incidents, the share with such a page; per rule, of the incidents the
//!   rule could have paged for (its labels, or a `*` dimension, can carry the incident's);
//! - **time to detect**: from an incident's start to its first page (median and worst);
//! - **pages per week**, **night pages** (in the quiet hours, in the team's time zone), and
//!   **short episodes** (resolved within 10 minutes: the likely noise);
//! - beside each, the coin flip ([`crate::coin`]) with as many pages.
//!
//! A page counts for an incident from `margin` before its start (an alert that saw it coming)
//! to its end.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use vigil_alert::Rule;

use crate::backtest::{RuleReport, human};
use crate::coin::{Baseline, coin_flip, median, within};
use crate::incidents::Incident;
use crate::sent::Message;
use crate::style::Style;

pub use vigil_alert::quiet::QuietHours;

/// How a backtest is scored.
#[derive(Clone, Debug)]
pub struct Scoring {
    pub quiet: QuietHours,
    pub margin: Duration,
    pub draws: usize,
    pub seed: u64,
}

/// One set of pages scored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    pub pages: usize,
    pub pages_in_incidents: usize,
    pub precision: Option<f64>,
    pub incidents: usize,
    pub incidents_paged: usize,
    pub recall: Option<f64>,
    pub detect_median_seconds: Option<i64>,
    pub detect_max_seconds: Option<i64>,
    pub pages_per_week: f64,
    pub night_pages: usize,
    pub short_episodes: usize,
    pub coin_flip: Baseline,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleScore {
    pub alert: String,
    #[serde(flatten)]
    pub score: Score,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    pub quiet_hours: String,
    pub time_zone: String,
    pub margin_seconds: i64,
    pub overall: Score,
    pub rules: Vec<RuleScore>,
    /// Incidents no page was sent for.
    pub missed: Vec<String>,
    /// Incidents no rule's labels can carry (with their labels): a label column of the
    /// export that no rule sets (`status=closed`) makes an incident one nothing can page for.
    pub unpageable: Vec<String>,
}

/// Whether `rule` could page for `incident`: each of the incident's labels is the rule's
/// own, its `alertname`, or one of its `*` dimensions (any value).
pub fn could_page(rule: &Rule, incident: &Incident) -> bool {
    incident.labels.iter().all(|(k, v)| {
        rule.labels.get(k) == Some(v)
            || (k == "alertname" && *v == rule.alert)
            || rule.metric.dimensions.get(k).is_some_and(|d| d == "*")
    })
}

/// Pages and their firing alerts' labels, for one rule or (`None`) all.
struct Page<'a> {
    at: DateTime<Utc>,
    labels: Vec<&'a BTreeMap<String, String>>,
}

/// The pages of the alerts `wanted` names: a rule's own, never the policy's Watchdog or an
/// undeliverable notice, which page nobody about an incident.
fn pages<'a>(messages: &'a [Message], wanted: impl Fn(&str) -> bool) -> Vec<Page<'a>> {
    messages
        .iter()
        .filter_map(|m| {
            let labels: Vec<&BTreeMap<String, String>> = m
                .firing(None)
                .filter(|a| wanted(&a.alertname))
                .map(|a| &a.labels)
                .collect();
            (!labels.is_empty()).then_some(Page { at: m.at, labels })
        })
        .collect()
}

/// Whether a page counts for an incident: in its window, with an alert that concerns it.
fn counts(page: &Page<'_>, incident: &Incident, margin: Duration) -> bool {
    within(incident, page.at, margin) && page.labels.iter().any(|l| incident.concerns(l))
}

#[allow(clippy::too_many_arguments)]
fn score(
    pages: &[Page<'_>],
    incidents: &[&Incident],
    short_episodes: usize,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    scoring: &Scoring,
    missed: Option<&mut Vec<String>>,
) -> Score {
    let inside = pages
        .iter()
        .filter(|p| incidents.iter().any(|i| counts(p, i, scoring.margin)))
        .count();
    let mut delays = Vec::new();
    let mut not_paged = Vec::new();
    for i in incidents {
        match pages.iter().find(|p| counts(p, i, scoring.margin)) {
            // From when the replay could see it: an incident under way at the range's start
            // is not charged for the time before it.
            Some(p) => delays.push((p.at - i.start.max(since)).num_seconds().max(0)),
            None => not_paged.push(i.id.clone()),
        }
    }
    if let Some(missed) = missed {
        *missed = not_paged;
    }
    let weeks = (until - since).num_seconds() as f64 / (7.0 * 86_400.0);
    let paged = delays.len();
    Score {
        pages: pages.len(),
        pages_in_incidents: inside,
        precision: (!pages.is_empty()).then(|| inside as f64 / pages.len() as f64),
        incidents: incidents.len(),
        incidents_paged: paged,
        recall: (!incidents.is_empty()).then(|| paged as f64 / incidents.len() as f64),
        detect_max_seconds: delays.iter().copied().max(),
        detect_median_seconds: median(&mut delays),
        pages_per_week: if weeks > 0.0 {
            pages.len() as f64 / weeks
        } else {
            0.0
        },
        night_pages: pages
            .iter()
            .filter(|p| scoring.quiet.contains(p.at))
            .count(),
        short_episodes,
        coin_flip: coin_flip(
            pages.len(),
            incidents,
            since,
            until,
            scoring.margin,
            scoring.draws,
            scoring.seed,
        ),
    }
}

/// Scores the replay's messages, per rule (in the rules' order) and overall.
pub fn score_backtest(
    rules: &[Rule],
    reports: &[RuleReport],
    messages: &[Message],
    incidents: &[Incident],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    scoring: &Scoring,
) -> Scored {
    let in_range: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.end >= since && i.start <= until)
        .collect();
    let short = |alert: &str| {
        reports
            .iter()
            .find(|r| r.alert == alert)
            .map_or(0, |r| r.short_episodes)
    };
    let per_rule = rules
        .iter()
        .map(|rule| {
            let relevant: Vec<&Incident> = in_range
                .iter()
                .copied()
                .filter(|i| could_page(rule, i))
                .collect();
            RuleScore {
                alert: rule.alert.clone(),
                score: score(
                    &pages(messages, |name| name == rule.alert),
                    &relevant,
                    short(&rule.alert),
                    since,
                    until,
                    scoring,
                    None,
                ),
            }
        })
        .collect();
    let mut missed = Vec::new();
    let overall = score(
        &pages(messages, |name| rules.iter().any(|r| r.alert == name)),
        &in_range,
        reports.iter().map(|r| r.short_episodes).sum(),
        since,
        until,
        scoring,
        Some(&mut missed),
    );
    Scored {
        quiet_hours: format!(
            "{}-{}",
            scoring.quiet.from.format("%H:%M"),
            scoring.quiet.to.format("%H:%M")
        ),
        time_zone: scoring.quiet.tz.name().to_owned(),
        margin_seconds: scoring.margin.num_seconds(),
        overall,
        rules: per_rule,
        missed,
        unpageable: in_range
            .iter()
            .filter(|i| !rules.iter().any(|r| could_page(r, i)))
            .map(|i| {
                let labels: Vec<String> =
                    i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} ({})", i.id, labels.join(", "))
            })
            .collect(),
    }
}

fn share(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn detect(score: &Score) -> String {
    match (score.detect_median_seconds, score.detect_max_seconds) {
        (Some(m), Some(w)) => format!("{} / {}", human(m), human(w)),
        _ => "-".to_owned(),
    }
}

/// The score as a table: overall first, then each rule, then the incidents nothing paged for.
pub fn render(scored: &Scored, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} against {} incidents (quiet hours {} {}, margin {}; coin flip: {} draws, seed {})",
        style.bold("score"),
        scored.overall.incidents,
        scored.quiet_hours,
        scored.time_zone,
        human(scored.margin_seconds),
        scored.overall.coin_flip.draws,
        scored.overall.coin_flip.seed
    );
    let width = scored
        .rules
        .iter()
        .map(|r| r.alert.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        out,
        "{:<width$}  {:>5}  {:>6}  {:>9}  {:>5}  {:>9}  {:>6}  {:>5}  {:>15}  {:>10}  {:>5}  {:>5}",
        "",
        "pages",
        "inside",
        "precision",
        "coin",
        "incidents",
        "recall",
        "coin",
        "detect (med/max)",
        "pages/week",
        "night",
        "short"
    );
    let rows = std::iter::once(("overall", &scored.overall))
        .chain(scored.rules.iter().map(|r| (r.alert.as_str(), &r.score)));
    for (name, s) in rows {
        let better = match (s.precision, s.coin_flip.precision) {
            (Some(p), Some(c)) if p > c => style.ok(&format!("{:>9}", share(s.precision))),
            (Some(_), Some(_)) => style.warn(&format!("{:>9}", share(s.precision))),
            _ => format!("{:>9}", share(s.precision)),
        };
        let _ = writeln!(
            out,
            "{name:<width$}  {:>5}  {:>6}  {better}  {:>5}  {:>9}  {:>6}  {:>5}  {:>15}  {:>10.1}  {:>5}  {:>5}",
            s.pages,
            s.pages_in_incidents,
            share(s.coin_flip.precision),
            format!("{}/{}", s.incidents_paged, s.incidents),
            share(s.recall),
            share(s.coin_flip.recall),
            detect(s),
            s.pages_per_week,
            s.night_pages,
            s.short_episodes
        );
    }
    if !scored.missed.is_empty() {
        let _ = writeln!(out, "not paged: {}", scored.missed.join(", "));
    }
    if !scored.unpageable.is_empty() {
        let _ = writeln!(
            out,
            "{}: no rule's labels can carry these incidents' labels: {}",
            style.warn("warning"),
            scored.unpageable.join("; ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sent::SentAlert;
    use vigil_alert::state::Status;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn message(at: &str, alerts: &[(&str, Status, &str)]) -> Message {
        Message {
            at: t(at),
            topic: "arn:t".into(),
            status: alerts[0].1,
            group: BTreeMap::new(),
            alerts: alerts
                .iter()
                .map(|(name, status, service)| SentAlert {
                    alertname: (*name).into(),
                    status: *status,
                    labels: labels(&[("alertname", name), ("service", service)]),
                })
                .collect(),
            parts: 1,
        }
    }

    fn rules() -> Vec<Rule> {
        vigil_alert::load(
            "r.yaml",
            r#"
groups:
  - name: g
    rules:
      - alert: CheckoutSlow
        metric: {namespace: S, name: latency, dimensions: {service: checkout}, stat: Average, period: 1m}
        condition: {operator: ">", threshold: 1}
        labels: {service: checkout}
      - alert: AnyErrors
        metric: {namespace: S, name: errors, dimensions: {service: "*"}, stat: Sum, period: 1m}
        condition: {operator: ">", threshold: 1}
"#,
        )
        .expect("rules")
    }

    fn incident(id: &str, start: &str, end: &str, service: &str) -> Incident {
        Incident {
            id: id.into(),
            title: String::new(),
            start: t(start),
            end: t(end),
            labels: labels(&[("service", service)]),
        }
    }

    fn scoring() -> Scoring {
        Scoring {
            quiet: QuietHours::parse("22:00-07:00", "Europe/Berlin").expect("quiet"),
            margin: Duration::zero(),
            draws: 200,
            seed: 1,
        }
    }

    #[test]
    fn pages_are_scored_per_rule_and_once_overall() {
        use Status::{Firing, Resolved};
        let incidents = [
            incident(
                "INC-1",
                "2026-11-02T10:00:00Z",
                "2026-11-02T11:00:00Z",
                "checkout",
            ),
            incident(
                "INC-2",
                "2026-11-03T10:00:00Z",
                "2026-11-03T11:00:00Z",
                "search",
            ),
        ];
        let messages = [
            // Both rules in one grouped message, 5 minutes into INC-1: one page overall.
            message(
                "2026-11-02T10:05:00Z",
                &[
                    ("CheckoutSlow", Firing, "checkout"),
                    ("AnyErrors", Firing, "checkout"),
                ],
            ),
            message(
                "2026-11-02T10:40:00Z",
                &[("CheckoutSlow", Resolved, "checkout")],
            ),
            // At night in Berlin (02:00 CET), outside any incident.
            message(
                "2026-11-04T01:00:00Z",
                &[("CheckoutSlow", Firing, "checkout")],
            ),
            // Inside INC-2's window, about another service: it does not count for INC-2.
            message("2026-11-03T10:10:00Z", &[("AnyErrors", Firing, "payments")]),
            // The policy's Watchdog, always firing, even with the incident's labels: no page.
            message("2026-11-03T10:20:00Z", &[("Watchdog", Firing, "search")]),
        ];
        let since = t("2026-11-02T00:00:00Z");
        let until = since + Duration::days(7);
        let got = score_backtest(
            &rules(),
            &[],
            &messages,
            &incidents,
            since,
            until,
            &scoring(),
        );
        let all = &got.overall;
        assert_eq!((all.pages, all.pages_in_incidents), (3, 1));
        assert_eq!((all.incidents, all.incidents_paged), (2, 1));
        assert_eq!(all.precision, Some(1.0 / 3.0));
        assert_eq!(all.recall, Some(0.5));
        assert_eq!(all.detect_median_seconds, Some(300));
        assert_eq!(all.night_pages, 1);
        assert!((all.pages_per_week - 3.0).abs() < 1e-9);
        assert_eq!(got.missed, ["INC-2"]);

        let slow = &got.rules[0].score;
        assert_eq!((slow.pages, slow.pages_in_incidents), (2, 1));
        assert_eq!(
            slow.incidents, 1,
            "CheckoutSlow could page only for checkout"
        );
        assert_eq!(slow.recall, Some(1.0));
        let any = &got.rules[1].score;
        assert_eq!(any.incidents, 2, "a `*` service rule could page for either");
        assert_eq!((any.pages, any.incidents_paged), (2, 1));
        assert_eq!(
            any.coin_flip.pages, 2,
            "the coin flips as often as the rule"
        );

        let text = render(&got, Style { color: false });
        let overall = text
            .lines()
            .find(|l| l.starts_with("overall"))
            .expect("overall row");
        let cells: Vec<&str> = overall.split_whitespace().collect();
        assert_eq!(cells[1..4], ["3", "1", "0.33"], "{overall}");
        assert!(
            overall.contains("1/2") && overall.contains("5m / 5m"),
            "{overall}"
        );
        assert!(text.contains("not paged: INC-2"), "{text}");
        assert!(got.unpageable.is_empty(), "{:?}", got.unpageable);
    }

    #[test]
    fn an_incident_no_rule_can_page_for_is_named_and_one_under_way_is_timed_from_the_start() {
        let mut closed = incident(
            "INC-9",
            "2026-11-01T23:00:00Z",
            "2026-11-02T01:00:00Z",
            "checkout",
        );
        let since = t("2026-11-02T00:00:00Z");
        let messages = [message(
            "2026-11-02T00:03:00Z",
            &[("CheckoutSlow", Status::Firing, "checkout")],
        )];
        let until = since + Duration::days(1);
        let got = score_backtest(
            &rules(),
            &[],
            &messages,
            &[closed.clone()],
            since,
            until,
            &scoring(),
        );
        assert_eq!(
            got.overall.detect_median_seconds,
            Some(180),
            "timed from the range's start, not the incident's"
        );
        closed.labels.insert("status".into(), "closed".into());
        let got = score_backtest(
            &rules(),
            &[],
            &messages,
            &[closed],
            since,
            until,
            &scoring(),
        );
        assert_eq!(got.unpageable, ["INC-9 (service=checkout, status=closed)"]);
        assert_eq!(got.overall.incidents_paged, 0);
        assert!(render(&got, Style { color: false }).contains("no rule's labels can carry"));
    }

    #[test]
    fn the_margin_lets_an_early_page_count() {
        let incidents = [incident(
            "INC-1",
            "2026-11-02T10:00:00Z",
            "2026-11-02T11:00:00Z",
            "checkout",
        )];
        let messages = [message(
            "2026-11-02T09:58:00Z",
            &[("CheckoutSlow", Status::Firing, "checkout")],
        )];
        let since = t("2026-11-02T00:00:00Z");
        let until = since + Duration::days(1);
        let strict = score_backtest(
            &rules(),
            &[],
            &messages,
            &incidents,
            since,
            until,
            &scoring(),
        );
        assert_eq!(strict.overall.incidents_paged, 0);
        let lenient = Scoring {
            margin: Duration::minutes(5),
            ..scoring()
        };
        let got = score_backtest(&rules(), &[], &messages, &incidents, since, until, &lenient);
        assert_eq!(got.overall.incidents_paged, 1);
        assert_eq!(
            got.overall.detect_median_seconds,
            Some(0),
            "early is no delay"
        );
    }
}
