//! Shingles and MinHash signatures.
//!
//! A document's shingles are the hashes of its word n-grams (words from
//! [`super::normalize::words`]); a document with fewer than `n` words (but at least one) has one
//! shingle, all its words. Its signature is, for each of `num_perm` hash functions
//! `h_i(x) = (a_i * x + b_i) >> 32` (multiply-shift on the 64-bit shingle hash, `a_i` odd), the
//! minimum over its shingles. Two documents agree on a given position with probability equal to
//! the Jaccard similarity of their shingle sets.
//!
//! Invariants: `a_i, b_i` come from a fixed-seed generator, so signatures depend only on the
//! text, `n`, `num_perm` and `seed`; a document with no word has no shingle and no signature (it
//! takes no part in near dedup: exact dedup still sees it).
//!
//! NOTE: one 64-bit multiply per (shingle, permutation) was measured fast enough (the reader is
//! the bottleneck at 128 permutations); a u32 "double hashing" scheme would be cheaper but makes
//! the permutations correlated, which biases the estimate.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::normalize::words;
use crate::hash::{splitmix64, GOLDEN_GAMMA};

/// The splitmix64 generator: the permutation coefficients.
fn next_coefficient(state: &mut u64) -> u64 {
    let v = splitmix64(*state);
    *state = state.wrapping_add(GOLDEN_GAMMA);
    v
}

/// Finalizer of MurmurHash3 (64-bit): full avalanche of a combined shingle hash.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    k ^= k >> 33;
    k = k.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    k ^ (k >> 33)
}

/// Appends the hashes of the `n`-grams of `words` to `out` (order of appearance, repeats kept).
pub fn shingles(words: &[u64], n: usize, out: &mut Vec<u64>) {
    let n = n.max(1);
    if words.is_empty() {
        return;
    }
    let k = n.min(words.len());
    for win in words.windows(k) {
        let mut h = k as u64;
        for &w in win {
            h = (h.rotate_left(27) ^ w).wrapping_mul(GOLDEN_GAMMA);
        }
        out.push(fmix64(h));
    }
}

/// MinHash signatures and their bands for one configuration.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    ngram: usize,
}

/// Reusable per-thread buffers for [`MinHasher`].
#[derive(Debug, Default)]
pub struct Scratch {
    pub words: Vec<u64>,
    pub shingles: Vec<u64>,
    pub word: Vec<u8>,
    pub sig: Vec<u32>,
    bytes: Vec<u8>,
}

impl MinHasher {
    pub fn new(num_perm: usize, ngram: usize, seed: u64) -> Self {
        let mut s = seed ^ 0x6A09_E667_F3BC_C908;
        let a = (0..num_perm).map(|_| next_coefficient(&mut s) | 1).collect();
        let b = (0..num_perm).map(|_| next_coefficient(&mut s)).collect();
        Self { a, b, ngram }
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// Fills `sc.shingles` with the shingles of `text`.
    pub fn shingle(&self, text: &str, sc: &mut Scratch) {
        sc.words.clear();
        sc.shingles.clear();
        words(text, &mut sc.words, &mut sc.word);
        shingles(&sc.words, self.ngram, &mut sc.shingles);
    }

    /// The sorted, de-duplicated shingle set of `text`.
    pub fn shingle_set(&self, text: &str, sc: &mut Scratch) -> Vec<u64> {
        self.shingle(text, sc);
        let mut set = sc.shingles.clone();
        set.sort_unstable();
        set.dedup();
        set
    }

    /// Computes the signature of `text` into `sc.sig`; false when the text has no shingle.
    pub fn signature(&self, text: &str, sc: &mut Scratch) -> bool {
        self.shingle(text, sc);
        if sc.shingles.is_empty() {
            return false;
        }
        sc.sig.clear();
        sc.sig.resize(self.a.len(), u32::MAX);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
                // SAFETY: the CPU supports the features the function is compiled for (checked above).
                unsafe { minhash_avx512(&self.a, &self.b, &sc.shingles, &mut sc.sig) };
                return true;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                unsafe { minhash_avx2(&self.a, &self.b, &sc.shingles, &mut sc.sig) };
                return true;
            }
        }
        minhash_kernel(&self.a, &self.b, &sc.shingles, &mut sc.sig);
        true
    }

    /// Hash of band `band` (rows `band*rows .. (band+1)*rows`) of the signature in `sc.sig`.
    pub fn band_hash(&self, band: usize, rows: usize, sc: &mut Scratch) -> u64 {
        sc.bytes.clear();
        for v in &sc.sig[band * rows..(band + 1) * rows] {
            sc.bytes.extend_from_slice(&v.to_le_bytes());
        }
        xxh3_64_with_seed(&sc.bytes, band as u64)
    }
}

/// `sig[i] = min over x of (a[i] * x + b[i]) >> 32`. Pure integer arithmetic: every variant
/// below gives bit-identical signatures, so results do not depend on the CPU.
// Always inlined so that each `target_feature` wrapper below gets its own vectorized copy.
#[allow(clippy::inline_always)]
#[inline(always)]
fn minhash_kernel(a: &[u64], b: &[u64], shingles: &[u64], sig: &mut [u32]) {
    let n = sig.len().min(a.len()).min(b.len());
    let (a, b, sig) = (&a[..n], &b[..n], &mut sig[..n]);
    for &x in shingles {
        for i in 0..n {
            let h = (a[i].wrapping_mul(x).wrapping_add(b[i]) >> 32) as u32;
            sig[i] = sig[i].min(h);
        }
    }
}

// NOTE: the same loop compiled for wider vectors, picked at run time: the baseline x86-64 target
// has no vector 64-bit multiply, and the scalar loop was the largest cost of reading (about half
// of the first pass on enwiki). LLVM vectorizes the kernel by itself under these features.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn minhash_avx2(a: &[u64], b: &[u64], shingles: &[u64], sig: &mut [u32]) {
    minhash_kernel(a, b, shingles, sig);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn minhash_avx512(a: &[u64], b: &[u64], shingles: &[u64], sig: &mut [u32]) {
    minhash_kernel(a, b, shingles, sig);
}

/// Jaccard similarity of two sorted, de-duplicated sets (1.0 for two empty sets).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(words: usize, offset: usize) -> String {
        (offset..offset + words).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn signature_agreement_estimates_jaccard() {
        let mh = MinHasher::new(256, 5, 1);
        let mut sc = Scratch::default();
        // 1000 words vs the same shifted by 100: 900 shared 5-grams out of 1096 -> J ~ 0.818.
        let (a, b) = (text(1000, 0), text(1000, 100));
        let sa = mh.shingle_set(&a, &mut sc);
        let sb = mh.shingle_set(&b, &mut sc);
        let j = jaccard(&sa, &sb);
        assert!((j - 896.0 / 1096.0).abs() < 1e-9, "{j}");
        assert!(mh.signature(&a, &mut sc));
        let siga = sc.sig.clone();
        assert!(mh.signature(&b, &mut sc));
        let agree = siga.iter().zip(&sc.sig).filter(|(x, y)| x == y).count() as f64 / 256.0;
        assert!((agree - j).abs() < 0.1, "estimate {agree} vs {j}");
    }

    #[test]
    fn vector_kernels_match_the_scalar_one() {
        let mh = MinHasher::new(100, 5, 7);
        let mut sc = Scratch::default();
        assert!(mh.signature(&text(500, 3), &mut sc));
        let mut scalar = vec![u32::MAX; 100];
        minhash_kernel(&mh.a, &mh.b, &sc.shingles, &mut scalar);
        assert_eq!(sc.sig, scalar);
    }

    #[test]
    fn short_and_empty_texts() {
        let mh = MinHasher::new(16, 5, 1);
        let mut sc = Scratch::default();
        assert!(!mh.signature("?!", &mut sc));
        assert_eq!(mh.shingle_set("two words", &mut sc).len(), 1);
        assert!(mh.signature("two words", &mut sc));
    }

    #[test]
    fn jaccard_edges() {
        assert!((jaccard(&[1, 2, 3], &[2, 3, 4]) - 0.5).abs() < 1e-12);
        assert!((jaccard(&[], &[]) - 1.0).abs() < 1e-12);
        assert!(jaccard(&[1], &[]).abs() < 1e-12);
    }
}
