//! tiktoken export: a `.tiktoken` ranks file (`base64(token bytes) rank` per line, specials
//! excluded) and a JSON sidecar with the split pattern and special tokens, which together build a
//! `tiktoken.Encoding`. Ranks are our ids, so tiktoken returns our ids.

use std::path::Path;

use base64::Engine;

use super::{Special, Tokenizer};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::pretokenize::Pattern;

impl Tokenizer {
    /// Writes `<ranks_path>` and `<ranks_path>.json` (`{"name", "pat_str", "special_tokens"}`).
    pub fn save_tiktoken(&self, ranks_path: &Path, name: &str) -> Result<()> {
        let (ranks, sidecar) = self.tiktoken_bytes(name);
        write_atomic(ranks_path, |w| w.write_all(&ranks))?;
        let mut side = ranks_path.as_os_str().to_owned();
        side.push(".json");
        write_atomic(Path::new(&side), |w| w.write_all(&sidecar))
    }

    /// The bytes of the ranks file and of its `.json` sidecar (pattern, special tokens).
    pub fn tiktoken_bytes(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        use std::fmt::Write as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ranks = String::new();
        for (id, t) in self.tokens.iter().enumerate() {
            if self.specials.iter().any(|s| s.id == id as u32) {
                continue;
            }
            let _ = writeln!(ranks, "{} {id}", b64.encode(t));
        }
        let specials: serde_json::Map<String, serde_json::Value> =
            self.specials.iter().map(|s| (s.content.clone(), s.id.into())).collect();
        let meta = serde_json::json!({"name": name, "pat_str": self.pattern().regex(), "special_tokens": specials});
        let mut sidecar = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        sidecar.push(b'\n');
        (ranks.into_bytes(), sidecar)
    }
}

impl Tokenizer {
    /// Reads a tiktoken ranks file. The split pattern and special tokens come from the `.json`
    /// sidecar when there is one (our exports write it), else `pattern` must be given.
    ///
    /// tiktoken merges the adjacent pair whose *concatenation* has the lowest rank; that is
    /// expressed as merges here: for every token and every split of it into two tokens, the pair
    /// gets the token's rank. Our encoder (lowest rank first, leftmost on ties) then gives
    /// tiktoken's ids exactly.
    pub fn from_tiktoken_file(path: &Path, pattern: Option<Pattern>) -> Result<Self> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut ranked: Vec<(u32, Vec<u8>)> = Vec::new();
        // Lines as tiktoken's `load_tiktoken_bpe` reads them: split on \n, \r\n or \r, empty
        // lines skipped, each other line exactly two whitespace-separated fields.
        for (n, line) in raw.split(|&b| b == b'\n').flat_map(|l| l.split(|&b| b == b'\r')).enumerate() {
            if line.is_empty() {
                continue;
            }
            let bad = || Error::input(path, format!("line {}: not \"<base64> <rank>\"", n + 1));
            let line = std::str::from_utf8(line).map_err(|_| bad())?;
            let mut fields = line.split_whitespace();
            let (Some(tok), Some(rank), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad());
            };
            let bytes = b64.decode(tok).map_err(|_| bad())?;
            let rank: u32 = rank.parse().map_err(|_| bad())?;
            ranked.push((rank, bytes));
        }
        ranked.sort_unstable();
        let mut side = path.as_os_str().to_owned();
        side.push(".json");
        let meta: Option<serde_json::Value> = match std::fs::read(&side) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| Error::input(&side, format!("not valid JSON: {e}")))?),
            Err(_) => None,
        };
        let pattern = match (pattern, meta.as_ref().and_then(|m| m.get("pat_str")).and_then(|v| v.as_str())) {
            (Some(p), _) => p,
            (None, Some(p)) => Pattern::from_regex(p),
            (None, None) => {
                return Err(Error::input(
                    path,
                    "no split pattern: give one, or put a .json sidecar with \"pat_str\" next to it",
                ))
            }
        };
        let mut specials: Vec<Special> = Vec::new();
        if let Some(map) = meta.as_ref().and_then(|m| m.get("special_tokens")).and_then(|v| v.as_object()) {
            for (content, id) in map {
                let id = id.as_u64().ok_or_else(|| Error::input(&side, "special token ids must be integers"))?;
                specials.push(Special { content: content.clone(), id: id as u32 });
            }
        }
        let size = ranked
            .iter()
            .map(|(r, _)| *r as usize + 1)
            .chain(specials.iter().map(|s| s.id as usize + 1))
            .max()
            .unwrap_or(0);
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; size];
        for s in &specials {
            tokens[s.id as usize] = Some(s.content.as_bytes().to_vec());
        }
        let mut by_bytes = ahash::AHashMap::with_capacity(ranked.len());
        for (rank, bytes) in &ranked {
            if tokens[*rank as usize].is_some() {
                return Err(Error::input(path, format!("rank {rank} is given twice")));
            }
            tokens[*rank as usize] = Some(bytes.clone());
            by_bytes.insert(bytes.as_slice(), *rank);
        }
        // Ranks may have holes (ids of special tokens not described without a sidecar): such an
        // id is never produced by encoding and decodes to nothing.
        let mut merges = Vec::new();
        for (rank, bytes) in &ranked {
            for k in 1..bytes.len() {
                if let (Some(&a), Some(&b)) = (by_bytes.get(&bytes[..k]), by_bytes.get(&bytes[k..])) {
                    merges.push((a, b, *rank));
                }
            }
        }
        let tokens = tokens.into_iter().map(Option::unwrap_or_default).collect();
        let mut tok = Tokenizer::new(pattern, tokens, specials, merges).map_err(|e| match e {
            Error::Config(m) => Error::input(path, m),
            other => other,
        })?;
        // tiktoken looks a piece up whole before merging: a token merges cannot reach is still found.
        tok.enable_whole_piece_lookup();
        Ok(tok)
    }
}
