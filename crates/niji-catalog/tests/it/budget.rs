//! The budget ledger under concurrency (threat T8).

use futures::future::join_all;
use niji_catalog::project::NewProject;
use niji_catalog::{Budget, Catalog, CatalogError, Mode};

use crate::support::{TestDb, both_backends, load_shipped};

async fn project(catalog: &Catalog, name: &str, budget: Budget) -> i64 {
    load_shipped(catalog).await;
    let p = NewProject {
        name: name.to_owned(),
        purpose: "budget test".to_owned(),
        datasets: vec!["claims".to_owned()],
        modes: vec![Mode::Dp],
        budget,
        expires_at: None,
    };
    catalog.create_project("test", &p).await.unwrap()
}

/// Fire all charges at once, each from its own task; return each outcome in order.
async fn fire(catalog: &Catalog, project: i64, charges: &[Budget]) -> Vec<Result<niji_catalog::Charge, CatalogError>> {
    let tasks = charges.iter().enumerate().map(|(i, &cost)| {
        let catalog = catalog.clone();
        tokio::spawn(async move { catalog.charge(project, "alice", Some(&format!("q{i}")), cost).await })
    });
    join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect()
}

both_backends!(sixty_four_equal_charges_exactly_forty_fit, sixty_four_unequal_charges_never_exceed, delta_binds_too);

/// 64 charges of ε = 0.25 against ε = 10: exactly 40 succeed, whatever the interleaving.
async fn sixty_four_equal_charges_exactly_forty_fit(db: TestDb) {
    let catalog = db.catalog;
    let total = Budget::from_f64(10.0, 1e-6).unwrap();
    let id = project(&catalog, "equal", total).await;
    let cost = Budget::from_f64(0.25, 0.0).unwrap();
    let outcomes = fire(&catalog, id, &[cost; 64]).await;
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    for o in &outcomes {
        if let Err(e) = o {
            assert!(matches!(e, CatalogError::BudgetExceeded { project } if *project == id), "unexpected error: {e}");
        }
    }
    assert_eq!(ok, 40);
    let p = catalog.project(id).await.unwrap();
    assert_eq!(p.spent, Budget { epsilon_micro: 10_000_000, delta_pico: 0 });
    assert_eq!(p.remaining(), Budget { epsilon_micro: 0, delta_pico: 1_000_000 });
    let ledger = catalog.ledger(id).await.unwrap();
    assert_eq!(ledger.len(), 40);
    // Each successful charge reported a distinct spent-after value: they were serialized.
    let mut after: Vec<i64> = outcomes.iter().filter_map(|o| o.as_ref().ok()).map(|c| c.spent.epsilon_micro).collect();
    after.sort_unstable();
    assert_eq!(after, (1..=40).map(|i| i * 250_000).collect::<Vec<_>>());
}

/// 64 charges of different sizes that together exceed the budget: spent ≤ budget, the ledger
/// equals the accepted charges, and every refused charge really did not fit.
async fn sixty_four_unequal_charges_never_exceed(db: TestDb) {
    let catalog = db.catalog;
    let total = Budget::new(5_000_000, 0).unwrap();
    let id = project(&catalog, "unequal", total).await;
    // 13 micro-ε .. ~260k micro-ε; sum ≈ 8.6 ε > 5 ε.
    let charges: Vec<Budget> =
        (0..64).map(|i| Budget::new(13 + (i * 7919 % 64) * 4_200 + i * 17, 0).unwrap()).collect();
    let sum: i64 = charges.iter().map(|c| c.epsilon_micro).sum();
    assert!(sum > total.epsilon_micro, "the test must overshoot the budget");
    let outcomes = fire(&catalog, id, &charges).await;
    let accepted: i64 = outcomes.iter().zip(&charges).filter(|(o, _)| o.is_ok()).map(|(_, c)| c.epsilon_micro).sum();
    let p = catalog.project(id).await.unwrap();
    assert!(p.spent.epsilon_micro <= total.epsilon_micro);
    assert_eq!(p.spent.epsilon_micro, accepted);
    let ledger: i64 = catalog.ledger(id).await.unwrap().iter().map(|(_, _, b)| b.epsilon_micro).sum();
    assert_eq!(ledger, accepted);
    let remaining = total.epsilon_micro - p.spent.epsilon_micro;
    for (o, c) in outcomes.iter().zip(&charges) {
        if let Err(e) = o {
            assert!(matches!(e, CatalogError::BudgetExceeded { .. }), "unexpected error: {e}");
            assert!(
                c.epsilon_micro > remaining,
                "a refused charge of {} would have fit in {remaining}",
                c.epsilon_micro
            );
        }
    }
    assert!(outcomes.iter().any(|o| o.is_err()) && outcomes.iter().any(|o| o.is_ok()));
}

/// δ is charged and bounded like ε; a refused charge changes nothing; expiry refuses charges.
async fn delta_binds_too(db: TestDb) {
    let catalog = db.catalog;
    let total = Budget::from_f64(100.0, 1e-9).unwrap();
    let id = project(&catalog, "delta", total).await;
    let cost = Budget::from_f64(0.1, 1e-10).unwrap();
    let outcomes = fire(&catalog, id, &[cost; 32]).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 10);
    let p = catalog.project(id).await.unwrap();
    assert_eq!(p.spent, Budget { epsilon_micro: 1_000_000, delta_pico: 1_000 });
    // ε-only charges still fit.
    let c = catalog.charge(id, "alice", None, Budget::from_f64(1.0, 0.0).unwrap()).await.unwrap();
    assert_eq!(c.spent.epsilon_micro, 2_000_000);
    assert_eq!(c.remaining, Budget { epsilon_micro: 98_000_000, delta_pico: 0 });
    // Lowering the budget below what is spent is refused; raising it works.
    let low = catalog.set_budget("steward", id, Budget::from_f64(1.0, 1e-9).unwrap()).await.unwrap_err();
    assert!(matches!(low, CatalogError::BudgetBelowSpent { .. }), "{low}");
    catalog.set_budget("steward", id, Budget::from_f64(100.0, 2e-9).unwrap()).await.unwrap();
    catalog.charge(id, "alice", None, cost).await.unwrap();
    // Expired projects are refused.
    catalog.set_expiry("steward", id, Some(chrono::Utc::now().timestamp() - 1)).await.unwrap();
    let e = catalog.charge(id, "alice", None, cost).await.unwrap_err();
    assert!(matches!(e, CatalogError::ProjectExpired { .. }), "{e}");
    let e = catalog.charge(id + 1000, "alice", None, cost).await.unwrap_err();
    assert!(matches!(e, CatalogError::UnknownProject(_)), "{e}");
    assert!(catalog.verify_audit().await.unwrap().is_valid());
}
