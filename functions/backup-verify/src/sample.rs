//! Which backups a run restores.

use serde::Deserialize;
use vigil_shared::ObjectInfo;

/// Which backups a run restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sample {
    #[default]
    Latest,
    All,
    Random(usize),
    None,
}

impl<'de> Deserialize<'de> for Sample {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Count(usize),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "latest" => Ok(Sample::Latest),
            Raw::Word(w) if w == "all" => Ok(Sample::All),
            Raw::Word(w) if w == "none" => Ok(Sample::None),
            Raw::Count(n) if n > 0 => Ok(Sample::Random(n)),
            _ => Err(serde::de::Error::custom(
                "restore is latest, all, none or a positive number",
            )),
        }
    }
}

/// The backups to restore this run: the newest, all, or `n` picked by a generator seeded with
/// the run's time (different backups on different days, the same ones on a retry).
pub fn sample(objects: &[ObjectInfo], how: Sample, seed: i64) -> Vec<&ObjectInfo> {
    let mut sorted: Vec<&ObjectInfo> = objects.iter().collect();
    sorted.sort_by_key(|o| (o.last_modified, o.key.as_str()));
    match how {
        Sample::None => Vec::new(),
        Sample::Latest => sorted.last().copied().into_iter().collect(),
        Sample::All => sorted,
        Sample::Random(n) if n >= sorted.len() => sorted,
        Sample::Random(n) => {
            let mut state = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
            let mut picked = Vec::with_capacity(n);
            while picked.len() < n {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let o = sorted.remove((state >> 33) as usize % sorted.len());
                picked.push(o);
            }
            picked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};
    use std::collections::BTreeSet;

    fn object(key: &str, at: DateTime<Utc>) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            last_modified: at,
            etag: "\"e\"".into(),
        }
    }

    #[test]
    fn restores_are_sampled() {
        let now = DateTime::UNIX_EPOCH + Duration::days(400);
        let objects: Vec<ObjectInfo> = (0..10)
            .map(|i| object(&format!("db/{i}"), now - Duration::hours(10 - i)))
            .collect();
        let keys = |v: Vec<&ObjectInfo>| v.into_iter().map(|o| o.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(sample(&objects, Sample::Latest, 1)), ["db/9"]);
        assert_eq!(sample(&objects, Sample::All, 1).len(), 10);
        assert!(sample(&objects, Sample::None, 1).is_empty());
        let three = keys(sample(&objects, Sample::Random(3), 42));
        assert_eq!(three.len(), 3);
        assert_eq!(three.iter().collect::<BTreeSet<_>>().len(), 3);
        assert_eq!(
            three,
            keys(sample(&objects, Sample::Random(3), 42)),
            "same seed, same sample"
        );
        assert_eq!(sample(&objects, Sample::Random(30), 1).len(), 10);
        let parsed = crate::config::load(
            "s.yaml",
            "backup_sets:\n  - {name: a, bucket: bbb, max_age: 1h, restore: 3}\n  - {name: b, bucket: bbb, max_age: 1h, restore: all}\n",
        )
        .expect("valid");
        assert_eq!(
            (parsed[0].restore, parsed[1].restore),
            (Sample::Random(3), Sample::All)
        );
        assert!(
            crate::config::load(
                "s.yaml",
                "backup_sets:\n  - {name: a, bucket: bbb, max_age: 1h, restore: some}\n"
            )
            .is_err()
        );
    }
}
