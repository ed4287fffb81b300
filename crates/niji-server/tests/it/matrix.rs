//! Threat T18: every route × {no token, malformed, expired, revoked, researcher, steward,
//! admin, pipeline}, table-driven, with the exact status (and code for refusals). A route
//! added to the table without a row here fails `matrix_covers_every_route`.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Fixture, call, code, full};

/// Expected answer: status and, for refusals, the code ("" for a success body).
type Exp = (u16, &'static str);

const OK: Exp = (200, "");
const FORBIDDEN: Exp = (403, "forbidden");

struct Row {
    method: Method,
    template: &'static str,
    uri: String,
    body: Option<Value>,
    /// researcher, steward, admin, pipeline.
    roles: [Exp; 4],
    public: bool,
}

fn rows(f: &Fixture) -> Vec<Row> {
    let p = f.project_id;
    let row = |method: Method, template: &'static str, uri: String, body: Option<Value>, roles: [Exp; 4]| Row {
        method,
        template,
        uri,
        body,
        roles,
        public: false,
    };
    let public = |template: &'static str| Row {
        method: Method::GET,
        template,
        uri: template.to_owned(),
        body: None,
        roles: [OK; 4],
        public: true,
    };
    let steward_only = |e: Exp| [FORBIDDEN, e, e, FORBIDDEN];
    let operator = |e: Exp| [FORBIDDEN, e, e, e];
    let query = json!({"project": "study", "sql": "SELECT count(*) AS n FROM person", "mode": "sdc"});
    let project = json!({"name": "study", "purpose": "x", "datasets": ["ehr"], "modes": ["sdc"], "epsilon": 1.0});
    vec![
        public("/healthz"),
        public("/metrics"),
        public("/openapi.json"),
        row(Method::POST, "/v1/queries", "/v1/queries".into(), Some(query), [OK, FORBIDDEN, FORBIDDEN, FORBIDDEN]),
        row(Method::GET, "/v1/datasets", "/v1/datasets".into(), None, [OK; 4]),
        row(Method::GET, "/v1/datasets/{name}", "/v1/datasets/ehr".into(), None, [OK; 4]),
        row(Method::GET, "/v1/dataset-versions", "/v1/dataset-versions?status=pending".into(), None, steward_only(OK)),
        row(
            Method::GET,
            "/v1/dataset-versions/{id}",
            "/v1/dataset-versions/999".into(),
            None,
            steward_only((404, "not_found")),
        ),
        row(
            Method::POST,
            "/v1/dataset-versions/{id}/approve",
            "/v1/dataset-versions/999/approve".into(),
            Some(json!({"reason": "ok"})),
            steward_only((404, "not_found")),
        ),
        row(
            Method::POST,
            "/v1/dataset-versions/{id}/reject",
            "/v1/dataset-versions/999/reject".into(),
            Some(json!({"reason": "no"})),
            steward_only((404, "not_found")),
        ),
        row(Method::POST, "/v1/projects", "/v1/projects".into(), Some(project), steward_only((409, "already_exists"))),
        row(Method::GET, "/v1/projects/{id}", format!("/v1/projects/{p}"), None, [OK, OK, OK, (403, "not_a_member")]),
        row(
            Method::POST,
            "/v1/projects/{id}/members",
            format!("/v1/projects/{p}/members"),
            Some(json!({"principal": "nobody"})),
            steward_only((404, "not_found")),
        ),
        row(
            Method::DELETE,
            "/v1/projects/{id}/members/{principal}",
            format!("/v1/projects/{p}/members/nobody"),
            None,
            steward_only((404, "not_found")),
        ),
        row(Method::GET, "/v1/audit", "/v1/audit".into(), None, steward_only(OK)),
        row(Method::GET, "/v1/audit/verify", "/v1/audit/verify".into(), None, steward_only(OK)),
        row(
            Method::POST,
            "/v1/pipelines/{name}/runs",
            "/v1/pipelines/nope/runs".into(),
            None,
            operator((404, "pipeline_not_found")),
        ),
        row(Method::GET, "/v1/pipeline-runs/{id}", "/v1/pipeline-runs/999".into(), None, operator((404, "not_found"))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_covers_every_route() {
    let f = full().await;
    let in_matrix: BTreeSet<(String, &str)> = rows(&f).iter().map(|r| (r.method.to_string(), r.template)).collect();
    let in_router: BTreeSet<(String, &str)> =
        niji_server::routes::routes().iter().map(|d| (d.verb.method().to_string(), d.path)).collect();
    assert_eq!(in_matrix, in_router);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_by_every_credential() {
    let f = full().await;
    let unauthenticated: [(&str, Option<&str>, Exp); 4] = [
        ("no token", None, (401, "unauthenticated")),
        ("malformed", Some("not-a-token"), (401, "unauthenticated")),
        ("expired", Some(f.expired.as_str()), (401, "token_expired")),
        ("revoked", Some(f.revoked.as_str()), (401, "token_revoked")),
    ];
    let roles: [(&str, &str); 4] =
        [("researcher", &*f.researcher), ("steward", &*f.steward), ("admin", &*f.admin), ("pipeline", &*f.pipeline)];
    let mut checked = 0;
    for row in rows(&f) {
        let mut cases: Vec<(&str, Option<&str>, Exp)> = unauthenticated
            .iter()
            .map(|(who, token, exp)| (*who, *token, if row.public { OK } else { *exp }))
            .collect();
        cases.extend(roles.iter().zip(row.roles).map(|((who, token), exp)| (*who, Some(*token), exp)));
        for (who, token, (status, expected_code)) in cases {
            let (s, b) = call(&f, row.method.clone(), &row.uri, token, row.body.clone()).await;
            let got_code = if expected_code.is_empty() { "" } else { code(&b) };
            assert_eq!(
                (s, got_code),
                (StatusCode::from_u16(status).unwrap(), expected_code),
                "{} {} as {who}: {b}",
                row.method,
                row.uri
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 18 * 8);
    // Nothing was created by the refused calls, and no token reached the audit trail.
    assert_eq!(f.catalog.projects().await.unwrap().len(), 1);
    let tail = f.catalog.audit_tail(10_000).await.unwrap();
    assert!(tail.iter().any(|e| e.action == "auth.forbidden" && e.subject == "route:POST /v1/queries"));
    for e in &tail {
        for t in [&f.expired, &f.revoked, &f.researcher, &f.pipeline, &f.steward, &f.admin] {
            assert!(!e.details.contains(&t[5..]) && !e.subject.contains(&t[5..]));
        }
    }
}
