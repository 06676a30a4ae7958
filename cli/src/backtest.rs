//! `vigil rules backtest`: the rules replayed over CloudWatch history. The history is read
//! once (the queries the function would make, over the whole range), then the function's own
//! evaluation runs at every scheduled time in memory ([`crate::sim::replay`]). The answer to
//! "would this rule have woken us up for nothing?", before it pages anyone.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use vigil_alert::Rule;
use vigil_shared::Result;
use vigil_shared::math::local::parts;
use vigil_shared::math::{LocalMath, MathMode};
use vigil_shared::reader::{MetricReader, Series, StatQuery};

use crate::incidents::Incident;
use crate::sent::Message;
use crate::sim::{Episode, Replay, ReplayReader, SeriesKey};

/// `1h 5m`-style text of a number of seconds, as the alert function's messages write it.
pub use vigil_alert::message::human;

/// The history of every series the rules watch, as the function's queries return it.
pub struct History {
    pub reader: ReplayReader,
    /// Per query: the rule's name, the series' `*` dimensions, the query.
    pub queries: Vec<(String, BTreeMap<String, String>, StatQuery)>,
    pub get_metric_data_calls: usize,
}

/// Reads the history the replay needs from `source` (CloudWatch): the series of every rule
/// (`*` dimensions listed once, as of now) from the earliest look-back before `since` to `until`.
pub async fn fetch_history(
    source: &impl MetricReader,
    rules: &[Rule],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<History> {
    let targets = vigil_alert::targets(source, rules).await?;
    let queries: Vec<(String, BTreeMap<String, String>, StatQuery)> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                t.rule.alert.clone(),
                t.series.clone(),
                vigil_alert::query_for_series(t.rule, t.dimensions.clone(), i),
            )
        })
        .collect();
    // A rule with metric math is read as the plain statistics its expression names, and the
    // replay evaluates the expression over them at each run, as the function's local mode
    // does: the same history serves every run's window, and an emulator with no metric math
    // serves it too.
    let stat_queries: Vec<StatQuery> = queries
        .iter()
        .flat_map(|(_, _, q)| match q.math {
            None => vec![q.clone()],
            Some(_) => parts(q).into_iter().map(|(_, p)| p).collect(),
        })
        .collect();
    let start = vigil_alert::read_start(rules, since);
    let fetched = source.fetch(&stat_queries, start, until).await?;
    let mut reader = ReplayReader::default();
    for q in &stat_queries {
        let points = fetched.series.get(&q.id).cloned().unwrap_or_default();
        reader.set(SeriesKey::of(q), points);
    }
    // An objective's budget left is read by the hour over its whole window, as the function
    // reads it: the hours from the first run's window to the last.
    let mut calls = fetched.calls;
    for (t, (_, _, q)) in targets.iter().zip(&queries) {
        let Some(burn) = &t.rule.burn else {
            continue;
        };
        let (from, _) = vigil_alert::budget::hours(burn, since);
        let hourly =
            vigil_alert::budget::hourly(&parts(q).into_iter().map(|(_, p)| p).collect::<Vec<_>>());
        if hourly.iter().all(|h| reader.has(&SeriesKey::of(h))) {
            continue;
        }
        let got = source.fetch(&hourly, from, until).await?;
        calls += got.calls;
        for h in &hourly {
            let points = got.series.get(&h.id).cloned().unwrap_or_default();
            reader.set(SeriesKey::of(h), points);
        }
    }
    Ok(History {
        reader,
        queries,
        get_metric_data_calls: calls,
    })
}

/// The series one query of the history compares over `since..until`, for its plot: its
/// statistic, or its expression evaluated over the statistics it names across the whole
/// range (each run evaluated it over its own window: the same values but for reductions such
/// as `AVG(m)` and a window's first `RATE`/`DIFF` point).
pub async fn compared(
    history: &History,
    query: &StatQuery,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Series> {
    let reader = LocalMath::new(&history.reader, MathMode::Local);
    let mut fetched = reader
        .fetch(std::slice::from_ref(query), since, until)
        .await?;
    Ok(fetched.series.remove(&query.id).unwrap_or_default())
}

/// A burn-rate rule's burn rate at each of `times`, for its plot: the value each run compared.
pub async fn burn_rates(
    history: &History,
    rule: &Rule,
    query: &StatQuery,
    times: &[DateTime<Utc>],
) -> Result<Series> {
    let Some(burn) = &rule.burn else {
        return Ok(Vec::new());
    };
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return Ok(Vec::new());
    };
    let parts = parts(query);
    let queries: Vec<StatQuery> = parts.iter().map(|(_, p)| p.clone()).collect();
    let start = vigil_alert::read_start(std::slice::from_ref(rule), *first);
    let mut fetched = history
        .reader
        .fetch(&queries, start, *last + Duration::seconds(1))
        .await?;
    let mut take = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, p)| fetched.series.remove(&p.id))
            .unwrap_or_default()
    };
    let total = take("m");
    let counted = take(vigil_alert::slo::COUNTED_INPUT);
    let window = |s: &Series, t: DateTime<Utc>| {
        let from = t - Duration::seconds(burn.windows.long.seconds() as i64);
        let lo = s.partition_point(|(p, _)| *p < from);
        let hi = s.partition_point(|(p, _)| *p < t);
        s[lo..hi.max(lo)].to_vec()
    };
    Ok(times
        .iter()
        .filter_map(|&t| {
            match vigil_alert::slo::evaluate(
                rule,
                burn,
                &window(&total, t),
                &window(&counted, t),
                t,
            ) {
                vigil_alert::Outcome::Breaching { value, .. }
                | vigil_alert::Outcome::Ok { value, .. } => Some((t, value)),
                _ => None,
            }
        })
        .collect())
}

/// The scheduled times from `since` to `until`, every `every`, on whole multiples of it (as
/// EventBridge fires `rate(1 minute)` on the minute).
pub fn schedule(since: DateTime<Utc>, until: DateTime<Utc>, every: Duration) -> Vec<DateTime<Utc>> {
    let step = every.num_seconds().max(1);
    let first = since.timestamp().div_euclid(step) * step
        + if since.timestamp().rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    let mut out = Vec::new();
    let mut t = first;
    while t <= until.timestamp() {
        if let Some(at) = DateTime::from_timestamp(t, 0) {
            out.push(at);
        }
        t += step;
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpisodeReport {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, String>,
    pub start: String,
    /// `None`: still firing at the end of the range.
    pub end: Option<String>,
    pub duration_seconds: i64,
}

/// What one rule would have done over the range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleReport {
    pub alert: String,
    /// Messages it would have sent (firing, resolved and repeats; a grouped message counts
    /// once for each rule in it, however many SNS parts carried it).
    pub notifications: usize,
    pub episodes: Vec<EpisodeReport>,
    pub firing_seconds: i64,
    pub longest_seconds: i64,
    /// Episodes that resolved within 10 minutes: the ones most likely to be noise.
    pub short_episodes: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub since: String,
    pub until: String,
    pub every_seconds: i64,
    pub evaluations: usize,
    pub get_metric_data_calls: usize,
    pub rules: Vec<RuleReport>,
}

/// An episode shorter than this is counted as short.
pub const SHORT: Duration = Duration::minutes(10);

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Per rule, in the rules' order: notifications, episodes and their durations.
// What the replay did and over which range, each input a different thing the report draws on.
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    rules: &[Rule],
    replay: &Replay,
    messages: &[Message],
    episodes: &[Episode],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    every: Duration,
    calls: usize,
) -> Report {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let mine: Vec<&Episode> = episodes.iter().filter(|e| e.alert == rule.alert).collect();
        let durations: Vec<i64> = mine
            .iter()
            .map(|e| e.duration(until).num_seconds())
            .collect();
        let notifications = messages
            .iter()
            .filter(|m| m.alerts.iter().any(|a| a.alertname == rule.alert))
            .count();
        out.push(RuleReport {
            alert: rule.alert.clone(),
            notifications,
            episodes: mine
                .iter()
                .zip(&durations)
                .map(|(e, d)| EpisodeReport {
                    series: e.series.clone(),
                    start: stamp(e.start),
                    end: e.end.map(stamp),
                    duration_seconds: *d,
                })
                .collect(),
            firing_seconds: durations.iter().sum(),
            longest_seconds: durations.iter().copied().max().unwrap_or(0),
            short_episodes: mine
                .iter()
                .filter(|e| e.end.is_some_and(|end| end - e.start < SHORT))
                .count(),
        });
    }
    Report {
        since: stamp(since),
        until: stamp(until),
        every_seconds: every.num_seconds(),
        evaluations: replay.runs.len(),
        get_metric_data_calls: calls,
        rules: out,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG plot of one series over the range: the values as a line, the threshold as a dashed
/// line, each firing episode as a red band over the plot, and each incident it concerns as a
/// grey band along the top, so that a page outside every incident stands out.
pub fn plot(
    title: &str,
    points: &Series,
    threshold: f64,
    episodes: &[&Episode],
    incidents: &[&Incident],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> String {
    const W: f64 = 960.0;
    const H: f64 = 320.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 40.0;
    let shown: Vec<(DateTime<Utc>, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| *t >= since && *t <= until && v.is_finite())
        .collect();
    let (mut lo, mut hi) = shown
        .iter()
        .fold((threshold, threshold), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    if (hi - lo).abs() < f64::EPSILON {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let span = (until - since).num_seconds().max(1) as f64;
    let x = |t: DateTime<Utc>| LEFT + (t - since).num_seconds() as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="14">{}</text>"#,
        escape(title)
    );
    for e in episodes {
        let (x0, x1) = (x(e.start.max(since)), x(e.end.unwrap_or(until).min(until)));
        let _ = writeln!(
            svg,
            r##"<rect class="episode" x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#d62728" fill-opacity="0.18"/>"##,
            (x1 - x0).max(1.0),
            H - TOP - BOTTOM
        );
    }
    for i in incidents {
        if i.end < since || i.start > until {
            continue;
        }
        let (x0, x1) = (x(i.start.max(since)), x(i.end.min(until)));
        let _ = writeln!(
            svg,
            r##"<rect class="incident" x="{x0:.1}" y="{0:.1}" width="{1:.1}" height="10" fill="#555" fill-opacity="0.55"><title>{2}</title></rect>"##,
            TOP - 12.0,
            (x1 - x0).max(1.0),
            escape(&if i.title.is_empty() {
                i.id.clone()
            } else {
                format!("{}: {}", i.id, i.title)
            })
        );
    }
    let _ = writeln!(
        svg,
        r##"<line class="threshold" x1="{LEFT}" x2="{0:.1}" y1="{1:.1}" y2="{1:.1}" stroke="#d62728" stroke-dasharray="6 4"/>"##,
        W - RIGHT,
        y(threshold)
    );
    if !shown.is_empty() {
        let path: Vec<String> = shown
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline class="series" fill="none" stroke="#1f77b4" stroke-width="1.2" points="{}"/>"##,
            path.join(" ")
        );
    }
    // Axes: the value range on the left, the time range below.
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{0}" stroke="#333"/><line x1="{LEFT}" x2="{1}" y1="{0}" y2="{0}" stroke="#333"/>"##,
        H - BOTTOM,
        W - RIGHT
    );
    for v in [hi - pad, threshold, lo + pad] {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0,
            trim_number(v)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        H - 14.0,
        stamp(since),
        W - RIGHT,
        H - 14.0,
        stamp(until)
    );
    svg.push_str("</svg>\n");
    svg
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    /// An objective backtested: its history is read as its two plain series, the replay pages
    /// on the half hour of 3 % errors and resolves after it, and its plot is the burn rate.
    #[tokio::test]
    async fn an_slo_is_backtested_from_its_plain_series() {
        let rules = vigil_alert::load(
            "r.yaml",
            "groups:\n  - name: g\n    slos:\n      - name: Avail\n        objective: 99.9\n        total: {namespace: S, name: requests}\n        errors: {namespace: S, name: errors}\n        page: [{factor: 14.4, long: 1h, short: 5m}]\n        ticket: []\n",
        )
        .expect("rules");
        assert_eq!(rules.len(), 1);
        let since = t("2026-11-02T00:00:00Z");
        let until = since + Duration::hours(3);
        let at = |m: i64| since + Duration::minutes(m);
        let mut source = ReplayReader::default();
        source.set(
            SeriesKey::metric("S", "requests", &[]),
            (0..180).map(|m| (at(m), 1_000.0)).collect(),
        );
        source.set(
            SeriesKey::metric("S", "errors", &[]),
            (60..90).map(|m| (at(m), 30.0)).collect(),
        );
        let history = fetch_history(&source, &rules, since, until)
            .await
            .expect("history");
        assert_eq!(
            history.reader.series.len(),
            4,
            "the two plain series, no expression, and the two again by the hour for the budget"
        );
        let times = schedule(since, until, Duration::minutes(1));
        let replayed = crate::sim::replay(
            &history.reader,
            &rules,
            &vigil_alert::policy::Policy::default(),
            &times,
            |_| {},
        )
        .await
        .expect("replay");
        let found = crate::sim::episodes(&replayed.runs);
        assert_eq!(found.len(), 1, "{found:?}");
        // The page states the budget: 89 minutes of 1,000 events, 29 of them with 30 errors,
        // spent 870 errors of the 89 the objective allows.
        let page = &replayed.sent[0].notification;
        assert!(page.subject.ends_with(", budget spent"), "{}", page.subject);
        assert!(
            page.message
                .contains("Error budget left: none: the 30d budget is spent")
                && page.message.contains("870 of 89000 events were bad"),
            "{}",
            page.message
        );
        // 3 % errors burn 30x; over the hour that is 14.4x only after 29 minutes of them (at
        // minute 89), and the page resolves once the 5-minute window has cleared below 14.4x.
        assert_eq!(found[0].start, at(89), "{found:?}");
        assert!(
            found[0].end.is_some_and(|e| e > at(90) && e <= at(96)),
            "{found:?}"
        );
        let query = &history.queries[0].2;
        let rates = burn_rates(&history, &rules[0], query, &times)
            .await
            .expect("rates");
        let peak = rates.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        // The hour's rate peaks when it holds all 30 minutes of errors: 1.5 %, 15x.
        assert!((peak - 15.0).abs() < 0.01, "{peak}");
    }

    #[test]
    fn the_schedule_falls_on_whole_intervals() {
        let times = schedule(
            t("2026-11-25T08:00:30Z"),
            t("2026-11-25T08:03:00Z"),
            Duration::minutes(1),
        );
        assert_eq!(
            times,
            [
                t("2026-11-25T08:01:00Z"),
                t("2026-11-25T08:02:00Z"),
                t("2026-11-25T08:03:00Z")
            ]
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(42), "42s");
        assert_eq!(human(300), "5m");
        assert_eq!(human(3_900), "1h 5m");
        assert_eq!(human(90_000), "1d 1h");
    }

    #[test]
    fn the_plot_marks_series_threshold_and_episodes() {
        let since = t("2026-11-25T08:00:00Z");
        let until = t("2026-11-25T09:00:00Z");
        let points: Series = (0..60)
            .map(|m| {
                (
                    since + Duration::minutes(m),
                    if m > 30 { 300.0 } else { 100.0 },
                )
            })
            .collect();
        let episode = Episode {
            alert: "A".into(),
            series: BTreeMap::new(),
            start: since + Duration::minutes(33),
            end: None,
        };
        let incident = Incident {
            id: "INC-1".into(),
            title: "Slow <checkout>".into(),
            start: since + Duration::minutes(30),
            end: since + Duration::minutes(50),
            labels: BTreeMap::new(),
        };
        let outside = Incident {
            start: since - Duration::hours(3),
            end: since - Duration::hours(2),
            ..incident.clone()
        };
        let svg = plot(
            "A <latency>",
            &points,
            250.0,
            &[&episode],
            &[&incident, &outside],
            since,
            until,
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"episode\"").count(), 1);
        assert_eq!(
            svg.matches("class=\"incident\"").count(),
            1,
            "an incident outside the range is not drawn"
        );
        assert!(svg.contains("INC-1: Slow &lt;checkout&gt;"));
        assert_eq!(svg.matches("class=\"threshold\"").count(), 1);
        assert!(svg.contains("A &lt;latency&gt;"), "the title is escaped");
        let line = svg
            .lines()
            .find(|l| l.contains("class=\"series\""))
            .expect("series line");
        assert_eq!(line.matches(',').count(), 60, "one vertex per point");
    }
}
