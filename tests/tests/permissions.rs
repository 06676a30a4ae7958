//! Least privilege, measured: each real function binary runs with the environment its
//! template gives it (resolved against a stack of the emulator's buckets and topic), on the
//! sample events, with the call log on (`shared/src/call_log.rs`). Every AWS call it made is
//! then held to its IAM role as CloudFormation receives it (`scripts/sam-transform`: SAM's
//! policy templates expanded as SAM expands them). A call the role does not allow fails the
//! test: the emulator never denies, AWS would. A statement no call exercised is reported.
//!
//! What is not checked: KMS (S3 calls KMS on the function's behalf with its role, which the
//! call log cannot see) and statement conditions (PutMetricData's namespace condition is held
//! by ingest's own refusal, tested elsewhere).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Utc;
use serde_json::{Value, json};
use vigil_e2e::{
    Function, LocalAws, backup_verify_event, binary, json_push_event,
    sam_transformed as transformed, sample_config, sample_event, sample_push, scheduled_event,
    smoke_event, stamp_logs, stamp_push, stamp_remote_write, unique, whole_minute_ago,
    workspace_root,
};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "000000000000";

/// The stack's resources as the emulator holds them, for resolving the template's intrinsics.
struct Stack {
    bucket: String,
    topic: String,
    smoke_topic: String,
    backups: String,
    replicas: String,
}

impl Stack {
    fn reference(&self, name: &str) -> Value {
        match name {
            "VigilBucket" => json!(self.bucket),
            "AlertTopic" => json!(self.topic),
            "SmokeTopic" => json!(self.smoke_topic),
            "BackupBucketName" => json!(self.backups),
            "ReplicaBucketName" => json!(self.replicas),
            "AlertRouteTopicArns" => json!([]),
            "Namespace" => json!("Service"),
            // LocalStack evaluates no metric math: the function does, from plain statistics.
            "MetricMath" => json!("local"),
            "AWS::Partition" => json!("aws"),
            "AWS::Region" => json!(REGION),
            "AWS::AccountId" => json!(ACCOUNT),
            "AWS::NoValue" => Value::Null,
            other => json!(format!("<{other}>")),
        }
    }

    fn attribute(&self, name: &str, attribute: &str) -> Value {
        match (name, attribute) {
            ("VigilBucket", "Arn") => json!(format!("arn:aws:s3:::{}", self.bucket)),
            ("AlertTopic", "TopicName") => {
                json!(self.topic.rsplit(':').next().unwrap_or_default())
            }
            ("SmokeTopic", "TopicName") => {
                json!(self.smoke_topic.rsplit(':').next().unwrap_or_default())
            }
            _ => json!(format!("arn:aws:<{name}.{attribute}>")),
        }
    }

    /// Resolves `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join` and `Fn::If` (every condition
    /// holds: the stack has its backup buckets and its ingest config).
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::Object(map) if map.len() == 1 => {
                let (k, arg) = map.iter().next().expect("one key");
                match k.as_str() {
                    "Ref" => self.reference(arg.as_str().unwrap_or_default()),
                    "Fn::GetAtt" => self.attribute(
                        arg[0].as_str().unwrap_or_default(),
                        arg[1].as_str().unwrap_or_default(),
                    ),
                    "Fn::If" => self.resolve(&arg[1]),
                    "Fn::Join" => {
                        let parts = self.resolve(&arg[1]);
                        let parts: Vec<String> = parts
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p.as_str().map(str::to_owned))
                            .collect();
                        json!(parts.join(arg[0].as_str().unwrap_or_default()))
                    }
                    "Fn::Sub" => {
                        let (text, vars) = match arg {
                            Value::String(s) => (s.as_str(), None),
                            Value::Array(a) => (a[0].as_str().unwrap_or_default(), a.get(1)),
                            _ => ("", None),
                        };
                        json!(self.substitute(text, vars))
                    }
                    _ => Value::Object(
                        map.iter()
                            .map(|(k, v)| (k.clone(), self.resolve(v)))
                            .collect(),
                    ),
                }
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .filter(|(_, v)| !v.is_null())
                    .collect(),
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.resolve(i))
                    .filter(|v| !v.is_null())
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn substitute(&self, text: &str, vars: Option<&Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closing brace") + start;
            let name = &rest[start + 2..end];
            let value = match vars.and_then(|v| v.get(name)) {
                Some(v) => self.resolve(v),
                None => match name.split_once('.') {
                    Some((resource, attribute)) => self.attribute(resource, attribute),
                    None => self.reference(name),
                },
            };
            out.push_str(value.as_str().unwrap_or_default());
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// One statement of a role: what it allows, on what.
#[derive(Debug)]
struct Grant {
    actions: Vec<String>,
    resources: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    }
}

/// The Allow statements of a function's role.
fn grants(t: &Value, stack: &Stack, function: &str) -> Vec<Grant> {
    let role = &t["Resources"][format!("{function}Role")]["Properties"];
    let mut out = Vec::new();
    for policy in stack
        .resolve(&role["Policies"])
        .as_array()
        .expect("Policies")
    {
        for s in policy["PolicyDocument"]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if s["Effect"] == "Allow" {
                out.push(Grant {
                    actions: strings(&s["Action"]),
                    resources: strings(&s["Resource"]),
                });
            }
        }
    }
    out
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
fn matches(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The IAM action and resource of one logged call.
fn authorization(call: &Value) -> (String, String) {
    let service = call["service"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let operation = call["operation"].as_str().unwrap_or_default();
    let uri = call["uri"].as_str().unwrap_or_default();
    match service.as_str() {
        "s3" => {
            let path = uri
                .split_once("://")
                .map_or(uri, |(_, r)| r)
                .split_once('/')
                .map_or("", |(_, p)| p);
            let path = path.split('?').next().unwrap_or_default();
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            let action = match operation {
                "GetObject" | "HeadObject" => "s3:GetObject",
                "PutObject" => "s3:PutObject",
                "ListObjectsV2" | "ListObjects" => "s3:ListBucket",
                "GetObjectAttributes" => "s3:GetObjectAttributes",
                "GetObjectRetention" => "s3:GetObjectRetention",
                "GetBucketVersioning" => "s3:GetBucketVersioning",
                "GetBucketEncryption" => "s3:GetEncryptionConfiguration",
                other => panic!("S3 {other}: no IAM action mapped; add it"),
            };
            let resource = if key.is_empty() {
                format!("arn:aws:s3:::{bucket}")
            } else {
                format!("arn:aws:s3:::{bucket}/{}", url_decode(key))
            };
            (action.to_owned(), resource)
        }
        "sns" => {
            let form = call["form"].as_str().unwrap_or_default();
            let topic = form
                .split('&')
                .find_map(|kv| kv.strip_prefix("TopicArn="))
                .map(url_decode)
                .unwrap_or_default();
            let action = match operation {
                "Publish" | "PublishBatch" => "sns:Publish",
                other => panic!("SNS {other}: no IAM action mapped; add it"),
            };
            (action.to_owned(), topic)
        }
        "cloudwatch" => (format!("cloudwatch:{operation}"), "*".to_owned()),
        "ssm" => {
            let name = call["name"].as_str().unwrap_or_default();
            let action = match operation {
                "GetParameter" => "ssm:GetParameter",
                other => panic!("SSM {other}: no IAM action mapped; add it"),
            };
            // A parameter's ARN: `parameter` then its name, which starts with `/`.
            let resource = if name.starts_with("arn:") {
                name.to_owned()
            } else {
                format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}")
            };
            (action.to_owned(), resource)
        }
        other => panic!("{other} {operation}: no IAM mapping; add it"),
    }
}

/// Runs `function` with its template environment and the call log on, feeds it `events`
/// (each must succeed), and returns the calls it logged.
async fn calls_of(
    t: &Value,
    stack: &Stack,
    aws: &LocalAws,
    logical: &str,
    binary_name: &str,
    events: &[Value],
) -> Vec<Value> {
    let log = std::env::temp_dir().join(unique(&format!("vigil-calls-{binary_name}")));
    let variables =
        stack.resolve(&t["Resources"][logical]["Properties"]["Environment"]["Variables"]);
    let mut env: Vec<(String, String)> = variables
        .as_object()
        .expect("variables")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    env.push(("VIGIL_AWS_ENDPOINT_URL".into(), aws.endpoint.clone()));
    env.push((
        vigil_shared::call_log::CALL_LOG_ENV.into(),
        log.display().to_string(),
    ));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut function = Function::start(binary_name, &binary(binary_name), &pairs).await;
    for event in events {
        // Each invocation must succeed: a failed one would have made fewer calls.
        let _ = function.invoke(event).await.expect_response();
    }
    drop(function);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    text.lines()
        .map(|l| serde_json::from_str(l).expect("call log line"))
        .collect()
}

/// Holds `calls` to `grants`; returns the statements' (action, resource) pairs no call used.
fn check(function: &str, calls: &[Value], grants: &[Grant]) -> Vec<String> {
    assert!(!calls.is_empty(), "{function} made no AWS call");
    let mut used: BTreeMap<(usize, usize, usize), bool> = BTreeMap::new();
    let mut denied = Vec::new();
    for call in calls {
        let (action, resource) = authorization(call);
        let mut allowed = false;
        for (g, grant) in grants.iter().enumerate() {
            for (a, act) in grant.actions.iter().enumerate() {
                for (r, res) in grant.resources.iter().enumerate() {
                    if matches(act, &action) && matches(res, &resource) {
                        allowed = true;
                        used.insert((g, a, r), true);
                    }
                }
            }
        }
        if !allowed {
            denied.push(format!("{action} on {resource}"));
        }
    }
    denied.sort();
    denied.dedup();
    assert!(
        denied.is_empty(),
        "{function}'s role does not allow what it calls:\n  {}",
        denied.join("\n  ")
    );
    let mut unused = Vec::new();
    for (g, grant) in grants.iter().enumerate() {
        for (a, act) in grant.actions.iter().enumerate() {
            for (r, res) in grant.resources.iter().enumerate() {
                if !used.contains_key(&(g, a, r)) {
                    unused.push(format!("{act} on {res}"));
                }
            }
        }
    }
    unused
}

#[tokio::test]
async fn every_call_of_every_function_is_allowed_by_its_role() {
    let aws = LocalAws::connect().await;
    let (topic, _queue) = aws.topic_with_queue("vigil-perms").await;
    let stack = Stack {
        bucket: aws.create_bucket("vigil-perms").await,
        topic,
        smoke_topic: aws.create_topic("vigil-perms-smoke").await,
        backups: aws.create_bucket("vigil-perms-backups").await,
        replicas: aws.create_bucket("vigil-perms-replicas").await,
    };
    let t = transformed();
    let at = whole_minute_ago(1);
    let namespace = unique("E2E/Perms");

    // ingest: a JSON push, a remote-write request and a log batch, with the config in S3.
    aws.put_object(
        &stack.bucket,
        "config/ingest.yaml",
        sample_config("ingest.example.yaml").replace("Shop/Checkout", &namespace),
    )
    .await;
    let mut push = sample_push();
    push["namespace"] = json!(namespace);
    stamp_push(&mut push, at);
    let mut rw = sample_event("function-url-remote-write.json");
    stamp_remote_write(&mut rw, at);
    let mut logs = sample_event("cloudwatch-logs-subscription.json");
    stamp_logs(&mut logs, at, Some(&namespace));
    let ingest = calls_of(
        &t,
        &stack,
        &aws,
        "IngestFunction",
        "ingest",
        &[json_push_event(&push), rw, logs],
    )
    .await;

    // alert: the example rules on a breaching latency, a scheduled run, then an alarm change.
    aws.put_object(
        &stack.bucket,
        "config/rules.yaml",
        sample_config("rules.example.yaml").replace("Shop/Checkout", &namespace),
    )
    .await;
    let data: Vec<_> = (1..=3)
        .map(|m| {
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("latency")
                .dimensions(
                    aws_sdk_cloudwatch::types::Dimension::builder()
                        .name("service")
                        .value("checkout")
                        .build(),
                )
                .value(400.0)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    whole_minute_ago(m).timestamp(),
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
    // The smoke test's run: its own rules (one that fires on the same latency), state and topic.
    aws.put_object(
        &stack.bucket,
        "smoke/config/rules.yaml",
        format!(
            "groups:\n  - name: vigil-smoke\n    rules:\n      - {{alert: VigilSmoke, metric: {{namespace: {namespace}, name: latency, \
             dimensions: {{service: checkout}}, stat: Maximum, period: 1m}}, condition: {{operator: \">\", threshold: 0}}, \
             evaluation_periods: 3, datapoints_to_alarm: 1}}\n"
        ),
    )
    .await;
    let alert = calls_of(
        &t,
        &stack,
        &aws,
        "AlertFunction",
        "alert",
        &[
            scheduled_event(whole_minute_ago(0)),
            sample_event("eventbridge-alarm-state-change.json"),
            smoke_event(whole_minute_ago(0)),
            sample_event("scheduler-alert-review.json"),
        ],
    )
    .await;
    // alert again, its rule routed to a receiver whose PagerDuty routing key is a SecureString
    // in Parameter Store: the read the receivers make.
    let key = "R0UT1NGK3Y000000000000000000PERM";
    let pagerduty = vigil_e2e::pagerduty::PagerDuty::start(key, 0).await;
    let parameter = format!("/vigil/receivers/{}", unique("perms"));
    aws.ssm
        .put_parameter()
        .name(&parameter)
        .value(key)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("PutParameter");
    aws.put_object(
        &stack.bucket,
        "config/rules.yaml",
        format!(
            "policy:\n  receivers: [{{name: pd, pagerduty_configs: [{{routing_key: {{ssm_parameter: {parameter}}}, url: \"{}\"}}]}}]\n  \
             routes: [{{match: {{}}, receiver: pd}}]\n\
             groups:\n  - name: g\n    rules:\n      - {{alert: PermsPage, metric: {{namespace: {namespace}, name: latency, \
             dimensions: {{service: checkout}}, stat: Maximum, period: 1m}}, condition: {{operator: \">\", threshold: 0}}, \
             evaluation_periods: 3, datapoints_to_alarm: 1}}\n",
            pagerduty.url()
        ),
    )
    .await;
    let mut alert = alert;
    alert.extend(
        calls_of(
            &t,
            &stack,
            &aws,
            "AlertFunction",
            "alert",
            &[scheduled_event(
                whole_minute_ago(0) + chrono::Duration::minutes(1),
            )],
        )
        .await,
    );
    {
        // The page of PermsPage (and the resolutions of the first run's alerts, whose rules
        // this file no longer has), each accepted.
        let pd = pagerduty.seen();
        let triggered = pd
            .events
            .iter()
            .filter(|e| e["event_action"] == "trigger" && e["payload"]["class"] == "PermsPage")
            .count();
        assert_eq!(
            (triggered, pd.refused.len()),
            (1, 0),
            "the receiver's page reached PagerDuty: {:?} {:?}",
            pd.events,
            pd.refused
        );
    }

    // backup-verify: a fresh backup with its manifest and a replica, verified on a schedule,
    // with every protection required (the buckets have none: the failures are announced).
    let sets = format!(
        "backup_sets:\n  - {{name: orders-db, bucket: {}, prefix: orders-db/, max_age: 26h, replicas: [{{bucket: {}}}],\n     \
         require: {{versioning: true, object_lock_days: 1, encryption: true}}}}\n",
        stack.backups, stack.replicas
    );
    aws.put_object(&stack.bucket, "config/backup-sets.yaml", sets)
        .await;
    let key = format!("orders-db/{}.sql.gz", Utc::now().format("%Y-%m-%d"));
    let dump = vigil_e2e::gzip(b"CREATE TABLE orders (id bigint primary key);\n");
    for b in [&stack.backups, &stack.replicas] {
        aws.put_object(
            b,
            &format!("{key}.manifest.json"),
            vigil_e2e::manifest(&key, &dump),
        )
        .await;
        aws.put_object(b, &key, dump.clone()).await;
    }
    // The smoke test's canary set, in the stack's own bucket, which has neither versioning nor
    // encryption here: its failures are announced on the smoke topic.
    let canary = "smoke/backups/canary.tar.gz";
    let archive = vigil_e2e::tar_gz(&[("canary.txt", b"canary\n".as_slice())]);
    aws.put_object(
        &stack.bucket,
        &format!("{canary}.manifest.json"),
        vigil_e2e::manifest(canary, &archive),
    )
    .await;
    aws.put_object(&stack.bucket, canary, archive).await;
    aws.put_object(
        &stack.bucket,
        "smoke/config/backup-sets.yaml",
        format!(
            "backup_sets:\n  - {{name: vigil-canary, bucket: {}, prefix: smoke/backups/, max_age: 1h, manifest: true, \
             format: tar_gz, require: {{versioning: true, encryption: sse-kms}}}}\n",
            stack.bucket
        ),
    )
    .await;
    let backup = calls_of(
        &t,
        &stack,
        &aws,
        "BackupVerifyFunction",
        "backup-verify",
        &[backup_verify_event(Utc::now()), smoke_event(Utc::now())],
    )
    .await;

    let mut report = Vec::new();
    for (function, calls) in [
        ("IngestFunction", &ingest),
        ("AlertFunction", &alert),
        ("BackupVerifyFunction", &backup),
    ] {
        let mut operations: Vec<String> = calls.iter().map(|c| authorization(c).0).collect();
        operations.sort();
        operations.dedup();
        let unused = check(function, calls, &grants(&t, &stack, function));
        report.push(format!(
            "{function}: {} calls ({}) allowed; not exercised: {}",
            calls.len(),
            operations.join(", "),
            if unused.is_empty() {
                "none".to_owned()
            } else {
                unused.join("; ")
            }
        ));
    }
    let report_path: PathBuf = workspace_root().join("target/permissions-report.txt");
    let _ = std::fs::write(&report_path, report.join("\n") + "\n");
    eprintln!("{}", report.join("\n"));
}

#[test]
fn iam_wildcards_match_as_iam_matches() {
    assert!(matches("s3:Get*", "s3:GetObject"));
    assert!(matches(
        "arn:aws:s3:::b/config/*",
        "arn:aws:s3:::b/config/rules.yaml"
    ));
    assert!(!matches(
        "arn:aws:s3:::b/config/*",
        "arn:aws:s3:::b/state/alert.json"
    ));
    assert!(matches(
        "arn:aws:s3:::b/state/?lert.json",
        "arn:aws:s3:::b/state/alert.json"
    ));
    assert!(!matches("arn:aws:s3:::b", "arn:aws:s3:::b/key"));
    assert!(matches("*", "anything"));
}
