//! The own engine: our byte-level BPE ([`crate::bpe::Tokenizer`]) behind HF's added-token
//! matching and an optional NFC normalizer. It runs a `tokenizer.json` only when every component
//! is one it reproduces exactly ([`plan`] says which and why not); anything else goes to the
//! `tokenizers` crate (see `hf.rs`). Parity with HF is tested on every layout we accept here.

use serde_json::Value;
use unicode_normalization::{is_nfc_quick, IsNormalized};

use super::added::{self, Pass, Seg};
use super::{AddedToken, EncodeOptions, Template};
use crate::bpe::{self, bytelevel, EncodeCache};
use crate::error::{Error, Result};
use crate::pretokenize::Pattern;

/// How a `tokenizer.json` maps onto the own engine.
pub(super) struct Plan {
    pattern: Pattern,
    add_prefix_space: bool,
    whole_piece: bool,
    nfc: bool,
}

/// The plan, or why the own engine cannot run this file exactly (the HF engine then runs it).
pub(super) fn plan(
    doc: &Value,
    template: &std::result::Result<Option<Template>, String>,
) -> std::result::Result<Plan, String> {
    let model = &doc["model"];
    if model["type"] != "BPE" {
        return Err(format!("model {}", model["type"]));
    }
    let empty = |k: &str| model.get(k).is_none_or(|v| v.is_null() || v.as_str() == Some(""));
    if !empty("continuing_subword_prefix") || !empty("end_of_word_suffix") {
        return Err("BPE with a subword prefix or suffix".into());
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err("BPE byte_fallback".into());
    }
    let whole_piece = model.get("ignore_merges").and_then(Value::as_bool) == Some(true);
    let nfc = match doc.get("normalizer").filter(|v| !v.is_null()) {
        None => false,
        Some(n) if n["type"] == "NFC" => true,
        Some(n) => return Err(format!("normalizer {}", n["type"])),
    };
    let byte_level = |p: &Value, regex: bool| {
        p["type"] == "ByteLevel" && p.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == regex
    };
    let pre = doc.get("pre_tokenizer").filter(|v| !v.is_null()).ok_or("no pre-tokenizer")?;
    let (pattern, add_prefix_space) = if byte_level(pre, true) {
        (
            Pattern::Gpt2,
            pre.get("add_prefix_space").and_then(Value::as_bool).ok_or("ByteLevel without add_prefix_space")?,
        )
    } else {
        let list = pre.get("pretokenizers").and_then(Value::as_array).ok_or("pre-tokenizer layout")?;
        let [split, bl] = list.as_slice() else { return Err("pre-tokenizer layout".into()) };
        let re = split["pattern"]["Regex"].as_str().ok_or("pre-tokenizer layout")?;
        let pattern = Pattern::from_regex(re);
        // Only the built-in patterns, in the form Oniguruma reads as tiktoken does: our splitter
        // is proven equal to HF's on those, not on any regex.
        if split["type"] != "Split"
            || split["behavior"] != "Isolated"
            || split.get("invert").and_then(Value::as_bool) != Some(false)
            || matches!(pattern, Pattern::Custom(_))
            || pattern.portable_regex() != re
            || !byte_level(bl, false)
            || bl.get("add_prefix_space").and_then(Value::as_bool) != Some(false)
        {
            return Err("pre-tokenizer layout".into());
        }
        (pattern, false)
    };
    if doc.get("decoder").is_none_or(|d| d["type"] != "ByteLevel") {
        return Err("decoder is not ByteLevel".into());
    }
    if let Err(note) = template {
        return Err(note.clone());
    }
    for t in doc.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        for flag in ["single_word", "lstrip", "rstrip"] {
            if t.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(format!("added token with {flag}"));
            }
        }
        if t["content"].as_str().is_none_or(str::is_empty) {
            return Err("empty added token".into());
        }
    }
    Ok(Plan { pattern, add_prefix_space, whole_piece, nfc })
}

/// Added-token matching as HF does it: the tokens matched on the raw text, then, in what is left
/// and after normalization, those matched on normalized text.
struct Matcher {
    raw: Option<Pass>,
    normalized: Option<Pass>,
}

pub(super) struct Own {
    pub bpe: bpe::Tokenizer,
    nfc: bool,
    added: Vec<AddedToken>,
    by_id: ahash::AHashMap<u32, usize>,
    matcher: Matcher,
}

/// NFC as HF's `NFC` normalizer gives it. Text that is NFC already (the quick check, nearly all
/// text) is returned as is; the rest goes through the `tokenizers` crate's own normalizer, so the
/// Unicode tables are the reference's.
fn nfc(text: &str) -> std::borrow::Cow<'_, str> {
    use tokenizers::tokenizer::{NormalizedString, Normalizer};
    if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut n = NormalizedString::from(text);
    match tokenizers::normalizers::unicode::NFC.normalize(&mut n) {
        Ok(()) => std::borrow::Cow::Owned(n.get().to_string()),
        Err(_) => std::borrow::Cow::Borrowed(text),
    }
}

impl Own {
    /// Builds the engine for a planned `tokenizer.json`.
    pub(super) fn from_json(doc: &Value, plan: Plan, added: Vec<AddedToken>) -> std::result::Result<Self, String> {
        let model = &doc["model"];
        let vocab = model.get("vocab").and_then(Value::as_object).ok_or("model has no vocab")?;
        let entries = vocab.len() + added.len();
        let max_id =
            vocab.values().filter_map(Value::as_u64).chain(added.iter().map(|a| u64::from(a.id))).max().unwrap_or(0);
        if max_id as usize >= entries {
            return Err("ids are not dense".into());
        }
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; max_id as usize + 1];
        let mut ids: ahash::AHashMap<&str, u32> = ahash::AHashMap::with_capacity(vocab.len());
        for (k, v) in vocab {
            let id = v.as_u64().ok_or("vocab id is not an integer")? as usize;
            if tokens[id].is_some() {
                return Err("two tokens share an id".into());
            }
            tokens[id] = Some(bytelevel::decode(k).ok_or("a vocab token outside the byte-level alphabet")?);
            ids.insert(k.as_str(), id as u32);
        }
        let mut specials = Vec::new();
        for a in &added {
            // HF gives an added token already in the vocab the vocab's id, whatever the file says.
            if ids.get(a.content.as_str()).is_some_and(|&v| v != a.id) {
                return Err("an added token's content has another id in the vocab".into());
            }
            let slot = &mut tokens[a.id as usize];
            if slot.is_none() {
                *slot = Some(a.content.as_bytes().to_vec());
            }
            specials.push(bpe::Special { content: a.content.clone(), id: a.id });
        }
        if tokens.iter().any(Option::is_none) {
            return Err("ids are not dense".into());
        }
        let tokens: Vec<Vec<u8>> = tokens.into_iter().map(Option::unwrap_or_default).collect();
        // Every byte UTF-8 text can hold needs its token (HF drops a byte it has no token for).
        let mut has = [false; 256];
        for (k, &id) in &ids {
            let t = &tokens[id as usize];
            if t.len() == 1 && k.chars().count() == 1 {
                has[t[0] as usize] = true;
            }
        }
        if (0..=255u8).any(|b| !has[b as usize] && !bytelevel::never_in_utf8(b)) {
            return Err("a byte that UTF-8 text can hold has no token".into());
        }
        let raw = model.get("merges").and_then(Value::as_array).ok_or("model has no merges")?;
        let mut merges = Vec::with_capacity(raw.len());
        let mut seen = ahash::AHashSet::with_capacity(raw.len());
        for m in raw {
            let (l, r) = match m {
                Value::String(s) => s.split_once(' ').ok_or("merge is not \"a b\"")?,
                Value::Array(v) if v.len() == 2 => (v[0].as_str().ok_or("merge")?, v[1].as_str().ok_or("merge")?),
                _ => return Err("merge has an unknown form".into()),
            };
            let (Some(&a), Some(&b), Some(&c)) = (ids.get(l), ids.get(r), ids.get(format!("{l}{r}").as_str())) else {
                return Err("a merge names a token not in the vocab".into());
            };
            // HF keeps the last rank of a repeated merge, our encoder the first: leave such files to HF.
            if !seen.insert((a, b)) {
                return Err("a merge is listed twice".into());
            }
            merges.push((a, b, c));
        }
        let mut tok = bpe::Tokenizer::new(plan.pattern, tokens, specials, merges).map_err(|e| e.to_string())?;
        tok.set_add_prefix_space(plan.add_prefix_space);
        if plan.whole_piece {
            tok.enable_whole_piece_lookup();
        }
        Self::new(tok, plan.nfc, added).map_err(|e| e.to_string())
    }

    /// The engine over a byte-level BPE model and its added tokens.
    pub(super) fn new(bpe: bpe::Tokenizer, nfc_on: bool, added: Vec<AddedToken>) -> Result<Self> {
        let (mut raw, mut normalized) = (Vec::new(), Vec::new());
        for (i, a) in added.iter().enumerate() {
            if a.normalized {
                let p = if nfc_on { nfc(&a.content).into_owned() } else { a.content.clone() };
                normalized.push((p, i));
            } else {
                raw.push((a.content.clone(), i));
            }
        }
        let matcher = Matcher { raw: Pass::new(raw)?, normalized: Pass::new(normalized)? };
        let by_id = added.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
        Ok(Self { bpe, nfc: nfc_on, added, by_id, matcher })
    }

    /// Calls `f` with each stretch of (normalized) text and each added token matched, in order.
    fn segments(&self, text: &str, split_special: bool, f: &mut dyn FnMut(Seg<'_, '_>)) {
        let added = self.added.as_slice();
        added::split(text, self.matcher.raw.as_ref(), added, split_special, &mut |seg| match seg {
            Seg::Token(a) => f(Seg::Token(a)),
            Seg::Text(s) => {
                let t = if self.nfc { nfc(s) } else { std::borrow::Cow::Borrowed(s) };
                added::split(&t, self.matcher.normalized.as_ref(), added, split_special, &mut |seg| f(seg));
            }
        });
    }

    pub(super) fn encode(
        &self,
        text: &str,
        opts: EncodeOptions,
        template: Option<&Template>,
        cache: &mut EncodeCache,
        out: &mut Vec<u32>,
    ) {
        let t = template.filter(|_| opts.add_special_tokens);
        if let Some(t) = t {
            out.extend_from_slice(&t.before);
        }
        self.segments(text, opts.split_special_tokens, &mut |seg| match seg {
            Seg::Text(s) => self.bpe.encode_into(s, cache, out),
            Seg::Token(a) => out.push(a.id),
        });
        if let Some(t) = t {
            out.extend_from_slice(&t.after);
        }
    }

    /// Ids and word starts (special tokens as text; added tokens start a word when they hold a
    /// letter or digit).
    pub(super) fn encode_with_word_starts(
        &self,
        text: &str,
        cache: &mut EncodeCache,
        ids: &mut Vec<u32>,
        ws: &mut Vec<u8>,
    ) {
        self.segments(text, true, &mut |seg| match seg {
            Seg::Text(s) => self.bpe.encode_with_word_starts(s, cache, ids, ws),
            Seg::Token(a) => {
                ids.push(a.id);
                ws.push(u8::from(a.content.chars().any(char::is_alphanumeric)));
            }
        });
    }

    /// Text of `ids` as HF's ByteLevel decoder gives it.
    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(a) = self.by_id.get(&id).map(|&i| &self.added[i]) {
                if skip_special && a.special {
                    continue;
                }
                // HF's ByteLevel decoder maps a token through the byte alphabet when it can.
                match bytelevel::decode(&a.content) {
                    Some(b) => bytes.extend_from_slice(&b),
                    None => bytes.extend_from_slice(a.content.as_bytes()),
                }
                continue;
            }
            let t =
                self.bpe.token_bytes(id).ok_or_else(|| Error::Config(format!("id {id} is not in the vocabulary")))?;
            bytes.extend_from_slice(t);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
