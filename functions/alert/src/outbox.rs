//! The outbox: the state file, claims with leases, and delivery.
//!
//! All of the alert state lives in one JSON object in S3, written only with conditional
//! requests ([`update`]): a change is applied to a fresh read and written with `If-Match`; when
//! another writer got there first (or the answer of a write that landed was lost), the change
//! is applied again to a fresh read, a bounded number of times. Every change is idempotent, so
//! applying it to a state that already holds it changes nothing.
//!
//! A run claims the notifications it will send by leasing them (its run id and the end of its
//! invocation, after which Lambda has stopped it for sure). A notification leased by a live run
//! is left to that run; an expired lease is taken over. Delivery sends each claimed message on
//! its own, in batches of up to ten (`PublishBatch`) side by side: what SNS accepts is recorded
//! as delivered, what it throttles is retried with backoff inside the run and then left owed
//! for the next run, and what it can never accept (AuthorizationError, NotFound,
//! InvalidParameter), or has refused [`MAX_ATTEMPTS`] times, is set aside: kept in the state,
//! counted in the `NotificationsSetAside` metric and announced once on the default topic. One
//! undeliverable message never holds back another. Progress is written once per wave of
//! [`WAVE`] messages, not once per message.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use vigil_shared::limits::{SNS_MAX_BATCH_BYTES, SNS_MAX_BATCH_ENTRIES};
use vigil_shared::notify::Envelope;
use vigil_shared::{Error, Notification, Notifier, ObjectStore, Outlets, Refusal, Result};

use crate::alarm::NativeAlarm;
use crate::policy::Policy;
use crate::receiver::Channel;
use crate::state::{AlertState, Status};

/// Deliveries refused as retryable, across runs, before a message is set aside.
pub const MAX_ATTEMPTS: u32 = 30;
/// Tries of one message within a run (with backoff) before it is left for the next run.
pub const TRIES_PER_RUN: usize = 3;
/// Batch calls in flight at once.
pub const CONCURRENCY: usize = 8;
/// Messages delivered between two writes of the progress.
pub const WAVE: usize = 2_000;
/// How long delivered keys are remembered (a redelivered alarm event is dropped by them).
pub const DELIVERED_KEPT: i64 = 24 * 3600;
/// At most this many delivered keys are remembered.
pub const DELIVERED_MAX: usize = 50_000;
/// Set-aside messages kept (the newest).
pub const SET_ASIDE_MAX: usize = 1_000;
/// The metric (namespace `Vigil`, dimension `Function=alert`) counting messages set aside;
/// the stack alarms on it.
pub const SET_ASIDE_METRIC: &str = "NotificationsSetAside";

/// What an owed message is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One alert's (or CloudWatch alarm's) firing or resolved message.
    #[default]
    Alert,
    /// A group's message (`policy.group_by`): `members` are the alerts it carries.
    Group,
    Watchdog,
    /// The announcement of messages set aside; never itself announced.
    Announcement,
    /// The weekly review ([`crate::review`]).
    Review,
}

/// A claim on an owed message: the run that will send it, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub run: String,
    pub until: DateTime<Utc>,
}

fn firing() -> Status {
    Status::Firing
}

/// A notification owed and not yet accepted by SNS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owed {
    /// The deduplication key.
    pub key: String,
    /// The topic the policy routed it to.
    pub topic_arn: String,
    /// The rule (or alarm) name, for the metrics.
    #[serde(default)]
    pub rule: String,
    #[serde(default)]
    pub severity: String,
    /// The alert's labels, for grouping.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "firing")]
    pub status: Status,
    #[serde(default)]
    pub kind: Kind,
    /// For a grouped message: the keys of the notifications it carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    pub notification: Notification,
    /// Deliveries refused as retryable so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How it is sent: as text, for chat or SMS to `topic_arn`, or to PagerDuty or a webhook
    /// (then `topic_arn` names the receiver). Earlier versions sent only text.
    #[serde(default, skip_serializing_if = "Channel::is_text")]
    pub channel: Channel,
    /// The episode it belongs to ([`crate::state::episode_id`], [`crate::alarm::episode`]):
    /// the messages of one episode to one receiver outside SNS go in order, and PagerDuty
    /// resolves the incident it opened by it. Empty for earlier versions' entries.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub episode: String,
}

impl Owed {
    /// The episode, or for an entry of an earlier version its key.
    pub fn episode(&self) -> &str {
        if self.episode.is_empty() {
            &self.key
        } else {
            &self.episode
        }
    }

    /// The chain of a message to a receiver outside SNS: its destination and episode, whose
    /// messages go one at a time in the order they were owed. `None` for SNS.
    pub fn chain(&self) -> Option<(&str, &str)> {
        (!self.channel.is_sns()).then(|| (self.topic_arn.as_str(), self.episode()))
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A message that could not be delivered, kept for the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetAside {
    pub key: String,
    pub topic_arn: String,
    pub rule: String,
    pub subject: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// Notifications of one group waiting for their message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    #[serde(default)]
    pub pending: Vec<Owed>,
    /// When the oldest pending notification arrived.
    pub since: DateTime<Utc>,
    /// When the group's last message was claimed.
    #[serde(default)]
    pub last_sent: Option<DateTime<Utc>>,
}

/// The persisted state of every rule and alarm: open episodes, owed notifications, the log of
/// delivered keys, what was set aside.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// The newest instant evaluated: a run for this instant or an older one only delivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<DateTime<Utc>>,
    /// The run that evaluated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_by: Option<String>,
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertState>,
    #[serde(default)]
    pub outbox: Vec<Owed>,
    /// Delivered keys, with when.
    #[serde(default)]
    pub delivered: BTreeMap<String, DateTime<Utc>>,
    /// CloudWatch alarms that opted in, by name: the last change applied, and the open episode.
    #[serde(default)]
    pub native: BTreeMap<String, NativeAlarm>,
    /// Groups with notifications waiting (`policy.group_by`), by group key.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<SetAside>,
    /// Every episode that fired and ended lately: what the weekly review reads.
    #[serde(default, skip_serializing_if = "crate::history::History::is_empty")]
    pub history: crate::history::History,
    /// The end of the newest week reviewed: a review of it, or of an older one, only delivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_until: Option<DateTime<Utc>>,
    /// Earlier versions' log of sent keys; read once into `delivered`.
    #[serde(default, rename = "sent", skip_serializing)]
    legacy_sent: Vec<String>,
    /// Earlier versions' labels of alarms in ALARM; read once into `native`.
    #[serde(default, rename = "alarms", skip_serializing)]
    legacy_alarms: BTreeMap<String, BTreeMap<String, String>>,
}

/// What one batch or chain did: its attempts and the calls it made.
type Sent = (Vec<Attempt>, usize);

/// What happened to one claimed message in a delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Sent {
        key: String,
        message_id: String,
    },
    Refused {
        key: String,
        refusal: Refusal,
    },
    /// Not tried: the run ran out of time.
    NotTried {
        key: String,
    },
    /// Not sent, and never to be: a later message of its episode to the same receiver outside
    /// SNS, its resolution, goes in its place ([`crate::receiver::deliver`]).
    Superseded {
        key: String,
    },
}

/// What recording a wave of attempts did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recorded {
    pub sent: usize,
    pub deferred: usize,
    pub set_aside: usize,
    /// The keys set aside (refused for good, or too often).
    pub set_aside_keys: Vec<String>,
    /// Sent per (rule, severity), for the metrics.
    pub by_rule: BTreeMap<(String, String), usize>,
}

impl StateFile {
    /// Every key this state knows: owed, waiting in a group, delivered, set aside.
    pub fn known_keys(&self) -> HashSet<String> {
        let mut keys: HashSet<String> = self.delivered.keys().cloned().collect();
        for o in self
            .outbox
            .iter()
            .chain(self.groups.values().flat_map(|g| &g.pending))
        {
            keys.insert(o.key.clone());
            keys.extend(o.members.iter().cloned());
        }
        for s in &self.set_aside {
            keys.insert(s.key.clone());
            keys.extend(s.members.iter().cloned());
        }
        keys
    }

    /// Moves what earlier versions kept into today's fields.
    pub fn migrate(&mut self, now: DateTime<Utc>) {
        // Earlier versions kept an owed message's status only in its `status` attribute, and
        // an entry read without the field defaults to firing: a resolved one says so there.
        for o in self
            .outbox
            .iter_mut()
            .chain(self.groups.values_mut().flat_map(|g| g.pending.iter_mut()))
        {
            let says_resolved = o
                .notification
                .attributes
                .iter()
                .any(|(k, v)| k == "status" && v == Status::Resolved.as_str());
            if says_resolved && o.status == Status::Firing {
                o.status = Status::Resolved;
            }
        }
        for key in std::mem::take(&mut self.legacy_sent) {
            self.delivered.entry(key).or_insert(now);
        }
        for (name, labels) in std::mem::take(&mut self.legacy_alarms) {
            self.native
                .entry(name)
                .or_insert_with(|| NativeAlarm::legacy(labels, now));
        }
    }

    /// Queues a notification, one message per config of its route's receiver
    /// ([`crate::receiver::fan_out`]): straight to the outbox, or, with `group_by`, an SNS
    /// message to its group.
    pub fn enqueue(&mut self, policy: &Policy, owed: Owed, now: DateTime<Utc>) {
        for copy in crate::receiver::fan_out(policy, owed) {
            self.enqueue_one(policy, copy, now);
        }
    }

    /// Queues a notification to its receiver's every config, never grouped (the Watchdog).
    pub fn route(&mut self, policy: &Policy, owed: Owed) {
        self.outbox.extend(crate::receiver::fan_out(policy, owed));
    }

    fn enqueue_one(&mut self, policy: &Policy, owed: Owed, now: DateTime<Utc>) {
        if policy.group_by.is_empty() || owed.kind != Kind::Alert || !owed.channel.is_sns() {
            self.outbox.push(owed);
            return;
        }
        let mut key = owed.topic_arn.clone();
        if !owed.channel.is_text() {
            key = format!("{}:{key}", owed.channel.tag());
        }
        for label in &policy.group_by {
            key.push('|');
            key.push_str(label);
            key.push('=');
            key.push_str(owed.labels.get(label).map_or("", String::as_str));
        }
        let group = self.groups.entry(key).or_insert_with(|| GroupState {
            pending: Vec::new(),
            since: now,
            last_sent: None,
        });
        if group.pending.is_empty() {
            group.since = now;
        }
        group.pending.push(owed);
    }

    /// Moves every group that is due into the outbox: a new group once `group_wait` has
    /// passed, a notified group no sooner than `group_interval` after its last message.
    pub fn flush_groups(&mut self, policy: &Policy, now: DateTime<Utc>) {
        let (wait, interval) = (policy.group_wait.signed(), policy.group_interval.signed());
        let mut due = Vec::new();
        for (key, group) in &mut self.groups {
            if group.pending.is_empty() {
                continue;
            }
            let ready = match group.last_sent {
                None => now - group.since >= wait,
                Some(last) => now - last >= interval,
            };
            // A group with a firing member waits out its route's mute window, as a lone
            // alert does: its members were queued before it began, and go once it has ended.
            let ready = ready
                && !group.pending.iter().any(|o| {
                    o.status == crate::state::Status::Firing
                        && policy.muted_by_time(&o.labels, now).is_some()
                });
            if ready {
                group.last_sent = Some(now);
                due.push((key.clone(), std::mem::take(&mut group.pending)));
            }
        }
        for (key, members) in due {
            self.outbox
                .extend(crate::message::grouped(&key, &policy.group_by, members));
        }
        self.groups.retain(|_, g| {
            !g.pending.is_empty() || g.last_sent.is_some_and(|l| now - l < interval)
        });
    }

    /// Leases to `run` every owed message that no live run holds (unleased, leased by `run`
    /// itself, or leased by a run whose invocation has ended by `now`). Returns how many
    /// messages `run` holds.
    ///
    /// A message to a receiver outside SNS is not taken while an earlier message of its
    /// episode to the same receiver is held by another live run: the two are sent in order.
    pub fn claim(&mut self, run: &Lease, now: DateTime<Utc>) -> usize {
        let mut held = 0;
        let mut waiting: HashSet<(String, String)> = HashSet::new();
        for o in &mut self.outbox {
            let free = match &o.lease {
                None => true,
                Some(l) => l.run == run.run || l.until <= now,
            };
            let chain = o
                .chain()
                .map(|(to, episode)| (to.to_owned(), episode.to_owned()));
            if chain.as_ref().is_some_and(|c| waiting.contains(c)) {
                continue;
            }
            if free {
                o.lease = Some(run.clone());
                held += 1;
            } else if let Some(c) = chain {
                waiting.insert(c);
            }
        }
        held
    }

    /// What `run` holds and may send now, in the outbox's order: a message to a receiver
    /// outside SNS whose episode has an earlier message there that `run` does not hold waits.
    pub fn sendable<'a>(&'a self, run: &'a str) -> impl Iterator<Item = &'a Owed> + 'a {
        let mut waiting: HashSet<(&str, &str)> = HashSet::new();
        self.outbox.iter().filter(move |o| {
            let mine = o.lease.as_ref().is_some_and(|l| l.run == run);
            let Some(chain) = o.chain() else {
                return mine;
            };
            if waiting.contains(&chain) {
                return false;
            }
            if !mine {
                waiting.insert(chain);
            }
            mine
        })
    }

    /// Gives back what `run` holds: the next run takes it at once.
    pub fn release(&mut self, run: &str) {
        for o in &mut self.outbox {
            if o.lease.as_ref().is_some_and(|l| l.run == run) {
                o.lease = None;
            }
        }
    }

    /// Records a wave of attempts by `run`. Applying the same attempts twice changes nothing
    /// the second time: a message no longer owed, or not held by `run`, is left as it is.
    pub fn record(
        &mut self,
        attempts: &[Attempt],
        run: &Lease,
        default_topic: &str,
        now: DateTime<Utc>,
    ) -> Recorded {
        let mut out = Recorded::default();
        let index: BTreeMap<&str, usize> = attempts
            .iter()
            .enumerate()
            .map(|(i, a)| match a {
                Attempt::Sent { key, .. }
                | Attempt::Refused { key, .. }
                | Attempt::NotTried { key }
                | Attempt::Superseded { key } => (key.as_str(), i),
            })
            .collect();
        let mut aside: Vec<SetAside> = Vec::new();
        let mut announce: BTreeMap<String, Vec<SetAside>> = BTreeMap::new();
        let mut keep = Vec::with_capacity(self.outbox.len());
        for mut o in std::mem::take(&mut self.outbox) {
            let held = o.lease.as_ref().is_some_and(|l| l.run == run.run);
            let Some(&i) = index.get(o.key.as_str()).filter(|_| held) else {
                keep.push(o);
                continue;
            };
            let give_up = |o: &Owed, reason: String| SetAside {
                key: o.key.clone(),
                topic_arn: o.topic_arn.clone(),
                rule: o.rule.clone(),
                subject: o.notification.subject.clone(),
                reason,
                at: now,
                members: o.members.clone(),
            };
            match &attempts[i] {
                Attempt::Sent { .. } => {
                    out.sent += 1;
                    *out.by_rule
                        .entry((o.rule.clone(), o.severity.clone()))
                        .or_default() += 1;
                    for k in std::iter::once(&o.key).chain(&o.members) {
                        self.delivered.insert(k.clone(), now);
                    }
                }
                Attempt::Superseded { .. } => {
                    self.delivered.insert(o.key.clone(), now);
                }
                Attempt::Refused { refusal, .. } => {
                    o.attempts += 1;
                    o.last_error = Some(refusal.reason().to_owned());
                    o.lease = None;
                    if refusal.is_permanent() || o.attempts >= MAX_ATTEMPTS {
                        let reason = if refusal.is_permanent() {
                            refusal.reason().to_owned()
                        } else {
                            format!("refused {} times, last: {}", o.attempts, refusal.reason())
                        };
                        let item = give_up(&o, reason);
                        if o.kind != Kind::Announcement {
                            announce
                                .entry(o.topic_arn.clone())
                                .or_default()
                                .push(item.clone());
                        }
                        out.set_aside_keys.push(item.key.clone());
                        aside.push(item);
                        out.set_aside += 1;
                    } else {
                        out.deferred += 1;
                        keep.push(o);
                    }
                }
                Attempt::NotTried { .. } => {
                    o.lease = None;
                    out.deferred += 1;
                    keep.push(o);
                }
            }
        }
        self.outbox = keep;
        for (topic, items) in announce {
            let refs: Vec<&SetAside> = items.iter().collect();
            let first = items.first().map_or("", |i| i.key.as_str());
            self.outbox.push(Owed {
                key: format!("undeliverable/{topic}/{first}"),
                topic_arn: default_topic.to_owned(),
                rule: "VigilUndeliverable".to_owned(),
                severity: "page".to_owned(),
                labels: BTreeMap::new(),
                status: Status::Firing,
                kind: Kind::Announcement,
                members: Vec::new(),
                notification: crate::message::undeliverable(&topic, &refs, now),
                attempts: 0,
                lease: Some(run.clone()),
                last_error: None,
                channel: Default::default(),
                episode: String::new(),
            });
        }
        self.set_aside.extend(aside);
        out
    }

    /// Forgets what no run needs any more: delivered keys older than a day (and beyond
    /// [`DELIVERED_MAX`]), set-aside records beyond [`SET_ASIDE_MAX`], alarms back to normal
    /// for a day.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let horizon = now - Duration::seconds(DELIVERED_KEPT);
        self.delivered.retain(|_, at| *at >= horizon);
        if self.delivered.len() > DELIVERED_MAX {
            let mut times: Vec<DateTime<Utc>> = self.delivered.values().copied().collect();
            times.sort_unstable();
            let cut = times[self.delivered.len() - DELIVERED_MAX];
            self.delivered.retain(|_, at| *at >= cut);
        }
        if self.set_aside.len() > SET_ASIDE_MAX {
            let drop = self.set_aside.len() - SET_ASIDE_MAX;
            self.set_aside.drain(..drop);
        }
        self.native
            .retain(|_, a| a.in_alarm() || now - a.last_change < Duration::days(1));
        self.history.prune(now);
    }
}

pub use vigil_shared::cas::{MAX_WRITE_ATTEMPTS, StateLocation, backoff};

/// Parses the alert state, migrating what earlier versions wrote.
fn parse_state(
    location: &StateLocation,
    now: DateTime<Utc>,
) -> impl Fn(&[u8]) -> Result<StateFile> + '_ {
    move |bytes| {
        let mut state: StateFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::Config(format!("{location}: unreadable alert state: {e}")))?;
        state.migrate(now);
        Ok(state)
    }
}

/// Reads the state object and its entity tag (none yet: the default state, no tag).
pub async fn load_state(
    store: &impl ObjectStore,
    location: &StateLocation,
    now: DateTime<Utc>,
) -> Result<(StateFile, Option<String>)> {
    vigil_shared::cas::load(store, location, parse_state(location, now)).await
}

/// Applies `change` to the state and writes it with `If-Match` (or `If-None-Match: *` for the
/// first state), starting from `first` when given (a state just read), else from a fresh read.
/// When the write loses to another writer, or its answer is lost, `change` is applied again to
/// a fresh read, at most [`MAX_WRITE_ATTEMPTS`] times; then the run fails with
/// [`Error::LostRace`]. `change` must be idempotent.
pub async fn update<T>(
    store: &impl ObjectStore,
    location: &StateLocation,
    first: Option<(StateFile, Option<String>)>,
    now: DateTime<Utc>,
    change: impl FnMut(&mut StateFile) -> T,
) -> Result<(StateFile, String, T)> {
    vigil_shared::cas::update(
        store,
        location,
        "alert state",
        first,
        parse_state(location, now),
        change,
    )
    .await
}

/// What [`deliver`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivery {
    /// SNS message ids by deduplication key.
    pub sent: BTreeMap<String, String>,
    /// Left owed for the next run (throttled, or no time left).
    pub deferred: usize,
    /// Keys set aside as undeliverable.
    pub set_aside: Vec<String>,
    /// Batch calls made.
    pub calls: usize,
}

/// The message an SNS channel publishes: the text and details as they are, or rendered for
/// chat or SMS.
fn rendered(o: &Owed) -> std::borrow::Cow<'_, Notification> {
    use std::borrow::Cow;
    match o.channel {
        Channel::Chat => Cow::Owned(crate::receiver::chat::render(o)),
        Channel::Sms => Cow::Owned(crate::receiver::sms::render(o)),
        _ => Cow::Borrowed(&o.notification),
    }
}

/// Batches of one topic: at most [`SNS_MAX_BATCH_ENTRIES`] messages and
/// [`SNS_MAX_BATCH_BYTES`] together. Only SNS channels' messages are batched.
fn batches(
    claimed: &[&Owed],
    wire: &[std::borrow::Cow<'_, Notification>],
) -> Vec<(String, Vec<usize>)> {
    let mut by_topic: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, o) in claimed.iter().enumerate() {
        if o.channel.is_sns() {
            by_topic.entry(o.topic_arn.as_str()).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (topic, indices) in by_topic {
        let mut current: Vec<usize> = Vec::new();
        let mut bytes = 0;
        for i in indices {
            let size = wire[i].wire_size_with_key(&claimed[i].key);
            if !current.is_empty()
                && (current.len() == SNS_MAX_BATCH_ENTRIES || bytes + size > SNS_MAX_BATCH_BYTES)
            {
                out.push((topic.to_owned(), std::mem::take(&mut current)));
                bytes = 0;
            }
            current.push(i);
            bytes += size;
        }
        if !current.is_empty() {
            out.push((topic.to_owned(), current));
        }
    }
    out
}

/// Sends one batch, retrying its throttled messages with backoff while there is time.
async fn send_batch(
    notifier: &impl Notifier,
    topic: &str,
    claimed: &[&Owed],
    wire: &[std::borrow::Cow<'_, Notification>],
    indices: Vec<usize>,
    stop: Instant,
) -> (Vec<Attempt>, usize) {
    let mut done = Vec::with_capacity(indices.len());
    let mut calls = 0;
    if Instant::now() >= stop {
        // Out of time: nothing more is published, so nothing is left published unrecorded
        // when Lambda ends the invocation.
        for i in indices {
            done.push(Attempt::NotTried {
                key: claimed[i].key.clone(),
            });
        }
        return (done, calls);
    }
    let mut pending = indices;
    for attempt in 0..TRIES_PER_RUN {
        let envelopes: Vec<Envelope<'_>> = pending
            .iter()
            .map(|&i| Envelope {
                key: &claimed[i].key,
                notification: &wire[i],
            })
            .collect();
        let results = notifier.publish_batch(topic, &envelopes).await;
        calls += 1;
        let mut retry = Vec::new();
        let mut refusals = Vec::new();
        for (&i, result) in pending.iter().zip(results) {
            let key = claimed[i].key.clone();
            match result {
                Ok(message_id) => done.push(Attempt::Sent { key, message_id }),
                Err(refusal @ Refusal::Permanent(_)) => {
                    done.push(Attempt::Refused { key, refusal })
                }
                Err(refusal) => {
                    retry.push(i);
                    refusals.push(refusal);
                }
            }
        }
        let pause = backoff(attempt, retry.first().copied().unwrap_or(0) as u64);
        if retry.is_empty() || attempt + 1 == TRIES_PER_RUN || Instant::now() + pause >= stop {
            for (i, refusal) in retry.into_iter().zip(refusals) {
                done.push(Attempt::Refused {
                    key: claimed[i].key.clone(),
                    refusal,
                });
            }
            return (done, calls);
        }
        tokio::time::sleep(pause).await;
        pending = retry;
    }
    (done, calls)
}

/// Sends the messages `state` says `run` holds, in waves, recording each wave's outcome with
/// [`update`]; stops before `stop` and gives back what it did not send. Returns what it did
/// and the state as last written.
#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    notifier: &impl Outlets,
    store: &impl ObjectStore,
    location: &StateLocation,
    mut state: StateFile,
    mut tag: String,
    run: &Lease,
    default_topic: &str,
    now: DateTime<Utc>,
    stop: Instant,
) -> Result<(Delivery, StateFile)> {
    let mut delivery = Delivery::default();
    loop {
        let claimed: Vec<&Owed> = state.sendable(&run.run).take(WAVE).collect();
        if claimed.is_empty() {
            break;
        }
        let attempts: Vec<Attempt> = if Instant::now() >= stop {
            claimed
                .iter()
                .map(|o| Attempt::NotTried { key: o.key.clone() })
                .collect()
        } else {
            let wire: Vec<std::borrow::Cow<'_, Notification>> =
                claimed.iter().map(|o| rendered(o)).collect();
            let sns = futures_util::stream::iter(batches(&claimed, &wire))
                .map(|(topic, indices)| {
                    let (claimed, wire) = (&claimed, &wire);
                    async move { send_batch(notifier, &topic, claimed, wire, indices, stop).await }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>();
            let http = futures_util::stream::iter(crate::receiver::deliver::chains(&claimed))
                .map(|chain| {
                    let claimed = &claimed;
                    async move {
                        crate::receiver::deliver::send_chain(notifier, claimed, chain, stop).await
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>();
            let (mut results, posted): (Vec<Sent>, Vec<Sent>) =
                futures_util::future::join(sns, http).await;
            results.extend(posted);
            let mut all = Vec::with_capacity(claimed.len());
            for (attempts, calls) in results {
                delivery.calls += calls;
                all.extend(attempts);
            }
            all
        };
        let out_of_time = attempts
            .iter()
            .all(|a| matches!(a, Attempt::NotTried { .. }));
        for a in &attempts {
            if let Attempt::Sent { key, message_id } = a {
                delivery.sent.insert(key.clone(), message_id.clone());
            }
        }
        // What the wave did is counted on its first application: applied again (a write
        // whose answer was lost) it changes nothing and would count nothing.
        let mut counted: Option<Recorded> = None;
        let mut first = Some((state, Some(tag)));
        let (written, new_tag) = loop {
            let result = update(store, location, first.take(), now, |s| {
                let r = s.record(&attempts, run, default_topic, now);
                if counted.is_none() {
                    counted = Some(r.clone());
                }
                r
            })
            .await;
            match result {
                Ok((written, new_tag, _)) => break (written, new_tag),
                // Published and not yet recorded: keep trying while there is time, or the
                // next run sends these again.
                Err(Error::LostRace(why)) if Instant::now() < stop => {
                    tracing::warn!(reason = %why, "recording the delivery lost its races; trying again");
                }
                Err(e) => return Err(e),
            }
        };
        state = written;
        tag = new_tag;
        let recorded = counted.unwrap_or_default();
        delivery.deferred += recorded.deferred;
        delivery
            .set_aside
            .extend(recorded.set_aside_keys.iter().cloned());
        emit_metrics(&recorded, now);
        if out_of_time {
            break;
        }
    }
    Ok((delivery, state))
}

/// One EMF line per wave: sent, deferred and set aside; and one per (rule, severity) sent.
fn emit_metrics(recorded: &Recorded, now: DateTime<Utc>) {
    use vigil_shared::Unit;
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), "notifications delivered".into());
    vigil_shared::emf::emit(&vigil_shared::emf::line(
        "Vigil",
        &[("Function", "alert")],
        &[
            ("NotificationsSent", recorded.sent as f64, Unit::Count),
            (
                "NotificationsDeferred",
                recorded.deferred as f64,
                Unit::Count,
            ),
            (
                "NotificationsSetAside",
                recorded.set_aside as f64,
                Unit::Count,
            ),
        ],
        fields,
        now,
    ));
    for ((rule, severity), n) in &recorded.by_rule {
        let mut fields = serde_json::Map::new();
        fields.insert("message".into(), "notifications sent".into());
        vigil_shared::emf::emit(&vigil_shared::emf::line(
            "Vigil",
            &[
                ("Function", "alert"),
                ("Rule", rule),
                ("Severity", severity),
            ],
            &[("Notifications", *n as f64, Unit::Count)],
            fields,
            now,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn owed(key: &str, topic: &str) -> Owed {
        Owed {
            key: key.into(),
            topic_arn: topic.into(),
            rule: "R".into(),
            severity: "page".into(),
            labels: BTreeMap::new(),
            status: Status::Firing,
            kind: Kind::Alert,
            members: vec![],
            notification: Notification {
                subject: format!("[FIRING] {key}"),
                message: "m".into(),
                attributes: vec![],
                details: None,
            },
            attempts: 0,
            lease: None,
            last_error: None,
            channel: Default::default(),
            episode: String::new(),
        }
    }

    fn lease(run: &str, until: &str) -> Lease {
        Lease {
            run: run.into(),
            until: t(until),
        }
    }

    #[test]
    fn a_live_lease_is_left_alone_and_an_expired_one_taken_over() {
        let mut s = StateFile::default();
        s.outbox.push(owed("a", "arn:t"));
        let first = lease("run-1", "2026-11-25T08:00:50Z");
        assert_eq!(s.claim(&first, t("2026-11-25T08:00:00Z")), 1);
        let second = lease("run-2", "2026-11-25T08:00:59Z");
        assert_eq!(
            s.claim(&second, t("2026-11-25T08:00:09Z")),
            0,
            "run-1 is alive"
        );
        assert_eq!(s.claim(&first, t("2026-11-25T08:00:10Z")), 1, "its own");
        assert_eq!(
            s.claim(&second, t("2026-11-25T08:00:50Z")),
            1,
            "run-1 has ended"
        );
        assert_eq!(
            s.outbox[0].lease.as_ref().map(|l| l.run.as_str()),
            Some("run-2")
        );
    }

    #[test]
    fn recording_sets_aside_the_undeliverable_and_announces_it_once() {
        let now = t("2026-11-25T08:00:00Z");
        let run = lease("run-1", "2026-11-25T08:00:50Z");
        let mut s = StateFile::default();
        for (k, topic) in [
            ("a", "arn:denied"),
            ("b", "arn:t"),
            ("c", "arn:t"),
            ("d", "arn:denied"),
        ] {
            s.outbox.push(owed(k, topic));
        }
        s.claim(&run, now);
        let attempts = vec![
            Attempt::Refused {
                key: "a".into(),
                refusal: Refusal::Permanent("AuthorizationError: no".into()),
            },
            Attempt::Sent {
                key: "b".into(),
                message_id: "m1".into(),
            },
            Attempt::Refused {
                key: "c".into(),
                refusal: Refusal::Retryable("Throttling".into()),
            },
            Attempt::Refused {
                key: "d".into(),
                refusal: Refusal::Permanent("AuthorizationError: no".into()),
            },
        ];
        let r = s.record(&attempts, &run, "arn:default", now);
        assert_eq!((r.sent, r.deferred, r.set_aside), (1, 1, 2));
        assert!(s.delivered.contains_key("b"));
        let keys: Vec<&str> = s.outbox.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["c", "undeliverable/arn:denied/a"]);
        assert_eq!(s.outbox[0].lease, None, "given back for the next run");
        assert_eq!(s.outbox[0].attempts, 1);
        let announcement = &s.outbox[1];
        assert_eq!(announcement.topic_arn, "arn:default");
        assert_eq!(announcement.lease.as_ref(), Some(&run), "this run sends it");
        assert!(announcement.notification.message.contains("[FIRING] a (a)"));
        assert!(announcement.notification.message.contains("[FIRING] d (d)"));
        assert_eq!(s.set_aside.len(), 2);
        // The same wave recorded again (a write whose answer was lost) changes nothing.
        let before = s.clone();
        s.record(&attempts, &run, "arn:default", now);
        assert_eq!(s, before);
        // An announcement that cannot be delivered is set aside without another one.
        let again = s.record(
            &[Attempt::Refused {
                key: "undeliverable/arn:denied/a".into(),
                refusal: Refusal::Permanent("NotFound".into()),
            }],
            &run,
            "arn:default",
            now,
        );
        assert_eq!(again.set_aside, 1);
        assert_eq!(s.outbox.len(), 1);
    }

    #[test]
    fn a_message_refused_too_often_is_set_aside() {
        let now = t("2026-11-25T08:00:00Z");
        let mut s = StateFile::default();
        s.outbox.push(owed("a", "arn:t"));
        for i in 0..MAX_ATTEMPTS {
            let run = lease(&format!("run-{i}"), "2026-11-25T08:00:50Z");
            assert_eq!(s.claim(&run, now), 1);
            s.record(
                &[Attempt::Refused {
                    key: "a".into(),
                    refusal: Refusal::Retryable("InternalError".into()),
                }],
                &run,
                "arn:default",
                now,
            );
        }
        assert_eq!(s.set_aside.len(), 1);
        assert!(
            s.set_aside[0].reason.starts_with("refused 30 times"),
            "{}",
            s.set_aside[0].reason
        );
    }

    #[test]
    fn batches_respect_sns_entry_and_size_limits() {
        let mut big = owed("big", "arn:a");
        big.notification.message = "x".repeat(100_000);
        let mut list: Vec<Owed> = (0..25).map(|i| owed(&format!("k{i}"), "arn:a")).collect();
        list.push(owed("other", "arn:b"));
        list.extend([big.clone(), big.clone(), big]);
        let refs: Vec<&Owed> = list.iter().collect();
        let wire: Vec<std::borrow::Cow<Notification>> = refs.iter().map(|o| rendered(o)).collect();
        let out = batches(&refs, &wire);
        for (topic, b) in &out {
            assert!(b.len() <= SNS_MAX_BATCH_ENTRIES);
            let bytes: usize = b.iter().map(|&i| refs[i].notification.wire_size()).sum();
            assert!(bytes <= SNS_MAX_BATCH_BYTES, "{bytes}");
            assert!(b.iter().all(|&i| refs[i].topic_arn == *topic));
        }
        let total: usize = out.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(total, refs.len());
    }

    #[test]
    fn earlier_state_files_are_read() {
        let old = r#"{"alerts": {}, "outbox": [{"key": "k", "topic_arn": "arn:t",
            "notification": {"subject": "s", "message": "m", "attributes": []}}],
            "sent": ["a", "b"], "alarms": {"checkout-5xx": {"alertname": "checkout-5xx"}}}"#;
        let mut s: StateFile = serde_json::from_str(old).expect("reads");
        s.migrate(t("2026-11-25T08:00:00Z"));
        assert!(s.delivered.contains_key("a") && s.delivered.contains_key("b"));
        assert!(s.native["checkout-5xx"].in_alarm());
        assert_eq!(s.outbox[0].status, Status::Firing);
        let written = serde_json::to_value(&s).expect("json");
        assert!(written.get("sent").is_none() && written.get("alarms").is_none());
    }
}
