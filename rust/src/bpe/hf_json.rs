//! `tokenizer.json` in the HF `tokenizers` format, written so that `tokenizers.Tokenizer.from_file`
//! and `transformers.PreTrainedTokenizerFast` load it as is and give our ids. Reading any
//! `tokenizer.json` is `crate::tokenizer`'s job.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::{bytelevel, Tokenizer};
use crate::error::Result;
use crate::fsutil::write_atomic;
use crate::pretokenize::Pattern;

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
            "pre_tokenizer": self.hf_pre_tokenizer(),
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges
            }
        })
    }

    /// GPT-2's pattern in GPT-2's own form (`ByteLevel` with `use_regex`, which every loader
    /// reads); any other as a `Split` before a regex-free `ByteLevel`.
    fn hf_pre_tokenizer(&self) -> Value {
        if *self.pattern() == Pattern::Gpt2 {
            return json!({"type": "ByteLevel", "add_prefix_space": self.add_prefix_space, "trim_offsets": true, "use_regex": true});
        }
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": self.pattern().portable_regex()}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": self.add_prefix_space, "trim_offsets": true, "use_regex": false}
        ]})
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
}
