//! The SAM template's wiring against the code it deploys: each function's binary, triggers,
//! dead letters, environment (what its `env` module reads), the IAM grants those settings
//! need, and the self-monitoring that watches what the code writes.
//!
//! The template is read as plain YAML: a short-form intrinsic (`!Ref X`, `!Sub s`,
//! `!GetAtt X.Y`) reads as its argument, which is what these assertions compare.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn template() -> Value {
    let path = root().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml");
    serde_saphyr::from_str(&text).expect("template.yaml parses as YAML")
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["Resources"]
        .get(name)
        .unwrap_or_else(|| panic!("resource {name} is missing"))
}

fn props<'a>(t: &'a Value, name: &str) -> &'a Value {
    &resource(t, name)["Properties"]
}

/// Every IAM statement a function's `Policies` grant, with `!If` branches taken.
fn statements(function: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for policy in function["Properties"]["Policies"]
        .as_array()
        .expect("Policies")
    {
        // `!If [cond, then, else]` reads as a three-element list.
        let branches: Vec<&Value> = match policy.as_array() {
            Some(list) if list.len() == 3 => vec![&list[1]],
            _ => vec![policy],
        };
        for p in branches {
            if let Some(s) = p.get("Statement").and_then(Value::as_array) {
                out.extend(s.iter());
            }
        }
    }
    out
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// True when a statement of `function` allows `action` on exactly `resource`.
fn grants(function: &Value, action: &str, resource: &str) -> bool {
    statements(function).iter().any(|s| {
        s["Effect"] == "Allow"
            && as_list(&s["Action"]).iter().any(|a| a == action)
            && as_list(&s["Resource"]).iter().any(|r| r == resource)
    })
}

fn environment(function: &Value) -> BTreeSet<String> {
    function["Properties"]["Environment"]["Variables"]
        .as_object()
        .expect("Environment.Variables")
        .keys()
        .cloned()
        .collect()
}

fn var<'a>(function: &'a Value, name: &str) -> &'a Value {
    &function["Properties"]["Environment"]["Variables"][name]
}

/// The environment a function's template entry sets is exactly what its code can read, and
/// holds everything the code requires.
fn assert_environment(function: &Value, required: &[&str], optional: &[&str], name: &str) {
    let set = environment(function);
    for r in required {
        assert!(set.contains(*r), "{name}: the template does not set {r}");
    }
    for v in &set {
        assert!(
            required.contains(&v.as_str()) || optional.contains(&v.as_str()),
            "{name}: the template sets {v}, which the code never reads"
        );
    }
}

/// The function's build: cargo-lambda, the binary its crate's `[[bin]]` names, arm64 on
/// provided.al2023 (from Globals).
fn assert_build(t: &Value, logical: &str, crate_dir: &str, binary: &str) {
    let f = resource(t, logical);
    assert_eq!(
        f["Metadata"]["BuildMethod"], "rust-cargolambda",
        "{logical}"
    );
    assert_eq!(
        f["Metadata"]["BuildProperties"]["Binary"], binary,
        "{logical}"
    );
    let manifest =
        std::fs::read_to_string(root().join(crate_dir).join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains(&format!("[[bin]]\nname = \"{binary}\"")),
        "{crate_dir}/Cargo.toml has no binary {binary}"
    );
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], serde_json::json!(["arm64"]));
    assert_eq!(globals["Handler"], "bootstrap");
    let p = &f["Properties"];
    assert!(p["MemorySize"].as_u64().is_some(), "{logical}: MemorySize");
    assert!(p["Timeout"].as_u64().is_some(), "{logical}: Timeout");
    assert_eq!(p["LoggingConfig"]["LogFormat"], "JSON", "{logical}");
    let group = p["LoggingConfig"]["LogGroup"].as_str().expect("LogGroup");
    assert!(
        props(t, group)["RetentionInDays"].is_string()
            || props(t, group)["RetentionInDays"].is_number(),
        "{group} has a retention"
    );
    // Asynchronous invocations that fail every retry are kept.
    assert_eq!(p["DeadLetterQueue"]["Type"], "SQS", "{logical}");
    assert_eq!(
        p["DeadLetterQueue"]["TargetArn"], "FailedEventsQueue.Arn",
        "{logical}"
    );
}

/// A schedule or rule trigger retries and keeps what still fails.
fn assert_retried_with_dead_letters(event: &Value, name: &str) {
    let p = &event["Properties"];
    assert!(
        p["RetryPolicy"]["MaximumRetryAttempts"].as_u64().is_some(),
        "{name}: no retry policy"
    );
    assert_eq!(
        p["DeadLetterConfig"]["Arn"], "FailedEventsQueue.Arn",
        "{name}: no dead-letter queue"
    );
}

/// `s3://${VigilBucket}/config/x.yaml` → (`VigilBucket`, `config`).
fn bucket_and_prefix(location: &str) -> (String, String) {
    let rest = location
        .strip_prefix("s3://${")
        .unwrap_or_else(|| panic!("{location} is not in a bucket of the stack"));
    let (bucket, key) = rest.split_once("}/").expect("bucket}/key");
    let prefix = key.split('/').next().expect("prefix");
    (bucket.to_owned(), prefix.to_owned())
}

fn assert_can_read(function: &Value, location: &str, name: &str) {
    let (bucket, prefix) = bucket_and_prefix(location);
    assert!(
        grants(
            function,
            "s3:GetObject",
            &format!("${{{bucket}.Arn}}/{prefix}/*")
        ),
        "{name}: may not read {location}"
    );
}

fn assert_can_publish(function: &Value, topic: &str, name: &str) {
    let allowed = function["Properties"]["Policies"]
        .as_array()
        .expect("Policies")
        .iter()
        .any(|p| {
            p["SNSPublishMessagePolicy"]["TopicName"] == format!("{topic}.TopicName").as_str()
        });
    assert!(allowed, "{name}: may not publish to {topic}");
}

#[test]
fn ingest_is_built_triggered_configured_and_granted() {
    let t = template();
    assert_build(&t, "IngestFunction", "functions/ingest", "ingest");
    let f = resource(&t, "IngestFunction");
    assert_environment(
        f,
        vigil_ingest::env::REQUIRED,
        vigil_ingest::env::OPTIONAL,
        "ingest",
    );
    // Prometheus signs with SigV4: the URL takes IAM-authenticated requests only.
    assert_eq!(f["Properties"]["FunctionUrlConfig"]["AuthType"], "AWS_IAM");
    // CloudWatch Logs subscriptions may invoke it.
    let logs = props(&t, "IngestLogsPermission");
    assert_eq!(logs["FunctionName"], "IngestFunction.Alias");
    assert_eq!(logs["Principal"], "logs.amazonaws.com");
    assert_eq!(logs["Action"], "lambda:InvokeFunction");
    // What its settings need.
    assert!(grants(f, "s3:GetObject", "${VigilBucket.Arn}/config/*"));
    let config = &var(f, vigil_ingest::env::CONFIG)[1];
    assert_can_read(f, config.as_str().expect("config location"), "ingest");
    // PutMetricData on "*" (the API has no resources), never into Vigil's own namespaces.
    let put = statements(f)
        .into_iter()
        .find(|s| {
            as_list(&s["Action"])
                .iter()
                .any(|a| a == "cloudwatch:PutMetricData")
        })
        .expect("ingest may put metrics");
    assert_eq!(put["Resource"], "*");
    let refused = as_list(&put["Condition"]["StringNotLike"]["cloudwatch:namespace"]);
    for own in ["Vigil", "Vigil/*"] {
        assert!(
            refused.iter().any(|n| n == own),
            "ingest's PutMetricData must exclude {own}: {put}"
        );
    }
    // The log groups have generated names: the stack's outputs give them, as README says.
    for (output, group) in [
        ("IngestLogGroupName", "IngestLogGroup"),
        ("AlertLogGroupName", "AlertLogGroup"),
        ("BackupVerifyLogGroupName", "BackupVerifyLogGroup"),
    ] {
        assert_eq!(t["Outputs"][output]["Value"], group, "output {output}");
        assert_eq!(resource(&t, group)["Type"], "AWS::Logs::LogGroup");
    }
    // Its 5xx answers are responses, not function errors: alarmed on the Function URL's metric.
    let url = props(&t, "IngestUrl5xxAlarm");
    assert_eq!(url["MetricName"], "Url5xxCount");
    assert_eq!(url["Namespace"], "AWS/Lambda");
    assert_eq!(url["Dimensions"][0]["Value"], "IngestFunction");
}

/// Scheduler sends only the target's Input: it must carry the scheduled time (and the attempt),
/// in the shape the functions read and `events/<sample>` shows.
fn assert_scheduler_input(schedule: &Value, sample: &str) {
    let input = schedule["Properties"]["Input"]
        .as_str()
        .expect("the schedule's Input");
    let sent = input
        .replace("<aws.scheduler.scheduled-time>", "2026-11-25T08:00:00Z")
        .replace("<aws.scheduler.attempt-number>", "2")
        .replace("<aws.scheduler.execution-id>", "d32c5kddcf5bb8c3")
        .replace(
            "<aws.scheduler.schedule-arn>",
            "arn:aws:scheduler:us-east-1:123456789012:schedule/default/s",
        );
    let sent: Value = serde_json::from_str(&sent).expect("the Input is JSON once filled");
    let scheduled = vigil_shared::schedule::parse(&sent).expect("the function reads it");
    assert_eq!(scheduled.at.to_rfc3339(), "2026-11-25T08:00:00+00:00");
    assert_eq!(scheduled.attempt, Some(2));
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events").join(sample)).expect("sample"),
    )
    .expect("sample JSON");
    let keys = |v: &Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<BTreeSet<_>>())
    };
    assert_eq!(
        keys(&sent),
        keys(&sample),
        "events/ shows what Scheduler sends"
    );
}

#[test]
fn alert_is_built_triggered_configured_and_granted() {
    let t = template();
    assert_build(&t, "AlertFunction", "functions/alert", "alert");
    let f = resource(&t, "AlertFunction");
    assert_environment(
        f,
        vigil_alert::env::REQUIRED,
        vigil_alert::env::OPTIONAL,
        "alert",
    );
    let events = &f["Properties"]["Events"];
    assert_eq!(events["Evaluate"]["Type"], "ScheduleV2");
    // No fixed schedule name: dev and prod may share an account and region.
    assert_eq!(events["Evaluate"]["Properties"]["OmitName"], true);
    assert_retried_with_dead_letters(&events["Evaluate"], "alert schedule");
    assert_scheduler_input(&events["Evaluate"], "scheduler-alert.json");
    // The weekly review: Scheduler's Input says "review", with the instant the week ends.
    assert_eq!(events["Review"]["Type"], "ScheduleV2");
    assert_eq!(events["Review"]["Properties"]["OmitName"], true);
    assert_retried_with_dead_letters(&events["Review"], "review schedule");
    assert_scheduler_input(&events["Review"], "scheduler-alert-review.json");
    assert!(
        events["Review"]["Properties"]["Input"]
            .as_str()
            .is_some_and(|i| i.contains(r#""vigil": "review""#)),
        "the review's Input marks it a review"
    );
    let alarms = &events["AlarmStateChange"];
    assert_eq!(alarms["Type"], "EventBridgeRule");
    assert_eq!(
        alarms["Properties"]["Pattern"]["detail-type"],
        serde_json::json!(["CloudWatch Alarm State Change"])
    );
    assert_eq!(
        alarms["Properties"]["Pattern"]["source"],
        serde_json::json!(["aws.cloudwatch"])
    );
    assert_retried_with_dead_letters(alarms, "alert alarm rule");
    // EventBridge may send that rule's dead letters to the queue.
    let queue_policy = &props(&t, "FailedEventsQueuePolicy")["PolicyDocument"]["Statement"];
    assert!(
        queue_policy
            .as_array()
            .expect("statements")
            .iter()
            .any(|s| s["Principal"]["Service"] == "events.amazonaws.com"
                && s["Condition"]["ArnEquals"]["aws:SourceArn"]
                    == "AlertFunctionAlarmStateChange.Arn"),
        "EventBridge may not deliver the alarm rule's dead letters"
    );
    // Alarms may name it as their action.
    let action = props(&t, "AlertAlarmActionPermission");
    assert_eq!(action["FunctionName"], "AlertFunction.Alias");
    assert_eq!(
        action["Principal"],
        "lambda.alarms.cloudwatch.amazonaws.com"
    );
    // One run at a time, when concurrency is reserved.
    assert_eq!(
        f["Properties"]["ReservedConcurrentExecutions"][1], 1,
        "alert runs one at a time"
    );

    // What its settings need: the rules and silences read, the state read and written
    // (listing lets a first run see NoSuchKey), metrics read and listed, the topic published.
    let rules = var(f, vigil_alert::env::RULES).as_str().expect("rules");
    assert_can_read(f, rules, "alert");
    let silences = var(f, vigil_alert::env::SILENCES)
        .as_str()
        .expect("silences");
    assert_can_read(f, silences, "alert");
    let bucket = var(f, vigil_alert::env::STATE_BUCKET)
        .as_str()
        .expect("bucket");
    let key = var(f, vigil_alert::env::STATE_KEY).as_str().expect("key");
    let prefix = key.split('/').next().expect("prefix");
    for action in ["s3:GetObject", "s3:PutObject"] {
        assert!(
            grants(f, action, &format!("${{{bucket}.Arn}}/{prefix}/*")),
            "alert may not {action} its state"
        );
    }
    assert!(grants(f, "s3:ListBucket", &format!("{bucket}.Arn")));
    assert!(grants(f, "cloudwatch:GetMetricData", "*"));
    assert!(
        grants(f, "cloudwatch:ListMetrics", "*"),
        "`*` dimensions list series"
    );
    let topic = var(f, vigil_alert::env::TOPIC_ARN).as_str().expect("topic");
    assert_can_publish(f, topic, "alert");
    // Routes may name the topics of AlertRouteTopicArns: the function is told which, and may
    // publish to them.
    assert_eq!(
        var(f, vigil_alert::env::ALLOWED_TOPIC_ARNS),
        &serde_json::json!([",", "AlertRouteTopicArns"])
    );
    assert!(
        grants(f, "sns:Publish", "AlertRouteTopicArns"),
        "alert may not publish to the route topics"
    );
    // The topic and bucket are encrypted with the stack's key, which it may use.
    assert!(grants(f, "kms:GenerateDataKey", "VigilKey.Arn"));
    assert!(grants(f, "kms:Decrypt", "VigilKey.Arn"));
}

/// Set-aside notifications page the operators: the alarm watches the metric the outbox writes.
#[test]
fn undeliverable_notifications_alarm_the_ops_topic() {
    let t = template();
    let alarm = props(&t, "AlertUndeliverableAlarm");
    assert_eq!(alarm["Namespace"], "Vigil");
    assert_eq!(alarm["MetricName"], vigil_alert::outbox::SET_ASIDE_METRIC);
    assert_eq!(
        alarm["Dimensions"],
        serde_json::json!([{"Name": "Function", "Value": "alert"}])
    );
    assert_eq!(alarm["AlarmActions"], serde_json::json!(["OpsTopic"]));
}

#[test]
fn backup_verify_is_built_triggered_configured_and_granted() {
    let t = template();
    assert_build(
        &t,
        "BackupVerifyFunction",
        "functions/backup-verify",
        "backup-verify",
    );
    let f = resource(&t, "BackupVerifyFunction");
    assert_environment(
        f,
        vigil_backup_verify::env::REQUIRED,
        vigil_backup_verify::env::OPTIONAL,
        "backup-verify",
    );
    let verify = &f["Properties"]["Events"]["Verify"];
    assert_eq!(verify["Type"], "ScheduleV2");
    assert_eq!(verify["Properties"]["OmitName"], true);
    assert_retried_with_dead_letters(verify, "backup-verify schedule");
    assert_scheduler_input(verify, "scheduler-backup-verify.json");
    assert_eq!(
        f["Properties"]["ReservedConcurrentExecutions"][1], 1,
        "backup-verify runs one at a time"
    );

    let sets = var(f, vigil_backup_verify::env::BACKUP_SETS)
        .as_str()
        .expect("sets");
    assert_can_read(f, sets, "backup-verify");
    let bucket = var(f, vigil_backup_verify::env::REPORT_BUCKET)
        .as_str()
        .expect("bucket");
    let prefix = var(f, vigil_backup_verify::env::REPORT_PREFIX)
        .as_str()
        .expect("prefix");
    assert!(
        grants(f, "s3:PutObject", &format!("${{{bucket}.Arn}}/{prefix}*")),
        "backup-verify may not write its reports"
    );
    let state = var(f, vigil_backup_verify::env::STATE_KEY)
        .as_str()
        .expect("state key");
    for action in ["s3:GetObject", "s3:PutObject"] {
        assert!(
            grants(f, action, &format!("${{{bucket}.Arn}}/{state}")),
            "backup-verify may not {action} its state"
        );
    }
    // A missing state object (the first run) is NoSuchKey only with ListBucket; without it S3
    // answers AccessDenied and the first run, and every one after it, fails.
    assert!(
        grants(f, "s3:ListBucket", &format!("{bucket}.Arn")),
        "backup-verify cannot tell a missing state from a denied one"
    );
    let topic = var(f, vigil_backup_verify::env::TOPIC_ARN)
        .as_str()
        .expect("topic");
    assert_can_publish(f, topic, "backup-verify");
    // The backup bucket: listed, read, checksums asked, protections checked.
    let backups = "arn:${AWS::Partition}:s3:::${BackupBucketName}";
    for action in [
        "s3:ListBucket",
        "s3:GetBucketVersioning",
        "s3:GetEncryptionConfiguration",
    ] {
        assert!(grants(f, action, backups), "backup bucket: {action}");
    }
    for action in [
        "s3:GetObject",
        "s3:GetObjectAttributes",
        "s3:GetObjectRetention",
    ] {
        assert!(
            grants(f, action, &format!("{backups}/*")),
            "backup objects: {action}"
        );
    }
    // Reports under the prefix expire.
    let rules = &props(&t, "VigilBucket")["LifecycleConfiguration"]["Rules"];
    assert!(
        rules
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["Prefix"] == "reports/" && r["Status"] == "Enabled"),
        "old reports expire"
    );
    assert!(prefix.starts_with("reports/"));
}

fn alarms(t: &Value) -> Vec<(&str, &Value)> {
    t["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(n, r)| (n.as_str(), &r["Properties"]))
        .collect()
}

#[test]
fn every_function_has_error_and_throttle_alarms_and_the_queue_one() {
    let t = template();
    let alarms = alarms(&t);
    for function in ["IngestFunction", "AlertFunction", "BackupVerifyFunction"] {
        for metric in ["Errors", "Throttles"] {
            assert!(
                alarms.iter().any(|(_, a)| a["Namespace"] == "AWS/Lambda"
                    && a["MetricName"] == metric
                    && a["Dimensions"][0]["Value"] == function),
                "no {metric} alarm for {function}"
            );
        }
    }
    assert!(alarms.iter().any(|(_, a)| a["Namespace"] == "AWS/SQS"
        && a["Dimensions"][0]["Value"] == "FailedEventsQueue.QueueName"));
    for (name, a) in &alarms {
        // A deploy alarm (tests/tests/deploy.rs) is CodeDeploy's: one failure in a minute
        // rolls a deployment back, and would be noise on the ops topic.
        let expected = if name.ends_with("DeployAlarm") {
            Value::Null
        } else {
            serde_json::json!(["OpsTopic"])
        };
        assert_eq!(a["AlarmActions"], expected, "{name}: its actions");
        assert!(
            a["AlarmDescription"].as_str().is_some_and(|d| d.len() > 40),
            "{name} says what to do"
        );
    }
}

/// The heartbeat alarm watches the metric the alert function really writes after a run.
#[test]
fn the_heartbeat_alarm_watches_what_a_completed_run_writes() {
    let t = template();
    let at: DateTime<Utc> = "2026-11-25T08:00:00Z".parse().expect("time");
    let summary = vigil_alert::RunSummary {
        evaluated_at: at,
        ..Default::default()
    };
    let line: Value =
        serde_json::from_str(&vigil_alert::heartbeat_line(&summary, at)).expect("EMF line");
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    let alarm = props(&t, "AlertHeartbeatAlarm");
    assert_eq!(alarm["Namespace"], directive["Namespace"]);
    assert_eq!(alarm["MetricName"], directive["Metrics"][0]["Name"]);
    let dimensions = directive["Dimensions"][0].as_array().expect("dimensions");
    let alarm_dims = alarm["Dimensions"].as_array().expect("alarm dimensions");
    assert_eq!(alarm_dims.len(), dimensions.len());
    for d in alarm_dims {
        let name = d["Name"].as_str().expect("name");
        assert!(dimensions.iter().any(|x| x == name));
        assert_eq!(line[name], d["Value"], "dimension {name}");
    }
    // Silence is the failure it exists for.
    assert_eq!(alarm["TreatMissingData"], "breaching");
    assert_eq!(alarm["ComparisonOperator"], "LessThanThreshold");
}

/// Every metric the dashboard charts is one a function writes.
#[test]
fn the_dashboard_charts_metrics_the_functions_write() {
    let t = template();
    let body = &props(&t, "Dashboard")["DashboardBody"];
    let text = body[0].as_str().expect("dashboard body");
    let sources: String = [
        "functions/ingest/src",
        "functions/alert/src",
        "functions/backup-verify/src",
    ]
    .iter()
    .flat_map(|dir| std::fs::read_dir(root().join(dir)).expect("source folder"))
    .filter_map(|entry| entry.ok().map(|e| e.path()))
    .filter(|p| p.extension().is_some_and(|e| e == "rs"))
    .map(|p| std::fs::read_to_string(p).expect("source"))
    .collect();
    let mut charted = 0;
    for name in [
        "SamplesStored",
        "SamplesRejected",
        "Notifications",
        "Heartbeat",
        "MetricsRequested",
        "NewestBackupAge",
        "ChecksFailed",
        "ChecksError",
    ] {
        assert!(text.contains(name), "the dashboard does not chart {name}");
        assert!(
            sources.contains(&format!("\"{name}\"")),
            "no function writes {name}"
        );
        charted += 1;
    }
    assert_eq!(charted, 8);
    // The widgets are valid JSON once the substitutions are made.
    let filled = text
        .replace("${AWS::Region}", "us-east-1")
        .replace("${Ingest}", "i")
        .replace("${Alert}", "a")
        .replace("${Backup}", "b")
        .replace("${Queue}", "q");
    let filled = regex_free_arns(&filled);
    let widgets: Value = serde_json::from_str(&filled).expect("dashboard JSON");
    assert!(widgets["widgets"].as_array().is_some_and(|w| w.len() >= 6));
}

/// `${SomeAlarm.Arn}` → `arn`, without a regex dependency.
fn regex_free_arns(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        out.push_str("arn");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Encryption and the TLS-only rule on the stack's data.
#[test]
fn data_at_rest_is_encrypted_and_in_transit_is_tls() {
    let t = template();
    for topic in ["AlertTopic", "OpsTopic"] {
        assert_eq!(props(&t, topic)["KmsMasterKeyId"], "VigilKey", "{topic}");
    }
    let bucket = props(&t, "VigilBucket");
    assert_eq!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "aws:kms"
    );
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(bucket["PublicAccessBlockConfiguration"][flag], true);
    }
    let policy = &props(&t, "VigilBucketPolicy")["PolicyDocument"]["Statement"];
    assert!(
        policy.as_array().expect("statements").iter().any(
            |s| s["Effect"] == "Deny" && s["Condition"]["Bool"]["aws:SecureTransport"] == false
        ),
        "the bucket refuses plain HTTP"
    );
    assert_eq!(props(&t, "VigilKey")["EnableKeyRotation"], true);
}

/// The local stack (`tests/src/stack.rs`, what the smoke test and `vigil-startup` run) gives
/// each function the variables the template gives it, no more and no fewer.
#[test]
fn the_local_stack_sets_what_the_template_sets() {
    let t = template();
    let resources = vigil_e2e::stack::Resources {
        bucket: "b".into(),
        alert_topic: "arn:alerts".into(),
        smoke_topic: "arn:smoke".into(),
        namespace: "Service".into(),
    };
    for (logical, function) in [
        ("IngestFunction", "ingest"),
        ("AlertFunction", "alert"),
        ("BackupVerifyFunction", "backup-verify"),
    ] {
        let local: BTreeSet<String> = vigil_e2e::stack::environment(function, &resources)
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .chain(
                vigil_e2e::stack::OPTIONAL_IN_TEMPLATE
                    .iter()
                    .map(|k| (*k).to_owned())
                    .filter(|k| environment(resource(&t, logical)).contains(k)),
            )
            .collect();
        assert_eq!(local, environment(resource(&t, logical)), "{function}");
    }
}

/// A smoke run reads its own files under smoke/, keeps its state there, notifies the smoke
/// topic and nothing else of the stack's, and the smoke test finds what it needs in the outputs.
#[test]
fn smoke_runs_are_configured_granted_and_apart() {
    let t = template();
    let alert = resource(&t, "AlertFunction");
    let backup = resource(&t, "BackupVerifyFunction");
    assert_eq!(
        var(alert, "VIGIL_SMOKE_RULES"),
        "s3://${VigilBucket}/smoke/config/rules.yaml"
    );
    assert_eq!(
        var(backup, "VIGIL_SMOKE_BACKUP_SETS"),
        "s3://${VigilBucket}/smoke/config/backup-sets.yaml"
    );
    for (f, name) in [(alert, "alert"), (backup, "backup-verify")] {
        assert_eq!(var(f, "VIGIL_SMOKE_TOPIC_ARN"), "SmokeTopic", "{name}");
        assert_can_publish(f, "SmokeTopic", name);
    }
    let bucket = "${VigilBucket.Arn}";
    for (f, action, key) in [
        (alert, "s3:GetObject", "smoke/config/rules.yaml"),
        (alert, "s3:PutObject", "smoke/state/alert.json"),
        (backup, "s3:GetObject", "smoke/config/backup-sets.yaml"),
        (backup, "s3:PutObject", "smoke/reports/backup-verify/*"),
        (backup, "s3:PutObject", "smoke/state/backup-verify.json"),
        (backup, "s3:GetObjectAttributes", "smoke/backups/*"),
    ] {
        assert!(
            grants(f, action, &format!("{bucket}/{key}")),
            "{action} on {key}"
        );
    }
    assert_eq!(
        vigil_alert::config::SMOKE_STATE_KEY,
        "smoke/state/alert.json"
    );
    assert_eq!(
        vigil_backup_verify::config::SMOKE_STATE_KEY,
        "smoke/state/backup-verify.json"
    );
    assert!(
        vigil_backup_verify::config::SMOKE_REPORT_PREFIX
            .starts_with("smoke/reports/backup-verify/")
    );
    for output in [
        "IngestFunctionUrl",
        "AlertFunctionArn",
        "BackupVerifyFunctionArn",
        "SmokeTopicArn",
        "VigilBucketName",
    ] {
        assert!(t["Outputs"][output].is_object(), "no output {output}");
    }
}

/// The MetricMath parameter offers exactly the modes alert reads, defaults to CloudWatch's own
/// evaluation, and reaches the function as VIGIL_METRIC_MATH.
#[test]
fn the_metric_math_parameter_is_what_alert_reads() {
    use vigil_shared::math::MathMode;
    let t = template();
    let p = &t["Parameters"]["MetricMath"];
    let allowed: Vec<&str> = p["AllowedValues"]
        .as_array()
        .expect("AllowedValues")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let modes: Vec<MathMode> = allowed
        .iter()
        .map(|v| MathMode::parse(v).expect("alert reads it"))
        .collect();
    assert_eq!(modes, [MathMode::CloudWatch, MathMode::Local]);
    assert_eq!(
        MathMode::parse(p["Default"].as_str().expect("Default")).ok(),
        Some(MathMode::CloudWatch)
    );
    let env = &resource(&t, "AlertFunction")["Properties"]["Environment"]["Variables"];
    // `!Ref MetricMath` reads as its argument.
    assert_eq!(env["VIGIL_METRIC_MATH"], "MetricMath", "{env}");
}
