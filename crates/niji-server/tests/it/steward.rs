//! The steward workflow over HTTP: review and approve, projects and members, the audit trail.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{call, code, fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_and_approve_versions() {
    let f = fixture().await;
    let tables = BTreeMap::from([("claim".to_owned(), 4_i64)]);
    let report = json!({"counts": {"claim": 10}, "reidentification": {"k_min": 2}});
    let v = f.catalog.register_version("pipeline:etl", "claims", &tables, &report).await.unwrap();
    let other = f.catalog.register_version("pipeline:etl", "claims", &tables, &json!({})).await.unwrap();

    let (s, b) = call(&f, Method::GET, "/v1/dataset-versions?status=pending", Some(&f.steward), None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<i64> = b["versions"].as_array().unwrap().iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [other, v]);
    let (s, b) = call(&f, Method::GET, "/v1/dataset-versions?status=bogus", Some(&f.steward), None).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"));

    let (s, b) = call(&f, Method::GET, &format!("/v1/dataset-versions/{v}"), Some(&f.steward), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["reidentification"]["k_min"], 2);
    assert_eq!(b["tables"][0]["candidate"], 4);

    let uri = format!("/v1/dataset-versions/{v}/approve");
    let (s, b) = call(&f, Method::POST, &uri, Some(&f.steward), Some(json!({}))).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"), "a reason is required");
    let (s, b) = call(&f, Method::POST, &uri, Some(&f.steward), Some(json!({"reason": "counts ok"}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!((b["status"].as_str(), b["reviewer"].as_str()), (Some("approved"), Some("principal:sally")));
    let (s, b) = call(&f, Method::POST, &uri, Some(&f.steward), Some(json!({"reason": "again"}))).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "illegal_transition"));
    let uri = format!("/v1/dataset-versions/{other}/reject");
    let (s, b) = call(&f, Method::POST, &uri, Some(&f.admin), Some(json!({"reason": "duplicate run"}))).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("rejected")));
    let (s, b) =
        call(&f, Method::POST, "/v1/dataset-versions/999/reject", Some(&f.admin), Some(json!({"reason": "x"}))).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));

    // Every authenticated principal sees the datasets and which version is approved.
    let (s, b) = call(&f, Method::GET, "/v1/datasets/claims", Some(&f.researcher), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["approved_version"]["id"], v);
    assert!(b["columns"].as_array().unwrap().iter().any(|c| c["column"] == "total_points" && c["class"] == "measure"));
    let (s, b) = call(&f, Method::GET, "/v1/datasets", Some(&f.pipeline), None).await;
    assert_eq!((s, b["datasets"].as_array().unwrap().len()), (StatusCode::OK, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_members_and_audit() {
    let f = fixture().await;
    let body = json!({
        "name": "diabetes", "purpose": "incidence by prefecture", "datasets": ["claims"],
        "modes": ["dp", "sdc"], "epsilon": 2.5, "delta": 1e-7, "expires_at": null
    });
    let (s, b) = call(&f, Method::POST, "/v1/projects", Some(&f.steward), Some(body.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    assert_eq!(b["budget"]["epsilon_micro"], 2_500_000);
    assert_eq!(b["remaining"]["delta_pico"], 100_000);
    let (s, b) = call(&f, Method::POST, "/v1/projects", Some(&f.steward), Some(body)).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "already_exists"));
    let bad = json!({"name": "x", "purpose": "x", "datasets": ["claims"], "modes": ["magic"], "epsilon": 1.0});
    let (s, b) = call(&f, Method::POST, "/v1/projects", Some(&f.steward), Some(bad)).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let bad = json!({"name": "y", "purpose": "x", "datasets": ["claims"], "modes": ["dp"], "epsilon": -1.0});
    let (s, b) = call(&f, Method::POST, "/v1/projects", Some(&f.steward), Some(bad)).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"));

    // A researcher who is not a member cannot read the project; once granted, they can.
    let uri = format!("/v1/projects/{id}");
    let (s, b) = call(&f, Method::GET, &uri, Some(&f.researcher), None).await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "not_a_member"));
    let members = format!("/v1/projects/{id}/members");
    let (s, b) = call(&f, Method::POST, &members, Some(&f.steward), Some(json!({"principal": "alice"}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["members"][0]["principal_id"], f.researcher_id);
    let (s, b) = call(&f, Method::GET, &uri, Some(&f.researcher), None).await;
    assert_eq!((s, b["name"].as_str()), (StatusCode::OK, Some("diabetes")));
    let (s, _) = call(&f, Method::DELETE, &format!("{members}/alice"), Some(&f.steward), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&f, Method::GET, &uri, Some(&f.researcher), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = call(&f, Method::DELETE, &format!("{members}/alice"), Some(&f.steward), None).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "not_a_member"));
    let (s, b) = call(&f, Method::POST, &members, Some(&f.steward), Some(json!({"principal": "nobody"}))).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));

    // The audit trail shows it all, and verifies.
    let (s, b) = call(&f, Method::GET, "/v1/audit?limit=500", Some(&f.steward), None).await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = b["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["project.create", "project.grant", "project.revoke"] {
        assert!(actions.contains(&a), "missing {a} in {actions:?}");
    }
    let (s, b) = call(&f, Method::GET, "/v1/audit/verify", Some(&f.steward), None).await;
    assert_eq!((s, b["valid"].as_bool()), (StatusCode::OK, Some(true)), "{b}");
    let (s, b) = call(&f, Method::GET, "/v1/audit?after=2&limit=3", Some(&f.admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let seqs: Vec<i64> = b["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_a_tampered_entry() {
    let f = fixture().await;
    let url = format!("sqlite://{}", f._dir.path().join("catalog.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'someone' WHERE seq = 2").execute(&mut conn).await.unwrap();
    let (s, b) = call(&f, Method::GET, "/v1/audit/verify", Some(&f.steward), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((b["valid"].as_bool(), b["problem"]["seq"].as_i64()), (Some(false), Some(2)), "{b}");
    assert_eq!(b["problem"]["kind"]["problem"], "edited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_and_bodies_get_stable_codes() {
    let f = fixture().await;
    let (s, b) = call(&f, Method::GET, "/v1/dataset-versions/abc", Some(&f.steward), None).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, b) = call(&f, Method::GET, "/v1/projects/abc", Some(&f.steward), None).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, b) = call(&f, Method::GET, "/v1/projects/77", Some(&f.steward), None).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, b) = call(&f, Method::POST, "/v1/projects/1/members", Some(&f.steward), Some(json!({"who": 1}))).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, b) = call(&f, Method::GET, "/v1/datasets/nope", Some(&f.researcher), None).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
}
