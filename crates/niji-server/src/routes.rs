//! The route table: every route of the API in one place, with its documentation. The Router
//! ([`router`]) and the OpenAPI document ([`crate::openapi::document`]) are both built from
//! [`table`], so they cannot drift: a handler is registered under the method its entry
//! documents ([`axum::routing::on`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::handlers::{audit, datasets, meta, pipelines, projects, queries, versions};
use crate::{ApiError, AppState, metrics};

/// Largest accepted request body (JSON), in bytes; larger bodies get 413 `payload_too_large`.
pub const BODY_LIMIT: usize = 256 * 1024;

/// An HTTP method of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET (HEAD is answered too).
    Get,
    /// POST.
    Post,
    /// DELETE.
    Delete,
}

impl Verb {
    /// The method.
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }

    /// Lower-case name (OpenAPI operation key).
    pub fn lower(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Delete => "delete",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (health, metrics, the OpenAPI document).
    Public,
    /// Any valid token.
    AnyPrincipal,
    /// Researchers (project membership is checked by the handler or the query service).
    Researcher,
    /// Stewards and admins.
    Steward,
    /// The pipeline role, stewards and admins.
    Operator,
}

impl Access {
    /// The roles admitted (empty: no token needed).
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Access::Public => &[],
            Access::AnyPrincipal => &["researcher", "steward", "admin", "pipeline"],
            Access::Researcher => &["researcher"],
            Access::Steward => &["steward", "admin"],
            Access::Operator => &["pipeline", "steward", "admin"],
        }
    }
}

/// The documentation of one route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// Method.
    pub verb: Verb,
    /// Path template (axum and OpenAPI share the `{param}` syntax).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// One line.
    pub summary: &'static str,
    /// Component schema of the JSON request body, if any.
    pub request: Option<&'static str>,
    /// Status of success.
    pub success: u16,
    /// Component schema of the JSON success body (None: not JSON, see `produces`).
    pub response: Option<&'static str>,
    /// Media types of the success body.
    pub produces: &'static [&'static str],
    /// Query-string parameters (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// Error statuses beyond those implied by access, parameters and body.
    pub errors: &'static [u16],
}

const JSON: &[&str] = &["application/json"];
const QUERY_MEDIA: &[&str] = &["application/json", "text/csv", crate::error::ARROW_STREAM];

const fn doc(verb: Verb, path: &'static str, access: Access, summary: &'static str) -> RouteDoc {
    RouteDoc {
        verb,
        path,
        access,
        summary,
        request: None,
        success: 200,
        response: Some("Object"),
        produces: JSON,
        query: &[],
        errors: &[],
    }
}

/// One table row: its documentation and its handler, registered under the documented method.
pub struct Route {
    /// Documentation.
    pub doc: RouteDoc,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(doc: RouteDoc, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    Route { doc, handler: on(doc.verb.filter(), handler) }
}

/// Every route of the API.
pub fn table() -> Vec<Route> {
    use Access::*;
    use Verb::*;
    vec![
        route(
            RouteDoc { response: None, produces: &["text/plain"], ..doc(Get, "/healthz", Public, "Liveness: `ok`.") },
            meta::health,
        ),
        route(
            RouteDoc {
                response: None,
                produces: &["text/plain; version=0.0.4"],
                ..doc(Get, "/metrics", Public, "Prometheus metrics (text exposition format).")
            },
            meta::metrics,
        ),
        route(
            RouteDoc { response: Some("Object"), ..doc(Get, "/openapi.json", Public, "This OpenAPI 3.1 document.") },
            meta::openapi,
        ),
        route(
            RouteDoc {
                request: Some("QueryRequest"),
                response: Some("QueryResponse"),
                produces: QUERY_MEDIA,
                errors: &[404, 406, 422, 501, 503],
                ..doc(
                    Post,
                    "/v1/queries",
                    Researcher,
                    "Run one SQL query in a project; JSON, CSV or an Arrow IPC stream by Accept.",
                )
            },
            queries::run,
        ),
        route(doc(Get, "/v1/datasets", AnyPrincipal, "All datasets and their approved versions."), datasets::list),
        route(
            RouteDoc {
                errors: &[404],
                ..doc(
                    Get,
                    "/v1/datasets/{name}",
                    AnyPrincipal,
                    "One dataset: tables, columns, classes, bounds, policy.",
                )
            },
            datasets::show,
        ),
        route(
            RouteDoc {
                query: &[
                    ("status", "pending, approved, rejected or retired"),
                    ("dataset", "only versions of this dataset"),
                ],
                ..doc(Get, "/v1/dataset-versions", Steward, "Dataset versions, newest first.")
            },
            versions::list,
        ),
        route(
            RouteDoc {
                errors: &[404],
                ..doc(Get, "/v1/dataset-versions/{id}", Steward, "The review of one version (run report, changes).")
            },
            versions::review,
        ),
        route(
            RouteDoc {
                request: Some("Decision"),
                errors: &[404, 409],
                ..doc(Post, "/v1/dataset-versions/{id}/approve", Steward, "Approve a pending version.")
            },
            versions::approve,
        ),
        route(
            RouteDoc {
                request: Some("Decision"),
                errors: &[404, 409],
                ..doc(Post, "/v1/dataset-versions/{id}/reject", Steward, "Reject a pending version.")
            },
            versions::reject,
        ),
        route(
            RouteDoc {
                request: Some("CreateProject"),
                success: 201,
                errors: &[409],
                ..doc(Post, "/v1/projects", Steward, "Create a project (datasets, modes, budget, expiry).")
            },
            projects::create,
        ),
        route(
            RouteDoc {
                errors: &[404],
                ..doc(
                    Get,
                    "/v1/projects/{id}",
                    AnyPrincipal,
                    "One project with its budget; stewards or current members only.",
                )
            },
            projects::show,
        ),
        route(
            RouteDoc {
                request: Some("Grant"),
                errors: &[404, 409],
                ..doc(Post, "/v1/projects/{id}/members", Steward, "Grant a researcher membership.")
            },
            projects::grant,
        ),
        route(
            RouteDoc {
                errors: &[404, 409],
                ..doc(Delete, "/v1/projects/{id}/members/{principal}", Steward, "Revoke a membership.")
            },
            projects::revoke,
        ),
        route(
            RouteDoc {
                query: &[("after", "entries after this seq"), ("limit", "page size, default 100, at most 1000")],
                ..doc(Get, "/v1/audit", Steward, "The audit trail.")
            },
            audit::list,
        ),
        route(doc(Get, "/v1/audit/verify", Steward, "Verify the audit hash chain."), audit::verify),
        route(
            RouteDoc {
                success: 201,
                response: Some("PipelineRun"),
                errors: &[404, 409, 422, 501],
                ..doc(
                    Post,
                    "/v1/pipelines/{name}/runs",
                    Operator,
                    "Run a pipeline now and wait for it; the body is the run record.",
                )
            },
            pipelines::start,
        ),
        route(
            RouteDoc {
                response: Some("PipelineRun"),
                errors: &[404],
                ..doc(Get, "/v1/pipeline-runs/{id}", Operator, "One pipeline run record.")
            },
            pipelines::show,
        ),
    ]
}

/// The documentation of every route, in table order.
pub fn routes() -> Vec<RouteDoc> {
    table().into_iter().map(|r| r.doc).collect()
}

/// Build the API router from [`table`], with the body limit, the metrics middleware and JSON
/// fallbacks for unknown routes (404 `no_such_route`) and methods (405 `method_not_allowed`).
pub fn router(state: AppState) -> Router {
    let mut r: Router<AppState> = Router::new();
    for route in table() {
        r = r.route(route.doc.path, route.handler);
    }
    let metrics = Arc::clone(&state.metrics);
    r.fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .with_state(state)
}
