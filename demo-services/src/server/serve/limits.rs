//! What one serve loop allows a connection: how long it may take to send a
//! request head, how long it may sit idle, how large a head may be, and how
//! many connections it may hold at once.

use std::fmt;
use std::time::Duration;

use crate::server::SHUTDOWN_GRACE;

/// How long a new connection has to send a complete request head,
/// counted from the moment it is accepted.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a kept-alive connection may wait between the end of one
/// response and the complete head of its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest request head (request line and headers): 32 KiB, then 431.
///
/// A connection buffers up to this much while its head is incomplete: a
/// thousand connections each holding 31 KiB of unfinished head were
/// measured at 42 MiB above the idle process; at 64 KiB the same took
/// 77 MiB, too close to a 100 MiB budget. Service tokens and the other
/// headers these services read take a few KiB.
pub const MAX_HEAD_SIZE: usize = 32 * 1024;

/// The smallest head limit accepted: a request line and a few headers.
const MIN_HEAD_SIZE: usize = 1024;

/// The most connections one serve loop holds however high the descriptor
/// limit is: each holds a task and up to [`MAX_HEAD_SIZE`] of buffer.
pub const MAX_CONNECTIONS_CEILING: usize = 16 * 1024;

/// The descriptor limit assumed where the process's own cannot be read
/// (the smallest common default, macOS's).
const FALLBACK_FD_LIMIT: u64 = 256;

/// Descriptors kept free for everything else the process opens (databases,
/// outbound connections, logs): an eighth of the limit, at least 64.
fn headroom(fd_limit: u64) -> u64 {
    (fd_limit / 8).max(64)
}

/// The connection limits of a serve loop.
///
/// [`Limits::default`] reads the process's open-file limit to size the
/// connection cap; the rest are constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A new connection that has not sent a complete request head this
    /// long after it was accepted is closed.
    pub header_read_timeout: Duration,
    /// A kept-alive connection that has not sent the complete head of its
    /// next request this long after its last response is closed.
    pub idle_timeout: Duration,
    /// The largest request head; a larger one is answered 431 and the
    /// connection closed.
    pub max_head_size: usize,
    /// The most connections held at once. When a new connection would
    /// pass it, the connections that have waited longest for a request
    /// head are closed to make room; when every connection is busy with a
    /// request, the new one is closed instead.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before dropping them.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_head_size: MAX_HEAD_SIZE,
            max_connections: connection_cap(fd_limit()),
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

impl Limits {
    /// Checks that every limit can be enforced: timeouts and the cap above
    /// zero, the head limit at least 1 KiB.
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        let problem = if self.header_read_timeout.is_zero() {
            "the header read timeout must be above zero"
        } else if self.idle_timeout.is_zero() {
            "the idle timeout must be above zero"
        } else if self.max_head_size < MIN_HEAD_SIZE {
            "the request head limit must be at least 1 KiB"
        } else if self.max_connections == 0 {
            "the connection cap must be at least 1"
        } else {
            return Ok(());
        };
        Err(InvalidLimits(problem))
    }

    /// These limits with the connection cap split between `services` serve
    /// loops that share one process (and so one descriptor limit).
    pub fn shared_by(mut self, services: usize) -> Limits {
        self.max_connections = (self.max_connections / services.max(1)).max(1);
        self
    }
}

/// Limits that cannot be enforced, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLimits(&'static str);

impl fmt::Display for InvalidLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidLimits {}

/// The connection cap for a process whose open-file limit is `fd_limit`:
/// the limit less its headroom, between 1 and [`MAX_CONNECTIONS_CEILING`].
pub fn connection_cap(fd_limit: u64) -> usize {
    let cap = fd_limit.saturating_sub(headroom(fd_limit)).max(1);
    usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .min(MAX_CONNECTIONS_CEILING)
}

/// The process's soft open-file limit (`RLIMIT_NOFILE`), read from
/// `/proc/self/limits`; where that cannot be read, a conservative 256.
/// (Reading it through `getrlimit` would need unsafe code, which this crate
/// forbids.)
pub fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| parse_fd_limit(&text))
        .unwrap_or(FALLBACK_FD_LIMIT)
}

/// The soft limit on the "Max open files" line of a `/proc/<pid>/limits`
/// text; `unlimited` reads as `u64::MAX`.
fn parse_fd_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
";

    #[test]
    fn reads_the_soft_open_file_limit() {
        assert_eq!(parse_fd_limit(LIMITS), Some(1024));
        let unlimited = LIMITS.replace("1024     ", "unlimited");
        assert_eq!(parse_fd_limit(&unlimited), Some(u64::MAX));
        assert_eq!(parse_fd_limit("Max cpu time 1 1 seconds"), None);
        assert_eq!(parse_fd_limit("Max open files   lots  1 files"), None);
    }

    #[test]
    fn the_cap_leaves_headroom_below_the_descriptor_limit() {
        assert_eq!(connection_cap(1024), 1024 - 128);
        assert_eq!(connection_cap(256), 256 - 64);
        assert_eq!(connection_cap(10), 1, "never zero");
        assert_eq!(connection_cap(u64::MAX), MAX_CONNECTIONS_CEILING);
        assert!(fd_limit() > 0);
    }

    #[test]
    fn the_cap_is_split_between_services_in_one_process() {
        let limits = Limits {
            max_connections: 896,
            ..Limits::default()
        };
        assert_eq!(limits.shared_by(3).max_connections, 298);
        assert_eq!(limits.shared_by(0).max_connections, 896);
        let one = Limits {
            max_connections: 1,
            ..limits
        };
        assert_eq!(one.shared_by(3).max_connections, 1);
    }

    #[test]
    fn limits_that_cannot_be_enforced_are_refused() {
        assert_eq!(Limits::default().validate(), Ok(()));
        for bad in [
            Limits {
                header_read_timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                idle_timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                max_head_size: 100,
                ..Limits::default()
            },
            Limits {
                max_connections: 0,
                ..Limits::default()
            },
        ] {
            let err = bad.validate().unwrap_err();
            assert!(!err.to_string().is_empty());
        }
    }
}
