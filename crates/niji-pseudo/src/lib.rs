//! Keyed pseudonymization for Niji.
//!
//! Direct identifiers never reach the analytic store: they are normalized ([`normalize`]),
//! combined into linkage keys ([`linkage`]) and turned into keyed pseudonyms with
//! HMAC-SHA-256 ([`PseudonymKey`]). A plain hash would fall to a dictionary attack over the
//! small identifier spaces of health data (threat T13); a keyed one does not.
//!
//! Also here: per-project re-keying for row-level extracts ([`ProjectKey`]), batch person
//! resolution and linkage-quality measurement ([`linkage::Resolver`], [`linkage::evaluate`]),
//! generalization of quasi-identifiers ([`generalize`], with mapping tables in `data/`), the
//! re-identification report ([`reid::reid_report`]) and DataFusion UDFs for all of it
//! ([`udf::register_udfs`]). See `docs/PSEUDONYMIZATION.md`.

pub mod generalize;
pub mod key;
pub mod linkage;
pub mod normalize;
#[cfg(feature = "datafusion")]
pub mod reid;
#[cfg(feature = "datafusion")]
pub mod udf;

pub use key::{Domain, ProjectKey, PseudonymKey};
pub use linkage::{Identifiers, LinkageBasis, PersonLink};
#[cfg(feature = "datafusion")]
pub use reid::{ReidReport, reid_report};
#[cfg(feature = "datafusion")]
pub use udf::register_udfs;

/// Errors of the pseudonymization crate. Messages name fields, never identifier values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PseudoError {
    /// Key material shorter than the minimum.
    #[error("pseudonymization key is {len} bytes; at least 32 are required")]
    KeyTooShort {
        /// Length found.
        len: usize,
    },
    /// The key file could not be read.
    #[error("cannot read key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key environment variable is absent or not valid hex.
    #[error("key variable {var}: {reason}")]
    KeyEnv {
        /// Variable name.
        var: String,
        /// Why.
        reason: String,
    },
    /// An identifier field failed validation; the value itself is never part of the message.
    #[error("malformed identifier field `{field}`: {reason}")]
    MalformedIdentifier {
        /// Field name (e.g. `insurer_number`).
        field: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Neither linkage key could be formed from the record.
    #[error(
        "no linkage key: the record has neither insurance identifiers (ID1) nor kana name (ID2) with birth date and sex"
    )]
    NoLinkageKey,
    /// A re-identification report was asked for a table the session does not have.
    #[error("re-identification report: no table `{table}`")]
    UnknownTable {
        /// Table name.
        table: String,
    },
    /// A quasi-identifier (or person) column is not in the table.
    #[error("re-identification report: table `{table}` has no column `{column}`")]
    UnknownColumn {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A re-identification report needs at least one quasi-identifier.
    #[error("re-identification report on `{table}`: no quasi-identifiers given")]
    NoQuasiIdentifiers {
        /// Table name.
        table: String,
    },
    /// The engine failed while computing a re-identification report.
    #[error("re-identification report on `{table}` failed in the query engine: {reason}")]
    ReidQuery {
        /// Table name.
        table: String,
        /// The engine's message.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = PseudoError> = std::result::Result<T, E>;
