//! The Niji HTTP API (`/v1`): researchers' queries, dataset discovery, the steward's review of
//! dataset versions, projects and members, the audit trail, pipeline runs, and the operator's
//! health, metrics and OpenAPI endpoints.
//!
//! Only this crate knows axum. [`routes::table`] lists every route once, with its
//! documentation; [`routes::router`] and [`openapi::document`] are both built from it, so the
//! OpenAPI document cannot miss a route. Handlers live in one module per resource;
//! [`error::ApiError`] maps every failure to a status and a stable `{error: {code, message}}`
//! in one place; [`auth`] holds the bearer-token extractors.
//!
//! # Routes
//!
//! | method | path | who |
//! |---|---|---|
//! | GET | `/healthz` | anyone (no token) |
//! | GET | `/metrics` | anyone (no token): counters only, no ids or values; restrict at the network edge |
//! | GET | `/openapi.json` | anyone (no token) |
//! | POST | `/v1/queries` | researcher (membership of the project is checked by the query service) |
//! | GET | `/v1/datasets` | any principal |
//! | GET | `/v1/datasets/{name}` | any principal |
//! | GET | `/v1/projects/{id}` | steward, admin, or a researcher who is a current member |
//! | GET | `/v1/dataset-versions` (`?status=&dataset=`) | steward, admin |
//! | GET | `/v1/dataset-versions/{id}` | steward, admin |
//! | POST | `/v1/dataset-versions/{id}/approve` | steward, admin |
//! | POST | `/v1/dataset-versions/{id}/reject` | steward, admin |
//! | POST | `/v1/projects` | steward, admin |
//! | POST | `/v1/projects/{id}/members` | steward, admin |
//! | DELETE | `/v1/projects/{id}/members/{principal}` | steward, admin |
//! | GET | `/v1/audit` (`?after=&limit=`) | steward, admin |
//! | GET | `/v1/audit/verify` | steward, admin |
//! | POST | `/v1/pipelines/{name}/runs` | pipeline, steward, admin |
//! | GET | `/v1/pipeline-runs/{id}` | pipeline, steward, admin |
//!
//! Only researchers query: stewards, admins and the pipeline role get 403 `forbidden` on
//! `POST /v1/queries` (they hold no project memberships, and a steward who wants to look at the
//! data does so as a researcher with a permit, which is audited like any other). A missing,
//! malformed or unknown token is 401 `unauthenticated`, an expired one 401 `token_expired`, a
//! revoked one 401 `token_revoked`; a valid token with the wrong role is 403 `forbidden`.
//!
//! # `POST /v1/queries`
//!
//! Body `{project, sql, mode?: "dp"|"sdc"|"extract", epsilon?, delta?, dry_run?}`
//! ([`niji_query::QueryRequest`]). The answer by `Accept`:
//!
//! - absent, `*/*`, `application/json`: `{columns: [{name, type}], rows: [[…]], privacy,
//!   dataset_versions: {dataset: version_id}, query_id}`, `privacy` being
//!   [`niji_query::Privacy`] (`mode, epsilon_spent, delta_spent, budget_remaining: {epsilon,
//!   delta}, noise: [{column, mechanism, scale, ci95}]`, and per mode `k, rounding,
//!   suppressed_rows, row_cap, truncated`, plus `cached, dry_run`);
//! - `application/vnd.apache.arrow.stream`: the rows as an Arrow IPC stream;
//! - `text/csv`: the rows as CSV with a header line;
//! - anything else: 406 `not_acceptable` (checked before the query runs).
//!
//! Every answer carries `x-niji-query-id`, `x-niji-privacy` (the privacy object as JSON, non-ASCII
//! escaped) and `x-niji-dataset-versions` headers. Bodies over [`routes::BODY_LIMIT`] (256 KiB)
//! get 413 `payload_too_large`.
//!
//! A refusal is `{error: {code, message}}` with `code` = [`niji_query::QueryError::code`] and
//! `message` = its `public_message` (never a data value). The status comes from its
//! [`niji_query::Kind`], mapped in [`error::query_status`] only:
//!
//! | kind | status | codes (examples) |
//! |---|---|---|
//! | BadRequest | 400 | `sql_syntax`, `sql_statement_refused`, `sql_plan`, `execution_failed`, `invalid_request` |
//! | Forbidden | 403 | `not_a_member`, `project_expired`, `mode_not_allowed`, `budget_exhausted` |
//! | NotFound | 404 | `project_not_found` |
//! | Limit | 422 | `timeout`, `memory_limit` (not 408: clients retry 408 automatically) |
//! | Busy | 503 | `busy` |
//! | Internal | 500 | `internal` (logged; generic message) |
//!
//! # Pipelines
//!
//! `POST /v1/pipelines/{name}/runs` runs the pipeline now, in a task of its own (a client
//! that disconnects does not cancel it), and answers 201 with the run record once it ends;
//! 409 `pipeline_busy` when another holder has its lease, 422 `quality_failed`, 500
//! `pipeline_failed` otherwise (cause in the log). A server started without a
//! [`PipelineRunner`] (it needs the pseudonymization key) answers 501 `pipelines_unavailable`.
//! `GET /v1/pipeline-runs/{id}` reads the run record from the catalog.
//!
//! # Metrics
//!
//! `GET /metrics` (no token) exposes `niji_build_info`, `niji_http_requests_total{route,
//! method,status}` (route = the matched route template), `niji_queries_total{mode,outcome}`
//! and the `niji_query_duration_seconds` histogram; see [`metrics`].

pub mod auth;
pub mod error;
mod handlers;
pub mod metrics;
pub mod openapi;
pub mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;

use niji_catalog::Catalog;
use niji_pipeline::{PipelineSpec, RunOptions};
use niji_pseudo::PseudonymKey;
use niji_query::QueryService;

pub use error::ApiError;
pub use routes::router;

/// What the server needs to run pipelines: the specs, the pseudonymization key and the run
/// options (data directory, lease). Only servers that hold the key have one.
pub struct PipelineRunner {
    specs: BTreeMap<String, PipelineSpec>,
    key: PseudonymKey,
    options: RunOptions,
}

impl PipelineRunner {
    /// A runner over `specs` (by name). Each run takes a fresh lease holder and records the
    /// calling principal as its actor; the rest of `options` is used as given.
    pub fn new(specs: Vec<PipelineSpec>, key: PseudonymKey, options: RunOptions) -> PipelineRunner {
        PipelineRunner { specs: specs.into_iter().map(|s| (s.name.clone(), s)).collect(), key, options }
    }

    /// The pipeline names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for PipelineRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PipelineRunner")
            .field("pipelines", &self.specs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The catalog (principals, projects, versions, audit, pipeline runs).
    pub catalog: Catalog,
    /// The query service behind `POST /v1/queries`.
    pub query: QueryService,
    /// Pipeline runs over HTTP; `None`: `POST /v1/pipelines/{name}/runs` answers 501.
    pub pipelines: Option<Arc<PipelineRunner>>,
    /// Counters behind `GET /metrics`, shared by every clone of the state.
    pub(crate) metrics: Arc<metrics::Metrics>,
}

impl AppState {
    /// State over a catalog and a query service, without pipeline runs.
    pub fn new(catalog: Catalog, query: QueryService) -> AppState {
        AppState { catalog, query, pipelines: None, metrics: Arc::default() }
    }

    /// Enable pipeline runs over HTTP.
    pub fn with_pipelines(mut self, runner: PipelineRunner) -> AppState {
        self.pipelines = Some(Arc::new(runner));
        self
    }

    /// The metrics of this state.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }
}

/// Serve the API on a bound listener until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "niji API listening");
    axum::serve(listener, router(state)).await
}
