//! Secrets read at run time (a PagerDuty routing key, a webhook URL holding a token): the
//! [`Secrets`] trait and its implementation on SSM Parameter Store.
//!
//! A secret is named in the rules file, never written there: `{ssm_parameter: NAME}` (a
//! SecureString, or a String) or `{secrets_manager: NAME}` (a secret's string value). Both are
//! read with one `GetParameter` call, `WithDecryption`: Parameter Store reads a Secrets Manager
//! secret under `/aws/reference/secretsmanager/NAME` ("Referencing AWS Secrets Manager secrets
//! from Parameter Store parameters", Systems Manager User Guide). A value read is kept for
//! [`SECRET_TTL`], so a rotated key is taken within minutes and a run sending many messages
//! reads it once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::call_log::CallLog;
use crate::{Error, Result};

/// How long a secret read is used before it is read again.
pub const SECRET_TTL: Duration = Duration::from_secs(300);
/// A value read this recently is not forgotten: a wrong key refused by every message of a run
/// is read again once, not once per message.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);

/// Parameter Store's path to Secrets Manager secrets.
pub const SECRETS_MANAGER_REFERENCE: &str = "/aws/reference/secretsmanager/";

/// Where the stack's role may read receivers' secrets (template.yaml): parameters under
/// `/vigil/receivers/`, secrets named `vigil/receivers/...`.
pub const RECEIVERS_PREFIX: &str = "vigil/receivers/";

/// Where a secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// A Parameter Store parameter, by name (`/vigil/receivers/pagerduty`).
    SsmParameter(String),
    /// A Secrets Manager secret, by name (`vigil/receivers/incident-io`).
    SecretsManager(String),
}

impl SecretRef {
    /// The name `GetParameter` reads it by.
    pub fn parameter_name(&self) -> String {
        match self {
            SecretRef::SsmParameter(name) => name.clone(),
            SecretRef::SecretsManager(name) => format!("{SECRETS_MANAGER_REFERENCE}{name}"),
        }
    }

    /// What is wrong with the reference, if anything (checked when the rules are loaded).
    pub fn problem(&self) -> Option<String> {
        let (kind, name) = match self {
            SecretRef::SsmParameter(n) => ("ssm_parameter", n),
            SecretRef::SecretsManager(n) => ("secrets_manager", n),
        };
        if name.trim().is_empty() {
            return Some(format!("{kind}: a name is needed"));
        }
        if name.chars().any(char::is_whitespace) {
            return Some(format!("{kind}: {name:?} holds white space"));
        }
        // What the stack's role may read: a name elsewhere would be denied at every page.
        let readable = match self {
            SecretRef::SsmParameter(n) => n
                .strip_prefix('/')
                .is_some_and(|p| p.starts_with(RECEIVERS_PREFIX)),
            SecretRef::SecretsManager(n) => n.starts_with(RECEIVERS_PREFIX),
        };
        if !readable {
            return Some(format!(
                "{kind}: {name:?} is outside what the stack's role may read (parameters under \
                 /{RECEIVERS_PREFIX}, secrets named {RECEIVERS_PREFIX}..., by name: an ARN may \
                 name another account or region)"
            ));
        }
        None
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::SsmParameter(n) => write!(f, "SSM parameter {n}"),
            SecretRef::SecretsManager(n) => write!(f, "Secrets Manager secret {n}"),
        }
    }
}

/// Reads secrets.
pub trait Secrets: Send + Sync {
    /// The secret's value. A secret that is missing, or that the role may not read, is an
    /// error that is not retryable; throttling and timeouts are retryable.
    fn secret(&self, reference: &SecretRef) -> impl Future<Output = Result<String>> + Send;

    /// Forgets a value kept, so the next read fetches it again (a key refused after rotation),
    /// unless it was read within [`FORGET_AFTER`].
    fn forget(&self, _reference: &SecretRef) {}
}

/// [`Secrets`] on SSM `GetParameter`, each value kept for [`SECRET_TTL`].
#[derive(Debug)]
pub struct SsmSecrets {
    client: OnceLock<aws_sdk_ssm::Client>,
    builder: aws_sdk_ssm::config::Builder,
    cache: Mutex<HashMap<SecretRef, (Instant, String)>>,
}

impl SsmSecrets {
    /// The client is made at the first read: most runs send nothing to a receiver outside SNS.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(10))
            .build();
        Self {
            client: OnceLock::new(),
            builder: aws_sdk_ssm::config::Builder::from(conf).timeout_config(timeouts),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self) -> &aws_sdk_ssm::Client {
        self.client.get_or_init(|| {
            let mut builder = self.builder.clone();
            if let Some(log) = CallLog::from_env() {
                builder = builder.interceptor(log);
            }
            aws_sdk_ssm::Client::from_conf(builder.build())
        })
    }

    fn cached(&self, reference: &SecretRef) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(reference)
            .filter(|(at, _)| at.elapsed() < SECRET_TTL)
            .map(|(_, v)| v.clone())
    }
}

impl Secrets for SsmSecrets {
    async fn secret(&self, reference: &SecretRef) -> Result<String> {
        if let Some(value) = self.cached(reference) {
            return Ok(value);
        }
        let out = self
            .client()
            .get_parameter()
            .name(reference.parameter_name())
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| match Error::aws("SSM", "GetParameter", e) {
                Error::Aws {
                    service,
                    operation,
                    message,
                    retryable,
                } => Error::Aws {
                    service,
                    operation,
                    message: format!("{reference}: {message}"),
                    retryable,
                },
                other => other,
            })?;
        let value = out
            .parameter()
            .and_then(|p| p.value())
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| Error::Config(format!("{reference} is empty")))?
            .trim()
            .to_owned();
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(reference.clone(), (Instant::now(), value.clone()));
        Ok(value)
    }

    fn forget(&self, reference: &SecretRef) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .get(reference)
            .is_some_and(|(at, _)| at.elapsed() >= FORGET_AFTER)
        {
            cache.remove(reference);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_manager_secret_is_read_through_parameter_store() {
        let r: SecretRef =
            serde_json::from_str(r#"{"secrets_manager": "vigil/pd"}"#).expect("test value");
        assert_eq!(r.parameter_name(), "/aws/reference/secretsmanager/vigil/pd");
        let p: SecretRef =
            serde_json::from_str(r#"{"ssm_parameter": "/vigil/pd"}"#).expect("test value");
        assert_eq!(p.parameter_name(), "/vigil/pd");
        assert!(serde_json::from_str::<SecretRef>(r#"{"plain": "x"}"#).is_err());
        assert!(SecretRef::SsmParameter(" ".into()).problem().is_some());
        // Outside what the role may read.
        assert!(p.problem().is_some());
        assert!(r.problem().is_some());
        for ok in [
            SecretRef::SsmParameter("/vigil/receivers/pd".into()),
            SecretRef::SecretsManager("vigil/receivers/pd".into()),
        ] {
            assert_eq!(ok.problem(), None, "{ok}");
        }
        assert!(
            SecretRef::SsmParameter(
                "arn:aws:ssm:eu-west-1:123456789012:parameter/vigil/receivers/pd".into()
            )
            .problem()
            .is_some()
        );
        assert!(
            SecretRef::SecretsManager(
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vigil/receivers/pd".into()
            )
            .problem()
            .is_some()
        );
    }
}
