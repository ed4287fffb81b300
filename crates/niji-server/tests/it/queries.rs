//! `POST /v1/queries` through the router: JSON, CSV and Arrow answers, refusals, and the
//! metrics that count them.

use std::collections::{BTreeSet, HashSet};

use arrow::array::AsArray;
use arrow::ipc::reader::StreamReader;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, code, full, pid, request, send};

const COUNT_BY_SEX: &str = "SELECT sex, count(*) AS n FROM person GROUP BY sex ORDER BY sex";
const EXTRACT: &str = "SELECT person_id, sex FROM person ORDER BY person_id";

fn query(sql: &str, mode: &str) -> Value {
    json!({"project": "study", "sql": sql, "mode": mode})
}

fn privacy_header(r: &Reply) -> Value {
    serde_json::from_slice(r.headers["x-niji-privacy"].as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_csv_and_arrow_answers() {
    let f = full().await;
    let t = Some(f.researcher.as_str());

    // JSON (the default): exactly the contract's top-level names.
    let r = send(&f.state, request(Method::POST, "/v1/queries", t, Some(query(COUNT_BY_SEX, "sdc")), &[])).await;
    let b = r.json();
    assert_eq!(r.status, StatusCode::OK, "{b}");
    let keys: BTreeSet<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["columns", "rows", "privacy", "dataset_versions", "query_id"]));
    let names: Vec<&str> = b["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sex", "n"]);
    assert!(b["columns"].as_array().unwrap().iter().all(|c| c["type"].is_string()));
    // 70 F, 45 M, 5 U: U is under k = 10 and withheld; counts are multiples of 5.
    assert_eq!(b["rows"], json!([["F", 70], ["M", 45]]));
    let p = &b["privacy"];
    assert_eq!((p["mode"].as_str(), p["k"].as_u64(), p["rounding"].as_u64()), (Some("sdc"), Some(10), Some(5)));
    assert_eq!(p["suppressed_rows"], 1);
    assert_eq!((p["epsilon_spent"].as_f64(), p["delta_spent"].as_f64()), (Some(0.0), Some(0.0)));
    assert_eq!(p["budget_remaining"], json!({"epsilon": 1.0, "delta": 1e-6}));
    assert_eq!(p["noise"], json!([]));
    for k in p.as_object().unwrap().keys() {
        assert!(niji_server::openapi::components()["schemas"]["Privacy"]["properties"].get(k).is_some(), "Privacy.{k}");
    }
    let approved = f.catalog.approved_version("ehr").await.unwrap().unwrap().id;
    assert_eq!(b["dataset_versions"], json!({"ehr": approved}));
    let id = b["query_id"].as_str().unwrap();
    assert!(id.starts_with("q-"));
    assert_eq!(r.headers["x-niji-query-id"], id);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/json"));

    // CSV, privacy in a header.
    let csv = [("accept", "text/csv")];
    let r = send(&f.state, request(Method::POST, "/v1/queries", t, Some(query(COUNT_BY_SEX, "sdc")), &csv)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(std::str::from_utf8(&r.bytes).unwrap(), "sex,n\nF,70\nM,45\n");
    assert_eq!(privacy_header(&r)["suppressed_rows"], 1);
    assert!(r.headers["x-niji-query-id"].to_str().unwrap().starts_with("q-"));
    let versions: Value = serde_json::from_slice(r.headers["x-niji-dataset-versions"].as_bytes()).unwrap();
    assert_eq!(versions, json!({"ehr": approved}));

    // Arrow IPC stream of an extract: capped at 50 rows, person_id re-keyed.
    let arrow = [("accept", "application/vnd.apache.arrow.stream")];
    let r = send(&f.state, request(Method::POST, "/v1/queries", t, Some(query(EXTRACT, "extract")), &arrow)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.headers["content-type"], "application/vnd.apache.arrow.stream");
    let reader = StreamReader::try_new(std::io::Cursor::new(r.bytes.to_vec()), None).unwrap();
    let schema = reader.schema();
    let fields: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(fields, ["person_id", "sex"]);
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        ids.extend(batch.column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_owned()));
    }
    assert_eq!(ids.len(), 50);
    let raw: HashSet<String> = (0..120).map(pid).collect();
    assert!(ids.iter().all(|id| !raw.contains(id)), "person_id must be re-keyed per project");
    let p = privacy_header(&r);
    assert_eq!(
        (p["mode"].as_str(), p["row_cap"].as_u64(), p["truncated"].as_bool()),
        (Some("extract"), Some(50), Some(true))
    );

    // dp: noise per released column, the charge and the budget left.
    let dp = json!({"project": "study", "sql": "SELECT count(*) AS n FROM person", "mode": "dp", "epsilon": 0.5});
    let r = send(&f.state, request(Method::POST, "/v1/queries", t, Some(dp), &[])).await;
    let b = r.json();
    assert_eq!(r.status, StatusCode::OK, "{b}");
    let p = &b["privacy"];
    assert_eq!(p["mode"], "dp");
    let spent = p["epsilon_spent"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 0.5 + 1e-9, "{p}");
    assert!((p["budget_remaining"]["epsilon"].as_f64().unwrap() - (1.0 - spent)).abs() < 1e-6, "{p}");
    let noise = p["noise"].as_array().unwrap();
    assert!(!noise.is_empty(), "{p}");
    for n in noise {
        for field in ["column", "mechanism", "scale", "ci95"] {
            assert!(n.get(field).is_some(), "noise without {field}: {n}");
        }
    }
    assert!(noise.iter().any(|n| n["column"] == "n"), "{p}");
    // The OpenAPI schemas name every field the answer has (they are written by hand).
    let schemas = niji_server::openapi::components()["schemas"].clone();
    let documented = |schema: &str, v: &Value| {
        for k in v.as_object().unwrap().keys() {
            assert!(schemas[schema]["properties"].get(k).is_some(), "{schema}.{k} is not in the OpenAPI schema");
        }
    };
    documented("QueryResponse", &b);
    documented("Privacy", p);
    noise.iter().for_each(|n| documented("Noise", n));

    // A dry run checks without running: columns, no rows.
    let dry = json!({"project": "study", "sql": COUNT_BY_SEX, "mode": "sdc", "dry_run": true});
    let r = send(&f.state, request(Method::POST, "/v1/queries", t, Some(dry), &[])).await;
    let b = r.json();
    assert_eq!(
        (r.status, b["rows"].clone(), b["privacy"]["dry_run"].as_bool()),
        (StatusCode::OK, json!([]), Some(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_stable_codes_and_the_metrics_count_everything() {
    let f = full().await;
    let t = Some(f.researcher.as_str());
    let post = async |token: Option<&str>, body: Value, headers: &[(&str, &str)]| {
        send(&f.state, request(Method::POST, "/v1/queries", token, Some(body), headers)).await
    };
    let expect = |r: &Reply, status: u16, c: &str| {
        let b = r.json();
        assert_eq!((r.status.as_u16(), code(&b)), (status, c), "{b}");
        assert!(!b["error"]["message"].as_str().unwrap().is_empty());
    };
    let project = f.catalog.find_project("study").await.unwrap().id;
    let logged = f.catalog.queries(project).await.unwrap().len();

    expect(&post(t, query("DESCRIBE person", "sdc"), &[]).await, 400, "sql_statement_refused");
    expect(&post(t, query("SELEC count(*) FROM person", "sdc"), &[]).await, 400, "sql_syntax");
    expect(&post(t, query("SELECT no_such_column FROM person", "sdc"), &[]).await, 400, "sql_plan");
    let greedy = json!({"project": "study", "sql": "SELECT count(*) FROM person", "mode": "dp", "epsilon": 50.0});
    expect(&post(t, greedy, &[]).await, 403, "budget_exhausted");
    expect(&post(t, json!({"project": "nope", "sql": "SELECT 1"}), &[]).await, 404, "project_not_found");
    expect(
        &post(t, json!({"project": "study", "sql": "SELECT 1", "mode": "magic"}), &[]).await,
        400,
        "invalid_request",
    );
    expect(&post(t, json!({"sql": "SELECT 1"}), &[]).await, 400, "invalid_request");
    expect(&post(None, query(COUNT_BY_SEX, "sdc"), &[]).await, 401, "unauthenticated");
    expect(&post(Some(&f.steward), query(COUNT_BY_SEX, "sdc"), &[]).await, 403, "forbidden");
    expect(&post(t, query(COUNT_BY_SEX, "sdc"), &[("accept", "image/png")]).await, 406, "not_acceptable");
    // Bodies over 256 KiB.
    let big = json!({"project": "study", "sql": format!("SELECT 1 -- {}", "x".repeat(300 * 1024))});
    expect(&post(t, big, &[]).await, 413, "payload_too_large");
    // A body that is not JSON, or not declared as JSON.
    let raw = |ct: &str, body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/queries")
            .header("authorization", format!("Bearer {}", f.researcher))
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap()
    };
    expect(&send(&f.state, raw("application/json", "{not json")).await, 400, "invalid_request");
    expect(&send(&f.state, raw("text/plain", r#"{"project":"study","sql":"SELECT 1"}"#)).await, 400, "invalid_request");
    // Nothing refused reached the query log.
    assert_eq!(f.catalog.queries(project).await.unwrap().len(), logged);

    // Three answers, to count too.
    assert_eq!(post(t, query(COUNT_BY_SEX, "sdc"), &[]).await.status, StatusCode::OK);
    let dp = json!({"project": "study", "sql": "SELECT count(*) AS n FROM person", "mode": "dp", "epsilon": 0.1});
    assert_eq!(post(t, dp, &[]).await.status, StatusCode::OK);
    assert_eq!(post(t, query(EXTRACT, "extract"), &[("accept", "text/csv")]).await.status, StatusCode::OK);
    // A route with an id, and an unknown route.
    let uri = format!("/v1/projects/{project}");
    assert_eq!(send(&f.state, request(Method::GET, &uri, t, None, &[])).await.status, StatusCode::OK);
    let r = send(&f.state, request(Method::GET, "/v1/nothing/here", t, None, &[])).await;
    expect(&r, 404, "no_such_route");
    let r = send(&f.state, request(Method::PUT, "/v1/queries", t, None, &[])).await;
    expect(&r, 405, "method_not_allowed");

    let r = send(&f.state, request(Method::GET, "/metrics", None, None, &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = std::str::from_utf8(&r.bytes).unwrap();
    let has = |line: &str| assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    has("niji_build_info{version=\"0.1.0\"} 1");
    has(r#"niji_queries_total{mode="sdc",outcome="answered"} 1"#);
    has(r#"niji_queries_total{mode="extract",outcome="answered"} 1"#);
    has(r#"niji_queries_total{mode="sdc",outcome="sql_statement_refused"} 1"#);
    has(r#"niji_queries_total{mode="sdc",outcome="sql_syntax"} 1"#);
    has(r#"niji_queries_total{mode="dp",outcome="answered"} 1"#);
    has(r#"niji_queries_total{mode="dp",outcome="budget_exhausted"} 1"#);
    has(r#"niji_queries_total{mode="default",outcome="project_not_found"} 1"#);
    has(r#"niji_queries_total{mode="default",outcome="invalid_request"} 4"#);
    has(r#"niji_queries_total{mode="default",outcome="payload_too_large"} 1"#);
    has(r#"niji_queries_total{mode="default",outcome="not_acceptable"} 1"#);
    // Eight requests reached the query service: 3 refused in SQL, the budget, an unknown
    // project, 3 answers.
    has("niji_query_duration_seconds_count 8");
    has(r#"niji_query_duration_seconds_bucket{le="+Inf"} 8"#);
    has(r#"niji_http_requests_total{route="/v1/queries",method="POST",status="200"} 3"#);
    has(r#"niji_http_requests_total{route="/v1/queries",method="POST",status="400"} 7"#);
    has(r#"niji_http_requests_total{route="/v1/queries",method="POST",status="401"} 1"#);
    has(r#"niji_http_requests_total{route="/v1/queries",method="POST",status="403"} 2"#);
    has(r#"niji_http_requests_total{route="/v1/queries",method="POST",status="413"} 1"#);
    has(r#"niji_http_requests_total{route="/v1/projects/{id}",method="GET",status="200"} 1"#);
    has(r#"niji_http_requests_total{route="unmatched",method="GET",status="404"} 1"#);
    // Route labels are templates, never raw paths with ids.
    assert!(!text.contains(&format!("/v1/projects/{project}\"")), "{text}");
    assert!(!text.contains("/v1/nothing"), "{text}");
}
