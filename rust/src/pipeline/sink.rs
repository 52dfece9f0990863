//! Row sink and shard writer stages, one [`RowSink`] per split: it builds rows from encoded
//! documents with a row builder of [`crate::rows`] and writes them to the split's shards. One
//! sink per kind of row:
//! - [`Causal`]: the causal packer ([`Packer`]), rows `[BOS] doc [EOS]...` cut every `seq_len`;
//! - [`FullSentence`]: MLM rows packed across documents ([`FullSentencePacker`]);
//! - [`Nsp`]: MLM sentence pairs, built a block of `nsp_block_docs` documents at a time (a random
//!   B comes from another document of the block; the draws are keyed by seed, split and block
//!   index).
//!
//! The MLM sinks write through [`MlmRowWriter`], which does static masking: each row is written
//! `dupe_factor` times in a row, copy `k` masked by `mask_sequence(seed, epoch = k, index = row
//! index in the split)` (the val split uses a seed derived from `seed`).
//!
//! Invariants: between documents, a sink's whole state is its builder's carry (saved into the
//! journal by [`RowSink::save_carry`] when a shard closes, restored by the sink's constructor)
//! and the open shard. A shard may close only where [`RowSink::push`] says the rows so far stand
//! alone (after any document for the packers, at a block end for NSP), so a run resumed from the
//! journal writes byte-identical shards.

use std::path::PathBuf;

use arrow_schema::SchemaRef;

use super::tokenize::{MlmConfig, TokenizeConfig};
use crate::error::Result;
use crate::hash::splitmix64;
use crate::mask::{mask_sequence, MaskConfig};
use crate::rows::causal::{LastRow, Packer, Row};
use crate::rows::mlm::{nonempty_docs, nsp_rows, Documents, FullSentencePacker, Rows, SequenceConfig};
use crate::shards::manifest::StreamState;
use crate::shards::mlm::{MlmRow, MlmShardWriter};
use crate::shards::{Dtype, ShardInfo, ShardWriter};

const NSP_BLOCK_DOMAIN: u64 = 0x6e73_705f_626c_6f63; // "nsp_bloc"
const VAL_MASK_DOMAIN: u64 = 0x7661_6c5f_6d61_736b; // "val_mask"

/// A split's row builder and shard writer.
pub(super) trait RowSink: Send {
    /// The encoded documents it takes ([`super::encode::Encoder::Batch`]).
    type Batch;
    /// Adds document `k` of `batch` and writes the rows it completes. Returns whether a shard may
    /// close after it.
    fn push(&mut self, batch: &Self::Batch, k: usize) -> Result<bool>;
    /// Rows in the open shard (0 when none is open).
    fn shard_rows(&self) -> u64;
    /// Completes the open shard, if one is open.
    fn close_shard(&mut self) -> Result<Option<ShardInfo>>;
    /// Saves what the row builder holds back (its carry) into the journal entry `state`.
    fn save_carry(&self, state: &mut StreamState);
    /// Builds and writes the last rows and completes the last shard (if one is open). Returns
    /// that shard and the tokens left out (only under [`LastRow::Drop`]).
    fn finish(&mut self) -> Result<(Option<ShardInfo>, u64)>;
    /// Removes the open shard's temporary file.
    fn abort(&mut self);
}

/// Where a split's shards go: `<out>/<split>-NNNNN.arrow`, numbered on from the shards done.
pub(super) struct ShardFiles {
    pub dir: PathBuf,
    pub split: &'static str,
    /// Shards of the split already complete (restored from the journal, then counted).
    pub done: usize,
    pub schema: SchemaRef,
    pub seq_len: usize,
    pub dtype: Dtype,
}

impl ShardFiles {
    fn next_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{:05}.arrow", self.split, self.done))
    }

    fn causal(&self) -> Result<ShardWriter> {
        ShardWriter::create(&self.next_path(), self.schema.clone(), self.seq_len, self.dtype)
    }

    fn mlm(&self) -> Result<MlmShardWriter> {
        MlmShardWriter::create(&self.next_path(), self.schema.clone(), self.seq_len, self.dtype)
    }

    fn finished(&mut self, info: ShardInfo) -> ShardInfo {
        self.done += 1;
        info
    }
}

/// Causal LM rows: the packer and the causal shard writer.
pub(super) struct Causal {
    packer: Packer,
    bos: Option<u32>,
    eos: u32,
    pad: u32,
    last_row: LastRow,
    files: ShardFiles,
    open: Option<ShardWriter>,
}

impl Causal {
    /// The sink of a split, continuing from its journal entry `state`.
    pub fn new(cfg: &TokenizeConfig, state: &StreamState, files: ShardFiles) -> Self {
        Self {
            packer: Packer::with_carry(cfg.seq_len, state.carry.clone(), state.carry_starts.clone()),
            bos: cfg.bos,
            eos: cfg.eos,
            pad: cfg.pad,
            last_row: cfg.last_row,
            files,
            open: None,
        }
    }
}

impl RowSink for Causal {
    type Batch = Vec<Vec<u32>>;

    fn push(&mut self, batch: &Self::Batch, k: usize) -> Result<bool> {
        // NOTE: a shard opens at the first document after the last one closed, even when that
        // document completes no row (so a split whose rows all drop still has its one shard).
        let shard = match &mut self.open {
            Some(shard) => shard,
            None => self.open.insert(self.files.causal()?),
        };
        let mut err = None;
        self.packer.push_doc(&batch[k], self.bos, self.eos, |row| {
            if err.is_none() {
                err = shard.push(&row).err();
            }
        });
        err.map_or(Ok(true), Err)
    }

    fn shard_rows(&self) -> u64 {
        self.open.as_ref().map_or(0, ShardWriter::rows)
    }

    fn close_shard(&mut self) -> Result<Option<ShardInfo>> {
        let Some(shard) = self.open.take() else { return Ok(None) };
        Ok(Some(self.files.finished(shard.finish()?)))
    }

    fn save_carry(&self, state: &mut StreamState) {
        let (carry, starts) = self.packer.carry();
        state.carry = carry.to_vec();
        state.carry_starts = starts.to_vec();
    }

    fn finish(&mut self) -> Result<(Option<ShardInfo>, u64)> {
        let packer = std::mem::replace(&mut self.packer, Packer::new(self.files.seq_len));
        let mut last = None;
        let dropped = packer.finish(self.last_row, self.pad, |r| {
            last = Some((r.ids.to_vec(), r.doc_starts.to_vec(), r.n_tokens));
        });
        if let Some((ids, doc_starts, n_tokens)) = last {
            let shard = match &mut self.open {
                Some(shard) => shard,
                None => self.open.insert(self.files.causal()?),
            };
            shard.push(&Row { ids: &ids, doc_starts: &doc_starts, n_tokens })?;
        }
        Ok((self.close_shard()?, dropped))
    }

    fn abort(&mut self) {
        if let Some(shard) = self.open.take() {
            shard.abort();
        }
    }
}

/// Writes built MLM rows to a split's shards (each `dupe_factor` times when statically masked).
pub(super) struct MlmRowWriter {
    /// Rows built and not yet written.
    rows: Rows,
    files: ShardFiles,
    open: Option<MlmShardWriter>,
    masking: Option<StaticMasking>,
}

/// Static masking of a split's rows.
struct StaticMasking {
    cfg: MaskConfig,
    dupes: u32,
    seed: u64,
    /// Rows written so far, before duplication: the masking index of the next row.
    unique_rows: u64,
    ids: Vec<u32>,
    labels: Vec<i64>,
}

impl MlmRowWriter {
    /// The writer of split number `split` (0 train, 1 val), continuing from its journal entry.
    fn new(cfg: &TokenizeConfig, m: &MlmConfig, split: usize, state: &StreamState, files: ShardFiles) -> Self {
        let masking = m.static_masking.as_ref().map(|(mask_cfg, dupes)| StaticMasking {
            cfg: mask_cfg.clone(),
            dupes: *dupes,
            seed: if split == 0 { cfg.seed } else { splitmix64(cfg.seed ^ VAL_MASK_DOMAIN) },
            unique_rows: state.shards.iter().map(|x| x.rows).sum::<u64>() / u64::from(*dupes),
            ids: Vec::new(),
            labels: Vec::new(),
        });
        Self { rows: Rows::new(cfg.seq_len), files, open: None, masking }
    }

    /// Writes the pending rows.
    fn write(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let Self { rows, files, open, masking } = self;
        let shard = match open {
            Some(shard) => shard,
            None => open.insert(files.mlm()?),
        };
        let n = rows.seq_len;
        for r in 0..rows.len() {
            let span = r * n..(r + 1) * n;
            let row = MlmRow {
                input_ids: &rows.input_ids[span.clone()],
                token_type_ids: &rows.token_type_ids[span.clone()],
                special_tokens_mask: &rows.special_tokens_mask[span.clone()],
                word_start: &rows.word_start[span],
                n_tokens: rows.length[r],
                nsp_label: rows.nsp_label[r],
                labels: None,
            };
            let Some(m) = masking.as_mut() else {
                shard.push(&row)?;
                continue;
            };
            for k in 0..m.dupes {
                m.ids.clear();
                m.ids.extend_from_slice(row.input_ids);
                m.labels.resize(n, 0);
                mask_sequence(
                    &m.cfg,
                    m.seed,
                    u64::from(k),
                    m.unique_rows,
                    &mut m.ids,
                    &mut m.labels,
                    row.special_tokens_mask,
                    Some(row.word_start),
                );
                shard.push(&MlmRow { input_ids: &m.ids, labels: Some(&m.labels), ..row })?;
            }
            m.unique_rows += 1;
        }
        rows.clear();
        Ok(())
    }

    fn shard_rows(&self) -> u64 {
        self.open.as_ref().map_or(0, MlmShardWriter::rows)
    }

    fn close_shard(&mut self) -> Result<Option<ShardInfo>> {
        let Some(shard) = self.open.take() else { return Ok(None) };
        Ok(Some(self.files.finished(shard.finish()?)))
    }

    fn abort(&mut self) {
        if let Some(shard) = self.open.take() {
            shard.abort();
        }
    }
}

/// MLM rows packed across documents (`RoBERTa` full sentences).
pub(super) struct FullSentence {
    packer: FullSentencePacker,
    out: MlmRowWriter,
}

impl FullSentence {
    /// The sink of split number `split`, continuing from its journal entry `state`.
    pub fn new(
        cfg: &TokenizeConfig,
        m: &MlmConfig,
        split: usize,
        state: &StreamState,
        files: ShardFiles,
    ) -> Result<Self> {
        let packer = FullSentencePacker::with_carry(
            cfg.sequence_config(m),
            &state.carry,
            &state.carry_word_start,
            state.carry_pending_sep,
        )?;
        Ok(Self { packer, out: MlmRowWriter::new(cfg, m, split, state, files) })
    }
}

impl RowSink for FullSentence {
    type Batch = Documents;

    fn push(&mut self, batch: &Documents, k: usize) -> Result<bool> {
        self.packer.push_document(batch.doc(k), &mut self.out.rows);
        self.out.write()?;
        Ok(true)
    }

    fn shard_rows(&self) -> u64 {
        self.out.shard_rows()
    }

    fn close_shard(&mut self) -> Result<Option<ShardInfo>> {
        self.out.close_shard()
    }

    fn save_carry(&self, state: &mut StreamState) {
        let (ids, word_start, pending_sep) = self.packer.carry();
        state.carry = ids;
        state.carry_word_start = word_start;
        state.carry_pending_sep = pending_sep;
    }

    fn finish(&mut self) -> Result<(Option<ShardInfo>, u64)> {
        self.packer.finish(&mut self.out.rows);
        self.out.write()?;
        Ok((self.out.close_shard()?, 0))
    }

    fn abort(&mut self) {
        self.out.abort();
    }
}

/// MLM sentence pairs with next-sentence labels (BERT), a block of documents at a time.
pub(super) struct Nsp {
    seq: SequenceConfig,
    block_docs: usize,
    seed: u64,
    split: usize,
    /// Documents of the split so far (restored ones included): numbers the blocks.
    documents: u64,
    /// The documents of the current block.
    block: Documents,
    out: MlmRowWriter,
}

impl Nsp {
    /// The sink of split number `split`, continuing from its journal entry `state` (always at a
    /// block end: NSP keeps no carry).
    pub fn new(cfg: &TokenizeConfig, m: &MlmConfig, split: usize, state: &StreamState, files: ShardFiles) -> Self {
        Self {
            seq: cfg.sequence_config(m),
            block_docs: m.nsp_block_docs,
            seed: cfg.seed,
            split,
            documents: state.documents,
            block: Documents::new(),
            out: MlmRowWriter::new(cfg, m, split, state, files),
        }
    }

    /// Builds the rows of the current block, block number `block` of the split.
    fn build_block(&mut self, block: u64) {
        let seed = splitmix64(self.seed ^ splitmix64(NSP_BLOCK_DOMAIN ^ splitmix64((block << 1) | self.split as u64)));
        let nonempty = nonempty_docs(&self.block);
        for d in 0..self.block.len() {
            nsp_rows(&self.seq, &self.block, &nonempty, d, seed, &mut self.out.rows);
        }
        self.block.clear();
    }
}

impl RowSink for Nsp {
    type Batch = Documents;

    fn push(&mut self, batch: &Documents, k: usize) -> Result<bool> {
        self.documents += 1;
        self.block.push_document(batch.doc(k));
        let full = self.block.len() >= self.block_docs;
        if full {
            self.build_block(self.documents.div_ceil(self.block_docs as u64) - 1);
        }
        self.out.write()?;
        Ok(full)
    }

    fn shard_rows(&self) -> u64 {
        self.out.shard_rows()
    }

    fn close_shard(&mut self) -> Result<Option<ShardInfo>> {
        self.out.close_shard()
    }

    fn save_carry(&self, _state: &mut StreamState) {}

    fn finish(&mut self) -> Result<(Option<ShardInfo>, u64)> {
        if !self.block.is_empty() {
            self.build_block(self.documents.div_ceil(self.block_docs as u64).saturating_sub(1));
        }
        self.out.write()?;
        Ok((self.out.close_shard()?, 0))
    }

    fn abort(&mut self) {
        self.out.abort();
    }
}
