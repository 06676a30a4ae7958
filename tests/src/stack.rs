//! Vigil's stack on this machine: the three real bootstraps with the environment
//! `template.yaml` gives them, a bucket and topics in the local AWS emulator, ingest behind a
//! local Function URL, and all three behind a local `Invoke` API. Its outputs carry the names
//! of the deployed stack's outputs, so that the smoke test (`scripts/smoke`) reads either.

use serde_json::{Value, json};

use crate::aws::LocalAws;
use crate::lambda_api::LambdaApi;
use crate::runtime::{Function, binary};
use crate::url::FunctionUrl;

/// The account the emulator answers for.
const ACCOUNT: &str = "000000000000";

/// The names a stack's resources got: what `!Ref` and `!Sub` resolve to in the template.
#[derive(Clone, Debug)]
pub struct Resources {
    pub bucket: String,
    pub alert_topic: String,
    pub smoke_topic: String,
    pub namespace: String,
}

/// The environment `template.yaml` sets for `function` (`ingest`, `alert`, `backup-verify`),
/// resolved with `resources`; optional settings left unset where the template leaves them out
/// by default (ingest's config file, alert's route topics). A test holds the names to the
/// template's.
pub fn environment(function: &str, r: &Resources) -> Vec<(&'static str, String)> {
    let b = &r.bucket;
    match function {
        "ingest" => vec![("VIGIL_NAMESPACE", r.namespace.clone())],
        "alert" => vec![
            ("VIGIL_RULES", format!("s3://{b}/config/rules.yaml")),
            ("VIGIL_ALERT_TOPIC_ARN", r.alert_topic.clone()),
            ("VIGIL_STATE_BUCKET", b.clone()),
            ("VIGIL_STATE_KEY", "state/alert.json".into()),
            ("VIGIL_SILENCES", format!("s3://{b}/config/silences.json")),
            ("VIGIL_ALLOWED_TOPIC_ARNS", String::new()),
            // LocalStack evaluates no metric math: the function does (the MetricMath parameter).
            ("VIGIL_METRIC_MATH", "local".into()),
            ("VIGIL_REVIEW_PREFIX", "reviews/alert/".into()),
            (
                "VIGIL_SMOKE_RULES",
                format!("s3://{b}/smoke/config/rules.yaml"),
            ),
            ("VIGIL_SMOKE_TOPIC_ARN", r.smoke_topic.clone()),
        ],
        "backup-verify" => vec![
            (
                "VIGIL_BACKUP_SETS",
                format!("s3://{b}/config/backup-sets.yaml"),
            ),
            ("VIGIL_REPORT_BUCKET", b.clone()),
            ("VIGIL_REPORT_PREFIX", "reports/backup-verify/".into()),
            ("VIGIL_BACKUP_TOPIC_ARN", r.alert_topic.clone()),
            ("VIGIL_BACKUP_STATE_KEY", "state/backup-verify.json".into()),
            (
                "VIGIL_SMOKE_BACKUP_SETS",
                format!("s3://{b}/smoke/config/backup-sets.yaml"),
            ),
            ("VIGIL_SMOKE_TOPIC_ARN", r.smoke_topic.clone()),
        ],
        other => panic!("no function {other} in the stack"),
    }
}

/// The settings the template gives only when a parameter asks for them.
pub const OPTIONAL_IN_TEMPLATE: &[&str] = &["VIGIL_INGEST_CONFIG"];

/// A running local stack. Dropping it stops the functions.
pub struct Stack {
    pub resources: Resources,
    pub outputs: Value,
    _url: FunctionUrl,
    _api: LambdaApi,
}

impl Stack {
    /// Creates the stack's bucket (versioned, encrypted by default with a KMS key, as the
    /// template's) and topics in the emulator and starts the three functions.
    pub async fn start(aws: &LocalAws) -> Stack {
        Stack::start_with(aws, |_, _| {}).await
    }

    /// [`Stack::start`], with `tweak` changing a function's environment first (a test's
    /// broken stack).
    pub async fn start_with(
        aws: &LocalAws,
        tweak: impl Fn(&str, &mut Vec<(&'static str, String)>),
    ) -> Stack {
        let bucket = aws.create_bucket("vigil-stack").await;
        aws.s3
            .put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("PutBucketVersioning");
        let key = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/vigil-stack-local");
        aws.s3
            .put_bucket_encryption()
            .bucket(&bucket)
            .server_side_encryption_configuration(
                aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                    .rules(
                        aws_sdk_s3::types::ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                                    .kms_master_key_id(&key)
                                    .build()
                                    .expect("encryption default"),
                            )
                            .bucket_key_enabled(true)
                            .build(),
                    )
                    .build()
                    .expect("encryption configuration"),
            )
            .send()
            .await
            .expect("PutBucketEncryption");
        let resources = Resources {
            bucket,
            alert_topic: aws.create_topic("vigil-stack-alerts").await,
            smoke_topic: aws.create_topic("vigil-stack-smoke").await,
            namespace: "Service".into(),
        };
        let mut functions = Vec::new();
        let mut ingest_url = None;
        for name in ["ingest", "alert", "backup-verify"] {
            let mut env = vec![("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.clone())];
            env.extend(environment(name, &resources));
            tweak(name, &mut env);
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if name == "ingest" {
                // The Function URL has its own execution environment, as it would on Lambda
                // when the smoke test's pushes land beside an invocation by name.
                let url_env = env.clone();
                ingest_url = Some(
                    FunctionUrl::serve(Function::start(name, &binary(name), &url_env).await).await,
                );
            }
            functions.push((
                name.to_owned(),
                Function::start(name, &binary(name), &env).await,
            ));
        }
        let url = ingest_url.expect("ingest's Function URL");
        let api = LambdaApi::serve(functions).await;
        let arn = |name: &str| format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}:live");
        let outputs = json!({
            "IngestFunctionUrl": url.url("/"),
            "IngestFunctionArn": arn("ingest"),
            "AlertFunctionArn": arn("alert"),
            "BackupVerifyFunctionArn": arn("backup-verify"),
            "AlertTopicArn": resources.alert_topic,
            "SmokeTopicArn": resources.smoke_topic,
            "VigilBucketName": resources.bucket,
            // Not an output of the deployed stack: where this one's Invoke API listens.
            "LambdaEndpoint": api.endpoint(),
        });
        Stack {
            resources,
            outputs,
            _url: url,
            _api: api,
        }
    }
}
