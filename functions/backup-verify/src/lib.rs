//! Vigil `backup-verify`: proves on a schedule that backups in S3 are fresh, intact,
//! restorable, stored more than once and immutable.
//!
//! Read top-down: [`config`] (the backup sets file), [`verify`] (the run over every set, each
//! check in [`checks`], one file each), [`report`] (what the run found, its metrics),
//! [`episodes`] (which findings are announced, once, kept in S3), [`handler`] (the scheduled
//! invocation end to end). `main.rs` only wires it to the Lambda runtime. Nothing here calls
//! AWS but through the capability traits of `vigil_shared`.

/// The environment variables backup-verify reads (the template sets them; a test checks both
/// agree).
pub mod env {
    /// `s3://bucket/key` or a path of the backup sets file.
    pub const BACKUP_SETS: &str = "VIGIL_BACKUP_SETS";
    /// The bucket reports (and the run's state) are written to.
    pub const REPORT_BUCKET: &str = "VIGIL_REPORT_BUCKET";
    /// Optional: the reports' key prefix (default `reports/backup-verify/`).
    pub const REPORT_PREFIX: &str = "VIGIL_REPORT_PREFIX";
    /// Optional: where findings are announced.
    pub const TOPIC_ARN: &str = "VIGIL_BACKUP_TOPIC_ARN";
    /// Optional: the key of the state that keeps announcements once-only (default
    /// `state/backup-verify.json`, in the report bucket).
    pub const STATE_KEY: &str = "VIGIL_BACKUP_STATE_KEY";
    /// Optional: the smoke test's backup sets (its canary set), read by a run invoked with
    /// `"vigil": "smoke"`.
    pub const SMOKE_BACKUP_SETS: &str = "VIGIL_SMOKE_BACKUP_SETS";
    /// Optional (required with [`SMOKE_BACKUP_SETS`]): the only topic a smoke run notifies.
    pub const SMOKE_TOPIC_ARN: &str = "VIGIL_SMOKE_TOPIC_ARN";
    pub const REQUIRED: &[&str] = &[BACKUP_SETS, REPORT_BUCKET];
    pub const OPTIONAL: &[&str] = &[
        REPORT_PREFIX,
        TOPIC_ARN,
        STATE_KEY,
        SMOKE_BACKUP_SETS,
        SMOKE_TOPIC_ARN,
    ];
}

pub mod budget;
pub mod checks;
pub mod checksum;
pub mod config;
pub mod episodes;
pub mod glob;
pub mod handler;
pub mod manifest;
pub mod message;
pub mod report;
pub mod restore;
pub mod sample;
pub mod velero;
pub mod verify;

pub use budget::Budget;
pub use config::{BackupSet, VerifyConfig, load};
pub use handler::handle_scheduled;
pub use report::{Check, CheckResult, Report, SetReport, Status, Summary, report_key};
pub use verify::{Storage, verify};
