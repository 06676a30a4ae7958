//! Lambda wiring for `ingest`: clients built once per execution environment, then the runtime
//! loop. All logic lives in the library.

// The handler's future nests the SDK's futures deeply; rustc's default query depth (128) is
// close enough that a clean build of a slightly deeper chain fails computing its layout.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use vigil_ingest::{IngestConfig, handle_event};
use vigil_shared::{ConfiguredSink, S3Store, init_tracing, sdk_config};

// One thread: Lambda hands an execution environment one request at a time, and a request's
// concurrency (its PutMetricData calls side by side) is I/O that one thread drives. The
// multi-threaded scheduler's workers, started before the first poll, were an eighth of the
// cold start (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    init_tracing();
    let conf = sdk_config()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    // The S3 client is made only when there is a config file to read.
    let config = IngestConfig::from_env(|| S3Store::from_conf(&conf))
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let sink = ConfiguredSink::from_env(&conf)
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let (sink, config) = (&sink, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle_event(sink, config, event.payload, chrono::Utc::now()).await
    }))
    .await
}
