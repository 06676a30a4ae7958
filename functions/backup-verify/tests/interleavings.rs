//! The announcement guarantee over randomized interleavings: a week of scheduled runs, their
//! retries and overlapping invocations, on a state store and a notifier that fail as AWS does.
//!
//! Each case draws, from its seed, which day a flapping set's copy is missing, how many
//! invocations each scheduled run gets (Lambda's and Scheduler's retries, a second invocation
//! overlapping the first), and the faults: S3 throttling of the state, lost conditional writes
//! (two invocations racing), a write whose answer is lost after it landed, pauses between a
//! claim and its publish, SNS throttling and timeouts before SNS accepted a message. Then a
//! quiet phase (no faults, every lease expired) lets owed messages drain. The guarantee:
//! - nothing lost: every message ever owed (in any state written) was published;
//! - nothing twice: no deduplication key published twice;
//! - exactly the messages of a run without faults, so no healthy set is ever announced and no
//!   fault missed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use common::*;
use futures_util::future::join_all;
use vigil_backup_verify::episodes::{self, State};
use vigil_backup_verify::{Storage, handle_scheduled};
use vigil_shared::testing::{
    Dice, FaultyStore, MemoryStore, NotifierFaults, RecordingNotifier, StoreFaults,
};

const DAYS: i64 = 7;

const SETS: &str = "backup_sets:\n  - {name: healthy, bucket: backups, prefix: healthy/, max_age: 30d, replicas: [{bucket: dr-copy}]}\n  - {name: broken, bucket: backups, prefix: broken/, max_age: 30d, replicas: [{bucket: dr-copy}]}\n  - {name: flapping, bucket: backups, prefix: flapping/, max_age: 30d, replicas: [{bucket: dr-copy}]}\n";

/// The backups: `healthy` copied, `broken` never, `flapping` from a day the case draws.
async fn world() -> MemoryStore {
    let store = MemoryStore::default();
    for set in ["healthy", "broken", "flapping"] {
        put(&store, "backups", &format!("{set}/1.sql.gz"), dump(50)).await;
    }
    put(&store, "dr-copy", "healthy/1.sql.gz", dump(50)).await;
    sets(&store, SETS).await;
    store
}

/// The flapping set's copy, from the day it is made.
async fn copy_made(store: &MemoryStore, copied: bool) {
    if copied {
        put(store, "dr-copy", "flapping/1.sql.gz", dump(50)).await;
    }
}

/// The fault-free reference: the same days, one invocation each, no faults.
async fn reference(copied: &[bool]) -> BTreeSet<String> {
    let store = world().await;
    let notifier = RecordingNotifier::default();
    for (d, &c) in copied.iter().enumerate() {
        copy_made(&store, c).await;
        let at = day(d as i64, 0);
        run_clean(&store, &notifier, at, &format!("ref-{d}"))
            .await
            .expect("a run without faults succeeds");
    }
    notifier.published().into_iter().map(|p| p.key).collect()
}

#[derive(Default)]
struct Seen {
    invocations: usize,
    failed: usize,
    overlapping: usize,
    owed: BTreeSet<String>,
    published: Vec<String>,
    faults: BTreeMap<&'static str, usize>,
}

async fn case(seed: u64, copied: &[bool], sns: NotifierFaults) -> Seen {
    let mut dice = Dice::new(seed);
    let store = world().await;
    let faulty = FaultyStore::new(
        &store,
        StoreFaults {
            throttle: 0.15,
            lost_answer: 0.15,
            pause_after_write: StdDuration::from_millis(3),
        },
        seed,
    )
    // Faults on the state object only: the backups and the sets file are read cleanly, so that
    // every difference from the fault-free run is the state's or the notifier's.
    .scoped("state/");
    let storage = Storage {
        objects: &faulty,
        inspector: &store,
        streamer: &store,
    };
    let notifier = RecordingNotifier::with_faults(sns, seed ^ 0x5eed);
    let mut seen = Seen::default();
    for (d, &c) in copied.iter().enumerate() {
        copy_made(&store, c).await;
        let at = day(d as i64, 0);
        // Scheduler's first attempt, overlapping ones, and retries minutes later; a run that
        // failed every time is retried (as Lambda and Scheduler do) until one completes.
        let waves = 1 + dice.below(3) as i64;
        let mut completed = false;
        let mut wave = 0;
        while wave < waves || (!completed && wave < 40) {
            let side_by_side = 1 + dice.below(2) as usize;
            seen.overlapping += side_by_side - 1;
            let now = at + Duration::minutes(wave * 20);
            let wave_id = wave;
            notifier.set_now(now);
            let runs =
                (0..side_by_side).map(|k| {
                    let inv = invocation(now, &format!("{seed}-{d}-{wave_id}-{k}"));
                    let storage = &storage;
                    let notifier = &notifier;
                    async move {
                        handle_scheduled(storage, notifier, &config(), &scheduled(at), &inv).await
                    }
                });
            for outcome in join_all(runs).await {
                seen.invocations += 1;
                seen.failed += usize::from(outcome.is_err());
                completed |= outcome.is_ok();
            }
            wave += 1;
        }
        assert!(completed, "seed {seed}: day {d} never completed");
    }
    // Quiet: no faults, every lease expired; the last day's run retried until nothing is owed.
    let quiet = RecordingNotifier::default();
    let last = day(copied.len() as i64 - 1, 0);
    for k in 0..3 {
        let now = last + Duration::hours(2 + k);
        let inv = invocation(now, &format!("{seed}-quiet-{k}"));
        handle_scheduled(
            &Storage::all(&store),
            &quiet,
            &config(),
            &scheduled(last),
            &inv,
        )
        .await
        .expect("a quiet retry succeeds");
    }
    let (state, _) = vigil_shared::cas::load(
        &store,
        &vigil_shared::cas::StateLocation {
            bucket: "vigil".into(),
            key: "state/backup-verify.json".into(),
        },
        episodes::parse,
    )
    .await
    .expect("state");
    assert!(
        state.outbox.is_empty(),
        "seed {seed}: still owed {:?}",
        state.outbox
    );
    for body in faulty.written.lock().expect("written").iter() {
        let written: State = serde_json::from_slice(body).expect("state JSON");
        seen.owed.extend(written.outbox.into_iter().map(|o| o.key));
    }
    seen.published = notifier
        .published()
        .into_iter()
        .chain(quiet.published())
        .map(|p| p.key)
        .collect();
    seen.faults = faulty.injected.lock().expect("faults").clone();
    for (k, v) in notifier.injected.lock().expect("faults").iter() {
        *seen.faults.entry(k).or_default() += v;
    }
    seen
}

/// The days a flapping copy exists, drawn from the seed. Once copied it stays (the in-memory
/// store has no delete), so the flapping set fails, then recovers.
fn days(seed: u64) -> Vec<bool> {
    let mut dice = Dice::new(seed.wrapping_mul(31));
    let from = 1 + dice.below(DAYS as u64 - 2);
    (0..DAYS as u64).map(|d| d >= from).collect()
}

/// On tokio's paused clock: the backoffs and pauses take no real time, and the invocations
/// still interleave at every await.
#[tokio::test(start_paused = true)]
async fn announcements_are_never_lost_never_doubled_and_exactly_those_of_a_clean_run() {
    let mut totals = Seen::default();
    let cases = 60;
    for seed in 0..cases {
        let copied = days(seed);
        let expected = reference(&copied).await;
        let sns = NotifierFaults {
            throttle: 0.15,
            timeout_before: 0.1,
            ..NotifierFaults::default()
        };
        let seen = case(seed, &copied, sns).await;
        let mut once = BTreeSet::new();
        for key in &seen.published {
            assert!(
                once.insert(key.clone()),
                "seed {seed}: {key} published twice"
            );
        }
        let lost: Vec<&String> = seen.owed.difference(&once).collect();
        assert!(
            lost.is_empty(),
            "seed {seed}: owed but never published: {lost:?}"
        );
        assert_eq!(
            once, expected,
            "seed {seed}: not the messages of a clean run"
        );
        assert!(
            once.iter().all(|k| !k.contains("/healthy/")),
            "seed {seed}: the healthy set was announced"
        );
        totals.invocations += seen.invocations;
        totals.failed += seen.failed;
        totals.overlapping += seen.overlapping;
        totals.published.extend(seen.published);
        for (k, v) in seen.faults {
            *totals.faults.entry(k).or_default() += v;
        }
    }
    println!(
        "{cases} interleavings: {} invocations ({} overlapping, {} failed and retried), {} messages, 0 lost, 0 doubled; faults: {:?}",
        totals.invocations,
        totals.overlapping,
        totals.failed,
        totals.published.len(),
        totals.faults
    );
    assert!(
        totals.failed > 0 && totals.overlapping > 0,
        "the faults did happen"
    );
}

/// The state a run leaves is the same whether its change was applied once or twice (the
/// conditional write's answer lost, the change applied again to a fresh read).
#[tokio::test]
async fn planning_a_report_twice_changes_nothing_more() {
    let store = world().await;
    let notifier = RecordingNotifier::default();
    let at: DateTime<Utc> = day(0, 0);
    run_clean(&store, &notifier, at, "a").await.expect("run");
    let order: Vec<_> = vigil_backup_verify::load("s.yaml", SETS).expect("sets");
    let refs: Vec<_> = order.iter().collect();
    let report = vigil_backup_verify::verify(
        &Storage::all(&store),
        &refs,
        at,
        &vigil_backup_verify::Budget::unlimited(),
    )
    .await;
    let mut state = State::default();
    let first = episodes::plan(&mut state, &report, &order, "r", true);
    let snapshot = state.clone();
    let second = episodes::plan(&mut state, &report, &order, "r", true);
    assert!(first > 0);
    assert_eq!(second, 0);
    assert_eq!(state, snapshot);
}

/// A timeout after SNS accepted a message is the one fault no sender on a standard topic can
/// rule out: the retry sends a copy. Nothing is lost, and every copy carries the key of the
/// first, so a receiver (or a FIFO topic) drops it.
#[tokio::test(start_paused = true)]
async fn a_timeout_after_acceptance_only_ever_repeats_a_key() {
    let (mut repeats, mut messages) = (0, 0);
    for seed in 0..30 {
        let copied = days(seed);
        let expected = reference(&copied).await;
        let sns = NotifierFaults {
            timeout_after: 0.2,
            ..NotifierFaults::default()
        };
        let seen = case(seed, &copied, sns).await;
        let distinct: BTreeSet<String> = seen.published.iter().cloned().collect();
        assert_eq!(distinct, expected, "seed {seed}: lost or extra messages");
        repeats += seen.published.len() - distinct.len();
        messages += distinct.len();
    }
    println!(
        "30 interleavings with timeouts after acceptance: {messages} messages, {repeats} repeated under the same key, 0 lost"
    );
    assert!(repeats > 0, "the fault did happen");
}
