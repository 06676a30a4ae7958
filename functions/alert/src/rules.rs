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
use vigil_shared::metric::{Dimension, validate_read_namespace};
use vigil_shared::{Error, Result, Span};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub policy: crate::policy::Policy,
    /// More files of rule groups read with this one, relative to it ([`crate::rule_files`]).
    #[serde(default)]
    pub rule_files: Vec<String>,
}

/// A file a rules file names in `rule_files`: rule groups only (the policy is the main
/// file's).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupsFile {
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Service level objectives, each compiled to its burn-rate rules ([`crate::slo`]).
    #[serde(default)]
    pub slos: Vec<crate::slo::Slo>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub alert: String,
    pub metric: MetricSpec,
    /// Metric math compared instead of `metric`: `metric` is `m` in it, `inputs` are the
    /// other statistics it names (same period), for example `100 * errors / m`.
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    pub condition: Condition,
    /// How far back to read; the newest complete data points in it are compared. Defaults to
    /// `evaluation_periods` + 4 periods.
    #[serde(default)]
    pub lookback: Option<Span>,
    /// How long the condition must hold before the alert fires (Prometheus `for`).
    #[serde(default, rename = "for")]
    pub for_: Span,
    /// How long a firing alert stays firing after the condition stopped holding.
    #[serde(default)]
    pub keep_firing_for: Span,
    /// M of N: the condition holds when at least `datapoints_to_alarm` of the newest
    /// `evaluation_periods` complete data points breach (CloudWatch alarms' rule). 1 of 1 by
    /// default.
    #[serde(default)]
    pub evaluation_periods: Option<u32>,
    #[serde(default)]
    pub datapoints_to_alarm: Option<u32>,
    /// What no data in the window means.
    #[serde(default)]
    pub missing_data: MissingData,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Set on the rules an objective compiles to: the rule is a burn-rate alert over its
    /// metric (all events) and its input `bad` (errors or good events).
    #[serde(skip)]
    pub burn: Option<crate::slo::Burn>,
}

/// A statistic a metric-math expression reads (its period is the rule's).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    pub stat: String,
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What an evaluation with no data means (CloudWatch alarms' `TreatMissingData`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MissingData {
    /// Keep the state as it is (an episode neither advances nor ends).
    #[default]
    Ignore,
    /// Count it as breaching: for metrics whose absence is the problem (heartbeats).
    Breaching,
    /// Count it as not breaching.
    NotBreaching,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub namespace: String,
    pub name: String,
    /// A value of `*` watches every series with that dimension, each with its own state and
    /// notifications (`service: "*"`: one alert per service).
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
    /// N of "M of N".
    pub fn evaluation_periods(&self) -> u32 {
        self.evaluation_periods.unwrap_or(1).max(1)
    }

    /// M of "M of N".
    pub fn datapoints_to_alarm(&self) -> u32 {
        self.datapoints_to_alarm
            .unwrap_or(self.evaluation_periods())
    }

    /// The read window: `lookback`, or `evaluation_periods` + 4 periods.
    pub fn lookback(&self) -> Span {
        self.lookback.unwrap_or(Span(
            self.metric.period.seconds() * (u64::from(self.evaluation_periods()) + 4),
        ))
    }

    /// `for` and `keep_firing_for` as the state machine takes them.
    pub fn timing(&self) -> crate::state::Timing {
        crate::state::Timing {
            for_: self.for_.signed(),
            keep_firing_for: self.keep_firing_for.signed(),
        }
    }
}

/// Severities that page a person.
pub const PAGING_SEVERITIES: [&str; 3] = ["page", "critical", "emergency"];

/// Rules that would page without an action: a paging severity without a `runbook_url`
/// annotation, or without `for` (one bad data point would wake someone). One line per finding.
pub fn lint(rules: &[Rule]) -> Vec<String> {
    let mut findings = Vec::new();
    for r in rules {
        let paging = r
            .labels
            .get("severity")
            .is_some_and(|s| PAGING_SEVERITIES.contains(&s.as_str()));
        if !paging {
            continue;
        }
        if r.annotations
            .get("runbook_url")
            .is_none_or(|u| u.trim().is_empty())
        {
            findings.push(format!(
                "{}: pages without a runbook_url annotation",
                r.alert
            ));
        }
        // A burn-rate alert's two windows are what keeps one bad minute from paging.
        if r.for_.seconds() == 0 && r.datapoints_to_alarm() <= 1 && r.burn.is_none() {
            findings.push(format!(
                "{}: pages on a single data point (set `for` or datapoints_to_alarm)",
                r.alert
            ));
        }
    }
    findings
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
    load_file(origin, text).map(|(rules, _)| rules)
}

/// [`load`], with the file's notification policy. A file naming `rule_files` is refused here:
/// [`load_set`] takes it with the files it names.
pub fn load_file(origin: &str, text: &str) -> Result<(Vec<Rule>, crate::policy::Policy)> {
    load_set(origin, text, &[])
}

/// A rules file and the files its `rule_files` name, read in that order (each as its origin
/// and text): the rules of all of them, alert names unique across them, and the main file's
/// policy.
pub fn load_set(
    origin: &str,
    text: &str,
    included: &[(String, String)],
) -> Result<(Vec<Rule>, crate::policy::Policy)> {
    let file: RulesFile = parse_yaml(origin, text)?;
    if file.rule_files.len() != included.len() {
        return Err(Error::Config(format!(
            "{origin}: rule_files: names {} files, {} were read",
            file.rule_files.len(),
            included.len()
        )));
    }
    for (i, route) in file.policy.routes.iter().enumerate() {
        let Some(topic) = &route.topic_arn else {
            continue;
        };
        if !topic.value.starts_with("arn:") {
            return Err(Error::Config(format!(
                "{origin}:{}: policy.routes[{i}].topic_arn: {:?} is not an ARN",
                topic.referenced.line(),
                topic.value
            )));
        }
    }
    let mut file = file;
    file.policy
        .compile_intervals()
        .map_err(|e| Error::Config(format!("{origin}: {e}")))?;
    file.policy
        .check_receivers()
        .map_err(|e| Error::Config(format!("{origin}: {e}")))?;
    if let Some(review) = &file.policy.review {
        if let Err(e) = review.quiet() {
            return Err(Error::Config(format!("{origin}: policy.review: {e}")));
        }
        if review.response.seconds() == 0 || review.short.seconds() == 0 {
            return Err(Error::Config(format!(
                "{origin}: policy.review: response and short must be above 0s"
            )));
        }
        if let Some(t) = review.topic_arn.as_ref().filter(|t| !t.starts_with("arn:")) {
            return Err(Error::Config(format!(
                "{origin}: policy.review.topic_arn: {t:?} is not an ARN"
            )));
        }
    }
    let mut names = BTreeSet::new();
    let mut rules = compile_groups(origin, file.groups, &mut names)?;
    for (origin, text) in included {
        let groups: GroupsFile = parse_yaml(origin, text)?;
        rules.extend(compile_groups(origin, groups.groups, &mut names)?);
    }
    Ok((rules, file.policy))
}

/// The rules of `groups` (objectives compiled to their burn-rate rules), validated; `names`
/// holds the alert names already taken.
fn compile_groups(
    origin: &str,
    groups: Vec<Group>,
    names: &mut BTreeSet<String>,
) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for group in groups {
        let mut compiled = group.rules;
        for slo in &group.slos {
            let at = format!("{origin}: group {:?}, slo {:?}", group.name, slo.name);
            compiled.extend(crate::slo::compile(&at, slo).map_err(Error::Config)?);
        }
        for rule in compiled {
            let at = format!("{origin}: group {:?}, rule {:?}", group.name, rule.alert);
            let fail =
                |field: &str, why: String| Err(Error::Config(format!("{at}: {field}: {why}")));
            if rule.alert.is_empty() {
                return fail("alert", "must not be empty".to_owned());
            }
            if !names.insert(rule.alert.clone()) {
                return fail(
                    "alert",
                    "the name is used twice in the rules files".to_owned(),
                );
            }
            if let Err(r) = validate_read_namespace(&rule.metric.namespace) {
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
            let wildcard = rule.metric.dimensions.values().any(|v| v == "*");
            if let Some(expression) = &rule.expression {
                if wildcard {
                    return fail(
                        "metric.dimensions",
                        "`*` (one alert per series) cannot be combined with an expression"
                            .to_owned(),
                    );
                }
                // Parsed and typed by the engine that `rules test`, the backtest and the
                // function's local mode evaluate it with: one time series, known functions.
                let parsed = match vigil_shared::math::parse(expression) {
                    Ok(parsed) => parsed,
                    Err(e) => return fail("expression", format!("{expression:?}: {e}")),
                };
                for (id, input) in &rule.inputs {
                    if !valid_id(id) || id == "m" {
                        return fail(
                            &format!("inputs.{id}"),
                            "input names start with a lower-case letter, use letters, digits and _, and are not `m`".to_owned(),
                        );
                    }
                    if let Err(r) = validate_read_namespace(&input.namespace) {
                        return fail(&format!("inputs.{id}.namespace"), r.to_string());
                    }
                    if !valid_stat(&input.stat) {
                        return fail(
                            &format!("inputs.{id}.stat"),
                            format!("{:?} is not a CloudWatch statistic", input.stat),
                        );
                    }
                }
                for word in parsed.ids() {
                    if word != "m" && !rule.inputs.contains_key(word) {
                        return fail(
                            "expression",
                            format!(
                                "{word:?} is neither `m` (the rule's metric) nor one of its inputs"
                            ),
                        );
                    }
                }
            } else if rule.burn.is_some() {
                for (id, input) in &rule.inputs {
                    if let Err(r) = validate_read_namespace(&input.namespace) {
                        return fail(&format!("{id}.namespace"), r.to_string());
                    }
                    if !valid_stat(&input.stat) {
                        return fail(
                            &format!("{id}.stat"),
                            format!("{:?} is not a CloudWatch statistic", input.stat),
                        );
                    }
                }
            } else if !rule.inputs.is_empty() {
                return fail(
                    "inputs",
                    "inputs need an expression that uses them".to_owned(),
                );
            }
            if !rule.condition.threshold.is_finite() {
                return fail("condition.threshold", "must be a finite number".to_owned());
            }
            if rule.datapoints_to_alarm() == 0
                || rule.datapoints_to_alarm() > rule.evaluation_periods()
            {
                return fail(
                    "datapoints_to_alarm",
                    format!(
                        "must be between 1 and evaluation_periods ({})",
                        rule.evaluation_periods()
                    ),
                );
            }
            if rule.lookback().seconds() < period * u64::from(rule.evaluation_periods()) {
                return fail(
                    "lookback",
                    "must cover evaluation_periods periods".to_owned(),
                );
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
    fn lint_flags_pages_without_an_action() {
        let rules = load("rules.yaml", GOOD).expect("valid");
        let findings = lint(&rules);
        assert_eq!(
            findings,
            [
                "HighLatency: pages without a runbook_url annotation",
                "HighLatency: pages on a single data point (set `for` or datapoints_to_alarm)"
            ]
        );
        let fixed = GOOD.replace(
            "annotations: {summary: \"slow\"}",
            "annotations: {summary: slow, runbook_url: \"https://r\"}\n        for: 5m",
        );
        assert!(lint(&load("rules.yaml", &fixed).expect("valid")).is_empty());
        let quiet = GOOD.replace("severity: page", "severity: ticket");
        assert!(lint(&load("rules.yaml", &quiet).expect("valid")).is_empty());
    }

    #[test]
    fn metric_math_is_validated() {
        let math = GOOD.replace(
            "        condition: {operator: \">\", threshold: 250}",
            "        expression: \"100 * errors / m\"\n        inputs:\n          errors: {namespace: Shop/Checkout, name: errors, stat: Sum}\n        condition: {operator: \">\", threshold: 5}",
        );
        let rule = load("rules.yaml", &math).expect("valid").remove(0);
        assert_eq!(rule.expression.as_deref(), Some("100 * errors / m"));
        let unknown = math.replace("100 * errors / m", "100 * RATE(faults) / m");
        let err = load("rules.yaml", &unknown)
            .expect_err("unknown input")
            .to_string();
        assert!(
            err.contains("expression") && err.contains("faults"),
            "{err}"
        );
        let bad_name = math
            .replace("          errors:", "          Errors:")
            .replace("100 * errors / m", "100 * m");
        let err = load("rules.yaml", &bad_name)
            .expect_err("bad input name")
            .to_string();
        assert!(err.contains("inputs.Errors"), "{err}");
        let scalar = math.replace("100 * errors / m", "AVG(m)");
        let err = load("rules.yaml", &scalar)
            .expect_err("a number, not a series")
            .to_string();
        assert!(
            err.contains("expression") && err.contains("gives a number"),
            "{err}"
        );
        let unknown_function = math.replace("100 * errors / m", "STDDEV(m)");
        let err = load("rules.yaml", &unknown_function)
            .expect_err("an unknown function")
            .to_string();
        assert!(err.contains("STDDEV is not a function"), "{err}");
        let orphan = math.replace("        expression: \"100 * errors / m\"\n", "");
        let err = load("rules.yaml", &orphan)
            .expect_err("inputs without expression")
            .to_string();
        assert!(err.contains("inputs"), "{err}");
    }

    #[test]
    fn m_of_n_is_validated() {
        let bad = GOOD.replace("lookback: 5m", "").replace(
            "condition: {operator: \">\", threshold: 250}",
            "condition: {operator: \">\", threshold: 250}\n        evaluation_periods: 3\n        datapoints_to_alarm: 4",
        );
        let err = load("rules.yaml", &bad).expect_err("M > N").to_string();
        assert!(err.contains("datapoints_to_alarm"), "{err}");
        let good = bad.replace("datapoints_to_alarm: 4", "datapoints_to_alarm: 2");
        let rule = load("rules.yaml", &good).expect("valid").remove(0);
        assert_eq!(
            (rule.datapoints_to_alarm(), rule.evaluation_periods()),
            (2, 3)
        );
        assert_eq!(rule.lookback(), Span(420));
    }

    #[test]
    fn percentile_stats_are_valid() {
        assert!(valid_stat("p99"));
        assert!(valid_stat("p99.9"));
        assert!(!valid_stat("p101"));
        assert!(!valid_stat("median"));
    }
}
