//! Dataset-version review: steward only.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use niji_catalog::{DatasetVersion, Review, VersionStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{body, query};
use crate::auth::Steward;
use crate::{ApiError, AppState};

/// Filters of the version list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    dataset: Option<String>,
}

/// A steward's decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    reason: String,
}

/// `GET /v1/dataset-versions?status=pending&dataset=claims`
pub async fn list(
    State(state): State<AppState>,
    _s: Steward,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let status = match q.status.as_deref() {
        None => None,
        Some("pending") => Some(VersionStatus::Pending),
        Some("approved") => Some(VersionStatus::Approved),
        Some("rejected") => Some(VersionStatus::Rejected),
        Some("retired") => Some(VersionStatus::Retired),
        Some(_) => return Err(ApiError::BadRequest("status must be pending, approved, rejected or retired".into())),
    };
    let versions: Vec<DatasetVersion> = state.catalog.versions(status, q.dataset.as_deref()).await?;
    Ok(Json(json!({ "versions": versions })))
}

/// `GET /v1/dataset-versions/{id}`: the review (run report, table and schema changes,
/// re-identification summary).
pub async fn review(
    State(state): State<AppState>,
    _s: Steward,
    id_: Result<Path<i64>, PathRejection>,
) -> Result<Json<Review>, ApiError> {
    let id = super::path(id_)?;
    Ok(Json(state.catalog.review(id).await?))
}

/// `POST /v1/dataset-versions/{id}/approve` `{reason}`
pub async fn approve(
    State(state): State<AppState>,
    Steward(who): Steward,
    id_: Result<Path<i64>, PathRejection>,
    payload: Result<Json<Decision>, JsonRejection>,
) -> Result<Json<DatasetVersion>, ApiError> {
    let id = super::path(id_)?;
    let d = body(payload)?;
    state.catalog.approve(id, &who.actor(), &d.reason).await?;
    Ok(Json(state.catalog.version(id).await?))
}

/// `POST /v1/dataset-versions/{id}/reject` `{reason}`
pub async fn reject(
    State(state): State<AppState>,
    Steward(who): Steward,
    id_: Result<Path<i64>, PathRejection>,
    payload: Result<Json<Decision>, JsonRejection>,
) -> Result<Json<DatasetVersion>, ApiError> {
    let id = super::path(id_)?;
    let d = body(payload)?;
    state.catalog.reject(id, &who.actor(), &d.reason).await?;
    Ok(Json(state.catalog.version(id).await?))
}
