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
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
