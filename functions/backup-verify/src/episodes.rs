//! Which findings are announced, once: a state object in S3 keeps, per set and check, the
//! fault open now (an episode), the messages owed, and when each set was last verified.
//!
//! - [`plan`] is a pure, idempotent step from a run's report: a new fault opens an episode and
//!   owes its first message; one that lasts owes a reminder every `repeat_interval`; a check
//!   that passes again, or a set removed from the file, owes the resolved message. A check in
//!   `error` opens an "unverified" episode only when it was in error at an earlier scheduled
//!   run too: a Lambda retry of the same run never announces a transient read failure.
//! - [`deliver`] claims the owed messages under the run's id until its deadline (a lease, so
//!   that two overlapping invocations never both send one), publishes them with their
//!   deduplication key, and removes what SNS accepted. A message SNS refuses for good is set
//!   aside (logged and counted), never retried for ever; one refused for now stays owed.
//!
//! Every change is a conditional write through [`vigil_shared::cas::update`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use vigil_shared::cas::StateLocation;
use vigil_shared::limits::{SNS_MAX_BATCH_BYTES, SNS_MAX_BATCH_ENTRIES, SNS_MAX_MESSAGE_BYTES};
use vigil_shared::{Envelope, Error, Notification, Notifier, ObjectStore, Refusal, Result};

use crate::config::BackupSet;
use crate::handler::Invocation;
use crate::message::{self, About, Kind, Standing};
use crate::report::{Check, CheckResult, Report, Status};

/// The state, as stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub version: u32,
    /// The latest scheduled instant planned: an older one (a late retry) only delivers.
    #[serde(default)]
    pub latest_run: Option<DateTime<Utc>>,
    /// The scheduled instant planned before `latest_run`.
    #[serde(default)]
    pub previous_run: Option<DateTime<Utc>>,
    /// The latest scheduled instant whose verification completed with no check in error: a
    /// retry of it only delivers.
    #[serde(default)]
    pub verified_run: Option<DateTime<Utc>>,
    /// Open episodes, by set and check.
    #[serde(default)]
    pub episodes: BTreeMap<String, BTreeMap<Check, Episode>>,
    /// Checks in error not yet announced.
    #[serde(default)]
    pub errors: BTreeMap<String, BTreeMap<Check, ErrorSpell>>,
    /// When each set was last reached by a run.
    #[serde(default)]
    pub last_verified: BTreeMap<String, DateTime<Utc>>,
    /// Messages owed, oldest first.
    #[serde(default)]
    pub outbox: Vec<Owed>,
}

/// A fault of one check of one set, open since `since`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub standing: Standing,
    pub since: DateTime<Utc>,
    /// The scheduled instant of its latest message.
    pub last_sent: DateTime<Utc>,
    /// Reminders owed so far.
    pub repeats: u32,
}

/// Consecutive scheduled runs in which a check was in error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSpell {
    /// The first run of the spell.
    pub since: DateTime<Utc>,
    /// The latest run of the spell.
    pub last: DateTime<Utc>,
}

/// A message owed, with its deduplication key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owed {
    pub key: String,
    pub notification: Notification,
    #[serde(default)]
    pub claim: Option<Claim>,
}

/// A run's lease on a message: it alone may send it until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub run: String,
    pub until: DateTime<Utc>,
}

/// What one delivery did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub sent: usize,
    /// Refused for now: still owed.
    pub retry: usize,
    /// Refused for good: set aside.
    pub set_aside: usize,
    /// Owed but leased by another invocation.
    pub held_elsewhere: usize,
}

/// Reads a stored state.
pub fn parse(bytes: &[u8]) -> Result<State> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Config(format!("unreadable backup-verify state: {e}")))
}

/// A conditional change of the state (see [`vigil_shared::cas::update`]).
pub async fn update<R>(
    store: &impl ObjectStore,
    location: &StateLocation,
    first: Option<(State, Option<String>)>,
    change: impl FnMut(&mut State) -> R,
) -> Result<(State, String, R)> {
    vigil_shared::cas::update(store, location, "backup-verify state", first, parse, change).await
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The deduplication key of one message of an episode.
fn key(set: &str, check: Check, since: DateTime<Utc>, kind: Kind) -> String {
    let kind = match kind {
        Kind::First => "first".to_owned(),
        Kind::Repeat(n) => format!("repeat-{n}"),
        Kind::Resolved => "resolved".to_owned(),
    };
    format!("backup-verify/{set}/{check}/{}/{kind}", stamp(since))
}

fn owe(state: &mut State, key: String, notification: Notification) {
    if !state.outbox.iter().any(|o| o.key == key) {
        state.outbox.push(Owed {
            key,
            notification: notification.fitted(SNS_MAX_MESSAGE_BYTES),
            claim: None,
        });
    }
}

/// One result per check of a set: a check made several times (a restore per sampled backup,
/// one per replica) stands for its worst result, with the details of the results at that
/// status.
pub fn per_check(checks: &[CheckResult]) -> Vec<CheckResult> {
    let rank = |s: Status| match s {
        Status::Failed => 4,
        Status::Error => 3,
        Status::Ok => 2,
        Status::Skipped => 1,
        Status::NotReached => 0,
    };
    let mut out: Vec<CheckResult> = Vec::new();
    for c in checks {
        match out.iter_mut().find(|o| o.check == c.check) {
            None => out.push(c.clone()),
            Some(o) if rank(c.status) > rank(o.status) => *o = c.clone(),
            Some(o)
                if c.status == o.status && matches!(c.status, Status::Failed | Status::Error) =>
            {
                o.detail = format!("{}; {}", o.detail, c.detail);
            }
            Some(_) => {}
        }
    }
    out
}

/// The checks a set is given by its configuration (some are made only when there is something
/// to look at: those stay open until they are made again).
fn configured(set: &BackupSet, check: Check) -> bool {
    match check {
        Check::Freshness | Check::Count | Check::Size | Check::Integrity => true,
        Check::Restore => set.restore != crate::sample::Sample::None,
        Check::Replica => !set.replicas.is_empty(),
        Check::ObjectLock => set.require.object_lock_days.is_some(),
        Check::Versioning => set.require.versioning,
        Check::Encryption => set.require.encryption != crate::config::EncryptionRequirement::None,
        Check::VeleroArchives | Check::VeleroVolumes => set.velero,
    }
}

/// Applies a run's report to the state. `sets` is the whole backup sets file; `announce` is
/// false when there is no topic (episodes are still kept, nothing is owed). Idempotent: the
/// same report applied twice changes nothing the second time. Returns the messages it owed.
pub fn plan(
    state: &mut State,
    report: &Report,
    sets: &[BackupSet],
    report_at: &str,
    announce: bool,
) -> usize {
    let run_at = report.run_at;
    match state.latest_run {
        Some(latest) if run_at < latest => return 0,
        Some(latest) if run_at > latest => state.previous_run = Some(latest),
        _ => {}
    }
    state.version = 1;
    state.latest_run = Some(run_at);
    if report.summary.error == 0 {
        state.verified_run = Some(run_at);
    }
    let previous = state.previous_run;
    let before = state.outbox.len();
    let mut owed: Vec<(String, Notification)> = Vec::new();
    for set in &report.sets {
        if set.status == Status::NotReached {
            continue;
        }
        let Some(spec) = sets.iter().find(|s| s.name == set.name) else {
            continue;
        };
        state.last_verified.insert(set.name.clone(), run_at);
        let about = About {
            set: &set.name,
            location: format!("s3://{}/{}", set.bucket, set.prefix),
            labels: &spec.labels,
            report: report_at,
        };
        let repeat = TimeDelta::try_seconds(
            i64::try_from(spec.repeat_interval.seconds()).unwrap_or(i64::MAX),
        )
        .unwrap_or(TimeDelta::MAX);
        let episodes = state.episodes.entry(set.name.clone()).or_default();
        let errors = state.errors.entry(set.name.clone()).or_default();
        // Checks the configuration no longer gives end their episodes.
        let dropped: Vec<Check> = episodes
            .keys()
            .copied()
            .filter(|c| !configured(spec, *c))
            .collect();
        for check in dropped {
            if let Some(old) = episodes.remove(&check) {
                let why = "the set no longer asks for this check";
                let n = message::resolved(&about, check, old.standing, old.since, why);
                owed.push((key(&set.name, check, old.since, Kind::Resolved), n));
            }
        }
        errors.retain(|c, _| configured(spec, *c));
        for result in per_check(&set.checks) {
            let result = &result;
            let check = result.check;
            match (Standing::of(result.status), episodes.get_mut(&check)) {
                // A fault that lasts: a reminder once the interval has passed.
                (Some(standing), Some(e)) if e.standing == standing => {
                    let due = e
                        .last_sent
                        .checked_add_signed(repeat)
                        .is_some_and(|due| run_at >= due);
                    if due {
                        e.last_sent = run_at;
                        e.repeats += 1;
                        let kind = Kind::Repeat(e.repeats);
                        let n = message::fault(&about, result, standing, e.since, kind);
                        owed.push((key(&set.name, check, e.since, kind), n));
                    }
                }
                // A finding while it was unverified, or a first finding: a new episode.
                (Some(Standing::Failing), _) => {
                    errors.remove(&check);
                    if let Some(old) = episodes.remove(&check) {
                        let why = "the check can be made again, and finds a fault";
                        let n = message::resolved(&about, check, old.standing, old.since, why);
                        owed.push((key(&set.name, check, old.since, Kind::Resolved), n));
                    }
                    episodes.insert(
                        check,
                        Episode {
                            standing: Standing::Failing,
                            since: run_at,
                            last_sent: run_at,
                            repeats: 0,
                        },
                    );
                    let n = message::fault(&about, result, Standing::Failing, run_at, Kind::First);
                    owed.push((key(&set.name, check, run_at, Kind::First), n));
                }
                // An error while a finding is open says nothing new of the backup.
                (Some(Standing::Unverified), Some(_)) => {}
                // In error at the previous scheduled run too: announced. In error at this one
                // only (or again after a gap): a spell begins, announced if it lasts.
                (Some(Standing::Unverified), None) => match errors.get(&check).copied() {
                    Some(spell) if spell.last == run_at => {}
                    Some(spell) if Some(spell.last) == previous => {
                        errors.remove(&check);
                        episodes.insert(
                            check,
                            Episode {
                                standing: Standing::Unverified,
                                since: spell.since,
                                last_sent: run_at,
                                repeats: 0,
                            },
                        );
                        let n = message::fault(
                            &about,
                            result,
                            Standing::Unverified,
                            spell.since,
                            Kind::First,
                        );
                        owed.push((key(&set.name, check, spell.since, Kind::First), n));
                    }
                    _ => {
                        errors.insert(
                            check,
                            ErrorSpell {
                                since: run_at,
                                last: run_at,
                            },
                        );
                    }
                },
                (None, _) if result.status == Status::Ok => {
                    errors.remove(&check);
                    if let Some(old) = episodes.remove(&check) {
                        let n =
                            message::resolved(&about, check, old.standing, old.since, "it passes");
                        owed.push((key(&set.name, check, old.since, Kind::Resolved), n));
                    }
                }
                // Skipped: neither passes nor fails; the episode stays as it is.
                (None, _) => {}
            }
        }
    }
    // Sets no longer in the file: their episodes end.
    let names: BTreeSet<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    let gone: Vec<String> = state
        .episodes
        .keys()
        .filter(|n| !names.contains(n.as_str()))
        .cloned()
        .collect();
    let no_labels = BTreeMap::new();
    for name in gone {
        for (check, old) in state.episodes.remove(&name).unwrap_or_default() {
            let about = About {
                set: &name,
                location: "(removed)".to_owned(),
                labels: &no_labels,
                report: report_at,
            };
            let why = "the set was removed from the backup sets file";
            let n = message::resolved(&about, check, old.standing, old.since, why);
            owed.push((key(&name, check, old.since, Kind::Resolved), n));
        }
    }
    state
        .errors
        .retain(|n, e| names.contains(n.as_str()) && !e.is_empty());
    state.episodes.retain(|_, e| !e.is_empty());
    state
        .last_verified
        .retain(|n, _| names.contains(n.as_str()));
    if announce {
        for (key, n) in owed {
            owe(state, key, n);
        }
    }
    state.outbox.len() - before
}

/// Claims the owed messages this run may send: unclaimed, leased by this run, or whose lease
/// has expired. Idempotent for one run.
pub fn claim(
    state: &mut State,
    run: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> (Vec<Owed>, usize) {
    let mut mine = Vec::new();
    let mut elsewhere = 0;
    for owed in &mut state.outbox {
        let free = match &owed.claim {
            None => true,
            Some(c) => c.run == run || c.until <= now,
        };
        if free {
            owed.claim = Some(Claim {
                run: run.to_owned(),
                until,
            });
            mine.push(owed.clone());
        } else {
            elsewhere += 1;
        }
    }
    (mine, elsewhere)
}

/// Records what a delivery did: sent and set-aside messages leave the outbox, the others are
/// released for the next try. Idempotent.
pub fn settle(state: &mut State, run: &str, sent: &BTreeSet<String>, set_aside: &BTreeSet<String>) {
    state
        .outbox
        .retain(|o| !sent.contains(&o.key) && !set_aside.contains(&o.key));
    for owed in &mut state.outbox {
        if owed.claim.as_ref().is_some_and(|c| c.run == run) {
            owed.claim = None;
        }
    }
}

/// Batches of at most [`SNS_MAX_BATCH_ENTRIES`] messages and [`SNS_MAX_BATCH_BYTES`].
fn batches(owed: &[Owed]) -> Vec<&[Owed]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, o) in owed.iter().enumerate() {
        let size = o.notification.wire_size_with_key(&o.key);
        if i > start && (i - start == SNS_MAX_BATCH_ENTRIES || bytes + size > SNS_MAX_BATCH_BYTES) {
            out.push(&owed[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < owed.len() {
        out.push(&owed[start..]);
    }
    out
}

/// Delivers what is owed to `topic`, once: claim, publish, settle.
pub async fn deliver(
    store: &impl ObjectStore,
    notifier: &impl Notifier,
    location: &StateLocation,
    topic: &str,
    inv: &Invocation,
) -> Result<Delivery> {
    let (_, _, (mine, elsewhere)) = update(store, location, None, |s| {
        claim(s, &inv.run_id, inv.clock(), inv.deadline)
    })
    .await?;
    let mut delivery = Delivery {
        held_elsewhere: elsewhere,
        ..Delivery::default()
    };
    if mine.is_empty() {
        return Ok(delivery);
    }
    let (mut sent, mut set_aside) = (BTreeSet::new(), BTreeSet::new());
    for batch in batches(&mine) {
        if inv.budget.over() {
            break;
        }
        let envelopes: Vec<Envelope<'_>> = batch
            .iter()
            .map(|o| Envelope {
                key: &o.key,
                notification: &o.notification,
            })
            .collect();
        let results = notifier.publish_batch(topic, &envelopes).await;
        for (o, result) in batch.iter().zip(results) {
            match result {
                Ok(id) => {
                    tracing::info!(key = %o.key, message_id = %id, "announced");
                    sent.insert(o.key.clone());
                }
                Err(Refusal::Permanent(why)) => {
                    tracing::error!(key = %o.key, topic, reason = %why, "announcement refused for good; set aside");
                    set_aside.insert(o.key.clone());
                }
                Err(Refusal::Retryable(why)) => {
                    tracing::warn!(key = %o.key, reason = %why, "announcement refused for now; still owed");
                }
            }
        }
    }
    delivery.sent = sent.len();
    delivery.set_aside = set_aside.len();
    delivery.retry = mine.len() - sent.len() - set_aside.len();
    update(store, location, None, |s| {
        settle(s, &inv.run_id, &sent, &set_aside)
    })
    .await?;
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{SetReport, Summary};
    use chrono::Duration;

    fn report(at: DateTime<Utc>, status: Status) -> Report {
        let check = CheckResult {
            check: Check::Restore,
            status,
            detail: "read failed".into(),
            evidence: serde_json::Value::Null,
        };
        Report {
            report_version: 2,
            run_at: at,
            sets: vec![SetReport {
                name: "db".into(),
                bucket: "b".into(),
                prefix: "db/".into(),
                status,
                checks: vec![check],
            }],
            summary: Summary::default(),
        }
    }

    /// An error is announced only when the check was in error at the previous scheduled run:
    /// two errors with a skipped run between them are two spells, neither announced.
    #[test]
    fn only_an_error_at_consecutive_runs_is_announced() {
        let sets = crate::config::load(
            "s.yaml",
            "backup_sets:\n  - {name: db, bucket: bbb, prefix: db/, max_age: 1d}\n",
        )
        .expect("sets");
        let at = |d: i64| DateTime::UNIX_EPOCH + Duration::days(d);
        let mut state = State::default();
        let owed =
            |state: &mut State, d, status| plan(state, &report(at(d), status), &sets, "r", true);
        assert_eq!(owed(&mut state, 0, Status::Error), 0);
        assert_eq!(
            owed(&mut state, 0, Status::Error),
            0,
            "a retry of the same run"
        );
        assert_eq!(owed(&mut state, 1, Status::Skipped), 0);
        assert_eq!(
            owed(&mut state, 2, Status::Error),
            0,
            "not consecutive: a new spell"
        );
        assert_eq!(
            owed(&mut state, 3, Status::Error),
            1,
            "in error at the run before too"
        );
        assert_eq!(owed(&mut state, 3, Status::Error), 0, "once");
        assert!(
            state.outbox[0].key.contains(&stamp(at(2))),
            "{}",
            state.outbox[0].key
        );
    }

    #[test]
    fn several_results_of_a_check_stand_for_the_worst() {
        let c = |status, detail: &str| CheckResult {
            check: Check::Replica,
            status,
            detail: detail.into(),
            evidence: serde_json::Value::Null,
        };
        let one = per_check(&[
            c(Status::Ok, "a"),
            c(Status::Failed, "b"),
            c(Status::Failed, "c"),
        ]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].status, Status::Failed);
        assert_eq!(one[0].detail, "b; c");
        assert_eq!(
            per_check(&[c(Status::Skipped, "a"), c(Status::Ok, "b")])[0].status,
            Status::Ok
        );
    }
}
