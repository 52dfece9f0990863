//! tiktoken export: a `.tiktoken` ranks file (`base64(token bytes) rank` per line, specials
//! excluded) and a JSON sidecar with the split pattern and special tokens, which together build a
//! `tiktoken.Encoding`. Ranks are our ids, so tiktoken returns our ids.

use std::path::Path;

use base64::Engine;

use super::Tokenizer;
use crate::error::Result;
use crate::fsutil::write_atomic;

impl Tokenizer {
    /// Writes `<ranks_path>` and `<ranks_path>.json` (`{"name", "pat_str", "special_tokens"}`).
    pub fn save_tiktoken(&self, ranks_path: &Path, name: &str) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        write_atomic(ranks_path, |w| {
            for (id, t) in self.tokens.iter().enumerate() {
                if self.specials.iter().any(|s| s.id == id as u32) {
                    continue;
                }
                writeln!(w, "{} {id}", b64.encode(t))?;
            }
            Ok(())
        })?;
        let specials: serde_json::Map<String, serde_json::Value> =
            self.specials.iter().map(|s| (s.content.clone(), s.id.into())).collect();
        let meta = serde_json::json!({"name": name, "pat_str": self.pattern().regex(), "special_tokens": specials});
        let mut side = ranks_path.as_os_str().to_owned();
        side.push(".json");
        write_atomic(Path::new(&side), |w| {
            serde_json::to_writer_pretty(&mut *w, &meta).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })
    }
}
