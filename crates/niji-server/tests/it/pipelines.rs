//! Pipeline runs over HTTP.

use axum::http::{Method, StatusCode};

use crate::support::{call, code, fixture, full, request, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_pipeline_and_read_the_run() {
    let f = full().await;
    let r = send(&f.state, request(Method::POST, "/v1/pipelines/claims-http/runs", Some(&f.pipeline), None, &[])).await;
    let b = r.json();
    assert_eq!(r.status, StatusCode::CREATED, "{b}");
    // The landing folder is empty: the run plans nothing and ends `noop`.
    assert_eq!(
        (b["pipeline"].as_str(), b["seq"].as_i64(), b["status"].as_str()),
        (Some("claims-http"), Some(1), Some("noop"))
    );
    assert_eq!(b["resumed"], false);
    let id = b["id"].as_i64().unwrap();
    let location = format!("/v1/pipeline-runs/{id}");
    assert_eq!(r.headers["location"], location.as_str());

    let (s, got) = call(&f, Method::GET, &location, Some(&f.steward), None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!((got["id"].as_i64(), got["status"].as_str(), got["seq"].as_i64()), (Some(id), Some("noop"), Some(1)));
    assert!(got.get("resumed").is_none());

    // A second run is the next seq; an admin may start it too.
    let (s, b) = call(&f, Method::POST, "/v1/pipelines/claims-http/runs", Some(&f.admin), None).await;
    assert_eq!((s, b["seq"].as_i64()), (StatusCode::CREATED, Some(2)), "{b}");

    // Who asked is audited.
    let tail = f.catalog.audit_tail(1000).await.unwrap();
    let asked: Vec<&str> =
        tail.iter().filter(|e| e.action == "pipeline.run.request").map(|e| e.actor.as_str()).collect();
    assert_eq!(asked, ["principal:etl", "principal:root"]);

    let (s, b) = call(&f, Method::GET, "/v1/pipeline-runs/abc", Some(&f.steward), None).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, b) = call(&f, Method::GET, &location, Some(&f.researcher), None).await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_runner_pipeline_runs_are_unavailable() {
    let f = fixture().await;
    let (s, b) = call(&f, Method::POST, "/v1/pipelines/claims/runs", Some(&f.pipeline), None).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_IMPLEMENTED, "pipelines_unavailable"));
    // Reading runs needs no runner: the catalog has them.
    let (s, b) = call(&f, Method::GET, "/v1/pipeline-runs/1", Some(&f.pipeline), None).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
}
