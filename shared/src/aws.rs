//! AWS SDK set-up, done once per execution environment (outside the handler). Every client is
//! built here, so that each records its calls when the call log is on (`call_log.rs`).

use aws_config::{BehaviorVersion, SdkConfig};

use crate::call_log::CallLog;

/// Environment variable that points every AWS client at another endpoint (a local emulator).
/// Unset in production, where the SDK resolves the regional endpoints itself.
pub const ENDPOINT_ENV: &str = "VIGIL_AWS_ENDPOINT_URL";

/// Loads the SDK configuration: region and credentials from the standard chain (the Lambda
/// environment in production), and the endpoint override from [`ENDPOINT_ENV`] when set.
pub async fn sdk_config() -> SdkConfig {
    let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|v| !v.is_empty());
    sdk_config_with_endpoint(endpoint.as_deref()).await
}

/// [`sdk_config`] with an explicit endpoint override.
pub async fn sdk_config_with_endpoint(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// An S3 client; with an endpoint override it addresses buckets by path (`host/bucket/key`),
/// which local emulators need since they cannot serve a DNS name per bucket.
pub fn s3_client(conf: &SdkConfig) -> aws_sdk_s3::Client {
    let mut builder =
        aws_sdk_s3::config::Builder::from(conf).force_path_style(conf.endpoint_url().is_some());
    if let Some(log) = CallLog::from_env() {
        builder = builder.interceptor(log);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A CloudWatch client.
pub fn cloudwatch_client(conf: &SdkConfig) -> aws_sdk_cloudwatch::Client {
    let mut builder = aws_sdk_cloudwatch::config::Builder::from(conf);
    if let Some(log) = CallLog::from_env() {
        builder = builder.interceptor(log);
    }
    aws_sdk_cloudwatch::Client::from_conf(builder.build())
}

/// An SNS client, from `builder` (the caller's settings over `conf`).
pub fn sns_client(builder: aws_sdk_sns::config::Builder) -> aws_sdk_sns::Client {
    let mut builder = builder;
    if let Some(log) = CallLog::from_env() {
        builder = builder.interceptor(log);
    }
    aws_sdk_sns::Client::from_conf(builder.build())
}

/// Two settings that go together, given by `names` with their `values`: both set (not
/// blank), or neither; one without the other is a configuration error that names both.
pub fn both_or_neither(
    names: (&str, &str),
    values: (Option<String>, Option<String>),
) -> crate::Result<Option<(String, String)>> {
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    match (set(values.0), set(values.1)) {
        (None, None) => Ok(None),
        (Some(a), Some(b)) => Ok(Some((a, b))),
        _ => Err(crate::Error::Config(format!(
            "{} and {} go together: set both or neither",
            names.0, names.1
        ))),
    }
}

/// [`both_or_neither`] of two environment variables.
pub fn env_pair(a: &str, b: &str) -> crate::Result<Option<(String, String)>> {
    both_or_neither((a, b), (std::env::var(a).ok(), std::env::var(b).ok()))
}

/// Reads a required environment variable, with an error that names it.
pub fn required_env(name: &str) -> crate::Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(crate::Error::Config(format!(
            "environment variable {name} is not set"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_settings_go_together() {
        let names = ("A", "B");
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            both_or_neither(names, (None, some(" "))).expect("neither"),
            None
        );
        assert_eq!(
            both_or_neither(names, (some("a"), some("b"))).expect("both"),
            Some(("a".to_owned(), "b".to_owned()))
        );
        for one in [(some("a"), None), (None, some("b")), (some("a"), some(""))] {
            let err = both_or_neither(names, one).expect_err("one alone");
            assert!(err.to_string().contains("A and B go together"), "{err}");
        }
    }
}
