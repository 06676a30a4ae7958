//! The backup sets file (what is verified, and what each set requires) and the function's
//! configuration from its environment.
//!
//! ```yaml
//! backup_sets:
//!   - name: orders-db
//!     bucket: acme-backups
//!     prefix: orders/
//!     max_age: 26h
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use vigil_shared::aws::required_env;
use vigil_shared::config::SmokeConfig;
use vigil_shared::config::parse_yaml;
use vigil_shared::{ConfigSource, Error, Result, Span};

use crate::sample::Sample;
use crate::{env, glob, restore};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupSetsFile {
    pub backup_sets: Vec<BackupSet>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupSet {
    pub name: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// Keys (relative to the prefix) that are backups, as patterns (`*`, `**`, `?`): a prefix
    /// that also holds logs or checksum files says which objects the checks are about.
    /// Empty: every object but the manifests.
    #[serde(default)]
    pub include: Vec<String>,
    /// Keys (relative to the prefix) that are not backups even when included.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The recovery point objective: the newest backup must be younger.
    pub max_age: Span,
    /// Backups that must be kept under the prefix.
    #[serde(default = "one")]
    pub min_count: usize,
    /// The newest backup must be at least this large.
    #[serde(default)]
    pub min_size_bytes: u64,
    /// The newest backup may be at most this fraction smaller than the median of the ones
    /// before it (0.5: half the size is a finding).
    #[serde(default = "half")]
    pub max_size_drop: f64,
    /// Other copies that must hold the newest backup (same size and ETag).
    #[serde(default)]
    pub replicas: Vec<Replica>,
    #[serde(default)]
    pub require: Requirements,
    /// Labels for the failure message's attributes (`team`, `service`, `severity`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Which backups to test-restore: `latest` (default), `all`, or a number sampled at random.
    #[serde(default)]
    pub restore: Sample,
    /// The format to validate, when the key's suffix does not tell it.
    #[serde(default)]
    pub format: Option<restore::Format>,
    /// Every backup must have a manifest (`<key>.manifest.json`: `{"key", "size", "sha256"}`)
    /// that its bytes match. Without this, a manifest that exists is still checked.
    #[serde(default)]
    pub manifest: bool,
    /// How often a still-failing check of this set is announced again (default one day).
    #[serde(default = "day")]
    pub repeat_interval: Span,
    /// The bucket and prefix are a Velero backup location: the backups are
    /// `<prefix>backups/<name>/<name>.tar.gz`, each checked against its `velero-backup.json`.
    #[serde(default)]
    pub velero: bool,
}

fn one() -> usize {
    1
}

fn day() -> Span {
    Span(86_400)
}

fn half() -> f64 {
    0.5
}

/// Another bucket (possibly in another region) that must hold a copy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    pub bucket: String,
    /// Defaults to the set's prefix.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// The protections the primary bucket must have.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    #[serde(default)]
    pub versioning: bool,
    /// Object lock retention of at least this many days on the newest backup.
    #[serde(default)]
    pub object_lock_days: Option<u64>,
    /// The object lock mode the newest backup's retention must have. GOVERNANCE can be
    /// lifted by anyone allowed `s3:BypassGovernanceRetention`; COMPLIANCE by nobody.
    #[serde(default)]
    pub object_lock_mode: Option<LockMode>,
    #[serde(default)]
    pub encryption: EncryptionRequirement,
}

/// An object lock retention mode.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    /// S3's name of the mode.
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// How the newest backup must be encrypted at rest.
///
/// - `false` (default): not checked.
/// - `true`: the bucket encrypts by default. Every S3 bucket has done so (SSE-S3) since
///   January 2023, so on AWS this cannot fail; require `sse-kms` for a finding that means
///   something.
/// - `sse-kms`: the newest backup itself is encrypted with a KMS key (`aws:kms` or
///   `aws:kms:dsse`), so reading it needs a grant on the key, not only on the bucket.
/// - `{sse_kms_key: <key ARN>}`: with that key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EncryptionRequirement {
    #[default]
    None,
    BucketDefault,
    Kms {
        key: Option<String>,
    },
}

impl<'de> Deserialize<'de> for EncryptionRequirement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Key {
            sse_kms_key: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
            Key(Key),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(false) => Ok(Self::None),
            Raw::Flag(true) => Ok(Self::BucketDefault),
            Raw::Word(w) if w == "sse-kms" => Ok(Self::Kms { key: None }),
            Raw::Key(k) if !k.sse_kms_key.trim().is_empty() => Ok(Self::Kms {
                key: Some(k.sse_kms_key),
            }),
            _ => Err(serde::de::Error::custom(
                "encryption is true, false, sse-kms, or {sse_kms_key: <KMS key ARN>}",
            )),
        }
    }
}

/// Parses and validates a backup sets file.
pub fn load(origin: &str, text: &str) -> Result<Vec<BackupSet>> {
    let file: BackupSetsFile = parse_yaml(origin, text)?;
    let mut names = BTreeSet::new();
    for set in &file.backup_sets {
        let fail = |field: &str, why: &str| {
            Err(Error::Config(format!(
                "{origin}: backup set {:?}: {field}: {why}",
                set.name
            )))
        };
        if set.name.is_empty() {
            return fail("name", "must not be empty");
        }
        if !names.insert(set.name.as_str()) {
            return fail("name", "the name is used twice in the file");
        }
        if set.bucket.len() < 3 {
            return fail("bucket", "not a valid bucket name");
        }
        if set.max_age.seconds() == 0 {
            return fail("max_age", "must be more than zero");
        }
        if set.repeat_interval.seconds() == 0 || set.repeat_interval.seconds() > 366 * 86_400 {
            return fail("repeat_interval", "must be more than zero and at most 366d");
        }
        if set.min_count == 0 {
            return fail("min_count", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&set.max_size_drop) {
            return fail("max_size_drop", "must be between 0 and 1");
        }
        if set.replicas.iter().any(|r| r.bucket.len() < 3) {
            return fail("replicas", "a replica bucket name is not valid");
        }
        for (field, patterns) in [("include", &set.include), ("exclude", &set.exclude)] {
            for p in patterns {
                if let Err(why) = glob::Pattern::new(p) {
                    return fail(field, &why);
                }
            }
        }
    }
    Ok(file.backup_sets)
}

/// Where the function finds its backup sets and writes its reports.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// `VIGIL_BACKUP_SETS`: `s3://bucket/key` or a file path.
    pub backup_sets: ConfigSource,
    /// `VIGIL_REPORT_BUCKET`.
    pub report_bucket: String,
    /// `VIGIL_REPORT_PREFIX`, default `reports/backup-verify/`.
    pub report_prefix: String,
    /// `VIGIL_BACKUP_TOPIC_ARN`: where findings are announced (optional).
    pub topic_arn: Option<String>,
    /// `VIGIL_BACKUP_STATE_KEY`, default `state/backup-verify.json` (in the report bucket).
    pub state_key: String,
    /// `VIGIL_SMOKE_BACKUP_SETS` and `VIGIL_SMOKE_TOPIC_ARN`, when the stack has a smoke test.
    pub smoke: Option<SmokeConfig>,
}

/// Where a smoke run writes its reports and its state, in the report bucket, apart from the
/// stack's own.
pub const SMOKE_REPORT_PREFIX: &str = "smoke/reports/backup-verify/";
pub const SMOKE_STATE_KEY: &str = "smoke/state/backup-verify.json";

impl VerifyConfig {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            backup_sets: required_env(env::BACKUP_SETS)?.parse()?,
            report_bucket: required_env(env::REPORT_BUCKET)?,
            report_prefix: std::env::var(env::REPORT_PREFIX)
                .unwrap_or_else(|_| "reports/backup-verify/".to_owned()),
            topic_arn: std::env::var(env::TOPIC_ARN)
                .ok()
                .filter(|v| !v.trim().is_empty()),
            state_key: std::env::var(env::STATE_KEY)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "state/backup-verify.json".to_owned()),
            smoke: SmokeConfig::from_env(env::SMOKE_BACKUP_SETS, env::SMOKE_TOPIC_ARN)?,
        })
    }

    /// The configuration a smoke run uses: the smoke sets, reports and state of its own in
    /// the same bucket, and the smoke topic as its only topic. A stack without a smoke
    /// configuration refuses smoke runs.
    pub fn smoke(&self) -> Result<VerifyConfig> {
        let smoke =
            SmokeConfig::required(&self.smoke, env::SMOKE_BACKUP_SETS, env::SMOKE_TOPIC_ARN)?;
        Ok(VerifyConfig {
            backup_sets: smoke.file.clone(),
            report_bucket: self.report_bucket.clone(),
            report_prefix: SMOKE_REPORT_PREFIX.to_owned(),
            topic_arn: Some(smoke.topic_arn.clone()),
            state_key: SMOKE_STATE_KEY.to_owned(),
            smoke: None,
        })
    }
}

#[cfg(test)]
mod requirement_tests {
    use super::*;

    fn set(extra: &str) -> Result<BackupSet> {
        load(
            "s.yaml",
            &format!("backup_sets:\n  - {{name: db, bucket: backups, prefix: db/, max_age: 26h{extra}}}\n"),
        )
        .map(|mut v| v.remove(0))
    }

    #[test]
    fn encryption_and_lock_mode_requirements_read() {
        let req = |yaml: &str| set(&format!(", require: {yaml}")).map(|s| s.require);
        assert_eq!(
            req("{encryption: true}").expect("valid").encryption,
            EncryptionRequirement::BucketDefault
        );
        assert_eq!(
            req("{encryption: sse-kms}").expect("valid").encryption,
            EncryptionRequirement::Kms { key: None }
        );
        assert_eq!(
            req("{encryption: {sse_kms_key: \"arn:aws:kms:us-east-1:1:key/k\"}}")
                .expect("valid")
                .encryption,
            EncryptionRequirement::Kms {
                key: Some("arn:aws:kms:us-east-1:1:key/k".into())
            }
        );
        assert!(req("{encryption: sse-c}").is_err());
        assert_eq!(
            req("{object_lock_days: 30, object_lock_mode: compliance}")
                .expect("valid")
                .object_lock_mode,
            Some(LockMode::Compliance)
        );
        assert!(req("{object_lock_mode: strict}").is_err());
    }

    #[test]
    fn config_errors_are_named() {
        let err = load(
            "sets.yaml",
            "backup_sets:\n  - {name: db, bucket: backups, max_age: soon}\n",
        )
        .expect_err("bad duration")
        .to_string();
        assert!(err.contains("sets.yaml:2:"), "{err}");
        let err = load(
            "sets.yaml",
            "backup_sets:\n  - {name: db, bucket: b, max_age: 1h}\n",
        )
        .expect_err("bad bucket")
        .to_string();
        assert!(err.contains("\"db\": bucket"), "{err}");
        assert_eq!(set("").expect("valid").repeat_interval, Span(86_400));
        assert!(set(", repeat_interval: 0s").is_err());
        assert!(set(", repeat_interval: 9999999999w").is_err());
    }

    #[test]
    fn patterns_are_validated() {
        assert!(set(", include: ['*.sql.gz'], exclude: ['*.partial*']").is_ok());
        let err = set(", include: ['']")
            .expect_err("empty pattern")
            .to_string();
        assert!(err.contains("include"), "{err}");
    }
}

#[cfg(test)]
mod smoke_tests {
    use super::*;

    fn config(smoke: Option<SmokeConfig>) -> VerifyConfig {
        VerifyConfig {
            backup_sets: "s3://b/config/backup-sets.yaml".parse().expect("source"),
            report_bucket: "b".into(),
            report_prefix: "reports/backup-verify/".into(),
            topic_arn: Some("arn:alerts".into()),
            state_key: "state/backup-verify.json".into(),
            smoke,
        }
    }

    #[test]
    fn a_smoke_run_reads_its_canary_sets_and_writes_apart() {
        let smoke = SmokeConfig {
            file: "s3://b/smoke/config/backup-sets.yaml"
                .parse()
                .expect("source"),
            topic_arn: "arn:smoke".into(),
        };
        let run = config(Some(smoke)).smoke().expect("smoke config");
        assert_eq!(
            run.backup_sets.to_string(),
            "s3://b/smoke/config/backup-sets.yaml"
        );
        assert_eq!(
            (run.report_bucket.as_str(), run.report_prefix.as_str()),
            ("b", SMOKE_REPORT_PREFIX)
        );
        assert_eq!(run.state_key, SMOKE_STATE_KEY);
        assert_eq!(run.topic_arn.as_deref(), Some("arn:smoke"));
        assert!(matches!(config(None).smoke(), Err(Error::InvalidInput(_))));
    }
}
