//! Rule packs: the rules a team would otherwise write from a blank file, shipped with the
//! command (`config/packs/NAME/`), each with its parameters, its unit tests and, for packs
//! fed by Prometheus, the recording rules it needs.
//!
//! A pack's files are templates: `${name}` stands for a parameter, replaced when the pack is
//! shown, added or tested. A `text` parameter's value goes between double quotes in the
//! templates, so it may hold any printable character but `"` and `\`; a `number` must be a
//! finite number and a `duration` a span (`15m`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One pack as the command carries it.
#[derive(Debug)]
pub struct Pack {
    pub name: &'static str,
    meta: &'static str,
    rules: &'static str,
    tests: &'static str,
    /// The Prometheus recording rules the pack's series come from, and their promtool tests.
    pub recording: Option<Recording>,
}

/// A pack's Prometheus recording rules: `config/{path}.yaml` and its `promtool test rules`
/// file `config/{path}.test.yaml`.
#[derive(Clone, Copy, Debug)]
pub struct Recording {
    pub path: &'static str,
    pub rules: &'static str,
    pub tests: &'static str,
}

macro_rules! pack {
    ($name:literal) => {
        Pack {
            name: $name,
            meta: include_str!(concat!("../../config/packs/", $name, "/pack.yaml")),
            rules: include_str!(concat!("../../config/packs/", $name, "/rules.yaml")),
            tests: include_str!(concat!("../../config/packs/", $name, "/rules.test.yaml")),
            recording: None,
        }
    };
    ($name:literal, prometheus $file:literal) => {
        Pack {
            recording: Some(Recording {
                path: $file,
                rules: include_str!(concat!("../../config/", $file, ".yaml")),
                tests: include_str!(concat!("../../config/", $file, ".test.yaml")),
            }),
            ..pack!($name)
        }
    };
}

/// What a Prometheus's `write_relabel_configs` keeps for the packs (README, "Point Prometheus at
/// it"): `up` and each series the packs' recording rules record, and no other recorded series
/// (the kube-prometheus mixins record hundreds, each a custom metric in CloudWatch).
pub const REMOTE_WRITE_KEEP: &str = "up|job:http_.+|namespace_(deployment|statefulset|container|job_name|horizontalpodautoscaler):kube_.+|node:kube_node_not_ready:max|cluster:(apiserver_request_errors|apiserver_request_duration_seconds|kubelet_up):.+|host(_mountpoint)?:node_.+";

/// Every pack, in the order `vigil rules pack list` shows them.
pub static PACKS: [Pack; 7] = [
    // The recording rules ingest's README recommends.
    pack!("application", prometheus "prometheus-recording-rules"),
    pack!("kubernetes-services", prometheus "packs/kubernetes-services/prometheus"),
    pack!("kubernetes-infrastructure", prometheus "packs/kubernetes-infrastructure/prometheus"),
    pack!("node", prometheus "packs/node/prometheus"),
    pack!("container-insights"),
    pack!("aws-lambda"),
    pack!("vigil"),
];

/// What a pack says of itself (`pack.yaml`).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub summary: String,
    /// What the pack needs to find its series (a sender, labels, an agent).
    pub requires: String,
    pub parameters: Vec<Parameter>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub name: String,
    pub kind: Kind,
    pub default: String,
    pub description: String,
}

#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Number,
    Duration,
}

impl Kind {
    fn check(self, value: &str) -> Result<(), String> {
        match self {
            Self::Text if value.is_empty() => Err("must not be empty".to_owned()),
            Self::Text
                if value
                    .chars()
                    .any(|c| c == '"' || c == '\\' || c.is_control()) =>
            {
                Err("may not hold a double quote, a backslash or a control character".to_owned())
            }
            Self::Text => Ok(()),
            Self::Number => match value.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(()),
                _ => Err("must be a finite number".to_owned()),
            },
            Self::Duration => vigil_shared::duration::parse_span(value).map(|_| ()),
        }
    }
}

/// The pack named `name`.
pub fn find(name: &str) -> Result<&'static Pack, String> {
    PACKS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PACKS.iter().map(|p| p.name).collect();
        format!("no pack {name:?}; the packs are {}", names.join(", "))
    })
}

impl Pack {
    pub fn meta(&self) -> Meta {
        vigil_shared::config::parse_yaml::<Meta>(&format!("pack {}", self.name), self.meta)
            .unwrap_or_else(|e| panic!("the pack {} ships a broken pack.yaml: {e}", self.name))
    }

    /// The parameters' values: the defaults, with `set` (`name=value`) over them.
    pub fn values(&self, set: &[String]) -> Result<BTreeMap<String, String>, String> {
        let meta = self.meta();
        let mut values: BTreeMap<String, String> = meta
            .parameters
            .iter()
            .map(|p| (p.name.clone(), p.default.clone()))
            .collect();
        for item in set {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("--set {item:?}: expected NAME=VALUE"))?;
            let Some(p) = meta.parameters.iter().find(|p| p.name == name) else {
                let names: Vec<&str> = meta.parameters.iter().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "--set {name}: the pack {} has no such parameter; it has {}",
                    self.name,
                    names.join(", ")
                ));
            };
            p.kind
                .check(value)
                .map_err(|why| format!("--set {name}={value:?}: {why}"))?;
            values.insert(name.to_owned(), value.to_owned());
        }
        Ok(values)
    }

    /// The pack's rules file with `values`.
    pub fn rules(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        render(self.rules, values).map_err(|e| format!("pack {} rules: {e}", self.name))
    }

    /// How the pack's rules read CloudWatch with `values`: how many rules there are, and how
    /// many of them watch every series of a `*` dimension, each series found one metric
    /// requested per run (README "What the reads cost").
    pub fn reads(&self, values: &BTreeMap<String, String>) -> Result<Reads, String> {
        let rules = vigil_alert::rules::load(&format!("pack {}", self.name), &self.rules(values)?)
            .map_err(|e| e.to_string())?;
        let any = |dims: &BTreeMap<String, String>| dims.values().any(|v| v == "*");
        Ok(Reads {
            rules: rules.len(),
            per_series: rules
                .iter()
                .filter(|r| {
                    any(&r.metric.dimensions) || r.inputs.values().any(|i| any(&i.dimensions))
                })
                .count(),
        })
    }

    /// The pack's unit tests with `values`; they name the rules file `rules.yaml`.
    pub fn tests(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        render(self.tests, values).map_err(|e| format!("pack {} tests: {e}", self.name))
    }
}

/// Runs the pack's unit tests with `values`, through `vigil rules test`'s own code: the
/// rendered rules and tests are written to a folder of their own under the system's temporary
/// directory, removed afterwards.
pub async fn test(pack: &Pack, values: &BTreeMap<String, String>) -> crate::rules_test::FileResult {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vigil-pack-{}-{}-{}",
        pack.name,
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let file = dir.join("rules.test.yaml");
    let written = pack.rules(values).and_then(|rules| {
        let tests = pack.tests(values)?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("rules.yaml"), rules).map_err(|e| e.to_string())?;
        std::fs::write(&file, tests).map_err(|e| e.to_string())
    });
    let mut result = match written {
        Ok(()) => crate::rules_test::run_file(&file).await,
        Err(e) => crate::rules_test::FileResult {
            error: Some(e),
            ..Default::default()
        },
    };
    let _ = std::fs::remove_dir_all(&dir);
    result.file = format!("pack {}", pack.name);
    result
}

/// `template` with every `${name}` replaced by its value; a name without a value is an error.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "a `${` is never closed".to_owned())?;
        let name = &after[..end];
        let value = values
            .get(name)
            .ok_or_else(|| format!("`${{{name}}}` is not a parameter of the pack"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What `metrics` requested at every run cost in `GetMetricData` over 30 days at one run a
/// minute (43,200 runs), at $0.01 per 1,000 (us-east-1).
pub fn monthly_dollars(metrics: usize) -> f64 {
    metrics as f64 * 43_200.0 * 0.01 / 1_000.0
}

/// What [`Pack::reads`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reads {
    pub rules: usize,
    /// Rules over a `*` dimension: one series, and one metric requested per run, per value.
    pub per_series: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_read_every_minute_costs_43_cents_a_month() {
        assert!((monthly_dollars(1) - 0.432).abs() < 1e-9);
        assert!((monthly_dollars(200) - 86.4).abs() < 1e-9);
    }

    #[test]
    fn reads_count_the_rules_that_watch_every_series() {
        let pack = find("kubernetes-services").expect("pack");
        let defaults = pack.values(&[]).expect("defaults");
        assert_eq!(
            pack.reads(&defaults),
            Ok(Reads {
                rules: 6,
                per_series: 6
            })
        );
        // Vigil watching itself names most of its series: only VigilIngestSilent (every
        // source) and VigilBackupVerifyNotRun (every function) read all of a dimension's.
        let vigil = find("vigil").expect("pack");
        assert_eq!(
            vigil.reads(&vigil.values(&[]).expect("defaults")),
            Ok(Reads {
                rules: 5,
                per_series: 2
            })
        );
    }

    #[test]
    fn parameters_are_checked_by_kind() {
        let pack = find("aws-lambda").expect("pack");
        assert!(
            pack.values(&["nope=1".into()])
                .expect_err("unknown")
                .contains("no such parameter")
        );
        assert!(
            pack.values(&["team".into()])
                .expect_err("no =")
                .contains("NAME=VALUE")
        );
        let number = pack
            .meta()
            .parameters
            .into_iter()
            .find(|p| p.kind == Kind::Number)
            .expect("a number");
        let err = pack
            .values(&[format!("{}=lots", number.name)])
            .expect_err("not a number");
        assert!(err.contains("finite number"), "{err}");
        let err = pack.values(&["team=a\"b".into()]).expect_err("quote");
        assert!(err.contains("double quote"), "{err}");
        assert!(
            find("nope")
                .expect_err("unknown pack")
                .contains("aws-lambda")
        );
    }

    #[test]
    fn render_refuses_what_it_cannot_fill() {
        let values = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        assert_eq!(render("x ${a} y", &values).expect("filled"), "x 1 y");
        assert!(
            render("${b}", &values)
                .expect_err("unknown")
                .contains("`${b}`")
        );
        assert!(
            render("${a", &values)
                .expect_err("open")
                .contains("never closed")
        );
        // Prometheus-style templates in annotations are left to the alert function.
        assert_eq!(
            render("{{ $value }}", &values).expect("kept"),
            "{{ $value }}"
        );
    }
}
