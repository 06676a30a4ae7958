//! Receivers: where a route's notifications go besides a plain SNS topic, after
//! Alertmanager's `receivers`.
//!
//! ```yaml
//! policy:
//!   receivers:
//!     - name: payments
//!       sns_configs:
//!         - topic_arn: arn:aws:sns:eu-west-1:123456789012:payments-chat
//!           format: chat          # text (default) | chat | sms
//!       pagerduty_configs:
//!         - routing_key: {ssm_parameter: /vigil/receivers/pagerduty-payments}
//!       webhook_configs:
//!         - url: {secrets_manager: vigil/receivers/incident-io}
//!   routes:
//!     - match: {team: payments}
//!       receiver: payments
//! ```
//!
//! A notification routed to a receiver is one message per config, each owed, leased, retried
//! and set aside on its own in the outbox ([`crate::outbox`]): a PagerDuty that refuses never
//! holds back the chat message. The messages of one episode to one PagerDuty or webhook config
//! go in the order they were owed, one at a time, so a resolve never overtakes the trigger it
//! resolves (which would leave PagerDuty an incident nobody closes).
//!
//! Each format is one file that renders an owed message and reads the endpoint's answer, and
//! touches no AWS code: [`chat`] (Amazon Q Developer in chat applications), [`sms`],
//! [`pagerduty`] (Events API v2), [`webhook`] (Alertmanager's webhook, version 4).

pub mod chat;
pub mod deliver;
pub mod facts;
pub mod pagerduty;
pub mod sms;
pub mod webhook;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use vigil_shared::SecretRef;

use crate::outbox::Owed;
use crate::policy::Policy;

/// A named set of configs a route sends to.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default)]
    pub sns_configs: Vec<SnsConfig>,
    #[serde(default)]
    pub pagerduty_configs: Vec<PagerDutyConfig>,
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
}

/// An SNS topic and the form its subscribers read.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    pub topic_arn: String,
    #[serde(default)]
    pub format: Format,
}

/// What an SNS topic's subscribers read.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The text for people (email) and the JSON details for machines (SQS, Lambda, HTTPS).
    #[default]
    Text,
    /// Amazon Q Developer in chat applications' custom notification ([`chat`]).
    Chat,
    /// One SMS ([`sms`]).
    Sms,
}

/// PagerDuty's Events API v2.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The integration's routing key, kept in Parameter Store or Secrets Manager.
    pub routing_key: Secret,
    /// The events endpoint (the EU service region: `https://events.eu.pagerduty.com/v2/enqueue`).
    #[serde(default = "pagerduty_url")]
    pub url: String,
}

fn pagerduty_url() -> String {
    pagerduty::URL.to_owned()
}

/// A webhook that takes Alertmanager's payload.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL, or (when it holds a token) where it is kept.
    pub url: Endpoint,
}

/// A secret in the rules file: only where it is kept. A value written out is refused at load.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Secret {
    Kept(SecretRef),
    Written(String),
}

/// A URL written out, or kept as a secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Endpoint {
    Url(String),
    Kept(SecretRef),
}

/// How an owed message is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Channel {
    /// To the SNS topic `topic_arn`, as text and details.
    #[default]
    Text,
    /// To the SNS topic `topic_arn`, as a chat notification.
    Chat,
    /// To the SNS topic `topic_arn`, as one SMS.
    Sms,
    /// To PagerDuty.
    PagerDuty {
        receiver: String,
        url: String,
        routing_key: SecretRef,
    },
    /// To a webhook.
    Webhook { receiver: String, url: Endpoint },
}

impl Channel {
    pub fn is_text(&self) -> bool {
        *self == Channel::Text
    }

    /// Whether it goes through SNS.
    pub fn is_sns(&self) -> bool {
        matches!(self, Channel::Text | Channel::Chat | Channel::Sms)
    }

    /// A short name for group keys and logs.
    pub fn tag(&self) -> &'static str {
        match self {
            Channel::Text => "text",
            Channel::Chat => "chat",
            Channel::Sms => "sms",
            Channel::PagerDuty { .. } => "pagerduty",
            Channel::Webhook { .. } => "webhook",
        }
    }
}

impl Receiver {
    /// Each config's destination (an SNS topic, or a name for the others) and channel, in the
    /// order of the file: SNS, PagerDuty, webhooks.
    pub fn channels(&self) -> Vec<(String, Channel)> {
        let mut out = Vec::new();
        for c in &self.sns_configs {
            let channel = match c.format {
                Format::Text => Channel::Text,
                Format::Chat => Channel::Chat,
                Format::Sms => Channel::Sms,
            };
            out.push((c.topic_arn.clone(), channel));
        }
        for (i, c) in self.pagerduty_configs.iter().enumerate() {
            if let Secret::Kept(routing_key) = &c.routing_key {
                out.push((
                    format!("pagerduty:{}#{i}", self.name),
                    Channel::PagerDuty {
                        receiver: self.name.clone(),
                        url: c.url.clone(),
                        routing_key: routing_key.clone(),
                    },
                ));
            }
        }
        for (i, c) in self.webhook_configs.iter().enumerate() {
            out.push((
                format!("webhook:{}#{i}", self.name),
                Channel::Webhook {
                    receiver: self.name.clone(),
                    url: c.url.clone(),
                },
            ));
        }
        out
    }

    /// What is wrong with it, if anything: checked when the rules are loaded.
    pub fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() {
            return Some("a receiver needs a name".to_owned());
        }
        if self.sns_configs.is_empty()
            && self.pagerduty_configs.is_empty()
            && self.webhook_configs.is_empty()
        {
            return Some(format!(
                "receiver {:?} has no sns_configs, pagerduty_configs or webhook_configs; to keep \
                 alerts quiet, silence them",
                self.name
            ));
        }
        for (i, c) in self.sns_configs.iter().enumerate() {
            if !c.topic_arn.starts_with("arn:") {
                return Some(format!(
                    "sns_configs[{i}].topic_arn: {:?} is not an ARN",
                    c.topic_arn
                ));
            }
            // The same topic in the same form twice would send every message twice.
            if self.sns_configs[..i]
                .iter()
                .any(|o| o.topic_arn == c.topic_arn && o.format == c.format)
            {
                return Some(format!(
                    "sns_configs[{i}]: {:?} as {:?} is listed twice",
                    c.topic_arn, c.format
                ));
            }
        }
        for (i, c) in self.pagerduty_configs.iter().enumerate() {
            match &c.routing_key {
                Secret::Written(_) => {
                    return Some(format!(
                        "pagerduty_configs[{i}].routing_key: a routing key is never written in \
                         the rules file; keep it in Parameter Store or Secrets Manager and name \
                         it: routing_key: {{ssm_parameter: NAME}} or {{secrets_manager: NAME}}"
                    ));
                }
                Secret::Kept(r) => {
                    if let Some(p) = r.problem() {
                        return Some(format!("pagerduty_configs[{i}].routing_key: {p}"));
                    }
                }
            }
            if let Some(p) = url_problem(&c.url) {
                return Some(format!("pagerduty_configs[{i}].url: {p}"));
            }
        }
        for (i, c) in self.webhook_configs.iter().enumerate() {
            let p = match &c.url {
                Endpoint::Url(u) => url_problem(u),
                Endpoint::Kept(r) => r.problem(),
            };
            if let Some(p) = p {
                return Some(format!("webhook_configs[{i}].url: {p}"));
            }
        }
        None
    }

    /// The SNS topics it publishes to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.sns_configs.iter().map(|c| c.topic_arn.as_str())
    }
}

/// The refusal an endpoint's non-2xx answer amounts to: a timeout (408), too many requests
/// (429) or a server error (5xx) may pass later; any other status never will. PagerDuty's
/// Events API and Alertmanager's webhook notifier read statuses alike.
pub fn refusal(status: u16, reason: String) -> vigil_shared::Refusal {
    match status {
        408 | 429 | 500..=599 => vigil_shared::Refusal::Retryable(reason),
        _ => vigil_shared::Refusal::Permanent(reason),
    }
}

/// What is wrong with a URL to post to: it must be HTTPS (plain HTTP only to this machine,
/// for a local relay or a test).
///
/// The problem never repeats the URL, which may hold a token: only its scheme and host.
pub fn url_problem(url: &str) -> Option<String> {
    let Ok(uri) = url.parse::<vigil_shared::http::Uri>() else {
        return Some("not a URL".to_owned());
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Some(format!(
            "{} holds credentials before its host; keep such a URL as a secret",
            vigil_shared::http::host_of(url)
        ));
    }
    let host = uri.host().unwrap_or_default();
    let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => None,
        Some("http") if local => None,
        Some("http") => Some(format!(
            "{} is plain HTTP; a receiver is reached over HTTPS",
            vigil_shared::http::host_of(url)
        )),
        _ => Some(format!(
            "{} is not an https:// URL",
            vigil_shared::http::host_of(url)
        )),
    }
}

/// The messages an owed notification becomes: itself, when its route names no receiver (or
/// names a topic); one per config of its receiver otherwise. The first keeps the key (what a
/// run checks to owe a message once); the others get the key with the receiver and config.
pub fn fan_out(policy: &Policy, owed: Owed) -> Vec<Owed> {
    let Some(receiver) = policy.receiver_for(&owed.labels) else {
        return vec![owed];
    };
    let channels = receiver.channels();
    let mut out = Vec::with_capacity(channels.len());
    for (i, (destination, channel)) in channels.into_iter().enumerate() {
        let mut copy = owed.clone();
        if i > 0 {
            copy.key = format!("{}@{}/{i}", owed.key, receiver.name);
        }
        copy.topic_arn = destination;
        copy.channel = channel;
        out.push(copy);
    }
    if out.is_empty() {
        // Loading refuses a receiver without configs; should one get here, the default topic
        // still hears the page.
        tracing::error!(receiver = %receiver.name, "a receiver without configs: sent to the default topic");
        out.push(owed);
    }
    out
}

/// Every receiver's name once, and each route's receiver known: checked at load.
pub fn check(policy: &Policy) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for (i, r) in policy.receivers.iter().enumerate() {
        if let Some(p) = r.problem() {
            return Err(format!("policy.receivers[{i}]: {p}"));
        }
        if !names.insert(r.name.as_str()) {
            return Err(format!(
                "policy.receivers[{i}]: the name {:?} is used twice",
                r.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use vigil_shared::Notification;

    use crate::outbox::{Kind, Owed};
    use crate::state::Status;

    /// A firing message of `name`, as a rule's notification has it.
    pub fn owed(name: &str, summary: &str) -> Owed {
        let labels = BTreeMap::from([
            ("alertname".to_owned(), name.to_owned()),
            ("severity".to_owned(), "page".to_owned()),
            ("team".to_owned(), "payments".to_owned()),
        ]);
        Owed {
            key: format!("{name}/1795593600/firing"),
            topic_arn: "arn:aws:sns:eu-west-1:123456789012:payments".into(),
            rule: name.to_owned(),
            severity: "page".into(),
            labels: labels.clone(),
            status: Status::Firing,
            kind: Kind::Alert,
            members: Vec::new(),
            notification: Notification {
                subject: format!("[FIRING] {name}: error ratio 0.31 > 0.05"),
                message: format!("{name} is FIRING.\n\nSummary: {summary}"),
                attributes: vec![("alertname".into(), name.to_owned())],
                details: Some(serde_json::json!({
                    "version": 1,
                    "status": "firing",
                    "alertname": name,
                    "labels": labels,
                    "annotations": {"summary": summary},
                    "at": "2026-11-25T12:05:00Z",
                    "active_since": "2026-11-25T12:00:00Z",
                })),
            },
            attempts: 0,
            lease: None,
            last_error: None,
            channel: Default::default(),
            episode: format!("{name}/1795593600"),
        }
    }
}
