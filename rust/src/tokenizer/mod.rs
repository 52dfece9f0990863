//! A tokenizer as people bring it: any HF `tokenizer.json`, a tiktoken ranks file, or one we
//! trained. One type for the pipeline and for Python, run by one of two engines:
//!
//! - own (`own.rs`): our byte-level BPE encoder, for the files whose every component it runs
//!   exactly (GPT-2, RoBERTa, Llama-3, Qwen2 layouts, `.tiktoken` ranks, ours); and our WordPiece
//!   encoder (`wordpiece.rs`) for BERT's layout;
//! - hf (`hf.rs`): the `tokenizers` crate, for everything else it loads.
//!
//! Unlike HF `tokenizers`, which reads what it knows of a file and defaults the rest, the loader
//! first walks the whole schema (`schema.rs`) and refuses, with the JSON path, anything it does
//! not know or that would make ids non-deterministic. The post-processor is read into a
//! [`Template`] so the pipeline knows which special tokens a model expects around a document.

mod added;
mod hf;
mod own;
mod schema;
mod template;
mod wordpiece;

use std::path::Path;

use serde_json::Value;

pub use hf::WordRule;
pub use template::Template;

use crate::bpe;
use crate::error::{Error, Result};
use crate::pretokenize::Pattern;

/// An added token of the file (special or not), matched in text as HF matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    pub content: String,
    pub id: u32,
    pub special: bool,
    pub normalized: bool,
}

/// HF's `encode` switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Put the post-processor's special tokens around the text.
    pub add_special_tokens: bool,
    /// Encode special-token strings found in the text as ordinary text (never as control ids).
    pub split_special_tokens: bool,
}

/// The pipeline's setting: documents are text; a `<|endoftext|>` typed in a document stays text.
pub const DOCUMENT_TEXT: EncodeOptions = EncodeOptions { add_special_tokens: false, split_special_tokens: true };

enum Engine {
    Own(Box<own::Own>),
    WordPiece(Box<wordpiece::WordPiece>),
    Hf(Box<hf::Hf>),
}

/// What an engine remembers between texts on one thread (BPE pieces, WordPiece words): one per
/// thread, never shared.
#[derive(Default)]
pub struct EncodeCache {
    bpe: bpe::EncodeCache,
    words: wordpiece::WordCache,
}

impl EncodeCache {
    pub fn new() -> Self {
        Self::default()
    }
}

pub struct Tokenizer {
    engine: Engine,
    added: Vec<AddedToken>,
    template: Option<Template>,
    notes: Vec<String>,
    vocab_size: usize,
}

impl Tokenizer {
    /// A tokenizer we trained (own engine; its specials are special added tokens).
    pub fn from_bpe(bpe: bpe::Tokenizer) -> Result<Self> {
        let added: Vec<AddedToken> = bpe
            .specials()
            .iter()
            .map(|s| AddedToken { content: s.content.clone(), id: s.id, special: true, normalized: false })
            .collect();
        let vocab_size = bpe.vocab_size();
        let engine = Engine::Own(Box::new(own::Own::new(bpe, false, added.clone())?));
        Ok(Self { engine, added, template: None, notes: Vec::new(), vocab_size })
    }

    /// Loads `tokenizer.json` (any HF file), or a tiktoken ranks file when the name ends in
    /// `.tiktoken` (pattern from its `.json` sidecar, or `pattern`).
    pub fn from_file(path: &Path, pattern: Option<Pattern>) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "tiktoken") {
            return Self::from_bpe(bpe::Tokenizer::from_tiktoken_file(path, pattern)?);
        }
        if pattern.is_some() {
            return Err(Error::Config(format!(
                "{}: a split pattern applies to a .tiktoken file only (a tokenizer.json carries its own)",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{msg} (in {})", path.display())),
            other => other,
        })
    }

    /// Loads a `tokenizer.json` document; refusals start with the JSON path.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("(root): not valid JSON: {e}")))?;
        schema::walk(&doc).map_err(|r| Error::Config(format!("{}: {}", r.path, r.what)))?;
        let mut notes = Vec::new();
        for key in ["truncation", "padding"] {
            if doc.get(key).is_some_and(|v| !v.is_null()) {
                notes.push(format!("{key} in the file is not applied: documents are packed into rows by --seq-len"));
            }
        }
        let added: Vec<AddedToken> = doc
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| AddedToken {
                content: t["content"].as_str().unwrap_or_default().to_string(),
                id: t["id"].as_u64().unwrap_or(u64::MAX) as u32,
                special: t.get("special").and_then(Value::as_bool).unwrap_or(false),
                normalized: t
                    .get("normalized")
                    .and_then(Value::as_bool)
                    .unwrap_or(!t["special"].as_bool().unwrap_or(false)),
            })
            .collect();
        let template = template::parse(doc.get("post_processor"));
        let own_reason = match own::plan(&doc, &template) {
            Ok(plan) => match own::Own::from_json(&doc, plan, added.clone()) {
                Ok(own) => {
                    let vocab_size = own.bpe.vocab_size();
                    let template = template.ok().flatten();
                    return Ok(Self { engine: Engine::Own(Box::new(own)), added, template, notes, vocab_size });
                }
                Err(why) => why,
            },
            Err(why) => why,
        };
        let own_reason = match wordpiece::plan(&doc, &template) {
            Ok(plan) => match wordpiece::WordPiece::from_json(&doc, plan, added.clone()) {
                Ok(wp) => {
                    let vocab_size = wp.vocab_size();
                    let template = template.ok().flatten();
                    let engine = Engine::WordPiece(Box::new(wp));
                    return Ok(Self { engine, added, template, notes, vocab_size });
                }
                Err(why) => why,
            },
            // A WordPiece file's reason is the WordPiece engine's; any other, the BPE one's.
            Err(why) if doc["model"]["type"] == "WordPiece" => why,
            Err(_) => own_reason,
        };
        let hf = hf::Hf::new(text, word_rule(&doc))
            .map_err(|e| Error::Config(format!("(root): tokenizers could not load it: {e}")))?;
        notes.push(format!("hf engine: {own_reason}"));
        let template = match template {
            Ok(t) => t,
            Err(note) => {
                notes.push(format!("{note}: no default special tokens from the post-processor"));
                None
            }
        };
        let vocab_size = hf.vocab_size();
        Ok(Self { engine: Engine::Hf(Box::new(hf)), added, template, notes, vocab_size })
    }

    /// `own` or `hf`.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Own(_) | Engine::WordPiece(_) => "own",
            Engine::Hf(_) => "hf",
        }
    }

    /// What the loader decided that a user should know (engine choice, settings not applied).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn template(&self) -> Option<&Template> {
        self.template.as_ref()
    }

    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.added
    }

    /// Id of a special added token.
    pub fn special_id(&self, content: &str) -> Option<u32> {
        self.added.iter().find(|a| a.special && a.content == content).map(|a| a.id)
    }

    /// Content of a special added token.
    pub fn special_content(&self, id: u32) -> Option<&str> {
        self.added.iter().find(|a| a.special && a.id == id).map(|a| a.content.as_str())
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The byte-level BPE model under the own engine (training output, tiktoken export).
    pub fn bpe(&self) -> Option<&bpe::Tokenizer> {
        match &self.engine {
            Engine::Own(o) => Some(&o.bpe),
            Engine::WordPiece(_) | Engine::Hf(_) => None,
        }
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode_into(
        &self,
        text: &str,
        opts: EncodeOptions,
        cache: &mut EncodeCache,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        match &self.engine {
            Engine::Own(o) => {
                o.encode(text, opts, self.template.as_ref(), &mut cache.bpe, out);
                Ok(())
            }
            Engine::WordPiece(w) => {
                w.encode(text, opts, self.template.as_ref(), &mut cache.words, out);
                Ok(())
            }
            Engine::Hf(h) => h.encode(text, opts, out),
        }
    }

    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.encode_into(text, opts, &mut EncodeCache::new(), &mut out)?;
        Ok(out)
    }

    /// Appends the ids of document text (special tokens as text) and a word-start flag per id.
    pub fn encode_with_word_starts(
        &self,
        text: &str,
        cache: &mut EncodeCache,
        ids: &mut Vec<u32>,
        ws: &mut Vec<u8>,
    ) -> Result<()> {
        match &self.engine {
            Engine::Own(o) => {
                o.encode_with_word_starts(text, &mut cache.bpe, ids, ws);
                Ok(())
            }
            Engine::WordPiece(w) => {
                w.encode_with_word_starts(text, &mut cache.words, ids, ws);
                Ok(())
            }
            Engine::Hf(h) => h.encode_with_word_starts(text, ids, ws),
        }
    }

    /// Encodes many texts on `threads` threads; the result is in input order and does not depend
    /// on the thread count.
    pub fn encode_batch(&self, texts: &[&str], threads: usize, opts: EncodeOptions) -> Result<Vec<Vec<u32>>> {
        // Threads take chunks of texts from a shared counter and keep one piece cache each for
        // the whole call (rayon's `map_init` makes a new cache per job split, which threw the
        // cache away dozens of times per call).
        type Encoded = Result<Vec<(usize, Vec<u32>)>>;
        const CHUNK: usize = 16;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = threads.clamp(1, texts.len().div_ceil(CHUNK).max(1));
        let work = || -> Encoded {
            let mut cache = EncodeCache::new();
            let mut done = Vec::new();
            loop {
                let start = next.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
                if start >= texts.len() {
                    return Ok(done);
                }
                for (i, t) in texts.iter().enumerate().skip(start).take(CHUNK) {
                    let mut out = Vec::with_capacity(t.len() / 3);
                    self.encode_into(t, opts, &mut cache, &mut out)?;
                    done.push((i, out));
                }
            }
        };
        let parts: Vec<Encoded> = if threads == 1 {
            vec![work()]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
                handles.into_iter().map(|h| h.join().expect("encode thread panicked")).collect()
            })
        };
        let mut out = vec![Vec::new(); texts.len()];
        for part in parts {
            for (i, ids) in part? {
                out[i] = ids;
            }
        }
        Ok(out)
    }

    /// Text of `ids`, as HF's `decode` gives it.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        match &self.engine {
            Engine::Own(o) => o.decode(ids, skip_special_tokens),
            Engine::WordPiece(w) => w.decode(ids, skip_special_tokens),
            Engine::Hf(h) => h.decode(ids, skip_special_tokens),
        }
    }
}

/// Each model's word convention: SentencePiece's marker where a Metaspace pre-tokenizer or a
/// `Replace(" ", "▁")` normalizer puts it, else pre-tokenizer words.
fn word_rule(doc: &Value) -> WordRule {
    fn find(v: &Value, ty: &str, out: &mut Vec<Value>) {
        match v {
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some(ty) {
                    out.push(v.clone());
                }
                o.values().for_each(|x| find(x, ty, out));
            }
            Value::Array(a) => a.iter().for_each(|x| find(x, ty, out)),
            _ => {}
        }
    }
    let mut metas = Vec::new();
    find(&doc["pre_tokenizer"], "Metaspace", &mut metas);
    if let Some(c) =
        metas.first().and_then(|m| m.get("replacement")).and_then(Value::as_str).and_then(|s| s.chars().next())
    {
        return WordRule::Marker(c);
    }
    let mut replaces = Vec::new();
    find(&doc["normalizer"], "Replace", &mut replaces);
    for r in replaces {
        if r["pattern"]["String"] == " " {
            if let Some(c) = r["content"].as_str().and_then(|s| s.chars().next()) {
                return WordRule::Marker(c);
            }
        }
    }
    WordRule::Words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2_like(extra: &str) -> String {
        let vocab: serde_json::Map<String, Value> =
            (0..=255u8).map(|b| (bpe::bytelevel::encode(&[b]), Value::from(u32::from(b)))).collect();
        let mut vocab = Value::Object(vocab);
        vocab["Ġh"] = 256.into();
        format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
            "post_processor":null,"decoder":{{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}},
            "model":{{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"",
            "fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{vocab},"merges":["Ġ h"]{extra}}}}}"#
        )
    }

    #[test]
    fn gpt2_layout_runs_on_the_own_engine() {
        let t = Tokenizer::from_json_str(&gpt2_like("")).unwrap();
        assert_eq!(t.engine(), "own");
        assert_eq!(t.encode(" h", EncodeOptions::default()).unwrap(), vec![256]);
        assert_eq!(t.decode(&[256], false).unwrap(), " h");
    }

    #[test]
    fn unknown_keys_types_and_dropout_are_refused_by_path() {
        let refused = |json: &str| match Tokenizer::from_json_str(json) {
            Err(Error::Config(m)) => m,
            _ => panic!("not refused"),
        };
        assert!(refused(&gpt2_like(r#","bogus":1"#)).starts_with("model.bogus: unknown key"));
        let dropout = gpt2_like("").replace(r#""dropout":null"#, r#""dropout":0.1"#);
        assert!(refused(&dropout).starts_with("model.dropout: BPE dropout 0.1"));
        let seq = gpt2_like("").replace(
            r#""pre_tokenizer":{"type":"ByteLevel""#,
            r#""pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Whitespace"},{"type":"Foo"}]},"x":{"type":"ByteLevel""#,
        );
        assert!(refused(&seq).starts_with("x: unknown key"), "{}", refused(&seq));
        let seq = gpt2_like("").replace(
            r#""pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#,
            r#""pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Whitespace"},{"type":"Foo"}]}"#,
        );
        assert!(refused(&seq).starts_with(r#"pre_tokenizer.pretokenizers[1]: unknown pre-tokenizer type "Foo""#));
    }

    #[test]
    fn templates_give_the_specials_around_a_text() {
        let t = |j: &str| template::parse(Some(&serde_json::from_str(j).unwrap())).unwrap().unwrap();
        assert_eq!(
            t(r#"{"type":"BertProcessing","sep":["[SEP]",3],"cls":["[CLS]",2]}"#),
            Template { before: vec![2], after: vec![3] }
        );
        let llama3 = r#"{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},
            {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
             "pair":[],"special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[128000],"tokens":["<|begin_of_text|>"]}}}]}"#;
        assert_eq!(t(llama3), Template { before: vec![128_000], after: vec![] });
    }
}
