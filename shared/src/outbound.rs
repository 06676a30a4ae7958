//! Everything a notification can be sent through: SNS ([`Notifier`]), HTTPS to receivers
//! outside AWS ([`HttpPost`]) and the secrets those need ([`Secrets`]), as one capability
//! ([`Outlets`]) and its production composite ([`Outbound`]).

use crate::Result;
use crate::http::{HttpPost, Reply};
use crate::notify::{Envelope, Notification, Notifier, Refusal};
use crate::secret::{SecretRef, Secrets};

/// SNS, HTTPS and secrets together: what the alert function's delivery needs.
pub trait Outlets: Notifier + HttpPost + Secrets {}

impl<T: Notifier + HttpPost + Secrets> Outlets for T {}

/// [`Outlets`] made of one implementation of each.
#[derive(Debug)]
pub struct Outbound<N, H, S> {
    pub sns: N,
    pub http: H,
    pub secrets: S,
}

impl<N: Notifier, H: Send + Sync, S: Send + Sync> Notifier for Outbound<N, H, S> {
    async fn publish(&self, topic_arn: &str, notification: &Notification) -> Result<String> {
        self.sns.publish(topic_arn, notification).await
    }

    async fn publish_batch(
        &self,
        topic_arn: &str,
        batch: &[Envelope<'_>],
    ) -> Vec<std::result::Result<String, Refusal>> {
        self.sns.publish_batch(topic_arn, batch).await
    }
}

impl<N: Send + Sync, H: HttpPost, S: Send + Sync> HttpPost for Outbound<N, H, S> {
    async fn post_json(&self, url: &str, body: &[u8]) -> Result<Reply> {
        self.http.post_json(url, body).await
    }
}

impl<N: Send + Sync, H: Send + Sync, S: Secrets> Secrets for Outbound<N, H, S> {
    async fn secret(&self, reference: &SecretRef) -> Result<String> {
        self.secrets.secret(reference).await
    }

    fn forget(&self, reference: &SecretRef) {
        self.secrets.forget(reference);
    }
}
