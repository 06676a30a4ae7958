//! A local stand-in for a Lambda Function URL: an HTTP server on loopback that turns each
//! request into a payload-format-2.0 event, invokes the function through the Runtime API, and
//! turns its response back into HTTP, as the Function URL service does. A function error
//! becomes a 502, as it does there.
//!
//! Lambda runs one event at a time per execution environment; so does this front: requests
//! queue for the one function process behind it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::runtime::{Function, Outcome};

/// A running Function URL front.
pub struct FunctionUrl {
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl FunctionUrl {
    /// Serves `function` on a free loopback port.
    pub async fn serve(function: Function) -> FunctionUrl {
        let function = Arc::new(Mutex::new(function));
        let (addr, server) = crate::serve::serve_loopback("Function URL", move |peer, req| {
            handle(function.clone(), peer, req)
        })
        .await;
        FunctionUrl { addr, server }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for FunctionUrl {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Whether the Function URL service passes a body as text: `text/*`, JSON, XML, form data.
fn is_text(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.starts_with("application/json")
        || ct.starts_with("application/xml")
        || ct.starts_with("application/x-www-form-urlencoded")
}

/// The payload-2.0 event for one request.
pub fn event(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    peer: SocketAddr,
) -> Value {
    let mut map = Map::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        match map.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                map.insert(k, Value::String(v.clone()));
            }
        }
    }
    let content_type = map
        .get("content-type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let user_agent = map
        .get("user-agent")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let text = is_text(&content_type) && std::str::from_utf8(body).is_ok();
    let now = Utc::now();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "local.lambda-url.us-east-1.on.aws",
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": format!("{:x}", now.timestamp_nanos_opt().unwrap_or_default()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": if text {
            String::from_utf8_lossy(body).into_owned()
        } else {
            base64::engine::general_purpose::STANDARD.encode(body)
        },
        "isBase64Encoded": !text,
    })
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

async fn handle(
    function: Arc<Mutex<Function>>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let event = event(&method, &path, &query, &headers, &body, peer);
    let outcome = function.lock().await.try_invoke(&event).await;
    let response = match outcome {
        Ok(Outcome::Response(r)) => r,
        Ok(Outcome::Error(e)) => return Ok(plain(StatusCode::BAD_GATEWAY, e.to_string())),
        Err(e) => return Ok(plain(StatusCode::BAD_GATEWAY, e)),
    };
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let raw = response["body"].as_str().unwrap_or("");
    let bytes = if response["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap_or_default()
    } else {
        raw.as_bytes().to_vec()
    };
    let mut out = plain(status, String::new());
    *out.body_mut() = Full::new(Bytes::from(bytes));
    for (k, v) in response["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            v.as_str()
                .and_then(|v| hyper::header::HeaderValue::from_str(v).ok()),
        ) {
            out.headers_mut().insert(name, value);
        }
    }
    Ok(out)
}
