//! The two pipelines (`.github/workflows/ci.yml`, `.circleci/config.yml`) run the same scripts
//! in the same jobs, in the same order, with credentials only after every install, deploys
//! from main only, prod only after an approval; and the workflow's actions are pinned by
//! commit. (actionlint, zizmor and the schemas check each file alone, in `scripts/test`.)

use serde_json::Value;
use vigil_e2e::workspace_root;

/// What a job does, step by step, in terms both pipelines share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Test,
    InstallTools,
    InstallDeploy,
    InstallLoad,
    SamBuild,
    Credentials,
    DeployDev,
    SmokeDev,
    LoadGateDev,
    PlanProd,
    ApplyChangeSet,
}

use Step::*;

/// The pipeline, job by job, in order.
const PIPELINE: [(&str, &[Step]); 5] = [
    ("test", &[Test]),
    ("build", &[InstallTools, SamBuild]),
    (
        "deploy-dev",
        &[
            InstallDeploy,
            InstallLoad,
            Credentials,
            DeployDev,
            SmokeDev,
            LoadGateDev,
        ],
    ),
    ("plan-prod", &[InstallDeploy, Credentials, PlanProd]),
    ("deploy-prod", &[Credentials, ApplyChangeSet]),
];

/// The shared steps a shell command runs, in order of appearance.
fn steps_of(command: &str) -> Vec<Step> {
    const PATTERNS: [(&str, Step); 10] = [
        ("scripts/test", Test),
        ("scripts/tools install deploy", InstallDeploy),
        ("scripts/tools install load", InstallLoad),
        ("scripts/tools install", InstallTools),
        ("sam build", SamBuild),
        ("scripts/deploy dev", DeployDev),
        ("scripts/smoke vigil-dev", SmokeDev),
        ("scripts/load-gate vigil-dev", LoadGateDev),
        ("scripts/deploy plan prod", PlanProd),
        ("scripts/deploy apply", ApplyChangeSet),
    ];
    let mut found: Vec<(usize, Step)> = Vec::new();
    for (pattern, step) in PATTERNS {
        for (at, _) in command.match_indices(pattern) {
            // The longest pattern at a place wins (`install deploy` over `install`).
            if !found.iter().any(|(i, _)| *i == at) {
                found.push((at, step));
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, s)| s).collect()
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).expect(path);
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn github_steps(job: &Value) -> Vec<Step> {
    let mut out = Vec::new();
    for step in job["steps"].as_array().expect("steps") {
        let uses = step["uses"].as_str().unwrap_or_default();
        if uses.starts_with("aws-actions/configure-aws-credentials@") {
            out.push(Credentials);
        }
        out.extend(steps_of(step["run"].as_str().unwrap_or_default()));
    }
    out
}

fn circleci_steps(config: &Value, job: &Value) -> Vec<Step> {
    let mut out = Vec::new();
    for step in job["steps"].as_array().expect("steps") {
        match step {
            Value::String(name) if name == "assume-role" => out.push(Credentials),
            Value::Object(map) => {
                if let Some(run) = map.get("run") {
                    let command = run["command"].as_str().or(run.as_str()).unwrap_or_default();
                    out.extend(steps_of(command));
                }
            }
            _ => {}
        }
    }
    // The reusable command assume-role is the orb's OIDC setup and nothing else.
    let assume = &config["commands"]["assume-role"]["steps"];
    assert_eq!(
        assume.as_array().map(Vec::len),
        Some(1),
        "assume-role: {assume}"
    );
    assert!(assume[0].get("aws-cli/setup").is_some(), "{assume}");
    out
}

#[test]
fn both_pipelines_run_the_same_scripts_in_the_same_jobs() {
    let github = yaml(".github/workflows/ci.yml");
    let circleci = yaml(".circleci/config.yml");
    for (job, expected) in PIPELINE {
        let gh = github_steps(&github["jobs"][job]);
        assert_eq!(gh, expected, "GitHub Actions job {job}");
        let cc = circleci_steps(&circleci, &circleci["jobs"][job]);
        assert_eq!(cc, expected, "CircleCI job {job}");
    }
    // No job beyond the pipeline's.
    let gh_jobs: Vec<&String> = github["jobs"].as_object().expect("jobs").keys().collect();
    assert_eq!(gh_jobs.len(), PIPELINE.len(), "{gh_jobs:?}");
}

/// Each job after the first needs the one before it; the deploys run on main only, and prod
/// only after a person approved what plan-prod showed.
#[test]
fn deploys_follow_the_tests_on_main_and_prod_waits_for_approval() {
    let github = yaml(".github/workflows/ci.yml");
    let jobs = &github["jobs"];
    for pair in PIPELINE.windows(2) {
        let (before, after) = (pair[0].0, pair[1].0);
        let needs = &jobs[after]["needs"];
        assert!(
            needs == before
                || needs
                    .as_array()
                    .is_some_and(|n| n.iter().any(|x| x == before)),
            "GitHub: {after} needs {before}, has {needs}"
        );
    }
    assert!(
        jobs["build"]["if"]
            .as_str()
            .is_some_and(|c| c.contains("github.ref == 'refs/heads/main'")),
        "GitHub: build on main only"
    );
    assert_eq!(jobs["deploy-dev"]["environment"], "dev");
    assert_eq!(jobs["plan-prod"]["environment"], "prod-plan");
    // The reviewers of the "prod" environment are the approval.
    assert_eq!(jobs["deploy-prod"]["environment"], "prod");

    let circleci = yaml(".circleci/config.yml");
    let workflow = circleci["workflows"]["delivery"]["jobs"]
        .as_array()
        .expect("workflow jobs");
    let entry = |name: &str| -> &Value {
        workflow
            .iter()
            .find_map(|j| j.get(name))
            .unwrap_or_else(|| panic!("CircleCI workflow job {name}"))
    };
    assert!(
        workflow.iter().any(|j| j == "test"),
        "CircleCI: test runs on every push"
    );
    let mut previous = "test";
    for (job, _) in &PIPELINE[1..] {
        let e = entry(job);
        let requires = e["requires"].as_array().expect("requires");
        let wanted = if *job == "deploy-prod" {
            "approve-prod"
        } else {
            previous
        };
        assert!(
            requires.iter().any(|r| r == wanted),
            "CircleCI: {job} requires {wanted}: {e}"
        );
        assert_eq!(
            e["filters"]["branches"]["only"], "main",
            "CircleCI: {job} on main only"
        );
        previous = job;
    }
    let approval = entry("approve-prod");
    assert_eq!(approval["type"], "approval");
    assert!(
        approval["requires"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "plan-prod"))
    );
    for (job, context) in [
        ("deploy-dev", "vigil-dev"),
        ("plan-prod", "vigil-prod-plan"),
        ("deploy-prod", "vigil-prod"),
    ] {
        assert_eq!(entry(job)["context"], context, "CircleCI: {job}");
    }
}

/// Every action is pinned by a full commit SHA with its release in a comment, every checkout
/// keeps no credentials, and the orb is pinned to a release.
#[test]
fn actions_and_orbs_are_pinned() {
    let text =
        std::fs::read_to_string(workspace_root().join(".github/workflows/ci.yml")).expect("ci.yml");
    let mut uses = 0;
    for line in text.lines() {
        let Some((_, rest)) = line.split_once("uses: ") else {
            continue;
        };
        uses += 1;
        let (action, comment) = rest.split_once(" # ").unwrap_or((rest, ""));
        let sha = action.rsplit_once('@').map(|(_, r)| r).unwrap_or_default();
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{line}: not pinned by commit"
        );
        assert!(comment.starts_with('v'), "{line}: no release comment");
    }
    assert!(uses >= 10, "{uses} actions");
    let github = yaml(".github/workflows/ci.yml");
    for (name, job) in github["jobs"].as_object().expect("jobs") {
        for step in job["steps"].as_array().expect("steps") {
            if step["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/checkout@"))
            {
                assert_eq!(
                    step["with"]["persist-credentials"], false,
                    "{name}: the checkout keeps a token"
                );
            }
        }
    }
    let circleci = yaml(".circleci/config.yml");
    for (name, orb) in circleci["orbs"].as_object().expect("orbs") {
        let version = orb.as_str().and_then(|o| o.split_once('@')).map(|(_, v)| v);
        assert!(
            version.is_some_and(
                |v| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok())
            ),
            "orb {name}: {orb} is not pinned to a release"
        );
    }
}

/// The approver sees dev's smoke and load figures beside the change set: deploy-dev writes
/// them to dev-evidence.md, and plan-prod puts that file first in what it shows.
#[test]
fn the_change_set_is_shown_with_the_smoke_and_load_figures() {
    let github = yaml(".github/workflows/ci.yml");
    let commands = |job: &Value| -> String {
        job["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let verify = commands(&github["jobs"]["deploy-dev"]);
    assert!(
        verify.contains("scripts/smoke vigil-dev --summary dev-evidence.md"),
        "{verify}"
    );
    assert!(
        verify.contains("scripts/load-gate vigil-dev load-result.json >>dev-evidence.md"),
        "{verify}"
    );
    let uploads = github["jobs"]["deploy-dev"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .any(|s| s["with"]["name"] == "dev-evidence");
    assert!(uploads, "deploy-dev uploads dev-evidence");
    let plan = &github["jobs"]["plan-prod"];
    let downloads = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .any(|s| s["with"]["name"] == "dev-evidence");
    assert!(downloads, "plan-prod downloads dev-evidence");
    let shown = commands(plan);
    let evidence = shown.find("cat dev-evidence.md >>\"$GITHUB_STEP_SUMMARY\"");
    let change_set =
        shown.find("scripts/deploy plan prod change-set.txt >>\"$GITHUB_STEP_SUMMARY\"");
    assert!(
        matches!((evidence, change_set), (Some(e), Some(c)) if e < c),
        "{shown}"
    );

    let circleci = yaml(".circleci/config.yml");
    let jobs = &circleci["jobs"];
    let commands = |job: &Value| -> String {
        job["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["run"]["command"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let verify = commands(&jobs["deploy-dev"]);
    assert!(
        verify.contains("scripts/smoke vigil-dev --summary dev-evidence.md"),
        "{verify}"
    );
    assert!(verify.contains("tee -a dev-evidence.md"), "{verify}");
    let plan = commands(&jobs["plan-prod"]);
    assert!(
        plan.contains("cp dev-evidence.md change-set.md")
            && plan.contains("scripts/deploy plan prod change-set.txt | tee -a change-set.md"),
        "{plan}"
    );
}

/// The suite builds once: scripts/test builds the binaries with the tests (so with the
/// features the tests' dev-dependencies add), and the load gate's and the smoke test's local
/// builds are that same build, so neither builds the AWS SDK a second time mid-suite.
#[test]
fn the_suites_scripts_share_one_build() {
    for script in ["scripts/test", "scripts/load-test", "scripts/smoke"] {
        let text = std::fs::read_to_string(workspace_root().join(script)).expect(script);
        assert!(
            text.lines()
                .any(|l| !l.trim_start().starts_with('#')
                    && l.contains("--workspace --bins --tests")),
            "{script} does not build --workspace --bins --tests"
        );
    }
}
