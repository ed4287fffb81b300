//! The crate's one error type. Every variant has a stable [`PolicyError::code`]; messages name
//! the researcher's own SQL or the policy file, never a data value.

use std::path::PathBuf;

/// Everything that can go wrong in niji-policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A policy file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    PolicySyntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A policy file is well-formed but wrong.
    #[error("{path}: `{key}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// Why.
        reason: String,
    },
    /// Two files define the policy of the same project × dataset.
    #[error("the policy of project `{project}` on dataset `{dataset}` is defined twice: {first} and {second}")]
    DuplicatePolicy {
        /// Project.
        project: String,
        /// Dataset.
        dataset: String,
        /// The first file.
        first: String,
        /// The second file.
        second: String,
    },
    /// The SQL text is longer than allowed.
    #[error("the SQL text is {bytes} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The SQL text does not parse.
    #[error("the SQL does not parse: {0}")]
    Syntax(String),
    /// Not exactly one statement.
    #[error("exactly one SQL statement is accepted per request, found {0}")]
    StatementCount(usize),
    /// A statement that is not a query.
    #[error("{0} is not allowed: only queries (SELECT, WITH … SELECT, VALUES) are accepted")]
    StatementRefused(&'static str),
    /// The query is nested or sized beyond the limits.
    #[error("the query is too complex: its {what} exceeds {max}")]
    TooComplex {
        /// What was exceeded.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A table function that is not on the allow-list.
    #[error("table function `{0}` is not allowed")]
    TableFunction(String),
    /// The planned query contains a node the service never runs.
    #[error("{0} is not allowed")]
    PlanRefused(&'static str),
    /// `sdc` mode needs an aggregate query.
    #[error(
        "mode sdc releases aggregates only: the query must aggregate (GROUP BY or an aggregate function) at its top"
    )]
    AggregateRequired,
    /// No `person_id` reaches the aggregation, so persons per cell cannot be counted or bounded.
    #[error("the privacy unit (person_id) does not reach the aggregation: {0}")]
    PersonUnreachable(&'static str),
    /// A query shape the release mode does not support.
    #[error("unsupported query shape for this mode: {0}")]
    UnsupportedShape(&'static str),
    /// A plan rewrite failed (a bug, not the researcher's fault).
    #[error("internal error while rewriting the plan: {0}")]
    Internal(String),
}

impl PolicyError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::Io { .. } => "policy_io",
            PolicyError::PolicySyntax { .. } => "policy_syntax",
            PolicyError::Invalid { .. } => "policy_invalid",
            PolicyError::DuplicatePolicy { .. } => "policy_duplicate",
            PolicyError::TooLarge { .. } => "sql_too_large",
            PolicyError::Syntax(_) => "sql_syntax",
            PolicyError::StatementCount(_) => "sql_multiple_statements",
            PolicyError::StatementRefused(_) => "sql_statement_refused",
            PolicyError::TooComplex { .. } => "sql_too_complex",
            PolicyError::TableFunction(_) => "sql_table_function",
            PolicyError::PlanRefused(_) => "sql_statement_refused",
            PolicyError::AggregateRequired => "sdc_aggregate_required",
            PolicyError::PersonUnreachable(_) => "privacy_unit_unreachable",
            PolicyError::UnsupportedShape(_) => "unsupported_shape",
            PolicyError::Internal(_) => "internal",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;
