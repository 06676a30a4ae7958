//! Vigil `backup-verify`: proves on a schedule that backups in S3 are fresh.
//!
//! The pure part (backup sets, checks, the report) plus [`verify`], generic over an
//! [`ObjectStore`]; `main.rs` only wires it to the Lambda runtime.
//!
//! Backup sets are a YAML file:
//!
//! ```yaml
//! backup_sets:
//!   - name: orders-db
//!     bucket: acme-backups
//!     prefix: orders/
//!     max_age: 26h
//! ```

/// The environment variables backup-verify reads (the template sets them; a test checks both
/// agree).
pub mod env {
    /// `s3://bucket/key` or a path of the backup sets file.
    pub const BACKUP_SETS: &str = "VIGIL_BACKUP_SETS";
    /// The bucket reports are written to.
    pub const REPORT_BUCKET: &str = "VIGIL_REPORT_BUCKET";
    /// Optional: the reports' key prefix (default `reports/backup-verify/`).
    pub const REPORT_PREFIX: &str = "VIGIL_REPORT_PREFIX";
    /// Optional: where a failing set is announced.
    pub const TOPIC_ARN: &str = "VIGIL_BACKUP_TOPIC_ARN";
    pub const REQUIRED: &[&str] = &[BACKUP_SETS, REPORT_BUCKET];
    pub const OPTIONAL: &[&str] = &[REPORT_PREFIX, TOPIC_ARN];
}

pub mod checks;
pub mod glob;
pub mod restore;
pub mod velero;

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_shared::aws::required_env;
use vigil_shared::config::parse_yaml;
use vigil_shared::{
    BucketInspector, ConfigSource, Error, Notification, Notifier, ObjectInfo, ObjectStore,
    ObjectStreamer, Result, Span, Unit, emf,
};

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
    /// The bucket and prefix are a Velero backup location: the backups are
    /// `<prefix>backups/<name>/<name>.tar.gz`, each checked against its `velero-backup.json`.
    #[serde(default)]
    pub velero: bool,
}

/// Which backups a run restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sample {
    #[default]
    Latest,
    All,
    Random(usize),
    None,
}

impl<'de> Deserialize<'de> for Sample {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Count(usize),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "latest" => Ok(Sample::Latest),
            Raw::Word(w) if w == "all" => Ok(Sample::All),
            Raw::Word(w) if w == "none" => Ok(Sample::None),
            Raw::Count(n) if n > 0 => Ok(Sample::Random(n)),
            _ => Err(serde::de::Error::custom(
                "restore is latest, all, none or a positive number",
            )),
        }
    }
}

/// Suffix of manifest objects, which are not backups themselves.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// A manifest written by the backup job beside the backup.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// The backups to restore this run: the newest, all, or `n` picked by a generator seeded with
/// the run's time (different backups on different days, the same ones on a retry).
pub fn sample(objects: &[ObjectInfo], how: Sample, seed: i64) -> Vec<&ObjectInfo> {
    let mut sorted: Vec<&ObjectInfo> = objects.iter().collect();
    sorted.sort_by_key(|o| (o.last_modified, o.key.as_str()));
    match how {
        Sample::None => Vec::new(),
        Sample::Latest => sorted.last().copied().into_iter().collect(),
        Sample::All => sorted,
        Sample::Random(n) if n >= sorted.len() => sorted,
        Sample::Random(n) => {
            let mut state = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
            let mut picked = Vec::with_capacity(n);
            while picked.len() < n {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let o = sorted.remove((state >> 33) as usize % sorted.len());
                picked.push(o);
            }
            picked
        }
    }
}

fn one() -> usize {
    1
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

/// A check's verdict. `Error` means the check could not be made because reading failed;
/// `Skipped` that it cannot be made on what S3 holds (the detail says why). Neither is `Ok`.
/// A set's status is `Ok`, `Failed` or `Error` (a skipped check neither passes nor fails it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Error,
    Skipped,
}

/// One check of one set, with what it saw.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    pub evidence: Value,
}

/// The freshness check on a listing made at `now`.
pub fn check_freshness(set: &BackupSet, objects: &[ObjectInfo], now: DateTime<Utc>) -> CheckResult {
    let newest = objects.iter().max_by_key(|o| (o.last_modified, &o.key));
    let max_age = set.max_age.seconds();
    let Some(newest) = newest else {
        return CheckResult {
            check: "freshness",
            status: Status::Failed,
            detail: format!(
                "no backup under s3://{}/{}: check that the backup job runs and writes there",
                set.bucket, set.prefix
            ),
            evidence: serde_json::json!({ "objects": 0, "max_age_seconds": max_age }),
        };
    };
    let age = now
        .signed_duration_since(newest.last_modified)
        .num_seconds();
    let fresh = age <= i64::try_from(max_age).unwrap_or(i64::MAX);
    CheckResult {
        check: "freshness",
        status: if fresh { Status::Ok } else { Status::Failed },
        detail: if fresh {
            format!(
                "newest backup is {} old (limit {})",
                Span(age.max(0).unsigned_abs()),
                set.max_age
            )
        } else {
            format!(
                "newest backup is {} old, older than the limit of {}: the backup job has stopped or fails",
                Span(age.unsigned_abs()),
                set.max_age
            )
        },
        evidence: serde_json::json!({
            "objects": objects.len(),
            "newest_key": newest.key,
            "newest_size": newest.size,
            "newest_last_modified": newest.last_modified.to_rfc3339_opts(SecondsFormat::Secs, true),
            "age_seconds": age,
            "max_age_seconds": max_age,
        }),
    }
}

/// One set's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SetReport {
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub status: Status,
    pub checks: Vec<CheckResult>,
}

/// The report of one run, written to S3 as JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub run_at: DateTime<Utc>,
    pub sets: Vec<SetReport>,
    pub summary: Summary,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub sets: usize,
    pub ok: usize,
    pub failed: usize,
    pub error: usize,
}

/// A set's status: the worst of its checks (error over failed over ok).
fn worst(checks: &[CheckResult]) -> Status {
    if checks.iter().any(|c| c.status == Status::Error) {
        Status::Error
    } else if checks.iter().any(|c| c.status == Status::Failed) {
        Status::Failed
    } else {
        Status::Ok
    }
}

/// Runs every check of every set. A storage error becomes that check's `error`; the other
/// checks and sets still run.
pub async fn verify(
    store: &(impl ObjectStore + BucketInspector + ObjectStreamer),
    sets: &[BackupSet],
    now: DateTime<Utc>,
) -> Report {
    let mut reports = Vec::with_capacity(sets.len());
    let mut summary = Summary::default();
    for set in sets {
        let checks = check_set(store, set, now).await;
        let status = worst(&checks);
        match status {
            Status::Ok | Status::Skipped => summary.ok += 1,
            Status::Failed => summary.failed += 1,
            Status::Error => summary.error += 1,
        }
        tracing::info!(set = %set.name, status = ?status, "backup set verified");
        reports.push(SetReport {
            name: set.name.clone(),
            bucket: set.bucket.clone(),
            prefix: set.prefix.clone(),
            status,
            checks,
        });
    }
    summary.sets = sets.len();
    Report {
        report_version: 1,
        run_at: now,
        sets: reports,
        summary,
    }
}

fn errored(check: &'static str, what: String, e: &Error) -> CheckResult {
    CheckResult {
        check,
        status: Status::Error,
        detail: format!("could not {what}: {e}"),
        evidence: Value::Null,
    }
}

async fn check_set(
    store: &(impl ObjectStore + BucketInspector + ObjectStreamer),
    set: &BackupSet,
    now: DateTime<Utc>,
) -> Vec<CheckResult> {
    // Manifests sit beside the backups; they are not backups themselves, nor is whatever the
    // set's patterns leave out.
    let patterns = |list: &[String]| -> Vec<glob::Pattern> {
        list.iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect()
    };
    let (include, exclude) = (patterns(&set.include), patterns(&set.exclude));
    let listed = store.list(&set.bucket, &set.prefix).await;
    let recorded_without_archive = match &listed {
        Ok(objects) if set.velero => {
            let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
            velero::without_archive(&set.prefix, &keys)
        }
        _ => Vec::new(),
    };
    let objects = match listed {
        Ok(objects) => objects
            .into_iter()
            .filter(|o| !o.key.ends_with(MANIFEST_SUFFIX))
            .filter(|o| {
                let relative = o.key.strip_prefix(&set.prefix).unwrap_or(&o.key);
                glob::selected(relative, &include, &exclude)
            })
            .filter(|o| !set.velero || velero::backup_name(&set.prefix, &o.key).is_some())
            .collect::<Vec<_>>(),
        Err(e) => {
            return vec![errored(
                "freshness",
                format!("list s3://{}/{}", set.bucket, set.prefix),
                &e,
            )];
        }
    };
    let mut out = vec![
        check_freshness(set, &objects, now),
        checks::count(set, &objects),
    ];
    out.extend(checks::size(set, &objects));
    if set.velero {
        out.push(velero_archives(store, set, &recorded_without_archive).await);
    }
    let newest = objects.iter().max_by_key(|o| (o.last_modified, &o.key));
    if let Some(newest) = newest {
        let mut primary_sha: Option<String> = None;
        for r in &set.replicas {
            let key = replica_key(set, r, &newest.key);
            out.push(match store.head(&r.bucket, &key).await {
                Ok(head) => {
                    replica_check(store, set, newest, &r.bucket, &key, head, &mut primary_sha).await
                }
                Err(e) => errored("replica", format!("read s3://{}/{key}", r.bucket), &e),
            });
        }
        match integrity_check(store, set, newest).await {
            Ok(Some(check)) => out.push(check),
            Ok(None) => {}
            Err(check) => out.push(check),
        }
        if let Some(days) = set.require.object_lock_days {
            out.push(match store.retention(&set.bucket, &newest.key).await {
                Ok(retention) => checks::object_lock(
                    newest,
                    days,
                    set.require.object_lock_mode,
                    retention.as_ref(),
                    now,
                ),
                Err(e) => errored(
                    "object_lock",
                    format!("read the retention of {}", newest.key),
                    &e,
                ),
            });
        }
    }
    for backup in sample(&objects, set.restore, now.timestamp() / 86_400) {
        out.push(test_restore(store, set, backup).await);
    }
    if set.require.versioning {
        out.push(match store.versioning(&set.bucket).await {
            Ok(status) => checks::versioning(&set.bucket, status.as_deref()),
            Err(e) => errored(
                "versioning",
                format!("read the versioning of {}", set.bucket),
                &e,
            ),
        });
    }
    match &set.require.encryption {
        EncryptionRequirement::None => {}
        EncryptionRequirement::BucketDefault => {
            out.push(match store.default_encryption(&set.bucket).await {
                Ok(algorithm) => checks::encryption(&set.bucket, algorithm.as_deref()),
                Err(e) => errored(
                    "encryption",
                    format!("read the encryption of {}", set.bucket),
                    &e,
                ),
            });
        }
        EncryptionRequirement::Kms { key } => {
            if let Some(newest) = newest {
                out.push(match store.head(&set.bucket, &newest.key).await {
                    Ok(head) => checks::kms_encryption(newest, key.as_deref(), head.as_ref()),
                    Err(e) => errored(
                        "encryption",
                        format!("read the encryption of {}", newest.key),
                        &e,
                    ),
                });
            }
        }
    }
    out
}

/// SHA-256 of a whole object, streamed (never whole in memory); an error says why it could
/// not be read, never that the object is broken.
async fn streamed_sha256(
    store: &impl ObjectStreamer,
    bucket: &str,
    key: &str,
) -> std::result::Result<String, String> {
    match store
        .read_with(bucket, key, |r| {
            restore::validate(r, restore::Format::Raw, false)
        })
        .await
    {
        Ok(Ok(restored)) => Ok(restored.sha256),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// One replica of the newest backup: the same backup when its bytes are. Replication keeps
/// the ETag; a copy by another tool (another part size, `aws s3 cp`, rclone, AWS Backup) has
/// another ETag for the same bytes, so then both are streamed and their SHA-256 compared.
async fn replica_check(
    store: &(impl ObjectStore + BucketInspector + ObjectStreamer),
    set: &BackupSet,
    newest: &ObjectInfo,
    bucket: &str,
    key: &str,
    head: Option<vigil_shared::ObjectHead>,
    primary_sha: &mut Option<String>,
) -> CheckResult {
    let needs_bytes = head
        .as_ref()
        .is_some_and(|h| h.size == newest.size && h.etag != newest.etag);
    if !needs_bytes {
        return checks::replica(newest, bucket, key, head.as_ref(), None);
    }
    if primary_sha.is_none() {
        match streamed_sha256(store, &set.bucket, &newest.key).await {
            Ok(sha) => *primary_sha = Some(sha),
            Err(why) => {
                return CheckResult {
                    check: "replica",
                    status: Status::Error,
                    detail: format!(
                        "could not read s3://{}/{} to compare it with its copy: {why}",
                        set.bucket, newest.key
                    ),
                    evidence: Value::Null,
                };
            }
        }
    }
    let replica_sha = match streamed_sha256(store, bucket, key).await {
        Ok(sha) => sha,
        Err(why) => {
            return CheckResult {
                check: "replica",
                status: Status::Error,
                detail: format!("could not read s3://{bucket}/{key} to compare it: {why}"),
                evidence: Value::Null,
            };
        }
    };
    let primary = primary_sha.clone().unwrap_or_default();
    checks::replica(
        newest,
        bucket,
        key,
        head.as_ref(),
        Some((primary.as_str(), replica_sha.as_str())),
    )
}

/// The replica key of a backup.
fn replica_key(set: &BackupSet, replica: &Replica, key: &str) -> String {
    let relative = key.strip_prefix(&set.prefix).unwrap_or(key);
    format!(
        "{}{relative}",
        replica.prefix.as_deref().unwrap_or(&set.prefix)
    )
}

/// Reads the manifest beside `key`, if there is one; the `Err` is the failed check to report.
async fn read_manifest(
    store: &impl ObjectStore,
    check: &'static str,
    bucket: &str,
    key: &str,
) -> std::result::Result<Option<Manifest>, CheckResult> {
    let manifest_key = format!("{key}{MANIFEST_SUFFIX}");
    match store.get_tagged(bucket, &manifest_key).await {
        Ok(None) => Ok(None),
        Ok(Some((bytes, _))) => serde_json::from_slice::<Manifest>(&bytes)
            .map(Some)
            .map_err(|e| CheckResult {
                check,
                status: Status::Failed,
                detail: format!("manifest {manifest_key} is unreadable: {e}"),
                evidence: serde_json::json!({ "key": key }),
            }),
        Err(e) => Err(errored(check, format!("read {manifest_key}"), &e)),
    }
}

/// The integrity check without download, when S3 stored a SHA-256 for the newest backup and
/// there is something to compare it with (a manifest, a replica's stored checksum).
async fn integrity_check(
    store: &(impl ObjectStore + BucketInspector),
    set: &BackupSet,
    newest: &ObjectInfo,
) -> std::result::Result<Option<CheckResult>, CheckResult> {
    let stored = match store.stored_sha256(&set.bucket, &newest.key).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(errored(
                "integrity",
                format!("read the checksum of {}", newest.key),
                &e,
            ));
        }
    };
    let manifest = read_manifest(store, "integrity", &set.bucket, &newest.key).await?;
    let mut replicas = Vec::new();
    for r in &set.replicas {
        let key = replica_key(set, r, &newest.key);
        let checksum = store.stored_sha256(&r.bucket, &key).await.map_err(|e| {
            errored(
                "integrity",
                format!("read the checksum of s3://{}/{key}", r.bucket),
                &e,
            )
        })?;
        replicas.push((format!("s3://{}/{key}", r.bucket), checksum));
    }
    if manifest.is_none() && replicas.iter().all(|(_, c)| c.is_none()) {
        return Ok(None);
    }
    Ok(Some(checks::integrity(
        newest,
        &stored,
        manifest.as_ref().map(|m| m.sha256.as_str()),
        &replicas,
    )))
}

/// Restores one backup: streams it, validates its format, recomputes its SHA-256 and compares
/// it with its manifest.
async fn test_restore(
    store: &(impl ObjectStore + ObjectStreamer),
    set: &BackupSet,
    backup: &ObjectInfo,
) -> CheckResult {
    let manifest_key = format!("{}{MANIFEST_SUFFIX}", backup.key);
    let manifest = match read_manifest(store, "restore", &set.bucket, &backup.key).await {
        Ok(m) => m,
        Err(check) => return check,
    };
    let format = set
        .format
        .unwrap_or_else(|| restore::Format::detect(&backup.key));
    let keep_names = set.velero;
    let started = std::time::Instant::now();
    let outcome = store
        .read_with(&set.bucket, &backup.key, move |r| {
            restore::validate(r, format, keep_names)
        })
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let restored = match outcome {
        Err(e) => {
            return errored(
                "restore",
                format!("read s3://{}/{}", set.bucket, backup.key),
                &e,
            );
        }
        Ok(Err(restore::RestoreError::Read(why))) => {
            return CheckResult {
                check: "restore",
                status: Status::Error,
                detail: format!(
                    "could not read s3://{}/{} to its end ({why}); nothing is known of the backup, the next run tries again",
                    set.bucket, backup.key
                ),
                evidence: serde_json::json!({ "key": backup.key, "format": format, "size": backup.size }),
            };
        }
        Ok(Err(restore::RestoreError::Invalid(why))) => {
            return CheckResult {
                check: "restore",
                status: Status::Failed,
                detail: format!("{} does not restore: {why}", backup.key),
                evidence: serde_json::json!({ "key": backup.key, "format": format, "size": backup.size }),
            };
        }
        Ok(Ok(r)) => r,
    };
    let mut evidence = serde_json::json!({
        "key": backup.key,
        "format": restored.format,
        "bytes": restored.bytes,
        "sha256": restored.sha256,
        "entries": restored.entries,
        "seconds": seconds,
        "mb_per_second": restored.bytes as f64 / 1e6 / seconds.max(1e-9),
    });
    if set.velero {
        match velero_check(store, set, backup, &restored.names).await {
            Ok(found) => evidence["velero"] = found,
            Err(detail) => {
                return CheckResult {
                    check: "restore",
                    status: Status::Failed,
                    detail,
                    evidence,
                };
            }
        }
    }
    let mismatch = match &manifest {
        None if set.manifest => Some(format!("{} has no manifest ({manifest_key})", backup.key)),
        None => None,
        Some(m) => {
            evidence["manifest"] = serde_json::json!({ "size": m.size, "sha256": m.sha256 });
            if !m.sha256.eq_ignore_ascii_case(&restored.sha256) || m.size != restored.bytes {
                Some(format!(
                    "{} does not match its manifest: sha256 {} against {}, {} bytes against {}; the backup was corrupted after it was written",
                    backup.key, restored.sha256, m.sha256, restored.bytes, m.size
                ))
            } else {
                None
            }
        }
    };
    match mismatch {
        Some(detail) => CheckResult {
            check: "restore",
            status: Status::Failed,
            detail,
            evidence,
        },
        None => CheckResult {
            check: "restore",
            status: Status::Ok,
            detail: format!(
                "{} restored: {} bytes{}, SHA-256 {}",
                backup.key,
                restored.bytes,
                restored
                    .entries
                    .map(|n| format!(", {n} archive entries"))
                    .unwrap_or_default(),
                if manifest.is_some() {
                    "matches the manifest"
                } else {
                    "recorded"
                }
            ),
            evidence,
        },
    }
}

/// Every backup Velero recorded has its archive: one whose `velero-backup.json` says it
/// finished (not still in progress) and whose `<name>.tar.gz` is missing cannot be restored.
async fn velero_archives(
    store: &impl ObjectStore,
    set: &BackupSet,
    without_archive: &[String],
) -> CheckResult {
    let mut missing = Vec::new();
    for name in without_archive {
        let key = format!("{}backups/{name}/velero-backup.json", set.prefix);
        match store.get_tagged(&set.bucket, &key).await {
            Ok(Some((bytes, _))) => {
                let phase = velero::phase(&bytes).unwrap_or_else(|| "(unreadable)".to_owned());
                if !velero::IN_PROGRESS.contains(&phase.as_str()) {
                    missing.push(serde_json::json!({"backup": name, "phase": phase}));
                }
            }
            Ok(None) => {}
            Err(e) => return errored("velero_archives", format!("read {key}"), &e),
        }
    }
    let evidence = serde_json::json!({ "recorded_without_archive": missing });
    if missing.is_empty() {
        CheckResult {
            check: "velero_archives",
            status: Status::Ok,
            detail: "every backup Velero recorded has its archive".to_owned(),
            evidence,
        }
    } else {
        let names: Vec<String> = missing
            .iter()
            .map(|m| {
                format!(
                    "{} ({})",
                    m["backup"].as_str().unwrap_or_default(),
                    m["phase"].as_str().unwrap_or_default()
                )
            })
            .collect();
        CheckResult {
            check: "velero_archives",
            status: Status::Failed,
            detail: format!(
                "Velero recorded {} but their archives (<name>.tar.gz) are missing: they cannot be restored",
                names.join(", ")
            ),
            evidence,
        }
    }
}

/// A Velero backup's `velero-backup.json` against the archive that was just read.
async fn velero_check(
    store: &impl ObjectStore,
    set: &BackupSet,
    backup: &ObjectInfo,
    names: &[String],
) -> std::result::Result<Value, String> {
    let name = velero::backup_name(&set.prefix, &backup.key)
        .ok_or_else(|| format!("{} is not a Velero backup archive", backup.key))?;
    let metadata_key = format!("{}backups/{name}/velero-backup.json", set.prefix);
    let metadata = match store.get_tagged(&set.bucket, &metadata_key).await {
        Ok(Some((bytes, _))) => bytes,
        Ok(None) => {
            return Err(format!(
                "{metadata_key} is missing: Velero cannot restore this backup"
            ));
        }
        Err(e) => return Err(format!("could not read {metadata_key}: {e}")),
    };
    velero::consistent(&name, &metadata, names)
}

/// The message for a set that failed or could not be checked: what failed and what to do.
pub fn failure_notification(
    set: &SetReport,
    labels: &std::collections::BTreeMap<String, String>,
    report: &str,
) -> Notification {
    let failed: Vec<&CheckResult> = set
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Failed | Status::Error))
        .collect();
    let names: Vec<&str> = failed.iter().map(|c| c.check).collect();
    let mut text = format!(
        "Backup set {} (s3://{}/{}) is {}: {}.\n",
        set.name,
        set.bucket,
        set.prefix,
        if set.status == Status::Error {
            "NOT VERIFIED"
        } else {
            "FAILING"
        },
        names.join(", ")
    );
    for c in &failed {
        text.push_str(&format!(
            "\n- {} ({}): {}",
            c.check,
            if c.status == Status::Error {
                "error"
            } else {
                "failed"
            },
            c.detail
        ));
    }
    text.push_str(&format!("\n\nFull report: {report}"));
    let mut attributes = vec![
        ("alertname".to_owned(), format!("BackupVerify:{}", set.name)),
        ("status".to_owned(), "firing".to_owned()),
    ];
    for label in ["severity", "team", "service"] {
        if let Some(v) = labels.get(label) {
            attributes.push((label.to_owned(), v.clone()));
        }
    }
    Notification {
        subject: format!(
            "[BACKUP {}] {}: {}",
            if set.status == Status::Error {
                "UNVERIFIED"
            } else {
                "FAILED"
            },
            set.name,
            names.join(", ")
        ),
        message: text,
        attributes,
        details: Some(serde_json::json!({
            "version": 1,
            "set": set.name,
            "status": set.status,
            "checks": failed,
            "report": report,
        })),
    }
}

/// Where the report of the run at `run_at` goes: one key per scheduled run, so a retried
/// invocation overwrites its own report instead of adding a second one.
pub fn report_key(prefix: &str, run_at: DateTime<Utc>) -> String {
    format!(
        "{prefix}{}.json",
        run_at.format("%Y/%m/%d/%Y-%m-%dT%H-%M-%SZ")
    )
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
    /// `VIGIL_BACKUP_TOPIC_ARN`: where a failing set is announced (optional).
    pub topic_arn: Option<String>,
}

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
        })
    }
}

/// The Lambda handler for a scheduled event: verify every set at the scheduled time, write the
/// report, and return where it went with the summary. A run with a check in `error` fails
/// after writing its report, so Lambda retries it.
pub async fn handle_scheduled(
    store: &(impl ObjectStore + BucketInspector + ObjectStreamer),
    notifier: &impl Notifier,
    config: &VerifyConfig,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Value> {
    let run_at = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    let text = config.backup_sets.read(store).await?;
    let sets = load(&config.backup_sets.to_string(), &text)?;
    // Ages are measured at the moment of the check, not at the scheduled time.
    let report = verify(store, &sets, now).await;
    let key = report_key(&config.report_prefix, run_at);
    let body = serde_json::to_vec_pretty(&report)
        .map_err(|e| Error::InvalidInput(format!("report not serializable: {e}")))?;
    store
        .put(&config.report_bucket, &key, body, "application/json")
        .await?;
    let location = format!("s3://{}/{key}", config.report_bucket);
    tracing::info!(report = %location, ok = report.summary.ok, failed = report.summary.failed,
        error = report.summary.error, "report written");
    for (set, spec) in report.sets.iter().zip(&sets) {
        // One EMF line per set: the age of its newest backup and its checks, as metrics.
        let age = set
            .checks
            .iter()
            .find(|c| c.check == "freshness")
            .and_then(|c| c.evidence["age_seconds"].as_f64());
        let failed = set
            .checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .count();
        let errors = set
            .checks
            .iter()
            .filter(|c| c.status == Status::Error)
            .count();
        let mut fields = serde_json::Map::new();
        fields.insert("message".into(), "backup set verified".into());
        fields.insert("status".into(), serde_json::json!(set.status));
        let verified: f64 = set
            .checks
            .iter()
            .filter(|c| c.check == "restore" && c.status == Status::Ok)
            .filter_map(|c| c.evidence["bytes"].as_f64())
            .sum();
        let mut metrics = vec![
            ("ChecksFailed", failed as f64, Unit::Count),
            ("ChecksError", errors as f64, Unit::Count),
            ("BytesVerified", verified, Unit::Bytes),
        ];
        if let Some(age) = age {
            metrics.push(("NewestBackupAge", age, Unit::Seconds));
        }
        emf::emit(&emf::line(
            "Vigil",
            &[("Function", "backup-verify"), ("Set", &set.name)],
            &metrics,
            fields,
            now,
        ));
        if set.status == Status::Ok {
            continue;
        }
        if let Some(topic) = &config.topic_arn {
            let id = notifier
                .publish(topic, &failure_notification(set, &spec.labels, &location))
                .await?;
            tracing::info!(set = %set.name, message_id = %id, "failure announced");
        }
    }
    if report.summary.error > 0 {
        return Err(Error::Aws {
            service: "S3",
            operation: "backup checks",
            message: format!(
                "{} backup set(s) could not be checked; report at {location}",
                report.summary.error
            ),
            retryable: true,
        });
    }
    Ok(serde_json::json!({ "report": location, "summary": report.summary }))
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
    fn patterns_are_validated() {
        assert!(set(", include: ['*.sql.gz'], exclude: ['*.partial*']").is_ok());
        let err = set(", include: ['']")
            .expect_err("empty pattern")
            .to_string();
        assert!(err.contains("include"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn set() -> BackupSet {
        load(
            "sets.yaml",
            "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 26h}\n",
        )
        .expect("valid")
        .remove(0)
    }

    fn object(key: &str, at: DateTime<Utc>) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            last_modified: at,
            etag: "\"e\"".into(),
        }
    }

    #[test]
    fn fresh_stale_and_missing() {
        let now = t("2026-11-25T08:00:00Z");
        let objects = vec![
            object("db/1.tar.gz", now - Duration::hours(50)),
            object("db/2.tar.gz", now - Duration::hours(2)),
        ];
        let fresh = check_freshness(&set(), &objects, now);
        assert_eq!(fresh.status, Status::Ok);
        assert_eq!(fresh.evidence["newest_key"], "db/2.tar.gz");
        assert_eq!(fresh.evidence["age_seconds"], 7200);

        let stale = check_freshness(&set(), &objects[..1], now);
        assert_eq!(stale.status, Status::Failed);
        assert!(stale.detail.contains("2d2h old"), "{}", stale.detail);

        let none = check_freshness(&set(), &[], now);
        assert_eq!(none.status, Status::Failed);
        assert_eq!(none.evidence["objects"], 0);
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
    }

    #[test]
    fn report_keys_are_one_per_run() {
        assert_eq!(
            report_key("reports/", t("2026-11-25T08:00:00Z")),
            "reports/2026/11/25/2026-11-25T08-00-00Z.json"
        );
    }

    #[test]
    fn restores_are_sampled() {
        let now = t("2026-11-25T08:00:00Z");
        let objects: Vec<ObjectInfo> = (0..10)
            .map(|i| object(&format!("db/{i}"), now - Duration::hours(10 - i)))
            .collect();
        let keys = |v: Vec<&ObjectInfo>| v.into_iter().map(|o| o.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(sample(&objects, Sample::Latest, 1)), ["db/9"]);
        assert_eq!(sample(&objects, Sample::All, 1).len(), 10);
        assert!(sample(&objects, Sample::None, 1).is_empty());
        let three = keys(sample(&objects, Sample::Random(3), 42));
        assert_eq!(three.len(), 3);
        assert_eq!(three.iter().collect::<BTreeSet<_>>().len(), 3);
        assert_eq!(
            three,
            keys(sample(&objects, Sample::Random(3), 42)),
            "same seed, same sample"
        );
        assert_eq!(sample(&objects, Sample::Random(30), 1).len(), 10);
        let parsed = load(
            "s.yaml",
            "backup_sets:\n  - {name: a, bucket: bbb, max_age: 1h, restore: 3}\n  - {name: b, bucket: bbb, max_age: 1h, restore: all}\n",
        )
        .expect("valid");
        assert_eq!(
            (parsed[0].restore, parsed[1].restore),
            (Sample::Random(3), Sample::All)
        );
        assert!(
            load(
                "s.yaml",
                "backup_sets:\n  - {name: a, bucket: bbb, max_age: 1h, restore: some}\n"
            )
            .is_err()
        );
    }

    #[test]
    fn worst_status_wins() {
        let c = |status| CheckResult {
            check: "x",
            status,
            detail: String::new(),
            evidence: Value::Null,
        };
        assert_eq!(worst(&[c(Status::Ok), c(Status::Failed)]), Status::Failed);
        assert_eq!(worst(&[c(Status::Error), c(Status::Failed)]), Status::Error);
        assert_eq!(worst(&[c(Status::Ok)]), Status::Ok);
    }
}

#[cfg(test)]
mod dropped_stream_tests {
    use super::*;
    use vigil_shared::testing::{Dice, DroppingStreams, MemoryStore};

    /// A healthy set: a gzip dump, its manifest, and a copy in another bucket (another ETag,
    /// so the replica check streams both).
    async fn healthy() -> (MemoryStore, Vec<BackupSet>) {
        use sha2::Digest;
        use std::io::Write;
        let store = MemoryStore::default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for i in 0..20_000u32 {
            gz.write_all(format!("INSERT INTO orders VALUES ({i});\n").as_bytes())
                .expect("gzip");
        }
        let dump = gz.finish().expect("gzip");
        let sha: String = sha2::Sha256::digest(&dump)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = "db/2026-11-25.sql.gz";
        let manifest = serde_json::json!({"key": key, "size": dump.len(), "sha256": sha});
        store
            .put("backups", key, dump.clone(), "application/gzip")
            .await
            .expect("put");
        store
            .put(
                "backups",
                &format!("{key}{MANIFEST_SUFFIX}"),
                manifest.to_string().into_bytes(),
                "application/json",
            )
            .await
            .expect("put");
        store
            .put("dr-copy", key, dump, "application/gzip")
            .await
            .expect("put");
        let sets = load(
            "s.yaml",
            "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 26h, manifest: true, restore: all, replicas: [{bucket: dr-copy}]}\n",
        )
        .expect("sets");
        (store, sets)
    }

    /// Connections that drop at random offsets, over many runs: a healthy backup is never
    /// reported broken. A run either verifies it or says it could not (`error`).
    #[tokio::test]
    async fn a_healthy_backup_is_never_reported_broken_whatever_the_stream_does() {
        let (store, sets) = healthy().await;
        let now = DateTime::UNIX_EPOCH + chrono::Duration::hours(1);
        let clean = verify(&store, &sets, now).await;
        assert_eq!(clean.summary.ok, 1, "{:?}", clean.sets[0].checks);
        let (mut errors, mut dropped_runs) = (0, 0);
        for seed in 0..200 {
            let streams = DroppingStreams {
                inner: &store,
                dice: std::sync::Mutex::new(Dice::new(seed)),
                drop: 0.5,
            };
            let report = verify(&streams, &sets, now).await;
            let checks = &report.sets[0].checks;
            for c in checks {
                assert_ne!(
                    c.status,
                    Status::Failed,
                    "seed {seed}: {} reported broken: {}",
                    c.check,
                    c.detail
                );
            }
            let failed_reads = checks.iter().filter(|c| c.status == Status::Error).count();
            errors += failed_reads;
            dropped_runs += usize::from(failed_reads > 0);
        }
        assert!(
            dropped_runs > 50,
            "the streams did drop: {dropped_runs} runs"
        );
        assert!(errors >= dropped_runs);
    }
}
