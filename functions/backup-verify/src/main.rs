//! Lambda wiring for `backup-verify`: configuration and clients built once per execution
//! environment, then the runtime loop. All logic lives in the library.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use vigil_backup_verify::{VerifyConfig, handle_scheduled};
use vigil_shared::{S3Store, SnsNotifier, init_tracing, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config =
        VerifyConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    let conf = sdk_config().await;
    let store = S3Store::from_conf(&conf);
    let notifier = SnsNotifier::from_conf(&conf);
    let (store, notifier, config) = (&store, &notifier, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle_scheduled(store, notifier, config, &event.payload, chrono::Utc::now()).await
    }))
    .await
}
