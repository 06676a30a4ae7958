//! Notifications: the [`Notifier`] trait and its SNS `Publish` implementation.

use std::future::Future;

use aws_sdk_sns::types::MessageAttributeValue;

use crate::limits::{SNS_MAX_MESSAGE_ATTRIBUTES, SNS_MAX_MESSAGE_BYTES, SNS_MAX_SUBJECT_LEN};
use crate::{Error, Result};

/// One message for people (subject, text) and for machines (attributes that subscriptions can
/// filter on).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    pub subject: String,
    pub message: String,
    /// String attributes, at most [`SNS_MAX_MESSAGE_ATTRIBUTES`].
    pub attributes: Vec<(String, String)>,
    /// A JSON body for machines. When set, the message is published with
    /// `MessageStructure: json`: SQS, Lambda and HTTP(S) subscribers receive this object (with
    /// `subject` and `text` added), email and SMS subscribers the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl Notification {
    /// Checks the message against SNS's limits and returns it with a subject SNS accepts:
    /// one line of printable ASCII, at most [`SNS_MAX_SUBJECT_LEN`] characters.
    pub fn sanitized(mut self) -> Result<Self> {
        self.subject = subject_line(&self.subject);
        if let Some(serde_json::Value::Object(details)) = &mut self.details {
            details.insert("subject".into(), self.subject.clone().into());
            details.insert("text".into(), self.message.clone().into());
        }
        if self.attributes.len() > SNS_MAX_MESSAGE_ATTRIBUTES {
            return Err(Error::InvalidInput(format!(
                "{} message attributes; SNS takes at most {SNS_MAX_MESSAGE_ATTRIBUTES}",
                self.attributes.len()
            )));
        }
        let size = self.wire_message().len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>();
        if size > SNS_MAX_MESSAGE_BYTES {
            return Err(Error::InvalidInput(format!(
                "message of {size} bytes; SNS takes at most {SNS_MAX_MESSAGE_BYTES}"
            )));
        }
        Ok(self)
    }
}

impl Notification {
    /// The `Message` parameter: the text, or with [`Notification::details`] the per-protocol
    /// JSON structure.
    pub fn wire_message(&self) -> String {
        match &self.details {
            None => self.message.clone(),
            Some(details) => {
                let machine = details.to_string();
                serde_json::json!({
                    "default": self.message,
                    "email": self.message,
                    "email-json": machine,
                    "sms": self.subject,
                    "sqs": machine,
                    "lambda": machine,
                    "http": machine,
                    "https": machine,
                    "firehose": machine,
                })
                .to_string()
            }
        }
    }
}

/// A subject SNS accepts: printable ASCII on one line, cut to the limit with an ellipsis.
pub fn subject_line(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            '\n' | '\r' | '\t' => ' ',
            _ => '?',
        })
        .collect();
    let clean = clean.trim();
    if clean.len() <= SNS_MAX_SUBJECT_LEN {
        clean.to_owned()
    } else {
        format!("{}...", &clean[..SNS_MAX_SUBJECT_LEN - 3])
    }
}

/// Sends notifications to a topic.
pub trait Notifier: Send + Sync {
    /// Publishes and returns the message id the service assigned.
    fn publish(
        &self,
        topic_arn: &str,
        notification: &Notification,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// [`Notifier`] on SNS `Publish`.
#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        Self { client }
    }

    /// Builds the client from the shared SDK configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_sns::Client::new(conf))
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, topic_arn: &str, notification: &Notification) -> Result<String> {
        let n = notification.clone().sanitized()?;
        let mut request = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(&n.subject)
            .message(n.wire_message());
        if n.details.is_some() {
            request = request.message_structure("json");
        }
        for (name, value) in n.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| Error::InvalidInput(format!("message attribute {name}: {e}")))?;
            request = request.message_attributes(name, attribute);
        }
        let out = request
            .send()
            .await
            .map_err(|e| Error::aws("SNS", "Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subject_is_one_ascii_line_within_the_limit() {
        assert_eq!(subject_line("CPU high\non api"), "CPU high on api");
        assert_eq!(subject_line("température"), "temp?rature");
        let long = subject_line(&"x".repeat(300));
        assert_eq!(long.len(), SNS_MAX_SUBJECT_LEN);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn oversized_messages_are_refused() {
        let n = Notification {
            subject: "s".into(),
            message: "m".repeat(SNS_MAX_MESSAGE_BYTES + 1),
            attributes: vec![],
            details: None,
        };
        assert!(matches!(n.sanitized(), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn details_go_to_machine_protocols_and_text_to_people() {
        let n = Notification {
            subject: "[FIRING] X".into(),
            message: "X is firing".into(),
            attributes: vec![],
            details: Some(serde_json::json!({"status": "firing"})),
        }
        .sanitized()
        .expect("fits");
        let wire: serde_json::Value = serde_json::from_str(&n.wire_message()).expect("JSON");
        assert_eq!(wire["default"], "X is firing");
        assert_eq!(wire["email"], "X is firing");
        let sqs: serde_json::Value =
            serde_json::from_str(wire["sqs"].as_str().expect("sqs")).expect("JSON");
        assert_eq!(sqs["status"], "firing");
        assert_eq!(sqs["text"], "X is firing");
        assert_eq!(sqs["subject"], "[FIRING] X");
    }

    proptest! {
        #[test]
        fn any_subject_becomes_acceptable(s in ".{0,400}") {
            let line = subject_line(&s);
            prop_assert!(line.len() <= SNS_MAX_SUBJECT_LEN);
            prop_assert!(line.chars().all(|c| (' '..='~').contains(&c)));
        }
    }
}
