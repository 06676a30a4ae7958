//! Chat: the custom notification of Amazon Q Developer in chat applications (formerly AWS
//! Chatbot), which renders an SNS message whose body is this JSON in Slack, Microsoft Teams
//! and Amazon Chime ("Custom notifications using Amazon Q Developer in chat applications",
//! <https://docs.aws.amazon.com/chatbot/latest/adminguide/custom-notifs.html>):
//! `version` "1.0" and `source` "custom" are required; `content` holds `textType`
//! (`client-markdown`), `title`, `description`, `nextSteps` and `keywords`; `metadata` holds
//! `threadId` (the episode, so a resolution lands in the thread of its page), `summary`,
//! `eventType` and `additionalContext`.

use serde_json::json;
use vigil_shared::Notification;
use vigil_shared::notify::cut;

use crate::outbox::{Kind, Owed};
use crate::receiver::facts::Facts;
use crate::state::Status;

/// The longest title kept.
pub const TITLE_MAX: usize = 250;
/// The longest description kept (bytes).
pub const DESCRIPTION_MAX: usize = 8_000;
/// Keywords kept.
pub const KEYWORDS_MAX: usize = 6;

/// The custom notification for an owed message.
pub fn body(owed: &Owed) -> serde_json::Value {
    let facts = Facts::of(owed);
    let n = &owed.notification;
    let icon = match owed.status {
        Status::Firing => ":rotating_light:",
        Status::Resolved => ":white_check_mark:",
    };
    let mut title = format!("{icon} {}", n.subject);
    if title.len() > TITLE_MAX {
        title = format!("{}...", cut(&title, TITLE_MAX - 3));
    }
    let mut description = n.message.clone();
    if description.len() > DESCRIPTION_MAX {
        description = format!("{}\n[cut]", cut(&description, DESCRIPTION_MAX - 6));
    }
    let mut next_steps = Vec::new();
    match owed.status {
        Status::Firing => {
            if let Some(url) = facts.runbook() {
                next_steps.push(format!("Follow the runbook: {url}"));
            }
            if let Some(url) = facts.annotations.get("dashboard_url") {
                next_steps.push(format!("Look at the dashboard: {url}"));
            }
            if owed.kind == Kind::Alert {
                next_steps.push(format!(
                    "To silence it while you work: vigil silence add alertname={} --duration 2h \
                     --comment \"...\"",
                    facts.alertname
                ));
            }
        }
        Status::Resolved => next_steps.push("Resolved: nothing left to do.".to_owned()),
    }
    let mut keywords = vec![owed.status.as_str().to_uppercase()];
    for label in ["severity", "team", "service", "namespace", "env"] {
        if let Some(v) = facts.labels.get(label).filter(|v| !v.is_empty()) {
            keywords.push(v.clone());
        }
    }
    keywords.truncate(KEYWORDS_MAX);
    json!({
        "version": "1.0",
        "source": "custom",
        "id": owed.key,
        "content": {
            "textType": "client-markdown",
            "title": title,
            "description": description,
            "nextSteps": next_steps,
            "keywords": keywords,
        },
        "metadata": {
            "threadId": owed.episode(),
            "summary": cut(&facts.summary(&n.subject), 1_000),
            "eventType": "VigilAlert",
            "additionalContext": facts.labels,
        },
    })
}

/// The message a chat topic publishes: the custom notification as the whole body (the
/// integration reads no per-protocol structure), with the message's attributes for filters.
pub fn render(owed: &Owed) -> Notification {
    Notification {
        subject: owed.notification.subject.clone(),
        message: body(owed).to_string(),
        attributes: owed.notification.attributes.clone(),
        details: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::tests::owed;

    #[test]
    fn a_page_in_chat_has_the_schema_fields_and_its_runbook() {
        let mut o = owed("CheckoutDown", "Checkout is failing");
        o.notification
            .details
            .as_mut()
            .expect("test value")
            .as_object_mut()
            .expect("test value")
            .insert(
                "annotations".into(),
                json!({"summary": "Checkout is failing", "runbook_url": "https://runbooks.example.com/checkout"}),
            );
        let b = body(&o);
        assert_eq!(b["version"], "1.0");
        assert_eq!(b["source"], "custom");
        assert_eq!(b["content"]["textType"], "client-markdown");
        assert!(
            b["content"]["title"]
                .as_str()
                .expect("test value")
                .contains("[FIRING] CheckoutDown")
        );
        assert_eq!(
            b["content"]["nextSteps"][0],
            "Follow the runbook: https://runbooks.example.com/checkout"
        );
        assert_eq!(b["metadata"]["threadId"], "CheckoutDown/1795593600");
        assert_eq!(b["content"]["keywords"][0], "FIRING");
        let rendered = render(&o);
        assert!(rendered.details.is_none());
        let parsed: serde_json::Value =
            serde_json::from_str(&rendered.message).expect("test value");
        assert_eq!(parsed, b);
    }

    #[test]
    fn a_resolution_lands_in_the_thread_of_its_page() {
        let firing = owed("CheckoutDown", "x");
        let mut resolved = firing.clone();
        resolved.status = Status::Resolved;
        resolved.key = "CheckoutDown/1795593600/resolved".into();
        assert_eq!(
            body(&firing)["metadata"]["threadId"],
            body(&resolved)["metadata"]["threadId"]
        );
        assert_eq!(
            body(&resolved)["content"]["nextSteps"][0],
            "Resolved: nothing left to do."
        );
    }

    #[test]
    fn a_huge_message_is_cut_to_the_limits() {
        let mut o = owed("CheckoutDown", "x");
        o.notification.message = "é".repeat(50_000);
        o.notification.subject = "s".repeat(1_000);
        let b = body(&o);
        assert!(b["content"]["title"].as_str().expect("test value").len() <= TITLE_MAX);
        assert!(
            b["content"]["description"]
                .as_str()
                .expect("test value")
                .len()
                <= DESCRIPTION_MAX
        );
    }
}
