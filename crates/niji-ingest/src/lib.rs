//! Source readers that turn FHIR R4, receipts (レセプト電算 .UKE), long-term-care CSV and the
//! consent registry into rows of the CDM ([`niji_cdm`]).
//!
//! Every reader follows the same contract: each input record ends up **loaded** (rows in
//! the [`sink::CdmSink`]), **quarantined** (a [`report::Quarantined`] entry naming file,
//! line or entry, field and reason, never a value) or **consent-excluded**, and the
//! [`report::IngestReport`] adds up. Direct identifiers only feed [`niji_pseudo`] linkage
//! keys; they never reach a CDM row.

pub mod care;
pub mod consent;
pub mod fhir;
pub mod receipt;
pub mod report;
pub mod sink;

use std::path::PathBuf;

/// Threads the ingest uses by default: two where the machine has two cores (one reads and
/// parses ahead of the other), else one.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// Errors of the ingest crate. Bad *records* are not errors: they are quarantined. These are
/// the failures that stop a whole input or the output.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An input could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("parquet output for table `{table}`: {source}")]
    Parquet {
        /// CDM table.
        table: &'static str,
        /// The Parquet error.
        source: parquet::errors::ParquetError,
    },
    /// Arrow batch assembly failed.
    #[error("arrow batch for table `{table}`: {source}")]
    Arrow {
        /// CDM table.
        table: &'static str,
        /// The Arrow error.
        source: arrow::error::ArrowError,
    },
    /// A row did not fit the CDM table (a mapping bug, not bad input).
    #[error("row for table `{table}` does not fit the CDM schema: {reason}")]
    RowShape {
        /// CDM table.
        table: &'static str,
        /// What did not fit.
        reason: String,
    },
    /// The run report does not add up: input != loaded + quarantined + consent-excluded.
    #[error(
        "report does not add up: {records} records in, {loaded} loaded + {quarantined} quarantined + {excluded} consent-excluded"
    )]
    Unbalanced {
        /// Records read.
        records: u64,
        /// Records loaded.
        loaded: u64,
        /// Records quarantined.
        quarantined: u64,
        /// Records excluded by consent.
        excluded: u64,
    },
    /// A SQL-on-FHIR ViewDefinition is malformed.
    #[error("invalid ViewDefinition: {0}")]
    ViewDefinition(String),
    /// A FHIRPath expression of a view does not parse.
    #[error("FHIRPath `{path}`: {reason}")]
    FhirPath {
        /// The expression (view text, not data).
        path: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A view failed on a resource (e.g. several values where `collection` is not true).
    #[error("evaluation of `{path}` failed: {reason}")]
    ViewEval {
        /// The expression.
        path: String,
        /// Why (never a data value).
        reason: String,
    },
    /// JSON output failed.
    #[error("cannot encode {what} as JSON: {source}")]
    Json {
        /// What was being encoded.
        what: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A receipt or care file is not valid CP932 (Shift_JIS).
    #[error("{path} is not CP932: invalid byte sequence at line {line}")]
    NotCp932 {
        /// The input file.
        path: PathBuf,
        /// 1-based line of the first invalid sequence.
        line: u64,
    },
    /// A receipt or care file is UTF-8 text where CP932 is expected.
    #[error("{path} is UTF-8, expected CP932")]
    Utf8NotCp932 {
        /// The input file.
        path: PathBuf,
    },
    /// A CSV file's header does not match its layout.
    #[error("{path}: header does not match the layout: {reason}")]
    Header {
        /// The input file.
        path: PathBuf,
        /// What is missing or different.
        reason: String,
    },
    /// A layout table (pipelines/layouts/*.toml) is invalid.
    #[error("layout {name}: {reason}")]
    Layout {
        /// Layout file or name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A consent registry row is invalid; the whole registry is refused, since dropping one
    /// row could silently ignore an opt-out.
    #[error("consent registry {path} line {line}, field `{field}`: {reason}")]
    ConsentRow {
        /// The registry file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// Field at fault.
        field: &'static str,
        /// Why (never the value).
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;
