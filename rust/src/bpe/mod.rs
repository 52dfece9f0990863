//! Byte-level BPE: the trained model ([`Tokenizer`]), its trainer, its encoder and its file formats.
//!
//! Id layout of a trained vocabulary: the 256 single bytes in byte order (`0..256`), then one id
//! per merge in merge order, then the special tokens in the order given ([`trainer::SpecialsAt::Last`],
//! the default); or the special tokens first (`0..k`) and everything else `k` higher
//! ([`trainer::SpecialsAt::First`]). A merge whose result equals an existing token reuses that
//! id (as HF does), so ids are dense.

pub mod bytelevel;
mod encoder;
mod hf_json;
mod tiktoken;
pub mod trainer;
pub mod units;

pub use encoder::EncodeCache;

use ahash::AHashMap;

use crate::error::{Error, Result};
use crate::pretokenize::{Pattern, PreTokenizer};

/// A special token: matched as a whole, never merged with text, with a fixed id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Special {
    pub content: String,
    pub id: u32,
}

/// A byte-level BPE model with its split pattern.
pub struct Tokenizer {
    pre: PreTokenizer,
    /// Bytes of every id; specials hold their content's bytes.
    tokens: Vec<Vec<u8>>,
    specials: Vec<Special>,
    /// Merges in priority order: `(left, right, result)`.
    merges: Vec<(u32, u32, u32)>,
    /// `(left << 32 | right)` -> `(rank, result)`.
    merge_rank: AHashMap<u64, (u32, u32)>,
    /// `merge_rank` of the pair of single bytes `(a << 8 | b)`, dense: a piece's first pairs
    /// are byte pairs, and looking them up here costs no hashing (the rows a text touches stay
    /// in cache). `(u32::MAX, 0)` for no merge.
    byte_pair: Box<[(u32, u32)]>,
    byte_ids: [u32; 256],
    /// HF `ByteLevel(add_prefix_space=true)`: a space is put before text that does not start with one.
    add_prefix_space: bool,
    /// A piece that is itself a token is that token, before any merge (tiktoken always; HF BPE
    /// with `ignore_merges`): bytes -> id of every non-special token.
    whole_piece: Option<AHashMap<Box<[u8]>, u32>>,
    /// Every token a merge makes, as one automaton: where none of them occurs across a byte
    /// boundary of a long piece, the piece is cut there (`encoder.rs`, `merge_segments`). Built
    /// the first time a long piece is encoded; `None` if the automaton could not be built.
    cuts: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>>,
}

#[inline]
pub(crate) fn pair_key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

impl Tokenizer {
    /// Builds a tokenizer from its parts, checking that they are consistent.
    pub fn new(
        pattern: Pattern,
        tokens: Vec<Vec<u8>>,
        specials: Vec<Special>,
        merges: Vec<(u32, u32, u32)>,
    ) -> Result<Self> {
        let n = tokens.len() as u32;
        let mut byte_ids = [u32::MAX; 256];
        let special_ids: ahash::AHashSet<u32> = specials.iter().map(|s| s.id).collect();
        for (id, t) in tokens.iter().enumerate() {
            if t.len() == 1 && !special_ids.contains(&(id as u32)) && byte_ids[t[0] as usize] == u32::MAX {
                byte_ids[t[0] as usize] = id as u32;
            }
        }
        if let Some(b) = (0..=255u8).find(|&b| byte_ids[b as usize] == u32::MAX && !bytelevel::never_in_utf8(b)) {
            return Err(Error::Config(format!("vocabulary has no token for byte {b:#04x}: not byte-level BPE")));
        }
        let mut merge_rank = AHashMap::with_capacity(merges.len());
        for (rank, &(a, b, r)) in merges.iter().enumerate() {
            if a >= n || b >= n || r >= n {
                return Err(Error::Config(format!("merge {rank} refers to an id outside the vocabulary")));
            }
            merge_rank.entry(pair_key(a, b)).or_insert((rank as u32, r));
        }
        let byte_pair = (0..1usize << 16)
            .map(|ab| {
                let (a, b) = (byte_ids[ab >> 8], byte_ids[ab & 0xFF]);
                merge_rank.get(&pair_key(a, b)).copied().unwrap_or((u32::MAX, 0))
            })
            .collect();
        Ok(Self {
            pre: PreTokenizer::new(pattern)?,
            tokens,
            specials,
            merges,
            merge_rank,
            byte_pair,
            byte_ids,
            add_prefix_space: false,
            whole_piece: None,
            cuts: std::sync::OnceLock::new(),
        })
    }

    /// HF `ByteLevel(add_prefix_space=true)`.
    pub fn set_add_prefix_space(&mut self, on: bool) {
        self.add_prefix_space = on;
    }

    /// Looks a whole piece up before merging it (tiktoken; HF `ignore_merges`).
    pub fn enable_whole_piece_lookup(&mut self) {
        let special: ahash::AHashSet<u32> = self.specials.iter().map(|s| s.id).collect();
        let map = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(id, t)| !t.is_empty() && !special.contains(&(*id as u32)))
            .map(|(id, t)| (t.clone().into_boxed_slice(), id as u32))
            .collect();
        self.whole_piece = Some(map);
    }

    pub fn pattern(&self) -> &Pattern {
        self.pre.pattern()
    }

    pub fn pre_tokenizer(&self) -> &PreTokenizer {
        &self.pre
    }

    /// Number of ids (specials included).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn specials(&self) -> &[Special] {
        &self.specials
    }

    pub fn special_id(&self, content: &str) -> Option<u32> {
        self.specials.iter().find(|s| s.content == content).map(|s| s.id)
    }

    pub fn merges(&self) -> &[(u32, u32, u32)] {
        &self.merges
    }

    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// Bytes of a sequence of ids; unknown ids are an error.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let t = self.token_bytes(id).ok_or_else(|| Error::Config(format!("id {id} is not in the vocabulary")))?;
            out.extend_from_slice(t);
        }
        Ok(out)
    }
}
