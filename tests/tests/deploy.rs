//! How the stack deploys, read from the template as CloudFormation receives it: the SAM
//! transform applied by aws-sam-translator (`scripts/sam-transform`, the library `sam deploy`
//! uses). Each function is published as versions behind the alias `live`, every trigger
//! invokes the alias, and CodeDeploy shifts the alias to a new version under the function's
//! own deploy alarm, rolling it back when the alarm goes off.

use serde_json::{Value, json};
use vigil_e2e::sam_transformed as transformed;

const FUNCTIONS: [&str; 3] = ["IngestFunction", "AlertFunction", "BackupVerifyFunction"];

fn alias(function: &str) -> Value {
    json!({"Ref": format!("{function}Aliaslive")})
}

fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(k, r)| (k.as_str(), &r["Properties"]))
        .collect()
}

/// A trigger that named the function itself would run `$LATEST`, the newest code, at once:
/// past the canary and out of its rollback.
#[test]
fn every_trigger_invokes_the_alias() {
    let t = transformed();
    for f in FUNCTIONS {
        let a = &t["Resources"][format!("{f}Aliaslive")];
        assert_eq!(a["Type"], "AWS::Lambda::Alias", "{f}");
        assert_eq!(a["Properties"]["Name"], "live");
    }
    let urls = of_type(&t, "AWS::Lambda::Url");
    assert_eq!(urls.len(), 1);
    assert_eq!(urls[0].1["TargetFunctionArn"], alias("IngestFunction"));
    assert_eq!(urls[0].1["AuthType"], "AWS_IAM");

    let schedules = of_type(&t, "AWS::Scheduler::Schedule");
    assert_eq!(
        schedules.len(),
        3,
        "alert's evaluation and review, backup-verify's run"
    );
    for (name, s) in &schedules {
        let f = FUNCTIONS
            .iter()
            .find(|f| name.starts_with(*f))
            .expect("a function's schedule");
        assert_eq!(s["Target"]["Arn"], alias(f), "{name}");
        // The schedule's role may invoke the alias, which is what it calls.
        let role = s["Target"]["RoleArn"]["Fn::GetAtt"][0]
            .as_str()
            .expect("role");
        let grants = &t["Resources"][role]["Properties"]["Policies"];
        assert!(
            grants.as_array().expect("policies").iter().any(|p| {
                p["PolicyDocument"]["Statement"]
                    .as_array()
                    .is_some_and(|st| {
                        st.iter().any(|s| {
                            s["Action"] == "lambda:InvokeFunction" && s["Resource"] == alias(f)
                        })
                    })
            }),
            "{role}: {grants}"
        );
    }
    for (name, rule) in of_type(&t, "AWS::Events::Rule") {
        for target in rule["Targets"].as_array().expect("targets") {
            assert_eq!(target["Arn"], alias("AlertFunction"), "{name}");
        }
    }
    // Log subscriptions, alarm actions and the alarm rule may invoke the alias only.
    let permissions = of_type(&t, "AWS::Lambda::Permission");
    assert!(permissions.len() >= 3, "{permissions:?}");
    for (name, p) in permissions {
        let target = p["FunctionName"]["Ref"].as_str().unwrap_or_default();
        assert!(target.ends_with("Aliaslive"), "{name} names {target}");
    }
    // The ARNs README tells users to subscribe and to name as an alarm action.
    for output in ["IngestFunctionArn", "AlertFunctionArn"] {
        let value = &t["Outputs"][output]["Value"]["Ref"];
        assert!(
            value.as_str().is_some_and(|v| v.ends_with("Aliaslive")),
            "{output}: {value}"
        );
    }
}

/// Each function's deployment group watches an alarm on that function's own alias (errors and
/// throttles; for ingest also its Function URL's 5xx), and rolls back when it goes off.
#[test]
fn each_function_rolls_back_on_its_own_deploy_alarm() {
    let t = transformed();
    assert_eq!(
        t["Parameters"]["DeploymentStrategy"]["Default"],
        "Canary10Percent5Minutes"
    );
    for (f, alarm, metrics) in [
        (
            "IngestFunction",
            "IngestDeployAlarm",
            &["Errors", "Throttles", "Url5xxCount"][..],
        ),
        (
            "AlertFunction",
            "AlertDeployAlarm",
            &["Errors", "Throttles"],
        ),
        (
            "BackupVerifyFunction",
            "BackupVerifyDeployAlarm",
            &["Errors", "Throttles"],
        ),
    ] {
        let resources = &t["Resources"];
        let group_name = format!("{f}DeploymentGroup");
        let group = &resources[&group_name]["Properties"];
        assert_eq!(
            group["AlarmConfiguration"],
            json!({"Enabled": true, "Alarms": [{"Name": {"Ref": alarm}}]}),
            "{f}"
        );
        let rollback = &group["AutoRollbackConfiguration"];
        assert_eq!(rollback["Enabled"], true);
        assert!(
            rollback["Events"]
                .as_array()
                .expect("events")
                .contains(&json!("DEPLOYMENT_STOP_ON_ALARM")),
            "{rollback}"
        );
        assert_eq!(
            group["DeploymentConfigName"]["Fn::Sub"][1]["ConfigName"], "Canary10Percent5Minutes",
            "{f}"
        );
        // The alias is the one CodeDeploy shifts, through this group.
        let update =
            &resources[format!("{f}Aliaslive")]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"];
        assert_eq!(update["DeploymentGroupName"], json!({"Ref": group_name}));

        let a = &resources[alarm]["Properties"];
        assert_eq!(a["Threshold"], 1.0, "{alarm}");
        assert_eq!(a["EvaluationPeriods"], 1, "{alarm}");
        assert_eq!(a["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
        let queries = a["Metrics"].as_array().expect("metric math");
        let read: Vec<&Value> = queries.iter().filter_map(|q| q.get("MetricStat")).collect();
        let names: Vec<&str> = read
            .iter()
            .filter_map(|m| m["Metric"]["MetricName"].as_str())
            .collect();
        assert_eq!(names, metrics, "{alarm}");
        for m in &read {
            assert_eq!(m["Period"], 60, "{alarm}");
            assert_eq!(m["Stat"], "Sum", "{alarm}");
            assert_eq!(
                m["Metric"]["Dimensions"],
                json!([
                    {"Name": "FunctionName", "Value": {"Ref": f}},
                    {"Name": "Resource", "Value": {"Fn::Sub": format!("${{{f}}}:live")}},
                ]),
                "{alarm}"
            );
        }
        // The alarm compares the sum of what it reads.
        let returned: Vec<&Value> = queries.iter().filter(|q| q["ReturnData"] == true).collect();
        assert_eq!(returned.len(), 1, "{alarm}");
        let ids: Vec<&str> = queries
            .iter()
            .filter(|q| q.get("MetricStat").is_some())
            .filter_map(|q| q["Id"].as_str())
            .collect();
        let expression = returned[0]["Expression"].as_str().expect("expression");
        assert_eq!(expression, ids.join(" + "), "{alarm}");
    }
}

/// The bootstraps link as position-dependent executables (`functions/*/build.rs`): ELF type
/// `ET_EXEC`, so the loader has no relative relocation to apply at a cold start.
/// (`scripts/test` checks the same of `sam build`'s arm64 bootstraps.)
#[test]
fn the_bootstraps_are_position_dependent_executables() {
    use std::io::Read;
    for name in ["ingest", "alert", "backup-verify"] {
        let path = vigil_e2e::binary(name);
        let mut header = [0u8; 18];
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_exact(&mut header))
            .unwrap_or_else(|e| panic!("{}: {e} (cargo build --workspace --bins)", path.display()));
        assert_eq!(&header[..4], b"\x7fELF", "{name}");
        let e_type = u16::from_le_bytes([header[16], header[17]]);
        assert_eq!(e_type, 2, "{name}: ELF type {e_type}, not ET_EXEC (2)");
    }
}
