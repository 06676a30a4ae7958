//! Every backup Velero recorded has its archive: one whose `velero-backup.json` says it
//! finished (not still in progress) and whose `<name>.tar.gz` is missing cannot be restored.

use serde_json::{Value, json};
use vigil_shared::ObjectStore;

use super::{Attempt, Outcome};
use crate::config::BackupSet;
use crate::report::{Check, CheckResult};
use crate::velero;

/// `without_archive`: the backups listed by their metadata only.
pub async fn run(store: &impl ObjectStore, set: &BackupSet, without_archive: &[String]) -> Outcome {
    let mut recorded = Vec::new();
    for name in without_archive {
        let key = velero::metadata_key(&set.prefix, name);
        let metadata = store
            .get_tagged(&set.bucket, &key)
            .await
            .or_error(Check::VeleroArchives, || format!("read {key}"))?;
        if let Some((bytes, _)) = metadata {
            let phase = velero::phase(&bytes).unwrap_or_else(|| "(unreadable)".to_owned());
            recorded.push((name.clone(), phase));
        }
    }
    Ok(decide(&recorded))
}

/// `recorded`: (backup, phase) of each backup Velero recorded without an archive.
pub fn decide(recorded: &[(String, String)]) -> CheckResult {
    let missing: Vec<Value> = recorded
        .iter()
        .filter(|(_, phase)| !velero::IN_PROGRESS.contains(&phase.as_str()))
        .map(|(name, phase)| json!({"backup": name, "phase": phase}))
        .collect();
    let evidence = json!({ "recorded_without_archive": missing });
    if missing.is_empty() {
        return CheckResult::judged(
            Check::VeleroArchives,
            true,
            "every backup Velero recorded has its archive".to_owned(),
            evidence,
        );
    }
    let names: Vec<String> = recorded
        .iter()
        .filter(|(_, phase)| !velero::IN_PROGRESS.contains(&phase.as_str()))
        .map(|(name, phase)| format!("{name} ({phase})"))
        .collect();
    CheckResult::judged(
        Check::VeleroArchives,
        false,
        format!(
            "Velero recorded {} but their archives (<name>.tar.gz) are missing: they cannot be restored",
            names.join(", ")
        ),
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn a_finished_backup_without_archive_is_found_one_in_progress_is_not() {
        let r = |n: &str, p: &str| (n.to_owned(), p.to_owned());
        assert_eq!(decide(&[]).status, Status::Ok);
        assert_eq!(decide(&[r("a", "Finalizing")]).status, Status::Ok);
        let found = decide(&[r("a", "Completed"), r("b", "InProgress")]);
        assert_eq!(found.status, Status::Failed);
        assert!(found.detail.contains("a (Completed)"), "{}", found.detail);
        assert!(!found.detail.contains("b ("));
    }
}
