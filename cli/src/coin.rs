//! The coin-flip baseline: a pager that pages at random, as often as the rules did, over the
//! same range. Scored like the rules (a page inside an incident's window counts for it, as if
//! the random pager always named the right service, which only flatters it), averaged over
//! many seeded draws, it turns "better than random" into a number.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::incidents::Incident;

/// SplitMix64: a small, well-mixed generator whose sequence for a seed never changes with a
/// dependency's version, so that a baseline is reproducible from its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0), without modulo bias worth measuring at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The baseline's averages over its draws.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    pub pages: usize,
    pub draws: usize,
    pub seed: u64,
    /// Mean over draws of the share of its pages inside an incident.
    pub precision: Option<f64>,
    /// Mean over draws of the share of incidents with a page inside.
    pub recall: Option<f64>,
    /// Mean over draws (those that detected any) of the median time to the first page.
    pub detect_median_seconds: Option<f64>,
}

/// Whether `t` falls in the window that counts for `incident`: from `margin` before its start
/// to its end.
pub fn within(incident: &Incident, t: DateTime<Utc>, margin: Duration) -> bool {
    t >= incident.start - margin && t <= incident.end
}

/// The median of sorted or unsorted values (the lower middle for an even count).
pub fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

/// `pages` random pages in `since..until`, `draws` times from `seed`, scored against
/// `incidents`.
pub fn coin_flip(
    pages: usize,
    incidents: &[&Incident],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    margin: Duration,
    draws: usize,
    seed: u64,
) -> Baseline {
    let mut rng = SplitMix64::new(seed);
    let span = (until - since).num_seconds().max(1) as u64;
    let (mut precision, mut recall, mut detect, mut detecting) = (0.0, 0.0, 0.0, 0usize);
    let mut times = Vec::with_capacity(pages);
    for _ in 0..draws {
        times.clear();
        times.extend((0..pages).map(|_| since + Duration::seconds(rng.below(span) as i64)));
        times.sort_unstable();
        let inside = times
            .iter()
            .filter(|t| incidents.iter().any(|i| within(i, **t, margin)))
            .count();
        let mut delays: Vec<i64> = incidents
            .iter()
            .filter_map(|i| {
                times
                    .iter()
                    .find(|t| within(i, **t, margin))
                    .map(|t| (*t - i.start).num_seconds().max(0))
            })
            .collect();
        if pages > 0 {
            precision += inside as f64 / pages as f64;
        }
        if !incidents.is_empty() {
            recall += delays.len() as f64 / incidents.len() as f64;
        }
        if let Some(m) = median(&mut delays) {
            detect += m as f64;
            detecting += 1;
        }
    }
    let draws_f = draws.max(1) as f64;
    Baseline {
        pages,
        draws,
        seed,
        precision: (pages > 0 && draws > 0).then(|| precision / draws_f),
        recall: (!incidents.is_empty() && draws > 0).then(|| recall / draws_f),
        detect_median_seconds: (detecting > 0).then(|| detect / detecting as f64),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn incident(start: &str, end: &str) -> Incident {
        Incident {
            id: start.into(),
            title: String::new(),
            start: t(start),
            end: t(end),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn the_sequence_of_a_seed_is_fixed() {
        // The reference implementation's first output from state 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut a = SplitMix64::new(1);
        let first: Vec<u64> = (0..3).map(|_| a.next_u64()).collect();
        assert_eq!(
            first,
            [
                0x910a_2dec_8902_5cc1,
                0xbeeb_8da1_658e_ec67,
                0xf893_a2ee_fb32_555e
            ]
        );
        assert!((0..1000).all(|_| a.below(7) < 7));
    }

    #[test]
    fn a_random_pagers_precision_is_the_share_of_time_in_incidents() {
        // A tenth of the week is incident: 16.8 hours.
        let since = t("2026-11-02T00:00:00Z");
        let until = since + Duration::days(7);
        let one = incident("2026-11-03T00:00:00Z", "2026-11-03T16:48:00Z");
        let b = coin_flip(50, &[&one], since, until, Duration::zero(), 2_000, 7);
        let p = b.precision.expect("pages");
        assert!((p - 0.1).abs() < 0.01, "precision {p}");
        // 50 pages, each inside with p = 0.1: missed only when all 50 miss, 0.9^50 ≈ 0.5 %.
        let r = b.recall.expect("incidents");
        assert!((r - (1.0 - 0.9f64.powi(50))).abs() < 0.01, "recall {r}");
        let again = coin_flip(50, &[&one], since, until, Duration::zero(), 2_000, 7);
        assert_eq!(b, again, "the same seed, the same baseline");
    }

    #[test]
    fn no_pages_no_precision_and_no_incidents_no_recall() {
        let since = t("2026-11-02T00:00:00Z");
        let b = coin_flip(
            0,
            &[],
            since,
            since + Duration::days(1),
            Duration::zero(),
            10,
            1,
        );
        assert_eq!(
            (b.precision, b.recall, b.detect_median_seconds),
            (None, None, None)
        );
    }

    #[test]
    fn the_median_is_the_lower_middle() {
        assert_eq!(median(&mut [5, 1, 3]), Some(3));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2));
        assert_eq!(median(&mut []), None);
    }
}
