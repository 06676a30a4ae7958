//! The alert function's own evaluation (`vigil_alert::run`: rules, state machine, policy,
//! claimed delivery) replayed over time in memory: series served from a recording, the state in
//! a map, notifications recorded instead of published. `rules test` feeds it synthetic series;
//! `rules backtest` feeds it CloudWatch history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vigil_alert::policy::Policy;
use vigil_alert::state::Status;
use vigil_alert::{Invocation, Rule, RunSummary, StateLocation};
use vigil_shared::Result;
use vigil_shared::math::{LocalMath, MathMode};
use vigil_shared::reader::MetricReader;
use vigil_shared::testing::{MemoryStore, RecordingNotifier};
pub use vigil_shared::testing::{Published as Sent, SeriesKey, SeriesReader as ReplayReader};

/// The most evaluations one replay may run: a typo such as `--every 1s --since 100000d` is an
/// error, not an allocation of billions of times.
pub const MAX_EVALUATIONS: usize = 1_000_000;

/// Where replayed notifications say they went when the policy routes them nowhere else.
pub const DEFAULT_TOPIC: &str = "arn:aws:sns:replay:000000000000:vigil-alerts";

/// What a replay did: each evaluation's summary and every notification, in order, and the
/// alert state it left (its history is what the weekly review reads).
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub runs: Vec<RunSummary>,
    pub sent: Vec<Sent>,
    pub state: vigil_alert::StateFile,
}

/// Runs the alert function's evaluation at each of `times` (ascending) over `reader`'s series,
/// exactly as the function would at those scheduled times; `progress` hears after each run.
/// Metric math is evaluated here ([`LocalMath`]) from the plain statistics it reads, which
/// `reader` must hold ([`vigil_shared::math::local::parts`]).
pub async fn replay(
    reader: &impl MetricReader,
    rules: &[Rule],
    policy: &Policy,
    times: &[DateTime<Utc>],
    mut progress: impl FnMut(usize),
) -> Result<Replay> {
    let reader = LocalMath::new(reader, MathMode::Local);
    let store = MemoryStore::default();
    let recorder = RecordingNotifier::default();
    let location = StateLocation {
        bucket: "replay".to_owned(),
        key: "state/alert.json".to_owned(),
    };
    let mut runs = Vec::with_capacity(times.len());
    for (i, &at) in times.iter().enumerate() {
        recorder.set_now(at);
        let plan = vigil_alert::Plan {
            rules,
            policy,
            silences: &[],
            default_topic: DEFAULT_TOPIC,
            state: &location,
        };
        // Each evaluation a run of its own, with all the time it needs: the replay delivers
        // everything it claims.
        let invocation = Invocation {
            id: format!("replay-{i}"),
            at,
            now: at,
            deadline: at + chrono::Duration::minutes(1),
            stop: std::time::Instant::now() + std::time::Duration::from_secs(3600),
        };
        runs.push(vigil_alert::run(&reader, &recorder, &store, plan, &invocation).await?);
        progress(i + 1);
    }
    let sent = recorder.take();
    let last = times.last().copied().unwrap_or_default();
    let (state, _) = vigil_alert::outbox::load_state(&store, &location, last).await?;
    Ok(Replay { runs, sent, state })
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
                Some(Status::Firing) => {
                    open.insert(id, out.len());
                    out.push(Episode {
                        alert: r.alert.clone(),
                        series: r.series.clone(),
                        start: run.evaluated_at,
                        end: None,
                    });
                }
                Some(Status::Resolved) => {
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
    use vigil_shared::reader::{Series, StatQuery};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
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
            state: vigil_alert::state::Standing::Firing,
            transition,
            muted: None,
        };
        let run = |at: &str, transition| RunSummary {
            evaluated_at: t(at),
            rules: vec![result(transition)],
            ..RunSummary::default()
        };
        let runs = [
            run("2026-11-25T08:00:00Z", Some(Status::Firing)),
            run("2026-11-25T08:01:00Z", None),
            run("2026-11-25T08:05:00Z", Some(Status::Resolved)),
            run("2026-11-25T08:09:00Z", Some(Status::Firing)),
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
