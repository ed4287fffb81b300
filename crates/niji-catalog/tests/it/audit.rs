//! The audit chain: tamper detection (threat T14) and concurrent appends.

use futures::future::join_all;
use niji_catalog::{AuditProblem, Catalog};

use crate::support::{TestDb, both_backends};

async fn append_n(catalog: &Catalog, n: usize) {
    for i in 0..n {
        catalog
            .append_audit("cli:tester", "test.event", &format!("thing:{i}"), serde_json::json!({ "i": i }))
            .await
            .unwrap();
    }
}

async fn problem(catalog: &Catalog) -> Option<AuditProblem> {
    catalog.verify_audit().await.unwrap().problem
}

both_backends!(
    untouched_chain_verifies,
    edited_entry_is_named,
    edited_prev_digest_is_named,
    deleted_entry_is_named,
    deleted_last_entry_is_named,
    swapped_entries_are_named,
    inserted_entries_are_named,
    concurrent_appends_keep_the_chain,
);

async fn untouched_chain_verifies(db: TestDb) {
    let empty = db.catalog.verify_audit().await.unwrap();
    assert!(empty.is_valid() && empty.entries == 0);
    append_n(&db.catalog, 10).await;
    let r = db.catalog.verify_audit().await.unwrap();
    assert_eq!(r.problem, None);
    assert_eq!(r.entries, 10);
    let tail = db.catalog.audit_tail(3).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9, 10]);
    assert_eq!(r.head_digest, tail[2].digest);
    assert_eq!(tail[1].digest, tail[2].prev_digest);
}

async fn edited_entry_is_named(db: TestDb) {
    append_n(&db.catalog, 8).await;
    db.raw("UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 5").await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::Edited { seq: 5 }));
    let db2 = db.clone();
    // Editing the actor of an earlier entry is found first.
    db2.raw("UPDATE audit_log SET actor = 'cli:someone-else' WHERE seq = 3").await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::Edited { seq: 3 }));
}

async fn edited_prev_digest_is_named(db: TestDb) {
    append_n(&db.catalog, 4).await;
    db.raw(&format!("UPDATE audit_log SET prev_digest = '{}' WHERE seq = 2", "ab".repeat(32))).await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::Reordered { seq: 2 }));
}

async fn deleted_entry_is_named(db: TestDb) {
    append_n(&db.catalog, 8).await;
    db.raw("DELETE FROM audit_log WHERE seq = 4").await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::Deleted { seq: 4 }));
}

async fn deleted_last_entry_is_named(db: TestDb) {
    append_n(&db.catalog, 8).await;
    db.raw("DELETE FROM audit_log WHERE seq >= 7").await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::Truncated { seq: 7 }));
}

async fn swapped_entries_are_named(db: TestDb) {
    append_n(&db.catalog, 8).await;
    // Swap entries 3 and 6 by exchanging their seq numbers.
    db.raw("UPDATE audit_log SET seq = -3 WHERE seq = 3").await;
    db.raw("UPDATE audit_log SET seq = 3 WHERE seq = 6").await;
    db.raw("UPDATE audit_log SET seq = 6 WHERE seq = -3").await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::Reordered { seq: 3 }));
}

async fn concurrent_appends_keep_the_chain(db: TestDb) {
    let tasks = (0..48).map(|i| {
        let c = db.catalog.clone();
        tokio::spawn(async move {
            c.append_audit("cli:tester", "test.concurrent", &format!("thing:{i}"), serde_json::json!({})).await
        })
    });
    let mut seqs: Vec<i64> = join_all(tasks).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=48).collect::<Vec<_>>());
    let r = db.catalog.verify_audit().await.unwrap();
    assert_eq!((r.entries, r.problem), (48, None));
}

async fn inserted_entries_are_named(db: TestDb) {
    append_n(&db.catalog, 3).await;
    // An entry appended by hand after the head, even with a correct digest, is noticed.
    let last = db.catalog.audit_tail(1).await.unwrap().remove(0);
    let canonical = niji_catalog::audit::canonical_entry(4, &last.time, "x", "forged", "s", "{}");
    let digest = niji_catalog::audit::chain_digest(&last.digest, &canonical);
    db.raw(&format!(
        "INSERT INTO audit_log VALUES (4, '{}', 'x', 'forged', 's', '{{}}', '{}', '{digest}')",
        last.time, last.digest
    ))
    .await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::HeadMismatch { seq: 4 }));
    db.raw("DELETE FROM audit_log WHERE seq = 4").await;
    assert_eq!(problem(&db.catalog).await, None);
    // An entry slipped in before the chain.
    db.raw("INSERT INTO audit_log VALUES (0, 't', 'x', 'forged', 's', '{}', 'p', 'd')").await;
    assert_eq!(problem(&db.catalog).await, Some(AuditProblem::Inserted { seq: 0 }));
}
