//! A catalog with datasets, principals of every role and their tokens, a query service and a
//! pipeline runner; request helpers. [`fixture`] has an empty lake; [`full`] adds approved
//! `ehr` tables with known answers and the project `study` that the researcher belongs to.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use niji_catalog::{Budget, Catalog, DatasetDef, Mode, Role};
use niji_cdm::{ColumnType, TableDef};
use niji_pipeline::lake::Lake;
use niji_pipeline::{PipelineSpec, RunOptions};
use niji_pseudo::PseudonymKey;
use niji_query::{QueryService, ServiceConfig, ServiceLimits};
use niji_server::{AppState, PipelineRunner, router};
use serde_json::Value;
use tower::ServiceExt;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub catalog: Catalog,
    pub state: AppState,
    pub steward: String,
    pub admin: String,
    pub researcher: String,
    pub researcher_id: i64,
    pub pipeline: String,
    pub expired: String,
    pub revoked: String,
    /// `study` (full fixture only; 0 otherwise).
    pub project_id: i64,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A pipeline spec over an empty landing folder: a run plans no file and ends `noop`.
fn empty_claims_spec(data_dir: &Path) -> PipelineSpec {
    std::fs::create_dir_all(data_dir.join("landing/receipts")).unwrap();
    let text = r#"name = "claims-http"
dataset = "claims"

[[sources]]
name = "receipts"
format = "receipt"
url = "landing/receipts"
glob = "*.UKE"
"#;
    let path = data_dir.join("claims-http.toml");
    std::fs::write(&path, text).unwrap();
    PipelineSpec::parse(text, &path).unwrap()
}

async fn build(with_data: bool, with_pipelines: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let catalog = Catalog::open_default(&data_dir).await.unwrap();
    let defs = DatasetDef::load_dir(&manifest_dir().join("../../catalog")).unwrap();
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

    let lake = Lake::new(None, &data_dir, HashMap::new()).unwrap();
    let mut project_id = 0;
    if with_data {
        let mut versions = BTreeMap::new();
        for (name, b) in [("person", person_batch()), ("condition_occurrence", condition_batch())] {
            let t = lake.open("ehr", name).await.unwrap();
            versions.insert(name.to_owned(), lake.append(t, name, vec![b], "test", 1).await.unwrap());
        }
        let v = catalog.register_version("pipeline:test", "ehr", &versions, &serde_json::json!({})).await.unwrap();
        catalog.approve(v, "steward:test", "test data").await.unwrap();
        project_id = catalog
            .create_project(
                "test",
                &niji_catalog::project::NewProject {
                    name: "study".into(),
                    purpose: "tests".into(),
                    datasets: vec!["ehr".into()],
                    modes: vec![Mode::Sdc, Mode::Extract, Mode::Dp],
                    budget: Budget::from_f64(1.0, 1e-6).unwrap(),
                    expires_at: None,
                },
            )
            .await
            .unwrap();
        catalog.grant("test", project_id, researcher_id).await.unwrap();
    }
    let policies = QueryService::load_policies(&catalog, &manifest_dir().join("tests/policies")).await.unwrap();
    let service = QueryService::new(
        catalog.clone(),
        ServiceConfig {
            lake,
            policies,
            extract_key: Some(PseudonymKey::from_bytes(b"extract-master-key-for-tests-000").unwrap()),
            limits: ServiceLimits { timeout: Duration::from_secs(30), cpu_threads: 2, ..ServiceLimits::default() },
        },
    )
    .unwrap();
    let mut state = AppState::new(catalog.clone(), service);
    if with_pipelines {
        let key = PseudonymKey::from_bytes(&[7u8; 32]).unwrap();
        state = state.with_pipelines(PipelineRunner::new(
            vec![empty_claims_spec(&data_dir)],
            key,
            RunOptions::new(&data_dir),
        ));
    }
    Fixture {
        _dir: dir,
        catalog,
        state,
        steward: steward.token,
        admin: admin.token,
        researcher: researcher.token,
        researcher_id,
        pipeline: pipeline.token,
        expired: expired.token,
        revoked: revoked.token,
        project_id,
    }
}

/// Catalog, principals, an empty lake, no pipeline runner.
pub async fn fixture() -> Fixture {
    build(false, false).await
}

/// As [`fixture`], plus approved `ehr` tables, the project `study` with the researcher as its
/// member, and a pipeline runner with the pipeline `claims-http` (an empty landing folder).
pub async fn full() -> Fixture {
    build(true, true).await
}

/// A response, whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// Send a request through the router of `state`.
pub async fn send(state: &AppState, req: Request<Body>) -> Reply {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
    Reply { status, headers, bytes }
}

/// Build a request with an optional bearer token, JSON body and extra headers.
pub fn request(
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
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
    let r = send(&f.state, request(method, uri, token, body, &[])).await;
    (r.status, r.json())
}

/// The stable error code of a response.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

// ---- Hand-made CDM rows (after crates/niji-query/tests/it/support.rs). ----

/// A value for one cell of a hand-made row.
#[derive(Debug, Clone)]
pub enum V {
    S(String),
    I(i64),
    Null,
}

fn s(v: impl Into<String>) -> V {
    V::S(v.into())
}

/// A batch of `n` rows of a CDM table; `cell(column, row)` gives values, absent → a default
/// for non-nullable columns and null otherwise.
pub fn batch(t: &TableDef, n: usize, cell: impl Fn(&str, usize) -> Option<V>) -> RecordBatch {
    let cols: Vec<ArrayRef> = t
        .columns
        .iter()
        .map(|c| {
            let get = |i: usize| match cell(c.name, i) {
                Some(v) => v,
                None if c.nullable => V::Null,
                None => match c.ty {
                    ColumnType::Utf8 => V::S(format!("{}-{i}", c.name)),
                    _ => V::I(0),
                },
            };
            let vals: Vec<V> = (0..n).map(get).collect();
            let int = |v: &V| if let V::I(i) = v { Some(*i) } else { None };
            let a: ArrayRef = match c.ty {
                ColumnType::Utf8 => Arc::new(
                    vals.iter().map(|v| if let V::S(s) = v { Some(s.clone()) } else { None }).collect::<StringArray>(),
                ),
                ColumnType::Int32 => {
                    Arc::new(vals.iter().map(|v| int(v).map(|i| i32::try_from(i).unwrap())).collect::<Int32Array>())
                }
                ColumnType::Int64 => Arc::new(vals.iter().map(int).collect::<Int64Array>()),
                ColumnType::Float64 => {
                    Arc::new(vals.iter().map(|v| int(v).map(|i| i as f64)).collect::<Float64Array>())
                }
                ColumnType::Boolean => Arc::new(vals.iter().map(|v| int(v).map(|i| i != 0)).collect::<BooleanArray>()),
                ColumnType::Date32 => {
                    Arc::new(vals.iter().map(|v| int(v).map(|i| i32::try_from(i).unwrap())).collect::<Date32Array>())
                }
            };
            a
        })
        .collect();
    RecordBatch::try_new(t.schema(), cols).unwrap()
}

pub fn pid(i: usize) -> String {
    format!("{i:032x}")
}

/// 120 persons: sex F for 0..70, M for 70..115, U for 115..120; year_of_birth 1940 + i % 60;
/// prefecture 13 (even i) or 27 (odd i).
pub fn person_batch() -> RecordBatch {
    batch(&niji_cdm::tables::PERSON_TABLE, 120, |c, i| match c {
        "person_id" => Some(s(pid(i))),
        "sex" => Some(s(if i < 70 {
            "F"
        } else if i < 115 {
            "M"
        } else {
            "U"
        })),
        "year_of_birth" => Some(V::I(1940 + (i % 60) as i64)),
        "month_of_birth" => Some(V::I(1 + (i % 12) as i64)),
        "prefecture_code" => Some(s(if i % 2 == 0 { "13" } else { "27" })),
        "linkage_basis" => Some(s("id1")),
        "source_system" => Some(s("synth")),
        _ => None,
    })
}

/// E11 once for persons 10..40, C50 once for person 0.
pub fn condition_batch() -> RecordBatch {
    let mut rows: Vec<(usize, &str)> = (10..40).map(|i| (i, "E11")).collect();
    rows.push((0, "C50"));
    batch(&niji_cdm::tables::CONDITION_OCCURRENCE, rows.len(), |c, r| match c {
        "condition_occurrence_id" => Some(s(format!("c{r}"))),
        "person_id" => Some(s(pid(rows[r].0))),
        "icd10_code" => Some(s(rows[r].1)),
        "condition_source_value" => Some(s(rows[r].1)),
        "condition_start_date" => Some(V::I(19_000 + r as i64)),
        "source_system" => Some(s("synth")),
        _ => None,
    })
}
