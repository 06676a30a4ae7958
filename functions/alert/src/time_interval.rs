//! Recurring windows of time, as Alertmanager's `time_intervals`: a route that must not page
//! outside working hours names them in `mute_time_intervals` (muted while one holds) or
//! `active_time_intervals` (muted unless one holds).
//!
//! ```yaml
//! policy:
//!   time_intervals:
//!     - name: out-of-hours
//!       time_intervals:
//!         - times: [{start_time: "18:00", end_time: "24:00"}, {start_time: "00:00", end_time: "08:00"}]
//!           weekdays: ["monday:friday"]
//!           location: Europe/Berlin
//!         - weekdays: [saturday, sunday]
//!           location: Europe/Berlin
//!   routes:
//!     - match: {severity: ticket}
//!       topic_arn: arn:aws:sns:eu-west-1:123456789012:tickets
//!       mute_time_intervals: [out-of-hours]
//! ```
//!
//! An entry holds when every field it gives holds (none given: always): `times` (from
//! `start_time` up to, not including, `end_time`; `24:00` is the end of the day), `weekdays`
//! (names, or ranges `monday:friday`), `days_of_month` (1 to 31, or from the end: -1 is the
//! last day; ranges `1:7`, `-7:-1`), `months` (names or 1 to 12, ranges), `years` (ranges
//! `2026:2027`), all in `location` (an IANA time zone, UTC by default). A named interval holds
//! when any of its entries does. A notification muted by one is not lost: the alert keeps its
//! state and notifies at the first run outside the window, if it is still firing, as after a
//! silence.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// A named list of entries, as the rules file gives it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamedInterval {
    pub name: String,
    pub time_intervals: Vec<IntervalSpec>,
}

/// One entry as written.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntervalSpec {
    #[serde(default)]
    pub times: Vec<TimeRangeSpec>,
    #[serde(default)]
    pub weekdays: Vec<String>,
    #[serde(default)]
    pub days_of_month: Vec<String>,
    #[serde(default)]
    pub months: Vec<String>,
    #[serde(default)]
    pub years: Vec<String>,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeSpec {
    pub start_time: String,
    pub end_time: String,
}

/// An entry, checked: minutes of the day, inclusive ranges of the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    times: Vec<(u32, u32)>,
    weekdays: Vec<(u32, u32)>,
    days_of_month: Vec<(i32, i32)>,
    months: Vec<(u32, u32)>,
    years: Vec<(i32, i32)>,
    location: Tz,
}

/// A named interval, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeInterval {
    pub name: String,
    entries: Vec<Interval>,
}

/// Alertmanager's order: a week runs from Sunday, so `sunday:saturday` is every day and
/// `saturday:sunday` runs backwards.
const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Minutes since midnight of `HH:MM`, `24:00` allowed as an end.
fn minutes(text: &str) -> Result<u32, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not HH:MM"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("{text:?} is not HH:MM"))?,
        m.parse().map_err(|_| format!("{text:?} is not HH:MM"))?,
    );
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("{text:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// A day of the month, or a range of them: `1:7`, `-3:-1` (from the end), or mixed, `15:-1`,
/// which Alertmanager checks against a 30-day month and clamps to the month at match time.
fn days(text: &str) -> Result<(i32, i32), String> {
    let one = |s: &str| {
        s.trim()
            .parse::<i32>()
            .ok()
            .filter(|n| *n != 0 && (-31..=31).contains(n))
            .ok_or_else(|| format!("{s:?} is not a day of the month (1 to 31, or -1 to -31)"))
    };
    let (a, b) = match text.split_once(':') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let v = one(text)?;
            (v, v)
        }
    };
    let on_thirty = |d: i32| if d < 0 { 31 + d } else { d };
    if on_thirty(a) > on_thirty(b) {
        return Err(format!("{text:?}: the range runs backwards"));
    }
    Ok((a, b))
}

/// `a` or `a:b`, each side read by `one`.
fn range<T: Copy + PartialOrd>(
    text: &str,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let (a, b) = match text.split_once(':') {
        Some((a, b)) => (one(a.trim())?, one(b.trim())?),
        None => {
            let v = one(text.trim())?;
            (v, v)
        }
    };
    if a > b {
        return Err(format!("{text:?}: the range runs backwards"));
    }
    Ok((a, b))
}

fn named(names: &'static [&'static str], offset: u32) -> impl Fn(&str) -> Result<u32, String> {
    move |s: &str| {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + offset);
        }
        match lower.parse::<u32>() {
            Ok(n) if names.len() == 12 && (1..=12).contains(&n) => Ok(n),
            _ => Err(format!("{s:?} is not one of {}", names.join(", "))),
        }
    }
}

impl Interval {
    /// The entry, or why it is invalid.
    pub fn new(spec: &IntervalSpec) -> Result<Self, String> {
        let times = spec
            .times
            .iter()
            .map(|t| {
                let (a, b) = (minutes(&t.start_time)?, minutes(&t.end_time)?);
                if a >= b {
                    return Err(format!(
                        "times: {}-{} is empty or backwards",
                        t.start_time, t.end_time
                    ));
                }
                Ok((a, b))
            })
            .collect::<Result<_, String>>()?;
        let weekdays = spec
            .weekdays
            .iter()
            .map(|w| range(w, named(&WEEKDAYS, 0)).map_err(|e| format!("weekdays: {e}")))
            .collect::<Result<_, String>>()?;
        let days_of_month = spec
            .days_of_month
            .iter()
            .map(|d| days(d).map_err(|e| format!("days_of_month: {e}")))
            .collect::<Result<_, String>>()?;
        let months = spec
            .months
            .iter()
            .map(|m| range(m, named(&MONTHS, 1)).map_err(|e| format!("months: {e}")))
            .collect::<Result<_, String>>()?;
        let years = spec
            .years
            .iter()
            .map(|y| {
                range(y, |s| {
                    s.parse::<i32>().map_err(|_| format!("{s:?} is not a year"))
                })
                .map_err(|e| format!("years: {e}"))
            })
            .collect::<Result<_, String>>()?;
        let location = match &spec.location {
            None => Tz::UTC,
            Some(l) => l
                .parse()
                .map_err(|_| format!("location: {l:?} is not an IANA time zone"))?,
        };
        Ok(Self {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            location,
        })
    }

    /// Whether `at` falls in the entry.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.location);
        let minute = local.hour() * 60 + local.minute();
        let weekday = local.weekday().num_days_from_sunday();
        let (day, month, year) = (local.day() as i32, local.month(), local.year());
        let days_in_month = days_in(year, month) as i32;
        let in_times =
            self.times.is_empty() || self.times.iter().any(|(a, b)| (*a..*b).contains(&minute));
        let in_weekdays = self.weekdays.is_empty()
            || self
                .weekdays
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&weekday));
        let in_days = self.days_of_month.is_empty()
            || self.days_of_month.iter().any(|(a, b)| {
                let resolved = |d: i32| {
                    let d = if d < 0 { days_in_month + 1 + d } else { d };
                    d.clamp(1, days_in_month)
                };
                (resolved(*a)..=resolved(*b)).contains(&day)
            });
        let in_months =
            self.months.is_empty() || self.months.iter().any(|(a, b)| (*a..=*b).contains(&month));
        let in_years =
            self.years.is_empty() || self.years.iter().any(|(a, b)| (*a..=*b).contains(&year));
        in_times && in_weekdays && in_days && in_months && in_years
    }
}

fn days_in(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day())
}

impl TimeInterval {
    pub fn new(spec: &NamedInterval) -> Result<Self, String> {
        if spec.name.trim().is_empty() {
            return Err("a time interval needs a name".to_owned());
        }
        let entries = spec
            .time_intervals
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Interval::new(e).map_err(|why| format!("{}: time_intervals[{i}]: {why}", spec.name))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            name: spec.name.clone(),
            entries,
        })
    }

    /// Whether any entry holds at `at`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.entries.iter().any(|e| e.contains(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn interval(yaml: &str) -> TimeInterval {
        let spec: NamedInterval = serde_saphyr::from_str(yaml).expect("yaml");
        TimeInterval::new(&spec).expect("valid")
    }

    #[test]
    fn out_of_hours_in_berlin() {
        let off = interval(
            "name: out-of-hours\ntime_intervals:\n  - times: [{start_time: \"18:00\", end_time: \"24:00\"}, {start_time: \"00:00\", end_time: \"08:00\"}]\n    weekdays: [\"monday:friday\"]\n    location: Europe/Berlin\n  - weekdays: [saturday, sunday]\n    location: Europe/Berlin\n",
        );
        // Wednesday 2026-11-25: 08:00 UTC is 09:00 in Berlin, working hours.
        assert!(!off.contains(t("2026-11-25T08:00:00Z")));
        assert!(off.contains(t("2026-11-25T06:59:00Z")), "07:59 in Berlin");
        assert!(!off.contains(t("2026-11-25T07:00:00Z")), "08:00 in Berlin");
        assert!(off.contains(t("2026-11-25T17:00:00Z")), "18:00 in Berlin");
        assert!(off.contains(t("2026-11-25T22:59:00Z")), "23:59 in Berlin");
        // Saturday all day, Berlin's: Friday 23:30 UTC is Saturday 00:30 there.
        assert!(off.contains(t("2026-11-27T23:30:00Z")));
        assert!(off.contains(t("2026-11-28T12:00:00Z")));
        // Summer time: 06:30 UTC on a July Wednesday is 08:30 in Berlin.
        assert!(!off.contains(t("2026-07-01T06:30:00Z")));
    }

    #[test]
    fn days_months_and_years() {
        let end = interval(
            "name: month-end\ntime_intervals:\n  - days_of_month: [\"-3:-1\"]\n    months: [\"november:december\", \"2\"]\n    years: [\"2026\"]\n",
        );
        assert!(end.contains(t("2026-11-28T12:00:00Z")), "the 28th of 30");
        assert!(!end.contains(t("2026-11-27T12:00:00Z")));
        assert!(end.contains(t("2026-12-31T12:00:00Z")));
        assert!(!end.contains(t("2026-10-31T12:00:00Z")), "October");
        assert!(!end.contains(t("2027-11-29T12:00:00Z")), "2027");
        let feb = interval(
            "name: f\ntime_intervals:\n  - days_of_month: [\"-1\"]\n    months: [february]\n",
        );
        assert!(
            feb.contains(t("2028-02-29T00:00:00Z")),
            "a leap year's last day"
        );
        assert!(!feb.contains(t("2028-02-28T00:00:00Z")));
        // Mixed: from the 15th to the last day, whatever the month's length; a week from Sunday.
        let late = interval(
            "name: l\ntime_intervals:\n  - days_of_month: [\"15:-1\"]\n    weekdays: [\"sunday:thursday\"]\n",
        );
        assert!(
            late.contains(t("2026-02-15T12:00:00Z")),
            "a Sunday, the 15th"
        );
        assert!(!late.contains(t("2026-02-20T12:00:00Z")), "a Friday");
        assert!(!late.contains(t("2026-02-08T12:00:00Z")), "the 8th");
        let always = interval("name: a\ntime_intervals:\n  - {}\n");
        assert!(always.contains(t("2026-11-25T08:00:00Z")));
    }

    #[test]
    fn invalid_entries_say_what_is_wrong() {
        for (yaml, want) in [
            (
                "times: [{start_time: \"25:00\", end_time: \"26:00\"}]",
                "time of day",
            ),
            (
                "times: [{start_time: \"10:00\", end_time: \"09:00\"}]",
                "backwards",
            ),
            ("weekdays: [funday]", "weekdays"),
            ("weekdays: [\"friday:monday\"]", "backwards"),
            ("days_of_month: [\"0\"]", "day of the month"),
            ("days_of_month: [\"-1:1\"]", "backwards"),
            ("weekdays: [\"saturday:sunday\"]", "backwards"),
            ("months: [\"13\"]", "months"),
            ("location: Mars/Olympus", "IANA"),
        ] {
            let text = format!("name: x\ntime_intervals:\n  - {yaml}\n");
            let spec: NamedInterval = serde_saphyr::from_str(&text).expect("yaml");
            let err = TimeInterval::new(&spec).expect_err(yaml);
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
