//! The alert state machine, per rule: inactive → pending → firing → resolved (inactive again),
//! the way Prometheus's alerting rules step.
//!
//! - A breach starts an episode in `pending`; it becomes `firing` once the condition has held
//!   for the rule's `for` (at once when `for` is zero). A pending episode whose condition stops
//!   holding ends silently: nothing is sent during `for`.
//! - A firing episode resolves when the condition no longer holds and has not held for
//!   `keep_firing_for`, so a flapping metric makes one firing and one resolved notification,
//!   not one per flap.
//! - Missing data follows the rule's policy: `ignore` keeps the state as it is, `breaching` and
//!   `not_breaching` count it as such.
//!
//! Each transition that notifies carries a deduplication key derived from the rule and the
//! episode's start, so a retried run can tell a notification it already sent.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// What a notification says of an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// Where a series stands after a run, for the run's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    Inactive,
    Pending,
    Firing,
}

impl Standing {
    pub fn of(state: Option<&AlertState>) -> Self {
        match state.map(|s| s.phase) {
            None => Standing::Inactive,
            Some(Phase::Pending) => Standing::Pending,
            Some(Phase::Firing) => Standing::Firing,
        }
    }
}

/// Where an episode stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Firing,
}

/// The state of one rule with an open episode. No state means inactive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub phase: Phase,
    /// When the condition started to hold: the episode's identity.
    pub active_since: DateTime<Utc>,
    /// When the condition last held.
    pub last_breach: DateTime<Utc>,
    /// When the episode started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<DateTime<Utc>>,
    /// The value last compared (none when the policy counted missing data).
    #[serde(default)]
    pub value: Option<f64>,
    /// When the episode was last notified (none: never, for example while muted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
    /// Repeat notifications sent for this episode.
    #[serde(default)]
    pub repeats: u32,
    /// When its firing notifications went out ([`crate::history::MAX_PAGES`] at most).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<DateTime<Utc>>,
    /// The alert's full label set (rule labels, `alertname`, the series' `*` dimensions): what
    /// inhibits other alerts, and what a resolved message says once the rule is gone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The alert name of the state key `key`: its `alertname` label, else the key before its
/// series' `{...}` (a state an earlier version wrote without labels).
pub fn alertname<'a>(key: &'a str, labels: &'a BTreeMap<String, String>) -> &'a str {
    labels
        .get("alertname")
        .map_or_else(|| key.split('{').next().unwrap_or(key), String::as_str)
}

impl AlertState {
    /// The alert name of this state, kept under `key`.
    pub fn alertname<'a>(&'a self, key: &'a str) -> &'a str {
        alertname(key, &self.labels)
    }

    /// When its firing notifications went out. An episode notified before page times were
    /// kept has its firing time.
    pub fn page_times(&self) -> Vec<DateTime<Utc>> {
        match (self.pages.is_empty(), self.notified_at) {
            (true, Some(_)) => vec![self.fired_at.unwrap_or(self.active_since)],
            _ => self.pages.clone(),
        }
    }
}

/// What one evaluation saw, after the missing-data policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Observation {
    /// The value, or none for missing data counted as breaching.
    Breaching(Option<f64>),
    NotBreaching(Option<f64>),
    /// No data, and the policy says to leave the state as it is.
    Unknown,
}

/// A change worth a notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Transition {
    Firing {
        value: Option<f64>,
        active_since: DateTime<Utc>,
    },
    Resolved {
        value: Option<f64>,
        active_since: DateTime<Utc>,
        fired_at: DateTime<Utc>,
    },
}

impl Transition {
    pub fn status(&self) -> Status {
        match self {
            Transition::Firing { .. } => Status::Firing,
            Transition::Resolved { .. } => Status::Resolved,
        }
    }

    /// The deduplication key: one per rule, episode and kind of transition.
    pub fn dedup_key(&self, alert: &str) -> String {
        format!(
            "{}/{}",
            episode_id(alert, self.active_since()),
            self.status().as_str()
        )
    }

    /// When the condition of the episode began to hold.
    pub fn active_since(&self) -> DateTime<Utc> {
        match self {
            Transition::Firing { active_since, .. } | Transition::Resolved { active_since, .. } => {
                *active_since
            }
        }
    }
}

/// The episode a series' notifications belong to: the series' state key and when its
/// condition began to hold. A receiver that opens an incident (PagerDuty) resolves it by this.
pub fn episode_id(alert: &str, active_since: DateTime<Utc>) -> String {
    format!("{alert}/{}", active_since.timestamp())
}

/// Timing of one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    /// How long a firing alert stays firing after the condition stopped holding.
    pub keep_firing_for: Duration,
}

/// One evaluation step at `now`: the next state and the transition to notify, if any.
pub fn step(
    prev: Option<&AlertState>,
    observation: Observation,
    timing: Timing,
    now: DateTime<Utc>,
) -> (Option<AlertState>, Option<Transition>) {
    match (prev, observation) {
        (prev, Observation::Unknown) => (prev.cloned(), None),
        (None, Observation::Breaching(value)) => {
            let state = AlertState {
                phase: Phase::Pending,
                active_since: now,
                last_breach: now,
                fired_at: None,
                value,
                notified_at: None,
                repeats: 0,
                pages: Vec::new(),
                labels: BTreeMap::new(),
            };
            promote(state, timing, now)
        }
        (None, Observation::NotBreaching(_)) => (None, None),
        (Some(s), Observation::Breaching(value)) => {
            let mut next = s.clone();
            next.last_breach = now;
            next.value = value;
            if next.phase == Phase::Pending {
                promote(next, timing, now)
            } else {
                (Some(next), None)
            }
        }
        (Some(s), Observation::NotBreaching(value)) => match s.phase {
            Phase::Pending => (None, None),
            Phase::Firing if now - s.last_breach < timing.keep_firing_for => {
                let mut next = s.clone();
                next.value = value;
                (Some(next), None)
            }
            Phase::Firing => (
                None,
                Some(Transition::Resolved {
                    value,
                    active_since: s.active_since,
                    fired_at: s.fired_at.unwrap_or(s.active_since),
                }),
            ),
        },
    }
}

fn promote(
    mut state: AlertState,
    timing: Timing,
    now: DateTime<Utc>,
) -> (Option<AlertState>, Option<Transition>) {
    if now - state.active_since >= timing.for_ {
        state.phase = Phase::Firing;
        state.fired_at = Some(now);
        let t = Transition::Firing {
            value: state.value,
            active_since: state.active_since,
        };
        (Some(state), Some(t))
    } else {
        (Some(state), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_593_600, 0).expect("time")
    }

    fn minutes(m: i64) -> Duration {
        Duration::minutes(m)
    }

    /// Runs a sequence of observations one minute apart; returns the transitions by minute.
    fn run(observations: &[Observation], timing: Timing) -> Vec<(i64, Transition)> {
        let mut state = None;
        let mut out = Vec::new();
        for (i, o) in observations.iter().enumerate() {
            let now = t0() + minutes(i as i64);
            let (next, t) = step(state.as_ref(), *o, timing, now);
            state = next;
            if let Some(t) = t {
                out.push((i as i64, t));
            }
        }
        out
    }

    use Observation::Unknown as U;

    #[allow(non_snake_case)]
    fn B(v: f64) -> Observation {
        Observation::Breaching(Some(v))
    }

    #[allow(non_snake_case)]
    fn N(v: f64) -> Observation {
        Observation::NotBreaching(Some(v))
    }

    #[test]
    fn fires_after_for_and_resolves() {
        let timing = Timing {
            for_: minutes(2),
            keep_firing_for: Duration::zero(),
        };
        let out = run(&[N(1.0), B(9.0), B(9.0), B(9.0), B(9.0), N(1.0)], timing);
        let kinds: Vec<(i64, &str)> = out.iter().map(|(i, t)| (*i, t.status().as_str())).collect();
        assert_eq!(kinds, [(3, "firing"), (5, "resolved")]);
    }

    #[test]
    fn a_short_breach_during_for_sends_nothing() {
        let timing = Timing {
            for_: minutes(3),
            keep_firing_for: Duration::zero(),
        };
        assert!(run(&[B(9.0), B(9.0), N(1.0), B(9.0), N(1.0)], timing).is_empty());
    }

    #[test]
    fn zero_for_fires_at_once() {
        let out = run(&[B(9.0)], Timing::default());
        assert!(matches!(out[..], [(0, Transition::Firing { .. })]));
    }

    #[test]
    fn keep_firing_for_absorbs_flapping() {
        let timing = Timing {
            for_: Duration::zero(),
            keep_firing_for: minutes(3),
        };
        let out = run(
            &[
                B(9.0),
                N(1.0),
                B(9.0),
                N(1.0),
                N(1.0),
                B(9.0),
                N(1.0),
                N(1.0),
                N(1.0),
                N(1.0),
            ],
            timing,
        );
        let kinds: Vec<(i64, &str)> = out.iter().map(|(i, t)| (*i, t.status().as_str())).collect();
        assert_eq!(kinds, [(0, "firing"), (8, "resolved")]);
    }

    #[test]
    fn unknown_keeps_the_state() {
        let timing = Timing {
            for_: minutes(1),
            keep_firing_for: Duration::zero(),
        };
        let out = run(&[B(9.0), U, U, B(9.0), U, N(1.0)], timing);
        let kinds: Vec<(i64, &str)> = out.iter().map(|(i, t)| (*i, t.status().as_str())).collect();
        assert_eq!(kinds, [(3, "firing"), (5, "resolved")]);
    }

    #[test]
    fn dedup_keys_name_rule_episode_and_kind() {
        let out = run(&[B(9.0), N(1.0)], Timing::default());
        assert_eq!(
            out[0].1.dedup_key("HighLatency"),
            "HighLatency/1795593600/firing"
        );
        assert_eq!(
            out[1].1.dedup_key("HighLatency"),
            "HighLatency/1795593600/resolved"
        );
    }

    fn observation() -> impl Strategy<Value = Observation> {
        prop_oneof![
            proptest::option::of(0.0f64..10.0).prop_map(Observation::Breaching),
            proptest::option::of(0.0f64..10.0).prop_map(Observation::NotBreaching),
            Just(Observation::Unknown),
        ]
    }

    proptest! {
        /// Firing and resolved alternate, starting with firing: one of each per episode, never
        /// two firings for one episode, whatever the flapping.
        #[test]
        fn firing_and_resolved_alternate(
            observations in proptest::collection::vec(observation(), 0..120),
            for_ in 0i64..5,
            keep in 0i64..5,
        ) {
            let timing = Timing { for_: minutes(for_), keep_firing_for: minutes(keep) };
            let out = run(&observations, timing);
            for (k, (_, t)) in out.iter().enumerate() {
                let want = if k % 2 == 0 { "firing" } else { "resolved" };
                prop_assert_eq!(t.status().as_str(), want);
            }
            let keys: std::collections::BTreeSet<String> = out.iter().map(|(_, t)| t.dedup_key("r")).collect();
            prop_assert_eq!(keys.len(), out.len());
        }

        /// Nothing fires before the condition has held for `for`, counting only minutes that
        /// were observed breaching or unknown since the episode began.
        #[test]
        fn nothing_is_sent_during_for(
            observations in proptest::collection::vec(observation(), 0..60),
            for_ in 1i64..6,
        ) {
            let timing = Timing { for_: minutes(for_), keep_firing_for: Duration::zero() };
            let mut state: Option<AlertState> = None;
            for (i, o) in observations.iter().enumerate() {
                let now = t0() + minutes(i as i64);
                let (next, t) = step(state.as_ref(), *o, timing, now);
                if let Some(Transition::Firing { active_since, .. }) = &t {
                    prop_assert!(now - *active_since >= timing.for_);
                    prop_assert!(matches!(o, Observation::Breaching(_)));
                }
                state = next;
            }
        }
    }
}
