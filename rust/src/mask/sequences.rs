//! Building MLM input rows from tokenized documents: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`,
//! padded to `seq_len`, with token types, a special-tokens mask, word starts and NSP labels.
//!
//! Two layouts ([`Layout`]):
//! - `FullSentence` (`RoBERTa` FULL-SENTENCES): sentences packed in order, across documents, up to
//!   `seq_len - 2` tokens; a `[SEP]` marks a document boundary inside a row (only when the next
//!   sentence goes into the same row). A sentence longer than a row is cut into row-sized chunks.
//!   Needs no randomness, so [`FullSentencePacker`] streams documents.
//! - `NspPairs` (BERT `create_pretraining_data`): per document, sentences are gathered into a chunk
//!   up to a target length (`seq_len - 3`, or with probability `short_seq_prob` a uniform length
//!   in `2..=seq_len-3`); A is the first 1..k-1 sentences of the chunk; with probability 1/2, B is
//!   the rest of the chunk (label 0, "is next"), otherwise B is a run of sentences from a random
//!   position in a uniformly chosen *other* non-empty document (label 1, "random") and the unused
//!   sentences of the chunk go back to be used next. The pair is trimmed to fit, one token at a
//!   time from the longer side, front or back at random.
//!   NOTE: BERT forces label 1 when a chunk holds one sentence, which skews labels towards
//!   "random" on corpora of long sentences; we keep the coin and, for "is next", take the next
//!   sentence into the chunk or, at the document's end, cut the sentence in two. Labels are
//!   balanced on any corpus.
//!
//! Determinism: the draws of document `d` come from a stream keyed by `(seed, d)` alone, so rows
//! do not depend on how documents are split across workers.

use super::rng::Rng;
use super::MaskConfig;
use crate::error::{Error, Result};

/// A tokenized sentence: ids and, per id, whether it starts a word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    pub ids: Vec<u32>,
    pub word_start: Vec<u8>,
}

impl Segment {
    pub fn new(ids: Vec<u32>, word_start: Vec<u8>) -> Self {
        debug_assert_eq!(ids.len(), word_start.len());
        Self { ids, word_start }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A document: its sentences in order.
pub type Document = Vec<Segment>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    FullSentence,
    NspPairs,
}

/// Row length, layout and the special ids.
#[derive(Debug, Clone)]
pub struct SequenceConfig {
    seq_len: usize,
    layout: Layout,
    cls: u32,
    sep: u32,
    pad: u32,
    short_seq_prob: f64,
}

impl SequenceConfig {
    /// Defaults: `FullSentence`, `short_seq_prob` 0.1 (BERT; NSP only).
    pub fn new(seq_len: usize, cls: u32, sep: u32, pad: u32) -> Self {
        Self { seq_len, layout: Layout::FullSentence, cls, sep, pad, short_seq_prob: 0.1 }
    }

    #[must_use]
    pub fn layout(mut self, l: Layout) -> Self {
        self.layout = l;
        self
    }

    /// NSP only: probability that a document's target length is drawn shorter than the row.
    #[must_use]
    pub fn short_seq_prob(mut self, p: f64) -> Self {
        self.short_seq_prob = p;
        self
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    pub fn validate(&self) -> Result<()> {
        let min = if self.layout == Layout::NspPairs { 5 } else { 3 };
        if self.seq_len < min {
            return Err(Error::Config(format!(
                "seq_len {} is too short (at least {min} for this layout)",
                self.seq_len
            )));
        }
        if !(0.0..=1.0).contains(&self.short_seq_prob) {
            return Err(Error::Config(format!("short_seq_prob {} is not in [0, 1]", self.short_seq_prob)));
        }
        Ok(())
    }
}

/// Rows in flat `(rows, seq_len)` arrays, ready for numpy or a shard writer.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    /// 0 for `[CLS] A [SEP]` and padding, 1 for `B [SEP]`.
    pub token_type_ids: Vec<u8>,
    /// 1 on `[CLS]`, `[SEP]` and padding.
    pub special_tokens_mask: Vec<u8>,
    /// 1 where a token starts a word; 0 on specials.
    pub word_start: Vec<u8>,
    /// Per row: 0 "B is next", 1 "B is random", -1 not an NSP row.
    pub nsp_label: Vec<i8>,
    /// Per row: tokens before the padding.
    pub length: Vec<u32>,
}

impl Rows {
    pub fn new(seq_len: usize) -> Self {
        Self { seq_len, ..Self::default() }
    }

    pub fn len(&self) -> usize {
        self.length.len()
    }

    /// Empties the rows, keeping the allocations.
    pub fn clear(&mut self) {
        self.input_ids.clear();
        self.token_type_ids.clear();
        self.special_tokens_mask.clear();
        self.word_start.clear();
        self.nsp_label.clear();
        self.length.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.length.is_empty()
    }

    fn push_token(&mut self, id: u32, tt: u8, special: bool, ws: u8) {
        self.input_ids.push(id);
        self.token_type_ids.push(tt);
        self.special_tokens_mask.push(u8::from(special));
        self.word_start.push(if special { 0 } else { ws });
    }

    /// Appends `[CLS] a [SEP] (b [SEP])` and padding. `a` and `b` are `(id, word_start)` with
    /// `u32::MAX`-free ids; a `sep` id inside `a` is marked special (document boundary).
    fn push_row(&mut self, cfg: &SequenceConfig, a: &[(u32, u8)], b: Option<&[(u32, u8)]>, nsp: i8) {
        let start = self.input_ids.len();
        self.push_token(cfg.cls, 0, true, 0);
        for &(id, ws) in a {
            self.push_token(id, 0, id == cfg.sep && ws == SEP_MARK, ws);
        }
        self.push_token(cfg.sep, 0, true, 0);
        if let Some(b) = b {
            for &(id, ws) in b {
                self.push_token(id, 1, false, ws);
            }
            self.push_token(cfg.sep, 1, true, 0);
        }
        let len = self.input_ids.len() - start;
        debug_assert!(len <= self.seq_len);
        for _ in len..self.seq_len {
            self.push_token(cfg.pad, 0, true, 0);
        }
        self.length.push(len as u32);
        self.nsp_label.push(nsp);
    }
}

/// Word-start value that tags a document-boundary `[SEP]` inside packed text (never a real flag).
const SEP_MARK: u8 = 2;

/// Streams documents into `FullSentence` rows.
pub struct FullSentencePacker {
    cfg: SequenceConfig,
    buf: Vec<(u32, u8)>,
    pending_sep: bool,
}

impl FullSentencePacker {
    pub fn new(cfg: SequenceConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, buf: Vec::new(), pending_sep: false })
    }

    /// A packer that continues from a saved [`FullSentencePacker::carry`].
    pub fn with_carry(cfg: SequenceConfig, ids: &[u32], word_start: &[u8], pending_sep: bool) -> Result<Self> {
        let mut p = Self::new(cfg)?;
        p.buf = ids.iter().copied().zip(word_start.iter().copied()).collect();
        p.pending_sep = pending_sep;
        Ok(p)
    }

    /// The whole state a resumed run needs: tokens not yet in a row (ids, word starts with the
    /// document-boundary mark), and whether a boundary `[SEP]` is due before the next sentence.
    pub fn carry(&self) -> (Vec<u32>, Vec<u8>, bool) {
        (self.buf.iter().map(|t| t.0).collect(), self.buf.iter().map(|t| t.1).collect(), self.pending_sep)
    }

    fn cap(&self) -> usize {
        self.cfg.seq_len - 2
    }

    fn flush(&mut self, out: &mut Rows) {
        if !self.buf.is_empty() {
            out.push_row(&self.cfg, &self.buf, None, -1);
            self.buf.clear();
        }
        self.pending_sep = false;
    }

    /// Adds one document's sentences; full rows go to `out`.
    pub fn push_document(&mut self, doc: &[Segment], out: &mut Rows) {
        let mut any = false;
        for seg in doc.iter().filter(|s| !s.is_empty()) {
            any = true;
            let need = seg.len() + usize::from(self.pending_sep);
            if self.buf.len() + need > self.cap() {
                self.flush(out);
            }
            if self.pending_sep {
                self.buf.push((self.cfg.sep, SEP_MARK));
                self.pending_sep = false;
            }
            for (&id, &ws) in seg.ids.iter().zip(&seg.word_start) {
                if self.buf.len() == self.cap() {
                    self.flush(out); // a sentence longer than a row: cut it
                }
                self.buf.push((id, ws));
            }
        }
        if any && !self.buf.is_empty() {
            self.pending_sep = true;
        }
    }

    /// Emits the last, partial row.
    pub fn finish(&mut self, out: &mut Rows) {
        self.flush(out);
    }
}

/// Tokens of sentences `idx` of `doc`, in order.
fn flatten_at(doc: &[Segment], idx: &[usize]) -> Vec<(u32, u8)> {
    let mut out = Vec::with_capacity(idx.iter().map(|&k| doc[k].len()).sum());
    for &k in idx {
        out.extend(doc[k].ids.iter().copied().zip(doc[k].word_start.iter().copied()));
    }
    out
}

/// Trims the pair to `max` tokens, one token at a time from the longer side, front or back.
/// The cuts are counted first and applied once (a `remove(0)` per token was quadratic on long
/// sentences); the draws and the result are those of the token-by-token rule.
fn truncate_pair(a: &mut Vec<(u32, u8)>, b: &mut Vec<(u32, u8)>, max: usize, rng: &mut Rng) {
    let (mut a_front, mut a_len, mut b_front, mut b_len) = (0, a.len(), 0, b.len());
    while a_len + b_len > max {
        let (front, len) = if a_len > b_len { (&mut a_front, &mut a_len) } else { (&mut b_front, &mut b_len) };
        if rng.next_u32() & 1 == 0 {
            *front += 1;
        }
        *len -= 1;
    }
    a.truncate(a_front + a_len);
    a.drain(..a_front);
    b.truncate(b_front + b_len);
    b.drain(..b_front);
}

/// Domain constant that keeps the NSP stream apart from masking streams with the same seed.
const NSP_DOMAIN: u64 = 0x4e53_5020_7061_6972; // "NSP pair"

/// NSP rows of document `d` of `docs` (see the module docs), appended to `out`.
#[allow(clippy::many_single_char_names)]
pub fn nsp_rows(cfg: &SequenceConfig, docs: &[Document], nonempty: &[usize], d: usize, seed: u64, out: &mut Rows) {
    let doc = &docs[d];
    let mut rng = Rng::keyed(&[seed, NSP_DOMAIN, d as u64]);
    let max_tokens = cfg.seq_len - 3;
    let target = if rng.chance(cfg.short_seq_prob) { 2 + rng.below_usize(max_tokens - 1) } else { max_tokens };
    let others = nonempty.len() - usize::from(nonempty.contains(&d));
    let mut chunk: Vec<usize> = Vec::new();
    let mut chunk_len = 0;
    // The label of the current chunk, drawn once even when the chunk grows after the draw.
    let mut decided: Option<bool> = None;
    let mut i = 0;
    while i < doc.len() {
        if !doc[i].is_empty() {
            chunk.push(i);
            chunk_len += doc[i].len();
        }
        let last = i + 1 == doc.len();
        if chunk.is_empty() || !(last || chunk_len >= target) {
            i += 1;
            continue;
        }
        let random = *decided.get_or_insert_with(|| others > 0 && rng.chance(0.5));
        if !random && chunk.len() == 1 && !last {
            i += 1; // "is next" needs two sentences: take the next one too
            continue;
        }
        let a_end = if chunk.len() >= 2 { 1 + rng.below_usize(chunk.len() - 1) } else { 1 };
        let mut a = flatten_at(doc, &chunk[..a_end]);
        let (mut b, label) = if random {
            let target_b = target.saturating_sub(a.len()).max(1);
            // Uniform over the non-empty documents other than d (`nonempty` is sorted).
            let mut k = rng.below_usize(others);
            if let Ok(pos_d) = nonempty.binary_search(&d) {
                k += usize::from(k >= pos_d);
            }
            let other = &docs[nonempty[k]];
            let mut b = Vec::new();
            let mut k = rng.below_usize(other.len());
            while k < other.len() && b.len() < target_b {
                b.extend(other[k].ids.iter().copied().zip(other[k].word_start.iter().copied()));
                k += 1;
            }
            if a_end < chunk.len() {
                i = chunk[a_end] - 1; // unused sentences go back
            }
            (b, 1)
        } else if chunk.len() >= 2 {
            (flatten_at(doc, &chunk[a_end..]), 0)
        } else {
            // One sentence at the document's end: cut it in two.
            let n = a.len();
            if n < 2 {
                chunk.clear();
                chunk_len = 0;
                decided = None;
                i += 1;
                continue;
            }
            let cut = 1 + rng.below_usize(n - 1);
            (a.split_off(cut), 0)
        };
        truncate_pair(&mut a, &mut b, max_tokens, &mut rng);
        if !a.is_empty() && !b.is_empty() {
            out.push_row(cfg, &a, Some(&b), label);
        }
        chunk.clear();
        chunk_len = 0;
        decided = None;
        i += 1;
    }
}

/// Masks built rows: row `r` is sample `first_index + r`, its specials and word starts are the
/// rows' own. Returns `(masked input ids, labels)`, both `(rows, seq_len)`.
///
/// Static masking (`--static-masking --dupe-factor K`) is this call with `epoch = 0..K`: each
/// duplicate gets its own mask, and a shard can be rebuilt bit for bit from the same seed.
pub fn mask_rows(
    cfg: &MaskConfig,
    seed: u64,
    epoch: u64,
    first_index: u64,
    rows: &Rows,
    threads: usize,
) -> Result<(Vec<u32>, Vec<i64>)> {
    let index: Vec<u64> = (first_index..first_index + rows.len() as u64).collect();
    let mut ids = rows.input_ids.clone();
    let mut labels = vec![0i64; ids.len()];
    super::mask_batch(
        cfg,
        seed,
        epoch,
        &index,
        &mut ids,
        &mut labels,
        &rows.special_tokens_mask,
        &rows.word_start,
        rows.seq_len,
        threads,
    )?;
    Ok((ids, labels))
}

/// Builds all rows of `docs` in the configured layout.
pub fn build_sequences(cfg: &SequenceConfig, docs: &[Document], seed: u64) -> Result<Rows> {
    cfg.validate()?;
    let mut out = Rows::new(cfg.seq_len);
    match cfg.layout {
        Layout::FullSentence => {
            let mut p = FullSentencePacker::new(cfg.clone())?;
            for doc in docs {
                p.push_document(doc, &mut out);
            }
            p.finish(&mut out);
        }
        Layout::NspPairs => {
            let nonempty: Vec<usize> = (0..docs.len()).filter(|&d| docs[d].iter().any(|s| !s.is_empty())).collect();
            if nonempty.len() < 2 {
                return Err(Error::Config("sentence pairs with NSP need at least two non-empty documents".into()));
            }
            for d in 0..docs.len() {
                nsp_rows(cfg, docs, &nonempty, d, seed, &mut out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLS: u32 = 1;
    const SEP: u32 = 2;
    const PAD: u32 = 0;

    /// Token id = `doc * 1_000_000 + sentence * 1000 + position`: every token names its origin.
    fn corpus(n_docs: usize, seed: u64) -> Vec<Document> {
        let mut r = Rng::keyed(&[seed]);
        (0..n_docs)
            .map(|d| {
                (0..=(r.below(12) as usize))
                    .map(|s| {
                        let n = 1 + r.below(40) as usize;
                        let ids = (0..n).map(|k| (d * 1_000_000 + s * 1000 + k + 10) as u32).collect();
                        let ws = (0..n).map(|k| u8::from(k % 2 == 0)).collect();
                        Segment::new(ids, ws)
                    })
                    .collect()
            })
            .collect()
    }

    fn origin(id: u32) -> (u32, u32, u32) {
        let x = id - 10;
        (x / 1_000_000, (x / 1000) % 1000, x % 1000)
    }

    #[test]
    fn full_sentence_rows_keep_every_token_in_order() {
        let docs = corpus(30, 1);
        let cfg = SequenceConfig::new(64, CLS, SEP, PAD);
        let rows = build_sequences(&cfg, &docs, 0).unwrap();
        let mut seen = Vec::new();
        for r in 0..rows.len() {
            let row = &rows.input_ids[r * 64..(r + 1) * 64];
            let sm = &rows.special_tokens_mask[r * 64..(r + 1) * 64];
            let len = rows.length[r] as usize;
            assert_eq!(row[0], CLS);
            assert_eq!(row[len - 1], SEP);
            assert!(row[len..].iter().all(|&x| x == PAD));
            assert!(sm[len..].iter().all(|&x| x == 1) && sm[0] == 1 && sm[len - 1] == 1);
            assert_eq!(rows.nsp_label[r], -1);
            for k in 1..len - 1 {
                if row[k] == SEP {
                    assert_eq!(sm[k], 1);
                    // a boundary SEP sits between two documents
                    assert!(origin(row[k - 1]).0 < origin(row[k + 1]).0);
                } else {
                    assert_eq!(sm[k], 0);
                    seen.push(row[k]);
                }
            }
        }
        assert_eq!(seen, docs.iter().flat_map(|d| d.iter().flat_map(|s| s.ids.clone())).collect::<Vec<_>>());
    }

    #[test]
    fn full_sentence_carry_restores_the_same_rows() {
        let docs = corpus(20, 4);
        let cfg = SequenceConfig::new(48, CLS, SEP, PAD);
        let all = build_sequences(&cfg, &docs, 0).unwrap();
        let mut out = Rows::new(48);
        let mut p = FullSentencePacker::new(cfg.clone()).unwrap();
        for d in &docs[..7] {
            p.push_document(d, &mut out);
        }
        let (ids, ws, sep) = p.carry();
        let mut p = FullSentencePacker::with_carry(cfg, &ids, &ws, sep).unwrap();
        for d in &docs[7..] {
            p.push_document(d, &mut out);
        }
        p.finish(&mut out);
        assert_eq!(out.input_ids, all.input_ids);
        assert_eq!(out.word_start, all.word_start);
        assert_eq!(out.special_tokens_mask, all.special_tokens_mask);
    }

    #[test]
    fn nsp_pairs_are_balanced_and_random_b_comes_from_another_document() {
        let docs = corpus(400, 2);
        let cfg = SequenceConfig::new(128, CLS, SEP, PAD).layout(Layout::NspPairs);
        let rows = build_sequences(&cfg, &docs, 7).unwrap();
        let (mut is_next, mut random) = (0, 0);
        for r in 0..rows.len() {
            let row = &rows.input_ids[r * 128..(r + 1) * 128];
            let tt = &rows.token_type_ids[r * 128..(r + 1) * 128];
            let len = rows.length[r] as usize;
            assert!(len <= 128);
            let sep1 = row.iter().position(|&x| x == SEP).unwrap();
            let a: Vec<_> = row[1..sep1].iter().map(|&x| origin(x)).collect();
            let b: Vec<_> = row[sep1 + 1..len - 1].iter().map(|&x| origin(x)).collect();
            assert!(!a.is_empty() && !b.is_empty());
            assert!(tt[..=sep1].iter().all(|&x| x == 0) && tt[sep1 + 1..len].iter().all(|&x| x == 1));
            let a_doc = a[0].0;
            assert!(a.iter().all(|o| o.0 == a_doc));
            if rows.nsp_label[r] == 1 {
                random += 1;
                assert!(b.iter().all(|o| o.0 != a_doc), "random B from A's document");
            } else {
                assert_eq!(rows.nsp_label[r], 0);
                is_next += 1;
                assert!(b.iter().all(|o| o.0 == a_doc));
                // B continues A: it starts after A ends (truncation may drop tokens in between).
                assert!((b[0].1, b[0].2) > (a[a.len() - 1].1, a[a.len() - 1].2));
            }
        }
        let share = f64::from(random) / f64::from(random + is_next);
        assert!((share - 0.5).abs() < 0.03, "random share {share} of {}", random + is_next);
    }

    #[test]
    fn static_masking_of_rows_never_touches_specials_and_differs_by_epoch() {
        let docs = corpus(40, 4);
        let rows = build_sequences(&SequenceConfig::new(64, CLS, SEP, PAD).layout(Layout::NspPairs), &docs, 0).unwrap();
        let cfg = MaskConfig::new(3, 50_000_000).strategy(super::super::Strategy::WholeWord);
        let (a, la) = mask_rows(&cfg, 1, 0, 0, &rows, 1).unwrap();
        let (b, _) = mask_rows(&cfg, 1, 1, 0, &rows, 2).unwrap();
        assert_ne!(a, b);
        for k in 0..a.len() {
            if rows.special_tokens_mask[k] == 1 {
                assert_eq!((a[k], la[k]), (rows.input_ids[k], super::super::IGNORE));
            }
        }
    }

    #[test]
    fn nsp_is_deterministic_and_needs_two_documents() {
        let docs = corpus(50, 3);
        let cfg = SequenceConfig::new(64, CLS, SEP, PAD).layout(Layout::NspPairs);
        let a = build_sequences(&cfg, &docs, 1).unwrap();
        let b = build_sequences(&cfg, &docs, 1).unwrap();
        assert_eq!(a.input_ids, b.input_ids);
        assert_ne!(a.input_ids, build_sequences(&cfg, &docs, 2).unwrap().input_ids);
        assert!(build_sequences(&cfg, &docs[..1], 1).is_err());
    }
}
