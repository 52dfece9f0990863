//! Encoding text to ids with HF BPE semantics: within a piece, repeatedly merge the adjacent pair
//! with the lowest merge rank (leftmost on ties) until none is mergeable.
//!
//! Performance notes (what was tried and kept):
//! - A per-thread cache of piece -> ids: natural text repeats pieces heavily (the 1,000 most
//!   common English pieces cover over half the text), so most pieces cost one hash lookup.
//! - Short pieces (<= 64 bytes, nearly all) use an array of pair ranks updated around each merge:
//!   O(n) hash lookups per piece, a linear min-scan per merge, no allocation.
//! - Long pieces (runs of CJK text or digits without spaces) are first cut where no token can
//!   cross (`merge_segments`): a merge makes a token of the vocabulary, so where no merge result
//!   occurs in the piece across a byte boundary, no merge ever joins the two sides, and BPE on the
//!   parts gives the ids of BPE on the whole (each part's merges are the ones it would make
//!   inside the whole, in the same order; only their interleaving differs). One Aho-Corasick pass
//!   over the piece finds the boundaries; the parts (a few bytes each in CJK text) then go through
//!   the short path and a cache of their own. What is left long (a run of one letter, where
//!   tokens of every length overlap) uses a linked list and a min-heap of (rank, position):
//!   O(n log n), so a megabyte-long piece cannot blow up quadratically. Why not the heap alone: at
//!   a megabyte its 16 bytes of working set per byte leave the caches, and the piece ran at a
//!   seventh of a short one's speed.
//! - Single-byte pieces skip everything.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ahash::AHashMap;

use super::{pair_key, Tokenizer};

const SHORT: usize = 64;
/// The cache is cleared when it holds this many ids or entries, which bounds its memory
/// (~50 MB at most; ~16 MB for the ids).
const CACHE_MAX_IDS: usize = 1 << 20;

/// Piece -> ids memo. One per thread; not shared. Pieces of up to 15 bytes (nearly all) are
/// keyed by their bytes packed into a `u128` (with the length in the top byte): a lookup is an
/// integer hash and an integer compare, where a `Box<[u8]>` key cost a `memcmp` call per probe
/// (a third of encode time on English). Longer pieces use the byte-string map.
/// A piece of one or two ids (nearly all) keeps them in the entry itself, so a hit reads no
/// other memory; longer results live in `ids`.
#[derive(Default)]
pub struct EncodeCache {
    short: AHashMap<u128, Cached>,
    long: AHashMap<Box<[u8]>, Cached>,
    /// The parts of long pieces: BPE alone, never the whole-piece lookup (tiktoken looks up a
    /// whole piece, not a part of one), so not in `short`.
    parts: AHashMap<u128, Cached>,
    ids: Vec<u32>,
}

const NO_ID: u32 = u32::MAX;

/// A cached result: `(id, id or NO_ID, _)` inline, or `(NO_ID, start, len)` in `EncodeCache::ids`.
#[derive(Clone, Copy)]
struct Cached(u32, u32, u32);

impl EncodeCache {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn emit(&self, c: Cached, out: &mut Vec<u32>) {
        if c.0 == NO_ID {
            out.extend_from_slice(&self.ids[c.1 as usize..(c.1 + c.2) as usize]);
        } else {
            out.push(c.0);
            if c.1 != NO_ID {
                out.push(c.1);
            }
        }
    }

    fn store(&mut self, key: Option<u128>, p: &[u8], ids: &[u32]) {
        let c = self.cached(ids);
        match key {
            Some(k) => self.short.insert(k, c),
            None => self.long.insert(p.into(), c),
        };
    }

    /// `ids` as an entry, after clearing everything when the cache is full.
    fn cached(&mut self, ids: &[u32]) -> Cached {
        if self.ids.len() >= CACHE_MAX_IDS || self.short.len() + self.long.len() + self.parts.len() >= CACHE_MAX_IDS {
            self.ids.clear();
            self.short.clear();
            self.long.clear();
            self.parts.clear();
        }
        match *ids {
            [a] if a != NO_ID => Cached(a, NO_ID, 0),
            [a, b] if a != NO_ID && b != NO_ID => Cached(a, b, 0),
            _ => {
                let c = Cached(NO_ID, self.ids.len() as u32, ids.len() as u32);
                self.ids.extend_from_slice(ids);
                c
            }
        }
    }
}

/// `p` packed into a `u128` key when it is at most 15 bytes.
#[inline]
fn short_key(p: &[u8]) -> Option<u128> {
    if p.len() > 15 {
        return None;
    }
    let mut b = [0u8; 16];
    b[..p.len()].copy_from_slice(p);
    b[15] = p.len() as u8;
    Some(u128::from_le_bytes(b))
}

impl Tokenizer {
    /// Ids of `text` (special-token strings in it are encoded as plain text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.encode_into(text, &mut EncodeCache::new(), &mut out);
        out
    }

    /// Appends the ids of `text` to `out`, using and filling `cache`.
    pub fn encode_into(&self, text: &str, cache: &mut EncodeCache, out: &mut Vec<u32>) {
        if self.add_prefix_space && !text.is_empty() && !text.starts_with(' ') {
            let prefixed = format!(" {text}");
            self.pre.split(&prefixed, |piece| self.encode_piece(piece.as_bytes(), cache, out));
        } else {
            self.pre.split(text, |piece| self.encode_piece(piece.as_bytes(), cache, out));
        }
    }

    /// Appends the ids of `text` to `ids` and, per id, a word-start flag to `word_start`: a token
    /// starts a word when it is the first token of a pre-tokenizer piece that contains a Unicode
    /// alphabetic or numeric character. Tokens of other pieces (punctuation, whitespace) continue
    /// the word before them, so whole-word masking takes `hello,` as one word and never masks a
    /// lone space. NOTE: the gpt2 pattern keeps a run of CJK characters in one piece, so there a
    /// "word" is the whole run; segment such text before if word-level masking matters.
    pub fn encode_with_word_starts(
        &self,
        text: &str,
        cache: &mut EncodeCache,
        ids: &mut Vec<u32>,
        word_start: &mut Vec<u8>,
    ) {
        debug_assert_eq!(ids.len(), word_start.len());
        let mut piece = |p: &str| {
            let start = ids.len();
            self.encode_piece(p.as_bytes(), cache, ids);
            word_start.resize(ids.len(), 0);
            if ids.len() > start && has_alphanumeric(p) {
                word_start[start] = 1;
            }
        };
        if self.add_prefix_space && !text.is_empty() && !text.starts_with(' ') {
            self.pre.split(&format!(" {text}"), &mut piece);
        } else {
            self.pre.split(text, &mut piece);
        }
    }

    #[inline]
    fn encode_piece(&self, p: &[u8], cache: &mut EncodeCache, out: &mut Vec<u32>) {
        if p.len() == 1 {
            out.push(self.byte_ids[p[0] as usize]);
            return;
        }
        let key = short_key(p);
        let hit = match key {
            Some(k) => cache.short.get(&k),
            None => cache.long.get(p),
        };
        if let Some(&c) = hit {
            cache.emit(c, out);
            return;
        }
        if let Some(&id) = self.whole_piece.as_ref().and_then(|w| w.get(p)) {
            out.push(id);
            return;
        }
        let start = out.len();
        if p.len() <= SHORT {
            self.merge_short(p, out);
        } else {
            self.merge_segments(p, cache, out);
        }
        cache.store(key, p, &out[start..]);
    }

    /// The automaton of every merge result (tokens of two bytes or more).
    fn cuts(&self) -> Option<&aho_corasick::AhoCorasick> {
        self.cuts
            .get_or_init(|| {
                let mut made: Vec<&[u8]> =
                    self.merges.iter().map(|&(_, _, r)| self.tokens[r as usize].as_slice()).collect();
                made.sort_unstable();
                made.dedup();
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::Standard)
                    .build(made.iter().filter(|t| t.len() >= 2))
                    .ok()
            })
            .as_ref()
    }

    /// BPE of a long piece, part by part: cut at every byte boundary that no occurrence of a
    /// merge result crosses (see the module notes for why the ids are the same).
    fn merge_segments(&self, p: &[u8], cache: &mut EncodeCache, out: &mut Vec<u32>) {
        let Some(ac) = self.cuts() else {
            self.merge_long(p, out);
            return;
        };
        // crossed[c]: how many occurrences span the boundary before byte c, as differences.
        let mut crossed = vec![0i32; p.len() + 1];
        for m in ac.find_overlapping_iter(p) {
            crossed[m.start() + 1] += 1;
            crossed[m.end()] -= 1;
        }
        let (mut depth, mut start) = (0i32, 0);
        for c in 1..p.len() {
            depth += crossed[c];
            if depth == 0 {
                self.merge_part(&p[start..c], cache, out);
                start = c;
            }
        }
        self.merge_part(&p[start..], cache, out);
    }

    #[inline]
    fn merge_part(&self, p: &[u8], cache: &mut EncodeCache, out: &mut Vec<u32>) {
        if p.len() == 1 {
            out.push(self.byte_ids[p[0] as usize]);
        } else if let Some(key) = short_key(p) {
            if let Some(&c) = cache.parts.get(&key) {
                cache.emit(c, out);
                return;
            }
            let start = out.len();
            self.merge_short(p, out);
            let c = cache.cached(&out[start..]);
            cache.parts.insert(key, c);
        } else if p.len() <= SHORT {
            self.merge_short(p, out);
        } else {
            self.merge_long(p, out);
        }
    }

    #[inline]
    fn byte_pair_rank(&self, a: u8, b: u8) -> (u32, u32) {
        self.byte_pair[(usize::from(a) << 8) | usize::from(b)]
    }

    #[inline]
    fn rank(&self, a: u32, b: u32) -> (u32, u32) {
        self.merge_rank.get(&pair_key(a, b)).copied().unwrap_or((u32::MAX, 0))
    }

    fn merge_short(&self, p: &[u8], out: &mut Vec<u32>) {
        let n = p.len();
        let mut sym = [0u32; SHORT];
        let mut ranks = [(u32::MAX, 0u32); SHORT];
        for (i, &b) in p.iter().enumerate() {
            sym[i] = self.byte_ids[b as usize];
        }
        for i in 0..n - 1 {
            ranks[i] = self.byte_pair_rank(p[i], p[i + 1]);
        }
        let mut len = n;
        while len > 1 {
            let mut best = 0;
            for i in 1..len - 1 {
                if ranks[i].0 < ranks[best].0 {
                    best = i;
                }
            }
            let (r, new) = ranks[best];
            if r == u32::MAX {
                break;
            }
            sym[best] = new;
            sym.copy_within(best + 2..len, best + 1);
            ranks.copy_within(best + 2..len, best + 1);
            len -= 1;
            if best > 0 {
                ranks[best - 1] = self.rank(sym[best - 1], sym[best]);
            }
            ranks[best] = if best + 1 < len { self.rank(sym[best], sym[best + 1]) } else { (u32::MAX, 0) };
        }
        out.extend_from_slice(&sym[..len]);
    }

    fn merge_long(&self, p: &[u8], out: &mut Vec<u32>) {
        // Positions and links are u32 and a heap entry is one u64 (rank << 32 | position): the
        // working set of a megabyte piece is 16 bytes a byte instead of 40, which is what keeps
        // its throughput near a short piece's once it no longer fits in cache.
        const NONE: u32 = u32::MAX;
        let n = u32::try_from(p.len()).expect("pieces are under 4 GiB");
        let mut sym: Vec<u32> = p.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<u32> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
        let mut prev: Vec<u32> = (0..n).map(|i| if i == 0 { NONE } else { i - 1 }).collect();
        let entry = |r: u32, i: u32| Reverse((u64::from(r) << 32) | u64::from(i));
        // Built at once (O(n)), not pushed one by one.
        let mut heap: BinaryHeap<_> = (0..p.len() - 1)
            .filter_map(|i| {
                let (r, _) = self.byte_pair_rank(p[i], p[i + 1]);
                (r != u32::MAX).then(|| entry(r, i as u32))
            })
            .collect();
        while let Some(Reverse(e)) = heap.pop() {
            let (r, i) = ((e >> 32) as u32, e as u32);
            let j = next[i as usize];
            // A merged-away position has `sym == NONE`.
            if sym[i as usize] == NONE || j == NONE {
                continue;
            }
            let (r2, new) = self.rank(sym[i as usize], sym[j as usize]);
            if r2 != r {
                continue; // stale: the pair at i changed since it was pushed
            }
            sym[i as usize] = new;
            sym[j as usize] = NONE;
            let after = next[j as usize];
            next[i as usize] = after;
            if after != NONE {
                prev[after as usize] = i;
            }
            let before = prev[i as usize];
            if before != NONE {
                let (r3, _) = self.rank(sym[before as usize], new);
                if r3 != u32::MAX {
                    heap.push(entry(r3, before));
                }
            }
            if after != NONE {
                let (r3, _) = self.rank(new, sym[after as usize]);
                if r3 != u32::MAX {
                    heap.push(entry(r3, i));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(sym[i as usize]);
            i = next[i as usize];
        }
    }
}

/// Whether `p` holds a Unicode alphabetic or numeric character. ASCII bytes are tested first,
/// without decoding chars: most pieces are ASCII words.
fn has_alphanumeric(p: &str) -> bool {
    p.bytes().any(|b| b.is_ascii_alphanumeric()) || (!p.is_ascii() && p.chars().any(char::is_alphanumeric))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::Pattern;
    use proptest::prelude::*;

    /// Byte tokens plus merges over the letters a-d, each joining two tokens made so far (picked
    /// by index): vocabularies whose tokens overlap in every way.
    fn small_vocabulary(picks: &[(usize, usize)]) -> Tokenizer {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut made: Vec<u32> = (b'a'..=b'd').map(u32::from).collect();
        let mut merges = Vec::new();
        for &(i, j) in picks {
            let (a, b) = (made[i % made.len()], made[j % made.len()]);
            let bytes = [tokens[a as usize].as_slice(), tokens[b as usize].as_slice()].concat();
            if tokens.contains(&bytes) {
                continue;
            }
            let id = tokens.len() as u32;
            tokens.push(bytes);
            merges.push((a, b, id));
            made.push(id);
        }
        Tokenizer::new(Pattern::Gpt2, tokens, vec![], merges).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn a_long_piece_cut_into_parts_gives_the_ids_of_the_whole(
            picks in proptest::collection::vec((0usize..64, 0usize..64), 0..48),
            letters in proptest::collection::vec(0u8..4, 65..400),
        ) {
            let tok = small_vocabulary(&picks);
            let p: Vec<u8> = letters.iter().map(|&l| b'a' + l).collect();
            let mut whole = Vec::new();
            tok.merge_long(&p, &mut whole);
            let mut cache = EncodeCache::new();
            for _ in 0..2 {
                let mut parts = Vec::new();
                tok.merge_segments(&p, &mut cache, &mut parts);
                prop_assert_eq!(&parts, &whole);
            }
        }
    }

    #[test]
    fn a_long_piece_of_han_is_cut_between_tokens() {
        // "中" and "国" are tokens, "中国" is not: every char boundary is a cut.
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut merges = Vec::new();
        for ch in ["中", "国"] {
            let b = ch.as_bytes();
            let ab = tokens.len() as u32;
            tokens.push(b[..2].to_vec());
            merges.push((u32::from(b[0]), u32::from(b[1]), ab));
            tokens.push(b.to_vec());
            merges.push((ab, u32::from(b[2]), ab + 1));
        }
        let tok = Tokenizer::new(Pattern::Gpt2, tokens, vec![], merges).unwrap();
        let p = "中国".repeat(100);
        let (mut whole, mut parts) = (Vec::new(), Vec::new());
        tok.merge_long(p.as_bytes(), &mut whole);
        let mut cache = EncodeCache::new();
        tok.merge_segments(p.as_bytes(), &mut cache, &mut parts);
        assert_eq!(parts, whole);
        assert_eq!(whole, [257, 259].repeat(100));
        assert_eq!(cache.parts.len(), 2, "one cached part per char");
    }

    #[test]
    fn word_starts_mark_the_first_token_of_alphanumeric_pieces() {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        tokens.push(b"lo".to_vec()); // 256
        let tok = Tokenizer::new(Pattern::Gpt2, tokens, vec![], vec![(u32::from(b'l'), u32::from(b'o'), 256)]).unwrap();
        let text = "hello, 42 worlds!  ok";
        let (mut ids, mut ws) = (Vec::new(), Vec::new());
        tok.encode_with_word_starts(text, &mut EncodeCache::new(), &mut ids, &mut ws);
        assert_eq!(ids, tok.encode(text));
        let starts: Vec<String> = ids
            .iter()
            .zip(&ws)
            .map(|(&i, &w)| {
                format!("{}{}", if w == 1 { "|" } else { "" }, String::from_utf8_lossy(tok.token_bytes(i).unwrap()))
            })
            .collect();
        // pieces: "hello" "," " 42" " worlds" "!" " " " ok"
        assert_eq!(starts.concat(), "|hello,| 42| worlds! | ok");
    }
}
