//! A small counter-keyed random stream for masking and sequence building.
//!
//! Invariant: a stream is a pure function of its key (for masking: `(seed, epoch, sample index)`),
//! so the mask of a sample never depends on batch composition, thread, `DataLoader` worker, rank or
//! resume point. The key is folded with [`crate::hash::splitmix64`]; the stream is wyrand (one add and
//! one 64x64->128 multiply per draw), which passes BigCrush/PractRand and costs about a nanosecond.
//!
//! NOTE: we do not use `rand`/`rand_chacha`: a `ChaCha` block per sample is ~10x the cost of the
//! whole masking of a short row, and we need neither cryptographic quality nor seekable streams.

use crate::hash::splitmix64;

/// The wyrand stream. Not `Clone` on purpose: two copies would silently repeat draws.
pub struct Rng(u64);

impl Rng {
    /// The stream keyed by `key` (order matters; `[1, 2]` and `[2, 1]` differ).
    pub fn keyed(key: &[u64]) -> Self {
        let mut h = 0x6a09_e667_f3bc_c908; // domain constant: sqrt(2) fraction bits
        for &k in key {
            h = splitmix64(h ^ k);
        }
        Rng(h)
    }

    /// The masking stream of one sample.
    pub fn for_sample(seed: u64, epoch: u64, index: u64) -> Self {
        Self::keyed(&[seed, epoch, index])
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`) by multiply-shift; the bias is below `n / 2^32`, far under
    /// anything the statistics of masking can see.
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// Uniform in `0..n` for `usize` bounds (`n > 0`, at most `u32::MAX`).
    #[inline]
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u32) as usize
    }

    /// Uniform in `[0, 1)` with 53 bits.
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
}

/// `p` in `[0, 1]` as a threshold on a uniform `u32` (compared as `u64`, so `p = 1` always passes).
#[inline]
pub(crate) fn threshold(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 4_294_967_296.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_and_keys_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::for_sample(1, 2, 3);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::for_sample(1, 2, 3);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::for_sample(1, 2, 3).next_u64(), Rng::for_sample(1, 3, 2).next_u64());
        assert_ne!(Rng::for_sample(0, 0, 0).next_u64(), Rng::for_sample(0, 0, 1).next_u64());
    }

    #[test]
    fn below_is_uniform_enough() {
        let mut r = Rng::keyed(&[7]);
        let mut counts = [0u32; 10];
        for _ in 0..1_000_000 {
            counts[r.below(10) as usize] += 1;
        }
        for c in counts {
            assert!((f64::from(c) - 100_000.0).abs() < 1_500.0, "{counts:?}");
        }
    }
}
