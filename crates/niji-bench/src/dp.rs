//! `dp`: latency of a differentially private count-by-group against the same query in plain
//! DataFusion, on the same in-memory data in the same run (issue target: DP ≤ 2× plain).
//!
//! Data: `--persons` × 10 rows (default 1 M persons → 10 M rows) in the CDM `person` and
//! `condition_occurrence` shapes, ordered by `person_id` as the pipelines store them.
//! Queries: counts by `prefecture_code` (a public key domain, 47 values, zero-filled) and by
//! `icd10_code` (a private key, ~500 values, Gaussian threshold); the last again over the same
//! rows stored out of person order (dp then sorts its row stage by person before bounding).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use niji_catalog::DatasetDef;
use niji_dp::{DpParams, DpPlan, Request};

use crate::Opts;

const ROWS_PER_PERSON: u64 = 10;
const BATCH: usize = 65_536;

fn column(schema: &SchemaRef, rows: usize, f: impl Fn(&str, usize) -> Option<String>) -> anyhow::Result<RecordBatch> {
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            let name = field.name().as_str();
            match field.data_type() {
                datafusion::arrow::datatypes::DataType::Int32 => Arc::new(Int32Array::from_iter(
                    (0..rows).map(|i| f(name, i).and_then(|v| v.parse().ok()).or(Some(0))),
                )),
                datafusion::arrow::datatypes::DataType::Utf8 => Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| f(name, i).or_else(|| (!field.is_nullable()).then(|| "x".to_owned()))),
                )),
                // Dates, flags and measures are not used by the benchmark queries.
                other => datafusion::arrow::array::new_null_array(other, rows),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// A table of `persons × 10` rows; `value(column, person, row)` gives the cells.
fn table(
    schema: SchemaRef,
    persons: u64,
    value: impl Fn(&str, u64, u64) -> Option<String> + Copy,
) -> anyhow::Result<Arc<MemTable>> {
    let total = persons * ROWS_PER_PERSON;
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(), Vec::new()];
    let mut start = 0u64;
    while start < total {
        let n = BATCH.min((total - start) as usize);
        let b = column(&schema, n, |c, i| {
            let r = start + i as u64;
            let person = r / ROWS_PER_PERSON;
            if c == "person_id" { Some(format!("{person:032x}")) } else { value(c, person, r) }
        })?;
        // Two partitions, each a contiguous range of persons (storage is clustered by person).
        parts[usize::from(start >= total / 2)].push(b);
        start += n as u64;
    }
    Ok(Arc::new(MemTable::try_new(schema, parts)?))
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(opts))
}

async fn run_async(opts: &Opts) -> anyhow::Result<()> {
    let persons = opts.persons.max(1000);
    let t = Instant::now();
    let person = table(niji_cdm::tables::PERSON_TABLE.schema(), persons, |c, p, _| match c {
        "prefecture_code" => Some(format!("{:02}", 1 + (p * 7919) % 47)),
        "sex" => Some(if p % 2 == 0 { "F" } else { "M" }.to_owned()),
        _ => None,
    })?;
    let conditions = table(niji_cdm::tables::CONDITION_OCCURRENCE.schema(), persons, |c, p, r| match c {
        "icd10_code" => Some(format!("{}{:02}", (b'A' + ((p + r) % 5) as u8) as char, (p * 31 + r * 17) % 100)),
        _ => None,
    })?;
    let rows = persons * ROWS_PER_PERSON;
    println!(
        "dp: {rows} rows per table ({persons} persons × {ROWS_PER_PERSON}), built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The same conditions in storage not clustered by person: each partition's batches in
    // reverse order (sorted within a batch, descending across batches).
    let mut reversed = Vec::new();
    for part in &conditions.batches {
        let mut batches = part.read().await.clone();
        batches.reverse();
        reversed.push(batches);
    }
    let schema = niji_cdm::tables::CONDITION_OCCURRENCE.schema();
    let unclustered = Arc::new(MemTable::try_new(schema, reversed)?);
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx.register_table("person", person)?;
    ctx.register_table("condition_occurrence", conditions)?;
    let ctx_unclustered = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx_unclustered.register_table("condition_occurrence", unclustered)?;
    let defs = DatasetDef::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog"))
        .context("loading catalog/*.toml")?;
    let resolve = |t: &TableReference| Some(("ehr".to_owned(), t.table().to_owned()));
    let params = DpParams {
        request: Request { epsilon: 1.0, delta: 1e-7 },
        max_groups_per_person: None,
        max_rows_per_person: None,
    };
    println!("{:<62} {:>10} {:>10} {:>7}", "query", "plain ms", "dp ms", "ratio");
    for (label, sql, ctx) in [
        (
            "count by prefecture (public keys, zero-filled)",
            "SELECT prefecture_code, count(*) AS n FROM person GROUP BY prefecture_code",
            &ctx,
        ),
        (
            "count by ICD-10 code (private keys, threshold)",
            "SELECT icd10_code, count(*) AS n FROM condition_occurrence GROUP BY icd10_code",
            &ctx,
        ),
        (
            "persons by ICD-10 code (private keys)",
            "SELECT icd10_code, count(DISTINCT person_id) AS n FROM condition_occurrence GROUP BY icd10_code",
            &ctx,
        ),
        (
            "count by ICD-10 code, storage not clustered by person",
            "SELECT icd10_code, count(*) AS n FROM condition_occurrence GROUP BY icd10_code",
            &ctx_unclustered,
        ),
    ] {
        let mut plain = Vec::new();
        let mut dp = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = ctx.sql(sql).await?.collect().await?;
            plain.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(!out.is_empty(), "no rows");
            let t = Instant::now();
            let plan = ctx.state().create_logical_plan(sql).await?;
            let analysed = DpPlan::analyse(&plan, &resolve, &defs, &params)?;
            let answer = analysed.execute(ctx).await?;
            dp.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(!answer.batches.is_empty(), "no dp rows");
        }
        let (p, d) = (crate::report::median(plain), crate::report::median(dp));
        println!("{label:<62} {p:>10.1} {d:>10.1} {:>6.2}×", d / p);
    }
    println!("(median of 5 runs each; dp includes analysis, contribution bounding, OpenDP noise and post-processing)");
    Ok(())
}
