//! Duration and instant arithmetic that saturates instead of panicking.
//!
//! Every delay in the crate can come from configuration or from a peer
//! (`Retry-After`, `x-request-budget-ms`), so a sum or product of durations
//! must never overflow, whatever the values: `Duration::MAX` as a cap or a
//! timeout means "as long as possible", not a panic mid-call.

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: what tokio itself uses for a timer that never fires.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The longest wait a timer here honours exactly; longer sleeps end at
/// about this point.
pub(crate) const MAX_WAIT: Duration = FAR_FUTURE;

/// `now + d`, or a far-future instant (about 30 years ahead) when that
/// overflows the clock.
pub(crate) fn instant_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// `d · f` for `f` in `[0, 1]` (clamped; NaN counts as 0), never more
/// than `d`. `Duration::mul_f64` panics on `Duration::MAX · 1.0`: the
/// float product rounds up past the largest duration.
pub(crate) fn scale(d: Duration, f: f64) -> Duration {
    let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
    Duration::try_from_secs_f64(d.as_secs_f64() * f)
        .unwrap_or(d)
        .min(d)
}

/// A non-negative, possibly huge or non-finite number of seconds as a
/// duration, saturating at `Duration::MAX` (NaN and negatives give zero).
pub(crate) fn secs_f64(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_never_panics_and_never_exceeds() {
        for d in [Duration::ZERO, Duration::from_millis(3), Duration::MAX] {
            for f in [0.0, 0.5, 0.999_999, 1.0, 2.0, -1.0, f64::NAN, f64::INFINITY] {
                assert!(scale(d, f) <= d);
            }
        }
        assert_eq!(scale(Duration::from_secs(10), 0.5), Duration::from_secs(5));
    }

    #[test]
    fn secs_saturate() {
        assert_eq!(secs_f64(f64::INFINITY), Duration::MAX);
        assert_eq!(secs_f64(1e300), Duration::MAX);
        assert_eq!(secs_f64(f64::NAN), Duration::ZERO);
        assert_eq!(secs_f64(1.5), Duration::from_millis(1500));
    }
}
