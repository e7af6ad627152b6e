//! At most one log line a second per kind of event, with a count of the
//! events it stands for: a flood of connections must not become a flood of
//! log lines.

use std::time::Duration;

use tokio::time::Instant;

/// How often a throttled event may be logged.
const EVERY: Duration = Duration::from_secs(1);

/// Counts events and says when one may be logged.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
    pending: u64,
}

impl Throttle {
    /// Records `n` events; returns how many events the log line to write
    /// now stands for (these and those not logged since the last line), or
    /// `None` while the last line is under a second old.
    pub(crate) fn record(&mut self, n: u64) -> Option<u64> {
        self.pending = self.pending.saturating_add(n);
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < EVERY => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.pending))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn logs_at_most_once_a_second_with_the_count_in_between() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.record(1), Some(1), "the first is logged");
        assert_eq!(throttle.record(1), None);
        assert_eq!(throttle.record(3), None);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(throttle.record(1), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            throttle.record(1),
            Some(6),
            "this one and the five held back"
        );
        assert_eq!(throttle.record(1), None);
    }
}
