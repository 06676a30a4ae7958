//! The metric model every decoder maps into and every sink writes from, with CloudWatch's
//! acceptance rules applied per datum.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::limits::*;

/// One dimension (a CloudWatch name/value pair).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// One sample of one metric series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Datum {
    pub name: String,
    /// Sorted by name, names unique.
    pub dimensions: Vec<Dimension>,
    pub value: f64,
    pub unit: Unit,
    pub timestamp: DateTime<Utc>,
    /// How finely CloudWatch keeps the series (`StorageResolution`).
    #[serde(default)]
    pub resolution: Resolution,
}

/// CloudWatch's storage resolution of a series. Standard keeps one value per minute, so rules
/// and alarms on it need periods of whole minutes; high resolution keeps one per second (for
/// three hours), so periods of 1, 5, 10 and 30 s are meaningful too. Written `1` or `60`
/// (seconds), as `PutMetricData` and EMF's `StorageResolution` write it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum Resolution {
    #[default]
    Standard,
    High,
}

impl Resolution {
    /// The value of `StorageResolution` on the wire.
    pub fn seconds(self) -> u32 {
        match self {
            Resolution::Standard => 60,
            Resolution::High => 1,
        }
    }
}

impl TryFrom<u32> for Resolution {
    type Error = String;

    fn try_from(seconds: u32) -> Result<Self, String> {
        match seconds {
            60 => Ok(Resolution::Standard),
            1 => Ok(Resolution::High),
            other => Err(format!(
                "storage resolution {other}: CloudWatch stores at 1 s (high) or 60 s (standard)"
            )),
        }
    }
}

impl From<Resolution> for u32 {
    fn from(r: Resolution) -> u32 {
        r.seconds()
    }
}

/// CloudWatch's standard units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    Seconds,
    Microseconds,
    Milliseconds,
    Bytes,
    Kilobytes,
    Megabytes,
    Gigabytes,
    Terabytes,
    Bits,
    Kilobits,
    Megabits,
    Gigabits,
    Terabits,
    Percent,
    Count,
    #[serde(rename = "Bytes/Second")]
    BytesPerSecond,
    #[serde(rename = "Kilobytes/Second")]
    KilobytesPerSecond,
    #[serde(rename = "Megabytes/Second")]
    MegabytesPerSecond,
    #[serde(rename = "Gigabytes/Second")]
    GigabytesPerSecond,
    #[serde(rename = "Terabytes/Second")]
    TerabytesPerSecond,
    #[serde(rename = "Bits/Second")]
    BitsPerSecond,
    #[serde(rename = "Kilobits/Second")]
    KilobitsPerSecond,
    #[serde(rename = "Megabits/Second")]
    MegabitsPerSecond,
    #[serde(rename = "Gigabits/Second")]
    GigabitsPerSecond,
    #[serde(rename = "Terabits/Second")]
    TerabitsPerSecond,
    #[serde(rename = "Count/Second")]
    CountPerSecond,
    #[default]
    None,
}

impl Unit {
    pub const ALL: [Unit; 27] = [
        Unit::Seconds,
        Unit::Microseconds,
        Unit::Milliseconds,
        Unit::Bytes,
        Unit::Kilobytes,
        Unit::Megabytes,
        Unit::Gigabytes,
        Unit::Terabytes,
        Unit::Bits,
        Unit::Kilobits,
        Unit::Megabits,
        Unit::Gigabits,
        Unit::Terabits,
        Unit::Percent,
        Unit::Count,
        Unit::BytesPerSecond,
        Unit::KilobytesPerSecond,
        Unit::MegabytesPerSecond,
        Unit::GigabytesPerSecond,
        Unit::TerabytesPerSecond,
        Unit::BitsPerSecond,
        Unit::KilobitsPerSecond,
        Unit::MegabitsPerSecond,
        Unit::GigabitsPerSecond,
        Unit::TerabitsPerSecond,
        Unit::CountPerSecond,
        Unit::None,
    ];

    /// The name CloudWatch uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Microseconds => "Microseconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            Unit::Kilobytes => "Kilobytes",
            Unit::Megabytes => "Megabytes",
            Unit::Gigabytes => "Gigabytes",
            Unit::Terabytes => "Terabytes",
            Unit::Bits => "Bits",
            Unit::Kilobits => "Kilobits",
            Unit::Megabits => "Megabits",
            Unit::Gigabits => "Gigabits",
            Unit::Terabits => "Terabits",
            Unit::Percent => "Percent",
            Unit::Count => "Count",
            Unit::BytesPerSecond => "Bytes/Second",
            Unit::KilobytesPerSecond => "Kilobytes/Second",
            Unit::MegabytesPerSecond => "Megabytes/Second",
            Unit::GigabytesPerSecond => "Gigabytes/Second",
            Unit::TerabytesPerSecond => "Terabytes/Second",
            Unit::BitsPerSecond => "Bits/Second",
            Unit::KilobitsPerSecond => "Kilobits/Second",
            Unit::MegabitsPerSecond => "Megabits/Second",
            Unit::GigabitsPerSecond => "Gigabits/Second",
            Unit::TerabitsPerSecond => "Terabits/Second",
            Unit::CountPerSecond => "Count/Second",
            Unit::None => "None",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Unit {
    type Err = Rejection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Unit::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| Rejection::UnknownUnit(s.chars().take(64).collect()))
    }
}

/// Why CloudWatch would not take a datum (or a namespace).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("value is NaN or infinite")]
    NonFinite,
    #[error("value is outside CloudWatch's range (magnitude between 2^-360 and 2^360, or 0)")]
    OutOfRange,
    #[error("timestamp is more than two weeks old")]
    TooOld,
    #[error("timestamp is more than two hours in the future")]
    InFuture,
    #[error("metric name is empty")]
    EmptyName,
    #[error("metric name is longer than {CW_MAX_METRIC_NAME_LEN} characters")]
    NameTooLong,
    #[error("namespace is empty")]
    EmptyNamespace,
    #[error("namespace is longer than {CW_MAX_NAMESPACE_LEN} characters")]
    NamespaceTooLong,
    #[error("namespace must not start with \"AWS/\" (reserved for AWS services)")]
    ReservedNamespace,
    #[error(
        "namespace {0:?} is Vigil's own (its heartbeat and its functions' metrics): no sender may write there"
    )]
    VigilNamespace(String),
    #[error("{0} dimensions; CloudWatch takes at most {CW_MAX_DIMENSIONS}")]
    TooManyDimensions(usize),
    #[error("a dimension name is empty or longer than {CW_MAX_DIMENSION_NAME_LEN} characters")]
    BadDimensionName,
    #[error(
        "dimension {0:?} has an empty value or one longer than {CW_MAX_DIMENSION_VALUE_LEN} characters"
    )]
    BadDimensionValue(String),
    #[error("dimension {0:?} appears twice")]
    DuplicateDimension(String),
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
}

impl Rejection {
    /// A short stable name for counting rejections by reason in logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NonFinite => "non_finite",
            Rejection::OutOfRange => "out_of_range",
            Rejection::TooOld => "too_old",
            Rejection::InFuture => "in_future",
            Rejection::EmptyName => "empty_name",
            Rejection::NameTooLong => "name_too_long",
            Rejection::EmptyNamespace => "empty_namespace",
            Rejection::NamespaceTooLong => "namespace_too_long",
            Rejection::ReservedNamespace => "reserved_namespace",
            Rejection::VigilNamespace(_) => "vigil_namespace",
            Rejection::TooManyDimensions(_) => "too_many_dimensions",
            Rejection::BadDimensionName => "bad_dimension_name",
            Rejection::BadDimensionValue(_) => "bad_dimension_value",
            Rejection::DuplicateDimension(_) => "duplicate_dimension",
            Rejection::UnknownUnit(_) => "unknown_unit",
        }
    }
}

/// Checks a namespace against CloudWatch's rules.
pub fn validate_namespace(namespace: &str) -> Result<(), Rejection> {
    if namespace.is_empty() {
        return Err(Rejection::EmptyNamespace);
    }
    if namespace.chars().count() > CW_MAX_NAMESPACE_LEN {
        return Err(Rejection::NamespaceTooLong);
    }
    if namespace.starts_with("AWS/") {
        return Err(Rejection::ReservedNamespace);
    }
    Ok(())
}

/// Checks a namespace a rule reads: CloudWatch's length rules only. Reading `AWS/...` (the
/// metrics AWS services publish: `AWS/Lambda`, `AWS/SQS`) is what rules are for; only
/// writing there is reserved.
pub fn validate_read_namespace(namespace: &str) -> Result<(), Rejection> {
    match validate_namespace(namespace) {
        Err(Rejection::ReservedNamespace) | Ok(()) => Ok(()),
        Err(other) => Err(other),
    }
}

/// Checks a value against CloudWatch's accepted range.
pub fn validate_value(value: f64) -> Result<(), Rejection> {
    if !value.is_finite() {
        return Err(Rejection::NonFinite);
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1.0 / CW_MAX_ABS_VALUE..=CW_MAX_ABS_VALUE).contains(&magnitude) {
        return Err(Rejection::OutOfRange);
    }
    Ok(())
}

impl Datum {
    /// Builds a datum with its dimensions sorted by name.
    pub fn new(
        name: impl Into<String>,
        mut dimensions: Vec<Dimension>,
        value: f64,
        unit: Unit,
        timestamp: DateTime<Utc>,
    ) -> Self {
        dimensions.sort();
        Self {
            name: name.into(),
            dimensions,
            value,
            unit,
            timestamp,
            resolution: Resolution::Standard,
        }
    }

    /// The same datum stored at `resolution`.
    pub fn at_resolution(mut self, resolution: Resolution) -> Self {
        self.resolution = resolution;
        self
    }

    /// Checks the datum against what CloudWatch accepts at `now`.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), Rejection> {
        if self.name.is_empty() {
            return Err(Rejection::EmptyName);
        }
        if self.name.chars().count() > CW_MAX_METRIC_NAME_LEN {
            return Err(Rejection::NameTooLong);
        }
        validate_value(self.value)?;
        let age = now.signed_duration_since(self.timestamp).num_seconds();
        if age > CW_MAX_PAST_SECONDS {
            return Err(Rejection::TooOld);
        }
        if -age > CW_MAX_FUTURE_SECONDS {
            return Err(Rejection::InFuture);
        }
        if self.dimensions.len() > CW_MAX_DIMENSIONS {
            return Err(Rejection::TooManyDimensions(self.dimensions.len()));
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            if d.name.is_empty() || d.name.chars().count() > CW_MAX_DIMENSION_NAME_LEN {
                return Err(Rejection::BadDimensionName);
            }
            if d.value.is_empty() || d.value.chars().count() > CW_MAX_DIMENSION_VALUE_LEN {
                return Err(Rejection::BadDimensionValue(d.name.clone()));
            }
            if self.dimensions[..i].iter().any(|o| o.name == d.name) {
                return Err(Rejection::DuplicateDimension(d.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    #[test]
    fn rules_read_aws_namespaces_that_nobody_may_write() {
        assert_eq!(
            validate_namespace("AWS/Lambda"),
            Err(Rejection::ReservedNamespace)
        );
        assert_eq!(validate_read_namespace("AWS/Lambda"), Ok(()));
        assert_eq!(validate_read_namespace(""), Err(Rejection::EmptyNamespace));
        assert_eq!(
            validate_read_namespace(&"x".repeat(CW_MAX_NAMESPACE_LEN + 1)),
            Err(Rejection::NamespaceTooLong)
        );
    }

    fn datum(value: f64) -> Datum {
        Datum::new(
            "latency",
            vec![Dimension {
                name: "service".into(),
                value: "api".into(),
            }],
            value,
            Unit::Milliseconds,
            Utc::now(),
        )
    }

    #[test]
    fn accepts_an_ordinary_datum() {
        assert_eq!(datum(12.5).validate(Utc::now()), Ok(()));
        assert_eq!(datum(0.0).validate(Utc::now()), Ok(()));
        assert_eq!(datum(-3.0).validate(Utc::now()), Ok(()));
    }

    #[test]
    fn rejects_what_cloudwatch_rejects() {
        let now = Utc::now();
        assert_eq!(datum(f64::NAN).validate(now), Err(Rejection::NonFinite));
        assert_eq!(
            datum(f64::INFINITY).validate(now),
            Err(Rejection::NonFinite)
        );
        assert_eq!(
            datum(f64::NEG_INFINITY).validate(now),
            Err(Rejection::NonFinite)
        );
        assert_eq!(datum(1e120).validate(now), Err(Rejection::OutOfRange));
        assert_eq!(datum(1e-120).validate(now), Err(Rejection::OutOfRange));

        let mut old = datum(1.0);
        old.timestamp = now - Duration::days(15);
        assert_eq!(old.validate(now), Err(Rejection::TooOld));
        let mut future = datum(1.0);
        future.timestamp = now + Duration::hours(3);
        assert_eq!(future.validate(now), Err(Rejection::InFuture));

        let mut unnamed = datum(1.0);
        unnamed.name.clear();
        assert_eq!(unnamed.validate(now), Err(Rejection::EmptyName));
        let mut long = datum(1.0);
        long.name = "x".repeat(256);
        assert_eq!(long.validate(now), Err(Rejection::NameTooLong));

        let many: Vec<Dimension> = (0..31)
            .map(|i| Dimension {
                name: format!("d{i:02}"),
                value: "v".into(),
            })
            .collect();
        let wide = Datum::new("m", many, 1.0, Unit::None, now);
        assert_eq!(wide.validate(now), Err(Rejection::TooManyDimensions(31)));

        let dup = Datum::new(
            "m",
            vec![
                Dimension {
                    name: "a".into(),
                    value: "1".into(),
                },
                Dimension {
                    name: "a".into(),
                    value: "2".into(),
                },
            ],
            1.0,
            Unit::None,
            now,
        );
        assert_eq!(
            dup.validate(now),
            Err(Rejection::DuplicateDimension("a".into()))
        );
    }

    #[test]
    fn namespaces() {
        assert_eq!(validate_namespace("Shop/Checkout"), Ok(()));
        assert_eq!(validate_namespace(""), Err(Rejection::EmptyNamespace));
        assert_eq!(
            validate_namespace("AWS/Lambda"),
            Err(Rejection::ReservedNamespace)
        );
        assert_eq!(
            validate_namespace(&"n".repeat(256)),
            Err(Rejection::NamespaceTooLong)
        );
    }

    #[test]
    fn units_round_trip_through_their_wire_names() {
        for unit in Unit::ALL {
            assert_eq!(unit.as_str().parse::<Unit>(), Ok(unit));
            let json = serde_json::to_string(&unit).expect("serialize");
            assert_eq!(json, format!("\"{}\"", unit.as_str()));
        }
        assert!(matches!(
            "Furlongs".parse::<Unit>(),
            Err(Rejection::UnknownUnit(_))
        ));
    }

    proptest! {
        #[test]
        fn validate_never_panics(
            name in ".{0,300}",
            value in proptest::num::f64::ANY,
            offset in -30i64*86400..30*86400,
            dims in proptest::collection::vec((".{0,20}", ".{0,40}"), 0..40),
        ) {
            let now = Utc::now();
            let dims = dims.into_iter().map(|(name, value)| Dimension { name, value }).collect();
            let d = Datum::new(name, dims, value, Unit::Count, now + Duration::seconds(offset));
            let verdict = d.validate(now);
            if verdict.is_ok() {
                prop_assert!(d.value.is_finite());
                prop_assert!(d.value == 0.0 || d.value.abs() <= CW_MAX_ABS_VALUE);
                prop_assert!(!d.name.is_empty());
                prop_assert!(d.dimensions.len() <= CW_MAX_DIMENSIONS);
            }
            if !value.is_finite() {
                prop_assert!(verdict.is_err());
            }
        }
    }
}

/// Rejections counted by reason, with one example detail each: what a decoder logs once per
/// request and returns to the caller, so nothing is dropped silently and logs stay one line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rejections {
    #[serde(flatten)]
    by_reason: std::collections::BTreeMap<&'static str, Tally>,
}

/// How many were rejected for one reason, and the first one's detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: usize,
    pub example: String,
}

impl Rejections {
    /// Counts one rejection; `detail` is built only for the first of its reason.
    pub fn add(&mut self, reason: &'static str, detail: impl FnOnce() -> String) {
        self.add_many(reason, 1, detail);
    }

    /// Counts `count` rejections of one reason.
    pub fn add_many(
        &mut self,
        reason: &'static str,
        count: usize,
        detail: impl FnOnce() -> String,
    ) {
        if count == 0 {
            return;
        }
        self.by_reason
            .entry(reason)
            .and_modify(|t| t.count += count)
            .or_insert_with(|| Tally {
                count,
                example: detail(),
            });
    }

    /// Counts a datum's [`Rejection`].
    pub fn reject(&mut self, rejection: &Rejection, what: impl FnOnce() -> String) {
        self.add(rejection.reason(), || format!("{}: {rejection}", what()));
    }

    pub fn total(&self) -> usize {
        self.by_reason.values().map(|t| t.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_reason.is_empty()
    }

    pub fn count(&self, reason: &str) -> usize {
        self.by_reason.get(reason).map_or(0, |t| t.count)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Tally)> {
        self.by_reason.iter().map(|(r, t)| (*r, t))
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: Rejections) {
        for (reason, tally) in other.by_reason {
            self.add_many(reason, tally.count, || tally.example);
        }
    }
}
