//! The `vigil` command end to end: the real binary against the local emulator (backtest over
//! CloudWatch history, backup verify over S3), and on the repository's example files.

use std::path::PathBuf;
use std::process::Output;

use aws_sdk_cloudwatch::primitives::DateTime as CwDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{Duration, Timelike, Utc};
use serde_json::Value;
use vigil_e2e::{LocalAws, bin_dir, unique, whole_minute_ago, workspace_root};

fn vigil() -> PathBuf {
    let path = bin_dir().join("vigil");
    assert!(
        path.is_file(),
        "{} not found: build it first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Runs `vigil` with the emulator's endpoint and dummy credentials.
async fn run(aws: Option<&LocalAws>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(vigil());
    command
        .args(args)
        .current_dir(workspace_root())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("NO_COLOR", "1");
    if let Some(aws) = aws {
        command.env("VIGIL_AWS_ENDPOINT_URL", &aws.endpoint);
    }
    command.output().await.expect("vigil runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn the_example_rules_pass_check_and_their_tests() {
    let out = run(None, &["rules", "check", "config/rules.example.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 rules"));

    let out = run(
        None,
        &[
            "--output",
            "json",
            "rules",
            "test",
            "config/rules.example.test.yaml",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let result = json_of(&out);
    assert_eq!(result["ok"], true);
    assert_eq!(result["files"][0]["checks"], 12);
}

/// A route to a topic the stack cannot publish to is an error of `rules check`, with its line,
/// as it is of the function.
#[tokio::test]
async fn a_route_outside_the_stacks_topics_fails_check_with_its_line() {
    let dir = temp_dir("vigil-cli-routes");
    let rules = dir.join("routed.yaml");
    let example = std::fs::read_to_string(workspace_root().join("config/rules.example.yaml"))
        .expect("example");
    std::fs::write(
        &rules,
        format!(
            "policy:\n  routes:\n    - match: {{team: checkout}}\n      topic_arn: arn:aws:sns:us-east-1:123456789012:checkout-oncall\n{example}"
        ),
    )
    .expect("write");
    let arg = rules.to_string_lossy().to_string();
    let topics = "--topics=arn:aws:sns:us-east-1:123456789012:vigil-alerts";
    let out = run(None, &["--output", "json", "rules", "check", topics, &arg]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = json_of(&out)["files"][0]["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        error.contains("routed.yaml:4:") && error.contains("checkout-oncall"),
        "{error}"
    );
    let both = format!("{topics},arn:aws:sns:us-east-1:123456789012:checkout-oncall");
    let out = run(None, &["rules", "check", &both, &arg]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test]
async fn invalid_files_and_failed_expectations_exit_1_with_their_place() {
    let dir = temp_dir("vigil-cli-bad");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        metric: {namespace: N, name: m, stat: Average, period: 1m}\n        condition: {operator: \">\", threshold: nope}\n",
    )
    .expect("write");
    let rules_arg = rules.to_string_lossy().to_string();
    let out = run(None, &["--output", "json", "rules", "check", &rules_arg]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = json_of(&out)["files"][0]["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(error.contains("rules.yaml:6"), "names the line: {error}");

    // A test expecting an alert that the series never trigger fails, and says what it got.
    std::fs::copy(
        workspace_root().join("config/rules.example.yaml"),
        dir.join("rules.example.yaml"),
    )
    .expect("copy");
    let test = dir.join("wrong.test.yaml");
    std::fs::write(
        &test,
        "rule_files: [rules.example.yaml]\ntests:\n  - name: quiet\n    input_series:\n      - metric: {namespace: Shop/Checkout, name: latency, dimensions: {service: checkout}}\n        values: \"100x10\"\n      - metric: {namespace: Shop/Checkout, name: orders, dimensions: {service: checkout}}\n        values: \"5x10\"\n    alert_rule_test:\n      - eval_time: 8m\n        alertname: CheckoutLatencyHigh\n        exp_alerts:\n          - exp_labels: {severity: page}\n",
    )
    .expect("write");
    let test_arg = test.to_string_lossy().to_string();
    let out = run(None, &["--output", "json", "rules", "test", &test_arg]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let failure = &json_of(&out)["files"][0]["failures"][0];
    assert_eq!(failure["test"], "quiet");
    assert_eq!(failure["alertname"], "CheckoutLatencyHigh");
    assert_eq!(failure["got"], serde_json::json!([]));

    // A malformed series is named, with the test file's place.
    std::fs::write(
        &test,
        "rule_files: [rules.example.yaml]\ntests:\n  - input_series:\n      - metric: {namespace: N, name: m}\n        values: \"1 NaN\"\n",
    )
    .expect("write");
    let out = run(None, &["rules", "test", &test_arg]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("input_series[0].values") && text.contains("NaN"),
        "{text}"
    );

    // Out-of-range times and unknown alerts are errors with their place, never a panic.
    for (body, expected) in [
        (
            "      - eval_time: 100000000d\n        alertname: CheckoutLatencyHigh\n",
            "longer than ten years",
        ),
        (
            "      - eval_time: 5m\n        alertname: CheckoutLatencyHgh\n",
            "no rule is named \"CheckoutLatencyHgh\"",
        ),
    ] {
        std::fs::write(
            &test,
            format!("rule_files: [rules.example.yaml]\ntests:\n  - alert_rule_test:\n{body}"),
        )
        .expect("write");
        let out = run(None, &["rules", "test", &test_arg]).await;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expected), "{text}");
    }
    // A backtest range that would take millions of evaluations is refused before any call.
    let out = run(
        None,
        &[
            "rules",
            "backtest",
            "config/rules.example.yaml",
            "--since",
            "30d",
            "--every",
            "1s",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("evaluations; at most 1000000"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Ninety minutes of latency with one ten-minute breach: the backtest finds one episode and the
/// two messages (firing, resolved) the function would have sent, and plots it. The same breach
/// seen through metric math (`m / 1000`, in seconds) gives the same episode, the history read
/// from LocalStack as plain statistics. Scored against two incidents (one over the breach, one
/// in a quiet half hour), each rule pages once, inside the first, two minutes in, and misses
/// the second. The weekly review of the replay finds the page ended before anyone could act.
#[tokio::test]
async fn a_backtest_replays_cloudwatch_history() {
    let aws = LocalAws::connect().await;
    let namespace = unique("E2E/Backtest");
    let now = whole_minute_ago(0);
    let start = now - Duration::minutes(90);
    let breach = (now - Duration::minutes(60), now - Duration::minutes(50));
    let data: Vec<MetricDatum> = (0..90)
        .map(|m| {
            let t = start + Duration::minutes(m);
            let v = if t >= breach.0 && t < breach.1 {
                330.0
            } else {
                120.0
            };
            MetricDatum::builder()
                .metric_name("latency")
                .dimensions(
                    Dimension::builder()
                        .name("service")
                        .value("checkout")
                        .build(),
                )
                .value(v)
                .timestamp(CwDateTime::from_millis(t.timestamp_millis()))
                .build()
        })
        .collect();
    for chunk in data.chunks(50) {
        aws.cloudwatch
            .put_metric_data()
            .namespace(&namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutMetricData");
    }
    let dir = temp_dir("vigil-backtest");
    let rules = dir.join("rules.yaml");
    // Quiet hours twelve hours from now: the replayed page never falls in them, whatever the
    // time of day the test runs at.
    let quiet = (now.hour() + 12) % 24;
    std::fs::write(
        &rules,
        format!(
            "policy:\n  review: {{quiet_hours: \"{quiet:02}:00-{quiet:02}:30\"}}\ngroups:\n  - name: g\n    rules:\n      - alert: LatencyHigh\n        metric: {{namespace: {namespace}, name: latency, dimensions: {{service: checkout}}, stat: Average, period: 1m}}\n        condition: {{operator: \">\", threshold: 250}}\n        evaluation_periods: 3\n        datapoints_to_alarm: 2\n        labels: {{severity: page, service: checkout}}\n        annotations: {{runbook_url: https://runbooks.example.com/latency}}\n      - alert: LatencySecondsHigh\n        metric: {{namespace: {namespace}, name: latency, dimensions: {{service: checkout}}, stat: Average, period: 1m}}\n        expression: \"m / 1000\"\n        condition: {{operator: \">\", threshold: 0.25}}\n        evaluation_periods: 3\n        datapoints_to_alarm: 2\n        labels: {{severity: ticket, service: checkout}}\n"
        ),
    )
    .expect("write");
    let incidents = dir.join("incidents.csv");
    let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339();
    std::fs::write(
        &incidents,
        format!(
            "id,title,start,end,service\nINC-1,\"Slow, then fine\",{},{},checkout\nINC-2,Quiet,{},{},checkout\n",
            stamp(breach.0),
            stamp(breach.1 + Duration::minutes(5)),
            stamp(now - Duration::minutes(30)),
            stamp(now - Duration::minutes(20)),
        ),
    )
    .expect("write");
    let incidents_arg = incidents.to_string_lossy().to_string();
    let plots = dir.join("plots");
    let until = now.to_rfc3339();
    let (rules_arg, plots_arg) = (
        rules.to_string_lossy().to_string(),
        plots.to_string_lossy().to_string(),
    );
    let out = run(
        Some(&aws),
        &[
            "--output",
            "json",
            "rules",
            "backtest",
            &rules_arg,
            "--since",
            "80m",
            "--until",
            &until,
            "--plot",
            &plots_arg,
            "--incidents",
            &incidents_arg,
            "--draws",
            "200",
            "--review",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["evaluations"], 81, "{report}");
    // The review the function would send at the end of the range, from the replay's history:
    // each rule notified once for a ten-minute episode. The paging one paged for an episode
    // that ended before the fifteen minutes on-call needs to act: to fix. The ticket woke
    // nobody. The history began with the range.
    let review = &report["review"];
    assert_eq!(
        (&review["pages"], &review["notifications"]),
        (&1.into(), &2.into()),
        "{review}"
    );
    assert_eq!(
        review["fix_first"],
        serde_json::json!(["LatencyHigh"]),
        "{review}"
    );
    for r in review["rules"].as_array().expect("rules") {
        assert_eq!(
            (&r["episodes"], &r["median_firing_seconds"]),
            (&1.into(), &600.into()),
            "{review}"
        );
    }
    assert_eq!(
        review["rules"][0]["findings"],
        serde_json::json!(["not_actionable"])
    );
    assert_eq!(review["rules"][1]["findings"], serde_json::json!([]));
    assert!(review["complete_from"].is_string(), "{review}");
    assert_eq!(
        report["get_metric_data_calls"], 1,
        "one read for the whole range"
    );
    let rule = &report["rules"][0];
    assert_eq!(rule["alert"], "LatencyHigh");
    let episodes = rule["episodes"].as_array().expect("episodes");
    assert_eq!(episodes.len(), 1, "{report}");
    assert_eq!(rule["notifications"], 2, "firing and resolved: {report}");
    // Two of three complete minutes breach from the second breaching minute's end; the
    // episode ends when two of the newest three no longer do: ten minutes after it began.
    let duration = episodes[0]["duration_seconds"].as_i64().expect("duration");
    assert_eq!(duration, 600, "{report}");
    let begun: chrono::DateTime<Utc> = episodes[0]["start"]
        .as_str()
        .expect("start")
        .parse()
        .expect("time");
    assert_eq!(begun, breach.0 + Duration::minutes(2));
    let math = &report["rules"][1];
    assert_eq!(math["alert"], "LatencySecondsHigh");
    assert_eq!(
        math["episodes"], rule["episodes"],
        "the same breach: {report}"
    );

    // Every message the replay sent: firing then resolved, for each rule.
    let sent = report["notifications"].as_array().expect("notifications");
    let statuses: Vec<(&str, &str)> = sent
        .iter()
        .flat_map(|m| m["alerts"].as_array().expect("alerts"))
        .map(|a| {
            (
                a["alertname"].as_str().expect("name"),
                a["status"].as_str().expect("status"),
            )
        })
        .collect();
    for alert in ["LatencyHigh", "LatencySecondsHigh"] {
        let mine: Vec<&str> = statuses
            .iter()
            .filter(|(a, _)| *a == alert)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(mine, ["firing", "resolved"], "{alert}: {report}");
    }
    assert!(
        sent.iter()
            .all(|m| m["topic"].as_str().is_some_and(|t| t.starts_with("arn:")))
    );

    let score = &report["score"];
    for r in score["rules"].as_array().expect("rules") {
        assert_eq!(r["pages"], 1, "{score}");
        assert_eq!(r["pages_in_incidents"], 1, "{score}");
        assert_eq!(r["precision"], 1.0, "{score}");
        assert_eq!(
            (&r["incidents"], &r["incidents_paged"]),
            (&2.into(), &1.into())
        );
        assert_eq!(r["detect_median_seconds"], 120, "{score}");
        assert_eq!(r["coin_flip"]["pages"], 1);
        let coin = r["coin_flip"]["precision"].as_f64().expect("coin");
        assert!(
            coin < 0.6,
            "a random page lands in 25 of 80 minutes: {coin}"
        );
    }
    assert_eq!(
        score["overall"]["pages_in_incidents"],
        score["overall"]["pages"]
    );
    assert_eq!(score["missed"], serde_json::json!(["INC-2"]));

    let plot = report["plots"][0].as_str().expect("plot path");
    let svg = std::fs::read_to_string(plot).expect("plot");
    assert_eq!(svg.matches("class=\"episode\"").count(), 1);
    assert!(svg.contains("class=\"threshold\""));
    assert_eq!(svg.matches("class=\"incident\"").count(), 2, "{svg}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `vigil backup verify` runs backup-verify's checks on S3 from the command line: a good
/// backup passes (exit 0, the bytes restored counted), a corrupted one fails (exit 1).
#[tokio::test]
async fn backup_verify_runs_the_functions_checks() {
    let aws = LocalAws::connect().await;
    let backups = aws.create_bucket("vigil-cli-backups").await;
    let archive = vigil_e2e::tar_gz(&[("db.sql", &[7u8; 300_000])]);
    let put = |prefix: &'static str, data: Vec<u8>| {
        let aws = aws.clone();
        let backups = backups.clone();
        let manifest_of = archive.clone();
        async move {
            let key = format!("{prefix}/2026-11-25.tar.gz");
            aws.put_object(
                &backups,
                &format!("{key}.manifest.json"),
                vigil_e2e::manifest(&key, &manifest_of),
            )
            .await;
            aws.put_object(&backups, &key, data).await;
        }
    };
    put("good", archive.clone()).await;
    let mut flipped = archive.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    put("bad", flipped).await;
    let sets = |prefix: &str| {
        format!(
            "backup_sets:\n  - {{name: {prefix}, bucket: {backups}, prefix: {prefix}/, max_age: 1h, manifest: true}}\n"
        )
    };
    aws.put_object(&backups, "good.yaml", sets("good")).await;
    aws.put_object(&backups, "bad.yaml", sets("bad")).await;

    let dir = temp_dir("vigil-cli-verify");
    let report_path = dir.join("report.json");
    let report_arg = report_path.to_string_lossy().to_string();
    let good = format!("s3://{backups}/good.yaml");
    let out = run(
        Some(&aws),
        &[
            "--output",
            "json",
            "backup",
            "verify",
            &good,
            "--report",
            &report_arg,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["summary"]["ok"], 1, "{report}");
    let restore = report["sets"][0]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == "restore")
        .cloned()
        .expect("a restore check");
    assert_eq!(restore["status"], "ok", "{report}");
    let written: Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report file")).expect("json");
    assert_eq!(written, report, "the report file holds the same report");

    // Text output: one line per check, the bytes restored counted.
    let out = run(Some(&aws), &["backup", "verify", &good]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{} bytes restored", archive.len())),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour outside a terminal");

    let bad = format!("s3://{backups}/bad.yaml");
    let out = run(Some(&aws), &["--output", "json", "backup", "verify", &bad]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(json_of(&out)["summary"]["failed"], 1);

    // An unreadable config is a command error, exit 2, with the reason.
    let out = run(
        Some(&aws),
        &["backup", "verify", &format!("s3://{backups}/missing.yaml")],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
    let _ = std::fs::remove_dir_all(dir);
    let _ = Utc::now();
}

/// amtool's part, end to end against LocalStack: two people silence at once (two `vigil`
/// processes, one conditional write each) and both silences are kept; one is expired, an
/// unknown id fails the command; the alert function, reading the silences, mutes what the
/// other matches, and `vigil alerts` lists that alert as silenced, by that silence.
#[tokio::test]
async fn silences_and_alerts_from_the_command_line() {
    let aws = LocalAws::connect().await;
    let bucket = aws.create_bucket("vigil-silences").await;
    let namespace = unique("E2E/Silence");
    let add = |alert: &'static str, who: &'static str| {
        let (aws, bucket) = (&aws, bucket.clone());
        async move {
            let matcher = format!("alertname=~\"{alert}\"");
            run(
                Some(aws),
                &[
                    "--output",
                    "json",
                    "silence",
                    "add",
                    "--bucket",
                    &bucket,
                    &matcher,
                    "service!=payments",
                    "--duration",
                    "2h",
                    "--author",
                    who,
                    "--comment",
                    "failover",
                ],
            )
            .await
        }
    };
    let (first, second) = tokio::join!(add("Disk.*", "ann"), add("LatencyHigh", "bob"));
    for out in [&first, &second] {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let (disk, latency) = (json_of(&first), json_of(&second));
    let (disk_id, latency_id) = (
        disk["id"].as_str().expect("id").to_owned(),
        latency["id"].as_str().expect("id").to_owned(),
    );
    let list = |extra: &'static [&'static str]| {
        let (aws, bucket) = (&aws, bucket.clone());
        async move {
            let mut args = vec!["--output", "json", "silence", "list", "--bucket", &bucket];
            args.extend_from_slice(extra);
            json_of(&run(Some(aws), &args).await)
        }
    };
    let listed = list(&[]).await;
    assert_eq!(
        listed["silences"].as_array().map(Vec::len),
        Some(2),
        "both kept: {listed}"
    );
    let out = run(
        Some(&aws),
        &[
            "silence", "expire", "--bucket", &bucket, &disk_id, "--author", "cy",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run(
        Some(&aws),
        &["silence", "expire", "--bucket", &bucket, "nope"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "an unknown id: {out:?}");
    let active = list(&[]).await;
    assert_eq!(active["silences"][0]["id"], latency_id, "{active}");
    assert_eq!(active["silences"][0]["state"], "active");
    assert_eq!(
        list(&["--expired"]).await["silences"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let object: Value =
        serde_json::from_slice(&aws.get_object(&bucket, "config/silences.json").await)
            .expect("JSON");
    let audit: Vec<(&str, &str)> = object["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap_or(""),
                c["by"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(audit.contains(&("expire", "cy")), "{audit:?}");

    // The function reads the same object: LatencyHigh fires, muted by bob's silence.
    let now = whole_minute_ago(0);
    let data: Vec<MetricDatum> = (1..=3)
        .map(|m| {
            MetricDatum::builder()
                .metric_name("latency")
                .dimensions(
                    Dimension::builder()
                        .name("service")
                        .value("checkout")
                        .build(),
                )
                .value(400.0)
                .timestamp(CwDateTime::from_millis(
                    (now - Duration::minutes(m)).timestamp_millis(),
                ))
                .build()
        })
        .collect();
    aws.cloudwatch
        .put_metric_data()
        .namespace(&namespace)
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("PutMetricData");
    aws.put_object(
        &bucket,
        "config/rules.yaml",
        format!(
            "groups:\n  - name: g\n    rules:\n      - {{alert: LatencyHigh, metric: {{namespace: {namespace}, name: latency, dimensions: {{service: checkout}}, stat: Average, period: 1m}}, condition: {{operator: \">\", threshold: 250}}, labels: {{severity: page, service: checkout}}}}\n"
        ),
    )
    .await;
    let topic = aws.create_topic("vigil-silences").await;
    let rules = format!("s3://{bucket}/config/rules.yaml");
    let silences = format!("s3://{bucket}/config/silences.json");
    let mut function = vigil_e2e::Function::start(
        "alert",
        &vigil_e2e::binary("alert"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_RULES", rules.as_str()),
            ("VIGIL_ALERT_TOPIC_ARN", topic.as_str()),
            ("VIGIL_STATE_BUCKET", bucket.as_str()),
            ("VIGIL_SILENCES", silences.as_str()),
        ],
    )
    .await;
    // A run scheduled after the silences began (they start when they are added).
    let at = Utc::now() + Duration::seconds(1);
    let summary = function
        .invoke(&vigil_e2e::scheduled_event(at))
        .await
        .expect_response();
    assert_eq!(summary["rules"][0]["state"], "firing", "{summary}");
    assert_eq!(
        summary["rules"][0]["muted"]["muted_by"], "silence",
        "{summary}"
    );
    let out = run(
        Some(&aws),
        &[
            "--output",
            "json",
            "alerts",
            "--bucket",
            &bucket,
            "--history",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let alerts = json_of(&out);
    let listed = alerts["alerts"].as_array().expect("alerts");
    assert_eq!(listed.len(), 1, "{alerts}");
    assert_eq!(
        (
            &listed[0]["alert"],
            &listed[0]["standing"],
            &listed[0]["silenced_by"]
        ),
        (
            &Value::from("LatencyHigh"),
            &Value::from("silenced"),
            &Value::from(latency_id.as_str())
        ),
        "{alerts}"
    );
    assert_eq!(alerts["history"], serde_json::json!([]), "{alerts}");
}
