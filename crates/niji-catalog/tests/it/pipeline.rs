//! Pipeline runs, loaded files and leases, on both backends.

use std::collections::BTreeMap;

use niji_catalog::pipeline::{LoadedFile, RunCompletion};
use serde_json::json;

use crate::support::{TestDb, both_backends, load_shipped};

async fn runs_resume_until_completed_and_record_files(db: TestDb) {
    let c = &db.catalog;
    load_shipped(c).await;
    assert!(c.open_run("claims").await.unwrap().is_none());
    let seq = c.start_run("claims", "h1", &json!({"files": ["a"]})).await.unwrap();
    assert_eq!(seq, 1);
    // Not finished: the next attempt must resume it, with its manifest.
    c.fail_run("claims", seq, "boom").await.unwrap();
    let open = c.open_run("claims").await.unwrap().unwrap();
    assert_eq!((open.seq, open.status.as_str(), open.manifest["files"][0].as_str()), (1, "failed", Some("a")));
    c.resume_run("claims", 1, "h2").await.unwrap();
    let open = c.open_run("claims").await.unwrap().unwrap();
    assert_eq!((open.attempts, open.holder.as_str(), open.error), (2, "h2", None));

    let versions = BTreeMap::from([("claim".to_owned(), 0i64), ("person".to_owned(), 0)]);
    let files = vec![LoadedFile { sha256: "ab".repeat(32), path: "x.UKE".into(), bytes: 10, run_seq: 1 }];
    let audit_before = db.raw_i64("SELECT COUNT(*) FROM audit_log").await;
    let id = c
        .complete_run(
            "pipeline",
            &RunCompletion {
                pipeline: "claims",
                seq: 1,
                dataset: "claims",
                delta_versions: &versions,
                run_report: &json!({"counts": {"records": 3}}),
                summary: &json!({"records": 3}),
                files: &files,
            },
        )
        .await
        .unwrap();
    assert_eq!(db.raw_i64("SELECT COUNT(*) FROM audit_log").await, audit_before + 1);
    let v = c.version(id).await.unwrap();
    assert_eq!(v.status, niji_catalog::VersionStatus::Pending);
    assert_eq!(v.delta_versions, versions);
    assert!(c.open_run("claims").await.unwrap().is_none());
    assert_eq!(c.loaded_files("claims").await.unwrap(), files);
    assert!(c.loaded_files("other").await.unwrap().is_empty());
    let runs = c.pipeline_runs(Some("claims"), 10).await.unwrap();
    assert_eq!((runs[0].status.as_str(), runs[0].version_id), ("succeeded", Some(id)));
    assert_eq!(c.start_run("claims", "h1", &json!({})).await.unwrap(), 2);
    c.noop_run("claims", 2, &json!({})).await.unwrap();
    assert!(c.open_run("claims").await.unwrap().is_none());
    // A table the dataset does not have is refused, and nothing is recorded.
    let seq = c.start_run("claims", "h1", &json!({})).await.unwrap();
    let bad = BTreeMap::from([("care_service".to_owned(), 0i64)]);
    let e = c
        .complete_run(
            "pipeline",
            &RunCompletion {
                pipeline: "claims",
                seq,
                dataset: "claims",
                delta_versions: &bad,
                run_report: &json!({}),
                summary: &json!({}),
                files: &[],
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, niji_catalog::CatalogError::UnknownTable { .. }), "{e}");
    assert_eq!(c.open_run("claims").await.unwrap().unwrap().seq, seq);
}

async fn one_lease_holder_among_concurrent_takers(db: TestDb) {
    let c = db.catalog.clone();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.acquire_lease("p", &format!("h{i}"), 60_000).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    let holder = c.lease_holder("p").await.unwrap().unwrap();
    assert!(c.acquire_lease("p", &holder, 60_000).await.unwrap(), "re-entrant for its holder");
    assert!(!c.acquire_lease("p", "x", 60_000).await.unwrap());
    c.release_lease("p", "x").await.unwrap(); // not the holder: no effect
    assert_eq!(c.lease_holder("p").await.unwrap().as_deref(), Some(holder.as_str()));
    c.release_lease("p", &holder).await.unwrap();
    assert_eq!(c.lease_holder("p").await.unwrap(), None);
}

both_backends!(runs_resume_until_completed_and_record_files, one_lease_holder_among_concurrent_takers);
