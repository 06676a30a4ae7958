//! The figures of BENCHMARKS.md's "Rule packs on a synthetic week": what each pack's rules send
//! over a week of one-minute data with incidents, spikes and flapping
//! (`vigil_cli::pack_week`).
//!
//! `cargo run --release -p vigil-cli --example pack_week -- [DAYS] [SEED]` (7 and 1 by
//! default); `--json` prints the figures as JSON.

#[tokio::main]
async fn main() -> Result<(), String> {
    vigil_shared::emf::silence();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let numbers: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let parse = |i: usize, default: u64| -> Result<u64, String> {
        numbers.get(i).map_or(Ok(default), |a| {
            a.parse().map_err(|_| format!("{a:?} is not a number"))
        })
    };
    let (days, seed) = (parse(0, 7)? as i64, parse(1, 1)?);
    let started = std::time::Instant::now();
    use vigil_cli::pack_week::{Rules, simulate};
    let mut weeks = Vec::new();
    let mut baseline = Vec::new();
    for pack in &vigil_cli::pack::PACKS {
        let t = std::time::Instant::now();
        weeks.push(simulate(pack, days, seed, Rules::Shipped).await?);
        baseline.push(simulate(pack, days, seed, Rules::OnePoint).await?);
        eprintln!("{}: {:.1} s", pack.name, t.elapsed().as_secs_f64());
    }
    if json {
        let both = serde_json::json!({"shipped": weeks, "one_point": baseline});
        println!(
            "{}",
            serde_json::to_string_pretty(&both).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "{days} days of one-minute data, seed {seed}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "| pack | rules | incidents | detected | paged | median / worst minutes to detect | spikes | flaps | pages (outside incidents) | tickets (outside incidents) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for w in &weeks {
        let show = |m: Option<i64>| m.map_or("-".to_owned(), |m| m.to_string());
        println!(
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} ({}) | {} ({}) |",
            w.pack,
            w.rules,
            w.incidents,
            w.detected,
            w.paged,
            show(w.detect_minutes_median),
            show(w.detect_minutes_max),
            w.spikes,
            w.flaps,
            w.pages,
            w.pages_outside,
            w.tickets,
            w.tickets_outside
        );
        for missed in &w.missed {
            println!("|   missed: {missed} |||||||||");
        }
        for noise in &w.noise {
            println!("|   outside incidents: {noise} |||||||||");
        }
    }
    println!(
        "\nBaseline: the same thresholds on one data point (1 of 1, no `for`; burn rates unchanged)"
    );
    println!("| pack | detected | pages (outside incidents) | tickets (outside incidents) |");
    println!("|---|---|---|---|");
    for w in &baseline {
        println!(
            "| {} | {} of {} | {} ({}) | {} ({}) |",
            w.pack, w.detected, w.incidents, w.pages, w.pages_outside, w.tickets, w.tickets_outside
        );
    }
    println!("\nWhat the reads cost: the most series and metrics of one run");
    println!(
        "| pack | series per run | metrics requested per run | per series | GetMetricData, 30 days at one run a minute |"
    );
    println!("|---|---|---|---|---|");
    for w in &weeks {
        println!(
            "| {} | {} | {} | {:.2} | ${:.2} |",
            w.pack,
            w.series_per_run,
            w.metrics_per_run,
            w.metrics_per_run as f64 / w.series_per_run.max(1) as f64,
            vigil_cli::pack::monthly_dollars(w.metrics_per_run)
        );
    }
    Ok(())
}
