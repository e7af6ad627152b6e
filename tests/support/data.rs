//! Where a test's services keep their data, on either engine: SQLite files
//! in a fresh temporary directory, or a fresh schema of its own in
//! PostgreSQL (so tests on one database never see each other's rows).
//!
//! A suite runs on both with [`on_both_backends!`](crate::on_both_backends):
//! each test body is written once, as a plain `async fn`, and runs once
//! per engine; [`Data::new`] inside it picks the engine of the run.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use demo_services::db::{Database, Durability};
use sqlx::Connection;

use crate::TempDir;

/// The engine a test runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite files (the services' default).
    Sqlite,
    /// PostgreSQL at this URL.
    Postgres(String),
}

tokio::task_local! {
    static BACKEND: Backend;
}

impl Backend {
    /// Runs `test` with [`Data::new`] on this engine.
    pub async fn run<F: Future<Output = ()>>(self, test: F) {
        self.scope(test).await
    }

    /// Runs `f` with [`Data::new`] on this engine, and returns its output.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        BACKEND.scope(self, f).await
    }

    /// The engine of the test running now (SQLite outside
    /// [`Backend::run`]).
    pub fn current() -> Backend {
        BACKEND.try_with(Clone::clone).unwrap_or(Backend::Sqlite)
    }
}

/// A test's data: removed (directory and schema) on drop.
#[derive(Debug)]
pub struct Data {
    /// Removed on drop, when the data is in one made for it.
    _temp: Option<TempDir>,
    /// The SQLite files, or scratch space beside PostgreSQL.
    dir: PathBuf,
    /// With PostgreSQL: the server's URL and the test's schema.
    schema: Option<(String, String)>,
}

impl Data {
    /// Fresh, empty data on the engine of the test running now.
    pub async fn new() -> Data {
        match Backend::current() {
            Backend::Sqlite => Data::sqlite(),
            Backend::Postgres(url) => Data::postgres(&url).await,
        }
    }

    /// Fresh SQLite files, whatever the test runs on.
    pub fn sqlite() -> Data {
        let temp = TempDir::new();
        Data {
            dir: temp.path().to_owned(),
            _temp: Some(temp),
            schema: None,
        }
    }

    /// SQLite files in `dir`, which the services create if missing; the
    /// caller removes it.
    pub fn sqlite_at(dir: PathBuf) -> Data {
        Data {
            _temp: None,
            dir,
            schema: None,
        }
    }

    /// A fresh schema in the PostgreSQL database at `url`.
    pub async fn postgres(url: &str) -> Data {
        static N: AtomicU32 = AtomicU32::new(0);
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        forget_dead_runs(&mut conn).await;
        let schema = format!(
            "{PREFIX}{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .execute(&mut conn)
        .await
        .expect("create the test's schema");
        let temp = TempDir::new();
        Data {
            dir: temp.path().to_owned(),
            _temp: Some(temp),
            schema: Some((url.to_owned(), schema)),
        }
    }

    /// What the services open: the directory, or the schema (through the
    /// URL's `search_path`).
    pub fn database(&self) -> Database {
        match &self.schema {
            None => Database::sqlite(&self.dir, Durability::Full),
            Some((url, schema)) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                Database::Postgres {
                    url: format!("{url}{sep}options[search_path]={schema}"),
                }
            }
        }
    }

    /// Whether the data is in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.schema.is_some()
    }

    /// The directory (the SQLite files, when on SQLite).
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let Some((url, schema)) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which must not be blocked
        // on: a thread of its own, with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}

/// What every test schema's name starts with, before the process id.
const PREFIX: &str = "demo_test_";

/// Drops the schemas of test processes that no longer run (killed before
/// their schemas were dropped), once per process, so the shared database
/// does not fill up run after run.
async fn forget_dead_runs(conn: &mut sqlx::PgConnection) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'demo\\_test\\_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for schema in schemas {
            let pid = schema[PREFIX.len()..].split('_').next().unwrap_or_default();
            let alive = pid.parse::<u32>().is_ok_and(|pid| {
                pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
            });
            if !alive {
                let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut *conn)
                    .await;
            }
        }
    })
    .await;
}

/// Runs each named test (a plain `async fn` of the test file) once on
/// SQLite, in module `sqlite`, and once on PostgreSQL, in module
/// `postgres`; on a machine without PostgreSQL the second says so and
/// passes, except under CI (see [`engines`](crate::engines)).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::data::Backend::Sqlite.run(super::$name()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(url) = $crate::engines::postgres() else { return };
                    $crate::data::Backend::Postgres(url).run(super::$name()).await
                }
            )*
        }
    };
}
