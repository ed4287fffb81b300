//! The lake: one Delta table per dataset and CDM table, `<root>/<dataset>/<table>`, written
//! through deltalake-core on object_store (a local folder by default).
//!
//! Every commit a run makes carries an application transaction `(app_id, seq)` and the
//! metadata `niji_run`, `niji_step`, `niji_rows`: a resumed run asks the table whether its
//! step already committed ([`Lake::committed`]) and recovers the row count from the history.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Transaction;
use deltalake_core::kernel::transaction::CommitProperties;
use deltalake_core::protocol::SaveMode;
use futures::StreamExt;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use url::Url;

use crate::{PipelineError, Result};

/// `s3://` for deltalake-core: the object store comes from object_store's own S3 builder with
/// the spec's storage options, completed from the standard `AWS_*` environment variables
/// (credentials never come from the spec). Commits use conditional PUT (`If-None-Match`).
struct S3Stores;

impl deltalake_core::logstore::ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<(deltalake_core::logstore::ObjectStoreRef, object_store::path::Path)> {
        let (store, path) = object_store::parse_url_opts(url, s3_options(config.raw.clone()))?;
        Ok((Arc::from(store), path))
    }
}

/// S3 options for object_store: the given ones, completed from the standard `AWS_*`
/// environment variables, with conditional PUT by ETag (Delta commits need it).
pub(crate) fn s3_options(mut opts: HashMap<String, String>) -> HashMap<String, String> {
    for (env, key) in [
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
        ("AWS_REGION", "aws_region"),
        ("AWS_ENDPOINT_URL", "aws_endpoint"),
    ] {
        if !opts.contains_key(key)
            && let Ok(v) = std::env::var(env)
        {
            opts.insert(key.to_owned(), v);
        }
    }
    opts.entry("aws_conditional_put".to_owned()).or_insert_with(|| "etag".to_owned());
    opts
}

struct S3Logs;

impl deltalake_core::logstore::LogStoreFactory for S3Logs {
    fn with_options(
        &self,
        prefixed_store: deltalake_core::logstore::ObjectStoreRef,
        root_store: deltalake_core::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn deltalake_core::logstore::LogStore>> {
        Ok(deltalake_core::logstore::default_logstore(prefixed_store, root_store, location, options))
    }
}

fn register_s3() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            deltalake_core::logstore::object_store_factories().insert(scheme.clone(), Arc::new(S3Stores));
            deltalake_core::logstore::logstore_factories().insert(scheme, Arc::new(S3Logs));
        }
    });
}

/// The lake root and its storage options.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
}

fn delta_err(table: &str) -> impl FnOnce(deltalake_core::DeltaTableError) -> PipelineError + '_ {
    move |source| PipelineError::Delta { table: table.to_owned(), source }
}

impl Lake {
    /// A lake from a URL or folder (relative folders are taken under `data_dir`).
    pub fn new(url: Option<&str>, data_dir: &Path, options: HashMap<String, String>) -> Result<Lake> {
        register_s3();
        let bad = |u: &str, reason: String| PipelineError::TargetUrl { url: u.to_owned(), reason };
        let root = match url {
            Some(u) if u.contains("://") => {
                let mut url = Url::parse(u).map_err(|e| bad(u, e.to_string()))?;
                if url.scheme() == "file" {
                    let p = url.to_file_path().map_err(|()| bad(u, "not a local path".into()))?;
                    std::fs::create_dir_all(&p).map_err(|source| PipelineError::Io { path: p.clone(), source })?;
                } else if url.scheme() != "s3" && url.scheme() != "memory" {
                    return Err(bad(u, "expected a folder, file://, s3:// or memory:// URL".into()));
                }
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                url
            }
            other => {
                let p = data_dir.join(other.unwrap_or("lake"));
                std::fs::create_dir_all(&p).map_err(|source| PipelineError::Io { path: p.clone(), source })?;
                let abs = p.canonicalize().map_err(|source| PipelineError::Io { path: p.clone(), source })?;
                Url::from_directory_path(&abs).map_err(|()| bad(&abs.display().to_string(), "not absolute".into()))?
            }
        };
        Ok(Lake { root, options })
    }

    /// The lake root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// URL of a table.
    pub fn table_url(&self, dataset: &str, table: &str) -> Result<Url> {
        self.root
            .join(&format!("{dataset}/{table}/"))
            .map_err(|e| PipelineError::TargetUrl { url: self.root.to_string(), reason: e.to_string() })
    }

    /// Open a table at its latest version (possibly not yet created: `version()` is None).
    pub async fn open(&self, dataset: &str, table: &str) -> Result<DeltaTable> {
        let url = self.table_url(dataset, table)?;
        if url.scheme() == "file"
            && let Ok(p) = url.to_file_path()
        {
            std::fs::create_dir_all(&p).map_err(|source| PipelineError::Io { path: p.clone(), source })?;
        }
        DeltaTable::try_from_url_with_storage_options(url, self.options.clone()).await.map_err(delta_err(table))
    }

    /// Open a table at a given version.
    pub async fn open_version(&self, dataset: &str, table: &str, version: i64) -> Result<DeltaTable> {
        let mut t = self.open(dataset, table).await?;
        t.load_version(u64::try_from(version).unwrap_or(0)).await.map_err(delta_err(table))?;
        Ok(t)
    }

    /// Whether step `app_id` of run `seq` already committed to this table, and the row count
    /// it recorded.
    pub async fn committed(&self, t: &DeltaTable, table: &str, app_id: &str, seq: i64) -> Result<Option<u64>> {
        let Ok(state) = t.snapshot() else { return Ok(None) };
        let v = state.transaction_version(t.log_store().as_ref(), app_id).await.map_err(delta_err(table))?;
        if v.is_none_or(|v| v < seq) {
            return Ok(None);
        }
        let mut history = t.history(Some(100));
        while let Some(ci) = history.next().await {
            let ci = ci.map_err(delta_err(table))?;
            let run = ci.info.get("niji_run").and_then(serde_json::Value::as_i64);
            let step = ci.info.get("niji_step").and_then(serde_json::Value::as_str);
            if run == Some(seq) && step == Some(app_id) {
                return Ok(Some(ci.info.get("niji_rows").and_then(serde_json::Value::as_u64).unwrap_or(0)));
            }
        }
        Ok(Some(0))
    }

    fn props(app_id: &str, seq: i64, rows: u64) -> CommitProperties {
        CommitProperties::default().with_application_transaction(Transaction::new(app_id, seq)).with_metadata([
            ("niji_run".to_owned(), serde_json::json!(seq)),
            ("niji_step".to_owned(), serde_json::json!(app_id)),
            ("niji_rows".to_owned(), serde_json::json!(rows)),
        ])
    }

    /// Append batches (one commit, zstd Parquet); returns the new table version.
    pub async fn append(
        &self,
        t: DeltaTable,
        table: &str,
        batches: Vec<RecordBatch>,
        app_id: &str,
        seq: i64,
    ) -> Result<i64> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        // Delta compares each batch's schema with the table's, which has no schema-level metadata.
        let batches = batches
            .into_iter()
            .map(|b| {
                let schema = Arc::new(arrow::datatypes::Schema::new(b.schema().fields().clone()));
                RecordBatch::try_new(schema, b.columns().to_vec())
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| PipelineError::Delta { table: table.to_owned(), source: e.into() })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
            .build();
        let t = t
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(props)
            .with_table_name(table)
            .with_commit_properties(Self::props(app_id, seq, rows))
            .await
            .map_err(delta_err(table))?;
        Ok(version_of(&t))
    }

    /// Delete the rows of these persons (one commit); returns (new version, rows deleted).
    pub async fn delete_persons(
        &self,
        t: DeltaTable,
        table: &str,
        persons: &[String],
        app_id: &str,
        seq: i64,
        expected_rows: u64,
    ) -> Result<(i64, u64)> {
        let list: Vec<String> = persons.iter().map(|p| format!("'{}'", p.replace('\'', "''"))).collect();
        let predicate = format!("person_id IN ({})", list.join(", "));
        let (t, metrics) = t
            .delete()
            .with_predicate(predicate)
            .with_commit_properties(Self::props(app_id, seq, expected_rows))
            .await
            .map_err(delta_err(table))?;
        Ok((version_of(&t), metrics.num_deleted_rows.map_or(expected_rows, |n| n as u64)))
    }

    /// Register a table (at the version it is loaded at) in a DataFusion session.
    pub async fn register(&self, ctx: &SessionContext, name: &str, t: &DeltaTable) -> Result<()> {
        t.update_datafusion_session(&ctx.state()).map_err(delta_err(name))?;
        let provider = t
            .table_provider()
            .await
            .map_err(|source| PipelineError::Query { what: format!("reading delta table `{name}`"), source })?;
        ctx.register_table(name, provider)
            .map_err(|source| PipelineError::Query { what: format!("registering table `{name}`"), source })?;
        Ok(())
    }
}

/// The loaded version of a table as the catalog stores it (-1: not created).
pub fn version_of(t: &DeltaTable) -> i64 {
    t.version().map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Shared handle.
pub type LakeRef = Arc<Lake>;
