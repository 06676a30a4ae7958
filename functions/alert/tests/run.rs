//! The alert function's run over the shared in-memory fakes: transitions, grouping, policy,
//! and the delivery guarantees (nothing blocks, nothing is lost, nothing is sent twice).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use common::*;
use serde_json::json;
use vigil_alert::outbox::{Lease, StateFile, update};
use vigil_alert::policy::{Muted, Policy, Silence};
use vigil_alert::state::{Standing, Status};
use vigil_alert::{AlertConfig, handle_event, run};
use vigil_shared::ObjectStore;
use vigil_shared::config::parse_yaml;
use vigil_shared::testing::{
    FaultyStore, MemoryStore, NotifierFaults, RecordingNotifier, SeriesReader, StoreFaults,
};

fn subjects(n: &RecordingNotifier) -> Vec<String> {
    n.published()
        .iter()
        .map(|p| p.notification.subject.clone())
        .collect()
}

#[tokio::test]
async fn one_notification_per_transition_and_resolved_after() {
    let (mut reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let rules = [rule()];
    let p = plan(&rules, &NO_POLICY);
    latency(&mut reader, "api", t0(), true);
    let s1 = run(&reader, &notifier, &store, p, &inv("a", t0()))
        .await
        .expect("run");
    assert_eq!(
        (s1.rules[0].state, s1.rules[0].transition),
        (Standing::Firing, Some(Status::Firing))
    );
    // Still breaching a minute later: no second notification.
    let t1 = t0() + Duration::minutes(1);
    latency(&mut reader, "api", t1, true);
    let s2 = run(&reader, &notifier, &store, p, &inv("b", t1))
        .await
        .expect("run");
    assert_eq!(
        (s2.rules[0].state, s2.rules[0].transition),
        (Standing::Firing, None)
    );
    // Recovered: one resolved notification.
    let t2 = t0() + Duration::minutes(2);
    latency(&mut reader, "api", t2, false);
    let s3 = run(&reader, &notifier, &store, p, &inv("c", t2))
        .await
        .expect("run");
    assert_eq!(
        (s3.rules[0].state, s3.rules[0].transition),
        (Standing::Inactive, Some(Status::Resolved))
    );
    let statuses: Vec<Option<String>> = notifier
        .published()
        .iter()
        .map(|p| p.attribute("status").map(str::to_owned))
        .collect();
    assert_eq!(statuses, [Some("firing".into()), Some("resolved".into())]);
    // Each message carries its deduplication key for receivers.
    assert_eq!(notifier.published()[0].key, "HighLatency/1795593600/firing");
}

/// A retry of an instant already evaluated (its first attempt got as far as the claim)
/// evaluates nothing again and sends nothing twice.
#[tokio::test]
async fn a_retried_instant_is_not_evaluated_twice() {
    let (mut reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let rules = [rule()];
    latency(&mut reader, "api", t0(), true);
    run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    let again = run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("a-retry", t0()),
    )
    .await
    .expect("run");
    assert!(again.superseded);
    assert!(again.sent.is_empty());
    assert_eq!(notifier.published().len(), 1);
}

/// Defect: `commit` returned on the first failed publish, so one message that could never be
/// published (a route to a topic the role may not use) blocked every later one, run after
/// run. Now each message is delivered on its own; the undeliverable one is set aside, counted
/// and announced once on the default topic.
#[tokio::test]
async fn an_undeliverable_message_blocks_nothing_and_is_announced_once() {
    let denied = "arn:aws:sns:us-east-1:123456789012:payments-oncall";
    let faults = NotifierFaults {
        denied: [denied.to_owned()].into(),
        ..NotifierFaults::default()
    };
    let notifier = RecordingNotifier::with_faults(faults, 1);
    let (mut reader, store) = (SeriesReader::default(), MemoryStore::default());
    let policy: Policy = parse_yaml(
        "p.yaml",
        &format!("routes: [{{match: {{alertname: Payments}}, topic_arn: '{denied}'}}]\n"),
    )
    .expect("policy");
    // Payments sorts before Search: the denied message is the oldest in the outbox.
    let rules = [named("Payments"), named("Search")];
    for now in [t0(), t0() + Duration::minutes(1)] {
        latency(&mut reader, "Payments", now, true);
        latency(&mut reader, "Search", now, true);
    }
    let s = run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &policy),
        &inv("a", t0()),
    )
    .await
    .expect("a run with an undeliverable message does not fail");
    assert_eq!(s.set_aside, ["Payments/1795593600/firing"]);
    let sent = subjects(&notifier);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.contains(&"[FIRING] Search: latency 900 > 250".to_owned()));
    let announcement = notifier
        .published()
        .into_iter()
        .find(|p| p.attribute("alertname") == Some("VigilUndeliverable"))
        .expect("announced");
    assert_eq!(announcement.topic_arn, DEFAULT_TOPIC);
    assert!(
        announcement
            .notification
            .message
            .contains("AuthorizationError")
    );
    assert!(
        announcement
            .notification
            .message
            .contains("[FIRING] Payments")
    );
    let st = state(&store);
    assert!(st.outbox.is_empty(), "{:?}", st.outbox);
    assert_eq!(st.set_aside.len(), 1);
    // The next run neither retries it nor announces it again; Search resolving is delivered.
    let t1 = t0() + Duration::minutes(2);
    latency(&mut reader, "Search", t1, false);
    latency(&mut reader, "Payments", t1, true);
    run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &policy),
        &inv("b", t1),
    )
    .await
    .expect("run");
    let later = subjects(&notifier);
    assert_eq!(later.len(), 3, "{later:?}");
    assert_eq!(later[2], "[RESOLVED] Search: latency 100 > 250");
}

/// Throttled messages are retried with backoff inside the run; what is still refused stays
/// owed, and a later run delivers it once.
#[tokio::test]
async fn throttled_messages_stay_owed_and_are_delivered_once_later() {
    let (mut reader, store) = (SeriesReader::default(), MemoryStore::default());
    let rules: Vec<_> = (0..30).map(|i| named(&format!("S{i:02}"))).collect();
    for r in &rules {
        latency(&mut reader, &r.alert, t0(), true);
    }
    let faults = NotifierFaults {
        throttle: 0.8,
        ..NotifierFaults::default()
    };
    let busy = RecordingNotifier::with_faults(faults, 7);
    let s = run(
        &reader,
        &busy,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    assert!(s.deferred > 0, "some messages were throttled every time");
    assert_eq!(s.sent.len() + s.deferred, 30);
    let owed = state(&store).outbox;
    assert!(owed.iter().all(|o| o.lease.is_none() && o.attempts == 1));
    // SNS recovers: the next run delivers the rest, once.
    let calm = RecordingNotifier::default();
    let t1 = t0() + Duration::minutes(1);
    for r in &rules {
        latency(&mut reader, &r.alert, t1, true);
    }
    let s2 = run(
        &reader,
        &calm,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("b", t1),
    )
    .await
    .expect("run");
    assert_eq!(s2.sent.len(), s.deferred);
    let mut keys: Vec<String> = busy
        .published()
        .into_iter()
        .chain(calm.published())
        .map(|p| p.key)
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!((n, keys.len()), (30, 30));
}

#[tokio::test]
async fn a_group_gets_one_message_then_waits_group_interval() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let policy: Policy =
        parse_yaml("p.yaml", "group_by: [team]\ngroup_interval: 5m\n").expect("policy");
    let rules = [named("A"), named("B"), named("C")];
    let mut reader = SeriesReader::default();
    latency(&mut reader, "A", t0(), true);
    latency(&mut reader, "B", t0(), true);
    let s0 = run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &policy),
        &inv("r0", t0()),
    )
    .await
    .expect("run");
    assert_eq!(s0.sent.len(), 1, "{:?}", s0.sent);
    assert_eq!(subjects(&notifier), ["[FIRING:2] team=checkout: A, B"]);
    // C joins a minute later: held until five minutes after the last message.
    for minute in 1..=5 {
        let now = t0() + Duration::minutes(minute);
        for name in ["A", "B", "C"] {
            latency(&mut reader, name, now, true);
        }
        run(
            &reader,
            &notifier,
            &store,
            plan(&rules, &policy),
            &inv(&format!("r{minute}"), now),
        )
        .await
        .expect("run");
        let expected = if minute < 5 { 1 } else { 2 };
        assert_eq!(notifier.published().len(), expected, "minute {minute}");
    }
    assert_eq!(subjects(&notifier)[1], "[FIRING] C: latency 900 > 250");
    let sent = notifier.published();
    let body = sent[0].notification.details.as_ref().expect("details");
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(2));
}

/// 1,600 series firing in one group made one 10.5 MB message that SNS refused; now every
/// part fits and every member is delivered.
#[tokio::test]
async fn a_huge_group_is_delivered_in_parts_that_fit() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let policy: Policy = parse_yaml("p.yaml", "group_by: [team]\n").expect("policy");
    let (rules, reader) = outage(1_600);
    let s = run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &policy),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    assert_eq!(s.rules.len(), 1_600);
    let sent = notifier.published();
    assert!((2..=5).contains(&sent.len()), "{}", sent.len());
    for p in &sent {
        assert!(p.notification.wire_size() <= vigil_shared::limits::SNS_MAX_MESSAGE_BYTES);
    }
    let st = state(&store);
    assert!(st.outbox.is_empty());
    let members = st
        .delivered
        .keys()
        .filter(|k| k.starts_with("HighLatency{"))
        .count();
    assert_eq!(members, 1_600, "every member recorded as delivered");
}

#[tokio::test]
async fn a_wildcard_rule_keeps_one_state_per_series() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let mut r = rule();
    r.metric.dimensions.insert("service".into(), "*".into());
    r.labels.remove("service");
    let rules = [r];
    let mut reader = SeriesReader::default();
    for s in ["a", "b", "c"] {
        latency(&mut reader, s, t0(), true);
    }
    let summary = run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    let series: Vec<&str> = summary
        .rules
        .iter()
        .map(|r| r.series["service"].as_str())
        .collect();
    assert_eq!(series, ["a", "b", "c"]);
    assert!(
        summary
            .sent
            .contains_key("HighLatency{service=b}/1795593600/firing")
    );
    let st = state(&store);
    assert_eq!(
        st.alerts.keys().cloned().collect::<Vec<_>>(),
        [
            "HighLatency{service=a}",
            "HighLatency{service=b}",
            "HighLatency{service=c}"
        ]
    );
    assert_eq!(st.alerts["HighLatency{service=b}"].labels["service"], "b");
}

/// Defect: a firing alert whose rule was removed, or whose `*` series CloudWatch no longer
/// lists, vanished from the state with no resolved message. It resolves, with the reason.
#[tokio::test]
async fn an_alert_whose_rule_or_series_is_gone_resolves_with_the_reason() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let mut pods = rule();
    pods.alert = "PodSlow".into();
    pods.metric.dimensions.insert("service".into(), "*".into());
    let rules = [rule(), pods];
    let mut reader = SeriesReader::default();
    for s in ["api", "web"] {
        latency(&mut reader, s, t0(), true);
    }
    run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    assert_eq!(notifier.published().len(), 3);
    // HighLatency is deleted from the file; the series `web` is no longer listed.
    let t1 = t0() + Duration::minutes(1);
    let mut reader = SeriesReader::default();
    latency(&mut reader, "api", t1, true);
    let left = [rules[1].clone()];
    let s = run(
        &reader,
        &notifier,
        &store,
        plan(&left, &NO_POLICY),
        &inv("b", t1),
    )
    .await
    .expect("run");
    let reasons: BTreeMap<&str, &str> = s
        .ended
        .iter()
        .map(|e| (e.key.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        reasons.get("HighLatency"),
        Some(&"the rule HighLatency is no longer in the rules file")
    );
    assert!(reasons["PodSlow{service=web}"].contains("no longer listed"));
    let resolved: Vec<String> = notifier
        .published()
        .iter()
        .filter(|p| p.attribute("status") == Some("resolved"))
        .map(|p| p.notification.subject.clone())
        .collect();
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert!(
        resolved
            .iter()
            .any(|s| s.starts_with("[RESOLVED] HighLatency: the rule"))
    );
    // Once: the next run sends nothing more for them.
    run(
        &reader,
        &notifier,
        &store,
        plan(&left, &NO_POLICY),
        &inv("c", t1 + Duration::minutes(1)),
    )
    .await
    .expect("run");
    assert_eq!(notifier.published().len(), 5);
}

#[tokio::test]
async fn the_watchdog_beats_every_interval() {
    let (reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let policy: Policy = parse_yaml(
        "p.yaml",
        "watchdog: {interval: 1h, labels: {severity: none, team: platform}}\n",
    )
    .expect("policy");
    let rules = [rule()];
    for minute in [0, 1, 59, 60, 90, 121] {
        let at = t0() + Duration::minutes(minute);
        run(
            &reader,
            &notifier,
            &store,
            plan(&rules, &policy),
            &inv(&format!("r{minute}"), at),
        )
        .await
        .expect("run");
    }
    let sent = notifier.published();
    assert_eq!(sent.len(), 3, "at 08:00, 09:00 and 10:01");
    assert!(
        sent.iter()
            .all(|n| n.notification.subject.starts_with("[FIRING] Watchdog"))
    );
    assert_eq!(sent[0].attribute("team"), Some("platform"));
}

#[tokio::test]
async fn repeat_interval_resends_a_still_firing_alert() {
    let (mut reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let policy = Policy {
        repeat_interval: Some(vigil_shared::Span(3600)),
        ..Policy::default()
    };
    let rules = [rule()];
    for minute in [0, 30, 59, 60, 61, 120] {
        let now = t0() + Duration::minutes(minute);
        latency(&mut reader, "api", now, true);
        run(
            &reader,
            &notifier,
            &store,
            plan(&rules, &policy),
            &inv(&format!("r{minute}"), now),
        )
        .await
        .expect("run");
    }
    assert_eq!(notifier.published().len(), 3, "08:00, 09:00, 10:00");
}

#[tokio::test]
async fn silences_mute_and_the_alert_notifies_once_they_end() {
    let (mut reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let silences = [Silence {
        id: String::new(),
        matchers: vec![vigil_alert::silence::Matcher::equal(
            "alertname",
            "HighLatency",
        )],
        starts_at: None,
        ends_at: t("2026-11-25T08:30:00Z"),
        created_by: "on-call".into(),
        comment: "database failover".into(),
        created_at: None,
    }];
    let rules = [rule()];
    let p = vigil_alert::Plan {
        silences: &silences,
        ..plan(&rules, &NO_POLICY)
    };
    latency(&mut reader, "api", t0(), true);
    let muted = run(&reader, &notifier, &store, p, &inv("a", t0()))
        .await
        .expect("run");
    assert!(
        matches!(&muted.rules[0].muted, Some(Muted::Silence { comment, .. }) if comment == "database failover")
    );
    assert!(notifier.published().is_empty());
    let t1 = t("2026-11-25T09:00:00Z");
    latency(&mut reader, "api", t1, true);
    run(&reader, &notifier, &store, p, &inv("b", t1))
        .await
        .expect("run");
    assert_eq!(
        subjects(&notifier),
        ["[FIRING] HighLatency: latency 900 > 250"]
    );
}

#[tokio::test]
async fn an_inhibited_alert_stays_quiet_and_routes_pick_topics() {
    let (mut reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let mut down = named("CheckoutDown");
    down.metric
        .dimensions
        .insert("service".into(), "api".into());
    down.labels.insert("team".into(), "payments".into());
    let policy: Policy = parse_yaml(
        "p.yaml",
        "routes: [{match: {team: payments}, topic_arn: 'arn:payments'}]\n\
         inhibit: [{source_match: {alertname: CheckoutDown}, target_match: {alertname: HighLatency}, equal: [service]}]\n",
    )
    .expect("policy");
    let rules = [down, rule()];
    latency(&mut reader, "api", t0(), true);
    let summary = run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &policy),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    assert!(
        matches!(&summary.rules[1].muted, Some(Muted::Inhibition { source }) if source == "CheckoutDown")
    );
    let sent = notifier.published();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic_arn, "arn:payments");
}

/// Defect: two runs that overlapped mid-delivery both published the owed messages. Now a
/// claim is a lease: a run publishes only what it leased, and takes over another run's
/// messages only once that run's invocation has ended. The store pauses after each write, so
/// the runs really interleave between claim and publish.
#[tokio::test]
async fn overlapping_runs_publish_each_message_once() {
    let memory = MemoryStore::default();
    let notifier = RecordingNotifier::default();
    let rules: Vec<_> = (0..20).map(|i| named(&format!("S{i:02}"))).collect();
    let mut reader = SeriesReader::default();
    for r in &rules {
        latency(&mut reader, &r.alert, t0(), true);
    }
    for seed in 0..20u64 {
        let store = FaultyStore::new(
            &memory,
            StoreFaults {
                pause_after_write: std::time::Duration::from_millis(15),
                ..StoreFaults::default()
            },
            seed,
        );
        let at = t0() + Duration::minutes(seed as i64);
        for r in &rules {
            let breaching = seed % 2 == 0;
            latency(&mut reader, &r.alert, at, breaching);
        }
        let p = plan(&rules, &NO_POLICY);
        let (ia, ib, ic) = (
            inv(&format!("a{seed}"), at),
            inv(&format!("b{seed}"), at),
            inv(&format!("c{seed}"), at),
        );
        let (a, b, c) = tokio::join!(
            run(&reader, &notifier, &store, p, &ia),
            run(&reader, &notifier, &store, p, &ib),
            run(&reader, &notifier, &store, p, &ic),
        );
        let sent: usize = [a, b, c]
            .into_iter()
            .map(|r| r.expect("run").sent.len())
            .sum();
        assert_eq!(
            sent, 20,
            "seed {seed}: each transition sent by exactly one run"
        );
    }
    let keys: Vec<String> = notifier.published().into_iter().map(|p| p.key).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), 400);
    assert_eq!(unique.len(), keys.len(), "no message twice");
}

/// A run that died after its claim left its messages leased: a run while it could still be
/// alive leaves them, a run after its deadline delivers them, once.
#[tokio::test]
async fn a_dead_runs_claim_is_taken_over_after_its_deadline() {
    let (mut reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let rules = [rule()];
    latency(&mut reader, "api", t0(), true);
    // The dead run: it evaluated and claimed, then never published.
    let dead = inv("dead", t0());
    let lease = dead.lease();
    update(&store, &LOCATION, None, dead.now, |s: &mut StateFile| {
        s.evaluated_at = Some(t0());
        s.outbox.push(vigil_alert::outbox::Owed {
            key: "HighLatency/1795593600/firing".into(),
            topic_arn: DEFAULT_TOPIC.into(),
            rule: "HighLatency".into(),
            severity: "page".into(),
            labels: BTreeMap::new(),
            status: Status::Firing,
            kind: vigil_alert::outbox::Kind::Alert,
            members: vec![],
            notification: vigil_shared::Notification {
                subject: "[FIRING] HighLatency".into(),
                message: "m".into(),
                attributes: vec![],
                details: None,
            },
            attempts: 0,
            lease: Some(Lease {
                run: lease.run.clone(),
                until: lease.until,
            }),
            last_error: None,
            channel: Default::default(),
            episode: String::new(),
        });
    })
    .await
    .expect("claimed");
    let early = inv("retry-early", t0());
    let s = run(&reader, &notifier, &store, plan(&rules, &NO_POLICY), &early)
        .await
        .expect("run");
    assert!(s.sent.is_empty(), "the lease is live");
    let mut late = inv("retry-late", t0());
    late.now = lease.until;
    let s = run(&reader, &notifier, &store, plan(&rules, &NO_POLICY), &late)
        .await
        .expect("run");
    assert_eq!(s.sent.len(), 1);
    assert_eq!(notifier.published().len(), 1);
}

/// The rules file, policy and silences in a memory store, read by the handler like S3.
async fn config(store: &MemoryStore, rules: &str, allowed: &[&str]) -> AlertConfig {
    store
        .put("b", "rules.yaml", rules.as_bytes().to_vec(), "text/yaml")
        .await
        .expect("put");
    AlertConfig {
        rules: "s3://b/rules.yaml".parse().expect("location"),
        topic_arn: DEFAULT_TOPIC.into(),
        state: LOCATION.clone(),
        silences: None,
        allowed_topics: vigil_alert::config::allowed_topics(DEFAULT_TOPIC, &allowed.join(",")),
        smoke: None,
        math: Default::default(),
        review_prefix: vigil_alert::config::REVIEW_PREFIX.to_owned(),
    }
}

/// Defect: `*` rules never inhibited native alarms (the lookup went by rule name, the state by
/// series). A firing series inhibits by its full label set.
#[tokio::test]
async fn a_firing_wildcard_series_inhibits_a_native_alarm() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let rules = format!(
        "policy:\n  inhibit: [{{source_match: {{alertname: HighLatency}}, target_match: {{alertname: checkout-5xx}}, equal: [service]}}]\n{}",
        RULES
            .replace("service: api}", "service: \"*\"}")
            .replace("service: api, ", "")
    );
    let cfg = config(&store, &rules, &[]).await;
    let mut reader = SeriesReader::default();
    latency(&mut reader, "checkout", t0(), true);
    let scheduled =
        json!({"vigil": "scheduled", "scheduled_time": "2026-11-25T08:00:00Z", "attempt": "1"});
    let summary = handle_event(
        &reader,
        &notifier,
        &store,
        &cfg,
        &scheduled,
        &call("s", t0()),
    )
    .await
    .expect("scheduled run");
    assert_eq!(summary["schedule"]["source"], "scheduler_input");
    assert_eq!(notifier.published().len(), 1);
    let alarm = alarm_event(
        "checkout-5xx",
        "ALARM",
        "2026-11-25T08:01:00.000+0000",
        "vigil: severity=page service=checkout",
    );
    let out = handle_event(&reader, &notifier, &store, &cfg, &alarm, &call("x", t0()))
        .await
        .expect("alarm handled");
    assert_eq!(out["muted"]["muted_by"], "inhibition", "{out}");
    assert_eq!(notifier.published().len(), 1);
}

/// Defect: an alarm change was dropped when another run won the state write (`superseded`
/// returned Ok, so Lambda never retried). It is applied again to a fresh read.
#[tokio::test]
async fn an_alarm_change_that_loses_the_state_write_is_applied_again() {
    struct Interfering<'a> {
        inner: &'a MemoryStore,
        done: std::sync::Mutex<bool>,
    }
    impl ObjectStore for Interfering<'_> {
        async fn list(
            &self,
            b: &str,
            p: &str,
        ) -> vigil_shared::Result<Vec<vigil_shared::ObjectInfo>> {
            self.inner.list(b, p).await
        }
        async fn get(&self, b: &str, k: &str) -> vigil_shared::Result<Vec<u8>> {
            self.inner.get(b, k).await
        }
        async fn put(&self, b: &str, k: &str, body: Vec<u8>, c: &str) -> vigil_shared::Result<()> {
            self.inner.put(b, k, body, c).await
        }
        async fn get_tagged(
            &self,
            b: &str,
            k: &str,
        ) -> vigil_shared::Result<Option<(Vec<u8>, String)>> {
            self.inner.get_tagged(b, k).await
        }
        async fn put_if(
            &self,
            b: &str,
            k: &str,
            body: Vec<u8>,
            expected: Option<&str>,
        ) -> vigil_shared::Result<Option<String>> {
            let first = !std::mem::replace(&mut *self.done.lock().expect("lock"), true);
            if first {
                // Another run writes its own state in between.
                let mut other = StateFile::default();
                other.evaluated_at = Some(t0());
                let current = self.inner.get_tagged(b, k).await?.map(|(_, t)| t);
                self.inner
                    .put_if(
                        b,
                        k,
                        serde_json::to_vec(&other).expect("json"),
                        current.as_deref(),
                    )
                    .await?;
            }
            self.inner.put_if(b, k, body, expected).await
        }
    }
    let (notifier, memory) = (RecordingNotifier::default(), MemoryStore::default());
    let cfg = config(&memory, RULES, &[]).await;
    let store = Interfering {
        inner: &memory,
        done: std::sync::Mutex::new(false),
    };
    let alarm = alarm_event(
        "checkout-5xx",
        "ALARM",
        "2026-11-25T08:01:00.000+0000",
        "vigil: severity=page",
    );
    let out = handle_event(
        &SeriesReader::default(),
        &notifier,
        &store,
        &cfg,
        &alarm,
        &call("x", t0()),
    )
    .await
    .expect("handled");
    assert_eq!(out["status"], "firing", "{out}");
    assert_eq!(notifier.published().len(), 1, "the page is sent");
    let st = state(&memory);
    assert_eq!(st.evaluated_at, Some(t0()), "the other run's write is kept");
    assert!(st.native["checkout-5xx"].in_alarm());
}

/// Defect: routes could name topics the stack cannot publish to, found only when the outbox
/// stuck. The function refuses such a rules file at load, naming file and line.
#[tokio::test]
async fn a_route_to_a_topic_outside_the_stack_is_a_load_error() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let rules = format!(
        "policy:\n  routes:\n    - match: {{team: checkout}}\n      topic_arn: arn:aws:sns:us-east-1:123456789012:elsewhere\n{RULES}"
    );
    let cfg = config(
        &store,
        &rules,
        &["arn:aws:sns:us-east-1:123456789012:payments"],
    )
    .await;
    let event =
        json!({"vigil": "scheduled", "scheduled_time": "2026-11-25T08:00:00Z", "attempt": "1"});
    let err = handle_event(
        &SeriesReader::default(),
        &notifier,
        &store,
        &cfg,
        &event,
        &call("s", t0()),
    )
    .await
    .expect_err("refused")
    .to_string();
    assert!(err.contains("s3://b/rules.yaml:4:"), "{err}");
    assert!(
        err.contains("elsewhere") && err.contains("AlertRouteTopicArns"),
        "{err}"
    );
    let cfg = config(
        &store,
        &rules,
        &["arn:aws:sns:us-east-1:123456789012:elsewhere"],
    )
    .await;
    handle_event(
        &SeriesReader::default(),
        &notifier,
        &store,
        &cfg,
        &event,
        &call("s", t0()),
    )
    .await
    .expect("allowed once the stack may publish there");
}

/// Alarms that did not opt in are ignored and counted, not paged.
#[tokio::test]
async fn alarms_that_did_not_opt_in_are_ignored() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let cfg = config(&store, RULES, &[]).await;
    let alarm = alarm_event(
        "checkout-5xx",
        "ALARM",
        "2026-11-25T08:01:00.000+0000",
        "Vigil's own ops alarm",
    );
    let out = handle_event(
        &SeriesReader::default(),
        &notifier,
        &store,
        &cfg,
        &alarm,
        &call("x", t0()),
    )
    .await
    .expect("handled");
    assert_eq!(out["outcome"], "ignored");
    assert!(notifier.published().is_empty());
}

/// A big outage: 2,000 series change at once. Delivery is linear: 200 batch calls of ten,
/// and the state is written a bounded number of times (claim, one progress write per wave),
/// not once per message.
#[tokio::test]
async fn a_big_outage_is_delivered_in_batches_with_few_state_writes() {
    let memory = MemoryStore::default();
    let store = FaultyStore::new(&memory, StoreFaults::default(), 1);
    let notifier = RecordingNotifier::default();
    let (rules, reader) = outage(2_000);
    let s = run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    assert_eq!(s.sent.len(), 2_000);
    assert_eq!(*notifier.calls.lock().expect("lock"), 200);
    let writes = store.written.lock().expect("lock").len();
    assert!(writes <= 3, "{writes} state writes");
}

/// A CloudWatch alarm that went to ALARM during a silence pages once the silence has ended,
/// if it is still in ALARM, as a rule does; and then resolves.
#[tokio::test]
async fn a_silenced_alarm_pages_when_the_silence_ends() {
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let mut cfg = config(&store, RULES, &[]).await;
    store
        .put(
            "b",
            "silences.json",
            br#"[{"matchers": {"alertname": "checkout-5xx"}, "ends_at": "2026-11-25T08:30:00Z",
                 "created_by": "on-call", "comment": "deploy"}]"#
                .to_vec(),
            "application/json",
        )
        .await
        .expect("put");
    cfg.silences = Some("s3://b/silences.json".parse().expect("location"));
    let reader = SeriesReader::default();
    let alarm = alarm_event(
        "checkout-5xx",
        "ALARM",
        "2026-11-25T08:01:00.000+0000",
        "vigil: severity=page",
    );
    let out = handle_event(&reader, &notifier, &store, &cfg, &alarm, &call("x", t0()))
        .await
        .expect("handled");
    assert_eq!(out["muted"]["muted_by"], "silence", "{out}");
    let scheduled = |at: &str| json!({"vigil": "scheduled", "scheduled_time": at, "attempt": "1"});
    handle_event(
        &reader,
        &notifier,
        &store,
        &cfg,
        &scheduled("2026-11-25T08:10:00Z"),
        &call("s1", t0()),
    )
    .await
    .expect("run");
    assert!(notifier.published().is_empty(), "still silenced");
    let later = t("2026-11-25T08:31:00Z");
    handle_event(
        &reader,
        &notifier,
        &store,
        &cfg,
        &scheduled("2026-11-25T08:31:00Z"),
        &call("s2", later),
    )
    .await
    .expect("run");
    handle_event(
        &reader,
        &notifier,
        &store,
        &cfg,
        &scheduled("2026-11-25T08:32:00Z"),
        &call("s3", later),
    )
    .await
    .expect("run");
    assert_eq!(subjects(&notifier).len(), 1, "paged once the silence ended");
    let ok = alarm_event(
        "checkout-5xx",
        "OK",
        "2026-11-25T08:40:00.000+0000",
        "vigil: severity=page",
    );
    handle_event(&reader, &notifier, &store, &cfg, &ok, &call("y", later))
        .await
        .expect("handled");
    let statuses: Vec<Option<String>> = notifier
        .published()
        .iter()
        .map(|p| p.attribute("status").map(str::to_owned))
        .collect();
    assert_eq!(statuses, [Some("firing".into()), Some("resolved".into())]);
}

/// A silence that cannot be read (a broken expression), or a silences object that is not
/// JSON, is skipped: the others mute what they match, and the paging goes on.
#[tokio::test]
async fn an_unreadable_silence_never_stops_the_paging() {
    for (body, muted) in [
        (
            r#"{"version": 1, "silences": [
                {"id": "a", "matchers": ["alertname=~\"High.*\""], "ends_at": "2026-11-25T09:00:00Z"},
                {"id": "b", "matchers": ["alertname=~\"(\""], "ends_at": "2026-11-25T09:00:00Z"}]}"#,
            true,
        ),
        ("[{\"matchers\": ", false),
    ] {
        let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
        let mut cfg = config(&store, RULES, &[]).await;
        store
            .put(
                "b",
                "silences.json",
                body.as_bytes().to_vec(),
                "application/json",
            )
            .await
            .expect("put");
        cfg.silences = Some("s3://b/silences.json".parse().expect("location"));
        let mut reader = SeriesReader::default();
        latency(&mut reader, "api", t0(), true);
        let ev = json!({"vigil": "scheduled", "scheduled_time": t0().to_rfc3339(), "attempt": "1"});
        let out = handle_event(&reader, &notifier, &store, &cfg, &ev, &call("x", t0()))
            .await
            .expect("the run goes on");
        assert_eq!(out["rules"][0]["state"], "firing", "{out}");
        assert_eq!(
            notifier.published().is_empty(),
            muted,
            "{body}: the readable silence mutes, a broken file mutes nothing"
        );
    }
}

/// A route muted out of hours (Alertmanager's `mute_time_intervals`): the alert that fires at
/// night sends nothing, keeps firing, and pages at the first run of the working day.
#[tokio::test]
async fn a_route_muted_out_of_hours_pages_when_the_day_starts() {
    let rules = format!(
        "policy:\n  time_intervals:\n    - name: night\n      time_intervals:\n        - {{times: [{{start_time: \"00:00\", end_time: \"08:00\"}}], location: Europe/Berlin}}\n  routes:\n    - {{match: {{team: checkout}}, topic_arn: \"{DEFAULT_TOPIC}\", mute_time_intervals: [night]}}\n{RULES}"
    );
    let (notifier, store) = (RecordingNotifier::default(), MemoryStore::default());
    let cfg = config(&store, &rules, &[]).await;
    let mut reader = SeriesReader::default();
    // 06:50 UTC is 07:50 in Berlin (winter): muted; 07:00 UTC is 08:00: the day has begun.
    let mut outs = Vec::new();
    for (i, at) in [
        "2026-11-25T06:50:00Z",
        "2026-11-25T06:55:00Z",
        "2026-11-25T07:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        let at = t(at);
        latency(&mut reader, "api", at, true);
        let ev = json!({"vigil": "scheduled", "scheduled_time": at.to_rfc3339(), "attempt": "1"});
        let out = handle_event(
            &reader,
            &notifier,
            &store,
            &cfg,
            &ev,
            &call(&format!("r{i}"), at),
        )
        .await
        .expect("run");
        outs.push(out);
    }
    assert_eq!(outs[0]["rules"][0]["state"], "firing");
    assert_eq!(
        outs[0]["rules"][0]["muted"]["muted_by"], "time_interval",
        "{}",
        outs[0]
    );
    assert_eq!(outs[0]["rules"][0]["muted"]["interval"], "night");
    assert_eq!(outs[1]["rules"][0]["muted"]["muted_by"], "time_interval");
    assert_eq!(subjects(&notifier).len(), 1, "one page, at 08:00 in Berlin");
    assert_eq!(
        outs[2]["sent"].as_object().map(|s| s.len()),
        Some(1),
        "sent by the first run of the day: {}",
        outs[2]
    );
}

/// A route to an interval that is not defined, or an interval that cannot hold, fails the
/// load with its place.
#[test]
fn unknown_or_invalid_time_intervals_are_load_errors() {
    for (policy, want) in [
        (
            format!(
                "policy:\n  routes:\n    - {{match: {{team: x}}, topic_arn: \"{DEFAULT_TOPIC}\", mute_time_intervals: [nope]}}\n"
            ),
            "no time interval named \"nope\"",
        ),
        (
            "policy:\n  time_intervals:\n    - {name: n, time_intervals: [{weekdays: [funday]}]}\n"
                .to_owned(),
            "policy.time_intervals[0]: n: time_intervals[0]: weekdays",
        ),
    ] {
        let err = vigil_alert::rules::load_file("r.yaml", &format!("{policy}{RULES}"))
            .expect_err(&policy)
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}

/// A silence added while an alert is firing and notified mutes its repeats, never its
/// resolution: the receivers close what they opened.
#[tokio::test]
async fn a_resolution_is_sent_even_under_a_silence() {
    let (mut reader, notifier, store) = (
        SeriesReader::default(),
        RecordingNotifier::default(),
        MemoryStore::default(),
    );
    let rules = [rule()];
    latency(&mut reader, "api", t0(), true);
    run(
        &reader,
        &notifier,
        &store,
        plan(&rules, &NO_POLICY),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    let silences = [Silence {
        id: "s".into(),
        matchers: vec![vigil_alert::silence::Matcher::equal(
            "alertname",
            "HighLatency",
        )],
        starts_at: None,
        ends_at: t0() + Duration::hours(1),
        created_by: "on-call".into(),
        comment: "looking".into(),
        created_at: None,
    }];
    let later = t0() + Duration::minutes(5);
    latency(&mut reader, "api", later, false);
    let p = vigil_alert::Plan {
        silences: &silences,
        ..plan(&rules, &NO_POLICY)
    };
    let out = run(&reader, &notifier, &store, p, &inv("b", later))
        .await
        .expect("run");
    assert_eq!(out.rules[0].transition, Some(Status::Resolved));
    let statuses: Vec<Option<String>> = notifier
        .published()
        .iter()
        .map(|p| p.attribute("status").map(str::to_owned))
        .collect();
    assert_eq!(statuses, [Some("firing".into()), Some("resolved".into())]);
}
