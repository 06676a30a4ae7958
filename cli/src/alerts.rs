//! `vigil alerts`: what is firing, pending and silenced now, from the state the alert function
//! keeps (amtool's `alert query`), and with `--history` the episodes of the last days.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use vigil_alert::StateFile;
use vigil_alert::history::{Episode, Source};
use vigil_alert::silence::Silence;
use vigil_alert::state::Phase;

/// Where an alert stands now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Firing, and notified (or to be).
    Firing,
    /// Firing, and muted by a silence in force now.
    Silenced,
    /// Firing and never notified: inhibited by another alert, or outside its route's time
    /// intervals (it notifies once neither holds).
    Muted,
    /// The condition holds; `for` has not passed yet.
    Pending,
}

/// One alert of the state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listed {
    pub alert: String,
    pub source: Source,
    pub standing: Standing,
    pub labels: BTreeMap<String, String>,
    /// When the condition started to hold (an alarm: when it entered ALARM).
    pub active_since: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
    /// The silence muting it, by id (or its comment when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
}

fn silencing<'a>(
    silences: &'a [Silence],
    labels: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Option<&'a Silence> {
    silences.iter().find(|s| s.active(now) && s.matches(labels))
}

/// Every open alert of the state at `now` (the Watchdog left out): firing, silenced, then
/// pending, oldest first within each.
pub fn list(state: &StateFile, silences: &[Silence], now: DateTime<Utc>) -> Vec<Listed> {
    let mut out = Vec::new();
    for (key, a) in &state.alerts {
        if key == vigil_alert::policy::WATCHDOG {
            continue;
        }
        let alert = a.alertname(key).to_owned();
        let mut labels = a.labels.clone();
        labels
            .entry("alertname".to_owned())
            .or_insert(alert.clone());
        let silence = silencing(silences, &labels, now);
        let standing = match (a.phase, silence, a.notified_at) {
            (Phase::Pending, _, _) => Standing::Pending,
            (Phase::Firing, Some(_), _) => Standing::Silenced,
            (Phase::Firing, None, None) => Standing::Muted,
            (Phase::Firing, None, Some(_)) => Standing::Firing,
        };
        out.push(Listed {
            alert,
            source: Source::Rule,
            standing,
            labels,
            active_since: a.active_since,
            fired_at: a.fired_at,
            value: a.value,
            notified_at: a.notified_at,
            silenced_by: silence.map(name),
        });
    }
    for (name_, a) in &state.native {
        if !a.in_alarm() {
            continue;
        }
        let mut labels = a.labels.clone();
        labels
            .entry("alertname".to_owned())
            .or_insert(name_.clone());
        let silence = silencing(silences, &labels, now);
        let since = a.since.unwrap_or(a.last_change);
        out.push(Listed {
            alert: name_.clone(),
            source: Source::Alarm,
            standing: match (silence, a.notified) {
                (Some(_), _) => Standing::Silenced,
                (None, false) => Standing::Muted,
                (None, true) => Standing::Firing,
            },
            labels,
            active_since: since,
            fired_at: Some(since),
            value: None,
            notified_at: a.paged_at,
            silenced_by: silence.map(name),
        });
    }
    out.sort_by(|a, b| {
        (a.standing, a.active_since, &a.alert).cmp(&(b.standing, b.active_since, &b.alert))
    });
    out
}

fn name(s: &Silence) -> String {
    if s.id.is_empty() {
        s.comment.clone()
    } else {
        s.id.clone()
    }
}

/// The episodes that ended since `since`, newest first.
pub fn history(state: &StateFile, since: DateTime<Utc>) -> Vec<&Episode> {
    let mut out: Vec<&Episode> = state
        .history
        .episodes
        .iter()
        .filter(|e| e.resolved_at >= since)
        .collect();
    out.sort_by(|a, b| b.resolved_at.cmp(&a.resolved_at).then(a.key.cmp(&b.key)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_alert::silence::Matcher;
    use vigil_alert::state::AlertState;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn alert(name: &str, phase: Phase, since: &str) -> AlertState {
        let since = t(since);
        AlertState {
            phase,
            active_since: since,
            last_breach: since,
            fired_at: (phase == Phase::Firing).then_some(since),
            value: Some(300.0),
            notified_at: (phase == Phase::Firing).then_some(since),
            repeats: 0,
            pages: Vec::new(),
            labels: [("alertname", name), ("team", "checkout")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    #[test]
    fn firing_silenced_and_pending_alerts_are_listed_in_that_order() {
        let now = t("2026-11-25T09:00:00Z");
        let mut state = StateFile::default();
        state.alerts.insert(
            "Slow".into(),
            alert("Slow", Phase::Firing, "2026-11-25T08:10:00Z"),
        );
        state.alerts.insert(
            "Down".into(),
            alert("Down", Phase::Firing, "2026-11-25T08:20:00Z"),
        );
        state.alerts.insert(
            "Warm".into(),
            alert("Warm", Phase::Pending, "2026-11-25T08:58:00Z"),
        );
        state.alerts.insert(
            vigil_alert::policy::WATCHDOG.into(),
            alert("Watchdog", Phase::Firing, "2026-11-20T00:00:00Z"),
        );
        let silences = [Silence {
            id: "s1".into(),
            matchers: vec![Matcher::parse("alertname=~\"Sl.*\"").expect("m")],
            starts_at: None,
            ends_at: t("2026-11-25T10:00:00Z"),
            created_by: "ann".into(),
            comment: "failover".into(),
            created_at: None,
        }];
        let got = list(&state, &silences, now);
        let rows: Vec<(&str, Standing)> =
            got.iter().map(|l| (l.alert.as_str(), l.standing)).collect();
        assert_eq!(
            rows,
            [
                ("Down", Standing::Firing),
                ("Slow", Standing::Silenced),
                ("Warm", Standing::Pending)
            ]
        );
        assert_eq!(got[1].silenced_by.as_deref(), Some("s1"));
        // Once the silence has ended, Slow is firing again.
        let later = list(&state, &silences, t("2026-11-25T10:00:00Z"));
        assert!(later.iter().all(|l| l.standing != Standing::Silenced));
    }
}
