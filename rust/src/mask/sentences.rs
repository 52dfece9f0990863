//! Sentence splitting for sentence-pair (NSP) and full-sentence sequences.
//!
//! The rule (deliberately small and predictable, no models, no locale data):
//! 1. A line break ends a sentence (our readers give a paragraph per line; unwrap hard-wrapped
//!    text before).
//! 2. `.` `!` `?` `…` (and runs of them, like `?!` or `...`), followed by optional closing quotes
//!    or brackets, end a sentence when whitespace or the end of the text follows - except a `.`
//!    after a single letter (`J. Smith`, `U.S. law`), after a common abbreviation (`Mr.`, `Dr.`,
//!    `e.g.`, `vs.`; see [`ABBREVIATIONS`]), or before a lowercase letter (`approx. five`).
//! 3. Full-width and other-script terminals end a sentence with no whitespace needed, since
//!    Chinese, Japanese and Thai-style scripts put none between sentences: `。` `！` `？` `｡`
//!    `．`, Devanagari `।` `॥`, Arabic `؟` `۔`, Ethiopic `።`, Myanmar `။`, and `‼` `⁇` `⁈` `⁉`,
//!    again with following closers (`」` `』` `）` `”` ...).
//!
//! Ranges cover the text without gaps: whitespace after a sentence end starts the next range, so
//! encoding the sentences one by one gives the same tokens as encoding the text (byte-level
//! pre-tokenizers attach a space to the word after it). No range is whitespace only.

use std::ops::Range;

/// Lowercased words that a following `.` does not end a sentence after.
pub const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "fig", "no", "vol", "mt", "gen",
    "col", "lt", "sgt", "capt", "rev", "approx", "dept", "est", "inc", "ltd", "co", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec",
];

fn is_ascii_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

fn is_wide_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '｡' | '．' | '।' | '॥' | '؟' | '۔' | '።' | '။' | '‼' | '⁇' | '⁈' | '⁉')
}

fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | '›' | '」' | '』' | '）' | '】' | '〕' | '〉' | '》' | '］'
    )
}

/// Whether the `.` ending `before` (the text up to it) is an abbreviation or an initial.
fn abbreviation_before(before: &str) -> bool {
    let word: &str = before.rsplit(|c: char| !(c.is_alphanumeric() || c == '.')).next().unwrap_or("");
    let word = word.trim_start_matches('.');
    if word.is_empty() {
        return false;
    }
    let last = word.rsplit('.').next().unwrap_or(word);
    let mut chars = last.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if c.is_alphabetic() {
            return true; // an initial: "J." or the "S." of "U.S."
        }
    }
    // Every abbreviation is ASCII, so an ASCII word is compared without lowercasing it into a new
    // String (one allocation per sentence end was a visible share of the splitting time).
    if word.is_ascii() {
        ABBREVIATIONS.iter().any(|a| a.eq_ignore_ascii_case(word))
    } else {
        ABBREVIATIONS.contains(&word.to_lowercase().as_str())
    }
}

/// Bytes where a sentence may end: `\n`, `.`, `!`, `?`, and the UTF-8 lead bytes of the other
/// terminals (`…` and the wide ones: D8 DB E0 E1 E2 E3 EF). Every other byte is skipped unread.
const CANDIDATE: [bool; 256] = {
    let mut t = [false; 256];
    let mut k = 0;
    let bytes = [b'\n', b'.', b'!', b'?', 0xD8, 0xDB, 0xE0, 0xE1, 0xE2, 0xE3, 0xEF];
    while k < bytes.len() {
        t[bytes[k] as usize] = true;
        k += 1;
    }
    t
};

/// Byte ranges of the sentences of `text`; see the module docs for the rule.
pub fn split_sentences(text: &str) -> Vec<Range<usize>> {
    let mut cuts: Vec<usize> = Vec::new();
    let bytes = text.as_bytes();
    let mut pos = 0; // always on a char boundary
    while pos < bytes.len() {
        // Fast path: a byte that cannot start a terminal (most of any text). Decoding every char
        // made this function a tenth of `tokenize --objective mlm`.
        if !CANDIDATE[bytes[pos] as usize] {
            pos += 1;
            continue;
        }
        let i = pos;
        let Some(c) = text[pos..].chars().next() else { break };
        pos += c.len_utf8();
        if c == '\n' {
            cuts.push(i);
            continue;
        }
        let wide = is_wide_terminal(c);
        if !wide && !is_ascii_terminal(c) {
            continue;
        }
        let mut only_period = c == '.';
        let mut end = pos;
        for d in text[pos..].chars() {
            if is_ascii_terminal(d) || is_wide_terminal(d) || is_closer(d) {
                only_period &= d == '.' || is_closer(d);
                end += d.len_utf8();
            } else {
                break;
            }
        }
        pos = end;
        let rest = &text[end..];
        let next = rest.chars().next();
        if wide {
            cuts.push(end);
            continue;
        }
        match next {
            Some(n) if n.is_whitespace() => {
                if only_period && c == '.' && end == i + 1 {
                    let after = rest.trim_start_matches([' ', '\t']).chars().next();
                    if abbreviation_before(&text[..i]) || after.is_some_and(char::is_lowercase) {
                        continue;
                    }
                }
                cuts.push(end);
            }
            None | Some(_) => {}
        }
    }
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain(std::iter::once(text.len())) {
        // A whitespace-only piece is not a sentence: leaving `start` in place joins it to the next.
        if c <= start || text[start..c].trim().is_empty() {
            continue;
        }
        out.push(start..c);
        start = c;
    }
    if let Some(last) = out.last_mut() {
        last.end = text.len(); // trailing whitespace joins the last sentence
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sents(t: &str) -> Vec<&str> {
        split_sentences(t).into_iter().map(|r| &t[r]).collect()
    }

    #[test]
    fn english() {
        assert_eq!(
            sents("Hello world. It's 3.14 today! Is it? \"Yes.\" Mr. Smith met J. R. Doe e.g. here."),
            vec!["Hello world.", " It's 3.14 today!", " Is it?", " \"Yes.\"", " Mr. Smith met J. R. Doe e.g. here."]
        );
        assert_eq!(sents("Wait... what?! ok"), vec!["Wait...", " what?!", " ok"]);
        assert_eq!(sents("approx. five apples."), vec!["approx. five apples."]);
    }

    #[test]
    fn newlines_and_whitespace() {
        assert_eq!(
            sents("line one\nline two\n\n  third. Fourth\n"),
            vec!["line one", "\nline two", "\n\n  third.", " Fourth\n"]
        );
        assert!(sents("  \n ").is_empty());
        assert_eq!(sents("  lead"), vec!["  lead"]);
    }

    #[test]
    fn cjk_and_other_scripts() {
        assert_eq!(sents("今天天气很好。我们去公园吧！你来吗？"), vec!["今天天气很好。", "我们去公园吧！", "你来吗？"]);
        assert_eq!(sents("「行こう。」と彼は言った。"), vec!["「行こう。」", "と彼は言った。"]);
        assert_eq!(sents("यह एक वाक्य है। यह दूसरा है।"), vec!["यह एक वाक्य है।", " यह दूसरा है।"]);
    }

    #[test]
    fn every_terminal_starts_with_a_candidate_byte() {
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            if c == '\n' || is_ascii_terminal(c) || is_wide_terminal(c) {
                let mut buf = [0; 4];
                assert!(CANDIDATE[c.encode_utf8(&mut buf).as_bytes()[0] as usize], "{c:?}");
            }
        }
    }

    #[test]
    fn ranges_cover_the_text() {
        for t in ["a. b. c.", "  x\n\ny. z", "。。", "...", "\n", "Q? A! ", "终。\n\n  end"] {
            let r = split_sentences(t);
            if t.trim().is_empty() {
                assert!(r.is_empty());
                continue;
            }
            assert_eq!(r.first().unwrap().start, 0, "{t:?}");
            assert_eq!(r.last().unwrap().end, t.len(), "{t:?}");
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start, "{t:?}");
            }
            assert!(r.iter().all(|x| !t[x.clone()].trim().is_empty()), "{t:?}");
        }
    }
}
