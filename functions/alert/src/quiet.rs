//! The hours a page wakes someone up: a daily window (`22:00-07:00`, which may wrap past
//! midnight) in the team's time zone (an IANA name; daylight saving time followed by
//! chrono-tz's copy of the tz database).

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

/// The hours a page wakes someone up, in a time zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuietHours {
    pub from: NaiveTime,
    pub to: NaiveTime,
    pub tz: Tz,
}

impl QuietHours {
    /// `22:00-07:00` in `tz` (an IANA name such as `Europe/Berlin`).
    pub fn parse(window: &str, tz: &str) -> Result<Self, String> {
        let tz: Tz = tz
            .parse()
            .map_err(|_| format!("time zone {tz:?} is not an IANA name (Europe/Berlin, UTC)"))?;
        let (from, to) = window
            .split_once('-')
            .ok_or_else(|| format!("quiet hours {window:?} are not HH:MM-HH:MM"))?;
        let time = |s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| format!("quiet hours: {s:?} is not HH:MM"))
        };
        let (from, to) = (time(from)?, time(to)?);
        if from == to {
            return Err(format!("quiet hours {window:?} are empty"));
        }
        Ok(Self { from, to, tz })
    }

    /// Whether `t` falls in the window, which may wrap past midnight.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz).time();
        let local =
            NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second()).unwrap_or(local);
        if self.from < self.to {
            local >= self.from && local < self.to
        } else {
            local >= self.from || local < self.to
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn quiet_hours_follow_the_time_zone_and_wrap_midnight() {
        let q = QuietHours::parse("22:00-07:00", "Europe/Berlin").expect("quiet");
        assert!(q.contains(t("2026-11-04T01:00:00Z")), "02:00 in Berlin");
        assert!(!q.contains(t("2026-11-04T06:30:00Z")), "07:30 in Berlin");
        // Summer time: 05:30 UTC is 07:30 CEST, outside; 04:30 UTC is 06:30, inside.
        assert!(!q.contains(t("2026-07-01T05:30:00Z")));
        assert!(q.contains(t("2026-07-01T04:30:00Z")));
        let day = QuietHours::parse("09:00-17:00", "UTC").expect("quiet");
        assert!(
            day.contains(t("2026-07-01T09:00:00Z")) && !day.contains(t("2026-07-01T17:00:00Z"))
        );
        for (window, tz) in [
            ("22-07", "UTC"),
            ("22:00-07:00", "Mars/Olympus"),
            ("07:00-07:00", "UTC"),
        ] {
            assert!(QuietHours::parse(window, tz).is_err(), "{window} {tz}");
        }
    }
}
