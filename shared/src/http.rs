//! Posting JSON to receivers outside AWS (PagerDuty's Events API, webhooks): the [`HttpPost`]
//! trait and its implementation on hyper with rustls.
//!
//! These endpoints are not AWS's, so their certificates are not Amazon Trust Services': the
//! client trusts the system's store (on Lambda's `provided.al2023`, the image's CA bundle),
//! read at the first post, which most runs never make.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::{Error, Result};

pub use hyper::Uri;

/// The longest one post may take, connection and answer included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer's body kept (for the reason of a refusal).
pub const REPLY_MAX: usize = 4_096;

/// An endpoint's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After` in seconds, when the endpoint sent one.
    pub retry_after: Option<u64>,
    /// The start of the body (at most [`REPLY_MAX`] bytes), for the logs and the reason.
    pub body: String,
}

/// Posts a JSON body to a URL.
pub trait HttpPost: Send + Sync {
    /// The endpoint's answer, whatever its status; an error only when no answer came (the
    /// connection failed, was cut, or timed out: [`Error::Http`], always retryable).
    fn post_json(&self, url: &str, body: &[u8]) -> impl Future<Output = Result<Reply>> + Send;
}

/// Where a URL points, without its user information, path or query (any of which may hold a
/// token): what logs and errors name.
pub fn host_of(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("?"),
            uri.host().unwrap_or("?"),
            uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// [`HttpPost`] on hyper 1 and rustls, trusting the system's root certificates.
#[derive(Default)]
pub struct HyperPost {
    client: OnceLock<std::result::Result<Client<Https, Full<Bytes>>, String>>,
}

impl std::fmt::Debug for HyperPost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperPost").finish_non_exhaustive()
    }
}

impl HyperPost {
    pub fn new() -> Self {
        Self::default()
    }

    fn client(&self) -> Result<&Client<Https, Full<Bytes>>> {
        self.client
            .get_or_init(build)
            .as_ref()
            .map_err(|e| Error::Config(format!("the HTTPS client: {e}")))
    }
}

fn build() -> std::result::Result<Client<Https, Full<Bytes>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no root certificate in the system's store ({} errors)",
            found.errors.len()
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

impl HttpPost for HyperPost {
    async fn post_json(&self, url: &str, body: &[u8]) -> Result<Reply> {
        let host = host_of(url);
        let failed = |message: String, retryable: bool| Error::Http {
            endpoint: host.clone(),
            message,
            retryable,
        };
        let request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "Vigil")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| failed(format!("the request could not be built: {e}"), false))?;
        let client = self.client()?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| failed(format!("could not send the request: {e}"), true))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            // The start of the body only: an endpoint's answer is never read whole.
            let mut body = response.into_body();
            let mut kept: Vec<u8> = Vec::new();
            while kept.len() < REPLY_MAX {
                match body.frame().await {
                    None => break,
                    Some(Err(e)) => return Err(failed(format!("the answer was cut: {e}"), true)),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            kept.extend_from_slice(&data);
                        }
                    }
                }
            }
            kept.truncate(REPLY_MAX);
            Ok(Reply {
                status,
                retry_after,
                body: String::from_utf8_lossy(&kept).into_owned(),
            })
        };
        tokio::time::timeout(POST_TIMEOUT, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {POST_TIMEOUT:?}"), true))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_host_never_the_path() {
        assert_eq!(
            host_of("https://hooks.example.com/services/T000/B000/secret-token?x=1"),
            "https://hooks.example.com"
        );
        assert_eq!(host_of("not a url"), "(an invalid URL)");
        assert_eq!(
            host_of("https://user:token@hooks.example.com:8443/x"),
            "https://hooks.example.com:8443"
        );
    }
}
