//! PagerDuty's Events API v2 (<https://developer.pagerduty.com/docs/events-api-v2/overview>):
//! a firing message is a `trigger`, a resolution a `resolve`, both with the episode as
//! `dedup_key`. PagerDuty adds a trigger whose key names an open alert to that alert, so a
//! retried or repeated trigger never opens a second incident, and the resolve closes the one
//! the trigger opened.
//!
//! Answers: 202 accepted; 400 an invalid event (never retried: set aside and announced); 429
//! too many events for the routing key, and 5xx, retried with backoff; any other 4xx (an
//! unknown or disabled integration) set aside.

use serde_json::{Value, json};
use vigil_shared::notify::{cut, fnv1a};
use vigil_shared::{Refusal, Reply};

use crate::outbox::Owed;
use crate::receiver::facts::Facts;
use crate::state::Status;

/// The events endpoint (US service region).
pub const URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The longest `dedup_key` PagerDuty takes.
pub const DEDUP_KEY_MAX: usize = 255;
/// The longest `payload.summary` PagerDuty takes.
pub const SUMMARY_MAX: usize = 1_024;

/// The episode as a `dedup_key`: itself, or when longer than PagerDuty takes, its start and a
/// hash of the whole.
pub fn dedup_key(episode: &str) -> String {
    if episode.len() <= DEDUP_KEY_MAX {
        return episode.to_owned();
    }
    let hash = format!("#{:016x}", fnv1a(episode.bytes()));
    format!("{}{hash}", cut(episode, DEDUP_KEY_MAX - hash.len()))
}

/// PagerDuty's severity for a `severity` label: `critical`, `error`, `warning` or `info`;
/// Vigil's `page` is critical and `ticket` a warning; anything else is an error.
pub fn severity(label: Option<&str>) -> &'static str {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "page" | "emergency" | "fatal") => "critical",
        Some("warning" | "warn" | "ticket") => "warning",
        Some("info" | "informational" | "none") => "info",
        _ => "error",
    }
}

/// The event for an owed message.
pub fn event(owed: &Owed, routing_key: &str) -> Value {
    let key = dedup_key(owed.episode());
    if owed.status == Status::Resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": key,
        });
    }
    let facts = Facts::of(owed);
    let summary = {
        let s = owed.notification.subject.as_str();
        if s.len() > SUMMARY_MAX {
            format!("{}...", cut(s, SUMMARY_MAX - 3))
        } else {
            s.to_owned()
        }
    };
    let source = ["instance", "service", "job", "FunctionName", "source"]
        .iter()
        .find_map(|l| facts.labels.get(*l).filter(|v| !v.is_empty()))
        .cloned()
        .unwrap_or_else(|| "vigil".to_owned());
    let mut payload = json!({
        "summary": summary,
        "source": source,
        "severity": severity(facts.labels.get("severity").map(String::as_str)),
        "class": facts.alertname,
        "custom_details": {
            "labels": facts.labels,
            "annotations": facts.annotations,
            "text": owed.notification.message,
            "details": owed.notification.details,
        },
    });
    if let Some(at) = facts.at {
        payload["timestamp"] = json!(at);
    }
    if let Some(service) = facts.labels.get("service") {
        payload["component"] = json!(service);
    }
    if let Some(team) = facts.labels.get("team") {
        payload["group"] = json!(team);
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": payload,
        "client": "Vigil",
    });
    if let Some(url) = facts.runbook() {
        event["links"] = json!([{"href": url, "text": "Runbook"}]);
    }
    event
}

/// What PagerDuty's answer means for the message: accepted (its `dedup_key`), or refused.
pub fn outcome(reply: &Reply) -> Result<String, Refusal> {
    let detail = || {
        let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("").to_owned();
        let errors = body["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        format!(
            "PagerDuty HTTP {}: {message}{}{errors}",
            reply.status,
            if errors.is_empty() { "" } else { ": " }
        )
    };
    match reply.status {
        200..=299 => {
            let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
            Ok(body["dedup_key"].as_str().unwrap_or("accepted").to_owned())
        }
        status => Err(crate::receiver::refusal(status, detail())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::tests::owed;

    #[test]
    fn a_trigger_and_its_resolve_share_the_episode_as_dedup_key() {
        let firing = owed("CheckoutDown", "Checkout is failing");
        let mut resolved = firing.clone();
        resolved.status = Status::Resolved;
        resolved.key = "CheckoutDown/1795593600/resolved".into();
        let t = event(&firing, "R0UT1NGK3Y0000000000000000000000");
        let r = event(&resolved, "R0UT1NGK3Y0000000000000000000000");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(t["dedup_key"], "CheckoutDown/1795593600");
        assert_eq!(t["dedup_key"], r["dedup_key"]);
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["class"], "CheckoutDown");
        assert!(
            t["payload"]["summary"]
                .as_str()
                .expect("test value")
                .starts_with("[FIRING]")
        );
        assert!(r.get("payload").is_none());
    }

    #[test]
    fn a_long_episode_is_a_dedup_key_pagerduty_takes() {
        let long = format!("Rule/{}/1795593600", "series=x,".repeat(60));
        let key = dedup_key(&long);
        assert!(key.len() <= DEDUP_KEY_MAX);
        assert_ne!(key, dedup_key(&format!("{long}1")));
        assert_eq!(dedup_key("short/1"), "short/1");
    }

    #[test]
    fn answers_are_read_as_the_events_api_documents_them() {
        let reply = |status: u16, body: &str| Reply {
            status,
            retry_after: None,
            body: body.to_owned(),
        };
        assert_eq!(
            outcome(&reply(
                202,
                r#"{"status":"success","message":"Event processed","dedup_key":"k"}"#
            )),
            Ok("k".to_owned())
        );
        let invalid = outcome(&reply(
            400,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["'routing_key' is missing or blank"]}"#,
        ));
        assert!(matches!(&invalid, Err(Refusal::Permanent(r)) if r.contains("routing_key")));
        assert!(matches!(
            outcome(&reply(429, "")),
            Err(Refusal::Retryable(_))
        ));
        assert!(matches!(
            outcome(&reply(503, "")),
            Err(Refusal::Retryable(_))
        ));
        assert!(matches!(
            outcome(&reply(404, "")),
            Err(Refusal::Permanent(_))
        ));
    }
}
