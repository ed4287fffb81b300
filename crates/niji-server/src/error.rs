//! API errors: the one place where a failure becomes an HTTP status and a stable code.
//! Messages never carry tokens or data values; internal errors are logged and returned as
//! `internal` with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use niji_catalog::CatalogError;

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
}

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
                | C::Rng => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".to_owned()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
    }
}
