//! MLM shard schema and writer (`dataprep.objective = mlm`), one row per sequence
//! `[CLS] A [SEP] (B [SEP])` padded to `seq_len`:
//! - `input_ids`: `fixed_size_list<uint16 | uint32>[seq_len]` (masked when statically masked);
//! - `token_type_ids`, `special_tokens_mask`, `word_start`: `fixed_size_list<uint8>[seq_len]`;
//! - `n_tokens`: `int32`, tokens before the padding;
//! - `nsp_label`: `int8`, 0 = B is the true continuation, 1 = B is random, -1 = no pair;
//! - `labels` (static masking only): `fixed_size_list<int32>[seq_len]`, the original id where
//!   masked and -100 elsewhere.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeListArray, Int32Array, Int8Array, UInt8Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{ids_array, list_item, Dtype, IpcFile, ShardInfo, BATCH_ROWS, SCHEMA_VERSION};
use crate::error::Result;

/// The MLM shard schema; `layout` is `full_sentence` or `nsp`, `labels` adds the static-masking column.
pub fn mlm_schema(seq_len: usize, dtype: Dtype, layout: &str, labels: bool) -> SchemaRef {
    let list = |t: DataType| DataType::FixedSizeList(Arc::new(Field::new("item", t, false)), seq_len as i32);
    let meta = HashMap::from([
        ("dataprep.schema_version".to_string(), SCHEMA_VERSION.to_string()),
        ("dataprep.objective".to_string(), "mlm".to_string()),
        ("dataprep.layout".to_string(), layout.to_string()),
        ("dataprep.static_masking".to_string(), labels.to_string()),
        ("dataprep.seq_len".to_string(), seq_len.to_string()),
    ]);
    let mut fields = vec![
        Field::new("input_ids", list(dtype.arrow()), false),
        Field::new("token_type_ids", list(DataType::UInt8), false),
        Field::new("special_tokens_mask", list(DataType::UInt8), false),
        Field::new("word_start", list(DataType::UInt8), false),
        Field::new("n_tokens", DataType::Int32, false),
        Field::new("nsp_label", DataType::Int8, false),
    ];
    if labels {
        fields.push(Field::new("labels", list(DataType::Int32), false));
    }
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// One MLM row, borrowed (every slice is `seq_len` long).
pub struct MlmRow<'a> {
    pub input_ids: &'a [u32],
    pub token_type_ids: &'a [u8],
    pub special_tokens_mask: &'a [u8],
    pub word_start: &'a [u8],
    pub n_tokens: u32,
    pub nsp_label: i8,
    pub labels: Option<&'a [i64]>,
}

/// Writes one MLM shard; rows are buffered into record batches of [`BATCH_ROWS`].
pub struct MlmShardWriter {
    file: IpcFile,
    schema: SchemaRef,
    seq_len: usize,
    dtype: Dtype,
    ids: Vec<u32>,
    tt: Vec<u8>,
    special: Vec<u8>,
    ws: Vec<u8>,
    n_tokens: Vec<i32>,
    nsp: Vec<i8>,
    labels: Vec<i32>,
}

impl MlmShardWriter {
    pub fn create(path: &Path, schema: SchemaRef, seq_len: usize, dtype: Dtype) -> Result<Self> {
        Ok(Self {
            file: IpcFile::create(path, &schema)?,
            schema,
            seq_len,
            dtype,
            ids: Vec::with_capacity(BATCH_ROWS * seq_len),
            tt: Vec::with_capacity(BATCH_ROWS * seq_len),
            special: Vec::with_capacity(BATCH_ROWS * seq_len),
            ws: Vec::with_capacity(BATCH_ROWS * seq_len),
            n_tokens: Vec::new(),
            nsp: Vec::new(),
            labels: Vec::new(),
        })
    }

    pub fn rows(&self) -> u64 {
        self.file.rows + self.n_tokens.len() as u64
    }

    pub fn push(&mut self, row: &MlmRow<'_>) -> Result<()> {
        debug_assert_eq!(row.input_ids.len(), self.seq_len);
        self.ids.extend_from_slice(row.input_ids);
        self.tt.extend_from_slice(row.token_type_ids);
        self.special.extend_from_slice(row.special_tokens_mask);
        self.ws.extend_from_slice(row.word_start);
        self.n_tokens.push(row.n_tokens as i32);
        self.nsp.push(row.nsp_label);
        if let Some(l) = row.labels {
            self.labels.extend(l.iter().map(|&x| x as i32));
        }
        self.file.tokens += u64::from(row.n_tokens);
        if self.n_tokens.len() == BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.n_tokens.is_empty() {
            return Ok(());
        }
        let n = self.seq_len as i32;
        let s = &self.schema;
        let fixed = |col: usize, values: ArrayRef| -> ArrayRef {
            Arc::new(FixedSizeListArray::new(list_item(s, col), n, values, None))
        };
        // Each column's buffer moves into its array and is replaced at full batch size: taking it
        // and growing the next one from empty cost reallocations and page faults every batch.
        let cap = BATCH_ROWS * self.seq_len;
        let u8s =
            |v: &mut Vec<u8>| -> ArrayRef { Arc::new(UInt8Array::from(std::mem::replace(v, Vec::with_capacity(cap)))) };
        let mut columns = vec![
            fixed(0, ids_array(self.dtype, &mut self.ids)),
            fixed(1, u8s(&mut self.tt)),
            fixed(2, u8s(&mut self.special)),
            fixed(3, u8s(&mut self.ws)),
            Arc::new(Int32Array::from(std::mem::take(&mut self.n_tokens))),
            Arc::new(Int8Array::from(std::mem::take(&mut self.nsp))),
        ];
        if s.fields().len() > 6 {
            columns.push(fixed(
                6,
                Arc::new(Int32Array::from(std::mem::replace(&mut self.labels, Vec::with_capacity(cap)))),
            ));
        }
        let schema = self.schema.clone();
        self.file.write(&schema, columns)
    }

    /// Completes the file, syncs it and renames it into place.
    pub fn finish(mut self) -> Result<ShardInfo> {
        self.flush_batch()?;
        self.file.finish()
    }

    /// Abandons the shard: the temporary file is removed.
    pub fn abort(self) {
        self.file.abort();
    }
}
