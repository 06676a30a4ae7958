//! The run's time: the invocation's deadline, less what writing the report, the metrics and
//! the messages needs. Sets not reached before it are reported as not reached; a restore
//! still reading at it stops and says so.

use std::time::{Duration, Instant};

/// Time kept back from the deadline for the report, metrics, state and messages.
pub const RESERVE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, Default)]
pub struct Budget {
    /// When verifying must stop; `None` for no limit (the command line).
    pub until: Option<Instant>,
}

impl Budget {
    /// No limit.
    pub fn unlimited() -> Self {
        Self { until: None }
    }

    /// Verifying stops [`RESERVE`] before `deadline`.
    pub fn before(deadline: Instant) -> Self {
        Self {
            until: Some(deadline.checked_sub(RESERVE).unwrap_or(deadline)),
        }
    }

    /// From Lambda's deadline (milliseconds since the epoch) and the current wall clock.
    pub fn from_lambda_deadline(deadline_ms: u64, now_ms: u64) -> Self {
        Self::before(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
    }

    pub fn exhausted(&self) -> bool {
        self.until.is_some_and(|u| Instant::now() >= u)
    }

    /// Time left, `None` for no limit.
    pub fn left(&self) -> Option<Duration> {
        self.until
            .map(|u| u.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_back() {
        let b = Budget::from_lambda_deadline(1_000_000 + 900_000, 1_000_000);
        let left = b.left().expect("limited");
        assert!(left <= Duration::from_secs(880) && left > Duration::from_secs(870));
        assert!(!b.exhausted());
        assert!(Budget::from_lambda_deadline(1_000, 2_000).exhausted());
        assert!(Budget::unlimited().left().is_none());
    }
}
