//! What happens to computed rows before they leave: `sdc` suppression and rounding, `extract`
//! row caps.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Int64Array};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::{QueryError, Result};

fn internal(e: impl ToString) -> QueryError {
    QueryError::Internal(e.to_string())
}

/// Round to the nearest multiple of `base` (halves up); `base` ≤ 1 leaves values unchanged.
pub fn round_to(v: i64, base: i64) -> i64 {
    if base <= 1 {
        return v;
    }
    let r = v.rem_euclid(base);
    if r * 2 >= base { v - r + base } else { v - r }
}

/// The `sdc` release of a computed result.
#[derive(Debug)]
pub struct SdcRelease {
    /// Released rows (the researcher's columns only).
    pub batch: RecordBatch,
    /// Rows (cells) withheld for counting fewer than k persons.
    pub suppressed: u64,
}

/// Keep rows whose every person count is ≥ `k`, drop the person-count columns, round the
/// count columns to `rounding`.
pub fn sdc(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    visible: usize,
    persons: &[usize],
    counts: &[usize],
    k: u32,
    rounding: u32,
) -> Result<SdcRelease> {
    let all = concat_batches(schema, batches).map_err(internal)?;
    let n = all.num_rows();
    let mut keep = vec![true; n];
    for &p in persons {
        let col = cast(all.column(p), &DataType::Int64).map_err(internal)?;
        let col = col.as_primitive::<Int64Type>();
        for (i, k_ok) in keep.iter_mut().enumerate() {
            // A null count (no person at all) is below any k.
            if col.is_null(i) || col.value(i) < i64::from(k) {
                *k_ok = false;
            }
        }
    }
    let suppressed = keep.iter().filter(|k| !**k).count() as u64;
    let kept = filter_record_batch(&all, &BooleanArray::from(keep)).map_err(internal)?;
    let mut fields: Vec<Field> = Vec::with_capacity(visible);
    let mut columns = Vec::with_capacity(visible);
    for i in 0..visible {
        let f = kept.schema().field(i).clone();
        let c = kept.column(i).clone();
        if counts.contains(&i) {
            let as64 = cast(&c, &DataType::Int64).map_err(internal)?;
            let rounded: Int64Array =
                as64.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| round_to(v, i64::from(rounding)))).collect();
            fields.push(Field::new(f.name(), DataType::Int64, f.is_nullable()));
            columns.push(Arc::new(rounded) as _);
        } else {
            fields.push(f);
            columns.push(c);
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(internal)?;
    Ok(SdcRelease { batch, suppressed })
}

/// Cut a result to at most `cap` rows; says whether rows were cut.
pub fn cap_rows(schema: &SchemaRef, batches: &[RecordBatch], cap: u64) -> Result<(RecordBatch, bool)> {
    let all = concat_batches(schema, batches).map_err(internal)?;
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    if all.num_rows() > cap { Ok((all.slice(0, cap), true)) } else { Ok((all, false)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn rounding_goes_to_the_nearest_multiple() {
        assert_eq!(round_to(12, 5), 10);
        assert_eq!(round_to(13, 5), 15);
        assert_eq!(round_to(15, 5), 15);
        assert_eq!(round_to(0, 5), 0);
        assert_eq!(round_to(7, 1), 7);
        assert_eq!(round_to(-3, 5), -5);
    }

    #[test]
    fn cells_below_k_are_withheld_and_person_columns_dropped() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sex", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("__niji_persons_0", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["F", "M", "U"])),
                Arc::new(Int64Array::from(vec![1234, 987, 3])),
                Arc::new(Int64Array::from(vec![600, 500, 9])),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let r = sdc(&schema, &[b], 2, &[2], &[1], 10, 5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.suppressed, 1);
        assert_eq!(r.batch.num_columns(), 2);
        assert_eq!(r.batch.num_rows(), 2);
        let n = r.batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(n.values().to_vec(), vec![1235, 985]);
    }
}
