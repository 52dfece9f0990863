//! WikiExtractor output: `<doc id=".." url=".." title="..">` ... `</doc>` blocks, one document each.
//! The text between the tags is kept as is (WikiExtractor repeats the title as its first line);
//! `id` and `title` become metadata. Text outside blocks is ignored; an unterminated last block is
//! kept (its text is the input's: a truncated dump still yields its documents) and counted in
//! [`super::ReadStats::truncated_documents`], so that the truncation is reported, not silent.

use std::io::{BufRead, BufReader};

use super::{decompress, Document, Emitter};
use crate::error::{Error, Result};

pub(super) fn read<F: FnMut(Document) -> Result<()>>(em: &mut Emitter<'_, F>) -> Result<()> {
    let path = em.path;
    let mut r = BufReader::with_capacity(1 << 16, decompress::open(path)?);
    let mut line = Vec::new();
    let mut body: Option<(Vec<u8>, Option<String>, Option<String>)> = None;
    let mut n_doc = 0u64;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        if let Some((text, _, _)) = body.as_mut() {
            if trim_eol(&line) == b"</doc>" {
                let (mut text, id, title) = body.take().expect("inside a block");
                strip_newlines(&mut text);
                n_doc += 1;
                let k = n_doc;
                em.emit(text, id, title, &|| format!("document {k}"))?;
            } else {
                text.extend_from_slice(&line);
            }
        } else if line.starts_with(b"<doc") {
            let header = String::from_utf8_lossy(trim_eol(&line)).into_owned();
            body = Some((Vec::new(), attr(&header, "id"), attr(&header, "title")));
        }
    }
    if let Some((mut text, id, title)) = body {
        em.stats.truncated_documents += 1;
        strip_newlines(&mut text);
        let k = n_doc + 1;
        em.emit(text, id, title, &|| format!("document {k}"))?;
    }
    Ok(())
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

fn strip_newlines(text: &mut Vec<u8>) {
    while matches!(text.last(), Some(b'\n' | b'\r')) {
        text.pop();
    }
    let lead = text.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
    text.drain(..lead);
}

/// The unescaped value of `name="..."` in a `<doc ...>` header.
fn attr(header: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = header.find(&key)? + key.len();
    let end = start + header[start..].find('"')?;
    Some(unescape(&header[start..end]))
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}
