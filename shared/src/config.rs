//! Configuration files (alert rules, backup sets): where they live and how they are parsed.
//!
//! A location is either `s3://bucket/key` or a path on the function's file system (a file
//! bundled with the deployment package). YAML errors name the file, the line and the column.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::store::ObjectStore;
use crate::{Error, Result};

/// Where a configuration file lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    S3 { bucket: String, key: String },
    File(String),
}

impl FromStr for ConfigSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("s3://") {
            match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(Error::Config(format!(
                    "{s:?} is not an S3 location of the form s3://bucket/key"
                ))),
            }
        } else if s.is_empty() {
            Err(Error::Config("empty configuration location".to_owned()))
        } else {
            Ok(Self::File(s.to_owned()))
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Self::File(path) => f.write_str(path),
        }
    }
}

impl ConfigSource {
    /// The file at `relative` from this one's folder (the key's prefix in S3, the path's
    /// directory on disk).
    pub fn sibling(&self, relative: &str) -> Self {
        match self {
            Self::S3 { bucket, key } => {
                let dir = key.rfind('/').map_or("", |i| &key[..=i]);
                Self::S3 {
                    bucket: bucket.clone(),
                    key: format!("{dir}{relative}"),
                }
            }
            Self::File(path) => Self::File(
                std::path::Path::new(path)
                    .parent()
                    .unwrap_or(std::path::Path::new(""))
                    .join(relative)
                    .display()
                    .to_string(),
            ),
        }
    }

    /// Reads the file's text.
    pub async fn read(&self, store: &impl ObjectStore) -> Result<String> {
        let bytes = match self {
            Self::S3 { bucket, key } => store.get(bucket, key).await?,
            Self::File(path) => std::fs::read(path)
                .map_err(|e| Error::Config(format!("cannot read {path}: {e}")))?,
        };
        String::from_utf8(bytes).map_err(|_| Error::Config(format!("{self} is not UTF-8 text")))
    }

    /// Reads the file's text, or `None` when it does not exist.
    pub async fn read_optional(&self, store: &impl ObjectStore) -> Result<Option<String>> {
        let bytes = match self {
            Self::S3 { bucket, key } => match store.get_tagged(bucket, key).await? {
                Some((bytes, _)) => bytes,
                None => return Ok(None),
            },
            Self::File(path) => match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::Config(format!("cannot read {path}: {e}"))),
            },
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::Config(format!("{self} is not UTF-8 text")))
    }

    /// Reads and parses a YAML file into `T`.
    pub async fn load_yaml<T: DeserializeOwned>(&self, store: &impl ObjectStore) -> Result<T> {
        parse_yaml(&self.to_string(), &self.read(store).await?)
    }
}

/// Parses YAML into `T`; the error reads `ORIGIN:LINE:COLUMN: what is wrong`.
pub fn parse_yaml<T: DeserializeOwned>(origin: &str, text: &str) -> Result<T> {
    serde_saphyr::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message.lines().next().unwrap_or("invalid YAML").to_owned();
        match e.location() {
            Some(loc) => Error::Config(format!(
                "{origin}:{}:{}: {message}",
                loc.line(),
                loc.column()
            )),
            None => Error::Config(format!("{origin}: {message}")),
        }
    })
}

/// The smoke test's configuration of a function (`scripts/smoke`): the file a smoke run reads
/// instead of the stack's, and the one topic it may notify, given by two environment
/// variables that go together.
#[derive(Clone, Debug)]
pub struct SmokeConfig {
    pub file: ConfigSource,
    pub topic_arn: String,
}

impl SmokeConfig {
    /// From the variables `file` and `topic`: both set, or neither (`None`).
    pub fn from_env(file: &str, topic: &str) -> Result<Option<SmokeConfig>> {
        crate::aws::env_pair(file, topic)?
            .map(|(location, topic_arn)| {
                Ok(SmokeConfig {
                    file: location.parse()?,
                    topic_arn,
                })
            })
            .transpose()
    }

    /// The smoke configuration `smoke` holds, or the refusal of a smoke run by a stack that
    /// set neither `file` nor `topic`.
    pub fn required<'a>(
        smoke: &'a Option<SmokeConfig>,
        file: &str,
        topic: &str,
    ) -> Result<&'a SmokeConfig> {
        smoke.as_ref().ok_or_else(|| {
            Error::InvalidInput(format!("a smoke run, but {file} and {topic} are not set"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        limit: u32,
    }

    #[test]
    fn locations_parse() {
        assert_eq!(
            "s3://cfg/rules/main.yaml".parse::<ConfigSource>().ok(),
            Some(ConfigSource::S3 {
                bucket: "cfg".into(),
                key: "rules/main.yaml".into()
            })
        );
        assert_eq!(
            "/var/task/rules.yaml".parse::<ConfigSource>().ok(),
            Some(ConfigSource::File("/var/task/rules.yaml".into()))
        );
        assert!("s3://bucket-only".parse::<ConfigSource>().is_err());
        assert!("s3:///key".parse::<ConfigSource>().is_err());
        assert!("  ".parse::<ConfigSource>().is_err());
    }

    #[test]
    fn yaml_errors_name_file_line_and_field() {
        let err = parse_yaml::<Doc>("rules.yaml", "name: a\nlimit: lots\n")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("rules.yaml:2:"), "{err}");

        let err = parse_yaml::<Doc>("rules.yaml", "name: a\nlimit: 3\nextra: 1\n")
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("rules.yaml:3:") && err.contains("extra"),
            "{err}"
        );

        let err = parse_yaml::<Doc>("rules.yaml", "name: a\n")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("rules.yaml") && err.contains("limit"), "{err}");
    }

    #[test]
    fn a_stack_without_smoke_configuration_refuses_smoke_runs() {
        let err = SmokeConfig::required(&None, "A", "B").expect_err("none");
        assert!(matches!(err, Error::InvalidInput(ref m) if m.contains("A and B are not set")));
        let set = Some(SmokeConfig {
            file: "s3://b/smoke/k".parse().expect("source"),
            topic_arn: "arn:smoke".into(),
        });
        assert_eq!(
            SmokeConfig::required(&set, "A", "B")
                .expect("set")
                .topic_arn,
            "arn:smoke"
        );
    }
}
