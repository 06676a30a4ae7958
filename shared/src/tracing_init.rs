//! Structured JSON logs for Lambda: one JSON object per line on stdout, which Lambda ships to
//! CloudWatch Logs as is.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. The level comes from `RUST_LOG`, else from Lambda's
/// `AWS_LAMBDA_LOG_LEVEL` (set by the function's `LoggingConfig`), else `info`.
/// Calling it twice is harmless.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .map_err(|_| ())
                .and_then(|level| EnvFilter::try_new(level.to_lowercase()).map_err(|_| ()))
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
