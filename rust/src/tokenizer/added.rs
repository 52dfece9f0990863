//! Added tokens found in text as HF finds them: leftmost-longest among the tokens of one pass
//! (HF makes two passes: the tokens matched on raw text, then, in the stretches left and after
//! normalization, those matched on normalized text; each engine chains the passes it needs).

use aho_corasick::{AhoCorasick, MatchKind};

use super::AddedToken;
use crate::error::{Error, Result};

/// A stretch of text, or an added token matched in it.
pub(super) enum Seg<'a, 't> {
    Text(&'t str),
    Token(&'a AddedToken),
}

/// One pass: an automaton over some of the added tokens.
pub(super) struct Pass {
    ac: AhoCorasick,
    /// Index in the added tokens of each automaton pattern.
    which: Vec<usize>,
}

impl Pass {
    /// A pass over `patterns` (the text to find, the added token's index); `None` for none.
    pub fn new(patterns: Vec<(String, usize)>) -> Result<Option<Self>> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let (texts, which): (Vec<String>, Vec<usize>) = patterns.into_iter().unzip();
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&texts)
            .map_err(|e| Error::Config(format!("added tokens: {e}")))?;
        Ok(Some(Self { ac, which }))
    }
}

/// Calls `f` with each stretch of `text` and each token of `pass` found in it, in order. With
/// `split_special`, a special token found is skipped where it was found (as HF does: it stays
/// text, and no other token is looked for across it).
pub(super) fn split<'a, 't>(
    text: &'t str,
    pass: Option<&Pass>,
    added: &'a [AddedToken],
    split_special: bool,
    f: &mut dyn FnMut(Seg<'a, 't>),
) {
    let Some(p) = pass else {
        f(Seg::Text(text));
        return;
    };
    let mut at = 0;
    for mat in p.ac.find_iter(text) {
        let a = &added[p.which[mat.pattern().as_usize()]];
        if split_special && a.special {
            continue;
        }
        if mat.start() > at {
            f(Seg::Text(&text[at..mat.start()]));
        }
        f(Seg::Token(a));
        at = mat.end();
    }
    if at < text.len() {
        f(Seg::Text(&text[at..]));
    }
}
