//! `vigil-serve`: the real ingest bootstrap behind a local Function URL front (one execution
//! environment, as one Lambda instance), against the local AWS emulator, until it is stopped.
//! Prints the URL on its first line. The load test (`scripts/load-test`) drives it.
//!
//! Environment: `VIGIL_AWS_ENDPOINT_URL` (the emulator), `VIGIL_SERVE_NAMESPACE` (the
//! namespace of JSON pushes that name none; default `Load/Vigil`).

use vigil_e2e::{Function, FunctionUrl, LocalAws, binary};

#[tokio::main]
async fn main() {
    let aws = LocalAws::connect().await;
    let namespace = std::env::var("VIGIL_SERVE_NAMESPACE").unwrap_or_else(|_| "Load/Vigil".into());
    let function = Function::start(
        "ingest",
        &binary("ingest"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_NAMESPACE", namespace.as_str()),
        ],
    )
    .await;
    let pid = function.pid();
    let url = FunctionUrl::serve(function).await;
    println!("{}", url.url(""));
    eprintln!(
        "vigil-serve: ingest (pid {}) at {} against {}; stop with Ctrl-C",
        pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
        url.url(""),
        aws.endpoint
    );
    // Ctrl-C or SIGTERM: return, so that dropping the function stops its process too.
    vigil_e2e::until_stopped().await;
    drop(url);
}
