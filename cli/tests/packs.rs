//! The rule packs (`config/packs/`), held to what a pack promises: each rule says who it wakes
//! and what to do, lints clean, waits out a bad minute, and has tests that prove it fires on
//! its incident, stays quiet on a spike and on flapping, and resolves; tests that fail when a
//! rule is made to page on one data point. `vigil rules pack add` writes a pack beside a
//! rules file the alert function then reads whole.

use std::collections::{BTreeMap, BTreeSet};

use vigil_alert::Rule;
use vigil_cli::pack::{self, Kind, PACKS, Pack};
use vigil_cli::pack_add;
use vigil_cli::rules_test::TestFile;

fn defaults(pack: &Pack) -> BTreeMap<String, String> {
    pack.values(&[]).expect("defaults are valid")
}

fn rules_of(pack: &Pack, values: &BTreeMap<String, String>) -> Vec<Rule> {
    let text = pack.rules(values).expect("renders");
    vigil_alert::load_set(pack.name, &text, &[])
        .unwrap_or_else(|e| panic!("pack {}: {e}", pack.name))
        .0
}

#[tokio::test]
async fn every_pack_passes_its_tests_and_every_rule_is_tested_for_spike_flapping_and_incident() {
    let mut report = Vec::new();
    for pack in &PACKS {
        let values = defaults(pack);
        let result = pack::test(pack, &values).await;
        assert!(result.passed(), "pack {}: {result:#?}", pack.name);

        let tests: TestFile =
            vigil_shared::config::parse_yaml(pack.name, &pack.tests(&values).expect("renders"))
                .expect("the tests parse");
        let mut per_rule: BTreeMap<String, usize> = BTreeMap::new();
        for rule in rules_of(pack, &values) {
            let groups: Vec<_> = tests
                .tests
                .iter()
                .filter(|g| {
                    g.notification_test
                        .iter()
                        .any(|n| n.alertname == rule.alert)
                })
                .collect();
            let fires = groups.iter().any(|g| {
                g.alert_rule_test
                    .iter()
                    .any(|t| t.alertname == rule.alert && !t.exp_alerts.is_empty())
            });
            let quiet_first = groups.iter().any(|g| {
                g.notification_test
                    .iter()
                    .any(|n| n.alertname == rule.alert && n.exp_firing == 0)
            });
            let one_episode = groups.iter().any(|g| {
                g.notification_test.iter().any(|n| {
                    n.alertname == rule.alert && n.exp_firing == 1 && n.exp_resolved == Some(1)
                })
            });
            assert!(
                fires && quiet_first && one_episode,
                "pack {}: {} needs a test that it fires, sends nothing before its incident, and fires and resolves once",
                pack.name,
                rule.alert
            );
            let checks = tests
                .tests
                .iter()
                .flat_map(|g| {
                    g.alert_rule_test
                        .iter()
                        .map(|t| &t.alertname)
                        .chain(g.notification_test.iter().map(|n| &n.alertname))
                })
                .filter(|name| **name == rule.alert)
                .count();
            per_rule.insert(rule.alert.clone(), checks);
        }
        report.push(format!(
            "{}: {} rules, checks per rule {:?}",
            pack.name,
            per_rule.len(),
            per_rule.values().collect::<BTreeSet<_>>()
        ));
    }
    println!("{}", report.join("\n"));
}

#[test]
fn every_rule_says_who_it_wakes_and_what_to_do_and_never_pages_on_one_point() {
    for pack in &PACKS {
        let values = defaults(pack);
        let rules = rules_of(pack, &values);
        assert!(!rules.is_empty(), "pack {} has no rules", pack.name);
        assert_eq!(
            vigil_alert::lint(&rules),
            Vec::<String>::new(),
            "pack {}",
            pack.name
        );
        for r in &rules {
            let at = format!("pack {}, rule {}", pack.name, r.alert);
            let severity = r.labels.get("severity").map(String::as_str);
            assert!(
                matches!(severity, Some("page" | "ticket")),
                "{at}: severity {severity:?}"
            );
            assert!(
                r.labels.contains_key("team"),
                "{at}: a team label for routing"
            );
            let annotation = |key: &str| r.annotations.get(key).map_or("", String::as_str);
            // The value, unless it is a flag: 1 while the state holds (a node not ready).
            let flag = r.condition.threshold == 1.0
                && r.condition.operator == vigil_alert::rules::Operator::GreaterOrEqual;
            assert!(
                flag || annotation("summary").contains("{{ $value }}"),
                "{at}: the summary gives the value"
            );
            assert!(
                annotation("description").len() > 40,
                "{at}: a description of what is broken"
            );
            let runbook = annotation("runbook");
            for part in ["Check first:", "Likely causes:", "Safe first action:"] {
                assert!(runbook.contains(part), "{at}: the runbook says {part:?}");
            }
            assert!(
                annotation("runbook_url").starts_with(&values["runbook_base"]),
                "{at}: runbook_url under runbook_base"
            );
            // One bad point never fires, and neither does flapping: a burn rate's two windows,
            // or `for`, or more than half of the points.
            let (m, n) = (r.datapoints_to_alarm(), r.evaluation_periods());
            assert!(
                r.burn.is_some() || r.for_.seconds() > 0 || (m >= 3 && 2 * m > n),
                "{at}: {m} of {n} without `for` pages on a spike or flapping"
            );
        }
    }
}

/// The tests are worth something: with every rule made to fire on one data point (1 of 1, no
/// `for`), each such rule fails its pack's tests.
#[tokio::test]
async fn the_tests_catch_a_rule_made_to_page_on_one_point() {
    for pack in &PACKS {
        let values = defaults(pack);
        let rules = rules_of(pack, &values);
        let mutated: String = pack
            .rules(&values)
            .expect("renders")
            .lines()
            .map(|line| {
                let key = line.trim_start().split(':').next().unwrap_or("");
                let indent = &line[..line.len() - line.trim_start().len()];
                match key {
                    "evaluation_periods" | "datapoints_to_alarm" => format!("{indent}{key}: 1"),
                    "for" => format!("{indent}for: 0s"),
                    _ => line.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = std::env::temp_dir().join(format!(
            "vigil-pack-mutated-{}-{}",
            pack.name,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("rules.yaml"), mutated).expect("write");
        std::fs::write(
            dir.join("rules.test.yaml"),
            pack.tests(&values).expect("renders"),
        )
        .expect("write");
        let result = vigil_cli::rules_test::run_file(&dir.join("rules.test.yaml")).await;
        let _ = std::fs::remove_dir_all(&dir);
        assert!(result.error.is_none(), "pack {}: {result:?}", pack.name);
        let failed: BTreeSet<&str> = result
            .failures
            .iter()
            .map(|f| f.alertname.as_str())
            .collect();
        for r in rules.iter().filter(|r| r.burn.is_none()) {
            assert!(
                failed.contains(r.alert.as_str()),
                "pack {}: {} still passes its tests when it fires on one point",
                pack.name,
                r.alert
            );
        }
    }
}

/// A text parameter may hold what YAML would read as syntax (`: `, `#`, braces, brackets):
/// the templates quote it, and the value arrives whole.
#[test]
fn text_parameters_arrive_whole_whatever_they_hold() {
    let odd = "a: b #{c}, [d] 'e' *";
    for pack in &PACKS {
        let meta = pack.meta();
        let set: Vec<String> = meta
            .parameters
            .iter()
            .filter(|p| p.kind == Kind::Text)
            .map(|p| format!("{}={odd}", p.name))
            .collect();
        let values = pack.values(&set).expect("valid text");
        let tests = pack.tests(&values).expect("renders");
        vigil_shared::config::parse_yaml::<TestFile>(pack.name, &tests)
            .unwrap_or_else(|e| panic!("pack {}: the tests with odd values: {e}", pack.name));
        let rules = rules_of(pack, &values);
        let team: BTreeSet<&str> = rules
            .iter()
            .filter_map(|r| r.labels.get("team"))
            .map(String::as_str)
            .collect();
        assert_eq!(team, BTreeSet::from([odd]), "pack {}", pack.name);
    }
}

#[test]
fn every_parameter_is_used_and_every_default_is_valid() {
    for pack in &PACKS {
        let meta = pack.meta();
        for p in &meta.parameters {
            let marker = BTreeMap::from([(p.name.clone(), "\u{1}".to_owned())]);
            let mut values = defaults(pack);
            values.extend(marker);
            let rendered = pack.rules(&values).expect("renders");
            assert!(
                rendered.contains('\u{1}'),
                "pack {}: parameter {} is never used",
                pack.name,
                p.name
            );
            pack.values(&[format!("{}={}", p.name, p.default)])
                .unwrap_or_else(|e| panic!("pack {}: default of {}: {e}", pack.name, p.name));
        }
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-pack-add-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

const OWN_RULES: &str = "# the team's own rules\ngroups:\n  - name: own\n    rules:\n      - alert: CheckoutSlow\n        metric: {namespace: Shop, name: latency, stat: Average, period: 1m}\n        condition: {operator: \">\", threshold: 250}\n        evaluation_periods: 3\n        datapoints_to_alarm: 3\npolicy:\n  repeat_interval: 4h\n";

#[test]
fn add_writes_the_pack_beside_the_rules_file_and_the_function_reads_both() {
    let dir = temp_dir("lambda");
    let rules_file = dir.join("rules.yaml");
    std::fs::write(&rules_file, OWN_RULES).expect("write");
    let lambda = pack::find("aws-lambda").expect("pack");
    let values = lambda
        .values(&["errors_per_minute=20".into(), "team=payments".into()])
        .expect("values");

    let added = pack_add::add(
        lambda,
        &values,
        "vigil rules pack add aws-lambda",
        &rules_file,
        false,
    )
    .expect("added");
    assert!(added.rules_file_changed);
    assert_eq!(added.pack_file, dir.join("packs/aws-lambda.yaml"));
    assert!(added.recording_file.is_none());
    let edited = std::fs::read_to_string(&rules_file).expect("read");
    assert!(
        edited.starts_with(OWN_RULES),
        "the team's file is kept as it was: {edited}"
    );

    let (rules, policy) =
        vigil_alert::rule_files::read_local(&rules_file.display().to_string()).expect("loads");
    assert_eq!(rules.len(), 1 + 7);
    assert_eq!(policy.repeat_interval.map(|s| s.seconds()), Some(4 * 3600));
    let errors = rules
        .iter()
        .find(|r| r.alert == "LambdaErrors")
        .expect("pack rule");
    assert_eq!(errors.condition.threshold, 20.0);
    assert_eq!(errors.labels["team"], "payments");

    // Again with the same parameters: nothing changes. With others: refused unless forced.
    let again = pack_add::add(
        lambda,
        &values,
        "vigil rules pack add aws-lambda",
        &rules_file,
        false,
    )
    .expect("same");
    assert!(!again.rules_file_changed);
    assert_eq!(std::fs::read_to_string(&rules_file).expect("read"), edited);
    let other = lambda
        .values(&["errors_per_minute=50".into()])
        .expect("values");
    let err = pack_add::add(
        lambda,
        &other,
        "vigil rules pack add aws-lambda",
        &rules_file,
        false,
    )
    .expect_err("differs");
    assert!(err.contains("--force"), "{err}");
    pack_add::add(
        lambda,
        &other,
        "vigil rules pack add aws-lambda",
        &rules_file,
        true,
    )
    .expect("forced");

    // A pack with recording rules writes them beside it, for the sender.
    let node = pack::find("node").expect("pack");
    let added = pack_add::add(
        node,
        &defaults(node),
        "vigil rules pack add node",
        &rules_file,
        false,
    )
    .expect("node");
    let recording_file = added.recording_file.expect("recording rules");
    let recording = std::fs::read_to_string(&recording_file).expect("read");
    assert!(recording.contains("host_mountpoint:node_filesystem_fills_within_4h:max"));
    // Recording rules edited by hand (a comment, another job name) are kept unless forced.
    std::fs::write(&recording_file, format!("{recording}# ours\n")).expect("edit");
    let err = pack_add::add(
        node,
        &defaults(node),
        "vigil rules pack add node",
        &rules_file,
        false,
    )
    .expect_err("edited");
    assert!(
        err.contains("node.prometheus.yaml") && err.contains("--force"),
        "{err}"
    );
    let edited = std::fs::read_to_string(&rules_file).expect("read");
    assert!(
        edited.ends_with("rule_files:\n  - packs/aws-lambda.yaml\n  - packs/node.yaml\n"),
        "{edited}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn add_refuses_what_would_not_load_and_writes_nothing() {
    let dir = temp_dir("clash");
    let rules_file = dir.join("rules.yaml");
    // The team already has a rule of the pack's name.
    let clash = OWN_RULES.replace("CheckoutSlow", "LambdaErrors");
    std::fs::write(&rules_file, &clash).expect("write");
    let lambda = pack::find("aws-lambda").expect("pack");
    let err = pack_add::add(
        lambda,
        &defaults(lambda),
        "vigil rules pack add aws-lambda",
        &rules_file,
        false,
    )
    .expect_err("clash");
    assert!(
        err.contains("LambdaErrors") && err.contains("used twice"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&rules_file).expect("read"), clash);
    assert!(!dir.join("packs").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `promtool ARGS PATH` (Debian's prometheus package; scripts/test installs it) and
/// returns what it printed.
fn promtool(args: &[&str], path: &std::path::Path) -> String {
    let promtool = std::env::var("VIGIL_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let out = std::process::Command::new(&promtool)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {promtool} ({e}): install Debian's prometheus package (scripts/test does)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} {}:\n{text}",
        args.join(" "),
        path.display()
    );
    text
}

fn records(recording: &pack::Recording) -> Vec<String> {
    let file: serde_json::Value =
        vigil_shared::config::parse_yaml(recording.path, recording.rules).expect("YAML");
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            r["record"]
                .as_str()
                .expect("recording rules only")
                .to_owned()
        })
        .collect()
}

/// What the packs ship for Prometheus loads in a real promtool, and computes what its tests
/// say from the exporters' series.
#[test]
fn the_recording_rules_pass_promtool_check_and_their_tests() {
    for pack in PACKS.iter().filter(|p| p.recording.is_some()) {
        let recording = pack.recording.expect("recording rules");
        let rules = workspace().join(format!("config/{}.yaml", recording.path));
        let tests = workspace().join(format!("config/{}.test.yaml", recording.path));
        assert_eq!(
            std::fs::read_to_string(&rules).expect("read"),
            recording.rules
        );
        let checked = promtool(&["check", "rules"], &rules);
        let found = format!("SUCCESS: {} rules found", records(&recording).len());
        assert!(checked.contains(&found), "pack {}: {checked}", pack.name);
        let tested = promtool(&["test", "rules"], &tests);
        assert!(tested.contains("SUCCESS"), "pack {}: {tested}", pack.name);
    }
}

/// The labels of each recorded series, as the promtool tests expect them
/// (`name{a="x",b="y"}`).
fn recorded_labels(recording: &pack::Recording) -> BTreeMap<String, BTreeSet<String>> {
    let tests: serde_json::Value =
        vigil_shared::config::parse_yaml(recording.path, recording.tests).expect("YAML");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for group in tests["tests"].as_array().expect("tests") {
        for t in group["promql_expr_test"].as_array().into_iter().flatten() {
            for sample in t["exp_samples"].as_array().into_iter().flatten() {
                let text = sample["labels"].as_str().expect("labels");
                let (name, labels) = text.split_once('{').unwrap_or((text, ""));
                let keys = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_owned()))
                    .collect();
                out.insert(name.to_owned(), keys);
            }
        }
    }
    out
}

/// Every series a Prometheus-fed pack's rules read is one its recording rules record, with
/// the labels they give it (plus `cluster`, the external label): a renamed record or a label
/// left out of a `by` would otherwise leave a rule watching nothing, silently.
#[test]
fn the_rules_read_what_the_recording_rules_record_with_their_labels() {
    for pack in PACKS.iter().filter(|p| p.recording.is_some()) {
        let recording = pack.recording.expect("recording rules");
        let recorded = records(&recording);
        let labels = recorded_labels(&recording);
        let values = defaults(pack);
        let rules = rules_of(pack, &values);
        for r in &rules {
            let mut read = vec![(
                &r.metric.name,
                r.metric.dimensions.keys().cloned().collect::<BTreeSet<_>>(),
            )];
            for input in r.inputs.values() {
                read.push((&input.name, input.dimensions.keys().cloned().collect()));
            }
            for (name, mut dims) in read {
                assert!(
                    recorded.contains(name),
                    "pack {}: {} reads {name}, which nothing records",
                    pack.name,
                    r.alert
                );
                assert!(
                    dims.remove("cluster"),
                    "pack {}: {} does not name the cluster",
                    pack.name,
                    r.alert
                );
                let expected = labels.get(name.as_str()).unwrap_or_else(|| {
                    panic!(
                        "pack {}: no promtool test shows the labels of {name}",
                        pack.name
                    )
                });
                assert_eq!(
                    &dims, expected,
                    "pack {}: {} reads {name} by other labels than it is recorded with",
                    pack.name, r.alert
                );
            }
        }
    }
}

/// One synthetic day per pack (BENCHMARKS.md has the week, from the `pack_week` example):
/// every incident is notified, and no spike or flapping is, but where the flapping itself
/// spends an objective's error budget fast enough for its burn-rate rule to page. The same
/// thresholds on one data point notify for the noise.
#[tokio::test]
async fn a_day_of_incidents_and_noise_notifies_the_incidents_only() {
    use vigil_cli::pack_week::{Rules, simulate};
    let mut naive_noise = 0;
    for pack in &PACKS {
        let week = simulate(pack, 1, 7, Rules::Shipped)
            .await
            .expect("simulated");
        assert!(
            week.incidents > 0 && week.spikes > 0 && week.flaps > 0,
            "{week:?}"
        );
        assert_eq!(week.detected, week.incidents, "{week:?}");
        assert_eq!(week.tickets_outside, 0, "{week:?}");
        assert_eq!(week.pages_outside, week.noise_burning_budget, "{week:?}");
        let naive = simulate(pack, 1, 7, Rules::OnePoint)
            .await
            .expect("simulated");
        naive_noise += naive.pages_outside + naive.tickets_outside;
    }
    assert!(naive_noise > 0, "the baseline notifies for the noise");
}

/// The README's `write_relabel_configs` keeps every series the packs record, and none of the
/// kube-prometheus mixins' own recording rules (each kept series is a custom metric).
#[test]
fn the_remote_write_keep_regex_keeps_the_packs_series_only() {
    // Prometheus anchors relabel regexes at both ends.
    let keep = regex::Regex::new(&format!("^(?:{})$", pack::REMOTE_WRITE_KEEP)).expect("regex");
    for pack in PACKS.iter().filter(|p| p.recording.is_some()) {
        for record in records(&pack.recording.expect("recording rules")) {
            assert!(
                keep.is_match(&record),
                "pack {}: {record} is not kept",
                pack.name
            );
        }
    }
    for theirs in [
        "node:node_num_cpu:sum",
        "cluster:node_cpu:ratio_rate5m",
        "namespace_cpu:kube_pod_container_resource_requests:sum",
        "namespace_workload_pod:kube_pod_owner:relabel",
        "node_namespace_pod_container:container_memory_working_set_bytes",
        "instance:node_cpu_utilisation:rate5m",
        "apiserver_request:burnrate1h",
        "cluster_quantile:apiserver_request_sli_duration_seconds:histogram_quantile",
        "http_requests_total",
    ] {
        assert!(!keep.is_match(theirs), "{theirs} would be kept");
    }
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    assert!(
        readme.contains(&format!("regex: \"{}\"", pack::REMOTE_WRITE_KEEP)),
        "README's remote_write example keeps what the packs record"
    );
}
