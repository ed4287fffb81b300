//! The statement guard: what a researcher's SQL text must be before anything plans it.
//!
//! DataFusion's planner and optimizer recurse over expression trees, and a hostile request can
//! make them overflow the stack (a 10,000-way `OR` chain, thousands of nested parentheses) or
//! spend minutes planning (a 2,000-term arithmetic chain), before any execution timeout could
//! start. So the guard bounds the request *before planning*:
//!
//! 1. the text is at most [`Limits::max_sql_bytes`];
//! 2. it parses (sqlparser with a recursion limit) into exactly one statement;
//! 3. the statement is a query (`SELECT …`, `WITH …`, `VALUES`): DDL, DML, `COPY`, `SET`,
//!    `EXPLAIN`, `DESCRIBE`, `SHOW`, `PREPARE`, … are refused by kind;
//! 4. expressions nest at most [`Limits::max_expr_depth`] deep, queries at most
//!    [`Limits::max_query_depth`], and there are at most [`Limits::max_expr_nodes`] of them;
//! 5. table functions (`generate_series(…)`, `range(…)`, …) are refused unless allow-listed.
//!
//! Parsing and the depth walk run on a dedicated thread with a large stack: the AST of a long
//! left-deep chain is built iteratively by the parser but visited (and dropped) recursively.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Statement, TableFactor, Visit, Visitor};

use crate::{PolicyError, Result};

/// Bounds on a request, checked before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// Parser recursion limit (nested parentheses, subqueries).
    pub parser_recursion: usize,
    /// Deepest expression nesting accepted.
    pub max_expr_depth: usize,
    /// Most expression nodes accepted.
    pub max_expr_nodes: usize,
    /// Deepest query nesting (subqueries, CTEs, derived tables) accepted.
    pub max_query_depth: usize,
    /// Table functions allowed in `FROM` (empty: none).
    pub table_functions: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sql_bytes: 64 * 1024,
            parser_recursion: 64,
            max_expr_depth: 64,
            max_expr_nodes: 10_000,
            max_query_depth: 16,
            table_functions: Vec::new(),
        }
    }
}

/// Stack of the guard thread: enough to visit and drop the deepest tree `max_sql_bytes` allows.
const GUARD_STACK: usize = 256 * 1024 * 1024;

/// Check a SQL text and return its single parsed statement.
pub fn check(sql: &str, limits: &Limits) -> Result<DfStatement> {
    if sql.len() > limits.max_sql_bytes {
        return Err(PolicyError::TooLarge { bytes: sql.len(), max: limits.max_sql_bytes });
    }
    let sql = sql.to_owned();
    let limits = limits.clone();
    std::thread::Builder::new()
        .name("niji-sql-guard".into())
        .stack_size(GUARD_STACK)
        .spawn(move || check_here(&sql, &limits))
        .map_err(|e| PolicyError::Internal(format!("starting the SQL guard thread: {e}")))?
        .join()
        .map_err(|_| PolicyError::Internal("the SQL guard thread panicked".into()))?
}

fn check_here(sql: &str, limits: &Limits) -> Result<DfStatement> {
    let mut parser = DFParserBuilder::new(sql)
        .with_recursion_limit(limits.parser_recursion)
        .build()
        .map_err(|e| PolicyError::Syntax(parser_message(&e.to_string())))?;
    let mut statements = parser.parse_statements().map_err(|e| PolicyError::Syntax(parser_message(&e.to_string())))?;
    if statements.len() != 1 {
        return Err(PolicyError::StatementCount(statements.len()));
    }
    let Some(statement) = statements.pop_front() else {
        return Err(PolicyError::StatementCount(0));
    };
    let query = match &statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(q) => q,
            other => return Err(PolicyError::StatementRefused(statement_kind(other))),
        },
        DfStatement::CreateExternalTable(_) => return Err(PolicyError::StatementRefused("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => return Err(PolicyError::StatementRefused("COPY")),
        DfStatement::Explain(_) => return Err(PolicyError::StatementRefused("EXPLAIN")),
        DfStatement::Reset(_) => return Err(PolicyError::StatementRefused("RESET")),
    };
    refuse_locking_and_into(query)?;
    let mut walk = Walk { limits, depth: 0, max_depth: 0, nodes: 0, query_depth: 0, problem: None };
    let DfStatement::Statement(inner) = &statement else {
        return Err(PolicyError::Internal("a query statement was expected".into()));
    };
    if let ControlFlow::Break(()) = inner.visit(&mut walk)
        && let Some(p) = walk.problem
    {
        return Err(p);
    }
    Ok(statement)
}

/// `SELECT … INTO t` creates a table; `FOR UPDATE` takes locks: neither belongs in a read.
fn refuse_locking_and_into(query: &Query) -> Result<()> {
    if !query.locks.is_empty() {
        return Err(PolicyError::StatementRefused("SELECT … FOR UPDATE"));
    }
    if let SetExpr::Select(select) = query.body.as_ref()
        && select.into.is_some()
    {
        return Err(PolicyError::StatementRefused("SELECT … INTO"));
    }
    Ok(())
}

/// Parser errors quote the researcher's own text (never data); keep them short.
fn parser_message(message: &str) -> String {
    let m = message.trim_start_matches("SQL error: ").trim_start_matches("ParserError(").trim_end_matches(')');
    m.chars().take(300).collect()
}

fn statement_kind(s: &Statement) -> &'static str {
    match s {
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge(_) => "MERGE",
        Statement::Copy { .. } => "COPY",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::CreateFunction(_) => "CREATE FUNCTION",
        Statement::CreateSchema { .. } => "CREATE SCHEMA",
        Statement::CreateDatabase { .. } => "CREATE DATABASE",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::Drop { .. } => "DROP",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::Truncate(_) => "TRUNCATE",
        Statement::Set(_) => "SET",
        Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCreate { .. } => "SHOW",
        Statement::ExplainTable { .. } => "DESCRIBE",
        Statement::Explain { .. } => "EXPLAIN",
        Statement::Prepare { .. } => "PREPARE",
        Statement::Execute { .. } => "EXECUTE",
        Statement::Deallocate { .. } => "DEALLOCATE",
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. } => "a transaction",
        Statement::Analyze { .. } => "ANALYZE",
        Statement::AttachDatabase { .. } | Statement::AttachDuckDBDatabase { .. } => "ATTACH",
        Statement::Install { .. } | Statement::Load { .. } => "INSTALL/LOAD",
        _ => "a statement other than a query",
    }
}

struct Walk<'a> {
    limits: &'a Limits,
    depth: usize,
    max_depth: usize,
    nodes: usize,
    query_depth: usize,
    problem: Option<PolicyError>,
}

impl Walk<'_> {
    fn stop(&mut self, p: PolicyError) -> ControlFlow<()> {
        self.problem = Some(p);
        ControlFlow::Break(())
    }
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.query_depth += 1;
        if self.query_depth > self.limits.max_query_depth {
            return self.stop(PolicyError::TooComplex {
                what: "query nesting (subqueries, CTEs, derived tables)",
                max: self.limits.max_query_depth,
            });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let function = match factor {
            TableFactor::Table { name, args: Some(_), .. } => Some(name.to_string()),
            TableFactor::Function { name, .. } => Some(name.to_string()),
            TableFactor::TableFunction { .. } => Some("TABLE(…)".to_owned()),
            TableFactor::UNNEST { .. } => Some("UNNEST".to_owned()),
            _ => None,
        };
        if let Some(f) = function
            && !self.limits.table_functions.iter().any(|a| a.eq_ignore_ascii_case(&f))
        {
            return self.stop(PolicyError::TableFunction(f.chars().take(64).collect()));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        self.nodes += 1;
        self.max_depth = self.max_depth.max(self.depth);
        if self.depth > self.limits.max_expr_depth {
            return self.stop(PolicyError::TooComplex { what: "expression nesting", max: self.limits.max_expr_depth });
        }
        if self.nodes > self.limits.max_expr_nodes {
            return self.stop(PolicyError::TooComplex { what: "expression count", max: self.limits.max_expr_nodes });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(sql: &str) -> &'static str {
        match check(sql, &Limits::default()) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn queries_pass() {
        assert_eq!(code("SELECT sex, count(*) FROM person GROUP BY sex"), "ok");
        assert_eq!(code("WITH a AS (SELECT 1 AS x) SELECT x FROM a"), "ok");
        assert_eq!(code("select 1;"), "ok");
    }

    #[test]
    fn statements_other_than_queries_are_refused_by_kind() {
        for (sql, kind) in [
            ("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("INSERT INTO person VALUES (1)", "INSERT"),
            ("DELETE FROM person", "DELETE"),
            ("UPDATE person SET sex = 'M'", "UPDATE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("EXPLAIN SELECT 1", "EXPLAIN"),
            ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
            ("DESCRIBE person", "DESCRIBE"),
            ("SHOW TABLES", "SHOW"),
            ("DROP TABLE person", "DROP"),
        ] {
            match check(sql, &Limits::default()) {
                Err(PolicyError::StatementRefused(k)) => assert_eq!(k, kind, "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn several_statements_are_refused() {
        assert_eq!(code("SELECT 1; SELECT 2"), "sql_multiple_statements");
        assert_eq!(code(""), "sql_multiple_statements");
    }

    #[test]
    fn table_functions_are_refused_unless_allowed() {
        assert_eq!(code("SELECT * FROM generate_series(1, 10)"), "sql_table_function");
        assert_eq!(code("SELECT * FROM range(1000000000)"), "sql_table_function");
        let limits = Limits { table_functions: vec!["range".into()], ..Limits::default() };
        assert!(check("SELECT * FROM range(10)", &limits).is_ok());
    }

    #[test]
    fn hostile_shapes_are_refused_before_planning() {
        let or_chain = format!("SELECT 1 FROM person WHERE {}", vec!["sex = 'M'"; 10_000].join(" OR "));
        assert!(or_chain.len() > 64 * 1024);
        assert_eq!(code(&or_chain), "sql_too_large");
        // The same chain below the size limit is refused for its depth.
        let or_chain = format!("SELECT 1 FROM person WHERE {}", vec!["a=1"; 8_000].join(" OR "));
        assert!(or_chain.len() <= 64 * 1024);
        assert_eq!(code(&or_chain), "sql_too_complex");
        let parens = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
        assert_ne!(code(&parens), "ok");
        let arith = format!("SELECT {} FROM person", vec!["1"; 2_000].join(" + "));
        assert_eq!(code(&arith), "sql_too_complex");
        let subqueries = format!("SELECT * FROM {}person{}", "(SELECT * FROM ".repeat(30), ")".repeat(30));
        assert_ne!(code(&subqueries), "ok");
    }

    #[test]
    fn select_into_and_locks_are_refused() {
        assert_eq!(code("SELECT * INTO t2 FROM person"), "sql_statement_refused");
    }
}
