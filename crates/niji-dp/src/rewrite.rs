//! The `dp` release of a researcher's aggregate query: analysis and the contribution-bounding
//! rewrite.
//!
//! # What is released
//!
//! Every released number is differentially private with respect to **one person**: all of that
//! person's rows in all joined tables. [`DpPlan::analyse`] accepts
//!
//! ```text
//! [Projection | Sort | Limit | Filter (HAVING) | SubqueryAlias]*     ← evaluated after noise
//!   Aggregate (GROUP BY keys, aggregates)                            ← replaced by noisy rows
//!     any plan that reaches person_id by lineage (niji_policy::carry_person):
//!     scans, projections, WHERE, CTEs / derived tables, inner aggregations grouped by person,
//!     DISTINCT keeping the person, joins on person_id equality
//! ```
//!
//! Aggregates: `count(*)`, `count(expr)`, `count(DISTINCT person_id)`, `sum(col)`, `avg(col)`
//! (noisy sum / noisy count), `var`/`var_samp`/`var_pop`/`stddev`/`stddev_samp`/`stddev_pop`
//! (noisy Σ(x − m), Σ(x − m)² and count around the bounds' midpoint m), `median(col)` (without
//! GROUP BY), each optionally with `FILTER (WHERE …)`. All but the counts need an argument whose
//! lineage is a column with bounds in the dataset catalog (casts allowed); bounds never come
//! from the data. Everything else is refused: min/max/array_agg/first_value/corr…, other
//! DISTINCT aggregates, GROUPING SETS/ROLLUP/CUBE, windows, subquery expressions and LIMIT below
//! the aggregate (each makes one person's rows change other persons' contributions), joins not
//! on person equality, and above the aggregate: windows, DISTINCT, UNION, joins and subqueries.
//!
//! # Contribution bounding (run by DataFusion, see [`DpPlan::bounding_plan`])
//!
//! 1. Per row: the unit `coalesce(person columns…)` (rows without a person are dropped), the group
//!    keys, and per aggregate its argument — clamped to the catalog bounds `[lo, hi]` for sums,
//!    means and medians (NaN → NULL), under the aggregate's FILTER.
//! 2. Per (person, group): `n` = non-null arguments, `s` = their sum. Contributions: counts
//!    `min(n, C)`; distinct persons `min(n, 1)`; sums `s · min(1, C / n)` — the person's own sum
//!    when they have at most C rows, otherwise C times their mean — which lies in
//!    `[C·min(lo, 0), C·max(hi, 0)]` (clamped again for float safety); variances: the same
//!    weighting of Σ(x − m) and Σ(x − m)²; medians: the person's mean `s / n` (one value per
//!    person, no GROUP BY), released with OpenDP's private quantile over 1001 candidates
//!    evenly spaced over the bounds.
//! 3. With GROUP BY: at most L groups per person, chosen uniformly at random
//!    (`row_number() OVER (PARTITION BY unit ORDER BY random()) <= L`; not noise). Public keys are
//!    restricted to their domain *before* this choice.
//! 4. Per group: the sums of the contributions and the number of persons.
//!
//! Steps 2 to 4 run as a single streaming pass when the input delivers each person's rows
//! contiguously (tables are stored sorted by person); the plan above is the fall-back and the
//! reference (see `streaming.rs`).
//!
//! One person therefore changes at most L groups (1 without GROUP BY), each count by at most C
//! (1 for distinct persons) and each sum by at most `C·max(|lo|, |hi|)`: L1 sensitivity
//! `L·C·b`, L2 `√L·C·b`.
//!
//! # Keys
//!
//! A GROUP BY key whose lineage is a column listed in a public key domain of the catalog is
//! **public**: with all keys public, exactly the cartesian product of the domains is released
//! (at most [`MAX_PUBLIC_CELLS`] cells), zero-filled, other values dropped, no threshold. With any
//! private key, groups are released only if their noisy person count passes OpenDP's Gaussian
//! threshold (needs δ > 0, else `dp_private_keys_need_delta`); public keys among them are still
//! restricted to their domains. That noisy person count is also the answer of a
//! `count(DISTINCT person_id)` without FILTER (no extra budget).
//!
//! # Budget
//!
//! `allocate(request, measurements, private keys)`: one measurement per count or sum, two per
//! mean (sum and count), three per variance, one per median, each over the vector of released groups; integer
//! noise (discrete Gaussian / Laplace) for counts, OpenDP's lattice float noise for sums (lattice
//! 2^k with k = ⌊log2 L1⌋ − 40: the rounding adds at most 2^-40 of the sensitivity per value,
//! which the calibration absorbs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, DFSchemaRef, ScalarValue, TableReference};
use datafusion::functions::expr_fn::{coalesce, isnan, least, random};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{
    BinaryExpr, Cast, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, Operator, col, lit, when,
};
use niji_catalog::DatasetDef;
use niji_cdm::PERSON_ID;
use serde::Serialize;

use crate::accounting::{Request, Share, allocate};
use crate::error::{DpError, Result};
use crate::lineage::{Source, expr_lineage, unalias};
use crate::mechanism::{FloatNoise, IntNoise, NoiseParams, Threshold, median_params};
use crate::streaming::Spec as StreamingSpec;

/// Default L with GROUP BY: groups one person may contribute to (without GROUP BY L is 1).
pub const DEFAULT_MAX_GROUPS_PER_PERSON: u32 = 4;
/// Default C: rows one person contributes per group (counts clamp at C, sums at C × bound).
pub const DEFAULT_MAX_ROWS_PER_PERSON: u32 = 4;
/// Largest accepted L.
pub const MAX_GROUPS_PER_PERSON: u32 = 1_000;
/// Largest accepted C.
pub const MAX_ROWS_PER_PERSON: u32 = 1_000_000;
/// Largest cartesian product of public key domains released.
pub const MAX_PUBLIC_CELLS: usize = 10_000;
/// Candidates of the private median: evenly spaced over the column's bounds.
pub const MEDIAN_CANDIDATES: usize = 1_001;
/// Public bound on the number of persons fed to the median (OpenDP's quantile needs one).
pub const MEDIAN_SIZE_LIMIT: usize = 1 << 40;
/// Float lattice: outputs are multiples of 2^(⌊log2 L1⌋ − this).
const LATTICE_BITS_BELOW_SENSITIVITY: i32 = 40;

pub(crate) const UNIT: &str = "__niji_unit";
pub(crate) const PERSONS: &str = "__niji_persons";
const RANK: &str = "__niji_rank";

/// The researcher's privacy request and contribution bounds for one `dp` query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DpParams {
    /// (ε, δ) to spend: exactly what is charged.
    pub request: Request,
    /// L: groups one person may contribute to; default [`DEFAULT_MAX_GROUPS_PER_PERSON`] with
    /// GROUP BY (ignored without: there is one group).
    pub max_groups_per_person: Option<u32>,
    /// C: rows one person contributes per group; default [`DEFAULT_MAX_ROWS_PER_PERSON`].
    pub max_rows_per_person: Option<u32>,
}

/// The noise carried by one released output column. An output column may carry several
/// (a mean carries its sum's and its count's; an expression over several aggregates all of
/// theirs; a private key column the threshold's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DpColumn {
    /// Output column name.
    pub column: String,
    /// The mechanism and its scale and 95 % half-width.
    pub noise: NoiseParams,
    /// What the noise is on: `count`, `sum`, `avg_sum`, `avg_count`, `median`, or
    /// `partition_selection` (private keys: the group is released only above the threshold).
    pub statistic: &'static str,
}

/// What a researcher's aggregate computes, after analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    /// count(*), count(expr)
    Count,
    /// count(DISTINCT person)
    Persons,
    Sum,
    Avg,
    Median,
    /// Variance or standard deviation: `sample` (n − 1 denominator), `sqrt` (standard deviation).
    Var {
        sample: bool,
        sqrt: bool,
    },
}

impl AggKind {
    /// Aggregates over a bounded value.
    pub(crate) fn bounded(self) -> bool {
        matches!(self, AggKind::Sum | AggKind::Avg | AggKind::Median | AggKind::Var { .. })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AggSpec {
    pub kind: AggKind,
    /// Clamping bounds (Sum, Avg, Median).
    pub bounds: Option<(f64, f64)>,
    /// Count of distinct persons answered by the threshold's noisy count.
    pub from_threshold: bool,
}

/// One noisy measurement over the vector of released groups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Measure {
    /// Integer noise on bounding-output column `column`.
    Int { column: String, l1: f64, l2: f64 },
    /// Float noise on bounding-output column `column`.
    Float { column: String, l1: f64, l2: f64 },
    /// Private median of the per-person values of median plan `plan`.
    Median { plan: usize, bounds: (f64, f64) },
}

#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub agg: usize,
    pub statistic: &'static str,
    pub measure: Measure,
}

/// How the groups are released.
#[derive(Debug, Clone)]
pub(crate) enum Keys {
    /// No GROUP BY: one row.
    None,
    /// All keys public: the cartesian product of these domains (values typed as the keys).
    Public(Vec<Vec<ScalarValue>>),
    /// At least one private key: threshold on the noisy person count.
    Private,
}

/// An analysed `dp` query, ready to cost, dry-run or execute.
#[derive(Debug, Clone)]
pub struct DpPlan {
    pub(crate) original: LogicalPlan,
    /// Nodes above the aggregate, outermost first.
    pub(crate) top: Vec<LogicalPlan>,
    /// The researcher's aggregate's output schema (group keys then aggregates).
    pub(crate) agg_schema: DFSchemaRef,
    pub(crate) n_groups: usize,
    pub(crate) aggs: Vec<AggSpec>,
    pub(crate) keys: Keys,
    pub(crate) measurements: Vec<Measurement>,
    pub(crate) bounding: LogicalPlan,
    /// Per-person values for each median (one column, `value`).
    pub(crate) median_plans: Vec<LogicalPlan>,
    /// The streaming bounding over person-contiguous input (`None`: medians need the general
    /// plan); it falls back to `bounding` whenever the input is not person-contiguous.
    pub(crate) streaming: Option<StreamingSpec>,
    pub(crate) params: DpParams,
    pub(crate) l: u32,
    pub(crate) c: u32,
    /// Output columns of the final answer with the aggregates (and, at `n_aggs + i`, the group
    /// keys i) they depend on.
    pub(crate) outputs: Vec<(String, BTreeSet<usize>)>,
    /// Text of what the catalog contributed (bounds, domains), for the cache key.
    pub(crate) catalog_text: String,
    /// Test hook: the noise is built with `scale × scale_factor` (a deliberately mis-scaled
    /// mechanism) to show the audit detects it.
    #[cfg(test)]
    pub(crate) scale_factor: f64,
}

fn unsupported(why: impl Into<String>) -> DpError {
    DpError::Unsupported(why.into())
}

fn has_subquery(exprs: &[Expr]) -> bool {
    exprs.iter().any(|e| {
        e.exists(|x| Ok(matches!(x, Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)))).unwrap_or(true)
    })
}

/// Catalog look-ups by lineage.
struct Catalog<'a> {
    tables: &'a dyn Fn(&TableReference) -> Option<(String, String)>,
    datasets: &'a [DatasetDef],
}

impl Catalog<'_> {
    fn resolve(&self, s: &Source) -> Option<(&DatasetDef, String)> {
        let (dataset, table) = (self.tables)(&s.table)?;
        let def = self.datasets.iter().find(|d| d.name == dataset)?;
        Some((def, table))
    }

    fn bounds(&self, s: &Source) -> Option<(f64, f64)> {
        let (def, table) = self.resolve(s)?;
        let b = def.bounds.get(&table)?.get(&s.column)?;
        (b.lower.is_finite() && b.upper.is_finite() && b.lower < b.upper).then_some((b.lower, b.upper))
    }

    /// The public domain (name, values) of a column, if any.
    fn domain(&self, s: &Source) -> Option<(String, Vec<String>)> {
        let (def, table) = self.resolve(s)?;
        let qualified = format!("{table}.{}", s.column);
        def.public_keys
            .iter()
            .find(|(_, d)| d.columns.contains(&qualified))
            .map(|(name, d)| (format!("{}.{name}", def.name), d.values.clone()))
    }

    fn is_person(&self, s: &Source) -> bool {
        s.column == PERSON_ID
    }
}

/// Checks the plan below the aggregate: no windows, subquery expressions or LIMIT (they make a
/// person's rows depend on other persons), and every join pairs person columns by equality.
fn check_below(plan: &LogicalPlan, inherited: &[Expr], cat: &Catalog<'_>) -> Result<()> {
    if has_subquery(&plan.expressions()) {
        return Err(unsupported("subqueries in expressions (IN, EXISTS, scalar) below the aggregation"));
    }
    match plan {
        LogicalPlan::Window(_) => {
            return Err(unsupported(
                "window functions below the aggregation (a row's value would depend on other persons)",
            ));
        }
        LogicalPlan::Limit(_) => {
            return Err(unsupported("LIMIT below the aggregation (which rows remain would depend on other persons)"));
        }
        LogicalPlan::Subquery(_) => return Err(unsupported("subqueries below the aggregation")),
        LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Join(_)) => {
            let mut conj = inherited.to_vec();
            conj.extend(split_and(&f.predicate));
            return check_below(&f.input, &conj, cat);
        }
        LogicalPlan::Join(j) => {
            let mut conj: Vec<Expr> = inherited.to_vec();
            if let Some(f) = &j.filter {
                conj.extend(split_and(f));
            }
            let mut pairs: Vec<(&Expr, &Expr)> = j.on.iter().map(|(l, r)| (l, r)).collect();
            let eqs: Vec<(Expr, Expr)> = conj
                .iter()
                .filter_map(|e| match e {
                    Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
                        Some((left.as_ref().clone(), right.as_ref().clone()))
                    }
                    _ => None,
                })
                .collect();
            pairs.extend(eqs.iter().map(|(l, r)| (l, r)));
            let person_on = |side: &LogicalPlan, e: &Expr| -> bool {
                matches!(unalias(e), Expr::Column(_)) && expr_lineage(side, e).is_some_and(|s| cat.is_person(&s))
            };
            let ok = pairs.iter().any(|(a, b)| {
                (person_on(&j.left, a) && person_on(&j.right, b)) || (person_on(&j.left, b) && person_on(&j.right, a))
            });
            if !ok {
                return Err(unsupported(
                    "a join that does not pair person_id of both sides by equality (JOIN … ON a.person_id = b.person_id)",
                ));
            }
            // Conjuncts of an enclosing WHERE also constrain joins nested in this one.
            check_below(&j.left, &conj, cat)?;
            return check_below(&j.right, &conj, cat);
        }
        _ => {}
    }
    for input in plan.inputs() {
        check_below(input, &[], cat)?;
    }
    Ok(())
}

fn split_and(e: &Expr) -> Vec<Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            let mut v = split_and(left);
            v.extend(split_and(right));
            v
        }
        other => vec![other.clone()],
    }
}

/// `x` as Float64 clamped to `[lo, hi]`, NaN as NULL, NULL kept.
fn clamp_expr(x: Expr, lo: f64, hi: f64) -> Expr {
    let v = Expr::Cast(Cast::new(Box::new(x), DataType::Float64));
    clamp_f64(v, lo, hi, true)
}

fn clamp_f64(v: Expr, lo: f64, hi: f64, nan_to_null: bool) -> Expr {
    let mut w = if nan_to_null {
        when(isnan(v.clone()), lit(ScalarValue::Float64(None))).when(v.clone().lt(lit(lo)), lit(lo))
    } else {
        when(v.clone().lt(lit(lo)), lit(lo))
    };
    w = w.when(v.clone().gt(lit(hi)), lit(hi));
    // `otherwise` only fails without a WHEN, and there is one.
    w.otherwise(v).unwrap_or_else(|_| lit(ScalarValue::Float64(None)))
}

fn value_name(j: usize) -> String {
    format!("__niji_x{j}")
}
fn count_name(j: usize) -> String {
    format!("__niji_n{j}")
}
fn sum_name(j: usize) -> String {
    format!("__niji_s{j}")
}
pub(crate) fn contrib_name(j: usize) -> String {
    format!("__niji_c{j}")
}
pub(crate) fn squares_name(j: usize) -> String {
    format!("__niji_q{j}")
}
pub(crate) fn denominator_name(j: usize) -> String {
    format!("__niji_d{j}")
}
pub(crate) fn group_name(i: usize) -> String {
    format!("__niji_g{i}")
}

impl DpPlan {
    /// Analyse an unoptimized researcher plan (from `SessionState::statement_to_plan`), check
    /// that `dp` can release it, and build the contribution-bounding plan. `tables` maps a
    /// scan's table reference to (dataset, CDM table); `datasets` are the catalog definitions
    /// (bounds and public key domains).
    pub fn analyse(
        plan: &LogicalPlan,
        tables: &dyn Fn(&TableReference) -> Option<(String, String)>,
        datasets: &[DatasetDef],
        params: &DpParams,
    ) -> Result<DpPlan> {
        params.request.validate()?;
        niji_policy::check_plan(plan).map_err(DpError::from_policy)?;
        let cat = Catalog { tables, datasets };
        let c = params.max_rows_per_person.unwrap_or(DEFAULT_MAX_ROWS_PER_PERSON);
        if !(1..=MAX_ROWS_PER_PERSON).contains(&c) {
            return Err(DpError::InvalidArgument(format!(
                "max_rows_per_person must be in 1..={MAX_ROWS_PER_PERSON}, got {c}"
            )));
        }
        let l_param = params.max_groups_per_person.unwrap_or(DEFAULT_MAX_GROUPS_PER_PERSON);
        if !(1..=MAX_GROUPS_PER_PERSON).contains(&l_param) {
            return Err(DpError::InvalidArgument(format!(
                "max_groups_per_person must be in 1..={MAX_GROUPS_PER_PERSON}, got {l_param}"
            )));
        }

        // The chain above the aggregate.
        let mut top = Vec::new();
        let mut node = plan;
        let agg = loop {
            match node {
                LogicalPlan::Aggregate(a) => break a,
                LogicalPlan::Projection(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::SubqueryAlias(_) => {
                    if has_subquery(&node.expressions()) {
                        return Err(unsupported("subqueries in the released columns, HAVING, ORDER BY or LIMIT"));
                    }
                    top.push(node.clone());
                    node = node.inputs()[0];
                }
                LogicalPlan::Window(_) => return Err(unsupported("window functions over released aggregates")),
                LogicalPlan::Distinct(_) => return Err(unsupported("DISTINCT over released aggregates")),
                LogicalPlan::Union(_) => return Err(unsupported("UNION of released aggregates")),
                LogicalPlan::Join(_) => return Err(unsupported("a join of released aggregates")),
                _ => {
                    return Err(unsupported(
                        "the query must aggregate at its top (GROUP BY or an aggregate function): dp releases aggregates only",
                    ));
                }
            }
        };
        let input = agg.input.as_ref();
        if has_subquery(&agg.group_expr) || has_subquery(&agg.aggr_expr) {
            return Err(unsupported("subqueries in GROUP BY keys or aggregate arguments"));
        }
        check_below(input, &[], &cat)?;
        let carried = niji_policy::carry_person(input).map_err(DpError::from_policy)?;
        if carried.persons.is_empty() {
            return Err(DpError::NoPrivacyUnit("the aggregation's input has no person_id".into()));
        }

        // Group keys.
        let n_groups = agg.group_expr.len();
        let mut catalog_text = String::new();
        let mut domains: Vec<Option<Vec<ScalarValue>>> = Vec::new();
        for (i, g) in agg.group_expr.iter().enumerate() {
            if matches!(g, Expr::GroupingSet(_)) {
                return Err(unsupported("GROUPING SETS, ROLLUP and CUBE"));
            }
            let field = agg.schema.field(i);
            let domain = expr_lineage(input, g).and_then(|s| cat.domain(&s));
            match domain {
                Some((name, values)) => {
                    let typed = values
                        .iter()
                        .map(|v| ScalarValue::try_from_string(v.clone(), field.data_type()))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|_| {
                            DpError::Plan(format!(
                                "public key domain `{name}` has values that are not of type {}",
                                field.data_type()
                            ))
                        })?;
                    let _ = writeln!(catalog_text, "key {i}: public {name} {values:?}");
                    domains.push(Some(typed));
                }
                None => {
                    let _ = writeln!(catalog_text, "key {i}: private");
                    domains.push(None);
                }
            }
        }
        let keys = if n_groups == 0 {
            Keys::None
        } else if domains.iter().all(Option::is_some) {
            let d: Vec<Vec<ScalarValue>> = domains.iter().flatten().cloned().collect();
            let cells = d.iter().try_fold(1usize, |acc, v| acc.checked_mul(v.len()));
            if cells.is_none_or(|n| n > MAX_PUBLIC_CELLS) {
                return Err(unsupported(format!("the public key domains give more than {MAX_PUBLIC_CELLS} cells")));
            }
            Keys::Public(d)
        } else {
            if params.request.delta == 0.0 {
                return Err(DpError::DeltaRequired);
            }
            Keys::Private
        };
        let l = if n_groups == 0 { 1 } else { l_param };

        // Aggregates.
        let mut aggs = Vec::new();
        let mut values: Vec<Expr> = Vec::new();
        for (j, e) in agg.aggr_expr.iter().enumerate() {
            let name = agg.schema.field(n_groups + j).name().clone();
            let Expr::AggregateFunction(f) = unalias(e) else {
                return Err(unsupported(format!("`{name}`: an aggregate expression that is not a function")));
            };
            let fname = f.func.name().to_ascii_lowercase();
            let p = &f.params;
            let arg = p.args.first().cloned();
            if p.args.len() > 1 {
                return Err(unsupported(format!("`{name}`: aggregates of several arguments")));
            }
            let kind = match (fname.as_str(), p.distinct) {
                ("count", false) => AggKind::Count,
                ("count", true) => {
                    let is_person = arg.as_ref().is_some_and(|a| {
                        matches!(unalias(a), Expr::Column(_))
                            && expr_lineage(input, a).is_some_and(|s| cat.is_person(&s))
                    });
                    if !is_person {
                        return Err(unsupported(format!(
                            "`{name}`: DISTINCT is released only as count(DISTINCT person_id)"
                        )));
                    }
                    AggKind::Persons
                }
                ("sum", false) => AggKind::Sum,
                ("avg" | "mean", false) => AggKind::Avg,
                ("median", false) => AggKind::Median,
                ("var" | "var_samp" | "variance" | "variance_samp", false) => {
                    AggKind::Var { sample: true, sqrt: false }
                }
                ("var_pop" | "variance_pop", false) => AggKind::Var { sample: false, sqrt: false },
                ("stddev" | "stddev_samp", false) => AggKind::Var { sample: true, sqrt: true },
                ("stddev_pop", false) => AggKind::Var { sample: false, sqrt: true },
                (_, true) => {
                    return Err(unsupported(format!(
                        "`{name}`: DISTINCT aggregates other than count(DISTINCT person_id)"
                    )));
                }
                _ => {
                    return Err(unsupported(format!(
                        "`{name}`: dp releases count, count(DISTINCT person_id), sum, avg, median, var and stddev"
                    )));
                }
            };
            let arg = arg.unwrap_or_else(|| lit(1i64));
            let bounds = match kind {
                k if k.bounded() => {
                    let b = expr_lineage(input, &arg).and_then(|s| cat.bounds(&s));
                    let Some(b) = b else { return Err(DpError::UnboundedColumn(name)) };
                    let _ = writeln!(catalog_text, "agg {j}: bounds [{:?}, {:?}]", b.0, b.1);
                    Some(b)
                }
                _ => None,
            };
            if kind == AggKind::Median && n_groups > 0 {
                return Err(unsupported(format!("`{name}`: median with GROUP BY")));
            }
            let mut x = match (kind, bounds) {
                (k, Some((lo, hi))) if k.bounded() => clamp_expr(arg, lo, hi),
                (AggKind::Persons, _) => lit(1i64),
                _ => arg,
            };
            if let Some(filter) = &p.filter {
                x = when(filter.as_ref().clone().is_true(), x)
                    .otherwise(lit(ScalarValue::Null))
                    .map_err(DpError::plan("FILTER clause"))?;
            }
            values.push(x.alias(value_name(j)));
            let from_threshold = kind == AggKind::Persons && p.filter.is_none() && matches!(keys, Keys::Private);
            aggs.push(AggSpec { kind, bounds, from_threshold });
        }

        // Measurements and sensitivities.
        let (lf, cf) = (f64::from(l), f64::from(c));
        let mut measurements = Vec::new();
        let mut median_count = 0;
        for (j, a) in aggs.iter().enumerate() {
            let count_measure =
                |column: String, per_group: f64| Measure::Int { column, l1: lf * per_group, l2: lf.sqrt() * per_group };
            let sum_measure = |column: String, (lo, hi): (f64, f64)| {
                let per_group = cf * lo.abs().max(hi.abs());
                Measure::Float { column, l1: lf * per_group, l2: lf.sqrt() * per_group }
            };
            match (a.kind, a.bounds) {
                (AggKind::Count, _) => measurements.push(Measurement {
                    agg: j,
                    statistic: "count",
                    measure: count_measure(contrib_name(j), cf),
                }),
                (AggKind::Persons, _) if a.from_threshold => {}
                (AggKind::Persons, _) => measurements.push(Measurement {
                    agg: j,
                    statistic: "count",
                    measure: count_measure(contrib_name(j), 1.0),
                }),
                (AggKind::Sum, Some(b)) => measurements.push(Measurement {
                    agg: j,
                    statistic: "sum",
                    measure: sum_measure(contrib_name(j), b),
                }),
                (AggKind::Avg, Some(b)) => {
                    measurements.push(Measurement {
                        agg: j,
                        statistic: "avg_sum",
                        measure: sum_measure(contrib_name(j), b),
                    });
                    measurements.push(Measurement {
                        agg: j,
                        statistic: "avg_count",
                        measure: count_measure(denominator_name(j), cf),
                    });
                }
                (AggKind::Var { .. }, Some((lo, hi))) => {
                    // Centred at the midpoint m: Σ(x − m) per person within C·h, Σ(x − m)² within
                    // C·h², h = (hi − lo) / 2.
                    let h = (hi - lo) / 2.0;
                    measurements.push(Measurement {
                        agg: j,
                        statistic: "var_sum",
                        measure: sum_measure(contrib_name(j), (-h, h)),
                    });
                    measurements.push(Measurement {
                        agg: j,
                        statistic: "var_sum_squares",
                        measure: sum_measure(squares_name(j), (0.0, h * h)),
                    });
                    measurements.push(Measurement {
                        agg: j,
                        statistic: "var_count",
                        measure: count_measure(denominator_name(j), cf),
                    });
                }
                (AggKind::Median, Some(bounds)) => {
                    measurements.push(Measurement {
                        agg: j,
                        statistic: "median",
                        measure: Measure::Median { plan: median_count, bounds },
                    });
                    median_count += 1;
                }
                _ => return Err(DpError::Plan("an aggregate lost its bounds".into())),
            }
        }
        if measurements.is_empty() && !matches!(keys, Keys::Private) {
            return Err(unsupported("a query without aggregates over public or no keys releases nothing to measure"));
        }
        // Fails early (before any data is read) if the budget cannot be split.
        allocate(&params.request, measurements.len(), matches!(keys, Keys::Private))?;

        let (bounding, median_plans, (rows, value_columns)) =
            bounding_plans(&carried.plan, &carried.persons, agg, &aggs, values, &domains, l, c)?;
        let streaming = StreamingSpec::supported(&aggs).then(|| StreamingSpec {
            rows,
            value_columns,
            n_groups,
            aggs: aggs.clone(),
            domains: domains.clone(),
            l: l as usize,
            c: f64::from(c),
        });
        let outputs = trace_outputs(plan, &top, agg.schema.fields().len(), n_groups)?;
        Ok(DpPlan {
            original: plan.clone(),
            top,
            agg_schema: agg.schema.clone(),
            n_groups,
            aggs,
            keys,
            measurements,
            bounding,
            median_plans,
            streaming,
            params: *params,
            l,
            c,
            outputs,
            catalog_text,
            #[cfg(test)]
            scale_factor: 1.0,
        })
    }

    /// The (ε, δ) to charge: exactly the request, whatever the query.
    pub fn cost(&self) -> (f64, f64) {
        (self.params.request.epsilon, self.params.request.delta)
    }

    /// L and C in effect (L is 1 without GROUP BY).
    pub fn bounds_in_effect(&self) -> (u32, u32) {
        (self.l, self.c)
    }

    /// The contribution-bounding plan DataFusion runs (its output: group keys `__niji_g*`,
    /// `__niji_persons`, then the bounded sums `__niji_c*` / `__niji_d*`). For inspection and
    /// tests; its result is exact and must never be released.
    pub fn bounding_plan(&self) -> &LogicalPlan {
        &self.bounding
    }

    /// The noise each output column will carry, computed from the parameters alone (no data is
    /// read): for `dry_run`, and the same as [`DpAnswer::columns`](crate::DpAnswer). With private
    /// keys the float lattice depends on how many groups pass the threshold; the scales shown
    /// are for one group and differ from the released ones by less than one part in 10^9.
    pub fn expected_noise(&self) -> Result<Vec<DpColumn>> {
        let len = match &self.keys {
            Keys::None | Keys::Private => 1,
            Keys::Public(d) => d.iter().map(Vec::len).product(),
        };
        let mechs = self.mechanisms(len)?;
        Ok(self.describe(&mechs))
    }

    /// Stable text identifying the query for the answer cache: the researcher's plan, the
    /// privacy parameters and the catalog bounds and domains used. No randomness; the caller
    /// adds the dataset versions.
    pub fn normalized_key(&self) -> String {
        format!(
            "niji-dp/1\n{}\nepsilon={:?} delta={:?} L={} C={}\n{}",
            self.original.display_indent_schema(),
            self.params.request.epsilon,
            self.params.request.delta,
            self.l,
            self.c,
            self.catalog_text
        )
    }

    /// The budget split: shares for the value measurements in order, then the threshold's.
    pub(crate) fn allocation(&self) -> Result<crate::accounting::Allocation> {
        allocate(&self.params.request, self.measurements.len(), matches!(self.keys, Keys::Private))
    }

    /// Builds every mechanism for `len` released groups.
    pub(crate) fn mechanisms(&self, len: usize) -> Result<Mechanisms> {
        let alloc = self.allocation()?;
        let threshold = match alloc.threshold() {
            Some(t) => Some(Threshold::new(self.l, 1, &t.share(), t.delta)?),
            None => None,
        };
        let mut values = Vec::new();
        for (i, m) in self.measurements.iter().enumerate() {
            let share =
                alloc.value(i).ok_or_else(|| DpError::Plan("allocation shorter than the measurements".into()))?;
            values.push(self.mechanism(&m.measure, &share, len)?);
        }
        Ok(Mechanisms { values, threshold })
    }

    fn mechanism(&self, m: &Measure, share: &Share, len: usize) -> Result<Mechanism> {
        Ok(match m {
            Measure::Int { l1, l2, .. } => {
                let n = IntNoise::new(*l1, *l2, share)?;
                #[cfg(test)]
                let n = if self.scale_factor == 1.0 {
                    n
                } else {
                    let sens = if matches!(share, Share::Rho(_)) { *l2 } else { *l1 };
                    IntNoise::with_scale(share, n.scale() * self.scale_factor, sens)?
                };
                Mechanism::Int(n)
            }
            Measure::Float { l1, l2, .. } => {
                let k = (l1.log2().floor() as i32) - LATTICE_BITS_BELOW_SENSITIVITY;
                let n = FloatNoise::with_lattice(*l1, *l2, share, k, len.max(1))?;
                #[cfg(test)]
                let n = if self.scale_factor == 1.0 {
                    n
                } else {
                    let sens = if matches!(share, Share::Rho(_)) { *l2 } else { *l1 };
                    FloatNoise::with_scale(share, n.scale() * self.scale_factor, sens)?
                };
                Mechanism::Float(n)
            }
            Measure::Median { bounds, .. } => {
                Mechanism::Median { params: median_params(*bounds, MEDIAN_CANDIDATES, share)?, share: *share }
            }
        })
    }

    /// Which output columns carry which noise.
    pub(crate) fn describe(&self, mechs: &Mechanisms) -> Vec<DpColumn> {
        let n_aggs = self.aggs.len();
        let mut out = Vec::new();
        for (column, deps) in &self.outputs {
            for d in deps {
                if *d >= n_aggs {
                    if let Some(t) = &mechs.threshold {
                        out.push(DpColumn {
                            column: column.clone(),
                            noise: t.params(),
                            statistic: "partition_selection",
                        });
                    }
                    continue;
                }
                if self.aggs[*d].from_threshold
                    && let Some(t) = &mechs.threshold
                {
                    out.push(DpColumn { column: column.clone(), noise: t.params(), statistic: "count" });
                }
                for (m, mech) in self.measurements.iter().zip(&mechs.values) {
                    if m.agg == *d {
                        out.push(DpColumn { column: column.clone(), noise: mech.params(), statistic: m.statistic });
                    }
                }
            }
        }
        out
    }
}

/// The built mechanisms of a query.
pub(crate) struct Mechanisms {
    pub values: Vec<Mechanism>,
    pub threshold: Option<Threshold>,
}

pub(crate) enum Mechanism {
    Int(IntNoise),
    Float(FloatNoise),
    /// Built at release time by `private_median` (it needs the values); params precomputed.
    Median {
        params: NoiseParams,
        share: Share,
    },
}

impl Mechanism {
    pub fn params(&self) -> NoiseParams {
        match self {
            Mechanism::Int(n) => n.params(),
            Mechanism::Float(n) => n.params(),
            Mechanism::Median { params, .. } => params.clone(),
        }
    }
}

/// The general bounding plan, the median plans, and the streaming row stage with the column of
/// each aggregate's value.
type BoundingPlans = (LogicalPlan, Vec<LogicalPlan>, (LogicalPlan, Vec<Option<usize>>));

/// Builds the bounding plan (per-group bounded sums) and one per-person value plan per median.
#[allow(clippy::too_many_arguments)]
fn bounding_plans(
    carried: &LogicalPlan,
    persons: &[Column],
    agg: &datafusion::logical_expr::Aggregate,
    aggs: &[AggSpec],
    values: Vec<Expr>,
    domains: &[Option<Vec<ScalarValue>>],
    l: u32,
    c: u32,
) -> Result<BoundingPlans> {
    let err = DpError::plan;
    let unit = if persons.len() == 1 {
        Expr::Column(persons[0].clone())
    } else {
        coalesce(persons.iter().cloned().map(Expr::Column).collect())
    };
    let n_groups = agg.group_expr.len();
    // Stage 0: one row per input row.
    let mut exprs = vec![unit.alias(UNIT)];
    exprs.extend(agg.group_expr.iter().enumerate().map(|(i, g)| unalias(g).clone().alias(group_name(i))));
    // The streaming path applies the public domains per group, not per row, and needs no
    // column for a value that is never NULL (count(*)): every row counts.
    let mut streaming_exprs = exprs.clone();
    let mut value_columns = Vec::with_capacity(values.len());
    for v in &values {
        if matches!(unalias(v), Expr::Literal(x, _) if !x.is_null()) {
            value_columns.push(None);
        } else {
            value_columns.push(Some(streaming_exprs.len()));
            streaming_exprs.push(v.clone());
        }
    }
    let streaming_rows = LogicalPlanBuilder::from(carried.clone())
        .project(streaming_exprs)
        .and_then(|b| b.filter(col(UNIT).is_not_null()))
        .and_then(|b| b.build())
        .map_err(err("row stage"))?;
    exprs.extend(values);
    let mut b = LogicalPlanBuilder::from(carried.clone()).project(exprs).map_err(err("row stage"))?;
    let mut keep = col(UNIT).is_not_null();
    for (i, d) in domains.iter().enumerate() {
        if let Some(values) = d {
            let list = values.iter().cloned().map(lit).collect();
            keep = keep.and(Expr::InList(InList::new(Box::new(col(group_name(i))), list, false)));
        }
    }
    b = b.filter(keep).map_err(err("row stage"))?;
    let rows = b.build().map_err(err("row stage"))?;

    // Stage 1: per (person, group).
    let mut keys = vec![col(UNIT)];
    keys.extend((0..n_groups).map(|i| col(group_name(i))));
    let mut partials = Vec::new();
    for (j, a) in aggs.iter().enumerate() {
        partials.push(count(col(value_name(j))).alias(count_name(j)));
        match (a.kind, a.bounds) {
            (AggKind::Var { .. }, Some((lo, hi))) => {
                let centred = col(value_name(j)) - lit((lo + hi) / 2.0);
                partials.push(sum(centred.clone()).alias(sum_name(j)));
                partials.push(sum(centred.clone() * centred).alias(squares_name(j)));
            }
            (k, _) if k.bounded() => partials.push(sum(col(value_name(j))).alias(sum_name(j))),
            _ => {}
        }
    }
    let per_person =
        LogicalPlanBuilder::from(rows).aggregate(keys.clone(), partials).map_err(err("per-person stage"))?;
    let per_person_plan = per_person.build().map_err(err("per-person stage"))?;

    let cf = f64::from(c);
    let mut contribs = keys.clone();
    let mut medians = Vec::new();
    for (j, a) in aggs.iter().enumerate() {
        let n = col(count_name(j));
        let s = col(sum_name(j));
        let capped = least(vec![n.clone(), lit(i64::from(c))]);
        match (a.kind, a.bounds) {
            (AggKind::Count, _) => contribs.push(capped.alias(contrib_name(j))),
            (AggKind::Persons, _) => contribs.push(least(vec![n, lit(1i64)]).alias(contrib_name(j))),
            (AggKind::Sum | AggKind::Avg, Some((lo, hi))) => {
                let weight = least(vec![lit(1.0f64), lit(cf) / Expr::Cast(Cast::new(Box::new(n), DataType::Float64))]);
                let scaled = coalesce(vec![s * weight, lit(0.0f64)]);
                contribs.push(clamp_f64(scaled, cf * lo.min(0.0), cf * hi.max(0.0), false).alias(contrib_name(j)));
                if a.kind == AggKind::Avg {
                    contribs.push(capped.alias(denominator_name(j)));
                }
            }
            (AggKind::Var { .. }, Some((lo, hi))) => {
                let h = (hi - lo) / 2.0;
                let weight = || {
                    least(vec![lit(1.0f64), lit(cf) / Expr::Cast(Cast::new(Box::new(n.clone()), DataType::Float64))])
                };
                let scaled = coalesce(vec![s * weight(), lit(0.0f64)]);
                contribs.push(clamp_f64(scaled, -cf * h, cf * h, false).alias(contrib_name(j)));
                let squares = coalesce(vec![col(squares_name(j)) * weight(), lit(0.0f64)]);
                contribs.push(clamp_f64(squares, 0.0, cf * h * h, false).alias(squares_name(j)));
                contribs.push(capped.alias(denominator_name(j)));
            }
            (AggKind::Median, Some(_)) => {
                let mean = s / Expr::Cast(Cast::new(Box::new(n), DataType::Float64));
                let plan = LogicalPlanBuilder::from(per_person_plan.clone())
                    .project(vec![mean.alias("value")])
                    .and_then(|b| b.filter(col("value").is_not_null()))
                    .and_then(|b| b.build())
                    .map_err(err("median stage"))?;
                medians.push(plan);
            }
            _ => return Err(DpError::Plan("an aggregate lost its bounds".into())),
        }
    }
    let mut b = LogicalPlanBuilder::from(per_person_plan).project(contribs).map_err(err("per-person stage"))?;

    // Stage 2: at most L groups per person, uniformly at random.
    if n_groups > 0 {
        let rank = row_number()
            .partition_by(vec![col(UNIT)])
            .order_by(vec![random().sort(true, false)])
            .build()
            .map_err(err("group selection"))?
            .alias(RANK);
        b = b
            .window(vec![rank])
            .and_then(|b| b.filter(col(RANK).lt_eq(lit(u64::from(l)))))
            .map_err(err("group selection"))?;
    }

    // Stage 3: per group.
    let groups: Vec<Expr> = (0..n_groups).map(|i| col(group_name(i))).collect();
    let mut totals = vec![count(lit(1i64)).alias(PERSONS)];
    for (j, a) in aggs.iter().enumerate() {
        if a.kind == AggKind::Median {
            continue;
        }
        totals.push(sum(col(contrib_name(j))).alias(contrib_name(j)));
        if matches!(a.kind, AggKind::Var { .. }) {
            totals.push(sum(col(squares_name(j))).alias(squares_name(j)));
        }
        if matches!(a.kind, AggKind::Avg | AggKind::Var { .. }) {
            totals.push(sum(col(denominator_name(j))).alias(denominator_name(j)));
        }
    }
    let bounding = b.aggregate(groups, totals).and_then(|b| b.build()).map_err(err("group stage"))?;
    Ok((bounding, medians, (streaming_rows, value_columns)))
}

/// For each output column of the final plan, the aggregates (index j) and group keys
/// (index n_aggs + i) it depends on.
fn trace_outputs(
    plan: &LogicalPlan,
    top: &[LogicalPlan],
    agg_width: usize,
    n_groups: usize,
) -> Result<Vec<(String, BTreeSet<usize>)>> {
    let n_aggs = agg_width - n_groups;
    // Dependencies of the aggregate's own columns.
    let mut deps: Vec<BTreeSet<usize>> = (0..agg_width)
        .map(|i| if i < n_groups { BTreeSet::from([n_aggs + i]) } else { BTreeSet::from([i - n_groups]) })
        .collect();
    for node in top.iter().rev() {
        let input = node.inputs()[0];
        deps = match node {
            LogicalPlan::Projection(p) => p
                .expr
                .iter()
                .map(|e| {
                    let mut set = BTreeSet::new();
                    for c in e.column_refs() {
                        if let Ok(k) = input.schema().index_of_column(c) {
                            set.extend(deps[k].iter().copied());
                        }
                    }
                    set
                })
                .collect(),
            _ => deps,
        };
        if deps.len() != node.schema().fields().len() {
            return Err(DpError::Plan("tracing the released columns lost track of the schema".into()));
        }
    }
    let schema = plan.schema();
    let mut by_name: BTreeMap<usize, (String, BTreeSet<usize>)> = BTreeMap::new();
    for (i, d) in deps.into_iter().enumerate() {
        by_name.insert(i, (schema.field(i).name().clone(), d));
    }
    Ok(by_name.into_values().collect())
}

/// Reused by the executor: the output plan over the noisy aggregate rows.
pub(crate) fn rebuild_top(top: &[LogicalPlan], bottom: LogicalPlan) -> Result<LogicalPlan> {
    let mut plan = bottom;
    for node in top.iter().rev() {
        plan = node.with_new_exprs(node.expressions(), vec![plan]).map_err(DpError::plan("release stage"))?;
    }
    Ok(plan)
}
