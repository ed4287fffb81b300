//! The catalog's error type: one variant per cause. Messages name ids, datasets, files and
//! keys, never a token, a cell value or an identifier.

use std::path::PathBuf;

use crate::VersionStatus;

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog URL has a scheme other than `sqlite:` or `postgres:`.
    #[error("unsupported catalog URL scheme (expected sqlite: or postgres:)")]
    UnsupportedUrl,
    /// The database refused or failed a statement.
    #[error("catalog database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("catalog migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A dataset definition file is not valid TOML or has an unknown or missing key.
    #[error("{path}: {message}")]
    DatasetSyntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names line, column and key).
        message: String,
    },
    /// A dataset definition is well-formed but wrong (unknown table or column, bad bounds…).
    #[error("{path}: `{key}`: {reason}")]
    DatasetInvalid {
        /// The file.
        path: PathBuf,
        /// The offending key, dotted (`bounds.claim.total_points`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Two definition files declare the same dataset.
    #[error("dataset `{name}` is defined twice ({first} and {second})")]
    DuplicateDataset {
        /// Dataset name.
        name: String,
        /// First file.
        first: PathBuf,
        /// Second file.
        second: PathBuf,
    },
    /// A dataset name not in the catalog.
    #[error("unknown dataset `{0}` (load the definitions with `niji catalog load`)")]
    UnknownDataset(String),
    /// A dataset version references a table its dataset does not have.
    #[error("dataset `{dataset}` has no table `{table}`")]
    UnknownTable {
        /// Dataset name.
        dataset: String,
        /// Table name.
        table: String,
    },
    /// A dataset version id not in the catalog.
    #[error("unknown dataset version {0}")]
    UnknownVersion(i64),
    /// A status change that the review workflow does not allow.
    #[error("dataset version {id} is {from}; it cannot become {to}")]
    IllegalTransition {
        /// Version id.
        id: i64,
        /// Current status.
        from: VersionStatus,
        /// Requested status.
        to: VersionStatus,
    },
    /// A stored status, role or mode the code does not know (the database was edited).
    #[error("corrupt catalog row: {table}.{column} has an unknown value")]
    CorruptRow {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
    },
    /// A project name or id not in the catalog.
    #[error("unknown project `{0}`")]
    UnknownProject(String),
    /// A project name that is already taken.
    #[error("project `{0}` already exists")]
    DuplicateProject(String),
    /// A project needs at least one dataset and one mode.
    #[error("invalid project: {0}")]
    InvalidProject(&'static str),
    /// A revoke for a principal who is not a current member of the project.
    #[error("principal {principal} is not a member of project {project}")]
    NotAMember {
        /// Project id.
        project: i64,
        /// Principal id.
        principal: i64,
    },
    /// A token id not in the catalog.
    #[error("unknown token {0}")]
    UnknownTokenId(i64),
    /// A principal name or id not in the catalog.
    #[error("unknown principal `{0}`")]
    UnknownPrincipal(String),
    /// A principal name that is already taken.
    #[error("principal `{0}` already exists")]
    DuplicatePrincipal(String),
    /// A role name other than researcher, steward, pipeline, admin.
    #[error("unknown role `{0}` (expected researcher, steward, pipeline or admin)")]
    UnknownRole(String),
    /// A mode name other than dp, sdc, extract.
    #[error("unknown mode `{0}` (expected dp, sdc or extract)")]
    UnknownMode(String),
    /// An ε or δ that is negative, not finite, or not representable in the ledger's units.
    #[error("invalid {what}: must be finite, non-negative and at most {max}")]
    InvalidBudget {
        /// `epsilon` or `delta`.
        what: &'static str,
        /// The largest accepted value.
        max: f64,
    },
    /// A budget total below what the project has already spent.
    #[error("project {project}: the new budget is below what is already spent")]
    BudgetBelowSpent {
        /// Project id.
        project: i64,
    },
    /// A charge that would take the project past its budget; nothing was charged.
    #[error("project {project}: privacy budget exhausted (the charge would exceed the budget)")]
    BudgetExceeded {
        /// Project id.
        project: i64,
    },
    /// The project's expiry has passed.
    #[error("project {project} has expired")]
    ProjectExpired {
        /// Project id.
        project: i64,
    },
    /// A token that is not of the form `niji_<64 hex digits>`.
    #[error("malformed token")]
    MalformedToken,
    /// A token whose digest is not in the catalog.
    #[error("unknown token")]
    UnknownToken,
    /// A token past its expiry.
    #[error("token {token_id} has expired")]
    TokenExpired {
        /// Token id (not secret).
        token_id: i64,
    },
    /// A revoked token, or a token of a revoked principal.
    #[error("token {token_id} has been revoked")]
    TokenRevoked {
        /// Token id (not secret).
        token_id: i64,
    },
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Rng,
    /// A JSON document stored in the catalog does not parse (the database was edited).
    #[error("corrupt JSON in {table}.{column}: {source}")]
    CorruptJson {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
        /// Parser error.
        source: serde_json::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
