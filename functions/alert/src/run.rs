//! One run of the rules: load → read → a pure step of all rules → commit → deliver.
//!
//! A run evaluates every rule at one instant, the scheduled time of its event, so that a
//! retried invocation evaluates the same instant. The state's `evaluated_at` says which
//! instant was evaluated last: a run for that instant or an older one (a retry whose first
//! attempt got as far as its claim, or an overlapping run) evaluates nothing and only delivers
//! what is owed and free to claim.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use vigil_shared::math::local::part_id;
use vigil_shared::reader::{Series, StatQuery};
use vigil_shared::{MetricReader, ObjectStore, Outlets, Result, Span};

use crate::budget::{self, Budget};
use crate::evaluate::{
    Outcome, Target, evaluate, observe, query_for_series, read_start_of, targets,
};
use crate::history::Episode;
use crate::message::{notification_for, resolved_without_rule};
use crate::outbox::{
    Delivery, Kind, Lease, Owed, StateFile, StateLocation, deliver, load_state, update,
};
use crate::policy::{self, Muted, Policy, Silence};
use crate::rules::Rule;
use crate::state::{self, AlertState, Phase, Standing, Status, Transition};

/// What one run evaluates and how it notifies.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub rules: &'a [Rule],
    pub policy: &'a Policy,
    pub silences: &'a [Silence],
    /// Where notifications go when no route matches, and where undeliverable ones are
    /// announced.
    pub default_topic: &'a str,
    pub state: &'a StateLocation,
}

/// One invocation: who runs, for which instant, and until when.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The run's id (Lambda's request id): its claims are leased under it.
    pub id: String,
    /// The instant evaluated (the scheduled time).
    pub at: DateTime<Utc>,
    /// The wall clock at the start: leases of runs that ended before it are expired.
    pub now: DateTime<Utc>,
    /// When Lambda stops this invocation: its claims are leased until then.
    pub deadline: DateTime<Utc>,
    /// When delivery stops and gives back what it did not send (before `deadline`).
    pub stop: Instant,
}

impl Invocation {
    /// The lease this run claims under.
    pub fn lease(&self) -> Lease {
        Lease {
            run: self.id.clone(),
            until: self.deadline,
        }
    }
}

/// One rule's result in a run's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleResult {
    pub alert: String,
    /// The series' `*` dimensions, for a rule that watches several.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Where the series stands after this run.
    pub state: Standing,
    /// Set when this run made a transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transition: Option<Status>,
    /// Why a notification this run owed was not sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted: Option<Muted>,
}

/// An alert that ended because its rule or series is gone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ended {
    pub key: String,
    pub reason: String,
}

/// What a run did; the invocation's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunSummary {
    pub evaluated_at: DateTime<Utc>,
    pub get_metric_data_calls: usize,
    /// The metrics those calls asked for, which CloudWatch bills: one per distinct statistic
    /// read ([`vigil_shared::reader::Distinct`]), each page of a paged call again.
    pub metrics_requested: usize,
    pub rules: Vec<RuleResult>,
    /// Firing alerts resolved because their rule or series is gone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<Ended>,
    /// SNS message ids of the notifications this run delivered, by deduplication key.
    pub sent: BTreeMap<String, String>,
    /// Owed messages left for the next run (throttled, or no time left).
    pub deferred: usize,
    /// Messages set aside as undeliverable by this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<String>,
    /// True when this instant had already been evaluated (by an earlier attempt or an
    /// overlapping run): this run only delivered.
    pub superseded: bool,
    /// Where the run's time went, in milliseconds.
    pub timings: Timings,
}

/// Milliseconds spent reading the metrics (`ListMetrics`, `GetMetricData`), claiming (the step
/// and its conditional write) and delivering (publishing and recording).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    pub read_ms: u64,
    pub claim_ms: u64,
    pub deliver_ms: u64,
}

/// What the step of all rules produced, besides the new state.
#[derive(Clone, Debug, Default)]
struct Stepped {
    rules: Vec<RuleResult>,
    ended: Vec<Ended>,
    superseded: bool,
}

/// The pure step: every target's outcome applied to `state` at `at` (transitions, the
/// notifications they owe, alerts whose rule or series is gone, groups, the Watchdog), then
/// the claim of what `lease` may send. Applying it again to its own result changes nothing.
fn step(
    state: &mut StateFile,
    plan: &Plan<'_>,
    evaluated: &[(Target<'_>, Outcome)],
    budgets: &BTreeMap<String, Budget>,
    inv: &Invocation,
) -> Stepped {
    let Plan {
        policy,
        silences,
        default_topic,
        ..
    } = *plan;
    let at = inv.at;
    let mut out = Stepped::default();
    if state.evaluated_at.is_some_and(|e| e >= at) {
        out.superseded = true;
        state.claim(&inv.lease(), inv.now);
        return out;
    }
    let mut known = state.known_keys();
    // Step every series first: inhibition needs to know which alerts fire after this run.
    let stepped: Vec<_> = evaluated
        .iter()
        .map(|(target, outcome)| {
            let rule = target.rule;
            let prev = state.alerts.get(&target.key).cloned();
            let (mut next, transition) =
                state::step(prev.as_ref(), observe(rule, outcome), rule.timing(), at);
            if let Some(s) = next.as_mut() {
                s.labels = target.labels.clone();
            }
            (target, outcome, prev, next, transition)
        })
        .collect();
    let firing: Vec<BTreeMap<String, String>> = stepped
        .iter()
        .filter(|(_, _, _, next, _)| next.as_ref().is_some_and(|s| s.phase == Phase::Firing))
        .map(|(t, ..)| t.labels.clone())
        .chain(
            state
                .native
                .values()
                .filter(|a| a.in_alarm())
                .map(|a| a.labels.clone()),
        )
        .collect();
    let firing: Vec<&BTreeMap<String, String>> = firing.iter().collect();
    let inhibitor = policy.inhibitor(&firing);
    let repeat = policy.repeat_interval.map(Span::signed);

    for (target, outcome, prev, mut next, transition) in stepped {
        let (rule, labels) = (target.rule, &target.labels);
        // What this series owes: a resolved message for an episode that was notified; a firing
        // message for a firing episode never notified (new, or muted until now), or due again.
        let owed: Option<(String, Transition)> = match (&transition, next.as_mut()) {
            (Some(t @ Transition::Resolved { .. }), _) => prev
                .as_ref()
                .filter(|p| p.notified_at.is_some())
                .map(|_| (t.dedup_key(&target.key), t.clone())),
            (_, Some(s)) if s.phase == Phase::Firing => {
                let firing = Transition::Firing {
                    value: s.value,
                    active_since: s.active_since,
                };
                match s.notified_at {
                    None => Some((firing.dedup_key(&target.key), firing)),
                    Some(last) if repeat.is_some_and(|r| at - last >= r) => Some((
                        format!("{}/repeat/{}", firing.dedup_key(&target.key), s.repeats + 1),
                        firing,
                    )),
                    Some(_) => None,
                }
            }
            _ => None,
        };
        let mut muted = None;
        if let Some((key, t)) = owed {
            // The resolved message of an episode whose firing was sent is never muted: the
            // receivers close what they opened (a PagerDuty incident, a ticket).
            if !matches!(t, Transition::Resolved { .. }) {
                muted = inhibitor.muted(labels, silences, at);
            }
            if muted.is_none() && !known.contains(&key) {
                if let Some(s) = next.as_mut() {
                    if s.notified_at.is_some() {
                        s.repeats += 1;
                    }
                    s.pages = s.page_times();
                    s.notified_at = Some(at);
                    crate::history::add_page(&mut s.pages, at);
                }
                known.insert(key.clone());
                let owed = Owed {
                    key,
                    topic_arn: policy.topic(labels, default_topic).to_owned(),
                    rule: rule.alert.clone(),
                    severity: rule.labels.get("severity").cloned().unwrap_or_default(),
                    labels: labels.clone(),
                    status: t.status(),
                    kind: Kind::Alert,
                    members: Vec::new(),
                    notification: notification_for(
                        target,
                        &t,
                        outcome.at_or(at),
                        budgets.get(&target.key),
                    ),
                    attempts: 0,
                    lease: None,
                    last_error: None,
                    channel: Default::default(),
                    episode: crate::state::episode_id(&target.key, t.active_since()),
                };
                state.enqueue(policy, owed, at);
            }
        }
        if let (Some(Transition::Resolved { .. }), Some(p)) = (&transition, &prev) {
            state
                .history
                .record(Episode::of_rule(&target.key, labels, p, at));
        }
        let standing = Standing::of(next.as_ref());
        match next {
            Some(s) => state.alerts.insert(target.key.clone(), s),
            None => state.alerts.remove(&target.key),
        };
        out.rules.push(RuleResult {
            alert: rule.alert.clone(),
            series: target.series.clone(),
            outcome: outcome.clone(),
            state: standing,
            transition: transition.as_ref().map(Transition::status),
            muted,
        });
    }

    release_held_alarms(state, &inhibitor, plan, &mut known, at);
    out.ended = end_vanished(state, plan, evaluated, &mut known, at);
    state.flush_groups(policy, at);
    if let Some(watchdog) = &policy.watchdog {
        heartbeat(state, policy, watchdog, default_topic, &known, at);
    }
    state.evaluated_at = Some(at);
    state.evaluated_by = Some(inv.id.clone());
    state.history.begin(at);
    state.prune(inv.now);
    state.claim(&inv.lease(), inv.now);
    out
}

/// CloudWatch alarms in ALARM whose firing was muted: once neither a silence nor an inhibiting
/// alert mutes them, their firing message is sent, as a rule's would be.
fn release_held_alarms(
    state: &mut StateFile,
    inhibitor: &policy::Inhibitor<'_>,
    plan: &Plan<'_>,
    known: &mut HashSet<String>,
    at: DateTime<Utc>,
) {
    let mut released = Vec::new();
    for (name, alarm) in &mut state.native {
        if !alarm.in_alarm() || alarm.notified || alarm.held.is_none() {
            continue;
        }
        if inhibitor.muted(&alarm.labels, plan.silences, at).is_some() {
            continue;
        }
        let since = alarm.since.unwrap_or(alarm.last_change);
        let key = crate::alarm::dedup_key(name, since, Status::Firing);
        let Some(notification) = alarm.held.take() else {
            continue;
        };
        alarm.notified = true;
        alarm.paged_at = Some(at);
        if known.insert(key.clone()) {
            released.push((name.clone(), alarm.labels.clone(), key, notification, since));
        }
    }
    for (name, labels, key, notification, since) in released {
        let owed = Owed {
            key,
            topic_arn: plan.policy.topic(&labels, plan.default_topic).to_owned(),
            rule: name.clone(),
            severity: labels.get("severity").cloned().unwrap_or_default(),
            labels,
            status: Status::Firing,
            kind: Kind::Alert,
            members: Vec::new(),
            notification,
            attempts: 0,
            lease: None,
            last_error: None,
            channel: Default::default(),
            episode: crate::alarm::episode(&name, since),
        };
        state.enqueue(plan.policy, owed, at);
    }
}

/// Alerts in the state that no target evaluates any more: their rule was removed or renamed,
/// or CloudWatch no longer lists their series. A notified firing one resolves, with the
/// reason; the rest are dropped.
fn end_vanished(
    state: &mut StateFile,
    plan: &Plan<'_>,
    evaluated: &[(Target<'_>, Outcome)],
    known: &mut HashSet<String>,
    at: DateTime<Utc>,
) -> Vec<Ended> {
    let live: BTreeSet<&str> = evaluated
        .iter()
        .map(|(t, _)| t.key.as_str())
        .chain(plan.policy.watchdog.as_ref().map(|_| policy::WATCHDOG))
        .collect();
    let rule_names: BTreeSet<&str> = plan.rules.iter().map(|r| r.alert.as_str()).collect();
    let gone: Vec<String> = state
        .alerts
        .keys()
        .filter(|k| !live.contains(k.as_str()))
        .cloned()
        .collect();
    let mut ended = Vec::new();
    for key in gone {
        let Some(alert) = state.alerts.remove(&key) else {
            continue;
        };
        if key == policy::WATCHDOG {
            continue;
        }
        let name = alert.alertname(&key);
        if alert.phase == Phase::Firing {
            state
                .history
                .record(Episode::of_rule(&key, &alert.labels, &alert, at));
        }
        let notified = alert.phase == Phase::Firing && alert.notified_at.is_some();
        if !notified {
            continue;
        }
        let reason = if rule_names.contains(name) {
            "its series is no longer listed by CloudWatch (no data for two weeks)".to_owned()
        } else {
            format!("the rule {name} is no longer in the rules file")
        };
        let dedup = Transition::Resolved {
            value: alert.value,
            active_since: alert.active_since,
            fired_at: alert.fired_at.unwrap_or(alert.active_since),
        }
        .dedup_key(&key);
        if known.insert(dedup.clone()) {
            let labels = alert.labels.clone();
            state.enqueue(
                plan.policy,
                Owed {
                    key: dedup,
                    topic_arn: plan.policy.topic(&labels, plan.default_topic).to_owned(),
                    rule: name.to_owned(),
                    severity: labels.get("severity").cloned().unwrap_or_default(),
                    labels: labels.clone(),
                    status: Status::Resolved,
                    kind: Kind::Alert,
                    members: Vec::new(),
                    notification: resolved_without_rule(&key, &alert, &reason, at),
                    attempts: 0,
                    lease: None,
                    last_error: None,
                    channel: Default::default(),
                    episode: crate::state::episode_id(&key, alert.active_since),
                },
                at,
            );
        }
        ended.push(Ended { key, reason });
    }
    ended
}

/// The Watchdog's turn in a run: always firing, notified every `interval`.
fn heartbeat(
    state: &mut StateFile,
    policy: &Policy,
    watchdog: &policy::Watchdog,
    default_topic: &str,
    known: &HashSet<String>,
    now: DateTime<Utc>,
) {
    let interval = watchdog.interval.signed();
    let mut labels = watchdog.labels.clone();
    labels.insert("alertname".to_owned(), policy::WATCHDOG.to_owned());
    let entry = state
        .alerts
        .entry(policy::WATCHDOG.to_owned())
        .or_insert_with(|| AlertState {
            phase: Phase::Firing,
            active_since: now,
            last_breach: now,
            fired_at: Some(now),
            value: None,
            notified_at: None,
            repeats: 0,
            pages: Vec::new(),
            labels: labels.clone(),
        });
    entry.last_breach = now;
    if entry.notified_at.is_some_and(|last| now - last < interval) {
        return;
    }
    let key = format!(
        "{}/{}/heartbeat/{}",
        policy::WATCHDOG,
        entry.active_since.timestamp(),
        entry.repeats
    );
    entry.notified_at = Some(now);
    entry.repeats += 1;
    let since = entry.active_since;
    let episode = crate::state::episode_id(policy::WATCHDOG, since);
    if known.contains(&key) {
        return;
    }
    state.route(
        policy,
        Owed {
            key,
            topic_arn: policy.topic(&labels, default_topic).to_owned(),
            rule: policy::WATCHDOG.to_owned(),
            severity: labels.get("severity").cloned().unwrap_or_default(),
            labels: labels.clone(),
            status: Status::Firing,
            kind: Kind::Watchdog,
            members: Vec::new(),
            notification: crate::message::watchdog(&labels, watchdog.interval, since, now),
            attempts: 0,
            lease: None,
            last_error: None,
            channel: Default::default(),
            episode,
        },
    );
}

/// The hourly reads of the objectives' budgets, and which read serves each burn-rate target.
#[derive(Default)]
struct BudgetReads {
    fetched: vigil_shared::reader::Fetched,
    /// Target key → the query id whose parts were read by the hour for its objective.
    by_target: BTreeMap<String, String>,
}

/// Reads each objective's window by the hour ([`budget::hours`]): once per objective (its
/// alerts count the same events over the same window), in one read per distinct window.
async fn read_budgets(
    reader: &impl MetricReader,
    targets: &[Target<'_>],
    queries: &[StatQuery],
    at: DateTime<Utc>,
) -> Result<BudgetReads> {
    let mut by_target = BTreeMap::new();
    // The objective's identity (its name, window and the statistics it counts) → its read.
    let mut read_for: BTreeMap<String, String> = BTreeMap::new();
    let mut windows: BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<StatQuery>> = BTreeMap::new();
    for (t, q) in targets.iter().zip(queries) {
        let Some(burn) = &t.rule.burn else {
            continue;
        };
        let parts: Vec<StatQuery> = vigil_shared::math::local::parts(q)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let identity = format!(
            "{}|{}|{:?}",
            burn.slo,
            burn.window.seconds(),
            parts
                .iter()
                .map(|p| (&p.namespace, &p.metric, &p.dimensions, &p.stat))
                .collect::<Vec<_>>()
        );
        let read = read_for.entry(identity).or_insert_with(|| {
            let (from, to) = budget::hours(burn, crate::slo::window_end(t.rule, at));
            if from < to {
                windows
                    .entry((from, to))
                    .or_default()
                    .extend(budget::hourly(&parts));
            }
            q.id.clone()
        });
        by_target.insert(t.key.clone(), read.clone());
    }
    let mut fetched = vigil_shared::reader::Fetched::default();
    for ((from, to), batch) in windows {
        fetched.merge(vigil_shared::reader::fetch_distinct(reader, &batch, from, to).await?);
    }
    Ok(BudgetReads { fetched, by_target })
}

/// Evaluates every rule at `inv.at` with one batched read, applies the step to the state with
/// a conditional write (again on a fresh read when another run wrote first), and delivers
/// what this run claimed. A failure to read metrics or to write the state fails the run
/// (Lambda retries it, and the retry evaluates the same instant); a message SNS does not take
/// stays owed or is set aside, and fails nothing.
pub async fn run(
    reader: &impl MetricReader,
    notifier: &impl Outlets,
    store: &impl ObjectStore,
    plan: Plan<'_>,
    inv: &Invocation,
) -> Result<RunSummary> {
    let at = inv.at;
    let ms = |t: Instant| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
    let started = Instant::now();
    let first = load_state(store, plan.state, inv.now).await?;
    let already = first.0.evaluated_at.is_some_and(|e| e >= at);
    let mut calls = 0;
    let mut metrics = 0;
    let mut budgets: BTreeMap<String, Budget> = BTreeMap::new();
    let evaluated: Vec<(Target<'_>, Outcome)> = if already {
        Vec::new()
    } else {
        let targets = targets(reader, plan.rules).await?;
        let queries: Vec<StatQuery> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| query_for_series(t.rule, t.dimensions.clone(), i))
            .collect();
        // Burn-rate rules read hours or days of their events: in a read of their own, so that
        // every other rule's read stays as short as its own look-back.
        let (mut plain, mut parts) = (Vec::new(), Vec::new());
        for (q, t) in queries.iter().zip(&targets) {
            if t.rule.burn.is_some() {
                parts.extend(
                    vigil_shared::math::local::parts(q)
                        .into_iter()
                        .map(|(_, p)| p),
                );
            } else {
                plain.push(q.clone());
            }
        }
        let mut fetched = vigil_shared::reader::Fetched::default();
        for (batch, burn) in [(&plain, false), (&parts, true)] {
            if batch.is_empty() {
                continue;
            }
            let rules = targets
                .iter()
                .filter(|t| t.rule.burn.is_some() == burn)
                .map(|t| t.rule);
            let mut start = read_start_of(rules, at);
            if burn {
                start = budget::fine_start(start, at);
            }
            fetched.merge(vigil_shared::reader::fetch_distinct(reader, batch, start, at).await?);
        }
        // The budget only adds a line to messages: a failed read of it fails nothing.
        let hourly = match read_budgets(reader, &targets, &queries, at).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "error budgets not read; their messages go without");
                BudgetReads::default()
            }
        };
        fetched.merge(hourly.fetched);
        calls = fetched.calls;
        metrics = fetched.metrics_requested;
        let empty: Series = Vec::new();
        let series = |id: &str| fetched.series.get(id).unwrap_or(&empty);
        targets
            .into_iter()
            .zip(&queries)
            .map(|(target, query)| {
                let outcome = match &target.rule.burn {
                    Some(burn) => {
                        let (total, counted) = (
                            series(&part_id(&query.id, "m")),
                            series(&part_id(&query.id, crate::slo::COUNTED_INPUT)),
                        );
                        let end = crate::slo::window_end(target.rule, at);
                        if let Some(read) = hourly.by_target.get(&target.key) {
                            let got = budget::budget(
                                burn,
                                budget::Points {
                                    total: series(&budget::hourly_id(&part_id(read, "m"))),
                                    counted: series(&budget::hourly_id(&part_id(
                                        read,
                                        crate::slo::COUNTED_INPUT,
                                    ))),
                                    period: budget::HOUR as f64,
                                },
                                budget::Points {
                                    total,
                                    counted,
                                    period: target.rule.metric.period.seconds() as f64,
                                },
                                end,
                            );
                            if let Some(b) = got {
                                budgets.insert(target.key.clone(), b);
                            }
                        }
                        crate::slo::evaluate(target.rule, burn, total, counted, at)
                    }
                    None => evaluate(target.rule, series(&query.id), at),
                };
                (target, outcome)
            })
            .collect()
    };
    let read_ms = ms(started);
    let claiming = Instant::now();
    // The evaluation this run wrote: when its write landed but the answer was lost, the step
    // applied again to the fresh read finds the instant evaluated (by this run) and only
    // claims; the results are those of the application that landed.
    let mut evaluation: Option<Stepped> = None;
    let (state, tag, last) = update(store, plan.state, Some(first), inv.now, |state| {
        let stepped = step(state, &plan, &evaluated, &budgets, inv);
        if !stepped.superseded {
            evaluation = Some(stepped.clone());
        }
        stepped
    })
    .await?;
    let stepped = match evaluation {
        Some(mine) if state.evaluated_by.as_deref() == Some(inv.id.as_str()) => mine,
        _ => last,
    };
    let claim_ms = ms(claiming);
    let delivering = Instant::now();
    let lease = inv.lease();
    let (delivery, _): (Delivery, StateFile) = deliver(
        notifier,
        store,
        plan.state,
        state,
        tag,
        &lease,
        plan.default_topic,
        inv.now,
        inv.stop,
    )
    .await?;
    let summary = RunSummary {
        evaluated_at: at,
        get_metric_data_calls: calls,
        metrics_requested: metrics,
        rules: stepped.rules,
        ended: stepped.ended,
        sent: delivery.sent,
        deferred: delivery.deferred,
        set_aside: delivery.set_aside,
        superseded: stepped.superseded,
        timings: Timings {
            read_ms,
            claim_ms,
            deliver_ms: ms(delivering),
        },
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &summary.rules {
        let name = match r.state {
            Standing::Inactive => "inactive",
            Standing::Pending => "pending",
            Standing::Firing => "firing",
        };
        *counts.entry(name).or_default() += 1;
    }
    tracing::info!(rules = plan.rules.len(), calls, states = ?counts,
        sent = summary.sent.len(), deferred = summary.deferred,
        set_aside = summary.set_aside.len(), superseded = summary.superseded,
        read_ms, claim_ms, deliver_ms = summary.timings.deliver_ms, "evaluation done");
    Ok(summary)
}
