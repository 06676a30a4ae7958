//! `vigil-startup RUNS BASELINE BOOTSTRAP...`: cold starts of function bootstraps, from spawning
//! the process to its first `GET /invocation/next` on the Runtime API (the end of what Lambda
//! calls the init phase), against a baseline bootstrap measured in the same run, the runs
//! interleaved (baseline, then each bootstrap, RUNS times) so that both see the same machine.
//!
//! Each bootstrap named `ingest`, `alert` or `backup-verify` gets the environment the template
//! gives it (`stack::environment`, with placeholder names), and every AWS client points at a
//! closed port: nothing is called before the first poll. Prints a Markdown table: median and
//! 90th percentile per bootstrap, its size, and the ratio of medians to the baseline's.
//! `scripts/cold-start` builds the release bootstraps and the bare `hello` baseline and runs it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_e2e::Function;
use vigil_e2e::stack::{Resources, environment};

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn cold_start(bootstrap: &Path) -> Duration {
    let resources = Resources {
        bucket: "vigil-startup".into(),
        alert_topic: "arn:aws:sns:us-east-1:000000000000:alerts".into(),
        smoke_topic: "arn:aws:sns:us-east-1:000000000000:smoke".into(),
        namespace: "Service".into(),
    };
    let mut env = vec![("VIGIL_AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned())];
    let function = name(bootstrap);
    if ["ingest", "alert", "backup-verify"].contains(&function.as_str()) {
        env.extend(environment(&function, &resources));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Function::start("startup", bootstrap, &env).await;
    match started.time_to_first_poll(Duration::from_secs(10)).await {
        Some(d) => d,
        None => {
            eprintln!(
                "{} never polled; logs:\n{}",
                bootstrap.display(),
                started.logs().join("\n")
            );
            std::process::exit(1);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(runs), Some(baseline)) = (
        args.first().and_then(|r| r.parse::<usize>().ok()),
        args.get(1),
    ) else {
        eprintln!("usage: vigil-startup RUNS BASELINE BOOTSTRAP...");
        std::process::exit(2);
    };
    let binaries: Vec<PathBuf> = std::iter::once(baseline)
        .chain(&args[2..])
        .map(PathBuf::from)
        .collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); binaries.len()];
    // One unrecorded round: the page cache holds every binary before the first measured one.
    for b in &binaries {
        cold_start(b).await;
    }
    for _ in 0..runs.max(1) {
        for (b, t) in binaries.iter().zip(&mut times) {
            t.push(cold_start(b).await);
        }
    }
    let base = percentile(&times[0], 0.5);
    println!(
        "| bootstrap | size | start to first `next`, median | p90 | median / {}'s |",
        name(&binaries[0])
    );
    println!("|---|---|---|---|---|");
    for (b, t) in binaries.iter().zip(&times) {
        let size = std::fs::metadata(b).map(|m| m.len()).unwrap_or(0);
        let median = percentile(t, 0.5);
        println!(
            "| {} | {:.1} MB | {:.2} ms | {:.2} ms | {:.2} |",
            name(b),
            size as f64 / 1e6,
            ms(median),
            ms(percentile(t, 0.9)),
            median.as_secs_f64() / base.as_secs_f64()
        );
    }
    println!("\n{} runs of each, interleaved.", runs.max(1));
}
