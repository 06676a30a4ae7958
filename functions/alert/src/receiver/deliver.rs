//! Sending to the receivers outside SNS (PagerDuty, webhooks). The messages of one episode to
//! one config form a chain, sent one at a time in the order they were owed: a message refused
//! as retryable stops its chain for this run (the rest wait, untried), so a resolve never
//! reaches PagerDuty before the trigger it resolves. A message refused for good is set aside
//! and its chain goes on: the resolve of a trigger PagerDuty refused changes nothing there.
//!
//! A firing message with a resolution after it in its chain is not sent: the resolution goes
//! alone. Sent late, after a resolve PagerDuty already took (a run stopped between the posts
//! and the write that records them), the trigger would open a second incident that nothing
//! resolves; and a page for an episode that has already ended wakes nobody usefully. As
//! Alertmanager does, the episode's end is what the receiver hears.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vigil_shared::{Outlets, Refusal};

use crate::outbox::{Attempt, Owed, TRIES_PER_RUN, backoff};
use crate::receiver::{Channel, Endpoint, pagerduty, url_problem, webhook};

/// The longest pause a `Retry-After` may ask for within a run.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);

/// The chains among `claimed`'s messages to receivers outside SNS: their indices, by
/// destination and episode, each in the order of the outbox.
pub fn chains(claimed: &[&Owed]) -> Vec<Vec<usize>> {
    let mut by: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, o) in claimed.iter().enumerate() {
        if let Some(chain) = o.chain() {
            by.entry(chain).or_default().push(i);
        }
    }
    by.into_values().collect()
}

/// Sends one chain; returns each message's attempt and the posts made.
pub async fn send_chain(
    outlets: &impl Outlets,
    claimed: &[&Owed],
    chain: Vec<usize>,
    stop: Instant,
) -> (Vec<Attempt>, usize) {
    let mut done = Vec::with_capacity(chain.len());
    let mut posts = 0;
    let mut held = false;
    let resolved_at = chain
        .iter()
        .rposition(|&i| claimed[i].status == crate::state::Status::Resolved);
    for (n, i) in chain.into_iter().enumerate() {
        let o = claimed[i];
        let key = o.key.clone();
        if resolved_at.is_some_and(|r| n < r) && o.status == crate::state::Status::Firing {
            done.push(Attempt::Superseded { key });
            continue;
        }
        if held || Instant::now() >= stop {
            done.push(Attempt::NotTried { key });
            continue;
        }
        match send_one(outlets, o, stop, &mut posts).await {
            Ok(message_id) => done.push(Attempt::Sent { key, message_id }),
            Err(refusal) => {
                held = !refusal.is_permanent();
                done.push(Attempt::Refused { key, refusal });
            }
        }
    }
    (done, posts)
}

/// `work`, or a retryable refusal when the run's stop comes first: nothing of a run outlives
/// its invocation (a post cut there is retried, and PagerDuty's deduplication or the
/// webhook's fingerprint absorbs a copy).
async fn within<T>(
    stop: Instant,
    work: impl std::future::Future<Output = Result<T, Refusal>>,
) -> Result<T, Refusal> {
    let left = stop.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, work).await.unwrap_or_else(|_| {
        Err(Refusal::Retryable(
            "no answer before the run's stop".to_owned(),
        ))
    })
}

/// The secret a message is sent with, if any: PagerDuty's routing key, a webhook's kept URL.
fn kept_secret(o: &Owed) -> Option<&vigil_shared::SecretRef> {
    match &o.channel {
        Channel::PagerDuty { routing_key, .. } => Some(routing_key),
        Channel::Webhook {
            url: Endpoint::Kept(r),
            ..
        } => Some(r),
        _ => None,
    }
}

/// The URL and body of a message.
async fn request(outlets: &impl Outlets, o: &Owed) -> Result<(String, Vec<u8>), Refusal> {
    let secret = |e: vigil_shared::Error| Refusal::from_error(&e);
    match &o.channel {
        Channel::PagerDuty {
            url, routing_key, ..
        } => {
            let key = outlets.secret(routing_key).await.map_err(secret)?;
            let body = pagerduty::event(o, &key).to_string().into_bytes();
            Ok((url.clone(), body))
        }
        Channel::Webhook { receiver, url } => {
            let url = match url {
                Endpoint::Url(u) => u.clone(),
                Endpoint::Kept(r) => {
                    let u = outlets.secret(r).await.map_err(secret)?;
                    // The problem names the scheme and host at most, never the URL.
                    if let Some(p) = url_problem(&u) {
                        return Err(Refusal::Permanent(format!("the URL in {r}: {p}")));
                    }
                    u
                }
            };
            let body = webhook::payload(o, receiver).to_string().into_bytes();
            Ok((url, body))
        }
        Channel::Text | Channel::Chat | Channel::Sms => Err(Refusal::Permanent(
            "internal error: an SNS message on the HTTP path".to_owned(),
        )),
    }
}

/// Sends one message, retrying with backoff while its refusals are retryable and there is
/// time. A secret whose message is refused (400 to 404: a routing key, a webhook URL's token)
/// is read again once: after a rotation, the value kept for five minutes is the old one.
async fn send_one(
    outlets: &impl Outlets,
    o: &Owed,
    stop: Instant,
    posts: &mut usize,
) -> Result<String, Refusal> {
    let (mut url, mut body) = within(stop, request(outlets, o)).await?;
    let mut attempt = 0;
    let mut reread = false;
    loop {
        *posts += 1;
        let posted = within(stop, async {
            outlets
                .post_json(&url, &body)
                .await
                .map_err(|e| Refusal::from_error(&e))
        })
        .await;
        let (result, retry_after, status) = match posted {
            Ok(reply) => {
                let result = match o.channel {
                    Channel::PagerDuty { .. } => pagerduty::outcome(&reply),
                    _ => webhook::outcome(&reply),
                };
                (result, reply.retry_after, Some(reply.status))
            }
            Err(r) => (Err(r), None, None),
        };
        let refusal = match result {
            Ok(id) => return Ok(id),
            Err(r @ Refusal::Permanent(_)) => {
                let Some(secret) = kept_secret(o)
                    .filter(|_| !reread && status.is_some_and(|s| (400..=404).contains(&s)))
                else {
                    return Err(r);
                };
                reread = true;
                outlets.forget(secret);
                // The endpoint's refusal stands unless a different value was read.
                match within(stop, request(outlets, o)).await {
                    Ok((u, b)) if u != url || b != body => (url, body) = (u, b),
                    _ => return Err(r),
                }
                continue;
            }
            Err(r) => r,
        };
        attempt += 1;
        let asked = Duration::from_secs(retry_after.unwrap_or(0)).min(RETRY_AFTER_MAX);
        let pause = backoff(attempt - 1, *posts as u64).max(asked);
        if attempt >= TRIES_PER_RUN || Instant::now() + pause >= stop {
            return Err(refusal);
        }
        tokio::time::sleep(pause).await;
    }
}
