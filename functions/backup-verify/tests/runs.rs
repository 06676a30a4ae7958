//! Whole runs of the function over the shared in-memory store and notifier: the checks as S3
//! stores data (checksum types, copies by other tools, multipart layouts), connections that
//! drop, the run's time, and the announcements kept once-only in state.

mod common;

use std::time::{Duration as StdDuration, Instant};

use common::*;
use vigil_backup_verify::handler::Invocation;
use vigil_backup_verify::{Budget, Status, Storage, handle_scheduled, load, verify};
use vigil_shared::fixtures::tar_gz;
use vigil_shared::testing::{Dice, DroppingStreams, MemoryStore, RecordingNotifier};
use vigil_shared::{ChecksumAlgorithm, Error, ObjectStreamer, Result};

/// A healthy set as real tools write it: a gzip dump uploaded in two parts with a composite
/// SHA-256 (GetObjectAttributes returns it without `-N`), its manifest, and a copy in another
/// bucket made by another tool (single part, S3's default CRC64NVME, another ETag).
async fn healthy() -> (MemoryStore, Vec<vigil_backup_verify::BackupSet>, Vec<u8>) {
    let store = MemoryStore::default();
    let body = dump(20_000);
    let sha = sha256_hex(&body);
    let key = "db/2026-11-25.sql.gz";
    put(&store, "backups", key, body.clone()).await;
    let half = body.len() as u64 / 2;
    let parts = [half, body.len() as u64 - half];
    store.set_checksum(
        "backups",
        key,
        s3_checksum(ChecksumAlgorithm::Sha256, &body, &parts),
    );
    let manifest = serde_json::json!({"key": key, "size": body.len(), "sha256": sha});
    put(
        &store,
        "backups",
        &format!("{key}.manifest.json"),
        manifest.to_string().into_bytes(),
    )
    .await;
    put(&store, "dr-copy", key, body.clone()).await;
    store.set_checksum(
        "dr-copy",
        key,
        s3_checksum(ChecksumAlgorithm::Crc64Nvme, &body, &[]),
    );
    let yaml = "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 30d, manifest: true, restore: all, replicas: [{bucket: dr-copy}]}\n";
    sets(&store, yaml).await;
    (store, load("s.yaml", yaml).expect("sets"), body)
}

/// A multipart backup with a composite checksum and its copy by another tool are the same
/// backup: the restore recomputes the composite over S3's part sizes and the copy's CRC64NVME
/// in one pass, and no byte of the copy is read. A copy with one byte changed is a finding.
#[tokio::test]
async fn checksums_of_every_type_are_compared_like_with_like() {
    let (store, sets, body) = healthy().await;
    let order: Vec<_> = sets.iter().collect();
    let reads = Recorded {
        inner: &store,
        buckets: std::sync::Mutex::new(Vec::new()),
    };
    let storage = Storage {
        objects: &store,
        inspector: &store,
        streamer: &reads,
    };
    let budget = Budget::unlimited();
    let run = || verify(&storage, &order, day(1, 0), &budget);
    let report = run().await;
    assert_eq!(
        *reads.buckets.lock().expect("reads"),
        ["backups"],
        "one pass over the primary, none over the copy"
    );
    let set = &report.sets[0];
    assert_eq!(set.status, Status::Ok, "{:#?}", set.checks);
    let integrity = set
        .check(vigil_backup_verify::Check::Integrity)
        .expect("integrity");
    assert!(
        integrity
            .detail
            .contains("composite SHA256 agrees with the bytes read"),
        "{}",
        integrity.detail
    );
    let replica = set
        .check(vigil_backup_verify::Check::Replica)
        .expect("replica");
    assert!(
        replica
            .detail
            .contains("stored CRC64NVME is the primary's as read"),
        "{}",
        replica.detail
    );

    let mut other = body.clone();
    let middle = other.len() / 2;
    other[middle] ^= 0x01;
    put(&store, "dr-copy", "db/2026-11-25.sql.gz", other.clone()).await;
    store.set_checksum(
        "dr-copy",
        "db/2026-11-25.sql.gz",
        s3_checksum(ChecksumAlgorithm::Crc64Nvme, &other, &[]),
    );
    let report = run().await;
    let replica = report.sets[0]
        .check(vigil_backup_verify::Check::Replica)
        .expect("replica");
    assert_eq!(replica.status, Status::Failed, "{}", replica.detail);
    assert!(replica.detail.contains("other bytes"), "{}", replica.detail);
}

/// A streamer that records which buckets it read from.
struct Recorded<'a> {
    inner: &'a MemoryStore,
    buckets: std::sync::Mutex<Vec<String>>,
}

impl ObjectStreamer for Recorded<'_> {
    async fn read_with<T, F>(&self, bucket: &str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    {
        self.buckets.lock().expect("reads").push(bucket.to_owned());
        self.inner.read_with(bucket, key, f).await
    }
}

/// Connections that drop at random offsets, over many runs: a healthy backup is never
/// reported broken. A run either verifies it or says it could not (`error`).
#[tokio::test]
async fn a_healthy_backup_is_never_reported_broken_whatever_the_stream_does() {
    let (store, sets, _) = healthy().await;
    let order: Vec<_> = sets.iter().collect();
    let (mut errors, mut dropped_runs) = (0, 0);
    for seed in 0..200 {
        let streams = DroppingStreams {
            inner: &store,
            dice: std::sync::Mutex::new(Dice::new(seed)),
            drop: 0.5,
        };
        let storage = Storage {
            objects: &store,
            inspector: &store,
            streamer: &streams,
        };
        let report = verify(&storage, &order, day(1, 0), &Budget::unlimited()).await;
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
    println!(
        "200 runs over dropping streams: {dropped_runs} with a dropped read, {errors} checks in error, 0 false findings"
    );
    assert!(
        dropped_runs > 50,
        "the streams did drop: {dropped_runs} runs"
    );
    assert!(errors >= dropped_runs);
}

/// A fault is announced once, reminded once a day while it lasts (not at every run, not on a
/// retry), and resolved once when it ends.
#[tokio::test]
async fn a_fault_is_announced_once_reminded_and_resolved() {
    let store = one_backup(
        "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 30d, replicas: [{bucket: dr-copy}], labels: {team: data, severity: ticket}}\n",
    )
    .await;
    let notifier = RecordingNotifier::default();
    let run = |at, id: &'static str| run_clean(&store, &notifier, at, id);
    run(day(0, 0), "r1").await.expect("run");
    let first = notifier.take();
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0].attribute("check"), Some("replica"));
    assert_eq!(first[0].attribute("status"), Some("firing"));
    assert_eq!(first[0].attribute("team"), Some("data"));
    assert!(
        first[0]
            .notification
            .subject
            .contains("[BACKUP FAILED] db: replica")
    );

    run(day(0, 0), "r1-retry").await.expect("retry");
    run(day(0, 6), "r2").await.expect("run");
    assert!(
        notifier.take().is_empty(),
        "no repeat on a retry or within a day"
    );

    run(day(1, 0), "r3").await.expect("run");
    let reminder = notifier.take();
    assert_eq!(reminder.len(), 1);
    assert!(reminder[0].notification.message.contains("reminder 1"));
    assert_ne!(reminder[0].key, first[0].key);

    put(&store, "dr-copy", "db/1.sql.gz", dump(100)).await;
    run(day(1, 12), "r4").await.expect("run");
    let resolved = notifier.take();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].attribute("status"), Some("resolved"));
    run(day(2, 0), "r5").await.expect("run");
    assert!(notifier.take().is_empty());
}

/// A streamer whose every read fails, as when access to a bucket is lost.
struct Unreadable;

impl ObjectStreamer for Unreadable {
    async fn read_with<T, F>(&self, bucket: &str, key: &str, _: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    {
        Err(Error::Aws {
            service: "S3",
            operation: "GetObject",
            message: format!("s3://{bucket}/{key}: AccessDenied"),
            retryable: false,
        })
    }
}

/// A check that cannot be made fails the run (so Lambda retries it), but is announced only
/// when it is still in error at the next scheduled run: a transient failure never pages.
#[tokio::test]
async fn a_check_in_error_is_announced_only_when_it_lasts() {
    let store =
        one_backup("backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 30d}\n")
            .await;
    let notifier = RecordingNotifier::default();
    let denied = Storage {
        objects: &store,
        inspector: &store,
        streamer: &Unreadable,
    };
    let unreadable = |at, run: &'static str| {
        let (denied, notifier) = (&denied, &notifier);
        async move {
            handle_scheduled(
                denied,
                notifier,
                &config(),
                &scheduled(at),
                &invocation(at, run),
            )
            .await
        }
    };
    let at = day(0, 0);
    let err = unreadable(at, "a")
        .await
        .expect_err("a check in error fails the run");
    assert!(err.to_string().contains("could not be checked"), "{err}");
    assert_eq!(
        status(&report(&store, at), "db", "restore").as_deref(),
        Some("error")
    );
    let _ = unreadable(at, "b").await;
    assert!(
        notifier.take().is_empty(),
        "a retry of the same run does not announce"
    );

    let next = day(1, 0);
    let _ = unreadable(next, "c").await;
    let unverified = notifier.take();
    assert_eq!(unverified.len(), 1, "{unverified:#?}");
    assert!(
        unverified[0]
            .notification
            .subject
            .contains("[BACKUP UNVERIFIED] db: restore")
    );

    let later = day(2, 0);
    run_clean(&store, &notifier, later, "d")
        .await
        .expect("readable again");
    let resolved = notifier.take();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].attribute("status"), Some("resolved"));
}

/// A streamer that takes its time: the run's budget runs out during the first set.
struct Slow<'a>(&'a MemoryStore);

impl ObjectStreamer for Slow<'_> {
    async fn read_with<T, F>(&self, bucket: &str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    {
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        self.0.read_with(bucket, key, f).await
    }
}

/// One scheduled run at `at` whose streams are [`Slow`], within `budget`.
async fn run_slow(
    store: &MemoryStore,
    notifier: &RecordingNotifier,
    at: chrono::DateTime<chrono::Utc>,
    budget: Budget,
) -> Result<serde_json::Value> {
    let slow = Slow(store);
    let storage = Storage {
        objects: store,
        inspector: store,
        streamer: &slow,
    };
    let inv = Invocation {
        budget,
        ..invocation(at, "slow")
    };
    handle_scheduled(&storage, notifier, &config(), &scheduled(at), &inv).await
}

/// Sets not reached before the deadline are reported as not reached (never as verified, never
/// as failing), and the next run begins with them.
#[tokio::test]
async fn sets_not_reached_in_time_are_reported_and_come_first_next_run() {
    let store = MemoryStore::default();
    for set in ["a", "b", "c"] {
        put(&store, "backups", &format!("{set}/1.sql.gz"), dump(100)).await;
    }
    sets(
        &store,
        "backup_sets:\n  - {name: a, bucket: backups, prefix: a/, max_age: 30d}\n  - {name: b, bucket: backups, prefix: b/, max_age: 30d}\n  - {name: c, bucket: backups, prefix: c/, max_age: 30d}\n",
    )
    .await;
    let notifier = RecordingNotifier::default();
    let at = day(0, 0);
    let budget = Budget {
        until: Some(Instant::now() + StdDuration::from_millis(150)),
        end: None,
    };
    let out = run_slow(&store, &notifier, at, budget)
        .await
        .expect("a run out of time still succeeds");
    assert_eq!(out["summary"]["not_reached"], 2, "{out}");
    let first = report(&store, at);
    let names: Vec<&str> = first["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(first["sets"][0]["status"], "ok");
    // The first set's restore began after the deadline: cut short, said so, no finding.
    let restore = &first["sets"][0]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == "restore")
        .cloned()
        .expect("restore");
    assert_eq!(restore["status"], "skipped", "{restore}");
    assert_eq!(restore["evidence"]["out_of_time"], true, "{restore}");
    assert_eq!(first["sets"][1]["status"], "not_reached");
    assert!(notifier.take().is_empty(), "not reached is not a fault");

    let next = day(1, 0);
    run_clean(&store, &notifier, next, "full")
        .await
        .expect("run");
    let order: Vec<String> = report(&store, next)["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(order, ["b", "c", "a"], "the sets not reached come first");
}

/// A Velero location: a finished backup's pod volumes must be in their repositories.
#[tokio::test]
async fn velero_pod_volumes_must_be_in_their_repositories() {
    use std::io::Write;
    let store = MemoryStore::default();
    let tgz = tar_gz(&[(
        "resources/deployments.apps/namespaces/shop/api.json",
        b"{\"kind\": \"Deployment\"}",
    )]);
    put(&store, "velero", "v/backups/nightly/nightly.tar.gz", tgz).await;
    let metadata = serde_json::json!({"metadata": {"name": "nightly"},
        "status": {"phase": "Completed", "progress": {"itemsBackedUp": 1, "totalItems": 1}}});
    put(
        &store,
        "velero",
        "v/backups/nightly/velero-backup.json",
        metadata.to_string().into_bytes(),
    )
    .await;
    let volumes = serde_json::json!([
        {"spec": {"pod": {"namespace": "shop", "name": "db-0"}, "volume": "data", "uploaderType": "restic"},
         "status": {"phase": "Completed", "snapshotID": "a1b2c3d4"}},
        {"spec": {"pod": {"namespace": "web", "name": "cache-0"}, "volume": "tmp", "uploaderType": "kopia"},
         "status": {"phase": "Completed", "snapshotID": "5f1b2c3d4e5f60718293a4b5c6d7e8f9"}}
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(volumes.to_string().as_bytes()).expect("gzip");
    put(
        &store,
        "velero",
        "v/backups/nightly/nightly-podvolumebackups.json.gz",
        gz.finish().expect("gzip"),
    )
    .await;
    put(
        &store,
        "velero",
        "v/kopia/web/kopia.repository",
        b"{}".to_vec(),
    )
    .await;
    let yaml =
        "backup_sets:\n  - {name: k8s, bucket: velero, prefix: v/, max_age: 30d, velero: true}\n";
    let sets = load("s.yaml", yaml).expect("sets");
    let order: Vec<_> = sets.iter().collect();
    let storage = Storage::all(&store);
    let budget = Budget::unlimited();
    let run = || verify(&storage, &order, day(1, 0), &budget);
    let missing = run().await;
    let volumes = missing.sets[0]
        .check(vigil_backup_verify::Check::VeleroVolumes)
        .expect("volumes checked");
    assert_eq!(volumes.status, Status::Failed, "{}", volumes.detail);
    assert!(
        volumes
            .detail
            .contains("a1b2c3d4 is not in v/restic/shop/snapshots/"),
        "{}",
        volumes.detail
    );

    let full_id = format!("a1b2c3d4{}", "0".repeat(56));
    put(
        &store,
        "velero",
        &format!("v/restic/shop/snapshots/{full_id}"),
        b"snapshot".to_vec(),
    )
    .await;
    let found = run().await;
    let volumes = found.sets[0]
        .check(vigil_backup_verify::Check::VeleroVolumes)
        .expect("volumes checked");
    assert_eq!(volumes.status, Status::Ok, "{}", volumes.detail);
    assert_eq!(
        found.sets[0].status,
        Status::Ok,
        "{:#?}",
        found.sets[0].checks
    );
}

/// A check made several times in a set (a restore per sampled backup, one per replica) is one
/// fault: an old corrupt backup beside a healthy newest one, a missing copy beside a present
/// one, each announce once, are reminded, and never "resolve" in the run that found them.
#[tokio::test]
async fn a_check_made_several_times_is_one_fault() {
    let store = MemoryStore::default();
    let mut corrupt = dump(100);
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0xff;
    put(&store, "backups", "db/1.sql.gz", corrupt).await;
    put(&store, "backups", "db/2.sql.gz", dump(100)).await;
    put(&store, "dr-copy", "db/2.sql.gz", dump(100)).await;
    sets(
        &store,
        "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 30d, restore: all, replicas: [{bucket: dr-copy}, {bucket: dr-other}]}\n",
    )
    .await;
    let notifier = RecordingNotifier::default();
    run_clean(&store, &notifier, day(0, 0), "a")
        .await
        .expect("run");
    let mut first: Vec<String> = notifier
        .take()
        .iter()
        .map(|p| p.notification.subject.clone())
        .collect();
    first.sort();
    assert_eq!(
        first,
        ["[BACKUP FAILED] db: replica", "[BACKUP FAILED] db: restore"]
    );
    run_clean(&store, &notifier, day(0, 6), "b")
        .await
        .expect("run");
    assert!(
        notifier.take().is_empty(),
        "no resolved message beside the fault"
    );
    run_clean(&store, &notifier, day(1, 0), "c")
        .await
        .expect("run");
    let reminders = notifier.take();
    assert_eq!(reminders.len(), 2);
    assert!(
        reminders
            .iter()
            .all(|p| p.notification.message.contains("reminder 1"))
    );
}

/// Messages are delivered in the reserve the run keeps after verifying: a run that used all
/// its verifying time still announces what it found.
#[tokio::test]
async fn a_run_out_of_time_still_announces_what_it_found() {
    let store = one_backup(
        "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 30d, replicas: [{bucket: dr-copy}]}\n",
    )
    .await;
    let notifier = RecordingNotifier::default();
    let at = day(0, 0);
    let budget = Budget {
        until: Some(Instant::now() + StdDuration::from_millis(100)),
        end: Some(Instant::now() + StdDuration::from_secs(60)),
    };
    run_slow(&store, &notifier, at, budget).await.expect("run");
    let sent = notifier.take();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].attribute("check"), Some("replica"));
}

/// A check the set no longer asks for ends its episode: the copy requirement removed, the
/// replica fault resolves once.
#[tokio::test]
async fn a_check_no_longer_asked_for_resolves() {
    let store = one_backup(
        "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 30d, replicas: [{bucket: dr-copy}]}\n",
    )
    .await;
    let notifier = RecordingNotifier::default();
    run_clean(&store, &notifier, day(0, 0), "a")
        .await
        .expect("run");
    assert_eq!(notifier.take().len(), 1);
    sets(
        &store,
        "backup_sets:\n  - {name: db, bucket: backups, prefix: db/, max_age: 30d}\n",
    )
    .await;
    run_clean(&store, &notifier, day(1, 0), "b")
        .await
        .expect("run");
    let resolved = notifier.take();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].attribute("status"), Some("resolved"));
    assert!(
        resolved[0]
            .notification
            .message
            .contains("no longer asks for this check")
    );
}
