//! The service around the SQL: permits, versions, extracts, limits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use niji_catalog::Mode;
use niji_query::{QueryRequest, ServiceLimits};

use crate::support::{fixture, fixture_with, person_batch, pid, write_tables};

fn req(project: &str, mode: Mode, sql: &str) -> QueryRequest {
    QueryRequest { project: project.into(), sql: sql.into(), mode: Some(mode), ..QueryRequest::default() }
}

fn strings(a: &niji_query::QueryAnswer, col: usize) -> Vec<String> {
    a.batches.iter().flat_map(|b| b.column(col).as_string::<i32>().iter().map(|v| v.unwrap().to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_are_checked_before_anything_runs() {
    let f = fixture().await;
    let q = "SELECT count(*) FROM person";
    let e = f.service.run(&f.outsider, &req("study", Mode::Sdc, q)).await.unwrap_err();
    assert_eq!(e.code(), "not_a_member");
    let e = f.service.run(&f.researcher, &req("nope", Mode::Sdc, q)).await.unwrap_err();
    assert_eq!(e.code(), "project_not_found");
    let e = f.service.run(&f.researcher, &req("open", Mode::Extract, q)).await.unwrap_err();
    assert_eq!(e.code(), "mode_not_allowed");
    let project = f.catalog.find_project("study").await.unwrap();
    f.catalog.set_expiry("test", project.id, Some(1)).await.unwrap();
    let e = f.service.run(&f.researcher, &req("study", Mode::Sdc, q)).await.unwrap_err();
    assert_eq!(e.code(), "project_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn researchers_read_the_approved_version_only() {
    let f = fixture().await;
    let q = req("open", Mode::Sdc, "SELECT count(*) AS n FROM person");
    let count = async || {
        let a = f.service.run(&f.researcher, &q).await.unwrap();
        a.batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0)
    };
    assert_eq!(count().await, 120);
    // A new pipeline version doubles the person table; until a steward approves it, nothing changes.
    let versions = write_tables(&f.lake, 2, vec![("person", person_batch())]).await;
    let mut all = f.catalog.version(f.version_id).await.unwrap().delta_versions;
    all.extend(versions);
    let v2 = f.catalog.register_version("pipeline:test", "ehr", &all, &serde_json::json!({})).await.unwrap();
    assert_eq!(count().await, 120);
    f.catalog.approve(v2, "steward:test", "ok").await.unwrap();
    assert_eq!(count().await, 240);
    let a = f.service.run(&f.researcher, &q).await.unwrap();
    assert_eq!(a.dataset_versions.get("ehr"), Some(&v2));
    // Each answer is logged with its versions, never its values.
    let log = f.catalog.queries(f.catalog.find_project("open").await.unwrap().id).await.unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(log.iter().filter(|q| q.dataset_versions.get("ehr") == Some(&v2)).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extracts_rekey_person_ids_per_project_and_cap_rows() {
    let f = fixture().await;
    let sql = "SELECT person_id, sex FROM person ORDER BY person_id";
    let a = f.service.run(&f.researcher, &req("rows", Mode::Extract, sql)).await.unwrap();
    assert_eq!(a.num_rows(), 50);
    assert_eq!(a.privacy.row_cap, Some(50));
    assert_eq!(a.privacy.truncated, Some(true));
    assert_eq!(a.schema.fields().len(), 2);
    let ids = strings(&a, 0);
    let raw: HashSet<String> = (0..120).map(pid).collect();
    assert!(ids.iter().all(|id| id.len() == 32 && !raw.contains(id)), "person_id must be re-keyed");
    // Stable within a project, disjoint across projects.
    let again = strings(&f.service.run(&f.researcher, &req("rows", Mode::Extract, sql)).await.unwrap(), 0);
    assert_eq!(ids, again);
    let other: HashSet<String> =
        strings(&f.service.run(&f.researcher, &req("rows2", Mode::Extract, sql)).await.unwrap(), 0)
            .into_iter()
            .collect();
    assert!(ids.iter().all(|id| !other.contains(id)), "two projects' extracts must not link");
    // Joins on the re-keyed id still work: 30 persons have E11.
    let j = "SELECT count(DISTINCT p.person_id) AS n FROM person p JOIN condition_occurrence c ON p.person_id = c.person_id WHERE c.icd10_code = 'E11'";
    let a = f.service.run(&f.researcher, &req("rows", Mode::Extract, j)).await.unwrap();
    assert_eq!(a.batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0), 30);
    assert_eq!(a.privacy.truncated, Some(false));
    // Columns outside the policy do not exist.
    let e = f.service.run(&f.researcher, &req("rows", Mode::Extract, "SELECT year_of_birth FROM person")).await;
    assert_eq!(e.unwrap_err().code(), "sql_plan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_check_without_running_or_logging() {
    let f = fixture().await;
    let mut r = req("study", Mode::Sdc, "SELECT sex, count(*) AS n FROM person GROUP BY sex");
    r.dry_run = true;
    let a = f.service.run(&f.researcher, &r).await.unwrap();
    assert!(a.privacy.dry_run);
    assert_eq!(a.num_rows(), 0);
    assert_eq!(a.schema.fields().len(), 2);
    assert!(f.catalog.queries(f.catalog.find_project("study").await.unwrap().id).await.unwrap().is_empty());
    r.sql = "DESCRIBE person".into();
    assert_eq!(f.service.run(&f.researcher, &r).await.unwrap_err().code(), "sql_statement_refused");
}

/// A cross join of 120⁶ rows cannot finish in one second.
const SLOW: &str = "SELECT count(*) AS n FROM person a, person b, person c, person d, person e, person f \
                    WHERE a.year_of_birth + b.year_of_birth + c.year_of_birth + d.year_of_birth + e.year_of_birth > f.year_of_birth";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_deadline_fails_alone() {
    let f =
        fixture_with(ServiceLimits { timeout: Duration::from_secs(1), max_concurrent: 4, ..ServiceLimits::default() })
            .await;
    let slow = req("study", Mode::Extract, SLOW);
    let fast = req("open", Mode::Sdc, "SELECT sex, count(*) AS n FROM person GROUP BY sex");
    let started = Instant::now();
    let (s, q) = tokio::join!(f.service.run(&f.researcher, &slow), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        f.service.run(&f.researcher, &fast).await
    });
    assert_eq!(s.unwrap_err().code(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "the deadline must hold: {:?}", started.elapsed());
    assert_eq!(q.unwrap().num_rows(), 2);
    // And the service keeps serving after it.
    assert_eq!(f.service.run(&f.researcher, &fast).await.unwrap().num_rows(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_memory_fails_cleanly() {
    let f = fixture_with(ServiceLimits { memory_bytes: 256 * 1024, ..ServiceLimits::default() }).await;
    let big = req(
        "rows",
        Mode::Extract,
        "SELECT a.person_id, b.person_id AS other, count(*) AS n FROM person a, person b, condition_occurrence c GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let e = f.service.run(&f.researcher, &big).await.unwrap_err();
    assert_eq!(e.code(), "memory_limit", "{e}");
    let small = req("open", Mode::Sdc, "SELECT count(*) AS n FROM person");
    assert_eq!(f.service.run(&f.researcher, &small).await.unwrap().num_rows(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_is_refused_quickly_without_crashing() {
    let f = fixture().await;
    let started = Instant::now();
    for sql in [
        format!("SELECT count(*) FROM person WHERE {}", vec!["sex = 'M'"; 10_000].join(" OR ")),
        format!("SELECT count(*) FROM person WHERE {}", vec!["year_of_birth=1"; 3_000].join(" OR ")),
        format!("SELECT {}1{} AS x, count(*) FROM person", "(".repeat(5_000), ")".repeat(5_000)),
        format!("SELECT {} AS x, count(*) FROM person", vec!["year_of_birth"; 2_000].join(" + ")),
    ] {
        let e = f.service.run(&f.researcher, &req("study", Mode::Sdc, &sql)).await.unwrap_err();
        assert!(["sql_too_large", "sql_too_complex", "sql_syntax"].contains(&e.code()), "{}: {e}", e.code());
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}
