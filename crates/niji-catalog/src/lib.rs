//! The Niji catalog: the data stewards' workbench and the system's memory.
//!
//! One [`Catalog`] handle over SQLite (embedded, the default: `<data-dir>/catalog.db`) or
//! PostgreSQL (`NIJI_CATALOG_URL=postgres://…`), with embedded migrations for each. It holds:
//!
//! - **datasets** ([`dataset`]): the definitions in `catalog/*.toml`, validated against niji-cdm;
//! - **dataset versions** ([`version`]): Delta versions per table and the run report, reviewed
//!   by a steward (pending → approved | rejected, approved → retired);
//! - **principals and tokens** ([`principal`]): tokens are shown once and stored only as SHA-256
//!   digests, with expiry and revocation;
//! - **projects and the budget ledger** ([`project`]): a charge is one atomic conditional
//!   `UPDATE`, so no concurrency can take a project past its budget;
//! - **query log and result cache** ([`query`]);
//! - **the audit chain** ([`audit`]): every state change appends, in the same transaction, an
//!   entry hash-chained to the previous one; [`Catalog::verify_audit`] finds the first bad one.
//!
//! SQL is written once with `$n` placeholders (both SQLite and PostgreSQL accept them) and run
//! on either pool through the `with_pool!` macro; the only dialect differences are the
//! migrations and how a write transaction begins.

pub mod audit;
pub mod dataset;
mod error;
pub mod pipeline;
pub mod principal;
pub mod project;
pub mod query;
pub mod version;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use audit::{AuditEntry, AuditProblem, AuditReport};
pub use dataset::{DatasetDef, DefaultPolicy};
pub use error::{CatalogError, Result};
pub use principal::{IssuedToken, Principal, Role};
pub use project::{Budget, Charge, Mode, Project};
pub use query::{CachedResult, QueryRecord};
pub use version::{DatasetVersion, Review, VersionStatus};

/// Environment variable naming the catalog database URL.
pub const CATALOG_URL_ENV: &str = "NIJI_CATALOG_URL";

/// The two databases the catalog runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (a file, WAL mode).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run the same code on whichever pool the catalog has: `$p` is bound to the concrete pool,
/// so `sqlx::query(..)` type-checks once per backend.
macro_rules! with_pool {
    ($cat:expr, |$p:ident| $body:expr) => {
        match &$cat.pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Begin a write transaction: `BEGIN IMMEDIATE` on SQLite (take the write lock up front, so
/// a read followed by a write cannot fail with a stale snapshot), a plain `BEGIN` on PostgreSQL.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>>;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.begin().await?)
    }
}

/// A handle on the catalog database. Cheap to clone (it wraps a connection pool).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub(crate) pool: Pool,
}

/// Connection pool size: enough for concurrent requests, small enough for a laptop.
const MAX_CONNECTIONS: u32 = 16;
/// How long a SQLite writer waits for the write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

impl Catalog {
    /// Connect by URL (`sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://…`) and apply
    /// the migrations.
    #[tracing::instrument(skip(url))]
    pub async fn connect(url: &str) -> Result<Catalog> {
        let pool = if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            return Catalog::connect_sqlite(SqliteConnectOptions::from_str(url)?, in_memory).await;
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(120))
                .connect(url)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Pool::Postgres(pool)
        } else {
            return Err(CatalogError::UnsupportedUrl);
        };
        tracing::debug!("catalog connected and migrated");
        Ok(Catalog { pool })
    }

    async fn connect_sqlite(options: SqliteConnectOptions, in_memory: bool) -> Result<Catalog> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        // An in-memory database lives in one connection: a pool of one keeps it whole.
        let max = if in_memory { 1 } else { MAX_CONNECTIONS };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        tracing::debug!("sqlite catalog connected and migrated");
        Ok(Catalog { pool: Pool::Sqlite(pool) })
    }

    /// The embedded catalog of a data directory: `sqlite://<data_dir>/catalog.db`, created if
    /// missing (the directory too).
    pub async fn open_default(data_dir: &Path) -> Result<Catalog> {
        std::fs::create_dir_all(data_dir).map_err(|source| CatalogError::Io { path: data_dir.to_owned(), source })?;
        // Built from the path, not a URL, so any file name works.
        Catalog::connect_sqlite(SqliteConnectOptions::new().filename(data_dir.join("catalog.db")), false).await
    }

    /// `NIJI_CATALOG_URL` if set, else [`Catalog::open_default`].
    pub async fn open(data_dir: &Path) -> Result<Catalog> {
        match std::env::var(CATALOG_URL_ENV) {
            Ok(url) if !url.is_empty() => Catalog::connect(&url).await,
            _ => Catalog::open_default(data_dir).await,
        }
    }

    /// Which database this catalog runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await)
    }
}

/// Now, in unix seconds.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Hex SHA-256 of bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    table: &'static str,
    column: &'static str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|source| CatalogError::CorruptJson { table, column, source })
}
