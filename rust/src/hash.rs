//! `splitmix64`, the one integer mixer behind every seeded draw of the crate: the `train`/`val`
//! split of a document, the NSP block seeds, the keys of the masking streams
//! ([`crate::mask::rng`]) and the MinHash permutation coefficients ([`crate::dedup::minhash`]).
//!
//! Invariant: its values are part of the output format (they decide which document is in which
//! split, and every mask): it must never change.

/// `splitmix64` of `x`: the golden-ratio increment, then the variant-13 finalizer. As a
/// generator (Vigna's `splitmix64.c`), output `n` from seed `s` is
/// `splitmix64(s + n * GOLDEN_GAMMA)`.
#[inline]
#[must_use]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The splitmix64 increment, `2^64 / phi`; also the (Fibonacci hashing) multiplier of the
/// MinHash shingle hash.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // The first outputs of the reference generator (Vigna) seeded with 0 and 1234567.
        let mut state = 0u64;
        let mut next = || {
            let v = splitmix64(state);
            state = state.wrapping_add(GOLDEN_GAMMA);
            v
        };
        assert_eq!(next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(1_234_567), 0x599E_D017_FB08_FC85);
    }
}
