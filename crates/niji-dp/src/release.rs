//! Running an analysed `dp` query: bounded aggregates from DataFusion, OpenDP noise, then the
//! researcher's HAVING / ORDER BY / LIMIT / projection over the noisy rows only.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{EmptyRelation, Expr, LogicalPlan, Values, lit};
use datafusion::prelude::SessionContext;

use crate::error::{DpError, Result};
use crate::mechanism::private_median;
use crate::rewrite::{
    AggKind, DpColumn, DpPlan, Keys, MEDIAN_CANDIDATES, MEDIAN_SIZE_LIMIT, Measure, Mechanism, PERSONS, rebuild_top,
};

/// A released `dp` answer: the researcher's result over noisy aggregates, and the noise each
/// column carries.
#[derive(Debug, Clone)]
pub struct DpAnswer {
    /// Output schema (the researcher's query's).
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Noise per output column.
    pub columns: Vec<DpColumn>,
}

/// The exact bounded aggregates per group, before noise. Never released.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bounded {
    /// Group keys, one vector per group.
    pub keys: Vec<Vec<ScalarValue>>,
    /// Distinct persons per group (after bounding).
    pub persons: Vec<i64>,
    /// Bounded sums per bounding-output column (`__niji_c*`, `__niji_d*`), per group; NULL as 0.
    pub columns: HashMap<String, Vec<f64>>,
    /// Per-person values of each median.
    pub medians: Vec<Vec<f64>>,
    /// Computed by the streaming bounding, not the general plan.
    pub streamed: bool,
    /// The streaming bounding ran over the row stage sorted by person (the input as it came was
    /// not person-contiguous).
    pub sorted: bool,
}

async fn collect(ctx: &SessionContext, plan: LogicalPlan, stage: &'static str) -> Result<Vec<RecordBatch>> {
    let df = ctx.execute_logical_plan(plan).await.map_err(DpError::execution(stage))?;
    df.collect().await.map_err(DpError::execution(stage))
}

fn f64_values(a: &dyn Array) -> Result<Vec<f64>> {
    let a = cast(a, &DataType::Float64).map_err(|_| DpError::Execution { stage: "bounding" })?;
    Ok(a.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(0.0)).collect())
}

impl DpPlan {
    /// Runs the bounding plan and the median plans: exact bounded aggregates, never released.
    pub(crate) async fn bounded(&self, ctx: &SessionContext) -> Result<Bounded> {
        // `streaming` is None for medians (they need per-person values).
        if let Some(spec) = &self.streaming {
            if let Some(b) = crate::streaming::bounded(spec, ctx).await? {
                return Ok(b);
            }
            // Not person-contiguous as it comes: sort the row stage by person (DataFusion's sort,
            // bounded by the session's memory pool) and stream that; cheaper than the general
            // plan's per-(person, group) aggregation and window.
            tracing::debug!("dp bounding: input not person-contiguous, streaming it sorted by person");
            if let Some(b) = crate::streaming::bounded(&spec.sorted()?, ctx).await? {
                return Ok(Bounded { sorted: true, ..b });
            }
            tracing::debug!("dp bounding: sorted input did not stream, running the general plan");
        }
        self.bounded_general(ctx).await
    }

    /// The general bounding plan: per-(person, group) hash aggregation and a random rank.
    pub(crate) async fn bounded_general(&self, ctx: &SessionContext) -> Result<Bounded> {
        let batches = collect(ctx, self.bounding.clone(), "bounding").await?;
        let mut out = Bounded::default();
        for batch in &batches {
            let schema = batch.schema();
            for row in 0..batch.num_rows() {
                let key = (0..self.n_groups)
                    .map(|i| ScalarValue::try_from_array(batch.column(i), row))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| DpError::Execution { stage: "bounding" })?;
                out.keys.push(key);
            }
            for (i, field) in schema.fields().iter().enumerate().skip(self.n_groups) {
                let values = f64_values(batch.column(i))?;
                if field.name() == PERSONS {
                    out.persons.extend(values.iter().map(|v| *v as i64));
                } else {
                    out.columns.entry(field.name().clone()).or_default().extend(values);
                }
            }
        }
        for plan in &self.median_plans {
            let mut values = Vec::new();
            for batch in collect(ctx, plan.clone(), "bounding").await? {
                values.extend(f64_values(batch.column(0))?);
            }
            out.medians.push(values);
        }
        Ok(out)
    }

    /// Execute with bounded contributions, add OpenDP noise, then apply the researcher's
    /// HAVING / ORDER BY / LIMIT / projection to the noisy rows. The caller charges
    /// [`DpPlan::cost`] to the ledger **before** handing the answer out. The plan reads the
    /// tables of the session it was planned in; `ctx` supplies the runtime (memory pool, config).
    pub async fn execute(&self, ctx: &SessionContext) -> Result<DpAnswer> {
        let bounded = self.bounded(ctx).await?;
        tracing::debug!(streamed = bounded.streamed, sorted = bounded.sorted, "dp: bounded aggregates computed");
        self.release(ctx, &bounded).await
    }

    /// Noise and post-processing of exact bounded aggregates.
    pub(crate) async fn release(&self, ctx: &SessionContext, bounded: &Bounded) -> Result<DpAnswer> {
        let (rows, columns) = self.noisy_rows(bounded)?;
        let bottom = if rows.is_empty() {
            LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: self.agg_schema.clone() })
        } else {
            LogicalPlan::Values(Values { schema: self.agg_schema.clone(), values: rows })
        };
        let plan = rebuild_top(&self.top, bottom)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(DpError::execution("release"))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(DpError::execution("release"))?;
        Ok(DpAnswer { schema, batches, columns })
    }

    /// The noisy rows of the aggregate (group keys then aggregates, typed as the researcher's
    /// aggregate's schema) and the noise description.
    pub(crate) fn noisy_rows(&self, bounded: &Bounded) -> Result<(Vec<Vec<Expr>>, Vec<DpColumn>)> {
        // Which groups are released: (key, index in `bounded`, noisy person count if thresholded).
        let mut released: Vec<(Vec<ScalarValue>, Option<usize>, Option<i64>)> = Vec::new();
        let index: HashMap<&Vec<ScalarValue>, usize> = bounded.keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        let mut threshold_mech = None;
        match &self.keys {
            Keys::None => released.push((Vec::new(), (!bounded.keys.is_empty()).then_some(0), None)),
            Keys::Public(domains) => {
                let mut cells: Vec<Vec<ScalarValue>> = vec![Vec::new()];
                for d in domains {
                    cells = cells
                        .into_iter()
                        .flat_map(|prefix| {
                            d.iter().map(move |v| {
                                let mut k = prefix.clone();
                                k.push(v.clone());
                                k
                            })
                        })
                        .collect();
                }
                for k in cells {
                    let i = index.get(&k).copied();
                    released.push((k, i, None));
                }
            }
            Keys::Private => {
                let mechs = self.mechanisms(1)?;
                let t = mechs.threshold.ok_or_else(|| DpError::Plan("private keys without a threshold".into()))?;
                let by_text: HashMap<String, usize> =
                    bounded.keys.iter().enumerate().map(|(i, k)| (format!("{k:?}"), i)).collect();
                let counts = bounded.keys.iter().zip(&bounded.persons).map(|(k, n)| (format!("{k:?}"), *n)).collect();
                for (text, noisy) in t.release(counts)? {
                    let i = by_text
                        .get(&text)
                        .copied()
                        .ok_or_else(|| DpError::Plan("threshold returned an unknown key".into()))?;
                    released.push((bounded.keys[i].clone(), Some(i), Some(noisy)));
                }
                threshold_mech = Some(t);
            }
        }
        let n = released.len();
        let mut mechs = self.mechanisms(n)?;
        if threshold_mech.is_some() {
            mechs.threshold = threshold_mech;
        }
        let columns = self.describe(&mechs);

        // Noisy values per measurement, per released group.
        let exact = |column: &str| -> Vec<f64> {
            let v = bounded.columns.get(column);
            released.iter().map(|(_, i, _)| i.and_then(|i| v.and_then(|v| v.get(i).copied())).unwrap_or(0.0)).collect()
        };
        let mut noisy: Vec<Vec<f64>> = Vec::with_capacity(self.measurements.len());
        for (m, mech) in self.measurements.iter().zip(&mechs.values) {
            let values = match (&m.measure, mech) {
                (_, _) if n == 0 => Vec::new(),
                (Measure::Int { column, .. }, Mechanism::Int(noise)) => {
                    let ints: Vec<i64> = exact(column).iter().map(|v| v.round() as i64).collect();
                    noise.release(&ints)?.into_iter().map(|v| v as f64).collect()
                }
                (Measure::Float { column, .. }, Mechanism::Float(noise)) => noise.release(&exact(column))?,
                (Measure::Median { plan, bounds }, Mechanism::Median { share, .. }) => {
                    let values = bounded.medians.get(*plan).cloned().unwrap_or_default();
                    let (v, _) = private_median(values, *bounds, MEDIAN_CANDIDATES, MEDIAN_SIZE_LIMIT, share)?;
                    vec![v; n]
                }
                _ => return Err(DpError::Plan("a measurement and its mechanism disagree".into())),
            };
            noisy.push(values);
        }

        // Rows typed as the aggregate's schema.
        let fields = self.agg_schema.fields();
        let mut rows = Vec::with_capacity(n);
        for (g, (key, _, thr)) in released.iter().enumerate() {
            let mut row: Vec<Expr> = key.iter().cloned().map(lit).collect();
            for (j, a) in self.aggs.iter().enumerate() {
                let of = |statistic: &str| -> Option<f64> {
                    self.measurements
                        .iter()
                        .position(|m| m.agg == j && m.statistic == statistic)
                        .and_then(|p| noisy.get(p).and_then(|v| v.get(g).copied()))
                };
                let value = match a.kind {
                    AggKind::Persons if a.from_threshold => thr.map(|v| v as f64),
                    AggKind::Count | AggKind::Persons => of("count"),
                    AggKind::Sum => of("sum"),
                    AggKind::Median => of("median"),
                    AggKind::Avg => match (of("avg_sum"), of("avg_count"), a.bounds) {
                        (Some(s), Some(c), Some((lo, hi))) => Some((s / c.max(1.0)).clamp(lo, hi)),
                        _ => None,
                    },
                    AggKind::Var { sample, sqrt } => {
                        match (of("var_sum"), of("var_sum_squares"), of("var_count"), a.bounds) {
                            (Some(s1), Some(s2), Some(c), Some((lo, hi))) => {
                                Some(variance(s1, s2, c, (hi - lo) / 2.0, sample, sqrt))
                            }
                            _ => None,
                        }
                    }
                };
                let value = value.ok_or_else(|| DpError::Plan("an aggregate has no measurement".into()))?;
                let field = &fields[self.n_groups + j];
                row.push(lit(typed(value, field.data_type())?));
            }
            rows.push(row);
        }
        Ok((rows, columns))
    }
}

/// Variance from noisy Σ(x − m), Σ(x − m)² and n (post-processing): the population variance
/// E[(x − m)²] − E[x − m]² clamped to [0, h²], times n / (n − 1) for the sample variance, and its
/// square root for a standard deviation. n below 2 is taken as 2.
fn variance(s1: f64, s2: f64, n: f64, h: f64, sample: bool, sqrt: bool) -> f64 {
    let n = n.max(2.0);
    let mean = (s1 / n).clamp(-h, h);
    let pop = (s2 / n - mean * mean).clamp(0.0, h * h);
    let v = if sample { (pop * n / (n - 1.0)).min(h * h * 2.0) } else { pop };
    if sqrt { v.sqrt() } else { v }
}

/// A noisy number as a value of the researcher's aggregate's output type.
fn typed(v: f64, dt: &DataType) -> Result<ScalarValue> {
    let s = if dt.is_integer() { ScalarValue::Int64(Some(v.round() as i64)) } else { ScalarValue::Float64(Some(v)) };
    s.cast_to(dt).map_err(|_| DpError::Plan(format!("a noisy value cannot be represented as {dt}")))
}
