//! The run's time: the invocation's deadline, less what writing the report, the metrics and
//! the messages needs. Sets not reached before it are reported as not reached; a restore
//! still reading at it stops and says so.

use std::time::{Duration, Instant};

/// Time kept back from the deadline for the report, metrics, state and messages.
pub const RESERVE: Duration = Duration::from_secs(20);
/// Time kept back from the deadline by the delivery of messages, for its last state write.
pub const DELIVERY_MARGIN: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Debug, Default)]
pub struct Budget {
    /// When verifying must stop; `None` for no limit (the command line).
    pub until: Option<Instant>,
    /// When publishing must stop (later than `until`: the reserve is for the messages too).
    pub end: Option<Instant>,
}

impl Budget {
    /// No limit.
    pub fn unlimited() -> Self {
        Self {
            until: None,
            end: None,
        }
    }

    /// Verifying stops [`RESERVE`] before `deadline`, publishing [`DELIVERY_MARGIN`] before it.
    pub fn before(deadline: Instant) -> Self {
        Self {
            until: Some(deadline.checked_sub(RESERVE).unwrap_or(deadline)),
            end: Some(deadline.checked_sub(DELIVERY_MARGIN).unwrap_or(deadline)),
        }
    }

    /// From Lambda's deadline (milliseconds since the epoch) and the current wall clock.
    pub fn from_lambda_deadline(deadline_ms: u64, now_ms: u64) -> Self {
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        // A deadline too far to represent is no limit a run could reach.
        match Instant::now().checked_add(left) {
            Some(deadline) => Self::before(deadline),
            None => Self::unlimited(),
        }
    }

    /// Verifying must stop.
    pub fn exhausted(&self) -> bool {
        self.until.is_some_and(|u| Instant::now() >= u)
    }

    /// Publishing must stop.
    pub fn over(&self) -> bool {
        self.end.is_some_and(|e| Instant::now() >= e)
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
        assert!(!b.exhausted() && !b.over());
        assert!(b.end > b.until, "messages may use the reserve");
        assert!(Budget::from_lambda_deadline(1_000, 2_000).exhausted());
        assert!(
            !Budget::from_lambda_deadline(u64::MAX, 0).exhausted(),
            "no panic, no limit reached"
        );
        assert!(Budget::unlimited().left().is_none());
    }
}
