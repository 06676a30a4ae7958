//! The delivery guarantee over randomized interleavings: scheduled runs, their retries and
//! CloudWatch alarm changes, overlapping, on a store and a notifier that fail as AWS does.
//!
//! Each case draws, from its seed, a quarter hour of metric data for six rules (one routed to a
//! topic the role may not publish to), alarm changes of two alarms (some redelivered), which
//! runs overlap, which fail and are retried later, and the faults: S3 throttling, lost
//! conditional writes, a write whose answer is lost, pauses between claim and publish, SNS
//! throttling, timeouts before SNS accepted a message, AuthorizationError. Then a quiet phase
//! (no faults, every lease expired) lets owed messages drain. The guarantee checked:
//! - nothing lost: every notification ever claimed (in any state written) was published or set
//!   aside;
//! - nothing twice: no deduplication key published twice;
//! - nothing healthy reported broken: only the denied topic's messages are set aside, each
//!   announced on the default topic;
//! - the weekly review, invoked at a drawn minute (sometimes twice at once), is sent once
//!   (it is one more key), and the history records every episode that resolved, once.
//!
//! - PagerDuty, the second config of team t1's receiver (429s, connections dropped before and,
//!   in the ambiguous cases, after the post was taken): replayed through PagerDuty's
//!   deduplication, no episode opens a second incident, and every episode that resolved has
//!   its incident closed.
//!
//! Two faults make a copy no sender can rule out on a standard SNS topic: a timeout after SNS
//! accepted the message, and an invocation killed between a publish and the write that records
//! it. [`ambiguous_faults_only_ever_repeat_a_key`] injects them: nothing is lost, and every
//! extra copy carries the key of the first (receivers drop it by the `dedup_key` attribute; a
//! FIFO topic drops it by its deduplication id).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use common::*;
use futures_util::future::join_all;
use serde_json::json;
use vigil_alert::outbox::StateFile;
use vigil_alert::{AlertConfig, handle_event};
use vigil_shared::ObjectStore;
use vigil_shared::testing::{
    Dice, FaultyStore, MemoryStore, NotifierFaults, Published, RecordingNotifier, SeriesKey,
    SeriesReader, StoreFaults,
};

const DENIED: &str = "arn:aws:sns:us-east-1:123456789012:payments-oncall";
const MINUTES: i64 = 15;

const PAGERDUTY: &str = "http://127.0.0.1:9/v2/enqueue";

fn routing_key() -> vigil_shared::SecretRef {
    vigil_shared::SecretRef::SsmParameter("/vigil/receivers/pd".into())
}

fn rules_file(grouped: bool) -> String {
    let mut yaml = format!(
        "policy:\n  routes:\n    - {{match: {{alertname: S5}}, topic_arn: \"{DENIED}\"}}\n    - {{match: {{team: t1}}, receiver: oncall}}\n  receivers:\n    - {{name: oncall, sns_configs: [{{topic_arn: \"{DEFAULT_TOPIC}\"}}], pagerduty_configs: [{{routing_key: {{ssm_parameter: /vigil/receivers/pd}}, url: \"{PAGERDUTY}\"}}]}}\n"
    );
    if grouped {
        yaml.push_str("  group_by: [team]\n  group_interval: 2m\n");
    }
    yaml.push_str("groups:\n  - name: g\n    rules:\n");
    for i in 0..6 {
        yaml.push_str(&format!(
            "      - alert: S{i}\n        metric: {{namespace: Shop, name: latency, dimensions: {{service: S{i}}}, stat: Average, period: 1m}}\n        condition: {{operator: \">\", threshold: 250}}\n        labels: {{severity: page, team: t{}}}\n",
            i % 2
        ));
    }
    yaml
}

/// One invocation of the case: what it is and when it runs.
#[derive(Clone, Debug)]
struct Job {
    id: String,
    event: serde_json::Value,
}

/// What one case saw.
#[derive(Default)]
struct Seen {
    invocations: usize,
    failed: usize,
    killed: usize,
    overlapping: usize,
    claimed: BTreeSet<String>,
    published: Vec<Published>,
    /// What PagerDuty took, in the order it took it.
    posted: Vec<vigil_shared::testing::Posted>,
    members: BTreeMap<String, Vec<String>>,
    faults: BTreeMap<&'static str, usize>,
    last: StateFile,
    /// A review invocation succeeded (a review whose every attempt failed goes to the
    /// dead-letter queue, as Lambda sends it).
    reviewed: bool,
}

/// Every key a written state owes (outbox, group members waiting), and the members of each
/// group message.
fn harvest(body: &[u8], seen: &mut Seen) {
    let Ok(state) = serde_json::from_slice::<StateFile>(body) else {
        return;
    };
    for o in &state.outbox {
        seen.claimed.insert(o.key.clone());
        seen.claimed.extend(o.members.iter().cloned());
        if !o.members.is_empty() {
            seen.members.insert(o.key.clone(), o.members.clone());
        }
    }
    for g in state.groups.values() {
        seen.claimed.extend(g.pending.iter().map(|o| o.key.clone()));
    }
}

async fn case(seed: u64, ambiguous: bool) -> Seen {
    vigil_shared::emf::silence();
    let mut dice = Dice::new(seed);
    let grouped = dice.chance(0.5);
    let memory = MemoryStore::default();
    memory
        .put(
            "b",
            "rules.yaml",
            rules_file(grouped).into_bytes(),
            "text/yaml",
        )
        .await
        .expect("rules");
    let cfg = AlertConfig {
        rules: "s3://b/rules.yaml".parse().expect("location"),
        topic_arn: DEFAULT_TOPIC.into(),
        state: LOCATION.clone(),
        silences: None,
        allowed_topics: vigil_alert::config::allowed_topics(DEFAULT_TOPIC, DENIED),
        smoke: None,
        math: Default::default(),
        review_prefix: vigil_alert::config::REVIEW_PREFIX.to_owned(),
    };
    let store = FaultyStore::new(
        &memory,
        StoreFaults {
            throttle: 0.05,
            lost_answer: 0.05,
            pause_after_write: StdDuration::from_millis(20),
        },
        seed,
    );
    let notifier = RecordingNotifier::with_faults(
        NotifierFaults {
            denied: [DENIED.to_owned()].into(),
            throttle: 0.15,
            timeout_before: 0.05,
            timeout_after: if ambiguous { 0.05 } else { 0.0 },
            rate: 0,
        },
        seed ^ 0xdead_beef,
    );
    let notifier = RecordingNotifier {
        http_faults: vigil_shared::testing::HttpFaults {
            too_many: 0.15,
            drop_before: 0.05,
            drop_after: if ambiguous { 0.05 } else { 0.0 },
            status: None,
        },
        ..notifier
    }
    .with_secret(&routing_key(), "R0UT1NGK3Y0000000000000000000000");
    let mut reader = SeriesReader::default();
    let mut seen = Seen::default();
    let mut history: BTreeMap<usize, Vec<(DateTime<Utc>, f64)>> = BTreeMap::new();
    let mut retries: Vec<Job> = Vec::new();
    let mut sent_alarms: Vec<serde_json::Value> = Vec::new();
    let mut breaching = [false; 6];
    // The weekly review runs at a drawn minute, sometimes twice at once (an overlapping
    // invocation for the same week).
    let review_minute = 5 + dice.below(MINUTES as u64 - 5) as i64;
    let review_twice = dice.chance(0.3);
    for minute in 0..MINUTES {
        let at = t0() + Duration::minutes(minute);
        // The minute that just ended: each series flips now and then.
        for (i, b) in breaching.iter_mut().enumerate() {
            if dice.chance(0.3) {
                *b = !*b;
            }
            history
                .entry(i)
                .or_default()
                .push((at - Duration::minutes(1), if *b { 900.0 } else { 100.0 }));
            reader.set(
                SeriesKey::metric("Shop", "latency", &[("service", &format!("S{i}"))]),
                history[&i].clone(),
            );
        }
        let mut jobs: Vec<Job> = std::mem::take(&mut retries);
        jobs.push(Job {
            id: format!("{seed}-{minute}"),
            event: json!({"vigil": "scheduled", "scheduled_time": at.to_rfc3339(), "attempt": "1"}),
        });
        if minute == review_minute {
            let copies = if review_twice { 2 } else { 1 };
            for copy in 0..copies {
                jobs.push(Job {
                    id: format!("{seed}-{minute}-review-{copy}"),
                    event: json!({"vigil": "review", "scheduled_time": at.to_rfc3339(), "attempt": "1"}),
                });
            }
        }
        for alarm in ["checkout-5xx", "orders-queue-age"] {
            if dice.chance(0.35) {
                let state = ["ALARM", "OK", "INSUFFICIENT_DATA"][dice.below(3) as usize];
                let stamp = (at + Duration::seconds(dice.below(50) as i64))
                    .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
                    .to_string();
                let ev = alarm_event(alarm, state, &stamp, "vigil: severity=page team=t0");
                sent_alarms.push(ev.clone());
                jobs.push(Job {
                    id: format!("{seed}-{minute}-{alarm}"),
                    event: ev,
                });
            }
        }
        if !sent_alarms.is_empty() && dice.chance(0.2) {
            // EventBridge delivers at least once: an earlier change arrives again.
            let again = sent_alarms[dice.below(sent_alarms.len() as u64) as usize].clone();
            jobs.push(Job {
                id: format!("{seed}-{minute}-redelivered"),
                event: again,
            });
        }
        // Overlap: this minute's invocations run side by side, in a drawn order.
        for i in (1..jobs.len()).rev() {
            jobs.swap(i, dice.below(i as u64 + 1) as usize);
        }
        if jobs.len() > 1 {
            seen.overlapping += 1;
        }
        let now = at + Duration::seconds(3);
        let kills: Vec<Option<u64>> = jobs
            .iter()
            .map(|_| (ambiguous && dice.chance(0.1)).then(|| dice.below(60)))
            .collect();
        let outcomes = join_all(jobs.iter().zip(&kills).map(|(job, kill)| {
            let c = call(&job.id, now);
            let (reader, notifier, store, cfg) = (&reader, &notifier, &store, &cfg);
            async move {
                let work = handle_event(reader, notifier, store, cfg, &job.event, &c);
                match kill {
                    // Lambda stops the invocation wherever it is.
                    Some(ms) => tokio::time::timeout(StdDuration::from_millis(*ms), work)
                        .await
                        .map_err(|_| "killed".to_owned())
                        .and_then(|r| r.map_err(|e| e.to_string())),
                    None => work.await.map_err(|e| e.to_string()),
                }
            }
        }))
        .await;
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            seen.invocations += 1;
            if outcome.is_ok() && job.event["vigil"] == "review" {
                seen.reviewed = true;
            }
            if let Err(e) = outcome {
                if e == "killed" {
                    seen.killed += 1;
                } else {
                    seen.failed += 1;
                }
                // Lambda retries a failed asynchronous invocation a minute or two later.
                if dice.chance(0.9) {
                    retries.push(Job {
                        id: format!("{}-retry", job.id),
                        ..job
                    });
                }
            }
        }
    }
    // Quiet: SNS and S3 well again, every lease expired; the schedule goes on until nothing
    // is owed.
    let calm = RecordingNotifier::with_faults(
        NotifierFaults {
            denied: [DENIED.to_owned()].into(),
            ..NotifierFaults::default()
        },
        seed,
    )
    .with_secret(&routing_key(), "R0UT1NGK3Y0000000000000000000000");
    let quiet = FaultyStore::new(&memory, StoreFaults::default(), seed);
    for extra in 0..6 {
        let at = t0() + Duration::minutes(MINUTES + 5 + extra);
        let ev = json!({"vigil": "scheduled", "scheduled_time": at.to_rfc3339(), "attempt": "1"});
        handle_event(
            &reader,
            &calm,
            &quiet,
            &cfg,
            &ev,
            &call(&format!("{seed}-quiet-{extra}"), at + Duration::seconds(3)),
        )
        .await
        .expect("a quiet run succeeds");
    }
    for written in [&store.written, &quiet.written] {
        for body in written.lock().expect("lock").iter() {
            harvest(body, &mut seen);
        }
    }
    seen.last = state(&memory);
    harvest(
        &memory.body("b", "state/alert.json").expect("state"),
        &mut seen,
    );
    seen.published = notifier.published();
    seen.published.extend(calm.published());
    seen.posted = notifier.posted();
    seen.posted.extend(calm.posted());
    for (k, n) in calm.injected.lock().expect("lock").iter() {
        *seen.faults.entry(k).or_default() += n;
    }
    seen.faults = store.injected.lock().expect("lock").clone();
    for (k, n) in notifier.injected.lock().expect("lock").iter() {
        *seen.faults.entry(k).or_default() += n;
    }
    seen
}

/// Checks the guarantee on one case; returns (lost, doubled) counts.
fn check(seed: u64, seen: &Seen) -> (usize, usize) {
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &seen.published {
        *counts.entry(p.key.as_str()).or_default() += 1;
        delivered.insert(p.key.clone());
        if let Some(members) = seen.members.get(&p.key) {
            delivered.extend(members.iter().cloned());
        }
    }
    // PagerDuty's copy of an alert's message is keyed by the episode and its receiver.
    for p in &seen.posted {
        let kind = match p.body["event_action"].as_str() {
            Some("trigger") => "firing",
            _ => "resolved",
        };
        let episode = p.body["dedup_key"].as_str().unwrap_or_default();
        delivered.insert(format!("{episode}/{kind}@oncall/1"));
        // A trigger still owed when its resolve goes is superseded by it, never sent.
        if kind == "resolved" {
            delivered.insert(format!("{episode}/firing@oncall/1"));
        }
    }
    let aside: BTreeSet<String> = seen
        .last
        .set_aside
        .iter()
        .flat_map(|s| std::iter::once(s.key.clone()).chain(s.members.iter().cloned()))
        .collect();
    let lost: Vec<&String> = seen
        .claimed
        .iter()
        .filter(|k| !delivered.contains(*k) && !aside.contains(*k))
        .collect();
    assert!(
        seen.last.outbox.is_empty(),
        "seed {seed}: still owed after the quiet phase: {:?}",
        seen.last.outbox.iter().map(|o| &o.key).collect::<Vec<_>>()
    );
    for s in &seen.last.set_aside {
        assert!(
            s.topic_arn == DENIED || s.rule == "VigilUndeliverable",
            "seed {seed}: set aside though healthy: {s:?}"
        );
        if s.rule != "VigilUndeliverable" {
            let announced = seen.published.iter().any(|p| {
                p.topic_arn == DEFAULT_TOPIC
                    && p.attribute("alertname") == Some("VigilUndeliverable")
                    && p.notification.message.contains(&s.key)
            });
            assert!(announced, "seed {seed}: {} set aside unannounced", s.key);
        }
    }
    assert!(
        seen.published.iter().all(|p| p.topic_arn != DENIED),
        "seed {seed}: the denied topic took a message"
    );
    let doubled = counts.values().filter(|n| **n > 1).count();
    // The review: sent once per case (a copy only under the ambiguous faults), its object
    // written, and the history holds each episode that resolved once, none missing.
    assert!(
        !seen.reviewed
            || seen
                .published
                .iter()
                .any(|p| p.attribute("alertname") == Some("WeeklyReview")),
        "seed {seed}: a review invocation succeeded, and no review was sent"
    );
    let mut episodes: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for e in &seen.last.history.episodes {
        *episodes
            .entry((e.key.clone(), e.active_since.timestamp()))
            .or_default() += 1;
    }
    assert!(
        episodes.values().all(|n| *n == 1),
        "seed {seed}: an episode recorded twice: {episodes:?}"
    );
    for key in &seen.claimed {
        let parts: Vec<&str> = key.split('/').collect();
        if let [alert, since, "resolved"] = parts.as_slice() {
            if alert.starts_with('S') {
                let since: i64 = since.parse().expect("a timestamp");
                assert!(
                    episodes.contains_key(&((*alert).to_owned(), since)),
                    "seed {seed}: {key} resolved but not in the history"
                );
            }
        }
    }
    if !lost.is_empty() {
        eprintln!("seed {seed}: lost {lost:?}");
    }
    if doubled > 0 {
        let twice: Vec<&&str> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k)
            .collect();
        eprintln!("seed {seed}: doubled {twice:?}");
    }
    (lost.len(), doubled)
}

/// What PagerDuty made of a case's events, replayed through its deduplication (a trigger
/// whose `dedup_key` names an open alert goes onto it; after a resolve, a trigger with that
/// key opens a new one): incidents opened, second incidents opened for one episode, repeated
/// triggers PagerDuty deduplicated, and incidents left open although their episode is no
/// longer firing.
#[derive(Debug, Default, Clone, Copy)]
struct Incidents {
    opened: usize,
    second: usize,
    deduplicated: usize,
    left_open: usize,
}

fn incidents(seen: &Seen) -> Incidents {
    let mut out = Incidents::default();
    let mut open: BTreeMap<String, bool> = BTreeMap::new();
    let mut ever: BTreeSet<String> = BTreeSet::new();
    for p in &seen.posted {
        let key = p.body["dedup_key"].as_str().unwrap_or_default().to_owned();
        match p.body["event_action"].as_str() {
            Some("trigger") => {
                if open.get(&key).copied().unwrap_or(false) {
                    out.deduplicated += 1;
                } else {
                    out.opened += 1;
                    if !ever.insert(key.clone()) {
                        out.second += 1;
                    }
                    open.insert(key, true);
                }
            }
            _ => {
                open.insert(key, false);
            }
        }
    }
    let firing: BTreeSet<String> = seen
        .last
        .alerts
        .iter()
        .filter(|(_, a)| a.phase == vigil_alert::state::Phase::Firing && a.notified_at.is_some())
        .map(|(k, a)| vigil_alert::state::episode_id(k, a.active_since))
        .collect();
    out.left_open = open
        .iter()
        .filter(|(k, is_open)| **is_open && !firing.contains(*k))
        .count();
    out
}

/// Checks PagerDuty's side of a case: no second incident for an episode, none left open.
fn check_incidents(seed: u64, seen: &Seen, total: &mut Incidents) {
    let i = incidents(seen);
    assert_eq!(
        i.second, 0,
        "seed {seed}: an episode opened a second incident: {i:?}"
    );
    assert_eq!(i.left_open, 0, "seed {seed}: an incident left open: {i:?}");
    total.opened += i.opened;
    total.second += i.second;
    total.deduplicated += i.deduplicated;
    total.left_open += i.left_open;
}

fn report(title: &str, cases: &[Seen], lost: usize, doubled: usize) {
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for s in cases {
        for (k, n) in &s.faults {
            *faults.entry(k).or_default() += n;
        }
    }
    let sum = |f: fn(&Seen) -> usize| cases.iter().map(f).sum::<usize>();
    eprintln!(
        "{title}: {} interleavings, {} invocations ({} overlapping minutes, {} failed and retried, {} killed), \
         {} notifications claimed, {} published; faults injected: {faults:?}; pages lost: {lost}, pages doubled: {doubled}",
        cases.len(),
        sum(|s| s.invocations),
        sum(|s| s.overlapping),
        sum(|s| s.failed),
        sum(|s| s.killed),
        sum(|s| s.claimed.len()),
        sum(|s| s.published.len()),
    );
}

/// Every claimed page delivered exactly once or set aside with an announcement, over 200
/// drawn interleavings of runs, retries and alarm changes under AWS's failures.
#[tokio::test(start_paused = true)]
async fn every_page_is_delivered_once_or_set_aside_and_announced() {
    let mut cases = Vec::new();
    let (mut lost, mut doubled) = (0, 0);
    let mut pd = Incidents::default();
    for seed in 0..200 {
        let seen = case(seed, false).await;
        let (l, d) = check(seed, &seen);
        check_incidents(seed, &seen, &mut pd);
        assert_eq!(l, 0, "seed {seed}: pages lost");
        assert_eq!(d, 0, "seed {seed}: pages doubled");
        lost += l;
        doubled += d;
        cases.push(seen);
    }
    report("clean faults", &cases, lost, doubled);
    eprintln!(
        "clean faults, PagerDuty: {} incidents opened, {} second incidents for one episode, {} repeated triggers deduplicated, {} left open",
        pd.opened, pd.second, pd.deduplicated, pd.left_open
    );
    assert!(pd.opened > 100, "the cases page PagerDuty: {pd:?}");
    let claimed: usize = cases.iter().map(|s| s.claimed.len()).sum();
    assert!(claimed > 2_000, "the cases page: {claimed}");
    let reviewed = cases.iter().filter(|s| s.reviewed).count();
    assert!(reviewed > 150, "most cases review: {reviewed}");
    assert!(cases.iter().any(|s| !s.last.set_aside.is_empty()));
    assert!(
        cases.iter().map(|s| s.failed).sum::<usize>() > 0,
        "some runs fail and retry"
    );
}

/// With the faults that can make a copy (a timeout after SNS accepted, an invocation killed
/// between publish and record): still nothing lost, and a copy only ever repeats a key.
#[tokio::test(start_paused = true)]
async fn ambiguous_faults_only_ever_repeat_a_key() {
    let mut cases = Vec::new();
    let (mut lost, mut doubled) = (0, 0);
    let mut pd = Incidents::default();
    for seed in 1_000..1_100 {
        let seen = case(seed, true).await;
        let (l, d) = check(seed, &seen);
        check_incidents(seed, &seen, &mut pd);
        assert_eq!(l, 0, "seed {seed}: pages lost");
        lost += l;
        doubled += d;
        cases.push(seen);
    }
    report("ambiguous faults", &cases, lost, doubled);
    eprintln!(
        "ambiguous faults, PagerDuty: {} incidents opened, {} second incidents for one episode, {} repeated triggers deduplicated, {} left open",
        pd.opened, pd.second, pd.deduplicated, pd.left_open
    );
    // Each copy is the same message under the same key: a receiver keeps one.
    for s in &cases {
        let mut by_key: BTreeMap<&str, Vec<&Published>> = BTreeMap::new();
        for p in &s.published {
            by_key.entry(p.key.as_str()).or_default().push(p);
        }
        for copies in by_key.values().filter(|c| c.len() > 1) {
            assert!(
                copies
                    .iter()
                    .all(|c| c.notification.subject == copies[0].notification.subject)
            );
        }
    }
}
