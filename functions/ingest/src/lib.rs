//! Vigil `ingest`: takes a service's metrics into CloudWatch.
//!
//! This crate is the pure part (decoding, validation, status codes) plus a handler generic
//! over [`MetricSink`]; `main.rs` only wires it to the Lambda runtime.
//!
//! Inputs: a JSON push on the Function URL ([`json_push`]).

pub mod json_push;

use std::collections::BTreeMap;

use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde_json::{Value, json};
use vigil_shared::{Error, MetricSink};

/// Largest request body accepted, after base64 decoding: Lambda's limit for a synchronous
/// invocation payload (6 MB) bounds what a Function URL can deliver anyway.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Settings read from the function's environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    /// Namespace for pushes that name none (`VIGIL_NAMESPACE`, default `Vigil`).
    pub default_namespace: String,
    /// Metric entries accepted in one request (`VIGIL_MAX_METRICS_PER_REQUEST`, default 10,000).
    pub max_metrics_per_request: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            default_namespace: "Vigil".to_owned(),
            max_metrics_per_request: 10_000,
        }
    }
}

impl IngestConfig {
    pub fn from_env() -> vigil_shared::Result<Self> {
        let mut config = Self::default();
        if let Ok(ns) = std::env::var("VIGIL_NAMESPACE") {
            vigil_shared::metric::validate_namespace(&ns)
                .map_err(|r| Error::Config(format!("VIGIL_NAMESPACE: {r}")))?;
            config.default_namespace = ns;
        }
        if let Ok(limit) = std::env::var("VIGIL_MAX_METRICS_PER_REQUEST") {
            config.max_metrics_per_request = limit.parse().map_err(|_| {
                Error::Config(format!(
                    "VIGIL_MAX_METRICS_PER_REQUEST: {limit:?} is not a whole number"
                ))
            })?;
        }
        Ok(config)
    }
}

/// A Function URL request reduced to what ingest reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What ingest answers: a status and a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Value,
}

impl HttpResponse {
    fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    /// The Function URL response shape (payload format 2.0).
    pub fn into_function_url_response(self) -> LambdaFunctionUrlResponse {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let mut response = LambdaFunctionUrlResponse::default();
        response.status_code = i64::from(self.status);
        response.headers = headers;
        response.body = Some(self.body.to_string());
        response
    }
}

/// Reads a Function URL event. The method comes from `requestContext.http.method`; the body is
/// base64-decoded when the event says it is encoded.
pub fn parse_function_url_event(event: Value) -> Result<HttpRequest, HttpResponse> {
    let request: LambdaFunctionUrlRequest = serde_json::from_value(event)
        .map_err(|e| HttpResponse::error(400, format!("unreadable Function URL event: {e}")))?;
    let raw = request.body.unwrap_or_default();
    let body = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw.as_bytes())
            .map_err(|e| HttpResponse::error(400, format!("body is not valid base64: {e}")))?
    } else {
        raw.into_bytes()
    };
    Ok(HttpRequest {
        method: request
            .request_context
            .http
            .method
            .unwrap_or_default()
            .to_ascii_uppercase(),
        path: request.raw_path.unwrap_or_else(|| "/".to_owned()),
        headers: request.headers,
        body,
    })
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// Handles one request: decode, validate, store, answer.
///
/// Status codes: 200 when every metric was stored; 400 when any entry was rejected (the valid
/// ones beside it are stored, and the body lists both) or the push is unreadable; 405, 413,
/// 415 for the wrong method, size or media type; 503 when storing failed in a way a retry
/// may fix, 500 when it failed otherwise. Nothing is reported stored unless it was.
pub async fn handle_http(
    sink: &impl MetricSink,
    config: &IngestConfig,
    request: HttpRequest,
    now: DateTime<Utc>,
) -> HttpResponse {
    if request.method != "POST" {
        return HttpResponse::error(
            405,
            format!("method {} not allowed; use POST", request.method),
        );
    }
    if request.body.len() > MAX_BODY_BYTES {
        return HttpResponse::error(
            413,
            format!(
                "body of {} bytes; the limit is {MAX_BODY_BYTES}",
                request.body.len()
            ),
        );
    }
    match media_type(&request.headers).as_deref() {
        Some("application/json") => {}
        other => {
            return HttpResponse::error(
                415,
                format!(
                    "unsupported content type {:?}; send application/json",
                    other.unwrap_or("(none)")
                ),
            );
        }
    }
    let push = match json_push::decode(
        &request.body,
        &config.default_namespace,
        config.max_metrics_per_request,
        now,
    ) {
        Ok(push) => push,
        Err(e) => {
            tracing::warn!(path = %request.path, error = %e, "push refused");
            return HttpResponse::error(400, e.to_string());
        }
    };
    if !push.rejected.is_empty() {
        let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &push.rejected {
            *by_reason.entry(r.reason).or_default() += 1;
        }
        tracing::warn!(
            namespace = %push.namespace,
            rejected = push.rejected.len(),
            reasons = ?by_reason,
            "metric entries rejected"
        );
    }
    match sink.put(&push.namespace, &push.datums).await {
        Ok(outcome) => {
            tracing::info!(
                namespace = %push.namespace,
                stored = outcome.datums,
                requests = outcome.requests,
                rejected = push.rejected.len(),
                "push stored"
            );
            HttpResponse {
                status: if push.rejected.is_empty() { 200 } else { 400 },
                body: json!({
                    "namespace": push.namespace,
                    "stored": outcome.datums,
                    "rejected": push.rejected,
                }),
            }
        }
        Err(e) => {
            tracing::error!(namespace = %push.namespace, error = %e, "storing the push failed");
            let status = if e.is_retryable() { 503 } else { 500 };
            HttpResponse {
                status,
                body: json!({ "error": e.to_string(), "stored": 0 }),
            }
        }
    }
}

/// Which trigger an event came from.
#[derive(Debug, PartialEq, Eq)]
pub enum EventKind {
    FunctionUrl,
    Unknown,
}

/// Tells a Function URL request (payload format 2.0) from other events.
pub fn classify(event: &Value) -> EventKind {
    if event.pointer("/requestContext/http/method").is_some() {
        EventKind::FunctionUrl
    } else {
        EventKind::Unknown
    }
}

/// The Lambda handler: one event in, the response (or an error that fails the invocation) out.
pub async fn handle_event(
    sink: &impl MetricSink,
    config: &IngestConfig,
    event: Value,
    now: DateTime<Utc>,
) -> Result<Value, Error> {
    match classify(&event) {
        EventKind::FunctionUrl => {
            let response = match parse_function_url_event(event) {
                Ok(request) => handle_http(sink, config, request, now).await,
                Err(response) => response,
            };
            serde_json::to_value(response.into_function_url_response())
                .map_err(|e| Error::InvalidInput(format!("response not serializable: {e}")))
        }
        EventKind::Unknown => Err(Error::InvalidInput(
            "event is not a Function URL request".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vigil_shared::{Datum, PutOutcome};

    /// In-memory sink for the handler's unit tests (the SDK path is covered end to end).
    #[derive(Default)]
    struct MemorySink {
        stored: Mutex<Vec<(String, Datum)>>,
        fail: Option<bool>,
    }

    impl MetricSink for MemorySink {
        async fn put(&self, namespace: &str, datums: &[Datum]) -> vigil_shared::Result<PutOutcome> {
            if let Some(retryable) = self.fail {
                return Err(Error::Aws {
                    service: "CloudWatch",
                    operation: "PutMetricData",
                    message: "unavailable".into(),
                    retryable,
                });
            }
            let mut stored = self.stored.lock().expect("lock");
            stored.extend(datums.iter().map(|d| (namespace.to_owned(), d.clone())));
            Ok(PutOutcome {
                datums: datums.len(),
                requests: 1,
            })
        }
    }

    fn event(method: &str, content_type: &str, body: &str, base64: bool) -> Value {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/",
            "rawQueryString": "",
            "headers": {"content-type": content_type},
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abc", "requestId": "r1", "routeKey": "$default", "stage": "$default",
                "time": "25/Nov/2026:08:00:00 +0000", "timeEpoch": 1764057600000u64,
                "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"}
            },
            "body": if base64 { base64::engine::general_purpose::STANDARD.encode(body) } else { body.to_owned() },
            "isBase64Encoded": base64
        })
    }

    async fn status_of(sink: &MemorySink, ev: Value) -> (i64, Value) {
        let out = handle_event(sink, &IngestConfig::default(), ev, Utc::now())
            .await
            .expect("function URL events always answer");
        let body: Value =
            serde_json::from_str(out["body"].as_str().expect("body")).expect("json body");
        (out["statusCode"].as_i64().expect("status"), body)
    }

    #[tokio::test]
    async fn stores_a_push_and_answers_200() {
        let sink = MemorySink::default();
        let (status, body) = status_of(
            &sink,
            event(
                "POST",
                "application/json",
                r#"{"metrics":[{"name":"up","value":1}]}"#,
                false,
            ),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["stored"], 1);
        assert_eq!(sink.stored.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn base64_bodies_are_decoded() {
        let sink = MemorySink::default();
        let (status, _) = status_of(
            &sink,
            event(
                "POST",
                "application/json; charset=utf-8",
                r#"{"metrics":[{"name":"up","value":1}]}"#,
                true,
            ),
        )
        .await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn partial_rejection_stores_the_valid_and_answers_400() {
        let sink = MemorySink::default();
        let (status, body) = status_of(
            &sink,
            event(
                "POST",
                "application/json",
                r#"{"metrics":[{"name":"up","value":1},{"name":"bad","value":null}]}"#,
                false,
            ),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["stored"], 1);
        assert_eq!(body["rejected"][0]["index"], 1);
        assert_eq!(sink.stored.lock().expect("lock")[0].1.name, "up");
    }

    #[tokio::test]
    async fn bad_requests_get_their_status() {
        let sink = MemorySink::default();
        let ok_body = r#"{"metrics":[]}"#;
        assert_eq!(
            status_of(&sink, event("GET", "application/json", ok_body, false))
                .await
                .0,
            405
        );
        assert_eq!(
            status_of(&sink, event("POST", "text/plain", ok_body, false))
                .await
                .0,
            415
        );
        assert_eq!(
            status_of(&sink, event("POST", "application/json", "{", false))
                .await
                .0,
            400
        );
        let mut bad64 = event("POST", "application/json", ok_body, false);
        bad64["isBase64Encoded"] = json!(true);
        bad64["body"] = json!("!!!not base64");
        assert_eq!(status_of(&sink, bad64).await.0, 400);
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        assert_eq!(
            status_of(&sink, event("POST", "application/json", &big, false))
                .await
                .0,
            413
        );
        assert!(sink.stored.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn sink_failures_are_5xx_and_store_nothing() {
        let body = r#"{"metrics":[{"name":"up","value":1}]}"#;
        let retryable = MemorySink {
            fail: Some(true),
            ..Default::default()
        };
        let (status, resp) =
            status_of(&retryable, event("POST", "application/json", body, false)).await;
        assert_eq!((status, resp["stored"].as_i64()), (503, Some(0)));
        let fatal = MemorySink {
            fail: Some(false),
            ..Default::default()
        };
        assert_eq!(
            status_of(&fatal, event("POST", "application/json", body, false))
                .await
                .0,
            500
        );
    }

    #[tokio::test]
    async fn other_events_fail_the_invocation() {
        let sink = MemorySink::default();
        let err = handle_event(
            &sink,
            &IngestConfig::default(),
            json!({"source": "aws.events"}),
            Utc::now(),
        )
        .await
        .expect_err("unknown event");
        assert!(err.to_string().contains("not a Function URL request"));
    }
}
