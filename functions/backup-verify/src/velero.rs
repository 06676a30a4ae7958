//! Velero backup locations: `<prefix>backups/<name>/` holds `<name>.tar.gz` (the resources)
//! beside `velero-backup.json` (the Backup object). A backup is restorable when Velero recorded
//! it `Completed` and its archive holds the items Velero says it backed up. Pod volume data
//! (file-system backups by restic or kopia) is recorded in `<name>-podvolumebackups.json.gz`
//! and kept in a repository under `<prefix>restic/<namespace>/` or `<prefix>kopia/<namespace>/`.

use serde_json::{Value, json};

/// The backup's name when `key` is `<prefix>backups/<name>/<name>.tar.gz`.
pub fn backup_name(prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(prefix)?.strip_prefix("backups/")?;
    let (name, file) = rest.split_once('/')?;
    (file == format!("{name}.tar.gz")).then(|| name.to_owned())
}

/// The backup's name when `key` is `<prefix>backups/<name>/velero-backup.json`.
pub fn metadata_name(prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(prefix)?.strip_prefix("backups/")?;
    let (name, file) = rest.split_once('/')?;
    (file == "velero-backup.json" && !name.is_empty()).then(|| name.to_owned())
}

/// Backups Velero recorded (a `velero-backup.json`) whose archive is not in `keys`: listed by
/// their metadata as well as by their archives, a backup whose tarball is gone is seen.
pub fn without_archive(prefix: &str, keys: &[&str]) -> Vec<String> {
    let archives: std::collections::BTreeSet<String> =
        keys.iter().filter_map(|k| backup_name(prefix, k)).collect();
    let mut missing: Vec<String> = keys
        .iter()
        .filter_map(|k| metadata_name(prefix, k))
        .filter(|name| !archives.contains(name))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// The phase Velero recorded in a `velero-backup.json`.
pub fn phase(metadata: &[u8]) -> Option<String> {
    let backup: Value = serde_json::from_slice(metadata).ok()?;
    backup
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Phases of a backup Velero is still writing: no archive yet is no finding. Velero uploads
/// `velero-backup.json` first while waiting for plugin operations or finalizing, then again
/// with the final phase.
pub const IN_PROGRESS: [&str; 9] = [
    "New",
    "Queued",
    "ReadyToStart",
    "InProgress",
    "WaitingForPluginOperations",
    "WaitingForPluginOperationsPartiallyFailed",
    "Finalizing",
    "FinalizingPartiallyFailed",
    "Deleting",
];

/// The key of a backup's `velero-backup.json`.
pub fn metadata_key(prefix: &str, name: &str) -> String {
    format!("{prefix}backups/{name}/velero-backup.json")
}

/// The key of a backup's list of pod volume backups.
pub fn pod_volumes_key(prefix: &str, name: &str) -> String {
    format!("{prefix}backups/{name}/{name}-podvolumebackups.json.gz")
}

/// Which file-system backup tool wrote a pod volume's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uploader {
    Restic,
    Kopia,
}

/// One pod volume backup, as Velero recorded it (a `PodVolumeBackup`, velero.io/v1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodVolume {
    /// `namespace/pod/volume`.
    pub name: String,
    pub namespace: String,
    pub uploader: Uploader,
    pub phase: String,
    /// Empty for an empty volume (Velero takes no snapshot of it).
    pub snapshot_id: String,
    pub message: String,
}

impl PodVolume {
    /// The repository prefix holding this volume's data in the backup location.
    pub fn repository(&self, prefix: &str) -> String {
        let tool = match self.uploader {
            Uploader::Restic => "restic",
            Uploader::Kopia => "kopia",
        };
        format!("{prefix}{tool}/{}/", self.namespace)
    }
}

/// Parses `<name>-podvolumebackups.json.gz`: a gzip'd JSON array of PodVolumeBackup objects.
pub fn pod_volumes(gz: &[u8]) -> Result<Vec<PodVolume>, String> {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .take(64 << 20)
        .read_to_end(&mut text)
        .map_err(|e| format!("not gzip: {e}"))?;
    let items: Vec<Value> =
        serde_json::from_slice(&text).map_err(|e| format!("not a JSON array: {e}"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = |path: &str| {
                item.pointer(path)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let namespace = text("/spec/pod/namespace");
            let uploader = match text("/spec/uploaderType").as_str() {
                // Before Velero 1.10 the field did not exist and restic was the only tool.
                "restic" | "" => Uploader::Restic,
                "kopia" => Uploader::Kopia,
                other => {
                    return Err(format!(
                        "pod volume backup {i}: unknown uploaderType {other:?}"
                    ));
                }
            };
            if namespace.is_empty() {
                return Err(format!("pod volume backup {i} names no pod namespace"));
            }
            Ok(PodVolume {
                name: format!(
                    "{namespace}/{}/{}",
                    text("/spec/pod/name"),
                    text("/spec/volume")
                ),
                namespace,
                uploader,
                phase: text("/status/phase"),
                snapshot_id: text("/status/snapshotID"),
                message: text("/status/message"),
            })
        })
        .collect()
}

/// Resource items in an archive: `resources/<group-resource>/.../<item>.json`, not counting the
/// copies Velero writes under `<version>-preferredversion/` directories.
pub fn items_in(names: &[String]) -> usize {
    names
        .iter()
        .filter(|n| {
            let n = n.trim_start_matches("./");
            n.starts_with("resources/")
                && n.ends_with(".json")
                && !n.split('/').any(|part| part.ends_with("-preferredversion"))
        })
        .count()
}

/// Checks `velero-backup.json` against the archive's entry names. `Ok` is the evidence.
pub fn consistent(name: &str, metadata: &[u8], names: &[String]) -> Result<Value, String> {
    let backup: Value = serde_json::from_slice(metadata)
        .map_err(|e| format!("velero-backup.json of {name} is not JSON: {e}"))?;
    let recorded = backup
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if recorded != name {
        return Err(format!(
            "velero-backup.json names backup {recorded:?}, not {name:?}"
        ));
    }
    let phase = backup
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    if phase != "Completed" {
        return Err(format!(
            "Velero recorded backup {name} as {phase}, not Completed: it may not restore; see its logs (backups/{name}/{name}-logs.gz)"
        ));
    }
    let found = items_in(names);
    let expected = backup
        .pointer("/status/progress/itemsBackedUp")
        .and_then(Value::as_u64);
    if let Some(expected) = expected {
        if expected != found as u64 {
            return Err(format!(
                "Velero backed up {expected} items for {name}, the archive holds {found}: the archive is incomplete"
            ));
        }
    }
    Ok(
        json!({ "backup": name, "phase": phase, "items_backed_up": expected, "items_in_archive": found }),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PodVolumeBackup as Velero writes it (pkg/apis/velero/v1/pod_volume_backup_types.go).
    pub(crate) fn pod_volume(
        uploader: &str,
        namespace: &str,
        phase: &str,
        snapshot: &str,
    ) -> Value {
        json!({
            "metadata": {"name": "nightly-x7k2p", "namespace": "velero",
                "labels": {"velero.io/backup-name": "nightly"}},
            "spec": {"node": "ip-10-0-1-23", "volume": "data", "backupStorageLocation": "default",
                "pod": {"kind": "Pod", "namespace": namespace, "name": "mysql-0", "uid": "c2d4"},
                "repoIdentifier": "", "uploaderType": uploader},
            "status": {"phase": phase, "snapshotID": snapshot, "path": "/host_pods/c2d4/volumes/data",
                "progress": {"totalBytes": 1024, "bytesDone": 1024}}
        })
    }

    pub(crate) fn gz(value: &Value) -> Vec<u8> {
        vigil_shared::fixtures::gzip(value.to_string().as_bytes())
    }

    #[test]
    fn pod_volumes_are_read_as_velero_writes_them() {
        let list = json!([
            pod_volume(
                "kopia",
                "shop",
                "Completed",
                "5f1b2c3d4e5f60718293a4b5c6d7e8f9"
            ),
            pod_volume("restic", "db", "Failed", ""),
        ]);
        let volumes = pod_volumes(&gz(&list)).expect("parsed");
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[0].name, "shop/mysql-0/data");
        assert_eq!(volumes[0].uploader, Uploader::Kopia);
        assert_eq!(volumes[0].repository("velero/"), "velero/kopia/shop/");
        assert_eq!(volumes[1].repository("velero/"), "velero/restic/db/");
        assert_eq!(volumes[1].phase, "Failed");
        assert!(pod_volumes(b"plain").is_err());
        assert!(pod_volumes(&gz(&json!({"not": "a list"}))).is_err());
        assert!(pod_volumes(&gz(&json!([pod_volume("rsync", "a", "Completed", "")]))).is_err());
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn backups_recorded_without_an_archive_are_found() {
        let keys = [
            "velero/backups/daily-1/daily-1.tar.gz",
            "velero/backups/daily-1/velero-backup.json",
            "velero/backups/daily-2/velero-backup.json",
            "velero/backups/daily-2/daily-2-logs.gz",
            "velero/backups/weird/other.tar.gz",
        ];
        assert_eq!(without_archive("velero/", &keys), ["daily-2"]);
        assert_eq!(
            metadata_name("velero/", "velero/backups/x/velero-backup.json").as_deref(),
            Some("x")
        );
        assert_eq!(
            metadata_name("velero/", "velero/backups/velero-backup.json"),
            None
        );
        assert_eq!(
            phase(br#"{"status": {"phase": "Completed"}}"#).as_deref(),
            Some("Completed")
        );
        assert_eq!(phase(b"not json"), None);
    }

    #[test]
    fn backup_names_come_from_the_layout() {
        assert_eq!(
            backup_name("velero/", "velero/backups/daily-1/daily-1.tar.gz").as_deref(),
            Some("daily-1")
        );
        assert_eq!(
            backup_name("velero/", "velero/backups/daily-1/daily-1-logs.gz"),
            None
        );
        assert_eq!(
            backup_name("velero/", "velero/backups/daily-1/velero-backup.json"),
            None
        );
        assert_eq!(
            backup_name("velero/", "other/backups/daily-1/daily-1.tar.gz"),
            None
        );
    }

    #[test]
    fn metadata_must_match_the_archive() {
        let archive = names(&[
            "metadata/version",
            "resources/deployments.apps/namespaces/shop/api.json",
            "resources/deployments.apps/v1-preferredversion/namespaces/shop/api.json",
            "resources/namespaces/cluster/shop.json",
        ]);
        assert_eq!(items_in(&archive), 2);
        let ok = br#"{"metadata":{"name":"daily-1"},"status":{"phase":"Completed","progress":{"itemsBackedUp":2,"totalItems":2}}}"#;
        assert!(consistent("daily-1", ok, &archive).is_ok());
        let partial = br#"{"metadata":{"name":"daily-1"},"status":{"phase":"PartiallyFailed"}}"#;
        assert!(
            consistent("daily-1", partial, &archive)
                .expect_err("phase")
                .contains("PartiallyFailed")
        );
        let more = br#"{"metadata":{"name":"daily-1"},"status":{"phase":"Completed","progress":{"itemsBackedUp":5}}}"#;
        assert!(
            consistent("daily-1", more, &archive)
                .expect_err("count")
                .contains("incomplete")
        );
        assert!(consistent("daily-2", ok, &archive).is_err());
        assert!(consistent("daily-1", b"not json", &archive).is_err());
    }
}
