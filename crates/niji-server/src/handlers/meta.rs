//! The operator's endpoints, no token: `/healthz`, `/metrics`, `/openapi.json`.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::AppState;

/// `GET /healthz`
pub async fn health() -> &'static str {
    "ok"
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}

/// `GET /openapi.json`: built once from the route table.
pub async fn openapi() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(crate::openapi::document).clone())
}
