//! Principals and tokens (threat T18): digests only, expiry, revocation, audited failures.

use niji_catalog::principal::token_digest;
use niji_catalog::{CatalogError, Role};

use crate::support::{TestDb, both_backends};

both_backends!(tokens_authenticate_and_are_stored_as_digests, expired_revoked_unknown_tokens_are_refused);

async fn tokens_authenticate_and_are_stored_as_digests(db: TestDb) {
    let c = &db.catalog;
    let alice = c.create_principal("cli:admin", "alice", Role::Researcher).await.unwrap();
    let dup = c.create_principal("cli:admin", "alice", Role::Steward).await.unwrap_err();
    assert!(matches!(dup, CatalogError::DuplicatePrincipal(_)), "{dup}");
    let issued = c.issue_token("cli:admin", alice.id, None).await.unwrap();
    assert!(issued.token.starts_with("niji_") && issued.token.len() == 69);
    let who = c.authenticate(&issued.token).await.unwrap();
    assert_eq!((who.id, who.role), (alice.id, Role::Researcher));

    // The token is nowhere in the database; its digest is.
    let secret = &issued.token["niji_".len()..];
    let digest = token_digest(&issued.token);
    assert_eq!(db.raw_i64(&format!("SELECT COUNT(*) FROM token WHERE digest = '{digest}'")).await, 1);
    for (table, column) in [("token", "digest"), ("audit_log", "details"), ("audit_log", "subject")] {
        let n = db.raw_i64(&format!("SELECT COUNT(*) FROM {table} WHERE {column} LIKE '%{secret}%'")).await;
        assert_eq!(n, 0, "the token appears in {table}.{column}");
    }
    // Two tokens for the same principal are different.
    let second = c.issue_token("cli:admin", alice.id, None).await.unwrap();
    assert_ne!(second.token, issued.token);
    assert_eq!(c.tokens(alice.id).await.unwrap().len(), 2);
}

async fn expired_revoked_unknown_tokens_are_refused(db: TestDb) {
    let c = &db.catalog;
    let now = chrono::Utc::now().timestamp();
    let bob = c.create_principal("cli:admin", "bob", Role::Steward).await.unwrap();
    let expired = c.issue_token("cli:admin", bob.id, Some(now - 1)).await.unwrap();
    let fresh = c.issue_token("cli:admin", bob.id, Some(now + 3600)).await.unwrap();
    let revoked = c.issue_token("cli:admin", bob.id, None).await.unwrap();
    c.revoke_token("cli:admin", revoked.id).await.unwrap();

    assert_eq!(c.authenticate(&fresh.token).await.unwrap().name, "bob");
    let e = c.authenticate(&expired.token).await.unwrap_err();
    assert!(matches!(e, CatalogError::TokenExpired { token_id } if token_id == expired.id), "{e}");
    let e = c.authenticate(&revoked.token).await.unwrap_err();
    assert!(matches!(e, CatalogError::TokenRevoked { token_id } if token_id == revoked.id), "{e}");
    let unknown = format!("niji_{}", "0f".repeat(32));
    assert!(matches!(c.authenticate(&unknown).await.unwrap_err(), CatalogError::UnknownToken));
    assert!(matches!(c.authenticate("Bearer nonsense").await.unwrap_err(), CatalogError::MalformedToken));

    // Revoking the principal revokes its remaining tokens.
    c.revoke_principal("cli:admin", bob.id).await.unwrap();
    assert!(matches!(c.authenticate(&fresh.token).await.unwrap_err(), CatalogError::TokenRevoked { .. }));
    assert!(c.issue_token("cli:admin", bob.id, None).await.is_err());

    // Each failure is audited, without the token.
    let failures: Vec<_> =
        c.audit_tail(100).await.unwrap().into_iter().filter(|e| e.action == "auth.failure").collect();
    assert_eq!(failures.len(), 5);
    for f in &failures {
        for t in [&expired.token, &fresh.token, &revoked.token, &unknown] {
            assert!(!f.details.contains(&t[5..]) && !f.subject.contains(&t[5..]));
        }
    }
    assert_eq!(failures[0].subject, format!("token:{}", expired.id));
    assert!(c.verify_audit().await.unwrap().is_valid());
}
