//! Masked-language-model masking: which tokens a model must predict, and what it sees instead.
//!
//! Invariants, for every strategy:
//! - A token is a *candidate* unless the caller's special mask marks it or its id is one of the
//!   configured special ids (pad included). Non-candidates are never masked and get label `-100`.
//! - A masked token gets its original id as label; its input becomes `[MASK]`, a random id or
//!   stays, drawn per token with the configured split (default 80/10/10). Random ids are uniform
//!   over `0..vocab_size` minus the special ids (NOTE: HF's collator may draw `[PAD]`/`[CLS]`; we
//!   do not, as a random special would teach the model nothing useful).
//! - The result is a pure function of `(config, seed, epoch, sample index, row)`: see [`rng`].
//!
//! Strategies ([`Strategy`]):
//! - `Bernoulli`: each candidate independently with `probability` (HF `DataCollatorForLanguageModeling`).
//! - `FixedCount`: exactly `k` candidates chosen uniformly without replacement, `k` the
//!   stochastically rounded `probability * candidates` (original BERT `create_pretraining_data`,
//!   which rounds to nearest; stochastic rounding keeps the expected share exact on any length),
//!   capped by `max_predictions`.
//! - `WholeWord`: each word independently with `probability`, and then all its tokens (HF
//!   `whole_word_mask=True` semantics). Without word starts every token is a word.
//! - `Span`: `SpanBERT`. Until the budget (stochastically rounded `probability * candidates`) is
//!   spent: draw a length `l` in words from a geometric distribution with parameter `p`
//!   truncated to `1..=max_span`, draw an anchor token uniformly, move it to its word start,
//!   and mask `l` words from there. A span never crosses a special token; the last span stops
//!   at the budget, and a word that would overshoot it is masked whole with probability
//!   (tokens left / word length), so words are never cut and the expected share is exact.
//!
//! Words: token `i` starts a word when `word_start[i] != 0`, or when it follows a non-candidate
//! (a special) or is the first token; other tokens continue the previous word.

pub mod rng;
pub mod sentences;

use rng::{threshold, Rng};

use crate::error::{Error, Result};

/// Label of a position the loss ignores (the default `ignore_index` of `torch.nn.CrossEntropyLoss`).
pub const IGNORE: i64 = -100;

/// How positions are chosen for masking; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    Bernoulli,
    FixedCount,
    WholeWord,
    /// Span lengths in words, `P(l) ∝ p (1-p)^(l-1)` on `1..=max_span` (SpanBERT: p=0.2, max 10).
    Span {
        p_geometric: f64,
        max_span: u32,
    },
}

/// A token id type masking can work on in place (the numpy dtypes we accept).
pub trait TokenId: Copy + Send + Sync + 'static {
    fn to_u32(self) -> u32;
    fn from_u32(id: u32) -> Self;
    fn to_label(self) -> i64;
}

macro_rules! token_id {
    ($($t:ty),*) => {$(
        // One body for every width: `as` is lossless or the intended wrap for each of them.
        #[allow(clippy::cast_lossless)]
        impl TokenId for $t {
            #[inline]
            fn to_u32(self) -> u32 { self as u32 }
            #[inline]
            fn from_u32(id: u32) -> Self { id as $t }
            #[inline]
            fn to_label(self) -> i64 { self as i64 }
        }
    )*};
}
token_id!(u16, u32, i32, i64);

/// What to mask and how. Build with [`MaskConfig::new`] and the setters, then [`MaskConfig::validate`].
#[derive(Debug, Clone)]
pub struct MaskConfig {
    probability: f64,
    mask_prob: f64,
    random_prob: f64,
    strategy: Strategy,
    mask_id: u32,
    vocab_size: u32,
    max_predictions: Option<usize>,
    special_ids: Vec<u32>,
    /// Bit `id` set when `id` is special: one load per token instead of a search.
    special_bits: Vec<u64>,
    /// Span lengths: `span_cdf[l-1]` = `P(L <= l)` as a `u32` threshold (last is `u64::MAX`).
    span_cdf: Vec<u64>,
}

impl MaskConfig {
    /// Defaults: probability 0.15, 80% `[MASK]` / 10% random / 10% kept, Bernoulli, no special ids.
    pub fn new(mask_id: u32, vocab_size: u32) -> Self {
        Self {
            probability: 0.15,
            mask_prob: 0.8,
            random_prob: 0.1,
            strategy: Strategy::Bernoulli,
            mask_id,
            vocab_size,
            max_predictions: None,
            special_ids: Vec::new(),
            special_bits: Vec::new(),
            span_cdf: Vec::new(),
        }
    }

    /// Share of candidate tokens to mask, in `[0, 1]`.
    #[must_use]
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Of the masked tokens: share replaced by `[MASK]`, share replaced by a random id; the rest
    /// keep their id. Both in `[0, 1]`, sum at most 1.
    #[must_use]
    pub fn replacement(mut self, mask: f64, random: f64) -> Self {
        self.mask_prob = mask;
        self.random_prob = random;
        self
    }

    #[must_use]
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self.span_cdf.clear();
        if let Strategy::Span { p_geometric, max_span } = s {
            let w: Vec<f64> = (0..max_span).map(|k| p_geometric * (1.0 - p_geometric).powi(k as i32)).collect();
            let total: f64 = w.iter().sum();
            let mut acc = 0.0;
            for x in &w {
                acc += x / total;
                self.span_cdf.push(threshold(acc));
            }
            if let Some(last) = self.span_cdf.last_mut() {
                *last = u64::MAX;
            }
        }
        self
    }

    /// Ids never masked and never drawn as random replacements (`[CLS]`, `[SEP]`, `[PAD]`, ...).
    #[must_use]
    pub fn special_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        self.special_ids = ids.into_iter().collect();
        let max = self.special_ids.iter().copied().max().map_or(0, |m| m as usize + 1);
        self.special_bits = vec![0; max.div_ceil(64)];
        for &id in &self.special_ids {
            self.special_bits[id as usize / 64] |= 1 << (id % 64);
        }
        self
    }

    /// `FixedCount` only: at most this many masked tokens per sequence (BERT `max_predictions_per_seq`).
    #[must_use]
    pub fn max_predictions(mut self, n: Option<usize>) -> Self {
        self.max_predictions = n;
        self
    }

    /// Checks ranges; every masking function assumes a validated config.
    pub fn validate(&self) -> Result<()> {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !unit(self.probability) {
            return Err(Error::Config(format!("mask probability {} is not in [0, 1]", self.probability)));
        }
        if !unit(self.mask_prob) || !unit(self.random_prob) || self.mask_prob + self.random_prob > 1.0 + 1e-9 {
            return Err(Error::Config(format!(
                "replacement split mask={} random={} must be in [0, 1] and sum to at most 1",
                self.mask_prob, self.random_prob
            )));
        }
        if self.random_prob > 0.0
            && self.special_ids.iter().filter(|&&i| i < self.vocab_size).count() as u64 >= u64::from(self.vocab_size)
        {
            return Err(Error::Config("random replacement needs a vocabulary with non-special ids".into()));
        }
        if let Strategy::Span { p_geometric, max_span } = self.strategy {
            if !(p_geometric > 0.0 && p_geometric <= 1.0) || max_span == 0 {
                return Err(Error::Config(format!(
                    "span masking needs 0 < p <= 1 and max_span >= 1 (got p={p_geometric}, max_span={max_span})"
                )));
            }
        }
        Ok(())
    }

    #[inline]
    fn is_special_id(&self, id: u32) -> bool {
        self.special_bits.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// `P(L = l)` of the span length, `l` in `1..=max_span` (empty unless `Span`): what the
    /// tests check the draws against.
    #[cfg(test)]
    fn span_length_pmf(&self) -> Vec<f64> {
        let mut prev = 0.0;
        self.span_cdf
            .iter()
            .map(|&c| {
                let c = if c == u64::MAX { 1.0 } else { c as f64 / 4_294_967_296.0 };
                let p = c - prev;
                prev = c;
                p
            })
            .collect()
    }
}

/// Per-call constants: thresholds on a uniform `u32`.
struct Plan<'a> {
    cfg: &'a MaskConfig,
    t_mask: u64,
    t_random: u64,
}

impl<'a> Plan<'a> {
    fn new(cfg: &'a MaskConfig) -> Self {
        Self { cfg, t_mask: threshold(cfg.mask_prob), t_random: threshold(cfg.mask_prob + cfg.random_prob) }
    }

    /// Masks position `i`: sets its label and its replacement from the uniform `u`.
    #[inline]
    fn apply<I: TokenId>(&self, rng: &mut Rng, ids: &mut [I], labels: &mut [i64], i: usize, u: u32) {
        let id = ids[i];
        labels[i] = id.to_label();
        let u = u64::from(u);
        if u < self.t_mask {
            ids[i] = I::from_u32(self.cfg.mask_id);
        } else if u < self.t_random {
            ids[i] = I::from_u32(self.random_id(rng));
        }
    }

    /// A uniform non-special id. Specials are a handful among thousands of ids, so rejection
    /// almost never loops; the bound only guards a vocabulary that is nearly all specials.
    #[inline]
    fn random_id(&self, rng: &mut Rng) -> u32 {
        let mut r = rng.below(self.cfg.vocab_size);
        for _ in 0..64 {
            if !self.cfg.is_special_id(r) {
                break;
            }
            r = rng.below(self.cfg.vocab_size);
        }
        r
    }
}

#[inline]
fn stochastic_round(x: f64, rng: &mut Rng) -> usize {
    let f = x.floor();
    f as usize + usize::from(rng.f64() < x - f)
}

/// Masks one sequence in place; returns the number of masked tokens.
///
/// `ids` is overwritten with the model input and `labels` (same length) with the original id at
/// masked positions and [`IGNORE`] elsewhere. `special` is empty or as long as `ids`, nonzero
/// meaning "never mask"; `word_start` likewise (see the module docs for words). The draws depend
/// only on `(seed, epoch, index)`, the config and the row. `cfg` must be validated.
// The signature mirrors the data: one row, its key and its optional masks; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn mask_sequence<I: TokenId>(
    cfg: &MaskConfig,
    seed: u64,
    epoch: u64,
    index: u64,
    ids: &mut [I],
    labels: &mut [i64],
    special: &[u8],
    word_start: Option<&[u8]>,
) -> usize {
    let n = ids.len();
    assert_eq!(labels.len(), n, "labels must be as long as ids");
    assert!(special.is_empty() || special.len() == n, "special mask must be empty or as long as ids");
    assert!(word_start.is_none_or(|w| w.len() == n), "word starts must be as long as ids");
    let mut rng = Rng::for_sample(seed, epoch, index);
    let plan = Plan::new(cfg);
    let cand = |ids: &[I], i: usize| (special.is_empty() || special[i] == 0) && !cfg.is_special_id(ids[i].to_u32());
    match cfg.strategy {
        Strategy::Bernoulli => {
            let t = threshold(cfg.probability);
            let mut count = 0;
            for i in 0..n {
                labels[i] = IGNORE;
                if !cand(ids, i) {
                    continue;
                }
                let r = rng.next_u64();
                if (r & 0xffff_ffff) < t {
                    plan.apply(&mut rng, ids, labels, i, (r >> 32) as u32);
                    count += 1;
                }
            }
            count
        }
        Strategy::FixedCount => {
            labels.fill(IGNORE);
            let mut pos: Vec<u32> = (0..n as u32).filter(|&i| cand(ids, i as usize)).collect();
            let mut k = stochastic_round(pos.len() as f64 * cfg.probability, &mut rng).min(pos.len());
            if let Some(m) = cfg.max_predictions {
                k = k.min(m);
            }
            // Partial Fisher-Yates: the first k of `pos` become a uniform k-subset.
            for j in 0..k {
                let r = j + rng.below_usize(pos.len() - j);
                pos.swap(j, r);
                let u = rng.next_u32();
                plan.apply(&mut rng, ids, labels, pos[j] as usize, u);
            }
            k
        }
        Strategy::WholeWord => {
            let t = threshold(cfg.probability);
            let mut count = 0;
            let mut chosen = false;
            let mut prev_cand = false;
            for i in 0..n {
                labels[i] = IGNORE;
                if !cand(ids, i) {
                    prev_cand = false;
                    continue;
                }
                let starts = !prev_cand || word_start.is_none_or(|w| w[i] != 0);
                prev_cand = true;
                if starts {
                    chosen = u64::from(rng.next_u32()) < t;
                }
                if chosen {
                    let u = rng.next_u32();
                    plan.apply(&mut rng, ids, labels, i, u);
                    count += 1;
                }
            }
            count
        }
        Strategy::Span { .. } => mask_spans(&plan, &mut rng, ids, labels, &cand, word_start),
    }
}

#[allow(clippy::many_single_char_names)]
fn mask_spans<I: TokenId>(
    plan: &Plan<'_>,
    rng: &mut Rng,
    ids: &mut [I],
    labels: &mut [i64],
    cand: &impl Fn(&[I], usize) -> bool,
    word_start: Option<&[u8]>,
) -> usize {
    let n = ids.len();
    labels.fill(IGNORE);
    // Words as half-open token ranges; `joined[w]` says word w+1 follows word w with no special between.
    let mut words: Vec<(u32, u32)> = Vec::new();
    let mut joined: Vec<bool> = Vec::new();
    let mut word_of: Vec<u32> = Vec::new(); // candidate k -> its word
    let mut prev_cand = false;
    for i in 0..n {
        if !cand(ids, i) {
            prev_cand = false;
            continue;
        }
        if !prev_cand || word_start.is_none_or(|w| w[i] != 0) {
            if let Some(j) = joined.last_mut() {
                *j = prev_cand;
            }
            words.push((i as u32, i as u32 + 1));
            joined.push(false);
        } else if let Some(w) = words.last_mut() {
            w.1 = i as u32 + 1;
        }
        word_of.push(words.len() as u32 - 1);
        prev_cand = true;
    }
    let n_cand = word_of.len();
    if n_cand == 0 {
        return 0;
    }
    let budget = stochastic_round(n_cand as f64 * plan.cfg.probability, rng);
    let mut masked = 0;
    let mut tries = 0;
    // Each accepted anchor masks at least one token and an anchor is rejected with probability
    // at most the masked share, so this bound is never reached in practice; it guarantees an end.
    while masked < budget && tries < 64 + 16 * budget {
        tries += 1;
        let r = u64::from(rng.next_u32());
        let len = plan.cfg.span_cdf.iter().position(|&c| r < c).map_or(1, |k| k + 1);
        let mut w = word_of[rng.below_usize(n_cand)] as usize;
        if labels[words[w].0 as usize] != IGNORE {
            continue;
        }
        for step in 0..len {
            if step > 0 {
                if !joined[w] {
                    break;
                }
                w += 1;
            }
            let (s, e) = words[w];
            if labels[s as usize] != IGNORE {
                continue; // a word is masked whole or not at all: already done
            }
            let wl = (e - s) as usize;
            // A word that overshoots the budget is taken whole with probability (tokens left /
            // its length): words are never cut and the expected masked share stays exact.
            if masked + wl > budget && rng.below_usize(wl) >= budget - masked {
                return masked;
            }
            for i in s as usize..e as usize {
                let u = rng.next_u32();
                plan.apply(rng, ids, labels, i, u);
            }
            masked += wl;
            if masked >= budget {
                break;
            }
        }
    }
    masked
}

/// Masks a `(rows, seq_len)` batch in place, row `r` keyed by `sample_index[r]`; returns the
/// number of masked tokens. `special` and `word_start` are empty or `(rows, seq_len)`.
///
/// Rows are split across `threads` scoped threads (no global pool: this runs inside `DataLoader`
/// workers, which fork); the result is the same for any thread count.
#[allow(clippy::too_many_arguments)]
pub fn mask_batch<I: TokenId>(
    cfg: &MaskConfig,
    seed: u64,
    epoch: u64,
    sample_index: &[u64],
    ids: &mut [I],
    labels: &mut [i64],
    special: &[u8],
    word_start: &[u8],
    seq_len: usize,
    threads: usize,
) -> Result<u64> {
    cfg.validate()?;
    let fits = |id: u32| I::from_u32(id).to_u32() == id;
    if !fits(cfg.mask_id) || (cfg.random_prob > 0.0 && !fits(cfg.vocab_size.saturating_sub(1))) {
        return Err(Error::Config("the mask id or the vocabulary does not fit the id type".into()));
    }
    let rows = sample_index.len();
    if ids.len() != rows * seq_len || labels.len() != ids.len() {
        return Err(Error::Config(format!("ids hold {} tokens, expected {rows} rows x {seq_len}", ids.len())));
    }
    for (name, a) in [("special tokens mask", special), ("word starts", word_start)] {
        if !a.is_empty() && a.len() != ids.len() {
            return Err(Error::Config(format!("{name} has {} entries, expected {}", a.len(), ids.len())));
        }
    }
    if rows == 0 || seq_len == 0 {
        return Ok(0);
    }
    // An id outside the vocabulary is wrong data (another tokenizer's shards?): refuse it rather
    // than mask it. One pass over memory the masking reads next anyway.
    if cfg.mask_id >= cfg.vocab_size {
        return Err(Error::Config(format!("mask id {} is not below vocab_size {}", cfg.mask_id, cfg.vocab_size)));
    }
    if let Some(bad) = ids.iter().map(|&i| i.to_label()).find(|&i| i < 0 || i >= i64::from(cfg.vocab_size)) {
        return Err(Error::Config(format!(
            "input_ids holds id {bad}, outside the vocabulary of {} ids",
            cfg.vocab_size
        )));
    }
    let row = |r: usize, ids: &mut [I], labels: &mut [i64]| -> u64 {
        let span = r * seq_len..(r + 1) * seq_len;
        let sp = if special.is_empty() { &[][..] } else { &special[span.clone()] };
        let ws = if word_start.is_empty() { None } else { Some(&word_start[span]) };
        mask_sequence(cfg, seed, epoch, sample_index[r], ids, labels, sp, ws) as u64
    };
    let threads = threads.clamp(1, rows);
    if threads == 1 {
        let mut total = 0;
        for (r, (i, l)) in ids.chunks_mut(seq_len).zip(labels.chunks_mut(seq_len)).enumerate() {
            total += row(r, i, l);
        }
        return Ok(total);
    }
    let per = rows.div_ceil(threads);
    let total = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks_mut(per * seq_len)
            .zip(labels.chunks_mut(per * seq_len))
            .enumerate()
            .map(|(c, (ic, lc))| {
                let row = &row;
                s.spawn(move || {
                    let mut t = 0;
                    for (k, (i, l)) in ic.chunks_mut(seq_len).zip(lc.chunks_mut(seq_len)).enumerate() {
                        t += row(c * per + k, i, l);
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).sum()
    });
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: u32 = 4;
    const VOCAB: u32 = 1000;
    const SPECIALS: [u32; 4] = [0, 1, 2, 3]; // pad, cls, sep, unk

    fn cfg(s: Strategy) -> MaskConfig {
        MaskConfig::new(MASK, VOCAB).special_ids(SPECIALS).strategy(s)
    }

    /// A row `[CLS] w.. [SEP] w.. [SEP] [PAD]..` with words of 1-3 pieces.
    fn row(index: u64, t: usize) -> (Vec<u32>, Vec<u8>) {
        let mut r = Rng::keyed(&[99, index]);
        let mut ids = vec![1];
        let mut ws = vec![0];
        let body = t - 8 - r.below(8) as usize;
        while ids.len() < body {
            if ids.len() == body / 2 {
                ids.push(2);
                ws.push(0);
            }
            for k in 0..=r.below(3) {
                ids.push(10 + r.below(VOCAB - 10));
                ws.push(u8::from(k == 0));
            }
        }
        ids.push(2);
        ws.push(0);
        ids.resize(t, 0);
        ws.resize(t, 0);
        (ids, ws)
    }

    struct Stats {
        cand: u64,
        masked: u64,
        as_mask: u64,
        as_random: u64,
    }

    fn run(c: &MaskConfig, rows: u64, t: usize) -> Stats {
        c.validate().unwrap();
        let mut st = Stats { cand: 0, masked: 0, as_mask: 0, as_random: 0 };
        for index in 0..rows {
            let (orig, ws) = row(index, t);
            let mut ids = orig.clone();
            let mut labels = vec![0i64; t];
            let n = mask_sequence(c, 5, 0, index, &mut ids, &mut labels, &[], Some(&ws));
            let mut counted = 0;
            for i in 0..t {
                let special = SPECIALS.contains(&orig[i]);
                st.cand += u64::from(!special);
                if labels[i] == IGNORE {
                    assert_eq!(ids[i], orig[i]);
                    continue;
                }
                assert!(!special, "special token masked");
                assert_eq!(labels[i], i64::from(orig[i]));
                counted += 1;
                if ids[i] == MASK {
                    st.as_mask += 1;
                } else if ids[i] != orig[i] {
                    assert!(!SPECIALS.contains(&ids[i]) && ids[i] < VOCAB);
                    st.as_random += 1;
                }
            }
            assert_eq!(counted, n);
            st.masked += n as u64;
        }
        st
    }

    fn check_shares(st: &Stats, p: f64) {
        let share = st.masked as f64 / st.cand as f64;
        assert!((share - p).abs() < 0.002, "masked share {share}");
        let m = st.as_mask as f64 / st.masked as f64;
        let r = st.as_random as f64 / st.masked as f64;
        assert!((m - 0.8).abs() < 0.005, "mask share {m}");
        // Random draws equal to the original id count as kept: 1/VOCAB of them.
        assert!((r - 0.1).abs() < 0.005, "random share {r}");
    }

    #[test]
    fn bernoulli_and_fixed_count_hit_the_target_shares() {
        check_shares(&run(&cfg(Strategy::Bernoulli), 2500, 512), 0.15);
        check_shares(&run(&cfg(Strategy::FixedCount), 2500, 512), 0.15);
        check_shares(&run(&cfg(Strategy::WholeWord), 2500, 512), 0.15);
        check_shares(&run(&cfg(Strategy::Span { p_geometric: 0.2, max_span: 10 }), 2500, 512), 0.15);
    }

    #[test]
    fn fixed_count_is_exact_per_row() {
        let c = cfg(Strategy::FixedCount).probability(0.2).max_predictions(Some(5));
        let (mut ids, _) = row(1, 128);
        let mut labels = vec![0; 128];
        assert_eq!(mask_sequence(&c, 0, 0, 1, &mut ids, &mut labels, &[], None), 5);
    }

    #[test]
    fn same_key_same_mask_and_epochs_differ() {
        let c = cfg(Strategy::Bernoulli);
        let (orig, _) = row(3, 256);
        let go = |epoch| {
            let mut ids = orig.clone();
            let mut labels = vec![0; 256];
            mask_sequence(&c, 1, epoch, 3, &mut ids, &mut labels, &[], None);
            (ids, labels)
        };
        assert_eq!(go(0), go(0));
        assert_ne!(go(0), go(1));
    }

    #[test]
    fn whole_words_are_masked_whole() {
        let c = cfg(Strategy::WholeWord).probability(0.3);
        for index in 0..200 {
            let (orig, ws) = row(index, 256);
            let mut ids = orig.clone();
            let mut labels = vec![0; 256];
            mask_sequence(&c, 0, 0, index, &mut ids, &mut labels, &[], Some(&ws));
            for i in 1..256 {
                let continues = ws[i] == 0 && !SPECIALS.contains(&orig[i]) && !SPECIALS.contains(&orig[i - 1]);
                if continues {
                    assert_eq!(labels[i] == IGNORE, labels[i - 1] == IGNORE, "word cut at {i}");
                }
            }
        }
    }

    #[test]
    fn span_lengths_follow_the_truncated_geometric() {
        let c = cfg(Strategy::Span { p_geometric: 0.2, max_span: 10 });
        let pmf = c.span_length_pmf();
        assert_eq!(pmf.len(), 10);
        assert!((pmf.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        let mean: f64 = pmf.iter().enumerate().map(|(k, p)| (k + 1) as f64 * p).sum();
        assert!((mean - 3.8).abs() < 0.01, "SpanBERT reports a mean of 3.8, got {mean}");
        let mut r = Rng::keyed(&[1]);
        let mut hist = [0u32; 10];
        for _ in 0..1_000_000 {
            let u = u64::from(r.next_u32());
            hist[c.span_cdf.iter().position(|&x| u < x).unwrap()] += 1;
        }
        for (h, p) in hist.iter().zip(&pmf) {
            assert!((f64::from(*h) / 1e6 - p).abs() < 0.002);
        }
    }

    #[test]
    fn batch_is_thread_count_independent() {
        let c = cfg(Strategy::Span { p_geometric: 0.2, max_span: 10 });
        let t = 64;
        let mut ids = Vec::new();
        let mut ws = Vec::new();
        for r in 0..37 {
            let (i, w) = row(r, t);
            ids.extend(i);
            ws.extend(w);
        }
        let idx: Vec<u64> = (100..137).collect();
        let go = |threads| {
            let mut x = ids.clone();
            let mut l = vec![0; x.len()];
            mask_batch(&c, 3, 2, &idx, &mut x, &mut l, &[], &ws, t, threads).unwrap();
            (x, l)
        };
        assert_eq!(go(1), go(4));
        // Row r equals the row masked alone with its own index.
        let (a, _) = go(3);
        let mut one = ids[5 * t..6 * t].to_vec();
        let mut l = vec![0; t];
        mask_sequence(&c, 3, 2, 105, &mut one, &mut l, &[], Some(&ws[5 * t..6 * t]));
        assert_eq!(&a[5 * t..6 * t], &one[..]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(cfg(Strategy::Bernoulli).probability(1.5).validate().is_err());
        assert!(cfg(Strategy::Bernoulli).replacement(0.8, 0.3).validate().is_err());
        assert!(cfg(Strategy::Span { p_geometric: 0.0, max_span: 10 }).validate().is_err());
        assert!(MaskConfig::new(0, 2).special_ids([0, 1]).validate().is_err());
    }
}
