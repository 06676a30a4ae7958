//! A [`MetricReader`] that evaluates the metric math of its queries itself: it reads each
//! math query's statistic (`m`) and inputs as plain statistics from the reader it wraps, and
//! answers the query with the expression evaluated over them. Plain queries pass through.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::Expr;
use crate::metric::Dimension;
use crate::reader::{Fetched, MetricReader, Series, StatQuery};
use crate::{Error, Result};

/// Who evaluates the metric math of a rule: CloudWatch, in `GetMetricData` (the default, as
/// on AWS), or this process, from the statistics the expression reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MathMode {
    #[default]
    CloudWatch,
    Local,
}

impl MathMode {
    /// `cloudwatch` or `local` (`VIGIL_METRIC_MATH`).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "" | "cloudwatch" => Ok(MathMode::CloudWatch),
            "local" => Ok(MathMode::Local),
            other => Err(Error::Config(format!(
                "VIGIL_METRIC_MATH: {other:?} is neither `cloudwatch` nor `local`"
            ))),
        }
    }
}

/// `inner`, with metric math evaluated here when the mode is [`MathMode::Local`].
#[derive(Debug)]
pub struct LocalMath<R> {
    inner: R,
    mode: MathMode,
    /// Expressions parsed once: a replay evaluates the same ones at every run.
    parsed: Mutex<HashMap<String, Arc<Expr>>>,
}

impl<R> LocalMath<R> {
    pub fn new(inner: R, mode: MathMode) -> Self {
        Self {
            inner,
            mode,
            parsed: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn parse(&self, q: &StatQuery, expression: &str) -> Result<Arc<Expr>> {
        let mut parsed = self
            .parsed
            .lock()
            .map_err(|_| Error::Internal("the parsed expressions' lock is poisoned".into()))?;
        if let Some(expr) = parsed.get(expression) {
            return Ok(Arc::clone(expr));
        }
        let expr = Arc::new(
            super::parse(expression)
                .map_err(|e| Error::Config(format!("query {}: {expression}: {e}", q.id)))?,
        );
        parsed.insert(expression.to_owned(), Arc::clone(&expr));
        Ok(expr)
    }
}

/// The id of one series a local math query reads: the query's id, then the input's (`m` for
/// its own statistic).
pub fn part_id(query: &str, input: &str) -> String {
    format!("{query}__{input}")
}

/// The plain statistics a math query reads: `m`, then its inputs.
pub fn parts(q: &StatQuery) -> Vec<(String, StatQuery)> {
    let Some(math) = &q.math else {
        return Vec::new();
    };
    let mut out = vec![(
        "m".to_owned(),
        StatQuery {
            id: part_id(&q.id, "m"),
            math: None,
            ..q.clone()
        },
    )];
    for (name, input) in &math.inputs {
        let mut dimensions: Vec<Dimension> = input.dimensions.clone();
        dimensions.sort();
        out.push((
            name.clone(),
            StatQuery {
                id: part_id(&q.id, name),
                namespace: input.namespace.clone(),
                metric: input.metric.clone(),
                dimensions,
                stat: input.stat.clone(),
                period: q.period,
                math: None,
            },
        ));
    }
    out
}

impl<R: MetricReader> MetricReader for LocalMath<R> {
    async fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Fetched> {
        if self.mode == MathMode::CloudWatch || queries.iter().all(|q| q.math.is_none()) {
            return self.inner.fetch(queries, start, end).await;
        }
        let mut wire = Vec::with_capacity(queries.len());
        let mut local = Vec::new();
        for q in queries {
            match &q.math {
                None => wire.push(q.clone()),
                Some(math) => {
                    let expr = self.parse(q, &math.expression)?;
                    let parts = parts(q);
                    wire.extend(parts.iter().map(|(_, p)| p.clone()));
                    local.push((q, expr, parts));
                }
            }
        }
        let mut fetched = self.inner.fetch(&wire, start, end).await?;
        for (q, expr, parts) in local {
            let series: BTreeMap<String, Series> = parts
                .into_iter()
                .map(|(name, p)| (name, fetched.series.remove(&p.id).unwrap_or_default()))
                .collect();
            let result = super::evaluate(&expr, start, end, q.period, &series)
                .map_err(|e| Error::Internal(format!("query {}: {e}", q.id)))?;
            fetched.series.insert(q.id.clone(), result);
        }
        Ok(fetched)
    }

    async fn list_series(
        &self,
        namespace: &str,
        metric: &str,
        fixed: &[Dimension],
        any: &[String],
    ) -> Result<Vec<Vec<Dimension>>> {
        self.inner.list_series(namespace, metric, fixed, any).await
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::reader::{Math, MathInput};

    /// Answers plain statistics by metric name, and records every query asked.
    #[derive(Default)]
    struct ByName {
        series: BTreeMap<String, Series>,
        asked: Mutex<Vec<StatQuery>>,
    }

    impl MetricReader for ByName {
        async fn fetch(
            &self,
            queries: &[StatQuery],
            _start: DateTime<Utc>,
            _end: DateTime<Utc>,
        ) -> Result<Fetched> {
            self.asked
                .lock()
                .map_err(|_| Error::Internal("poisoned".into()))?
                .extend(queries.iter().cloned());
            let mut out = Fetched {
                calls: 1,
                ..Fetched::default()
            };
            for q in queries.iter().filter(|q| q.math.is_none()) {
                if let Some(s) = self.series.get(&q.metric) {
                    out.series.insert(q.id.clone(), s.clone());
                }
            }
            Ok(out)
        }

        async fn list_series(
            &self,
            _namespace: &str,
            _metric: &str,
            _fixed: &[Dimension],
            _any: &[String],
        ) -> Result<Vec<Vec<Dimension>>> {
            Ok(Vec::new())
        }
    }

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_793_577_600 + minute * 60, 0).unwrap_or_default()
    }

    fn query(id: &str, expression: Option<&str>) -> StatQuery {
        StatQuery {
            id: id.into(),
            namespace: "Shop".into(),
            metric: "requests".into(),
            dimensions: vec![],
            stat: "Sum".into(),
            period: 60,
            math: expression.map(|e| Math {
                expression: e.into(),
                inputs: vec![(
                    "errors".into(),
                    MathInput {
                        namespace: "Shop".into(),
                        metric: "errors".into(),
                        dimensions: vec![],
                        stat: "Sum".into(),
                    },
                )],
            }),
        }
    }

    fn reader() -> ByName {
        ByName {
            series: BTreeMap::from([
                ("requests".into(), vec![(at(0), 100.0), (at(1), 200.0)]),
                ("errors".into(), vec![(at(1), 10.0)]),
            ]),
            ..ByName::default()
        }
    }

    #[tokio::test]
    async fn math_queries_are_answered_from_their_statistics_in_one_read() {
        let local = LocalMath::new(reader(), MathMode::Local);
        let queries = [query("r0", Some("100 * errors / m")), query("r1", None)];
        let got = local.fetch(&queries, at(0), at(2)).await.expect("fetch");
        assert_eq!(got.series["r0"], [(at(0), 0.0), (at(1), 5.0)]);
        assert_eq!(got.series["r1"], [(at(0), 100.0), (at(1), 200.0)]);
        assert_eq!(got.series.len(), 2, "the parts are not returned");
        assert_eq!(got.calls, 1);
        let asked = local.inner().asked.lock().expect("lock").clone();
        let ids: Vec<&str> = asked.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["r0__m", "r0__errors", "r1"]);
        assert!(asked.iter().all(|q| q.math.is_none() && q.period == 60));
    }

    #[tokio::test]
    async fn in_cloudwatch_mode_the_expression_goes_to_the_reader() {
        let cw = LocalMath::new(reader(), MathMode::CloudWatch);
        let queries = [query("r0", Some("100 * errors / m"))];
        let got = cw.fetch(&queries, at(0), at(2)).await.expect("fetch");
        assert!(got.series.is_empty(), "this reader evaluates no math");
        let asked = cw.inner().asked.lock().expect("lock").clone();
        assert_eq!(asked, queries);
    }

    #[test]
    fn the_mode_is_read_from_its_setting() {
        assert_eq!(MathMode::parse("").ok(), Some(MathMode::CloudWatch));
        assert_eq!(
            MathMode::parse("cloudwatch").ok(),
            Some(MathMode::CloudWatch)
        );
        assert_eq!(MathMode::parse(" local ").ok(), Some(MathMode::Local));
        let err = MathMode::parse("lokal").expect_err("typo").to_string();
        assert!(err.contains("VIGIL_METRIC_MATH"), "{err}");
    }
}
