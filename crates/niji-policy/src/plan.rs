//! Checks and rewrites on DataFusion logical plans.
//!
//! * [`check_plan`] refuses plan nodes the query service never runs (EXPLAIN, ANALYZE, DESCRIBE,
//!   DDL, DML, COPY, statements, extensions), subqueries included.
//! * [`carry_person`] makes the privacy unit reach a node: it traces `person_id` by *lineage*
//!   (the column of a table scan, carried through projections, aliases, joins, filters), never
//!   by name, so `SELECT row_number() OVER () AS person_id` cannot pose as persons. Where a
//!   projection drops it, the column is carried along under a reserved name.
//! * [`sdc_rewrite`] adds, beside the researcher's top aggregation, the number of distinct
//!   persons of every output cell, and says which output columns are counts (to round).

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::functions_aggregate::expr_fn::count_distinct;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, SubqueryAlias};
use niji_cdm::PERSON_ID;

use crate::{PolicyError, Result};

/// Prefix of the columns the rewrites add; researcher columns may not use it.
pub const RESERVED_PREFIX: &str = "__niji_";

/// Refuse plan nodes that are not part of a read-only query, anywhere in the plan.
pub fn check_plan(plan: &LogicalPlan) -> Result<()> {
    let mut refused: Option<&'static str> = None;
    plan.apply_with_subqueries(|node| {
        let why = match node {
            LogicalPlan::Explain(_) => Some("EXPLAIN"),
            LogicalPlan::Analyze(_) => Some("EXPLAIN ANALYZE"),
            LogicalPlan::DescribeTable(_) => Some("DESCRIBE"),
            LogicalPlan::Ddl(_) => Some("DDL"),
            LogicalPlan::Dml(_) => Some("DML"),
            LogicalPlan::Copy(_) => Some("COPY"),
            LogicalPlan::Statement(_) => Some("a statement (SET, PREPARE, transactions)"),
            LogicalPlan::Extension(_) => Some("an extension plan node"),
            LogicalPlan::RecursiveQuery(_) => Some("WITH RECURSIVE"),
            _ => None,
        };
        if let Some(w) = why {
            refused = Some(w);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| PolicyError::Internal(e.to_string()))?;
    if let Some(w) = refused {
        return Err(PolicyError::PlanRefused(w));
    }
    for field in plan.schema().fields() {
        if field.name().starts_with(RESERVED_PREFIX) {
            return Err(PolicyError::UnsupportedShape("output column names may not start with `__niji_`"));
        }
    }
    Ok(())
}

/// A plan whose output carries the person columns listed (qualified, in its schema).
#[derive(Debug, Clone)]
pub struct WithPerson {
    /// The (possibly rewritten) plan.
    pub plan: LogicalPlan,
    /// Output columns that are the privacy unit, by lineage.
    pub persons: Vec<Column>,
}

fn internal(e: impl ToString) -> PolicyError {
    PolicyError::Internal(e.to_string())
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// Output column `i` of a schema as a qualified [`Column`].
fn out_column(schema: &DFSchemaRef, i: usize) -> Column {
    let (q, f) = schema.qualified_field(i);
    Column::new(q.cloned(), f.name())
}

/// Rebuild a node over new inputs with its own expressions (its schema is recomputed).
fn rebuild(node: &LogicalPlan, inputs: Vec<LogicalPlan>) -> Result<LogicalPlan> {
    node.with_new_exprs(node.expressions(), inputs).map_err(internal)
}

/// Make the privacy unit reach the output of `plan`, carrying it through projections that drop
/// it. Refuses shapes through which a person cannot be traced (an inner aggregation that does
/// not group by person, UNION, DISTINCT without the person, VALUES).
pub fn carry_person(plan: &LogicalPlan) -> Result<WithPerson> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let persons = (0..plan.schema().fields().len())
                .map(|i| out_column(plan.schema(), i))
                .filter(|c| c.name == PERSON_ID && c.relation.as_ref() == Some(&scan.table_name))
                .collect::<Vec<_>>();
            if persons.is_empty() {
                return Err(PolicyError::PersonUnreachable("a table without person_id"));
            }
            Ok(WithPerson { plan: plan.clone(), persons })
        }
        LogicalPlan::Projection(p) => {
            let inner = carry_person(&p.input)?;
            let mut exprs = p.expr.clone();
            let mut persons = Vec::new();
            for (n, person) in inner.persons.iter().enumerate() {
                let found = exprs.iter().position(|e| matches!(unalias(e), Expr::Column(c) if c == person));
                match found {
                    Some(i) => persons.push(i),
                    None => {
                        exprs.push(Expr::Column(person.clone()).alias(format!("{RESERVED_PREFIX}person_{n}")));
                        persons.push(exprs.len() - 1);
                    }
                }
            }
            let new = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(inner.plan)).map_err(internal)?);
            let persons = persons.into_iter().map(|i| out_column(new.schema(), i)).collect();
            Ok(WithPerson { plan: new, persons })
        }
        LogicalPlan::SubqueryAlias(a) => {
            let inner = carry_person(&a.input)?;
            let idx: Vec<usize> =
                inner.persons.iter().filter_map(|c| inner.plan.schema().index_of_column(c).ok()).collect();
            let new = LogicalPlan::SubqueryAlias(
                SubqueryAlias::try_new(Arc::new(inner.plan), a.alias.clone()).map_err(internal)?,
            );
            let persons = idx.into_iter().map(|i| out_column(new.schema(), i)).collect();
            Ok(WithPerson { plan: new, persons })
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Window(_) => {
            let inner = carry_person(plan.inputs()[0])?;
            let persons = inner.persons.clone();
            Ok(WithPerson { plan: rebuild(plan, vec![inner.plan])?, persons })
        }
        LogicalPlan::Join(_) => {
            let inputs = plan.inputs();
            let (l, r) = (carry_person(inputs[0])?, carry_person(inputs[1])?);
            let mut persons = l.persons.clone();
            persons.extend(r.persons.iter().cloned());
            let new = rebuild(plan, vec![l.plan, r.plan])?;
            // Semi and anti joins output one side only.
            persons.retain(|c| new.schema().has_column(c));
            if persons.is_empty() {
                return Err(PolicyError::PersonUnreachable("a join whose output has no person_id"));
            }
            Ok(WithPerson { plan: new, persons })
        }
        LogicalPlan::Aggregate(agg) => {
            // An inner aggregation keeps the person only if it groups by the person.
            let inner = carry_person(&agg.input)?;
            if inner.plan != *agg.input.as_ref() {
                // The inner plan had to be changed to carry the person: then the grouping cannot
                // be by person (a grouping column is never dropped below it).
                return Err(PolicyError::PersonUnreachable("an inner aggregation that does not group by person_id"));
            }
            let persons: Vec<Column> = agg
                .group_expr
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(unalias(e), Expr::Column(c) if inner.persons.contains(c)))
                .map(|(i, _)| out_column(plan.schema(), i))
                .collect();
            if persons.is_empty() {
                return Err(PolicyError::PersonUnreachable("an inner aggregation that does not group by person_id"));
            }
            Ok(WithPerson { plan: plan.clone(), persons })
        }
        LogicalPlan::Distinct(_) => {
            let inner = carry_person(plan.inputs()[0])?;
            if inner.plan != *plan.inputs()[0] {
                return Err(PolicyError::PersonUnreachable("SELECT DISTINCT without person_id"));
            }
            Ok(WithPerson { plan: plan.clone(), persons: inner.persons })
        }
        LogicalPlan::Union(_) => Err(PolicyError::UnsupportedShape("UNION below the aggregation")),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            Err(PolicyError::PersonUnreachable("rows that come from no table"))
        }
        _ => Err(PolicyError::UnsupportedShape("a plan node through which person_id cannot be traced")),
    }
}

/// Aggregate functions `sdc` releases: none of them returns one person's own value.
const SDC_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
    "variance",
    "variance_pop",
    "variance_samp",
    "corr",
    "covar",
    "covar_pop",
    "covar_samp",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "bool_and",
    "bool_or",
];

/// A plan rewritten for `sdc`.
#[derive(Debug, Clone)]
pub struct SdcPlan {
    /// The plan, whose output has the researcher's columns followed by the person counts.
    pub plan: LogicalPlan,
    /// Number of the researcher's output columns (the first ones).
    pub visible: usize,
    /// Output indexes of the distinct-person counts (one per person column reaching the aggregation).
    pub persons: Vec<usize>,
    /// Output indexes (among the visible) of plain `count(…)` aggregates, to be rounded.
    pub counts: Vec<usize>,
}

struct Top {
    plan: LogicalPlan,
    /// Output columns of the added person counts.
    persons: Vec<Column>,
    /// Output columns that are plain counts.
    counts: Vec<Column>,
}

/// Rewrite an aggregate query so each output row also carries the distinct persons of its cell.
pub fn sdc_rewrite(plan: &LogicalPlan) -> Result<SdcPlan> {
    let visible = plan.schema().fields().len();
    let top = sdc_top(plan)?;
    let schema = top.plan.schema().clone();
    let index = |c: &Column| schema.index_of_column(c).map_err(internal);
    let persons = top.persons.iter().map(index).collect::<Result<Vec<_>>>()?;
    let counts = top.counts.iter().map(index).collect::<Result<Vec<_>>>()?;
    if persons.iter().any(|i| *i < visible) || counts.iter().any(|i| *i >= visible) {
        return Err(PolicyError::Internal("person counts must follow the visible columns".into()));
    }
    Ok(SdcPlan { plan: top.plan, visible, persons, counts })
}

fn has_subquery(exprs: &[Expr]) -> bool {
    exprs.iter().any(|e| {
        e.exists(|x| Ok(matches!(x, Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)))).unwrap_or(true)
    })
}

fn sdc_top(plan: &LogicalPlan) -> Result<Top> {
    match plan {
        LogicalPlan::Aggregate(agg) => {
            for e in &agg.aggr_expr {
                let name = match unalias(e) {
                    Expr::AggregateFunction(f) => f.func.name().to_ascii_lowercase(),
                    _ => return Err(PolicyError::UnsupportedShape("an aggregate expression that is not a function")),
                };
                if !SDC_AGGREGATES.contains(&name.as_str()) {
                    return Err(PolicyError::UnsupportedShape(
                        "an aggregate function that can return one person's own value (min, max, median, first_value, array_agg, …); sdc releases counts, sums, means and spreads",
                    ));
                }
            }
            let inner = carry_person(&agg.input)?;
            let n_groups = agg.group_expr.len();
            let counts_at: Vec<usize> = agg
                .aggr_expr
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(unalias(e), Expr::AggregateFunction(f) if f.func.name().eq_ignore_ascii_case("count")))
                .map(|(i, _)| n_groups + i)
                .collect();
            let mut aggr = agg.aggr_expr.clone();
            let first_added = n_groups + aggr.len();
            for (n, p) in inner.persons.iter().enumerate() {
                aggr.push(count_distinct(Expr::Column(p.clone())).alias(format!("{RESERVED_PREFIX}persons_{n}")));
            }
            let new = LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::new(inner.plan), agg.group_expr.clone(), aggr).map_err(internal)?,
            );
            let schema = new.schema().clone();
            let persons = (first_added..schema.fields().len()).map(|i| out_column(&schema, i)).collect();
            let counts = counts_at.into_iter().map(|i| out_column(&schema, i)).collect();
            Ok(Top { plan: new, persons, counts })
        }
        LogicalPlan::Projection(p) => {
            if has_subquery(&p.expr) {
                return Err(PolicyError::UnsupportedShape("a subquery in the released columns"));
            }
            let inner = sdc_top(&p.input)?;
            let mut exprs = p.expr.clone();
            let counts_at: Vec<usize> = exprs
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(unalias(e), Expr::Column(c) if inner.counts.contains(c)))
                .map(|(i, _)| i)
                .collect();
            let first_added = exprs.len();
            for (n, c) in inner.persons.iter().enumerate() {
                exprs.push(Expr::Column(c.clone()).alias(format!("{RESERVED_PREFIX}persons_{n}")));
            }
            let new = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(inner.plan)).map_err(internal)?);
            let schema = new.schema().clone();
            let persons = (first_added..schema.fields().len()).map(|i| out_column(&schema, i)).collect();
            let counts = counts_at.into_iter().map(|i| out_column(&schema, i)).collect();
            Ok(Top { plan: new, persons, counts })
        }
        LogicalPlan::SubqueryAlias(a) => {
            let inner = sdc_top(&a.input)?;
            let idx = |cols: &[Column]| -> Vec<usize> {
                cols.iter().filter_map(|c| inner.plan.schema().index_of_column(c).ok()).collect()
            };
            let (pi, ci) = (idx(&inner.persons), idx(&inner.counts));
            let new = LogicalPlan::SubqueryAlias(
                SubqueryAlias::try_new(Arc::new(inner.plan), a.alias.clone()).map_err(internal)?,
            );
            let schema = new.schema().clone();
            Ok(Top {
                persons: pi.into_iter().map(|i| out_column(&schema, i)).collect(),
                counts: ci.into_iter().map(|i| out_column(&schema, i)).collect(),
                plan: new,
            })
        }
        LogicalPlan::Filter(f) => {
            if has_subquery(std::slice::from_ref(&f.predicate)) {
                return Err(PolicyError::UnsupportedShape("a subquery in HAVING"));
            }
            let inner = sdc_top(&f.input)?;
            Ok(Top { plan: rebuild(plan, vec![inner.plan])?, persons: inner.persons, counts: inner.counts })
        }
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            if has_subquery(&plan.expressions()) {
                return Err(PolicyError::UnsupportedShape("a subquery in ORDER BY or LIMIT"));
            }
            let inner = sdc_top(plan.inputs()[0])?;
            Ok(Top { plan: rebuild(plan, vec![inner.plan])?, persons: inner.persons, counts: inner.counts })
        }
        LogicalPlan::Window(_) => Err(PolicyError::UnsupportedShape("window functions over released aggregates")),
        LogicalPlan::Union(_) => Err(PolicyError::UnsupportedShape("UNION of released aggregates")),
        LogicalPlan::Join(_) => Err(PolicyError::UnsupportedShape("a join of released aggregates")),
        LogicalPlan::Distinct(_) => Err(PolicyError::UnsupportedShape("DISTINCT over released aggregates")),
        _ => Err(PolicyError::AggregateRequired),
    }
}
