//! `vigil-stack`: Vigil's stack on this machine (`stack.rs`) until it is stopped: the three
//! real bootstraps with the template's environment, against the local AWS emulator, ingest
//! behind a local Function URL and all three behind a local Lambda Invoke API. Prints the
//! stack's outputs as one JSON line first, with the names `aws cloudformation describe-stacks`
//! gives a deployed stack's, plus `LambdaEndpoint`. The smoke test (`scripts/smoke --local`)
//! runs against it.
//!
//! Environment: `VIGIL_AWS_ENDPOINT_URL` (the emulator).

use vigil_e2e::LocalAws;
use vigil_e2e::stack::Stack;

#[tokio::main]
async fn main() {
    let aws = LocalAws::connect().await;
    let stack = Stack::start(&aws).await;
    println!("{}", stack.outputs);
    eprintln!(
        "vigil-stack: ingest, alert and backup-verify up against {} (bucket {}); stop with Ctrl-C",
        aws.endpoint, stack.resources.bucket
    );
    vigil_e2e::until_stopped().await;
    drop(stack);
}
