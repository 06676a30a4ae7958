//! The alert function's own evaluation (`vigil_alert::run`: rules, state machine, policy,
//! claimed delivery) replayed over time in memory: series served from a recording, the state in
//! a map, notifications recorded instead of published. `rules test` feeds it synthetic series;
//! `rules backtest` feeds it CloudWatch history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use vigil_alert::policy::Policy;
use vigil_alert::{Rule, RunSummary, StateLocation};
use vigil_shared::notify::{Notification, Notifier};
use vigil_shared::reader::{Fetched, MetricReader, Series, StatQuery};
use vigil_shared::store::{ObjectInfo, ObjectStore};
use vigil_shared::{Dimension, Error, Result};

/// Which recorded series answers a query: everything but the query's id. `stat` and `period`
/// of `None` match any (a test file may leave them out).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesKey {
    pub namespace: String,
    pub metric: String,
    /// Sorted.
    pub dimensions: Vec<Dimension>,
    pub stat: Option<String>,
    pub period: Option<u32>,
    /// The metric-math expression the series is the result of (recorded from CloudWatch);
    /// synthetic series have none, and no expression query matches them.
    pub math: Option<vigil_shared::Math>,
}

impl SeriesKey {
    pub fn of(query: &StatQuery) -> Self {
        let mut dimensions = query.dimensions.clone();
        dimensions.sort();
        Self {
            namespace: query.namespace.clone(),
            metric: query.metric.clone(),
            dimensions,
            stat: Some(query.stat.clone()),
            period: Some(query.period),
            math: query.math.clone(),
        }
    }

    fn answers(&self, query: &StatQuery) -> bool {
        let mut dims = query.dimensions.clone();
        dims.sort();
        query.math == self.math
            && self.namespace == query.namespace
            && self.metric == query.metric
            && self.dimensions == dims
            && self.stat.as_ref().is_none_or(|s| *s == query.stat)
            && self.period.is_none_or(|p| p == query.period)
    }
}

/// A [`MetricReader`] over recorded series, oldest point first in each.
#[derive(Clone, Debug, Default)]
pub struct ReplayReader {
    pub series: Vec<(SeriesKey, Series)>,
}

impl ReplayReader {
    /// The points of the series answering `query`, if one does.
    pub fn points(&self, query: &StatQuery) -> Option<&Series> {
        self.series
            .iter()
            .find(|(k, _)| k.answers(query))
            .map(|(_, s)| s)
    }
}

impl MetricReader for ReplayReader {
    async fn fetch(
        &self,
        queries: &[StatQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Fetched> {
        let mut fetched = Fetched::default();
        for q in queries {
            if let Some(points) = self.points(q) {
                // CloudWatch's range: start inclusive, end exclusive.
                let from = points.partition_point(|(t, _)| *t < start);
                let to = points.partition_point(|(t, _)| *t < end);
                fetched
                    .series
                    .insert(q.id.clone(), points[from..to.max(from)].to_vec());
            }
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
        let mut found: Vec<Vec<Dimension>> = self
            .series
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.namespace == namespace && k.metric == metric)
            .filter(|k| k.dimensions.len() == fixed.len() + any.len())
            .filter(|k| fixed.iter().all(|f| k.dimensions.contains(f)))
            .filter(|k| {
                any.iter()
                    .all(|n| k.dimensions.iter().any(|d| d.name == *n))
            })
            .map(|k| k.dimensions.clone())
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }
}

/// Objects in a map, with S3's conditional-write semantics (the alert state is claimed with
/// them).
/// (bucket, key) → (body, version); the entity tag is the version.
type Objects = HashMap<(String, String), (Vec<u8>, u64)>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A version no object has had. Tags here never repeat; S3's can (the same bytes written again
/// have the same MD5), which only makes this store the stricter judge of a claim.
fn next_version(objects: &Objects) -> u64 {
    objects.values().map(|(_, v)| *v).max().unwrap_or(0) + 1
}

fn tag(version: u64) -> String {
    format!("\"{version}\"")
}

impl ObjectStore for MemoryStore {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out: Vec<ObjectInfo> = self
            .lock()
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), (body, v))| ObjectInfo {
                key: k.clone(),
                size: body.len() as u64,
                last_modified: DateTime::UNIX_EPOCH,
                etag: tag(*v),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.lock()
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|(body, _)| body.clone())
            .ok_or_else(|| Error::Config(format!("s3://{bucket}/{key}: no such object")))
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, _: &str) -> Result<()> {
        let mut objects = self.lock();
        let next = next_version(&objects);
        objects.insert((bucket.to_owned(), key.to_owned()), (body, next));
        Ok(())
    }

    async fn get_tagged(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        Ok(self
            .lock()
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|(body, v)| (body.clone(), tag(*v))))
    }

    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let mut objects = self.lock();
        let id = (bucket.to_owned(), key.to_owned());
        let current = objects.get(&id).map(|(_, v)| tag(*v));
        if current.is_none() && expected.is_some() {
            // S3 answers If-Match on a missing object with 404, which S3Store reports as an
            // error, not as a lost race.
            return Err(Error::InvalidInput(format!(
                "s3://{bucket}/{key}: no such object to match"
            )));
        }
        if current.as_deref() != expected {
            return Ok(None);
        }
        let next = next_version(&objects);
        objects.insert(id, (body, next));
        Ok(Some(tag(next)))
    }
}

/// One notification the replay would have sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub at: DateTime<Utc>,
    pub topic_arn: String,
    pub notification: Notification,
}

impl Sent {
    /// A message attribute (`alertname`, `status`, `severity`, ...).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.notification
            .attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A [`Notifier`] that records what it is given, stamped with the replay's clock.
#[derive(Debug, Default)]
pub struct Recorder {
    pub now: Mutex<DateTime<Utc>>,
    pub sent: Mutex<Vec<Sent>>,
}

impl Notifier for Recorder {
    async fn publish(&self, topic_arn: &str, notification: &Notification) -> Result<String> {
        let at = *self.now.lock().unwrap_or_else(|e| e.into_inner());
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.push(Sent {
            at,
            topic_arn: topic_arn.to_owned(),
            notification: notification.clone(),
        });
        Ok(format!("replayed-{}", sent.len()))
    }
}

/// The most evaluations one replay may run: a typo such as `--every 1s --since 100000d` is an
/// error, not an allocation of billions of times.
pub const MAX_EVALUATIONS: usize = 1_000_000;

/// Where replayed notifications say they went when the policy routes them nowhere else.
pub const DEFAULT_TOPIC: &str = "arn:aws:sns:replay:000000000000:vigil-alerts";

/// What a replay did: each evaluation's summary and every notification, in order.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub runs: Vec<RunSummary>,
    pub sent: Vec<Sent>,
}

/// Runs the alert function's evaluation at each of `times` (ascending) over `reader`'s series,
/// exactly as the function would at those scheduled times; `progress` hears after each run.
pub async fn replay(
    reader: &impl MetricReader,
    rules: &[Rule],
    policy: &Policy,
    times: &[DateTime<Utc>],
    mut progress: impl FnMut(usize),
) -> Result<Replay> {
    let store = MemoryStore::default();
    let recorder = Recorder::default();
    let location = StateLocation {
        bucket: "replay".to_owned(),
        key: "state/alert.json".to_owned(),
    };
    let mut runs = Vec::with_capacity(times.len());
    for (i, &at) in times.iter().enumerate() {
        *recorder.now.lock().unwrap_or_else(|e| e.into_inner()) = at;
        let plan = vigil_alert::Plan {
            rules,
            policy,
            silences: &[],
            default_topic: DEFAULT_TOPIC,
            state: &location,
        };
        runs.push(vigil_alert::run(reader, &recorder, &store, plan, at).await?);
        progress(i + 1);
    }
    let sent = std::mem::take(&mut *recorder.sent.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Replay { runs, sent })
}

/// One firing episode of one series: from the run that fired it to the run that resolved it
/// (`None`: still firing when the replay ended).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Episode {
    pub alert: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, String>,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl Episode {
    /// How long it fired, up to `until` for one still firing.
    pub fn duration(&self, until: DateTime<Utc>) -> chrono::Duration {
        self.end.unwrap_or(until) - self.start
    }
}

/// The firing episodes in a replay's runs, in order of start.
pub fn episodes(runs: &[RunSummary]) -> Vec<Episode> {
    let mut open: BTreeMap<(String, BTreeMap<String, String>), usize> = BTreeMap::new();
    let mut out: Vec<Episode> = Vec::new();
    for run in runs {
        for r in &run.rules {
            let id = (r.alert.clone(), r.series.clone());
            match r.transition {
                Some("firing") => {
                    open.insert(id, out.len());
                    out.push(Episode {
                        alert: r.alert.clone(),
                        series: r.series.clone(),
                        start: run.evaluated_at,
                        end: None,
                    });
                }
                Some("resolved") => {
                    if let Some(i) = open.remove(&id) {
                        out[i].end = Some(run.evaluated_at);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_alert::RuleResult;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[tokio::test]
    async fn the_memory_store_claims_like_s3() {
        let store = MemoryStore::default();
        let first = store
            .put_if("b", "k", b"1".to_vec(), None)
            .await
            .expect("put")
            .expect("created");
        assert_eq!(
            store
                .put_if("b", "k", b"2".to_vec(), None)
                .await
                .expect("put"),
            None,
            "If-None-Match fails once the object exists"
        );
        let second = store
            .put_if("b", "k", b"2".to_vec(), Some(&first))
            .await
            .expect("put")
            .expect("matched");
        assert_eq!(
            store
                .put_if("b", "k", b"3".to_vec(), Some(&first))
                .await
                .expect("put"),
            None,
            "a stale tag loses"
        );
        assert_eq!(
            store.get_tagged("b", "k").await.expect("get"),
            Some((b"2".to_vec(), second.clone()))
        );
        assert!(
            store
                .put_if("b", "other", b"1".to_vec(), Some(&second))
                .await
                .is_err(),
            "If-Match on a missing object is an error, as S3's 404"
        );
    }

    #[tokio::test]
    async fn replayed_reads_keep_cloudwatchs_range() {
        let q = StatQuery {
            id: "r0".into(),
            namespace: "N".into(),
            metric: "m".into(),
            dimensions: vec![],
            stat: "Sum".into(),
            period: 60,
            math: None,
        };
        let points: Series = (0..5)
            .map(|m| {
                (
                    t("2026-11-25T08:00:00Z") + chrono::Duration::minutes(m),
                    m as f64,
                )
            })
            .collect();
        let reader = ReplayReader {
            series: vec![(SeriesKey::of(&q), points)],
        };
        let got = reader
            .fetch(
                std::slice::from_ref(&q),
                t("2026-11-25T08:01:00Z"),
                t("2026-11-25T08:03:00Z"),
            )
            .await
            .expect("fetch");
        let values: Vec<f64> = got.series["r0"].iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [1.0, 2.0], "start inclusive, end exclusive");
        let other = StatQuery {
            stat: "Average".into(),
            ..q
        };
        assert!(
            reader.points(&other).is_none(),
            "another statistic is another series"
        );
    }

    #[test]
    fn episodes_run_from_firing_to_resolved() {
        let result = |transition| RuleResult {
            alert: "A".into(),
            series: BTreeMap::new(),
            outcome: vigil_alert::Outcome::NoData,
            state: "firing",
            transition,
            muted: None,
        };
        let run = |at: &str, transition| RunSummary {
            evaluated_at: t(at),
            rules: vec![result(transition)],
            ..RunSummary::default()
        };
        let runs = [
            run("2026-11-25T08:00:00Z", Some("firing")),
            run("2026-11-25T08:01:00Z", None),
            run("2026-11-25T08:05:00Z", Some("resolved")),
            run("2026-11-25T08:09:00Z", Some("firing")),
        ];
        let found = episodes(&runs);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].end, Some(t("2026-11-25T08:05:00Z")));
        assert_eq!(
            found[0].duration(t("2026-11-25T09:00:00Z")),
            chrono::Duration::minutes(5)
        );
        assert_eq!(found[1].end, None, "still firing");
        assert_eq!(
            found[1].duration(t("2026-11-25T08:10:00Z")),
            chrono::Duration::minutes(1)
        );
    }
}
