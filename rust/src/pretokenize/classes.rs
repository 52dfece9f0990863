//! Character classes used by the hand-written splitters, with an ASCII fast path.
//!
//! `\s` is Unicode `White_Space` (as in Python's `regex` module, Rust's `regex` and tiktoken's
//! fancy-regex); letters and numbers are general categories L* and N* of Unicode 16.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// The classes of the `gpt2` pattern: letter, number, whitespace, anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cls {
    Letter,
    Number,
    Space,
    Other,
}

const fn ascii_table() -> [Cls; 128] {
    let mut t = [Cls::Other; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphabetic() {
            Cls::Letter
        } else if c.is_ascii_digit() {
            Cls::Number
        } else if matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ') {
            Cls::Space
        } else {
            Cls::Other
        };
        i += 1;
    }
    t
}

static ASCII: [Cls; 128] = ascii_table();

#[inline]
pub fn class(c: char) -> Cls {
    if (c as u32) < 128 {
        return ASCII[c as usize];
    }
    // Hangul syllables are all Lo; they dominate Korean text, skip the table search.
    if ('\u{AC00}'..='\u{D7A3}').contains(&c) {
        return Cls::Letter;
    }
    if c.is_whitespace() {
        return Cls::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter => {
            Cls::Letter
        }
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Cls::Number,
        _ => Cls::Other,
    }
}

/// Decodes the char starting at byte `i` of valid UTF-8 `s`; returns it and its length.
#[inline]
pub fn decode_at(s: &[u8], i: usize) -> (char, usize) {
    let b0 = s[i];
    if b0 < 0x80 {
        return (b0 as char, 1);
    }
    let (len, init) = if b0 < 0xE0 {
        (2, u32::from(b0 & 0x1F))
    } else if b0 < 0xF0 {
        (3, u32::from(b0 & 0x0F))
    } else {
        (4, u32::from(b0 & 0x07))
    };
    let mut cp = init;
    for k in 1..len {
        cp = (cp << 6) | u32::from(s[i + k] & 0x3F);
    }
    // The input is a &str, so this is always a valid scalar value.
    (char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER), len)
}
