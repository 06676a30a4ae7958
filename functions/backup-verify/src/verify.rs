//! The run over every set: list, then each check in its order, within the run's time. A call to
//! storage that fails becomes that check's `error`; the other checks and sets still run.

use chrono::{DateTime, Utc};
use vigil_shared::{
    BucketInspector, ChecksumType, ObjectInfo, ObjectStore, ObjectStreamer, StoredChecksum,
};

use crate::budget::Budget;
use crate::checks::{self, Attempt, settle};
use crate::checksum::Wanted;
use crate::config::BackupSet;
use crate::manifest::{self, MANIFEST_SUFFIX, Manifest};
use crate::report::{Check, CheckResult, Report, SetReport, Status, Summary, worst};
use crate::restore::Restored;
use crate::sample::sample;
use crate::{glob, velero};

/// What the checks read through: objects (listings, small objects), their metadata and the
/// buckets' protections, and streamed bodies. Separate, so that a caller wraps only what it
/// must (the command line counts the streamed bytes).
pub struct Storage<'a, S, I, T> {
    pub objects: &'a S,
    pub inspector: &'a I,
    pub streamer: &'a T,
}

impl<'a, A> Storage<'a, A, A, A> {
    /// One client for all three.
    pub fn all(one: &'a A) -> Self {
        Self {
            objects: one,
            inspector: one,
            streamer: one,
        }
    }
}

/// Restore throughput measured so far this run.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    bytes: f64,
    seconds: f64,
}

impl Rate {
    fn add(&mut self, check: &CheckResult) {
        if let (Some(b), Some(s)) = (
            check.evidence["bytes"].as_f64(),
            check.evidence["seconds"].as_f64(),
        ) {
            self.bytes += b;
            self.seconds += s;
        }
    }

    /// Bytes per second, once a megabyte has been read (less is all latency).
    fn per_second(&self) -> Option<f64> {
        (self.bytes >= 1e6 && self.seconds > 0.0).then(|| self.bytes / self.seconds)
    }
}

/// Verifies every set at `now`, in order, until the budget runs out: the sets not reached
/// are reported as such, never as verified.
pub async fn verify<S, I, T>(
    storage: &Storage<'_, S, I, T>,
    sets: &[&BackupSet],
    now: DateTime<Utc>,
    budget: &Budget,
) -> Report
where
    S: ObjectStore,
    I: BucketInspector,
    T: ObjectStreamer,
{
    let mut reports = Vec::with_capacity(sets.len());
    let mut summary = Summary::default();
    let mut rate = Rate::default();
    for set in sets {
        let (status, checks) = if budget.exhausted() {
            (Status::NotReached, Vec::new())
        } else {
            let checks = check_set(storage, set, now, budget, &mut rate).await;
            (worst(&checks), checks)
        };
        summary.add(status);
        tracing::info!(set = %set.name, status = ?status, "backup set verified");
        reports.push(SetReport {
            name: set.name.clone(),
            bucket: set.bucket.clone(),
            prefix: set.prefix.clone(),
            status,
            checks,
        });
    }
    Report {
        report_version: 2,
        run_at: now,
        sets: reports,
        summary,
    }
}

/// The backups of a listing: not manifests, not what the set's patterns leave out, and for a
/// Velero location only the archives.
fn backups(set: &BackupSet, listed: Vec<ObjectInfo>) -> Vec<ObjectInfo> {
    let patterns = |list: &[String]| -> Vec<glob::Pattern> {
        list.iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect()
    };
    let (include, exclude) = (patterns(&set.include), patterns(&set.exclude));
    listed
        .into_iter()
        .filter(|o| !o.key.ends_with(MANIFEST_SUFFIX))
        .filter(|o| {
            let relative = o.key.strip_prefix(&set.prefix).unwrap_or(&o.key);
            glob::selected(relative, &include, &exclude)
        })
        .filter(|o| !set.velero || velero::backup_name(&set.prefix, &o.key).is_some())
        .collect()
}

async fn check_set<S, I, T>(
    storage: &Storage<'_, S, I, T>,
    set: &BackupSet,
    now: DateTime<Utc>,
    budget: &Budget,
    rate: &mut Rate,
) -> Vec<CheckResult>
where
    S: ObjectStore,
    I: BucketInspector,
    T: ObjectStreamer,
{
    let listed = match storage.objects.list(&set.bucket, &set.prefix).await {
        Ok(listed) => listed,
        Err(e) => {
            let what = format!("list s3://{}/{}", set.bucket, set.prefix);
            return vec![CheckResult::errored(Check::Freshness, &what, &e)];
        }
    };
    let without_archive = if set.velero {
        let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        velero::without_archive(&set.prefix, &keys)
    } else {
        Vec::new()
    };
    let objects = backups(set, listed);
    let mut out = vec![
        checks::freshness::check(set, &objects, now),
        checks::count::check(set, &objects),
    ];
    out.extend(checks::size::check(set, &objects));
    if set.velero {
        out.push(settle(
            checks::velero_archives::run(storage.objects, set, &without_archive).await,
        ));
    }
    let newest = objects.iter().max_by_key(|o| (o.last_modified, &o.key));

    // What S3 stored for the newest backup and its copies decides what its restore computes.
    let stored = match newest {
        Some(n) => Some(
            storage
                .inspector
                .stored_checksum(&set.bucket, &n.key)
                .await
                .or_error(Check::Integrity, || {
                    format!("read the checksum of {}", n.key)
                }),
        ),
        None => None,
    };
    let mut wanted = Wanted::default();
    if let Some(Ok(Some(s))) = &stored {
        wanted.add(s);
    }
    // The copies' stored checksums, read once: for what the restore computes, and for the
    // replica checks.
    let mut replicas_stored = Vec::with_capacity(set.replicas.len());
    if let Some(n) = newest {
        for r in &set.replicas {
            let key = checks::replica::key(set, r, &n.key);
            let stored = storage.inspector.stored_checksum(&r.bucket, &key).await;
            if let Ok(Some(c)) = &stored {
                if c.kind == ChecksumType::FullObject {
                    wanted.full.insert(c.algorithm);
                }
            }
            replicas_stored.push(stored);
        }
    }

    let mut newest_restored: Option<Restored> = None;
    let mut newest_manifest: Option<Option<Manifest>> = None;
    for backup in sample(&objects, set.restore, now.timestamp() / 86_400) {
        let is_newest = newest.is_some_and(|n| n.key == backup.key);
        let computes = if is_newest {
            wanted.clone()
        } else {
            Wanted::default()
        };
        let restore = checks::restore::run(
            storage.objects,
            storage.streamer,
            set,
            backup,
            computes,
            budget,
            rate.per_second(),
        )
        .await;
        rate.add(&restore.check);
        if is_newest {
            newest_restored = restore.restored;
            newest_manifest = restore.manifest;
        }
        out.push(restore.check);
    }

    let primary_stored: Option<StoredChecksum> = stored
        .as_ref()
        .and_then(|r| r.as_ref().ok().cloned().flatten());
    if let (Some(newest), Some(stored)) = (newest, stored) {
        out.push(settle(
            integrity(
                storage,
                set,
                newest,
                stored,
                newest_manifest,
                newest_restored.as_ref(),
            )
            .await,
        ));
    }
    if let Some(newest) = newest {
        let primary = checks::replica::Primary {
            object: newest,
            stored: primary_stored.as_ref(),
            restored: newest_restored.as_ref(),
        };
        let mut primary_sha = None;
        for (r, stored) in set.replicas.iter().zip(replicas_stored) {
            out.push(settle(
                checks::replica::run(
                    storage.inspector,
                    storage.streamer,
                    set,
                    &primary,
                    (r, stored),
                    &mut primary_sha,
                    budget,
                )
                .await,
            ));
        }
        if let Some(days) = set.require.object_lock_days {
            out.push(settle(
                checks::object_lock::run(storage.inspector, set, newest, days, now).await,
            ));
        }
    }
    if set.require.versioning {
        out.push(settle(
            checks::versioning::run(storage.inspector, &set.bucket).await,
        ));
    }
    if let Some(outcome) = checks::encryption::run(storage.inspector, set, newest).await {
        out.push(settle(outcome));
    }
    if let Some(name) = newest
        .filter(|_| set.velero)
        .and_then(|n| velero::backup_name(&set.prefix, &n.key))
    {
        if let Some(outcome) =
            checks::velero_volumes::run(storage.objects, storage.inspector, set, &name).await
        {
            out.push(settle(outcome));
        }
    }
    out
}

/// The integrity check of the newest backup, with its manifest when the restore already read
/// it. A mismatch with the bytes read is confirmed against a fresh look at the object: one
/// overwritten while it was read (the listing's ETag is gone) is an error for the next run,
/// not a finding.
async fn integrity<S, I, T>(
    storage: &Storage<'_, S, I, T>,
    set: &BackupSet,
    newest: &ObjectInfo,
    stored: std::result::Result<Option<StoredChecksum>, CheckResult>,
    manifest: Option<Option<Manifest>>,
    restored: Option<&Restored>,
) -> checks::Outcome
where
    S: ObjectStore,
    I: BucketInspector,
    T: ObjectStreamer,
{
    let stored = stored?;
    let manifest = match manifest {
        Some(read) => read,
        None => manifest::read(storage.objects, Check::Integrity, &set.bucket, &newest.key).await?,
    };
    let check = checks::integrity::decide(newest, stored.as_ref(), manifest.as_ref(), restored);
    if check.status != Status::Failed || restored.is_none() {
        return Ok(check);
    }
    let now = storage
        .inspector
        .head(&set.bucket, &newest.key)
        .await
        .or_error(Check::Integrity, || format!("read {}", newest.key))?;
    match now {
        Some(head) if head.etag == newest.etag => Ok(check),
        _ => Err(CheckResult::unreadable(
            Check::Integrity,
            format!(
                "{} changed while it was verified (its ETag is no longer {}); the next run checks the new object",
                newest.key, newest.etag
            ),
            check.evidence,
        )),
    }
}
