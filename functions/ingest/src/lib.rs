//! Vigil `ingest`: takes a service's metrics into CloudWatch.
//!
//! This crate is the pure part (decoding, mapping, validation, status codes) plus handlers
//! generic over [`MetricSink`]; `main.rs` only wires them to the Lambda runtime.
//!
//! Inputs: on the Function URL, Prometheus remote-write 1.0 ([`remote_write`]) and 2.0
//! ([`remote_write_v2`]), both mapped by [`mapping`], and the JSON push ([`json_push`]); as events, CloudWatch Logs subscription
//! batches ([`logs`]).

/// The environment variables ingest reads (the template sets them; a test checks both agree).
pub mod env {
    /// Optional: `s3://bucket/key` or a path of the mapping and log rules file.
    pub const CONFIG: &str = "VIGIL_INGEST_CONFIG";
    /// Optional: the namespace of pushes that name none.
    pub const NAMESPACE: &str = "VIGIL_NAMESPACE";
    /// Optional: the most metrics one JSON push may carry.
    pub const MAX_METRICS_PER_REQUEST: &str = "VIGIL_MAX_METRICS_PER_REQUEST";
    /// Optional: the namespace of ingest's own counters (default `Vigil`).
    pub const SELF_NAMESPACE: &str = "VIGIL_SELF_NAMESPACE";
    /// Optional: `cloudwatch` (default) or `emf`.
    pub const SINK: &str = vigil_shared::sink::SINK_ENV;
    /// Set by Lambda: the function's own log group, whose batches ingest skips.
    pub const LOG_GROUP: &str = "AWS_LAMBDA_LOG_GROUP_NAME";
    pub const REQUIRED: &[&str] = &[];
    pub const OPTIONAL: &[&str] = &[
        CONFIG,
        NAMESPACE,
        MAX_METRICS_PER_REQUEST,
        SELF_NAMESPACE,
        SINK,
    ];
}

pub mod config;
pub mod guard;
pub mod json_push;
pub mod logs;
pub mod mapping;
pub mod remote_write;
pub mod remote_write_v2;

use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde_json::{Map, Value, json};
use vigil_shared::metric::Rejections;
use vigil_shared::{Datum, Error, MetricSink, Unit, emf};

pub use config::IngestConfig;

/// Largest request body accepted, after base64 decoding: Lambda's limit for a synchronous
/// invocation payload (6 MB) bounds what a Function URL can deliver anyway.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// A Function URL request reduced to what ingest reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What ingest answers: a status, a JSON body, and headers beside the content type.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl HttpResponse {
    fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
            headers: Vec::new(),
        }
    }

    /// The Function URL response shape (payload format 2.0).
    pub fn into_function_url_response(self) -> LambdaFunctionUrlResponse {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
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

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The media type without parameters, lower-cased, and the value of its `proto` parameter.
fn media_type(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(raw) = header(headers, "content-type") else {
        return (None, None);
    };
    let mut parts = raw.split(';');
    let media = parts.next().map(|m| m.trim().to_ascii_lowercase());
    let proto = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned());
    (media, proto)
}

/// Handles one Function URL request: decode, validate, store, answer.
///
/// Status codes: 200 when every sample was stored; 400 when the body can never be read, or when
/// some samples were rejected (the valid ones beside them are stored, and the body says how
/// many of each, with a reason per kind: a sender must not resend what was stored); 405, 413,
/// 415 for the wrong method, size, media type or encoding; 503 when storing failed in a way a
/// retry may fix (Prometheus retries 5xx), 500 when it failed otherwise. Nothing is reported
/// stored unless it was.
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
    match media_type(&request.headers) {
        (Some(m), _) if m == "application/json" => json_push(sink, config, &request, now).await,
        (Some(m), proto) if m == "application/x-protobuf" => {
            remote_write(sink, config, &request, proto.as_deref(), now).await
        }
        (other, _) => HttpResponse::error(
            415,
            format!(
                "unsupported content type {:?}; send application/x-protobuf (Prometheus remote-write) or application/json (JSON push)",
                other.as_deref().unwrap_or("(none)")
            ),
        ),
    }
}

async fn json_push(
    sink: &impl MetricSink,
    config: &IngestConfig,
    request: &HttpRequest,
    now: DateTime<Utc>,
) -> HttpResponse {
    let push = match json_push::decode(
        &request.body,
        &config.json_push.namespace,
        config.json_push.max_metrics_per_request,
        now,
    ) {
        Ok(push) => push,
        Err(e) => {
            tracing::warn!(source = "json", error = %e, "request refused");
            return HttpResponse::error(400, e.to_string());
        }
    };
    if let Err(refused) = config.guard().namespace(&push.namespace) {
        tracing::warn!(source = "json", namespace = %push.namespace, "push into Vigil's own namespace refused");
        let mut rejections = Rejections::default();
        rejections.add_many(
            refused.reason(),
            push.datums.len() + push.rejected.len(),
            || refused.to_string(),
        );
        report(
            config,
            "json",
            0,
            &rejections,
            Map::new(),
            "push refused",
            now,
        );
        return HttpResponse::error(403, refused.to_string());
    }
    let mut rejections = Rejections::default();
    for r in &push.rejected {
        rejections.add(r.reason, || r.detail.clone());
    }
    let detail = json!(push.rejected);
    store(
        sink,
        config,
        "json",
        &push.namespace,
        &push.datums,
        &rejections,
        detail,
        Map::new(),
        now,
    )
    .await
}

async fn remote_write(
    sink: &impl MetricSink,
    config: &IngestConfig,
    request: &HttpRequest,
    proto: Option<&str>,
    now: DateTime<Utc>,
) -> HttpResponse {
    let v2 = match proto {
        None | Some("prometheus.WriteRequest") => false,
        Some(remote_write_v2::PROTO) => true,
        Some(p) => {
            return HttpResponse::error(
                415,
                format!(
                    "remote-write message {p:?} is not supported; send prometheus.WriteRequest (remote-write 1.0) or {} (2.0)",
                    remote_write_v2::PROTO
                ),
            );
        }
    };
    match header(&request.headers, "content-encoding").map(str::to_ascii_lowercase) {
        Some(e) if e == "snappy" => {}
        other => {
            return HttpResponse::error(
                415,
                format!(
                    "remote-write bodies must be snappy-compressed (Content-Encoding: snappy), not {:?}",
                    other.as_deref().unwrap_or("(none)")
                ),
            );
        }
    }
    let refused = |e: remote_write::DecodeError| {
        tracing::warn!(source = "remote_write", error = %e, "request refused");
        let status = if matches!(e, remote_write::DecodeError::TooLarge(_)) {
            413
        } else {
            400
        };
        HttpResponse::error(status, e.to_string())
    };
    let (mapped, exemplars) = if v2 {
        let resolved = match remote_write_v2::decode(&request.body) {
            Ok(r) => r,
            Err(e) => return refused(e),
        };
        if resolved.series.is_empty() && resolved.broken_series == 0 && !request.body.is_empty() {
            // 2.0 reserves 1.0's field numbers so that a 1.0 body read as 2.0 is empty.
            return HttpResponse::error(
                400,
                format!(
                    "the body is an empty {}: is it a prometheus.WriteRequest (1.0) sent with the 2.0 content type?",
                    remote_write_v2::PROTO
                ),
            );
        }
        let (broken, broken_samples) = (resolved.broken_series, resolved.broken_samples);
        let mut mapped =
            mapping::map_series_list(resolved.series.into_iter(), &config.remote_write, now);
        mapped.series += broken;
        mapped
            .rejected
            .add_many("broken_reference", broken_samples, || {
                "a series' labels_refs point outside the request's symbols, or are odd in number"
                    .to_owned()
            });
        (mapped, resolved.exemplars)
    } else {
        match remote_write::decode(&request.body) {
            Ok(d) => (mapping::map_request(d, &config.remote_write, now), 0),
            Err(e) => return refused(e),
        }
    };
    let mut extra = Map::new();
    extra.insert("series".into(), json!(mapped.series));
    extra.insert("stale_markers".into(), json!(mapped.stale_markers));
    let detail = json!(mapped.rejected);
    let mut response = store(
        sink,
        config,
        "remote_write",
        &config.remote_write.namespace,
        &mapped.datums,
        &mapped.rejected,
        detail,
        extra,
        now,
    )
    .await;
    if v2 {
        // Remote-write 2.0's receiver headers: what was written, so the sender can tell a
        // partial write. Native histograms and exemplars are never written to CloudWatch.
        let written = if response.status < 500 {
            response.body["stored"].as_u64().unwrap_or(0)
        } else {
            0
        };
        response.headers = vec![
            (
                "x-prometheus-remote-write-samples-written",
                written.to_string(),
            ),
            (
                "x-prometheus-remote-write-histograms-written",
                "0".to_owned(),
            ),
            (
                "x-prometheus-remote-write-exemplars-written",
                "0".to_owned(),
            ),
        ];
        if exemplars > 0 {
            response.body["exemplars_dropped"] = json!(exemplars);
        }
    }
    response
}

/// Reports one request's figures as an EMF log line: the same line carries the reasons for
/// rejections and counts them in CloudWatch (`Vigil` / `SamplesStored`, `SamplesRejected`).
fn report(
    config: &IngestConfig,
    source: &str,
    stored: usize,
    rejections: &Rejections,
    mut fields: Map<String, Value>,
    message: &str,
    now: DateTime<Utc>,
) {
    fields.insert(
        "level".into(),
        json!(if rejections.is_empty() {
            "INFO"
        } else {
            "WARN"
        }),
    );
    fields.insert("message".into(), json!(message));
    if !rejections.is_empty() {
        fields.insert("rejected".into(), json!(rejections));
    }
    emf::emit(&emf::line(
        &config.self_namespace,
        &[("Function", "ingest"), ("Source", source)],
        &[
            ("SamplesStored", stored as f64, Unit::Count),
            ("SamplesRejected", rejections.total() as f64, Unit::Count),
        ],
        fields,
        now,
    ));
}

#[allow(clippy::too_many_arguments)]
async fn store(
    sink: &impl MetricSink,
    config: &IngestConfig,
    source: &str,
    namespace: &str,
    datums: &[Datum],
    rejections: &Rejections,
    rejected_detail: Value,
    extra: Map<String, Value>,
    now: DateTime<Utc>,
) -> HttpResponse {
    match sink.put(namespace, datums).await {
        Ok(outcome) => {
            let mut fields = extra.clone();
            fields.insert("namespace".into(), json!(namespace));
            fields.insert("requests".into(), json!(outcome.requests));
            report(
                config,
                source,
                outcome.datums,
                rejections,
                fields,
                "samples stored",
                now,
            );
            let mut body = extra;
            body.insert("namespace".into(), json!(namespace));
            body.insert("stored".into(), json!(outcome.datums));
            body.insert("rejected".into(), rejected_detail);
            HttpResponse {
                status: if rejections.is_empty() { 200 } else { 400 },
                body: Value::Object(body),
                headers: Vec::new(),
            }
        }
        Err(e) => {
            tracing::error!(source, namespace, error = %e, "storing failed; nothing reported stored");
            let status = if e.is_retryable() { 503 } else { 500 };
            HttpResponse {
                status,
                body: json!({ "error": e.to_string(), "stored": 0 }),
                headers: Vec::new(),
            }
        }
    }
}

/// Handles a CloudWatch Logs subscription batch (`awslogs.data`). An unreadable batch fails the
/// invocation (Lambda retries, then dead-letters it, so it is kept); lines that cannot become
/// metrics are counted by reason.
pub async fn handle_logs(
    sink: &impl MetricSink,
    config: &IngestConfig,
    data: &str,
    now: DateTime<Utc>,
) -> Result<Value, Error> {
    let batch = logs::decode(data)?;
    if batch.message_type == "CONTROL_MESSAGE" {
        tracing::info!(log_group = %batch.log_group, "control message acknowledged");
        return Ok(json!({ "control_message": true }));
    }
    let guard = config.guard();
    if let Some(skipped) = guard.log_batch(&batch.log_group) {
        let mut rejections = Rejections::default();
        rejections.add_many(skipped.reason(), batch.log_events.len(), || {
            format!(
                "{} is ingest's own log group: reading it would feed ingest its own lines",
                batch.log_group
            )
        });
        let mut fields = Map::new();
        fields.insert("log_group".into(), json!(batch.log_group));
        report(
            config,
            "logs",
            0,
            &rejections,
            fields,
            "log batch skipped",
            now,
        );
        return Ok(json!({ "skipped": skipped.reason(), "lines": batch.log_events.len() }));
    }
    let extracted = logs::extract(
        &batch,
        &config.logs.rules,
        &config.logs.namespace,
        &guard,
        now,
    );
    let mut stored = 0;
    for (namespace, datums) in &extracted.by_namespace {
        stored += sink.put(namespace, datums).await?.datums;
    }
    let mut fields = Map::new();
    fields.insert("log_group".into(), json!(batch.log_group));
    fields.insert("lines".into(), json!(extracted.lines));
    fields.insert("unmatched".into(), json!(extracted.unmatched));
    report(
        config,
        "logs",
        stored,
        &extracted.rejected,
        fields,
        "log batch processed",
        now,
    );
    Ok(json!({
        "lines": extracted.lines,
        "stored": stored,
        "unmatched": extracted.unmatched,
        "rejected": extracted.rejected,
    }))
}

/// Which trigger an event came from.
#[derive(Debug, PartialEq, Eq)]
pub enum EventKind {
    FunctionUrl,
    Logs,
    Unknown,
}

/// Tells a Function URL request (payload format 2.0) from other events.
pub fn classify(event: &Value) -> EventKind {
    if event.pointer("/requestContext/http/method").is_some() {
        EventKind::FunctionUrl
    } else if event.pointer("/awslogs/data").is_some() {
        EventKind::Logs
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
        EventKind::Logs => {
            let data = event
                .pointer("/awslogs/data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            handle_logs(sink, config, data, now).await
        }
        EventKind::Unknown => Err(Error::InvalidInput(
            "event is neither a Function URL request nor a CloudWatch Logs subscription batch"
                .to_owned(),
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
        let out = handle_event(sink, &IngestConfig::new(), ev, Utc::now())
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

    /// A push into Vigil's own namespace (its heartbeat, its functions' metrics) is refused
    /// whole, with the reason, and stores nothing.
    #[tokio::test]
    async fn a_push_into_vigils_own_namespace_is_forbidden() {
        let sink = MemorySink::default();
        for namespace in ["Vigil", "vigil", "Vigil/alert"] {
            let body = format!(
                r#"{{"namespace":"{namespace}","metrics":[{{"name":"Heartbeat","value":1,"dimensions":{{"Function":"alert"}}}}]}}"#
            );
            let (status, answer) =
                status_of(&sink, event("POST", "application/json", &body, false)).await;
            assert_eq!(status, 403, "{namespace}: {answer}");
            assert!(
                answer["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Vigil's own"),
                "{answer}"
            );
        }
        assert!(sink.stored.lock().expect("lock").is_empty());
    }

    /// Remote-write 2.0: symbols resolved, the metadata type deciding what is cumulative, and
    /// the written counts in the spec's response headers.
    #[tokio::test]
    async fn remote_write_2_is_stored_and_answered_with_the_written_counts() {
        use crate::remote_write::Sample;
        let t = Utc::now().timestamp_millis() - 60_000;
        let pods = |name: &'static str, kind: i32| {
            (0..3)
                .map(move |p| {
                    (
                        vec![
                            ("__name__", name),
                            ("job", "api"),
                            ("pod", ["api-0", "api-1", "api-2"][p]),
                        ],
                        vec![Sample {
                            value: 10.0 * (p + 1) as f64,
                            timestamp: t,
                        }],
                        kind,
                    )
                })
                .collect::<Vec<_>>()
        };
        // A counter named without a suffix (the type says it is one), and a gauge.
        let mut series = pods("requests", 1);
        series.extend(pods("in_flight", 2));
        let body = remote_write_v2::encode(&series);
        let mut ev = remote_write_event(&body, json!({}));
        ev["headers"]["content-type"] =
            json!("application/x-protobuf;proto=io.prometheus.write.v2.Request");
        ev["headers"]["x-prometheus-remote-write-version"] = json!("2.0.0");
        let sink = MemorySink::default();
        let response = handle_event(&sink, &IngestConfig::new(), ev, Utc::now())
            .await
            .expect("response");
        assert_eq!(response["statusCode"], 200, "{response}");
        let headers = &response["headers"];
        assert_eq!(headers["x-prometheus-remote-write-samples-written"], "6");
        assert_eq!(headers["x-prometheus-remote-write-histograms-written"], "0");
        assert_eq!(headers["x-prometheus-remote-write-exemplars-written"], "0");
        let stored = sink.stored.lock().expect("lock").clone();
        let pods_kept = |name: &str| {
            stored
                .iter()
                .filter(|(_, d)| d.name == name)
                .filter(|(_, d)| d.dimensions.iter().any(|x| x.name == "pod"))
                .count()
        };
        assert_eq!(pods_kept("requests"), 3, "the counter keeps its pods");
        assert_eq!(pods_kept("in_flight"), 0, "the gauge's pods are dropped");
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

    fn remote_write_event(body: &[u8], headers: Value) -> Value {
        let mut ev = event("POST", "application/x-protobuf", "", false);
        ev["headers"] = json!({
            "content-type": "application/x-protobuf",
            "content-encoding": "snappy",
            "x-prometheus-remote-write-version": "0.1.0"
        });
        for (k, v) in headers.as_object().into_iter().flatten() {
            if v.is_null() {
                ev["headers"].as_object_mut().expect("headers").remove(k);
            } else {
                ev["headers"][k] = v.clone();
            }
        }
        ev["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        ev["isBase64Encoded"] = json!(true);
        ev
    }

    fn write_request(series: Vec<remote_write::TimeSeries>) -> Vec<u8> {
        remote_write::encode(&remote_write::WriteRequest {
            timeseries: series,
            metadata: vec![],
        })
    }

    fn series(name: &[u8], value: f64) -> remote_write::TimeSeries {
        remote_write::TimeSeries {
            labels: vec![
                remote_write::Label {
                    name: b"__name__".to_vec(),
                    value: name.to_vec(),
                },
                remote_write::Label::new("job", "api"),
            ],
            samples: vec![remote_write::Sample {
                value,
                timestamp: Utc::now().timestamp_millis(),
            }],
            histograms: vec![],
        }
    }

    #[tokio::test]
    async fn remote_write_is_stored() {
        let sink = MemorySink::default();
        let body = write_request(vec![series(b"up", 1.0), series(b"requests_total", 7.0)]);
        let (status, resp) = status_of(&sink, remote_write_event(&body, json!({}))).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["stored"], 2);
        let stored = sink.stored.lock().expect("lock");
        assert_eq!(stored[0].0, "Prometheus");
        assert_eq!(stored[1].1.name, "requests_total");
    }

    /// Prometheus sends its metadata (`metadata_config`, on by default) in requests of their
    /// own: answered as a success, nothing stored, so Prometheus neither retries nor logs them
    /// as failed.
    #[tokio::test]
    async fn a_metadata_only_request_is_a_success_that_stores_nothing() {
        let sink = MemorySink::default();
        let body = remote_write::encode(&remote_write::WriteRequest {
            timeseries: vec![],
            metadata: vec![remote_write::MetricMetadata {
                r#type: 1,
                metric_family_name: b"http_requests_total".to_vec(),
            }],
        });
        let (status, resp) = status_of(&sink, remote_write_event(&body, json!({}))).await;
        assert!((200..300).contains(&status), "{status} {resp}");
        assert_eq!(resp["stored"], 0, "{resp}");
        assert!(sink.stored.lock().expect("lock").is_empty());
    }

    /// Every bad input with the status it gets; the sink must see only valid samples.
    #[tokio::test]
    async fn bad_remote_write_inputs_get_their_status() {
        let valid = write_request(vec![series(b"up", 1.0)]);
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff")
            .expect("snappy");
        let bomb = [0x80u8, 0x80, 0x80, 0x80, 0x04, 0x00];
        let cases: Vec<(&str, Value, u16)> = vec![
            (
                "bad snappy",
                remote_write_event(b"\xff\xfe\xfd\xfc\xfb", json!({})),
                400,
            ),
            (
                "bad protobuf",
                remote_write_event(&not_proto, json!({})),
                400,
            ),
            (
                "decompression bomb",
                remote_write_event(&bomb, json!({})),
                413,
            ),
            (
                "no content encoding",
                remote_write_event(&valid, json!({"content-encoding": null})),
                415,
            ),
            (
                "gzip encoding",
                remote_write_event(&valid, json!({"content-encoding": "gzip"})),
                415,
            ),
            (
                "wrong content type",
                remote_write_event(&valid, json!({"content-type": "text/plain"})),
                415,
            ),
            (
                "a 1.0 body sent as 2.0 (decodes to nothing)",
                remote_write_event(
                    &valid,
                    json!({"content-type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}),
                ),
                400,
            ),
            (
                "an unknown message",
                remote_write_event(
                    &valid,
                    json!({"content-type": "application/x-protobuf;proto=io.prometheus.write.v3.Request"}),
                ),
                415,
            ),
            (
                "oversized body",
                remote_write_event(&vec![0u8; MAX_BODY_BYTES + 1], json!({})),
                413,
            ),
        ];
        for (name, ev, want) in cases {
            let sink = MemorySink::default();
            let (status, body) = status_of(&sink, ev).await;
            assert_eq!(status, i64::from(want), "{name}: {body}");
            assert!(body["error"].is_string(), "{name}: {body}");
            assert!(sink.stored.lock().expect("lock").is_empty(), "{name}");
        }

        let mut bad64 = remote_write_event(&valid, json!({}));
        bad64["body"] = json!("%%%");
        let sink = MemorySink::default();
        assert_eq!(status_of(&sink, bad64).await.0, 400);

        // Non-UTF-8 labels and NaN samples are rejected per series; the rest is stored.
        let sink = MemorySink::default();
        let body = write_request(vec![
            series(b"ok", 1.0),
            series(b"\xff\xfe", 1.0),
            series(b"nan", f64::NAN),
        ]);
        let (status, resp) = status_of(&sink, remote_write_event(&body, json!({}))).await;
        assert_eq!(status, 400, "{resp}");
        assert_eq!(resp["stored"], 1);
        assert_eq!(resp["rejected"]["invalid_utf8"]["count"], 1);
        assert_eq!(resp["rejected"]["non_finite"]["count"], 1);
        assert_eq!(sink.stored.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn stale_markers_are_skipped_without_error() {
        let sink = MemorySink::default();
        let stale = f64::from_bits(remote_write::STALE_NAN_BITS);
        let body = write_request(vec![series(b"up", 1.0), series(b"gone", stale)]);
        let (status, resp) = status_of(&sink, remote_write_event(&body, json!({}))).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["stale_markers"], 1);
        assert_eq!(resp["stored"], 1);
    }

    #[tokio::test]
    async fn remote_write_sink_failure_is_503() {
        let sink = MemorySink {
            fail: Some(true),
            ..Default::default()
        };
        let body = write_request(vec![series(b"up", 1.0)]);
        let (status, resp) = status_of(&sink, remote_write_event(&body, json!({}))).await;
        assert_eq!((status, resp["stored"].as_i64()), (503, Some(0)));
    }

    #[tokio::test]
    async fn log_batches_are_stored_and_control_messages_ignored() {
        use std::io::Write;
        let encode = |v: Value| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(v.to_string().as_bytes()).expect("gzip");
            base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))
        };
        let now = Utc::now();
        let emf_line = emf::line(
            "Shop",
            &[("service", "api")],
            &[("latency", 12.0, Unit::Milliseconds)],
            Map::new(),
            now,
        );
        let data = encode(
            json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "/ecs/api",
            "logStream": "s", "subscriptionFilters": ["f"],
            "logEvents": [{"id": "1", "timestamp": now.timestamp_millis(), "message": emf_line},
                          {"id": "2", "timestamp": now.timestamp_millis(), "message": "plain"}]}),
        );
        let sink = MemorySink::default();
        let out = handle_event(
            &sink,
            &IngestConfig::new(),
            json!({"awslogs": {"data": data}}),
            now,
        )
        .await
        .expect("batch");
        assert_eq!(out["stored"], 1);
        assert_eq!(out["unmatched"], 1);
        let first = sink.stored.lock().expect("lock")[0].clone();
        assert_eq!(
            (first.0.as_str(), first.1.name.as_str(), first.1.value),
            ("Shop", "latency", 12.0)
        );

        // A batch from ingest's own log group is skipped whole and counted: no loop.
        let own = encode(
            json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "vigil-IngestLogGroup-1A2B",
            "logStream": "s", "subscriptionFilters": ["f"],
            "logEvents": [{"id": "1", "timestamp": now.timestamp_millis(), "message": emf_line}]}),
        );
        let config = IngestConfig {
            own_log_group: Some("vigil-IngestLogGroup-1A2B".into()),
            ..IngestConfig::new()
        };
        let skipped = handle_event(&sink, &config, json!({"awslogs": {"data": own}}), now)
            .await
            .expect("skipped, not failed");
        assert_eq!(skipped["skipped"], "own_log_group");
        assert_eq!(
            sink.stored.lock().expect("lock").len(),
            1,
            "nothing more stored"
        );

        let control = encode(
            json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "",
            "logStream": "", "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE"}]}),
        );
        let out = handle_event(
            &sink,
            &IngestConfig::new(),
            json!({"awslogs": {"data": control}}),
            now,
        )
        .await
        .expect("control");
        assert_eq!(out["control_message"], true);

        let err = handle_event(
            &sink,
            &IngestConfig::new(),
            json!({"awslogs": {"data": "%%%"}}),
            now,
        )
        .await
        .expect_err("undecodable");
        assert!(err.to_string().contains("base64"));
    }

    #[tokio::test]
    async fn other_events_fail_the_invocation() {
        let sink = MemorySink::default();
        let err = handle_event(
            &sink,
            &IngestConfig::new(),
            json!({"source": "aws.events"}),
            Utc::now(),
        )
        .await
        .expect_err("unknown event");
        assert!(err.to_string().contains("neither a Function URL request"));
    }
}
