//! Where the function finds its rules, its state and its topics: the environment the template
//! sets.

use std::collections::BTreeSet;

use vigil_shared::aws::required_env;
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
    pub const REQUIRED: &[&str] = &[RULES, TOPIC_ARN, STATE_BUCKET];
    pub const OPTIONAL: &[&str] = &[STATE_KEY, SILENCES, ALLOWED_TOPIC_ARNS];
}

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
}

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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_topic_is_always_allowed() {
        let set = allowed_topics("arn:alerts", " arn:a , ,arn:b");
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            ["arn:a", "arn:alerts", "arn:b"]
        );
        assert_eq!(allowed_topics("arn:alerts", "").len(), 1);
    }
}
