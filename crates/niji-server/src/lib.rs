//! The Niji HTTP API (`/v1`), steward part: dataset-version review, projects and members,
//! the audit trail, and the dataset listing every authenticated principal may read.
//!
//! Only this crate knows axum. [`routes::router`] builds the Router over a typed [`AppState`];
//! handlers live in one module per resource; [`error::ApiError`] maps every failure to a status
//! and a stable `{error: {code, message}}` in one place; [`auth`] holds the bearer-token
//! extractors (`Caller`: any valid token; `Steward`: role steward or admin).

pub mod auth;
pub mod error;
mod handlers;
pub mod routes;

use niji_catalog::Catalog;

pub use error::ApiError;
pub use routes::router;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The catalog (principals, projects, versions, audit).
    pub catalog: Catalog,
}

/// Serve the API on a bound listener until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "niji API listening");
    axum::serve(listener, router(state)).await
}
