//! The embedding and LLM provider contracts; implementations live in the providers crate.

use async_trait::async_trait;

use crate::error::Result;

/// Whether a text is being stored or searched for (some models embed the two differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedPurpose {
    /// A memory being retained.
    Document,
    /// A recall query.
    Query,
}

/// Turns texts into L2-normalised vectors of a fixed dimension.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Model name, recorded per store so a model change is detected.
    fn model(&self) -> &str;

    /// Vector dimension.
    fn dimension(&self) -> usize;

    /// Embeds a batch; the result has one vector per input, in order.
    async fn embed(&self, texts: &[String], purpose: EmbedPurpose) -> Result<Vec<Vec<f32>>>;
}

/// A chat message for an [`Llm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on the answer's tokens.
    pub max_tokens: Option<usize>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

/// A language model used by reflect when configured.
#[async_trait]
pub trait Llm: Send + Sync {
    /// Model name.
    fn model(&self) -> &str;

    /// Completes a chat and returns the assistant's text.
    async fn complete(&self, request: &ChatRequest) -> Result<String>;
}

/// Scales `vector` to unit length in place (a zero vector stays zero).
pub fn l2_normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product; equals cosine similarity for normalised vectors.
///
/// Eight independent partial sums, so the compiler can keep them in vector registers: a
/// single running sum is one dependent add per element, and this runs for every pair of a
/// retained batch (the within-batch near-duplicate check) and every rescored candidate.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut sums = [0.0f32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    let whole = n - n % LANES;
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    ((sums[0] + sums[4]) + (sums[1] + sums[5])) + ((sums[2] + sums[6]) + (sums[3] + sums[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_wide_sum_at_every_length() {
        for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 383, 384, 385] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let wide: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - wide).abs() < 1e-4, "length {len}");
        }
        // Unequal lengths: the shorter one decides, as with `zip`.
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }
}
