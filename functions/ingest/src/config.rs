//! Ingest settings: environment variables for the simple cases, and an optional YAML file
//! (`VIGIL_INGEST_CONFIG`, `s3://bucket/key` or a path) for label mapping and log rules:
//!
//! ```yaml
//! json_push: {namespace: Vigil, max_metrics_per_request: 10000}
//! remote_write:
//!   namespace: Prometheus
//!   drop_labels: [instance, pod]        # replaces the default list
//!   keep_labels: [job, le, code]        # optional allow-list
//!   rename: {job: service}
//!   max_series_per_request: 20000
//!   storage_resolution: 60              # or 1: one-second (high-resolution) storage
//! logs:
//!   namespace: Logs
//!   rules:
//!     - metric: request_latency
//!       unit: Milliseconds
//!       pattern: 'status=(?P<status>\d{3}) latency=(?P<ms>[\d.]+)'
//!       value_from: ms
//!       dimensions: {status: status}
//! ```

use crate::env;
use serde::Deserialize;
use vigil_shared::config::parse_yaml;
use vigil_shared::metric::validate_namespace;
use vigil_shared::{ConfigSource, Error, ObjectStore, Result};

use crate::guard::Guard;
use crate::logs::LogRule;
use crate::mapping::MappingConfig;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JsonPushConfig {
    /// Namespace for pushes that name none.
    pub namespace: String,
    /// Metric entries accepted in one push.
    pub max_metrics_per_request: usize,
}

impl Default for JsonPushConfig {
    fn default() -> Self {
        Self {
            namespace: "Service".to_owned(),
            max_metrics_per_request: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Namespace for rules that name none.
    pub namespace: String,
    pub rules: Vec<LogRule>,
    /// Ingest EMF lines of Lambda functions' log groups (`/aws/lambda/...`), which CloudWatch
    /// has already extracted when a function wrote them: only for a function whose EMF it does
    /// not extract.
    pub emf_from_lambda: bool,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            namespace: "Logs".to_owned(),
            rules: Vec::new(),
            emf_from_lambda: false,
        }
    }
}

/// Everything ingest is configured with.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub json_push: JsonPushConfig,
    pub remote_write: MappingConfig,
    pub logs: LogsConfig,
    /// Namespace of Vigil's own counters (`VIGIL_SELF_NAMESPACE`, default `Vigil`).
    #[serde(skip)]
    pub self_namespace: String,
    /// Ingest's own log group (`AWS_LAMBDA_LOG_GROUP_NAME`).
    #[serde(skip)]
    pub own_log_group: Option<String>,
}

impl IngestConfig {
    /// Parses and validates a config file; errors name the file and the field.
    pub fn parse(origin: &str, text: &str) -> Result<Self> {
        let config: IngestConfig = parse_yaml(origin, text)?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        validate_namespace(&self.json_push.namespace)
            .map_err(|r| Error::Config(format!("{origin}: json_push.namespace: {r}")))?;
        validate_namespace(&self.logs.namespace)
            .map_err(|r| Error::Config(format!("{origin}: logs.namespace: {r}")))?;
        self.remote_write.validate(origin)?;
        for (i, rule) in self.logs.rules.iter().enumerate() {
            rule.validate(&format!("{origin}: logs.rules[{i}]"))?;
        }
        self.refuse_own_namespaces(origin)
    }

    /// What ingest refuses, from this configuration.
    pub fn guard(&self) -> Guard {
        Guard {
            own_namespace: if self.self_namespace.is_empty() {
                Guard::default().own_namespace
            } else {
                self.self_namespace.clone()
            },
            own_log_group: self.own_log_group.clone(),
            emf_from_lambda: self.logs.emf_from_lambda,
        }
    }

    /// No namespace this configuration writes to may be Vigil's own.
    fn refuse_own_namespaces(&self, origin: &str) -> Result<()> {
        let guard = self.guard();
        let mut named = vec![
            (
                "json_push.namespace".to_owned(),
                self.json_push.namespace.as_str(),
            ),
            (
                "remote_write.namespace".to_owned(),
                self.remote_write.namespace.as_str(),
            ),
            ("logs.namespace".to_owned(), self.logs.namespace.as_str()),
        ];
        for (i, rule) in self.logs.rules.iter().enumerate() {
            if let Some(ns) = &rule.namespace {
                named.push((format!("logs.rules[{i}].namespace"), ns.as_str()));
            }
        }
        for (field, namespace) in named {
            guard
                .namespace(namespace)
                .map_err(|r| Error::Config(format!("{origin}: {field}: {r}")))?;
        }
        Ok(())
    }

    /// The configuration from the environment: the file named by `VIGIL_INGEST_CONFIG` if any,
    /// then `VIGIL_NAMESPACE` and `VIGIL_MAX_METRICS_PER_REQUEST` over its JSON push settings.
    /// `store` makes the store the file is read from, only when there is one.
    pub async fn from_env<S: ObjectStore>(store: impl FnOnce() -> S) -> Result<Self> {
        let mut config = match std::env::var(env::CONFIG) {
            Ok(location) if !location.trim().is_empty() => {
                let source: ConfigSource = location.parse()?;
                Self::parse(&source.to_string(), &source.read(&store()).await?)?
            }
            _ => Self::default(),
        };
        if let Ok(ns) = std::env::var(env::NAMESPACE) {
            validate_namespace(&ns).map_err(|r| Error::Config(format!("VIGIL_NAMESPACE: {r}")))?;
            config.json_push.namespace = ns;
        }
        config.own_log_group = std::env::var(env::LOG_GROUP)
            .ok()
            .filter(|g| !g.trim().is_empty());
        if let Ok(limit) = std::env::var(env::MAX_METRICS_PER_REQUEST) {
            config.json_push.max_metrics_per_request = limit.parse().map_err(|_| {
                Error::Config(format!(
                    "VIGIL_MAX_METRICS_PER_REQUEST: {limit:?} is not a whole number"
                ))
            })?;
        }
        config.self_namespace =
            std::env::var(env::SELF_NAMESPACE).unwrap_or_else(|_| "Vigil".to_owned());
        config.refuse_own_namespaces("the environment and the config file")?;
        Ok(config)
    }

    /// Defaults, with Vigil's own counters in `Vigil`.
    pub fn new() -> Self {
        Self {
            self_namespace: "Vigil".to_owned(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_shared::Resolution;

    #[test]
    fn parses_the_documented_file() {
        let text = r#"
json_push: {namespace: Shop, max_metrics_per_request: 500}
remote_write:
  namespace: K8s
  drop_labels: [instance]
  rename: {job: service}
logs:
  rules:
    - metric: latency
      pattern: 'latency=(?P<ms>\d+)'
      value_from: ms
"#;
        let c = IngestConfig::parse("ingest.yaml", text).expect("valid");
        assert_eq!(c.json_push.namespace, "Shop");
        assert_eq!(c.remote_write.namespace, "K8s");
        assert_eq!(c.remote_write.max_series_per_request, 20_000);
        assert_eq!(c.logs.namespace, "Logs");
        assert_eq!(c.logs.rules.len(), 1);
        assert_eq!(c.remote_write.storage_resolution, Resolution::Standard);
    }

    #[test]
    fn storage_resolution_is_one_or_sixty_seconds() {
        let high = IngestConfig::parse("ingest.yaml", "remote_write: {storage_resolution: 1}\n")
            .expect("valid");
        assert_eq!(high.remote_write.storage_resolution, Resolution::High);
        let err = IngestConfig::parse("ingest.yaml", "remote_write: {storage_resolution: 10}\n")
            .expect_err("10 s")
            .to_string();
        assert!(
            err.contains("ingest.yaml") && err.contains("1 s (high) or 60 s"),
            "{err}"
        );
    }

    /// No configured namespace may be Vigil's own: refused at load, naming the field.
    #[test]
    fn vigils_own_namespaces_cannot_be_configured() {
        for (text, field) in [
            ("json_push: {namespace: Vigil}\n", "json_push.namespace"),
            (
                "remote_write: {namespace: Vigil/alert}\n",
                "remote_write.namespace",
            ),
            ("logs: {namespace: vigil}\n", "logs.namespace"),
            (
                "logs:\n  rules:\n    - {metric: Heartbeat, namespace: Vigil, pattern: x}\n",
                "logs.rules[0].namespace",
            ),
        ] {
            let err = IngestConfig::parse("ingest.yaml", text)
                .expect_err(text)
                .to_string();
            assert!(err.contains(field) && err.contains("Vigil's own"), "{err}");
        }
        assert_eq!(IngestConfig::default().json_push.namespace, "Service");
    }

    #[test]
    fn errors_name_file_and_field() {
        let err = IngestConfig::parse("ingest.yaml", "remote_write:\n  namespce: X\n")
            .expect_err("typo")
            .to_string();
        assert!(
            err.contains("ingest.yaml:2:") && err.contains("namespce"),
            "{err}"
        );
        let err = IngestConfig::parse("ingest.yaml", "logs:\n  rules:\n    - {metric: m}\n")
            .expect_err("no pattern")
            .to_string();
        assert!(err.contains("logs.rules[0]: pattern"), "{err}");
    }
}
