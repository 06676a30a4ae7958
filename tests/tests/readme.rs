//! README instructions are tests: every Prometheus `remote_write` example README tells users to
//! paste is loaded by a real `promtool check config` (Debian's `prometheus` package), and its
//! `sigv4` block is held to the upstream source.
//!
//! Debian's Prometheus 2.42 predates the sigv4 service name, so its `promtool` checks each
//! example without the `sigv4` block. The block's keys are checked against prometheus/sigv4's
//! `SigV4Config` (sigv4_config.go, `ServiceName string yaml:"service_name,omitempty"`, added in
//! sigv4 v0.2.0, first required by Prometheus v3.5.0's go.mod), which Prometheus loads with
//! `yaml.UnmarshalStrict`: an unknown key such as `service` makes it refuse the file.

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

/// The fenced YAML blocks of README.md that configure `remote_write`.
fn remote_write_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                if block.starts_with("remote_write:") {
                    blocks.push(block.clone());
                }
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
        let filled = example
            .replace("<id>", "abcdefghijklmnopqrstuvwxyz012345")
            .replace("<region>", "eu-west-1");
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

/// The recording rules README recommends for counters and histograms load in `promtool`.
#[test]
fn the_recommended_recording_rules_pass_promtool() {
    let promtool = std::env::var("VIGIL_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let rules = workspace_root().join("config/prometheus-recording-rules.yaml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {promtool} ({e})"));
    assert!(
        out.status.success(),
        "promtool refused {}:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 rules found"), "{text}");
}
