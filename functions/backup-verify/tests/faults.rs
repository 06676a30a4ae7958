//! Every fault class a backup operator fears, seeded one at a time into an otherwise healthy
//! set: each is found by the check that names it, and by no other; the healthy set beside it
//! has no finding.

mod common;

use common::*;
use vigil_backup_verify::{Budget, Check, Status, Storage, load, verify};
use vigil_shared::ChecksumAlgorithm;
use vigil_shared::fixtures::tar_gz;
use vigil_shared::testing::MemoryStore;

/// A healthy set: three nightly tar.gz archives of similar size, each with its manifest, the
/// newest with S3's CRC64NVME and a copy in another bucket.
async fn healthy(store: &MemoryStore, set: &str) -> Vec<u8> {
    let mut newest = Vec::new();
    for day in 1..=3u8 {
        let rows: Vec<u8> = (0..60_000u32).map(|i| (i as u8) ^ day).collect();
        let archive = tar_gz(&[("dump.sql", &rows), ("meta.json", b"{}")]);
        let key = format!("{set}/2026-11-2{day}.tar.gz");
        write_backup(store, &key, &archive, true, day == 3).await;
        newest = archive;
    }
    newest
}

/// A set's fields after its name, bucket and prefix: the healthy defaults with `$age` and `$min`.
macro_rules! fields {
    ($age:literal, $min:literal) => {
        concat!(
            "max_age: ",
            $age,
            ", min_count: ",
            $min,
            ", manifest: true, restore: all, replicas: [{bucket: dr-copy}]"
        )
    };
    () => {
        fields!("30d", "3")
    };
}

/// One fault: its name, the check that must find it, the set's extra YAML, and how to seed it.
struct Fault {
    name: &'static str,
    found_by: Check,
    yaml: &'static str,
}

const FAULTS: [Fault; 13] = [
    Fault {
        name: "stale",
        found_by: Check::Freshness,
        yaml: fields!("1h", "3"),
    },
    Fault {
        name: "too-few",
        found_by: Check::Count,
        yaml: fields!("30d", "5"),
    },
    Fault {
        name: "shrunk",
        found_by: Check::Size,
        yaml: fields!(),
    },
    Fault {
        name: "truncated",
        found_by: Check::Restore,
        yaml: fields!(),
    },
    Fault {
        name: "corrupted",
        found_by: Check::Restore,
        yaml: fields!(),
    },
    Fault {
        name: "manifest-mismatch",
        found_by: Check::Restore,
        yaml: fields!(),
    },
    Fault {
        name: "no-manifest",
        found_by: Check::Restore,
        yaml: fields!(),
    },
    Fault {
        name: "replica-missing",
        found_by: Check::Replica,
        yaml: fields!(),
    },
    Fault {
        name: "replica-drifted",
        found_by: Check::Replica,
        yaml: fields!(),
    },
    Fault {
        name: "stored-checksum",
        found_by: Check::Integrity,
        yaml: fields!(),
    },
    Fault {
        name: "unversioned",
        found_by: Check::Versioning,
        yaml: concat!(fields!(), ", require: {versioning: true}"),
    },
    Fault {
        name: "unlocked",
        found_by: Check::ObjectLock,
        yaml: concat!(fields!(), ", require: {object_lock_days: 30}"),
    },
    Fault {
        name: "sse-s3",
        found_by: Check::Encryption,
        yaml: concat!(fields!(), ", require: {encryption: sse-kms}"),
    },
];

/// What a backup job writes for one backup: the backup, its manifest, S3's CRC64NVME, and,
/// with `copied`, the copy in the replica bucket.
async fn write_backup(store: &MemoryStore, key: &str, data: &[u8], manifest: bool, copied: bool) {
    put(store, "backups", key, data.to_vec()).await;
    store.set_checksum(
        "backups",
        key,
        s3_checksum(ChecksumAlgorithm::Crc64Nvme, data, &[]),
    );
    if manifest {
        write_manifest(store, key, data).await;
    }
    if copied {
        put(store, "dr-copy", key, data.to_vec()).await;
    }
}

/// The manifest of `data` beside `key`.
async fn write_manifest(store: &MemoryStore, key: &str, data: &[u8]) {
    let manifest = serde_json::json!({"key": key, "size": data.len(), "sha256": sha256_hex(data)});
    put(
        store,
        "backups",
        &format!("{key}.manifest.json"),
        manifest.to_string().into_bytes(),
    )
    .await;
}

/// Seeds `fault` into the healthy set `name`.
async fn seed(store: &MemoryStore, fault: &str, name: &str, newest: &[u8]) {
    let key = format!("{name}/2026-11-23.tar.gz");
    // The in-memory store cannot delete: a backup without something is written as a newer one.
    let newer = format!("{name}/2026-11-24.tar.gz");
    match fault {
        "shrunk" => {
            let small = tar_gz(&[("dump.sql", b"-- empty"), ("meta.json", b"{}")]);
            write_backup(store, &key, &small, true, true).await;
        }
        "truncated" => {
            // Written short by the job, with a manifest of what it wrote (the copy too).
            write_backup(store, &key, &newest[..newest.len() - 100], true, true).await;
        }
        "corrupted" => {
            let mut bad = newest.to_vec();
            let at = bad.len() / 2;
            bad[at] ^= 0xff;
            write_backup(store, &key, &bad, true, true).await;
        }
        "manifest-mismatch" => {
            let mut other = newest.to_vec();
            other.push(0);
            write_manifest(store, &key, &other).await;
        }
        "no-manifest" => write_backup(store, &newer, newest, false, true).await,
        "replica-missing" => write_backup(store, &newer, newest, true, false).await,
        "replica-drifted" => {
            let mut other = newest.to_vec();
            other[10] ^= 1;
            put(store, "dr-copy", &key, other).await;
        }
        "stored-checksum" => {
            // S3 holds a checksum of other bytes than it serves (a write raced, a bug upstream).
            let mut other = newest.to_vec();
            other[10] ^= 1;
            store.set_checksum(
                "backups",
                &key,
                s3_checksum(ChecksumAlgorithm::Crc64Nvme, &other, &[]),
            );
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_fault_class_is_found_by_its_check_and_a_healthy_set_by_none() {
    let store = MemoryStore::default();
    let mut yaml = String::from("backup_sets:\n");
    healthy(&store, "healthy").await;
    yaml.push_str(&format!(
        "  - {{name: healthy, bucket: backups, prefix: healthy/, {}}}\n",
        fields!()
    ));
    for f in &FAULTS {
        let newest = healthy(&store, f.name).await;
        seed(&store, f.name, f.name, &newest).await;
        yaml.push_str(&format!(
            "  - {{name: {0}, bucket: backups, prefix: {0}/, {1}}}\n",
            f.name, f.yaml
        ));
    }
    let sets = load("sets.yaml", &yaml).expect("sets");
    let order: Vec<_> = sets.iter().collect();
    let now = day(0, 2);
    let report = verify(&Storage::all(&store), &order, now, &Budget::unlimited()).await;
    let healthy = &report.sets[0];
    assert_eq!(healthy.status, Status::Ok, "{:#?}", healthy.checks);
    let mut found = 0;
    for (f, set) in FAULTS.iter().zip(&report.sets[1..]) {
        let failed: Vec<Check> = set
            .checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| c.check)
            .collect();
        assert!(
            failed.contains(&f.found_by),
            "{}: not found by {} ({failed:?}): {:#?}",
            f.name,
            f.found_by,
            set.checks
        );
        let others: Vec<&Check> = failed.iter().filter(|c| **c != f.found_by).collect();
        assert!(others.is_empty(), "{}: also reported by {others:?}", f.name);
        assert!(
            set.checks.iter().all(|c| c.status != Status::Error),
            "{}: {:#?}",
            f.name,
            set.checks
        );
        found += 1;
    }
    println!(
        "fault classes: {} seeded, {found} found by their check; healthy set: 0 findings",
        FAULTS.len()
    );
}
