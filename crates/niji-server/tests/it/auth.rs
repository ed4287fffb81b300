//! Threat T18: every steward endpoint × missing / malformed / unknown / expired / revoked
//! tokens and every role.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{call, code, fixture};

/// Every steward endpoint, with a body that would be valid.
fn steward_endpoints() -> Vec<(Method, &'static str, Option<serde_json::Value>)> {
    let project = json!({"name": "p", "purpose": "x", "datasets": ["claims"], "modes": ["sdc"], "epsilon": 1.0});
    vec![
        (Method::GET, "/v1/dataset-versions?status=pending", None),
        (Method::GET, "/v1/dataset-versions/1", None),
        (Method::POST, "/v1/dataset-versions/1/approve", Some(json!({"reason": "ok"}))),
        (Method::POST, "/v1/dataset-versions/1/reject", Some(json!({"reason": "no"}))),
        (Method::POST, "/v1/projects", Some(project)),
        (Method::POST, "/v1/projects/1/members", Some(json!({"principal": "alice"}))),
        (Method::DELETE, "/v1/projects/1/members/alice", None),
        (Method::GET, "/v1/audit", None),
        (Method::GET, "/v1/audit/verify", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_wrong_roles_are_refused_everywhere() {
    let f = fixture().await;
    let unknown = format!("niji_{}", "1f".repeat(32));
    let cases: Vec<(Option<&str>, StatusCode, &str)> = vec![
        (None, StatusCode::UNAUTHORIZED, "unauthenticated"),
        (Some("not-a-token"), StatusCode::UNAUTHORIZED, "unauthenticated"),
        (Some(&unknown), StatusCode::UNAUTHORIZED, "unauthenticated"),
        (Some(&f.expired), StatusCode::UNAUTHORIZED, "token_expired"),
        (Some(&f.revoked), StatusCode::UNAUTHORIZED, "token_revoked"),
        (Some(&f.researcher), StatusCode::FORBIDDEN, "forbidden"),
        (Some(&f.pipeline), StatusCode::FORBIDDEN, "forbidden"),
    ];
    for (method, uri, body) in steward_endpoints() {
        for (token, status, expected) in &cases {
            let (s, b) = call(&f, method.clone(), uri, *token, body.clone()).await;
            assert_eq!(
                (s, code(&b)),
                (*status, *expected),
                "{method} {uri} with {:?}",
                token.map(|t| &t[..8.min(t.len())])
            );
        }
    }
    // Nothing was changed by the refused calls.
    assert!(f.catalog.projects().await.unwrap().is_empty());
    // Refusals are audited: authentication failures and wrong roles, never the token.
    let tail = f.catalog.audit_tail(1000).await.unwrap();
    let failures = tail.iter().filter(|e| e.action == "auth.failure").count();
    let forbidden = tail.iter().filter(|e| e.action == "auth.forbidden").count();
    let n = steward_endpoints().len();
    assert_eq!((failures, forbidden), (4 * n, 2 * n));
    for e in &tail {
        for t in [&f.expired, &f.revoked, &f.researcher, &f.pipeline, &unknown] {
            assert!(!e.details.contains(&t[5..]) && !e.subject.contains(&t[5..]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stewards_and_admins_pass_authentication() {
    let f = fixture().await;
    for token in [&f.steward, &f.admin] {
        for (method, uri, body) in steward_endpoints() {
            let (s, b) = call(&f, method.clone(), uri, Some(token), body).await;
            assert!(s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN, "{method} {uri}: {s} {b}");
        }
    }
    let (s, _) = call(&f, Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
}
