//! The weekly alert review: what each rule did to the people it pages over the last week,
//! from the function's own history ([`crate::history`]), and which rules to fix first.
//!
//! Per rule (and CloudWatch alarm that opted in):
//! - **pages**: firing notifications sent in the week (first and repeats; a muted episode
//!   sends none), and **night pages**, those in the quiet hours of the team's time zone;
//! - **episodes** that fired in the week, **short** ones (ended within `short`, 10 minutes by
//!   default), the **median** and longest **time firing**, and those **still firing**;
//! - **resolved before anyone could act**: paged episodes that ended within `response` (15
//!   minutes by default) of their first page; the page asked for an action nobody had time
//!   to take.
//!
//! Findings, and the order to fix rules in: a rule that woke someone at night for an episode
//! that ended before anyone could act comes first, then by the pages no one could act on, the
//! short episodes, the night pages and the pages. Only rules with a finding are to fix.
//!
//! In the rules file (every field optional):
//!
//! ```yaml
//! policy:
//!   review:
//!     quiet_hours: "22:00-07:00"
//!     timezone: Europe/Berlin
//!     response: 15m
//!     short: 10m
//!     topic_arn: arn:aws:sns:eu-west-1:123456789012:team-leads   # default: the stack's topic
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use vigil_shared::{Notification, Span};

use crate::history::{Episode, Source};
use crate::message::{human, stamp};
use crate::outbox::StateFile;
use crate::quiet::QuietHours;
use crate::state::Phase;

/// The review's settings as the rules file gives them (`policy.review`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReviewPolicy {
    #[serde(default = "night")]
    pub quiet_hours: String,
    #[serde(default = "utc")]
    pub timezone: String,
    /// How long on-call needs to act on a page.
    #[serde(default = "fifteen_minutes")]
    pub response: Span,
    /// An episode shorter than this is likely noise.
    #[serde(default = "ten_minutes")]
    pub short: Span,
    /// Where the review goes (default: the stack's topic).
    #[serde(default)]
    pub topic_arn: Option<String>,
}

fn night() -> String {
    "22:00-07:00".to_owned()
}

fn utc() -> String {
    "UTC".to_owned()
}

fn fifteen_minutes() -> Span {
    Span(900)
}

fn ten_minutes() -> Span {
    Span(600)
}

impl Default for ReviewPolicy {
    fn default() -> Self {
        Self {
            quiet_hours: night(),
            timezone: utc(),
            response: fifteen_minutes(),
            short: ten_minutes(),
            topic_arn: None,
        }
    }
}

impl ReviewPolicy {
    /// The quiet hours, or why they are invalid.
    pub fn quiet(&self) -> Result<QuietHours, String> {
        QuietHours::parse(&self.quiet_hours, &self.timezone)
    }
}

/// The days a review covers.
pub const DAYS: i64 = 7;

/// What is wrong with a rule, by the week's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// It paged at night for an episode that ended before anyone could act.
    WokeSomeoneForNothing,
    /// Half or more of its paged episodes ended before anyone could act.
    NotActionable,
    /// Half or more of its episodes were short.
    Flapping,
    /// More than one notification a day.
    Noisy,
    /// An episode has fired for more than a day: a page nobody acts on, or a threshold that
    /// no longer means trouble.
    FiringForDays,
}

impl Finding {
    /// What it says of the rule, after "It ".
    pub fn describe(self) -> &'static str {
        match self {
            Finding::WokeSomeoneForNothing => {
                "woke someone at night for an episode that ended before anyone could act"
            }
            Finding::NotActionable => {
                "paged mostly for episodes that ended before anyone could act: wait longer (for, M of N) or page on a symptom users feel"
            }
            Finding::Flapping => {
                "flapped, most of its episodes short: add keep_firing_for or M of N, or widen the window"
            }
            Finding::Noisy => {
                "notified more than once a day: raise the threshold, or (if it pages) make it a ticket"
            }
            Finding::FiringForDays => {
                "fired for more than a day: fix the cause, or the threshold no longer means trouble"
            }
        }
    }
}

/// One rule's week.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleReview {
    pub alert: String,
    pub source: Source,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub severity: String,
    /// Whether its severity wakes someone (`page`, `critical`, `emergency`): only then are its
    /// notifications pages.
    pub paging: bool,
    /// Series that fired.
    pub series: usize,
    /// Firing notifications sent in the week: one per run that sent any (a run that fired 20
    /// series of the rule, grouped or not, sent one page).
    pub notifications: usize,
    /// The notifications of a paging rule, and those in the quiet hours.
    pub pages: usize,
    pub night_pages: usize,
    /// Episodes firing during the week (some may have fired before it), the short ones
    /// among those that ended, and those still firing at its end.
    pub episodes: usize,
    pub short_episodes: usize,
    pub still_firing: usize,
    pub median_firing_seconds: Option<i64>,
    pub longest_firing_seconds: Option<i64>,
    /// Paged episodes that ended within the response time of their first page.
    pub resolved_before_response: usize,
    /// Night pages of episodes that ended before anyone could act.
    pub night_pages_for_nothing: usize,
    pub findings: Vec<Finding>,
}

/// The week's review.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Review {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Set when the history is complete only from this instant, after `from`: it began (the
    /// function was deployed) or dropped episodes for room during the week.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_from: Option<DateTime<Utc>>,
    pub quiet_hours: String,
    pub time_zone: String,
    pub response_seconds: u64,
    pub short_seconds: u64,
    pub pages: usize,
    pub night_pages: usize,
    pub notifications: usize,
    pub episodes: usize,
    pub resolved_before_response: usize,
    /// The rules to fix first, in order.
    pub fix_first: Vec<String>,
    /// Every rule that fired or paged, the ones to fix first at the top.
    pub rules: Vec<RuleReview>,
}

/// An episode as the review sees it: ended, or still firing at the week's end.
struct Seen<'a> {
    alert: &'a str,
    key: &'a str,
    source: Source,
    severity: &'a str,
    fired_at: DateTime<Utc>,
    /// None: still firing at the week's end.
    ended: Option<DateTime<Utc>>,
    pages: Vec<DateTime<Utc>>,
}

fn from_history(e: &Episode, until: DateTime<Utc>) -> Seen<'_> {
    Seen {
        alert: &e.alert,
        key: &e.key,
        source: e.source,
        severity: &e.severity,
        fired_at: e.fired_at,
        // An episode that ended after the week (a late retry of the review) was still firing.
        ended: (e.resolved_at <= until).then_some(e.resolved_at),
        pages: e.pages.clone(),
    }
}

/// The review of the week ending at `until`, from the state's history and its open episodes.
pub fn review(
    state: &StateFile,
    policy: &ReviewPolicy,
    quiet: &QuietHours,
    until: DateTime<Utc>,
) -> Review {
    let from = until - Duration::days(DAYS);
    let (response, short) = (policy.response.signed(), policy.short.signed());
    let mut seen: Vec<Seen<'_>> = state
        .history
        .episodes
        .iter()
        .map(|e| from_history(e, until))
        .collect();
    for (key, a) in &state.alerts {
        if key == crate::policy::WATCHDOG || a.phase != Phase::Firing {
            continue;
        }
        seen.push(Seen {
            alert: a.alertname(key),
            key,
            source: Source::Rule,
            severity: a.labels.get("severity").map_or("", String::as_str),
            fired_at: a.fired_at.unwrap_or(a.active_since),
            ended: None,
            pages: a.page_times(),
        });
    }
    for (name, a) in &state.native {
        if let (true, Some(since)) = (a.in_alarm(), a.since) {
            seen.push(Seen {
                alert: name,
                key: name,
                source: Source::Alarm,
                severity: a.labels.get("severity").map_or("", String::as_str),
                fired_at: since,
                ended: None,
                pages: a.page_times(),
            });
        }
    }
    // Firing during the week: fired before its end, and ended (if at all) after its start.
    seen.retain(|s| s.fired_at < until && s.ended.is_none_or(|e| e > from));

    let mut by_rule: BTreeMap<(&str, Source), Vec<&Seen<'_>>> = BTreeMap::new();
    for s in &seen {
        by_rule.entry((s.alert, s.source)).or_default().push(s);
    }
    let in_week = |t: &DateTime<Utc>| *t >= from && *t < until;
    let mut rules: Vec<RuleReview> = by_rule
        .into_iter()
        .map(|((alert, source), episodes)| {
            let severity = episodes
                .last()
                .map_or_else(String::new, |s| s.severity.to_owned());
            let paging = crate::rules::PAGING_SEVERITIES.contains(&severity.as_str());
            let duration = |s: &Seen<'_>| s.ended.unwrap_or(until) - s.fired_at;
            let before_response = |s: &Seen<'_>| match (s.pages.first(), s.ended) {
                (Some(first), Some(end)) => end - *first < response,
                _ => false,
            };
            // One notification per run that sent any: series fired together page once.
            let mut sent: Vec<DateTime<Utc>> = episodes
                .iter()
                .flat_map(|s| s.pages.iter().copied())
                .filter(in_week)
                .collect();
            sent.sort_unstable();
            sent.dedup();
            let mut for_nothing: Vec<DateTime<Utc>> = episodes
                .iter()
                .filter(|s| before_response(s))
                .flat_map(|s| s.pages.iter().copied())
                .filter(|t| in_week(t) && quiet.contains(*t))
                .collect();
            for_nothing.sort_unstable();
            for_nothing.dedup();
            let night = sent.iter().filter(|t| quiet.contains(**t)).count();
            let short_episodes = episodes
                .iter()
                .filter(|s| s.ended.is_some_and(|e| e - s.fired_at < short))
                .count();
            let paged: Vec<&&Seen<'_>> = episodes
                .iter()
                .filter(|s| s.pages.first().is_some_and(in_week))
                .collect();
            let resolved_before_response = paged.iter().filter(|s| before_response(s)).count();
            let mut durations: Vec<i64> =
                episodes.iter().map(|s| duration(s).num_seconds()).collect();
            durations.sort_unstable();
            let longest = durations.last().copied();
            let (pages, night_pages, night_pages_for_nothing) = if paging {
                (sent.len(), night, for_nothing.len())
            } else {
                (0, 0, 0)
            };
            let mut findings = Vec::new();
            if night_pages_for_nothing > 0 {
                findings.push(Finding::WokeSomeoneForNothing);
            }
            if paging && !paged.is_empty() && 2 * resolved_before_response >= paged.len() {
                findings.push(Finding::NotActionable);
            }
            if episodes.len() >= 2 && 2 * short_episodes >= episodes.len() {
                findings.push(Finding::Flapping);
            }
            if sent.len() > DAYS as usize {
                findings.push(Finding::Noisy);
            }
            if longest.is_some_and(|l| l > 86_400) {
                findings.push(Finding::FiringForDays);
            }
            let mut series: Vec<&str> = episodes.iter().map(|s| s.key).collect();
            series.sort_unstable();
            series.dedup();
            RuleReview {
                alert: alert.to_owned(),
                source,
                severity,
                paging,
                series: series.len(),
                notifications: sent.len(),
                pages,
                night_pages,
                episodes: episodes.len(),
                short_episodes,
                still_firing: episodes.iter().filter(|s| s.ended.is_none()).count(),
                median_firing_seconds: (!durations.is_empty())
                    .then(|| durations[(durations.len() - 1) / 2]),
                longest_firing_seconds: longest,
                resolved_before_response: if paging { resolved_before_response } else { 0 },
                night_pages_for_nothing,
                findings,
            }
        })
        .collect();
    let rank = |r: &RuleReview| {
        (
            r.findings.is_empty(),
            std::cmp::Reverse((
                r.night_pages_for_nothing,
                r.resolved_before_response,
                r.short_episodes,
                r.night_pages,
                r.pages,
                r.notifications,
            )),
        )
    };
    rules.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.alert.cmp(&b.alert)));
    let complete = state.history.complete_since;
    Review {
        from,
        until,
        complete_from: complete.filter(|c| *c > from).map(|c| c.min(until)),
        quiet_hours: policy.quiet_hours.clone(),
        time_zone: quiet.tz.name().to_owned(),
        response_seconds: policy.response.seconds(),
        short_seconds: policy.short.seconds(),
        pages: rules.iter().map(|r| r.pages).sum(),
        night_pages: rules.iter().map(|r| r.night_pages).sum(),
        notifications: rules.iter().map(|r| r.notifications).sum(),
        episodes: rules.iter().map(|r| r.episodes).sum(),
        resolved_before_response: rules.iter().map(|r| r.resolved_before_response).sum(),
        fix_first: rules
            .iter()
            .filter(|r| !r.findings.is_empty())
            .map(|r| r.alert.clone())
            .collect(),
        rules,
    }
}

/// How many rules to fix the message names (the S3 object has them all).
pub const FIX_FIRST_SHOWN: usize = 5;

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn line(r: &RuleReview) -> String {
    let sent = if r.paging {
        format!(
            "{} ({} at night), {} resolved before anyone could act",
            count(r.pages, "page"),
            r.night_pages,
            r.resolved_before_response
        )
    } else {
        count(r.notifications, "notification")
    };
    format!(
        "{}{}: {sent}; {} ({} short, {} still firing), median firing {}",
        r.alert,
        if r.severity.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.severity)
        },
        count(r.episodes, "episode"),
        r.short_episodes,
        r.still_firing,
        r.median_firing_seconds.map_or("-".to_owned(), human),
    )
}

/// The review's one SNS message: the week in a line, the rules to fix first with why, every
/// rule's numbers, and where the full review is (`location`).
pub fn notification(review: &Review, location: &str) -> Notification {
    let mut text = format!(
        "Alert review, {} to {}.\n\n{} ({} at night, {} {}; {} in all) from {} of {}; {} paged episodes resolved before anyone could act (within {} of the page).\n",
        stamp(review.from),
        stamp(review.until),
        count(review.pages, "page"),
        review.night_pages,
        review.quiet_hours,
        review.time_zone,
        count(review.notifications, "notification"),
        count(review.episodes, "episode"),
        count(review.rules.len(), "rule"),
        review.resolved_before_response,
        human(i64::try_from(review.response_seconds).unwrap_or(i64::MAX)),
    );
    if let Some(c) = review.complete_from {
        let _ = write!(
            text,
            "\nThe history is complete only from {}: the counts before it are missing.\n",
            stamp(c)
        );
    }
    if review.fix_first.is_empty() {
        text.push_str("\nNo rule to fix: none paged for nothing, flapped, paged more than once a day or fired for days.\n");
    } else {
        text.push_str("\nFix first:\n");
        for (i, r) in review
            .rules
            .iter()
            .filter(|r| !r.findings.is_empty())
            .take(FIX_FIRST_SHOWN)
            .enumerate()
        {
            let why: Vec<&str> = r.findings.iter().map(|f| f.describe()).collect();
            let _ = write!(
                text,
                "{}. {}\n   It {}.\n",
                i + 1,
                line(r),
                why.join("; it ")
            );
        }
        if review.fix_first.len() > FIX_FIRST_SHOWN {
            let _ = writeln!(
                text,
                "... and {} more in the full review.",
                review.fix_first.len() - FIX_FIRST_SHOWN
            );
        }
    }
    let quiet: Vec<&RuleReview> = review
        .rules
        .iter()
        .filter(|r| r.findings.is_empty())
        .collect();
    if !quiet.is_empty() {
        text.push_str("\nThe other rules that fired:\n");
        for r in quiet {
            let _ = writeln!(text, "- {}", line(r));
        }
    }
    let _ = write!(text, "\nThe full review: {location}\n");
    let details = serde_json::json!({
        "version": 1,
        "kind": "review",
        "location": location,
        "review": review,
    });
    Notification {
        subject: format!(
            "[REVIEW] Alerts, 7 days to {}: {}, {} to fix first",
            review.until.format("%Y-%m-%d"),
            count(review.pages, "page"),
            count(review.fix_first.len(), "rule")
        ),
        message: text,
        attributes: vec![
            ("alertname".to_owned(), REVIEW.to_owned()),
            ("status".to_owned(), "review".to_owned()),
        ],
        details: Some(details),
    }
    .fitted(crate::message::MESSAGE_BUDGET)
}

/// The review's alert name in message attributes and the outbox.
pub const REVIEW: &str = "WeeklyReview";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AlertState;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn episode(alert: &str, severity: &str, fired: &str, minutes: i64, paged: bool) -> Episode {
        let fired_at = t(fired);
        Episode {
            alert: alert.into(),
            key: alert.into(),
            source: Source::Rule,
            severity: severity.into(),
            labels: BTreeMap::new(),
            active_since: fired_at - Duration::minutes(2),
            fired_at,
            resolved_at: fired_at + Duration::minutes(minutes),
            pages: if paged { vec![fired_at] } else { Vec::new() },
        }
    }

    fn week() -> (StateFile, ReviewPolicy, QuietHours) {
        let mut state = StateFile::default();
        let h = &mut state.history;
        h.complete_since = Some(t("2026-11-20T00:00:00Z"));
        // Three nights at 02:00 in Berlin, four minutes each: paged for nothing.
        for day in 24..=26 {
            h.record(episode(
                "NightlyBlip",
                "page",
                &format!("2026-11-{day}T01:00:00Z"),
                4,
                true,
            ));
        }
        // A real outage in the afternoon, forty minutes.
        h.record(episode(
            "CheckoutDown",
            "page",
            "2026-11-27T14:00:00Z",
            40,
            true,
        ));
        // Eight half-hour pages at noon: more than one a day.
        for day in 23..=30 {
            let fired = if day == 23 {
                "2026-11-23T12:00:00Z".to_owned()
            } else {
                format!("2026-11-{day}T06:30:00Z")
            };
            if day == 30 {
                continue;
            }
            h.record(episode("Chatty", "ticket", &fired, 30, true));
        }
        h.record(episode(
            "Chatty",
            "ticket",
            "2026-11-29T09:00:00Z",
            30,
            true,
        ));
        // Before the week, and muted: neither counts as a page this week.
        h.record(episode(
            "CheckoutDown",
            "page",
            "2026-11-22T10:00:00Z",
            5,
            true,
        ));
        h.record(episode("Muted", "page", "2026-11-28T10:00:00Z", 3, false));
        // Ended after the week (a late retry of the review): still firing at its end.
        h.record(episode("LateEnd", "page", "2026-11-30T07:00:00Z", 90, true));
        let fired = t("2026-11-27T00:00:00Z");
        state.alerts.insert(
            "DiskFull".into(),
            AlertState {
                phase: Phase::Firing,
                active_since: fired,
                last_breach: t("2026-11-30T07:59:00Z"),
                fired_at: Some(fired),
                value: Some(97.0),
                notified_at: Some(fired),
                repeats: 0,
                pages: vec![fired],
                labels: BTreeMap::from([
                    ("alertname".to_owned(), "DiskFull".to_owned()),
                    ("severity".to_owned(), "ticket".to_owned()),
                ]),
            },
        );
        let policy = ReviewPolicy {
            timezone: "Europe/Berlin".into(),
            ..ReviewPolicy::default()
        };
        let quiet = policy.quiet().expect("quiet");
        (state, policy, quiet)
    }

    fn rule<'a>(r: &'a Review, name: &str) -> &'a RuleReview {
        r.rules.iter().find(|x| x.alert == name).expect(name)
    }

    #[test]
    fn a_week_is_counted_per_rule_and_the_rules_that_page_for_nothing_come_first() {
        let (state, policy, quiet) = week();
        let r = review(&state, &policy, &quiet, t("2026-11-30T08:00:00Z"));
        assert_eq!(r.from, t("2026-11-23T08:00:00Z"));
        assert_eq!(r.fix_first, ["NightlyBlip", "Chatty", "DiskFull"]);
        let blip = rule(&r, "NightlyBlip");
        assert_eq!(
            (
                blip.pages,
                blip.night_pages,
                blip.episodes,
                blip.short_episodes
            ),
            (3, 3, 3, 3)
        );
        assert_eq!(
            (blip.resolved_before_response, blip.night_pages_for_nothing),
            (3, 3)
        );
        assert_eq!(blip.median_firing_seconds, Some(240));
        assert_eq!(
            blip.findings,
            [
                Finding::WokeSomeoneForNothing,
                Finding::NotActionable,
                Finding::Flapping
            ]
        );
        let down = rule(&r, "CheckoutDown");
        assert_eq!((down.pages, down.episodes, down.night_pages), (1, 1, 0));
        assert!(down.findings.is_empty(), "{down:?}");
        let disk = rule(&r, "DiskFull");
        // A ticket notifies; it pages nobody.
        assert_eq!(
            (
                disk.still_firing,
                disk.notifications,
                disk.pages,
                disk.night_pages
            ),
            (1, 1, 0, 0)
        );
        assert_eq!(disk.longest_firing_seconds, Some(3 * 86_400 + 8 * 3_600));
        assert_eq!(disk.findings, [Finding::FiringForDays]);
        let chatty = rule(&r, "Chatty");
        // 06:30 UTC is 07:30 in Berlin: after the quiet hours.
        assert_eq!((chatty.notifications, chatty.pages), (8, 0));
        assert_eq!(chatty.findings, [Finding::Noisy]);
        let late = rule(&r, "LateEnd");
        assert_eq!((late.still_firing, late.resolved_before_response), (1, 0));
        assert_eq!(late.median_firing_seconds, Some(3_600));
        // Still firing after an hour, no finding: listed among the other rules.
        assert!(late.findings.is_empty(), "{late:?}");
        let muted = rule(&r, "Muted");
        assert_eq!((muted.pages, muted.episodes), (0, 1));
        assert_eq!(r.pages, 3 + 1 + 1, "the paging rules' notifications");
        assert_eq!(r.notifications, 3 + 1 + 1 + 8 + 1);
        assert_eq!(r.complete_from, None, "complete since before the week");
    }

    #[test]
    fn an_incomplete_history_is_said_and_the_message_names_what_to_fix() {
        let (mut state, policy, quiet) = week();
        state.history.complete_since = Some(t("2026-11-25T00:00:00Z"));
        let r = review(&state, &policy, &quiet, t("2026-11-30T08:00:00Z"));
        assert_eq!(r.complete_from, Some(t("2026-11-25T00:00:00Z")));
        let n = notification(&r, "s3://b/reviews/alert/2026-11-30T08-00-00Z.json");
        assert_eq!(
            n.subject,
            "[REVIEW] Alerts, 7 days to 2026-11-30: 5 pages, 3 rules to fix first"
        );
        assert!(
            n.message
                .contains("complete only from 2026-11-25T00:00:00Z"),
            "{}",
            n.message
        );
        assert!(
            n.message.contains("1. NightlyBlip (page): 3 pages (3 at night), 3 resolved before anyone could act; 3 episodes (3 short, 0 still firing), median firing 4m\n   It woke someone at night"),
            "{}",
            n.message
        );
        assert!(
            n.message
                .contains("- CheckoutDown (page): 1 page (0 at night), 0 resolved before anyone could act; 1 episode (0 short"),
            "{}",
            n.message
        );
        assert!(
            n.message
                .ends_with("The full review: s3://b/reviews/alert/2026-11-30T08-00-00Z.json\n")
        );
        let details = n.details.expect("details");
        assert_eq!(details["review"]["fix_first"][0], "NightlyBlip");
        assert_eq!(
            n.attributes,
            [
                ("alertname".to_owned(), REVIEW.to_owned()),
                ("status".to_owned(), "review".to_owned())
            ]
        );
    }

    /// Twenty series of one rule paged by one run (a grouped message, or twenty at once) are
    /// one page of the rule, not twenty.
    #[test]
    fn series_paged_by_one_run_are_one_page() {
        let mut state = StateFile::default();
        for pod in 0..20 {
            let mut e = episode("PodDown", "page", "2026-11-26T14:00:00Z", 30, true);
            e.key = format!("PodDown{{pod=p{pod}}}");
            state.history.record(e);
        }
        let policy = ReviewPolicy::default();
        let quiet = policy.quiet().expect("quiet");
        let r = review(&state, &policy, &quiet, t("2026-11-30T08:00:00Z"));
        let down = rule(&r, "PodDown");
        assert_eq!((down.pages, down.series, down.episodes), (1, 20, 20));
        assert!(down.findings.is_empty(), "{down:?}");
    }

    #[test]
    fn a_quiet_week_has_nothing_to_fix() {
        let policy = ReviewPolicy::default();
        let quiet = policy.quiet().expect("quiet");
        let r = review(
            &StateFile::default(),
            &policy,
            &quiet,
            t("2026-11-30T08:00:00Z"),
        );
        assert!(r.rules.is_empty() && r.fix_first.is_empty());
        let n = notification(&r, "s3://b/r.json");
        assert!(n.message.contains("No rule to fix"), "{}", n.message);
        assert_eq!(
            n.subject,
            "[REVIEW] Alerts, 7 days to 2026-11-30: 0 pages, 0 rules to fix first"
        );
    }
}
