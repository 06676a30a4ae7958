//! A local stand-in for Lambda's `Invoke` API (`POST /2015-03-31/functions/{name}/invocations`):
//! the AWS SDKs (boto3 with `endpoint_url`, the Rust SDK with an endpoint override) invoke the
//! real bootstraps behind it as they would invoke a deployed function. LocalStack's own Lambda
//! needs Docker, which this machine does not have.
//!
//! What the Lambda API reference ("Invoke") documents and the front does: the function is
//! named by name, by `name:qualifier`, or by its (partial) ARN, with or without `?Qualifier=`;
//! a `RequestResponse` invocation answers 200 with the function's response as the body, and a
//! function error answers 200 too, with `X-Amz-Function-Error: Unhandled` and the error as the
//! body; an unknown function is a 404 `ResourceNotFoundException`. Only `RequestResponse` is
//! served (an `Event` or `DryRun` invocation is a 400): the smoke test waits for its answers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::runtime::{Function, Outcome};

const PREFIX: &str = "/2015-03-31/functions/";

type Functions = Arc<HashMap<String, Mutex<Function>>>;

/// A running Invoke API front for some functions, each one execution environment.
pub struct LambdaApi {
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl LambdaApi {
    /// Serves `functions` (by function name) on a free loopback port.
    pub async fn serve(functions: Vec<(String, Function)>) -> LambdaApi {
        let functions: Functions = Arc::new(
            functions
                .into_iter()
                .map(|(name, f)| (name, Mutex::new(f)))
                .collect(),
        );
        let (addr, server) = crate::serve::serve_loopback("the Invoke API", move |_, req| {
            handle(functions.clone(), req)
        })
        .await;
        LambdaApi { addr, server }
    }

    /// The endpoint to give an SDK: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LambdaApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The function name in an Invoke path segment: `name`, `name:qualifier`,
/// `123456789012:function:name[:qualifier]` or `arn:aws:lambda:region:account:function:name[:qualifier]`.
pub fn function_name(segment: &str) -> &str {
    let parts: Vec<&str> = segment.split(':').collect();
    match parts.iter().position(|p| *p == "function") {
        Some(i) if i + 1 < parts.len() => parts[i + 1],
        _ => parts[0],
    }
}

fn answer(status: StatusCode, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

/// An error in the shape the Lambda API answers with (`x-amzn-ErrorType`, a JSON body).
fn api_error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    answer(
        status,
        &[
            ("x-amzn-ErrorType", kind),
            ("Content-Type", "application/json"),
        ],
        json!({"Type": "User", "message": message})
            .to_string()
            .into_bytes(),
    )
}

async fn handle(
    functions: Functions,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let Some(segment) = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix("/invocations"))
    else {
        return Ok(api_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("only Invoke is served here, not {path}"),
        ));
    };
    if req.method() != Method::POST {
        return Ok(api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnknownOperationException",
            "Invoke is a POST",
        ));
    }
    let segment = percent_decode(segment);
    let name = function_name(&segment).to_owned();
    let kind = req
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    if kind != "RequestResponse" {
        return Ok(api_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("the local Invoke API serves RequestResponse invocations only, not {kind}"),
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(api_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &e.to_string(),
            ));
        }
    };
    let event: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return Ok(api_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {e}"),
                ));
            }
        }
    };
    let Some(function) = functions.get(&name) else {
        return Ok(api_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        ));
    };
    let outcome = function.lock().await.try_invoke(&event).await;
    let json = [("Content-Type", "application/json")];
    Ok(match outcome {
        Ok(Outcome::Response(v)) => answer(StatusCode::OK, &json, v.to_string().into_bytes()),
        Ok(Outcome::Error(e)) => answer(
            StatusCode::OK,
            &[json[0], ("X-Amz-Function-Error", "Unhandled")],
            e.to_string().into_bytes(),
        ),
        Err(e) => api_error(StatusCode::BAD_GATEWAY, "ServiceException", &e),
    })
}

/// `%3A` and the like in a path segment (SDKs escape the colons of an ARN).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(b) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_arns_and_qualifiers_name_the_same_function() {
        for segment in [
            "alert",
            "alert:live",
            "123456789012:function:alert",
            "arn:aws:lambda:us-east-1:123456789012:function:alert",
            "arn:aws:lambda:us-east-1:123456789012:function:alert:live",
        ] {
            assert_eq!(function_name(segment), "alert", "{segment}");
        }
        assert_eq!(
            percent_decode("arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Aalert%3Alive"),
            "arn:aws:lambda:us-east-1:1:function:alert:live"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("é%zz"), "é%zz");
    }
}
