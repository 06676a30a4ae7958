//! `vigil silence add|list|expire`: amtool's silences, on the object the alert function reads
//! (`VIGIL_SILENCES`, `config/silences.json` in the stack's bucket).
//!
//! Every change is a conditional write (`If-Match` on the object's entity tag, or
//! `If-None-Match: *` for the first), applied again to a fresh read when another writer got
//! there first, so two people silencing at once both get their silence. A change is applied
//! by its silence's id, so a write whose answer was lost and is retried adds nothing twice.
//! Each change prunes silences that ended more than five days ago and is kept in the object's
//! audit trail (who, when, what).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use serde::Serialize;
use vigil_alert::silence::{self, Matcher, Silence, SilencesFile};
use vigil_shared::cas::{self, StateLocation};
use vigil_shared::{Error, ObjectStore, Result};

fn parse_file(bytes: &[u8]) -> Result<SilencesFile> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Config(format!("the silences object is not UTF-8: {e}")))?;
    let (file, _) =
        silence::parse(text).map_err(|e| Error::Config(format!("the silences object: {e}")))?;
    if file.version > silence::VERSION {
        return Err(Error::Config(format!(
            "the silences object was written by a newer vigil (version {}; this one writes {}): \
             upgrade vigil before editing it",
            file.version,
            silence::VERSION
        )));
    }
    Ok(file)
}

/// The silences object as it is, and why any entry of it cannot be read.
pub async fn load(
    store: &impl ObjectStore,
    at: &StateLocation,
) -> Result<(SilencesFile, Vec<String>)> {
    match store.get_tagged(&at.bucket, &at.key).await? {
        None => Ok((SilencesFile::default(), Vec::new())),
        Some((bytes, _)) => {
            let text = String::from_utf8_lossy(&bytes);
            silence::parse(&text).map_err(|e| Error::Config(format!("{at}: {e}")))
        }
    }
}

/// A silence to add, as the command line gives it.
#[derive(Clone, Debug)]
pub struct NewSilence {
    pub matchers: Vec<Matcher>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

/// A silence's id: 16 hexadecimal digits from the time, the process and what it silences.
pub fn new_id(now: DateTime<Utc>, new: &NewSilence) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    now.timestamp_nanos_opt().unwrap_or_default().hash(&mut h);
    std::process::id().hash(&mut h);
    for m in &new.matchers {
        m.to_string().hash(&mut h);
    }
    new.created_by.hash(&mut h);
    new.comment.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Why a silence cannot be added, before anything is written.
pub fn check(new: &NewSilence, now: DateTime<Utc>) -> std::result::Result<(), String> {
    if new.matchers.is_empty() {
        return Err("a silence needs at least one matcher (alertname=...)".to_owned());
    }
    // As Alertmanager: matchers that all match an empty value would silence every alert.
    if new.matchers.iter().all(|m| m.matches(&BTreeMap::new())) {
        return Err(
            "these matchers match every alert (each matches an empty value): name one that must hold, such as alertname=..."
                .to_owned(),
        );
    }
    if new.comment.trim().is_empty() {
        return Err("a silence needs a comment: why, and what to check before it ends".to_owned());
    }
    if new.created_by.trim().is_empty() {
        return Err("a silence needs an author (--author)".to_owned());
    }
    let start = new.starts_at.unwrap_or(now);
    if new.ends_at <= start || new.ends_at <= now {
        return Err(format!(
            "the silence would end at {} before it starts or before now",
            new.ends_at
        ));
    }
    Ok(())
}

/// Adds a silence under `id` ([`new_id`]) and returns it.
pub async fn add(
    store: &impl ObjectStore,
    at: &StateLocation,
    id: String,
    new: NewSilence,
    now: DateTime<Utc>,
) -> Result<Silence> {
    check(&new, now).map_err(Error::InvalidInput)?;
    let silence = Silence {
        id,
        matchers: new.matchers,
        starts_at: Some(new.starts_at.unwrap_or(now)),
        ends_at: new.ends_at,
        created_by: new.created_by,
        comment: new.comment,
        created_at: Some(now),
    };
    let by = silence.created_by.clone();
    cas::update(store, at, "silences", None, parse_file, |file| {
        file.assign_ids();
        if !file.silences.iter().any(|s| s.id == silence.id) {
            file.add(silence.clone(), &by, now);
        }
        file.prune(&by, now);
    })
    .await?;
    Ok(silence)
}

/// What expiring a silence did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expired {
    /// It ended now.
    Now,
    /// It had already ended.
    Already,
    /// No silence has that id.
    Unknown,
}

/// Ends the silences `ids` now. A change applied again (its write lost a race, or landed with
/// its answer lost) may find a silence it ended itself already ended: what any application
/// ended counts as ended now.
pub async fn expire(
    store: &impl ObjectStore,
    at: &StateLocation,
    ids: &[String],
    by: &str,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Expired>> {
    let mut merged: BTreeMap<String, Expired> = BTreeMap::new();
    cas::update(store, at, "silences", None, parse_file, |file| {
        file.assign_ids();
        for id in ids {
            let result = match file.expire(id, by, now) {
                Ok(true) => Expired::Now,
                Ok(false) => Expired::Already,
                Err(_) => Expired::Unknown,
            };
            let seen = merged.entry(id.clone()).or_insert(result);
            *seen = (*seen).min(result);
        }
        file.prune(by, now);
    })
    .await?;
    Ok(merged)
}

/// The silences in force or to come at `now` (and the ended ones with `expired`), soonest end
/// first.
pub fn listed(file: &SilencesFile, now: DateTime<Utc>, expired: bool) -> Vec<&Silence> {
    let mut out: Vec<&Silence> = file
        .silences
        .iter()
        .filter(|s| expired || s.ends_at > now)
        .collect();
    out.sort_by_key(|s| (s.ends_at, s.id.clone()));
    out
}

/// The state of a silence at `now`.
pub fn standing(s: &Silence, now: DateTime<Utc>) -> &'static str {
    if s.ends_at <= now {
        "expired"
    } else if s.starts_at.is_some_and(|t| t > now) {
        "pending"
    } else {
        "active"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::join_all;
    use vigil_shared::testing::{FaultyStore, MemoryStore, StoreFaults};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn at() -> StateLocation {
        StateLocation {
            bucket: "b".into(),
            key: "config/silences.json".into(),
        }
    }

    fn new(who: &str, alert: &str, now: DateTime<Utc>) -> NewSilence {
        NewSilence {
            matchers: vec![Matcher::equal("alertname", alert)],
            starts_at: None,
            ends_at: now + chrono::Duration::hours(2),
            created_by: who.into(),
            comment: format!("{who} is on it"),
        }
    }

    #[test]
    fn a_silence_needs_matchers_a_comment_an_author_and_a_future_end() {
        let now = t("2026-11-25T08:00:00Z");
        assert!(check(&new("ann", "A", now), now).is_ok());
        let mut n = new("ann", "A", now);
        n.matchers.clear();
        assert!(check(&n, now).expect_err("refused").contains("matcher"));
        let mut n = new("ann", "A", now);
        n.comment = " ".into();
        assert!(check(&n, now).expect_err("refused").contains("comment"));
        let mut n = new("", "A", now);
        n.comment = "x".into();
        assert!(check(&n, now).expect_err("refused").contains("author"));
        let mut n = new("ann", "A", now);
        n.ends_at = now;
        assert!(check(&n, now).is_err());
        for everything in ["alertname=~\".*\"", "team=\"\""] {
            let mut n = new("ann", "A", now);
            n.matchers = vec![Matcher::parse(everything).expect("matcher")];
            assert!(
                check(&n, now)
                    .expect_err(everything)
                    .contains("every alert"),
                "{everything}"
            );
        }
        let mut n = new("ann", "A", now);
        n.matchers
            .push(Matcher::parse("team!=\"\"").expect("matcher"));
        assert!(
            check(&n, now).is_ok(),
            "one matcher that must hold is enough"
        );
    }

    /// Silences added at once by many people, on a store that throttles and loses the answers
    /// of writes that landed, over many drawn interleavings: none is lost, none is added
    /// twice, every one is in the audit trail once.
    #[tokio::test(start_paused = true)]
    async fn concurrent_silences_are_all_kept_once_under_s3_faults() {
        let now = t("2026-11-25T08:00:00Z");
        let (mut edits, mut lost, mut doubled) = (0, 0, 0);
        let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
        for seed in 0..100 {
            let memory = MemoryStore::default();
            let store = FaultyStore::new(
                &memory,
                StoreFaults {
                    throttle: 0.1,
                    lost_answer: 0.15,
                    pause_after_write: std::time::Duration::from_millis(5),
                },
                seed,
            );
            let people: Vec<String> = (0..6).map(|i| format!("p{seed}-{i}")).collect();
            let adds = people.iter().map(|who| {
                let store = &store;
                async move {
                    let mut n = new(who, who, now);
                    n.comment = format!("{who}: {seed}");
                    let id = new_id(now, &n);
                    // A command that failed is run again with the id it printed.
                    loop {
                        if let Ok(s) = add(store, &at(), id.clone(), n.clone(), now).await {
                            return s;
                        }
                    }
                }
            });
            let added = join_all(adds).await;
            edits += added.len();
            for (k, n) in store.injected.lock().expect("lock").iter() {
                *faults.entry(k).or_default() += n;
            }
            let (file, skipped) = load(&memory, &at()).await.expect("load");
            assert!(skipped.is_empty());
            for s in &added {
                let kept = file.silences.iter().filter(|k| k.id == s.id).count();
                let audited = file.audit.iter().filter(|c| c.id == s.id).count();
                match kept {
                    0 => lost += 1,
                    1 => {}
                    _ => doubled += 1,
                }
                assert_eq!(audited, kept.min(1), "seed {seed}: {}", s.id);
            }
        }
        eprintln!(
            "{edits} concurrent silence edits, faults injected {faults:?}: {lost} lost, {doubled} doubled"
        );
        assert_eq!((lost, doubled), (0, 0));
    }

    /// A silence written by hand gets an id at the first edit, so it can be expired; what the
    /// command cannot read stays as it was; an object from a newer vigil is not rewritten.
    #[tokio::test]
    async fn hand_written_and_newer_objects_are_kept() {
        let store = MemoryStore::default();
        let now = t("2026-11-25T08:00:00Z");
        let hand = r#"{"version": 1, "owner": "platform", "silences": [
            {"matchers": {"alertname": "A"}, "ends_at": "2026-11-25T10:00:00Z", "comment": "by hand"},
            {"matchers": ["team=~\"(\""], "ends_at": "2026-11-25T10:00:00Z"}],
            "audit": [{"at": "2026-11-25T07:00:00Z", "by": "x", "action": "rename", "id": "q"}]}"#;
        store
            .put(
                "b",
                "config/silences.json",
                hand.as_bytes().to_vec(),
                "application/json",
            )
            .await
            .expect("put");
        let n = new("ann", "B", now);
        add(&store, &at(), new_id(now, &n), n, now)
            .await
            .expect("add");
        let (file, skipped) = load(&store, &at()).await.expect("load");
        assert_eq!(skipped.len(), 1, "the broken one, kept: {skipped:?}");
        assert_eq!(file.unreadable.len(), 1);
        assert_eq!(
            file.unreadable_audit.len(),
            1,
            "the change it does not know"
        );
        assert_eq!(file.extra["owner"], "platform");
        let by_hand = file
            .silences
            .iter()
            .find(|s| s.comment == "by hand")
            .expect("kept");
        assert_eq!(by_hand.id.len(), 16, "given an id");
        let got = expire(&store, &at(), std::slice::from_ref(&by_hand.id), "bob", now)
            .await
            .expect("expire");
        assert_eq!(got[&by_hand.id], Expired::Now);
        store
            .put(
                "b",
                "config/silences.json",
                br#"{"version": 9, "silences": []}"#.to_vec(),
                "application/json",
            )
            .await
            .expect("put");
        let n = new("ann", "C", now);
        let err = add(&store, &at(), new_id(now, &n), n, now)
            .await
            .expect_err("newer");
        assert!(err.to_string().contains("newer vigil"), "{err}");
    }

    #[tokio::test]
    async fn expiring_ends_a_silence_once_and_names_unknown_ids() {
        let store = MemoryStore::default();
        let now = t("2026-11-25T08:00:00Z");
        let n = new("ann", "A", now);
        let s = add(&store, &at(), new_id(now, &n), n, now)
            .await
            .expect("add");
        let later = now + chrono::Duration::minutes(30);
        let got = expire(&store, &at(), &[s.id.clone(), "nope".into()], "bob", later)
            .await
            .expect("expire");
        assert_eq!(got[&s.id], Expired::Now);
        assert_eq!(got["nope"], Expired::Unknown);
        let again = expire(&store, &at(), std::slice::from_ref(&s.id), "bob", later)
            .await
            .expect("again");
        assert_eq!(again[&s.id], Expired::Already);
        let (file, _) = load(&store, &at()).await.expect("load");
        assert!(listed(&file, later, false).is_empty());
        assert_eq!(listed(&file, later, true).len(), 1);
        assert_eq!(standing(&file.silences[0], later), "expired");
        // Five days after it ended, the next change prunes it, in the audit trail.
        let week = later + chrono::Duration::days(6);
        let n = new("cy", "B", week);
        add(&store, &at(), new_id(week, &n), n, week)
            .await
            .expect("add");
        let (file, _) = load(&store, &at()).await.expect("load");
        assert_eq!(file.silences.len(), 1);
        let actions: Vec<silence::Action> = file.audit.iter().map(|c| c.action).collect();
        assert_eq!(
            actions,
            [
                silence::Action::Add,
                silence::Action::Expire,
                silence::Action::Add,
                silence::Action::Prune
            ]
        );
    }
}
