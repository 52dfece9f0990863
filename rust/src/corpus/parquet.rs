//! Parquet: one document per row of a chosen string (or binary) column, read in record batches
//! with only that column projected. With a record sink, every column is read instead and each
//! batch is handed on, with the document index of each of its rows, after its documents.

use std::fs::File;

use arrow_array::{Array, BinaryArray, LargeBinaryArray, LargeStringArray, StringArray, StringViewArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::{Document, Emitter, RawRecord};
use crate::error::{Error, Result};

pub(super) fn read<F: FnMut(Document) -> Result<()>>(em: &mut Emitter<'_, F>, column: &str) -> Result<()> {
    let path = em.path;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: &dyn std::fmt::Display| Error::input(path, format!("not a readable Parquet file: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    let schema = builder.parquet_schema();
    let idx = (0..schema.num_columns())
        .find(|&i| schema.column(i).path().string() == column)
        .ok_or_else(|| Error::input(path, format!("no column {column:?}")))?;
    let no_column = || Error::input(path, format!("no column {column:?}"));
    // The text column's position in the batches read.
    let (builder, text) = if em.records.is_some() {
        let text = builder.schema().index_of(column).map_err(|_| no_column())?;
        (builder, text)
    } else {
        let mask = ProjectionMask::leaves(schema, [idx]);
        (builder.with_projection(mask), 0)
    };
    let reader = builder.with_batch_size(1024).build().map_err(|e| bad(&e))?;
    let mut row = 0u64;
    let mut index = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        let col = batch.column(text);
        let any = col.as_any();
        index.clear();
        for i in 0..col.len() {
            row += 1;
            let doc = if col.is_null(i) {
                em.stats.empty_skipped += 1;
                None
            } else if let Some(a) = any.downcast_ref::<StringArray>() {
                em.emit_str(a.value(i).to_string(), None, None)?
            } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
                em.emit_str(a.value(i).to_string(), None, None)?
            } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
                em.emit_str(a.value(i).to_string(), None, None)?
            } else {
                let k = row;
                let what = || format!("row {k}");
                if let Some(a) = any.downcast_ref::<BinaryArray>() {
                    em.emit(a.value(i).to_vec(), None, None, &what)?
                } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
                    em.emit(a.value(i).to_vec(), None, None, &what)?
                } else {
                    let t = col.data_type();
                    return Err(Error::input(path, format!("column {column:?} has type {t}, not string")));
                }
            };
            index.push(doc);
        }
        if let Some(records) = em.records.as_mut() {
            records(RawRecord::Rows { batch: &batch, index: &index })?;
        }
    }
    Ok(())
}
