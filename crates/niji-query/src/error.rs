//! The crate's one error type. Every variant has a stable [`QueryError::code`] and a message
//! that never contains a data value: execution errors (which DataFusion words with the
//! offending value, e.g. a failed cast) are replaced by a fixed text.

use niji_catalog::{CatalogError, Mode};
use niji_policy::PolicyError;

/// What kind of failure, for the edge to map to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is wrong (SQL, mode, parameters).
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    /// Something named does not exist.
    NotFound,
    /// A limit (time, memory, budget) stopped it.
    Limit,
    /// The service is saturated.
    Busy,
    /// A bug or a broken dependency.
    Internal,
}

/// Everything that can go wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL or the plan breaks the policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No project by that id or name.
    #[error("no project `{0}`")]
    ProjectNotFound(String),
    /// The caller is not a current member of the project.
    #[error("you are not a member of project `{0}`")]
    NotMember(String),
    /// The project's permit has expired.
    #[error("project `{0}` has expired")]
    ProjectExpired(String),
    /// The requested mode is not allowed for any dataset of the project.
    #[error("mode {0} is not allowed for this project's datasets")]
    ModeNotAllowed(Mode),
    /// No dataset of the project has an approved version yet.
    #[error("no dataset of this project has a steward-approved version yet")]
    NoApprovedVersion,
    /// The differential-privacy layer refused or failed.
    #[error(transparent)]
    Dp(niji_dp::DpError),
    /// The project's budget cannot pay for the query.
    #[error("the project's privacy budget cannot pay for this query")]
    BudgetExhausted,
    /// Request parameters out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// DataFusion could not plan the query (names and types from the researcher's own SQL).
    #[error("the query cannot be planned: {0}")]
    Plan(String),
    /// The query failed while running; the cause is withheld.
    #[error(
        "the query failed while running (for example a cast of text to a number, a division by zero or an overflow); the cause is not shown because it may contain data values"
    )]
    Execution,
    /// The query needed more memory than its pool.
    #[error("the query needed more than its memory limit of {0} MiB")]
    Memory(usize),
    /// The query ran past its deadline.
    #[error("the query did not finish within {0} s")]
    Timeout(u64),
    /// Too many queries are running.
    #[error("too many queries are running; try again shortly")]
    Busy,
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// Opening a dataset's tables failed.
    #[error("opening dataset `{dataset}` table `{table}`: {message}")]
    Storage {
        /// Dataset.
        dataset: String,
        /// Table.
        table: String,
        /// Cause (paths and versions, never values).
        message: String,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Policy(p) => p.code(),
            QueryError::ProjectNotFound(_) => "project_not_found",
            QueryError::NotMember(_) => "not_a_member",
            QueryError::ProjectExpired(_) => "project_expired",
            QueryError::ModeNotAllowed(_) => "mode_not_allowed",
            QueryError::NoApprovedVersion => "no_approved_version",
            QueryError::Dp(e) => e.code(),
            QueryError::BudgetExhausted => "budget_exhausted",
            QueryError::InvalidRequest(_) => "invalid_request",
            QueryError::Plan(_) => "sql_plan",
            QueryError::Execution => "execution_failed",
            QueryError::Memory(_) => "memory_limit",
            QueryError::Timeout(_) => "timeout",
            QueryError::Busy => "busy",
            QueryError::Catalog(_) | QueryError::Storage { .. } | QueryError::Internal(_) => "internal",
        }
    }

    /// The kind, for status mapping at the edge.
    pub fn kind(&self) -> Kind {
        match self {
            QueryError::Policy(PolicyError::Internal(_))
            | QueryError::Policy(PolicyError::Io { .. })
            | QueryError::Catalog(_)
            | QueryError::Storage { .. }
            | QueryError::Internal(_) => Kind::Internal,
            QueryError::Policy(_)
            | QueryError::InvalidRequest(_)
            | QueryError::Plan(_)
            | QueryError::Execution
            | QueryError::NoApprovedVersion => Kind::BadRequest,
            QueryError::NotMember(_) | QueryError::ProjectExpired(_) | QueryError::ModeNotAllowed(_) => Kind::Forbidden,
            QueryError::ProjectNotFound(_) => Kind::NotFound,
            QueryError::Memory(_) | QueryError::Timeout(_) => Kind::Limit,
            QueryError::Busy => Kind::Busy,
            QueryError::Dp(niji_dp::DpError::Mechanism { .. } | niji_dp::DpError::ShareExceeded { .. }) => {
                Kind::Internal
            }
            QueryError::Dp(niji_dp::DpError::Execution { .. }) => Kind::BadRequest,
            QueryError::Dp(_) => Kind::BadRequest,
            QueryError::BudgetExhausted => Kind::Forbidden,
        }
    }

    /// The message a researcher sees: internal causes are not shown.
    pub fn public_message(&self) -> String {
        match self.kind() {
            Kind::Internal => "internal error; the operator's log has the cause".to_owned(),
            _ => self.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;
