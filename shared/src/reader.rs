//! Reading metrics back: the [`MetricReader`] trait and its CloudWatch `GetMetricData`
//! implementation, which packs many queries into each call and follows pagination.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_cloudwatch::primitives::DateTime as SdkDateTime;
use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat, ScanBy};
use chrono::{DateTime, Utc};

use crate::limits::CW_MAX_QUERIES_PER_GET;
use crate::metric::Dimension;
use crate::{Error, Result};

/// One metric statistic to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatQuery {
    /// Caller's id for the result; CloudWatch needs `^[a-z][a-zA-Z0-9_]*$`.
    pub id: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<Dimension>,
    /// `Average`, `Sum`, `Maximum`, `Minimum`, `SampleCount`, `p99`, ...
    pub stat: String,
    /// Seconds.
    pub period: u32,
}

/// The points of one query's series, oldest first.
pub type Series = Vec<(DateTime<Utc>, f64)>;

/// What the reader fetched, and how many API calls it took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    pub series: HashMap<String, Series>,
    pub calls: usize,
}

/// Reads metric statistics over a time range.
pub trait MetricReader: Send + Sync {
    fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Fetched>> + Send;
}

/// [`MetricReader`] on CloudWatch `GetMetricData`.
#[derive(Clone, Debug)]
pub struct CloudWatchReader {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchReader {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }

    /// Builds the client from the shared SDK configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_cloudwatch::Client::new(conf))
    }
}

fn to_sdk(q: &StatQuery) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(&q.namespace)
        .metric_name(&q.metric)
        .set_dimensions(Some(crate::sink::to_sdk_dimensions(&q.dimensions)))
        .build();
    MetricDataQuery::builder()
        .id(&q.id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(i32::try_from(q.period).unwrap_or(i32::MAX))
                .stat(&q.stat)
                .build(),
        )
        .return_data(true)
        .build()
}

fn to_sdk_time(t: DateTime<Utc>) -> SdkDateTime {
    SdkDateTime::from_millis(t.timestamp_millis())
}

impl MetricReader for CloudWatchReader {
    async fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Fetched> {
        let mut fetched = Fetched::default();
        for chunk in queries.chunks(CW_MAX_QUERIES_PER_GET) {
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(chunk.iter().map(to_sdk).collect()))
                    .start_time(to_sdk_time(start))
                    .end_time(to_sdk_time(end))
                    .scan_by(ScanBy::TimestampAscending)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| Error::aws("CloudWatch", "GetMetricData", e))?;
                fetched.calls += 1;
                for result in out.metric_data_results() {
                    let Some(id) = result.id() else { continue };
                    let series = fetched.series.entry(id.to_owned()).or_default();
                    for (t, v) in result.timestamps().iter().zip(result.values()) {
                        let ms = t.to_millis().map_err(|_| Error::Aws {
                            service: "CloudWatch",
                            operation: "GetMetricData",
                            message: "unreadable timestamp in the response".to_owned(),
                            retryable: false,
                        })?;
                        if let Some(t) = DateTime::from_timestamp_millis(ms) {
                            series.push((t, *v));
                        }
                    }
                }
                match out.next_token() {
                    Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                    _ => break,
                }
            }
        }
        for series in fetched.series.values_mut() {
            series.sort_by_key(|(t, _)| *t);
        }
        Ok(fetched)
    }
}
