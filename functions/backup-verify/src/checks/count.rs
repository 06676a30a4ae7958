//! At least `min_count` backups are kept.

use serde_json::json;
use vigil_shared::ObjectInfo;

use crate::config::BackupSet;
use crate::report::{Check, CheckResult};

pub fn check(set: &BackupSet, objects: &[ObjectInfo]) -> CheckResult {
    let ok = objects.len() >= set.min_count;
    CheckResult::judged(
        Check::Count,
        ok,
        if ok {
            format!(
                "{} backups kept (at least {})",
                objects.len(),
                set.min_count
            )
        } else {
            format!(
                "{} backups kept, fewer than {}: check the retention or lifecycle rules, and that the job has not been failing",
                objects.len(),
                set.min_count
            )
        },
        json!({ "objects": objects.len(), "min_count": set.min_count }),
    )
}
