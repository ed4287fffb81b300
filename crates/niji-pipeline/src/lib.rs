//! Pipelines: specs (`pipelines/*.toml`), atomic and idempotent runs that load new source
//! files into Delta Lake tables, consent withdrawal, and the cron scheduler.
//!
//! A run ([`run::run_pipeline`]):
//! 1. takes the pipeline's lease in the catalog (never two runs of one pipeline at once);
//! 2. resumes the pipeline's unfinished run if there is one (same seq, same manifest), else
//!    lists the sources (local folders or `s3://` prefixes), skips files whose SHA-256 the catalog has recorded, and starts run
//!    `seq + 1` with a manifest of the new files;
//! 3. stages: the niji-ingest readers map, pseudonymize and consent-filter each source into
//!    Parquet under `<data-dir>/runs/<pipeline>/<seq>/`, and the report must add up;
//! 4. validates the staged rows (data-quality rules) and generalizes them;
//! 5. per table, deletes the rows of persons whose consent is withdrawn and appends the new rows
//!    sorted by `person_id`, each Delta commit carrying the application transaction
//!    `(niji:<pipeline>[:consent], seq)`, so a resumed run skips what already committed;
//! 6. registers the new dataset version (pending review) with the run report and records the
//!    loaded files, in one catalog transaction. Only then is the run visible.

pub mod lake;
pub mod run;
pub mod schedule;
mod source;
pub mod spec;

use std::path::PathBuf;

pub use run::{Progress, RunOptions, RunOutcome, run_pipeline};
pub use spec::PipelineSpec;

/// Errors of the pipeline crate.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A spec file is not valid TOML or has an unknown or missing key (the message names line and key).
    #[error("{path}: {message}")]
    SpecSyntax {
        /// The spec file.
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// A spec is well-formed but wrong.
    #[error("{path}, line {line}: {reason}")]
    SpecInvalid {
        /// The spec file.
        path: PathBuf,
        /// 1-based line (0 when the whole file is at fault).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No spec with this name.
    #[error("no pipeline named `{0}`")]
    UnknownPipeline(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A source URL the pipeline cannot list.
    #[error("source `{source_name}`: unsupported URL or glob (expected a folder, file:// or s3:// URL)")]
    SourceUrl {
        /// Source name.
        source_name: String,
    },
    /// A source's object store could not be configured or listed (the run plans nothing).
    #[error("source `{source_name}`: object store: {source}")]
    SourceStore {
        /// Source name.
        source_name: String,
        /// The cause.
        source: object_store::Error,
    },
    /// A target URL that does not parse or whose scheme is not supported.
    #[error("target URL `{url}`: {reason}")]
    TargetUrl {
        /// The URL (operator configuration, not data).
        url: String,
        /// Why.
        reason: String,
    },
    /// A reader failed as a whole (not a bad record: those are quarantined).
    #[error("source `{source_name}`: {error}")]
    Ingest {
        /// Source name.
        source_name: String,
        /// The reader's error.
        error: niji_ingest::IngestError,
    },
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] niji_catalog::CatalogError),
    /// A Delta Lake operation failed.
    #[error("delta table `{table}`: {source}")]
    Delta {
        /// CDM table.
        table: String,
        /// The cause.
        source: deltalake_core::DeltaTableError,
    },
    /// A DataFusion query (staging, quality rules, consent) failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being computed.
        what: String,
        /// The cause.
        source: datafusion::error::DataFusionError,
    },
    /// The re-identification report failed.
    #[error("re-identification report: {0}")]
    Reid(niji_pseudo::PseudoError),
    /// The report does not add up: input != loaded + quarantined + consent-excluded.
    #[error("run report of source `{source_name}` does not add up: {error}")]
    Unbalanced {
        /// Source name.
        source_name: String,
        /// The check's error.
        error: niji_ingest::IngestError,
    },
    /// Data-quality rules with `action = "fail"` failed; nothing was published.
    #[error("data-quality rules failed: {0}")]
    QualityFailed(String),
    /// The key in use is not the one the spec requires.
    #[error("pseudonymization key id {actual} differs from the spec's key_id {expected}")]
    WrongKey {
        /// Expected key id.
        expected: String,
        /// The key's id.
        actual: String,
    },
    /// The consent registry could not be loaded.
    #[error("consent registry: {0}")]
    Consent(niji_ingest::IngestError),
    /// Another process holds the pipeline's lease.
    #[error("pipeline `{pipeline}` is already running (lease held by {holder})")]
    Busy {
        /// Pipeline.
        pipeline: String,
        /// Current holder.
        holder: String,
    },
    /// The lease was lost during the run (another process took it after it expired).
    #[error("pipeline `{0}`: lease lost during the run; stopped before publishing")]
    LeaseLost(String),
    /// JSON encoding failed.
    #[error("cannot encode {what}: {source}")]
    Json {
        /// What.
        what: &'static str,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Abort the process at a named point when `NIJI_CRASH_AT` names it (crash-injection tests).
/// `abort` ends the process at once, like SIGKILL: no destructor, flush or cleanup runs.
pub fn crash_point(name: &str) {
    if std::env::var("NIJI_CRASH_AT").is_ok_and(|v| v == name) {
        tracing::warn!(point = name, "NIJI_CRASH_AT: aborting");
        std::process::abort();
    }
}
