//! A test restore: the backup streamed from end to end as a restore would read it, its format
//! validated, its checksums computed in the same pass, compared with its manifest (and, for a
//! Velero backup, with the `velero-backup.json` beside it).

use serde_json::json;
use vigil_shared::{ObjectInfo, ObjectStore, ObjectStreamer};

use super::Attempt;
use crate::budget::Budget;
use crate::checksum::Wanted;
use crate::config::BackupSet;
use crate::manifest::{self, Manifest};
use crate::report::{Check, CheckResult, Status};
use crate::restore::{self, Pass, RestoreError, Restored};
use crate::velero;

/// What a test restore found.
pub struct Restore {
    pub check: CheckResult,
    /// What was read, when the backup was read to its end.
    pub restored: Option<Restored>,
    /// The backup's manifest (`Some(None)`: it has none), when it could be read: the integrity
    /// check of the newest backup uses it instead of reading it again.
    pub manifest: Option<Option<Manifest>>,
}

/// Restores `backup`, computing `wanted` beside SHA-256. `rate` is the throughput measured so
/// far this run (bytes per second): a backup that cannot be read in the time left at that rate
/// is not started.
pub async fn run(
    store: &impl ObjectStore,
    streamer: &impl ObjectStreamer,
    set: &BackupSet,
    backup: &ObjectInfo,
    wanted: Wanted,
    budget: &Budget,
    rate: Option<f64>,
) -> Restore {
    let manifest = match manifest::read(store, Check::Restore, &set.bucket, &backup.key).await {
        Ok(m) => m,
        Err(check) => {
            return Restore {
                check,
                restored: None,
                manifest: None,
            };
        }
    };
    let (check, restored) = restore(
        store,
        streamer,
        set,
        backup,
        manifest.as_ref(),
        wanted,
        budget,
        rate,
    )
    .await;
    Restore {
        check,
        restored,
        manifest: Some(manifest),
    }
}

#[allow(clippy::too_many_arguments)]
async fn restore(
    store: &impl ObjectStore,
    streamer: &impl ObjectStreamer,
    set: &BackupSet,
    backup: &ObjectInfo,
    manifest: Option<&Manifest>,
    wanted: Wanted,
    budget: &Budget,
    rate: Option<f64>,
) -> (CheckResult, Option<Restored>) {
    let format = set
        .format
        .unwrap_or_else(|| restore::Format::detect(&backup.key));
    let evidence = json!({ "key": backup.key, "format": format, "size": backup.size });
    let out_of_time = {
        let mut e = evidence.clone();
        e["out_of_time"] = json!(true);
        e
    };
    if budget.exhausted() {
        let detail = format!(
            "{} was not restored: the run's time ran out before it; the next run begins with this set",
            backup.key
        );
        return (
            CheckResult::skipped(Check::Restore, detail, out_of_time),
            None,
        );
    }
    if let (Some(left), Some(rate)) = (budget.left(), rate) {
        let needs = backup.size as f64 / rate.max(1.0);
        if needs > left.as_secs_f64() {
            let detail = format!(
                "{} was not restored: {} bytes need about {needs:.0} s at the {:.1} MB/s measured this run, and {} s are left; give the function a longer timeout or verify it with `vigil backup verify`, which has no time limit",
                backup.key,
                backup.size,
                rate / 1e6,
                left.as_secs()
            );
            return (
                CheckResult::skipped(Check::Restore, detail, out_of_time),
                None,
            );
        }
    }
    let pass = Pass {
        keep_names: set.velero,
        wanted,
        deadline: budget.until,
    };
    let started = std::time::Instant::now();
    let outcome = streamer
        .read_with(&set.bucket, &backup.key, move |r| {
            restore::validate(r, format, &pass)
        })
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let restored = match outcome {
        Err(e) => {
            let what = format!("read s3://{}/{}", set.bucket, backup.key);
            return (CheckResult::errored(Check::Restore, &what, &e), None);
        }
        Ok(Err(RestoreError::Read(why))) => {
            let detail = format!(
                "could not read s3://{}/{} to its end ({why}); nothing is known of the backup, the next run tries again",
                set.bucket, backup.key
            );
            return (
                CheckResult::unreadable(Check::Restore, detail, evidence),
                None,
            );
        }
        Ok(Err(RestoreError::OutOfTime(why))) => {
            let detail = format!(
                "{} was not restored to its end: {why}; give the function a longer timeout or verify it with `vigil backup verify`",
                backup.key
            );
            return (
                CheckResult::skipped(Check::Restore, detail, out_of_time),
                None,
            );
        }
        Ok(Err(RestoreError::Invalid(why))) => {
            let detail = format!("{} does not restore: {why}", backup.key);
            return (
                CheckResult::judged(Check::Restore, false, detail, evidence),
                None,
            );
        }
        Ok(Ok(r)) => r,
    };
    let mut evidence = json!({
        "key": backup.key,
        "format": restored.format,
        "bytes": restored.bytes,
        "sha256": restored.sha256,
        "checksums": restored.digests,
        "entries": restored.entries,
        "seconds": seconds,
        "mb_per_second": restored.bytes as f64 / 1e6 / seconds.max(1e-9),
    });
    if set.velero {
        match velero_metadata(store, set, backup, &restored.names).await {
            Ok(Ok(found)) => evidence["velero"] = found,
            Ok(Err(detail)) => {
                return (
                    CheckResult::judged(Check::Restore, false, detail, evidence),
                    Some(restored),
                );
            }
            Err(e) => return (e, Some(restored)),
        }
    }
    let check = decide(set, backup, manifest, &restored, evidence);
    (check, Some(restored))
}

/// The verdict on a backup read to its end: it matches its manifest, or has none and needs
/// none.
pub fn decide(
    set: &BackupSet,
    backup: &ObjectInfo,
    manifest: Option<&Manifest>,
    restored: &Restored,
    mut evidence: serde_json::Value,
) -> CheckResult {
    let mismatch = match manifest {
        None if set.manifest => Some(format!(
            "{} has no manifest ({})",
            backup.key,
            manifest::key_of(&backup.key)
        )),
        None => None,
        Some(m) => {
            evidence["manifest"] = json!({ "size": m.size, "sha256": m.sha256 });
            (!m.sha256.eq_ignore_ascii_case(&restored.sha256) || m.size != restored.bytes).then(|| {
                format!(
                    "{} does not match its manifest: sha256 {} against {}, {} bytes against {}; the backup was corrupted after it was written",
                    backup.key, restored.sha256, m.sha256, restored.bytes, m.size
                )
            })
        }
    };
    match mismatch {
        Some(detail) => CheckResult::judged(Check::Restore, false, detail, evidence),
        None => CheckResult {
            check: Check::Restore,
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

/// A Velero backup's `velero-backup.json` against the archive that was just read: the inner
/// `Err` is a finding, the outer one a read that failed.
async fn velero_metadata(
    store: &impl ObjectStore,
    set: &BackupSet,
    backup: &ObjectInfo,
    names: &[String],
) -> std::result::Result<std::result::Result<serde_json::Value, String>, CheckResult> {
    let Some(name) = velero::backup_name(&set.prefix, &backup.key) else {
        return Ok(Err(format!(
            "{} is not a Velero backup archive",
            backup.key
        )));
    };
    let metadata_key = velero::metadata_key(&set.prefix, &name);
    let metadata = store
        .get_tagged(&set.bucket, &metadata_key)
        .await
        .or_error(Check::Restore, || format!("read {metadata_key}"))?;
    Ok(match metadata {
        Some((bytes, _)) => velero::consistent(&name, &bytes, names),
        None => Err(format!(
            "{metadata_key} is missing: Velero cannot restore this backup"
        )),
    })
}
