//! Alert rules: the YAML file, grouped like Prometheus rule groups, validated at load.
//!
//! ```yaml
//! groups:
//!   - name: checkout
//!     rules:
//!       - alert: HighLatency
//!         metric: {namespace: Shop/Checkout, name: latency, dimensions: {service: api},
//!                  stat: Average, period: 1m}
//!         condition: {operator: ">", threshold: 250}
//!         lookback: 5m
//!         labels: {severity: page, team: checkout, service: api}
//!         annotations: {summary: "Checkout latency above 250 ms",
//!                       runbook_url: "https://runbooks.example.com/checkout-latency"}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use vigil_shared::config::parse_yaml;
use vigil_shared::metric::{Dimension, validate_namespace};
use vigil_shared::{Error, Result, Span};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub alert: String,
    pub metric: MetricSpec,
    pub condition: Condition,
    /// How far back to read; the newest complete data point in it is compared. Defaults to
    /// five periods.
    #[serde(default)]
    pub lookback: Option<Span>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    pub stat: String,
    pub period: Span,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub operator: Operator,
    pub threshold: f64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Operator {
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    GreaterOrEqual,
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
}

impl Operator {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Operator::Greater => value > threshold,
            Operator::GreaterOrEqual => value >= threshold,
            Operator::Less => value < threshold,
            Operator::LessOrEqual => value <= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Greater => ">",
            Operator::GreaterOrEqual => ">=",
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
        }
    }
}

impl MetricSpec {
    pub fn dimensions(&self) -> Vec<Dimension> {
        self.dimensions
            .iter()
            .map(|(name, value)| Dimension {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

impl Rule {
    /// The read window: `lookback`, or five periods.
    pub fn lookback(&self) -> Span {
        self.lookback
            .unwrap_or(Span(self.metric.period.seconds() * 5))
    }
}

const STATS: [&str; 5] = ["Average", "Sum", "Minimum", "Maximum", "SampleCount"];

fn valid_stat(stat: &str) -> bool {
    STATS.contains(&stat)
        || stat
            .strip_prefix('p')
            .and_then(|p| p.parse::<f64>().ok())
            .is_some_and(|p| (0.0..=100.0).contains(&p))
}

/// Parses and validates a rules file. Errors name the file and, for YAML errors, the line;
/// for rule errors the group and rule.
pub fn load(origin: &str, text: &str) -> Result<Vec<Rule>> {
    let file: RulesFile = parse_yaml(origin, text)?;
    let mut names = BTreeSet::new();
    let mut rules = Vec::new();
    for group in file.groups {
        for rule in group.rules {
            let at = format!("{origin}: group {:?}, rule {:?}", group.name, rule.alert);
            let fail =
                |field: &str, why: String| Err(Error::Config(format!("{at}: {field}: {why}")));
            if rule.alert.is_empty() {
                return fail("alert", "must not be empty".to_owned());
            }
            if !names.insert(rule.alert.clone()) {
                return fail("alert", "the name is used twice in the file".to_owned());
            }
            if let Err(r) = validate_namespace(&rule.metric.namespace) {
                return fail("metric.namespace", r.to_string());
            }
            if rule.metric.name.is_empty() {
                return fail("metric.name", "must not be empty".to_owned());
            }
            if !valid_stat(&rule.metric.stat) {
                return fail(
                    "metric.stat",
                    format!(
                        "{:?} is not a CloudWatch statistic (Average, Sum, Minimum, Maximum, SampleCount, pNN)",
                        rule.metric.stat
                    ),
                );
            }
            let period = rule.metric.period.seconds();
            if !(matches!(period, 1 | 5 | 10 | 30) || (period > 0 && period % 60 == 0)) {
                return fail(
                    "metric.period",
                    format!(
                        "{period}s: CloudWatch periods are 1, 5, 10, 30 s or a multiple of 60 s"
                    ),
                );
            }
            if !rule.condition.threshold.is_finite() {
                return fail("condition.threshold", "must be a finite number".to_owned());
            }
            if rule.lookback().seconds() < period {
                return fail("lookback", "must be at least one period".to_owned());
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
groups:
  - name: checkout
    rules:
      - alert: HighLatency
        metric:
          namespace: Shop/Checkout
          name: latency
          dimensions: {service: api}
          stat: Average
          period: 1m
        condition: {operator: ">", threshold: 250}
        labels: {severity: page, team: checkout}
        annotations: {summary: "slow"}
"#;

    #[test]
    fn loads_a_valid_file() {
        let rules = load("rules.yaml", GOOD).expect("valid");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].metric.period, Span(60));
        assert_eq!(rules[0].lookback(), Span(300));
        assert_eq!(rules[0].condition.operator, Operator::Greater);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let bad_operator = GOOD.replace(r#"operator: ">""#, r#"operator: "=>""#);
        let err = load("rules.yaml", &bad_operator)
            .expect_err("bad operator")
            .to_string();
        assert!(err.contains("rules.yaml:12:"), "{err}");

        let bad_stat = GOOD.replace("stat: Average", "stat: Mean");
        let err = load("rules.yaml", &bad_stat)
            .expect_err("bad stat")
            .to_string();
        assert!(
            err.contains("HighLatency") && err.contains("metric.stat"),
            "{err}"
        );

        let bad_period = GOOD.replace("period: 1m", "period: 45s");
        let err = load("rules.yaml", &bad_period)
            .expect_err("bad period")
            .to_string();
        assert!(err.contains("metric.period"), "{err}");

        let typo = GOOD.replace("labels:", "lables:");
        let err = load("rules.yaml", &typo)
            .expect_err("unknown field")
            .to_string();
        assert!(
            err.contains("rules.yaml:13:") && err.contains("lables"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let twice = format!(
            "{GOOD}{}",
            GOOD.lines().skip(4).collect::<Vec<_>>().join("\n")
        );
        let err = load("rules.yaml", &twice)
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("used twice"), "{err}");
    }

    #[test]
    fn percentile_stats_are_valid() {
        assert!(valid_stat("p99"));
        assert!(valid_stat("p99.9"));
        assert!(!valid_stat("p101"));
        assert!(!valid_stat("median"));
    }
}
