//! README instructions are tests: every Prometheus `remote_write` example README tells users to
//! paste is loaded by a real `promtool check config` (Debian's `prometheus` package), and its
//! `sigv4` block is held to the upstream source.
//!
//! Debian's Prometheus 2.42 predates the sigv4 service name, so its `promtool` checks each
//! example without the `sigv4` block. The block's keys are checked against prometheus/sigv4's
//! `SigV4Config` (sigv4_config.go, `ServiceName string yaml:"service_name,omitempty"`, added in
//! sigv4 v0.2.0, first required by Prometheus v3.5.0's go.mod), which Prometheus loads with
//! `yaml.UnmarshalStrict`: an unknown key such as `service` makes it refuse the file.
//!
//! The Kubernetes senders README names (Prometheus Operator with a SigV4 proxy, Grafana
//! Alloy, the OpenTelemetry Collector) have no binary installable here: their examples are
//! held to the keys of the upstream source of the release README names. The recording rules
//! README recommends pass `promtool check rules` and their own `promtool test rules`.

use std::process::Command;

use serde_json::Value;
use vigil_e2e::{unique, workspace_root};

/// The keys of prometheus/sigv4's `SigV4Config` (v0.2.0 and later).
const SIGV4_KEYS: [&str; 8] = [
    "region",
    "access_key",
    "secret_key",
    "profile",
    "role_arn",
    "external_id",
    "use_fips_sts_endpoint",
    "service_name",
];

/// The fenced blocks of README.md in `language`.
fn fenced(language: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let opening = format!("```{language}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l == opening => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The fenced YAML blocks of README.md that configure `remote_write`.
fn remote_write_examples() -> Vec<String> {
    fenced("yaml")
        .into_iter()
        .filter(|b| b.starts_with("remote_write:"))
        .collect()
}

/// The one YAML block of README.md that begins with `first_line`, placeholders filled.
fn yaml_example(first_line: &str) -> Value {
    let blocks: Vec<String> = fenced("yaml")
        .into_iter()
        .filter(|b| b.starts_with(first_line))
        .collect();
    assert_eq!(blocks.len(), 1, "README blocks starting {first_line:?}");
    serde_saphyr::from_str(&fill(&blocks[0]))
        .unwrap_or_else(|e| panic!("README block is not YAML: {e}\n{}", blocks[0]))
}

fn fill(example: &str) -> String {
    example
        .replace("<id>", "abcdefghijklmnopqrstuvwxyz012345")
        .replace("<region>", "eu-west-1")
}

#[test]
fn prometheus_examples_load_in_a_real_promtool_and_sign_for_lambda() {
    let examples = remote_write_examples();
    assert!(
        examples.len() >= 2,
        "README's Prometheus examples: {examples:?}"
    );
    let dir = std::env::temp_dir().join(unique("vigil-readme"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let promtool = std::env::var("VIGIL_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    for (i, example) in examples.iter().enumerate() {
        let filled = fill(example);
        let mut config: Value = serde_saphyr::from_str(&filled)
            .unwrap_or_else(|e| panic!("README example {i} is not YAML: {e}\n{example}"));
        for target in config["remote_write"]
            .as_array_mut()
            .expect("remote_write list")
        {
            let sigv4 = target
                .as_object_mut()
                .and_then(|t| t.remove("sigv4"))
                .expect("every example signs its requests");
            let sigv4 = sigv4.as_object().expect("sigv4 is a mapping");
            for key in sigv4.keys() {
                assert!(
                    SIGV4_KEYS.contains(&key.as_str()),
                    "example {i}: sigv4.{key} is not a key of prometheus/sigv4: Prometheus refuses the file"
                );
            }
            assert_eq!(
                sigv4["service_name"], "lambda",
                "example {i} must sign for lambda"
            );
            assert_eq!(
                target["queue_config"]["retry_on_http_429"], true,
                "example {i}: without retry_on_http_429 Prometheus drops what ingest answers with 429"
            );
        }
        let path = dir.join(format!("example-{i}.yml"));
        std::fs::write(&path, serde_json::to_string(&config).expect("json")).expect("write");
        let out = Command::new(&promtool)
            .args(["check", "config"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {promtool} ({e}): install Debian's prometheus package (scripts/test does)")
            });
        assert!(
            out.status.success(),
            "promtool refused README example {i}:\n{}{}\n{example}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `promtool ARGS PATH` and returns its standard output, failing the test when promtool
/// does.
fn promtool(args: &[&str], path: &std::path::Path) -> String {
    let promtool = std::env::var("VIGIL_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let out = Command::new(&promtool)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {promtool} ({e})"));
    assert!(
        out.status.success(),
        "promtool {} {} failed:\n{}{}",
        args.join(" "),
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The recording rules README recommends for counters and histograms load in `promtool`.
#[test]
fn the_recommended_recording_rules_pass_promtool() {
    let rules = workspace_root().join("config/prometheus-recording-rules.yaml");
    let text = promtool(&["check", "rules"], &rules);
    assert!(text.contains("4 rules found"), "{text}");
}

/// The rules compute what they promise in Prometheus's own engine (`promtool test rules`):
/// three pods' request rate across one pod's restart, the error rate, and a p99 from a classic
/// histogram within its bucket's width of the true value.
#[test]
fn the_recommended_recording_rules_pass_their_unit_tests() {
    let tests = workspace_root().join("config/prometheus-recording-rules.test.yaml");
    let text = promtool(&["test", "rules"], &tests);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The OpenTelemetry Collector example against its source (opentelemetry-collector-contrib,
/// `extension/sigv4authextension/config.go`: `region`, `service`, `assume_role`; the
/// exporter names its authenticator under `auth.authenticator`, collector
/// `config/configauth`). The extension infers the service only from a few AWS hosts, none of
/// them a Function URL's, so `service` and `region` must both be given.
#[test]
fn the_opentelemetry_collector_example_signs_for_lambda() {
    let config = yaml_example("extensions:");
    let sigv4 = config["extensions"]["sigv4auth"]
        .as_object()
        .expect("extensions.sigv4auth");
    for key in sigv4.keys() {
        assert!(
            ["region", "service", "assume_role"].contains(&key.as_str()),
            "sigv4auth.{key} is not a key of the extension"
        );
    }
    assert_eq!(sigv4["service"], "lambda");
    assert_eq!(sigv4["region"], "eu-west-1");
    let exporter = &config["exporters"]["prometheusremotewrite"];
    assert_eq!(exporter["auth"]["authenticator"], "sigv4auth");
    let endpoint = exporter["endpoint"].as_str().expect("endpoint");
    assert!(
        endpoint.ends_with(".lambda-url.eu-west-1.on.aws/api/v1/write"),
        "{endpoint}"
    );
    assert_eq!(
        config["service"]["extensions"],
        serde_json::json!(["sigv4auth"])
    );
    let pipeline = &config["service"]["pipelines"]["metrics"];
    assert_eq!(
        pipeline["exporters"],
        serde_json::json!(["prometheusremotewrite"])
    );
    assert_eq!(pipeline["receivers"], serde_json::json!(["prometheus"]));
    assert!(config["receivers"]["prometheus"]["config"]["scrape_configs"].is_array());
}

/// The Prometheus Operator example against its source (prometheus-operator v0.93.0:
/// `RemoteWriteSpec`, whose `Sigv4` has no service name and would sign for `aps`;
/// `QueueConfig.retryOnRateLimit`) and the proxy's (awslabs/aws-sigv4-proxy v1.11.1,
/// `cmd/aws-sigv4-proxy/main.go`: `--name`, `--region`, `--host`, `--port`; a fixed service
/// only when both `--name` and `--region` are set). The operator's config reloader listens on
/// 8080 in the same pod, the proxy's default port.
#[test]
fn the_prometheus_operator_example_signs_through_its_sidecar() {
    let config = yaml_example("apiVersion: monitoring.coreos.com/v1");
    assert_eq!(config["kind"], "Prometheus");
    let spec = &config["spec"];
    let write = &spec["remoteWrite"][0];
    assert!(
        write.get("sigv4").is_none(),
        "the operator's sigv4 signs for aps: the sidecar must sign"
    );
    assert_eq!(write["queueConfig"]["retryOnRateLimit"], true);
    let url = write["url"].as_str().expect("url");
    let port = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .expect("the sidecar on loopback");
    assert_ne!(port, "8080", "the config reloader's port");
    let args: Vec<&str> = spec["containers"][0]["args"]
        .as_array()
        .expect("sidecar args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("--{name} in {args:?}"))
    };
    assert_eq!(flag("name"), "lambda");
    assert_eq!(flag("region"), "eu-west-1");
    assert!(flag("host").ends_with(".lambda-url.eu-west-1.on.aws"));
    assert_eq!(flag("port"), format!("127.0.0.1:{port}"));
    for a in &args {
        let name = a
            .trim_start_matches("--")
            .split('=')
            .next()
            .unwrap_or_default();
        assert!(
            [
                "name",
                "region",
                "host",
                "port",
                "role-arn",
                "sign-host",
                "log-failed-requests"
            ]
            .contains(&name),
            "{a} is not a flag of aws-sigv4-proxy"
        );
    }
}

/// The Grafana Alloy example against its source (grafana/alloy v1.18.1,
/// `internal/component/prometheus/remotewrite/types.go`, `SigV4Config`; `service_name` since
/// v1.18.0).
#[test]
fn the_grafana_alloy_example_signs_for_lambda() {
    let blocks = fenced("alloy");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let block = fill(&blocks[0]);
    let sigv4 = block
        .split_once("sigv4 {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(inside, _)| inside)
        .expect("a sigv4 block");
    let mut attributes = Vec::new();
    for line in sigv4.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once('=').expect("attribute = value");
        attributes.push((key.trim(), value.trim().trim_matches('"')));
    }
    for (key, _) in &attributes {
        // Alloy's SigV4Config has prometheus/sigv4's fields, and passes them on to it.
        assert!(
            SIGV4_KEYS.contains(key),
            "sigv4.{key} is not an attribute of Alloy's sigv4 block"
        );
    }
    assert!(
        attributes.contains(&("service_name", "lambda")),
        "{attributes:?}"
    );
    assert!(
        attributes.contains(&("region", "eu-west-1")),
        "{attributes:?}"
    );
    assert!(block.contains("prometheus.remote_write \""), "{block}");
    assert!(
        block.contains("url = \"https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/api/v1/write\""),
        "{block}"
    );
}

/// The ingest configuration README documents loads as it is written, every field known.
#[test]
fn the_documented_ingest_configuration_loads() {
    let blocks: Vec<String> = fenced("yaml")
        .into_iter()
        .filter(|b| b.starts_with("json_push:"))
        .collect();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let config = vigil_ingest::IngestConfig::parse("README.md", &blocks[0])
        .unwrap_or_else(|e| panic!("{e}\n{}", blocks[0]));
    assert_eq!(config.remote_write.namespace, "Prometheus");
    assert_eq!(config.json_push.namespace, "Service");
    assert_eq!(config.logs.rules.len(), 2);
}

/// Every rules file README.md shows (a YAML block that begins `groups:`) loads as the alert
/// function loads its rules: the rule example and the objective example.
#[test]
fn the_documented_rules_files_load() {
    let blocks: Vec<String> = fenced("yaml")
        .into_iter()
        .filter(|b| b.starts_with("groups:"))
        .collect();
    assert!(blocks.len() >= 2, "{} rules examples", blocks.len());
    let mut slos = 0;
    for block in &blocks {
        let rules =
            vigil_alert::load("README.md", block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        slos += rules.iter().filter(|r| r.burn.is_some()).count();
    }
    assert_eq!(slos, 4, "the objective example is four burn-rate alerts");
}

/// Every policy README.md shows (a YAML block that begins `policy:`) loads with a rule beside
/// it, as the alert function loads it; the review's settings among them.
#[test]
fn the_documented_policies_load() {
    let blocks: Vec<String> = fenced("yaml")
        .into_iter()
        .filter(|b| b.starts_with("policy:"))
        .collect();
    let mut reviews = 0;
    let mut receivers = 0;
    for block in &blocks {
        let file = format!(
            "{block}\ngroups:\n  - name: g\n    rules:\n      - {{alert: A, metric: {{namespace: S, name: m, stat: Average, period: 1m}}, condition: {{operator: \">\", threshold: 1}}}}\n"
        );
        let (_, policy) = vigil_alert::rules::load_file("README.md", &file)
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
        receivers += policy.receivers.len();
        if let Some(review) = policy.review {
            review.quiet().expect("quiet hours");
            reviews += 1;
        }
    }
    assert_eq!(reviews, 1, "the review's settings are shown once");
    assert_eq!(receivers, 1, "the receivers are shown, and load");
}
