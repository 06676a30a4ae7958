//! Whom the AWS clients trust: the roots of Amazon Trust Services, built into the bootstrap.
//!
//! Every AWS service endpoint presents a certificate of Amazon Trust Services
//! (<https://www.amazontrust.com/repository/>), so those five roots are all a function needs.
//! The SDK's default client reads the system's whole store instead, at every cold start: on
//! this machine's Debian, 292 files under `/etc/ssl/certs` and a 220 kB bundle, half of the
//! ingest bootstrap's init time (BENCHMARKS.md, "Cold start").
//!
//! `VIGIL_TLS_ROOTS=system` goes back to the system's store, for an endpoint override
//! (`VIGIL_AWS_ENDPOINT_URL`) served over HTTPS by anything else, such as a TLS-inspecting
//! proxy or an emulator with its own certificate, and for a partition other than `aws`
//! (China's regions are not served under these roots). The `vigil` command, which runs on
//! people's machines and behind their proxies, trusts the system's store unless told
//! otherwise.

use aws_smithy_http_client::ConnectorBuilder;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::{Error, Result};

/// The environment variable that chooses the roots: `amazon` (the default) or `system`.
pub const ROOTS_ENV: &str = "VIGIL_TLS_ROOTS";

/// Amazon Trust Services' root certificates (PEM), with their SHA-256 fingerprints in the
/// file's heading.
pub const AMAZON_TRUST_SERVICES: &str = include_str!("../certs/amazon-trust-services.pem");

/// Which root certificates the clients trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// Amazon Trust Services' five roots, built in: no file is read.
    AmazonTrustServices,
    /// The system's store, read at start (the SDK's default).
    System,
}

impl Roots {
    /// The roots `value` (of [`ROOTS_ENV`]) asks for; unset or empty is the default.
    pub fn parse(value: Option<&str>) -> Result<Roots> {
        match value.map(str::trim) {
            None | Some("") | Some("amazon") => Ok(Roots::AmazonTrustServices),
            Some("system") => Ok(Roots::System),
            Some(other) => Err(Error::Config(format!(
                "{ROOTS_ENV}: `amazon` or `system`, not {other:?}"
            ))),
        }
    }

    /// The roots the environment asks for, `default` when it does not say.
    pub fn from_env_or(default: Roots) -> Result<Roots> {
        match std::env::var(ROOTS_ENV) {
            Ok(v) if !v.trim().is_empty() => Roots::parse(Some(&v)),
            _ => Ok(default),
        }
    }

    fn trust_store(self) -> TrustStore {
        match self {
            Roots::AmazonTrustServices => TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(AMAZON_TRUST_SERVICES.as_bytes()),
            Roots::System => TrustStore::default(),
        }
    }
}

/// The HTTPS client every AWS client of a function shares: the SDK's own default (hyper 1,
/// rustls with aws-lc, the proxy of `HTTPS_PROXY` / `NO_PROXY`, the connector settings and
/// sleep of each client), trusting `roots`.
pub fn http_client(roots: Roots) -> Result<SharedHttpClient> {
    let context = TlsContext::builder()
        .with_trust_store(roots.trust_store())
        .build()
        .map_err(|e| Error::Internal(format!("TLS configuration: {e}")))?;
    Ok(
        aws_smithy_http_client::Builder::new().build_with_connector_fn(
            move |settings, components| {
                let mut connector = ConnectorBuilder::default()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                    .tls_context(context.clone());
                connector.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    connector.set_sleep_impl(components.sleep_impl());
                }
                connector.set_proxy_config(Some(ProxyConfig::from_env()));
                connector.build()
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::Digest;

    /// The DER bytes of each PEM block.
    fn certificates(pem: &str) -> Vec<Vec<u8>> {
        pem.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .expect("base64 certificate")
            })
            .collect()
    }

    /// The fingerprints Amazon Trust Services publishes for its roots.
    #[test]
    fn the_built_in_roots_are_amazon_trust_services_five() {
        let published = [
            "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
            "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
            "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
            "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
            "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
        ];
        let found: Vec<String> = certificates(AMAZON_TRUST_SERVICES)
            .iter()
            .map(|der| {
                sha2::Sha256::digest(der)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        assert_eq!(found, published);
    }

    #[test]
    fn roots_are_chosen_by_name() {
        assert_eq!(
            Roots::parse(None).expect("default"),
            Roots::AmazonTrustServices
        );
        assert_eq!(
            Roots::parse(Some(" ")).expect("empty"),
            Roots::AmazonTrustServices
        );
        assert_eq!(Roots::parse(Some("system")).expect("system"), Roots::System);
        assert!(matches!(Roots::parse(Some("all")), Err(Error::Config(_))));
    }
}
