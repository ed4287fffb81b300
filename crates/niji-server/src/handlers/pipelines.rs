//! Pipeline runs: the pipeline role, stewards and admins.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use niji_catalog::pipeline::PipelineRun;
use niji_pipeline::run::default_holder;
use niji_pipeline::run_pipeline;
use serde_json::{Value, json};

use crate::auth::Operator;
use crate::{ApiError, AppState};

/// How many of a pipeline's latest runs are searched for the one just finished.
const RECENT_RUNS: i64 = 50;

fn run_json(run: &PipelineRun) -> Result<Value, ApiError> {
    serde_json::to_value(run).map_err(|e| ApiError::Internal(format!("encoding a run: {e}")))
}

/// `POST /v1/pipelines/{name}/runs`: run now, answer with the run record when it ends.
pub async fn start(
    State(state): State<AppState>,
    Operator(who): Operator,
    name_: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = super::path(name_)?;
    let runner = state.pipelines.clone().ok_or(ApiError::PipelinesUnavailable)?;
    let spec = runner.specs.get(&name).cloned().ok_or_else(|| ApiError::UnknownPipeline(name.clone()))?;
    let mut options = runner.options.clone();
    // A holder per request: two requests to one server must not share the lease.
    options.holder = default_holder();
    options.actor = who.actor();
    let catalog = state.catalog.clone();
    // Its own task: a client that disconnects does not cancel a run half-way.
    let task = tokio::spawn(async move { run_pipeline(&spec, &catalog, &runner.key, &options).await });
    let outcome = task.await.map_err(|e| ApiError::Internal(format!("pipeline task: {e}")))??;
    let run = state
        .catalog
        .pipeline_runs(Some(&name), RECENT_RUNS)
        .await?
        .into_iter()
        .find(|r| r.seq == outcome.seq)
        .ok_or_else(|| ApiError::Internal(format!("run {} of {name} not found after it ended", outcome.seq)))?;
    state
        .catalog
        .append_audit(
            &who.actor(),
            "pipeline.run.request",
            &format!("pipeline:{name}"),
            json!({ "run_id": run.id, "seq": run.seq, "status": run.status, "version_id": outcome.version_id }),
        )
        .await?;
    let mut body = run_json(&run)?;
    body["resumed"] = json!(outcome.resumed);
    let location = HeaderValue::from_str(&format!("/v1/pipeline-runs/{}", run.id))
        .map_err(|e| ApiError::Internal(format!("location header: {e}")))?;
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(body)).into_response())
}

/// `GET /v1/pipeline-runs/{id}`
pub async fn show(
    State(state): State<AppState>,
    _o: Operator,
    id_: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = super::path(id_)?;
    // The catalog has no lookup by id yet; runs are few (one per pipeline per schedule tick).
    let run = state
        .catalog
        .pipeline_runs(None, i64::MAX)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(ApiError::UnknownRun(id))?;
    Ok(Json(run_json(&run)?))
}
