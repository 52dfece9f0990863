//! A hand-written scanner equal to tiktoken's cl100k split pattern, in its portable form
//! ([`super::CL100K_PORTABLE`]), and to its two relatives that Llama-3 and Qwen2 ship
//! ([`super::LLAMA3_PATTERN`], [`super::QWEN2_PATTERN`]); cl100k's alternatives in the order a
//! backtracking engine tries them:
//!
//! ```text
//! C1 '(?i:[sdmt]|ll|ve|re)
//! C2 [^\r\n\p{L}\p{N}]?\p{L}+
//! C3 \p{N}{1,3}
//! C4  ?[^\s\p{L}\p{N}]+[\r\n]*
//! C5 \s+\z
//! C6 \s*[\r\n]
//! C7 \s+(?!\S)
//! C8 \s
//! ```
//!
//! Why by hand: the DFA (`regex_split`) pays a search call per piece (English averages under 5
//! bytes a piece), which made splitting most of cl100k's encode time; this scanner classifies each
//! char once. C5-C8 on a whitespace run W: W whole if it ends the text; else up to its last
//! `\r`/`\n` (C6's `\s*` gives back until `[\r\n]` matches); else all but its last char when W has
//! two or more (C7), else that one char. Exactness: property tests against fancy-regex on the
//! pattern as tiktoken writes it (in `super`), and tiktoken itself in pytest.
//!
//! Llama-3's pattern is the older cl100k: no C5, and `\s*[\r\n]+|\s+(?!\S)|\s+` for C6-C8. The
//! contractions are written `(?i:'s|'t|...)`, the same strings. Without C5, a run that ends the
//! text goes up to its last newline if it has one (C6; `[\r\n]+` cannot go past the last), else
//! whole (C7: nothing follows it); `\s+` only ever sees a run of one char, as C8 did. Qwen2's is
//! Llama-3's with `\p{N}` for `\p{N}{1,3}`. So one scanner with two switches: the digits a
//! number piece takes, and whether C5 is there.

use super::classes::{class, decode_at, Cls};

/// The class of the char at `i` (< `b.len()`) and its byte length.
#[inline]
fn at(b: &[u8], i: usize) -> (Cls, usize) {
    let (c, l) = decode_at(b, i);
    (class(c), l)
}

/// End of the run of chars of class `cls` from `j`.
#[inline]
fn run(b: &[u8], mut j: usize, cls: Cls) -> usize {
    while j < b.len() {
        let (c, l) = at(b, j);
        if c != cls {
            break;
        }
        j += l;
    }
    j
}

/// Length of a contraction after an apostrophe, case-folded as the regex engines fold: `s` also
/// matches U+017F LATIN SMALL LETTER LONG S.
#[inline]
fn contraction(rest: &[u8]) -> usize {
    let lower = |i: usize| rest.get(i).map(u8::to_ascii_lowercase);
    match (lower(0), lower(1)) {
        (Some(b's' | b'd' | b'm' | b't'), _) => 1,
        (Some(b'l'), Some(b'l')) | (Some(b'v' | b'r'), Some(b'e')) => 2,
        _ if rest.starts_with("\u{17F}".as_bytes()) => 2,
        _ => 0,
    }
}

/// End of the cl100k piece that starts at `i` (< `b.len()`).
pub(super) fn piece_end(b: &[u8], i: usize) -> usize {
    piece_end_with::<3, true>(b, i)
}

/// End of the Llama-3 piece that starts at `i` (< `b.len()`).
pub(super) fn llama3_piece_end(b: &[u8], i: usize) -> usize {
    piece_end_with::<3, false>(b, i)
}

/// End of the Qwen2 piece that starts at `i` (< `b.len()`).
pub(super) fn qwen2_piece_end(b: &[u8], i: usize) -> usize {
    piece_end_with::<1, false>(b, i)
}

/// `DIGITS`: the most numbers a number piece takes; `END_RULE`: cl100k's C5.
#[inline]
fn piece_end_with<const DIGITS: usize, const END_RULE: bool>(b: &[u8], i: usize) -> usize {
    let n = b.len();
    if b[i] == b'\'' {
        let k = contraction(&b[i + 1..]);
        if k > 0 {
            return i + 1 + k;
        }
    }
    let (c0, l0) = at(b, i);
    let newline = |j: usize| matches!(b[j], b'\r' | b'\n');
    match c0 {
        Cls::Letter => return run(b, i + l0, Cls::Letter),
        Cls::Number => {
            let mut e = i + l0;
            for _ in 1..DIGITS {
                match (e < n).then(|| at(b, e)) {
                    Some((Cls::Number, l)) => e += l,
                    _ => break,
                }
            }
            return e;
        }
        // C2 with its one-char prefix (any char but \r, \n, a letter or a number).
        Cls::Space | Cls::Other if !newline(i) && i + l0 < n && at(b, i + l0).0 == Cls::Letter => {
            return run(b, i + l0, Cls::Letter);
        }
        _ => {}
    }
    let o_start = if b[i] == b' ' && i + 1 < n && at(b, i + 1).0 == Cls::Other {
        Some(i + 1)
    } else {
        (c0 == Cls::Other).then_some(i)
    };
    if let Some(s) = o_start {
        let mut e = run(b, s, Cls::Other);
        while e < n && newline(e) {
            e += 1;
        }
        return e;
    }
    debug_assert_eq!(c0, Cls::Space);
    let (mut e, mut last_nl, mut last_start) = (i, None, i);
    while e < n {
        let (c, l) = at(b, e);
        if c != Cls::Space {
            break;
        }
        last_start = e;
        if newline(e) {
            last_nl = Some(e + l);
        }
        e += l;
    }
    if END_RULE && e == n {
        return e;
    }
    if let Some(nl) = last_nl {
        return nl;
    }
    if e == n {
        return e;
    }
    if last_start > i {
        return last_start;
    }
    e
}
