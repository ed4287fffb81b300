//! What pipelines keep in the catalog: runs, loaded source files and the scheduler lease.
//!
//! - A **run** has a per-pipeline sequence number and a manifest (the input files it planned,
//!   with their SHA-256, and the consent date). A run that did not succeed is resumed by the
//!   next attempt with the same seq and manifest ([`Catalog::open_run`]), which is what makes
//!   the Delta application transactions (keyed by seq) idempotent.
//! - **Loaded files** are recorded by content in the same transaction that registers the
//!   dataset version ([`Catalog::complete_run`]): a crash before it leaves them unrecorded, so
//!   they are picked up again.
//! - The **lease** ([`Catalog::acquire_lease`]) is one row per pipeline taken with a conditional
//!   `UPDATE`, so two processes can never both hold it; holders renew it by heartbeat.
//!
//! Times in these tables are unix **milliseconds**.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::audit::{NewEntry, append_in_tx};
use crate::{BeginWrite, Catalog, CatalogError, Result, parse_json, with_pool};

/// Now in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One pipeline run (all attempts of one seq).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineRun {
    /// Row id.
    pub id: i64,
    /// Pipeline name.
    pub pipeline: String,
    /// Sequence number within the pipeline (1, 2, …).
    pub seq: i64,
    /// `open`, `failed`, `succeeded` or `noop`.
    pub status: String,
    /// The planned inputs (JSON written by the pipeline).
    pub manifest: Value,
    /// Attempts made.
    pub attempts: i64,
    /// Holder of the last attempt.
    pub holder: String,
    /// Start of the first attempt (unix ms).
    pub started_at: i64,
    /// End of the last attempt (unix ms).
    pub finished_at: Option<i64>,
    /// The dataset version registered by the run.
    pub version_id: Option<i64>,
    /// Counts of the run report.
    pub summary: Option<Value>,
    /// The last attempt's error.
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    pipeline: String,
    seq: i64,
    status: String,
    manifest: String,
    attempts: i64,
    holder: String,
    started_at: i64,
    finished_at: Option<i64>,
    version_id: Option<i64>,
    summary: Option<String>,
    error: Option<String>,
}

impl TryFrom<RunRow> for PipelineRun {
    type Error = CatalogError;
    fn try_from(r: RunRow) -> Result<PipelineRun> {
        Ok(PipelineRun {
            id: r.id,
            pipeline: r.pipeline,
            seq: r.seq,
            status: r.status,
            manifest: parse_json(&r.manifest, "pipeline_run", "manifest")?,
            attempts: r.attempts,
            holder: r.holder,
            started_at: r.started_at,
            finished_at: r.finished_at,
            version_id: r.version_id,
            summary: r.summary.as_deref().map(|s| parse_json(s, "pipeline_run", "summary")).transpose()?,
            error: r.error,
        })
    }
}

const SELECT_RUN: &str = "SELECT id, pipeline, seq, status, manifest, attempts, holder, started_at, finished_at, \
     version_id, summary, error FROM pipeline_run";

/// A source file loaded by a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LoadedFile {
    /// Content digest (hex SHA-256).
    pub sha256: String,
    /// Path or object URL when loaded.
    pub path: String,
    /// Size in bytes.
    pub bytes: i64,
    /// Run that loaded it.
    pub run_seq: i64,
}

/// What [`Catalog::complete_run`] registers.
#[derive(Debug, Clone)]
pub struct RunCompletion<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// Run seq.
    pub seq: i64,
    /// Dataset the version belongs to.
    pub dataset: &'a str,
    /// Delta version per table.
    pub delta_versions: &'a BTreeMap<String, i64>,
    /// The full run report.
    pub run_report: &'a Value,
    /// Counts shown in run history.
    pub summary: &'a Value,
    /// Files loaded (read, whatever the fate of their records).
    pub files: &'a [LoadedFile],
}

impl Catalog {
    /// The unfinished run of a pipeline (status `open` or `failed`), if any: it must be resumed
    /// before a new run starts.
    pub async fn open_run(&self, pipeline: &str) -> Result<Option<PipelineRun>> {
        let sql = format!("{SELECT_RUN} WHERE pipeline = $1 AND status IN ('open', 'failed') ORDER BY seq LIMIT 1");
        let row: Option<RunRow> = with_pool!(self, |p| sqlx::query_as(&sql).bind(pipeline).fetch_optional(p).await?);
        row.map(PipelineRun::try_from).transpose()
    }

    /// Start a new run with the next seq and its manifest; returns the seq.
    pub async fn start_run(&self, pipeline: &str, holder: &str, manifest: &Value) -> Result<i64> {
        let manifest = manifest.to_string();
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let (seq,): (i64,) =
                sqlx::query_as("SELECT COALESCE(MAX(seq), 0) + 1 FROM pipeline_run WHERE pipeline = $1")
                    .bind(pipeline)
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query(
                "INSERT INTO pipeline_run (pipeline, seq, status, manifest, holder, started_at) \
                 VALUES ($1, $2, 'open', $3, $4, $5)",
            )
            .bind(pipeline)
            .bind(seq)
            .bind(&manifest)
            .bind(holder)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(seq)
        })
    }

    /// Count a new attempt at an unfinished run.
    pub async fn resume_run(&self, pipeline: &str, seq: i64, holder: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "UPDATE pipeline_run SET attempts = attempts + 1, holder = $3, status = 'open', error = NULL \
                 WHERE pipeline = $1 AND seq = $2",
            )
            .bind(pipeline)
            .bind(seq)
            .bind(holder)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// Record that an attempt failed (it will be resumed). `error` must not contain values.
    pub async fn fail_run(&self, pipeline: &str, seq: i64, error: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "UPDATE pipeline_run SET status = 'failed', error = $3, finished_at = $4 \
                 WHERE pipeline = $1 AND seq = $2 AND status = 'open'",
            )
            .bind(pipeline)
            .bind(seq)
            .bind(error)
            .bind(now_ms())
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// Close a run that had nothing to load or delete (no dataset version).
    pub async fn noop_run(&self, pipeline: &str, seq: i64, summary: &Value) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query(
                "UPDATE pipeline_run SET status = 'noop', summary = $3, finished_at = $4, error = NULL \
                 WHERE pipeline = $1 AND seq = $2",
            )
            .bind(pipeline)
            .bind(seq)
            .bind(summary.to_string())
            .bind(now_ms())
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// In one transaction: register the dataset version (pending review, audited as a pipeline
    /// run), record the loaded files and mark the run succeeded. Returns the version id.
    #[tracing::instrument(skip(self, c), fields(pipeline = c.pipeline, seq = c.seq))]
    pub async fn complete_run(&self, actor: &str, c: &RunCompletion<'_>) -> Result<i64> {
        let def = self.dataset(c.dataset).await?;
        if let Some(t) = c.delta_versions.keys().find(|t| !def.has_table(t)) {
            return Err(CatalogError::UnknownTable { dataset: c.dataset.to_owned(), table: t.clone() });
        }
        let versions_json = serde_json::to_string(c.delta_versions).map_err(|source| CatalogError::CorruptJson {
            table: "dataset_version",
            column: "delta_versions",
            source,
        })?;
        let report_json = c.run_report.to_string();
        let t = now_ms();
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO dataset_version (dataset, delta_versions, run_report, status, created_at, created_by) \
                 VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id",
            )
            .bind(c.dataset)
            .bind(&versions_json)
            .bind(&report_json)
            .bind(t / 1000)
            .bind(actor)
            .fetch_one(&mut *tx)
            .await?;
            for f in c.files {
                sqlx::query(
                    "INSERT INTO pipeline_file (pipeline, sha256, path, bytes, run_seq, loaded_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, sha256) DO NOTHING",
                )
                .bind(c.pipeline)
                .bind(&f.sha256)
                .bind(&f.path)
                .bind(f.bytes)
                .bind(c.seq)
                .bind(t)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE pipeline_run SET status = 'succeeded', version_id = $3, summary = $4, finished_at = $5, \
                 error = NULL WHERE pipeline = $1 AND seq = $2",
            )
            .bind(c.pipeline)
            .bind(c.seq)
            .bind(id)
            .bind(c.summary.to_string())
            .bind(t)
            .execute(&mut *tx)
            .await?;
            let entry = NewEntry {
                actor,
                action: "pipeline.run",
                subject: format!("dataset_version:{id}"),
                details: serde_json::json!({
                    "dataset": c.dataset,
                    "pipeline": c.pipeline,
                    "run_seq": c.seq,
                    "delta_versions": c.delta_versions,
                    "files": c.files.len(),
                    "run_report_sha256": crate::sha256_hex(report_json.as_bytes()),
                }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Digests of the files a pipeline has loaded.
    pub async fn loaded_files(&self, pipeline: &str) -> Result<Vec<LoadedFile>> {
        let rows: Vec<LoadedFile> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT sha256, path, bytes, run_seq FROM pipeline_file WHERE pipeline = $1 ORDER BY run_seq, path",
            )
            .bind(pipeline)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// Runs, newest first, of one pipeline or all.
    pub async fn pipeline_runs(&self, pipeline: Option<&str>, limit: i64) -> Result<Vec<PipelineRun>> {
        let sql =
            format!("{SELECT_RUN} WHERE ($1 IS NULL OR pipeline = $1) ORDER BY started_at DESC, id DESC LIMIT $2");
        let rows: Vec<RunRow> =
            with_pool!(self, |p| sqlx::query_as(&sql).bind(pipeline).bind(limit).fetch_all(p).await?);
        rows.into_iter().map(PipelineRun::try_from).collect()
    }

    /// Take the lease of `name` for `holder` until now + `ttl_ms`, if it is free, expired or
    /// already ours. Returns whether it was taken. One conditional `UPDATE`: of two racing
    /// processes exactly one wins.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = now_ms();
        with_pool!(self, |p| {
            sqlx::query("INSERT INTO pipeline_lease (name, holder, expires_at) VALUES ($1, NULL, 0) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .execute(p)
                .await?;
            let r = sqlx::query(
                "UPDATE pipeline_lease SET holder = $2, expires_at = $3 \
                 WHERE name = $1 AND (holder IS NULL OR holder = $2 OR expires_at < $4)",
            )
            .bind(name)
            .bind(holder)
            .bind(now + ttl_ms)
            .bind(now)
            .execute(p)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    /// Extend a held lease; false when it is no longer ours (it expired and another took it;
    /// while the holder column still names us, nobody else can have run).
    pub async fn renew_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = now_ms();
        with_pool!(self, |p| {
            let r = sqlx::query("UPDATE pipeline_lease SET expires_at = $3 WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .bind(now + ttl_ms)
                .execute(p)
                .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    /// Give a lease back (no-op when it is not ours).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        with_pool!(self, |p| {
            sqlx::query("UPDATE pipeline_lease SET holder = NULL, expires_at = 0 WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The current holder of a lease, if held and not expired.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>, i64)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT holder, expires_at FROM pipeline_lease WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
        });
        Ok(row.and_then(|(h, exp)| h.filter(|_| exp >= now_ms())))
    }
}
