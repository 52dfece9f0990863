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
#[serde(deny_unknown_fields)]
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
    /// SHA-256 of this file with these 64 hex digits read as zeros (see [`write_manifest`]); empty
    /// in manifests written before it existed.
    #[serde(default)]
    pub manifest_sha256: String,
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

/// The manifest's own checksum: written last in the file, it is the SHA-256 of the file's bytes
/// with its 64 hex digits replaced by `0`. A checksum inside the file it covers that any language
/// checks with one byte replace (no canonical re-serialization), so a flipped byte anywhere in the
/// manifest (a count, the config hash, a shard's checksum) is caught where the manifest is read.
const CHECKSUM_KEY: &[u8] = b"\"manifest_sha256\": \"";

fn checksum_span(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let at = memchr::memmem::rfind(bytes, CHECKSUM_KEY)? + CHECKSUM_KEY.len();
    (bytes.len() >= at + 64).then_some(at..at + 64)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Writes `manifest` (pretty JSON) with its checksum filled in, atomically.
pub fn write_manifest(path: &Path, manifest: &mut Manifest) -> Result<()> {
    manifest.manifest_sha256 = "0".repeat(64);
    let mut bytes = serde_json::to_vec_pretty(manifest).map_err(|e| Error::input(path, e.to_string()))?;
    bytes.push(b'\n');
    let span = checksum_span(&bytes).ok_or_else(|| Error::input(path, "manifest checksum field missing"))?;
    let hex = sha256_hex(&bytes);
    bytes[span].copy_from_slice(hex.as_bytes());
    manifest.manifest_sha256 = hex;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// Reads a manifest, checking its checksum (a manifest without one predates it and is taken as
/// is); `None` when there is none.
pub fn read_manifest(path: &Path) -> Result<Option<Manifest>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if let Some(span) = checksum_span(&bytes) {
        let stated = bytes[span.clone()].to_vec();
        let mut zeroed = bytes.clone();
        zeroed[span].fill(b'0');
        if sha256_hex(&zeroed).as_bytes() != stated.as_slice() {
            return Err(Error::input(
                path,
                "checksum mismatch: changed since it was written; rerun `dataprep tokenize` into a fresh directory",
            ));
        }
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::input(path, format!("unreadable: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_checksum_catches_any_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST);
        let mut m = Manifest {
            schema_version: 1,
            dataprep_version: "0".into(),
            objective: "clm".into(),
            layout: None,
            mlm: None,
            seq_len: 8,
            dtype: Dtype::Uint16,
            tokenizer: TokenizerInfo {
                file: "t.json".into(),
                sha256: "ab".into(),
                vocab_size: 300,
                eos_id: 0,
                bos_id: None,
                pad_id: 0,
            },
            config: serde_json::json!({"a": 1}),
            config_hash: "cd".into(),
            inputs: vec![],
            documents: DocumentCounts::default(),
            splits: BTreeMap::new(),
            manifest_sha256: String::new(),
        };
        write_manifest(&path, &mut m).unwrap();
        assert_eq!(m.manifest_sha256.len(), 64);
        assert_eq!(read_manifest(&path).unwrap().unwrap().manifest_sha256, m.manifest_sha256);
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            std::fs::write(&path, &bad).unwrap();
            assert!(read_manifest(&path).is_err(), "flip at byte {i} not caught");
        }
    }
}
