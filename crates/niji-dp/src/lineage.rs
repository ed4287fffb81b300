//! Column lineage: which table column an output column of a plan is, if it is one.
//!
//! A column has a lineage when it is a table-scan column passed through unchanged (or only cast
//! to floating point) by projections, aliases, subquery aliases, filters, sorts, joins and the
//! grouping columns of an inner aggregation. Anything computed (arithmetic, functions,
//! aggregates, window values) has none. Lineage decides which catalog bounds and public key domains apply; it never makes a
//! value safe by itself (values are always clamped to the bounds found).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, TableReference};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

/// A table column: the scan's table reference (as planned) and the column name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    /// The table reference of the scan, as the researcher's SQL resolved it.
    pub table: TableReference,
    /// Column name in that table.
    pub column: String,
}

pub(crate) fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// Strips aliases and casts to floating point (which never fail on numbers): the value is the
/// column's. Other casts can fail on some values and are not followed.
fn column_of(e: &Expr) -> Option<&Column> {
    let float = |t: &DataType| matches!(t, DataType::Float32 | DataType::Float64);
    match unalias(e) {
        Expr::Column(c) => Some(c),
        Expr::Cast(c) if float(c.field.data_type()) => column_of(&c.expr),
        Expr::TryCast(c) if float(c.field.data_type()) => column_of(&c.expr),
        _ => None,
    }
}

/// The lineage of expression `e` evaluated over the output of `input` (a column or a cast of one).
pub fn expr_lineage(input: &LogicalPlan, e: &Expr) -> Option<Source> {
    let c = column_of(e)?;
    let i = input.schema().index_of_column(c).ok()?;
    lineage(input, i)
}

/// The lineage of output column `i` of `plan`.
pub fn lineage(plan: &LogicalPlan, i: usize) -> Option<Source> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let field = plan.schema().field(i);
            Some(Source { table: scan.table_name.clone(), column: field.name().clone() })
        }
        LogicalPlan::Projection(p) => expr_lineage(&p.input, p.expr.get(i)?),
        LogicalPlan::SubqueryAlias(a) => lineage(&a.input, i),
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(_) => {
            let input = plan.inputs()[0];
            // These nodes keep their input's schema.
            (i < input.schema().fields().len()).then(|| lineage(input, i)).flatten()
        }
        LogicalPlan::Window(w) => (i < w.input.schema().fields().len()).then(|| lineage(&w.input, i)).flatten(),
        LogicalPlan::Join(j) => {
            let n_left = j.left.schema().fields().len();
            match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                    (i < n_left).then(|| lineage(&j.left, i)).flatten()
                }
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => lineage(&j.right, i),
                _ => {
                    if i < n_left {
                        lineage(&j.left, i)
                    } else {
                        lineage(&j.right, i - n_left)
                    }
                }
            }
        }
        LogicalPlan::Aggregate(a) => {
            let e = a.group_expr.get(i)?;
            expr_lineage(&a.input, e)
        }
        _ => None,
    }
}
