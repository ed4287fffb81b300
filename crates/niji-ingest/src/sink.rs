//! Writes CDM rows as Parquet: `DIR/<table>/part-NNNNN.parquet`, zstd-compressed, with the
//! CDM schema (column classes in the field metadata).
//!
//! Readers push rows ([`CdmSink::push`]) or whole batches ([`CdmSink::write_batch`]); rows are
//! buffered per table and flushed as a record batch every `batch_rows` rows, so memory stays
//! bounded however large the input.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use niji_cdm::{ColumnType, TableDef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::{IngestError, Result};

/// One cell of a CDM row. Text is borrowed where the caller has it (a view's cell, a static
/// code, a pseudonym it keeps): the sink copies it into its column buffer either way, so an
/// owned copy per cell would only be made to be dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// Text.
    Str(Cow<'a, str>),
    /// 32-bit integer.
    I32(i32),
    /// 64-bit integer.
    I64(i64),
    /// Float.
    F64(f64),
    /// Flag.
    Bool(bool),
    /// Calendar date.
    Date(NaiveDate),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }
}
impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::Str(Cow::Owned(s))
    }
}
impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::I32(v)
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<NaiveDate> for Value<'_> {
    fn from(v: NaiveDate) -> Self {
        Value::Date(v)
    }
}

/// Days since 1970-01-01, the Arrow `Date32` representation.
pub fn date32(d: NaiveDate) -> i32 {
    // 719_163 = days from 0001-01-01 (CE day 1) to 1970-01-01.
    d.num_days_from_ce() - 719_163
}

/// A column being built: values are appended straight into Arrow builders (one contiguous
/// buffer per column), so a buffered row holds no allocation of its own.
enum ColBuf {
    Utf8(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
}

impl ColBuf {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Utf8 => ColBuf::Utf8(StringBuilder::new()),
            ColumnType::Int32 => ColBuf::I32(Int32Builder::new()),
            ColumnType::Int64 => ColBuf::I64(Int64Builder::new()),
            ColumnType::Float64 => ColBuf::F64(Float64Builder::new()),
            ColumnType::Boolean => ColBuf::Bool(BooleanBuilder::new()),
            ColumnType::Date32 => ColBuf::Date(Date32Builder::new()),
        }
    }

    /// Append a value already checked against the column's type ([`CdmSink::push`]); a value
    /// of another kind is appended as null.
    fn append(&mut self, v: &Value<'_>) {
        match (self, v) {
            (ColBuf::Utf8(b), Value::Str(s)) => b.append_value(s),
            (ColBuf::I32(b), Value::I32(x)) => b.append_value(*x),
            (ColBuf::I64(b), Value::I64(x)) => b.append_value(*x),
            (ColBuf::F64(b), Value::F64(x)) => b.append_value(*x),
            (ColBuf::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (ColBuf::Date(b), Value::Date(d)) => b.append_value(date32(*d)),
            (ColBuf::Utf8(b), _) => b.append_null(),
            (ColBuf::I32(b), _) => b.append_null(),
            (ColBuf::I64(b), _) => b.append_null(),
            (ColBuf::F64(b), _) => b.append_null(),
            (ColBuf::Bool(b), _) => b.append_null(),
            (ColBuf::Date(b), _) => b.append_null(),
        }
    }

    /// The values so far as an array; the builder starts over.
    fn finish(&mut self) -> ArrayRef {
        match self {
            ColBuf::Utf8(b) => Arc::new(b.finish()),
            ColBuf::I32(b) => Arc::new(b.finish()),
            ColBuf::I64(b) => Arc::new(b.finish()),
            ColBuf::F64(b) => Arc::new(b.finish()),
            ColBuf::Bool(b) => Arc::new(b.finish()),
            ColBuf::Date(b) => Arc::new(b.finish()),
        }
    }
}

struct TableBuf {
    def: &'static TableDef,
    columns: Vec<ColBuf>,
    /// Rows buffered in `columns`.
    len: usize,
    writer: Option<ArrowWriter<File>>,
    rows: u64,
}

/// Parquet output for CDM tables.
pub struct CdmSink {
    dir: PathBuf,
    batch_rows: usize,
    /// Threads [`CdmSink::finish`] may use to write the tables' last batches and close them.
    threads: usize,
    tables: BTreeMap<&'static str, TableBuf>,
}

impl std::fmt::Debug for CdmSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdmSink").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl CdmSink {
    /// Rows buffered per table before a batch is written. Small enough that most of the
    /// Parquet encoding and compression happens while the input is still being read (where
    /// it overlaps with a reading thread) rather than all at [`CdmSink::finish`], and in
    /// short steps: the thread writing the rows stops to encode each batch, and with 8,192
    /// rows a batch (milliseconds of encoding) the reading thread ran ahead, filled its queue
    /// and waited (17–43 ms a run of the FHIR benchmark against 7–11 ms with 1,024, for the
    /// same instruction count). Row groups do not depend on it; page boundaries move a little
    /// (the rows are the same).
    pub const DEFAULT_BATCH_ROWS: usize = 1024;

    /// A sink writing under `dir` (created if missing). [`CdmSink::finish`] uses up to two
    /// threads where the machine has two cores ([`CdmSink::with_threads`]).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| IngestError::Write { path: dir.to_owned(), source })?;
        Ok(Self {
            dir: dir.to_owned(),
            batch_rows: Self::DEFAULT_BATCH_ROWS,
            threads: crate::default_threads(),
            tables: BTreeMap::new(),
        })
    }

    /// Change how many threads [`CdmSink::finish`] may use (1: the calling thread only).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Change the batch size (tests use small ones to exercise flushing).
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    fn buf(&mut self, table: &'static TableDef) -> &mut TableBuf {
        self.tables.entry(table.name).or_insert_with(|| TableBuf {
            def: table,
            columns: table.columns.iter().map(|c| ColBuf::new(c.ty)).collect(),
            len: 0,
            writer: None,
            rows: 0,
        })
    }

    /// Append one row, in the table's column order. Types are checked against the CDM.
    pub fn push(&mut self, table: &'static TableDef, row: &[Value<'_>]) -> Result<()> {
        if row.len() != table.columns.len() {
            return Err(IngestError::RowShape {
                table: table.name,
                reason: format!("{} values for {} columns", row.len(), table.columns.len()),
            });
        }
        for (v, c) in row.iter().zip(table.columns) {
            let ok = matches!(
                (v, c.ty),
                (Value::Null, _)
                    | (Value::Str(_), ColumnType::Utf8)
                    | (Value::I32(_), ColumnType::Int32)
                    | (Value::I64(_), ColumnType::Int64)
                    | (Value::F64(_), ColumnType::Float64)
                    | (Value::Bool(_), ColumnType::Boolean)
                    | (Value::Date(_), ColumnType::Date32)
            );
            if !ok || (matches!(v, Value::Null) && !c.nullable) {
                return Err(IngestError::RowShape {
                    table: table.name,
                    reason: format!("column `{}` ({:?}) cannot hold this value kind", c.name, c.ty),
                });
            }
        }
        let batch_rows = self.batch_rows;
        let buf = self.buf(table);
        for (col, v) in buf.columns.iter_mut().zip(row) {
            col.append(v);
        }
        buf.len += 1;
        if buf.len >= batch_rows {
            let dir = self.dir.clone();
            flush(&dir, self.buf(table))?;
        }
        Ok(())
    }

    /// Append a record batch that already has the table's CDM schema.
    pub fn write_batch(&mut self, table: &'static TableDef, batch: &RecordBatch) -> Result<()> {
        let expected = table.schema();
        if batch.schema().fields() != expected.fields() {
            return Err(IngestError::RowShape {
                table: table.name,
                reason: "batch schema differs from the CDM schema".into(),
            });
        }
        let dir = self.dir.clone();
        let buf = self.buf(table);
        flush(&dir, buf)?;
        write(&dir, buf, batch)
    }

    /// Flush everything and close the files; returns rows written per table.
    ///
    /// The tables are independent, so with more than one thread ([`CdmSink::with_threads`])
    /// their last batches are encoded and compressed, and their files closed, on that many
    /// threads at once (largest buffer first): this tail would otherwise run on one core
    /// after the whole input has been read. On an error the first table's (in name order)
    /// is returned.
    pub fn finish(self) -> Result<BTreeMap<String, u64>> {
        let dir = self.dir;
        let mut tables: Vec<TableBuf> = self.tables.into_values().collect();
        tables.sort_by_key(|t| std::cmp::Reverse(t.len));
        let workers = self.threads.min(tables.len());
        // One queue of tables; each worker takes the next until none is left.
        let queue = std::sync::Mutex::new(tables.iter_mut());
        let work = || {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
                let Some(buf) = next else { return done };
                done.push((buf.def.name, finish_table(&dir, buf)));
            }
        };
        let mut results: Vec<(&'static str, Result<u64>)> = if workers <= 1 {
            work()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    .collect()
            })
        };
        results.sort_by_key(|(name, _)| *name);
        results.into_iter().map(|(name, rows)| Ok((name.to_owned(), rows?))).collect()
    }
}

/// A table's last batch written and its file closed; the rows written in all.
fn finish_table(dir: &Path, buf: &mut TableBuf) -> Result<u64> {
    flush(dir, buf)?;
    if let Some(w) = buf.writer.take() {
        w.close().map_err(|source| IngestError::Parquet { table: buf.def.name, source })?;
    }
    Ok(buf.rows)
}

fn flush(dir: &Path, buf: &mut TableBuf) -> Result<()> {
    if buf.len == 0 {
        return Ok(());
    }
    let def = buf.def;
    let arrays: Vec<ArrayRef> = buf.columns.iter_mut().map(ColBuf::finish).collect();
    buf.len = 0;
    let batch =
        RecordBatch::try_new(def.schema(), arrays).map_err(|source| IngestError::Arrow { table: def.name, source })?;
    write(dir, buf, &batch)
}

fn write(dir: &Path, buf: &mut TableBuf, batch: &RecordBatch) -> Result<()> {
    let def = buf.def;
    if buf.writer.is_none() {
        let tdir = dir.join(def.name);
        std::fs::create_dir_all(&tdir).map_err(|source| IngestError::Write { path: tdir.clone(), source })?;
        let path = tdir.join("part-00000.parquet");
        let file = File::create(&path).map_err(|source| IngestError::Write { path: path.clone(), source })?;
        // zstd level 1: on the FHIR benchmark's tables it wrote 2–4 % smaller files than level 3
        // (most bytes are hex pseudonyms, which no level compresses below 4 bits a character)
        // for 2 % fewer instructions in the whole ingest.
        let mut props =
            WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()));
        // A table's own key (`<table>_id`, a per-row pseudonym) never repeats: a dictionary of
        // it costs an interning per value and is dropped for plain encoding once it grows.
        if let Some(key) = def.columns.first().filter(|c| c.name.strip_suffix("_id") == Some(def.name)) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(key.name), false);
        }
        let w = ArrowWriter::try_new(file, def.schema(), Some(props.build()))
            .map_err(|source| IngestError::Parquet { table: def.name, source })?;
        buf.writer = Some(w);
    }
    if let Some(w) = buf.writer.as_mut() {
        w.write(batch).map_err(|source| IngestError::Parquet { table: def.name, source })?;
    }
    buf.rows += batch.num_rows() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use niji_cdm::tables::DEATH;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn death_row(i: i32) -> Vec<Value<'static>> {
        vec![
            format!("p{i}").into(),
            NaiveDate::from_ymd_opt(2024, 1, 1).map(Value::Date).unwrap_or(Value::Null),
            Value::Null,
            "receipt".into(),
        ]
    }

    fn person_row(i: i32, birth_year: i32) -> Vec<Value<'static>> {
        vec![
            format!("p{i}").into(),
            "F".into(),
            Value::I32(birth_year),
            Value::I32(4),
            "13".into(),
            Value::Null,
            "id1".into(),
            "fhir".into(),
        ]
    }

    #[test]
    fn rows_round_trip_through_parquet_in_several_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = CdmSink::create(dir.path()).expect("sink").with_batch_rows(3);
        for i in 0..7 {
            sink.push(&DEATH, &death_row(i)).expect("push");
        }
        let rows = sink.finish().expect("finish");
        assert_eq!(rows.get("death"), Some(&7));
        let f = File::open(dir.path().join("death/part-00000.parquet")).expect("file");
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).expect("reader").build().expect("build");
        let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().expect("read");
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 7);
        // Values, nulls and dates survive the builders, in push order across the batches.
        let ids: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<arrow::array::StringArray>().expect("utf8");
                a.iter().map(|v| v.unwrap_or_default().to_owned()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
        let dates = batches[0].column(1).as_any().downcast_ref::<arrow::array::Date32Array>().expect("date32");
        assert_eq!(dates.value(0), date32(NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")));
        assert!(batches.iter().all(|b| b.column(2).null_count() == b.num_rows()));
        let schema = batches[0].schema();
        assert_eq!(niji_cdm::field_class(schema.field(0)), Some(niji_cdm::ColumnClass::PersonId));
        assert_eq!(date32(NaiveDate::from_ymd_opt(1970, 1, 2).expect("date")), 1);
    }

    #[test]
    fn a_tables_own_key_is_written_without_a_dictionary() {
        use niji_cdm::tables::PERSON_TABLE;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = CdmSink::create(dir.path()).expect("sink");
        for i in 0..5 {
            sink.push(&DEATH, &death_row(i % 2)).expect("push");
            sink.push(&PERSON_TABLE, &person_row(i, 1950)).expect("push");
        }
        sink.finish().expect("finish");
        let dictionary = |table: &str, column: usize| {
            let f = File::open(dir.path().join(format!("{table}/part-00000.parquet"))).expect("file");
            let meta = ParquetRecordBatchReaderBuilder::try_new(f).expect("reader").metadata().clone();
            meta.row_group(0).column(column).dictionary_page_offset().is_some()
        };
        // person.person_id is the person table's key; death.person_id repeats and keeps its
        // dictionary, as do the other columns.
        assert!(!dictionary("person", 0));
        assert!(dictionary("person", 1));
        assert!(dictionary("death", 0));
    }

    #[test]
    fn tables_finished_on_several_threads_are_the_files_of_one_thread() {
        use niji_cdm::tables::PERSON_TABLE;
        let write = |threads: usize| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut sink = CdmSink::create(dir.path()).expect("sink").with_batch_rows(4).with_threads(threads);
            for i in 0..23 {
                sink.push(&DEATH, &death_row(i)).expect("push");
                if i % 3 == 0 {
                    sink.push(&PERSON_TABLE, &person_row(i, 1950 + i)).expect("push");
                }
            }
            let rows = sink.finish().expect("finish");
            let bytes = |t: &str| std::fs::read(dir.path().join(format!("{t}/part-00000.parquet"))).expect("file");
            (rows, bytes("death"), bytes("person"))
        };
        let one = write(1);
        assert_eq!(one.0.get("death"), Some(&23));
        assert_eq!(one.0.get("person"), Some(&8));
        assert_eq!(write(2), one);
        assert_eq!(write(3), one);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = CdmSink::create(dir.path()).expect("sink");
        assert!(sink.push(&DEATH, &[Value::Null]).is_err());
        let mut r = death_row(1);
        r[0] = Value::Null; // person_id is not nullable
        assert!(sink.push(&DEATH, &r).is_err());
        let mut r = death_row(1);
        r[1] = Value::I32(3); // a date column
        assert!(sink.push(&DEATH, &r).is_err());
    }
}
