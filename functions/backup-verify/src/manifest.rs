//! Manifests a backup job writes beside its backups: `<key>.manifest.json` with
//! `{"key", "size", "sha256"}`. They are not backups themselves.

use serde::Deserialize;
use vigil_shared::ObjectStore;

use crate::checks::Attempt;
use crate::report::{Check, CheckResult};

/// Suffix of manifest objects.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// A manifest written by the backup job beside the backup.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// The manifest's key for a backup's key.
pub fn key_of(backup: &str) -> String {
    format!("{backup}{MANIFEST_SUFFIX}")
}

/// Reads the manifest beside `key`, if there is one; the `Err` is the result `check` reports
/// (an unreadable manifest is a finding, a failed read an error).
pub async fn read(
    store: &impl ObjectStore,
    check: Check,
    bucket: &str,
    key: &str,
) -> std::result::Result<Option<Manifest>, CheckResult> {
    let manifest_key = key_of(key);
    let Some((bytes, _)) = store
        .get_tagged(bucket, &manifest_key)
        .await
        .or_error(check, || format!("read {manifest_key}"))?
    else {
        return Ok(None);
    };
    serde_json::from_slice::<Manifest>(&bytes)
        .map(Some)
        .map_err(|e| {
            CheckResult::judged(
                check,
                false,
                format!("manifest {manifest_key} is unreadable: {e}"),
                serde_json::json!({ "key": key }),
            )
        })
}
