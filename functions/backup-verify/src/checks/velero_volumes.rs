//! The pod volume data a Velero backup recorded exists in its repository. Each entry of
//! `<name>-podvolumebackups.json.gz` must be `Completed`; a restic snapshot must be in
//! `<prefix>restic/<namespace>/snapshots/` (its file named by the full id, of which Velero
//! records the first eight hex digits); a kopia repository must exist under
//! `<prefix>kopia/<namespace>/` (`kopia.repository`). Kopia keeps its snapshot manifests
//! encrypted inside pack blobs, so a kopia snapshot id cannot be found by key: the report says
//! that this much, and no more, was checked.

use serde_json::{Value, json};
use vigil_shared::{BucketInspector, ObjectStore};

use super::{Attempt, Outcome};
use crate::config::BackupSet;
use crate::report::{Check, CheckResult};
use crate::velero::{self, PodVolume, Uploader};

/// What the repository showed of one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Restic snapshot files whose name starts with the recorded id.
    ResticSnapshots(usize),
    /// Whether `kopia.repository` exists.
    KopiaRepository(bool),
    /// The volume was empty: Velero took no snapshot.
    Empty,
    /// Not looked for: the volume's backup did not complete.
    NotLooked,
}

/// Checks the pod volumes of the backup `name`; `None` when it recorded none.
pub async fn run(
    store: &impl ObjectStore,
    inspector: &impl BucketInspector,
    set: &BackupSet,
    name: &str,
) -> Option<Outcome> {
    let key = velero::pod_volumes_key(&set.prefix, name);
    let listed = store
        .get_tagged(&set.bucket, &key)
        .await
        .or_error(Check::VeleroVolumes, || format!("read {key}"));
    let bytes = match listed {
        Ok(Some((bytes, _))) => bytes,
        // Backups without pod volumes (and those of Velero before 1.5) have no list.
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let volumes = match velero::pod_volumes(&bytes) {
        Ok(v) => v,
        Err(why) => {
            return Some(Ok(CheckResult::judged(
                Check::VeleroVolumes,
                false,
                format!("{key} is unreadable ({why}): Velero cannot restore the pod volumes"),
                json!({ "key": key }),
            )));
        }
    };
    Some(look(store, inspector, set, name, volumes).await)
}

async fn look(
    store: &impl ObjectStore,
    inspector: &impl BucketInspector,
    set: &BackupSet,
    name: &str,
    volumes: Vec<PodVolume>,
) -> Outcome {
    let mut found = Vec::with_capacity(volumes.len());
    for v in &volumes {
        let repository = v.repository(&set.prefix);
        let seen = if v.phase != "Completed" {
            Found::NotLooked
        } else if v.snapshot_id.is_empty() {
            Found::Empty
        } else {
            match v.uploader {
                Uploader::Restic => {
                    let prefix = format!("{repository}snapshots/{}", v.snapshot_id);
                    let listed = store
                        .list(&set.bucket, &prefix)
                        .await
                        .or_error(Check::VeleroVolumes, || format!("list {prefix}"))?;
                    Found::ResticSnapshots(listed.len())
                }
                Uploader::Kopia => {
                    let key = format!("{repository}kopia.repository");
                    let head = inspector
                        .head(&set.bucket, &key)
                        .await
                        .or_error(Check::VeleroVolumes, || format!("read {key}"))?;
                    Found::KopiaRepository(head.is_some())
                }
            }
        };
        found.push(seen);
    }
    Ok(decide(&set.prefix, name, &volumes, &found))
}

/// The verdict over each volume and what its repository showed.
pub fn decide(prefix: &str, backup: &str, volumes: &[PodVolume], found: &[Found]) -> CheckResult {
    let mut problems = Vec::new();
    let mut kopia = 0;
    let mut evidence = Vec::new();
    for (v, f) in volumes.iter().zip(found) {
        let repository = v.repository(prefix);
        let problem = match f {
            Found::NotLooked => Some(format!(
                "{} is {}{}",
                v.name,
                if v.phase.is_empty() {
                    "(no phase)"
                } else {
                    &v.phase
                },
                if v.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", v.message)
                }
            )),
            Found::ResticSnapshots(0) => Some(format!(
                "{}: restic snapshot {} is not in {repository}snapshots/",
                v.name, v.snapshot_id
            )),
            Found::KopiaRepository(false) => Some(format!(
                "{}: there is no kopia repository at {repository} (kopia.repository is missing)",
                v.name
            )),
            Found::KopiaRepository(true) => {
                kopia += 1;
                None
            }
            Found::ResticSnapshots(_) | Found::Empty => None,
        };
        evidence.push(json!({
            "volume": v.name,
            "uploader": match v.uploader { Uploader::Restic => "restic", Uploader::Kopia => "kopia" },
            "phase": v.phase,
            "snapshot_id": v.snapshot_id,
            "repository": repository,
            "problem": problem,
        }));
        problems.extend(problem);
    }
    let evidence = json!({ "backup": backup, "volumes": Value::Array(evidence) });
    if !problems.is_empty() {
        return CheckResult::judged(
            Check::VeleroVolumes,
            false,
            format!(
                "backup {backup}: {}; those volumes cannot be restored",
                problems.join("; ")
            ),
            evidence,
        );
    }
    let caveat = if kopia > 0 {
        format!(
            "; {kopia} kopia snapshot(s): their repository exists, the snapshots themselves are inside kopia's encrypted packs and were not opened"
        )
    } else {
        String::new()
    };
    CheckResult::judged(
        Check::VeleroVolumes,
        true,
        format!(
            "backup {backup}: {} pod volume(s) completed and found in their repositories{caveat}",
            volumes.len()
        ),
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;
    use crate::velero::tests::{gz, pod_volume};

    fn volumes(list: &[Value]) -> Vec<PodVolume> {
        velero::pod_volumes(&gz(&Value::Array(list.to_vec()))).expect("parsed")
    }

    #[test]
    fn each_volume_must_be_complete_and_in_its_repository() {
        let v = volumes(&[
            pod_volume("restic", "db", "Completed", "a1b2c3d4"),
            pod_volume(
                "kopia",
                "shop",
                "Completed",
                "5f1b2c3d4e5f60718293a4b5c6d7e8f9",
            ),
            pod_volume("kopia", "shop", "Completed", ""),
        ]);
        let all = [
            Found::ResticSnapshots(1),
            Found::KopiaRepository(true),
            Found::Empty,
        ];
        let ok = decide("velero/", "nightly", &v, &all);
        assert_eq!(ok.status, Status::Ok, "{}", ok.detail);
        assert!(ok.detail.contains("not opened"), "{}", ok.detail);

        let gone = decide(
            "velero/",
            "nightly",
            &v,
            &[
                Found::ResticSnapshots(0),
                Found::KopiaRepository(false),
                Found::Empty,
            ],
        );
        assert_eq!(gone.status, Status::Failed);
        assert!(
            gone.detail
                .contains("a1b2c3d4 is not in velero/restic/db/snapshots/"),
            "{}",
            gone.detail
        );
        assert!(
            gone.detail
                .contains("no kopia repository at velero/kopia/shop/")
        );

        let failed = volumes(&[pod_volume("kopia", "shop", "Failed", "")]);
        let c = decide("velero/", "nightly", &failed, &[Found::NotLooked]);
        assert_eq!(c.status, Status::Failed);
        assert!(
            c.detail.contains("shop/mysql-0/data is Failed"),
            "{}",
            c.detail
        );
    }
}
