//! Releases on data: keys, bounding under a heavy person, post-noise HAVING / ORDER BY / LIMIT.

use std::collections::BTreeMap;

use super::*;
use crate::DpAnswer;
use crate::rewrite::AggKind;

/// The answer as rows of display strings (keys) and f64 (numbers): column name → values.
fn rows(a: &DpAnswer) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for b in &a.batches {
        for r in 0..b.num_rows() {
            let mut row = BTreeMap::new();
            for (i, field) in b.schema().fields().iter().enumerate() {
                let v = ScalarValue::try_from_array(b.column(i), r).unwrap();
                row.insert(field.name().clone(), v.to_string());
            }
            out.push(row);
        }
    }
    out
}

fn num(row: &BTreeMap<String, String>, c: &str) -> f64 {
    row[c].parse().unwrap()
}

/// ε so large that the noise is far below every tolerance checked (discrete Laplace with scale
/// 4·10⁻⁶ is 0 with probability 1 − 10⁻¹⁰⁰⁰⁰⁰; float Laplace scales are below 10⁻² except for
/// a variance's sum of squares, whose test derives its tolerance from the released scale).
const HUGE: f64 = 1e6;

#[tokio::test]
async fn public_keys_are_complete_zero_filled_and_closed() {
    let mut d = sample(false);
    d.add("person", vec![("person_id", s("x1")), ("sex", s("X"))]);
    let ctx = d.context();
    let p = analyse(&ctx, "SELECT sex, count(*) AS n FROM person GROUP BY sex", &params(HUGE, 0.0)).await.unwrap();
    let a = p.execute(&ctx).await.unwrap();
    let got: BTreeMap<String, f64> = rows(&a).iter().map(|r| (r["sex"].clone(), num(r, "n"))).collect();
    assert_eq!(got, BTreeMap::from([("F".into(), 30.0), ("M".into(), 30.0), ("U".into(), 0.0)]));
    assert_eq!(a.columns.len(), 1);
    assert_eq!((a.columns[0].column.as_str(), a.columns[0].statistic), ("n", "count"));

    // Two public keys: the cartesian product, 3 × 3 cells, even with no row at all.
    let empty = Data::default().context();
    let p = analyse(
        &empty,
        "SELECT sex, prefecture_code, count(*) AS n FROM person GROUP BY sex, prefecture_code",
        &params(HUGE, 0.0),
    )
    .await
    .unwrap();
    let a = p.execute(&empty).await.unwrap();
    let r = rows(&a);
    assert_eq!(r.len(), 9);
    assert!(r.iter().all(|r| num(r, "n") == 0.0));
}

#[tokio::test]
async fn private_keys_pass_the_threshold_only_when_many_persons_hold_them() {
    let mut d = sample(false);
    d.add("condition_occurrence", vec![("person_id", s("p01")), ("condition_source_value", s("RARE"))]);
    let ctx = d.context();
    let sql = "SELECT condition_source_value AS code, count(DISTINCT person_id) AS persons, count(*) AS n \
               FROM condition_occurrence GROUP BY condition_source_value";
    let p = analyse(&ctx, sql, &params(20.0, 1e-6)).await.unwrap();
    let a = p.execute(&ctx).await.unwrap();
    let thr = a.columns.iter().find(|c| c.statistic == "partition_selection").unwrap();
    assert_eq!(thr.column, "code");
    let threshold = thr.noise.threshold.unwrap();
    // 60 persons hold I10 and E11; the threshold and its noise leave them far above it.
    assert!(threshold + 5 * thr.noise.scale.ceil() as i64 <= 60, "threshold {threshold}, σ {}", thr.noise.scale);
    let codes: Vec<String> = rows(&a).iter().map(|r| r["code"].clone()).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, ["E11", "I10"]);
    // The distinct-person count is the threshold's own noisy count.
    let persons = a.columns.iter().find(|c| c.column == "persons").unwrap();
    assert_eq!(persons.noise.mechanism, "gaussian_threshold");

    // δ = 0 with private keys: refused before any data is read.
    let err = analyse(&ctx, sql, &params(20.0, 0.0)).await.unwrap_err();
    assert_eq!(err.code(), "dp_private_keys_need_delta");
}

#[tokio::test]
async fn having_order_by_and_limit_act_on_noisy_rows() {
    let ctx = sample(false).context();
    let sql = "SELECT prefecture_code AS pref, count(*) AS n, avg(c.total_points) AS mean \
               FROM person p JOIN claim c USING (person_id) \
               GROUP BY prefecture_code HAVING count(*) > 5 ORDER BY n DESC LIMIT 1";
    // claim.prefecture_code and person.prefecture_code: USING keeps the left one.
    let p = analyse(&ctx, &sql.replace("prefecture_code", "p.prefecture_code"), &params(HUGE, 0.0)).await.unwrap();
    let a = p.execute(&ctx).await.unwrap();
    let r = rows(&a);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["pref"], "13");
    assert_eq!(num(&r[0], "n"), 40.0);
    // Mean of 100 + p over p not divisible by 3 (each person one claim).
    let ps: Vec<f64> = (0..60).filter(|p| p % 3 != 0).map(|p| 100.0 + f64::from(p)).collect();
    let mean = ps.iter().sum::<f64>() / ps.len() as f64;
    assert!((num(&r[0], "mean") - mean).abs() < 0.01, "{r:?} vs {mean}");
    let stats: Vec<(&str, &str)> = a.columns.iter().map(|c| (c.column.as_str(), c.statistic)).collect();
    assert_eq!(stats, [("n", "count"), ("mean", "avg_sum"), ("mean", "avg_count")]);
    assert_eq!(a.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["pref", "n", "mean"]);
}

#[tokio::test]
async fn median_and_mean_without_group_by() {
    let ctx = sample(true).context();
    let sql = "SELECT median(value_as_number) AS med, avg(value_as_number) AS mean, count(DISTINCT person_id) AS persons FROM measurement";
    let p = analyse(&ctx, sql, &params(HUGE, 0.0)).await.unwrap();
    let a = p.execute(&ctx).await.unwrap();
    let r = &rows(&a)[0];
    assert_eq!(num(r, "persons"), 61.0);
    // Per-person means of the 60 ordinary persons; the heavy one is clamped to 200.
    let mut means: Vec<f64> = (0..60)
        .map(|p: i32| {
            let v: Vec<f64> = (0..(1 + p % 3)).map(|k| 50.0 + f64::from((p * 7 + k * 13) % 101)).collect();
            v.iter().sum::<f64>() / v.len() as f64
        })
        .collect();
    means.push(200.0);
    means.sort_by(f64::total_cmp);
    let median = means[30];
    assert!((num(r, "med") - median).abs() <= 0.2 + 1e-9, "{} vs {median}", num(r, "med"));
    assert!(num(r, "med") >= 0.0 && num(r, "med") <= 200.0);
    let med_noise = a.columns.iter().find(|c| c.column == "med").unwrap();
    assert_eq!(med_noise.noise.mechanism, "exponential_quantile");
    assert!(num(r, "mean") <= 200.0);
}

#[tokio::test]
async fn variance_and_standard_deviation_at_huge_epsilon() {
    let ctx = sample(false).context();
    let sql = "SELECT var_pop(value_as_number) AS vp, var_samp(value_as_number) AS vs, stddev(value_as_number) AS sd \
               FROM measurement";
    let p = analyse(&ctx, sql, &params(HUGE, 0.0)).await.unwrap();
    let a = p.execute(&ctx).await.unwrap();
    let r = &rows(&a)[0];
    // Nobody has more than C = 4 rows: the bounded statistics are the exact ones.
    let values: Vec<f64> =
        (0..60).flat_map(|p: i32| (0..(1 + p % 3)).map(move |k| 50.0 + f64::from((p * 7 + k * 13) % 101))).collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let pop = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let samp = pop * n / (n - 1.0);
    // Even at this ε the sum of squares carries Laplace noise of scale b ≈ 0.36 (its sensitivity
    // is C·200²), so the tolerance follows the released scales: var = (Σx² − (Σx)²/n)/n moves by
    // at most (|δΣx²| + 2·|mean|·|δΣx|)/n, each |δ| ≤ 20·b except with probability e⁻²⁰. A wrong
    // formula (population for sample variance: 7.2 here) is still far outside it.
    let scale = |stat: &str| a.columns.iter().find(|c| c.column == "vp" && c.statistic == stat).unwrap().noise.scale;
    let tol = 20.0 * (scale("var_sum_squares") + 2.0 * mean.abs() * scale("var_sum")) / n + 1e-6;
    assert!(tol < 0.5, "tolerance {tol}");
    assert!((num(r, "vp") - pop).abs() < tol, "{} vs {pop} (tolerance {tol})", num(r, "vp"));
    let tol_s = tol * n / (n - 1.0);
    assert!((num(r, "vs") - samp).abs() < tol_s, "{} vs {samp} (tolerance {tol_s})", num(r, "vs"));
    // |√a − √b| ≤ |a − b| / √b.
    let tol_sd = tol_s / samp.sqrt();
    assert!((num(r, "sd") - samp.sqrt()).abs() < tol_sd, "{} vs {} (tolerance {tol_sd})", num(r, "sd"), samp.sqrt());
    let stats: Vec<&str> = a.columns.iter().filter(|c| c.column == "vp").map(|c| c.statistic).collect();
    assert_eq!(stats, ["var_sum", "var_sum_squares", "var_count"]);
}

/// Heavy-person stress: a person with 10^4 rows (values 5·10⁶ times the upper bound, 50
/// diagnoses, 10^4 claims) changes at most L groups, each count by at most C (persons by 1),
/// each sum by at most C·max|bound|.
#[tokio::test]
async fn one_heavy_person_moves_released_values_at_most_by_the_bounds() {
    // As built (the heavy person's rows last: the general plan) and sorted by person (streaming).
    for with in [sample(true).context(), sample(true).sorted().context()] {
        heavy_person_cases(&with).await;
    }
}

async fn heavy_person_cases(with: &SessionContext) {
    let without = sample(false).context();
    let cases: &[(&str, f64)] = &[
        ("SELECT count(*), sum(value_as_number), avg(value_as_number) FROM measurement", 200.0),
        ("SELECT var_samp(value_as_number), stddev_pop(value_as_number) FROM measurement", 200.0),
        (
            "SELECT condition_source_value, count(*), count(DISTINCT person_id) FROM condition_occurrence GROUP BY 1",
            0.0,
        ),
        ("SELECT c.prefecture_code, count(*), sum(total_points), avg(total_points) FROM claim c GROUP BY 1", 1000.0),
        (
            "SELECT p.sex, count(*), sum(m.value_as_number) FROM person p JOIN measurement m ON p.person_id = m.person_id \
             JOIN person p2 ON p2.person_id = p.person_id GROUP BY p.sex",
            200.0,
        ),
    ];
    for (sql, bound) in cases {
        let p = analyse(with, sql, &params(1.0, 1e-6)).await.unwrap();
        let (l, c) = p.bounds_in_effect();
        let (l, c) = (f64::from(l), f64::from(c));
        let p_without = analyse(&without, sql, &params(1.0, 1e-6)).await.unwrap();
        let a = flat(&p.bounded(with).await.unwrap());
        let b = flat(&p_without.bounded(&without).await.unwrap());
        let mut changed_groups = std::collections::BTreeSet::new();
        for key in a.keys().chain(b.keys()) {
            let (x, y) = (a.get(key).copied().unwrap_or(0.0), b.get(key).copied().unwrap_or(0.0));
            let limit = if key.1 == "persons" {
                1.0
            } else {
                // `__niji_c{j}` (count or sum of aggregate j) or `__niji_d{j}` (a mean's count).
                let j: usize = key.1[8..].parse().unwrap();
                match (key.1.as_bytes()[7], p.aggs[j].kind) {
                    (b'd', _) | (_, AggKind::Count) => c,
                    // Variance: Σ(x − m) within C·h, Σ(x − m)² within C·h², h = bound / 2 (lower bounds are 0).
                    (b'q', _) => c * (bound / 2.0).powi(2),
                    (_, AggKind::Var { .. }) => c * bound / 2.0,
                    (_, AggKind::Persons) => 1.0,
                    (_, AggKind::Sum | AggKind::Avg) => c * bound,
                    other => panic!("unexpected column {other:?}"),
                }
            };
            assert!((x - y).abs() <= limit + 1e-9, "{sql}: {key:?} moved by {} > {limit}", (x - y).abs());
            if x != y {
                changed_groups.insert(key.0.clone());
            }
        }
        assert!(changed_groups.len() as f64 <= l, "{sql}: {} groups changed, L = {l}", changed_groups.len());
        assert!(!changed_groups.is_empty(), "{sql}: the heavy person changed nothing");
    }
}
