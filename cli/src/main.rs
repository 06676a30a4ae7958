//! `vigil`: check, unit-test and backtest alert rules, verify backups, manage silences and list
//! alerts, with the code the functions run. Exit codes: 0 all good, 1 something was found (an invalid file, a failed
//! test, a failing backup), 2 the command could not run (bad arguments, AWS unreachable).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use vigil_backup_verify::Status;
use vigil_cli::backtest::{self, human};
use vigil_cli::incidents::{self, Incident};
use vigil_cli::progress::Counted;
use vigil_cli::rules_test;
use vigil_cli::score::{self, QuietHours, Scoring};
use vigil_cli::sent;
use vigil_cli::silences::{self, Expired, NewSilence};
use vigil_cli::sim::{self, episodes};
use vigil_cli::style::Style;
use vigil_shared::cas::StateLocation;
use vigil_shared::duration::parse_span;
use vigil_shared::tls::Roots;
use vigil_shared::{CloudWatchReader, ConfigSource, S3Store};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Vigil's rules and backups, from a laptop or CI"
)]
struct Cli {
    /// `text` for people (colours on a terminal only), `json` for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Alert rules files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Backup sets.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Silences, as amtool's: add, list, expire, on the object the alert function reads.
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// What is firing, pending and silenced now, from the alert function's state.
    Alerts {
        #[command(flatten)]
        at: Locations,
        /// Also list the episodes that ended in the last --since.
        #[arg(long)]
        history: bool,
        #[arg(long, default_value = "7d", requires = "history")]
        since: String,
    },
}

/// Where the stack keeps its silences and the alert state.
#[derive(clap::Args, Clone, Debug)]
struct Locations {
    /// The stack's bucket (its output VigilBucketName; default VIGIL_BUCKET): the silences at
    /// config/silences.json and the alert state at state/alert.json in it.
    #[arg(long)]
    bucket: Option<String>,
    /// The silences object, s3://bucket/key (default VIGIL_SILENCES, else the bucket's).
    #[arg(long)]
    silences: Option<String>,
    /// The alert state object, s3://bucket/key (default the bucket's).
    #[arg(long)]
    state: Option<String>,
}

impl Locations {
    fn bucket(&self) -> Option<String> {
        self.bucket
            .clone()
            .or_else(|| std::env::var("VIGIL_BUCKET").ok())
            .filter(|b| !b.trim().is_empty())
    }

    fn s3(flag: &str, text: &str) -> Result<StateLocation, Fatal> {
        match text.parse::<ConfigSource>()? {
            ConfigSource::S3 { bucket, key } => Ok(StateLocation { bucket, key }),
            ConfigSource::File(_) => {
                Err(Fatal(format!("--{flag}: {text:?} is not s3://bucket/key")))
            }
        }
    }

    /// The silences object, when one is named: `--silences`, else `--bucket`'s, else
    /// `VIGIL_SILENCES`, else `VIGIL_BUCKET`'s. What is given on the command line wins.
    fn silences(&self) -> Result<Option<StateLocation>, Fatal> {
        let of_bucket = |bucket: String| StateLocation {
            bucket,
            key: "config/silences.json".to_owned(),
        };
        if let Some(s) = &self.silences {
            return Self::s3("silences", s).map(Some);
        }
        if let Some(bucket) = self.bucket.clone().filter(|b| !b.trim().is_empty()) {
            return Ok(Some(of_bucket(bucket)));
        }
        if let Some(s) = std::env::var("VIGIL_SILENCES")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            return Self::s3("silences", &s).map(Some);
        }
        Ok(self.bucket().map(of_bucket))
    }

    fn required_silences(&self) -> Result<StateLocation, Fatal> {
        self.silences()?.ok_or_else(|| {
            Fatal(
                "where are the silences? --bucket (or VIGIL_BUCKET) or --silences s3://bucket/key"
                    .to_owned(),
            )
        })
    }

    fn state(&self) -> Result<StateLocation, Fatal> {
        match (&self.state, self.bucket()) {
            (Some(s), _) => Self::s3("state", s),
            (None, Some(bucket)) => Ok(StateLocation {
                bucket,
                key: "state/alert.json".to_owned(),
            }),
            (None, None) => Err(Fatal(
                "where is the alert state? --bucket (or VIGIL_BUCKET) or --state s3://bucket/key"
                    .to_owned(),
            )),
        }
    }
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Silence the alerts matching every matcher: name=value, name!=value, name=~regex,
    /// name!~regex (a regex matches the whole value; quote it for the shell).
    Add {
        #[command(flatten)]
        at: Locations,
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, from --start (or now).
        #[arg(long, default_value = "1h", conflicts_with = "end")]
        duration: String,
        /// When it ends (RFC 3339), instead of --duration.
        #[arg(long)]
        end: Option<DateTime<Utc>>,
        /// When it starts (RFC 3339); now by default.
        #[arg(long)]
        start: Option<DateTime<Utc>>,
        /// Who silences (default $USER).
        #[arg(long)]
        author: Option<String>,
        /// Why, and what to check before it ends.
        #[arg(long, required = true)]
        comment: String,
    },
    /// The silences in force or to come (and the ended ones with --expired).
    List {
        #[command(flatten)]
        at: Locations,
        #[arg(long)]
        expired: bool,
    },
    /// End silences now, by id.
    Expire {
        #[command(flatten)]
        at: Locations,
        #[arg(required = true)]
        ids: Vec<String>,
        /// Who ends them (default $USER).
        #[arg(long)]
        author: Option<String>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate and lint rules files; errors name the file, line and field.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The topics the stack may publish to (its alert topic and AlertRouteTopicArns),
        /// comma-separated: a route to any other topic is an error. Defaults to
        /// VIGIL_ALERT_TOPIC_ARN and VIGIL_ALLOWED_TOPIC_ARNS, as the function reads them;
        /// without either, routes are not checked against the stack.
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
    },
    /// Run rules unit tests (synthetic series, expected alerts at given times).
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay rules over CloudWatch history: the notifications they would have sent, scored
    /// against the team's incidents when given them.
    Backtest(BacktestArgs),
    /// Rule packs shipped with the command: list them, show one, add one beside a rules file,
    /// run a pack's tests with your parameters.
    Pack {
        #[command(subcommand)]
        command: PackCommand,
    },
}

#[derive(Subcommand)]
enum PackCommand {
    /// The packs, with what each needs.
    List,
    /// A pack's parameters and its rules as they would be written (with --prometheus, its
    /// Prometheus recording rules).
    Show {
        name: String,
        /// A parameter's value, NAME=VALUE (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        #[arg(long)]
        prometheus: bool,
    },
    /// Writes the pack as packs/NAME.yaml beside the rules file and names it in the file's
    /// rule_files, so the alert function reads it (and packs/NAME.prometheus.yaml, the
    /// recording rules for the sender, when the pack has them).
    Add {
        name: String,
        /// The rules file the function reads (created when missing).
        #[arg(long, default_value = "config/rules.yaml")]
        rules: PathBuf,
        /// A parameter's value, NAME=VALUE (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// Replace a pack file that differs (its earlier parameters, or edits by hand).
        #[arg(long)]
        force: bool,
    },
    /// Runs the pack's unit tests with these parameters: whether it still fires on its
    /// incidents and stays quiet on a spike and on flapping.
    Test {
        name: String,
        #[arg(long = "set")]
        set: Vec<String>,
    },
}

#[derive(clap::Args)]
struct BacktestArgs {
    file: PathBuf,
    /// How far back to start, as a duration (14d, 36h).
    #[arg(long, default_value = "14d")]
    since: String,
    /// Where to stop (RFC 3339); now by default.
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// The evaluation schedule to replay.
    #[arg(long, default_value = "1m")]
    every: String,
    /// Write one SVG plot per series (metric, threshold, episodes, incidents) into this
    /// directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The team's incidents (YAML, or CSV with start, end and label columns): the replay is
    /// scored against them (precision, recall, time to detect) beside a coin flip.
    #[arg(long)]
    incidents: Option<PathBuf>,
    /// The hours a page wakes someone up, HH:MM-HH:MM in --tz (may wrap midnight).
    #[arg(long, default_value = "22:00-07:00")]
    quiet_hours: String,
    /// The team's time zone, an IANA name (Europe/Berlin).
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// How long before an incident's start a page still counts for it.
    #[arg(long, default_value = "0s")]
    margin: String,
    /// Draws of the coin-flip baseline.
    #[arg(long, default_value_t = 1000)]
    draws: usize,
    /// The coin flip's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also print the weekly review the function would send at the end of the range (its
    /// last seven days, with the rules file's `policy.review` settings).
    #[arg(long)]
    review: bool,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Run backup-verify's checks once on a backup sets file (a path or s3://bucket/key).
    Verify {
        config: String,
        /// The time the checks take as now (RFC 3339); now by default.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// Also write the JSON report to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

/// The command could not run; exit code 2.
struct Fatal(String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The functions' code writes EMF lines for CloudWatch Logs; here they are not wanted.
    vigil_shared::emf::silence();
    let style = Style::detect();
    let json = cli.output == Output::Json;
    let result = match cli.command {
        Command::Rules { command } => match command {
            RulesCommand::Check { files, topics } => rules_check(&files, &topics, json, style),
            RulesCommand::Test { files } => rules_test(&files, json, style).await,
            RulesCommand::Backtest(args) => rules_backtest(&args, json, style).await,
            RulesCommand::Pack { command } => rules_pack(command, json, style).await,
        },
        Command::Backup { command } => match command {
            BackupCommand::Verify { config, at, report } => {
                backup_verify(&config, at, report.as_deref(), json, style).await
            }
        },
        Command::Silence { command } => silence(command, json, style).await,
        Command::Alerts { at, history, since } => {
            alerts(&at, history.then_some(since.as_str()), json, style).await
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Fatal(message)) => {
            if json {
                println!("{}", json!({"error": message}));
            } else {
                eprintln!("vigil: {message}");
            }
            ExitCode::from(2)
        }
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A progress bar on standard error, drawn only on a terminal and never in JSON mode.
fn bar(len: Option<u64>, template: &str, json: bool) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    if let Ok(s) = ProgressStyle::with_template(template) {
        bar.set_style(s);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// The topics routes may name: `--topics`, else the function's own environment.
fn allowed_topics(given: &[String]) -> Option<std::collections::BTreeSet<String>> {
    use vigil_alert::env;
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if !given.is_empty() {
        return Some(given.iter().map(|t| t.trim().to_owned()).collect());
    }
    match (from_env(env::TOPIC_ARN), from_env(env::ALLOWED_TOPIC_ARNS)) {
        (None, None) => None,
        (default, extra) => Some(vigil_alert::config::allowed_topics(
            default.as_deref().unwrap_or_default(),
            extra.as_deref().unwrap_or_default(),
        )),
    }
    .map(|mut set| {
        set.remove("");
        set
    })
}

fn rules_check(
    files: &[PathBuf],
    topics: &[String],
    json: bool,
    style: Style,
) -> Result<bool, Fatal> {
    let allowed = allowed_topics(topics);
    let mut all_ok = true;
    let mut out = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let loaded = vigil_alert::rule_files::read_local(&name)
            .map_err(|e| e.to_string())
            .and_then(|(rules, policy)| match &allowed {
                Some(allowed) => policy
                    .check_topics(&name, allowed)
                    .map(|()| (rules, policy))
                    .map_err(|e| e.to_string()),
                None => Ok((rules, policy)),
            });
        match loaded {
            Ok((rules, _policy)) => {
                let warnings = vigil_alert::lint(&rules);
                if json {
                    out.push(json!({"file": name, "ok": true, "rules": rules.len(), "warnings": warnings}));
                } else {
                    println!("{} {name}: {} rules", style.ok("ok  "), rules.len());
                    for w in &warnings {
                        println!("     {} {w}", style.warn("warning:"));
                    }
                }
            }
            Err(error) => {
                all_ok = false;
                if json {
                    out.push(json!({"file": name, "ok": false, "error": error}));
                } else {
                    println!("{} {error}", style.bad("FAIL"));
                }
            }
        }
    }
    if json {
        print_json(&json!({"ok": all_ok, "files": out}));
    }
    Ok(all_ok)
}

async fn rules_test(files: &[PathBuf], json: bool, style: Style) -> Result<bool, Fatal> {
    let mut results = Vec::new();
    for path in files {
        results.push(rules_test::run_file(path).await);
    }
    Ok(print_tests(&results, json, style))
}

/// Prints test results (`rules test`, `rules pack test`); whether all passed.
fn print_tests(results: &[rules_test::FileResult], json: bool, style: Style) -> bool {
    let all_ok = results.iter().all(rules_test::FileResult::passed);
    if json {
        print_json(&json!({"ok": all_ok, "files": results}));
        return all_ok;
    }
    for r in results {
        if let Some(e) = &r.error {
            println!("{} {e}", style.bad("FAIL"));
            continue;
        }
        let verdict = if r.failures.is_empty() {
            style.ok("ok  ")
        } else {
            style.bad("FAIL")
        };
        println!(
            "{verdict} {}: {} tests, {} checks, {} failed",
            r.file,
            r.tests,
            r.checks,
            r.failures.len()
        );
        for f in &r.failures {
            println!(
                "     {} {} at {}: alert {}",
                style.bad("failed:"),
                f.test,
                f.eval_time,
                f.alertname
            );
            println!(
                "       expected: {}",
                serde_json::to_string(&f.expected).unwrap_or_default()
            );
            println!(
                "       got:      {}",
                serde_json::to_string(&f.got).unwrap_or_default()
            );
        }
    }
    all_ok
}

async fn rules_pack(command: PackCommand, json: bool, style: Style) -> Result<bool, Fatal> {
    use vigil_cli::{pack, pack_add};
    match command {
        PackCommand::List => {
            let packs: Vec<_> = pack::PACKS
                .iter()
                .map(|p| {
                    let meta = p.meta();
                    let rules = p
                        .values(&[])
                        .and_then(|v| p.rules(&v))
                        .and_then(|text| {
                            vigil_alert::load_set("pack", &text, &[]).map_err(|e| e.to_string())
                        })
                        .map_or(0, |(rules, _)| rules.len());
                    (p.name, meta, rules)
                })
                .collect();
            if json {
                let list: Vec<_> = packs
                    .iter()
                    .map(|(name, meta, rules)| json!({"name": name, "rules": rules, "summary": meta.summary, "requires": meta.requires}))
                    .collect();
                print_json(&json!({"packs": list}));
            } else {
                for (name, meta, rules) in &packs {
                    println!("{} ({rules} rules): {}", style.ok(name), meta.summary);
                    println!("    needs: {}", meta.requires);
                }
            }
            Ok(true)
        }
        PackCommand::Show {
            name,
            set,
            prometheus,
        } => {
            let p = pack::find(&name)?;
            let values = p.values(&set)?;
            let meta = p.meta();
            let text = if prometheus {
                p.recording
                    .map(|recording| recording.rules.to_owned())
                    .ok_or_else(|| format!("the pack {name} needs no recording rules"))?
            } else {
                p.rules(&values)?
            };
            if json {
                print_json(
                    &json!({"name": p.name, "summary": meta.summary, "requires": meta.requires,
                    "parameters": meta.parameters, "values": values, "reads": p.reads(&values)?,
                    "text": text}),
                );
                return Ok(true);
            }
            println!("# {}: {}", p.name, meta.summary);
            println!("# needs: {}", meta.requires);
            let reads = p.reads(&values)?;
            println!(
                "# reads: {} rules, {} of them one series per value of a * dimension; each series costs one GetMetricData metric requested per statistic it reads and run, about ${:.2} a month at one run a minute (README: What the reads cost)",
                reads.rules,
                reads.per_series,
                pack::monthly_dollars(1)
            );
            println!("# parameters (--set NAME=VALUE):");
            for param in &meta.parameters {
                println!(
                    "#   {} = {:?}: {}",
                    param.name, values[&param.name], param.description
                );
            }
            print!("{text}");
            Ok(true)
        }
        PackCommand::Add {
            name,
            rules,
            set,
            force,
        } => {
            let p = pack::find(&name)?;
            let values = p.values(&set)?;
            let mut command = format!("vigil rules pack add {name} --rules {}", rules.display());
            for item in &set {
                command.push_str(&format!(" --set '{item}'"));
            }
            let added = pack_add::add(p, &values, &command, &rules, force)?;
            if json {
                print_json(&json!(added));
                return Ok(true);
            }
            println!(
                "{} {}: {} rules of the pack {name}",
                style.ok("wrote"),
                added.pack_file.display(),
                added.rules
            );
            if added.rules_file_changed {
                println!(
                    "{} {}: rule_files names {}",
                    style.ok("wrote"),
                    rules.display(),
                    pack_add::entry(p)
                );
            }
            if let Some(path) = &added.recording_file {
                println!(
                    "{} {}: Prometheus recording rules; add them to the sender's rule_files",
                    style.ok("wrote"),
                    path.display()
                );
            }
            println!("needs: {}", p.meta().requires);
            Ok(true)
        }
        PackCommand::Test { name, set } => {
            let p = pack::find(&name)?;
            let values = p.values(&set)?;
            let result = pack::test(p, &values).await;
            Ok(print_tests(&[result], json, style))
        }
    }
}

/// A duration argument that may be zero, at most ten years.
fn span_or_zero(name: &str, text: &str) -> Result<Duration, Fatal> {
    let span = parse_span(text).map_err(|e| Fatal(format!("--{name}: {e}")))?;
    rules_test::offset(span, &format!("--{name}")).map_err(Fatal)
}

/// A duration argument: longer than zero, at most ten years.
fn span_arg(name: &str, text: &str) -> Result<Duration, Fatal> {
    let span = parse_span(text).map_err(|e| Fatal(format!("--{name}: {e}")))?;
    if span.seconds() == 0 {
        return Err(Fatal(format!("--{name}: must be longer than zero")));
    }
    rules_test::offset(span, &format!("--{name}")).map_err(Fatal)
}

async fn rules_backtest(args: &BacktestArgs, json: bool, style: Style) -> Result<bool, Fatal> {
    let name = args.file.display().to_string();
    let (rules, policy) = vigil_alert::rule_files::read_local(&name)?;
    let incidents = match &args.incidents {
        Some(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: {e}"))?;
            Some(incidents::load(&origin, &text)?)
        }
        None => None,
    };
    let scoring = Scoring {
        quiet: QuietHours::parse(&args.quiet_hours, &args.tz)?,
        margin: span_or_zero("margin", &args.margin)?,
        draws: args.draws,
        seed: args.seed,
    };
    let (until, every, plot_dir) = (args.until, args.every.as_str(), args.plot.as_deref());
    let until = until.unwrap_or_else(Utc::now);
    let range = span_arg("since", &args.since)?;
    let since = until
        .checked_sub_signed(range)
        .ok_or_else(|| Fatal("--since reaches before the start of time".to_owned()))?;
    let every = span_arg("every", every)?;
    let evaluations = range.num_seconds() / every.num_seconds();
    if evaluations > sim::MAX_EVALUATIONS as i64 {
        return Err(Fatal(format!(
            "--since {} every {} is {evaluations} evaluations; at most {}",
            human(range.num_seconds()),
            human(every.num_seconds()),
            sim::MAX_EVALUATIONS
        )));
    }
    let times = backtest::schedule(since, until, every);
    if times.is_empty() {
        return Err(Fatal("the range holds no evaluation".to_owned()));
    }
    // CloudWatch keeps periods under a minute 3 hours, one-minute data 15 days, five-minute data
    // 63 days: older points of a finer rule read back as nothing, which is no data to the rule.
    for rule in &rules {
        // The first run reads its look-back before the range's start (days, for a burn rate).
        let age = Utc::now() - since + Duration::seconds(rule.lookback().seconds() as i64);
        let kept = Duration::seconds(vigil_shared::limits::cw_retention_seconds(
            rule.metric.period.seconds(),
        ) as i64);
        if age > kept {
            eprintln!(
                "vigil: warning: {}: CloudWatch keeps {}-second data {}; the start of the range reads as no data",
                rule.alert,
                rule.metric.period.seconds(),
                human(kept.num_seconds())
            );
        }
    }

    let conf = vigil_shared::aws::sdk_config_trusting(Roots::System).await?;
    let cloudwatch = CloudWatchReader::from_conf(&conf);
    let reading = bar(None, "{spinner} reading CloudWatch history {msg}", json);
    let history = backtest::fetch_history(&cloudwatch, &rules, since, until).await?;
    reading.finish_and_clear();

    let replaying = bar(
        Some(times.len() as u64),
        "{bar:40} {pos}/{len} evaluations replayed ({eta} left)",
        json,
    );
    let replay = sim::replay(&history.reader, &rules, &policy, &times, |n| {
        replaying.set_position(n as u64);
    })
    .await?;
    replaying.finish_and_clear();
    let found = episodes(&replay.runs);
    let messages = sent::messages(&replay.sent).map_err(Fatal)?;
    let report = backtest::summarize(
        &rules,
        &replay,
        &messages,
        &found,
        since,
        until,
        every,
        history.get_metric_data_calls,
    );
    let scored = incidents.as_ref().map(|incidents| {
        score::score_backtest(
            &rules,
            &report.rules,
            &messages,
            incidents,
            since,
            until,
            &scoring,
        )
    });

    let mut plots = Vec::new();
    if let Some(dir) = plot_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (alert, series, query) in &history.queries {
            let Some(rule) = rules.iter().find(|r| r.alert == *alert) else {
                continue;
            };
            let points = if rule.burn.is_some() {
                backtest::burn_rates(&history, rule, query, &times).await?
            } else {
                backtest::compared(&history, query, since, until).await?
            };
            let mine: Vec<&sim::Episode> = found
                .iter()
                .filter(|e| e.alert == *alert && e.series == *series)
                .collect();
            let label: Vec<String> = series.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let title = if label.is_empty() {
                format!(
                    "{alert}: {} vs {}",
                    if rule.burn.is_some() {
                        "burn rate"
                    } else {
                        rule.metric.name.as_str()
                    },
                    rule.condition.threshold
                )
            } else {
                format!("{alert} {{{}}}: {}", label.join(","), rule.metric.name)
            };
            let stem: String = format!("{alert}-{}", label.join("-"))
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            // Distinct series can sanitize to one name: number the later ones.
            let stem = stem.trim_end_matches('-').to_owned();
            let mut path = dir.join(format!("{stem}.svg"));
            let mut n = 1;
            while plots.contains(&path.display().to_string()) {
                n += 1;
                path = dir.join(format!("{stem}-{n}.svg"));
            }
            let mut labels = vigil_alert::alert_labels(rule);
            labels.extend(series.clone());
            let theirs: Vec<&Incident> = incidents
                .iter()
                .flatten()
                .filter(|i| i.concerns(&labels))
                .collect();
            let svg = backtest::plot(
                &title,
                &points,
                rule.condition.threshold,
                &mine,
                &theirs,
                since,
                until,
            );
            std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
            plots.push(path.display().to_string());
        }
    }

    let review = if args.review {
        let settings = policy.review.clone().unwrap_or_default();
        let quiet = settings
            .quiet()
            .map_err(|e| Fatal(format!("{name}: policy.review: {e}")))?;
        Some(vigil_alert::review::review(
            &replay.state,
            &settings,
            &quiet,
            until,
        ))
    } else {
        None
    };
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["notifications"] = serde_json::to_value(&messages)?;
        if let Some(review) = &review {
            value["review"] = serde_json::to_value(review)?;
        }
        if let Some(scored) = &scored {
            value["score"] = serde_json::to_value(scored)?;
        }
        value["plots"] = json!(plots);
        print_json(&value);
        return Ok(true);
    }
    println!(
        "{} {} to {} every {}: {} evaluations, {} GetMetricData calls",
        style.bold("backtest"),
        report.since,
        report.until,
        human(report.every_seconds),
        report.evaluations,
        report.get_metric_data_calls
    );
    println!();
    let width = report
        .rules
        .iter()
        .map(|r| r.alert.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<width$}  {:>13}  {:>8}  {:>6}  {:>12}  {:>10}",
        "rule", "notifications", "episodes", "short", "firing time", "longest"
    );
    for r in &report.rules {
        let count = format!("{:>13}", r.notifications);
        let count = if r.notifications == 0 {
            style.ok(&count)
        } else {
            style.warn(&count)
        };
        println!(
            "{:<width$}  {count}  {:>8}  {:>6}  {:>12}  {:>10}",
            r.alert,
            r.episodes.len(),
            r.short_episodes,
            human(r.firing_seconds),
            human(r.longest_seconds)
        );
    }
    for r in report.rules.iter().filter(|r| !r.episodes.is_empty()) {
        println!();
        println!("{}", style.bold(&r.alert));
        for e in &r.episodes {
            let series: Vec<String> = e.series.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "  {} -> {}  {}  {}",
                e.start,
                e.end.as_deref().unwrap_or("still firing"),
                human(e.duration_seconds),
                series.join(",")
            );
        }
    }
    if let Some(scored) = &scored {
        println!();
        print!("{}", score::render(scored, style));
    }
    if let Some(review) = &review {
        let n = vigil_alert::review::notification(review, "(this backtest)");
        println!();
        println!("{}", style.bold(&n.subject));
        println!();
        print!("{}", n.message);
    }
    for p in &plots {
        println!("plot: {p}");
    }
    Ok(true)
}

async fn backup_verify(
    config: &str,
    at: Option<DateTime<Utc>>,
    report_path: Option<&Path>,
    json: bool,
    style: Style,
) -> Result<bool, Fatal> {
    let conf = vigil_shared::aws::sdk_config_trusting(Roots::System).await?;
    let source: ConfigSource = config.parse()?;
    let s3 = S3Store::from_conf(&conf);
    let text = source
        .read(&s3)
        .await
        .map_err(|e| format!("{source}: {e}"))?;
    let sets = vigil_backup_verify::load(&source.to_string(), &text)?;
    let restoring = bar(
        None,
        "{spinner} {bytes} restored and checked ({bytes_per_sec})",
        json,
    );
    let counter = restoring.clone();
    let streamer = Counted {
        inner: s3.clone(),
        on_bytes: Arc::new(move |n| counter.inc(n)),
    };
    let storage = vigil_backup_verify::Storage {
        objects: &s3,
        inspector: &s3,
        streamer: &streamer,
    };
    let now = at.unwrap_or_else(Utc::now);
    let order: Vec<&vigil_backup_verify::BackupSet> = sets.iter().collect();
    // No time limit here: the command verifies backups too large for one Lambda run.
    let budget = vigil_backup_verify::Budget::unlimited();
    let report = vigil_backup_verify::verify(&storage, &order, now, &budget).await;
    let restored = restoring.position();
    restoring.finish_and_clear();
    let value = serde_json::to_value(&report)?;
    if let Some(path) = report_path {
        std::fs::write(path, serde_json::to_vec_pretty(&value)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ok = report.summary.failed == 0 && report.summary.error == 0;
    if json {
        print_json(&value);
        return Ok(ok);
    }
    for set in &report.sets {
        let painted = match set.status {
            Status::Ok => style.ok("ok    "),
            Status::Failed => style.bad("FAILED"),
            Status::Error => style.bad("ERROR "),
            Status::Skipped => style.warn("SKIP  "),
            Status::NotReached => style.warn("LATE  "),
        };
        println!(
            "{painted} {} (s3://{}/{})",
            set.name, set.bucket, set.prefix
        );
        for c in &set.checks {
            let mark = match c.status {
                Status::Ok => style.ok("ok"),
                Status::Failed => style.bad("failed"),
                Status::Error => style.bad("error"),
                Status::Skipped => style.warn("skipped"),
                Status::NotReached => style.warn("not reached"),
            };
            println!("    {:<15} {mark}: {}", c.check, c.detail);
        }
    }
    println!(
        "{} sets: {} ok, {} failed, {} error; {} bytes restored",
        report.summary.sets,
        report.summary.ok,
        report.summary.failed,
        report.summary.error,
        restored
    );
    Ok(ok)
}

/// Who runs the command, for a silence's author.
fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default()
}

async fn silence(command: SilenceCommand, json: bool, style: Style) -> Result<bool, Fatal> {
    let conf = vigil_shared::aws::sdk_config_trusting(Roots::System).await?;
    let s3 = S3Store::from_conf(&conf);
    let now = Utc::now();
    match command {
        SilenceCommand::Add {
            at,
            matchers,
            duration,
            end,
            start,
            author,
            comment,
        } => {
            let location = at.required_silences()?;
            let matchers = matchers
                .iter()
                .map(|m| vigil_alert::silence::Matcher::parse(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Fatal)?;
            let ends_at = match end {
                Some(end) => end,
                None => start.unwrap_or(now) + span_arg("duration", &duration)?,
            };
            let new = NewSilence {
                matchers,
                starts_at: start,
                ends_at,
                created_by: author.unwrap_or_else(user),
                comment,
            };
            let id = silences::new_id(now, &new);
            let s = silences::add(&s3, &location, id.clone(), new, now)
                .await
                .map_err(|e| {
                    Fatal(format!(
                        "{e}; the silence {id} may have been written all the same: `vigil silence list` shows it"
                    ))
                })?;
            if json {
                print_json(&json!({"id": s.id, "silence": s, "location": location.to_string()}));
            } else {
                println!("{}", s.id);
            }
            Ok(true)
        }
        SilenceCommand::List { at, expired } => {
            let location = at.required_silences()?;
            let (file, skipped) = silences::load(&s3, &location).await?;
            for why in &skipped {
                eprintln!("vigil: warning: {location}: {why} (the function skips it)");
            }
            let shown = silences::listed(&file, now, expired);
            if json {
                let rows: Vec<serde_json::Value> = shown
                    .iter()
                    .map(|s| {
                        let mut v = serde_json::to_value(s).unwrap_or_default();
                        v["state"] = json!(silences::standing(s, now));
                        v
                    })
                    .collect();
                print_json(&json!({"silences": rows, "unreadable": skipped}));
                return Ok(true);
            }
            if shown.is_empty() {
                println!("{}", style.ok("no silence"));
            }
            for s in shown {
                let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
                println!(
                    "{}  {:<8}  until {}  {}  by {}: {}",
                    s.id,
                    silences::standing(s, now),
                    s.ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    matchers.join(" "),
                    s.created_by,
                    s.comment
                );
            }
            Ok(true)
        }
        SilenceCommand::Expire { at, ids, author } => {
            let location = at.required_silences()?;
            let by = author.unwrap_or_else(user);
            let got = silences::expire(&s3, &location, &ids, &by, now).await?;
            if json {
                print_json(&json!({"expired": got}));
            } else {
                for (id, e) in &got {
                    let what = match e {
                        Expired::Now => style.ok("expired"),
                        Expired::Already => "had already ended".to_owned(),
                        Expired::Unknown => style.warn("no such silence"),
                    };
                    println!("{id}: {what}");
                }
            }
            Ok(!got.values().any(|e| *e == Expired::Unknown))
        }
    }
}

async fn alerts(
    at: &Locations,
    history: Option<&str>,
    json: bool,
    style: Style,
) -> Result<bool, Fatal> {
    let conf = vigil_shared::aws::sdk_config_trusting(Roots::System).await?;
    let s3 = S3Store::from_conf(&conf);
    let now = Utc::now();
    let state_at = at.state()?;
    let (state, tag) = vigil_alert::outbox::load_state(&s3, &state_at, now).await?;
    if tag.is_none() {
        return Err(Fatal(format!(
            "{state_at}: no alert state there (has the alert function run, with this bucket?)"
        )));
    }
    let in_force = match at.silences()? {
        // As the function does: silences it cannot read mute nothing.
        Some(location) => match silences::load(&s3, &location).await {
            Ok((file, skipped)) => {
                for why in &skipped {
                    eprintln!("vigil: warning: {location}: {why} (the function skips it)");
                }
                file.silences
            }
            Err(e) => {
                eprintln!("vigil: warning: {location}: {e} (the function applies no silence)");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let listed = vigil_cli::alerts::list(&state, &in_force, now);
    let since = match history {
        Some(text) => Some(now - span_arg("since", text)?),
        None => None,
    };
    let ended = since.map(|s| vigil_cli::alerts::history(&state, s));
    if json {
        let mut value = json!({"alerts": listed, "evaluated_at": state.evaluated_at});
        if let Some(ended) = &ended {
            value["history"] = serde_json::to_value(ended)?;
        }
        print_json(&value);
        return Ok(true);
    }
    if let Some(at) = state.evaluated_at {
        let age = (now - at).num_seconds().max(0);
        let line = format!("evaluated {} ago, at {}", human(age), at.to_rfc3339());
        // The schedule runs every minute; a state minutes old means the runs stopped.
        if age > 900 {
            println!(
                "{}",
                style.warn(&format!("{line}: the evaluations have stopped"))
            );
        } else {
            println!("{line}");
        }
    }
    if listed.is_empty() {
        println!("{}", style.ok("nothing firing or pending"));
    }
    for a in &listed {
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let standing = match a.standing {
            vigil_cli::alerts::Standing::Firing => style.warn("firing  "),
            vigil_cli::alerts::Standing::Silenced => "silenced".to_owned(),
            vigil_cli::alerts::Standing::Pending => "pending ".to_owned(),
            vigil_cli::alerts::Standing::Muted => "muted   ".to_owned(),
        };
        println!(
            "{standing}  {}  since {} ({}){}  {}{}",
            a.alert,
            a.active_since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            human((now - a.active_since).num_seconds().max(0)),
            a.value.map(|v| format!("  value {v}")).unwrap_or_default(),
            labels.join(" "),
            a.silenced_by
                .as_ref()
                .map(|s| format!("  silenced by {s}"))
                .unwrap_or_default(),
        );
    }
    if let Some(ended) = ended {
        println!();
        println!("{}", style.bold(&format!("{} episodes ended", ended.len())));
        for e in ended {
            println!(
                "{}  {} to {} ({}), {} pages",
                e.key,
                e.fired_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                e.resolved_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                human((e.resolved_at - e.fired_at).num_seconds().max(0)),
                e.pages.len()
            );
        }
    }
    Ok(true)
}
