//! The scheduled invocation end to end: read the backup sets, verify them within the run's
//! time (the sets least recently verified first), write the report, emit the metrics, record
//! which findings are owed an announcement, and deliver those once.
//!
//! A retry of a run (the same scheduled instant) whose verification completed without an
//! error only delivers what is still owed; one whose checks were in error verifies again.

use chrono::{DateTime, Utc};
use serde_json::Value;
use vigil_shared::cas::StateLocation;
use vigil_shared::schedule::{self, ScheduleSource, Scheduled};
use vigil_shared::{BucketInspector, Error, Notifier, ObjectStore, ObjectStreamer, Result};

use crate::budget::Budget;
use crate::config::{BackupSet, VerifyConfig, load};
use crate::episodes::{self, State};
use crate::report::{self, report_key};
use crate::verify::{Storage, verify};

/// One invocation: when it runs, until when, and under which id (its claims on messages).
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The wall clock when the invocation began.
    pub now: DateTime<Utc>,
    /// The monotonic clock at the same moment.
    pub started: std::time::Instant,
    pub budget: Budget,
    /// When the invocation ends (its leases on messages last until then).
    pub deadline: DateTime<Utc>,
    pub run_id: String,
}

impl Invocation {
    /// The wall clock now: when the invocation began plus the time it has run.
    pub fn clock(&self) -> DateTime<Utc> {
        chrono::TimeDelta::from_std(self.started.elapsed())
            .ok()
            .and_then(|d| self.now.checked_add_signed(d))
            .unwrap_or(self.now)
    }
}

/// The scheduled instant of `event`. A bare `{}` (an invoke by hand with no payload) is a run
/// at `now`; every shape the stack's triggers send is read by [`schedule::parse`].
pub fn scheduled(event: &Value, now: DateTime<Utc>) -> Result<Scheduled> {
    if event.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(Scheduled {
            at: now,
            attempt: None,
            execution_id: None,
            source: ScheduleSource::Manual,
        });
    }
    schedule::parse(event)
}

/// Verifies every set, writes the report, announces what is owed, and returns where the
/// report went with the summary. A smoke run (`"vigil": "smoke"`) does the same with the
/// stack's smoke configuration ([`VerifyConfig::smoke`]). A run with a check in `error` fails after writing its report
/// and state, so Lambda retries it.
pub async fn handle_scheduled<S, I, T>(
    storage: &Storage<'_, S, I, T>,
    notifier: &impl Notifier,
    config: &VerifyConfig,
    event: &Value,
    inv: &Invocation,
) -> Result<Value>
where
    S: ObjectStore,
    I: BucketInspector,
    T: ObjectStreamer,
{
    let run = scheduled(event, inv.now)?;
    if run.source == ScheduleSource::Review {
        return Err(Error::InvalidInput(
            "a review schedule's event is the alert function's, not backup-verify's".to_owned(),
        ));
    }
    let smoke_config;
    let config = if run.source.is_smoke() {
        smoke_config = config.smoke()?;
        &smoke_config
    } else {
        config
    };
    let text = config.backup_sets.read(storage.objects).await?;
    let sets = load(&config.backup_sets.to_string(), &text)?;
    let location = StateLocation {
        bucket: config.report_bucket.clone(),
        key: config.state_key.clone(),
    };
    let first = vigil_shared::cas::load(storage.objects, &location, episodes::parse).await?;
    let key = report_key(&config.report_prefix, run.at);
    let report_at = format!("s3://{}/{key}", config.report_bucket);

    let verified = if first.0.verified_run == Some(run.at) {
        tracing::info!(run_at = %run.at, "this run's verification completed before; delivering only");
        None
    } else if first.0.latest_run.is_some_and(|latest| latest > run.at) {
        // A late retry of an older run: its report would say nothing newer, and overwrite
        // that run's own record.
        tracing::info!(run_at = %run.at, "a newer run was verified since; delivering only");
        None
    } else {
        let order = least_recently_verified(&first.0, &sets);
        // Ages are measured at the moment of the check, not at the scheduled time.
        let mut report = verify(storage, &order, inv.now, &inv.budget).await;
        report.run_at = run.at;
        let body = serde_json::to_vec_pretty(&report)
            .map_err(|e| Error::Internal(format!("report not serializable: {e}")))?;
        storage
            .objects
            .put(&config.report_bucket, &key, body, "application/json")
            .await?;
        tracing::info!(report = %report_at, ok = report.summary.ok, failed = report.summary.failed,
            error = report.summary.error, not_reached = report.summary.not_reached, "report written");
        for set in &report.sets {
            report::emit_metrics(set, inv.now);
        }
        let announce = config.topic_arn.is_some();
        let planned = &report;
        episodes::update(storage.objects, &location, Some(first), |state| {
            episodes::plan(state, planned, &sets, &report_at, announce)
        })
        .await?;
        Some(report)
    };

    let delivery = match &config.topic_arn {
        Some(topic) => episodes::deliver(storage.objects, notifier, &location, topic, inv).await?,
        None => episodes::Delivery::default(),
    };
    let summary = verified.as_ref().map(|r| r.summary);
    report::emit_run_metrics(
        summary.map_or(0, |s| s.not_reached),
        verified.as_ref().map_or(0, report::restores_out_of_time),
        delivery.set_aside,
        inv.now,
    );
    let summary_json =
        serde_json::json!({ "report": report_at, "summary": summary, "delivery": delivery });
    if let Some(s) = summary.filter(|s| s.error > 0) {
        return Err(Error::Aws {
            service: "S3",
            operation: "backup checks",
            message: format!(
                "{} backup set(s) could not be checked; report at {report_at}",
                s.error
            ),
            retryable: true,
        });
    }
    if delivery.retry > 0 {
        return Err(Error::Aws {
            service: "SNS",
            operation: "Publish",
            message: format!(
                "{} announcement(s) could not be delivered yet; they stay owed (report at {report_at})",
                delivery.retry
            ),
            retryable: true,
        });
    }
    Ok(summary_json)
}

/// The sets in the order this run verifies them: never verified first, then the least
/// recently verified, so that a run that runs out of time resumes where the last one stopped.
fn least_recently_verified<'a>(state: &State, sets: &'a [BackupSet]) -> Vec<&'a BackupSet> {
    let mut order: Vec<&BackupSet> = sets.iter().collect();
    order.sort_by_key(|s| state.last_verified.get(&s.name).copied());
    order
}
