//! PostgreSQL databases, named by `--database-url`: what lets several
//! processes (the order service's replicas) share one set of tables.
//!
//! Each service brings its own numbered migrations; [`connect`] applies
//! the ones a database lacks, under a transaction-scoped advisory lock so
//! that replicas starting together apply each exactly once, and records
//! them in `schema_migrations` by service, so three services can share a
//! database.
//!
//! A URL may set session parameters, e.g. a schema per service:
//! `postgres://app@db/demo?options[search_path]=orders` (sqlx reads
//! `options[...]`), and `application_name=...` (else the service's name).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Connections a service keeps at most. Requests wait for one (up to
/// [`ACQUIRE`]) rather than open more: the database's own connection
/// limit is shared by every replica.
const MAX_CONNECTIONS: u32 = 8;
/// The longest a request waits for a connection before failing with 503
/// rather than queueing without bound.
const ACQUIRE: Duration = Duration::from_secs(5);
/// The longest one statement may run: a stuck query ends, and with it
/// the request waiting for it.
const STATEMENT_TIMEOUT: &str = "15s";

/// Any number, the same in every process: the advisory lock migrations
/// hold (`pg_advisory_xact_lock` takes a `bigint`).
const MIGRATION_LOCK: i64 = 0x6465_6d6f_6d69_6772; // "demomigr"

/// `service`'s pool on the database at `url`, with `migrations` applied
/// in order (the first is version 1). Every error names the service and
/// the database, without the password.
pub async fn connect(url: &str, service: &str, migrations: &[&str]) -> Result<PgPool, sqlx::Error> {
    let at = |e: sqlx::Error| {
        sqlx::Error::Configuration(format!("{service}: PostgreSQL at {}: {e}", redact(url)).into())
    };
    let mut options = PgConnectOptions::from_str(url)
        .map_err(at)?
        .options([("statement_timeout", STATEMENT_TIMEOUT)]);
    // The service's name in `pg_stat_activity`, unless the URL names it.
    if !url.contains("application_name=") {
        options = options.application_name(service);
    }
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE)
        .connect_with(options)
        .await
        .map_err(at)?;
    migrate(&pool, service, migrations).await.map_err(at)?;
    Ok(pool)
}

/// Applies the `migrations` of `service` that the database lacks, each in
/// the one transaction that also records it.
async fn migrate(pool: &PgPool, service: &str, migrations: &[&str]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Held until commit: a replica starting at the same moment waits here,
    // then finds the migrations applied.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            service    TEXT NOT NULL,
            version    INTEGER NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (service, version)
        )",
    )
    .execute(&mut *tx)
    .await?;
    let applied: i32 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE service = $1",
    )
    .bind(service)
    .fetch_one(&mut *tx)
    .await?;
    let known = i32::try_from(migrations.len()).unwrap_or(i32::MAX);
    if applied > known {
        return Err(sqlx::Error::Configuration(
            format!(
                "the database is at migration {applied} of the {service} service, \
                 newer than this build ({known}); run a newer build"
            )
            .into(),
        ));
    }
    for (version, sql) in (1..).zip(migrations).skip(applied as usize) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (service, version) VALUES ($1, $2)")
            .bind(service)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tracing::info!(service, version, "database migration applied");
    }
    tx.commit().await
}

/// `expr` (a `timestamptz`) as the API shows time: RFC 3339 in UTC with
/// milliseconds, as SQLite's rows hold it (`2026-11-26T08:41:07.123Z`).
pub fn rfc3339(expr: &str) -> String {
    format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// `url` with its password, if any, replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/demo?sslmode=disable"),
            "postgres://app:***@db:5432/demo?sslmode=disable"
        );
        // A password with '@' in it: the last '@' of the authority ends it.
        assert_eq!(
            redact("postgres://app:p@ss@db/demo"),
            "postgres://app:***@db/demo"
        );
        assert_eq!(redact("postgres://app@db/demo"), "postgres://app@db/demo");
        assert_eq!(redact("postgres://db/x?u=a@b"), "postgres://db/x?u=a@b");
    }
}
