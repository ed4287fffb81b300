//! Neighbouring-dataset audit (threat T11): the full SQL query run many times on a dataset D
//! and on D′ = D minus one heavy person; the empirical output distributions must stay within
//! e^ε of each other, and the same test must catch a mechanism mis-scaled by 2×.
//!
//! OpenDP samples from the OS CSPRNG and cannot be seeded, so the audit is statistical. The query
//! is a count over a join with a WHERE; its exact bounded value is 124 on D and 120 on D′ (the
//! heavy person's 10^4 rows count C = 4), released with discrete Laplace noise of scale
//! C/ε = 4. The outputs are bucketed by width C with edges on both centres (108, 112, …, 140,
//! open-ended tails). Per bucket with counts a (from D) and b (from D′), both at least
//! `MIN_COUNT`, ln(a/b) estimates ln(P_D(B)/P_D′(B)) with standard error ≈ √(1/a + 1/b); a bucket
//! violates the guarantee when |ln(a/b)| − ε > Z·se (δ = 0 here, so there is no additive slack).
//!
//! * False failure: for the correct mechanism every bucket has |true log-ratio| ≤ ε, so each of
//!   the at most 10 buckets crosses with probability ≤ P(N(0,1) > 4.5) ≈ 3.4·10⁻⁶: ≤ 3.4·10⁻⁵.
//! * Tightness: beyond either centre the true log-ratio is exactly ε, so any excess is visible.
//! * Power (N = 1000 runs per dataset): with half the scale the log-ratio is 2ε = 2 there. In
//!   [124, 128) the expected counts are ≈ 538 (D) and 73 (D′): z ≈ (2 − 1)/0.125 = 8.0, caught with
//!   probability 0.9998; in [116, 120) ≈ 44 and 326: z ≈ 6.2, probability 0.96. Together the
//!   mis-scaled mechanism escapes with probability below 10⁻⁵.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use tokio::task::JoinSet;

use super::*;

const N: usize = 1000;
const MIN_COUNT: usize = 30;
const Z: f64 = 4.5;
const EPSILON: f64 = 1.0;

async fn outputs(plan: &DpPlan, ctx: &SessionContext, n: usize) -> Vec<i64> {
    let plan = Arc::new(plan.clone());
    let mut out = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    for i in 0..n {
        let (plan, ctx) = (plan.clone(), ctx.clone());
        set.spawn(async move {
            let a = plan.execute(&ctx).await.unwrap();
            a.batches[0].column(0).as_primitive::<Int64Type>().value(0)
        });
        if i % 8 == 7 {
            while let Some(r) = set.join_next().await {
                out.push(r.unwrap());
            }
        }
    }
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

fn histogram(values: &[i64], edges: &[i64]) -> Vec<usize> {
    let mut h = vec![0; edges.len() + 1];
    for v in values {
        h[edges.partition_point(|e| e <= v)] += 1;
    }
    h
}

/// Buckets whose log-ratio exceeds ε by more than Z standard errors.
fn violations(d: &[i64], d_prime: &[i64], edges: &[i64]) -> Vec<String> {
    let (a, b) = (histogram(d, edges), histogram(d_prime, edges));
    let mut out = Vec::new();
    for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
        if x < MIN_COUNT || y < MIN_COUNT {
            continue;
        }
        let (x, y) = (x as f64, y as f64);
        let log_ratio = (x / y).ln().abs();
        let se = (1.0 / x + 1.0 / y).sqrt();
        if log_ratio - EPSILON > Z * se {
            out.push(format!("bucket {i}: {x} vs {y}, |ln ratio| {log_ratio:.3} > ε + {Z}·{se:.3}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbouring_datasets_stay_within_e_epsilon_and_a_2x_misscaled_mechanism_is_caught() {
    let d = sample(true);
    let d_prime = d.without("heavy");
    let (ctx, ctx_prime) = (d.context(), d_prime.context());
    let sql = "SELECT count(*) AS n FROM person p JOIN measurement m ON p.person_id = m.person_id \
               WHERE m.value_as_number >= 0";
    // A plan holds the table providers of the session it was planned in: one plan per dataset.
    let plan = analyse(&ctx, sql, &params(EPSILON, 0.0)).await.unwrap();
    let plan_prime = analyse(&ctx_prime, sql, &params(EPSILON, 0.0)).await.unwrap();
    // The exact bounded counts: 120 without the heavy person, 124 (= 120 + C) with.
    assert_eq!(plan.bounds_in_effect(), (1, 4));
    let exact = |b: crate::release::Bounded| b.columns["__niji_c0"][0];
    assert_eq!(exact(plan.bounded(&ctx).await.unwrap()), 124.0);
    assert_eq!(exact(plan_prime.bounded(&ctx_prime).await.unwrap()), 120.0);
    let noise = plan.expected_noise().unwrap();
    assert_eq!(noise[0].noise.mechanism, "discrete_laplace");
    assert!((noise[0].noise.scale - 4.0).abs() < 1e-9, "{}", noise[0].noise.scale);

    // Buckets of width C with edges on both centres, open-ended tails.
    let edges: Vec<i64> = (0..=8).map(|k| 108 + 4 * k).collect();
    let correct = violations(&outputs(&plan, &ctx, N).await, &outputs(&plan_prime, &ctx_prime, N).await, &edges);
    assert!(correct.is_empty(), "correctly scaled mechanism flagged: {correct:?}");

    let (mut half, mut half_prime) = (plan.clone(), plan_prime.clone());
    half.scale_factor = 0.5;
    half_prime.scale_factor = 0.5;
    assert!((half.expected_noise().unwrap()[0].noise.scale - 2.0).abs() < 1e-9);
    let caught = violations(&outputs(&half, &ctx, N).await, &outputs(&half_prime, &ctx_prime, N).await, &edges);
    assert!(!caught.is_empty(), "a mechanism with half the scale was not detected");
}
