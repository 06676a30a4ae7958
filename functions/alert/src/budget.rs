//! The error budget left of an objective: the share of the bad events its window allows that
//! the window has not spent. A burn-rate alert says how fast the budget burns; the budget left
//! says how much is there to burn, so every message of an objective's alerts states it.
//!
//! The window (30 days by default) is longer than CloudWatch keeps one-minute data (15 days),
//! so it is read in hours, which CloudWatch keeps 455 days: the whole hours from the first
//! boundary at or after the window's start to the last but one before its end. The last hour
//! and the minutes since come from the burn-rate read, which holds them already, so the newest
//! minutes are counted as the burn rates count them: only periods with a total, where a good
//! count that lags its total by a minute is not read as a bad minute. In an older hour a total
//! without a good count is an hour in which nothing was good. A 30-day window is 720 points of
//! each of the objective's two metrics, read once per objective, whatever its number of alerts.
//!
//! An error ratio's hour is its Average over the minutes that have a sample, weighing a whole
//! hour: an hour with data for a few minutes only weighs as much as a full one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use vigil_shared::reader::StatQuery;

use crate::slo::{Burn, Lag, counts};

/// The period of the budget's read, in seconds.
pub const HOUR: i64 = 3_600;

/// The suffix of the ids of the hourly queries: `r3__m` is read by the hour as `r3__m_h`.
const HOURLY: &str = "_h";

/// An objective's budget over its window, as of the end of a run's windows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Budget {
    /// The share of the budget left: 1 untouched, 0 spent, below 0 overspent.
    pub left: f64,
    /// The events the window counted, and how many of them were bad.
    pub events: f64,
    pub bad: f64,
    /// The window counted: whole hours from `since`, then complete periods up to `until`.
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Budget {
    /// The budget left in percent, to one decimal: 62.5, or -30 when overspent.
    pub fn left_percent(&self) -> f64 {
        (self.left * 1_000.0).round() / 10.0
    }
}

/// The hours of the window of `burn` that ends at `end` read by the hour: from the first hour
/// boundary at or after its start to the hour before the last boundary at or before `end`.
pub fn hours(burn: &Burn, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = end.timestamp() - burn.window.signed().num_seconds();
    let from = start.div_euclid(HOUR) * HOUR + if start % HOUR == 0 { 0 } else { HOUR };
    let to = end.timestamp().div_euclid(HOUR) * HOUR - HOUR;
    let at = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or(end);
    (at(from), at(to.max(from)))
}

/// The hourly queries of a burn-rate rule's parts (its events and its counted input): the
/// same statistics by the hour, under ids of their own.
pub fn hourly(parts: &[StatQuery]) -> Vec<StatQuery> {
    parts
        .iter()
        .map(|p| StatQuery {
            id: hourly_id(&p.id),
            period: HOUR as u32,
            ..p.clone()
        })
        .collect()
}

/// The id of the hourly query of the part `id`.
pub fn hourly_id(id: &str) -> String {
    format!("{id}{HOURLY}")
}

/// The points of an objective's two series (its events or error ratio, and its counted input)
/// from one read, and the seconds each point covers.
#[derive(Clone, Copy, Debug)]
pub struct Points<'a> {
    pub total: &'a [(DateTime<Utc>, f64)],
    pub counted: &'a [(DateTime<Utc>, f64)],
    pub period: f64,
}

/// The budget of `burn` at `end` from the hourly points over [`hours`], and the finer points of
/// the burn-rate read for the minutes after the last hour. `None` when the window counted no
/// events. For an error ratio, "events" are seconds: each point weighs its period.
pub fn budget(
    burn: &Burn,
    hourly: Points<'_>,
    fine: Points<'_>,
    end: DateTime<Utc>,
) -> Option<Budget> {
    let (since, to) = hours(burn, end);
    let count = |p: Points<'_>, from, until, lag| {
        counts(burn, p.total, p.counted, from, until, p.period, lag)
    };
    let (hour_events, hour_bad) = count(hourly, since, to, Lag::Settled);
    let (minute_events, minute_bad) = count(fine, to, end, Lag::Possible);
    let (events, bad) = (hour_events + minute_events, hour_bad + minute_bad);
    if events <= 0.0 || !events.is_finite() {
        return None;
    }
    let allowed = (1.0 - burn.objective) * events;
    Some(Budget {
        left: 1.0 - bad / allowed,
        events,
        bad,
        since,
        until: end,
    })
}

/// Where the finer read of burn-rate rules must start so that it holds what every budget reads
/// finely: no later than the hour before the last hour boundary before `end`.
pub fn fine_start(start: DateTime<Utc>, end: DateTime<Utc>) -> DateTime<Utc> {
    let hour = end.timestamp().div_euclid(HOUR) * HOUR - HOUR;
    start.min(DateTime::from_timestamp(hour, 0).unwrap_or(end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::{Counted, Windows};
    use chrono::Duration;
    use vigil_shared::Span;

    fn burn(counted: Counted) -> Burn {
        Burn {
            slo: "Checkout".into(),
            objective: 0.999,
            window: Span(30 * 86_400),
            windows: Windows {
                factor: 14.4,
                long: Span(3_600),
                short: Span(300),
            },
            counted,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    type P = [(DateTime<Utc>, f64)];

    fn points<'a>(total: &'a P, counted: &'a P, period: f64) -> Points<'a> {
        Points {
            total,
            counted,
            period,
        }
    }

    fn none() -> Points<'static> {
        points(&[], &[], 60.0)
    }

    #[test]
    fn the_window_is_whole_hours_then_the_minutes_since_the_last_one() {
        let b = burn(Counted::Errors);
        let (from, to) = hours(&b, t("2026-11-30T12:34:00Z"));
        assert_eq!(from, t("2026-10-31T13:00:00Z"));
        assert_eq!(
            to,
            t("2026-11-30T11:00:00Z"),
            "the last hour is read finely"
        );
        let (from, to) = hours(&b, t("2026-11-30T12:00:00Z"));
        assert_eq!(
            (from, to),
            (t("2026-10-31T12:00:00Z"), t("2026-11-30T11:00:00Z"))
        );
    }

    #[test]
    fn the_budget_left_counts_hours_and_minutes_once_each() {
        let b = burn(Counted::Errors);
        let end = t("2026-11-30T12:30:00Z");
        // 718 hours of 10,000 events with 2 errors each (0.02 %, a fifth of the budget) ...
        let (since, to) = hours(&b, end);
        let hours_total: Vec<_> = (0..)
            .map(|h| since + Duration::hours(h))
            .take_while(|h| *h < to)
            .map(|h| (h, 10_000.0))
            .collect();
        let hours_bad: Vec<_> = hours_total.iter().map(|(h, _)| (*h, 2.0)).collect();
        // ... and 30 minutes since 11:00 of 100 events with 1 error each (1 %).
        let minutes_total: Vec<_> = (0..30)
            .map(|m| (to + Duration::minutes(m), 100.0))
            .collect();
        let minutes_bad: Vec<_> = minutes_total.iter().map(|(m, _)| (*m, 1.0)).collect();
        // The minute read reaches back hours: those minutes are counted by the hour, not again.
        let mut minutes_reaching_back = minutes_total.clone();
        minutes_reaching_back.push((to - Duration::minutes(5), 1e9));
        let got = budget(
            &b,
            points(&hours_total, &hours_bad, 3_600.0),
            points(&minutes_reaching_back, &minutes_bad, 60.0),
            end,
        )
        .expect("events");
        let events = 718.0 * 10_000.0 + 3_000.0;
        let bad = 718.0 * 2.0 + 30.0;
        assert_eq!(got.events, events);
        assert_eq!(got.bad, bad);
        assert!((got.left - (1.0 - bad / (0.001 * events))).abs() < 1e-9);
        assert_eq!(got.left_percent(), 79.6);
        assert_eq!((got.since, got.until), (since, end));
    }

    #[test]
    fn an_overspent_budget_is_below_zero_and_no_events_is_no_budget() {
        let b = burn(Counted::Good);
        let end = t("2026-11-30T12:00:00Z");
        let (since, _) = hours(&b, end);
        let total = [(since, 1_000.0)];
        let good = [(since, 997.0)];
        let got = budget(&b, points(&total, &good, 3_600.0), none(), end).expect("events");
        assert_eq!(got.bad, 3.0);
        assert_eq!(got.left_percent(), -200.0);
        assert_eq!(budget(&b, none(), none(), end), None);
        // An hour with a total and no good count had nothing good; the same in the newest
        // minutes is a good count still to land, and left out.
        let hour = [(since, 1_000.0)];
        let got = budget(&b, points(&hour, &[], 3_600.0), none(), end).expect("events");
        assert_eq!((got.events, got.bad), (1_000.0, 1_000.0));
        let minute = [(end - Duration::minutes(1), 1_000.0)];
        assert_eq!(budget(&b, none(), points(&minute, &[], 60.0), end), None);
    }

    #[test]
    fn an_error_ratio_weighs_an_hour_as_sixty_minutes() {
        let b = burn(Counted::Ratio { percent: false });
        let end = t("2026-11-30T12:30:00Z");
        let (since, to) = hours(&b, end);
        // 718 hours at 0.05 % on average, then 30 minutes at 1 %.
        let hourly: Vec<_> = (0..718)
            .map(|h| (since + Duration::hours(h), 0.0005))
            .collect();
        let minutes: Vec<_> = (0..30).map(|m| (to + Duration::minutes(m), 0.01)).collect();
        let got = budget(
            &b,
            points(&hourly, &[], 3_600.0),
            points(&minutes, &[], 60.0),
            end,
        )
        .expect("points");
        let seconds = 718.0 * 3_600.0 + 30.0 * 60.0;
        let bad = 718.0 * 3_600.0 * 0.0005 + 30.0 * 60.0 * 0.01;
        assert_eq!(got.events, seconds);
        assert!((got.bad - bad).abs() < 1e-6, "{}", got.bad);
        assert!((got.left - (1.0 - bad / (0.001 * seconds))).abs() < 1e-9);
        assert_eq!(got.left_percent(), 49.3);
    }

    #[test]
    fn hourly_queries_read_the_parts_by_the_hour_under_their_own_ids() {
        let part = StatQuery {
            id: "r3__m".into(),
            namespace: "Shop".into(),
            metric: "requests".into(),
            dimensions: Vec::new(),
            stat: "Sum".into(),
            period: 60,
            math: None,
        };
        let got = hourly(std::slice::from_ref(&part));
        assert_eq!(got[0].id, "r3__m_h");
        assert_eq!(got[0].period, 3_600);
        assert_eq!(got[0].metric, part.metric);
        let end = t("2026-11-30T12:34:00Z");
        assert_eq!(
            fine_start(t("2026-11-30T12:04:00Z"), end),
            t("2026-11-30T11:00:00Z")
        );
        assert_eq!(
            fine_start(t("2026-11-27T12:00:00Z"), end),
            t("2026-11-27T12:00:00Z")
        );
    }
}
