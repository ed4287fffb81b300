//! Dataset versions: the review workflow and its legal transitions.

use std::collections::BTreeMap;

use niji_catalog::{CatalogError, VersionStatus};

use crate::support::{TestDb, both_backends, load_shipped};

fn tables(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(t, v)| ((*t).to_owned(), *v)).collect()
}

both_backends!(review_approve_reject_retire, illegal_transitions_are_refused, bad_registrations_are_refused);

async fn review_approve_reject_retire(db: TestDb) {
    let c = &db.catalog;
    load_shipped(c).await;
    let report = serde_json::json!({
        "counts": {"claim": 120, "person": 40},
        "schemas": {"claim": {"claim_id": "Utf8", "total_points": "Int64"}},
        "reidentification": {"k_min": 3, "classes_below_k": 2},
    });
    let v1 = c
        .register_version("pipeline:claims", "claims", &tables(&[("claim", 0), ("person", 0)]), &report)
        .await
        .unwrap();
    assert_eq!(c.approved_version("claims").await.unwrap(), None);
    let pending = c.versions(Some(VersionStatus::Pending), None).await.unwrap();
    assert_eq!(pending.iter().map(|v| v.id).collect::<Vec<_>>(), [v1]);

    let r = c.review(v1).await.unwrap();
    assert_eq!(r.approved, None);
    assert_eq!(r.tables.len(), 2);
    assert_eq!(r.schema.len(), 2, "every column is new against no approved version");
    assert_eq!(r.counts, Some(serde_json::json!({"claim": 120, "person": 40})));
    assert_eq!(r.reidentification.unwrap()["k_min"], 3);

    c.approve(v1, "cli:steward", "counts match the source").await.unwrap();
    let approved = c.approved_version("claims").await.unwrap().unwrap();
    assert_eq!((approved.id, approved.status), (v1, VersionStatus::Approved));
    assert_eq!(approved.reviewer.as_deref(), Some("cli:steward"));
    assert_eq!(approved.reason.as_deref(), Some("counts match the source"));
    assert!(approved.reviewed_at.is_some());

    // A second version: the review compares with v1; approving it retires v1.
    let report2 = serde_json::json!({"schemas": {"claim": {"claim_id": "Utf8", "total_points": "Float64"}}});
    let v2 = c
        .register_version("pipeline:claims", "claims", &tables(&[("claim", 1), ("person", 0)]), &report2)
        .await
        .unwrap();
    let r2 = c.review(v2).await.unwrap();
    assert_eq!(r2.approved.as_ref().map(|a| a.id), Some(v1));
    assert_eq!(r2.tables.len(), 1);
    assert_eq!(
        (r2.tables[0].table.as_str(), r2.tables[0].approved, r2.tables[0].candidate),
        ("claim", Some(0), Some(1))
    );
    assert_eq!(r2.schema.len(), 1);
    assert_eq!(r2.schema[0].column, "total_points");
    c.approve(v2, "cli:steward", "ok").await.unwrap();
    assert_eq!(c.approved_version("claims").await.unwrap().unwrap().id, v2);
    assert_eq!(c.version(v1).await.unwrap().status, VersionStatus::Retired);

    // Rejected versions never become visible.
    let v3 = c
        .register_version("pipeline:claims", "claims", &tables(&[("claim", 2)]), &serde_json::json!({}))
        .await
        .unwrap();
    c.reject(v3, "cli:steward", "quarantine too large").await.unwrap();
    assert_eq!(c.version(v3).await.unwrap().status, VersionStatus::Rejected);
    assert_eq!(c.approved_version("claims").await.unwrap().unwrap().id, v2);

    // Retiring the approved one leaves the dataset with none.
    c.retire(v2, "cli:steward", "consent withdrawal backlog").await.unwrap();
    assert_eq!(c.approved_version("claims").await.unwrap(), None);

    let actions: Vec<String> = c.audit_tail(100).await.unwrap().into_iter().map(|e| e.action).collect();
    for a in ["pipeline.run", "version.approve", "version.reject", "version.retire"] {
        assert!(actions.iter().any(|x| x == a), "missing audit action {a}");
    }
    assert!(c.verify_audit().await.unwrap().is_valid());
}

async fn illegal_transitions_are_refused(db: TestDb) {
    let c = &db.catalog;
    load_shipped(c).await;
    let t = tables(&[("care_service", 0)]);
    let approved = c.register_version("p", "care", &t, &serde_json::json!({})).await.unwrap();
    c.approve(approved, "s", "ok").await.unwrap();
    let rejected = c.register_version("p", "care", &t, &serde_json::json!({})).await.unwrap();
    c.reject(rejected, "s", "no").await.unwrap();
    let pending = c.register_version("p", "care", &t, &serde_json::json!({})).await.unwrap();

    use VersionStatus::{Approved, Pending, Rejected, Retired};
    let cases = [
        (approved, Approved, c.approve(approved, "s", "again").await),
        (approved, Approved, c.reject(approved, "s", "late").await),
        (rejected, Rejected, c.approve(rejected, "s", "changed mind").await),
        (rejected, Rejected, c.retire(rejected, "s", "x").await),
        (pending, Pending, c.retire(pending, "s", "x").await),
    ];
    for (id, from, outcome) in cases {
        match outcome {
            Err(CatalogError::IllegalTransition { id: i, from: f, .. }) => assert_eq!((i, f), (id, from)),
            other => panic!("expected an illegal transition for {id}, got {other:?}"),
        }
    }
    c.retire(approved, "s", "x").await.unwrap();
    let again = c.retire(approved, "s", "x").await.unwrap_err();
    assert!(matches!(again, CatalogError::IllegalTransition { from: Retired, .. }), "{again}");
    assert!(matches!(c.approve(9999, "s", "x").await.unwrap_err(), CatalogError::UnknownVersion(9999)));
    // Nothing above changed the pending version.
    assert_eq!(c.version(pending).await.unwrap().status, Pending);
}

async fn bad_registrations_are_refused(db: TestDb) {
    let c = &db.catalog;
    load_shipped(c).await;
    let e = c.register_version("p", "nope", &tables(&[("claim", 0)]), &serde_json::json!({})).await.unwrap_err();
    assert!(matches!(e, CatalogError::UnknownDataset(ref d) if d == "nope"), "{e}");
    let e = c.register_version("p", "care", &tables(&[("measurement", 0)]), &serde_json::json!({})).await.unwrap_err();
    assert!(matches!(e, CatalogError::UnknownTable { ref table, .. } if table == "measurement"), "{e}");
    assert!(c.versions(None, None).await.unwrap().is_empty());
}
