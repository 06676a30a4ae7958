//! The smallest Lambda function `lambda_runtime` makes: it answers every event with a greeting.
//! Built with the workspace's release profile, it is the baseline of `scripts/cold-start`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({ "hello": "world" }))
    }))
    .await
}
