//! Any split regex, with Python `regex` / HF "Isolated" semantics: matches become pieces and so do
//! the unmatched gaps between them (so that no byte is ever lost and `decode(encode(s)) == s`).
//!
//! Engine choice: a DFA (`regex-automata`) for speed wherever the pattern allows. The tiktoken
//! patterns use one look-around, `\s+(?!\S)`, which no DFA supports; it is emulated exactly when it
//! is followed only by a final `\s+` or `\s` alternative (true of gpt2, cl100k and o200k):
//! top-level alternatives become separate DFA patterns (leftmost-first, so priority is kept) and a
//! match of the `\s+(?!\S)` one that is longer than one char and followed by a non-space drops its
//! last char, which is what backtracking into the look-ahead does. Any other look-around,
//! back-reference or possessive quantifier falls back to `fancy-regex`.

use regex_automata::meta::Regex;
use regex_automata::Input;

use crate::error::{Error, Result};

pub enum RegexSplitter {
    Dfa { re: Regex, trim_pattern: Option<usize> },
    Fancy(fancy_regex::Regex),
}

/// Splits `pattern` at its top-level `|`s (outside groups and classes).
fn top_level_alternatives(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut in_class, mut escaped, mut start) = (0i32, false, false, 0);
    for (i, c) in pattern.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => depth -= 1,
            '|' if !in_class && depth == 0 => {
                out.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&pattern[start..]);
    out
}

fn needs_backtracking(alt: &str) -> bool {
    ["(?=", "(?!", "(?<=", "(?<!", "(?>", "?+", "*+", "++", "}+"].iter().any(|t| alt.contains(t))
        || alt.as_bytes().windows(2).any(|w| w[0] == b'\\' && w[1].is_ascii_digit() && w[1] != b'0')
}

impl RegexSplitter {
    pub fn new(pattern: &str) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| Error::Config(format!("invalid split pattern {pattern:?}: {e}"));
        let mut alts: Vec<String> = top_level_alternatives(pattern).into_iter().map(String::from).collect();
        let mut trim_pattern = None;
        let n = alts.len();
        if n >= 2 && alts[n - 2] == r"\s+(?!\S)" && (alts[n - 1] == r"\s+" || alts[n - 1] == r"\s") {
            alts[n - 2] = r"\s+".into();
            alts.pop();
            trim_pattern = Some(n - 2);
        }
        if alts.iter().any(|a| needs_backtracking(a)) {
            return Ok(RegexSplitter::Fancy(fancy_regex::Regex::new(pattern).map_err(|e| bad(&e))?));
        }
        let re = Regex::new_many(&alts).map_err(|e| bad(&e))?;
        Ok(RegexSplitter::Dfa { re, trim_pattern })
    }

    pub fn split<'a>(&self, text: &'a str, f: &mut impl FnMut(&'a str)) {
        let mut gap = 0; // start of text not yet emitted
        let mut pos = 0; // where the next search starts
        while pos < text.len() {
            let Some((s, mut e, trim)) = self.find_at(text, pos) else { break };
            if trim && e < text.len() {
                let next = text[e..].chars().next().expect("e < len");
                if !next.is_whitespace() {
                    let last = text[s..e].char_indices().next_back().map_or(s, |(k, _)| s + k);
                    if last > s {
                        e = last;
                    }
                }
            }
            if e == s {
                // An empty match: nothing to emit; step one char so the scan advances.
                pos = s + text[s..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            if gap < s {
                f(&text[gap..s]);
            }
            f(&text[s..e]);
            gap = e;
            pos = e;
        }
        if gap < text.len() {
            f(&text[gap..]);
        }
    }

    /// The next match at or after `pos`: (start, end, whether it is the emulated look-ahead one).
    fn find_at(&self, text: &str, pos: usize) -> Option<(usize, usize, bool)> {
        match self {
            RegexSplitter::Dfa { re, trim_pattern } => {
                let m = re.search(&Input::new(text).span(pos..text.len()))?;
                Some((m.start(), m.end(), Some(m.pattern().as_usize()) == *trim_pattern))
            }
            // A regex error here is a backtrack-limit overflow on pathological input; ending the
            // matches there keeps the rest of the text as one gap piece rather than losing it.
            RegexSplitter::Fancy(re) => re.find_from_pos(text, pos).ok().flatten().map(|m| (m.start(), m.end(), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_respect_groups_and_classes() {
        assert_eq!(top_level_alternatives(r"a|(b|c)|[|]|\||d"), vec!["a", "(b|c)", "[|]", r"\|", "d"]);
    }

    #[test]
    fn unmatched_gaps_are_kept() {
        let s = RegexSplitter::new(r"\d+").unwrap();
        let mut out = Vec::new();
        s.split("ab12cd3", &mut |p| out.push(p));
        assert_eq!(out, ["ab", "12", "cd", "3"]);
    }

    #[test]
    fn lookahead_emulation_equals_backtracking() {
        let p = r"\w+|\s+(?!\S)|\s+";
        let dfa = RegexSplitter::new(p).unwrap();
        assert!(matches!(dfa, RegexSplitter::Dfa { .. }));
        let fancy = RegexSplitter::Fancy(fancy_regex::Regex::new(p).unwrap());
        for t in ["a  b", "a \n\tb  ", " x", "   ", "a\u{3000}\u{3000}b", "x \u{a0}y"] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            dfa.split(t, &mut |x| a.push(x));
            fancy.split(t, &mut |x| b.push(x));
            assert_eq!(a, b, "{t:?}");
        }
    }
}
