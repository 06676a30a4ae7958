//! The smoke test (`tests/smoke/smoke.py`, `scripts/smoke`) fails when a function does not do
//! its part: against a local stack whose alert notifies another topic than the smoke topic and
//! whose backup-verify has lost its smoke sets, the two ingest steps pass and the alert and
//! backup-verify steps fail, with the exit status 1. (`scripts/test` runs the smoke test
//! against the whole local stack with `scripts/smoke --local`, where every step passes.)

use std::process::Command;

use serde_json::Value;
use vigil_e2e::stack::Stack;
use vigil_e2e::{LocalAws, unique, workspace_root};

#[tokio::test]
async fn the_smoke_test_fails_the_steps_of_a_broken_stack() {
    let aws = LocalAws::connect().await;
    let elsewhere = aws.create_topic("vigil-smoke-elsewhere").await;
    let stack = Stack::start_with(&aws, |function, env| {
        for (name, value) in env.iter_mut() {
            match (function, *name) {
                ("alert", "VIGIL_SMOKE_TOPIC_ARN") => *value = elsewhere.clone(),
                ("backup-verify", "VIGIL_SMOKE_BACKUP_SETS") => {
                    *value = value.replace("backup-sets.yaml", "missing.yaml")
                }
                _ => {}
            }
        }
    })
    .await;
    let dir = std::env::temp_dir().join(unique("vigil-smoke"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (outputs, result) = (dir.join("outputs.json"), dir.join("result.json"));
    std::fs::write(&outputs, stack.outputs.to_string()).expect("outputs");

    let root = workspace_root();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(root.join(".venv-tools/bin/python"))
            .arg(root.join("tests/smoke/smoke.py"))
            .arg("--outputs")
            .arg(&outputs)
            .arg("--result")
            .arg(&result)
            .args(["--timeout", "8"])
            .env("VIGIL_AWS_ENDPOINT_URL", &aws.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .map(|out| (out, result))
    })
    .await
    .expect("join")
    .expect("python from .venv-tools (scripts/tools install)");
    let (out, result) = run;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(&result).expect("result")).expect("JSON");
    let verdicts: Vec<(String, bool)> = result["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["ok"] == true,
            )
        })
        .collect();
    let ok: Vec<bool> = verdicts.iter().map(|(_, ok)| *ok).collect();
    assert_eq!(ok, [true, true, false, false], "{stdout}");
    assert!(verdicts[2].0.starts_with("alert") && verdicts[3].0.starts_with("backup-verify"));
    assert_eq!(result["passed"], false);
    let details: Vec<&str> = result["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["detail"].as_str())
        .collect();
    assert!(
        details[2].contains("notification on the smoke topic"),
        "{}",
        details[2]
    );
    assert!(details[3].contains("failed"), "{}", details[3]);
}
