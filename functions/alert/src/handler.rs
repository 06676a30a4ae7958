//! The Lambda handlers: a scheduled evaluation, or a CloudWatch alarm's change of state.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use vigil_shared::schedule;
use vigil_shared::{Error, MetricReader, ObjectStore, Outlets, Result};

use crate::alarm::{self, Applied};
use crate::config::AlertConfig;
use crate::outbox::{deliver, update};
use crate::policy::{Policy, Silence};
use crate::rules::{Rule, lint};
use crate::run::{Invocation, Plan, RunSummary, run};

/// Delivery stops this long before the invocation's deadline, to record what it did.
pub const STOP_MARGIN: StdDuration = StdDuration::from_secs(5);

/// The invocation as Lambda hands it over: its request id, the wall clock when it began, and
/// its deadline.
#[derive(Clone, Debug)]
pub struct Call {
    pub request_id: String,
    pub now: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
}

impl Call {
    fn invocation(&self, at: DateTime<Utc>) -> Invocation {
        let left = (self.deadline - self.now)
            .to_std()
            .unwrap_or_default()
            .saturating_sub(STOP_MARGIN);
        Invocation {
            id: self.request_id.clone(),
            at,
            now: self.now,
            deadline: self.deadline,
            stop: Instant::now() + left,
        }
    }
}

/// The rules, policy and silences in force: the rules file (routes checked against the topics
/// the stack may publish to) and `VIGIL_SILENCES`.
async fn policy_and_silences(
    store: &impl ObjectStore,
    config: &AlertConfig,
) -> Result<(Vec<Rule>, Policy, Vec<Silence>)> {
    let origin = config.rules.to_string();
    let (rules, policy) = crate::rule_files::read(&config.rules, store).await?;
    policy.check_topics(&origin, &config.allowed_topics)?;
    let silences: Vec<Silence> = match &config.silences {
        None => Vec::new(),
        Some(source) => match source.read_optional(store).await {
            Ok(None) => Vec::new(),
            Ok(Some(text)) => readable_silences(&source.to_string(), Ok(&text), Utc::now()),
            // Throttling or a dropped connection: the retry reads them.
            Err(e) if e.is_retryable() => return Err(e),
            // Denied, or not text: no silence applies, and the paging goes on.
            Err(e) => readable_silences(&source.to_string(), Err(e.to_string()), Utc::now()),
        },
    };
    Ok((rules, policy, silences))
}

/// The silences of the silences object that can be read. One that cannot (a broken
/// expression), or the whole object when it cannot be read or is not JSON, is skipped with a
/// logged warning and counted (`Vigil` / `SilencesUnreadable`): a typo in a silence, or a role
/// denied the object, must never stop the paging.
fn readable_silences(
    origin: &str,
    text: std::result::Result<&str, String>,
    now: DateTime<Utc>,
) -> Vec<Silence> {
    let (silences, skipped) = match text.and_then(crate::silence::parse_silences) {
        Ok(read) => read,
        Err(e) => (Vec::new(), vec![e]),
    };
    for why in &skipped {
        tracing::warn!(silences = %origin, error = %why, "silence skipped");
    }
    if !skipped.is_empty() {
        let mut fields = serde_json::Map::new();
        fields.insert("message".into(), "silences skipped".into());
        fields.insert("silences".into(), origin.into());
        vigil_shared::emf::emit(&vigil_shared::emf::line(
            "Vigil",
            &[("Function", "alert")],
            &[(
                "SilencesUnreadable",
                skipped.len() as f64,
                vigil_shared::Unit::Count,
            )],
            fields,
            now,
        ));
    }
    silences
}

/// A scheduled evaluation: reads the rules (at every run, so a new file in S3 takes effect
/// without a deployment), evaluates them at the event's scheduled time and returns the run's
/// summary. A smoke run (`"vigil": "smoke"`) does the same with the stack's smoke
/// configuration ([`AlertConfig::smoke`]).
pub async fn handle_scheduled(
    reader: &impl MetricReader,
    notifier: &impl Outlets,
    store: &impl ObjectStore,
    config: &AlertConfig,
    event: &Value,
    call: &Call,
) -> Result<Value> {
    let scheduled = schedule::parse(event)?;
    if scheduled.source == schedule::ScheduleSource::Review {
        return handle_review(notifier, store, config, &scheduled, call).await;
    }
    let smoke_config;
    let config = if scheduled.source.is_smoke() {
        smoke_config = config.smoke()?;
        &smoke_config
    } else {
        config
    };
    let (rules, policy, silences) = policy_and_silences(store, config).await?;
    for finding in lint(&rules) {
        tracing::warn!(finding = %finding, "rule lint");
    }
    let plan = Plan {
        rules: &rules,
        policy: &policy,
        silences: &silences,
        default_topic: &config.topic_arn,
        state: &config.state,
    };
    let summary = run(
        reader,
        notifier,
        store,
        plan,
        &call.invocation(scheduled.at),
    )
    .await?;
    // A smoke run is not the schedule: it must not keep the dead man's switch quiet.
    if !scheduled.source.is_smoke() {
        vigil_shared::emf::emit(&heartbeat_line(&summary, call.now));
    }
    let mut out = serde_json::to_value(summary)
        .map_err(|e| Error::Internal(format!("summary not serializable: {e}")))?;
    out["schedule"] = serde_json::to_value(&scheduled)
        .map_err(|e| Error::Internal(format!("schedule not serializable: {e}")))?;
    Ok(out)
}

/// The weekly review of the week ending at the scheduled time ([`crate::review`]): computed
/// from the state's history, written to S3 (`VIGIL_REVIEW_PREFIX` in the state's bucket), then
/// sent as one message through the outbox. The state records the week reviewed in the same
/// conditional write that owes the message, so a retry, or a second invocation for the same
/// week, writes the same object again and sends nothing twice.
pub async fn handle_review(
    notifier: &impl Outlets,
    store: &impl ObjectStore,
    config: &AlertConfig,
    scheduled: &schedule::Scheduled,
    call: &Call,
) -> Result<Value> {
    let (_, policy, _) = policy_and_silences(store, config).await?;
    let settings = policy.review.clone().unwrap_or_default();
    let quiet = settings
        .quiet()
        .map_err(|e| Error::Config(format!("{}: policy.review: {e}", config.rules)))?;
    let until = scheduled.at;
    // A week that has not ended yet is not reviewed: it would mark the weeks up to it as
    // reviewed, and they would never be.
    if until > call.now + chrono::Duration::minutes(5) {
        return Err(Error::InvalidInput(format!(
            "a review of the week to {until}, which has not ended (now {})",
            call.now
        )));
    }
    let first = crate::outbox::load_state(store, &config.state, call.now).await?;
    let reviewed = crate::review::review(&first.0, &settings, &quiet, until);
    let key = format!(
        "{}{}.json",
        config.review_prefix,
        until.format("%Y-%m-%dT%H-%M-%SZ")
    );
    let location = format!("s3://{}/{key}", config.state.bucket);
    // A week already reviewed keeps the object its message links to.
    if first.0.reviewed_until.is_none_or(|r| r < until) {
        let body = serde_json::to_vec_pretty(&reviewed)
            .map_err(|e| Error::Internal(format!("review not serializable: {e}")))?;
        store
            .put(&config.state.bucket, &key, body, "application/json")
            .await?;
    }
    let notification = crate::review::notification(&reviewed, &location);
    let topic = settings
        .topic_arn
        .clone()
        .unwrap_or_else(|| config.topic_arn.clone());
    let inv = call.invocation(until);
    let lease = inv.lease();
    let dedup = format!("{}/{}", crate::review::REVIEW, until.timestamp());
    let (state, tag, owed) = update(store, &config.state, Some(first), call.now, |state| {
        let owed =
            state.reviewed_until.is_none_or(|r| r < until) && !state.known_keys().contains(&dedup);
        if owed {
            state.outbox.push(crate::outbox::Owed {
                key: dedup.clone(),
                topic_arn: topic.clone(),
                rule: crate::review::REVIEW.to_owned(),
                severity: String::new(),
                labels: std::collections::BTreeMap::new(),
                status: crate::state::Status::Firing,
                kind: crate::outbox::Kind::Review,
                members: Vec::new(),
                notification: notification.clone(),
                attempts: 0,
                lease: None,
                last_error: None,
                channel: Default::default(),
                episode: dedup.clone(),
            });
            state.reviewed_until = Some(until);
        }
        state.claim(&lease, call.now);
        owed
    })
    .await?;
    let (delivery, _) = deliver(
        notifier,
        store,
        &config.state,
        state,
        tag,
        &lease,
        &config.topic_arn,
        call.now,
        inv.stop,
    )
    .await?;
    tracing::info!(until = %until, pages = reviewed.pages, fix_first = reviewed.fix_first.len(),
        owed, sent = delivery.sent.len(), location = %location, "weekly review");
    Ok(serde_json::json!({
        "review": {
            "from": reviewed.from,
            "until": reviewed.until,
            "pages": reviewed.pages,
            "episodes": reviewed.episodes,
            "fix_first": reviewed.fix_first,
        },
        "location": location,
        "already_reviewed": !owed,
        "sent": delivery.sent,
        "deferred": delivery.deferred,
        "set_aside": delivery.set_aside,
    }))
}

/// The EMF line a completed evaluation writes: `Heartbeat` 1 (the stack's dead man's switch
/// alarms when it stops), with how many series were evaluated, how many are firing, and how
/// many metrics the run asked `GetMetricData` for (what CloudWatch bills for the reads).
pub fn heartbeat_line(summary: &RunSummary, now: DateTime<Utc>) -> String {
    let firing = summary
        .rules
        .iter()
        .filter(|r| r.state == crate::state::Standing::Firing)
        .count();
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), "evaluation completed".into());
    fields.insert(
        "evaluated_at".into(),
        summary.evaluated_at.to_rfc3339().into(),
    );
    fields.insert("sent".into(), summary.sent.len().into());
    fields.insert("superseded".into(), summary.superseded.into());
    vigil_shared::emf::line(
        "Vigil",
        &[("Function", "alert")],
        &[
            ("Heartbeat", 1.0, vigil_shared::Unit::Count),
            (
                "SeriesEvaluated",
                summary.rules.len() as f64,
                vigil_shared::Unit::Count,
            ),
            ("AlertsFiring", firing as f64, vigil_shared::Unit::Count),
            (
                "MetricsRequested",
                summary.metrics_requested as f64,
                vigil_shared::Unit::Count,
            ),
        ],
        fields,
        now,
    )
}

/// A CloudWatch alarm state change (alarm action or EventBridge): the change goes through the
/// same policy as the rules (routes, silences, inhibition) and the same claimed, deduplicated
/// delivery. When another run wrote the state first, the change is applied again to a fresh
/// read; it is never dropped.
pub async fn handle_alarm(
    notifier: &impl Outlets,
    store: &impl ObjectStore,
    config: &AlertConfig,
    event: &Value,
    call: &Call,
) -> Result<Value> {
    let change = alarm::parse(event)?;
    let (_, policy, silences) = policy_and_silences(store, config).await?;
    let inv = call.invocation(change.timestamp);
    let lease = inv.lease();
    let (state, tag, applied) = update(store, &config.state, None, call.now, |state| {
        let applied = alarm::apply(
            state,
            &change,
            &policy,
            &silences,
            &config.topic_arn,
            call.now,
        );
        state.flush_groups(&policy, call.now);
        state.claim(&lease, call.now);
        applied
    })
    .await?;
    if applied == Applied::Ignored {
        let mut fields = serde_json::Map::new();
        fields.insert("message".into(), "alarm change ignored".into());
        fields.insert("alarm".into(), change.name.clone().into());
        vigil_shared::emf::emit(&vigil_shared::emf::line(
            "Vigil",
            &[("Function", "alert")],
            &[("AlarmChangesIgnored", 1.0, vigil_shared::Unit::Count)],
            fields,
            call.now,
        ));
    }
    let (delivery, _) = deliver(
        notifier,
        store,
        &config.state,
        state,
        tag,
        &lease,
        &config.topic_arn,
        call.now,
        inv.stop,
    )
    .await?;
    tracing::info!(alarm = %change.name, state = change.state.as_str(), applied = ?applied,
        sent = delivery.sent.len(), "alarm change handled");
    let mut out = serde_json::json!({
        "alarm": change.name,
        "state": change.state,
        "sent": delivery.sent,
        "deferred": delivery.deferred,
        "set_aside": delivery.set_aside,
    });
    if let (Value::Object(o), Ok(Value::Object(a))) = (&mut out, serde_json::to_value(&applied)) {
        o.extend(a);
    }
    Ok(out)
}

/// The Lambda handler: alarm state changes, else scheduled evaluations.
pub async fn handle_event(
    reader: &impl MetricReader,
    notifier: &impl Outlets,
    store: &impl ObjectStore,
    config: &AlertConfig,
    event: &Value,
    call: &Call,
) -> Result<Value> {
    if alarm::is_alarm_event(event) {
        handle_alarm(notifier, store, config, event, call).await
    } else {
        handle_scheduled(reader, notifier, store, config, event, call).await
    }
}
