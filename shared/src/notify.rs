//! Notifications: the [`Notifier`] trait and its SNS `Publish` implementation.

use std::future::Future;

use aws_sdk_sns::types::MessageAttributeValue;

#[cfg(doc)]
use crate::limits::{SNS_MAX_BATCH_BYTES, SNS_MAX_BATCH_ENTRIES};
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
    pub fn sanitized(self) -> Result<Self> {
        self.into_wire().map(|(n, _)| n)
    }

    /// [`Notification::sanitized`] with its `Message` parameter, built once: what a publish
    /// sends.
    pub fn into_wire(self) -> Result<(Self, String)> {
        let s = self.prepared();
        let message = s.wire_message();
        s.check(message.len())?;
        Ok((s, message))
    }

    /// The form published: a subject SNS accepts, and the details with `subject` and `text`.
    fn prepared(mut self) -> Self {
        self.subject = subject_line(&self.subject);
        if let Some(serde_json::Value::Object(details)) = &mut self.details {
            details.insert("subject".into(), self.subject.clone().into());
            details.insert("text".into(), self.message.clone().into());
        }
        self
    }

    /// Checks the attributes and the size against SNS's limits, for a `Message` parameter of
    /// `message_len` bytes.
    fn check(&self, message_len: usize) -> Result<()> {
        if self.attributes.len() > SNS_MAX_MESSAGE_ATTRIBUTES {
            return Err(Error::InvalidInput(format!(
                "{} message attributes; SNS takes at most {SNS_MAX_MESSAGE_ATTRIBUTES}",
                self.attributes.len()
            )));
        }
        let size = self.size_with(message_len);
        if size > SNS_MAX_MESSAGE_BYTES {
            return Err(Error::InvalidInput(format!(
                "message of {size} bytes; SNS takes at most {SNS_MAX_MESSAGE_BYTES}"
            )));
        }
        Ok(())
    }
}

impl Notification {
    /// The bytes SNS counts against its limit: the `Message` parameter and the attributes
    /// (name, type and value), with room for the `dedup_key` attribute a batch adds.
    pub fn wire_size(&self) -> usize {
        self.clone().prepared().raw_size()
    }

    /// [`Notification::wire_size`] with the `dedup_key` attribute of `key` counted exactly, as
    /// a batch sends it.
    pub fn wire_size_with_key(&self, key: &str) -> usize {
        self.wire_size() - DEDUP_KEY_ALLOWANCE
            + DEDUP_KEY_ATTRIBUTE.len()
            + "String".len()
            + key.len()
    }

    fn raw_size(&self) -> usize {
        self.size_with(self.wire_message().len())
    }

    /// The size SNS counts for a `Message` parameter of `message_len` bytes and these
    /// attributes, with room for `dedup_key`.
    fn size_with(&self, message_len: usize) -> usize {
        message_len
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + "String".len())
                .sum::<usize>()
            + DEDUP_KEY_ALLOWANCE
    }

    /// The notification cut down to fit SNS: long strings in the details shortened, then the
    /// text, each cut marked. A notification that fits is returned as it is. Never refuses:
    /// a page that arrives shortened beats one that never arrives.
    pub fn fitted(mut self, limit: usize) -> Self {
        if self.wire_size() <= limit {
            return self;
        }
        if let Some(details) = &mut self.details {
            shorten_strings(details, 1024);
        }
        if self.wire_size() > limit {
            // The longest prefix of the text that fits, found in a few measurements (the text
            // appears up to eight times on the wire, escaped as JSON, so no one ratio holds).
            let full = std::mem::take(&mut self.message);
            let with = |keep: usize| format!("{}\n[cut to fit SNS]", cut(&full, keep));
            let (mut fits, mut over) = (0, full.len());
            while fits + 1 < over {
                let mid = fits + (over - fits) / 2;
                self.message = with(mid);
                if self.wire_size() <= limit {
                    fits = mid;
                } else {
                    over = mid;
                }
            }
            self.message = with(fits);
        }
        if self.wire_size() > limit {
            if let Some(details) = &mut self.details {
                shorten_strings(details, 64);
            }
        }
        if self.wire_size() > limit {
            self.details = None;
        }
        self
    }

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

/// Room kept in every size check for the `dedup_key` attribute a batch adds.
const DEDUP_KEY_ALLOWANCE: usize = 512;

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
pub fn cut(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Shortens every string in `value` to at most `max` bytes, marking the cut.
fn shorten_strings(value: &mut serde_json::Value, max: usize) {
    match value {
        serde_json::Value::String(s) if s.len() > max => {
            *s = format!("{}...", cut(s, max));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| shorten_strings(v, max)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| shorten_strings(v, max)),
        _ => {}
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

/// Why a message was not accepted, and whether sending it again may succeed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum Refusal {
    /// Throttling, a 5xx, a timeout, a dropped connection: the same message may pass later.
    Retryable(String),
    /// The message can never be published as it is: the topic does not exist or the role may
    /// not publish to it (NotFound, AuthorizationError), the key is unusable, the message is
    /// invalid (InvalidParameter).
    Permanent(String),
}

impl Refusal {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Refusal::Permanent(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Refusal::Retryable(r) | Refusal::Permanent(r) => r,
        }
    }

    /// The refusal an error of a single `publish` amounts to.
    pub fn from_error(e: &Error) -> Self {
        if e.is_retryable() {
            Refusal::Retryable(e.to_string())
        } else {
            Refusal::Permanent(e.to_string())
        }
    }
}

/// One message of a batch: the notification and its deduplication key (sent along as the
/// `dedup_key` attribute, so a receiver can drop the copy an ambiguous timeout may cause, and
/// as the deduplication id on a FIFO topic).
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    pub key: &'a str,
    pub notification: &'a Notification,
}

/// The attribute that carries an envelope's deduplication key.
pub const DEDUP_KEY_ATTRIBUTE: &str = "dedup_key";

/// Sends notifications to a topic.
pub trait Notifier: Send + Sync {
    /// Publishes and returns the message id the service assigned.
    fn publish(
        &self,
        topic_arn: &str,
        notification: &Notification,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Publishes several messages to one topic (at most [`SNS_MAX_BATCH_ENTRIES`], together
    /// at most [`SNS_MAX_BATCH_BYTES`]); one result per envelope, in order. Each message
    /// succeeds or fails on its own.
    fn publish_batch(
        &self,
        topic_arn: &str,
        batch: &[Envelope<'_>],
    ) -> impl Future<Output = Vec<std::result::Result<String, Refusal>>> + Send {
        async move {
            let mut out = Vec::with_capacity(batch.len());
            for envelope in batch {
                let mut n = envelope.notification.clone();
                n.attributes
                    .push((DEDUP_KEY_ATTRIBUTE.to_owned(), envelope.key.to_owned()));
                out.push(
                    self.publish(topic_arn, &n)
                        .await
                        .map_err(|e| Refusal::from_error(&e)),
                );
            }
            out
        }
    }
}

/// [`Notifier`] on SNS `Publish` and `PublishBatch`.
#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: std::sync::OnceLock<aws_sdk_sns::Client>,
    /// How to make the client, when it was not given made.
    builder: Option<aws_sdk_sns::config::Builder>,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        Self {
            client: std::sync::OnceLock::from(client),
            builder: None,
        }
    }

    /// Builds the client from the shared SDK configuration, each call bounded by
    /// [`PUBLISH_TIMEOUT`] (retries included), so that a run out of time stops publishing.
    /// The client is made at the first message: most runs of alert and backup-verify have
    /// nothing to announce, and making it (its endpoint rules, its validation) is a tenth of
    /// their cold start (BENCHMARKS.md).
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(PUBLISH_TIMEOUT)
            .build();
        Self {
            client: std::sync::OnceLock::new(),
            builder: Some(aws_sdk_sns::config::Builder::from(conf).timeout_config(timeouts)),
        }
    }

    fn client(&self) -> &aws_sdk_sns::Client {
        self.client
            .get_or_init(|| crate::aws::sns_client(self.builder.clone().unwrap_or_default()))
    }
}

/// The longest one `Publish` or `PublishBatch` call may take, its retries included.
pub const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `PublishBatch` codes that refuse the batch as a whole, not its messages.
const BATCH_REFUSALS: [&str; 4] = [
    "BatchRequestTooLong",
    "TooManyEntriesInBatchRequest",
    "BatchEntryIdsNotDistinct",
    "InvalidBatchEntryId",
];

fn attribute(value: String) -> Result<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| Error::InvalidInput(format!("message attribute: {e}")))
}

/// Error codes that say the caller's credentials, not the message or the topic, were refused:
/// every message would fail alike, and a later attempt (fresh credentials) may pass.
const CALLER_FAULTS: [&str; 6] = [
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "RequestExpired",
];

/// Classifies a refused SNS call: a code of the message or topic (NotFound,
/// AuthorizationError, InvalidParameter, KMS...) is permanent, throttling, 5xx and the
/// caller's credentials are retryable.
pub fn classify(code: &str, sender_fault: bool, detail: &str) -> Refusal {
    let reason = format!("{code}: {detail}");
    let retryable_code = code.contains("Throttl")
        || code == "InternalError"
        || code == "InternalFailure"
        || code == "ServiceUnavailable"
        || code == "KMSThrottling"
        || CALLER_FAULTS.contains(&code);
    if retryable_code || !sender_fault {
        Refusal::Retryable(reason)
    } else {
        Refusal::Permanent(reason)
    }
}

/// A FIFO topic's deduplication id for a key: SNS takes at most 128 characters of a limited
/// set, keys hold any label value, so the id is a hash of the key.
fn fifo_dedup_id(key: &str) -> String {
    format!("{:016x}{:x}", fnv1a(key.bytes()), key.len())
}

/// FNV-1a, 64 bits: a short stable name for a key or a set of keys (not a security hash).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Notifier for SnsNotifier {
    async fn publish(&self, topic_arn: &str, notification: &Notification) -> Result<String> {
        let (n, message) = notification.clone().into_wire()?;
        let mut request = self
            .client()
            .publish()
            .topic_arn(topic_arn)
            .subject(&n.subject)
            .message(message);
        if n.details.is_some() {
            request = request.message_structure("json");
        }
        for (name, value) in n.attributes {
            request = request.message_attributes(name, attribute(value)?);
        }
        let out = request
            .send()
            .await
            .map_err(|e| Error::aws("SNS", "Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn publish_batch(
        &self,
        topic_arn: &str,
        batch: &[Envelope<'_>],
    ) -> Vec<std::result::Result<String, Refusal>> {
        use aws_sdk_sns::types::PublishBatchRequestEntry;
        let fifo = topic_arn.ends_with(".fifo");
        let mut results: Vec<Option<std::result::Result<String, Refusal>>> =
            vec![None; batch.len()];
        let mut entries = Vec::with_capacity(batch.len());
        for (i, envelope) in batch.iter().enumerate() {
            let (n, message) = match envelope.notification.clone().into_wire() {
                Ok(wire) => wire,
                Err(e) => {
                    results[i] = Some(Err(Refusal::Permanent(e.to_string())));
                    continue;
                }
            };
            let mut entry = PublishBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .subject(&n.subject)
                .message(message);
            if n.details.is_some() {
                entry = entry.message_structure("json");
            }
            if fifo {
                entry = entry
                    .message_group_id("vigil")
                    .message_deduplication_id(fifo_dedup_id(envelope.key));
            }
            let attributes = n
                .attributes
                .into_iter()
                .chain([(DEDUP_KEY_ATTRIBUTE.to_owned(), envelope.key.to_owned())]);
            let mut built = Ok(());
            for (name, value) in attributes {
                match attribute(value) {
                    Ok(a) => entry = entry.message_attributes(name, a),
                    Err(e) => built = Err(e),
                }
            }
            match (built, entry.build()) {
                (Ok(()), Ok(entry)) => entries.push(entry),
                (Err(e), _) => results[i] = Some(Err(Refusal::Permanent(e.to_string()))),
                (_, Err(e)) => {
                    results[i] = Some(Err(Refusal::Permanent(format!(
                        "batch entry not built: {e}"
                    ))));
                }
            }
        }
        if !entries.is_empty() {
            let sent = self
                .client()
                .publish_batch()
                .topic_arn(topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await;
            let index = |id: &str| id.strip_prefix('m').and_then(|n| n.parse::<usize>().ok());
            match sent {
                Ok(out) => {
                    for ok in out.successful() {
                        if let Some(i) = ok.id().and_then(index).filter(|i| *i < batch.len()) {
                            results[i] = Some(Ok(ok.message_id().unwrap_or_default().to_owned()));
                        }
                    }
                    for failed in out.failed() {
                        if let Some(i) = index(failed.id()).filter(|i| *i < batch.len()) {
                            results[i] = Some(Err(classify(
                                failed.code(),
                                failed.sender_fault(),
                                failed.message().unwrap_or_default(),
                            )));
                        }
                    }
                }
                Err(e)
                    if e.as_service_error().is_some_and(|s| {
                        use aws_sdk_sns::error::ProvideErrorMetadata;
                        s.code().is_some_and(|c| BATCH_REFUSALS.contains(&c))
                    }) =>
                {
                    // The batch, not its messages, was refused: each message on its own.
                    for (i, envelope) in batch.iter().enumerate() {
                        if results[i].is_some() {
                            continue;
                        }
                        let mut n = envelope.notification.clone();
                        n.attributes
                            .push((DEDUP_KEY_ATTRIBUTE.to_owned(), envelope.key.to_owned()));
                        results[i] = Some(
                            self.publish(topic_arn, &n)
                                .await
                                .map_err(|e| Refusal::from_error(&e)),
                        );
                    }
                }
                Err(e) => {
                    let refusal = match e.as_service_error() {
                        Some(service) => {
                            use aws_sdk_sns::error::ProvideErrorMetadata;
                            let status = e.raw_response().map_or(400, |r| r.status().as_u16());
                            classify(
                                service.code().unwrap_or("Unknown"),
                                status < 500 && status != 429,
                                service.message().unwrap_or_default(),
                            )
                        }
                        None => Refusal::from_error(&Error::aws("SNS", "PublishBatch", e)),
                    };
                    for slot in results.iter_mut().filter(|r| r.is_none()) {
                        *slot = Some(Err(refusal.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Refusal::Retryable(
                        "PublishBatch answered without this entry".to_owned(),
                    ))
                })
            })
            .collect()
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

    #[test]
    fn a_notification_too_large_is_cut_to_fit() {
        let n = Notification {
            subject: "s".into(),
            message: "é".repeat(SNS_MAX_MESSAGE_BYTES),
            attributes: vec![("alertname".into(), "A".into())],
            details: Some(serde_json::json!({"annotations": {"description": "d".repeat(100_000)}})),
        };
        let fitted = n.fitted(SNS_MAX_MESSAGE_BYTES);
        assert!(fitted.wire_size() <= SNS_MAX_MESSAGE_BYTES);
        assert!(fitted.message.ends_with("[cut to fit SNS]"));
        assert!(fitted.clone().sanitized().is_ok());
        let small = Notification {
            subject: "s".into(),
            message: "m".into(),
            attributes: vec![],
            details: None,
        };
        assert_eq!(small.clone().fitted(SNS_MAX_MESSAGE_BYTES), small);
    }

    #[test]
    fn refusals_are_classified_by_code() {
        assert!(classify("AuthorizationError", true, "").is_permanent());
        assert!(classify("NotFound", true, "").is_permanent());
        assert!(classify("ParameterValueInvalid", true, "").is_permanent());
        assert!(classify("KMSAccessDenied", true, "").is_permanent());
        assert!(!classify("ThrottlingException", true, "").is_permanent());
        assert!(!classify("KMSThrottling", true, "").is_permanent());
        assert!(!classify("InternalError", false, "").is_permanent());
        assert!(!classify("ExpiredToken", true, "").is_permanent());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_notification_fits_once_fitted(text in ".{0,300}", repeat in 1usize..60, detail in ".{0,200}") {
            let n = Notification {
                subject: "s".into(),
                message: text.repeat(repeat),
                attributes: vec![],
                details: Some(serde_json::json!({"d": detail.repeat(repeat), "list": [text.clone()]})),
            };
            let limit = 8_192;
            prop_assert!(n.fitted(limit).wire_size() <= limit);
        }
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
