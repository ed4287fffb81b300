//! API errors: the one place where a failure becomes an HTTP status and a stable code.
//! Messages never carry tokens or data values; internal errors are logged and returned as
//! `internal` with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use niji_catalog::CatalogError;
use niji_pipeline::PipelineError;
use niji_query::{Kind, QueryError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer …` header.
    #[error("missing bearer token")]
    MissingToken,
    /// The caller's role may not use this endpoint.
    #[error("this endpoint needs the {0} role")]
    Forbidden(&'static str),
    /// A researcher asked for a project they are not a member of.
    #[error("not a member of this project")]
    NotMember,
    /// A request body or query string that does not parse.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A request body larger than the limit.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// None of the media types in `Accept` can be produced.
    #[error("cannot produce any media type in Accept; use application/json, text/csv or {ARROW_STREAM}")]
    NotAcceptable,
    /// No route for this path.
    #[error("no such route")]
    NoRoute,
    /// The route exists but not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The query service refused or failed ([`QueryError::kind`] picks the status).
    #[error(transparent)]
    Query(Box<QueryError>),
    /// This server was started without a pipeline runner (no pseudonymization key).
    #[error("pipeline runs are not available on this server (started without a pseudonymization key)")]
    PipelinesUnavailable,
    /// No pipeline spec by that name.
    #[error("no pipeline named `{0}`")]
    UnknownPipeline(String),
    /// No pipeline run with that id.
    #[error("no pipeline run {0}")]
    UnknownRun(i64),
    /// A bug in this crate (logged; the client sees a generic message).
    #[error("internal error: {0}")]
    Internal(String),
    /// A pipeline run failed or could not start.
    #[error(transparent)]
    Pipeline(Box<PipelineError>),
}

// Boxed: both errors are large, and every handler returns `Result<_, ApiError>`.
impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::Query(Box::new(e))
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        ApiError::Pipeline(Box::new(e))
    }
}

/// The Arrow IPC stream media type.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The status of a query refusal: the one place [`Kind`] becomes HTTP.
///
/// Both limits are 422: the request is well-formed but cannot be answered within the
/// configured time or memory, and retrying the same query will not help. 408 was not used for
/// timeouts because HTTP clients and browsers retry 408 automatically, which would rerun a
/// query that already exhausted its limit.
pub fn query_status(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Limit => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

const INTERNAL: &str = "internal error; the operator's log has the cause";

impl ApiError {
    /// Status, stable code and client-facing message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        use CatalogError as C;
        let msg = self.to_string();
        match self {
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "unauthenticated", msg),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", msg),
            ApiError::NotMember => (StatusCode::FORBIDDEN, "not_a_member", msg),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", msg),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", msg),
            ApiError::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, "not_acceptable", msg),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "no_such_route", msg),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", msg),
            ApiError::Query(e) => (query_status(e.kind()), e.code(), e.public_message()),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", INTERNAL.to_owned()),
            ApiError::PipelinesUnavailable => (StatusCode::NOT_IMPLEMENTED, "pipelines_unavailable", msg),
            ApiError::UnknownPipeline(_) => (StatusCode::NOT_FOUND, "pipeline_not_found", msg),
            ApiError::UnknownRun(_) => (StatusCode::NOT_FOUND, "not_found", msg),
            ApiError::Pipeline(e) => match e.as_ref() {
                PipelineError::Busy { .. } => (StatusCode::CONFLICT, "pipeline_busy", msg),
                PipelineError::LeaseLost(_) => (StatusCode::CONFLICT, "pipeline_lease_lost", msg),
                PipelineError::QualityFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "quality_failed", msg),
                PipelineError::UnknownPipeline(_) => (StatusCode::NOT_FOUND, "pipeline_not_found", msg),
                // Anything else may carry paths, SQL or engine text: logged, not returned.
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "pipeline_failed", INTERNAL.to_owned()),
            },
            ApiError::Catalog(e) => match e {
                C::MalformedToken | C::UnknownToken => (StatusCode::UNAUTHORIZED, "unauthenticated", msg),
                C::TokenExpired { .. } => (StatusCode::UNAUTHORIZED, "token_expired", msg),
                C::TokenRevoked { .. } => (StatusCode::UNAUTHORIZED, "token_revoked", msg),
                C::UnknownDataset(_)
                | C::UnknownVersion(_)
                | C::UnknownProject(_)
                | C::UnknownPrincipal(_)
                | C::UnknownTokenId(_) => (StatusCode::NOT_FOUND, "not_found", msg),
                C::IllegalTransition { .. } => (StatusCode::CONFLICT, "illegal_transition", msg),
                C::DuplicateProject(_) | C::DuplicatePrincipal(_) => (StatusCode::CONFLICT, "already_exists", msg),
                C::NotAMember { .. } => (StatusCode::CONFLICT, "not_a_member", msg),
                C::BudgetBelowSpent { .. } => (StatusCode::CONFLICT, "budget_below_spent", msg),
                C::BudgetExceeded { .. } => (StatusCode::FORBIDDEN, "budget_exhausted", msg),
                C::ProjectExpired { .. } => (StatusCode::FORBIDDEN, "project_expired", msg),
                C::InvalidProject(_) | C::InvalidBudget { .. } | C::UnknownMode(_) | C::UnknownRole(_) => {
                    (StatusCode::BAD_REQUEST, "invalid_request", msg)
                }
                C::UnknownTable { .. } => (StatusCode::BAD_REQUEST, "invalid_request", msg),
                C::UnsupportedUrl
                | C::Database(_)
                | C::Migration(_)
                | C::Io { .. }
                | C::DatasetSyntax { .. }
                | C::DatasetInvalid { .. }
                | C::DuplicateDataset { .. }
                | C::CorruptRow { .. }
                | C::CorruptJson { .. }
                | C::Rng => (StatusCode::INTERNAL_SERVER_ERROR, "internal", INTERNAL.to_owned()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, code, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(code, "request refused");
        }
        (status, Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
    }
}
