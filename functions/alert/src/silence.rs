//! Silences, after Alertmanager's: label matchers (`=`, `!=`, `=~`, `!~`), a time range, who
//! and why. They live in one JSON object in S3 (`VIGIL_SILENCES`), which `vigil silence`
//! edits with conditional writes and the function reads at every run:
//!
//! ```json
//! {"version": 1,
//!  "silences": [{"id": "5f3a...", "matchers": [{"name": "alertname", "op": "=", "value": "CheckoutDown"},
//!                                             {"name": "service", "op": "=~", "value": "check.*"}],
//!                "starts_at": "2026-11-25T08:00:00Z", "ends_at": "2026-11-25T10:00:00Z",
//!                "created_by": "on-call", "comment": "database failover"}],
//!  "audit": [{"at": "2026-11-25T08:00:00Z", "by": "on-call", "action": "add", "id": "5f3a..."}]}
//! ```
//!
//! As in Alertmanager, a label an alert does not have reads as the empty string (so
//! `team!="x"` matches an alert without `team`), and a regular expression must match the whole
//! value. A hand-written list of silences (`[{"matchers": {"alertname": "X"}, ...}]`, a map
//! meaning equality) still reads. A silence that cannot be read (a broken expression, a
//! missing end) is skipped with a warning and the others apply: a typo in one silence never
//! mutes everything, nor stops the paging.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// How a matcher compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }
}

/// One label matcher. A regular expression is compiled once, when the matcher is made.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (self.name.as_str(), self.op, self.value.as_str())
            == (other.name.as_str(), other.op, other.value.as_str())
    }
}

impl Matcher {
    /// A matcher, or why it is invalid (an empty name, a broken expression).
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
        {
            return Err(format!("{name:?} is not a label name"));
        }
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("{name}{}{value:?}: {e}", op.as_str()))?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    pub fn equal(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            op: Op::Equal,
            value: value.to_owned(),
            regex: None,
        }
    }

    /// `name=value`, `name!=value`, `name=~regex`, `name!~regex`; the value may be quoted
    /// (`service=~"check.*"`), with `\\` and `\"` inside the quotes, as amtool takes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let at = text
            .find(['=', '!'])
            .ok_or_else(|| format!("{text:?} is not name=value (or !=, =~, !~)"))?;
        let (name, rest) = text.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Equal, v)
        } else {
            return Err(format!("{text:?} is not name=value (or !=, =~, !~)"));
        };
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => unquote(quoted).ok_or_else(|| {
                format!("{text:?}: a quoted value must end at its closing \" (write \\\" for a quote inside)")
            })?,
            None => value.to_owned(),
        };
        Self::new(name.trim(), op, &value)
    }

    /// Whether `labels` satisfy the matcher; a missing label is the empty string.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => v == self.value,
            (Op::NotEqual, _) => v != self.value,
            (Op::Regex, Some(r)) => r.is_match(v),
            (Op::NotRegex, Some(r)) => !r.is_match(v),
            // Unreachable by construction: a regular-expression matcher always has its regex.
            (Op::Regex | Op::NotRegex, None) => false,
        }
    }
}

/// The text of a quoted value after its opening quote, unescaped (`\\` and `\"`), when it
/// ends at its closing quote.
fn unquote(rest: &str) -> Option<String> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.next().is_none().then_some(out),
            c => out.push(c),
        }
    }
    None
}

impl fmt::Display for Matcher {
    /// As [`Matcher::parse`] reads it back: the value quoted, `\` and `"` escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{}\"{escaped}\"", self.name, self.op.as_str())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatcherRepr {
    name: String,
    #[serde(default = "equal")]
    op: Op,
    value: String,
}

fn equal() -> Op {
    Op::Equal
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MatcherRepr {
            name: self.name.clone(),
            op: self.op,
            value: self.value.clone(),
        }
        .serialize(s)
    }
}

/// Matchers as a list (`[{"name", "op", "value"}]` or `["name=~value"]`) or, as earlier
/// versions wrote them, a map of label to value meaning equality.
fn matchers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Matcher>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        Text(String),
        Object(MatcherRepr),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Many {
        Map(BTreeMap<String, String>),
        List(Vec<One>),
    }
    let out: Result<Vec<Matcher>, String> = match Many::deserialize(d)? {
        Many::Map(map) => map
            .iter()
            .map(|(k, v)| Matcher::new(k, Op::Equal, v))
            .collect(),
        Many::List(list) => list
            .into_iter()
            .map(|m| match m {
                One::Text(t) => Matcher::parse(&t),
                One::Object(o) => Matcher::new(&o.name, o.op, &o.value),
            })
            .collect(),
    };
    out.map_err(serde::de::Error::custom)
}

/// A silence: alerts matching every matcher send nothing from `starts_at` until `ends_at`.
/// Fields it does not know are ignored, so a silence written by a newer `vigil` still mutes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Silence {
    /// Set by `vigil silence add`; a hand-written silence may have none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(deserialize_with = "matchers")]
    pub matchers: Vec<Matcher>,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

impl Silence {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|s| s <= now) && now < self.ends_at
    }

    /// Whether it applies to an alert with `labels` (at any time). A silence with no matcher
    /// matches nothing: it would otherwise mute every page.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matchers.is_empty() && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// What was done to the silences, kept in the object beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Add,
    Expire,
    /// Expired silences dropped after [`EXPIRED_KEPT_DAYS`].
    Prune,
}

/// One change of the silences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub at: DateTime<Utc>,
    pub by: String,
    pub action: Action,
    pub id: String,
    /// The silence as it was after the change (for a prune, as it was dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<Silence>,
}

/// Days an expired silence is kept (Alertmanager keeps them 5 days by default).
pub const EXPIRED_KEPT_DAYS: i64 = 5;
/// The most changes kept in the audit trail: the oldest go first.
pub const AUDIT_MAX: usize = 2_000;

/// The silences object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SilencesFile {
    /// The version that wrote it (0: a plain list, or no object yet).
    pub version: u32,
    pub silences: Vec<Silence>,
    pub audit: Vec<Change>,
    /// Entries that could not be read, written back as they were: an edit of the object never
    /// drops what someone wrote by hand, or what a newer version wrote.
    pub unreadable: Vec<Value>,
    pub unreadable_audit: Vec<Value>,
    /// Other top-level fields, kept.
    pub extra: serde_json::Map<String, Value>,
}

/// The version of the object written.
pub const VERSION: u32 = 1;

impl Serialize for SilencesFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let mut list = Vec::with_capacity(self.silences.len() + self.unreadable.len());
        for silence in &self.silences {
            list.push(serde_json::to_value(silence).map_err(S::Error::custom)?);
        }
        list.extend(self.unreadable.iter().cloned());
        let mut audit = Vec::with_capacity(self.audit.len() + self.unreadable_audit.len());
        audit.extend(self.unreadable_audit.iter().cloned());
        for change in &self.audit {
            audit.push(serde_json::to_value(change).map_err(S::Error::custom)?);
        }
        let mut map = s.serialize_map(Some(3 + self.extra.len()))?;
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.serialize_entry("version", &VERSION.max(self.version))?;
        map.serialize_entry("silences", &list)?;
        map.serialize_entry("audit", &audit)?;
        map.end()
    }
}

/// The list of silences of a parsed object, and the object's other fields.
fn split(value: Value) -> Result<(Vec<Value>, serde_json::Map<String, Value>), String> {
    match value {
        Value::Array(list) => Ok((list, serde_json::Map::new())),
        Value::Object(mut o) => {
            let list = match o.remove("silences") {
                Some(Value::Array(l)) => l,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err("`silences` is not a list".to_owned()),
            };
            Ok((list, o))
        }
        _ => Err("neither a list of silences nor an object with `silences`".to_owned()),
    }
}

type Read = (Vec<Silence>, Vec<Value>, Vec<String>);

fn read_silences(list: Vec<Value>) -> Read {
    let (mut silences, mut unreadable, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (i, s) in list.into_iter().enumerate() {
        match serde_json::from_value::<Silence>(s.clone()) {
            Ok(s) => silences.push(s),
            Err(e) => {
                skipped.push(format!("silences[{i}]: {e}"));
                unreadable.push(s);
            }
        }
    }
    (silences, unreadable, skipped)
}

/// What the function needs: the silences of `text` that can be read, and why each other one
/// cannot; the audit trail and every other field are not read.
pub fn parse_silences(text: &str) -> Result<(Vec<Silence>, Vec<String>), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let (list, _) = split(value)?;
    let (silences, _, skipped) = read_silences(list);
    Ok((silences, skipped))
}

/// The whole object, as `vigil silence` edits it: what cannot be read is kept as it is, to be
/// written back. A text that is not JSON at all is an error.
pub fn parse(text: &str) -> Result<(SilencesFile, Vec<String>), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let (list, mut extra) = split(value)?;
    let version = match extra.remove("version") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("`version` {v} is not a version number"))?,
    };
    let (mut audit, mut unreadable_audit) = (Vec::new(), Vec::new());
    match extra.remove("audit") {
        None | Some(Value::Null) => {}
        Some(Value::Array(changes)) => {
            for c in changes {
                match serde_json::from_value::<Change>(c.clone()) {
                    Ok(change) => audit.push(change),
                    Err(_) => unreadable_audit.push(c),
                }
            }
        }
        Some(_) => return Err("`audit` is not a list".to_owned()),
    }
    let (silences, unreadable, skipped) = read_silences(list);
    Ok((
        SilencesFile {
            version,
            silences,
            audit,
            unreadable,
            unreadable_audit,
            extra,
        },
        skipped,
    ))
}

impl SilencesFile {
    /// Adds a silence, with its change.
    pub fn add(&mut self, silence: Silence, by: &str, now: DateTime<Utc>) {
        self.audit.push(Change {
            at: now,
            by: by.to_owned(),
            action: Action::Add,
            id: silence.id.clone(),
            silence: Some(silence.clone()),
        });
        self.silences.push(silence);
        self.trim();
    }

    /// Ends the silence `id` now. `Ok(false)`: it had already ended; `Err`: no such silence.
    pub fn expire(&mut self, id: &str, by: &str, now: DateTime<Utc>) -> Result<bool, String> {
        let s = self
            .silences
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| format!("no silence {id}"))?;
        if s.ends_at <= now {
            return Ok(false);
        }
        s.ends_at = now;
        let after = s.clone();
        self.audit.push(Change {
            at: now,
            by: by.to_owned(),
            action: Action::Expire,
            id: id.to_owned(),
            silence: Some(after),
        });
        self.trim();
        Ok(true)
    }

    /// Drops the silences that ended more than [`EXPIRED_KEPT_DAYS`] ago, each in the audit.
    pub fn prune(&mut self, by: &str, now: DateTime<Utc>) -> usize {
        let horizon = now - chrono::Duration::days(EXPIRED_KEPT_DAYS);
        let (old, kept): (Vec<Silence>, Vec<Silence>) = std::mem::take(&mut self.silences)
            .into_iter()
            .partition(|s| s.ends_at < horizon);
        self.silences = kept;
        let n = old.len();
        for s in old {
            self.audit.push(Change {
                at: now,
                by: by.to_owned(),
                action: Action::Prune,
                id: s.id.clone(),
                silence: Some(s),
            });
        }
        self.trim();
        n
    }

    /// Gives every silence written by hand without an id one, from what it is, so that it
    /// can be expired by id.
    pub fn assign_ids(&mut self) {
        use std::hash::{Hash, Hasher};
        for s in self.silences.iter_mut().filter(|s| s.id.is_empty()) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for m in &s.matchers {
                m.to_string().hash(&mut h);
            }
            s.starts_at.hash(&mut h);
            s.ends_at.hash(&mut h);
            s.created_by.hash(&mut h);
            s.comment.hash(&mut h);
            s.id = format!("{:016x}", h.finish());
        }
    }

    fn trim(&mut self) {
        let readable = AUDIT_MAX.saturating_sub(self.unreadable_audit.len());
        if self.audit.len() > readable {
            let drop = self.audit.len() - readable;
            self.audit.drain(..drop);
        }
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
        s.parse().expect("time")
    }

    #[test]
    fn matchers_compare_as_alertmanagers_do() {
        let l = labels(&[("alertname", "CheckoutDown"), ("service", "checkout")]);
        for (text, want) in [
            ("alertname=CheckoutDown", true),
            ("alertname=\"CheckoutDown\"", true),
            ("alertname!=CheckoutDown", false),
            ("service=~check.*", true),
            ("service=~\"check\"", false),
            ("service!~\"pay.*|search\"", true),
            ("team=\"\"", true),
            ("team!=payments", true),
            ("team=~.+", false),
            ("service =~ checkout", true),
        ] {
            let m = Matcher::parse(text).expect(text);
            assert_eq!(m.matches(&l), want, "{text}");
        }
        for bad in ["alertname", "=x", "service=~(", "a b=c"] {
            assert!(Matcher::parse(bad).is_err(), "{bad}");
        }
        let m = Matcher::parse("service=~\"check.*\"").expect("m");
        assert_eq!(m.to_string(), "service=~\"check.*\"");
        assert_eq!(Matcher::parse(&m.to_string()).expect("again"), m);
        // amtool's escapes inside quotes, and what is printed reads back the same.
        let m = Matcher::parse(r#"path=~"a\\.b\"c""#).expect("escaped");
        assert_eq!(m.value, r#"a\.b"c"#);
        assert_eq!(Matcher::parse(&m.to_string()).expect("again"), m);
        assert!(
            Matcher::parse(r#"a="x"y""#).is_err(),
            "a quote inside, unescaped"
        );
        assert!(Matcher::parse("le:bucket=0.5").is_ok(), "a colon in a name");
    }

    #[test]
    fn the_old_list_and_the_new_object_read_and_a_broken_silence_is_skipped() {
        let old = r#"[{"matchers": {"alertname": "CheckoutDown"}, "ends_at": "2026-11-25T10:00:00Z",
            "created_by": "on-call", "comment": "failover"}]"#;
        let (file, skipped) = parse(old).expect("reads");
        assert!(skipped.is_empty());
        assert_eq!(
            file.silences[0].matchers,
            [Matcher::equal("alertname", "CheckoutDown")]
        );
        let new = r#"{"version": 1, "silences": [
            {"id": "a", "matchers": [{"name": "service", "op": "=~", "value": "check.*"}], "ends_at": "2026-11-25T10:00:00Z"},
            {"id": "b", "matchers": ["service=~("], "ends_at": "2026-11-25T10:00:00Z"},
            {"id": "c", "matchers": ["team!=x"]}
        ], "audit": []}"#;
        let (file, skipped) = parse(new).expect("reads");
        assert_eq!(file.silences.len(), 1, "{skipped:?}");
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].starts_with("silences[1]"), "{skipped:?}");
        assert_eq!(file.unreadable.len(), 2, "kept to be written back");
        assert!(parse("not json").is_err());
        // An audit entry of a newer version never disables the silences.
        let newer = r#"{"silences": [{"id": "a", "matchers": ["x=1"], "ends_at": "2026-11-25T10:00:00Z", "note": "new"}],
            "audit": [{"action": "rename"}]}"#;
        assert_eq!(parse_silences(newer).expect("reads").0.len(), 1);
        assert_eq!(parse(newer).expect("reads").0.unreadable_audit.len(), 1);
        assert!(parse("{\"silences\": 3}").is_err());
        // What a write produces reads back the same.
        let text = serde_json::to_string(&file).expect("json");
        assert_eq!(parse(&text).expect("again").0, file);
    }

    #[test]
    fn a_silence_without_matchers_mutes_nothing() {
        let s = Silence {
            id: "x".into(),
            matchers: Vec::new(),
            starts_at: None,
            ends_at: t("2026-11-25T10:00:00Z"),
            created_by: String::new(),
            comment: String::new(),
            created_at: None,
        };
        assert!(!s.matches(&labels(&[("alertname", "A")])));
    }

    #[test]
    fn changes_are_audited_and_expired_silences_pruned_after_five_days() {
        let now = t("2026-11-25T08:00:00Z");
        let mut f = SilencesFile::default();
        let s = Silence {
            id: "a".into(),
            matchers: vec![Matcher::equal("alertname", "A")],
            starts_at: Some(now),
            ends_at: now + chrono::Duration::hours(2),
            created_by: "ann".into(),
            comment: "deploy".into(),
            created_at: Some(now),
        };
        f.add(s, "ann", now);
        assert_eq!(
            f.expire("a", "bob", now + chrono::Duration::hours(1)),
            Ok(true)
        );
        assert_eq!(
            f.expire("a", "bob", now + chrono::Duration::hours(1)),
            Ok(false)
        );
        assert!(f.expire("zzz", "bob", now).is_err());
        assert_eq!(f.prune("bob", now + chrono::Duration::days(5)), 0);
        assert_eq!(f.prune("bob", now + chrono::Duration::days(6)), 1);
        let actions: Vec<(Action, &str)> =
            f.audit.iter().map(|c| (c.action, c.by.as_str())).collect();
        assert_eq!(
            actions,
            [
                (Action::Add, "ann"),
                (Action::Expire, "bob"),
                (Action::Prune, "bob")
            ]
        );
        assert!(f.silences.is_empty());
    }
}
