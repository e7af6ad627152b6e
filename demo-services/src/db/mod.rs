//! Where each service keeps its data: a SQLite file under `--data-dir`
//! (the default, needing nothing installed) or a PostgreSQL database
//! named by `--database-url`, which several processes can share.
//!
//! Each service's store has one implementation per engine, in its
//! `store/` folder, behind one interface; this module holds what they
//! share: opening ([`sqlite`], [`postgres`]), timestamps, and the choice
//! itself ([`Database`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod postgres;
pub mod sqlite;

/// How hard commits are pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous = FULL`: every commit is synced; survives power loss.
    Full,
    /// `synchronous = NORMAL`: synced at checkpoints; survives a crash of
    /// the process, not of the machine.
    Normal,
}

/// The database a service opens.
#[derive(Debug, Clone)]
pub enum Database {
    /// `<dir>/<service>.db`, one file per service, for one process each.
    Sqlite {
        /// The data directory.
        dir: PathBuf,
        /// How hard commits are pushed to disk.
        durability: Durability,
    },
    /// A PostgreSQL database, which the services may share (their tables
    /// never collide) and the order service's replicas must share.
    Postgres {
        /// `postgres://user:password@host:port/database[?options]`.
        url: String,
    },
}

impl Database {
    /// SQLite files under `dir`, with `durability`.
    pub fn sqlite(dir: impl Into<PathBuf>, durability: Durability) -> Database {
        Database::Sqlite {
            dir: dir.into(),
            durability,
        }
    }

    /// What to show of it in logs and banners: the directory, or the
    /// URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite { dir, .. } => format!("SQLite under {}", dir.display()),
            Database::Postgres { url } => format!("PostgreSQL at {}", postgres::redact(url)),
        }
    }
}

/// Now, as an RFC 3339 timestamp in UTC with milliseconds, e.g.
/// `2026-11-26T08:41:07.123Z`.
pub fn timestamp() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since)
}

/// Milliseconds since the Unix epoch, for schedules kept in the database.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, after
/// Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century year divisible by 400).
        assert_eq!(
            rfc3339(Duration::from_millis(951_782_400_250)),
            "2000-02-29T00:00:00.250Z"
        );
        // `date -u -d @1800000000` → 2027-01-15T08:00:00Z
        assert_eq!(
            rfc3339(Duration::from_secs(1_800_000_000)),
            "2027-01-15T08:00:00.000Z"
        );
    }
}
