//! The deterministic hashing embedder, bit-compatible with the reference's offline default so
//! vectors (and therefore dedup and ranking) match it: whitespace tokens, ASCII punctuation
//! stripped from both ends, lower-cased; each token adds 1 at `md5(token) mod dim`; L2-normalised.

use async_trait::async_trait;

use astrocyte_core::embed::l2_normalize;
use astrocyte_core::{EmbedPurpose, Embedder, Result};

/// Bag-of-words vectors through the hashing trick: no model, no network, fully deterministic.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimension: usize,
    model: String,
}

impl HashingEmbedder {
    /// The reference's dimension.
    pub const DEFAULT_DIMENSION: usize = 128;

    /// A hashing embedder of the given dimension (at least 1).
    pub fn new(dimension: usize) -> Self {
        let dimension = dimension.max(1);
        HashingEmbedder {
            dimension,
            model: format!("hashing-md5-{dimension}"),
        }
    }

    /// Embeds one text synchronously.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dimension];
        for raw in text.split_whitespace() {
            let token = raw
                .trim_matches(|c: char| c.is_ascii_punctuation())
                .to_lowercase();
            if token.is_empty() {
                continue;
            }
            vector[bucket(&token, self.dimension)] += 1.0;
        }
        l2_normalize(&mut vector);
        vector
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        HashingEmbedder::new(Self::DEFAULT_DIMENSION)
    }
}

/// `int(md5(token).hexdigest(), 16) % dim`, computed over the digest's big-endian bytes.
fn bucket(token: &str, dimension: usize) -> usize {
    let digest = md5::compute(token.as_bytes());
    digest.0.iter().fold(0u128, |acc, byte| {
        (acc * 256 + *byte as u128) % dimension as u128
    }) as usize
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String], _purpose: EmbedPurpose) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_python_big_integer_modulo() {
        // md5("hello") = 5d41402abc4b2a76b9719d911017c592; as an integer mod 128 = 0x92 & 0x7f = 18,
        // and mod 100 computed in Python is 94.
        assert_eq!(bucket("hello", 128), 18);
        assert_eq!(bucket("hello", 100), 94);
    }

    #[test]
    fn vectors_are_normalised_and_punctuation_insensitive() {
        let e = HashingEmbedder::default();
        let a = e.embed_one("Hello, World!");
        let b = e.embed_one("hello world");
        assert_eq!(a, b);
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(e.embed_one("  ... ").iter().all(|x| *x == 0.0));
    }
}
