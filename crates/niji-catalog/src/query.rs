//! The query log and the result cache.
//!
//! The query service records each answered query (digests, mode, privacy spent and result
//! shape, never values) and may cache the released bytes by a key of its choosing (for
//! example the SQL digest, plan digest, dataset versions and mode): asking the same question
//! again then returns the same noisy answer without a new charge.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::{NewEntry, append_in_tx};
use crate::{BeginWrite, Budget, Catalog, CatalogError, Mode, Result, now, parse_json, with_pool};

/// One answered query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRecord {
    /// Query id (chosen by the query service, unique).
    pub query_id: String,
    /// Project.
    pub project_id: i64,
    /// Who asked (principal name).
    pub principal: String,
    /// SHA-256 of the SQL text, hex.
    pub sql_digest: String,
    /// SHA-256 of the optimized plan, hex.
    pub plan_digest: String,
    /// Dataset → dataset version id read.
    pub dataset_versions: BTreeMap<String, i64>,
    /// Release mode.
    pub mode: Mode,
    /// Privacy spent.
    pub cost: Budget,
    /// Rows released.
    pub result_rows: i64,
    /// Columns released.
    pub result_columns: i64,
}

/// A cached released result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResult {
    /// The query that produced it.
    pub query_id: String,
    /// Its project.
    pub project_id: i64,
    /// The released bytes (as the query service encoded them).
    pub result: Vec<u8>,
    /// When cached (unix seconds).
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct QueryRow {
    query_id: String,
    project_id: i64,
    principal: String,
    sql_digest: String,
    plan_digest: String,
    dataset_versions: String,
    mode: String,
    epsilon: i64,
    delta: i64,
    result_rows: i64,
    result_columns: i64,
}

impl Catalog {
    /// Log an answered query and append its audit entry, in one transaction.
    #[tracing::instrument(skip(self, q), fields(query_id = %q.query_id))]
    pub async fn record_query(&self, q: &QueryRecord) -> Result<()> {
        let versions = serde_json::to_string(&q.dataset_versions).map_err(|source| CatalogError::CorruptJson {
            table: "query_log",
            column: "dataset_versions",
            source,
        })?;
        let actor = format!("principal:{}", q.principal);
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "INSERT INTO query_log (query_id, project_id, principal, sql_digest, plan_digest, dataset_versions, \
                 mode, epsilon, delta, result_rows, result_columns, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&q.query_id)
            .bind(q.project_id)
            .bind(&q.principal)
            .bind(&q.sql_digest)
            .bind(&q.plan_digest)
            .bind(&versions)
            .bind(q.mode.as_str())
            .bind(q.cost.epsilon_micro)
            .bind(q.cost.delta_pico)
            .bind(q.result_rows)
            .bind(q.result_columns)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            let entry = NewEntry {
                actor: &actor,
                action: "query",
                subject: format!("project:{}", q.project_id),
                details: serde_json::json!({
                    "query_id": q.query_id,
                    "sql_sha256": q.sql_digest,
                    "plan_sha256": q.plan_digest,
                    "dataset_versions": q.dataset_versions,
                    "mode": q.mode,
                    "epsilon_micro": q.cost.epsilon_micro,
                    "delta_pico": q.cost.delta_pico,
                    "rows": q.result_rows,
                    "columns": q.result_columns,
                }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// The logged queries of a project, oldest first.
    pub async fn queries(&self, project: i64) -> Result<Vec<QueryRecord>> {
        let rows: Vec<QueryRow> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT query_id, project_id, principal, sql_digest, plan_digest, dataset_versions, mode, epsilon, \
                 delta, result_rows, result_columns FROM query_log WHERE project_id = $1 ORDER BY created_at, query_id",
            )
            .bind(project)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(QueryRecord {
                    query_id: r.query_id,
                    project_id: r.project_id,
                    principal: r.principal,
                    sql_digest: r.sql_digest,
                    plan_digest: r.plan_digest,
                    dataset_versions: parse_json(&r.dataset_versions, "query_log", "dataset_versions")?,
                    mode: r
                        .mode
                        .parse()
                        .map_err(|_| CatalogError::CorruptRow { table: "query_log", column: "mode" })?,
                    cost: Budget { epsilon_micro: r.epsilon, delta_pico: r.delta },
                    result_rows: r.result_rows,
                    result_columns: r.result_columns,
                })
            })
            .collect()
    }

    /// Cache a released result under `key`. The first result stored under a key wins: a
    /// second put for the same key keeps the original (the same question gets the same answer).
    /// Returns whether this call stored it.
    pub async fn cache_put(&self, key: &str, project: i64, query_id: &str, result: &[u8]) -> Result<bool> {
        let done = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO result_cache (cache_key, project_id, query_id, result, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cache_key) DO NOTHING",
            )
            .bind(key)
            .bind(project)
            .bind(query_id)
            .bind(result)
            .bind(now())
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// A cached result by key.
    pub async fn cache_get(&self, key: &str) -> Result<Option<CachedResult>> {
        let row: Option<(String, i64, Vec<u8>, i64)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT query_id, project_id, result, created_at FROM result_cache WHERE cache_key = $1")
                .bind(key)
                .fetch_optional(p)
                .await?
        });
        Ok(row.map(|(query_id, project_id, result, created_at)| CachedResult {
            query_id,
            project_id,
            result,
            created_at,
        }))
    }
}
