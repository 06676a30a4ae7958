//! Lambda wiring for `backup-verify`: configuration and clients built once per execution
//! environment, then the runtime loop. All logic lives in the library.

// The handler's future nests the SDK's futures deeply; rustc's default query depth (128) is
// close enough that a clean build of a slightly deeper chain fails computing its layout.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use vigil_backup_verify::handler::Invocation;
use vigil_backup_verify::{Budget, Storage, VerifyConfig, handle_scheduled};
use vigil_shared::{S3Store, SnsNotifier, init_tracing, sdk_config};

// One thread for the run's I/O: the streamed test restores decode on tokio's blocking pool
// (`spawn_blocking`, started at the first restore), as before. The multi-threaded
// scheduler's workers, started before the first poll, were an eighth of the cold start
// (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config =
        VerifyConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let conf = sdk_config()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let store = S3Store::from_conf(&conf);
    let notifier = SnsNotifier::from_conf(&conf);
    let (store, notifier, config) = (&store, &notifier, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now = chrono::Utc::now();
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let deadline_ms = event.context.deadline;
        let inv = Invocation {
            now,
            started: std::time::Instant::now(),
            budget: Budget::from_lambda_deadline(deadline_ms, now_ms),
            deadline: chrono::DateTime::from_timestamp_millis(
                i64::try_from(deadline_ms).unwrap_or(i64::MAX),
            )
            .unwrap_or(now),
            run_id: event.context.request_id.clone(),
        };
        handle_scheduled(&Storage::all(store), notifier, config, &event.payload, &inv).await
    }))
    .await
}
