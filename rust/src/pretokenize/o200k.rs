//! A hand-written scanner equal to tiktoken's o200k split pattern ([`super::O200K_PATTERN`]),
//! alternatives tried in order as a backtracking engine tries them:
//!
//! ```text
//! A1 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! A2 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! A3 \p{N}{1,3}
//! A4  ?[^\s\p{L}\p{N}]+[\r\n/]*
//! A5 \s*[\r\n]+
//! A6 \s+(?!\S)
//! A7 \s+
//! ```
//!
//! Why by hand: the DFA (`regex_split`) ran o200k at about 1 MB/s on Chinese and 2-5 MB/s on
//! Korean, because the classes of A1/A2 over multi-byte UTF-8 blow up its lazy state cache; here
//! each char is classified once per look and every piece costs one forward pass (plus, where the
//! regex backtracks, a second pass over the same run), so cost is linear in the text.
//!
//! Backtracking, worked out once: in A1, `U*` takes the longest run R of U chars; if the char after
//! R is an L char (then it is `Ll`), `L+` takes the L run from there; otherwise `U*` gives chars
//! back until `L+` can start, which ends the match just after the last L char inside R (none: A1
//! fails). In A5, `\s*` gives back until `[\r\n]+` matches, so the match ends after the last
//! `\r`/`\n` of the whitespace run. A6 keeps all but the run's last char unless the run ends the
//! text. Exactness is checked against fancy-regex on the pattern itself (property tests in
//! `super`) and against tiktoken in pytest.

use super::classes::decode_at;
use unicode_general_category::{get_general_category, GeneralCategory as G};

/// What o200k's classes need to know of a char.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    /// `Lu`, `Lt`: in U only.
    Upper,
    /// `Ll`: in L only.
    Lower,
    /// `Lm`, `Lo`: in U and L.
    Both,
    /// `M*`: in U and L, and not a letter (so in the prefix class and in A4's class).
    Mark,
    Number,
    /// White space other than `\r` and `\n`.
    Space,
    /// `\r` or `\n`.
    Newline,
    Other,
}

impl K {
    #[inline]
    fn u(self) -> bool {
        matches!(self, K::Upper | K::Both | K::Mark)
    }
    #[inline]
    fn l(self) -> bool {
        matches!(self, K::Lower | K::Both | K::Mark)
    }
    /// `[^\r\n\p{L}\p{N}]`
    #[inline]
    fn p(self) -> bool {
        matches!(self, K::Mark | K::Space | K::Other)
    }
    /// `[^\s\p{L}\p{N}]`
    #[inline]
    fn o(self) -> bool {
        matches!(self, K::Mark | K::Other)
    }
    #[inline]
    fn s(self) -> bool {
        matches!(self, K::Space | K::Newline)
    }
}

const fn ascii_table() -> [K; 128] {
    let mut t = [K::Other; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_uppercase() {
            K::Upper
        } else if c.is_ascii_lowercase() {
            K::Lower
        } else if c.is_ascii_digit() {
            K::Number
        } else if c == b'\r' || c == b'\n' {
            K::Newline
        } else if matches!(c, b'\t' | 0x0b | 0x0c | b' ') {
            K::Space
        } else {
            K::Other
        };
        i += 1;
    }
    t
}

static ASCII: [K; 128] = ascii_table();

#[inline]
fn kind(c: char) -> K {
    if (c as u32) < 128 {
        return ASCII[c as usize];
    }
    // CJK Unified Ideographs and Hangul syllables (all Lo) dominate Chinese and Korean text.
    if ('\u{4E00}'..='\u{9FFF}').contains(&c) || ('\u{AC00}'..='\u{D7A3}').contains(&c) {
        return K::Both;
    }
    if c.is_whitespace() {
        return K::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter | G::TitlecaseLetter => K::Upper,
        G::LowercaseLetter => K::Lower,
        G::ModifierLetter | G::OtherLetter => K::Both,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => K::Mark,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => K::Number,
        _ => K::Other,
    }
}

/// The kind and byte length of the char at `i` (< `b.len()`).
#[inline]
fn at(b: &[u8], i: usize) -> (K, usize) {
    if b[i] < 0x80 {
        return (ASCII[b[i] as usize], 1);
    }
    let (c, l) = decode_at(b, i);
    (kind(c), l)
}

/// End of the run of chars from `j` whose kind satisfies `pred`.
#[inline]
fn run(b: &[u8], mut j: usize, pred: impl Fn(K) -> bool) -> usize {
    while j < b.len() {
        let (k, l) = at(b, j);
        if !pred(k) {
            break;
        }
        j += l;
    }
    j
}

/// `U*L+` from `j`: its end, or `None`.
fn a1(b: &[u8], j: usize) -> Option<usize> {
    let (mut k, mut last_l) = (j, None);
    while k < b.len() {
        let (kd, l) = at(b, k);
        if !kd.u() {
            break;
        }
        k += l;
        if kd.l() {
            last_l = Some(k);
        }
    }
    if k < b.len() && at(b, k).0.l() {
        Some(run(b, k, K::l))
    } else {
        last_l
    }
}

/// `U+L*` from `j`: its end, or `None`.
fn a2(b: &[u8], j: usize) -> Option<usize> {
    let k = run(b, j, K::u);
    (k > j).then(|| run(b, k, K::l))
}

/// `e` plus the contraction `(?i:'s|'t|'re|'ve|'m|'ll|'d)?` at `e`, if there is one. Case-folded
/// as the regex engines fold: `s` also matches U+017F LATIN SMALL LETTER LONG S.
#[inline]
fn contraction(b: &[u8], e: usize) -> usize {
    if b.get(e) != Some(&b'\'') {
        return e;
    }
    let rest = &b[e + 1..];
    let lower = |i: usize| rest.get(i).map(u8::to_ascii_lowercase);
    match (lower(0), lower(1)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => e + 2,
        (Some(b'r' | b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => e + 3,
        _ if rest.starts_with("\u{17F}".as_bytes()) => e + 3,
        _ => e,
    }
}

/// End of the piece that starts at `i` (< `b.len()`).
pub(super) fn piece_end(b: &[u8], i: usize) -> usize {
    let n = b.len();
    let (k0, l0) = at(b, i);
    if k0.p() {
        if let Some(e) = a1(b, i + l0) {
            return contraction(b, e);
        }
    }
    if let Some(e) = a1(b, i) {
        return contraction(b, e);
    }
    if k0.p() {
        if let Some(e) = a2(b, i + l0) {
            return contraction(b, e);
        }
    }
    if let Some(e) = a2(b, i) {
        return contraction(b, e);
    }
    if k0 == K::Number {
        let mut e = i + l0;
        for _ in 0..2 {
            match (e < n).then(|| at(b, e)) {
                Some((K::Number, l)) => e += l,
                _ => break,
            }
        }
        return e;
    }
    let o_start = if b[i] == b' ' && i + 1 < n && at(b, i + 1).0.o() { Some(i + 1) } else { k0.o().then_some(i) };
    if let Some(s) = o_start {
        let mut e = run(b, s, K::o);
        while e < n && matches!(b[e], b'\r' | b'\n' | b'/') {
            e += 1;
        }
        return e;
    }
    debug_assert!(k0.s(), "every char is a letter, number, space or other");
    // The whitespace run from i: its end, the end of its last \r or \n, the start of its last char.
    let (mut e, mut last_nl, mut last_start) = (i, None, i);
    while e < n {
        let (kd, l) = at(b, e);
        if !kd.s() {
            break;
        }
        last_start = e;
        e += l;
        if kd == K::Newline {
            last_nl = Some(e);
        }
    }
    if let Some(nl) = last_nl {
        return nl;
    }
    if e < n && last_start > i {
        return last_start;
    }
    e
}
