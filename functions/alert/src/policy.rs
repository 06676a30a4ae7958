//! The notification policy: where a notification goes (routes by labels), how often a firing
//! alert is repeated, and what keeps it quiet (silences, inhibition), after Alertmanager.
//!
//! In the rules file:
//!
//! ```yaml
//! policy:
//!   repeat_interval: 4h
//!   routes:
//!     - match: {team: payments}
//!       topic_arn: arn:aws:sns:eu-west-1:123456789012:payments-oncall
//!   inhibit:
//!     - source_match: {alertname: CheckoutDown}
//!       target_match: {team: checkout}
//!       equal: [service]
//!   watchdog: {interval: 1h, labels: {team: platform}}
//!   group_by: [team, service]
//!   group_wait: 0s
//!   group_interval: 5m
//!   alarms: {name_prefixes: [checkout-]}
//! ```
//!
//! Routes may only name topics the stack can publish to (`VIGIL_ALLOWED_TOPIC_ARNS`, from the
//! template's `AlertRouteTopicArns`): [`Policy::check_topics`] refuses the others when the
//! rules are loaded, with the file, line and column.
//!
//! Silences live in their own JSON object (`VIGIL_SILENCES`), so that they can be added during
//! an incident without touching the rules:
//!
//! ```json
//! [{"matchers": {"alertname": "CheckoutLatencyHigh"}, "ends_at": "2026-11-25T12:00:00Z",
//!   "created_by": "on-call", "comment": "database failover in progress"}]
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use vigil_shared::{Error, Result, Span};

/// Label matchers: every named label must have exactly this value.
pub type Matchers = BTreeMap<String, String>;

/// Whether `labels` satisfy every matcher.
pub fn matches(matchers: &Matchers, labels: &BTreeMap<String, String>) -> bool {
    matchers
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Re-send a still-firing alert this often (none: never).
    #[serde(default)]
    pub repeat_interval: Option<Span>,
    /// First match wins; no match goes to the default topic.
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub inhibit: Vec<Inhibition>,
    /// A heartbeat that always fires, so a receiver notices when Vigil itself stops.
    #[serde(default)]
    pub watchdog: Option<Watchdog>,
    /// Notifications of alerts sharing these labels (and topic) go out as one message. Empty:
    /// every alert is notified on its own.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before its first message (default 0: the
    /// alerts that change in the same run are grouped, nothing more is awaited).
    #[serde(default)]
    pub group_wait: Span,
    /// The least time between two messages of one group (default 5m).
    #[serde(default = "default_group_interval")]
    pub group_interval: Span,
    /// Which CloudWatch alarms page through Vigil.
    #[serde(default)]
    pub alarms: AlarmOptIn,
    /// The weekly review's settings (none: the defaults).
    #[serde(default)]
    pub review: Option<crate::review::ReviewPolicy>,
    /// Where routes send besides a topic: chat, SMS, PagerDuty, webhooks ([`crate::receiver`]).
    #[serde(default)]
    pub receivers: Vec<crate::receiver::Receiver>,
    /// Recurring windows routes mute in, or page only in ([`crate::time_interval`]).
    #[serde(default)]
    pub time_intervals: Vec<crate::time_interval::NamedInterval>,
    /// `time_intervals`, checked when the rules file is loaded.
    #[serde(skip)]
    pub intervals: Vec<crate::time_interval::TimeInterval>,
}

/// CloudWatch alarms go through the policy only when they opt in: a `vigil:` line in the
/// alarm's description, or a name starting with one of `name_prefixes`. Every other alarm of
/// the account (auto-scaling's target-tracking alarms, Vigil's own ops alarms) is ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlarmOptIn {
    #[serde(default)]
    pub name_prefixes: Vec<String>,
}

fn default_group_interval() -> Span {
    Policy::NONE.group_interval
}

impl Policy {
    /// No routes, repeats, inhibition, watchdog or grouping: every alert notified on its own,
    /// to the default topic.
    pub const NONE: Policy = Policy {
        repeat_interval: None,
        routes: Vec::new(),
        inhibit: Vec::new(),
        watchdog: None,
        group_by: Vec::new(),
        group_wait: Span(0),
        group_interval: Span(300),
        alarms: AlarmOptIn {
            name_prefixes: Vec::new(),
        },
        review: None,
        receivers: Vec::new(),
        time_intervals: Vec::new(),
        intervals: Vec::new(),
    };
}

impl Default for Policy {
    fn default() -> Self {
        Self::NONE
    }
}

/// The Watchdog: every `interval` one `Watchdog` notification, whatever the metrics say. A
/// receiver alarms on its absence (a dead man's switch); silences do not apply to it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    pub interval: Span,
    #[serde(default)]
    pub labels: Matchers,
}

/// The Watchdog's alert name.
pub const WATCHDOG: &str = "Watchdog";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(rename = "match")]
    pub matchers: Matchers,
    /// The SNS topic its notifications go to, as text; with where it stands in the file, so a
    /// refused topic is named with its line. A route names a topic or a receiver.
    #[serde(default)]
    pub topic_arn: Option<Spanned<String>>,
    /// The receiver (`policy.receivers`) its notifications go to.
    #[serde(default)]
    pub receiver: Option<Spanned<String>>,
    /// Its notifications are muted while one of these time intervals holds.
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Its notifications are muted unless one of these holds (none: always active).
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
}

/// A firing alert matching `source_match` mutes alerts matching `target_match` that have the
/// same values for the `equal` labels.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inhibition {
    pub source_match: Matchers,
    pub target_match: Matchers,
    #[serde(default)]
    pub equal: Vec<String>,
}

pub use crate::silence::Silence;

/// Why a notification was not sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "muted_by")]
pub enum Muted {
    Silence {
        comment: String,
        ends_at: DateTime<Utc>,
    },
    Inhibition {
        source: String,
    },
    /// The alert's route mutes in `interval` (or, `outside_active`, pages only in it and in
    /// its other active intervals).
    TimeInterval {
        interval: String,
        outside_active: bool,
    },
}

impl Policy {
    /// The topic for an alert with `labels`: the first matching route's, else `default` (also
    /// when that route names a receiver: [`crate::receiver::fan_out`] then sends to it).
    pub fn topic<'a>(&'a self, labels: &BTreeMap<String, String>, default: &'a str) -> &'a str {
        self.routes
            .iter()
            .find(|r| matches(&r.matchers, labels))
            .and_then(|r| r.topic_arn.as_ref())
            .map_or(default, |t| t.value.as_str())
    }

    /// The receiver of the first route matching `labels`, when that route names one.
    pub fn receiver_for(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Option<&crate::receiver::Receiver> {
        let name = self
            .routes
            .iter()
            .find(|r| matches(&r.matchers, labels))?
            .receiver
            .as_ref()?;
        self.receivers.iter().find(|r| r.name == name.value)
    }

    /// Each route names a topic or a known receiver, and not both; the receivers are valid.
    pub fn check_receivers(&self) -> std::result::Result<(), String> {
        crate::receiver::check(self)?;
        for (i, route) in self.routes.iter().enumerate() {
            match (&route.topic_arn, &route.receiver) {
                (Some(_), Some(r)) => {
                    return Err(format!(
                        "{}:{}: policy.routes[{i}]: a route names a topic_arn or a receiver, not both",
                        r.referenced.line(),
                        r.referenced.column()
                    ));
                }
                (None, None) => {
                    return Err(format!(
                        "policy.routes[{i}]: a route needs a topic_arn or a receiver"
                    ));
                }
                (None, Some(r)) if !self.receivers.iter().any(|x| x.name == r.value) => {
                    return Err(format!(
                        "{}:{}: policy.routes[{i}].receiver: no receiver named {:?} in policy.receivers",
                        r.referenced.line(),
                        r.referenced.column(),
                        r.value
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Refuses a route to a topic outside `allowed` (the stack's topics): SNS would answer
    /// AuthorizationError for each of its messages.
    pub fn check_topics(&self, origin: &str, allowed: &BTreeSet<String>) -> Result<()> {
        if let Some(topic) = self.review.as_ref().and_then(|r| r.topic_arn.as_ref()) {
            if !allowed.contains(topic) {
                return Err(Error::Config(format!(
                    "{origin}: policy.review.topic_arn: {topic:?} is not a topic this stack may \
                     publish to; add it to the stack's AlertRouteTopicArns parameter"
                )));
            }
        }
        for (i, receiver) in self.receivers.iter().enumerate() {
            if let Some(topic) = receiver.topics().find(|t| !allowed.contains(*t)) {
                return Err(Error::Config(format!(
                    "{origin}: policy.receivers[{i}] ({}): {topic:?} is not a topic this stack \
                     may publish to; add it to the stack's AlertRouteTopicArns parameter",
                    receiver.name
                )));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let Some(topic) = &route.topic_arn else {
                continue;
            };
            if !allowed.contains(&topic.value) {
                let list: Vec<&str> = allowed.iter().map(String::as_str).collect();
                return Err(Error::Config(format!(
                    "{origin}:{}:{}: policy.routes[{i}].topic_arn: {:?} is not a topic this stack \
                     may publish to ({}); add it to the stack's AlertRouteTopicArns parameter",
                    topic.referenced.line(),
                    topic.referenced.column(),
                    topic.value,
                    list.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Whether a notification for `labels` is muted at `now`, given the silences and the
    /// labels of the alerts firing now.
    pub fn muted(
        &self,
        labels: &BTreeMap<String, String>,
        silences: &[Silence],
        firing: &[&BTreeMap<String, String>],
        now: DateTime<Utc>,
    ) -> Option<Muted> {
        self.inhibitor(firing).muted(labels, silences, now)
    }

    /// The firing alerts indexed for inhibition, once per run: each alert then costs one
    /// lookup per inhibit rule, not a scan of every firing alert (10,000 alerts changing at
    /// once stay linear).
    pub fn inhibitor<'a>(&'a self, firing: &[&'a BTreeMap<String, String>]) -> Inhibitor<'a> {
        let by_rule = self
            .inhibit
            .iter()
            .map(|rule| {
                let mut sources: HashMap<Vec<Option<&'a str>>, Vec<&'a BTreeMap<String, String>>> =
                    HashMap::new();
                for source in firing.iter().filter(|s| matches(&rule.source_match, s)) {
                    let key = equal_values(&rule.equal, source);
                    let found = sources.entry(key).or_default();
                    // Two sources per key are enough: one of them is not the alert itself.
                    if found.len() < 2 {
                        found.push(source);
                    }
                }
                (rule, sources)
            })
            .collect();
        Inhibitor {
            by_rule,
            policy: self,
        }
    }

    /// Checks `time_intervals` and the routes' names of them; keeps them checked in
    /// `intervals`.
    pub fn compile_intervals(&mut self) -> std::result::Result<(), String> {
        let mut compiled = Vec::new();
        for (i, spec) in self.time_intervals.iter().enumerate() {
            let interval = crate::time_interval::TimeInterval::new(spec)
                .map_err(|e| format!("policy.time_intervals[{i}]: {e}"))?;
            if compiled
                .iter()
                .any(|c: &crate::time_interval::TimeInterval| c.name == interval.name)
            {
                return Err(format!(
                    "policy.time_intervals[{i}]: the name {:?} is used twice",
                    interval.name
                ));
            }
            compiled.push(interval);
        }
        for (i, route) in self.routes.iter().enumerate() {
            for name in route
                .mute_time_intervals
                .iter()
                .chain(&route.active_time_intervals)
            {
                if !compiled.iter().any(|c| c.name == *name) {
                    return Err(format!(
                        "policy.routes[{i}]: no time interval named {name:?} in policy.time_intervals"
                    ));
                }
            }
        }
        self.intervals = compiled;
        Ok(())
    }

    /// The interval `name`, checked at load; for a policy built otherwise, checked now.
    fn interval(
        &self,
        name: &str,
    ) -> Option<std::borrow::Cow<'_, crate::time_interval::TimeInterval>> {
        if let Some(i) = self.intervals.iter().find(|i| i.name == name) {
            return Some(std::borrow::Cow::Borrowed(i));
        }
        self.time_intervals
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| crate::time_interval::TimeInterval::new(s).ok())
            .map(std::borrow::Cow::Owned)
    }

    /// Whether the route of `labels` mutes at `now`: one of its mute intervals holds, or it
    /// has active intervals and none holds.
    pub fn muted_by_time(
        &self,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Option<Muted> {
        let route = self.routes.iter().find(|r| matches(&r.matchers, labels))?;
        if let Some(name) = route
            .mute_time_intervals
            .iter()
            .find(|n| self.interval(n).is_some_and(|i| i.contains(now)))
        {
            return Some(Muted::TimeInterval {
                interval: name.clone(),
                outside_active: false,
            });
        }
        if !route.active_time_intervals.is_empty()
            && !route
                .active_time_intervals
                .iter()
                .any(|n| self.interval(n).is_some_and(|i| i.contains(now)))
        {
            return Some(Muted::TimeInterval {
                interval: route.active_time_intervals.join(", "),
                outside_active: true,
            });
        }
        None
    }
}

fn equal_values<'a>(
    equal: &[String],
    labels: &'a BTreeMap<String, String>,
) -> Vec<Option<&'a str>> {
    equal
        .iter()
        .map(|k| labels.get(k).map(String::as_str))
        .collect()
}

/// Inhibit rules with the firing alerts that can act as their sources, by their `equal`
/// label values.
pub struct Inhibitor<'a> {
    by_rule: Vec<(&'a Inhibition, SourcesByEqual<'a>)>,
    policy: &'a Policy,
}

type SourcesByEqual<'a> = HashMap<Vec<Option<&'a str>>, Vec<&'a BTreeMap<String, String>>>;

impl Inhibitor<'_> {
    /// Whether a notification for `labels` is muted at `now`: by an active silence, by its
    /// route's time intervals, or by a firing alert other than itself (matched on its full
    /// label set, a `*` rule's series labels included) that an inhibit rule names as a source.
    pub fn muted(
        &self,
        labels: &BTreeMap<String, String>,
        silences: &[Silence],
        now: DateTime<Utc>,
    ) -> Option<Muted> {
        if let Some(s) = silences.iter().find(|s| s.active(now) && s.matches(labels)) {
            return Some(Muted::Silence {
                comment: s.comment.clone(),
                ends_at: s.ends_at,
            });
        }
        if let Some(muted) = self.policy.muted_by_time(labels, now) {
            return Some(muted);
        }
        for (rule, sources) in &self.by_rule {
            if !matches(&rule.target_match, labels) {
                continue;
            }
            let source = sources
                .get(&equal_values(&rule.equal, labels))
                .and_then(|found| found.iter().find(|source| **source != labels));
            if let Some(source) = source {
                return Some(Muted::Inhibition {
                    source: source.get("alertname").cloned().unwrap_or_default(),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn policy() -> Policy {
        vigil_shared::config::parse_yaml(
            "p.yaml",
            r#"
repeat_interval: 4h
routes:
  - {match: {team: payments}, topic_arn: "arn:payments"}
  - {match: {severity: ticket}, topic_arn: "arn:tickets"}
inhibit:
  - source_match: {alertname: CheckoutDown}
    target_match: {team: checkout}
    equal: [service]
"#,
        )
        .expect("policy")
    }

    #[test]
    fn grouping_defaults() {
        let p = policy();
        assert!(p.group_by.is_empty());
        assert_eq!((p.group_wait, p.group_interval), (Span(0), Span(300)));
    }

    #[test]
    fn routes_by_labels_first_match_wins() {
        let p = policy();
        assert_eq!(
            p.topic(
                &labels(&[("team", "payments"), ("severity", "ticket")]),
                "arn:default"
            ),
            "arn:payments"
        );
        assert_eq!(
            p.topic(
                &labels(&[("team", "search"), ("severity", "ticket")]),
                "arn:default"
            ),
            "arn:tickets"
        );
        assert_eq!(
            p.topic(&labels(&[("team", "search")]), "arn:default"),
            "arn:default"
        );
    }

    #[test]
    fn silences_mute_while_active() {
        let p = policy();
        let s = vec![Silence {
            id: String::new(),
            matchers: vec![crate::silence::Matcher::equal("alertname", "HighLatency")],
            starts_at: Some(t("2026-11-25T08:00:00Z")),
            ends_at: t("2026-11-25T10:00:00Z"),
            created_by: "on-call".into(),
            comment: "failover".into(),
            created_at: None,
        }];
        let l = labels(&[("alertname", "HighLatency"), ("team", "search")]);
        assert!(p.muted(&l, &s, &[], t("2026-11-25T07:59:00Z")).is_none());
        assert!(matches!(
            p.muted(&l, &s, &[], t("2026-11-25T09:00:00Z")),
            Some(Muted::Silence { .. })
        ));
        assert!(p.muted(&l, &s, &[], t("2026-11-25T10:00:00Z")).is_none());
        let other = labels(&[("alertname", "Other")]);
        assert!(
            p.muted(&other, &s, &[], t("2026-11-25T09:00:00Z"))
                .is_none()
        );
    }

    #[test]
    fn a_firing_source_inhibits_targets_of_the_same_service() {
        let p = policy();
        let down = labels(&[
            ("alertname", "CheckoutDown"),
            ("team", "checkout"),
            ("service", "api"),
        ]);
        let slow = labels(&[
            ("alertname", "HighLatency"),
            ("team", "checkout"),
            ("service", "api"),
        ]);
        let slow_elsewhere = labels(&[
            ("alertname", "HighLatency"),
            ("team", "checkout"),
            ("service", "web"),
        ]);
        let now = t("2026-11-25T09:00:00Z");
        assert_eq!(
            p.muted(&slow, &[], &[&down], now),
            Some(Muted::Inhibition {
                source: "CheckoutDown".into()
            })
        );
        assert!(p.muted(&slow_elsewhere, &[], &[&down], now).is_none());
        assert!(p.muted(&slow, &[], &[], now).is_none());
        // The source does not inhibit itself.
        assert!(p.muted(&down, &[], &[&down], now).is_none());
    }

    /// A firing series of a `*` rule (labels with its pod) inhibits by its full label set.
    #[test]
    fn series_labels_inhibit() {
        let p: Policy = vigil_shared::config::parse_yaml(
            "p.yaml",
            "inhibit: [{source_match: {alertname: NodeDown}, target_match: {severity: page}, equal: [node]}]\n",
        )
        .expect("policy");
        let node_down = labels(&[("alertname", "NodeDown"), ("node", "n1")]);
        let on_n1 = labels(&[
            ("alertname", "checkout-5xx"),
            ("severity", "page"),
            ("node", "n1"),
        ]);
        let on_n2 = labels(&[
            ("alertname", "checkout-5xx"),
            ("severity", "page"),
            ("node", "n2"),
        ]);
        let now = t("2026-11-25T09:00:00Z");
        assert!(p.muted(&on_n1, &[], &[&node_down], now).is_some());
        assert!(p.muted(&on_n2, &[], &[&node_down], now).is_none());
    }

    #[test]
    fn routes_to_topics_outside_the_stack_are_refused_with_their_line() {
        let p = policy();
        let allowed: BTreeSet<String> = ["arn:payments".to_owned()].into();
        let err = p
            .check_topics("rules.yaml", &allowed)
            .expect_err("arn:tickets is not allowed")
            .to_string();
        assert!(err.contains("rules.yaml:5:"), "{err}");
        assert!(
            err.contains("policy.routes[1].topic_arn") && err.contains("arn:tickets"),
            "{err}"
        );
        let both: BTreeSet<String> = ["arn:payments".to_owned(), "arn:tickets".to_owned()].into();
        assert!(p.check_topics("rules.yaml", &both).is_ok());
    }
}
