//! `tokenizer.json` in the HF `tokenizers` format: written so that `tokenizers.Tokenizer.from_file`
//! and `transformers.PreTrainedTokenizerFast` load it as is and give our ids, and read back from
//! any byte-level BPE file (ours, GPT-2, RoBERTa, Llama-3 style).

use std::path::Path;

use serde_json::{json, Map, Value};

use super::{bytelevel, Special, Tokenizer};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::pretokenize::{Pattern, GPT2_PATTERN};

impl Tokenizer {
    /// The `tokenizer.json` document.
    pub fn to_hf_json(&self) -> Value {
        let mut vocab = Map::new();
        for (id, t) in self.tokens.iter().enumerate() {
            let key = match self.specials.iter().find(|s| s.id == id as u32) {
                Some(s) => s.content.clone(),
                None => bytelevel::encode(t),
            };
            vocab.insert(key, json!(id));
        }
        let merges: Vec<Value> = self
            .merges
            .iter()
            .map(|&(a, b, _)| {
                json!([bytelevel::encode(&self.tokens[a as usize]), bytelevel::encode(&self.tokens[b as usize])])
            })
            .collect();
        let added: Vec<Value> = self
            .specials
            .iter()
            .map(|s| {
                json!({"id": s.id, "content": s.content, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": self.pattern().portable_regex()}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space, "trim_offsets": true, "use_regex": false}
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges
            }
        })
    }

    /// Writes `tokenizer.json` atomically.
    pub fn save_hf(&self, path: &Path) -> Result<()> {
        let bytes = self.hf_json_bytes();
        write_atomic(path, |w| w.write_all(&bytes))
    }

    /// The `tokenizer.json` file's bytes.
    pub fn hf_json_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&self.to_hf_json()).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Reads a byte-level BPE `tokenizer.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| Error::input(path, format!("not valid JSON: {e}")))?;
        Self::from_hf_json(&doc).map_err(|e| match e {
            Error::Config(msg) => Error::input(path, msg),
            other => other,
        })
    }

    pub fn from_hf_json(doc: &Value) -> Result<Self> {
        let bad = |m: &str| Error::Config(m.to_string());
        let model = doc.get("model").ok_or_else(|| bad("no \"model\": not a tokenizer.json"))?;
        let ty = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
        if ty != "BPE" {
            return Err(bad(&format!("model type is {ty}, not BPE")));
        }
        if model.get("continuing_subword_prefix").is_some_and(|v| !v.is_null())
            || model.get("end_of_word_suffix").is_some_and(|v| !v.is_null())
        {
            return Err(bad("BPE with subword prefix/suffix is not byte-level BPE"));
        }
        // Where the split pattern and the prefix-space flag live.
        let mut pattern: Option<String> = None;
        let mut byte_level = false;
        let mut add_prefix_space = false;
        let mut visit = |p: &Value| match p.get("type").and_then(Value::as_str) {
            Some("ByteLevel") => {
                byte_level = true;
                add_prefix_space = p.get("add_prefix_space").and_then(Value::as_bool).unwrap_or(false);
                if p.get("use_regex").and_then(Value::as_bool).unwrap_or(true) && pattern.is_none() {
                    pattern = Some(GPT2_PATTERN.to_string());
                }
            }
            Some("Split") => {
                let pat = p.get("pattern");
                if let Some(re) = pat.and_then(|x| x.get("Regex")).and_then(Value::as_str) {
                    pattern = Some(re.to_string());
                } else if let Some(s) = pat.and_then(|x| x.get("String")).and_then(Value::as_str) {
                    pattern = Some(escape_literal(s));
                }
            }
            _ => {}
        };
        if let Some(pre) = doc.get("pre_tokenizer").filter(|v| !v.is_null()) {
            match pre.get("pretokenizers").and_then(Value::as_array) {
                Some(list) => list.iter().for_each(&mut visit),
                None => visit(pre),
            }
        }
        if doc.get("decoder").and_then(|d| d.get("type")).and_then(Value::as_str) == Some("ByteLevel") {
            byte_level = true;
        }
        if !byte_level {
            return Err(bad("no ByteLevel pre-tokenizer or decoder: not a byte-level BPE tokenizer"));
        }
        let pattern = Pattern::from_regex(pattern.as_deref().unwrap_or(GPT2_PATTERN));

        let vocab = model.get("vocab").and_then(Value::as_object).ok_or_else(|| bad("model has no vocab"))?;
        let mut specials: Vec<Special> = Vec::new();
        for t in doc.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            let (Some(content), Some(id)) =
                (t.get("content").and_then(Value::as_str), t.get("id").and_then(Value::as_u64))
            else {
                return Err(bad("an added token has no content or id"));
            };
            let id =
                u32::try_from(id).map_err(|_| bad(&format!("id {id} of added token {content:?} is not a token id")))?;
            specials.push(Special { content: content.to_string(), id });
        }
        // Ids are dense (a hole is refused below), so none can reach the number of entries: a
        // larger one is a corrupt file, refused before it sizes an allocation.
        let entries = (vocab.len() + specials.len()) as u64;
        let checked_id = |id: u64, token: &str| {
            if id < entries {
                Ok(id as u32)
            } else {
                Err(bad(&format!(
                    "id {id} of token {token:?} is beyond the vocabulary ({entries} entries with the added tokens)"
                )))
            }
        };
        for s in &specials {
            checked_id(u64::from(s.id), &s.content)?;
        }
        let max_id =
            vocab.values().filter_map(Value::as_u64).chain(specials.iter().map(|s| u64::from(s.id))).max().unwrap_or(0);
        if max_id >= entries {
            let token = vocab.iter().find(|(_, v)| v.as_u64() == Some(max_id)).map_or("?", |(k, _)| k.as_str());
            checked_id(max_id, token)?;
        }
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; max_id as usize + 1];
        for s in &specials {
            tokens[s.id as usize] = Some(s.content.as_bytes().to_vec());
        }
        let mut ids: ahash::AHashMap<&str, u32> = ahash::AHashMap::with_capacity(vocab.len());
        for (k, v) in vocab {
            let id = v.as_u64().ok_or_else(|| bad(&format!("vocab id of {k:?} is not an integer")))? as u32;
            ids.insert(k.as_str(), id);
            if tokens[id as usize].is_some() {
                continue; // an added token also listed in the vocab
            }
            let bytes =
                bytelevel::decode(k).ok_or_else(|| bad(&format!("token {k:?} is not in the byte-level alphabet")))?;
            tokens[id as usize] = Some(bytes);
        }
        if let Some(hole) = tokens.iter().position(Option::is_none) {
            return Err(bad(&format!("vocabulary has no token with id {hole}")));
        }
        let tokens: Vec<Vec<u8>> = tokens.into_iter().map(Option::unwrap_or_default).collect();

        let raw = model.get("merges").and_then(Value::as_array).ok_or_else(|| bad("model has no merges"))?;
        let mut merges = Vec::with_capacity(raw.len());
        for (rank, m) in raw.iter().enumerate() {
            let (l, r) = match m {
                Value::String(s) => s.split_once(' ').ok_or_else(|| bad(&format!("merge {rank} is not \"a b\"")))?,
                Value::Array(v) if v.len() == 2 => match (v[0].as_str(), v[1].as_str()) {
                    (Some(l), Some(r)) => (l, r),
                    _ => return Err(bad(&format!("merge {rank} is not a pair of strings"))),
                },
                _ => return Err(bad(&format!("merge {rank} has an unknown form"))),
            };
            let id =
                |s: &str| ids.get(s).copied().ok_or_else(|| bad(&format!("merge {rank} uses {s:?}, not in the vocab")));
            let joined = format!("{l}{r}");
            merges.push((id(l)?, id(r)?, id(&joined)?));
        }
        let mut tok = Tokenizer::new(pattern, tokens, specials, merges)?;
        tok.add_prefix_space = add_prefix_space;
        Ok(tok)
    }
}

/// A regex matching the literal `s`.
fn escape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
