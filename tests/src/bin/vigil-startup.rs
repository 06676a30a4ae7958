//! `vigil-startup BOOTSTRAP [RUNS] [NAME=VALUE...]`: cold-start time of a function bootstrap, from spawning the
//! process to its first `GET /invocation/next` on the Runtime API (what Lambda's init phase
//! measures), against the time to spawn and reap `/bin/true` measured in the same run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vigil_e2e::Function;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(bootstrap) = args.next().map(PathBuf::from) else {
        eprintln!("usage: vigil-startup BOOTSTRAP [RUNS] [NAME=VALUE...]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(30);
    let extra: Vec<(String, String)> = args
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let mut env: Vec<(&str, &str)> = vec![("VIGIL_AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    env.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    let mut baseline = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let status = tokio::process::Command::new("/bin/true").status().await;
        assert!(status.is_ok_and(|s| s.success()), "/bin/true failed");
        baseline.push(t.elapsed());
    }

    let mut cold = Vec::with_capacity(runs);
    for _ in 0..runs {
        let function = Function::start("startup", &bootstrap, &env).await;
        match function.time_to_first_poll(Duration::from_secs(10)).await {
            Some(d) => cold.push(d),
            None => {
                eprintln!(
                    "{} never polled; logs:\n{}",
                    bootstrap.display(),
                    function.logs().join("\n")
                );
                std::process::exit(1);
            }
        }
    }
    let (b, c) = (median(baseline), median(cold));
    println!(
        "{}: start to first next {:.2} ms (median of {runs}); /bin/true spawn+exit {:.2} ms; ratio {:.1}",
        bootstrap.display(),
        c.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        c.as_secs_f64() / b.as_secs_f64()
    );
}
