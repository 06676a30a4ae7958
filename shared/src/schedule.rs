//! Scheduled invocations: the instant a run is for, read from what the trigger really sends.
//!
//! EventBridge Scheduler (`AWS::Scheduler::Schedule`, SAM `ScheduleV2`) sends the target's
//! `Input` and nothing else. The stack's schedules set `Input` to Vigil's shape, filled by
//! Scheduler's context attributes ("Adding context attributes", EventBridge Scheduler User
//! Guide):
//!
//! ```json
//! {"vigil": "scheduled", "scheduled_time": "<aws.scheduler.scheduled-time>",
//!  "attempt": "<aws.scheduler.attempt-number>", "execution_id": "<aws.scheduler.execution-id>",
//!  "schedule_arn": "<aws.scheduler.schedule-arn>"}
//! ```
//!
//! Scheduler keeps `scheduled-time` across its retries, and Lambda's asynchronous retries send
//! the same payload again, so a retry evaluates the instant of the attempt it retries.
//!
//! The smoke test (`scripts/smoke`) invokes a deployed function with the same shape and
//! `"vigil": "smoke"`: the run reads the stack's smoke configuration, not its own. The alert
//! function's weekly review schedule sends it with `"vigil": "review"`.
//!
//! Also read: a schedule without `Input` (Scheduler's default notification: an EventBridge
//! envelope with `"source": "aws.scheduler"`, `time`, and `detail` as the string `"{}"`), an
//! EventBridge rule's scheduled event (`"source": "aws.events"`, `time`), and a run invoked by
//! hand with `{"time": "..."}`. Anything else is refused: a run must know its instant.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Error, Result};

/// The value of `"vigil"` in the stack's Scheduler `Input`.
pub const INPUT_MARKER: &str = "scheduled";
/// The value of `"vigil"` in the smoke test's invocations (the Scheduler `Input`'s shape).
pub const SMOKE_MARKER: &str = "smoke";
/// The value of `"vigil"` in the Scheduler `Input` of the alert function's weekly review.
pub const REVIEW_MARKER: &str = "review";

/// What sent the scheduled event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSource {
    /// Scheduler with the stack's `Input`.
    SchedulerInput,
    /// Scheduler's default notification (no `Input`).
    SchedulerDefault,
    /// An EventBridge rule's scheduled event.
    EventBridgeRule,
    /// Invoked by hand with `{"time": ...}`.
    Manual,
    /// The smoke test, in the Scheduler `Input`'s shape with `"vigil": "smoke"`: the run uses
    /// the stack's smoke configuration and notifies only its smoke topic.
    Smoke,
    /// The weekly review's schedule, in the Scheduler `Input`'s shape with `"vigil":
    /// "review"`: the run reviews the week ending at the scheduled time instead of evaluating.
    Review,
}

impl ScheduleSource {
    /// Whether the run is the smoke test's.
    pub fn is_smoke(self) -> bool {
        self == ScheduleSource::Smoke
    }
}

/// One scheduled invocation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Scheduled {
    /// The scheduled instant, the same for every retry of this invocation.
    pub at: DateTime<Utc>,
    /// Scheduler's attempt number (1 for the first), when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Scheduler's execution id, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    pub source: ScheduleSource,
}

fn time(v: &Value, field: &str) -> Result<DateTime<Utc>> {
    let text = v.get(field).and_then(Value::as_str).ok_or_else(|| {
        Error::InvalidInput(format!("scheduled event without a `{field}` string"))
    })?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::InvalidInput(format!("scheduled event: `{field}` {text:?}: {e}")))
}

/// An attempt number, given as text (Scheduler substitutes inside a JSON string) or a number.
fn attempt(v: &Value) -> Result<Option<u32>> {
    match v.get("attempt") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_u64().and_then(|n| u32::try_from(n).ok())),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            Error::InvalidInput(format!("scheduled event: attempt {s:?} is not a number"))
        }),
        Some(other) => Err(Error::InvalidInput(format!(
            "scheduled event: attempt {other} is not a number"
        ))),
    }
}

/// Reads a scheduled invocation in any of the shapes above.
pub fn parse(event: &Value) -> Result<Scheduled> {
    let marker = match event.get("vigil").and_then(Value::as_str) {
        Some(INPUT_MARKER) => Some(ScheduleSource::SchedulerInput),
        Some(SMOKE_MARKER) => Some(ScheduleSource::Smoke),
        Some(REVIEW_MARKER) => Some(ScheduleSource::Review),
        _ => None,
    };
    if let Some(source) = marker {
        return Ok(Scheduled {
            at: time(event, "scheduled_time")?,
            attempt: attempt(event)?,
            execution_id: event
                .get("execution_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            source,
        });
    }
    let source = match event.get("source").and_then(Value::as_str) {
        Some("aws.scheduler") => ScheduleSource::SchedulerDefault,
        Some("aws.events") => ScheduleSource::EventBridgeRule,
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "an event from {other:?} is not a scheduled run"
            )));
        }
        None if event.get("time").is_some() => ScheduleSource::Manual,
        None => {
            return Err(Error::InvalidInput(
                "not a scheduled run: expected the stack's Scheduler input \
                 ({\"vigil\": \"scheduled\", \"scheduled_time\": ...}), an EventBridge \
                 scheduled event, or {\"time\": \"<RFC 3339>\"}"
                    .to_owned(),
            ));
        }
    };
    Ok(Scheduled {
        at: time(event, "time")?,
        attempt: None,
        execution_id: None,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// The stack's `Input` after Scheduler substituted its context attributes (EventBridge
    /// Scheduler User Guide, "Adding context attributes": scheduled-time as
    /// `2022-03-22T18:59:43Z`, attempt-number as `1`).
    #[test]
    fn reads_the_stacks_scheduler_input() {
        let ev = json!({"vigil": "scheduled", "scheduled_time": "2026-11-25T08:00:00Z",
            "attempt": "2", "execution_id": "d32c5kddcf5bb8c3",
            "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/vigil-alert"});
        let s = parse(&ev).expect("parses");
        assert_eq!(s.at, t("2026-11-25T08:00:00Z"));
        assert_eq!(s.attempt, Some(2));
        assert_eq!(s.execution_id.as_deref(), Some("d32c5kddcf5bb8c3"));
        assert_eq!(s.source, ScheduleSource::SchedulerInput);
    }

    /// Scheduler's default notification when a schedule has no `Input`: `detail` is the
    /// string "{}" (a payload reported in aws/aws-lambda-dotnet#1864).
    #[test]
    fn reads_schedulers_default_notification_and_eventbridge_rules() {
        let ev = json!({"version": "0", "id": "6a7e8feb", "detail-type": "Scheduled Event",
            "source": "aws.scheduler", "account": "123456789012", "time": "2026-11-25T08:05:00Z",
            "region": "us-east-1", "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/s"],
            "detail": "{}"});
        let s = parse(&ev).expect("parses");
        assert_eq!(
            (s.at, s.source),
            (t("2026-11-25T08:05:00Z"), ScheduleSource::SchedulerDefault)
        );
        let rule = json!({"source": "aws.events", "detail-type": "Scheduled Event",
            "time": "2026-11-25T08:06:00Z", "detail": {}});
        assert_eq!(
            parse(&rule).expect("parses").source,
            ScheduleSource::EventBridgeRule
        );
        let manual = parse(&json!({"time": "2026-11-25T08:07:00+01:00"})).expect("parses");
        assert_eq!(manual.at, t("2026-11-25T07:07:00Z"));
    }

    #[test]
    fn reads_the_smoke_tests_input() {
        let ev = json!({"vigil": "smoke", "scheduled_time": "2026-11-25T08:00:00Z",
            "attempt": "1", "execution_id": "smoke-1", "schedule_arn": "scripts/smoke"});
        let s = parse(&ev).expect("parses");
        assert_eq!(
            (s.at, s.source),
            (t("2026-11-25T08:00:00Z"), ScheduleSource::Smoke)
        );
        assert!(s.source.is_smoke());
        assert!(
            !parse(&json!({"time": "2026-11-25T08:00:00Z"}))
                .expect("parses")
                .source
                .is_smoke()
        );
        assert!(parse(&json!({"vigil": "smoke"})).is_err());
    }

    /// The alert function's weekly review schedule (`events/scheduler-alert-review.json`).
    #[test]
    fn reads_the_review_schedules_input() {
        let ev = json!({"vigil": "review", "scheduled_time": "2026-11-30T08:00:00Z",
            "attempt": "2", "execution_id": "e", "schedule_arn": "arn:aws:scheduler:us-east-1:1:schedule/default/r"});
        let s = parse(&ev).expect("parses");
        assert_eq!(
            (s.at, s.source, s.attempt),
            (t("2026-11-30T08:00:00Z"), ScheduleSource::Review, Some(2))
        );
        assert!(!s.source.is_smoke());
        assert!(parse(&json!({"vigil": "review"})).is_err(), "no instant");
    }

    #[test]
    fn events_without_an_instant_are_refused() {
        for bad in [
            json!({}),
            json!({"vigil": "scheduled"}),
            json!({"vigil": "scheduled", "scheduled_time": "<aws.scheduler.scheduled-time>"}),
            json!({"vigil": "scheduled", "scheduled_time": "2026-11-25T08:00:00Z", "attempt": "x"}),
            json!({"source": "aws.s3", "time": "2026-11-25T08:00:00Z"}),
            json!({"source": "aws.scheduler"}),
        ] {
            assert!(
                matches!(parse(&bad), Err(Error::InvalidInput(_))),
                "{bad} was accepted"
            );
        }
    }
}
