//! JSON Lines: one object per line, the text in a chosen string field; an `id` field, when present,
//! is kept as metadata. Blank lines are ignored. A malformed line, a missing field or a field that
//! is not a string is an error naming the file and line: silently skipping would hide a wrong
//! `--jsonl-field`. With a record sink, each line that holds a document is handed on after it.

use std::io::{BufRead, BufReader};

use super::{decompress, Document, Emitter, RawRecord, Utf8Policy};
use crate::error::{Error, Result};

pub(super) fn read<F: FnMut(Document) -> Result<()>>(em: &mut Emitter<'_, F>, field: &str) -> Result<()> {
    let path = em.path;
    let mut r = BufReader::with_capacity(1 << 16, decompress::open(path)?);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))? == 0 {
            return Ok(());
        }
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // JSON must be UTF-8: apply the policy to the raw line before parsing.
        let owned;
        let text: &str = match std::str::from_utf8(&line) {
            Ok(s) => s,
            Err(e) => match em.policy {
                Utf8Policy::Replace => {
                    em.stats.invalid_utf8_replaced += 1;
                    owned = String::from_utf8_lossy(&line).into_owned();
                    &owned
                }
                Utf8Policy::Skip => {
                    em.stats.invalid_utf8_skipped += 1;
                    continue;
                }
                Utf8Policy::Error => {
                    return Err(Error::input(
                        path,
                        format!("invalid UTF-8 on line {line_no} at byte {}", e.valid_up_to()),
                    ))
                }
            },
        };
        let mut obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| Error::input(path, format!("line {line_no}: not a JSON object: {e}")))?;
        let value =
            obj.remove(field).ok_or_else(|| Error::input(path, format!("line {line_no}: no field {field:?}")))?;
        let serde_json::Value::String(doc) = value else {
            return Err(Error::input(path, format!("line {line_no}: field {field:?} is not a string")));
        };
        let id = obj.get("id").map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if let Some(index) = em.emit_str(doc, id, None)? {
            if let Some(records) = em.records.as_mut() {
                records(RawRecord::Line { text, index })?;
            }
        }
    }
}
