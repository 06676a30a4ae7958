//! Messages: what a notification says to people (subject, text), to machines (a JSON body for
//! SQS, Lambda and HTTP subscribers) and to subscription filters (message attributes).
//!
//! Every message fits SNS's 256 KiB: a single alert's is cut to fit, a group's is split into
//! parts, and a group too large for [`MAX_GROUP_PARTS`] parts summarises the members it cannot
//! list.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use vigil_shared::Notification;
use vigil_shared::limits::SNS_MAX_MESSAGE_BYTES;

use crate::budget::Budget;
use crate::evaluate::Target;
use crate::outbox::{Kind, Owed, SetAside};
use crate::receiver::Channel;
use crate::rules::Rule;
use crate::state::{AlertState, Status, Transition};

/// Labels that become SNS message attributes, so subscriptions can filter on them.
pub const ATTRIBUTE_LABELS: [&str; 3] = ["severity", "team", "service"];

/// The most messages one group's notifications are split into.
pub const MAX_GROUP_PARTS: usize = 5;

/// What a message may weigh: SNS's limit less room for the attributes added at publish.
pub const MESSAGE_BUDGET: usize = SNS_MAX_MESSAGE_BYTES - 2_048;

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "no data".to_owned(), |v| v.to_string())
}

/// An instant as messages write it: RFC 3339 to the second, UTC.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A duration as people say it: `42s`, `5m`, `1h 5m`, `1d 1h`.
pub fn human(seconds: i64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Fills `{{ $value }}` and `{{ $labels.NAME }}` in an annotation.
pub fn render(template: &str, value: Option<f64>, labels: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = rest[open + 2..open + close].trim();
        match inner {
            "$value" => out.push_str(&show(value)),
            _ => match inner.strip_prefix("$labels.") {
                Some(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
                None => out.push_str(&rest[open..open + close + 2]),
            },
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// `alertname`, `status`, and the [`ATTRIBUTE_LABELS`] an alert has.
fn attributes(
    alertname: &str,
    status: Status,
    labels: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out = vec![
        ("alertname".to_owned(), alertname.to_owned()),
        ("status".to_owned(), status.as_str().to_owned()),
    ];
    for label in ATTRIBUTE_LABELS {
        if let Some(v) = labels.get(label).filter(|v| !v.is_empty()) {
            out.push((label.to_owned(), v.clone()));
        }
    }
    out
}

/// The notification for a transition of a rule's only series.
pub fn notification(rule: &Rule, transition: &Transition, at: DateTime<Utc>) -> Notification {
    notification_for(&Target::whole(rule), transition, at, None)
}

/// The notification for a transition of one series: a subject and text for people,
/// attributes for filters, cut to fit SNS. A burn-rate alert's states its objective's error
/// budget left when the run read one.
pub fn notification_for(
    target: &Target<'_>,
    transition: &Transition,
    at: DateTime<Utc>,
    budget: Option<&Budget>,
) -> Notification {
    let rule = target.rule;
    let c = rule.condition;
    let status = transition.status();
    let (value, active_since) = match transition {
        Transition::Firing {
            value,
            active_since,
        }
        | Transition::Resolved {
            value,
            active_since,
            ..
        } => (*value, *active_since),
    };
    let dims = target
        .dimensions
        .iter()
        .map(|d| format!("{}={}", d.name, d.value))
        .collect::<Vec<_>>()
        .join(", ");
    let headline = match transition {
        Transition::Firing { active_since, .. } => format!(
            "{} is FIRING (condition first seen holding at {}).",
            rule.alert,
            stamp(*active_since)
        ),
        Transition::Resolved { fired_at, .. } => {
            format!(
                "{} is RESOLVED (fired at {}).",
                rule.alert,
                stamp(*fired_at)
            )
        }
    };
    let measured = format!(
        "{metric} ({stat} per {period}) in {ns} {{{dims}}}",
        metric = rule.metric.name,
        stat = rule.metric.stat,
        period = rule.metric.period,
        ns = rule.metric.namespace,
    );
    let compared = match &rule.expression {
        None => measured.clone(),
        Some(e) => format!("{e} (m = {measured})"),
    };
    let mut text = match &rule.burn {
        // A burn-rate alert: the rate, its windows and the events it counts.
        Some(b) => format!(
            "{headline}\n\nThe error budget of {slo} ({objective} % of events good) burned \
             {value} times as fast as it allows over the last {long}, as of {at}; the alert \
             fires while both the last {long} and the last {short} burn faster than \
             {threshold} times. {counts}.\n",
            slo = b.slo,
            objective = b.objective_percent(),
            value = show(value),
            long = b.windows.long,
            short = b.windows.short,
            at = stamp(at),
            threshold = c.threshold,
            counts = counted_series(rule, b, &measured),
        ),
        None => format!(
            "{headline}\n\n{compared} was {value} at {at}; \
             the rule fires when {m} of {n} data points are {op} {threshold}.\n",
            value = show(value),
            at = stamp(at),
            m = rule.datapoints_to_alarm(),
            n = rule.evaluation_periods(),
            op = c.operator.symbol(),
            threshold = c.threshold,
        ),
    };
    if let (Some(b), Some(burn)) = (budget, &rule.burn) {
        text.push_str(&budget_line(b, burn));
    }
    for (key, title) in [
        ("summary", "Summary"),
        ("description", "Description"),
        ("runbook", "What to do"),
        ("runbook_url", "Runbook"),
    ] {
        if let Some(v) = rule.annotations.get(key) {
            text.push_str(&format!("\n{title}: {}", render(v, value, &target.labels)));
        }
    }
    if !rule.labels.is_empty() {
        let labels: Vec<String> = rule
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!("\nLabels: {}", labels.join(", ")));
    }
    let annotations: BTreeMap<&str, String> = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.as_str(), render(v, value, &target.labels)))
        .collect();
    let details = serde_json::json!({
        "version": 1,
        "status": status,
        "alertname": rule.alert,
        "labels": target.labels,
        "annotations": annotations,
        "value": value,
        "at": at,
        "active_since": active_since,
        "condition": {
            "namespace": rule.metric.namespace,
            "metric": rule.metric.name,
            "dimensions": target.dimensions.iter().map(|d| (d.name.clone(), d.value.clone())).collect::<BTreeMap<_, _>>(),
            "stat": rule.metric.stat,
            "period_seconds": rule.metric.period.seconds(),
            "expression": rule.expression,
            "operator": c.operator.symbol(),
            "threshold": c.threshold,
            "datapoints_to_alarm": rule.datapoints_to_alarm(),
            "evaluation_periods": rule.evaluation_periods(),
            "slo": rule.burn.as_ref().map(|b| serde_json::json!({
                "name": b.slo,
                "objective_percent": b.objective_percent(),
                "window_seconds": b.window.seconds(),
                "long_window_seconds": b.windows.long.seconds(),
                "short_window_seconds": b.windows.short.seconds(),
                "burn_rate_factor": b.windows.factor,
                "budget": budget.map(|bud| {
                    let events = !matches!(b.counted, crate::slo::Counted::Ratio { .. });
                    serde_json::json!({
                        "left_percent": bud.left_percent(),
                        "bad_percent": if bud.events > 0.0 {
                            (1e6 * bud.bad / bud.events).round() / 1e4
                        } else {
                            0.0
                        },
                        "events": events.then_some(bud.events),
                        "bad_events": events.then_some(bud.bad),
                        "since": bud.since,
                        "until": bud.until,
                    })
                }),
            })),
        },
    });
    Notification {
        details: Some(details),
        subject: format!(
            "[{}] {}: {} {} {} {}{}",
            status.as_str().to_uppercase(),
            rule.alert,
            // A burn-rate alert compares the budget's burn rate, not its metric.
            rule.burn
                .as_ref()
                .map_or(rule.metric.name.as_str(), |_| "burn rate"),
            show(value),
            c.operator.symbol(),
            c.threshold,
            match budget.filter(|_| rule.burn.is_some()) {
                Some(b) if b.left > 0.0 => format!(", budget left {} %", b.left_percent()),
                Some(_) => ", budget spent".to_owned(),
                None => String::new(),
            }
        ),
        message: text,
        attributes: attributes(&rule.alert, status, &target.labels),
    }
    .fitted(MESSAGE_BUDGET)
}

/// What a burn-rate alert's series count, as its message says it.
fn counted_series(rule: &Rule, burn: &crate::slo::Burn, measured: &str) -> String {
    let input = rule
        .inputs
        .get(crate::slo::COUNTED_INPUT)
        .map_or_else(String::new, |i| {
            format!("{} ({}) in {}", i.name, i.stat, i.namespace)
        });
    match burn.counted {
        crate::slo::Counted::Errors => format!("Events: {measured}; errors: {input}"),
        crate::slo::Counted::Good => format!("Events: {measured}; good events: {input}"),
        crate::slo::Counted::Ratio { percent } => format!(
            "Error ratio ({}): {measured}, each period weighing the same",
            if percent { "percent" } else { "fraction" }
        ),
    }
}

/// The budget left, as the message body states it: how much, of which window, from how
/// many events.
fn budget_line(b: &Budget, burn: &crate::slo::Burn) -> String {
    let window = crate::slo::days(burn.window);
    let left = if b.left > 0.0 {
        format!("{} % of the {window} budget", b.left_percent())
    } else {
        format!(
            "none: the {window} budget is spent ({} % of it used)",
            ((1.0 - b.left) * 1_000.0).round() / 10.0
        )
    };
    let share = if b.events > 0.0 {
        100.0 * b.bad / b.events
    } else {
        0.0
    };
    let share = (share * 1e4).round() / 1e4;
    let allowed = ((1.0 - burn.objective) * 1e6).round() / 1e4;
    let since = stamp(b.since);
    match burn.counted {
        crate::slo::Counted::Ratio { .. } => format!(
            "\nError budget left: {left}. Since {since}, the error ratio averaged {share} % (the objective allows {allowed} %).\n"
        ),
        _ => format!(
            "\nError budget left: {left}. Since {since}, {bad} of {events} events were bad ({share} %; the objective allows {allowed} %).\n",
            bad = b.bad,
            events = b.events,
        ),
    }
}

/// The resolved message of a firing alert whose rule or series is gone: `reason` says which,
/// the labels kept in its state say what it was.
pub fn resolved_without_rule(
    key: &str,
    state: &AlertState,
    reason: &str,
    at: DateTime<Utc>,
) -> Notification {
    let alertname = state.alertname(key).to_owned();
    let labels: Vec<String> = state
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let fired_at = state.fired_at.unwrap_or(state.active_since);
    Notification {
        subject: format!("[RESOLVED] {key}: {reason}"),
        message: format!(
            "{key} is RESOLVED (fired at {}): {reason}.\n\nIt is no longer evaluated, so Vigil \
             ends its episode here rather than leave it firing for ever.\nLabels: {}",
            stamp(fired_at),
            labels.join(", ")
        ),
        attributes: attributes(&alertname, Status::Resolved, &state.labels),
        details: Some(serde_json::json!({
            "version": 1,
            "status": Status::Resolved,
            "alertname": alertname,
            "labels": state.labels,
            "value": state.value,
            "at": at,
            "active_since": state.active_since,
            "reason": reason,
        })),
    }
    .fitted(MESSAGE_BUDGET)
}

/// The Watchdog's message: always firing, so its absence is noticed.
pub fn watchdog(
    labels: &BTreeMap<String, String>,
    interval: vigil_shared::Span,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Notification {
    Notification {
        details: Some(serde_json::json!({
            "version": 1,
            "status": Status::Firing,
            "alertname": crate::policy::WATCHDOG,
            "labels": labels,
            "at": now,
            "active_since": since,
        })),
        subject: "[FIRING] Watchdog: Vigil's alert evaluation is running".to_owned(),
        message: format!(
            "This message arrives every {interval} while Vigil evaluates its rules. It is not a \
             problem; its absence is. Alarm on it not arriving (a dead man's switch).\n\n\
             Sent at {}.",
            stamp(now)
        ),
        attributes: attributes(crate::policy::WATCHDOG, Status::Firing, labels),
    }
}

/// The announcement of notifications set aside on `topic_arn`: what could not be delivered
/// and why, on the default topic, once.
pub fn undeliverable(topic_arn: &str, items: &[&SetAside], at: DateTime<Utc>) -> Notification {
    let reasons: BTreeSet<&str> = items.iter().map(|i| i.reason.as_str()).collect();
    let mut text = format!(
        "Vigil could not deliver {} notification(s) to {topic_arn} and has set them aside \
         (kept in the alert state, counted in the NotificationsSetAside metric).\n\nReason: {}\n\n\
         Fix the topic or the route (policy.routes in the rules file; the stack's \
         AlertRouteTopicArns), then page the owners of these alerts:\n",
        items.len(),
        reasons.into_iter().collect::<Vec<_>>().join("; ")
    );
    let mut listed = 0;
    for item in items {
        let line = format!("- {} ({})\n", item.subject, item.key);
        if text.len() + line.len() > 100_000 {
            break;
        }
        text.push_str(&line);
        listed += 1;
    }
    if listed < items.len() {
        text.push_str(&format!("... and {} more.\n", items.len() - listed));
    }
    Notification {
        subject: format!(
            "[UNDELIVERABLE] {} notification(s) to {}",
            items.len(),
            topic_arn.rsplit(':').next().unwrap_or(topic_arn)
        ),
        message: text,
        attributes: vec![
            ("alertname".to_owned(), "VigilUndeliverable".to_owned()),
            ("status".to_owned(), Status::Firing.as_str().to_owned()),
            ("severity".to_owned(), "page".to_owned()),
        ],
        details: Some(serde_json::json!({
            "version": 1,
            "status": Status::Firing,
            "alertname": "VigilUndeliverable",
            "topic_arn": topic_arn,
            "at": at,
            "set_aside": items.iter().take(listed).map(|i| serde_json::json!({
                "key": i.key, "subject": i.subject, "reason": i.reason,
            })).collect::<Vec<_>>(),
        })),
    }
    .fitted(MESSAGE_BUDGET)
}

/// The longest a group's `alertname` attribute gets (the rules it names, comma-separated).
const ATTRIBUTE_MAX: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, with `...` when cut.
fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    format!(
        "{}...",
        vigil_shared::notify::cut(text, max.saturating_sub(3))
    )
}

/// The compact lines of a group's part: the text line and the record of each member.
type Lines = Vec<(String, serde_json::Value)>;

/// A member of a group, in one line and one small record.
fn compact(m: &Owed) -> (String, serde_json::Value) {
    let series: Vec<String> = m
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (
        format!(
            "{} {} {{{}}}",
            m.status.as_str().to_uppercase(),
            m.rule,
            series.join(", ")
        ),
        serde_json::json!({
            "key": m.key,
            "status": m.status,
            "alertname": m.rule,
            "labels": m.labels,
        }),
    )
}

/// The messages for the notifications of one group: one message when they fit, else parts of
/// compact lines, at most [`MAX_GROUP_PARTS`]; members beyond those are counted in the first
/// part's summary. Each part carries the keys of the members it lists, and every member is in
/// exactly one part's `members` (the counted ones in the last part's).
pub fn grouped(group_key: &str, group_by: &[String], members: Vec<Owed>) -> Vec<Owed> {
    if members.len() == 1 {
        return members;
    }
    let firing = members
        .iter()
        .filter(|m| m.status == Status::Firing)
        .count();
    let status = if firing > 0 {
        Status::Firing
    } else {
        Status::Resolved
    };
    let common: BTreeMap<String, String> = group_by
        .iter()
        .filter_map(|l| members[0].labels.get(l).map(|v| (l.clone(), v.clone())))
        .collect();
    let group_text = common
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let group_name = if group_text.is_empty() {
        "alerts".to_owned()
    } else {
        group_text.clone()
    };
    // The rules in the order they first appear, each once.
    let mut seen_names = BTreeSet::new();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m.rule.as_str())
        .filter(|n| seen_names.insert(*n))
        .collect();
    let mut by_rule: BTreeMap<(&str, Status), usize> = BTreeMap::new();
    for m in &members {
        *by_rule.entry((m.rule.as_str(), m.status)).or_default() += 1;
    }
    let summary = by_rule
        .iter()
        .map(|((rule, s), n)| format!("{rule} {}: {n}", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut attrs = vec![
        (
            "alertname".to_owned(),
            capped(&names.join(","), ATTRIBUTE_MAX),
        ),
        ("status".to_owned(), status.as_str().to_owned()),
    ];
    for label in ATTRIBUTE_LABELS {
        let values: BTreeSet<&str> = members
            .iter()
            .filter_map(|m| m.labels.get(label).map(String::as_str))
            .filter(|v| !v.is_empty())
            .collect();
        if values.len() == 1 {
            if let Some(v) = values.first() {
                attrs.push((label.to_owned(), (*v).to_owned()));
            }
        }
    }
    let subject = |part: Option<(usize, usize)>| {
        let count = if firing > 0 { firing } else { members.len() };
        let mut s = format!(
            "[{}:{count}] {group_name}: {}",
            status.as_str().to_uppercase(),
            capped(&names.join(", "), ATTRIBUTE_MAX)
        );
        if let Some((i, n)) = part {
            s = format!("({i}/{n}) {s}");
        }
        s
    };
    let header = format!(
        "{} notifications for {}: {firing} firing, {} resolved ({summary}).\n",
        members.len(),
        if group_text.is_empty() {
            "one group".to_owned()
        } else {
            group_text.clone()
        },
        members.len() - firing
    );
    let owed = |key: String, notification: Notification, keys: Vec<String>| Owed {
        key: key.clone(),
        topic_arn: members[0].topic_arn.clone(),
        rule: "group".to_owned(),
        severity: members[0].severity.clone(),
        labels: common.clone(),
        status,
        kind: Kind::Group,
        members: keys,
        notification,
        attempts: 0,
        lease: None,
        last_error: None,
        channel: members[0].channel.clone(),
        // Each group message is its own episode (its own chat thread): a group's members come
        // and go, and a thread kept for the group would hide every later page inside it.
        episode: key,
    };
    let hash = vigil_shared::notify::fnv1a(
        members
            .iter()
            .flat_map(|m| m.key.bytes().chain(std::iter::once(b'\n'))),
    );
    let keys: Vec<String> = members.iter().map(|m| m.key.clone()).collect();

    // An SMS says the group's subject: one message, never parts (each would be an SMS), and
    // no member's text or details to build.
    if members[0].channel == Channel::Sms {
        let sms = Notification {
            subject: subject(None),
            message: header.clone(),
            attributes: attrs.clone(),
            details: None,
        };
        return vec![owed(format!("group/{hash:016x}"), sms, keys)];
    }
    // The whole group in one message, every member's own text and details.
    let mut text = header.clone();
    for m in &members {
        text.push_str(&format!(
            "\n----- {}\n{}\n",
            m.notification.subject, m.notification.message
        ));
    }
    let whole = Notification {
        subject: subject(None),
        message: text,
        attributes: attrs.clone(),
        details: Some(serde_json::json!({
            "version": 1,
            "status": status,
            "group": common,
            "group_key": group_key,
            "alerts": members.iter().map(|m| m.notification.details.clone()).collect::<Vec<_>>(),
        })),
    };
    if whole.wire_size() <= MESSAGE_BUDGET {
        return vec![owed(format!("group/{hash:016x}"), whole, keys)];
    }

    // Parts of compact lines, filled greedily to the budget.
    let part_of = |lines: &[(String, serde_json::Value)], intro: &str| Notification {
        subject: String::new(),
        message: format!(
            "{intro}\n{}",
            lines
                .iter()
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ),
        attributes: attrs.clone(),
        details: Some(serde_json::json!({
            "version": 1,
            "status": status,
            "group": common,
            "group_key": group_key,
            "alerts": lines.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
        })),
    };
    // Sizes are added up per line (the text twice on the wire, the record in six machine
    // copies, each JSON-escaped) rather than re-measured: a part is measured once at the end.
    let escaped = |s: &str| serde_json::to_string(s).map_or(s.len() * 2, |j| j.len());
    let base = part_of(&[], &header).wire_size() + 1_024;
    let limit = MESSAGE_BUDGET - 8_192;
    let mut parts: Vec<(Lines, Vec<String>)> = vec![(vec![], vec![])];
    let mut size = base;
    let mut unlisted = 0usize;
    for m in &members {
        let (line, record) = compact(m);
        // The line is in the text twice and, escaped twice, in the six machine copies of
        // the details' `text`; the record is in those six copies, escaped once more.
        let line_once = escaped(&line);
        let line_twice = escaped(&serde_json::to_string(&line).unwrap_or_default());
        let delta = 2 * line_once + 6 * line_twice + 6 * escaped(&record.to_string());
        let current_empty = parts.last().is_none_or(|(lines, _)| lines.is_empty());
        if size + delta > limit && !current_empty {
            if parts.len() >= MAX_GROUP_PARTS {
                if let Some((_, ids)) = parts.last_mut() {
                    ids.push(m.key.clone());
                }
                unlisted += 1;
                continue;
            }
            parts.push((vec![], vec![]));
            size = base;
        }
        size += delta;
        if let Some((lines, ids)) = parts.last_mut() {
            lines.push((line, record));
            ids.push(m.key.clone());
        }
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (lines, ids))| {
            let mut intro = header.clone();
            if unlisted > 0 {
                intro.push_str(&format!(
                    "{unlisted} of them are not listed in these {n} messages (SNS's size \
                     limit); the counts above include them.\n"
                ));
            }
            let mut n_part = part_of(&lines, &intro);
            n_part.subject = subject(Some((i + 1, n)));
            owed(
                format!("group/{hash:016x}/part-{}", i + 1),
                n_part.fitted(MESSAGE_BUDGET),
                ids,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::load;

    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: HighLatency
        metric: {namespace: Shop, name: latency, dimensions: {service: api}, stat: Average, period: 1m}
        condition: {operator: ">", threshold: 250}
        evaluation_periods: 3
        datapoints_to_alarm: 2
        labels: {severity: page, team: checkout, service: api, other: x}
        annotations:
          summary: "Checkout latency is {{ $value }} ms on {{ $labels.service }}"
          runbook_url: "https://runbooks.example.com/latency"
"#;

    fn rule() -> Rule {
        load("t.yaml", RULES).expect("valid").remove(0)
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn annotations_are_templated() {
        let labels: BTreeMap<String, String> = [("service".to_owned(), "api".to_owned())].into();
        assert_eq!(
            render(
                "{{ $value }} on {{$labels.service}}{{ $labels.none }}",
                Some(3.5),
                &labels
            ),
            "3.5 on api"
        );
        assert_eq!(
            render("no data: {{ $value }}", None, &labels),
            "no data: no data"
        );
        assert_eq!(
            render("{{ other }} {{ unclosed", None, &labels),
            "{{ other }} {{ unclosed"
        );
    }

    #[test]
    fn notifications_are_actionable_and_filterable() {
        let r = rule();
        let firing = Transition::Firing {
            value: Some(312.5),
            active_since: t("2026-11-25T07:58:00Z"),
        };
        let n = notification(&r, &firing, t("2026-11-25T08:00:00Z"));
        assert_eq!(n.subject, "[FIRING] HighLatency: latency 312.5 > 250");
        assert!(
            n.message
                .contains("Summary: Checkout latency is 312.5 ms on api"),
            "{}",
            n.message
        );
        assert!(
            n.message
                .contains("Runbook: https://runbooks.example.com/latency")
        );
        assert!(n.message.contains("2 of 3 data points"));
        let attrs: BTreeMap<_, _> = n.attributes.iter().cloned().collect();
        assert_eq!(attrs.get("severity").map(String::as_str), Some("page"));
        assert_eq!(attrs.get("status").map(String::as_str), Some("firing"));
        assert!(!attrs.contains_key("other"));
        let resolved = Transition::Resolved {
            value: Some(90.0),
            active_since: t("2026-11-25T07:58:00Z"),
            fired_at: t("2026-11-25T07:59:00Z"),
        };
        let n = notification(&r, &resolved, t("2026-11-25T08:10:00Z"));
        assert_eq!(n.subject, "[RESOLVED] HighLatency: latency 90 > 250");
        assert!(
            n.message
                .starts_with("HighLatency is RESOLVED (fired at 2026-11-25T07:59:00Z).")
        );
    }

    #[test]
    fn an_annotation_too_large_for_sns_is_cut_not_refused() {
        let mut r = rule();
        r.annotations
            .insert("description".into(), "d".repeat(400_000));
        let firing = Transition::Firing {
            value: Some(312.5),
            active_since: t("2026-11-25T07:58:00Z"),
        };
        let n = notification(&r, &firing, t("2026-11-25T08:00:00Z"));
        assert!(n.wire_size() <= MESSAGE_BUDGET);
        assert!(n.clone().sanitized().is_ok());
    }

    fn member(i: usize, status: Status) -> Owed {
        let r = rule();
        let mut labels = crate::evaluate::alert_labels(&r);
        labels.insert("pod".into(), format!("checkout-{i:05}"));
        let transition = Transition::Firing {
            value: Some(300.0),
            active_since: t("2026-11-25T07:58:00Z"),
        };
        let mut n = notification(&r, &transition, t("2026-11-25T08:00:00Z"));
        n.message.push_str(&"context ".repeat(100));
        Owed {
            key: format!("HighLatency{{pod=checkout-{i:05}}}/1/firing"),
            topic_arn: "arn:t".into(),
            rule: r.alert.clone(),
            severity: "page".into(),
            labels,
            status,
            kind: Kind::Alert,
            members: vec![],
            notification: n,
            attempts: 0,
            lease: None,
            last_error: None,
            channel: Default::default(),
            episode: String::new(),
        }
    }

    /// Members of two rules interleaved name each rule once; an empty label value never
    /// becomes an attribute (SNS refuses one).
    #[test]
    fn group_attributes_name_each_rule_once_and_skip_empty_values() {
        let members: Vec<Owed> = (0..6)
            .map(|i| {
                let mut m = member(i, Status::Firing);
                m.rule = if i % 2 == 0 { "A".into() } else { "B".into() };
                m.labels.insert("service".into(), String::new());
                m
            })
            .collect();
        let group = grouped("arn:t|team=checkout", &["team".to_owned()], members);
        let attrs: BTreeMap<_, _> = group[0].notification.attributes.iter().cloned().collect();
        assert_eq!(attrs["alertname"], "A,B");
        assert!(!attrs.contains_key("service"));
        assert_eq!(
            group[0].notification.subject,
            "[FIRING:6] team=checkout: A, B"
        );
    }

    #[test]
    fn a_small_group_is_one_message_with_every_member() {
        let group = grouped(
            "arn:t|team=checkout",
            &["team".to_owned()],
            (0..3).map(|i| member(i, Status::Firing)).collect(),
        );
        assert_eq!(group.len(), 1);
        assert_eq!(group[0].members.len(), 3);
        assert_eq!(
            group[0].notification.subject,
            "[FIRING:3] team=checkout: HighLatency"
        );
        assert!(
            group[0]
                .notification
                .message
                .contains("----- [FIRING] HighLatency")
        );
    }

    /// 1,600 alerts made one 10.5 MB message that SNS refused; now parts that fit, each
    /// member listed once, and a huge group summarised beyond five parts.
    #[test]
    fn a_large_group_is_split_into_parts_that_fit_and_counts_the_rest() {
        for size in [200, 1_600, 10_000] {
            let members: Vec<Owed> = (0..size)
                .map(|i| {
                    member(
                        i,
                        if i % 7 == 0 {
                            Status::Resolved
                        } else {
                            Status::Firing
                        },
                    )
                })
                .collect();
            let parts = grouped("arn:t|team=checkout", &["team".to_owned()], members);
            assert!(
                parts.len() > 1 && parts.len() <= MAX_GROUP_PARTS,
                "{size}: {}",
                parts.len()
            );
            let mut listed: Vec<&String> = parts.iter().flat_map(|p| &p.members).collect();
            assert_eq!(listed.len(), size, "every member in one part");
            listed.sort();
            listed.dedup();
            assert_eq!(listed.len(), size, "no member in two parts");
            for p in &parts {
                assert!(p.notification.wire_size() <= MESSAGE_BUDGET, "{size}");
                assert!(p.notification.clone().sanitized().is_ok());
            }
            let first = &parts[0].notification;
            assert!(
                first
                    .message
                    .contains(&format!("{size} notifications for team=checkout")),
                "{}",
                &first.message[..200]
            );
            assert!(first.subject.starts_with("(1/"), "{}", first.subject);
            let keys: BTreeSet<&String> = parts.iter().map(|p| &p.key).collect();
            assert_eq!(keys.len(), parts.len());
        }
    }
}
