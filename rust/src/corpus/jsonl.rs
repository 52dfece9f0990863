//! JSON Lines: one object per line, the text in a chosen string field; an `id` field, when present,
//! is kept as metadata. Blank lines are ignored. A malformed line, a missing field or a field that
//! is not a string is an error naming the file and line: silently skipping would hide a wrong
//! `--jsonl-field`. With a record sink, each line that holds a document is handed on after it.
//!
//! A lone surrogate escape (`"\ud800"`, not half of a pair) is valid JSON but not Unicode, and
//! serde_json refuses it. Such a line is invalid text like invalid UTF-8 and follows the same
//! [`Utf8Policy`]: each lone escape is rewritten to `\ufffd` (counted once per line as
//! `invalid_utf8_replaced`; the record handed on is the rewritten line), or the line is skipped,
//! or it is an error. Only a line serde_json refuses is scanned, so the fast path stays as it was.

use std::io::{BufRead, BufReader};

use super::{decompress, Document, Emitter, RawRecord, Utf8Policy};
use crate::error::{Error, Result};

/// The policy for a line that is not valid text (invalid UTF-8, a lone surrogate escape): `true`
/// to go on with its replaced text, `false` to skip it (counted), or the error.
fn go_on<F: FnMut(Document) -> Result<()>>(em: &mut Emitter<'_, F>, error: impl FnOnce() -> Error) -> Result<bool> {
    match em.policy {
        Utf8Policy::Replace => Ok(true),
        Utf8Policy::Skip => {
            em.stats.invalid_utf8_skipped += 1;
            Ok(false)
        }
        Utf8Policy::Error => Err(error()),
    }
}

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
        let (text, utf8_replaced): (&str, bool) = match std::str::from_utf8(&line) {
            Ok(s) => (s, false),
            Err(e) => {
                let bad = || Error::input(path, format!("invalid UTF-8 on line {line_no} at byte {}", e.valid_up_to()));
                if !go_on(em, bad)? {
                    continue;
                }
                em.stats.invalid_utf8_replaced += 1;
                owned = String::from_utf8_lossy(&line).into_owned();
                (&owned, true)
            }
        };
        let fixed;
        let (text, mut obj): (&str, serde_json::Map<String, serde_json::Value>) = match serde_json::from_str(text) {
            Ok(obj) => (text, obj),
            Err(e) => {
                let not_json = |e| Error::input(path, format!("line {line_no}: not a JSON object: {e}"));
                let Some((rewritten, first)) = replace_lone_surrogates(text) else { return Err(not_json(e)) };
                let bad = || {
                    Error::input(
                        path,
                        format!("line {line_no}: lone surrogate escape \\u{first:04x} (not valid Unicode)"),
                    )
                };
                if !go_on(em, bad)? {
                    continue;
                }
                fixed = rewritten;
                let obj = serde_json::from_str(&fixed).map_err(not_json)?;
                // Counted once per line, as an invalid UTF-8 line is (unless it was counted already).
                if !utf8_replaced {
                    em.stats.invalid_utf8_replaced += 1;
                }
                (&fixed, obj)
            }
        };
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

/// `line` with every JSON escape of a lone surrogate (`\\uD800`..`\\uDFFF` not forming a
/// high-low pair) rewritten to `\\ufffd`, and the first such code unit; `None` when there is none.
/// Escaped backslashes are skipped, so `\\\\ud800` (a backslash, then text) is left alone.
fn replace_lone_surrogates(line: &str) -> Option<(String, u16)> {
    let b = line.as_bytes();
    let unit = |i: usize| -> Option<u16> {
        if b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u') {
            std::str::from_utf8(b.get(i + 2..i + 6)?).ok().and_then(|h| u16::from_str_radix(h, 16).ok())
        } else {
            None
        }
    };
    let (mut out, mut first, mut copied, mut i) = (String::new(), None, 0, 0);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF) if matches!(unit(i + 6), Some(0xDC00..=0xDFFF)) => i += 12,
            Some(u @ 0xD800..=0xDFFF) => {
                first.get_or_insert(u);
                out.push_str(&line[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            }
            _ => i += 2,
        }
    }
    let first = first?;
    out.push_str(&line[copied..]);
    Some((out, first))
}

#[cfg(test)]
mod tests {
    use super::super::tests::read_all;
    use super::super::{CorpusConfig, Utf8Policy};
    use super::replace_lone_surrogates;

    #[test]
    fn lone_surrogates_are_found_pairs_and_escaped_backslashes_left_alone() {
        let r = |s: &str| replace_lone_surrogates(s).map(|(t, u)| (t, format!("{u:x}")));
        assert_eq!(r(r#"{"text": "a\ud83d\ude00b"}"#), None);
        assert_eq!(r(r#"{"text": "a\\ud800"}"#), None);
        assert_eq!(r(r#"{"text": "a\ud800b"}"#), Some((r#"{"text": "a\ufffdb"}"#.into(), "d800".into())));
        assert_eq!(
            r(r#"{"text": "\udc00\ud800\ud800\udc00"}"#),
            Some((r#"{"text": "\ufffd\ufffd\ud800\udc00"}"#.into(), "dc00".into()))
        );
        assert_eq!(r(r#"{"text": "x\ud800"}"#).unwrap().0, r#"{"text": "x\ufffd"}"#);
    }

    #[test]
    fn a_lone_surrogate_follows_the_utf8_policy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(&p, "{\"text\": \"ok\"}\n{\"text\": \"bad \\ud800 here\"}\n").unwrap();
        let mut cfg = CorpusConfig::default();
        let (docs, st) = read_all(&p, &cfg).unwrap();
        assert_eq!(docs[1].text, "bad \u{fffd} here");
        assert_eq!(st.invalid_utf8_replaced, 1);
        cfg.utf8 = Utf8Policy::Skip;
        let (docs, st) = read_all(&p, &cfg).unwrap();
        assert_eq!((docs.len(), st.invalid_utf8_skipped), (1, 1));
        cfg.utf8 = Utf8Policy::Error;
        let e = read_all(&p, &cfg).unwrap_err().to_string();
        assert!(e.contains("s.jsonl") && e.contains("line 2") && e.contains("surrogate"), "{e}");
    }
}
