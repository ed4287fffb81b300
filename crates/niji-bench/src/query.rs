//! `query`: ten cohort queries over the CDM Parquet the real pipelines produce
//! ([`crate::cohort`]), in plain DataFusion against DuckDB on the same files (answers compared
//! cell by cell), then through the query service in `sdc` and `dp` modes against plain.
//!
//! Plain DataFusion and DuckDB read exactly the Parquet files of each table's approved Delta
//! version (the `add`s of its log), registered as `<dataset>.<table>`, so the same SQL text
//! runs on both and through the service (whose sessions name the views the same way).
//! Timings are medians of `--runs` runs after one warm-up, planning included; `dp` is timed
//! once (a repeat would be answered from the cache).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use niji_catalog::{Catalog, Mode};
use niji_query::QueryRequest;
use serde_json::{Value, json};

use crate::cohort::{self, Cohort};
use crate::report::median;
use crate::{Opts, peer, report};

/// Age band at the reference year (the synthetic period is 2023) from `year_of_birth`.
const AGE_BAND: &str = "CASE WHEN year_of_birth IS NULL THEN 'unknown' \
    WHEN 2023 - year_of_birth < 15 THEN '00-14' WHEN 2023 - year_of_birth < 40 THEN '15-39' \
    WHEN 2023 - year_of_birth < 65 THEN '40-64' WHEN 2023 - year_of_birth < 75 THEN '65-74' ELSE '75+' END";

/// The ten queries: (short name, SQL). `{AGE}` is replaced by [`AGE_BAND`].
pub const QUERIES: &[(&str, &str)] = &[
    (
        "q1 persons by age band and sex with type 2 diabetes",
        "WITH p AS (SELECT person_id, sex, {AGE} AS age_band FROM ehr.person) \
         SELECT p.age_band, p.sex, count(DISTINCT p.person_id) AS persons \
         FROM p JOIN ehr.condition_occurrence c ON c.person_id = p.person_id \
         WHERE c.icd10_code LIKE 'E11%' \
         GROUP BY p.age_band, p.sex ORDER BY p.age_band, p.sex",
    ),
    (
        "q2 new prescriptions within 90 days after a diagnosis",
        "SELECT c.icd10_code, count(DISTINCT d.person_id) AS persons, count(*) AS prescriptions \
         FROM ehr.condition_occurrence c JOIN ehr.drug_exposure d ON d.person_id = c.person_id \
           AND d.drug_exposure_start_date >= c.condition_start_date \
           AND d.drug_exposure_start_date <= c.condition_start_date + INTERVAL '90 days' \
         WHERE c.condition_start_date >= DATE '2023-01-01' \
         GROUP BY c.icd10_code ORDER BY c.icd10_code",
    ),
    (
        "q3 HbA1c distribution by age band",
        "WITH p AS (SELECT person_id, {AGE} AS age_band FROM ehr.person) \
         SELECT p.age_band, count(*) AS results, count(DISTINCT m.person_id) AS persons, \
           avg(m.value_as_number) AS mean, stddev(m.value_as_number) AS sd, \
           count(*) FILTER (WHERE m.value_as_number >= 6.5) AS at_or_above_6_5 \
         FROM ehr.measurement m JOIN p ON p.person_id = m.person_id \
         WHERE m.measurement_source_value = '3D046000001906202' AND NOT m.is_infection_test \
         GROUP BY p.age_band ORDER BY p.age_band",
    ),
    (
        "q4 care-level transitions over 2023",
        "SELECT a.care_level AS level_jan, b.care_level AS level_dec, count(DISTINCT a.person_id) AS persons \
         FROM care.care_certification a JOIN care.care_certification b ON b.person_id = a.person_id \
         WHERE a.valid_from <= DATE '2023-01-01' AND a.valid_to >= DATE '2023-01-01' \
           AND b.valid_from <= DATE '2023-12-31' AND b.valid_to >= DATE '2023-12-31' \
         GROUP BY a.care_level, b.care_level ORDER BY level_jan, level_dec",
    ),
    (
        "q5 monthly claim points by prefecture",
        "SELECT prefecture_code, service_month, count(*) AS claims, count(DISTINCT person_id) AS persons, \
           sum(total_points) AS points \
         FROM claims.claim GROUP BY prefecture_code, service_month ORDER BY prefecture_code, service_month",
    ),
    (
        "q6 polypharmacy (>= 6 drugs in a month) prevalence by sex",
        "WITH monthly AS (SELECT person_id, \
             date_part('year', drug_exposure_start_date) * 100 + date_part('month', drug_exposure_start_date) AS month, \
             count(DISTINCT drug_source_value) AS drugs FROM ehr.drug_exposure \
             GROUP BY person_id, date_part('year', drug_exposure_start_date) * 100 + date_part('month', drug_exposure_start_date)), \
           per_person AS (SELECT person_id, max(drugs) AS max_drugs FROM monthly GROUP BY person_id) \
         SELECT p.sex, count(*) AS treated_persons, count(*) FILTER (WHERE pp.max_drugs >= 6) AS polypharmacy_persons \
         FROM per_person pp JOIN ehr.person p ON p.person_id = pp.person_id \
         GROUP BY p.sex ORDER BY p.sex",
    ),
    (
        "q7 influenza vaccination coverage by age band",
        "WITH p AS (SELECT person_id, {AGE} AS age_band FROM ehr.person), \
           v AS (SELECT DISTINCT person_id FROM ehr.immunization WHERE vaccine_source_value = '631340QA1026') \
         SELECT p.age_band, count(DISTINCT p.person_id) AS persons, count(DISTINCT v.person_id) AS vaccinated \
         FROM p LEFT JOIN v ON v.person_id = p.person_id GROUP BY p.age_band ORDER BY p.age_band",
    ),
    (
        "q8 readmission within 30 days",
        "WITH stays AS (SELECT person_id, visit_start_date, visit_end_date FROM ehr.visit_occurrence \
             WHERE visit_source_value = 'IMP') \
         SELECT count(DISTINCT a.person_id) AS inpatients, count(DISTINCT b.person_id) AS readmitted \
         FROM stays a LEFT JOIN stays b ON b.person_id = a.person_id \
           AND b.visit_start_date > a.visit_end_date \
           AND b.visit_start_date <= a.visit_end_date + INTERVAL '30 days'",
    ),
    (
        "q9 comorbidity pairs (ICD-10 3 chars), top 20",
        "WITH d AS (SELECT DISTINCT person_id, substr(icd10_code, 1, 3) AS code FROM ehr.condition_occurrence \
             WHERE icd10_code IS NOT NULL) \
         SELECT a.code AS code_a, b.code AS code_b, count(DISTINCT a.person_id) AS persons \
         FROM d a JOIN d b ON b.person_id = a.person_id AND a.code < b.code \
         GROUP BY a.code, b.code ORDER BY persons DESC, code_a, code_b LIMIT 20",
    ),
    (
        "q10 points per diabetic person in 2023",
        "WITH diabetic AS (SELECT DISTINCT person_id FROM claims.condition_occurrence WHERE icd10_code LIKE 'E11%') \
         SELECT count(DISTINCT c.person_id) AS persons, sum(c.total_points) AS points, \
           CAST(sum(c.total_points) AS DOUBLE) / count(DISTINCT c.person_id) AS points_per_person \
         FROM claims.claim c JOIN diabetic d ON d.person_id = c.person_id \
         WHERE c.service_month >= DATE '2023-01-01' AND c.service_month < DATE '2024-01-01'",
    ),
];

/// The SQL of a query with its placeholders filled in.
pub fn sql(template: &str) -> String {
    template.replace("{AGE}", AGE_BAND)
}

/// ε and δ of each `dp` query.
const DP_EPSILON: f64 = 1.0;
const DP_DELTA: f64 = 1e-6;

/// One cell of an answer, normalized across engines: numbers as f64, the rest as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Any numeric type.
    Num(f64),
    /// Anything else, as its display text (dates as YYYY-MM-DD).
    Text(String),
}

impl Cell {
    fn key(&self) -> String {
        match self {
            Cell::Null => "\u{0}".into(),
            Cell::Num(v) => format!("{v:.6e}"),
            Cell::Text(s) => s.clone(),
        }
    }

    fn close(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Num(a), Cell::Num(b)) => (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0),
            (a, b) => a == b,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Num(v) => json!(v),
            Cell::Text(s) => json!(s),
        }
    }
}

/// Rows of record batches as normalized cells.
pub fn normalize(batches: &[RecordBatch]) -> anyhow::Result<Vec<Vec<Cell>>> {
    let mut rows = Vec::new();
    for b in batches {
        let mut cols = Vec::new();
        for c in b.columns() {
            if c.data_type().is_numeric() {
                let f = datafusion::arrow::compute::cast(c, &DataType::Float64)?;
                let f = f
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Float64Array>()
                    .context("cast to Float64")?
                    .clone();
                cols.push((Some(f), c.clone()));
            } else {
                cols.push((None, c.clone()));
            }
        }
        for i in 0..b.num_rows() {
            let mut row = Vec::with_capacity(cols.len());
            for (f, c) in &cols {
                row.push(if c.is_null(i) {
                    Cell::Null
                } else if let Some(f) = f {
                    Cell::Num(f.value(i))
                } else {
                    Cell::Text(datafusion::arrow::util::display::array_value_to_string(c.as_ref(), i)?)
                });
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn from_json(rows: &Value) -> Vec<Vec<Cell>> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|r| {
                            r.iter()
                                .map(|v| match v {
                                    Value::Null => Cell::Null,
                                    Value::Number(n) => Cell::Num(n.as_f64().unwrap_or(f64::NAN)),
                                    Value::String(s) => Cell::Text(s.clone()),
                                    other => Cell::Text(other.to_string()),
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether two answers hold the same rows (in any order), numbers within 1e-6 relative.
pub fn agree(a: &[Vec<Cell>], b: &[Vec<Cell>]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let sorted = |rows: &[Vec<Cell>]| {
        let mut r = rows.to_vec();
        r.sort_by_key(|row| row.iter().map(Cell::key).collect::<Vec<_>>());
        r
    };
    let (a, b) = (sorted(a), sorted(b));
    a.iter().zip(&b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.close(q)))
}

/// A plain query's median milliseconds and answer rows, or why it failed.
type PlainOutcome = Result<(f64, Vec<Vec<Cell>>), String>;

/// A plain DataFusion session with `<dataset>.<table>` over the cohort's Parquet files.
pub async fn plain_session(cohort: &Cohort) -> anyhow::Result<SessionContext> {
    let ctx = SessionContext::new();
    let cat = ctx.catalog("datafusion").context("default catalog")?;
    for ds in cohort::DATASETS {
        cat.register_schema(ds, Arc::new(MemorySchemaProvider::new()))?;
    }
    for (name, files) in &cohort.files {
        let (ds, table) = name.split_once('.').context("dataset.table")?;
        let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let df = ctx.read_parquet(paths, ParquetReadOptions::default()).await?;
        ctx.register_table(TableReference::partial(ds, table), df.into_view())?;
    }
    Ok(ctx)
}

const DUCKDB: &str = r#"
import sys, json, time, datetime, decimal, duckdb
spec = json.load(open(sys.argv[1]))
con = duckdb.connect()
for s in spec["schemas"]:
    con.execute(f"CREATE SCHEMA {s}")
for name, files in spec["tables"].items():
    lst = "[" + ",".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({lst})")
def norm(v):
    if v is None: return None
    if isinstance(v, bool): return int(v)
    if isinstance(v, (int, float, decimal.Decimal)): return float(v)
    if isinstance(v, datetime.datetime): return v.isoformat(sep="T")
    if isinstance(v, datetime.date): return v.isoformat()
    return str(v)
out = []
for q in spec["queries"]:
    try:
        rows = con.execute(q).fetchall()
        times = []
        for _ in range(spec["runs"]):
            t = time.perf_counter()
            rows = con.execute(q).fetchall()
            times.append(time.perf_counter() - t)
        times.sort()
        out.append({"rows": [[norm(v) for v in r] for r in rows], "seconds": times[len(times) // 2]})
    except Exception as e:
        out.append({"error": str(e)})
json.dump(out, open(sys.argv[2], "w"))
print(f"version={duckdb.__version__.split('.')[0]}")
"#;

/// DuckDB on the same files: per query, its rows and median seconds (or its error).
fn duckdb(opts: &Opts, cohort: &Cohort, sqls: &[String]) -> anyhow::Result<Vec<Value>> {
    let tables: serde_json::Map<String, Value> = cohort
        .files
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>())))
        .collect();
    let spec = json!({"schemas": cohort::DATASETS, "tables": tables, "queries": sqls, "runs": opts.runs});
    let spec_path = std::path::absolute(opts.work.join("query-duckdb-spec.json"))?;
    let out_path = std::path::absolute(opts.work.join("query-duckdb-out.json"))?;
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    peer::run(DUCKDB, &[&spec_path.display().to_string(), &out_path.display().to_string()])?;
    let out: Value = serde_json::from_slice(&std::fs::read(out_path)?)?;
    out.as_array().cloned().context("duckdb output is not a list")
}

/// The outcome of one query in one release mode.
#[derive(Debug, Clone)]
pub enum Released {
    /// Answered: median ms, rows released, sdc rows withheld.
    Answered { ms: f64, rows: usize, suppressed: Option<u64> },
    /// Refused with a stable code.
    Refused { code: String, message: String, ms: f64 },
}

impl Released {
    fn to_json(&self) -> Value {
        match self {
            Released::Answered { ms, rows, suppressed } => {
                json!({"ms": ms, "rows": rows, "suppressed_rows": suppressed})
            }
            Released::Refused { code, message, ms } => json!({"refused": code, "message": message, "ms": ms}),
        }
    }
}

/// Run `sql` through the service in `mode` `runs` times (dp: once); median latency.
pub async fn release(
    svc: &niji_query::QueryService,
    who: &niji_catalog::Principal,
    project: &str,
    sql: &str,
    mode: Mode,
    runs: usize,
) -> Released {
    let req = QueryRequest {
        project: project.to_owned(),
        sql: sql.to_owned(),
        mode: Some(mode),
        epsilon: (mode == Mode::Dp).then_some(DP_EPSILON),
        delta: (mode == Mode::Dp).then_some(DP_DELTA),
        ..QueryRequest::default()
    };
    let runs = if mode == Mode::Dp { 1 } else { runs.max(1) };
    let mut times = Vec::new();
    let mut last = None;
    // sdc: one warm-up like the plain engines; dp: none (the cache would answer the repeat).
    if mode != Mode::Dp {
        let _ = svc.run(who, &req).await;
    }
    for _ in 0..runs {
        let t = Instant::now();
        let r = svc.run(who, &req).await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(a) => {
                times.push(ms);
                last = Some(Released::Answered { ms: 0.0, rows: a.num_rows(), suppressed: a.privacy.suppressed_rows });
            }
            Err(e) => {
                return Released::Refused { code: e.code().to_owned(), message: e.public_message(), ms };
            }
        }
    }
    match last {
        Some(Released::Answered { rows, suppressed, .. }) => Released::Answered { ms: median(times), rows, suppressed },
        other => other.unwrap_or(Released::Refused { code: "none".into(), message: String::new(), ms: 0.0 }),
    }
}

/// Per-query result of the item (read by the smoke test).
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct QueryResult {
    /// Query name.
    pub name: String,
    /// Plain DataFusion median ms (None: failed).
    pub plain_ms: Option<f64>,
    /// sdc outcome.
    pub sdc: Released,
    /// dp outcome.
    pub dp: Released,
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(opts)).map(|_| ())
}

/// The item; returns the per-query results (the smoke test checks them).
pub async fn run_async(opts: &Opts) -> anyhow::Result<Vec<QueryResult>> {
    let cohort = cohort::prepare(opts).await?;
    let tables: Vec<&String> = cohort.files.keys().collect();
    println!(
        "query: cohort of {} persons, tables {}",
        opts.persons,
        tables.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    );
    let sqls: Vec<String> = QUERIES.iter().map(|(_, q)| sql(q)).collect();

    // Plain DataFusion.
    let ctx = plain_session(&cohort).await?;
    let mut plain: Vec<PlainOutcome> = Vec::new();
    for q in &sqls {
        let mut times = Vec::new();
        let mut answer = Err(String::new());
        for i in 0..=opts.runs {
            let t = Instant::now();
            let r = match ctx.sql(q).await {
                Ok(df) => df.collect().await,
                Err(e) => Err(e),
            };
            let ms = t.elapsed().as_secs_f64() * 1e3;
            match r {
                Ok(b) => {
                    if i > 0 {
                        times.push(ms);
                    }
                    answer = Ok(normalize(&b)?);
                }
                Err(e) => {
                    answer = Err(e.to_string());
                    break;
                }
            }
        }
        plain.push(answer.map(|rows| (median(times), rows)));
    }

    // DuckDB on the same files.
    let duck = if opts.peers { Some(duckdb(opts, &cohort, &sqls)?) } else { None };

    // Through the service.
    let catalog = Catalog::open_default(&cohort.dir).await?;
    let project = cohort::project(&cohort, &catalog, 1).await?;
    let svc = cohort::service(&cohort.dir, &catalog).await?;
    let who = &project.researchers[0];

    let mut results = Vec::new();
    let mut details = Vec::new();
    println!(
        "{:<58} {:>10} {:>10} {:>7} {:>8}  {:>10} {:>7}  {:>10} {:>7}",
        "query", "plain ms", "duckdb ms", "df/duck", "answers", "sdc ms", "×plain", "dp ms", "×plain"
    );
    for (i, (name, _)) in QUERIES.iter().enumerate() {
        let q = &sqls[i];
        let sdc = release(&svc, who, &project.name, q, Mode::Sdc, opts.runs).await;
        let dp = release(&svc, who, &project.name, q, Mode::Dp, 1).await;
        let (plain_ms, plain_rows, plain_cells) = match &plain[i] {
            Ok((ms, rows)) => (Some(*ms), Some(rows.len()), Some(rows)),
            Err(e) => {
                eprintln!("  {name}: plain DataFusion failed: {e}");
                (None, None, None)
            }
        };
        let (duck_ms, agreement, duck_rows) = match duck.as_ref().and_then(|d| d.get(i)) {
            Some(d) if d.get("error").is_some() => {
                eprintln!("  {name}: duckdb failed: {}", d["error"]);
                (None, "duckdb error".to_owned(), None)
            }
            Some(d) => {
                let rows = from_json(&d["rows"]);
                let ms = d["seconds"].as_f64().map(|s| s * 1e3);
                let ok = plain_cells.is_some_and(|p| agree(p, &rows));
                if !ok {
                    eprintln!("  {name}: DataFusion and DuckDB answers DIFFER");
                    if let Some(p) = plain_cells {
                        eprintln!("    datafusion: {:?}", p.iter().take(5).collect::<Vec<_>>());
                    }
                    eprintln!("    duckdb:     {:?}", rows.iter().take(5).collect::<Vec<_>>());
                }
                (ms, if ok { "agree".to_owned() } else { "DIFFER".to_owned() }, Some(rows.len()))
            }
            None => (None, "no peer".to_owned(), None),
        };
        let show = |r: &Released| match r {
            Released::Answered { ms, .. } => {
                (format!("{ms:.1}"), plain_ms.map_or("-".into(), |p| format!("{:.2}", ms / p)))
            }
            Released::Refused { code, .. } => ("refused".into(), code.clone()),
        };
        let (s_ms, s_ratio) = show(&sdc);
        let (d_ms, d_ratio) = show(&dp);
        println!(
            "{:<58} {:>10} {:>10} {:>7} {:>8}  {:>10} {:>7}  {:>10} {:>7}",
            name,
            plain_ms.map_or("failed".into(), |m| format!("{m:.1}")),
            duck_ms.map_or("-".into(), |m| format!("{m:.1}")),
            match (plain_ms, duck_ms) {
                (Some(p), Some(d)) => format!("{:.2}", p / d),
                _ => "-".into(),
            },
            agreement,
            s_ms,
            s_ratio,
            d_ms,
            d_ratio
        );
        let rows_note = format!("{} rows; {agreement}", plain_rows.map_or("-".into(), |r| r.to_string()));
        report::record(report::Row {
            item: "query".into(),
            what: format!("{name}: plain DataFusion vs DuckDB"),
            unit: "ms".into(),
            ours: plain_ms,
            peer: "duckdb".into(),
            peer_value: duck_ms,
            note: rows_note,
        });
        for (mode, r) in [("sdc", &sdc), ("dp", &dp)] {
            let (ours, note) = match r {
                Released::Answered { ms, rows, suppressed } => (
                    Some(*ms),
                    match suppressed {
                        Some(s) => format!("{rows} rows released, {s} withheld"),
                        None => format!("{rows} rows released"),
                    },
                ),
                Released::Refused { code, .. } => (None, format!("refused: {code}")),
            };
            report::record(report::Row {
                item: "query".into(),
                what: format!("{name}: niji {mode} vs plain"),
                unit: "ms".into(),
                ours,
                peer: "plain datafusion".into(),
                peer_value: plain_ms,
                note,
            });
        }
        details.push(json!({
            "name": name, "sql": q,
            "plain": {"ms": plain_ms, "rows": plain_rows, "error": plain[i].as_ref().err(),
                      "answer": plain_cells.map(|p| p.iter().take(50).map(|r| r.iter().map(Cell::to_json).collect::<Vec<_>>()).collect::<Vec<_>>())},
            "duckdb": {"ms": duck_ms, "rows": duck_rows, "agreement": agreement},
            "sdc": sdc.to_json(), "dp": dp.to_json(),
        }));
        results.push(QueryResult { name: (*name).to_owned(), plain_ms, sdc, dp });
    }
    println!(
        "(medians of {} runs after a warm-up, planning included; dp: one uncached run at ε={DP_EPSILON}, δ={DP_DELTA:e}, default L and C)",
        opts.runs
    );
    report::detail(
        "query",
        json!({"persons": opts.persons, "tables": cohort.files.iter().map(|(k, v)| (k.clone(), json!(v.len()))).collect::<serde_json::Map<_, _>>(), "queries": details}),
    );
    Ok(results)
}
