//! `tokenize`: corpus -> packed causal-LM shards + manifest.
//!
//! Threads: the shared reading pipeline feeds encoder workers (one encode cache each); encoded
//! batches go to one writer thread that restores input order (by batch sequence number), assigns
//! each document to `train` or `val`, packs and writes shards. Output therefore does not depend
//! on the thread count. Memory is bounded: a few batches in flight, one record batch per open
//! shard, the packers' carries and the encode caches (bounded), whatever the corpus size.
//!
//! Resume: a shard is closed only at a document boundary, and right after it is renamed into
//! place the journal records, for its split, the shards so far, the next document index and the
//! packer's carry. A rerun with the same configuration restores each split from the journal,
//! skips documents already packed (without encoding them) and rebuilds the rest, so the final
//! output is byte-identical to an uninterrupted run; finished shards are not redone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::bpe::{EncodeCache, Tokenizer};
use crate::corpus::{read_batches, CorpusConfig, InputFile};
use crate::dedup::{find_duplicates, DedupConfig, DedupStats};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::pack::{LastRow, Packer};
use crate::progress::Progress;
use crate::shards::manifest::{
    read_json, write_json, DocumentCounts, InputInfo, Journal, Manifest, SplitInfo, StreamState, TokenizerInfo,
    JOURNAL, MANIFEST,
};
use crate::shards::{causal_schema, Dtype, ShardWriter, SCHEMA_VERSION};

const SPLITS: [&str; 2] = ["train", "val"];

/// An encoded batch: (sequence number, [(document index, split, ids)]).
type Encoded = (u64, Vec<(u64, usize, Vec<u32>)>);

#[derive(Debug, Clone)]
pub struct TokenizeConfig {
    pub seq_len: usize,
    /// Share of documents (by a seeded hash of their index) that go to the `val` split.
    pub val_fraction: f64,
    pub seed: u64,
    /// A shard is closed at the first document boundary after it holds this many rows.
    pub rows_per_shard: u64,
    pub last_row: LastRow,
    pub threads: usize,
    pub batch_bytes: usize,
    pub eos: u32,
    pub bos: Option<u32>,
    pub pad: u32,
    /// Deduplicate before encoding: a first pass finds the documents to drop (see `dedup`).
    pub dedup: Option<DedupConfig>,
}

/// `splitmix64`: a fixed, well-mixed hash so the split never depends on anything but (seed, index).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn split_of(cfg: &TokenizeConfig, index: u64) -> usize {
    let u = (mix(cfg.seed ^ mix(index)) >> 11) as f64 / (1u64 << 53) as f64;
    usize::from(u < cfg.val_fraction)
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

struct Split {
    name: &'static str,
    state: StreamState,
    packer: Packer,
    open: Option<ShardWriter>,
    documents: u64,
}

struct Writer<'a> {
    out: &'a Path,
    cfg: &'a TokenizeConfig,
    schema: arrow_schema::SchemaRef,
    dtype: Dtype,
    splits: Vec<Split>,
    journal: Journal,
}

impl Writer<'_> {
    fn shard_path(&self, s: usize) -> PathBuf {
        let split = &self.splits[s];
        self.out.join(format!("{}-{:05}.arrow", split.name, split.state.shards.len()))
    }

    fn add_doc(&mut self, s: usize, index: u64, ids: &[u32]) -> Result<()> {
        if self.splits[s].open.is_none() {
            let path = self.shard_path(s);
            self.splits[s].open = Some(ShardWriter::create(&path, self.schema.clone(), self.cfg.seq_len, self.dtype)?);
        }
        let split = &mut self.splits[s];
        let shard = split.open.as_mut().expect("opened above");
        let mut err = None;
        split.packer.push_doc(ids, self.cfg.bos, self.cfg.eos, |row| {
            if err.is_none() {
                err = shard.push(&row).err();
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        split.documents += 1;
        if shard.rows() >= self.cfg.rows_per_shard {
            self.close_shard(s, index + 1)?;
        }
        Ok(())
    }

    /// Closes the open shard of split `s` and records the checkpoint in the journal.
    fn close_shard(&mut self, s: usize, next_doc: u64) -> Result<()> {
        let split = &mut self.splits[s];
        let Some(shard) = split.open.take() else { return Ok(()) };
        split.state.shards.push(shard.finish()?);
        let (carry, starts) = split.packer.carry();
        split.state.next_doc = next_doc;
        split.state.carry = carry.to_vec();
        split.state.carry_starts = starts.to_vec();
        split.state.documents = split.documents;
        self.journal.streams.insert(split.name.to_string(), split.state.clone());
        write_json(&self.out.join(JOURNAL), &self.journal)
    }

    /// Last rows and last shards. Returns the dropped-token count per split.
    fn finish(&mut self) -> Result<[u64; 2]> {
        let mut dropped = [0; 2];
        #[allow(clippy::needless_range_loop)] // `s` indexes both `dropped` and `self.splits`
        for s in 0..2 {
            let packer = std::mem::replace(&mut self.splits[s].packer, Packer::new(self.cfg.seq_len));
            let mut rows = Vec::new();
            dropped[s] = packer.finish(self.cfg.last_row, self.cfg.pad, |r| {
                rows.push((r.ids.to_vec(), r.doc_starts.to_vec(), r.n_tokens));
            });
            if !rows.is_empty() && self.splits[s].open.is_none() {
                let path = self.shard_path(s);
                self.splits[s].open =
                    Some(ShardWriter::create(&path, self.schema.clone(), self.cfg.seq_len, self.dtype)?);
            }
            if let Some(shard) = self.splits[s].open.as_mut() {
                for (ids, starts, n) in &rows {
                    shard.push(&crate::pack::Row { ids, doc_starts: starts, n_tokens: *n })?;
                }
            }
            if let Some(shard) = self.splits[s].open.take() {
                self.splits[s].state.shards.push(shard.finish()?);
            }
        }
        Ok(dropped)
    }

    fn abort(&mut self) {
        for s in &mut self.splits {
            if let Some(shard) = s.open.take() {
                shard.abort();
            }
        }
    }
}

/// Removes temporary files a killed run left (`.<name>.tmp-<pid>`); they never hold finished work.
fn remove_stale_temps(out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Tokenizes `files` into `out`. `tokenizer_file` is copied next to the shards; `config_json`
/// (every option of the command) goes into the manifest and, with the tokenizer and the input
/// list, into the hash that decides whether an existing `out` is resumed.
#[allow(clippy::too_many_arguments)]
pub fn tokenize(
    files: &[InputFile],
    corpus: &CorpusConfig,
    tok: &Tokenizer,
    tokenizer_file: &Path,
    cfg: &TokenizeConfig,
    config_json: serde_json::Value,
    out: &Path,
    progress: &Progress,
) -> Result<Manifest> {
    if cfg.seq_len < 2 {
        return Err(Error::Config("seq-len must be at least 2".into()));
    }
    if !(0.0..1.0).contains(&cfg.val_fraction) {
        return Err(Error::Config("val-fraction must be in [0, 1)".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    remove_stale_temps(out)?;
    let tok_sha = sha256_file(tokenizer_file)?;
    let inputs: Vec<InputInfo> =
        files.iter().map(|f| InputInfo { path: f.path.display().to_string(), bytes: f.size }).collect();
    let config_hash = {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&config_json).unwrap_or_default());
        h.update(tok_sha.as_bytes());
        for i in &inputs {
            h.update(format!("{}\0{}\n", i.path, i.bytes).as_bytes());
        }
        format!("{:x}", h.finalize())
    };
    let other_config = || {
        Error::input(out, "holds shards made with other options, tokenizer or inputs; use another --out or remove it")
    };
    if let Some(m) = read_json::<Manifest>(&out.join(MANIFEST))? {
        return if m.config_hash == config_hash { Ok(m) } else { Err(other_config()) };
    }
    let journal = match read_json::<Journal>(&out.join(JOURNAL))? {
        Some(j) if j.config_hash != config_hash => return Err(other_config()),
        Some(j) => j,
        None => Journal { config_hash: config_hash.clone(), streams: BTreeMap::new() },
    };

    // The tokenizer copy that the manifest points to.
    let tok_name = tokenizer_file.file_name().map_or("tokenizer.json".into(), |n| n.to_string_lossy().into_owned());
    let tok_bytes = std::fs::read(tokenizer_file).map_err(|e| Error::io(tokenizer_file, e))?;
    write_atomic(&out.join(&tok_name), |w| w.write_all(&tok_bytes))?;

    let dtype = Dtype::for_vocab(tok.vocab_size());
    let mut writer = Writer {
        out,
        cfg,
        schema: causal_schema(cfg.seq_len, dtype),
        dtype,
        splits: SPLITS
            .iter()
            .map(|&name| {
                let state = journal.streams.get(name).cloned().unwrap_or_default();
                let packer = Packer::with_carry(cfg.seq_len, state.carry.clone(), state.carry_starts.clone());
                Split { name, documents: state.documents, state, packer, open: None }
            })
            .collect(),
        journal,
    };
    // Dedup is a deterministic first pass, so a resumed run recomputes the same drop list.
    let (removed, dedup_stats) = match &cfg.dedup {
        Some(d) => {
            let r = find_duplicates(files, corpus, d, progress)?;
            (r.removed, Some(r.stats))
        }
        None => (Vec::new(), None),
    };
    let next_doc = [writer.splits[0].state.next_doc, writer.splits[1].state.next_doc];
    let wanted = |index: u64| -> Option<usize> {
        let s = split_of(cfg, index);
        (index >= next_doc[s] && removed.binary_search(&index).is_err()).then_some(s)
    };

    let (tx, rx) = crossbeam_channel::bounded::<Encoded>(2 * cfg.threads + 2);
    let writer_result: Mutex<Option<Result<()>>> = Mutex::new(None);
    let read = std::thread::scope(|s| {
        let w = &mut writer;
        let wr = &writer_result;
        s.spawn(move || {
            let mut pending: BTreeMap<u64, Vec<(u64, usize, Vec<u32>)>> = BTreeMap::new();
            let mut next_seq = 0;
            let result = (|| {
                for (seq, docs) in &rx {
                    pending.insert(seq, docs);
                    while let Some(docs) = pending.remove(&next_seq) {
                        for (index, split, ids) in docs {
                            w.add_doc(split, index, &ids)?;
                        }
                        next_seq += 1;
                    }
                }
                Ok(())
            })();
            if result.is_err() {
                w.abort();
            }
            *wr.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
        });
        let r =
            read_batches(files, corpus, cfg.batch_bytes, cfg.threads, progress, EncodeCache::new, |cache, batch| {
                let mut docs = Vec::with_capacity(batch.docs.len());
                let mut n_tokens = 0;
                for d in batch.docs {
                    if let Some(split) = wanted(d.index) {
                        let mut ids = Vec::with_capacity(d.text.len() / 3);
                        tok.encode_into(&d.text, cache, &mut ids);
                        n_tokens += ids.len() as u64;
                        docs.push((d.index, split, ids));
                    }
                }
                progress.add_tokens(n_tokens);
                tx.send((batch.seq, docs)).map_err(|_| Error::Cancelled)
            });
        drop(tx);
        r
    });
    let writer_outcome = writer_result.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(Err(e)) = writer_outcome {
        return Err(e);
    }
    let (stats, _) = match read {
        Ok(x) => x,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    };
    if stats.documents == 0 {
        let what = files.first().map(|f| f.path.display().to_string()).unwrap_or_default();
        return Err(Error::input(what, "no text found in the input (empty files or no documents)"));
    }
    let dropped = writer.finish()?;

    let mut splits = BTreeMap::new();
    for (s, split) in writer.splits.iter().enumerate() {
        let shards = split.state.shards.clone();
        splits.insert(
            split.name.to_string(),
            SplitInfo {
                rows: shards.iter().map(|x| x.rows).sum(),
                tokens: shards.iter().map(|x| x.tokens).sum(),
                documents: split.documents,
                dropped_tokens: dropped[s],
                shards,
            },
        );
    }
    let documents = DocumentCounts {
        read: stats.documents,
        bytes: stats.bytes,
        train: writer.splits[0].documents,
        val: writer.splits[1].documents,
        skipped: BTreeMap::from([
            ("empty".to_string(), stats.empty_skipped),
            ("invalid_utf8".to_string(), stats.invalid_utf8_skipped),
            ("exact_duplicate".to_string(), dedup_stats.as_ref().map_or(0, |d: &DedupStats| d.exact_removed)),
            ("near_duplicate".to_string(), dedup_stats.as_ref().map_or(0, |d| d.near_removed)),
        ]),
        invalid_utf8_replaced: stats.invalid_utf8_replaced,
    };
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        dataprep_version: env!("CARGO_PKG_VERSION").to_string(),
        objective: "clm".into(),
        seq_len: cfg.seq_len,
        dtype,
        tokenizer: TokenizerInfo {
            file: tok_name,
            sha256: tok_sha,
            vocab_size: tok.vocab_size(),
            eos_id: cfg.eos,
            bos_id: cfg.bos,
            pad_id: cfg.pad,
        },
        config: config_json,
        config_hash,
        inputs,
        documents,
        splits,
    };
    write_json(&out.join(MANIFEST), &manifest)?;
    let _ = std::fs::remove_file(out.join(JOURNAL));
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_split_is_seeded_and_near_the_fraction() {
        let cfg = TokenizeConfig {
            seq_len: 8,
            val_fraction: 0.1,
            seed: 7,
            rows_per_shard: 10,
            last_row: LastRow::Pad,
            threads: 1,
            batch_bytes: 1,
            eos: 0,
            bos: None,
            pad: 0,
            dedup: None,
        };
        let n = (0..100_000).filter(|&i| split_of(&cfg, i) == 1).count();
        assert!((9_500..10_500).contains(&n), "{n}");
        let other = TokenizeConfig { seed: 8, ..cfg.clone() };
        assert!((0..1000).any(|i| split_of(&cfg, i) != split_of(&other, i)));
    }
}
