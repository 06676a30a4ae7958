//! A record of every AWS call a function makes, for the tests that hold the calls to the
//! function's IAM role in the template (`tests/tests/permissions.rs`): the emulator never
//! denies, so a missing grant would otherwise show up only on AWS.
//!
//! Off unless [`CALL_LOG_ENV`] names a file; then each request, as it is sent, appends one
//! JSON line: `{"service", "operation", "method", "uri", "form", "name"}` (`form`: the body of
//! a form-encoded request, where SNS's query protocol carries the topic; `name`: the `Name` of
//! a JSON request, SSM's parameter; empty otherwise).

use std::io::Write;
use std::sync::Mutex;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// The variable naming the file the calls are appended to.
pub const CALL_LOG_ENV: &str = "VIGIL_AWS_CALL_LOG";

/// The interceptor, when [`CALL_LOG_ENV`] is set.
#[derive(Debug)]
pub struct CallLog {
    file: Mutex<std::fs::File>,
}

impl CallLog {
    /// Opens the log named by [`CALL_LOG_ENV`] for appending; `None` when it is unset or
    /// cannot be opened (the calls then go unrecorded, never failed).
    pub fn from_env() -> Option<CallLog> {
        let path = std::env::var(CALL_LOG_ENV).ok().filter(|p| !p.is_empty())?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!(path = %path, error = %e, "call log not opened"))
            .ok()?;
        Some(CallLog {
            file: Mutex::new(file),
        })
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "VigilCallLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let request = context.request();
        let form = request
            .headers()
            .get("content-type")
            .filter(|t| t.starts_with("application/x-www-form-urlencoded"))
            .and_then(|_| request.body().bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        // A JSON protocol's resource is its `Name` (SSM's parameter): the name only, never a
        // value (a GetParameter request carries none).
        let name = request
            .headers()
            .get("content-type")
            .filter(|t| t.starts_with("application/x-amz-json"))
            .and_then(|_| request.body().bytes())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("Name").and_then(|n| n.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let line = serde_json::json!({
            "service": metadata.service(),
            "operation": metadata.name(),
            "method": request.method(),
            "uri": request.uri(),
            "form": form,
            "name": name,
        });
        if let Ok(mut file) = self.file.lock() {
            let _ = writeln!(file, "{line}");
        }
        Ok(())
    }
}
