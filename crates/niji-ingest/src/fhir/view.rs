//! SQL-on-FHIR v2 ViewDefinitions: compiled once ([`View::compile`]), evaluated per resource
//! into rows of [`Cell`]s ([`View::eval`]), and collected into Arrow record batches
//! ([`View::to_record_batch`]) or JSON objects ([`View::row_json`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use super::fhirpath::{self, Coll, Const, Ctx, Expr, Item, RootIndex, RootNames};
use super::json::{J, Kind, Parser};
use crate::IngestError;

/// Result alias of the view engine: errors are [`IngestError::ViewDefinition`],
/// [`IngestError::FhirPath`] and [`IngestError::ViewEval`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// The declared type of a column, mapped to an Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// Text (string, code, id, uri, date, dateTime, …).
    Text,
    /// integer, positiveInt, unsignedInt, integer64.
    Int,
    /// decimal.
    Dec,
    /// boolean.
    Bool,
    /// No declared type: JSON text for complex values.
    Any,
}

impl ColType {
    fn from_fhir(t: Option<&str>) -> ColType {
        match t {
            None => ColType::Any,
            Some("integer" | "positiveInt" | "unsignedInt" | "integer64") => ColType::Int,
            Some("decimal") => ColType::Dec,
            Some("boolean") => ColType::Bool,
            Some(_) => ColType::Text,
        }
    }

    fn arrow(self) -> DataType {
        match self {
            ColType::Int => DataType::Int64,
            ColType::Dec => DataType::Float64,
            ColType::Bool => DataType::Boolean,
            ColType::Text | ColType::Any => DataType::Utf8,
        }
    }
}

/// One output column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// FHIRPath source text.
    pub path_text: String,
    path: Expr,
    /// Declared type.
    pub ty: ColType,
    /// `collection: true`.
    pub collection: bool,
}

/// A cell of a view row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Empty.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Decimal.
    Dec(f64),
    /// Text.
    Str(String),
    /// A complex value (untyped column).
    Json(Value),
    /// `collection: true` values.
    List(Vec<Cell>),
}

impl Cell {
    /// The cell of one FHIRPath item: what `Item::to_json` would give, without going through
    /// JSON (strings are moved or copied once, complex nodes are copied).
    fn from_item(i: Item<'_>) -> Cell {
        match i {
            Item::Node(v, _) => match v.kind() {
                Kind::Bool(b) => Cell::Bool(b),
                Kind::Int(i) => Cell::Int(i),
                Kind::Dec(d) => Cell::Dec(d),
                Kind::Str(s) => Cell::Str(s.to_owned()),
                Kind::Null => Cell::Null,
                Kind::Array | Kind::Object => Cell::Json(v.to_value()),
            },
            Item::Const(c, _) => match c {
                Const::Bool(b) => Cell::Bool(*b),
                Const::Int(i) => Cell::Int(*i),
                Const::Dec(d) => Cell::Dec(*d),
                Const::Str(s) => Cell::Str(s.clone()),
            },
            Item::Str(s) => Cell::Str(s.into_owned()),
            Item::Temporal(s, _) => Cell::Str(s),
            Item::Int(i) => Cell::Int(i),
            // A JSON number from a float is never an integer; non-finite floats have no JSON.
            Item::Dec(d) if d.is_finite() => Cell::Dec(d),
            Item::Dec(_) => Cell::Null,
            Item::Bool(b) => Cell::Bool(b),
        }
    }

    /// The cell as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::from(*i),
            Cell::Dec(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
            Cell::Str(s) => Value::String(s.clone()),
            Cell::Json(v) => v.clone(),
            Cell::List(l) => Value::Array(l.iter().map(Cell::to_json).collect()),
        }
    }

    /// Text of a scalar cell.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Number of a scalar cell.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Dec(d) => Some(*d),
            Cell::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Iter {
    None,
    ForEach(Expr, String),
    ForEachOrNull(Expr, String),
    Repeat(Vec<(Expr, String)>),
}

impl Select {
    /// `f` on each iteration path, here and in nested selects (columns are the view's).
    fn iteration_paths(&mut self, f: &mut dyn FnMut(&mut Expr)) {
        match &mut self.iter {
            Iter::None => {}
            Iter::ForEach(e, _) | Iter::ForEachOrNull(e, _) => f(e),
            Iter::Repeat(ps) => ps.iter_mut().for_each(|(e, _)| f(e)),
        }
        for s in self.selects.iter_mut().chain(&mut self.union) {
            s.iteration_paths(f);
        }
    }
}

#[derive(Debug, Clone)]
struct Select {
    iter: Iter,
    /// Definition indexes of this select's own columns.
    columns: Vec<usize>,
    selects: Vec<Select>,
    union: Vec<Select>,
    /// Definition indexes of all columns this select produces (own, nested, first union branch).
    all_columns: Vec<usize>,
    /// Whether this select's own columns are the whole output row, in order (a view of one
    /// flat select): its row is then built cell by cell instead of filled into a null row.
    whole_row: bool,
}

/// A compiled ViewDefinition.
#[derive(Debug, Clone)]
pub struct View {
    /// Name of the view (`name`), if any.
    pub name: Option<String>,
    /// The FHIR resource type the view reads.
    pub resource: String,
    /// Output columns in order.
    pub columns: Vec<Column>,
    /// Every column definition (unionAll branches after the first included).
    defs: Vec<Column>,
    /// Output slot of each definition.
    slots: Vec<usize>,
    constants: HashMap<String, (Const, String)>,
    wheres: Vec<(Expr, String)>,
    selects: Vec<Select>,
    /// Member names the view's paths may look up on the resource itself.
    root_names: RootNames,
    /// Output column names (a name's slot is its output position: names are distinct).
    column_names: RootNames,
}

fn parse_path(p: &str) -> Result<Expr> {
    fhirpath::parse(p).map_err(|e| IngestError::FhirPath { path: p.to_owned(), reason: e.0 })
}

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(IngestError::ViewDefinition(msg.into()))
}

struct Compiler {
    columns: Vec<Column>,
    used_constants: Vec<String>,
}

impl Compiler {
    fn path_field(&mut self, v: &Value, what: &str) -> Result<(Expr, String)> {
        let Some(s) = v.as_str() else { return invalid(format!("`{what}` must be a FHIRPath string")) };
        let mut e = parse_path(s)?;
        e.constants(&mut self.used_constants);
        Ok((e, s.to_owned()))
    }

    fn select(&mut self, v: &Value) -> Result<Select> {
        let Some(obj) = v.as_object() else { return invalid("each `select` entry must be an object") };
        let iter = match (obj.get("forEach"), obj.get("forEachOrNull"), obj.get("repeat")) {
            (Some(f), None, None) => {
                let (e, s) = self.path_field(f, "forEach")?;
                Iter::ForEach(e, s)
            }
            (None, Some(f), None) => {
                let (e, s) = self.path_field(f, "forEachOrNull")?;
                Iter::ForEachOrNull(e, s)
            }
            (None, None, Some(r)) => {
                let Some(paths) = r.as_array().filter(|a| !a.is_empty()) else {
                    return invalid("`repeat` must be a non-empty array of FHIRPath strings");
                };
                Iter::Repeat(paths.iter().map(|p| self.path_field(p, "repeat")).collect::<Result<_>>()?)
            }
            (None, None, None) => Iter::None,
            _ => return invalid("a select may have only one of forEach, forEachOrNull, repeat"),
        };
        let mut columns = Vec::new();
        if let Some(cols) = obj.get("column") {
            let Some(cols) = cols.as_array() else { return invalid("`column` must be an array") };
            for c in cols {
                let name = c.get("name").and_then(Value::as_str);
                let Some(name) = name.filter(|n| !n.is_empty()) else { return invalid("a column needs a `name`") };
                if !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                    || name.starts_with(|ch: char| ch.is_ascii_digit())
                {
                    return invalid(format!("column name `{name}` is not a valid identifier"));
                }
                let Some(p) = c.get("path") else { return invalid(format!("column `{name}` needs a `path`")) };
                let (path, path_text) = self.path_field(p, "path")?;
                let collection = match c.get("collection") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return invalid(format!("column `{name}`: `collection` must be a boolean")),
                };
                let ty = ColType::from_fhir(c.get("type").and_then(Value::as_str));
                columns.push(self.columns.len());
                self.columns.push(Column { name: name.to_owned(), path_text, path, ty, collection });
            }
        }
        let mut selects = Vec::new();
        if let Some(s) = obj.get("select") {
            let Some(arr) = s.as_array() else { return invalid("`select` must be an array") };
            for x in arr {
                selects.push(self.select(x)?);
            }
        }
        let mut union = Vec::new();
        if let Some(u) = obj.get("unionAll") {
            let Some(arr) = u.as_array() else { return invalid("`unionAll` must be an array") };
            for x in arr {
                union.push(self.select(x)?);
            }
            let names = |s: &Select, cols: &[Column]| -> Vec<String> {
                s.all_columns.iter().map(|&i| cols[i].name.clone()).collect()
            };
            if let Some(first) = union.first() {
                let n0 = names(first, &self.columns);
                for other in &union[1..] {
                    if names(other, &self.columns) != n0 {
                        return invalid("unionAll branches must have the same columns in the same order");
                    }
                }
            }
        }
        if columns.is_empty() && selects.is_empty() && union.is_empty() {
            return invalid("a select needs `column`, `select` or `unionAll`");
        }
        let mut all_columns = columns.clone();
        for s in &selects {
            all_columns.extend(&s.all_columns);
        }
        if let Some(u) = union.first() {
            all_columns.extend(&u.all_columns);
        }
        Ok(Select { iter, columns, selects, union, all_columns, whole_row: false })
    }
}

/// A constant's value field and FHIR type from its `value[x]` field.
fn constant_value(c: &Map<String, Value>) -> Option<(&Value, String)> {
    c.iter().find_map(|(k, v)| {
        let ty = k.strip_prefix("value")?;
        let mut chars = ty.chars();
        let first = chars.next()?;
        if !first.is_ascii_uppercase() {
            return None;
        }
        Some((v, first.to_ascii_lowercase().to_string() + chars.as_str()))
    })
}

impl View {
    /// Compile a ViewDefinition (JSON). Every FHIRPath is parsed once here.
    pub fn compile(def: &Value) -> Result<View> {
        let Some(obj) = def.as_object() else { return invalid("a ViewDefinition must be a JSON object") };
        if let Some(rt) = obj.get("resourceType").and_then(Value::as_str)
            && rt != "ViewDefinition"
        {
            return invalid("resourceType must be ViewDefinition");
        }
        let Some(resource) = obj.get("resource").and_then(Value::as_str).filter(|r| !r.is_empty()) else {
            return invalid("`resource` is required");
        };
        let mut constants = HashMap::new();
        if let Some(cs) = obj.get("constant") {
            let Some(arr) = cs.as_array() else { return invalid("`constant` must be an array") };
            for c in arr {
                let Some(co) = c.as_object() else { return invalid("a constant must be an object") };
                let Some(name) = co.get("name").and_then(Value::as_str) else {
                    return invalid("a constant needs a `name`");
                };
                let Some((v, ty)) = constant_value(co) else {
                    return invalid(format!("constant `{name}` needs a value[x]"));
                };
                let Some(v) = Const::from_json(v) else {
                    return invalid(format!("constant `{name}`: value[x] must be a primitive value"));
                };
                constants.insert(name.to_owned(), (v, ty));
            }
        }
        let mut comp = Compiler { columns: Vec::new(), used_constants: Vec::new() };
        let Some(sel) = obj.get("select").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
            return invalid("`select` must be a non-empty array");
        };
        let mut selects = sel.iter().map(|s| comp.select(s)).collect::<Result<Vec<_>>>()?;
        let mut wheres = Vec::new();
        if let Some(ws) = obj.get("where") {
            let Some(arr) = ws.as_array() else { return invalid("`where` must be an array") };
            for w in arr {
                let Some(p) = w.get("path") else { return invalid("a where entry needs a `path`") };
                wheres.push(comp.path_field(p, "where")?);
            }
        }
        for c in &comp.used_constants {
            if !constants.contains_key(c) && !matches!(c.as_str(), "rowIndex" | "resource" | "rootResource" | "context")
            {
                return invalid(format!("constant `%{c}` is not defined"));
            }
        }
        let mut ordered = Vec::new();
        for s in &selects {
            ordered.extend(s.all_columns.iter().copied());
        }
        let mut seen = std::collections::HashSet::new();
        for &i in &ordered {
            if !seen.insert(comp.columns[i].name.clone()) {
                return invalid(format!("column name `{}` is used twice", comp.columns[i].name));
            }
        }
        let mut slots = vec![usize::MAX; comp.columns.len()];
        for (slot, &d) in ordered.iter().enumerate() {
            slots[d] = slot;
        }
        fn assign(s: &Select, slots: &mut [usize]) {
            if let Some(first) = s.union.first() {
                for b in &s.union[1..] {
                    for (k, &d) in b.all_columns.iter().enumerate() {
                        slots[d] = slots[first.all_columns[k]];
                    }
                }
            }
            for x in s.selects.iter().chain(s.union.iter()) {
                assign(x, slots);
            }
        }
        for s in &selects {
            assign(s, &mut slots);
        }
        fn mark_whole_rows(s: &mut Select, slots: &[usize], width: usize) {
            s.whole_row = s.columns.len() == width && s.columns.iter().enumerate().all(|(i, &d)| slots[d] == i);
            for x in s.selects.iter_mut().chain(s.union.iter_mut()) {
                mark_whole_rows(x, slots, width);
            }
        }
        for s in &mut selects {
            mark_whole_rows(s, &slots, ordered.len());
        }
        // Every FHIRPath of the view: the where clauses, the columns, the iterations.
        let mut each_path = |f: &mut dyn FnMut(&mut Expr)| {
            wheres.iter_mut().for_each(|(e, _)| f(e));
            comp.columns.iter_mut().for_each(|c| f(&mut c.path));
            selects.iter_mut().for_each(|s| s.iteration_paths(f));
        };
        let mut names = Vec::new();
        each_path(&mut |e| e.root_names(&mut names));
        let root_names = RootNames::new(names);
        each_path(&mut |e| e.index_roots(&root_names));
        let columns: Vec<Column> = ordered.iter().map(|&d| comp.columns[d].clone()).collect();
        let column_names = RootNames::new(columns.iter().map(|c| c.name.clone()).collect());
        let name = obj.get("name").and_then(Value::as_str).map(str::to_owned);
        Ok(View {
            name,
            resource: resource.to_owned(),
            columns,
            defs: comp.columns,
            slots,
            constants,
            wheres,
            selects,
            root_names,
            column_names,
        })
    }

    /// The output position of the column `name`.
    #[inline]
    pub fn column(&self, name: &str) -> Option<usize> {
        self.column_names.find(name)
    }

    /// Column names in output order.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Evaluate the view on one resource: zero or more rows. A resource of another type
    /// yields no rows.
    pub fn eval(&self, resource: J<'_>, env: &Env<'_>) -> Result<Vec<Vec<Cell>>> {
        let index = RootIndex::build(resource, &self.root_names);
        if index.resource_type() != Some(self.resource.as_str()) {
            return Ok(Vec::new());
        }
        let ctx = Ctx {
            resource,
            constants: &self.constants,
            row_index: 0,
            aliases: env.aliases,
            resource_key: env.resource_key,
            root: Some(&index),
        };
        let root = [Item::Node(resource, None)];
        for (w, text) in &self.wheres {
            let r = fhirpath::eval(w, &root, &ctx).map_err(|e| eval_err(text, e))?;
            if fhirpath::strict_bool(&r).map_err(|e| eval_err(text, e))? != Some(true) {
                return Ok(Vec::new());
            }
        }
        // The first select's rows are the start (the product with one all-null row would only
        // copy them); later selects multiply in.
        let mut rows: Option<Vec<Vec<Cell>>> = None;
        for s in &self.selects {
            let part = self.eval_select(s, &root, &ctx)?;
            let r = match rows {
                None => part,
                Some(r) => product(r, part),
            };
            if r.is_empty() {
                return Ok(r);
            }
            rows = Some(r);
        }
        Ok(rows.unwrap_or_else(|| vec![null_row(self.columns.len())]))
    }

    /// [`View::eval`] on a resource given as a `serde_json` value (tests and tools; the
    /// readers parse straight onto a tape).
    pub fn eval_json(&self, resource: &Value, env: &Env<'_>) -> Result<Vec<Vec<Cell>>> {
        let text = resource.to_string();
        Parser::new().parse(text.as_bytes(), |r| match r {
            Ok(j) => self.eval(j, env),
            Err(e) => Err(IngestError::ViewEval { path: String::new(), reason: e.what }),
        })
    }

    fn eval_select<'a>(&'a self, s: &'a Select, focus: &[Item<'a>], ctx: &Ctx<'a>) -> Result<Vec<Vec<Cell>>> {
        let width = self.columns.len();
        let (items, or_null): (Coll<'a>, bool) = match &s.iter {
            Iter::None => return self.eval_select_on(s, focus, ctx),
            Iter::ForEach(e, t) => (fhirpath::eval(e, focus, ctx).map_err(|x| eval_err(t, x))?, false),
            Iter::ForEachOrNull(e, t) => (fhirpath::eval(e, focus, ctx).map_err(|x| eval_err(t, x))?, true),
            Iter::Repeat(paths) => {
                let mut out = Coll::new();
                for f in focus {
                    repeat(paths, f, ctx, &mut out, 0)?;
                }
                (out, false)
            }
        };
        let mut rows = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let c = Ctx { row_index: i as i64, ..*ctx };
            rows.extend(self.eval_select_on(s, std::slice::from_ref(it), &c)?);
        }
        if items.is_empty() && or_null {
            // The null row; `%rowIndex` is 0 in it.
            let mut row = null_row(width);
            for &d in &s.all_columns {
                if self.defs[d].path == Expr::Const("rowIndex".into()) {
                    row[self.slots[d]] = Cell::Int(0);
                }
            }
            rows.push(row);
        }
        Ok(rows)
    }

    fn eval_select_on<'a>(&'a self, s: &'a Select, focus: &[Item<'a>], ctx: &Ctx<'a>) -> Result<Vec<Vec<Cell>>> {
        let width = self.columns.len();
        let mut row = if s.whole_row { Vec::with_capacity(width) } else { null_row(width) };
        // One collection for every column's items, emptied as its cell is made.
        let mut v = Coll::new();
        for &d in &s.columns {
            let col = &self.defs[d];
            fhirpath::eval_into(&col.path, focus, ctx, &mut v).map_err(|e| eval_err(&col.path_text, e))?;
            let cell = if col.collection {
                Cell::List(v.drain(..).map(Cell::from_item).collect())
            } else {
                match v.len() {
                    0 => Cell::Null,
                    1 => v.pop().map_or(Cell::Null, Cell::from_item),
                    _ => {
                        return Err(IngestError::ViewEval {
                            path: col.path_text.clone(),
                            reason: format!("column `{}` has several values and `collection` is not true", col.name),
                        });
                    }
                }
            };
            if s.whole_row {
                row.push(cell);
            } else {
                row[self.slots[d]] = cell;
            }
        }
        let mut rows = vec![row];
        for sub in &s.selects {
            let part = self.eval_select(sub, focus, ctx)?;
            rows = product(rows, part);
            if rows.is_empty() {
                return Ok(rows);
            }
        }
        if !s.union.is_empty() {
            let mut u = Vec::new();
            for b in &s.union {
                u.extend(self.eval_select(b, focus, ctx)?);
            }
            rows = product(rows, u);
        }
        Ok(rows)
    }

    /// A row as a JSON object keyed by column name, in column order.
    pub fn row_json(&self, row: &[Cell]) -> Value {
        let mut m = Map::new();
        for (c, v) in self.columns.iter().zip(row) {
            m.insert(c.name.clone(), v.to_json());
        }
        Value::Object(m)
    }

    /// The Arrow schema of the view's output.
    pub fn schema(&self) -> Arc<Schema> {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| {
                    let dt = if c.collection {
                        DataType::List(Arc::new(Field::new("item", c.ty.arrow(), true)))
                    } else {
                        c.ty.arrow()
                    };
                    Field::new(&c.name, dt, true)
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// Rows as an Arrow record batch with [`View::schema`].
    pub fn to_record_batch(&self, rows: &[Vec<Cell>]) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let arrays: Vec<ArrayRef> =
            self.columns.iter().enumerate().map(|(i, c)| column_array(c, rows.iter().map(|r| &r[i]))).collect();
        RecordBatch::try_new(self.schema(), arrays)
    }
}

fn text_of(c: &Cell) -> Option<std::borrow::Cow<'_, str>> {
    match c {
        Cell::Null => None,
        Cell::Str(s) => Some(std::borrow::Cow::Borrowed(s)),
        other => Some(std::borrow::Cow::Owned(other.to_json().to_string())),
    }
}

fn column_array<'r>(c: &Column, cells: impl Iterator<Item = &'r Cell>) -> ArrayRef {
    macro_rules! scalar {
        ($b:expr, $get:expr, $cells:expr) => {{
            let mut b = $b;
            for cell in $cells {
                b.append_option($get(cell));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let int = |c: &Cell| if let Cell::Int(i) = c { Some(*i) } else { None };
    let dec = |c: &Cell| c.as_f64().filter(|_| !matches!(c, Cell::Str(_)));
    let boolean = |c: &Cell| if let Cell::Bool(b) = c { Some(*b) } else { None };
    if c.collection {
        let lists: Vec<&Cell> = cells.collect();
        macro_rules! list {
            ($inner:expr, $get:expr) => {{
                let mut b = ListBuilder::new($inner);
                for cell in &lists {
                    if let Cell::List(items) = cell {
                        for it in items {
                            b.values().append_option($get(it));
                        }
                        b.append(true);
                    } else {
                        b.append(false);
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        return match c.ty {
            ColType::Int => list!(Int64Builder::new(), int),
            ColType::Dec => list!(Float64Builder::new(), dec),
            ColType::Bool => list!(BooleanBuilder::new(), boolean),
            ColType::Text | ColType::Any => list!(StringBuilder::new(), text_of),
        };
    }
    match c.ty {
        ColType::Int => scalar!(Int64Builder::new(), int, cells),
        ColType::Dec => scalar!(Float64Builder::new(), dec, cells),
        ColType::Bool => scalar!(BooleanBuilder::new(), boolean, cells),
        ColType::Text | ColType::Any => scalar!(StringBuilder::new(), text_of, cells),
    }
}

fn repeat<'a>(
    paths: &'a [(Expr, String)],
    focus: &Item<'a>,
    ctx: &Ctx<'a>,
    out: &mut Coll<'a>,
    depth: usize,
) -> Result<()> {
    if depth > 64 {
        return Err(IngestError::ViewEval {
            path: paths[0].1.clone(),
            reason: "repeat nests deeper than 64 levels".into(),
        });
    }
    for (e, t) in paths {
        let items = fhirpath::eval(e, std::slice::from_ref(focus), ctx).map_err(|x| eval_err(t, x))?;
        for it in items {
            out.push(it.clone());
            repeat(paths, &it, ctx, out, depth + 1)?;
        }
    }
    Ok(())
}

/// A row of `width` nulls (`resize_with`: `vec![Cell::Null; n]` clones the element n times,
/// which showed in the profile).
fn null_row(width: usize) -> Vec<Cell> {
    let mut row = Vec::with_capacity(width);
    row.resize_with(width, || Cell::Null);
    row
}

/// Cartesian product: cells of `b` fill the columns `a` left null.
fn product(mut a: Vec<Vec<Cell>>, mut b: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    if b.is_empty() || a.is_empty() {
        return Vec::new();
    }
    // One row on either side (the common case): fill it in place, moving cells, not copying.
    if a.len() == 1 && b.len() == 1 {
        let (mut ra, rb) = (a.pop().unwrap_or_default(), b.pop().unwrap_or_default());
        for (x, y) in ra.iter_mut().zip(rb) {
            if !matches!(y, Cell::Null) {
                *x = y;
            }
        }
        return vec![ra];
    }
    if a.len() == 1 {
        let ra = &a[0];
        for rb in &mut b {
            for (y, x) in rb.iter_mut().zip(ra) {
                if matches!(y, Cell::Null) {
                    y.clone_from(x);
                }
            }
        }
        return b;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for ra in &a {
        for rb in &b {
            let row: Vec<Cell> =
                ra.iter().zip(rb).map(|(x, y)| if matches!(y, Cell::Null) { x.clone() } else { y.clone() }).collect();
            out.push(row);
        }
    }
    out
}

fn eval_err(path: &str, e: fhirpath::PathError) -> IngestError {
    IngestError::ViewEval { path: path.to_owned(), reason: e.0 }
}

/// What the reader knows about the resource being evaluated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env<'a> {
    /// Reference aliases (`urn:uuid:…` fullUrls of the enclosing Bundle → `Type/id`).
    pub aliases: Option<&'a HashMap<String, String>>,
    /// The resource's key when it has no id.
    pub resource_key: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn foreach_and_arrow_output() {
        let v = View::compile(&json!({"resource": "Patient", "select": [
            {"column": [{"name": "id", "path": "id", "type": "id"}]},
            {"forEach": "name", "column": [{"name": "family", "path": "family", "type": "string"},
                {"name": "given", "path": "given", "type": "string", "collection": true}]}]}))
        .expect("compile");
        let p =
            json!({"resourceType": "Patient", "id": "p", "name": [{"family": "a", "given": ["x"]}, {"family": "b"}]});
        let rows = v.eval_json(&p, &Env::default()).expect("eval");
        assert_eq!(rows.len(), 2);
        assert_eq!(v.row_json(&rows[1]), json!({"id": "p", "family": "b", "given": []}));
        let batch = v.to_record_batch(&rows).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(
            batch.schema().field(2).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
    }

    #[test]
    fn invalid_views_are_refused() {
        assert!(View::compile(&json!({})).is_err());
        assert!(View::compile(&json!({"resource": "Patient", "select": [{"forEach": 1}]})).is_err());
        assert!(
            View::compile(&json!({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "%x"}]}]}))
                .is_err()
        );
    }
}
