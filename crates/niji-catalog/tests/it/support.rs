//! Test databases on both backends, and the macro that runs a test on each.

use std::future::Future;
use std::path::Path;

use niji_catalog::Catalog;
use rand::Rng;
use sqlx::Connection;

/// The admin URL tests create their databases through.
fn pg_admin_url() -> String {
    std::env::var("NIJI_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A catalog under test and the URL of its database, for tampering behind its back.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub catalog: Catalog,
    pub url: String,
}

impl TestDb {
    /// Run a statement directly on the database, bypassing the catalog (tamper tests).
    pub async fn raw(&self, sql: &str) {
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }
}

impl TestDb {
    /// A single i64 from a statement run directly on the database.
    pub async fn raw_i64(&self, sql: &str) -> i64 {
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            let (v,): (i64,) = sqlx::query_as(sql).fetch_one(&mut c).await.unwrap();
            v
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            let (v,): (i64,) = sqlx::query_as(sql).fetch_one(&mut c).await.unwrap();
            v
        }
    }
}

/// Run `test` against a catalog on a fresh SQLite file.
pub async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("catalog.db").display());
    let catalog = Catalog::connect(&url).await.unwrap();
    test(TestDb { catalog: catalog.clone(), url }).await;
    catalog.close().await;
}

/// Run `test` against a catalog on a fresh PostgreSQL database, dropped afterwards (also when
/// the test panics).
pub async fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url = pg_admin_url();
    let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("NIJI_TEST_SKIP_PG").is_ok_and(|v| v == "1") {
                eprintln!(
                    "\n**********\n*** SKIPPED PostgreSQL test `{name}`: cannot connect ({e}); NIJI_TEST_SKIP_PG=1\n**********\n"
                );
                return;
            }
            panic!(
                "PostgreSQL is unreachable at NIJI_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres): {e}. \
                 Start it, or set NIJI_TEST_SKIP_PG=1 to skip the PostgreSQL half of the suite."
            );
        }
    };
    let db = format!("niji_test_{:016x}", rand::rng().random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut admin).await.unwrap();
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("NIJI_TEST_PG_URL must end with /<database>"),
    };
    let catalog = Catalog::connect(&url).await.unwrap();
    let outcome = tokio::spawn(test(TestDb { catalog: catalog.clone(), url })).await;
    catalog.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Define `mod $name { fn sqlite(); fn postgres(); }` running the async fn `$name(TestDb)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::support::on_sqlite(super::$name).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::support::on_postgres(concat!(module_path!()), super::$name).await;
            }
        }
    )*};
}
pub(crate) use both_backends;

/// Load the shipped catalog/*.toml datasets.
pub async fn load_shipped(catalog: &Catalog) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
    let defs = niji_catalog::DatasetDef::load_dir(&dir).unwrap();
    catalog.load_datasets("test", &defs).await.unwrap();
}
