//! The order service's resilience settings for its calls to the user and
//! notification services. The defaults: a breaker per dependency opening at
//! a 50 % failure rate over at least 10 calls in 10 s and staying open
//! 30 s; 3 retries from 200 ms; 3 s per read attempt, 10 s per write; 15 s
//! for a whole call.

use std::time::Duration;

use tower_circuit::breaker::{Config, Window};
use tower_circuit::retry::{Backoff, Jitter, RetryLayer};
use tower_circuit::timeout::ByMethod;

use crate::flags::{outbox_lease, positive_duration as duration, rate, retry_base_delay};

/// Circuit breaker, retry and timeout settings; one breaker per dependency.
#[derive(Debug, Clone, clap::Args)]
pub struct Resilience {
    /// Failure rate in the window at or above which a breaker opens.
    #[arg(long, default_value = "0.5", value_parser = rate)]
    pub breaker_failure_rate: f64,
    /// Calls the window must hold before the rate counts.
    #[arg(long, default_value_t = 10)]
    pub breaker_minimum_calls: u32,
    /// How far back the breaker's window reaches.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub breaker_window: Duration,
    /// How long an open breaker rejects calls before letting a probe through.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub breaker_open_duration: Duration,
    /// Retries after the first attempt (idempotent calls only).
    #[arg(long, default_value_t = 3)]
    pub retry_max: u32,
    /// First retry delay (at most 10 s); doubles per retry, with full
    /// jitter, capped at 10 s.
    #[arg(long, default_value = "200ms", value_parser = retry_base_delay)]
    pub retry_base_delay: Duration,
    /// Per-attempt timeout of GET (and other reads).
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub timeout_get: Duration,
    /// Per-attempt timeout of POST, PUT, PATCH and DELETE.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub timeout_write: Duration,
    /// Time budget of one whole call to a dependency, retries included.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub call_deadline: Duration,
    /// Longest wait between two delivery attempts of one notification.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub outbox_backoff_cap: Duration,
    /// How long a claimed notification is reserved for the replica that
    /// claimed it (1 s to 30 s, longer than `--call-deadline`): a replica
    /// that dies while sending delays its records by at most this much.
    #[arg(long, default_value = "30s", value_parser = outbox_lease)]
    pub outbox_lease: Duration,
    /// Turns the breakers off (for comparing with them on).
    #[arg(long)]
    pub no_breaker: bool,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            breaker_failure_rate: 0.5,
            breaker_minimum_calls: 10,
            breaker_window: Duration::from_secs(10),
            breaker_open_duration: Duration::from_secs(30),
            retry_max: 3,
            retry_base_delay: Duration::from_millis(200),
            timeout_get: Duration::from_secs(3),
            timeout_write: Duration::from_secs(10),
            call_deadline: Duration::from_secs(15),
            outbox_backoff_cap: Duration::from_secs(5),
            outbox_lease: Duration::from_secs(30),
            no_breaker: false,
        }
    }
}

impl Resilience {
    /// The breaker configuration.
    pub fn breaker(&self) -> Config {
        // Ten buckets, but none shorter than 10 ms: a millisecond window in
        // tests still slides in steps.
        let buckets = (self.breaker_window.as_millis() / 10).clamp(1, 10) as u32;
        Config::default()
            .failure_rate_threshold(self.breaker_failure_rate)
            .minimum_calls(self.breaker_minimum_calls)
            .window(Window::Time {
                duration: self.breaker_window,
                buckets,
            })
            .open_duration(self.breaker_open_duration)
    }

    /// The retry backoff.
    pub fn backoff(&self) -> Backoff {
        Backoff::default()
            .base(self.retry_base_delay)
            .cap(Duration::from_secs(10).max(self.retry_base_delay))
            .jitter(Jitter::Full)
    }

    /// The retry layer builder for the dependency `name`.
    pub fn retry(&self, name: &'static str) -> tower_circuit::retry::RetryBuilder {
        RetryLayer::builder(name)
            .max_retries(self.retry_max)
            .backoff(self.backoff())
    }

    /// Per-attempt timeouts by method.
    pub fn timeouts(&self) -> ByMethod {
        ByMethod::default()
            .reads(self.timeout_get)
            .writes(self.timeout_write)
    }

    /// The outbox's wait before attempt `attempts + 1`: doubling from
    /// 100 ms, capped, with equal jitter so a backlog does not retry in
    /// lockstep.
    pub fn outbox_backoff(&self) -> Backoff {
        Backoff::default()
            .base(Duration::from_millis(100).min(self.outbox_backoff_cap))
            .cap(self.outbox_backoff_cap)
            .jitter(Jitter::Equal)
    }
}
