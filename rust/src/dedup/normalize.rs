//! Text normalization for exact dedup, and word splitting for near dedup.
//!
//! Exact keys hash the text after [`Normalization`] (each step optional, defaults in brackets):
//! - `nfc` [on]: Unicode NFC, so that composed and decomposed accents compare equal;
//! - `whitespace` [on]: every run of Unicode whitespace becomes one space, leading and trailing
//!   whitespace is dropped;
//! - `lowercase` [off]: Unicode lowercase (`char::to_lowercase`).
//!
//! Near-dup shingles are built from [`words`], which always normalizes:
//! - NFC, then lowercase;
//! - a word is a maximal run of alphanumeric characters (`char::is_alphanumeric`); everything else
//!   (punctuation, symbols, whitespace) only separates words, so "Hello, world!" and
//!   "hello world" have the same words;
//! - characters of scripts written without spaces between words (Han, Hiragana, Katakana, Thai,
//!   Lao, Khmer, Myanmar, Tibetan) are each a word on their own, so shingles over such text are
//!   character n-grams. Hangul is written with spaces and is split like Latin.
//!
//! Invariant: both functions are pure functions of the text (no locale, no state), so keys and
//! shingles are the same on every machine and for every thread count.

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
use xxhash_rust::xxh3::xxh3_64;

/// Which normalization steps the exact key applies; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalization {
    pub nfc: bool,
    pub whitespace: bool,
    pub lowercase: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Self { nfc: true, whitespace: true, lowercase: false }
    }
}

/// Returns `text` in NFC, borrowing it when it already is (always the case for ASCII).
fn nfc(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.nfc().collect())
    }
}

/// Writes the normalized `text` into `out` (cleared first).
pub fn normalize_into(text: &str, n: Normalization, out: &mut String) {
    out.clear();
    let text = if n.nfc { nfc(text) } else { std::borrow::Cow::Borrowed(text) };
    if !n.whitespace && !n.lowercase {
        out.push_str(&text);
        return;
    }
    if n.whitespace && !n.lowercase {
        for (i, w) in text.split_whitespace().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(w);
        }
        return;
    }
    let mut pending_space = false;
    for c in text.chars() {
        if n.whitespace && c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.extend(c.to_lowercase());
    }
}

/// The 128-bit exact key of `text` (XXH3-128 of the normalized UTF-8). `scratch` is reused.
pub fn exact_key(text: &str, n: Normalization, scratch: &mut String) -> u128 {
    normalize_into(text, n, scratch);
    xxhash_rust::xxh3::xxh3_128(scratch.as_bytes())
}

/// True for characters of scripts written without spaces: each is a word of its own.
pub fn is_unspaced(c: char) -> bool {
    matches!(u32::from(c),
        0x0E00..=0x0EFF          // Thai, Lao
        | 0x0F00..=0x0FFF        // Tibetan
        | 0x1000..=0x109F        // Myanmar
        | 0x1780..=0x17FF        // Khmer
        | 0x2E80..=0x2FDF        // CJK radicals, Kangxi
        | 0x3005..=0x3007        // 々 〆 〇
        | 0x3040..=0x30FF        // Hiragana, Katakana
        | 0x31F0..=0x31FF        // Katakana extensions
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0xFF66..=0xFF9F        // half-width Katakana
        | 0x20000..=0x3FFFF) // CJK extensions B and later
}

/// Appends the 64-bit hash of each word of `text` to `out` (see the module docs for what a word
/// is). `word` is scratch space.
pub fn words(text: &str, out: &mut Vec<u64>, word: &mut Vec<u8>) {
    let text = nfc(text);
    let bytes = text.as_bytes();
    word.clear();
    let flush = |word: &mut Vec<u8>, out: &mut Vec<u64>| {
        if !word.is_empty() {
            out.push(xxh3_64(word));
            word.clear();
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            // ASCII fast path: no decoding.
            if b.is_ascii_alphanumeric() {
                word.push(b.to_ascii_lowercase());
            } else {
                flush(word, out);
            }
            i += 1;
            continue;
        }
        let c = text[i..].chars().next().expect("char boundary");
        i += c.len_utf8();
        if is_unspaced(c) {
            flush(word, out);
            let mut buf = [0u8; 4];
            out.push(xxh3_64(c.encode_utf8(&mut buf).as_bytes()));
        } else if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                let mut buf = [0u8; 4];
                word.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
            }
        } else {
            flush(word, out);
        }
    }
    flush(word, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str, n: Normalization) -> String {
        let mut out = String::new();
        normalize_into(s, n, &mut out);
        out
    }

    #[test]
    fn normalization_steps() {
        let d = Normalization::default();
        assert_eq!(norm("  a \t\n b  ", d), "a b");
        // e + combining acute == precomposed é under NFC.
        assert_eq!(norm("Cafe\u{301}", d), "Caf\u{e9}");
        assert_eq!(norm("ABC Déf", Normalization { lowercase: true, ..d }), "abc déf");
        let none = Normalization { nfc: false, whitespace: false, lowercase: false };
        assert_eq!(norm(" A  b ", none), " A  b ");
        let mut s = String::new();
        assert_eq!(exact_key("x  y", d, &mut s), exact_key(" x y\n", d, &mut s));
        assert_ne!(exact_key("x y", d, &mut s), exact_key("X y", d, &mut s));
    }

    fn w(s: &str) -> Vec<u64> {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        words(s, &mut out, &mut scratch);
        out
    }

    #[test]
    fn words_ignore_case_and_punctuation() {
        assert_eq!(w("Hello, World!"), w("hello world"));
        assert_eq!(w("Straße ÉTÉ"), w("straße été"));
        assert_eq!(w("a-b").len(), 2);
        assert!(w("  ... !!").is_empty());
    }

    #[test]
    fn cjk_characters_are_words() {
        assert_eq!(w("東京は晴れ").len(), 5);
        assert_eq!(w("東京 abc").len(), 3);
        assert_eq!(w("ภาษาไทย").len(), 7);
        assert_eq!(w("한국어 문장").len(), 2);
    }
}
