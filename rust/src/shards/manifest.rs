//! `manifest.json`, written next to the shards once they are all complete, and the resume journal
//! (`.dataprep-journal.json`) kept while a run is in progress.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Dtype, ShardInfo};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

pub const MANIFEST: &str = "manifest.json";
pub const JOURNAL: &str = ".dataprep-journal.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// The copy of the tokenizer file kept next to the shards.
    pub file: String,
    pub sha256: String,
    pub vocab_size: usize,
    pub eos_id: u32,
    pub bos_id: Option<u32>,
    pub pad_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputInfo {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DocumentCounts {
    pub read: u64,
    pub bytes: u64,
    pub train: u64,
    pub val: u64,
    /// Why documents were left out, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Documents kept with invalid UTF-8 (or lone surrogate escapes) replaced by U+FFFD.
    pub invalid_utf8_replaced: u64,
    /// WikiExtractor documents without `</doc>` at the end of a file: kept, and counted here.
    #[serde(default)]
    pub truncated_documents: u64,
    /// Input files skipped as binary (files, not documents), and the first of their paths.
    #[serde(default)]
    pub binary_skipped: u64,
    #[serde(default)]
    pub binary_skipped_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SplitInfo {
    pub rows: u64,
    pub tokens: u64,
    pub documents: u64,
    /// Tokens of a last partial row left out under `--last-row drop`.
    pub dropped_tokens: u64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub dataprep_version: String,
    pub objective: String,
    /// MLM only: `full_sentence` or `nsp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// MLM only: special ids, NSP block size, and the static masking configuration (or null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlm: Option<serde_json::Value>,
    pub seq_len: usize,
    pub dtype: Dtype,
    pub tokenizer: TokenizerInfo,
    /// Every option of the command that made these shards.
    pub config: serde_json::Value,
    /// SHA-256 over config, tokenizer and input list: a rerun with the same hash resumes.
    pub config_hash: String,
    pub inputs: Vec<InputInfo>,
    pub documents: DocumentCounts,
    pub splits: BTreeMap<String, SplitInfo>,
}

/// A split's state at the end of its last completed shard: enough to continue exactly there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamState {
    pub shards: Vec<ShardInfo>,
    /// Documents with a smaller corpus index are already in `shards` (or in `carry`).
    pub next_doc: u64,
    pub carry: Vec<u32>,
    pub carry_starts: Vec<u32>,
    /// MLM full-sentence packer: word starts of `carry` and whether a boundary `[SEP]` is due.
    #[serde(default)]
    pub carry_word_start: Vec<u8>,
    #[serde(default)]
    pub carry_pending_sep: bool,
    pub documents: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Journal {
    pub config_hash: String,
    pub streams: BTreeMap<String, StreamState>,
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::input(path, format!("unreadable: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}
