//! A local PagerDuty Events API v2 that holds to its contract
//! (<https://developer.pagerduty.com/docs/events-api-v2/overview>, "Send an Alert Event"),
//! and a webhook receiver beside it, for the end-to-end tests of the alert function's
//! receivers.
//!
//! `POST /v2/enqueue` takes an event: `routing_key` (the integration's 32 characters),
//! `event_action` (`trigger`, `acknowledge` or `resolve`), `dedup_key` (at most 255
//! characters; required unless triggering) and, for a trigger, `payload` with `summary` (at
//! most 1,024 characters), `source` and `severity` (`critical`, `error`, `warning`, `info`).
//! It answers 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`, 400
//! `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}` for an
//! event that breaks the contract, and 429 while it is told to be busy. It deduplicates as
//! PagerDuty does: a trigger whose key names an open alert goes onto it; after a resolve, a
//! trigger with that key opens a new incident. `POST /hook` takes anything JSON, with 200.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

/// What the local PagerDuty has seen and holds.
#[derive(Debug, Default)]
pub struct Seen {
    /// The routing key of the one integration it serves.
    pub routing_key: String,
    /// Posts still to answer with 429.
    pub busy: usize,
    /// Events accepted, in order.
    pub events: Vec<Value>,
    /// Answers other than 202: status and body.
    pub refused: Vec<(u16, Value)>,
    /// Alerts by dedup key: open or resolved.
    pub open: BTreeMap<String, bool>,
    /// Incidents opened.
    pub incidents: usize,
    /// What the webhook took, in order.
    pub hooks: Vec<Value>,
}

/// A running local PagerDuty and webhook.
pub struct PagerDuty {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    server: tokio::task::JoinHandle<()>,
}

impl PagerDuty {
    /// Serves on a free loopback port, for the integration `routing_key`, answering the first
    /// `busy` events with 429.
    pub async fn start(routing_key: &str, busy: usize) -> PagerDuty {
        let seen = Arc::new(Mutex::new(Seen {
            routing_key: routing_key.to_owned(),
            busy,
            ..Seen::default()
        }));
        let shared = seen.clone();
        let (addr, server) = crate::serve::serve_loopback("the local PagerDuty", move |_, req| {
            handle(shared.clone(), req)
        })
        .await;
        PagerDuty { addr, seen, server }
    }

    /// The events endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    /// The webhook's URL.
    pub fn hook_url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PagerDuty {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// What breaks the contract in `event`, if anything.
fn problems(event: &Value, routing_key: &str) -> Vec<String> {
    let mut out = Vec::new();
    match event["routing_key"].as_str() {
        Some(k) if k.len() == 32 && k == routing_key => {}
        Some(k) if k.len() != 32 => out.push("'routing_key' must be 32 characters".to_owned()),
        Some(_) => out.push("'routing_key' names no integration".to_owned()),
        None => out.push("'routing_key' is missing or blank".to_owned()),
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        out.push("'event_action' is invalid".to_owned());
    }
    match event["dedup_key"].as_str() {
        Some(k) if k.len() > 255 => out.push("'dedup_key' is too long".to_owned()),
        None if action != "trigger" => out.push("'dedup_key' is missing".to_owned()),
        _ => {}
    }
    if action == "trigger" {
        let p = &event["payload"];
        match p["summary"].as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            _ => out.push("'payload.summary' is missing or longer than 1024".to_owned()),
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            out.push("'payload.source' is missing or blank".to_owned());
        }
        if !["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or(""))
        {
            out.push("'payload.severity' is invalid".to_owned());
        }
        if let Some(t) = p.get("timestamp") {
            if t.as_str()
                .is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
            {
                out.push("'payload.timestamp' is not ISO 8601".to_owned());
            }
        }
    }
    out
}

async fn handle(
    seen: Arc<Mutex<Seen>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if method != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, json!({})));
    }
    if path == "/hook" {
        return Ok(match parsed {
            Some(v) => {
                seen.hooks.push(v);
                reply(StatusCode::OK, json!({}))
            }
            None => reply(StatusCode::BAD_REQUEST, json!({"error": "not JSON"})),
        });
    }
    if path != "/v2/enqueue" {
        return Ok(reply(StatusCode::NOT_FOUND, json!({})));
    }
    if seen.busy > 0 {
        seen.busy -= 1;
        let body = json!({"status": "throttle event", "message": "Too many requests"});
        seen.refused.push((429, body.clone()));
        return Ok(reply(StatusCode::TOO_MANY_REQUESTS, body));
    }
    let Some(event) = parsed else {
        let body = json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid JSON"]});
        seen.refused.push((400, body.clone()));
        return Ok(reply(StatusCode::BAD_REQUEST, body));
    };
    let errors = problems(&event, &seen.routing_key);
    if !errors.is_empty() {
        let body = json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors});
        seen.refused.push((400, body.clone()));
        return Ok(reply(StatusCode::BAD_REQUEST, body));
    }
    let key = event["dedup_key"]
        .as_str()
        .map_or_else(|| format!("generated-{}", seen.events.len()), str::to_owned);
    match event["event_action"].as_str() {
        Some("trigger") if !seen.open.get(&key).copied().unwrap_or(false) => {
            seen.incidents += 1;
            seen.open.insert(key.clone(), true);
        }
        Some("resolve") => {
            if let Some(open) = seen.open.get_mut(&key) {
                *open = false;
            }
        }
        _ => {}
    }
    seen.events.push(event);
    Ok(reply(
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Event processed", "dedup_key": key}),
    ))
}
