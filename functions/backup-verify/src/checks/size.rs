//! The newest backup is not suspiciously small.

use serde_json::json;
use vigil_shared::ObjectInfo;

use crate::config::BackupSet;
use crate::report::{Check, CheckResult};

/// The newest backup is at least `min_size_bytes`, and not smaller than `1 - max_size_drop` of
/// the median of the (up to five) backups before it: a sudden drop in size is how a truncated
/// or empty dump shows.
pub fn check(set: &BackupSet, objects: &[ObjectInfo]) -> Option<CheckResult> {
    let mut sorted: Vec<&ObjectInfo> = objects.iter().collect();
    sorted.sort_by_key(|o| (o.last_modified, o.key.as_str()));
    let (newest, before) = sorted.split_last()?;
    let mut previous: Vec<u64> = before.iter().rev().take(5).map(|o| o.size).collect();
    previous.sort_unstable();
    let median = previous.get(previous.len() / 2).copied();
    let floor = median.map(|m| (m as f64 * (1.0 - set.max_size_drop)).floor() as u64);
    let too_small = newest.size < set.min_size_bytes;
    let dropped = floor.is_some_and(|f| newest.size < f);
    let detail = if too_small {
        format!(
            "newest backup {} is {} bytes, under the minimum of {}: the dump is probably empty or truncated",
            newest.key, newest.size, set.min_size_bytes
        )
    } else if dropped {
        format!(
            "newest backup {} is {} bytes, {:.0} % less than the median of the backups before it ({} bytes): check that the dump is complete",
            newest.key,
            newest.size,
            100.0 * (1.0 - newest.size as f64 / median.unwrap_or(1).max(1) as f64),
            median.unwrap_or(0)
        )
    } else {
        format!("newest backup is {} bytes", newest.size)
    };
    Some(CheckResult::judged(
        Check::Size,
        !too_small && !dropped,
        detail,
        json!({
            "newest_key": newest.key,
            "newest_size": newest.size,
            "min_size_bytes": set.min_size_bytes,
            "median_previous_size": median,
            "max_size_drop": set.max_size_drop,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures::{object, set};
    use crate::report::Status;
    use proptest::prelude::*;

    #[test]
    fn a_drop_or_a_tiny_dump_is_found() {
        let s = set(", min_count: 3, min_size_bytes: 100");
        let kept = [
            object("db/1", 1000, 0),
            object("db/2", 1100, 24),
            object("db/3", 1050, 48),
        ];
        assert_eq!(check(&s, &kept).map(|c| c.status), Some(Status::Ok));
        let dropped = [kept[0].clone(), kept[1].clone(), object("db/3", 400, 48)];
        let c = check(&s, &dropped).expect("check");
        assert_eq!(c.status, Status::Failed);
        assert!(c.detail.contains("less than the median"), "{}", c.detail);
        let tiny = [object("db/1", 50, 0)];
        assert!(
            check(&s, &tiny)
                .expect("check")
                .detail
                .contains("under the minimum")
        );
        assert!(check(&s, &[]).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(sizes in proptest::collection::vec(0u64..u64::MAX / 4, 0..12), drop in 0.0f64..1.0) {
            let mut s = set("");
            s.max_size_drop = drop;
            let objects: Vec<ObjectInfo> = sizes.iter().enumerate().map(|(i, z)| object(&format!("db/{i}"), *z, i as i64)).collect();
            let c = check(&s, &objects);
            prop_assert_eq!(c.is_some(), !objects.is_empty());
        }
    }
}
