//! `GET /v1/datasets`, `GET /v1/datasets/{name}`: any authenticated principal.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::{ApiError, AppState};

async fn describe(state: &AppState, def: &niji_catalog::DatasetDef) -> Result<Value, ApiError> {
    let approved = state.catalog.approved_version(&def.name).await?;
    Ok(json!({
        "name": def.name,
        "title": def.title,
        "description": def.description,
        "privacy_unit": def.privacy_unit,
        "tables": def.tables,
        "columns": def.columns(),
        "public_keys": def.public_keys,
        "bounds": def.bounds,
        "policy": def.policy,
        "approved_version": approved.map(|v| json!({ "id": v.id, "delta_versions": v.delta_versions })),
    }))
}

/// All datasets.
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for def in state.catalog.datasets().await? {
        out.push(describe(&state, &def).await?);
    }
    Ok(Json(json!({ "datasets": out })))
}

/// One dataset.
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    name_: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = super::path(name_)?;
    let def = state.catalog.dataset(&name).await?;
    Ok(Json(describe(&state, &def).await?))
}
