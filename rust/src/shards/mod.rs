//! Shard files: Arrow IPC *stream* files (what `pyarrow.ipc.open_stream` memory-maps zero-copy and
//! what `datasets.Dataset.from_file` opens), one row per packed sequence.
//!
//! Schema version 1 (causal LM; MLM rows are in [`mlm`]), also stored in the schema metadata:
//! - `input_ids`: `fixed_size_list<uint16 | uint32>[seq_len]` (uint16 when the vocabulary fits);
//! - `doc_starts`: `list<int32>`, offsets in the row where a document begins;
//! - `n_tokens`: `int32`, real tokens in the row (`seq_len` except a padded last row).
//!
//! A shard is written under a temporary name and renamed when complete, so a shard file never
//! exists half-written; its SHA-256 is computed while it is written.

pub mod manifest;
pub mod mlm;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeListArray, Int32Array, ListArray, RecordBatch, UInt16Array, UInt32Array};
use arrow_buffer::OffsetBuffer;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::fsutil::{temp_path, HashingWriter};
use crate::rows::causal::Row;

pub const SCHEMA_VERSION: u32 = 1;
/// Rows per Arrow record batch inside a shard.
const BATCH_ROWS: usize = 1024;

/// Token storage width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Uint16,
    Uint32,
}

impl Dtype {
    /// The narrowest width that holds every id of a vocabulary of `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            Dtype::Uint16
        } else {
            Dtype::Uint32
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Dtype::Uint16 => DataType::UInt16,
            Dtype::Uint32 => DataType::UInt32,
        }
    }
}

/// The causal-LM shard schema.
pub fn causal_schema(seq_len: usize, dtype: Dtype) -> SchemaRef {
    let item = Arc::new(Field::new("item", dtype.arrow(), false));
    let meta = HashMap::from([
        ("dataprep.schema_version".to_string(), SCHEMA_VERSION.to_string()),
        ("dataprep.objective".to_string(), "clm".to_string()),
        ("dataprep.seq_len".to_string(), seq_len.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("input_ids", DataType::FixedSizeList(item, seq_len as i32), false),
            Field::new("doc_starts", DataType::List(Arc::new(Field::new("item", DataType::Int32, false))), false),
            Field::new("n_tokens", DataType::Int32, false),
        ],
        meta,
    ))
}

/// What the manifest records of a finished shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub rows: u64,
    /// Real (non-pad) tokens.
    pub tokens: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// A shard file being written: temporary name, running SHA-256, renamed into place by `finish`.
struct IpcFile {
    path: PathBuf,
    tmp: PathBuf,
    writer: StreamWriter<HashingWriter<BufWriter<File>>>,
    rows: u64,
    tokens: u64,
}

impl IpcFile {
    fn create(path: &Path, schema: &SchemaRef) -> Result<Self> {
        let tmp = temp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let writer = StreamWriter::try_new(sink, schema).map_err(|e| Error::input(path, e.to_string()))?;
        Ok(Self { path: path.to_path_buf(), tmp, writer, rows: 0, tokens: 0 })
    }

    fn write(&mut self, schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<()> {
        let batch =
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::input(&self.path, e.to_string()))?;
        self.rows += batch.num_rows() as u64;
        self.writer.write(&batch).map_err(|e| Error::input(&self.path, e.to_string()))
    }

    fn finish(mut self) -> Result<ShardInfo> {
        let path = self.path.clone();
        let io = |e: std::io::Error| Error::io(&path, e);
        self.writer.finish().map_err(|e| Error::input(&path, e.to_string()))?;
        let sink = self.writer.into_inner().map_err(|e| Error::input(&path, e.to_string()))?;
        let (inner, bytes, sha256) = sink.finish();
        let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        fs::rename(&self.tmp, &self.path).map_err(io)?;
        Ok(ShardInfo {
            file: self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            rows: self.rows,
            tokens: self.tokens,
            bytes,
            sha256,
        })
    }

    fn abort(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

fn ids_array(dtype: Dtype, ids: &mut Vec<u32>) -> ArrayRef {
    match dtype {
        Dtype::Uint16 => {
            let a = Arc::new(UInt16Array::from_iter_values(ids.iter().map(|&x| x as u16)));
            ids.clear();
            a
        }
        Dtype::Uint32 => Arc::new(UInt32Array::from(std::mem::take(ids))),
    }
}

fn list_item(schema: &SchemaRef, col: usize) -> Arc<Field> {
    match schema.field(col).data_type() {
        DataType::FixedSizeList(item, _) => item.clone(),
        _ => unreachable!("column {col} is a fixed-size list by construction"),
    }
}

/// Writes one causal shard; rows are buffered into record batches of [`BATCH_ROWS`].
pub struct ShardWriter {
    file: IpcFile,
    schema: SchemaRef,
    seq_len: usize,
    dtype: Dtype,
    ids: Vec<u32>,
    offsets: Vec<i32>,
    starts: Vec<i32>,
    n_tokens: Vec<i32>,
}

impl ShardWriter {
    pub fn create(path: &Path, schema: SchemaRef, seq_len: usize, dtype: Dtype) -> Result<Self> {
        Ok(Self {
            file: IpcFile::create(path, &schema)?,
            schema,
            seq_len,
            dtype,
            ids: Vec::with_capacity(BATCH_ROWS * seq_len),
            offsets: vec![0],
            starts: Vec::new(),
            n_tokens: Vec::new(),
        })
    }

    pub fn rows(&self) -> u64 {
        self.file.rows + self.n_tokens.len() as u64
    }

    pub fn push(&mut self, row: &Row<'_>) -> Result<()> {
        debug_assert_eq!(row.ids.len(), self.seq_len);
        self.ids.extend_from_slice(row.ids);
        self.starts.extend(row.doc_starts.iter().map(|&s| s as i32));
        self.offsets.push(self.starts.len() as i32);
        self.n_tokens.push(row.n_tokens as i32);
        self.file.tokens += row.n_tokens as u64;
        if self.n_tokens.len() == BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.n_tokens.is_empty() {
            return Ok(());
        }
        let input_ids = FixedSizeListArray::new(
            list_item(&self.schema, 0),
            self.seq_len as i32,
            ids_array(self.dtype, &mut self.ids),
            None,
        );
        let starts = Int32Array::from(std::mem::take(&mut self.starts));
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        let doc_starts =
            ListArray::new(Arc::new(Field::new("item", DataType::Int32, false)), offsets, Arc::new(starts), None);
        let n = Int32Array::from(std::mem::take(&mut self.n_tokens));
        self.file.write(&self.schema, vec![Arc::new(input_ids), Arc::new(doc_starts), Arc::new(n)])
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
