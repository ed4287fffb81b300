//! Projects and members. Creating and granting need a steward; a project can be read by a
//! steward or by one of its current members.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use niji_catalog::project::NewProject;
use niji_catalog::{Budget, Mode, Project};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body;
use crate::auth::{Caller, Steward};
use crate::{ApiError, AppState};

/// `POST /v1/projects` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    purpose: String,
    datasets: Vec<String>,
    modes: Vec<Mode>,
    epsilon: f64,
    #[serde(default)]
    delta: f64,
    /// Unix seconds.
    expires_at: Option<i64>,
}

/// `POST /v1/projects/{id}/members` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Principal id or name.
    principal: String,
}

fn budget_json(b: &Budget) -> Value {
    json!({ "epsilon": b.epsilon(), "delta": b.delta(), "epsilon_micro": b.epsilon_micro, "delta_pico": b.delta_pico })
}

fn view(p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "purpose": p.purpose,
        "datasets": p.datasets,
        "modes": p.modes,
        "budget": budget_json(&p.budget),
        "spent": budget_json(&p.spent),
        "remaining": budget_json(&p.remaining()),
        "created_at": p.created_at,
        "expires_at": p.expires_at,
        "members": p.members,
    })
}

/// `POST /v1/projects`
pub async fn create(
    State(state): State<AppState>,
    Steward(who): Steward,
    payload: Result<Json<CreateProject>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let c = body(payload)?;
    let p = NewProject {
        name: c.name,
        purpose: c.purpose,
        datasets: c.datasets,
        modes: c.modes,
        budget: Budget::from_f64(c.epsilon, c.delta)?,
        expires_at: c.expires_at,
    };
    let id = state.catalog.create_project(&who.actor(), &p).await?;
    Ok((StatusCode::CREATED, Json(view(&state.catalog.project(id).await?))))
}

/// `GET /v1/projects/{id}`
pub async fn show(
    State(state): State<AppState>,
    Caller(who): Caller,
    id_: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = super::path(id_)?;
    let p = state.catalog.project(id).await?;
    if !who.role.is_steward() && !p.is_member(who.id) {
        return Err(ApiError::NotMember);
    }
    Ok(Json(view(&p)))
}

/// `POST /v1/projects/{id}/members` `{principal}`
pub async fn grant(
    State(state): State<AppState>,
    Steward(who): Steward,
    id_: Result<Path<i64>, PathRejection>,
    payload: Result<Json<Grant>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = super::path(id_)?;
    let g = body(payload)?;
    let member = state.catalog.find_principal(&g.principal).await?;
    state.catalog.grant(&who.actor(), id, member.id).await?;
    Ok(Json(view(&state.catalog.project(id).await?)))
}

/// `DELETE /v1/projects/{id}/members/{principal}`
pub async fn revoke(
    State(state): State<AppState>,
    Steward(who): Steward,
    p_: Result<Path<(i64, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, principal) = super::path(p_)?;
    let member = state.catalog.find_principal(&principal).await?;
    state.catalog.revoke(&who.actor(), id, member.id).await?;
    Ok(Json(view(&state.catalog.project(id).await?)))
}
