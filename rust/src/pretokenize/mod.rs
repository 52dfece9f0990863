//! Pre-tokenization: splitting text into pieces that BPE never merges across.
//!
//! [`Pattern`] names the split rule; [`PreTokenizer`] runs it. Built-in patterns are written
//! exactly as tiktoken and HF ship them (that string goes into `tokenizer.json` and the tiktoken
//! export) and run on hand-written scanners (`gpt2.rs`, `cl100k.rs`, `o200k.rs`); custom ones run
//! on a DFA with exact look-ahead emulation or on fancy-regex (see `regex_split`).

mod cl100k;
mod classes;
mod gpt2;
mod o200k;
mod regex_split;

use regex_split::RegexSplitter;

use crate::error::Result;

pub const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
pub const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+"
);

/// Llama-3's split pattern (the older cl100k; see `cl100k.rs` for how it differs).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's (and Qwen2.5's, Qwen3's): Llama-3's with one digit per number piece.
pub const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// cl100k in a form every engine reads the same way: no possessive quantifiers and `\z` for the
/// end of text. Equivalent to [`CL100K_PATTERN`] as Python's `regex` and tiktoken run it: each
/// possessive part is followed only by what it cannot give back (`[^\r\n\p{L}\p{N}]` then `\p{L}`;
/// a class without `\r\n` then `[\r\n]`), so backtracking into it never finds another match, and
/// `\s++$` only matches a whitespace run that reaches the end. This is the form written to
/// `tokenizer.json`: HF's Oniguruma reads `{1,3}+` as "repeat `{1,3}`" (not possessive) and `$` as
/// end of line, so tiktoken's exact text would give different pieces there.
pub const CL100K_PORTABLE: &str =
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+\z|\s*[\r\n]|\s+(?!\S)|\s";

/// A named split rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Gpt2,
    Cl100k,
    O200k,
    Llama3,
    Qwen2,
    Custom(String),
}

impl Pattern {
    /// `gpt2`, `cl100k`, `o200k`, or else the text is taken as a regex.
    pub fn parse(s: &str) -> Self {
        match s {
            "gpt2" => Pattern::Gpt2,
            "cl100k" => Pattern::Cl100k,
            "o200k" => Pattern::O200k,
            "llama3" => Pattern::Llama3,
            "qwen2" => Pattern::Qwen2,
            other => Self::from_regex(other),
        }
    }

    /// Recognises a built-in pattern by its regex text (as found in a `tokenizer.json`).
    pub fn from_regex(re: &str) -> Self {
        match re {
            GPT2_PATTERN => Pattern::Gpt2,
            CL100K_PATTERN | CL100K_PORTABLE => Pattern::Cl100k,
            O200K_PATTERN => Pattern::O200k,
            LLAMA3_PATTERN => Pattern::Llama3,
            QWEN2_PATTERN => Pattern::Qwen2,
            other => Pattern::Custom(other.to_string()),
        }
    }

    /// The regex text as its origin writes it (tiktoken's for the built-ins): the tiktoken export.
    pub fn regex(&self) -> &str {
        match self {
            Pattern::Gpt2 => GPT2_PATTERN,
            Pattern::Cl100k => CL100K_PATTERN,
            Pattern::O200k => O200K_PATTERN,
            Pattern::Llama3 => LLAMA3_PATTERN,
            Pattern::Qwen2 => QWEN2_PATTERN,
            Pattern::Custom(s) => s,
        }
    }

    /// An equivalent regex that Oniguruma (HF tokenizers) also reads the same way: `tokenizer.json`.
    pub fn portable_regex(&self) -> &str {
        match self {
            Pattern::Cl100k => CL100K_PORTABLE,
            other => other.regex(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Pattern::Gpt2 => "gpt2",
            Pattern::Cl100k => "cl100k",
            Pattern::O200k => "o200k",
            Pattern::Llama3 => "llama3",
            Pattern::Qwen2 => "qwen2",
            Pattern::Custom(_) => "custom",
        }
    }
}

/// Calls `f` with each piece of `text`, where `piece_end(bytes, i)` is the end of the piece
/// that starts at `i`: the loop of every hand-written scanner that finds one piece at a time.
#[inline]
fn scan<'a>(text: &'a str, piece_end: fn(&[u8], usize) -> usize, f: &mut impl FnMut(&'a str)) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let e = piece_end(b, i);
        debug_assert!(e > i);
        f(&text[i..e]);
        i = e;
    }
}

/// Runs a [`Pattern`]. Cheap to share across threads (`Sync`).
pub struct PreTokenizer {
    pattern: Pattern,
    imp: Imp,
}

enum Imp {
    Gpt2,
    Cl100k,
    O200k,
    Llama3,
    Qwen2,
    Regex(RegexSplitter),
}

impl PreTokenizer {
    pub fn new(pattern: Pattern) -> Result<Self> {
        let imp = match &pattern {
            Pattern::Gpt2 => Imp::Gpt2,
            Pattern::Cl100k => Imp::Cl100k,
            Pattern::O200k => Imp::O200k,
            Pattern::Llama3 => Imp::Llama3,
            Pattern::Qwen2 => Imp::Qwen2,
            Pattern::Custom(re) => Imp::Regex(RegexSplitter::new(re)?),
        };
        Ok(Self { pattern, imp })
    }

    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Calls `f` with each piece of `text`, in order; the pieces concatenate to `text`.
    #[inline]
    pub fn split<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) {
        match &self.imp {
            Imp::Gpt2 => gpt2::split(text, &mut f),
            Imp::Cl100k => scan(text, cl100k::piece_end, &mut f),
            Imp::O200k => scan(text, o200k::piece_end, &mut f),
            Imp::Llama3 => scan(text, cl100k::llama3_piece_end, &mut f),
            Imp::Qwen2 => scan(text, cl100k::qwen2_piece_end, &mut f),
            Imp::Regex(r) => r.split(text, &mut f),
        }
    }

    /// The pieces of `text` as a vector (tests, Python API).
    pub fn pieces<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut v = Vec::new();
        self.split(text, |p| v.push(p));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Compiled once per pattern and thread: compiling a Unicode pattern costs far more than
    /// matching 60 chars with it, and the property tests call this thousands of times.
    fn fancy_pieces(pattern: &str, text: &str) -> Vec<String> {
        thread_local! {
            static COMPILED: std::cell::RefCell<std::collections::HashMap<String, fancy_regex::Regex>> =
                std::cell::RefCell::default();
        }
        COMPILED.with(|c| {
            let mut c = c.borrow_mut();
            let re = c.entry(pattern.to_string()).or_insert_with(|| fancy_regex::Regex::new(pattern).unwrap());
            re.find_iter(text).map(|m| m.unwrap().as_str().to_string()).collect()
        })
    }

    const SAMPLES: &[&str] = &[
        "Hello world! It's 2024, isn't it?  Yes\n\n  indeed.\t\tTabs   ",
        "I'LL be there 'til 12345678 o'clock... we're DONE's",
        "  leading and trailing  \n",
        "한국어 텍스트입니다. 123개의 단어!",
        "emoji 🎉🎉 and mixed👍text \u{3000}ideographic\u{3000}\u{3000}space",
        "a\r\nb\r\n\r\nc   \n  d",
        "x'sy 'S 'T O'NEIL'S  'll",
        "CamelCaseWORDS and naïve café Über",
        "\u{0301}combining mark e\u{0301}",
        "path/to/file //comment\n\n\n",
        "HELLOworld ÀBC'S it'ſ DON'T 'Ll Ǆx ǅy \u{0301}\u{0301}a x\u{0301}\u{0301} ʰʰA",
        "中文没有空格的句子，很长很长。日本語のテキスト、カタカナ。\r\n\r\n  \t\n x",
        "!!!/\r\n/ // ?\n\n¿Qué? «quote» 123456 ٣٤٥ Ⅻ ½",
    ];

    const BUILTINS: [Pattern; 5] = [Pattern::Gpt2, Pattern::Cl100k, Pattern::O200k, Pattern::Llama3, Pattern::Qwen2];

    fn check_all(p: &Pattern, text: &str) {
        let ours: Vec<String> =
            PreTokenizer::new(p.clone()).unwrap().pieces(text).iter().map(ToString::to_string).collect();
        assert_eq!(ours, fancy_pieces(p.regex(), text), "pattern {} on {text:?}", p.name());
    }

    #[test]
    fn portable_cl100k_equals_tiktoken_text() {
        for s in SAMPLES {
            assert_eq!(fancy_pieces(CL100K_PORTABLE, s), fancy_pieces(CL100K_PATTERN, s), "{s:?}");
        }
    }

    #[test]
    fn builtins_equal_their_regex_on_samples() {
        for p in BUILTINS {
            for s in SAMPLES {
                check_all(&p, s);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn builtins_equal_their_regex(text in "(\\PC|[ \t\r\n'’]|[a-zA-Z0-9]{1,5}|'(s|t|ll|re|LL|Ve)){0,40}") {
            for p in BUILTINS {
                check_all(&p, &text);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        // The hand-written o200k scanner's backtracking cases: upper/lower/modifier letters and
        // marks in every order, contractions (with U+017F), prefixes, whitespace runs with \r\n.
        #[test]
        fn cl100k_scanner_equals_its_regex(
            text in "[A-ZÀ-Öa-zß-ö中文한ʰ\u{0301}'’sStTlLeErRvVmMdD \t\r\n/!?.0-9٣Ⅻ½\u{17F}\u{85}\u{a0}\u{3000}]{0,60}"
        ) {
            check_all(&Pattern::Cl100k, &text);
            check_all(&Pattern::Llama3, &text);
            check_all(&Pattern::Qwen2, &text);
        }

        #[test]
        fn o200k_scanner_equals_its_regex(
            text in "[A-ZÀ-ÖǄǅʰ-ʸ\u{0300}-\u{0303}a-zß-ö中文한'’sStTlLeErRvVmMdD \t\r\n/!?.0-9٣Ⅻ½\u{17F}\u{85}\u{a0}\u{3000}]{0,60}"
        ) {
            check_all(&Pattern::O200k, &text);
        }
    }

    #[test]
    fn pieces_concatenate_to_input() {
        let pt = PreTokenizer::new(Pattern::Custom(r"\p{L}+".into())).unwrap();
        for s in SAMPLES {
            assert_eq!(pt.pieces(s).concat(), *s);
        }
    }

    #[test]
    fn invalid_custom_pattern_is_an_error() {
        let e = PreTokenizer::new(Pattern::Custom("(".into())).err().unwrap();
        assert!(e.to_string().contains("invalid split pattern"));
    }
}
