//! The HF engine: the `tokenizers` crate itself (the version pinned to the Python library the
//! parity tests compare with), for every file the own engine cannot run exactly: WordPiece,
//! Unigram, SentencePiece-style BPE, any normalizer or pre-tokenizer. Exact by construction; the
//! own engine is kept where it is faster (see `own.rs`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use tokenizers::Tokenizer as HfTokenizer;

use super::EncodeOptions;
use crate::error::{Error, Result};

/// How word starts are read off an encoding (whole-word masking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordRule {
    /// SentencePiece's convention: a token starts a word when it begins with the marker (`▁`).
    Marker(char),
    /// A word is a pre-tokenizer word (BERT's words, whose `##` pieces continue them; byte-level
    /// pieces); it starts at its first token when its text holds a letter or digit, else it
    /// continues the word before (punctuation, spaces).
    Words,
}

pub(super) struct Hf {
    /// Special tokens in text are matched (HF's default).
    matched: HfTokenizer,
    /// Special tokens in text are encoded as text (`split_special_tokens`).
    split: HfTokenizer,
    pub rule: WordRule,
}

fn fail(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("tokenizers: {what}: {e}"))
}

impl Hf {
    pub(super) fn new(json: &str, rule: WordRule) -> std::result::Result<Self, String> {
        let mut matched: HfTokenizer = json.parse().map_err(|e| format!("{e}"))?;
        // Rows are cut by the pipeline; the file's truncation and padding are not applied (the
        // loader notes it when they are set).
        matched.with_truncation(None).map_err(|e| e.to_string())?;
        matched.with_padding(None);
        let mut split = matched.clone();
        split.set_encode_special_tokens(true);
        Ok(Self { matched, split, rule })
    }

    fn pick(&self, opts: EncodeOptions) -> &HfTokenizer {
        if opts.split_special_tokens {
            &self.split
        } else {
            &self.matched
        }
    }

    fn encoding(&self, text: &str, opts: EncodeOptions) -> Result<tokenizers::Encoding> {
        let tok = self.pick(opts);
        // The crate panics on a few inputs (some added-token flags with multi-byte text): that is
        // an error on this text, not a crash of the whole job.
        match catch_unwind(AssertUnwindSafe(|| tok.encode(text, opts.add_special_tokens))) {
            Ok(r) => r.map_err(|e| fail("encode", e)),
            Err(_) => Err(Error::Config(format!(
                "tokenizers: the crate panicked encoding a text of {} bytes starting {:?}",
                text.len(),
                text.chars().take(40).collect::<String>()
            ))),
        }
    }

    pub(super) fn encode(&self, text: &str, opts: EncodeOptions, out: &mut Vec<u32>) -> Result<()> {
        out.extend_from_slice(self.encoding(text, opts)?.get_ids());
        Ok(())
    }

    /// Ids of `text` (special tokens as text, none added) and a word-start flag per id.
    pub(super) fn encode_with_word_starts(&self, text: &str, ids: &mut Vec<u32>, ws: &mut Vec<u8>) -> Result<()> {
        let opts = EncodeOptions { add_special_tokens: false, split_special_tokens: true };
        let enc = self.encoding(text, opts)?;
        let start = ids.len();
        ids.extend_from_slice(enc.get_ids());
        ws.resize(ids.len(), 0);
        let flags = &mut ws[start..];
        match self.rule {
            WordRule::Marker(m) => {
                for (i, t) in enc.get_tokens().iter().enumerate() {
                    flags[i] = u8::from(i == 0 || t.starts_with(m));
                }
            }
            WordRule::Words => {
                let words = enc.get_word_ids();
                let offsets = enc.get_offsets();
                let mut i = 0;
                while i < words.len() {
                    let mut j = i + 1;
                    while j < words.len() && words[j].is_some() && words[j] == words[i] {
                        j += 1;
                    }
                    let (a, b) = (offsets[i].0, offsets[j - 1].1);
                    let alnum = text.get(a..b).is_some_and(|w| w.chars().any(char::is_alphanumeric));
                    flags[i] = u8::from(alnum || i == 0);
                    i = j;
                }
            }
        }
        Ok(())
    }

    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| self.matched.id_to_token(id).is_none()) {
            return Err(Error::Config(format!("id {bad} is not in the vocabulary")));
        }
        self.matched.decode(ids, skip_special).map_err(|e| fail("decode", e))
    }

    pub(super) fn vocab_size(&self) -> usize {
        self.matched.get_vocab_size(true)
    }
}
