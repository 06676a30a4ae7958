//! Durations written the Prometheus way in configuration files: `90s`, `5m`, `26h`, `7d`,
//! `1w`, or several units from largest to smallest (`1h30m`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A whole number of seconds, read from and written as Prometheus-style text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub u64);

impl Span {
    pub fn seconds(self) -> u64 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    /// The span as a signed duration for time arithmetic, at most `i64::MAX / 1000` seconds
    /// (what chrono can hold).
    pub fn signed(self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.0).unwrap_or(i64::MAX / 1000))
    }
}

const UNITS: [(char, u64); 5] = [
    ('w', 604_800),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses `1h30m`-style text. Units must go from largest to smallest, each at most once.
pub fn parse_span(text: &str) -> Result<Span, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = 0usize;
    let mut seen_any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == c) else {
            return Err(format!(
                "{text:?}: unknown unit {c:?} (use w, d, h, m or s, as in 1h30m)"
            ));
        };
        if digits.is_empty() {
            return Err(format!("{text:?}: unit {c:?} without a number"));
        }
        if seen_any && pos <= last_unit {
            return Err(format!("{text:?}: units must go from largest to smallest"));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        total = n
            .checked_mul(UNITS[pos].1)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?}: duration too large"))?;
        digits.clear();
        last_unit = pos;
        seen_any = true;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?}: number without a unit (write {digits}s, {digits}m, ...)"
        ));
    }
    Ok(Span(total))
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (unit, size) in UNITS {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_span(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse_span("90s"), Ok(Span(90)));
        assert_eq!(parse_span("5m"), Ok(Span(300)));
        assert_eq!(parse_span("26h"), Ok(Span(93_600)));
        assert_eq!(parse_span("1h30m"), Ok(Span(5_400)));
        assert_eq!(parse_span("1w2d"), Ok(Span(777_600)));
        assert_eq!(parse_span("0s"), Ok(Span(0)));
    }

    #[test]
    fn refuses_what_is_ambiguous() {
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "30m1h",
            "1h1h",
            "-5m",
            "1.5h",
            "99999999999999999999s",
        ] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 0u64..10_000_000_000) {
            let span = Span(secs);
            prop_assert_eq!(parse_span(&span.to_string()), Ok(span));
        }

        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = parse_span(&text);
        }
    }
}
