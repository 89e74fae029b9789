//! Vector kernels. Written so LLVM auto-vectorises them on the baseline
//! target (SSE2) and wider targets alike, without `unsafe` intrinsics.
//!
//! The build targets baseline x86-64, which has no 256- or 512-bit vector
//! instructions. Each kernel is therefore also compiled for the widest set
//! the CPU reports at run time (AVX2, or AVX-512 where present), through
//! `pulp`'s dispatch: the kernel is inlined into a function compiled for
//! those features and chosen once per call. On graph inserts at 300k
//! vectors this is about 1.4x the baseline build (`ann_bench`).

use std::borrow::Cow;
use std::sync::LazyLock;

use pulp::{Arch, Simd, WithSimd};

use crate::arena::Arena;

/// The instruction sets of this CPU, detected once.
static ARCH: LazyLock<Arch> = LazyLock::new(Arch::new);

/// Independent partial sums. Sixteen lanes are four SSE registers (two AVX),
/// enough independent add chains that the loop is not bound by add latency.
const LANES: usize = 16;

/// Dot product of two equal-length slices.
///
/// The summation order is fixed (per-lane sums, then a fixed tree), so the
/// result is reproducible for the same inputs on the same build; Rust never
/// fuses or reorders float operations behind our back. The lane updates are
/// unrolled by hand: LLVM turns them into SIMD in release builds, and debug
/// builds (where the tests build thousands of vectors) avoid an iterator call
/// per element.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    ARCH.dispatch(DotF32(a, b))
}

struct DotF32<'a>(&'a [f32], &'a [f32]);

impl WithSimd for DotF32<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> f32 {
        dot_kernel(self.0, self.1)
    }
}

#[inline(always)]
fn dot_kernel(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let whole = n - n % LANES;
    let mut s = [0.0f32; LANES];
    let mut i = 0;
    while i < whole {
        let (x, y) = (&a[i..i + LANES], &b[i..i + LANES]);
        s[0] += x[0] * y[0];
        s[1] += x[1] * y[1];
        s[2] += x[2] * y[2];
        s[3] += x[3] * y[3];
        s[4] += x[4] * y[4];
        s[5] += x[5] * y[5];
        s[6] += x[6] * y[6];
        s[7] += x[7] * y[7];
        s[8] += x[8] * y[8];
        s[9] += x[9] * y[9];
        s[10] += x[10] * y[10];
        s[11] += x[11] * y[11];
        s[12] += x[12] * y[12];
        s[13] += x[13] * y[13];
        s[14] += x[14] * y[14];
        s[15] += x[15] * y[15];
        i += LANES;
    }
    let mut tail = 0.0f32;
    while i < n {
        tail += a[i] * b[i];
        i += 1;
    }
    let h = [
        (s[0] + s[8]) + (s[4] + s[12]),
        (s[1] + s[9]) + (s[5] + s[13]),
        (s[2] + s[10]) + (s[6] + s[14]),
        (s[3] + s[11]) + (s[7] + s[15]),
    ];
    ((h[0] + h[2]) + (h[1] + h[3])) + tail
}

/// Loads one word from every cache line of `v` and returns them folded
/// together (callers pass the result to `black_box`).
///
/// Graph search is bound by memory latency: neighbours' vectors are scattered
/// through the arena. These loads are independent of each other, so the CPU
/// issues them for a whole batch of vectors at once and the misses overlap;
/// the dot products that follow then hit cache. This is the safe-Rust
/// substitute for prefetch intrinsics and roughly halves the cost of scoring
/// uncached vectors; on cached data it costs a few L1 hits.
#[inline]
pub(crate) fn touch(v: &[f32]) -> u32 {
    // 16 floats = 64 bytes, the common cache-line size.
    let mut x = 0u32;
    let mut i = 0;
    while i < v.len() {
        x ^= v[i].to_bits();
        i += 16;
    }
    // The arena is not line-aligned, so the last line may be a partial one.
    if let Some(last) = v.last() {
        x ^= last.to_bits();
    }
    x
}

/// Lanes of the int8 kernel: 32 x i32 partial sums (eight SSE registers).
const QLANES: usize = 32;

/// Elements per block of the int8 kernel. Each lane sums at most
/// `QBLOCK / QLANES = 128` products of magnitude <= 127 * 127 before the
/// block is flushed to an `i64`, so no dimension can overflow.
const QBLOCK: usize = 4096;

macro_rules! mac_i8 {
    ($s:ident, $x:ident, $y:ident; $($l:literal)*) => {
        $( $s[$l] += $x[$l] as i32 * $y[$l] as i32; )*
    };
}

/// Exact integer dot product of two int8 code vectors.
///
/// Graph navigation runs on these codes rather than on the f32 vectors: a
/// code vector is a quarter of the bytes, and on a large index the cost of a
/// distance computation is dominated by fetching the vector from memory.
#[inline]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i64 {
    ARCH.dispatch(DotI8(a, b))
}

struct DotI8<'a>(&'a [i8], &'a [i8]);

impl WithSimd for DotI8<'_> {
    type Output = i64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> i64 {
        dot_i8_kernel(self.0, self.1)
    }
}

/// Similarities of one probe to many nodes from int8 codes, into `out`
/// (cleared first): `dot_i8(probe, code(i)) * probe_scale * scales[i]`, with
/// node `i`'s codes in `codes`. One dispatch for the whole batch,
/// and every code vector is [touched](touch_i8) first so the cache misses
/// overlap.
pub(crate) fn code_sims(
    probe: &[i8],
    probe_scale: f32,
    codes: &Arena<i8>,
    scales: &[f32],
    ids: &[u32],
    out: &mut Vec<f32>,
) {
    ARCH.dispatch(CodeSims {
        probe,
        probe_scale,
        codes,
        scales,
        ids,
        out,
    })
}

struct CodeSims<'a> {
    probe: &'a [i8],
    probe_scale: f32,
    codes: &'a Arena<i8>,
    scales: &'a [f32],
    ids: &'a [u32],
    out: &'a mut Vec<f32>,
}

impl WithSimd for CodeSims<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        // Plain loops only: an iterator adapter or closure here may be
        // compiled out of line, without the dispatched features.
        // The scales too: they live apart from the codes, and a miss on each one, taken
        // in turn while scoring, cost about as much as all the code misses overlapped.
        let mut t = 0u32;
        for &i in self.ids {
            t ^= touch_i8(self.codes.node(i as usize)) ^ self.scales[i as usize].to_bits();
        }
        std::hint::black_box(t);
        self.out.clear();
        self.out.reserve(self.ids.len());
        for &i in self.ids {
            let d = dot_i8_kernel(self.probe, self.codes.node(i as usize));
            self.out
                .push(d as f32 * (self.probe_scale * self.scales[i as usize]));
        }
    }
}

#[inline(always)]
fn dot_i8_kernel(a: &[i8], b: &[i8]) -> i64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut total = 0i64;
    let mut start = 0;
    while start < n {
        let end = (start + QBLOCK).min(n);
        let whole = start + (end - start) / QLANES * QLANES;
        let mut s = [0i32; QLANES];
        let mut i = start;
        while i < whole {
            let (x, y) = (&a[i..i + QLANES], &b[i..i + QLANES]);
            mac_i8!(s, x, y; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
                16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
            i += QLANES;
        }
        // Index loop rather than an iterator chain: cheap in debug builds too.
        let mut j = 0;
        while j < QLANES {
            total += s[j] as i64;
            j += 1;
        }
        while i < end {
            total += i64::from(a[i]) * i64::from(b[i]);
            i += 1;
        }
        start = end;
    }
    total
}

/// Symmetric int8 quantisation with one scale per vector: writes the codes
/// of `v` into `out` (of the same length) and returns the scale, so `v[i] ~= codes[i] * scale`.
///
/// The error per component is at most half a step (`max|v| / 254`), which is
/// ample for choosing which nodes to visit; final scores are always
/// recomputed from the f32 vectors.
pub(crate) fn quantize(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        out.fill(0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (code, x) in out.iter_mut().zip(v) {
        *code = (x * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// Like [`touch`] for a code vector.
#[inline(always)]
pub(crate) fn touch_i8(v: &[i8]) -> u32 {
    let mut x = 0u32;
    let mut i = 0;
    while i < v.len() {
        x ^= v[i] as u8 as u32;
        i += 64;
    }
    if let Some(&last) = v.last() {
        x ^= last as u8 as u32;
    }
    x
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
    fn int8_kernel_and_quantisation() {
        for len in [0usize, 1, 31, 32, 33, 100, 384, 5000] {
            let a: Vec<i8> = (0..len).map(|i| ((i * 37) % 255) as i8).collect();
            let b: Vec<i8> = (0..len).map(|i| ((i * 11 + 5) % 255) as i8).collect();
            let naive: i64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| i64::from(*x) * i64::from(*y))
                .sum();
            assert_eq!(dot_i8(&a, &b), naive, "len {len}");
        }
        let extreme = vec![-128i8; 10_000];
        assert_eq!(dot_i8(&extreme, &extreme), 10_000 * 128 * 128);

        let v: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.7).sin()).collect();
        let mut codes = vec![1; 64];
        let scale = quantize(&v, &mut codes);
        for (x, c) in v.iter().zip(&codes) {
            assert!((x - f32::from(*c) * scale).abs() <= scale * 0.5 + 1e-6);
        }
        let approx = dot_i8(&codes, &codes) as f32 * scale * scale;
        assert!((approx - dot(&v, &v)).abs() < 0.02 * dot(&v, &v));
        let mut codes = vec![1; 3];
        assert_eq!(quantize(&[0.0; 3], &mut codes), 0.0);
        assert_eq!(codes, vec![0; 3]);
    }

    #[test]
    fn dispatched_kernels_match_the_baseline_build() {
        // Whatever instructions the CPU offers, the scores are the same bits: the
        // summation order is fixed, and int8 sums are exact.
        let dim = 384;
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|r| {
                (0..dim)
                    .map(|i| ((i * 7 + r * 13) as f32 * 0.29).sin())
                    .collect()
            })
            .collect();
        for pair in rows.windows(2) {
            assert_eq!(
                dot(&pair[0], &pair[1]).to_bits(),
                dot_kernel(&pair[0], &pair[1]).to_bits()
            );
        }
        let mut codes = Arena::new(dim);
        let scales: Vec<f32> = rows
            .iter()
            .map(|r| quantize(r, codes.push_zeroed()))
            .collect();
        let probe = codes.node(3);
        let ids: Vec<u32> = vec![39, 0, 17, 3, 3, 22];
        let mut out = vec![f32::NAN; 2];
        code_sims(probe, scales[3], &codes, &scales, &ids, &mut out);
        assert_eq!(out.len(), ids.len());
        for (&i, &sim) in ids.iter().zip(&out) {
            let code = codes.node(i as usize);
            assert_eq!(dot_i8(probe, code), dot_i8_kernel(probe, code));
            let expected = dot_i8_kernel(probe, code) as f32 * (scales[3] * scales[i as usize]);
            assert_eq!(sim.to_bits(), expected.to_bits());
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
