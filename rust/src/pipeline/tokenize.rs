//! `tokenize`: corpus -> packed causal-LM or MLM shards + manifest. The entry point,
//! [`tokenize`], wires the stages of [`super`] (read -> dedup -> encode -> row sink -> shard
//! writer) and holds the options ([`TokenizeConfig`]).
//!
//! Threads: the reader ([`read_batches`]) feeds encoder workers (`super::encode`, one encode
//! cache each); encoded batches go to one writer thread that restores input order (by batch
//! sequence number), assigns each document to `train` or `val` (`split_of`) and hands it to
//! the split's row sink (`super::sink`), which builds rows and writes shards. Output therefore
//! does not depend on the thread count. Memory is bounded: a few batches in flight, one record
//! batch per open shard, the row builders' carries and the encode caches (bounded), whatever the
//! corpus size.
//!
//! Resume (`super::resume`): a shard is closed only where its sink allows (a document
//! boundary; for NSP a block end), and right after it is renamed into place the journal records,
//! for its split, the shards so far, the next document index and the row builder's carry. A rerun
//! with the same configuration restores each split from the journal, skips documents already
//! packed (without encoding them) and rebuilds the rest, so the final output is byte-identical
//! to an uninterrupted run; finished shards are not redone.
//!
//! MLM ([`Objective::Mlm`]) runs through the same reader, workers and ordered writer: workers
//! split documents into sentences and encode them with word starts, the sinks build rows with
//! [`crate::rows::mlm`] (see `super::sink` for NSP blocks and static masking).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::encode::{Encoder, Ids, Sentences};
use super::resume::{Checkpoints, OutDir};
use super::sink::{Causal, FullSentence, Nsp, RowSink, ShardFiles};
use super::units::{UnitBatch, UnitReader};
use crate::corpus::{read_batches, CorpusConfig, InputFile, ReadStats};
use crate::dedup::{find_duplicates, DedupConfig};
use crate::error::{Error, Result};
use crate::hash::splitmix64;
use crate::mask::MaskConfig;
use crate::progress::Progress;
use crate::rows::mlm::SequenceConfig;
use crate::shards::manifest::{DocumentCounts, Manifest, SplitInfo, StreamState, TokenizerInfo};
use crate::shards::mlm::mlm_schema;
use crate::shards::{causal_schema, Dtype, SCHEMA_VERSION};
use crate::tokenizer::EncodeCache;
use crate::tokenizer::Tokenizer;
use crate::unitfile::Coverage;

pub use crate::rows::causal::LastRow;
pub use crate::rows::mlm::Layout;

const SPLITS: [&str; 2] = ["train", "val"];

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
    /// The layout's name in the manifest and the shard schema.
    pub fn layout_name(&self) -> &'static str {
        self.layout.manifest_name()
    }
}

/// Every option of a `tokenize` run that changes its output (plus `threads` and `batch_bytes`,
/// which do not).
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

    /// The MLM row builder's configuration.
    pub(super) fn sequence_config(&self, m: &MlmConfig) -> SequenceConfig {
        SequenceConfig::new(self.seq_len, m.cls, m.sep, self.pad).layout(m.layout).short_seq_prob(m.short_seq_prob)
    }
}

/// The split of document `index`: 1 (`val`) for a seeded hash below `val_fraction`, else 0.
/// Depends on nothing but `(seed, index)`.
fn split_of(cfg: &TokenizeConfig, index: u64) -> usize {
    let u = (splitmix64(cfg.seed ^ splitmix64(index)) >> 11) as f64 / (1u64 << 53) as f64;
    usize::from(u < cfg.val_fraction)
}

/// Work units in input order as they become ready: each unit file's path and SHA-256, or an
/// error that ends the run. A list, or a driver's iterator that blocks until the next unit in
/// order is done (so the sinks run while later units are still being encoded).
pub type Units<'a> = std::sync::Mutex<&'a mut (dyn Iterator<Item = Result<(PathBuf, String)>> + Send)>;

/// Where `tokenize` gets the encoded documents.
#[derive(Clone, Copy)]
pub enum Source<'u, 'i> {
    /// Reads and encodes the inputs here (the local engine).
    Read,
    /// Work units that [`super::units`] made from the inputs (on any machine). Nothing is read
    /// or encoded here.
    Units(&'u Units<'i>),
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
    source: Source<'_, '_>,
    progress: &Progress,
) -> Result<Manifest> {
    validate(cfg)?;
    if cfg.dedup.is_some() && matches!(source, Source::Units(_)) {
        return Err(Error::Config("--dedup is not supported with work units (--engine ray) yet".into()));
    }
    let dir = OutDir::open(out, files, tokenizer_file, &config_json)?;
    if let Some(m) = dir.finished()? {
        return Ok(m);
    }
    let checkpoints = dir.checkpoints()?;
    // The tokenizer copy that the manifest points to.
    let tok_name = dir.copy_tokenizer(tokenizer_file)?;

    let dtype = Dtype::for_vocab(tok.vocab_size());
    // Dedup is a deterministic first pass, so a resumed run recomputes the same drop list.
    let (removed, dedup_stats) = match &cfg.dedup {
        Some(d) => {
            let r = find_duplicates(files, corpus, d, progress)?;
            (r.removed, Some(r.stats))
        }
        None => (Vec::new(), None),
    };
    let run = Run { files, corpus, cfg, out, progress, removed: &removed, dtype, config_hash: &dir.config_hash };
    let streamed = match &cfg.objective {
        Objective::Clm => {
            let schema = causal_schema(cfg.seq_len, dtype);
            run.stream(Ids(tok), source, checkpoints, &schema, |_, state, files| Ok(Causal::new(cfg, state, files)))?
        }
        Objective::Mlm(m) => {
            let schema = mlm_schema(cfg.seq_len, dtype, m.layout_name(), m.static_masking.is_some());
            match m.layout {
                Layout::FullSentence => {
                    run.stream(Sentences(tok), source, checkpoints, &schema, |s, state, files| {
                        FullSentence::new(cfg, m, s, state, files)
                    })?
                }
                Layout::NspPairs => run.stream(Sentences(tok), source, checkpoints, &schema, |s, state, files| {
                    Ok(Nsp::new(cfg, m, s, state, files))
                })?,
            }
        }
    };

    let Streamed { read: stats, splits } = streamed;
    let documents = DocumentCounts {
        read: stats.documents,
        bytes: stats.bytes,
        train: splits[0].documents,
        val: splits[1].documents,
        skipped: BTreeMap::from([
            ("empty".to_string(), stats.empty_skipped),
            ("invalid_utf8".to_string(), stats.invalid_utf8_skipped),
            ("exact_duplicate".to_string(), dedup_stats.as_ref().map_or(0, |d| d.exact_removed)),
            ("near_duplicate".to_string(), dedup_stats.as_ref().map_or(0, |d| d.near_removed)),
        ]),
        invalid_utf8_replaced: stats.invalid_utf8_replaced,
        truncated_documents: stats.truncated_documents,
        binary_skipped: stats.binary_skipped,
        binary_skipped_paths: stats.binary_paths.iter().map(|p| p.display().to_string()).collect(),
    };
    let splits = SPLITS.iter().map(ToString::to_string).zip(splits).collect();
    let mut manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        dataprep_version: env!("CARGO_PKG_VERSION").to_string(),
        objective: if cfg.mlm().is_some() { "mlm" } else { "clm" }.into(),
        layout: cfg.mlm().map(|m| m.layout_name().to_string()),
        mlm: cfg.mlm().map(|m| m.manifest_info.clone()),
        seq_len: cfg.seq_len,
        dtype,
        tokenizer: TokenizerInfo {
            file: tok_name,
            sha256: dir.tokenizer_sha256.clone(),
            vocab_size: tok.vocab_size(),
            eos_id: cfg.eos,
            bos_id: cfg.bos,
            pad_id: cfg.pad,
        },
        config: config_json,
        config_hash: dir.config_hash.clone(),
        inputs: dir.inputs.clone(),
        documents,
        splits,
        manifest_sha256: String::new(),
    };
    dir.commit(&mut manifest)?;
    Ok(manifest)
}

fn validate(cfg: &TokenizeConfig) -> Result<()> {
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
    Ok(())
}

/// What every objective's pass shares.
struct Run<'a> {
    files: &'a [InputFile],
    corpus: &'a CorpusConfig,
    cfg: &'a TokenizeConfig,
    out: &'a Path,
    progress: &'a Progress,
    /// Sorted corpus indices that dedup left out.
    removed: &'a [u64],
    dtype: Dtype,
    /// The run's configuration hash: work units must have been made for it.
    config_hash: &'a str,
}

/// What a pass read and wrote.
struct Streamed {
    read: ReadStats,
    /// Per split, in [`SPLITS`] order.
    splits: Vec<SplitInfo>,
}

/// A split in progress: its journal entry, its document count and its row sink.
struct Split<S> {
    name: &'static str,
    state: StreamState,
    documents: u64,
    sink: S,
}

/// The writer thread's state: the splits' sinks and the journal.
struct Writer<S> {
    rows_per_shard: u64,
    splits: Vec<Split<S>>,
    checkpoints: Checkpoints,
}

impl<S: RowSink> Writer<S> {
    /// Adds document `k` of `batch`, corpus index `index`, to split `s`.
    fn add(&mut self, s: usize, index: u64, batch: &S::Batch, k: usize) -> Result<()> {
        let split = &mut self.splits[s];
        let boundary = split.sink.push(batch, k)?;
        split.documents += 1;
        if boundary && split.sink.shard_rows() >= self.rows_per_shard {
            self.close_shard(s, index + 1)?;
        }
        Ok(())
    }

    /// Closes the open shard of split `s` and records the checkpoint in the journal.
    fn close_shard(&mut self, s: usize, next_doc: u64) -> Result<()> {
        let split = &mut self.splits[s];
        let Some(shard) = split.sink.close_shard()? else { return Ok(()) };
        split.state.shards.push(shard);
        split.sink.save_carry(&mut split.state);
        split.state.next_doc = next_doc;
        split.state.documents = split.documents;
        self.checkpoints.record(split.name, &split.state)
    }

    /// Last rows and last shards of every split.
    fn finish(mut self) -> Result<Vec<SplitInfo>> {
        let mut infos = Vec::new();
        for split in &mut self.splits {
            let (last, dropped_tokens) = split.sink.finish()?;
            split.state.shards.extend(last);
            let shards = std::mem::take(&mut split.state.shards);
            infos.push(SplitInfo {
                rows: shards.iter().map(|x| x.rows).sum(),
                tokens: shards.iter().map(|x| x.tokens).sum(),
                documents: split.documents,
                dropped_tokens,
                shards,
            });
        }
        Ok(infos)
    }

    fn abort(&mut self) {
        for split in &mut self.splits {
            split.sink.abort();
        }
    }
}

/// An encoded batch.
struct Encoded<B> {
    /// The read batch's sequence number: the writer restores input order by it.
    seq: u64,
    /// (corpus index, split) of each document of `docs`.
    meta: Vec<(u64, usize)>,
    docs: B,
}

impl Run<'_> {
    /// Reads, encodes with `encoder` and writes both splits through the sinks `sink(split
    /// number, journal entry, shard files)` makes.
    fn stream<E: Encoder, S: RowSink<Batch = E::Batch>>(
        &self,
        encoder: E,
        source: Source<'_, '_>,
        checkpoints: Checkpoints,
        schema: &arrow_schema::SchemaRef,
        sink: impl Fn(usize, &StreamState, ShardFiles) -> Result<S>,
    ) -> Result<Streamed> {
        let cfg = self.cfg;
        let mut splits = Vec::new();
        for (s, &name) in SPLITS.iter().enumerate() {
            let state = checkpoints.state(name);
            let files = ShardFiles {
                dir: self.out.to_path_buf(),
                split: name,
                done: state.shards.len(),
                schema: schema.clone(),
                seq_len: cfg.seq_len,
                dtype: self.dtype,
            };
            let sink = sink(s, &state, files)?;
            splits.push(Split { name, documents: state.documents, state, sink });
        }
        let mut writer = Writer { rows_per_shard: cfg.rows_per_shard, splits, checkpoints };
        let next_doc = [writer.splits[0].state.next_doc, writer.splits[1].state.next_doc];
        let removed = self.removed;
        let wanted = |index: u64| -> Option<usize> {
            let s = split_of(cfg, index);
            (index >= next_doc[s] && removed.binary_search(&index).is_err()).then_some(s)
        };

        let stats = match source {
            Source::Read => self.read_and_encode(&encoder, &mut writer, &wanted),
            Source::Units(units) => self.read_units(&mut writer, units, &wanted),
        };
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                writer.abort();
                return Err(e);
            }
        };
        if stats.documents == 0 {
            let what = self.files.first().map(|f| f.path.display().to_string()).unwrap_or_default();
            return Err(Error::input(what, "no text found in the input (empty files or no documents)"));
        }
        Ok(Streamed { read: stats, splits: writer.finish()? })
    }

    /// The local engine: reads the inputs, encodes them on the worker threads and hands the
    /// documents to `writer` on one thread, in input order.
    fn read_and_encode<E: Encoder, S: RowSink<Batch = E::Batch>>(
        &self,
        encoder: &E,
        writer: &mut Writer<S>,
        wanted: &(dyn Fn(u64) -> Option<usize> + Sync),
    ) -> Result<ReadStats> {
        let cfg = self.cfg;
        let (tx, rx) = crossbeam_channel::bounded::<Encoded<E::Batch>>(2 * cfg.threads + 2);
        let writer_result: Mutex<Option<Result<()>>> = Mutex::new(None);
        let read = std::thread::scope(|scope| {
            let w = &mut *writer;
            let wr = &writer_result;
            scope.spawn(move || {
                let mut pending = BTreeMap::new();
                let mut next_seq = 0;
                let result = (|| {
                    for batch in &rx {
                        pending.insert(batch.seq, batch);
                        while let Some(Encoded { meta, docs, .. }) = pending.remove(&next_seq) {
                            for (k, &(index, s)) in meta.iter().enumerate() {
                                w.add(s, index, &docs, k)?;
                            }
                            next_seq += 1;
                        }
                    }
                    Ok(())
                })();
                *wr.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
            });
            let r = read_batches(
                self.files,
                self.corpus,
                cfg.batch_bytes,
                cfg.threads,
                self.progress,
                EncodeCache::new,
                |cache, batch| {
                    let mut meta = Vec::with_capacity(batch.docs.len());
                    let mut docs = encoder.batch(batch.bytes, batch.docs.len());
                    for d in &batch.docs {
                        let Some(split) = wanted(d.index) else { continue };
                        meta.push((d.index, split));
                        encoder.encode(cache, &d.text, &mut docs)?;
                    }
                    self.progress.add_tokens(E::tokens(&docs));
                    tx.send(Encoded { seq: batch.seq, meta, docs }).map_err(|_| Error::Cancelled)
                },
            );
            drop(tx);
            r
        });
        let writer_outcome = writer_result.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The writer's error explains the reader's "Cancelled" it caused.
        if let Some(Err(e)) = writer_outcome {
            return Err(e);
        }
        Ok(read?.0)
    }

    /// Work units, as `units` yields them: each is checked (its SHA-256, made for this run, its
    /// files the next inputs in order) before any of it is used, then its documents go to
    /// `writer`, each at its corpus index (the documents of the units before it plus its index
    /// in its unit). Units that end before the inputs do are an error (the shards written so far
    /// are kept with the journal: a rerun with every unit resumes).
    fn read_units<B: UnitBatch, S: RowSink<Batch = B>>(
        &self,
        writer: &mut Writer<S>,
        units: &Units<'_>,
        wanted: &(dyn Fn(u64) -> Option<usize> + Sync),
    ) -> Result<ReadStats> {
        self.progress.phase("assembling", self.files.iter().map(|f| f.size).sum());
        let mut units = units.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut coverage = Coverage::new(self.files, self.config_hash);
        let (mut stats, mut done) = (ReadStats::default(), 0);
        for next in &mut **units {
            let (path, sha256) = next?;
            let mut unit = UnitReader::open(&path, &sha256)?;
            coverage.next(&path, unit.header())?;
            done += unit.header().files.iter().map(|f| f.1).sum::<u64>();
            let offset = stats.documents;
            let unit_stats = loop {
                self.progress.check()?;
                match unit.next::<B>()? {
                    Ok((first, batch)) => {
                        for k in 0..batch.documents() {
                            let index = offset + first + k as u64;
                            if let Some(s) = wanted(index) {
                                writer.add(s, index, &batch, k)?;
                            }
                        }
                        self.progress.add_docs(batch.documents() as u64);
                    }
                    Err(unit_stats) => break unit_stats,
                }
            };
            stats.add(&unit_stats);
            self.progress.set_done(done);
        }
        coverage.finish()?;
        Ok(stats)
    }
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
