//! The function's own history: every episode that fired, from its first firing to its end,
//! with when each of its pages went out. The weekly review ([`crate::review`]) is computed from
//! it.
//!
//! The history lives in the state object, so an episode is recorded by the same conditional
//! write that ends it: a retried or overlapping run cannot record it twice or lose it. It is
//! kept [`KEPT_DAYS`] days and at most [`MAX_EPISODES`] episodes, so the state stays small
//! however noisy the rules are; when episodes are dropped for room, `complete_since` moves
//! forward, and a review of a week before it says that its counts are incomplete.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Days an episode is kept after it ended.
pub const KEPT_DAYS: i64 = 35;
/// The most episodes kept: the oldest go first.
pub const MAX_EPISODES: usize = 1_000;
/// The most page times kept per episode (a firing alert repeated every hour for weeks): the
/// first, and the latest.
pub const MAX_PAGES: usize = 16;

/// What fired: one of the rules, or a CloudWatch alarm that opted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Rule,
    Alarm,
}

/// One episode that fired and ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The rule's (or alarm's) name.
    pub alert: String,
    /// The series' state key (the alert name and its `*` dimensions).
    pub key: String,
    pub source: Source,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub severity: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the condition started to hold, when the episode fired, when it ended.
    pub active_since: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub resolved_at: DateTime<Utc>,
    /// When its firing notifications went out, the first and every repeat (none: muted
    /// throughout, by a silence or an inhibiting alert).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<DateTime<Utc>>,
}

impl Episode {
    /// The episode of a rule's series `key`, with `labels`, that fired as `state` says and
    /// ended at `at`.
    pub fn of_rule(
        key: &str,
        labels: &BTreeMap<String, String>,
        state: &crate::state::AlertState,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            alert: crate::state::alertname(key, labels).to_owned(),
            key: key.to_owned(),
            source: Source::Rule,
            severity: labels.get("severity").cloned().unwrap_or_default(),
            labels: labels.clone(),
            active_since: state.active_since,
            fired_at: state.fired_at.unwrap_or(state.active_since),
            resolved_at: at,
            pages: state.page_times(),
        }
    }
}

/// The episodes kept, and since when the record is complete.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Every episode that ended since this instant is here (none: nothing recorded yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub episodes: Vec<Episode>,
}

impl History {
    pub fn is_empty(&self) -> bool {
        self.complete_since.is_none() && self.episodes.is_empty()
    }

    /// Marks the record as complete from `at` on, the first time a run steps.
    pub fn begin(&mut self, at: DateTime<Utc>) {
        self.complete_since.get_or_insert(at);
    }

    pub fn record(&mut self, episode: Episode) {
        self.episodes.push(episode);
    }

    /// Forgets episodes that ended more than [`KEPT_DAYS`] before `now`, then the oldest
    /// beyond [`MAX_EPISODES`]; the record is complete only after the newest dropped for room.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let horizon = now - Duration::days(KEPT_DAYS);
        self.episodes.retain(|e| e.resolved_at >= horizon);
        if self.complete_since.is_some_and(|c| c < horizon) {
            self.complete_since = Some(horizon);
        }
        if self.episodes.len() > MAX_EPISODES {
            self.episodes.sort_by_key(|e| e.resolved_at);
            let cut = self.episodes.len() - MAX_EPISODES;
            let newest_dropped = self.episodes[cut - 1].resolved_at;
            self.episodes.drain(..cut);
            self.complete_since = Some(
                self.complete_since
                    .map_or(newest_dropped, |c| c.max(newest_dropped)),
            );
        }
    }
}

/// Adds a page time, keeping at most [`MAX_PAGES`]: the first (the page that woke someone)
/// and the latest (the ones the week's review counts).
pub fn add_page(pages: &mut Vec<DateTime<Utc>>, at: DateTime<Utc>) {
    if pages.len() >= MAX_PAGES {
        pages.remove(1);
    }
    pages.push(at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn episode(resolved: DateTime<Utc>) -> Episode {
        Episode {
            alert: "A".into(),
            key: "A".into(),
            source: Source::Rule,
            severity: "page".into(),
            labels: BTreeMap::new(),
            active_since: resolved - Duration::minutes(10),
            fired_at: resolved - Duration::minutes(9),
            resolved_at: resolved,
            pages: vec![resolved - Duration::minutes(9)],
        }
    }

    #[test]
    fn old_episodes_go_and_room_is_made_from_the_oldest() {
        let now = t("2026-11-30T08:00:00Z");
        let mut h = History::default();
        h.begin(now - Duration::days(60));
        h.begin(now);
        assert_eq!(h.complete_since, Some(now - Duration::days(60)), "set once");
        h.record(episode(now - Duration::days(40)));
        for m in 0..(MAX_EPISODES as i64 + 5) {
            h.record(episode(now - Duration::minutes(m)));
        }
        h.prune(now);
        assert_eq!(h.episodes.len(), MAX_EPISODES);
        assert!(
            h.episodes
                .iter()
                .all(|e| e.resolved_at > now - Duration::days(1))
        );
        // The five oldest of the last day were dropped for room: the record is complete only
        // after the newest of them.
        assert_eq!(
            h.complete_since,
            Some(now - Duration::minutes(MAX_EPISODES as i64))
        );
        let json = serde_json::to_string(&h).expect("json");
        let back: History = serde_json::from_str(&json).expect("back");
        assert_eq!(back, h);
    }

    /// The history at its bound, with the labels a rule has, stays a few hundred kilobytes of
    /// the state object every run reads and writes.
    #[test]
    fn a_full_history_stays_small() {
        let now = t("2026-11-30T08:00:00Z");
        let mut h = History::default();
        for m in 0..MAX_EPISODES as i64 {
            let mut e = episode(now - Duration::minutes(m));
            e.alert = "CheckoutLatencyHigh".into();
            e.key = "CheckoutLatencyHigh{pod=checkout-7f9c4b6d5-x2x9z}".into();
            e.labels = [
                ("alertname", "CheckoutLatencyHigh"),
                ("severity", "page"),
                ("team", "checkout"),
                ("service", "checkout"),
                ("pod", "checkout-7f9c4b6d5-x2x9z"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            h.record(e);
        }
        let bytes = serde_json::to_vec(&h).expect("json").len();
        eprintln!("{MAX_EPISODES} episodes: {bytes} bytes");
        assert!(bytes < 512 * 1024, "{bytes} bytes");
    }

    #[test]
    fn page_times_are_capped() {
        let now = t("2026-11-30T08:00:00Z");
        let mut pages = Vec::new();
        for h in 0..100 {
            add_page(&mut pages, now + Duration::hours(h));
        }
        assert_eq!(pages.len(), MAX_PAGES);
        assert_eq!(pages[0], now, "the first is kept");
        assert_eq!(
            pages[MAX_PAGES - 1],
            now + Duration::hours(99),
            "and the latest"
        );
        assert_eq!(pages[1], now + Duration::hours(100 - MAX_PAGES as i64 + 1));
    }
}
