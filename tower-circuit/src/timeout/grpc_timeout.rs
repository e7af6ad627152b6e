//! The `grpc-timeout` header: gRPC's way of sending a deadline, as the time
//! left rather than an instant (like [`BUDGET_HEADER`](super::BUDGET_HEADER)).
//!
//! Its grammar, from the gRPC spec (`PROTOCOL-HTTP2.md`):
//! `Timeout → TimeoutValue TimeoutUnit`, the value a positive integer of at
//! most 8 ASCII digits, the unit one of `H` (hours), `M` (minutes), `S`
//! (seconds), `m` (milliseconds), `u` (microseconds) or `n` (nanoseconds).

use std::fmt;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

/// The header gRPC carries a call's remaining time in.
pub const GRPC_TIMEOUT_HEADER: HeaderName = HeaderName::from_static("grpc-timeout");

/// The largest `TimeoutValue` the spec allows: 8 digits.
const MAX_VALUE: u64 = 99_999_999;

/// The units, finest first, with their length in nanoseconds.
const UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60_000_000_000),
    (b'H', 3_600_000_000_000),
];

/// A `grpc-timeout` value that does not follow the spec's grammar.
///
/// Its message never quotes the value: it is the caller's text, and it
/// may end up in a log line or a `grpc-message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedGrpcTimeout;

impl fmt::Display for MalformedGrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("grpc-timeout must be 1 to 8 digits followed by one of H, M, S, m, u, n")
    }
}

impl std::error::Error for MalformedGrpcTimeout {}

/// Reads a `grpc-timeout` value: 1 to 8 ASCII digits, then exactly one unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), nothing else: no sign, spaces, fraction
/// or second unit.
///
/// The spec says "positive", but `0` (any unit) is accepted and means a
/// deadline that has already passed, as grpc-go and tonic read it: a
/// client whose deadline ran out on the way deserves `DEADLINE_EXCEEDED`,
/// not a protocol error.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit::timeout::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout("250m"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout("99999999H"), Ok(Duration::from_secs(99_999_999 * 3600)));
/// assert!(parse_grpc_timeout("100000000n").is_err()); // 9 digits
/// assert!(parse_grpc_timeout("1.5S").is_err());
/// ```
pub fn parse_grpc_timeout(text: &str) -> Result<Duration, MalformedGrpcTimeout> {
    let bytes = text.as_bytes();
    let Some((&unit, digits)) = bytes.split_last() else {
        return Err(MalformedGrpcTimeout);
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(MalformedGrpcTimeout);
    }
    // At most 8 digits: no overflow, in `u64` or in a `Duration` of hours.
    let value = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let duration = match unit {
        b'H' => Duration::from_secs(value * 3600),
        b'M' => Duration::from_secs(value * 60),
        b'S' => Duration::from_secs(value),
        b'm' => Duration::from_millis(value),
        b'u' => Duration::from_micros(value),
        b'n' => Duration::from_nanos(value),
        _ => return Err(MalformedGrpcTimeout),
    };
    Ok(duration)
}

/// A formatted `grpc-timeout` value, held on the stack: at most 8 digits
/// and a unit. From [`format_grpc_timeout`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrpcTimeout {
    buf: [u8; 9],
    len: u8,
}

impl GrpcTimeout {
    /// The value as text, e.g. `"1500m"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and a unit letter are ever written.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("0n")
    }

    /// The value as a header value (one small allocation, as every
    /// non-static `HeaderValue` needs).
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::from_str(self.as_str()).unwrap_or(HeaderValue::from_static("0n"))
    }
}

impl fmt::Debug for GrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GrpcTimeout").field(&self.as_str()).finish()
    }
}

impl fmt::Display for GrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `left` as a `grpc-timeout` value: in the finest unit whose value
/// fits in 8 digits, rounded down, so the receiver never believes it has
/// more time than there is (and less than one unit short, which in the
/// finest unit that fits is below a hundred-thousandth of the value).
///
/// Durations beyond the largest value (99,999,999 hours, over 11,000
/// years) are written as that value; zero is `0n`, a deadline already
/// passed.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit::timeout::format_grpc_timeout;
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(250)).as_str(), "250000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(3600)).as_str(), "3600000m");
/// assert_eq!(format_grpc_timeout(Duration::ZERO).as_str(), "0n");
/// ```
pub fn format_grpc_timeout(left: Duration) -> GrpcTimeout {
    let nanos = left.as_nanos();
    let (unit, value) = UNITS
        .iter()
        .map(|&(unit, len)| (unit, nanos / len))
        .find(|&(_, value)| value <= u128::from(MAX_VALUE))
        .unwrap_or((b'H', u128::from(MAX_VALUE)));
    // `value` fits in 8 digits here.
    let mut value = u64::try_from(value).unwrap_or(MAX_VALUE);
    let mut digits = [0u8; 8];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let mut buf = [0u8; 9];
    for (i, d) in digits[..n].iter().rev().enumerate() {
        buf[i] = *d;
    }
    buf[n] = unit;
    GrpcTimeout {
        buf,
        len: (n + 1) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(d: Duration) -> String {
        format_grpc_timeout(d).as_str().to_owned()
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("4S"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_grpc_timeout("5m"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_grpc_timeout("6u"), Ok(Duration::from_micros(6)));
        assert_eq!(parse_grpc_timeout("7n"), Ok(Duration::from_nanos(7)));
        assert_eq!(
            parse_grpc_timeout("00000010m"),
            Ok(Duration::from_millis(10))
        );
    }

    #[test]
    fn accepts_eight_digits_and_refuses_nine() {
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Ok(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("100000000n"), Err(MalformedGrpcTimeout));
        assert_eq!(parse_grpc_timeout("000000001S"), Err(MalformedGrpcTimeout));
    }

    #[test]
    fn zero_is_a_deadline_already_passed() {
        assert_eq!(parse_grpc_timeout("0S"), Ok(Duration::ZERO));
        assert_eq!(parse_grpc_timeout("0n"), Ok(Duration::ZERO));
        assert_eq!(fmt(Duration::ZERO), "0n");
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "", "S", "m", "10", "10s", "10x", "10 m", " 10m", "10m ", "+10m", "-10m", "1.5S",
            "10mm", "10Sm", "1e3m", "١٠m", "10\u{0}m", "10µ",
        ] {
            assert_eq!(
                parse_grpc_timeout(bad),
                Err(MalformedGrpcTimeout),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn formats_in_the_finest_unit_that_fits() {
        assert_eq!(fmt(Duration::from_nanos(1)), "1n");
        assert_eq!(fmt(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(fmt(Duration::from_nanos(100_000_000)), "100000u");
        assert_eq!(fmt(Duration::from_millis(250)), "250000u");
        assert_eq!(fmt(Duration::from_micros(99_999_999)), "99999999u");
        assert_eq!(fmt(Duration::from_secs(100)), "100000m");
        assert_eq!(fmt(Duration::from_secs(99_999)), "99999000m");
        assert_eq!(fmt(Duration::from_secs(100_000)), "100000S");
        assert_eq!(fmt(Duration::from_secs(99_999_999)), "99999999S");
        assert_eq!(fmt(Duration::from_secs(100_000_000)), "1666666M");
        assert_eq!(fmt(Duration::from_secs(99_999_999 * 60)), "99999999M");
        assert_eq!(fmt(Duration::from_secs(100_000_000 * 60)), "1666666H");
        assert_eq!(fmt(Duration::from_secs(99_999_999 * 3600)), "99999999H");
    }

    #[test]
    fn rounds_down_never_up() {
        // 100.0000009 s: in ms the 0.9 µs are dropped, not rounded up.
        assert_eq!(fmt(Duration::new(100, 999_999)), "100000m");
        assert_eq!(fmt(Duration::new(100_000, 999_999_999)), "100000S");
        assert_eq!(fmt(Duration::from_secs(100_000_000 + 59)), "1666667M");
        for d in [
            Duration::new(123, 456_789_012),
            Duration::new(100_000_000, 1),
            Duration::from_nanos(123_456_789),
        ] {
            let back = parse_grpc_timeout(format_grpc_timeout(d).as_str()).unwrap();
            assert!(back <= d, "{d:?} became {back:?}");
            assert!(d - back < d / 100_000, "{d:?} became {back:?}");
        }
    }

    #[test]
    fn clamps_huge_durations_to_the_largest_value() {
        assert_eq!(fmt(Duration::from_secs(100_000_000 * 3600)), "99999999H");
        assert_eq!(fmt(Duration::MAX), "99999999H");
        assert_eq!(
            format_grpc_timeout(Duration::MAX).to_header_value(),
            "99999999H"
        );
    }
}
