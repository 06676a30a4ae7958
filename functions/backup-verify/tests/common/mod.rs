//! Fixtures of the backup-verify tests: backups in the shared in-memory store, the function's
//! configuration, and scheduled invocations in the shape the stack's Scheduler sends.
#![allow(dead_code)]

use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use vigil_backup_verify::checksum::{Hasher, Wanted};
use vigil_backup_verify::handler::Invocation;
use vigil_backup_verify::{Budget, VerifyConfig};
use vigil_shared::testing::MemoryStore;
use vigil_shared::{ChecksumAlgorithm, ChecksumType, ObjectStore, PartChecksum, StoredChecksum};

pub const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:vigil-backups";
pub const SETS_KEY: &str = "config/backup-sets.yaml";

pub fn config() -> VerifyConfig {
    VerifyConfig {
        backup_sets: format!("s3://vigil/{SETS_KEY}").parse().expect("source"),
        report_bucket: "vigil".into(),
        report_prefix: "reports/backup-verify/".into(),
        topic_arn: Some(TOPIC.into()),
        state_key: "state/backup-verify.json".into(),
        smoke: None,
    }
}

/// `d` days (and `h` hours) after the in-memory store's listing time (the epoch).
pub fn day(d: i64, h: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + Duration::days(d) + Duration::hours(h)
}

/// What EventBridge Scheduler sends with the stack's `Input` (events/scheduler-backup-verify.json).
pub fn scheduled(at: DateTime<Utc>) -> Value {
    json!({
        "vigil": "scheduled",
        "scheduled_time": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "attempt": "1",
        "execution_id": "d32c5kddcf5bb8c3",
        "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/vigil-BackupVerify"
    })
}

/// An invocation at `at` with no time limit (its leases last 15 minutes).
pub fn invocation(at: DateTime<Utc>, run: &str) -> Invocation {
    Invocation {
        now: at,
        started: std::time::Instant::now(),
        budget: Budget::unlimited(),
        deadline: at + Duration::minutes(15),
        run_id: run.to_owned(),
    }
}

/// A gzip'd SQL dump of `rows` rows.
pub fn dump(rows: u32) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..rows {
        gz.write_all(format!("INSERT INTO orders VALUES ({i}, 'order {i}');\n").as_bytes())
            .expect("gzip");
    }
    gz.finish().expect("gzip")
}

/// The checksum S3 stores for `data`: whole-object in `algorithm`, or composite over `parts`.
pub fn s3_checksum(algorithm: ChecksumAlgorithm, data: &[u8], parts: &[u64]) -> StoredChecksum {
    if parts.is_empty() {
        let mut wanted = Wanted::default();
        wanted.full.insert(algorithm);
        let mut h = Hasher::new(&wanted);
        h.update(data);
        return StoredChecksum {
            algorithm,
            value: h.finish().full[&algorithm].clone(),
            kind: ChecksumType::FullObject,
            parts: Vec::new(),
            parts_count: None,
        };
    }
    let wanted = Wanted {
        full: Default::default(),
        composite: Some((algorithm, parts.to_vec())),
    };
    let mut h = Hasher::new(&wanted);
    h.update(data);
    let composite = h.finish().composite.expect("composite");
    StoredChecksum {
        algorithm,
        value: composite.value,
        kind: ChecksumType::Composite,
        parts: parts
            .iter()
            .zip(&composite.parts)
            .map(|(size, c)| PartChecksum {
                size: *size,
                checksum: Some(c.clone()),
            })
            .collect(),
        parts_count: Some(parts.len() as u32),
    }
}

pub async fn put(store: &MemoryStore, bucket: &str, key: &str, body: Vec<u8>) {
    store
        .put(bucket, key, body, "application/octet-stream")
        .await
        .expect("put");
}

/// Writes the backup sets file.
pub async fn sets(store: &MemoryStore, yaml: &str) {
    put(store, "vigil", SETS_KEY, yaml.as_bytes().to_vec()).await;
}

/// The report of the run at `at`.
pub fn report(store: &MemoryStore, at: DateTime<Utc>) -> Value {
    let key = vigil_backup_verify::report_key("reports/backup-verify/", at);
    serde_json::from_slice(&store.body("vigil", &key).expect("report written")).expect("json")
}

/// The status of `check` of `set` in a report.
pub fn status(report: &Value, set: &str, check: &str) -> Option<String> {
    report["sets"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == set)?["checks"]
        .as_array()?
        .iter()
        .find(|c| c["check"] == check)
        .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
}

/// A store holding one backup, `db/1.sql.gz`, and the backup sets file `yaml`.
pub async fn one_backup(yaml: &str) -> MemoryStore {
    let store = MemoryStore::default();
    put(&store, "backups", "db/1.sql.gz", dump(100)).await;
    sets(&store, yaml).await;
    store
}

/// One scheduled run at `at`, everything read from `store` without faults.
pub async fn run_clean(
    store: &MemoryStore,
    notifier: &impl vigil_shared::Notifier,
    at: DateTime<Utc>,
    run: &str,
) -> vigil_shared::Result<Value> {
    vigil_backup_verify::handle_scheduled(
        &vigil_backup_verify::Storage::all(store),
        notifier,
        &config(),
        &scheduled(at),
        &invocation(at, run),
    )
    .await
}

/// SHA-256 in the manifests' form (lower-case hex).
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Hasher::new(&Wanted::default());
    h.update(data);
    h.finish().sha256_hex()
}
