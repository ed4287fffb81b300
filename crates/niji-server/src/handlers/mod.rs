//! One module per resource.

pub mod audit;
pub mod datasets;
pub mod meta;
pub mod pipelines;
pub mod projects;
pub mod queries;
pub mod versions;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};

use crate::ApiError;

/// Unwrap a JSON body or turn the rejection into `payload_too_large` (over the body limit) or
/// `invalid_request`.
pub(crate) fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(t)| t).map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(crate::routes::BODY_LIMIT)
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })
}

/// Unwrap a query string or turn the rejection into `invalid_request`.
pub(crate) fn query<T>(q: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(t)| t).map_err(|r| ApiError::BadRequest(r.body_text()))
}

/// Unwrap path parameters or turn the rejection into `invalid_request`.
pub(crate) fn path<T>(p: Result<axum::extract::Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|axum::extract::Path(t)| t).map_err(|r| ApiError::BadRequest(r.body_text()))
}
