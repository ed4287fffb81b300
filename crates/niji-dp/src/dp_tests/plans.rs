//! Analysis: golden bounding plans, mechanism parameters, refusals.

use super::*;
use crate::DEFAULT_MAX_ROWS_PER_PERSON;
use crate::rewrite::Measure;

fn code(r: Result<DpPlan>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

async fn golden(sql: &str) -> String {
    let ctx = sample(false).context();
    let plan = analyse(&ctx, sql, &params(1.0, 1e-6)).await.unwrap();
    plan.bounding_plan().display_indent().to_string()
}

#[tokio::test]
async fn bounding_plan_of_a_global_count() {
    let text = golden("SELECT count(*) FROM measurement WHERE value_as_number > 10").await;
    let expected = concat!(
        "Aggregate: groupBy=[[]], aggr=[[count(Int64(1)) AS __niji_persons, sum(__niji_c0) AS __niji_c0]]\n",
        "  Projection: __niji_unit, least(__niji_n0, Int64(4)) AS __niji_c0\n",
        "    Aggregate: groupBy=[[__niji_unit]], aggr=[[count(__niji_x0) AS __niji_n0]]\n",
        "      Filter: __niji_unit IS NOT NULL\n",
        "        Projection: measurement.person_id AS __niji_unit, Int64(1) AS __niji_x0\n",
        "          Filter: measurement.value_as_number > Int64(10)\n",
        "            TableScan: measurement"
    );
    assert_eq!(text, expected, "\n{text}");
}

#[tokio::test]
async fn bounding_plan_of_a_mean_by_public_key_over_a_join() {
    let text = golden(
        "SELECT p.sex, avg(m.value_as_number) AS mean FROM person p JOIN measurement m ON p.person_id = m.person_id GROUP BY p.sex",
    )
    .await;
    let expected = concat!(
        "Aggregate: groupBy=[[__niji_g0]], aggr=[[count(Int64(1)) AS __niji_persons, sum(__niji_c0) AS __niji_c0, sum(__niji_d0) AS __niji_d0]]\n",
        "  Filter: __niji_rank <= UInt64(4)\n",
        "    WindowAggr: windowExpr=[[row_number() PARTITION BY [__niji_unit] ORDER BY [random() ASC NULLS LAST] ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW AS __niji_rank]]\n",
        "      Projection: __niji_unit, __niji_g0, CASE WHEN coalesce(__niji_s0 * least(Float64(1), Float64(4) / CAST(__niji_n0 AS Float64)), Float64(0)) < Float64(0) THEN Float64(0) WHEN coalesce(__niji_s0 * least(Float64(1), Float64(4) / CAST(__niji_n0 AS Float64)), Float64(0)) > Float64(800) THEN Float64(800) ELSE coalesce(__niji_s0 * least(Float64(1), Float64(4) / CAST(__niji_n0 AS Float64)), Float64(0)) END AS __niji_c0, least(__niji_n0, Int64(4)) AS __niji_d0\n",
        "        Aggregate: groupBy=[[__niji_unit, __niji_g0]], aggr=[[count(__niji_x0) AS __niji_n0, sum(__niji_x0) AS __niji_s0]]\n",
        "          Filter: __niji_unit IS NOT NULL AND __niji_g0 IN ([Utf8(\"M\"), Utf8(\"F\"), Utf8(\"U\")])\n",
        "            Projection: coalesce(p.person_id, m.person_id) AS __niji_unit, p.sex AS __niji_g0, CASE WHEN isnan(CAST(m.value_as_number AS Float64)) THEN Float64(NULL) WHEN CAST(m.value_as_number AS Float64) < Float64(0) THEN Float64(0) WHEN CAST(m.value_as_number AS Float64) > Float64(200) THEN Float64(200) ELSE CAST(m.value_as_number AS Float64) END AS __niji_x0\n",
        "              Inner Join:  Filter: p.person_id = m.person_id\n",
        "                SubqueryAlias: p\n",
        "                  TableScan: person\n",
        "                SubqueryAlias: m\n",
        "                  TableScan: measurement"
    );
    assert_eq!(text, expected, "\n{text}");
}

#[tokio::test]
async fn bounding_plan_of_a_private_key_with_distinct_persons_and_having() {
    let text = golden(
        "WITH c AS (SELECT person_id, condition_source_value AS code FROM condition_occurrence) \
         SELECT code, count(DISTINCT person_id) AS persons, count(*) AS n FROM c GROUP BY code HAVING count(*) > 5 ORDER BY n DESC",
    )
    .await;
    let expected = concat!(
        "Aggregate: groupBy=[[__niji_g0]], aggr=[[count(Int64(1)) AS __niji_persons, sum(__niji_c0) AS __niji_c0, sum(__niji_c1) AS __niji_c1]]\n",
        "  Filter: __niji_rank <= UInt64(4)\n",
        "    WindowAggr: windowExpr=[[row_number() PARTITION BY [__niji_unit] ORDER BY [random() ASC NULLS LAST] ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW AS __niji_rank]]\n",
        "      Projection: __niji_unit, __niji_g0, least(__niji_n0, Int64(1)) AS __niji_c0, least(__niji_n1, Int64(4)) AS __niji_c1\n",
        "        Aggregate: groupBy=[[__niji_unit, __niji_g0]], aggr=[[count(__niji_x0) AS __niji_n0, count(__niji_x1) AS __niji_n1]]\n",
        "          Filter: __niji_unit IS NOT NULL\n",
        "            Projection: c.person_id AS __niji_unit, c.code AS __niji_g0, Int64(1) AS __niji_x0, Int64(1) AS __niji_x1\n",
        "              SubqueryAlias: c\n",
        "                Projection: condition_occurrence.person_id, condition_occurrence.condition_source_value AS code\n",
        "                  TableScan: condition_occurrence"
    );
    assert_eq!(text, expected, "\n{text}");
}

fn sensitivities(p: &DpPlan) -> Vec<(&'static str, f64, f64)> {
    p.measurements
        .iter()
        .map(|m| match &m.measure {
            Measure::Int { l1, l2, .. } | Measure::Float { l1, l2, .. } => (m.statistic, *l1, *l2),
            Measure::Median { .. } => (m.statistic, 1.0, 1.0),
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs()
}

/// Scale from ε and sensitivity: pure DP b = L1 / (ε / measurements); zCDP σ = L2 / √(2ρ).
#[tokio::test]
async fn mechanism_parameters_follow_epsilon_and_sensitivity() {
    let ctx = sample(false).context();
    // Count without GROUP BY, δ = 0: L = 1, C = 4 → L1 = 4, discrete Laplace b = 4 / ε.
    let p = analyse(&ctx, "SELECT count(*) AS n FROM measurement", &params(0.5, 0.0)).await.unwrap();
    assert_eq!(p.bounds_in_effect(), (1, DEFAULT_MAX_ROWS_PER_PERSON));
    assert_eq!(sensitivities(&p), vec![("count", 4.0, 4.0)]);
    let noise = p.expected_noise().unwrap();
    assert_eq!(noise.len(), 1);
    assert_eq!(
        (noise[0].column.as_str(), noise[0].noise.mechanism, noise[0].statistic),
        ("n", "discrete_laplace", "count")
    );
    assert!(close(noise[0].noise.scale, 4.0 / 0.5), "{}", noise[0].noise.scale);
    assert_eq!(p.cost(), (0.5, 0.0));

    // Sum by a public key with L = 2, C = 3, δ = 0: L1 = L·C·max|bound| = 2·3·1000.
    let q = DpParams { max_groups_per_person: Some(2), max_rows_per_person: Some(3), ..params(1.0, 0.0) };
    let p = analyse(&ctx, "SELECT prefecture_code, sum(total_points) AS s FROM claim GROUP BY prefecture_code", &q)
        .await
        .unwrap();
    assert_eq!(sensitivities(&p), vec![("sum", 6000.0, 2f64.sqrt() * 3000.0)]);
    let noise = p.expected_noise().unwrap();
    assert_eq!(noise[0].noise.mechanism, "laplace");
    // The lattice adds 2^(⌊log2 6000⌋ − 40) per released cell (3 cells) to L1.
    let lattice = 3.0 * 2f64.powi(12 - 40);
    assert!(close(noise[0].noise.scale, 6000.0 + lattice), "{}", noise[0].noise.scale);

    // Mean: a sum and a count, each with ε / 2.
    let p = analyse(&ctx, "SELECT avg(value_as_number) AS m FROM measurement", &params(1.0, 0.0)).await.unwrap();
    assert_eq!(sensitivities(&p), vec![("avg_sum", 800.0, 800.0), ("avg_count", 4.0, 4.0)]);
    let noise = p.expected_noise().unwrap();
    assert_eq!(noise.iter().map(|n| n.statistic).collect::<Vec<_>>(), ["avg_sum", "avg_count"]);
    assert!(close(noise[0].noise.scale, (800.0 + 2f64.powi(9 - 40)) / 0.5), "{}", noise[0].noise.scale);
    assert!(close(noise[1].noise.scale, 4.0 / 0.5), "{}", noise[1].noise.scale);

    // δ > 0: Gaussian with σ = L2 / √(2ρ), ρ the share from the allocation.
    let p = analyse(&ctx, "SELECT sex, count(*) AS n FROM person GROUP BY sex", &params(1.0, 1e-6)).await.unwrap();
    let rho = p.allocation().unwrap().value(0).unwrap().value();
    let noise = p.expected_noise().unwrap();
    assert_eq!(noise[0].noise.mechanism, "discrete_gaussian");
    assert_eq!(sensitivities(&p), vec![("count", 16.0, 8.0)]);
    assert!(close(noise[0].noise.scale, 8.0 / (2.0 * rho).sqrt()), "{}", noise[0].noise.scale);
}

#[tokio::test]
async fn refusals_have_stable_codes() {
    let ctx = sample(false).context();
    let pure = params(1.0, 0.0);
    let approx = params(1.0, 1e-6);
    let cases: &[(&str, &DpParams, &str)] = &[
        (
            "SELECT condition_source_value, count(*) FROM condition_occurrence GROUP BY 1",
            &pure,
            "dp_private_keys_need_delta",
        ),
        ("SELECT condition_source_value, count(*) FROM condition_occurrence GROUP BY 1", &approx, "ok"),
        ("SELECT sum(year_of_birth) FROM person", &pure, "dp_unbounded_column"),
        ("SELECT avg(value_as_number * 2) FROM measurement", &pure, "dp_unbounded_column"),
        ("SELECT avg(CAST(value_as_number AS DOUBLE)) FROM measurement", &pure, "ok"),
        ("SELECT count(*) FROM (VALUES (1), (2)) t(x)", &pure, "dp_no_privacy_unit"),
        ("SELECT count(*) FROM (SELECT sex, count(*) AS c FROM person GROUP BY sex) t", &pure, "dp_no_privacy_unit"),
        (
            "SELECT count(*) FROM (SELECT person_id, count(*) AS c FROM measurement GROUP BY person_id) t WHERE c > 2",
            &pure,
            "ok",
        ),
        (
            "SELECT count(*) FROM person p JOIN measurement m ON p.year_of_birth = m.measurement_concept_id",
            &pure,
            "dp_unsupported",
        ),
        ("SELECT count(*) FROM person p JOIN measurement m ON p.person_id = m.measurement_id", &pure, "dp_unsupported"),
        ("SELECT count(*) FROM person p CROSS JOIN measurement m", &pure, "dp_unsupported"),
        ("SELECT count(*) FROM person p, measurement m WHERE p.person_id = m.person_id AND p.sex = 'F'", &pure, "ok"),
        ("SELECT count(*) FROM person p JOIN measurement m USING (person_id)", &pure, "ok"),
        (
            "SELECT count(*) FROM person p JOIN measurement m ON p.person_id = m.person_id JOIN claim c ON c.person_id = m.person_id",
            &pure,
            "ok",
        ),
        ("SELECT max(value_as_number) FROM measurement", &pure, "dp_unsupported"),
        ("SELECT count(DISTINCT sex) FROM person", &pure, "dp_unsupported"),
        ("SELECT count(DISTINCT person_id) FROM person", &pure, "ok"),
        ("SELECT stddev(value_as_number), var_pop(value_as_number) FROM measurement", &pure, "ok"),
        ("SELECT stddev(year_of_birth) FROM person", &pure, "dp_unbounded_column"),
        ("SELECT corr(value_as_number, value_as_number) FROM measurement", &pure, "dp_unsupported"),
        (
            "SELECT sex, median(value_as_number) FROM person p JOIN measurement m ON p.person_id = m.person_id GROUP BY sex",
            &pure,
            "dp_unsupported",
        ),
        ("SELECT median(value_as_number) FROM measurement", &pure, "ok"),
        ("SELECT * FROM person", &pure, "dp_unsupported"),
        ("SELECT count(*) FROM (SELECT * FROM measurement LIMIT 10) t", &pure, "dp_unsupported"),
        (
            "SELECT count(*) FROM (SELECT person_id, row_number() OVER () AS r FROM person) t WHERE r < 5",
            &pure,
            "dp_unsupported",
        ),
        (
            "SELECT count(*) FROM person WHERE year_of_birth > (SELECT avg(year_of_birth) FROM person)",
            &pure,
            "dp_unsupported",
        ),
        ("SELECT count(*) FROM person WHERE person_id IN (SELECT person_id FROM measurement)", &pure, "dp_unsupported"),
        ("SELECT count(*) AS n, (SELECT 1) AS one FROM person", &pure, "dp_unsupported"),
        (
            "SELECT count(*) FILTER (WHERE year_of_birth > (SELECT avg(year_of_birth) FROM person)) FROM person",
            &pure,
            "dp_unsupported",
        ),
        ("SELECT sex, count(*) OVER () FROM person GROUP BY sex", &pure, "dp_unsupported"),
        ("SELECT DISTINCT count(*) FROM person", &pure, "dp_unsupported"),
        ("SELECT count(*) FROM person UNION ALL SELECT count(*) FROM claim", &pure, "dp_unsupported"),
        (
            "SELECT sex, prefecture_code, count(*) FROM person GROUP BY ROLLUP (sex, prefecture_code)",
            &pure,
            "dp_unsupported",
        ),
        ("SELECT count(*) FILTER (WHERE sex = 'F') AS f FROM person", &pure, "ok"),
    ];
    for (sql, p, expected) in cases {
        let got = match ctx.state().create_logical_plan(sql).await {
            Ok(plan) => code(DpPlan::analyse(&plan, &tables, &datasets(), p)),
            Err(_) => "planning failed",
        };
        assert_eq!(got, *expected, "{sql}");
    }
}

#[tokio::test]
async fn invalid_bounds_parameters_are_refused() {
    let ctx = sample(false).context();
    for (l, c) in [(Some(0), None), (None, Some(0)), (Some(MAX_GROUPS + 1), None)] {
        let p = DpParams { max_groups_per_person: l, max_rows_per_person: c, ..params(1.0, 0.0) };
        let r = analyse(&ctx, "SELECT count(*) FROM person", &p).await;
        assert_eq!(code(r), "dp_invalid_argument");
    }
}

const MAX_GROUPS: u32 = crate::rewrite::MAX_GROUPS_PER_PERSON;

#[tokio::test]
async fn normalized_key_is_stable_and_separates_parameters() {
    let ctx = sample(false).context();
    let sql = "SELECT sex, count(*) FROM person GROUP BY sex";
    let a = analyse(&ctx, sql, &params(1.0, 0.0)).await.unwrap().normalized_key();
    let b = analyse(&ctx, sql, &params(1.0, 0.0)).await.unwrap().normalized_key();
    let c = analyse(&ctx, sql, &params(0.5, 0.0)).await.unwrap().normalized_key();
    let q = DpParams { max_rows_per_person: Some(9), ..params(1.0, 0.0) };
    let d = analyse(&ctx, sql, &q).await.unwrap().normalized_key();
    let e = analyse(&ctx, "SELECT sex, count(*) FROM person WHERE year_of_birth > 1 GROUP BY sex", &params(1.0, 0.0))
        .await
        .unwrap()
        .normalized_key();
    assert_eq!(a, b);
    for other in [&c, &d, &e] {
        assert_ne!(&a, other);
    }
    assert!(a.contains("public ehr.sex"), "{a}");
}
