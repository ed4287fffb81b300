//! A catalog with datasets, principals of every role and their tokens; request helpers.

use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use niji_catalog::{Catalog, DatasetDef, Role};
use niji_server::{AppState, router};
use serde_json::Value;
use tower::ServiceExt;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub catalog: Catalog,
    pub steward: String,
    pub admin: String,
    pub researcher: String,
    pub researcher_id: i64,
    pub pipeline: String,
    pub expired: String,
    pub revoked: String,
}

pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open_default(dir.path()).await.unwrap();
    let defs = DatasetDef::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog")).unwrap();
    catalog.load_datasets("test", &defs).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let token = async |name: &str, role: Role, expires: Option<i64>| {
        let p = catalog.create_principal("test", name, role).await.unwrap();
        (p.id, catalog.issue_token("test", p.id, expires).await.unwrap())
    };
    let (_, steward) = token("sally", Role::Steward, Some(now + 3600)).await;
    let (_, admin) = token("root", Role::Admin, None).await;
    let (researcher_id, researcher) = token("alice", Role::Researcher, None).await;
    let (_, pipeline) = token("etl", Role::Pipeline, None).await;
    let (_, expired) = token("old", Role::Steward, Some(now - 10)).await;
    let (_, revoked) = token("gone", Role::Steward, None).await;
    catalog.revoke_token("test", revoked.id).await.unwrap();
    Fixture {
        _dir: dir,
        catalog,
        steward: steward.token,
        admin: admin.token,
        researcher: researcher.token,
        researcher_id,
        pipeline: pipeline.token,
        expired: expired.token,
        revoked: revoked.token,
    }
}

/// Send one request; return status and JSON body (Null when the body is not JSON).
pub async fn call(
    f: &Fixture,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = router(AppState { catalog: f.catalog.clone() }).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The stable error code of a response.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}
