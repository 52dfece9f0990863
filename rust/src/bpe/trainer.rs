//! The BPE trainer: count pieces in parallel while streaming the corpus, then merge.
//!
//! How it differs from the anchors, and why:
//! - Pre-tokenization runs on the hand-written / DFA splitters (see `pretokenize`), not
//!   fancy-regex: that is where HF tokenizers and rustbpe spend most of their time.
//! - Counting is streamed through the shared reading pipeline; each worker keeps its own
//!   `piece -> count` map (no locks), merged once at the end.
//! - Words are stored flat (one `Vec<u32>` of symbols plus offsets) and merged in place; the
//!   pair -> words index is a `Vec<u32>` per pair that may hold stale entries, cleaned when the
//!   pair is merged (sort + dedup), instead of HF's `HashSet<usize>` per pair: far less memory and
//!   no hashing on the hot path.
//! - The priority queue is lazy: an entry whose count went down is re-pushed when popped; counts
//!   only go up for pairs that contain the token just created, which are pushed then.
//!
//! Tie rule (documented, and what makes the output independent of the thread count): the pair
//! with the highest count wins; among equal counts, the pair with the smaller left id, then the
//! smaller right id. Counts are exact integers summed over all workers, so scheduling cannot
//! change any decision.

use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::Instant;

use ahash::AHashMap;
use compact_str::CompactString;

use super::{pair_key, Special, Tokenizer};
use crate::corpus::{read_batches, CorpusConfig, InputFile, ReadStats};
use crate::error::{Error, Result};
use crate::pretokenize::{Pattern, PreTokenizer};
use crate::progress::Progress;

/// Where the special tokens' ids go in a trained vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpecialsAt {
    /// `0..k`: the bytes start at `k` (ids as dataprep wrote them before this option existed).
    First,
    /// After every merge (`n-k..n`): the bytes are ids `0..256` in byte order, as tiktoken's own
    /// files and the loaders that assume them (GigaToken, fastokens) have it.
    #[default]
    Last,
}

/// Options of a training run. Build with [`TrainerConfig::new`] and the setters.
#[derive(Debug, Clone)]
pub struct TrainerConfig {
    /// Total vocabulary size, special tokens and the 256 bytes included.
    pub vocab_size: u32,
    pub pattern: Pattern,
    /// Special tokens, in this order at the ids `specials` says.
    pub special_tokens: Vec<String>,
    pub specials: SpecialsAt,
    /// Merges whose pair occurs fewer times than this are not made (training stops early).
    pub min_frequency: u64,
    /// Longest token, in bytes; longer merges are skipped.
    pub max_token_length: Option<usize>,
    pub threads: usize,
    /// Every `holdout_every`-th document (by corpus index) is held back from training to measure
    /// compression on unseen text; 0 disables. At most `holdout_max_bytes` of it are kept.
    pub holdout_every: u64,
    pub holdout_max_bytes: usize,
    /// Text per batch handed to a worker.
    pub batch_bytes: usize,
}

impl TrainerConfig {
    pub fn new(vocab_size: u32) -> Self {
        Self {
            vocab_size,
            pattern: Pattern::Gpt2,
            special_tokens: Vec::new(),
            specials: SpecialsAt::Last,
            min_frequency: 2,
            max_token_length: None,
            threads: crate::all_cores(),
            holdout_every: 100,
            holdout_max_bytes: 4 << 20,
            batch_bytes: 1 << 20,
        }
    }

    #[must_use]
    pub fn pattern(mut self, p: Pattern) -> Self {
        self.pattern = p;
        self
    }

    #[must_use]
    pub fn special_tokens(mut self, s: Vec<String>) -> Self {
        self.special_tokens = s;
        self
    }

    #[must_use]
    pub fn specials_at(mut self, at: SpecialsAt) -> Self {
        self.specials = at;
        self
    }

    #[must_use]
    pub fn min_frequency(mut self, f: u64) -> Self {
        self.min_frequency = f;
        self
    }

    #[must_use]
    pub fn max_token_length(mut self, l: Option<usize>) -> Self {
        self.max_token_length = l;
        self
    }

    #[must_use]
    pub fn threads(mut self, t: usize) -> Self {
        self.threads = t.max(1);
        self
    }

    #[must_use]
    pub fn holdout_every(mut self, n: u64) -> Self {
        self.holdout_every = n;
        self
    }

    pub fn validate(&self) -> Result<()> {
        let k = self.special_tokens.len() as u32;
        if self.vocab_size < k + 256 {
            return Err(Error::Config(format!(
                "vocab size {} is too small: the 256 bytes and {k} special tokens need at least {}",
                self.vocab_size,
                k + 256
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.special_tokens {
            if s.is_empty() || !seen.insert(s) {
                return Err(Error::Config(format!("special token {s:?} is empty or given twice")));
            }
        }
        if self.max_token_length == Some(0) {
            return Err(Error::Config("max token length must be at least 1".into()));
        }
        Ok(())
    }
}

/// What a training run did, for the summary.
#[derive(Debug, Clone, Default)]
pub struct TrainStats {
    pub read: ReadStats,
    pub unique_words: u64,
    pub merges: u64,
    pub read_count_seconds: f64,
    pub merge_seconds: f64,
    pub total_seconds: f64,
    pub holdout_documents: u64,
    pub holdout_bytes: u64,
    pub holdout_tokens: u64,
}

/// Piece -> count. Keys are `CompactString`s: pieces of up to 24 bytes (nearly all) live inline
/// in the table, so a lookup compares bytes without chasing a pointer; with `Box<[u8]>` keys,
/// counting took 40% longer on enwiki.
pub type Counts = AHashMap<CompactString, u64>;

/// What counting a corpus (or a slice of it) gives: the piece counts, the read counts and the
/// held-back documents (corpus index, text), in index order, cut at `holdout_max_bytes`.
pub type Counted = (Counts, ReadStats, Vec<(u64, String)>);

/// Counts the pieces of `files` (streamed, on `cfg.threads` workers); `first_index` is the corpus
/// index of their first document (0 for a whole corpus; a work unit's offset otherwise), which
/// decides the held-back documents.
pub fn count_words(
    files: &[InputFile],
    corpus: &CorpusConfig,
    cfg: &TrainerConfig,
    first_index: u64,
    progress: &Progress,
) -> Result<Counted> {
    let pre = PreTokenizer::new(cfg.pattern.clone())?;
    let holdout: Mutex<(Vec<(u64, String)>, usize)> = Mutex::new((Vec::new(), 0));
    let (stats, maps) =
        read_batches(files, corpus, cfg.batch_bytes, cfg.threads, progress, Counts::default, |counts, batch| {
            for doc in batch.docs {
                let index = first_index + doc.index;
                if cfg.holdout_every > 0 && index % cfg.holdout_every == cfg.holdout_every - 1 {
                    let mut h = holdout.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    h.0.push((index, doc.text));
                    continue;
                }
                pre.split(&doc.text, |piece| {
                    if let Some(c) = counts.get_mut(piece) {
                        *c += 1;
                    } else {
                        counts.insert(piece.into(), 1);
                    }
                });
            }
            Ok(())
        })?;
    let mut maps = maps.into_iter();
    let mut total = maps.next().unwrap_or_default();
    for m in maps {
        if m.len() > total.len() {
            let small = std::mem::replace(&mut total, m);
            merge_into(&mut total, small);
        } else {
            merge_into(&mut total, m);
        }
    }
    // Keep the held-back text deterministic: by document index, up to the byte cap.
    let (mut held, _) = holdout.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    held.sort_unstable_by_key(|(i, _)| *i);
    Ok((total, stats, cap_held(held, cfg.holdout_max_bytes)))
}

/// The held-back documents (in index order) up to the first that takes them past `max_bytes`.
/// Applied to each slice and again to their concatenation, it gives what it gives the whole.
pub fn cap_held(held: Vec<(u64, String)>, max_bytes: usize) -> Vec<(u64, String)> {
    let mut bytes = 0;
    held.into_iter()
        .take_while(|(_, t)| {
            bytes += t.len();
            bytes <= max_bytes
        })
        .collect()
}

/// Adds `other`'s counts to `total`.
pub fn merge_into(total: &mut Counts, other: Counts) {
    for (k, v) in other {
        *total.entry(k).or_insert(0) += v;
    }
}

/// Trains a tokenizer on `files`.
pub fn train(
    files: &[InputFile],
    corpus: &CorpusConfig,
    cfg: &TrainerConfig,
    progress: &Progress,
) -> Result<(Tokenizer, TrainStats)> {
    cfg.validate()?;
    let t0 = Instant::now();
    let counted = count_words(files, corpus, cfg, 0, progress)?;
    train_counted(counted, files.first().map(|f| f.path.as_path()), cfg, t0, progress)
}

/// Merges and evaluates counted pieces (of a whole corpus, or of its work units combined);
/// `first_input` names the corpus in the error for one without text; `t0` is when counting began.
pub fn train_counted(
    (counts, read, held): Counted,
    first_input: Option<&std::path::Path>,
    cfg: &TrainerConfig,
    t0: Instant,
    progress: &Progress,
) -> Result<(Tokenizer, TrainStats)> {
    if read.documents == 0 {
        let what = first_input.map(|p| p.display().to_string()).unwrap_or_default();
        return Err(Error::input(what, "no text found in the input (empty files or no documents)"));
    }
    let held: Vec<String> = held.into_iter().map(|(_, t)| t).collect();
    let t1 = Instant::now();
    let unique_words = counts.len() as u64;
    let tok = train_from_counts(counts, cfg, progress)?;
    let t2 = Instant::now();
    progress.phase("evaluating", held.iter().map(|t| t.len() as u64).sum());
    let mut cache = super::EncodeCache::new();
    let mut ids = Vec::new();
    for t in &held {
        tok.encode_into(t, &mut cache, &mut ids);
        progress.add(t.len() as u64);
    }
    let stats = TrainStats {
        read,
        unique_words,
        merges: tok.merges().len() as u64,
        read_count_seconds: (t1 - t0).as_secs_f64(),
        merge_seconds: (t2 - t1).as_secs_f64(),
        total_seconds: t0.elapsed().as_secs_f64(),
        holdout_documents: held.len() as u64,
        holdout_bytes: held.iter().map(|t| t.len() as u64).sum(),
        holdout_tokens: ids.len() as u64,
    };
    Ok((tok, stats))
}

#[derive(PartialEq, Eq)]
struct Entry {
    count: u64,
    pair: u64,
}

impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Max-heap on count; on equal counts the smaller pair (left id, then right id) is greater.
        self.count.cmp(&o.count).then_with(|| o.pair.cmp(&self.pair))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// The merge loop over counted pieces. `counts` order does not matter.
pub fn train_from_counts(counts: Counts, cfg: &TrainerConfig, progress: &Progress) -> Result<Tokenizer> {
    cfg.validate()?;
    let k = cfg.special_tokens.len() as u32;
    let mut tokens: Vec<Vec<u8>> = cfg.special_tokens.iter().map(|s| s.as_bytes().to_vec()).collect();
    tokens.extend((0..=255u8).map(|b| vec![b]));
    let specials: Vec<Special> =
        cfg.special_tokens.iter().enumerate().map(|(i, s)| Special { content: s.clone(), id: i as u32 }).collect();
    let mut by_bytes: AHashMap<Vec<u8>, u32> =
        tokens.iter().enumerate().skip(k as usize).map(|(i, t)| (t.clone(), i as u32)).collect();

    // Flat word storage. Words of one byte have no pairs and are dropped.
    let mut entries: Vec<(CompactString, u64)> = counts.into_iter().filter(|(w, _)| w.len() > 1).collect();
    // Sorting makes word indices (and so every tie inside the loop) independent of hash order.
    entries.sort_unstable();
    let mut syms: Vec<u32> = Vec::with_capacity(entries.iter().map(|(w, _)| w.len()).sum());
    let mut start: Vec<usize> = Vec::with_capacity(entries.len());
    let mut len: Vec<u32> = Vec::with_capacity(entries.len());
    let mut wcount: Vec<u64> = Vec::with_capacity(entries.len());
    for (w, c) in entries {
        start.push(syms.len());
        len.push(w.len() as u32);
        wcount.push(c);
        syms.extend(w.bytes().map(|b| k + u32::from(b)));
    }

    let mut pair_count: AHashMap<u64, u64> = AHashMap::new();
    let mut where_: AHashMap<u64, Vec<u32>> = AHashMap::new();
    for w in 0..start.len() {
        let s = &syms[start[w]..start[w] + len[w] as usize];
        for p in s.windows(2) {
            let key = pair_key(p[0], p[1]);
            *pair_count.entry(key).or_insert(0) += wcount[w];
            let list = where_.entry(key).or_default();
            if list.last() != Some(&(w as u32)) {
                list.push(w as u32);
            }
        }
    }
    let mut heap: BinaryHeap<Entry> = pair_count.iter().map(|(&pair, &count)| Entry { count, pair }).collect();

    let target = cfg.vocab_size as usize;
    let mut merges: Vec<(u32, u32, u32)> = Vec::new();
    let mut merged: ahash::AHashSet<u64> = ahash::AHashSet::new();
    progress.phase("merging", (target - tokens.len()) as u64);
    let base = tokens.len();
    let mut delta: AHashMap<u64, i64> = AHashMap::new();
    let mut grown: AHashMap<u64, Vec<u32>> = AHashMap::new();

    while tokens.len() < target {
        let Some(top) = heap.pop() else { break };
        let current = pair_count.get(&top.pair).copied().unwrap_or(0);
        if current != top.count {
            if current > 0 {
                heap.push(Entry { count: current, pair: top.pair });
            }
            continue;
        }
        if current < cfg.min_frequency.max(1) {
            break;
        }
        if !merged.insert(top.pair) {
            continue;
        }
        let (a, b) = ((top.pair >> 32) as u32, top.pair as u32);
        let new_bytes = [tokens[a as usize].as_slice(), tokens[b as usize].as_slice()].concat();
        if cfg.max_token_length.is_some_and(|m| new_bytes.len() > m) {
            continue;
        }
        let new = if let Some(&id) = by_bytes.get(&new_bytes) {
            id
        } else {
            let id = tokens.len() as u32;
            by_bytes.insert(new_bytes.clone(), id);
            tokens.push(new_bytes);
            id
        };
        merges.push((a, b, new));
        if merges.len().is_multiple_of(256) {
            progress.check()?;
        }
        progress.set_done((tokens.len() - base) as u64);

        let mut list = where_.remove(&top.pair).unwrap_or_default();
        list.sort_unstable();
        list.dedup();
        delta.clear();
        grown.clear();
        for &w in &list {
            let wu = w as usize;
            let (s0, n) = (start[wu], len[wu] as usize);
            let word = &mut syms[s0..s0 + n];
            let c = wcount[wu] as i64;
            let mut out = 0; // write cursor: word[..out] is the merged prefix
            let mut i = 0;
            let mut changed = false;
            while i < n {
                if i + 1 < n && word[i] == a && word[i + 1] == b {
                    changed = true;
                    if out > 0 {
                        let left = word[out - 1];
                        *delta.entry(pair_key(left, a)).or_insert(0) -= c;
                        let key = pair_key(left, new);
                        *delta.entry(key).or_insert(0) += c;
                        push_once(grown.entry(key).or_default(), w);
                    }
                    *delta.entry(top.pair).or_insert(0) -= c;
                    if i + 2 < n {
                        let right = word[i + 2];
                        *delta.entry(pair_key(b, right)).or_insert(0) -= c;
                        let key = pair_key(new, right);
                        *delta.entry(key).or_insert(0) += c;
                        push_once(grown.entry(key).or_default(), w);
                    }
                    word[out] = new;
                    i += 2;
                } else {
                    word[out] = word[i];
                    i += 1;
                }
                out += 1;
            }
            if changed {
                len[wu] = out as u32;
            }
        }
        for (&pair, &d) in &delta {
            if d == 0 {
                continue;
            }
            let e = pair_count.entry(pair).or_insert(0);
            *e = (*e as i64 + d) as u64;
            if *e == 0 {
                pair_count.remove(&pair);
            } else if d > 0 {
                heap.push(Entry { count: *e, pair });
            }
        }
        for (pair, ws) in grown.drain() {
            where_.entry(pair).or_default().extend(ws);
        }
    }
    match cfg.specials {
        SpecialsAt::First => Tokenizer::new(cfg.pattern.clone(), tokens, specials, merges),
        SpecialsAt::Last => specials_last(cfg, tokens, specials, merges),
    }
}

/// Renumbers a vocabulary trained with its `k` specials at `0..k` so that they come last: every
/// other id moves down by `k`. One renumbering at the end keeps the merge loop's own numbering
/// (and so its tie-breaks) the same for both layouts: only the ids differ, never the merges.
fn specials_last(
    cfg: &TrainerConfig,
    mut tokens: Vec<Vec<u8>>,
    specials: Vec<Special>,
    merges: Vec<(u32, u32, u32)>,
) -> Result<Tokenizer> {
    let k = specials.len() as u32;
    let n = tokens.len() as u32;
    let new_id = |id: u32| if id < k { n - k + id } else { id - k };
    tokens.rotate_left(k as usize);
    let specials = specials.into_iter().map(|s| Special { id: new_id(s.id), content: s.content }).collect();
    let merges = merges.into_iter().map(|(a, b, r)| (new_id(a), new_id(b), new_id(r))).collect();
    Tokenizer::new(cfg.pattern.clone(), tokens, specials, merges)
}

#[inline]
fn push_once(list: &mut Vec<u32>, w: u32) {
    if list.last() != Some(&w) {
        list.push(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obviously-correct trainer: recount every pair from scratch before each merge; ids are
    /// bytes, then one new id per merge (the toy corpora never make the same bytes twice).
    fn reference(words: &[(&str, u64)], n_merges: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut ws: Vec<(Vec<u32>, u64)> =
            words.iter().map(|(w, c)| (w.bytes().map(u32::from).collect(), *c)).collect();
        let mut bytes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut out = Vec::new();
        for _ in 0..n_merges {
            let mut counts = std::collections::BTreeMap::<(u32, u32), u64>::new();
            for (w, c) in &ws {
                for p in w.windows(2) {
                    *counts.entry((p[0], p[1])).or_default() += c;
                }
            }
            // Highest count; ties: smallest (left id, right id).
            let Some(best) = counts.iter().max_by(|x, y| x.1.cmp(y.1).then_with(|| y.0.cmp(x.0))).map(|(k, _)| *k)
            else {
                break;
            };
            let new = bytes.len() as u32;
            bytes.push([bytes[best.0 as usize].clone(), bytes[best.1 as usize].clone()].concat());
            for (w, _) in &mut ws {
                let mut i = 0;
                let mut nw = Vec::new();
                while i < w.len() {
                    if i + 1 < w.len() && (w[i], w[i + 1]) == best {
                        nw.push(new);
                        i += 2;
                    } else {
                        nw.push(w[i]);
                        i += 1;
                    }
                }
                *w = nw;
            }
            out.push((bytes[best.0 as usize].clone(), bytes[best.1 as usize].clone()));
        }
        out
    }

    fn ours(words: &[(&str, u64)], n_merges: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let counts: Counts = words.iter().map(|(w, c)| ((*w).into(), *c)).collect();
        let cfg = TrainerConfig::new(256 + n_merges as u32).min_frequency(1);
        let tok = train_from_counts(counts, &cfg, &Progress::new()).unwrap();
        tok.merges()
            .iter()
            .map(|&(a, b, _)| (tok.token_bytes(a).unwrap().to_vec(), tok.token_bytes(b).unwrap().to_vec()))
            .collect()
    }

    #[test]
    fn equals_reference_on_toy_corpora() {
        let corpora: Vec<Vec<(&str, u64)>> = vec![
            vec![("hug", 10), ("pug", 5), ("pun", 12), ("bun", 4), ("hugs", 5)],
            vec![("aaaa", 3), ("aaab", 2), ("abab", 7), ("baaa", 1)],
            vec![("low", 5), ("lower", 2), ("newest", 6), ("widest", 3)],
            vec![("abcabcabc", 4), ("cabcab", 3), ("bcbcbc", 5)],
        ];
        for c in &corpora {
            let n = 12;
            assert_eq!(ours(c, n), reference(c, n), "{c:?}");
        }
    }

    #[test]
    fn min_frequency_stops_training() {
        let counts: Counts = [("ab", 5u64), ("cd", 1)].iter().map(|(w, c)| ((*w).into(), *c)).collect();
        let cfg = TrainerConfig::new(300).min_frequency(2);
        let tok = train_from_counts(counts, &cfg, &Progress::new()).unwrap();
        assert_eq!(tok.merges().len(), 1);
    }

    #[test]
    fn max_token_length_is_respected() {
        let counts: Counts = [("abcdef", 50u64)].iter().map(|(w, c)| ((*w).into(), *c)).collect();
        let cfg = TrainerConfig::new(300).max_token_length(Some(2));
        let tok = train_from_counts(counts, &cfg, &Progress::new()).unwrap();
        assert!(tok.merges().iter().all(|&(_, _, r)| tok.token_bytes(r).unwrap().len() <= 2));
        assert_eq!(tok.merges().len(), 3);
    }

    #[test]
    fn too_small_vocab_is_an_error() {
        let cfg = TrainerConfig::new(257).special_tokens(vec!["<a>".into(), "<b>".into()]);
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
    }
}
