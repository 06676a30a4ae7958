//! Where the function finds its rules, its state and its topics: the environment the template
//! sets.

use std::collections::BTreeSet;

use vigil_shared::aws::required_env;
use vigil_shared::config::SmokeConfig;
use vigil_shared::math::MathMode;
use vigil_shared::{ConfigSource, Result};

use crate::outbox::StateLocation;

/// The environment variables alert reads (the template sets them; a test checks both agree).
pub mod env {
    /// `s3://bucket/key` or a path of the rules file (with its `policy`).
    pub const RULES: &str = "VIGIL_RULES";
    /// The default topic of notifications.
    pub const TOPIC_ARN: &str = "VIGIL_ALERT_TOPIC_ARN";
    /// The bucket of the alert state.
    pub const STATE_BUCKET: &str = "VIGIL_STATE_BUCKET";
    /// Optional: the state's key (default `state/alert.json`).
    pub const STATE_KEY: &str = "VIGIL_STATE_KEY";
    /// Optional: `s3://bucket/key` or a path of the silences (JSON).
    pub const SILENCES: &str = "VIGIL_SILENCES";
    /// Optional: the other topics routes may name, comma-separated (the stack's
    /// `AlertRouteTopicArns`, which its role may publish to).
    pub const ALLOWED_TOPIC_ARNS: &str = "VIGIL_ALLOWED_TOPIC_ARNS";
    /// Optional: `cloudwatch` (the default) or `local`, who evaluates rules' metric math
    /// (`vigil_shared::math::MathMode`).
    pub const METRIC_MATH: &str = "VIGIL_METRIC_MATH";
    /// Optional: the smoke test's rules file (`s3://bucket/key` or a path), read by a run
    /// invoked with `"vigil": "smoke"`.
    pub const SMOKE_RULES: &str = "VIGIL_SMOKE_RULES";
    /// Optional (required with [`SMOKE_RULES`]): the only topic a smoke run notifies.
    pub const SMOKE_TOPIC_ARN: &str = "VIGIL_SMOKE_TOPIC_ARN";
    /// Optional: where in the state's bucket the weekly reviews are written (default
    /// `reviews/alert/`).
    pub const REVIEW_PREFIX: &str = "VIGIL_REVIEW_PREFIX";
    pub const REQUIRED: &[&str] = &[RULES, TOPIC_ARN, STATE_BUCKET];
    pub const OPTIONAL: &[&str] = &[
        STATE_KEY,
        SILENCES,
        ALLOWED_TOPIC_ARNS,
        METRIC_MATH,
        SMOKE_RULES,
        SMOKE_TOPIC_ARN,
        REVIEW_PREFIX,
    ];
}

/// Where a smoke run's state lives, beside the stack's own and never in it.
pub const SMOKE_STATE_KEY: &str = "smoke/state/alert.json";

/// Where the function finds its rules and where it notifies.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    /// `VIGIL_RULES`: `s3://bucket/key` or a file path.
    pub rules: ConfigSource,
    /// `VIGIL_ALERT_TOPIC_ARN`.
    pub topic_arn: String,
    /// `VIGIL_STATE_BUCKET` and `VIGIL_STATE_KEY` (default `state/alert.json`).
    pub state: StateLocation,
    /// `VIGIL_SILENCES`: a JSON list of silences (`s3://bucket/key` or a path); optional, and
    /// a missing object means no silence.
    pub silences: Option<ConfigSource>,
    /// The topics routes may name: the default topic and `VIGIL_ALLOWED_TOPIC_ARNS`.
    pub allowed_topics: BTreeSet<String>,
    /// `VIGIL_SMOKE_RULES` and `VIGIL_SMOKE_TOPIC_ARN`, when the stack has a smoke test.
    pub smoke: Option<SmokeConfig>,
    /// `VIGIL_METRIC_MATH`: who evaluates metric math.
    pub math: MathMode,
    /// `VIGIL_REVIEW_PREFIX`: the weekly reviews' keys in the state's bucket.
    pub review_prefix: String,
}

/// Where reviews go when `VIGIL_REVIEW_PREFIX` is not set.
pub const REVIEW_PREFIX: &str = "reviews/alert/";

/// The allowed set: `default` and the comma-separated ARNs of `list`.
pub fn allowed_topics(default: &str, list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .chain(std::iter::once(default.to_owned()))
        .collect()
}

impl AlertConfig {
    pub fn from_env() -> Result<Self> {
        let rules = required_env(env::RULES)?.parse()?;
        let topic_arn = required_env(env::TOPIC_ARN)?;
        Ok(Self {
            rules,
            allowed_topics: allowed_topics(
                &topic_arn,
                &std::env::var(env::ALLOWED_TOPIC_ARNS).unwrap_or_default(),
            ),
            topic_arn,
            state: StateLocation {
                bucket: required_env(env::STATE_BUCKET)?,
                key: std::env::var(env::STATE_KEY)
                    .unwrap_or_else(|_| "state/alert.json".to_owned()),
            },
            silences: match std::env::var(env::SILENCES) {
                Ok(v) if !v.trim().is_empty() => Some(v.parse()?),
                _ => None,
            },
            smoke: SmokeConfig::from_env(env::SMOKE_RULES, env::SMOKE_TOPIC_ARN)?,
            math: MathMode::parse(&std::env::var(env::METRIC_MATH).unwrap_or_default())?,
            review_prefix: std::env::var(env::REVIEW_PREFIX)
                .ok()
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| REVIEW_PREFIX.to_owned()),
        })
    }

    /// The configuration a smoke run uses: the smoke rules, the smoke topic as the default and
    /// only topic, no silences, and a state of its own in the same bucket. A stack without a
    /// smoke configuration refuses smoke runs.
    pub fn smoke(&self) -> Result<AlertConfig> {
        let smoke = SmokeConfig::required(&self.smoke, env::SMOKE_RULES, env::SMOKE_TOPIC_ARN)?;
        Ok(AlertConfig {
            rules: smoke.file.clone(),
            topic_arn: smoke.topic_arn.clone(),
            state: StateLocation {
                bucket: self.state.bucket.clone(),
                key: SMOKE_STATE_KEY.to_owned(),
            },
            silences: None,
            allowed_topics: BTreeSet::from([smoke.topic_arn.clone()]),
            smoke: None,
            math: self.math,
            review_prefix: format!("smoke/{}", self.review_prefix),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_shared::Error;

    #[test]
    fn the_default_topic_is_always_allowed() {
        let set = allowed_topics("arn:alerts", " arn:a , ,arn:b");
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            ["arn:a", "arn:alerts", "arn:b"]
        );
        assert_eq!(allowed_topics("arn:alerts", "").len(), 1);
    }

    fn config(smoke: Option<SmokeConfig>) -> AlertConfig {
        AlertConfig {
            rules: "s3://b/config/rules.yaml".parse().expect("source"),
            topic_arn: "arn:alerts".into(),
            state: StateLocation {
                bucket: "b".into(),
                key: "state/alert.json".into(),
            },
            silences: Some("s3://b/config/silences.json".parse().expect("source")),
            allowed_topics: allowed_topics("arn:alerts", "arn:pager"),
            smoke,
            math: MathMode::Local,
            review_prefix: REVIEW_PREFIX.to_owned(),
        }
    }

    #[test]
    fn a_smoke_run_reads_its_own_rules_and_state_and_notifies_only_its_topic() {
        let smoke = SmokeConfig {
            file: "s3://b/smoke/config/rules.yaml".parse().expect("source"),
            topic_arn: "arn:smoke".into(),
        };
        let run = config(Some(smoke)).smoke().expect("smoke config");
        assert_eq!(run.rules.to_string(), "s3://b/smoke/config/rules.yaml");
        assert_eq!(run.topic_arn, "arn:smoke");
        assert_eq!(
            run.allowed_topics.into_iter().collect::<Vec<_>>(),
            ["arn:smoke"]
        );
        assert_eq!(
            (run.state.bucket.as_str(), run.state.key.as_str()),
            ("b", SMOKE_STATE_KEY)
        );
        assert!(run.silences.is_none());
        assert_eq!(
            run.math,
            MathMode::Local,
            "a smoke run evaluates metric math as the stack does"
        );
        assert!(matches!(config(None).smoke(), Err(Error::InvalidInput(_))));
    }
}
