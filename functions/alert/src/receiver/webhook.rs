//! Alertmanager's webhook payload, version 4 (`notify/webhook/webhook.go` and
//! `template/template.go` in prometheus/alertmanager), so a tool that takes Alertmanager's
//! webhooks takes Vigil's: `version`, `groupKey`, `truncatedAlerts`, `status`, `receiver`,
//! `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL` and `alerts`, each with
//! `status`, `labels`, `annotations`, `startsAt`, `endsAt` (the zero time while firing),
//! `generatorURL` and `fingerprint` (Prometheus' label-set fingerprint).
//!
//! One message carries one alert (its group is the alert's own labels). Answers as
//! Alertmanager reads them: 2xx accepted; 5xx (and 429) retried; any other 4xx set aside.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vigil_shared::{Refusal, Reply};

use crate::outbox::Owed;
use crate::receiver::facts::Facts;
use crate::state::Status;

/// Alertmanager's zero time, the `endsAt` of a firing alert.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Prometheus' fingerprint of a label set (`model.LabelSet.Fingerprint`): FNV-1a, 64 bits,
/// over the names in byte order, each name and value followed by the byte 0xff; 16 hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let bytes = labels.iter().flat_map(|(k, v)| {
        k.bytes()
            .chain(std::iter::once(0xff))
            .chain(v.bytes())
            .chain(std::iter::once(0xff))
    });
    format!("{:016x}", vigil_shared::notify::fnv1a(bytes))
}

/// A label set as Alertmanager prints it in a group key: `{a="1", b="2"}`.
fn printed(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// The payload for an owed message sent to `receiver`.
pub fn payload(owed: &Owed, receiver: &str) -> Value {
    let facts = Facts::of(owed);
    let status = owed.status.as_str();
    let starts = facts.starts_at.or(facts.at).map_or_else(
        || ZERO_TIME.to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let ends = match owed.status {
        Status::Firing => ZERO_TIME.to_owned(),
        Status::Resolved => facts.at.map_or_else(
            || ZERO_TIME.to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{}", printed(&facts.labels)),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": facts.labels,
        "commonLabels": facts.labels,
        "commonAnnotations": facts.annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": facts.labels,
            "annotations": facts.annotations,
            "startsAt": starts,
            "endsAt": ends,
            "generatorURL": "",
            "fingerprint": fingerprint(&facts.labels),
        }],
    })
}

/// What a webhook's answer means for the message.
pub fn outcome(reply: &Reply) -> Result<String, Refusal> {
    let detail = || {
        let body: String = reply.body.chars().take(200).collect();
        format!("webhook HTTP {}: {body}", reply.status)
    };
    match reply.status {
        200..=299 => Ok(format!("HTTP {}", reply.status)),
        status => Err(crate::receiver::refusal(status, detail())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::tests::owed;

    #[test]
    fn the_payload_is_alertmanagers_version_4() {
        let firing = owed("CheckoutDown", "Checkout is failing");
        let p = payload(&firing, "payments");
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "payments");
        let alert = &p["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "CheckoutDown");
        assert_eq!(alert["startsAt"], "2026-11-25T12:00:00Z");
        assert_eq!(alert["endsAt"], ZERO_TIME);
        assert_eq!(alert["fingerprint"].as_str().expect("test value").len(), 16);
        let mut resolved = firing.clone();
        resolved.status = Status::Resolved;
        let r = payload(&resolved, "payments");
        assert_eq!(r["alerts"][0]["fingerprint"], alert["fingerprint"]);
        assert_eq!(r["alerts"][0]["startsAt"], alert["startsAt"]);
        assert_eq!(r["groupKey"], p["groupKey"]);
    }

    #[test]
    fn the_fingerprint_is_prometheus_label_set_fingerprint() {
        // prometheus/common model: an empty label set hashes to FNV-1a's offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let one = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let two = BTreeMap::from([("a".to_owned(), "c".to_owned())]);
        assert_ne!(fingerprint(&one), fingerprint(&two));
        // Name and value are separated, so a=bc and ab=c differ.
        let x = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        let y = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }

    #[test]
    fn answers_are_read_as_alertmanager_reads_them() {
        let reply = |status: u16| Reply {
            status,
            retry_after: None,
            body: String::new(),
        };
        assert!(outcome(&reply(200)).is_ok());
        assert!(outcome(&reply(204)).is_ok());
        assert!(matches!(outcome(&reply(500)), Err(Refusal::Retryable(_))));
        assert!(matches!(outcome(&reply(429)), Err(Refusal::Retryable(_))));
        assert!(matches!(outcome(&reply(400)), Err(Refusal::Permanent(_))));
    }
}
