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
    /// When set, the query returns this metric-math expression instead of the statistic; the
    /// statistic above is available in it as `m`.
    pub math: Option<Math>,
}

/// A metric-math expression over the query's own statistic (`m`) and named inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Math {
    /// For example `100 * errors / m`. Identifiers start with a lower-case letter; functions
    /// (`RATE`, `FILL`, ...) are upper-case.
    pub expression: String,
    /// Input name → statistic (same period as the query).
    pub inputs: Vec<(String, MathInput)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MathInput {
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<Dimension>,
    pub stat: String,
}

/// Rewrites the identifiers of `expression` that name inputs (`names`) to `prefix_name`, so
/// that the ids of many queries in one call stay distinct.
pub fn prefix_identifiers(expression: &str, names: &[&str], prefix: &str) -> String {
    let mut out = String::with_capacity(expression.len() + 16);
    let mut chars = expression.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            // A number, exponent and all (`1e5` names no input `e5`), kept as it is.
            out.push(c);
            while let Some(&(_, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '.' {
                    out.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expression[start..end];
            if names.contains(&word) {
                out.push_str(prefix);
                out.push('_');
            }
            out.push_str(word);
        } else {
            out.push(c);
        }
    }
    out
}

/// The points of one query's series, oldest first.
pub type Series = Vec<(DateTime<Utc>, f64)>;

/// What the reader fetched, and how many API calls it took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    pub series: HashMap<String, Series>,
    pub calls: usize,
    /// The metrics those calls asked for, each page of a paged call again: what CloudWatch
    /// bills ([`metrics_requested`]).
    pub metrics_requested: usize,
}

impl Fetched {
    /// Adds another read's series and counts to these.
    pub fn merge(&mut self, other: Fetched) {
        self.series.extend(other.series);
        self.calls += other.calls;
        self.metrics_requested += other.metrics_requested;
    }
}

/// Reads metric statistics over a time range.
pub trait MetricReader: Send + Sync {
    fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Fetched>> + Send;

    /// The dimension sets of the series of `metric` that have exactly the dimensions `fixed`
    /// (with those values) and `any` (with any value), sorted.
    fn list_series(
        &self,
        namespace: &str,
        metric: &str,
        fixed: &[Dimension],
        any: &[String],
    ) -> impl Future<Output = Result<Vec<Vec<Dimension>>>> + Send;
}

/// A reader borrowed is a reader: wrappers such as [`crate::math::LocalMath`] take one by
/// reference.
impl<T: MetricReader> MetricReader for &T {
    fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Fetched>> + Send {
        (**self).fetch(queries, start, end)
    }

    fn list_series(
        &self,
        namespace: &str,
        metric: &str,
        fixed: &[Dimension],
        any: &[String],
    ) -> impl Future<Output = Result<Vec<Vec<Dimension>>>> + Send {
        (**self).list_series(namespace, metric, fixed, any)
    }
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
        Self::new(crate::aws::cloudwatch_client(conf))
    }
}

fn stat_query(
    id: &str,
    namespace: &str,
    metric: &str,
    dimensions: &[Dimension],
    stat: &str,
    period: u32,
    return_data: bool,
) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace(namespace)
        .metric_name(metric)
        .set_dimensions(Some(crate::sink::to_sdk_dimensions(dimensions)))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(i32::try_from(period).unwrap_or(i32::MAX))
                .stat(stat)
                .build(),
        )
        .return_data(return_data)
        .build()
}

/// How many metrics `GetMetricData` is asked for to answer `queries`, the count CloudWatch
/// bills ("metrics requested", $0.01 per 1,000 in us-east-1): one per statistic, so a
/// metric-math query costs its `m` and each of its inputs, and its expression nothing.
pub fn metrics_requested(queries: &[StatQuery]) -> usize {
    queries
        .iter()
        .map(|q| 1 + q.math.as_ref().map_or(0, |m| m.inputs.len()))
        .sum()
}

/// A read's queries with each plain statistic asked once: rules that read the same series with
/// the same statistic and period over one range (a warning and a page on one metric, an
/// objective's burn-rate alerts on its two counts) share one metric requested, and every
/// query is answered from it. Metric-math queries are kept as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distinct {
    /// What to fetch.
    pub queries: Vec<StatQuery>,
    /// (the id of a query left out, the id of the one fetched in its place).
    copies: Vec<(String, String)>,
}

impl Distinct {
    pub fn of(queries: &[StatQuery]) -> Self {
        type Key<'a> = (&'a str, &'a str, Vec<&'a Dimension>, &'a str, u32);
        let mut first: HashMap<Key<'_>, &str> = HashMap::new();
        let mut out = Self::default();
        for q in queries {
            if q.math.is_some() {
                out.queries.push(q.clone());
                continue;
            }
            let mut dims: Vec<&Dimension> = q.dimensions.iter().collect();
            dims.sort();
            let key = (
                q.namespace.as_str(),
                q.metric.as_str(),
                dims,
                q.stat.as_str(),
                q.period,
            );
            match first.get(&key) {
                Some(&fetched) => out.copies.push((q.id.clone(), fetched.to_owned())),
                None => {
                    first.insert(key, &q.id);
                    out.queries.push(q.clone());
                }
            }
        }
        out
    }

    /// Gives each query left out the series of the one fetched in its place.
    pub fn answer(&self, fetched: &mut Fetched) {
        for (left_out, id) in &self.copies {
            if let Some(series) = fetched.series.get(id).cloned() {
                fetched.series.insert(left_out.clone(), series);
            }
        }
    }
}

/// Fetches `queries` with each plain statistic asked once ([`Distinct`]), every query
/// answered.
pub async fn fetch_distinct(
    reader: &impl MetricReader,
    queries: &[StatQuery],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Fetched> {
    let distinct = Distinct::of(queries);
    let mut fetched = reader.fetch(&distinct.queries, start, end).await?;
    distinct.answer(&mut fetched);
    Ok(fetched)
}

/// The `MetricDataQuery` entries one query needs: the statistic alone, or, for metric math,
/// every input (not returned) and the expression (returned under the query's id).
pub fn wire_queries(q: &StatQuery) -> Vec<MetricDataQuery> {
    let Some(math) = &q.math else {
        return vec![stat_query(
            &q.id,
            &q.namespace,
            &q.metric,
            &q.dimensions,
            &q.stat,
            q.period,
            true,
        )];
    };
    let mut out = Vec::with_capacity(math.inputs.len() + 2);
    out.push(stat_query(
        &format!("{}_m", q.id),
        &q.namespace,
        &q.metric,
        &q.dimensions,
        &q.stat,
        q.period,
        false,
    ));
    for (name, input) in &math.inputs {
        out.push(stat_query(
            &format!("{}_{name}", q.id),
            &input.namespace,
            &input.metric,
            &input.dimensions,
            &input.stat,
            q.period,
            false,
        ));
    }
    let mut names: Vec<&str> = math.inputs.iter().map(|(n, _)| n.as_str()).collect();
    names.push("m");
    out.push(
        MetricDataQuery::builder()
            .id(&q.id)
            .expression(prefix_identifiers(&math.expression, &names, &q.id))
            .period(i32::try_from(q.period).unwrap_or(i32::MAX))
            .return_data(true)
            .build(),
    );
    out
}

/// Packs the queries into `GetMetricData` calls of at most [`CW_MAX_QUERIES_PER_GET`] entries,
/// keeping each query's entries (a math expression and its inputs) in one call.
pub fn plan_calls(queries: &[StatQuery]) -> Vec<Vec<MetricDataQuery>> {
    let mut calls: Vec<Vec<MetricDataQuery>> = Vec::new();
    let mut current: Vec<MetricDataQuery> = Vec::new();
    for q in queries {
        let entries = wire_queries(q);
        if !current.is_empty() && current.len() + entries.len() > CW_MAX_QUERIES_PER_GET {
            calls.push(std::mem::take(&mut current));
        }
        current.extend(entries);
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

fn to_sdk_time(t: DateTime<Utc>) -> SdkDateTime {
    SdkDateTime::from_millis(t.timestamp_millis())
}

impl MetricReader for CloudWatchReader {
    async fn list_series(
        &self,
        namespace: &str,
        metric: &str,
        fixed: &[Dimension],
        any: &[String],
    ) -> Result<Vec<Vec<Dimension>>> {
        use aws_sdk_cloudwatch::types::DimensionFilter;
        let mut filters: Vec<DimensionFilter> = fixed
            .iter()
            .map(|d| {
                DimensionFilter::builder()
                    .name(&d.name)
                    .value(&d.value)
                    .build()
            })
            .collect();
        filters.extend(
            any.iter()
                .map(|n| DimensionFilter::builder().name(n).build()),
        );
        let mut pages = self
            .client
            .list_metrics()
            .namespace(namespace)
            .metric_name(metric)
            .set_dimensions(Some(filters))
            .into_paginator()
            .send();
        let wanted = fixed.len() + any.len();
        let mut series = std::collections::BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::aws("CloudWatch", "ListMetrics", e))?;
            for m in page.metrics() {
                let mut dims: Vec<Dimension> = m
                    .dimensions()
                    .iter()
                    .filter_map(|d| {
                        Some(Dimension {
                            name: d.name()?.to_owned(),
                            value: d.value()?.to_owned(),
                        })
                    })
                    .collect();
                // Only series with exactly these dimensions: a series with more is another one.
                if dims.len() == wanted {
                    dims.sort();
                    series.insert(dims);
                }
            }
        }
        Ok(series.into_iter().collect())
    }

    async fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Fetched> {
        let mut fetched = Fetched::default();
        for call in plan_calls(queries) {
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(call.clone()))
                    .start_time(to_sdk_time(start))
                    .end_time(to_sdk_time(end))
                    .scan_by(ScanBy::TimestampAscending)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| Error::aws("CloudWatch", "GetMetricData", e))?;
                fetched.calls += 1;
                fetched.metrics_requested +=
                    call.iter().filter(|q| q.metric_stat().is_some()).count();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(id: &str) -> StatQuery {
        StatQuery {
            id: id.to_owned(),
            namespace: "Shop".into(),
            metric: "requests".into(),
            dimensions: vec![],
            stat: "Sum".into(),
            period: 60,
            math: None,
        }
    }

    fn math(id: &str, inputs: usize) -> StatQuery {
        let mut q = stat(id);
        q.math = Some(Math {
            expression: "100 * errors / m".into(),
            inputs: (0..inputs)
                .map(|i| {
                    (
                        if i == 0 {
                            "errors".to_owned()
                        } else {
                            format!("x{i}")
                        },
                        MathInput {
                            namespace: "Shop".into(),
                            metric: "errors".into(),
                            dimensions: vec![],
                            stat: "Sum".into(),
                        },
                    )
                })
                .collect(),
        });
        q
    }

    #[test]
    fn identifiers_are_prefixed_functions_are_not() {
        assert_eq!(
            prefix_identifiers(
                "100 * RATE(errors) / FILL(m, 0) + errors2",
                &["errors", "m"],
                "r7"
            ),
            "100 * RATE(r7_errors) / FILL(r7_m, 0) + errors2"
        );
        assert_eq!(
            prefix_identifiers("1e5 * e5 + 2.5e-3", &["e5"], "r1"),
            "1e5 * r1_e5 + 2.5e-3",
            "a number's exponent is not an input"
        );
    }

    #[test]
    fn math_queries_return_only_the_expression() {
        let wire = wire_queries(&math("r3", 1));
        let ids: Vec<&str> = wire.iter().filter_map(|q| q.id()).collect();
        assert_eq!(ids, ["r3_m", "r3_errors", "r3"]);
        let returned: Vec<bool> = wire
            .iter()
            .map(|q| q.return_data().unwrap_or(true))
            .collect();
        assert_eq!(returned, [false, false, true]);
        assert_eq!(wire[2].expression(), Some("100 * r3_errors / r3_m"));
        assert_eq!(wire[2].period(), Some(60));
    }

    #[test]
    fn the_metrics_requested_are_the_statistics_sent() {
        let queries = [stat("r0"), math("r1", 2), stat("r2")];
        let sent: usize = queries
            .iter()
            .map(|q| {
                wire_queries(q)
                    .iter()
                    .filter(|w| w.metric_stat().is_some())
                    .count()
            })
            .sum();
        assert_eq!(metrics_requested(&queries), 5);
        assert_eq!(metrics_requested(&queries), sent);
        assert_eq!(metrics_requested(&[]), 0);
    }

    #[test]
    fn a_statistic_read_by_many_queries_is_requested_once_and_answers_them_all() {
        let mut same = stat("r1");
        same.dimensions = vec![
            Dimension {
                name: "b".into(),
                value: "2".into(),
            },
            Dimension {
                name: "a".into(),
                value: "1".into(),
            },
        ];
        let mut reordered = same.clone();
        reordered.id = "r2".into();
        reordered.dimensions.reverse();
        let mut other_stat = same.clone();
        other_stat.id = "r3".into();
        other_stat.stat = "Average".into();
        let mut other_period = same.clone();
        other_period.id = "r4".into();
        other_period.period = 300;
        let queries = [
            same.clone(),
            reordered,
            other_stat,
            other_period,
            math("r5", 1),
            math("r6", 1),
        ];
        let distinct = Distinct::of(&queries);
        let ids: Vec<&str> = distinct.queries.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["r1", "r3", "r4", "r5", "r6"]);
        assert_eq!(metrics_requested(&distinct.queries), 7);
        assert_eq!(metrics_requested(&queries), 8);

        let t0: DateTime<Utc> = "2026-11-25T08:00:00Z".parse().expect("time");
        let mut fetched = Fetched::default();
        fetched.series.insert("r1".into(), vec![(t0, 1.0)]);
        fetched.series.insert("r3".into(), vec![(t0, 3.0)]);
        distinct.answer(&mut fetched);
        assert_eq!(fetched.series["r2"], [(t0, 1.0)]);
        assert_eq!(fetched.series["r1"], [(t0, 1.0)]);
        assert!(
            !fetched.series.contains_key("r4"),
            "nothing read, nothing made up"
        );
    }

    #[test]
    fn calls_hold_at_most_500_entries_and_keep_expressions_whole() {
        let queries: Vec<StatQuery> = (0..1000).map(|i| stat(&format!("r{i}"))).collect();
        let calls = plan_calls(&queries);
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500]);
        let queries: Vec<StatQuery> = (0..10_000).map(|i| stat(&format!("r{i}"))).collect();
        assert_eq!(plan_calls(&queries).len(), 20);

        // 3 entries per math query: 166 fit in a call (498), the 167th starts the next.
        let queries: Vec<StatQuery> = (0..200).map(|i| math(&format!("r{i}"), 1)).collect();
        let calls = plan_calls(&queries);
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [498, 102]);
        for call in &calls {
            let returned = call
                .iter()
                .filter(|q| q.return_data() == Some(true))
                .count();
            assert_eq!(returned * 3, call.len());
        }
    }
}
