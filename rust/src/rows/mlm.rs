//! The MLM row builder (the causal one is [`super::causal`]): tokenized documents in, rows out: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`,
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
//! Input is [`Documents`] (flat buffers, no allocation per sentence); A and B are slices of it and
//! rows are written a column at a time.
//!
//! Determinism: the draws of document `d` come from a stream keyed by `(seed, d)` alone, so rows
//! do not depend on how documents are split across workers.
//!
//! Masking is not done here: `tokenize --static-masking` masks built rows with
//! [`crate::mask::mask_sequence`], and the trainer masks them on the fly otherwise.

use crate::error::{Error, Result};
use crate::mask::rng::Rng;

/// Tokenized documents, flat: one buffer of ids and one of word-start flags (1 where a token starts
/// a word) for all of them, plus where each sentence and each document ends. A sentence may be
/// empty. NOTE: a `Vec` per sentence made allocation and cross-thread frees about a tenth of
/// `tokenize --objective mlm`; flat, a batch of documents costs a few allocations, and the
/// sentences of a document are contiguous, so any run of them is a slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Documents {
    ids: Vec<u32>,
    word_start: Vec<u8>,
    /// End offset in `ids` of each sentence; a sentence starts where the one before ends.
    sentence_ends: Vec<usize>,
    /// End index in `sentence_ends` of each document.
    doc_ends: Vec<usize>,
}

impl Documents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `tokens` tokens.
    pub fn with_capacity(tokens: usize) -> Self {
        Self { ids: Vec::with_capacity(tokens), word_start: Vec::with_capacity(tokens), ..Self::default() }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.doc_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.doc_ends.is_empty()
    }

    /// Empties the documents, keeping the allocations.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.word_start.clear();
        self.sentence_ends.clear();
        self.doc_ends.clear();
    }

    /// Every token of every document, in order.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The id and word-start buffers: append the tokens of the next sentence to both, then call
    /// [`Documents::end_sentence`].
    pub fn tokens_mut(&mut self) -> (&mut Vec<u32>, &mut Vec<u8>) {
        (&mut self.ids, &mut self.word_start)
    }

    /// Tokens appended since the last sentence end.
    pub fn open_sentence_len(&self) -> usize {
        self.ids.len() - self.sentence_ends.last().copied().unwrap_or(0)
    }

    /// Ends the sentence made of the tokens appended since the last sentence end.
    pub fn end_sentence(&mut self) {
        debug_assert_eq!(self.ids.len(), self.word_start.len());
        self.sentence_ends.push(self.ids.len());
    }

    /// Ends the document made of the sentences since the last document end.
    pub fn end_document(&mut self) {
        debug_assert_eq!(self.open_sentence_len(), 0, "end the sentence first");
        self.doc_ends.push(self.sentence_ends.len());
    }

    /// Appends a sentence to the open document.
    pub fn push_sentence(&mut self, ids: &[u32], word_start: &[u8]) {
        debug_assert_eq!(ids.len(), word_start.len());
        self.ids.extend_from_slice(ids);
        self.word_start.extend_from_slice(word_start);
        self.end_sentence();
    }

    /// Appends a copy of `doc` (of these or other documents) as a new document.
    pub fn push_document(&mut self, doc: Doc<'_>) {
        let (first, offset) = (doc.first, self.ids.len());
        let tokens = doc.span(0, doc.len());
        self.ids.extend_from_slice(tokens.ids);
        self.word_start.extend_from_slice(tokens.word_start);
        self.sentence_ends.extend(doc.ends.iter().map(|&e| e - first + offset));
        self.end_document();
    }

    /// The four buffers, for storing the documents elsewhere (work units).
    pub fn parts(&self) -> (&[u32], &[u8], &[usize], &[usize]) {
        (&self.ids, &self.word_start, &self.sentence_ends, &self.doc_ends)
    }

    /// Documents from the buffers [`Documents::parts`] gave, or `None` when they do not describe
    /// documents (lengths differ, ends decrease or point past the tokens).
    pub fn from_parts(
        ids: Vec<u32>,
        word_start: Vec<u8>,
        sentence_ends: Vec<usize>,
        doc_ends: Vec<usize>,
    ) -> Option<Self> {
        let ordered =
            |v: &[usize], max: usize| v.windows(2).all(|w| w[0] <= w[1]) && v.last().is_none_or(|&e| e <= max);
        let ok = ids.len() == word_start.len()
            && ordered(&sentence_ends, ids.len())
            && ordered(&doc_ends, sentence_ends.len())
            && sentence_ends.last().copied().unwrap_or(0) == ids.len()
            && doc_ends.last().copied().unwrap_or(0) == sentence_ends.len();
        ok.then_some(Self { ids, word_start, sentence_ends, doc_ends })
    }

    /// Document `d`.
    pub fn doc(&self, d: usize) -> Doc<'_> {
        let s0 = if d == 0 { 0 } else { self.doc_ends[d - 1] };
        let ends = &self.sentence_ends[s0..self.doc_ends[d]];
        let first = if s0 == 0 { 0 } else { self.sentence_ends[s0 - 1] };
        Doc { ids: &self.ids, word_start: &self.word_start, first, ends }
    }
}

/// One document of [`Documents`]: its sentences, in order.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    ids: &'a [u32],
    word_start: &'a [u8],
    /// Offset of the document's first token in `ids`.
    first: usize,
    /// End offset in `ids` of each of its sentences.
    ends: &'a [usize],
}

impl<'a> Doc<'a> {
    /// Number of sentences, empty ones included.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Tokens in the document.
    pub fn tokens(&self) -> usize {
        self.ends.last().map_or(0, |&e| e - self.first)
    }

    fn start(&self, k: usize) -> usize {
        if k == 0 {
            self.first
        } else {
            self.ends[k - 1]
        }
    }

    /// Tokens in sentence `k`.
    pub fn sentence_len(&self, k: usize) -> usize {
        self.ends[k] - self.start(k)
    }

    /// The tokens of sentences `from..to`.
    pub fn span(&self, from: usize, to: usize) -> Span<'a> {
        let r = if from < to { self.start(from)..self.ends[to - 1] } else { 0..0 };
        Span { ids: &self.ids[r.clone()], word_start: &self.word_start[r] }
    }
}

/// A run of tokens: ids and, per id, whether it starts a word.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span<'a> {
    pub ids: &'a [u32],
    pub word_start: &'a [u8],
}

impl<'a> Span<'a> {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn slice(&self, r: std::ops::Range<usize>) -> Span<'a> {
        Span { ids: &self.ids[r.clone()], word_start: &self.word_start[r] }
    }
}

/// How MLM rows are laid out (`--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub enum Layout {
    /// Sentences packed across documents (RoBERTa).
    #[serde(rename = "full-sentence")]
    FullSentence,
    /// Sentence pairs with next-sentence labels (BERT).
    #[serde(rename = "nsp")]
    NspPairs,
}

impl Layout {
    /// The name in manifests, shard metadata and `dataprep.build_sequences` (`full_sentence`,
    /// `nsp`); the CLI spells the first `full-sentence`.
    pub fn manifest_name(self) -> &'static str {
        match self {
            Layout::FullSentence => "full_sentence",
            Layout::NspPairs => "nsp",
        }
    }

    /// The layout named `name` in [`Layout::manifest_name`]'s spelling.
    pub fn from_manifest_name(name: &str) -> Option<Self> {
        [Layout::FullSentence, Layout::NspPairs].into_iter().find(|l| l.manifest_name() == name)
    }
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

    /// Appends `[CLS] a [SEP] (b [SEP])` and padding, a column at a time. A `sep` id inside `a`
    /// whose word start is [`SEP_MARK`] is a document boundary: marked special, word start 0.
    fn push_row(&mut self, cfg: &SequenceConfig, a: Span<'_>, b: Option<Span<'_>>, nsp: i8) {
        let start = self.input_ids.len();
        let is_boundary = |(&id, &ws): (&u32, &u8)| id == cfg.sep && ws == SEP_MARK;
        self.input_ids.push(cfg.cls);
        self.input_ids.extend_from_slice(a.ids);
        self.input_ids.push(cfg.sep);
        self.special_tokens_mask.push(1);
        self.special_tokens_mask.extend(a.ids.iter().zip(a.word_start).map(|t| u8::from(is_boundary(t))));
        self.special_tokens_mask.push(1);
        self.word_start.push(0);
        self.word_start.extend(a.ids.iter().zip(a.word_start).map(|t| if is_boundary(t) { 0 } else { *t.1 }));
        self.word_start.push(0);
        self.token_type_ids.resize(start + a.len() + 2, 0);
        if let Some(b) = b {
            self.input_ids.extend_from_slice(b.ids);
            self.input_ids.push(cfg.sep);
            self.special_tokens_mask.resize(self.input_ids.len() - 1, 0);
            self.special_tokens_mask.push(1);
            self.word_start.extend_from_slice(b.word_start);
            self.word_start.push(0);
            self.token_type_ids.resize(self.input_ids.len(), 1);
        }
        let len = self.input_ids.len() - start;
        debug_assert!(len <= self.seq_len);
        let end = start + self.seq_len;
        self.input_ids.resize(end, cfg.pad);
        self.token_type_ids.resize(end, 0);
        self.special_tokens_mask.resize(end, 1);
        self.word_start.resize(end, 0);
        self.length.push(len as u32);
        self.nsp_label.push(nsp);
    }
}

/// Word-start value that tags a document-boundary `[SEP]` inside packed text (never a real flag).
const SEP_MARK: u8 = 2;

/// Streams documents into `FullSentence` rows.
pub struct FullSentencePacker {
    cfg: SequenceConfig,
    /// Tokens of the row being filled, with [`SEP_MARK`] on document-boundary `[SEP]`s.
    ids: Vec<u32>,
    word_start: Vec<u8>,
    pending_sep: bool,
}

impl FullSentencePacker {
    pub fn new(cfg: SequenceConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, ids: Vec::new(), word_start: Vec::new(), pending_sep: false })
    }

    /// A packer that continues from a saved [`FullSentencePacker::carry`].
    pub fn with_carry(cfg: SequenceConfig, ids: &[u32], word_start: &[u8], pending_sep: bool) -> Result<Self> {
        let mut p = Self::new(cfg)?;
        if ids.len() != word_start.len() {
            return Err(Error::Config("saved packer carry: ids and word starts differ in length".into()));
        }
        p.ids = ids.to_vec();
        p.word_start = word_start.to_vec();
        p.pending_sep = pending_sep;
        Ok(p)
    }

    /// The whole state a resumed run needs: tokens not yet in a row (ids, word starts with the
    /// document-boundary mark), and whether a boundary `[SEP]` is due before the next sentence.
    pub fn carry(&self) -> (Vec<u32>, Vec<u8>, bool) {
        (self.ids.clone(), self.word_start.clone(), self.pending_sep)
    }

    fn cap(&self) -> usize {
        self.cfg.seq_len - 2
    }

    fn flush(&mut self, out: &mut Rows) {
        if !self.ids.is_empty() {
            out.push_row(&self.cfg, Span { ids: &self.ids, word_start: &self.word_start }, None, -1);
            self.ids.clear();
            self.word_start.clear();
        }
        self.pending_sep = false;
    }

    /// Adds one document's sentences; full rows go to `out`.
    pub fn push_document(&mut self, doc: Doc<'_>, out: &mut Rows) {
        let mut any = false;
        for k in 0..doc.len() {
            let mut rest = doc.span(k, k + 1);
            if rest.is_empty() {
                continue;
            }
            any = true;
            if self.ids.len() + rest.len() + usize::from(self.pending_sep) > self.cap() {
                self.flush(out);
            }
            if self.pending_sep {
                self.ids.push(self.cfg.sep);
                self.word_start.push(SEP_MARK);
                self.pending_sep = false;
            }
            while !rest.is_empty() {
                if self.ids.len() == self.cap() {
                    self.flush(out); // a sentence longer than a row: cut it
                }
                let take = rest.len().min(self.cap() - self.ids.len());
                self.ids.extend_from_slice(&rest.ids[..take]);
                self.word_start.extend_from_slice(&rest.word_start[..take]);
                rest = rest.slice(take..rest.len());
            }
        }
        if any && !self.ids.is_empty() {
            self.pending_sep = true;
        }
    }

    /// Emits the last, partial row.
    pub fn finish(&mut self, out: &mut Rows) {
        self.flush(out);
    }
}

/// Trims the pair to `max` tokens, one token at a time from the longer side, front or back.
/// The cuts are counted first and applied once (a `remove(0)` per token was quadratic on long
/// sentences); the draws and the result are those of the token-by-token rule.
fn truncate_pair<'a>(a: Span<'a>, b: Span<'a>, max: usize, rng: &mut Rng) -> (Span<'a>, Span<'a>) {
    let (mut a_front, mut a_len, mut b_front, mut b_len) = (0, a.len(), 0, b.len());
    while a_len + b_len > max {
        let (front, len) = if a_len > b_len { (&mut a_front, &mut a_len) } else { (&mut b_front, &mut b_len) };
        if rng.next_u32() & 1 == 0 {
            *front += 1;
        }
        *len -= 1;
    }
    (a.slice(a_front..a_front + a_len), b.slice(b_front..b_front + b_len))
}

/// Domain constant that keeps the NSP stream apart from masking streams with the same seed.
const NSP_DOMAIN: u64 = 0x4e53_5020_7061_6972; // "NSP pair"

/// NSP rows of document `d` of `docs` (see the module docs), appended to `out`. `nonempty` lists,
/// in order, the documents that hold a token. A and B are slices of the documents: the sentences
/// of a chunk are contiguous (empty ones hold no tokens).
#[allow(clippy::many_single_char_names)]
pub fn nsp_rows(cfg: &SequenceConfig, docs: &Documents, nonempty: &[usize], d: usize, seed: u64, out: &mut Rows) {
    let doc = docs.doc(d);
    let mut rng = Rng::keyed(&[seed, NSP_DOMAIN, d as u64]);
    let max_tokens = cfg.seq_len - 3;
    let target = if rng.chance(cfg.short_seq_prob) { 2 + rng.below_usize(max_tokens - 1) } else { max_tokens };
    let pos_d = nonempty.binary_search(&d);
    let others = nonempty.len() - usize::from(pos_d.is_ok());
    let mut chunk: Vec<usize> = Vec::new();
    let mut chunk_len = 0;
    // The label of the current chunk, drawn once even when the chunk grows after the draw.
    let mut decided: Option<bool> = None;
    let mut i = 0;
    while i < doc.len() {
        if doc.sentence_len(i) > 0 {
            chunk.push(i);
            chunk_len += doc.sentence_len(i);
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
        let mut a = doc.span(chunk[0], chunk[a_end - 1] + 1);
        let (b, label) = if random {
            let target_b = target.saturating_sub(a.len()).max(1);
            // Uniform over the non-empty documents other than d (`nonempty` is sorted).
            let mut k = rng.below_usize(others);
            if let Ok(pos_d) = pos_d {
                k += usize::from(k >= pos_d);
            }
            let other = docs.doc(nonempty[k]);
            // Whole sentences from a random one on, until B reaches its target length.
            let first = rng.below_usize(other.len());
            let (mut k, mut b_len) = (first, 0);
            while k < other.len() && b_len < target_b {
                b_len += other.sentence_len(k);
                k += 1;
            }
            if a_end < chunk.len() {
                i = chunk[a_end] - 1; // unused sentences go back
            }
            (other.span(first, k), 1)
        } else if chunk.len() >= 2 {
            (doc.span(chunk[a_end], chunk[chunk.len() - 1] + 1), 0)
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
            let b = a.slice(cut..n);
            a = a.slice(0..cut);
            (b, 0)
        };
        let (a, b) = truncate_pair(a, b, max_tokens, &mut rng);
        if !a.is_empty() && !b.is_empty() {
            out.push_row(cfg, a, Some(b), label);
        }
        chunk.clear();
        chunk_len = 0;
        decided = None;
        i += 1;
    }
}

/// The documents that hold at least one token, in order (NSP draws random Bs from them).
pub fn nonempty_docs(docs: &Documents) -> Vec<usize> {
    (0..docs.len()).filter(|&d| docs.doc(d).tokens() > 0).collect()
}

/// Builds all rows of `docs` in the configured layout.
pub fn build_sequences(cfg: &SequenceConfig, docs: &Documents, seed: u64) -> Result<Rows> {
    cfg.validate()?;
    let mut out = Rows::new(cfg.seq_len);
    match cfg.layout {
        Layout::FullSentence => {
            let mut p = FullSentencePacker::new(cfg.clone())?;
            for d in 0..docs.len() {
                p.push_document(docs.doc(d), &mut out);
            }
            p.finish(&mut out);
        }
        Layout::NspPairs => {
            let nonempty = nonempty_docs(docs);
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
    fn corpus(n_docs: usize, seed: u64) -> Documents {
        let mut r = Rng::keyed(&[seed]);
        let mut docs = Documents::new();
        for d in 0..n_docs {
            for s in 0..=(r.below(12) as usize) {
                let n = 1 + r.below(40) as usize;
                let ids: Vec<u32> = (0..n).map(|k| (d * 1_000_000 + s * 1000 + k + 10) as u32).collect();
                let ws: Vec<u8> = (0..n).map(|k| u8::from(k % 2 == 0)).collect();
                docs.push_sentence(&ids, &ws);
            }
            docs.end_document();
        }
        docs
    }

    /// Documents `range` of `docs`, copied.
    fn slice(docs: &Documents, range: std::ops::Range<usize>) -> Documents {
        let mut out = Documents::new();
        for d in range {
            out.push_document(docs.doc(d));
        }
        out
    }

    fn origin(id: u32) -> (u32, u32, u32) {
        let x = id - 10;
        (x / 1_000_000, (x / 1000) % 1000, x % 1000)
    }

    #[test]
    fn documents_index_sentences_and_copy_documents() {
        let mut docs = Documents::new();
        docs.push_sentence(&[], &[]);
        docs.push_sentence(&[11, 12], &[1, 0]);
        docs.end_sentence(); // empty
        docs.end_document();
        docs.end_document(); // no sentence at all
        docs.push_sentence(&[13], &[1]);
        docs.end_document();
        assert_eq!(docs.len(), 3);
        let d = docs.doc(0);
        assert_eq!((d.len(), d.tokens(), d.sentence_len(0), d.sentence_len(1)), (3, 2, 0, 2));
        assert_eq!(d.span(0, 3).ids, &[11, 12]);
        assert_eq!(d.span(1, 2).word_start, &[1, 0]);
        assert!(d.span(2, 3).is_empty() && docs.doc(1).is_empty());
        assert_eq!(docs.doc(2).span(0, 1).ids, &[13]);
        assert_eq!(nonempty_docs(&docs), vec![0, 2]);

        let many = corpus(9, 5);
        assert_eq!(slice(&many, 0..9), many);
        let part = slice(&many, 3..6);
        for d in 0..3 {
            let (a, b) = (part.doc(d), many.doc(d + 3));
            assert_eq!(a.len(), b.len());
            for k in 0..a.len() {
                assert_eq!(a.span(k, k + 1).ids, b.span(k, k + 1).ids);
                assert_eq!(a.span(k, k + 1).word_start, b.span(k, k + 1).word_start);
            }
        }
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
        assert_eq!(seen, docs.ids());
    }

    #[test]
    fn full_sentence_carry_restores_the_same_rows() {
        let docs = corpus(20, 4);
        let cfg = SequenceConfig::new(48, CLS, SEP, PAD);
        let all = build_sequences(&cfg, &docs, 0).unwrap();
        let mut out = Rows::new(48);
        let mut p = FullSentencePacker::new(cfg.clone()).unwrap();
        for d in 0..7 {
            p.push_document(docs.doc(d), &mut out);
        }
        let (ids, ws, sep) = p.carry();
        let mut p = FullSentencePacker::with_carry(cfg, &ids, &ws, sep).unwrap();
        for d in 7..docs.len() {
            p.push_document(docs.doc(d), &mut out);
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
        use crate::mask::{mask_batch, MaskConfig, Strategy, IGNORE};
        let docs = corpus(40, 4);
        let rows = build_sequences(&SequenceConfig::new(64, CLS, SEP, PAD).layout(Layout::NspPairs), &docs, 0).unwrap();
        let cfg = MaskConfig::new(3, 50_000_000).strategy(Strategy::WholeWord);
        // What `tokenize --static-masking` does: row `r` is sample `r`, each epoch its own mask.
        let mask = |epoch: u64, threads: usize| {
            let index: Vec<u64> = (0..rows.len() as u64).collect();
            let mut ids = rows.input_ids.clone();
            let mut labels = vec![0i64; ids.len()];
            let (sm, ws) = (&rows.special_tokens_mask, &rows.word_start);
            mask_batch(&cfg, 1, epoch, &index, &mut ids, &mut labels, sm, ws, rows.seq_len, threads).unwrap();
            (ids, labels)
        };
        let (a, la) = mask(0, 1);
        let (b, _) = mask(1, 2);
        assert_ne!(a, b);
        for k in 0..a.len() {
            if rows.special_tokens_mask[k] == 1 {
                assert_eq!((a[k], la[k]), (rows.input_ids[k], IGNORE));
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
        assert!(build_sequences(&cfg, &slice(&docs, 0..1), 1).is_err());
    }
}
