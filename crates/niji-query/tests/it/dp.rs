//! `dp` mode through the service: OpenDP noise, the atomic charge, the answer cache, dry runs.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use niji_catalog::Mode;
use niji_query::QueryRequest;

use crate::support::fixture;

fn dp(sql: &str, epsilon: f64, delta: f64) -> QueryRequest {
    QueryRequest {
        project: "study".into(),
        sql: sql.into(),
        mode: Some(Mode::Dp),
        epsilon: Some(epsilon),
        delta: Some(delta),
        ..QueryRequest::default()
    }
}

const BY_SEX: &str = "SELECT sex, count(*) AS n FROM person GROUP BY sex ORDER BY sex";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_answers_are_noisy_charged_once_and_cached() {
    let f = fixture().await;
    let project = f.catalog.find_project("study").await.unwrap();
    assert_eq!(project.spent.epsilon_micro, 0);

    // A dry run costs the query and predicts its noise without charging.
    let mut dry = dp(BY_SEX, 0.5, 1e-7);
    dry.dry_run = true;
    let a = f.service.run(&f.researcher, &dry).await.unwrap();
    assert!(a.privacy.dry_run);
    assert_eq!(a.num_rows(), 0);
    let cost = a.privacy.cost.unwrap();
    assert_eq!((cost.epsilon, cost.delta), (0.5, 1e-7));
    assert_eq!(a.privacy.epsilon_spent, 0.0);
    let predicted = a.privacy.noise.clone();
    assert!(!predicted.is_empty() && predicted.iter().all(|n| n.scale > 0.0 && n.ci95 > 0.0), "{predicted:?}");
    assert_eq!(f.catalog.find_project("study").await.unwrap().spent.epsilon_micro, 0);

    // The answer: sex is a public key domain (M, F, U), released complete.
    let a = f.service.run(&f.researcher, &dp(BY_SEX, 0.5, 1e-7)).await.unwrap();
    assert_eq!(a.privacy.epsilon_spent, 0.5);
    assert!(!a.privacy.cached);
    assert_eq!(a.num_rows(), 3);
    let sexes: Vec<String> = a
        .batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            c.as_string::<i32>().iter().map(|v| v.unwrap().to_owned()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(sexes, ["F", "M", "U"]);
    let counts: Vec<i64> =
        a.batches.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec()).collect();
    // Exact values 50, 45, 5 (after the row filter); the noise stays within a generous 4× ci95.
    let ci = a.privacy.noise.iter().find(|n| n.column == "n").unwrap().ci95;
    for (got, exact) in counts.iter().zip([50i64, 45, 5]) {
        assert!(((got - exact) as f64).abs() <= 4.0 * ci + 1.0, "{got} vs {exact} (ci95 {ci})");
    }
    let p = f.catalog.find_project("study").await.unwrap();
    assert_eq!(p.spent.epsilon_micro, 500_000);
    assert_eq!(p.spent.delta_pico, 100_000);
    assert!((a.privacy.budget_remaining.epsilon - 0.5).abs() < 1e-9);

    // The same question again: the same answer from the cache, no new charge (T9).
    let b = f.service.run(&f.researcher, &dp(BY_SEX, 0.5, 1e-7)).await.unwrap();
    assert!(b.privacy.cached);
    assert_eq!(b.query_id, a.query_id);
    let again: Vec<i64> =
        b.batches.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec()).collect();
    assert_eq!(again, counts);
    assert_eq!(f.catalog.find_project("study").await.unwrap().spent.epsilon_micro, 500_000);

    // Another ε is another question: it is charged, and past the budget it is refused.
    let e = f.service.run(&f.researcher, &dp(BY_SEX, 0.6, 1e-7)).await.unwrap_err();
    assert_eq!(e.code(), "budget_exhausted");
    let c = f.service.run(&f.researcher, &dp(BY_SEX, 0.4, 1e-7)).await.unwrap();
    assert!(!c.privacy.cached);
    let p = f.catalog.find_project("study").await.unwrap();
    assert_eq!(p.spent.epsilon_micro, 900_000);
    assert_eq!(f.catalog.ledger(p.id).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_refusals_have_stable_codes() {
    let f = fixture().await;
    let cases = [
        // Private keys need δ > 0 for threshold partition selection.
        (
            "SELECT icd10_code, count(*) AS n FROM condition_occurrence GROUP BY icd10_code",
            0.0,
            "dp_private_keys_need_delta",
        ),
        // A column without catalog bounds cannot be summed.
        ("SELECT sum(year_of_birth) AS s FROM person", 1e-7, "dp_unbounded_column"),
        ("SELECT * FROM person", 1e-7, "dp_unsupported"),
        ("DESCRIBE person", 1e-7, "sql_statement_refused"),
    ];
    for (sql, delta, code) in cases {
        let e = f.service.run(&f.researcher, &dp(sql, 0.1, delta)).await.unwrap_err();
        assert_eq!(e.code(), code, "{sql}: {e}");
    }
    let mut no_eps = dp(BY_SEX, 0.1, 0.0);
    no_eps.epsilon = None;
    assert_eq!(f.service.run(&f.researcher, &no_eps).await.unwrap_err().code(), "invalid_request");
    // Nothing was charged.
    assert_eq!(f.catalog.find_project("study").await.unwrap().spent.epsilon_micro, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dp_query_failing_on_data_is_still_charged() {
    let f = fixture().await;
    // The cast fails on the data; had the failure been free, its refusal would be an unpaid answer.
    let sql = "SELECT count(*) AS n FROM person WHERE CAST(sex AS INT) = 1";
    let e = f.service.run(&f.researcher, &dp(sql, 0.25, 0.0)).await.unwrap_err();
    assert!(["dp_execution", "execution_failed"].contains(&e.code()), "{}: {e}", e.code());
    assert!(!e.public_message().contains("'F'"));
    assert_eq!(f.catalog.find_project("study").await.unwrap().spent.epsilon_micro, 250_000);
}
