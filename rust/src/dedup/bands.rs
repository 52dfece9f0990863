//! Choosing the LSH banding (`b` bands of `r` rows, `b * r <= num_perm`) for a similarity
//! threshold `t`.
//!
//! Two documents of Jaccard similarity `s` share at least one band with probability
//! `P(s) = 1 - (1 - s^r)^b`. The expected false-positive rate is the area under `P` below `t`, the
//! expected false-negative rate the area above `P` over `t`; we minimise
//! `fp_weight * FP + fn_weight * FN` over every `(b, r)`, integrating numerically.
//!
//! NOTE: the weights depend on verification. Without it a false positive removes a document
//! wrongly, so both errors count the same (0.5 / 0.5, the classic choice). With it a false
//! positive only costs one exact Jaccard computation, while a false negative is a duplicate that
//! nothing will catch later; we weigh them 0.02 / 0.98, which moves the S-curve left: at t = 0.8
//! and 128 permutations that gives 17 x 7 with P(0.8) = 0.98 instead of 9 x 13 with P(0.8) = 0.40.

/// Weights `(fp, fn)` used when candidate pairs are verified by their true Jaccard.
pub const VERIFIED_WEIGHTS: (f64, f64) = (0.02, 0.98);
/// Weights `(fp, fn)` used when candidates are accepted on their MinHash evidence alone.
pub const UNVERIFIED_WEIGHTS: (f64, f64) = (0.5, 0.5);

/// Probability that two documents of similarity `s` share a band under `b x r` banding.
pub fn collision_probability(s: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

#[allow(clippy::many_single_char_names)] // the textbook names of Simpson's rule
fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    // Simpson's rule; the integrands are smooth polynomials on [0, 1].
    const N: usize = 200;
    let h = (b - a) / N as f64;
    let mut sum = f(a) + f(b);
    for i in 1..N {
        let x = a + i as f64 * h;
        sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(x);
    }
    sum * h / 3.0
}

/// Expected false-positive and false-negative areas of `b x r` banding at threshold `t`.
pub fn error_rates(t: f64, bands: usize, rows: usize) -> (f64, f64) {
    let fp = integrate(|s| collision_probability(s, bands, rows), 0.0, t);
    let fn_ = integrate(|s| 1.0 - collision_probability(s, bands, rows), t, 1.0);
    (fp, fn_)
}

/// The `(bands, rows)` with `bands * rows <= num_perm` minimising the weighted error at `t`.
/// Ties go to fewer bands (less work), then fewer rows.
pub fn optimal_bands(t: f64, num_perm: usize, weights: (f64, f64)) -> (usize, usize) {
    let mut best = (f64::INFINITY, 1, 1);
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let (fp, fn_) = error_rates(t, b, r);
            let err = weights.0 * fp + weights.1 * fn_;
            if err < best.0 - 1e-12 {
                best = (err, b, r);
            }
        }
    }
    (best.1, best.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_and_verified_choices() {
        // The classic (datasketch-style) choice for 0.8 / 128 is 9 x 13.
        assert_eq!(optimal_bands(0.8, 128, UNVERIFIED_WEIGHTS), (9, 13));
        let (b, r) = optimal_bands(0.8, 128, VERIFIED_WEIGHTS);
        assert!(b * r <= 128);
        assert!(collision_probability(0.8, b, r) > 0.97, "{b} x {r}");
        assert!(collision_probability(0.3, b, r) < 0.01, "{b} x {r}");
    }

    #[test]
    fn probability_is_monotone() {
        let mut last = 0.0;
        for i in 0..=100 {
            let p = collision_probability(f64::from(i) / 100.0, 17, 7);
            assert!(p >= last);
            last = p;
        }
    }
}
