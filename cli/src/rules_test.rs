//! `vigil rules test`: unit tests for alert rules, in the manner of `promtool test rules`.
//! Synthetic series go through the alert function's own evaluation ([`crate::sim::replay`]),
//! and the alerts firing at given times are compared with the expected ones.
//!
//! ```yaml
//! rule_files: [rules.yaml]          # relative to this file
//! evaluation_interval: 1m           # how often the rules run (default 1m)
//! tests:
//!   - name: two slow minutes page
//!     interval: 1m                  # spacing of the values (default: evaluation_interval)
//!     input_series:
//!       - metric: {namespace: Shop, name: latency, dimensions: {service: checkout}}
//!         values: "120 310 330 330"
//!     alert_rule_test:
//!       - eval_time: 4m
//!         alertname: CheckoutLatencyHigh
//!         exp_alerts:
//!           - exp_labels: {severity: page}
//!             exp_annotations: {summary: "Checkout requests take 330 ms"}
//! ```
//!
//! A value at index `i` is the data point of the period starting at `i × interval`; the rules
//! compare a period once it has ended, as in the function. A rule with an `expression` is
//! evaluated by Vigil's metric-math engine over the input series of its `m` and its inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use vigil_alert::policy::Policy;
use vigil_alert::{Outcome, Rule};
use vigil_shared::Dimension;
use vigil_shared::duration::Span;

use crate::sim::{MAX_EVALUATIONS, ReplayReader, SeriesKey, replay};
use crate::values;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pub rule_files: Vec<String>,
    #[serde(default)]
    pub evaluation_interval: Option<Span>,
    pub tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestGroup {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub interval: Option<Span>,
    #[serde(default)]
    pub input_series: Vec<InputSeries>,
    #[serde(default)]
    pub alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    pub notification_test: Vec<NotificationTest>,
}

/// The notifications of one rule sent from `from` (included) to `until` (excluded), as its
/// receivers would count them (a grouped message once, a retry under one key once): Vigil's
/// addition to promtool's format. What fires and resolves between two `eval_time`s is
/// invisible to `alert_rule_test`; here `exp_firing: 0` over a spike proves that nobody was
/// paged for it at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationTest {
    pub alertname: String,
    #[serde(default)]
    pub from: Span,
    pub until: Span,
    pub exp_firing: usize,
    #[serde(default)]
    pub exp_resolved: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    pub metric: MetricRef,
    pub values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRef {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// Matches any statistic when left out.
    #[serde(default)]
    pub stat: Option<String>,
}

impl MetricRef {
    /// The key its series is served under.
    pub fn key(&self) -> SeriesKey {
        let mut dimensions: Vec<Dimension> = self
            .dimensions
            .iter()
            .map(|(k, v)| Dimension {
                name: k.clone(),
                value: v.clone(),
            })
            .collect();
        dimensions.sort();
        SeriesKey {
            namespace: self.namespace.clone(),
            metric: self.name.clone(),
            dimensions,
            stat: self.stat.clone(),
            period: None,
            math: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTest {
    pub eval_time: Span,
    pub alertname: String,
    #[serde(default)]
    pub exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    #[serde(default)]
    pub exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub exp_annotations: BTreeMap<String, String>,
}

/// Where the synthetic timeline starts; test files speak in offsets from it.
pub fn origin() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap_or(DateTime::UNIX_EPOCH) // 2026-01-01
}

/// The longest offset a test file may use (ten years): far beyond any test, far within
/// chrono's range, so no time arithmetic below can overflow.
pub const MAX_OFFSET_SECONDS: u64 = 10 * 365 * 86_400;

/// A duration as a chrono offset, refused past [`MAX_OFFSET_SECONDS`]; `what` names it in the
/// error. Test files and the command line's duration arguments both go through it.
pub fn offset(s: Span, what: &str) -> Result<Duration, String> {
    if s.seconds() > MAX_OFFSET_SECONDS {
        return Err(format!("{what}: {s} is longer than ten years"));
    }
    // In range by the check above.
    Ok(Duration::seconds(s.seconds() as i64))
}

/// An alert firing at an evaluation time, as the test compares it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FiringAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// One failed expectation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    pub test: String,
    pub alertname: String,
    pub eval_time: String,
    /// The alerts expected firing, or the notifications expected sent.
    pub expected: serde_json::Value,
    pub got: serde_json::Value,
}

/// A test file's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FileResult {
    pub file: String,
    pub tests: usize,
    pub checks: usize,
    pub failures: Vec<Failure>,
    /// Set when the file (or a rules file it names) could not be used at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FileResult {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.failures.is_empty()
    }
}

/// Loads the rules files a test file names (paths relative to it).
fn load_rules(dir: &Path, files: &[String]) -> Result<(Vec<Rule>, Policy), String> {
    let mut rules = Vec::new();
    let mut policy = None;
    for f in files {
        let path: PathBuf = dir.join(f);
        let (mut r, p) = vigil_alert::rule_files::read_local(&path.display().to_string())
            .map_err(|e| e.to_string())?;
        for rule in &r {
            if rules.iter().any(|known: &Rule| known.alert == rule.alert) {
                return Err(format!(
                    "{}: alert {:?} is also in an earlier rules file; names must be unique",
                    path.display(),
                    rule.alert
                ));
            }
        }
        rules.append(&mut r);
        // The first file's policy governs, as one rules file does in the function.
        policy.get_or_insert(p);
    }
    Ok((rules, policy.unwrap_or(Policy::NONE)))
}

/// Runs every test of one file.
pub async fn run_file(path: &Path) -> FileResult {
    let mut result = FileResult {
        file: path.display().to_string(),
        ..FileResult::default()
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            result.error = Some(format!("{}: {e}", path.display()));
            return result;
        }
    };
    let file: TestFile = match vigil_shared::config::parse_yaml(&result.file, &text) {
        Ok(f) => f,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let (rules, policy) = match load_rules(dir, &file.rule_files) {
        Ok(r) => r,
        Err(e) => {
            result.error = Some(e);
            return result;
        }
    };
    let every = match offset(
        file.evaluation_interval.unwrap_or(Span(60)),
        "evaluation_interval",
    ) {
        Ok(d) if d > Duration::zero() => Ok(d),
        Ok(_) => Err("evaluation_interval must be positive".to_owned()),
        Err(e) => Err(e),
    };
    let every = match every {
        Ok(d) => d,
        Err(e) => {
            result.error = Some(format!("{}: {e}", result.file));
            return result;
        }
    };
    for (i, group) in file.tests.iter().enumerate() {
        let name = if group.name.is_empty() {
            format!("tests[{i}]")
        } else {
            group.name.clone()
        };
        result.tests += 1;
        match run_group(&name, group, &rules, &policy, every).await {
            Ok((checks, mut failures)) => {
                result.checks += checks;
                result.failures.append(&mut failures);
            }
            Err(e) => {
                result.error = Some(format!("{}: {name}: {e}", result.file));
                return result;
            }
        }
    }
    result
}

async fn run_group(
    name: &str,
    group: &TestGroup,
    rules: &[Rule],
    policy: &Policy,
    every: Duration,
) -> Result<(usize, Vec<Failure>), String> {
    let spacing = match group.interval {
        Some(s) => offset(s, "interval")?,
        None => every,
    };
    if spacing <= Duration::zero() {
        return Err("interval must be positive".to_owned());
    }
    let t0 = origin();
    let mut reader = ReplayReader::default();
    for (i, input) in group.input_series.iter().enumerate() {
        let points =
            values::parse(&input.values).map_err(|e| format!("input_series[{i}].values: {e}"))?;
        // Both factors are bounded (ten years, a million points): the product fits an i64.
        let span_seconds = spacing.num_seconds() * points.len() as i64;
        if span_seconds > MAX_OFFSET_SECONDS as i64 {
            return Err(format!(
                "input_series[{i}]: {} points every {} s span more than ten years",
                points.len(),
                spacing.num_seconds()
            ));
        }
        let series = points
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                p.map(|v| (t0 + Duration::seconds(spacing.num_seconds() * k as i64), v))
            })
            .collect();
        reader.series.push((input.metric.key(), series));
    }
    let mut last = Duration::zero();
    for (i, test) in group.notification_test.iter().enumerate() {
        let at = format!("notification_test[{i}]");
        let (from, until) = (offset(test.from, &at)?, offset(test.until, &at)?);
        if until <= from {
            return Err(format!("{at}: until must come after from"));
        }
        if !rules.iter().any(|r| r.alert == test.alertname) {
            return Err(format!("{at}: no rule is named {:?}", test.alertname));
        }
        last = last.max(until - Duration::seconds(1));
    }
    for (i, test) in group.alert_rule_test.iter().enumerate() {
        last = last.max(offset(
            test.eval_time,
            &format!("alert_rule_test[{i}].eval_time"),
        )?);
        if !rules.iter().any(|r| r.alert == test.alertname) {
            return Err(format!(
                "alert_rule_test[{i}]: no rule is named {:?}",
                test.alertname
            ));
        }
    }
    let steps = last.num_seconds() / every.num_seconds().max(1);
    if steps >= MAX_EVALUATIONS as i64 {
        return Err(format!(
            "the last eval_time needs {steps} evaluations; at most {MAX_EVALUATIONS}"
        ));
    }
    let times: Vec<DateTime<Utc>> = (0..=steps)
        .map(|k| t0 + Duration::seconds(every.num_seconds() * k))
        .collect();
    let replayed = replay(&reader, rules, policy, &times, |_| {})
        .await
        .map_err(|e| e.to_string())?;

    let mut failures = Vec::new();
    for test in &group.alert_rule_test {
        // Checked above: at most ten years.
        let at = t0 + Duration::seconds(test.eval_time.seconds() as i64);
        // The run at eval_time, or the last one before it (times off the interval).
        let Some(run) = replayed.runs.iter().rev().find(|r| r.evaluated_at <= at) else {
            continue;
        };
        let rule = rules.iter().find(|r| r.alert == test.alertname);
        let got: Vec<FiringAlert> = run
            .rules
            .iter()
            .filter(|r| {
                r.alert == test.alertname && r.state == vigil_alert::state::Standing::Firing
            })
            .filter_map(|r| {
                let rule = rule?;
                let mut labels = vigil_alert::alert_labels(rule);
                labels.extend(r.series.clone());
                let value = match &r.outcome {
                    Outcome::Breaching { value, .. }
                    | Outcome::Ok { value, .. }
                    | Outcome::Undecided { value, .. } => Some(*value),
                    Outcome::NoData => None,
                };
                let annotations = rule
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), vigil_alert::render(v, value, &labels)))
                    .collect();
                Some(FiringAlert {
                    labels,
                    annotations,
                })
            })
            .collect();
        if !matches(&test.exp_alerts, &got) {
            failures.push(Failure {
                test: name.to_owned(),
                alertname: test.alertname.clone(),
                eval_time: test.eval_time.to_string(),
                expected: test
                    .exp_alerts
                    .iter()
                    .map(|e| {
                        serde_json::json!({"labels": e.exp_labels, "annotations": e.exp_annotations})
                    })
                    .collect(),
                got: serde_json::to_value(&got).unwrap_or_default(),
            });
        }
    }
    let sent = crate::sent::messages(&replayed.sent)?;
    for test in &group.notification_test {
        let (from, until) = (
            t0 + Duration::seconds(test.from.seconds() as i64),
            t0 + Duration::seconds(test.until.seconds() as i64),
        );
        let count = |status: vigil_alert::state::Status| {
            sent.iter()
                .filter(|m| m.at >= from && m.at < until)
                .filter(|m| {
                    m.alerts
                        .iter()
                        .any(|a| a.alertname == test.alertname && a.status == status)
                })
                .count()
        };
        let firing = count(vigil_alert::state::Status::Firing);
        let resolved = count(vigil_alert::state::Status::Resolved);
        if firing != test.exp_firing || test.exp_resolved.is_some_and(|r| r != resolved) {
            failures.push(Failure {
                test: name.to_owned(),
                alertname: test.alertname.clone(),
                eval_time: format!("{}..{}", test.from, test.until),
                expected: serde_json::json!({"firing": test.exp_firing, "resolved": test.exp_resolved}),
                got: serde_json::json!({"firing": firing, "resolved": resolved}),
            });
        }
    }
    Ok((
        group.alert_rule_test.len() + group.notification_test.len(),
        failures,
    ))
}

/// The expected alerts and the firing ones pair up one to one; each expected label and
/// annotation is present with that value (labels and annotations not listed are not compared).
/// Since an expectation may fit several alerts, the pairing is a bipartite matching (augmenting
/// paths), not a greedy first fit.
fn matches(expected: &[ExpectedAlert], got: &[FiringAlert]) -> bool {
    if expected.len() != got.len() {
        return false;
    }
    let fits = |e: &ExpectedAlert, g: &FiringAlert| {
        e.exp_labels.iter().all(|(k, v)| g.labels.get(k) == Some(v))
            && e.exp_annotations
                .iter()
                .all(|(k, v)| g.annotations.get(k) == Some(v))
    };
    let edges: Vec<Vec<usize>> = expected
        .iter()
        .map(|e| (0..got.len()).filter(|&j| fits(e, &got[j])).collect())
        .collect();
    // owner[j]: the expectation alert j is paired with.
    let mut owner: Vec<Option<usize>> = vec![None; got.len()];
    fn augment(
        i: usize,
        edges: &[Vec<usize>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for &j in &edges[i] {
            if seen[j] {
                continue;
            }
            seen[j] = true;
            if owner[j].is_none_or(|k| augment(k, edges, owner, seen)) {
                owner[j] = Some(i);
                return true;
            }
        }
        false
    }
    (0..expected.len()).all(|i| {
        let mut seen = vec![false; got.len()];
        augment(i, &edges, &mut owner, &mut seen)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firing(labels: &[(&str, &str)]) -> FiringAlert {
        FiringAlert {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            annotations: BTreeMap::new(),
        }
    }

    fn expect(labels: &[(&str, &str)]) -> ExpectedAlert {
        ExpectedAlert {
            exp_labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            exp_annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn expected_alerts_pair_one_to_one() {
        let got = [firing(&[("host", "a")]), firing(&[("host", "b")])];
        assert!(matches(
            &[expect(&[("host", "b")]), expect(&[("host", "a")])],
            &got
        ));
        assert!(
            !matches(&[expect(&[("host", "a")]), expect(&[("host", "a")])], &got),
            "one firing alert cannot meet two expectations"
        );
        assert!(!matches(&[expect(&[])], &got), "counts must agree");
        assert!(matches(&[], &[]));
        assert!(!matches(&[expect(&[("host", "c")])], &got[..1]));
    }

    /// Runs a test file against a rules file, both written to a directory of their own.
    async fn run_pair(name: &str, rules: &str, test: &str) -> FileResult {
        let dir = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("rules.yaml"), rules).expect("rules");
        let path = dir.join("rules.test.yaml");
        std::fs::write(&path, test).expect("test");
        let result = run_file(&path).await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// A rule on metric math is tested from the series of its statistic and its inputs: the
    /// error ratio (errors filled with 0) passes 5 % in the third and fourth minutes.
    #[tokio::test]
    async fn a_metric_math_rule_fires_on_its_input_series() {
        let result = run_pair(
            "math-test",
            r#"groups:
  - name: g
    rules:
      - alert: ErrorRatioHigh
        metric: {namespace: Shop, name: requests, stat: Sum, period: 1m}
        expression: "100 * FILL(errors, 0) / m"
        inputs:
          errors: {namespace: Shop, name: errors, stat: Sum}
        condition: {operator: ">", threshold: 5}
        evaluation_periods: 2
        labels: {severity: page}
"#,
            r#"rule_files: [rules.yaml]
tests:
  - input_series:
      - metric: {namespace: Shop, name: requests}
        values: "100 100 100 100 100 100"
      - metric: {namespace: Shop, name: errors}
        values: "_ 1 8 9 _ _"
    alert_rule_test:
      - eval_time: 3m
        alertname: ErrorRatioHigh
        exp_alerts: []
      - eval_time: 4m
        alertname: ErrorRatioHigh
        exp_alerts:
          - exp_labels: {severity: page}
      - eval_time: 6m
        alertname: ErrorRatioHigh
        exp_alerts: []
"#,
        )
        .await;
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.checks, 3, "{result:?}");
    }

    /// An objective's burn-rate alerts are tested like rules: 2 % errors against a 99.9 %
    /// objective burn the budget 20× too fast, which pages (14.4× over 1 h and 5 m) and
    /// tickets; five minutes after the errors stop, the short window clears and the page
    /// resolves while the slower windows still hold.
    #[tokio::test]
    async fn an_slos_burn_rate_alerts_fire_and_resolve_on_their_windows() {
        let result = run_pair(
            "slo-test",
            r#"groups:
  - name: slo
    slos:
      - name: CheckoutAvailability
        objective: 99.9
        total: {namespace: Shop, name: requests}
        errors: {namespace: Shop, name: errors}
        labels: {team: checkout}
        annotations: {runbook_url: "https://runbooks.example.com/slo"}
"#,
            r#"rule_files: [rules.yaml]
tests:
  - input_series:
      - metric: {namespace: Shop, name: requests}
        values: "1000x60"
      - metric: {namespace: Shop, name: errors}
        values: "20x29 0x31"
    alert_rule_test:
      - eval_time: 10m
        alertname: CheckoutAvailabilityBurnRate1h
        exp_alerts:
          - exp_labels: {severity: page, slo: CheckoutAvailability, team: checkout}
            exp_annotations:
              summary: "CheckoutAvailability: errors are spending the 30d error budget of 99.9 % 20 times as fast as it allows, over 1h and 5m (alert at 14.4x; 2 % of the budget gone in 1h at this rate)"
      - eval_time: 10m
        alertname: CheckoutAvailabilityBurnRate3d
        exp_alerts:
          - exp_labels: {severity: ticket}
      - eval_time: 40m
        alertname: CheckoutAvailabilityBurnRate1h
        exp_alerts: []
      - eval_time: 40m
        alertname: CheckoutAvailabilityBurnRate6h
        exp_alerts:
          - exp_labels: {severity: page}
"#,
        )
        .await;
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.checks, 4, "{result:?}");
    }

    /// An objective over one error-ratio series (a Prometheus recording rule's, in percent):
    /// 3 % for 40 of the 50 minutes recorded burns 24x over them and 30x over the last 5, which
    /// pages, and the page resolves once the last 5 minutes are clean.
    #[tokio::test]
    async fn an_slo_on_an_error_ratio_pages_and_resolves() {
        let result = run_pair(
            "slo-ratio-test",
            r#"groups:
  - name: slo
    slos:
      - name: CheckoutAvailability
        objective: 99.9
        error_ratio: {namespace: Prometheus, name: "job:errors:ratio_rate1m", unit: percent}
        ticket: []
"#,
            r#"rule_files: [rules.yaml]
tests:
  - input_series:
      - metric: {namespace: Prometheus, name: "job:errors:ratio_rate1m"}
        values: "0x9 3x39 0x30"
    alert_rule_test:
      - eval_time: 50m
        alertname: CheckoutAvailabilityBurnRate1h
        exp_alerts:
          - exp_labels: {severity: page, slo: CheckoutAvailability}
      - eval_time: 60m
        alertname: CheckoutAvailabilityBurnRate1h
        exp_alerts: []
"#,
        )
        .await;
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.checks, 2, "{result:?}");
    }

    #[test]
    fn a_loose_expectation_does_not_take_the_alert_a_strict_one_needs() {
        let got = [
            firing(&[("severity", "page"), ("service", "a")]),
            firing(&[("severity", "page"), ("service", "b")]),
        ];
        assert!(matches(
            &[expect(&[("severity", "page")]), expect(&[("service", "a")])],
            &got
        ));
    }
}
