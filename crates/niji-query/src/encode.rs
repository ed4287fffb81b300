//! Encodings of released rows: JSON (`{columns, rows}` with rows as arrays), CSV and the Arrow
//! IPC stream format. Shared by the HTTP API and the CLI.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::{QueryError, Result};

fn internal(e: impl ToString) -> QueryError {
    QueryError::Internal(e.to_string())
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Arrow type, as Arrow prints it.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// Columns of a schema.
pub fn columns(schema: &SchemaRef) -> Vec<ColumnInfo> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnInfo { name: f.name().clone(), data_type: f.data_type().to_string() })
        .collect()
}

/// Rows as JSON arrays in column order (nulls as JSON null).
pub fn json_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<Vec<serde_json::Value>>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        for b in batches {
            w.write(b).map_err(internal)?;
        }
        w.finish().map_err(internal)?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&buf).map_err(internal)?;
    Ok(objects
        .into_iter()
        .map(|mut o| schema.fields().iter().map(|f| o.remove(f.name()).unwrap_or(serde_json::Value::Null)).collect())
        .collect())
}

/// CSV with a header line.
pub fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut buf);
        if batches.is_empty() {
            w.write(&RecordBatch::new_empty(schema.clone())).map_err(internal)?;
        }
        for b in batches {
            w.write(b).map_err(internal)?;
        }
    }
    Ok(buf)
}

/// The Arrow IPC stream format.
pub fn arrow_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema).map_err(internal)?;
        for b in batches {
            w.write(b).map_err(internal)?;
        }
        w.finish().map_err(internal)?;
    }
    Ok(buf)
}

/// A text table (for the CLI).
pub fn pretty(batches: &[RecordBatch]) -> Result<String> {
    arrow::util::pretty::pretty_format_batches(batches).map(|t| t.to_string()).map_err(internal)
}
