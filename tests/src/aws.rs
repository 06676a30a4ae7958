//! The local AWS emulator from the tests' side: its endpoint, SDK clients pointed at it, and
//! helpers that create uniquely named resources and read back what the functions wrote.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_cloudwatch::primitives::DateTime as CwDateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The workspace root (the directory holding `scripts/local-aws`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The emulator's endpoint: `VIGIL_AWS_ENDPOINT_URL`, else the one `scripts/local-aws start`
/// recorded. Panics with what to run when neither exists.
pub fn endpoint() -> String {
    if let Ok(ep) = std::env::var(vigil_shared::aws::ENDPOINT_ENV) {
        if !ep.is_empty() {
            return ep;
        }
    }
    let state = std::env::var("VIGIL_LOCAL_AWS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".local-aws"));
    match std::fs::read_to_string(state.join("endpoint")) {
        Ok(ep) => ep.trim().to_owned(),
        Err(_) => panic!(
            "no local AWS emulator: run scripts/test, or start one with scripts/local-aws start"
        ),
    }
}

/// The local emulator, with SDK clients pointed at it.
#[derive(Clone, Debug)]
pub struct LocalAws {
    pub endpoint: String,
    pub conf: SdkConfig,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ssm: aws_sdk_ssm::Client,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, lower-case (valid for buckets, topics, queues).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_millis() % 1_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl LocalAws {
    pub async fn connect() -> LocalAws {
        let endpoint = endpoint();
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region("us-east-1")
            .test_credentials()
            .load()
            .await;
        LocalAws {
            cloudwatch: aws_sdk_cloudwatch::Client::new(&conf),
            s3: vigil_shared::aws::s3_client(&conf),
            sns: aws_sdk_sns::Client::new(&conf),
            sqs: aws_sdk_sqs::Client::new(&conf),
            ssm: aws_sdk_ssm::Client::new(&conf),
            endpoint,
            conf,
        }
    }

    pub async fn create_bucket(&self, prefix: &str) -> String {
        let bucket = unique(prefix);
        self.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        bucket
    }

    pub async fn put_object(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .expect("PutObject");
    }

    pub async fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObject s3://{bucket}/{key}: {e:?}"));
        out.body
            .collect()
            .await
            .expect("object body")
            .into_bytes()
            .to_vec()
    }

    /// A topic with an SQS queue subscribed to it (SNS envelope delivery, as most subscribers
    /// see it). Returns (topic ARN, queue URL).
    pub async fn topic_with_queue(&self, prefix: &str) -> (String, String) {
        let topic = self.create_topic(prefix).await;
        let queue = self.subscribed_queue(&topic).await;
        (topic, queue)
    }

    /// A new SNS topic with a unique name from `prefix`, no subscriber; returns its ARN.
    pub async fn create_topic(&self, prefix: &str) -> String {
        self.sns
            .create_topic()
            .name(unique(prefix))
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn
            .expect("topic ARN")
    }

    /// A new SQS queue subscribed to `topic`; returns its URL.
    pub async fn subscribed_queue(&self, topic: &str) -> String {
        let queue_url = self
            .sqs
            .create_queue()
            .queue_name(unique("vigil-queue"))
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("queue URL");
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes");
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("queue ARN")
            .clone();
        self.sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .expect("Subscribe");
        queue_url
    }

    /// Receives SNS envelopes from `queue_url` until `expected` arrived or `wait` passed, then
    /// keeps listening one more second so that extra messages are caught too.
    pub async fn receive_sns(
        &self,
        queue_url: &str,
        expected: usize,
        wait: Duration,
    ) -> Vec<Value> {
        let mut messages = Vec::new();
        let until = tokio::time::Instant::now() + wait;
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= until || grace.is_some_and(|g| now >= g) {
                return messages;
            }
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("ReceiveMessage");
            for m in out.messages() {
                let body: Value =
                    serde_json::from_str(m.body().unwrap_or("{}")).expect("SNS envelope JSON");
                messages.push(body);
                if let Some(handle) = m.receipt_handle() {
                    let _ = self
                        .sqs
                        .delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
            if messages.len() >= expected && grace.is_none() {
                grace = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// One-minute points of a statistic within five minutes either side of `at`.
    pub async fn points_near(
        &self,
        namespace: &str,
        name: &str,
        dimensions: &[(&str, &str)],
        stat: &str,
        at: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, f64)> {
        let five = chrono::Duration::minutes(5);
        self.metric_points(namespace, name, dimensions, stat, 60, at - five, at + five)
            .await
    }

    /// The data points of one metric statistic between `start` and `end`, oldest first.
    #[allow(clippy::too_many_arguments)]
    pub async fn metric_points(
        &self,
        namespace: &str,
        name: &str,
        dimensions: &[(&str, &str)],
        stat: &str,
        period: i32,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, f64)> {
        let metric = Metric::builder()
            .namespace(namespace)
            .metric_name(name)
            .set_dimensions(Some(
                dimensions
                    .iter()
                    .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                    .collect(),
            ))
            .build();
        let query = MetricDataQuery::builder()
            .id("q")
            .metric_stat(
                MetricStat::builder()
                    .metric(metric)
                    .period(period)
                    .stat(stat)
                    .build(),
            )
            .build();
        let out = self
            .cloudwatch
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(CwDateTime::from_millis(start.timestamp_millis()))
            .end_time(CwDateTime::from_millis(end.timestamp_millis()))
            .send()
            .await
            .expect("GetMetricData");
        let mut points: Vec<(DateTime<Utc>, f64)> = out
            .metric_data_results()
            .iter()
            .flat_map(|r| r.timestamps().iter().zip(r.values()))
            .filter_map(|(t, v)| {
                DateTime::from_timestamp_millis(t.to_millis().ok()?).map(|t| (t, *v))
            })
            .collect();
        points.sort_by_key(|(t, _)| *t);
        points
    }
}
