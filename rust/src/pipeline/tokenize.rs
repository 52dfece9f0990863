//! `tokenize`: corpus -> packed causal-LM or MLM shards + manifest.
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
//!
//! MLM ([`Objective::Mlm`]) runs through the same reader, workers and ordered writer. Workers
//! split each document into sentences and encode them with word starts; the writer builds rows
//! ([`crate::rows::mlm`]). Full-sentence packing streams like the causal packer (its carry
//! goes into the journal). NSP pairs draw a random B from *other* documents, so documents are
//! taken in blocks of `nsp_block_docs` consecutive documents of a split (corpus order); random Bs
//! come from the same block, draws are keyed by (seed, split, block index), and shards close
//! only at block ends, so a block is never cut by a checkpoint. Static masking writes each row
//! `dupe_factor` times in a row, copy `k` masked by `mask_sequence(seed, epoch = k, index = row
//! index in the split)` (the val split uses a seed derived from `seed`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::bpe::{EncodeCache, Tokenizer};
use crate::corpus::{read_batches, CorpusConfig, InputFile};
use crate::dedup::{find_duplicates, DedupConfig, DedupStats};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::hash::splitmix64 as mix;
use crate::mask::sentences::split_sentences;
use crate::mask::{mask_sequence, MaskConfig};
use crate::progress::Progress;
pub use crate::rows::causal::LastRow;
use crate::rows::causal::Packer;
pub use crate::rows::mlm::Layout;
use crate::rows::mlm::{nonempty_docs, nsp_rows, Doc, Documents, FullSentencePacker, Rows, SequenceConfig};
use crate::shards::manifest::{
    read_json, write_json, DocumentCounts, InputInfo, Journal, Manifest, SplitInfo, StreamState, TokenizerInfo,
    JOURNAL, MANIFEST,
};
use crate::shards::mlm::{mlm_schema, MlmRow, MlmShardWriter};
use crate::shards::{causal_schema, Dtype, ShardWriter, SCHEMA_VERSION};

const SPLITS: [&str; 2] = ["train", "val"];

/// The documents of an encoded batch: token ids (causal) or sentences with word starts (MLM).
enum EncodedDocs {
    Ids(Vec<Vec<u32>>),
    Sentences(Documents),
}

/// An encoded batch: sequence number, (document index, split) of each document, the documents.
type Encoded = (u64, Vec<(u64, usize)>, EncodedDocs);

/// What the rows are built for.
#[derive(Debug, Clone)]
pub enum Objective {
    /// Causal LM: `[BOS] doc [EOS]` concatenated and cut every `seq_len` tokens.
    Clm,
    /// Masked LM: `[CLS] A [SEP] (B [SEP])` rows.
    Mlm(Box<MlmConfig>),
}

/// MLM rows: layout, special ids and optional static masking. `pad` is [`TokenizeConfig::pad`].
#[derive(Debug, Clone)]
pub struct MlmConfig {
    pub layout: Layout,
    pub cls: u32,
    pub sep: u32,
    /// NSP only: documents per block; a random B comes from another document of the block.
    pub nsp_block_docs: usize,
    /// NSP only: probability of a shorter target length (BERT `short_seq_prob`).
    pub short_seq_prob: f64,
    /// Mask at prep time: the masking config and how many differently masked copies of each row.
    pub static_masking: Option<(MaskConfig, u32)>,
    /// What the manifest's `mlm` block says (special ids, masking options), built by the caller.
    pub manifest_info: serde_json::Value,
}

impl MlmConfig {
    pub fn layout_name(&self) -> &'static str {
        match self.layout {
            Layout::FullSentence => "full_sentence",
            Layout::NspPairs => "nsp",
        }
    }
}

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
    pub objective: Objective,
}

impl TokenizeConfig {
    fn mlm(&self) -> Option<&MlmConfig> {
        match &self.objective {
            Objective::Clm => None,
            Objective::Mlm(m) => Some(m),
        }
    }

    fn sequence_config(&self, m: &MlmConfig) -> SequenceConfig {
        SequenceConfig::new(self.seq_len, m.cls, m.sep, self.pad).layout(m.layout).short_seq_prob(m.short_seq_prob)
    }
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
    mlm: Option<MlmSplit>,
}

/// A split's MLM state.
struct MlmSplit {
    /// Full-sentence layout only.
    packer: Option<FullSentencePacker>,
    /// NSP only: the documents of the current block.
    block: Documents,
    /// Rows built and not yet written (scratch).
    rows: Rows,
    /// Rows written so far, before duplication: the masking index of the next row.
    unique_rows: u64,
    mask_seed: u64,
    open: Option<MlmShardWriter>,
    /// Static masking scratch.
    ids: Vec<u32>,
    labels: Vec<i64>,
}

const NSP_BLOCK_DOMAIN: u64 = 0x6e73_705f_626c_6f63; // "nsp_bloc"
const VAL_MASK_DOMAIN: u64 = 0x7661_6c5f_6d61_736b; // "val_mask"

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

    /// Adds the documents of one batch, in input order.
    fn add_batch(&mut self, meta: &[(u64, usize)], docs: &EncodedDocs) -> Result<()> {
        for (k, &(index, s)) in meta.iter().enumerate() {
            match docs {
                EncodedDocs::Ids(ids) => self.add_ids(s, index, &ids[k])?,
                EncodedDocs::Sentences(docs) => self.add_sentences(s, index, docs.doc(k))?,
            }
        }
        Ok(())
    }

    fn add_sentences(&mut self, s: usize, index: u64, doc: Doc<'_>) -> Result<()> {
        let cfg = self.cfg;
        let m = cfg.mlm().expect("sentences only for MLM");
        let split = &mut self.splits[s];
        split.documents += 1;
        let ms = split.mlm.as_mut().expect("MLM state");
        let boundary = match m.layout {
            Layout::FullSentence => {
                ms.packer.as_mut().expect("full-sentence packer").push_document(doc, &mut ms.rows);
                true
            }
            Layout::NspPairs => {
                ms.block.push_document(doc);
                let full = ms.block.len() >= m.nsp_block_docs;
                if full {
                    let block = split.documents.div_ceil(m.nsp_block_docs as u64) - 1;
                    nsp_block(&cfg.sequence_config(m), &ms.block, block_seed(cfg.seed, s, block), &mut ms.rows);
                    ms.block.clear();
                }
                full
            }
        };
        self.write_mlm_rows(s)?;
        let rows = self.splits[s].mlm.as_ref().and_then(|ms| ms.open.as_ref()).map_or(0, MlmShardWriter::rows);
        if boundary && rows >= cfg.rows_per_shard {
            self.close_shard(s, index + 1)?;
        }
        Ok(())
    }

    /// Writes the split's pending MLM rows (each `dupe_factor` times when statically masked).
    fn write_mlm_rows(&mut self, s: usize) -> Result<()> {
        let cfg = self.cfg;
        let m = cfg.mlm().expect("MLM");
        let path = self.shard_path(s);
        let ms = self.splits[s].mlm.as_mut().expect("MLM state");
        if ms.rows.is_empty() {
            return Ok(());
        }
        if ms.open.is_none() {
            ms.open = Some(MlmShardWriter::create(&path, self.schema.clone(), cfg.seq_len, self.dtype)?);
        }
        let shard = ms.open.as_mut().expect("opened above");
        let n = cfg.seq_len;
        for r in 0..ms.rows.len() {
            let span = r * n..(r + 1) * n;
            let row = MlmRow {
                input_ids: &ms.rows.input_ids[span.clone()],
                token_type_ids: &ms.rows.token_type_ids[span.clone()],
                special_tokens_mask: &ms.rows.special_tokens_mask[span.clone()],
                word_start: &ms.rows.word_start[span.clone()],
                n_tokens: ms.rows.length[r],
                nsp_label: ms.rows.nsp_label[r],
                labels: None,
            };
            match &m.static_masking {
                None => shard.push(&row)?,
                Some((mask_cfg, dupes)) => {
                    for k in 0..*dupes {
                        ms.ids.clear();
                        ms.ids.extend_from_slice(row.input_ids);
                        ms.labels.resize(n, 0);
                        mask_sequence(
                            mask_cfg,
                            ms.mask_seed,
                            u64::from(k),
                            ms.unique_rows,
                            &mut ms.ids,
                            &mut ms.labels,
                            row.special_tokens_mask,
                            Some(row.word_start),
                        );
                        shard.push(&MlmRow { input_ids: &ms.ids, labels: Some(&ms.labels), ..row })?;
                    }
                }
            }
            ms.unique_rows += 1;
        }
        ms.rows.clear();
        Ok(())
    }

    fn add_ids(&mut self, s: usize, index: u64, ids: &[u32]) -> Result<()> {
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
        if let Some(ms) = split.mlm.as_mut() {
            let Some(shard) = ms.open.take() else { return Ok(()) };
            split.state.shards.push(shard.finish()?);
            if let Some(p) = &ms.packer {
                let (ids, ws, sep) = p.carry();
                split.state.carry = ids;
                split.state.carry_word_start = ws;
                split.state.carry_pending_sep = sep;
            }
        } else {
            let Some(shard) = split.open.take() else { return Ok(()) };
            split.state.shards.push(shard.finish()?);
            let (carry, starts) = split.packer.carry();
            split.state.carry = carry.to_vec();
            split.state.carry_starts = starts.to_vec();
        }
        split.state.next_doc = next_doc;
        split.state.documents = split.documents;
        self.journal.streams.insert(split.name.to_string(), split.state.clone());
        write_json(&self.out.join(JOURNAL), &self.journal)
    }

    /// Last rows and last shards. Returns the dropped-token count per split.
    fn finish(&mut self) -> Result<[u64; 2]> {
        let mut dropped = [0; 2];
        if let Some(m) = self.cfg.mlm() {
            for s in 0..2 {
                let seed = block_seed(
                    self.cfg.seed,
                    s,
                    self.splits[s].documents.div_ceil(m.nsp_block_docs as u64).saturating_sub(1),
                );
                let seq = self.cfg.sequence_config(m);
                let ms = self.splits[s].mlm.as_mut().expect("MLM state");
                if let Some(p) = ms.packer.as_mut() {
                    p.finish(&mut ms.rows);
                }
                if !ms.block.is_empty() {
                    nsp_block(&seq, &ms.block, seed, &mut ms.rows);
                    ms.block.clear();
                }
                self.write_mlm_rows(s)?;
                let split = &mut self.splits[s];
                if let Some(shard) = split.mlm.as_mut().and_then(|ms| ms.open.take()) {
                    split.state.shards.push(shard.finish()?);
                }
            }
            return Ok(dropped);
        }
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
                    shard.push(&crate::rows::causal::Row { ids, doc_starts: starts, n_tokens: *n })?;
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
            if let Some(shard) = s.mlm.as_mut().and_then(|m| m.open.take()) {
                shard.abort();
            }
        }
    }
}

/// NSP rows of one block of documents; a random B comes from another document of the block.
fn nsp_block(seq: &SequenceConfig, block: &Documents, seed: u64, out: &mut Rows) {
    let nonempty = nonempty_docs(block);
    for d in 0..block.len() {
        nsp_rows(seq, block, &nonempty, d, seed, out);
    }
}

/// The NSP seed of block `block` of split `s`: the draws never depend on anything else.
fn block_seed(seed: u64, s: usize, block: u64) -> u64 {
    mix(seed ^ mix(NSP_BLOCK_DOMAIN ^ mix((block << 1) | s as u64)))
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
    if let Some(m) = cfg.mlm() {
        cfg.sequence_config(m).validate()?;
        if m.nsp_block_docs < 2 {
            return Err(Error::Config("nsp block must hold at least 2 documents".into()));
        }
        if let Some((mask_cfg, dupes)) = &m.static_masking {
            mask_cfg.validate()?;
            if *dupes == 0 {
                return Err(Error::Config("dupe-factor must be at least 1".into()));
            }
        }
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
    let schema = match cfg.mlm() {
        None => causal_schema(cfg.seq_len, dtype),
        Some(m) => mlm_schema(cfg.seq_len, dtype, m.layout_name(), m.static_masking.is_some()),
    };
    // Dedup is a deterministic first pass, so a resumed run recomputes the same drop list.
    let (removed, dedup_stats) = match &cfg.dedup {
        Some(d) => {
            let r = find_duplicates(files, corpus, d, progress)?;
            (r.removed, Some(r.stats))
        }
        None => (Vec::new(), None),
    };
    let mut splits = Vec::new();
    for (s, &name) in SPLITS.iter().enumerate() {
        let state = journal.streams.get(name).cloned().unwrap_or_default();
        let mlm = match cfg.mlm() {
            None => None,
            Some(m) => {
                let packer = match m.layout {
                    Layout::FullSentence => Some(FullSentencePacker::with_carry(
                        cfg.sequence_config(m),
                        &state.carry,
                        &state.carry_word_start,
                        state.carry_pending_sep,
                    )?),
                    Layout::NspPairs => None,
                };
                let dupes = m.static_masking.as_ref().map_or(1, |x| u64::from(x.1));
                Some(MlmSplit {
                    packer,
                    block: Documents::new(),
                    rows: Rows::new(cfg.seq_len),
                    unique_rows: state.shards.iter().map(|x| x.rows).sum::<u64>() / dupes,
                    mask_seed: if s == 0 { cfg.seed } else { mix(cfg.seed ^ VAL_MASK_DOMAIN) },
                    open: None,
                    ids: Vec::new(),
                    labels: Vec::new(),
                })
            }
        };
        let packer = Packer::with_carry(cfg.seq_len, state.carry.clone(), state.carry_starts.clone());
        splits.push(Split { name, documents: state.documents, state, packer, open: None, mlm });
    }
    let mut writer = Writer { out, cfg, schema, dtype, splits, journal };
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
            let mut pending: BTreeMap<u64, (Vec<(u64, usize)>, EncodedDocs)> = BTreeMap::new();
            let mut next_seq = 0;
            let result = (|| {
                for (seq, meta, docs) in &rx {
                    pending.insert(seq, (meta, docs));
                    while let Some((meta, docs)) = pending.remove(&next_seq) {
                        w.add_batch(&meta, &docs)?;
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
                let mut meta = Vec::with_capacity(batch.docs.len());
                let mut docs = match cfg.objective {
                    Objective::Clm => EncodedDocs::Ids(Vec::with_capacity(batch.docs.len())),
                    // About a token per 4 bytes of text; the buffers grow if need be.
                    Objective::Mlm(_) => EncodedDocs::Sentences(Documents::with_capacity(batch.bytes / 4)),
                };
                for d in batch.docs {
                    let Some(split) = wanted(d.index) else { continue };
                    meta.push((d.index, split));
                    match &mut docs {
                        EncodedDocs::Sentences(docs) => {
                            // Empty sentences are left out: they hold no token.
                            for r in split_sentences(&d.text) {
                                let (ids, ws) = docs.tokens_mut();
                                tok.encode_with_word_starts(&d.text[r], cache, ids, ws);
                                if docs.open_sentence_len() > 0 {
                                    docs.end_sentence();
                                }
                            }
                            docs.end_document();
                        }
                        EncodedDocs::Ids(docs) => {
                            let mut ids = Vec::with_capacity(d.text.len() / 3);
                            tok.encode_into(&d.text, cache, &mut ids);
                            docs.push(ids);
                        }
                    }
                }
                progress.add_tokens(match &docs {
                    EncodedDocs::Ids(docs) => docs.iter().map(Vec::len).sum::<usize>() as u64,
                    EncodedDocs::Sentences(docs) => docs.ids().len() as u64,
                });
                tx.send((batch.seq, meta, docs)).map_err(|_| Error::Cancelled)
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
        objective: if cfg.mlm().is_some() { "mlm" } else { "clm" }.into(),
        layout: cfg.mlm().map(|m| m.layout_name().to_string()),
        mlm: cfg.mlm().map(|m| m.manifest_info.clone()),
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
            objective: Objective::Clm,
        };
        let n = (0..100_000).filter(|&i| split_of(&cfg, i) == 1).count();
        assert!((9_500..10_500).contains(&n), "{n}");
        let other = TokenizeConfig { seed: 8, ..cfg.clone() };
        assert!((0..1000).any(|i| split_of(&cfg, i) != split_of(&other, i)));
    }
}
