//! AWS SDK set-up, done once per execution environment (outside the handler). Every client is
//! built here, so that each records its calls when the call log is on (`call_log.rs`).

use aws_config::{BehaviorVersion, SdkConfig};

use crate::call_log::CallLog;
use crate::tls::{Roots, http_client};

/// Environment variable that points every AWS client at another endpoint (a local emulator).
/// Unset in production, where the SDK resolves the regional endpoints itself.
pub const ENDPOINT_ENV: &str = "VIGIL_AWS_ENDPOINT_URL";

/// Loads the SDK configuration: region and credentials from the standard chain (the Lambda
/// environment in production), the endpoint override from [`ENDPOINT_ENV`] when set, and one
/// HTTPS client trusting the roots of [`crate::tls`] for every client and credential provider.
pub async fn sdk_config() -> crate::Result<SdkConfig> {
    sdk_config_trusting(Roots::AmazonTrustServices).await
}

/// [`sdk_config`] trusting `default` unless `VIGIL_TLS_ROOTS` says otherwise.
pub async fn sdk_config_trusting(default: Roots) -> crate::Result<SdkConfig> {
    let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|v| !v.is_empty());
    sdk_config_with(endpoint.as_deref(), Roots::from_env_or(default)?).await
}

/// [`sdk_config`] with an explicit endpoint override and roots.
///
/// Where the environment holds the credentials and the region (Lambda sets
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_REGION` for the
/// execution role), they are taken from it directly: the default chains would find the same
/// ones first, but they build every other provider before (an STS client for web identity, an
/// IMDS client for the region), a fifth of a cold start (BENCHMARKS.md). Elsewhere the
/// default chains resolve them (profiles, SSO, web identity, containers, IMDS).
pub async fn sdk_config_with(endpoint: Option<&str>, roots: Roots) -> crate::Result<SdkConfig> {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(http_client(roots)?);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let (credentials, region) = from_environment(|name| std::env::var(name).ok());
    if credentials {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    Ok(loader.load().await)
}

/// Whether `var` (the environment) holds credentials, and the region it names, in the order
/// of the SDK's default chains: `AWS_ACCESS_KEY_ID` with `AWS_SECRET_ACCESS_KEY`;
/// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
fn from_environment(var: impl Fn(&str) -> Option<String>) -> (bool, Option<String>) {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    (
        set("AWS_ACCESS_KEY_ID").is_some() && set("AWS_SECRET_ACCESS_KEY").is_some(),
        set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION")),
    )
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

    /// The built-in roots are parsed when the first client makes its connector: a request
    /// through them reaches the network (here a closed port) instead of failing on the PEM.
    #[tokio::test]
    async fn clients_connect_through_the_built_in_roots() {
        for roots in [Roots::AmazonTrustServices, Roots::System] {
            let conf = sdk_config_with(Some("http://127.0.0.1:9"), roots)
                .await
                .expect("config");
            let conf = aws_config::SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                    aws_sdk_s3::config::Credentials::for_tests(),
                ))
                .http_client(conf.http_client().expect("the shared client"))
                .endpoint_url("http://127.0.0.1:9")
                .build();
            let err = s3_client(&conf)
                .list_buckets()
                .send()
                .await
                .expect_err("nothing listens on port 9");
            assert!(
                matches!(
                    err,
                    aws_sdk_s3::error::SdkError::DispatchFailure(ref d) if d.is_io()
                ),
                "{roots:?}: {err:?}"
            );
        }
    }

    #[test]
    fn credentials_and_region_come_from_the_environment_as_the_default_chains_read_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        // What Lambda sets for the execution role.
        let lambda = env(&[
            ("AWS_ACCESS_KEY_ID", "ASIA..."),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]);
        assert_eq!(from_environment(lambda), (true, Some("eu-west-1".into())));
        let laptop = env(&[("AWS_PROFILE", "ops"), ("AWS_DEFAULT_REGION", "us-east-2")]);
        assert_eq!(from_environment(laptop), (false, Some("us-east-2".into())));
        let half = env(&[("AWS_ACCESS_KEY_ID", "AKIA..."), ("AWS_REGION", " ")]);
        assert_eq!(from_environment(half), (false, None));
    }

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
