//! Vector kernels. Written so LLVM auto-vectorises them on the baseline
//! target (SSE2) and wider targets alike, without `unsafe` intrinsics.

use std::borrow::Cow;

/// Lanes per accumulator block. Sixteen independent partial sums keep several
/// SIMD registers busy so the loop is not bound by add latency.
const LANES: usize = 16;

/// Dot product of two equal-length slices.
///
/// The summation order is fixed (lane-wise, then a fixed tree), so the result
/// is bit-for-bit reproducible for the same inputs on the same build.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    let mut tail = 0.0f32;
    for (p, q) in ra.iter().zip(rb) {
        tail += p * q;
    }
    // Fixed reduction tree.
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

/// Returns `v` scaled to unit length.
///
/// Vectors that are already unit length (within a small tolerance) are
/// returned unchanged so that callers who normalise themselves get back
/// exactly the scores they would compute. The zero vector stays zero (its
/// cosine with anything is defined here as 0). Returns `None` if any
/// component is not finite.
pub(crate) fn normalised(v: &[f32]) -> Option<Cow<'_, [f32]>> {
    // f64 so that large-but-finite components cannot overflow the norm.
    let mut n2 = 0.0f64;
    for &x in v {
        if !x.is_finite() {
            return None;
        }
        n2 += f64::from(x) * f64::from(x);
    }
    if n2 == 0.0 || (n2 - 1.0).abs() <= 1e-5 {
        return Some(Cow::Borrowed(v));
    }
    let inv = 1.0 / n2.sqrt();
    Some(Cow::Owned(
        v.iter().map(|&x| (f64::from(x) * inv) as f32).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        for len in [0usize, 1, 7, 8, 15, 16, 17, 33, 64, 100, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn normalise_behaviour() {
        let unit = [0.6f32, 0.8];
        assert!(matches!(normalised(&unit), Some(Cow::Borrowed(_))));
        let v = normalised(&[3.0, 4.0]).expect("finite");
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let zero = normalised(&[0.0, 0.0]).expect("finite");
        assert_eq!(&*zero, &[0.0, 0.0]);
        assert!(normalised(&[f32::NAN, 1.0]).is_none());
        assert!(normalised(&[f32::INFINITY]).is_none());
        let big = normalised(&[3.0e38, 3.0e38]).expect("finite");
        assert!((dot(&big, &big) - 1.0).abs() < 1e-5);
    }
}
