//! SQLite databases, one file per service under `--data-dir`: the
//! default, which needs nothing installed.
//!
//! WAL mode lets readers run beside the one writer; `synchronous = FULL`
//! (the default) syncs the log on every commit, so what a service
//! acknowledged survives a crash of the machine, not only of the process.
//! `--db-sync normal` ([`Durability::Normal`], given to [`open`]) syncs
//! only at checkpoints: faster, and still safe against a crash of the
//! process, but the last commits can be lost when the machine loses power.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::Durability;

/// A database as two pools: one connection for writes, several for reads.
///
/// SQLite takes one writer at a time. With several writing connections,
/// a writer that finds the lock taken waits in SQLite's busy handler, which
/// sleeps in steps of 1, 2, 5, 10 ms and more: a few contended writes make
/// a millisecond-scale tail. One writing connection makes writers queue in
/// the pool instead, woken as soon as the connection is free; readers run
/// beside it (WAL).
#[derive(Debug, Clone)]
pub struct Db {
    /// For `SELECT`s.
    pub reads: SqlitePool,
    /// For everything that writes; one connection.
    pub writes: SqlitePool,
}

/// Opens (creating it when missing) `<dir>/<name>.db` with `durability`
/// (the command line's `--db-sync`) and applies `schema`, a script of
/// `CREATE ... IF NOT EXISTS` statements.
///
/// The databases hold e-mail addresses: a directory this creates is 0700
/// and a database file 0600 (on Unix), whatever the umask. SQLite gives
/// the `-wal` and `-shm` files it makes beside a database the database
/// file's own mode, so they are 0600 too. Existing files keep their mode.
///
/// Every error names the directory or file it is about, so a data
/// directory that cannot be written says which one.
pub async fn open(
    dir: &Path,
    name: &str,
    schema: &str,
    durability: Durability,
) -> Result<Db, sqlx::Error> {
    let file = dir.join(format!("{name}.db"));
    create_private(dir, &file).map_err(sqlx::Error::Io)?;
    open_file(&file, schema, durability)
        .await
        .map_err(|e| match e {
            sqlx::Error::Io(e) => sqlx::Error::Io(at(&file, e)),
            e => sqlx::Error::Io(at(&file, std::io::Error::other(e))),
        })
}

/// `e`, with `path` in front of its message.
fn at(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

async fn open_file(file: &Path, schema: &str, durability: Durability) -> Result<Db, sqlx::Error> {
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match durability {
            Durability::Normal => SqliteSynchronous::Normal,
            Durability::Full => SqliteSynchronous::Full,
        })
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    // No ping before each use (sqlx's default, for connections over a
    // network that may have died): a SQLite connection is a file opened by
    // this process, and the ping is one more round trip to the
    // connection's worker thread on every query.
    let writes = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await?;
    sqlx::raw_sql(schema).execute(&writes).await?;
    let reads = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    Ok(Db { reads, writes })
}

/// Creates `dir` (0700, parents included) and an empty `file` in it
/// (0600) when they do not exist yet, before SQLite would create them with
/// the umask's (usually world-readable) mode.
fn create_private(dir: &Path, file: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| at(dir, e))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(at(file, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each database gets the durability it is opened with, whatever
    /// another one in the same process got.
    #[tokio::test]
    async fn durability_is_per_database() {
        let dir = std::env::temp_dir().join(format!("db-durability-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let synchronous = |db: Db| async move {
            // 1 is NORMAL, 2 is FULL.
            let (n,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&db.writes)
                .await
                .unwrap();
            let (r,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&db.reads)
                .await
                .unwrap();
            assert_eq!(n, r, "reads and writes alike");
            n
        };
        let relaxed = open(&dir, "relaxed", "", Durability::Normal).await.unwrap();
        let full = open(&dir, "full", "", Durability::Full).await.unwrap();
        assert_eq!(synchronous(relaxed).await, 1);
        assert_eq!(synchronous(full).await, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
