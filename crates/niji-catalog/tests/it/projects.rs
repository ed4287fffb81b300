//! Projects, members, datasets, the query log and the result cache.

use std::collections::BTreeMap;

use niji_catalog::project::NewProject;
use niji_catalog::{Budget, CatalogError, DatasetDef, Mode, QueryRecord, Role};

use crate::support::{TestDb, both_backends, load_shipped};

both_backends!(projects_and_members, datasets_load_idempotently, query_log_and_cache);

fn new_project(name: &str, datasets: &[&str]) -> NewProject {
    NewProject {
        name: name.to_owned(),
        purpose: "Incidence of type 2 diabetes by prefecture".to_owned(),
        datasets: datasets.iter().map(|d| (*d).to_owned()).collect(),
        modes: vec![Mode::Sdc, Mode::Dp],
        budget: Budget::from_f64(3.0, 1e-7).unwrap(),
        expires_at: Some(4_102_444_800),
    }
}

async fn projects_and_members(db: TestDb) {
    let c = &db.catalog;
    load_shipped(c).await;
    let e = c.create_project("s", &new_project("p", &["nope"])).await.unwrap_err();
    assert!(matches!(e, CatalogError::UnknownDataset(_)), "{e}");
    let e = c.create_project("s", &new_project("p", &[])).await.unwrap_err();
    assert!(matches!(e, CatalogError::InvalidProject(_)), "{e}");
    let id = c.create_project("s", &new_project("diabetes", &["claims", "ehr"])).await.unwrap();
    let e = c.create_project("s", &new_project("diabetes", &["claims"])).await.unwrap_err();
    assert!(matches!(e, CatalogError::DuplicateProject(_)), "{e}");

    let p = c.find_project("diabetes").await.unwrap();
    assert_eq!(p.id, id);
    assert_eq!(p.datasets, ["claims", "ehr"]);
    assert_eq!(p.modes, [Mode::Dp, Mode::Sdc]);
    assert_eq!(p.budget, Budget { epsilon_micro: 3_000_000, delta_pico: 100_000 });
    assert_eq!(p.spent, Budget::default());
    assert_eq!(c.find_project(&id.to_string()).await.unwrap().name, "diabetes");

    let alice = c.create_principal("s", "alice", Role::Researcher).await.unwrap();
    c.grant("s", id, alice.id).await.unwrap();
    assert!(c.project(id).await.unwrap().is_member(alice.id));
    c.revoke("s", id, alice.id).await.unwrap();
    let p = c.project(id).await.unwrap();
    assert!(!p.is_member(alice.id));
    assert!(p.members[0].revoked_at.is_some());
    let e = c.revoke("s", id, alice.id).await.unwrap_err();
    assert!(matches!(e, CatalogError::NotAMember { .. }), "{e}");
    c.grant("s", id, alice.id).await.unwrap();
    assert!(c.project(id).await.unwrap().is_member(alice.id));
    assert!(c.grant("s", id, 9999).await.is_err());

    c.set_expiry("s", id, None).await.unwrap();
    assert_eq!(c.project(id).await.unwrap().expires_at, None);
    assert_eq!(c.projects().await.unwrap().len(), 1);

    let actions: Vec<String> = c.audit_tail(100).await.unwrap().into_iter().map(|e| e.action).collect();
    for a in ["project.create", "project.grant", "project.revoke", "project.expiry"] {
        assert!(actions.iter().any(|x| x == a), "missing audit action {a}");
    }
    assert!(c.verify_audit().await.unwrap().is_valid());
}

async fn datasets_load_idempotently(db: TestDb) {
    let c = &db.catalog;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
    let mut defs = DatasetDef::load_dir(&dir).unwrap();
    assert_eq!(c.load_datasets("s", &defs).await.unwrap(), ["care", "claims", "ehr"]);
    assert!(c.load_datasets("s", &defs).await.unwrap().is_empty());
    defs[0].policy.k = 20;
    assert_eq!(c.load_datasets("s", &defs).await.unwrap(), ["care"]);
    assert_eq!(c.dataset("care").await.unwrap().policy.k, 20);
    assert_eq!(c.datasets().await.unwrap().len(), 3);
    assert!(matches!(c.dataset("x").await.unwrap_err(), CatalogError::UnknownDataset(_)));
    let defines = c.audit_tail(100).await.unwrap().into_iter().filter(|e| e.action == "dataset.define").count();
    assert_eq!(defines, 4);
}

async fn query_log_and_cache(db: TestDb) {
    let c = &db.catalog;
    load_shipped(c).await;
    let id = c.create_project("s", &new_project("q", &["claims"])).await.unwrap();
    let record = QueryRecord {
        query_id: "q-1".to_owned(),
        project_id: id,
        principal: "alice".to_owned(),
        sql_digest: "a".repeat(64),
        plan_digest: "b".repeat(64),
        dataset_versions: BTreeMap::from([("claims".to_owned(), 3)]),
        mode: Mode::Dp,
        cost: Budget::from_f64(0.5, 0.0).unwrap(),
        result_rows: 47,
        result_columns: 2,
    };
    c.record_query(&record).await.unwrap();
    assert!(c.record_query(&record).await.is_err(), "query ids are unique");
    assert_eq!(c.queries(id).await.unwrap(), std::slice::from_ref(&record));
    let entry = c.audit_tail(1).await.unwrap().remove(0);
    assert_eq!((entry.action.as_str(), entry.actor.as_str()), ("query", "principal:alice"));
    let details: serde_json::Value = serde_json::from_str(&entry.details).unwrap();
    assert_eq!(details["epsilon_micro"], 500_000);
    assert_eq!(details["rows"], 47);

    assert_eq!(c.cache_get("k").await.unwrap(), None);
    assert!(c.cache_put("k", id, "q-1", b"\x00arrow bytes").await.unwrap());
    assert!(!c.cache_put("k", id, "q-2", b"other").await.unwrap(), "first answer wins");
    let hit = c.cache_get("k").await.unwrap().unwrap();
    assert_eq!((hit.query_id.as_str(), hit.project_id, hit.result.as_slice()), ("q-1", id, &b"\x00arrow bytes"[..]));
}

#[tokio::test]
async fn open_default_and_memory_urls_work() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("data dir #1?x");
    let c = niji_catalog::Catalog::open_default(&odd).await.unwrap();
    c.append_audit("t", "t", "t", serde_json::json!({})).await.unwrap();
    c.close().await;
    assert!(odd.join("catalog.db").exists());
    let c = niji_catalog::Catalog::open_default(&odd).await.unwrap();
    assert_eq!(c.verify_audit().await.unwrap().entries, 1, "reopening keeps the data");
    let m = niji_catalog::Catalog::connect("sqlite::memory:").await.unwrap();
    m.append_audit("t", "t", "t", serde_json::json!({})).await.unwrap();
    assert_eq!(m.verify_audit().await.unwrap().entries, 1);
    assert!(matches!(niji_catalog::Catalog::connect("mysql://x").await.unwrap_err(), CatalogError::UnsupportedUrl));
}
