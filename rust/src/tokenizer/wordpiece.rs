//! The own WordPiece engine: BERT's layout (`BertNormalizer`, `BertPreTokenizer`, a `WordPiece`
//! model, added tokens matched on raw text) with HF's exact ids, several times faster.
//!
//! Why it is faster than the `tokenizers` crate, and still exact:
//! - Text is cut at ASCII whitespace first (which both the normalizer and the pre-tokenizer turn
//!   into a split, and which no normalization step reaches across: controls are dropped per
//!   char, accents are stripped per char after NFD, and a whitespace char is an NFD starter). An
//!   ASCII chunk is normalized and split here, in one pass with no allocation (ASCII: controls
//!   dropped, `\t\n\r` are whitespace, letters lowercased when asked, punctuation isolated); any
//!   other chunk goes through the crate's own `BertNormalizer` and `BertPreTokenizer`, so
//!   non-ASCII text gets the reference's Unicode tables.
//! - Words repeat: the ids of each word are cached per thread, so most words cost one hash
//!   lookup; a new word runs WordPiece's greedy longest-match on the vocabulary.
//! - No offsets, alignments or `Encoding` objects are built.
//!
//! Parity with HF is tested on the BERT layouts of `tests/tokenizer_zoo.py` and on random text.

use ahash::AHashMap;
use serde_json::Value;

use super::added::{self, Pass, Seg};
use super::{AddedToken, EncodeOptions, Template};
use crate::error::{Error, Result};

/// Why a `tokenizer.json` is not BERT's layout as this engine runs it exactly, or its settings.
pub(super) struct Plan {
    lowercase: bool,
    clean_text: bool,
}

/// The plan, or why this engine cannot run the file exactly (another engine then runs it).
pub(super) fn plan(
    doc: &Value,
    template: &std::result::Result<Option<Template>, String>,
) -> std::result::Result<Plan, String> {
    let model = &doc["model"];
    if model["type"] != "WordPiece" {
        return Err(format!("model {}", model["type"]));
    }
    let n = doc.get("normalizer").filter(|v| !v.is_null()).ok_or("WordPiece without BertNormalizer")?;
    if n["type"] != "BertNormalizer" {
        return Err(format!("WordPiece with normalizer {}", n["type"]));
    }
    let flag = |k: &str, default: bool| n.get(k).and_then(Value::as_bool).unwrap_or(default);
    let lowercase = flag("lowercase", true);
    // strip_accents: null follows lowercase (HF); both only change non-ASCII text, which the
    // crate's own normalizer handles (`encode_chunk`).
    if doc.get("pre_tokenizer").is_none_or(|p| p["type"] != "BertPreTokenizer") {
        return Err("WordPiece without BertPreTokenizer".into());
    }
    if let Err(note) = template {
        return Err(note.clone());
    }
    for t in doc.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        for f in ["single_word", "lstrip", "rstrip"] {
            if t.get(f).and_then(Value::as_bool) == Some(true) {
                return Err(format!("added token with {f}"));
            }
        }
        if t.get("normalized").and_then(Value::as_bool) != Some(false) {
            return Err("added token matched on normalized text".into());
        }
        if t["content"].as_str().is_none_or(str::is_empty) {
            return Err("empty added token".into());
        }
    }
    Ok(Plan { lowercase, clean_text: flag("clean_text", true) })
}

pub(super) struct WordPiece {
    vocab: AHashMap<String, u32>,
    /// Token of each id (vocab and added tokens), for `decode`.
    tokens: AHashMap<u32, String>,
    unk: u32,
    prefix: String,
    max_chars: usize,
    plan: Plan,
    normalizer: tokenizers::normalizers::BertNormalizer,
    decoder: Option<tokenizers::decoders::wordpiece::WordPiece>,
    added: Vec<AddedToken>,
    pass: Option<Pass>,
}

/// Word -> ids, one per thread (see [`crate::bpe::EncodeCache`] for the BPE one).
#[derive(Default)]
pub struct WordCache {
    map: AHashMap<Box<str>, (u32, u32)>,
    ids: Vec<u32>,
}

const CACHE_MAX_IDS: usize = 1 << 20;

impl WordPiece {
    pub(super) fn from_json(doc: &Value, plan: Plan, added: Vec<AddedToken>) -> std::result::Result<Self, String> {
        let model = &doc["model"];
        let raw = model.get("vocab").and_then(Value::as_object).ok_or("model has no vocab")?;
        let mut vocab = AHashMap::with_capacity(raw.len());
        let mut tokens = AHashMap::with_capacity(raw.len());
        for (k, v) in raw {
            let id = u32::try_from(v.as_u64().ok_or("vocab id is not an integer")?).map_err(|e| e.to_string())?;
            vocab.insert(k.clone(), id);
            tokens.insert(id, k.clone());
        }
        for a in &added {
            if vocab.get(&a.content).is_some_and(|&v| v != a.id) {
                return Err("an added token's content has another id in the vocab".into());
            }
            tokens.entry(a.id).or_insert_with(|| a.content.clone());
        }
        let unk_token = model.get("unk_token").and_then(Value::as_str).ok_or("WordPiece without unk_token")?;
        let unk = *vocab.get(unk_token).ok_or("WordPiece's unk_token is not in the vocab")?;
        let prefix = model.get("continuing_subword_prefix").and_then(Value::as_str).unwrap_or("##").to_string();
        let max_chars = model.get("max_input_chars_per_word").and_then(Value::as_u64).unwrap_or(100) as usize;
        let normalizer: tokenizers::normalizers::BertNormalizer =
            serde_json::from_value(doc["normalizer"].clone()).map_err(|e| format!("normalizer: {e}"))?;
        let decoder = match doc.get("decoder").filter(|d| !d.is_null()) {
            None => None,
            Some(d) if d["type"] == "WordPiece" => {
                Some(serde_json::from_value(d.clone()).map_err(|e| format!("decoder: {e}"))?)
            }
            Some(d) => return Err(format!("WordPiece with decoder {}", d["type"])),
        };
        let pass = Pass::new(added.iter().enumerate().map(|(i, a)| (a.content.clone(), i)).collect())
            .map_err(|e| e.to_string())?;
        Ok(Self { vocab, tokens, unk, prefix, max_chars, plan, normalizer, decoder, added, pass })
    }

    /// Calls `f` with the ids of each word of `text` (an added token is a word of one id) and
    /// whether the word starts a word for whole-word masking: it holds a letter or digit (so
    /// punctuation continues the word before it, as with byte-level BPE).
    fn words(&self, text: &str, split_special: bool, cache: &mut WordCache, f: &mut dyn FnMut(&[u32], bool)) {
        added::split(text, self.pass.as_ref(), &self.added, split_special, &mut |seg| match seg {
            Seg::Token(a) => f(&[a.id], a.content.chars().any(char::is_alphanumeric)),
            Seg::Text(s) => {
                for chunk in s.split([' ', '\t', '\n', '\r']) {
                    if !chunk.is_empty() {
                        self.chunk(chunk, cache, f);
                    }
                }
            }
        });
    }

    /// The words of a chunk without ASCII whitespace.
    fn chunk(&self, chunk: &str, cache: &mut WordCache, f: &mut dyn FnMut(&[u32], bool)) {
        if !chunk.is_ascii() {
            return self.chunk_by_crate(chunk, cache, f);
        }
        // BertNormalizer on ASCII: controls other than \t\n\r are dropped (clean_text), letters
        // lowercased (lowercase); accents and Chinese chars do not occur. Then BertPreTokenizer:
        // every ASCII punctuation char is a word of its own.
        let b = chunk.as_bytes();
        let needs_copy = (self.plan.lowercase && b.iter().any(u8::is_ascii_uppercase))
            || (self.plan.clean_text && b.iter().any(u8::is_ascii_control));
        let owned;
        let text: &str = if needs_copy {
            owned = b
                .iter()
                .filter(|c| !(self.plan.clean_text && c.is_ascii_control()))
                .map(|&c| char::from(if self.plan.lowercase { c.to_ascii_lowercase() } else { c }))
                .collect::<String>();
            &owned
        } else {
            chunk
        };
        let mut start = 0;
        for (i, c) in text.bytes().enumerate() {
            if c.is_ascii_punctuation() {
                if start < i {
                    self.word(&text[start..i], cache, f);
                }
                self.word(&text[i..=i], cache, f);
                start = i + 1;
            } else if !self.plan.clean_text && c.is_ascii_whitespace() {
                // Without clean_text, \x0b and \x0c are still whitespace to the pre-tokenizer.
                if start < i {
                    self.word(&text[start..i], cache, f);
                }
                start = i + 1;
            }
        }
        if start < text.len() {
            self.word(&text[start..], cache, f);
        }
    }

    /// A chunk with non-ASCII text: the crate's normalizer and pre-tokenizer, the reference's.
    fn chunk_by_crate(&self, chunk: &str, cache: &mut WordCache, f: &mut dyn FnMut(&[u32], bool)) {
        use tokenizers::tokenizer::{Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
        let mut n = tokenizers::NormalizedString::from(chunk);
        let mut pre = if self.normalizer.normalize(&mut n).is_ok() {
            PreTokenizedString::from(n)
        } else {
            PreTokenizedString::from(chunk)
        };
        if tokenizers::pre_tokenizers::bert::BertPreTokenizer.pre_tokenize(&mut pre).is_err() {
            return self.word(chunk, cache, f);
        }
        for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            self.word(word, cache, f);
        }
    }

    /// WordPiece on one word: greedy longest match from the left, `prefix` on every piece but
    /// the first; a word longer than `max_chars` chars or with a part not in the vocabulary is
    /// the unknown token.
    fn word(&self, w: &str, cache: &mut WordCache, f: &mut dyn FnMut(&[u32], bool)) {
        let starts = w.bytes().any(|b| b.is_ascii_alphanumeric()) || w.chars().any(char::is_alphanumeric);
        if let Some(&(s, l)) = cache.map.get(w) {
            return f(&cache.ids[s as usize..(s + l) as usize], starts);
        }
        let mut ids = Vec::new();
        if w.chars().count() > self.max_chars {
            ids.push(self.unk);
        } else {
            let mut key = String::with_capacity(w.len() + self.prefix.len());
            let mut start = 0;
            while start < w.len() {
                let mut end = w.len();
                let found = loop {
                    key.clear();
                    if start > 0 {
                        key.push_str(&self.prefix);
                    }
                    key.push_str(&w[start..end]);
                    if let Some(&id) = self.vocab.get(key.as_str()) {
                        break Some(id);
                    }
                    end -= w[start..end].chars().next_back().map_or(1, char::len_utf8);
                    if end <= start {
                        break None;
                    }
                };
                if let Some(id) = found {
                    ids.push(id);
                    start = end;
                } else {
                    ids.clear();
                    ids.push(self.unk);
                    break;
                }
            }
        }
        if cache.ids.len() >= CACHE_MAX_IDS {
            cache.ids.clear();
            cache.map.clear();
        }
        cache.map.insert(w.into(), (cache.ids.len() as u32, ids.len() as u32));
        cache.ids.extend_from_slice(&ids);
        f(&ids, starts);
    }

    pub(super) fn encode(
        &self,
        text: &str,
        opts: EncodeOptions,
        template: Option<&Template>,
        cache: &mut WordCache,
        out: &mut Vec<u32>,
    ) {
        let t = template.filter(|_| opts.add_special_tokens);
        if let Some(t) = t {
            out.extend_from_slice(&t.before);
        }
        self.words(text, opts.split_special_tokens, cache, &mut |ids, _| out.extend_from_slice(ids));
        if let Some(t) = t {
            out.extend_from_slice(&t.after);
        }
    }

    /// Ids and word starts: the first piece of a word with a letter or digit starts a word
    /// (`##` pieces and punctuation continue it).
    pub(super) fn encode_with_word_starts(
        &self,
        text: &str,
        cache: &mut WordCache,
        ids: &mut Vec<u32>,
        ws: &mut Vec<u8>,
    ) {
        self.words(text, true, cache, &mut |w, starts| {
            ids.extend_from_slice(w);
            ws.push(u8::from(starts));
            ws.resize(ids.len(), 0);
        });
    }

    /// Text of `ids` as HF's `decode` gives it (the file's WordPiece decoder, or tokens joined
    /// by spaces without one).
    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        use tokenizers::tokenizer::Decoder;
        let mut tokens = Vec::with_capacity(ids.len());
        for &id in ids {
            if skip_special && self.added.iter().any(|a| a.special && a.id == id) {
                continue;
            }
            let t = self.tokens.get(&id).ok_or_else(|| Error::Config(format!("id {id} is not in the vocabulary")))?;
            tokens.push(t.clone());
        }
        match &self.decoder {
            Some(d) => d.decode(tokens).map_err(|e| Error::Config(format!("decode: {e}"))),
            None => Ok(tokens.join(" ")),
        }
    }

    pub(super) fn vocab_size(&self) -> usize {
        self.tokens.keys().max().map_or(0, |&m| m as usize + 1)
    }
}
