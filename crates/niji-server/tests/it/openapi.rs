//! `GET /openapi.json` covers the contract and every route the router serves.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::{call, code, fixture};

/// The HTTP interface of shared/design/architecture.md (the contract).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/queries"),
    ("get", "/v1/datasets"),
    ("get", "/v1/datasets/{name}"),
    ("get", "/v1/projects/{id}"),
    ("get", "/v1/dataset-versions"),
    ("post", "/v1/dataset-versions/{id}/approve"),
    ("post", "/v1/dataset-versions/{id}/reject"),
    ("post", "/v1/projects"),
    ("post", "/v1/projects/{id}/members"),
    ("get", "/v1/audit"),
    ("get", "/v1/audit/verify"),
    ("post", "/v1/pipelines/{name}/runs"),
    ("get", "/v1/pipeline-runs/{id}"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_covers_the_contract_and_the_router() {
    let f = fixture().await;
    let (s, doc) = call(&f, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (verb, path) in CONTRACT {
        assert!(paths.get(*path).and_then(|p| p.get(*verb)).is_some(), "{verb} {path} missing from the document");
    }
    let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(ops, niji_server::routes::routes().len());

    // Every documented operation is served by the router (not the 404/405 fallbacks), with
    // the access the document states.
    for (path, item) in paths {
        for (verb, op) in item.as_object().unwrap() {
            let uri = path.replace("{id}", "1").replace("{name}", "ehr").replace("{principal}", "alice");
            let method = Method::from_bytes(verb.to_uppercase().as_bytes()).unwrap();
            let (s, b) = call(&f, method, &uri, None, None).await;
            assert!(code(&b) != "no_such_route" && s != StatusCode::METHOD_NOT_ALLOWED, "{verb} {path}: {s} {b}");
            let public = op["security"] == Value::Array(vec![]);
            assert_eq!(s == StatusCode::UNAUTHORIZED, !public, "{verb} {path}: {s}");
            assert!(op["responses"].as_object().unwrap().keys().any(|k| k.starts_with('2')), "{verb} {path}");
        }
    }
    let q = &paths["/v1/queries"]["post"];
    assert_eq!(q["x-niji-roles"], serde_json::json!(["researcher"]));
    assert!(q["responses"]["200"]["content"]["application/vnd.apache.arrow.stream"].is_object());
    assert_eq!(q["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/QueryRequest");
}
