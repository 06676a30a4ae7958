//! Lambda wiring for `alert`: configuration and clients built once per execution environment,
//! then the runtime loop. All logic lives in the library.

// The handler's future nests the SDK's futures deeply; rustc's default query depth (128) is
// close enough that a clean build of a slightly deeper chain fails computing its layout.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use vigil_alert::{AlertConfig, Call, handle_event};
use vigil_shared::math::LocalMath;
use vigil_shared::{
    CloudWatchReader, HyperPost, Outbound, S3Store, SnsNotifier, SsmSecrets, init_tracing,
    sdk_config,
};

// One thread: a run is one task that waits on CloudWatch, S3 and SNS, and its concurrency (the
// outbox's batches side by side) is I/O that one thread drives. The multi-threaded
// scheduler's workers, started before the first poll, were an eighth of the cold start
// (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config =
        AlertConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let conf = sdk_config()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let reader = LocalMath::new(CloudWatchReader::from_conf(&conf), config.math);
    // SNS, and the receivers outside it (PagerDuty, webhooks) with their secrets: each client
    // is made at its first message.
    let notifier = Outbound {
        sns: SnsNotifier::from_conf(&conf),
        http: HyperPost::new(),
        secrets: SsmSecrets::from_conf(&conf),
    };
    let store = S3Store::from_conf(&conf);
    let (reader, notifier, store, config) = (&reader, &notifier, &store, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now = chrono::Utc::now();
        let deadline = i64::try_from(event.context.deadline)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or(now + chrono::Duration::seconds(50));
        let call = Call {
            request_id: event.context.request_id.clone(),
            now,
            deadline,
        };
        handle_event(reader, notifier, store, config, &event.payload, &call).await
    }))
    .await
}
