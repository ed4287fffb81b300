//! The Router: every route of the API in one place.

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;
use crate::handlers::{audit, datasets, projects, versions};

/// Build the API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/v1/datasets", get(datasets::list))
        .route("/v1/datasets/{name}", get(datasets::show))
        .route("/v1/dataset-versions", get(versions::list))
        .route("/v1/dataset-versions/{id}", get(versions::review))
        .route("/v1/dataset-versions/{id}/approve", post(versions::approve))
        .route("/v1/dataset-versions/{id}/reject", post(versions::reject))
        .route("/v1/projects", post(projects::create))
        .route("/v1/projects/{id}", get(projects::show))
        .route("/v1/projects/{id}/members", post(projects::grant))
        .route("/v1/projects/{id}/members/{principal}", delete(projects::revoke))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/verify", get(audit::verify))
        .with_state(state)
}

async fn health() -> &'static str {
    "ok"
}
