//! Deterministic synthetic data shared by the integration tests and the
//! `ann_bench` example (included there with `#[path]`).
#![allow(dead_code)]

/// SplitMix64 generator: tiny, seedable, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn gauss(&mut self) -> f32 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

pub fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Clustered unit vectors resembling text embeddings: points are drawn
/// around `clusters` centres in a `latent`-dimensional space, projected to
/// `dim` dimensions by a fixed random matrix, then given a little isotropic
/// noise. `latent == 0` means no projection: centres and noise live in the
/// full `dim`-dimensional space (much harder for any ANN index).
pub struct Clustered {
    dim: usize,
    latent: usize,
    projection: Vec<f32>,
    centres: Vec<Vec<f32>>,
    spread: f32,
    noise: f32,
    rng: Rng,
}

impl Clustered {
    pub fn new(dim: usize, clusters: usize, latent: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let space = if latent == 0 { dim } else { latent };
        let projection = if latent == 0 {
            Vec::new()
        } else {
            let s = 1.0 / (latent as f32).sqrt();
            (0..latent * dim).map(|_| rng.gauss() * s).collect()
        };
        let centres = (0..clusters.max(1))
            .map(|_| (0..space).map(|_| rng.gauss()).collect())
            .collect();
        Self {
            dim,
            latent,
            projection,
            centres,
            spread: 0.5,
            noise: 0.05,
            rng,
        }
    }

    pub fn sample(&mut self) -> Vec<f32> {
        let c = (self.rng.next_u64() % self.centres.len() as u64) as usize;
        let space = self.centres[c].len();
        let mut z: Vec<f32> = (0..space)
            .map(|i| self.centres[c][i] + self.spread * self.rng.gauss())
            .collect();
        let mut v = if self.latent == 0 {
            std::mem::take(&mut z)
        } else {
            let mut v = vec![0.0f32; self.dim];
            for (l, &zl) in z.iter().enumerate() {
                let row = &self.projection[l * self.dim..(l + 1) * self.dim];
                for (o, p) in v.iter_mut().zip(row) {
                    *o += zl * p;
                }
            }
            v
        };
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        for x in v.iter_mut() {
            *x = *x / n + self.noise / (self.dim as f32).sqrt() * self.rng.gauss();
        }
        normalise(&mut v);
        v
    }

    pub fn take(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| self.sample()).collect()
    }
}

/// Fraction of `exact` keys present in `approx`.
pub fn recall(approx: &[(u64, f32)], exact: &[(u64, f32)]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let hits = exact
        .iter()
        .filter(|(k, _)| approx.iter().any(|(a, _)| a == k))
        .count();
    hits as f64 / exact.len() as f64
}
