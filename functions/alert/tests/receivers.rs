//! Receivers through the real run: a page reaches every config of its route's receiver (chat
//! and SMS topics, PagerDuty, a webhook) and resolves there; a receiver that refuses is set
//! aside and announced without holding back the others; a resolve never overtakes its trigger.

mod common;

use chrono::Duration;
use common::*;
use serde_json::Value;
use vigil_alert::policy::Policy;
use vigil_alert::run;
use vigil_shared::SecretRef;
use vigil_shared::config::parse_yaml;
use vigil_shared::testing::{HttpFaults, MemoryStore, RecordingNotifier, SeriesReader};

const CHAT: &str = "arn:aws:sns:us-east-1:123456789012:payments-chat";
const SMS: &str = "arn:aws:sns:us-east-1:123456789012:payments-sms";
const PAGERDUTY: &str = "http://127.0.0.1:9/v2/enqueue";
const WEBHOOK: &str = "http://127.0.0.1:9/hook";
const ROUTING_KEY: &str = "R0UT1NGK3Y00000000000000000000AB";

fn policy() -> Policy {
    parse_yaml(
        "p.yaml",
        &format!(
            "receivers:\n\
             - name: checkout\n\
             \x20 sns_configs: [{{topic_arn: '{CHAT}', format: chat}}, {{topic_arn: '{SMS}', format: sms}}]\n\
             \x20 pagerduty_configs: [{{routing_key: {{ssm_parameter: /vigil/receivers/pd-checkout}}, url: '{PAGERDUTY}'}}]\n\
             \x20 webhook_configs: [{{url: '{WEBHOOK}'}}]\n\
             routes: [{{match: {{team: checkout}}, receiver: checkout}}]\n"
        ),
    )
    .expect("policy")
}

fn routing_key() -> SecretRef {
    SecretRef::SsmParameter("/vigil/receivers/pd-checkout".into())
}

/// A notifier holding the routing key, whose every post is answered with `status`.
fn answering(status: u16) -> RecordingNotifier {
    RecordingNotifier {
        http_faults: HttpFaults {
            status: Some(status),
            ..HttpFaults::default()
        },
        ..RecordingNotifier::default()
    }
    .with_secret(&routing_key(), ROUTING_KEY)
}

/// One run at t0, the alert firing.
async fn fire(notifier: &RecordingNotifier, store: &MemoryStore) -> vigil_alert::RunSummary {
    let mut reader = SeriesReader::default();
    let rules = [rule()];
    let policy = policy();
    latency(&mut reader, "api", t0(), true);
    run(
        &reader,
        notifier,
        store,
        plan(&rules, &policy),
        &inv("a", t0()),
    )
    .await
    .expect("a refusing receiver fails nothing")
}

/// Fires at t0, resolves two minutes later, through `notifiers` (one per run).
async fn fire_and_resolve(notifiers: [&RecordingNotifier; 2], store: &MemoryStore) {
    let mut reader = SeriesReader::default();
    let rules = [rule()];
    let policy = policy();
    latency(&mut reader, "api", t0(), true);
    run(
        &reader,
        notifiers[0],
        store,
        plan(&rules, &policy),
        &inv("a", t0()),
    )
    .await
    .expect("run");
    let t2 = t0() + Duration::minutes(2);
    latency(&mut reader, "api", t2, false);
    run(
        &reader,
        notifiers[1],
        store,
        plan(&rules, &policy),
        &inv("b", t2),
    )
    .await
    .expect("run");
}

#[tokio::test]
async fn a_page_reaches_every_config_of_its_receiver_and_resolves_there() {
    let notifier = RecordingNotifier::default().with_secret(&routing_key(), ROUTING_KEY);
    let store = MemoryStore::default();
    fire_and_resolve([&notifier, &notifier], &store).await;

    // Chat: the custom notification schema, firing and resolved in one thread.
    let chat: Vec<Value> = notifier
        .published()
        .iter()
        .filter(|p| p.topic_arn == CHAT)
        .map(|p| serde_json::from_str(&p.notification.message).expect("chat JSON"))
        .collect();
    assert_eq!(chat.len(), 2);
    assert_eq!(chat[0]["version"], "1.0");
    assert_eq!(chat[0]["source"], "custom");
    assert!(
        chat[0]["content"]["title"]
            .as_str()
            .expect("title")
            .contains("[FIRING] HighLatency")
    );
    assert_eq!(
        chat[0]["content"]["nextSteps"][0],
        "Follow the runbook: https://runbooks.example.com/latency"
    );
    assert_eq!(
        chat[0]["metadata"]["threadId"],
        chat[1]["metadata"]["threadId"]
    );

    // SMS: one GSM-7 message each.
    let sms: Vec<String> = notifier
        .published()
        .iter()
        .filter(|p| p.topic_arn == SMS)
        .map(|p| p.notification.message.clone())
        .collect();
    assert_eq!(sms.len(), 2);
    assert!(sms[0].starts_with("FIRING HighLatency: Checkout latency is 900 ms"));
    assert!(sms[1].starts_with("RESOLVED HighLatency"));
    // With the topic's display name (up to ten characters) and "> ", one SMS.
    assert!(sms.iter().all(|s| s.chars().count() + 10 + 2 <= 160));

    // PagerDuty: a trigger, then the resolve of the same dedup_key, with the key read.
    let posts = notifier.posted();
    let pd: Vec<&Value> = posts
        .iter()
        .filter(|p| p.url == PAGERDUTY)
        .map(|p| &p.body)
        .collect();
    assert_eq!(pd.len(), 2);
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[0]["routing_key"], ROUTING_KEY);
    assert_eq!(pd[0]["payload"]["severity"], "critical");
    assert_eq!(
        pd[0]["links"][0]["href"],
        "https://runbooks.example.com/latency"
    );
    assert_eq!(pd[1]["event_action"], "resolve");
    assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);

    // The webhook: Alertmanager's payload, firing then resolved, one fingerprint.
    let hook: Vec<&Value> = posts
        .iter()
        .filter(|p| p.url == WEBHOOK)
        .map(|p| &p.body)
        .collect();
    assert_eq!(hook.len(), 2);
    assert_eq!(hook[0]["version"], "4");
    assert_eq!(hook[0]["status"], "firing");
    assert_eq!(hook[0]["receiver"], "checkout");
    assert_eq!(hook[0]["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(hook[1]["status"], "resolved");
    assert_eq!(
        hook[0]["alerts"][0]["fingerprint"],
        hook[1]["alerts"][0]["fingerprint"]
    );
    assert_eq!(
        hook[0]["alerts"][0]["startsAt"],
        hook[1]["alerts"][0]["startsAt"]
    );

    // Nothing went to the default topic, and nothing is left owed.
    assert!(
        notifier
            .published()
            .iter()
            .all(|p| p.topic_arn != DEFAULT_TOPIC)
    );
    assert!(state(&store).outbox.is_empty());
}

#[tokio::test]
async fn a_receiver_that_refuses_is_set_aside_and_announced_and_blocks_no_other() {
    let notifier = answering(400);
    let store = MemoryStore::default();
    let summary = fire(&notifier, &store).await;
    assert_eq!(summary.set_aside.len(), 2, "{:?}", summary.set_aside);
    // Chat and SMS were delivered; the announcement names both refused configs.
    let topics: Vec<String> = notifier
        .published()
        .iter()
        .map(|p| p.topic_arn.clone())
        .collect();
    assert!(topics.contains(&CHAT.to_owned()) && topics.contains(&SMS.to_owned()));
    let announced: Vec<String> = notifier
        .published()
        .iter()
        .filter(|p| p.attribute("alertname") == Some("VigilUndeliverable"))
        .map(|p| p.notification.message.clone())
        .collect();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert!(
        announced
            .iter()
            .any(|m| m.contains("pagerduty:checkout#0") && m.contains("HTTP 400"))
    );
    assert!(announced.iter().any(|m| m.contains("webhook:checkout#0")));
    assert!(state(&store).outbox.is_empty());
}

#[tokio::test]
async fn a_routing_key_that_cannot_be_read_is_set_aside_never_sent_empty() {
    // No secret held: ParameterNotFound.
    let notifier = RecordingNotifier::default();
    let store = MemoryStore::default();
    fire_and_resolve([&notifier, &notifier], &store).await;
    assert!(
        notifier.posted().iter().all(|p| p.url != PAGERDUTY),
        "nothing is posted without its routing key"
    );
    let st = state(&store);
    let aside: Vec<&str> = st.set_aside.iter().map(|s| s.reason.as_str()).collect();
    assert!(
        aside.iter().any(|r| r.contains("ParameterNotFound")),
        "{aside:?}"
    );
    // The webhook needs no secret and got both messages.
    assert_eq!(
        notifier
            .posted()
            .iter()
            .filter(|p| p.url == WEBHOOK)
            .count(),
        2
    );
}

#[tokio::test]
async fn a_trigger_still_owed_when_its_episode_resolves_is_never_sent_after_it() {
    // PagerDuty answers 429 to every post of the first run: the trigger stays owed. In the
    // second run the alert has resolved: the resolve goes alone (a trigger after it would
    // open an incident nothing resolves), and nothing is left owed.
    let busy = RecordingNotifier {
        http_faults: HttpFaults {
            too_many: 1.0,
            ..HttpFaults::default()
        },
        ..RecordingNotifier::with_faults(Default::default(), 7)
    }
    .with_secret(&routing_key(), ROUTING_KEY);
    let calm = RecordingNotifier::default().with_secret(&routing_key(), ROUTING_KEY);
    let store = MemoryStore::default();
    fire_and_resolve([&busy, &calm], &store).await;
    assert!(busy.posted().is_empty());
    let actions: Vec<(String, Value)> = calm
        .posted()
        .iter()
        .filter(|p| p.url == PAGERDUTY)
        .map(|p| {
            (
                p.body["event_action"].to_string(),
                p.body["dedup_key"].clone(),
            )
        })
        .collect();
    assert_eq!(
        actions.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
        ["\"resolve\""]
    );
    // The webhook, refused alike in the first run, hears the resolution alone too.
    let hook: Vec<String> = calm
        .posted()
        .iter()
        .chain(busy.posted().iter())
        .filter(|p| p.url == WEBHOOK)
        .map(|p| p.body["status"].to_string())
        .collect();
    assert_eq!(hook, ["\"resolved\""]);
    let st = state(&store);
    assert!(st.outbox.is_empty());
    assert!(st.set_aside.is_empty(), "{:?}", st.set_aside);
}

#[tokio::test]
async fn a_refused_routing_key_is_read_again_once() {
    // PagerDuty answers 400 to every post: the key is read again once, then the message is
    // set aside; it is not read again for every post.
    let notifier = answering(400);
    notifier.rotated.lock().expect("lock").insert(
        routing_key().parameter_name(),
        "R0TAT3DK3Y00000000000000000000AB".into(),
    );
    let store = MemoryStore::default();
    fire(&notifier, &store).await;
    assert_eq!(*notifier.forgotten.lock().expect("lock"), 1);
    let st = state(&store);
    assert!(
        st.set_aside
            .iter()
            .any(|s| s.topic_arn == "pagerduty:checkout#0" && s.reason.contains("HTTP 400")),
        "{:?}",
        st.set_aside
    );
}

#[test]
fn receivers_are_checked_when_the_rules_are_loaded() {
    let load = |policy: &str| {
        let text = format!(
            "groups: []\npolicy:\n{}",
            policy
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        );
        vigil_alert::load_file("rules.yaml", &text).map(|_| ())
    };
    let written = load(
        "receivers: [{name: p, pagerduty_configs: [{routing_key: 0123456789abcdef0123456789abcdef}]}]\n\
         routes: [{match: {team: a}, receiver: p}]",
    )
    .expect_err("a written routing key");
    assert!(written.to_string().contains("never written"), "{written}");
    let unknown = load("routes: [{match: {team: a}, receiver: nobody}]").expect_err("unknown");
    assert!(
        unknown.to_string().contains("no receiver named \"nobody\""),
        "{unknown}"
    );
    let both = load(
        "receivers: [{name: p, webhook_configs: [{url: 'https://hooks.example.com/x'}]}]\n\
         routes: [{match: {team: a}, receiver: p, topic_arn: 'arn:aws:sns:us-east-1:1:t'}]",
    )
    .expect_err("both");
    assert!(both.to_string().contains("not both"), "{both}");
    let plain = load(
        "receivers: [{name: p, webhook_configs: [{url: 'http://hooks.example.com/x'}]}]\n\
         routes: [{match: {team: a}, receiver: p}]",
    )
    .expect_err("plain HTTP");
    assert!(plain.to_string().contains("plain HTTP"), "{plain}");
    let outside = load(
        "receivers: [{name: p, pagerduty_configs: [{routing_key: {ssm_parameter: /team/pd}}]}]\n\
         routes: [{match: {team: a}, receiver: p}]",
    )
    .expect_err("a parameter the role may not read");
    assert!(
        outside
            .to_string()
            .contains("outside what the stack's role may read"),
        "{outside}"
    );
    let twice = load(
        "receivers: [{name: p, sns_configs: [{topic_arn: 'arn:aws:sns:us-east-1:1:t'}, {topic_arn: 'arn:aws:sns:us-east-1:1:t'}]}]\n\
         routes: [{match: {team: a}, receiver: p}]",
    )
    .expect_err("a topic twice");
    assert!(twice.to_string().contains("twice"), "{twice}");
    let empty = load("receivers: [{name: p}]").expect_err("no configs");
    assert!(empty.to_string().contains("has no sns_configs"), "{empty}");
    load(
        "receivers: [{name: p, pagerduty_configs: [{routing_key: {secrets_manager: vigil/receivers/pd}}]}]\n\
         routes: [{match: {team: a}, receiver: p}]",
    )
    .expect("valid");
}
