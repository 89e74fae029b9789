//! The OpenAI-compatible embeddings client: batches inputs to `POST {base_url}/v1/embeddings`,
//! restores input order from each item's `index`, checks the dimension and L2-normalises. It
//! does not cache, rate-limit across calls or add per-purpose prompt prefixes.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use astrocyte_core::embed::l2_normalize;
use astrocyte_core::{EmbedPurpose, Embedder};

use crate::error::{ProviderError, Result};
use crate::http::{JsonEndpoint, RetryPolicy, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF};

/// Names the endpoint in errors and logs.
const ENDPOINT: &str = "embeddings";

/// Settings of an [`OpenAiEmbedder`]; [`OpenAiEmbedderConfig::new`] fills the defaults.
#[derive(Clone)]
pub struct OpenAiEmbedderConfig {
    /// Server root without `/v1`, e.g. `https://api.openai.com`; requests go to
    /// `{base_url}/v1/embeddings`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set and non-empty; never logged or shown.
    pub api_key: Option<String>,
    /// Model name sent with every request and recorded by stores.
    pub model: String,
    /// The dimension every returned vector must have.
    pub dimension: usize,
    /// Also send `"dimensions": dimension`, for models that can shorten their vectors
    /// (OpenAI's `text-embedding-3-*`); older models and some servers reject the field.
    /// Default `false`.
    pub send_dimensions: bool,
    /// Texts per request. Default 64.
    pub batch_size: usize,
    /// Per-attempt timeout, connection through body. Default 30 s.
    pub timeout: Duration,
    /// Retries after a timeout, connection error, 429 or 5xx. Default 3.
    pub max_retries: u32,
    /// Pause before the first retry, doubled for each further one. Default 500 ms.
    pub initial_backoff: Duration,
    /// Cap on any pause, including one a server asks for with `Retry-After`. Default 20 s.
    pub max_backoff: Duration,
}

impl OpenAiEmbedderConfig {
    /// Default texts per request.
    pub const DEFAULT_BATCH_SIZE: usize = 64;
    /// Default per-attempt timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default retries.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;

    /// Returns a configuration with no API key and the documented defaults.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, dimension: usize) -> Self {
        OpenAiEmbedderConfig {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            dimension,
            send_dimensions: false,
            batch_size: Self::DEFAULT_BATCH_SIZE,
            timeout: Self::DEFAULT_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl fmt::Debug for OpenAiEmbedderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedderConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .field("send_dimensions", &self.send_dimensions)
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// An [`Embedder`] backed by any server that speaks OpenAI's embeddings API (OpenAI, Azure
/// proxies, vLLM, Ollama, LiteLLM, …).
#[derive(Debug)]
pub struct OpenAiEmbedder {
    endpoint: JsonEndpoint,
    model: String,
    dimension: usize,
    send_dimensions: bool,
    batch_size: usize,
}

impl OpenAiEmbedder {
    /// Builds the client; fails with [`astrocyte_core::Error::InvalidInput`] on an unusable
    /// configuration (bad URL, zero dimension, batch size or timeout, API key that is not a
    /// valid header value). No request is made.
    pub fn new(config: OpenAiEmbedderConfig) -> astrocyte_core::Result<Self> {
        if config.dimension == 0 {
            return Err(ProviderError::InvalidConfig("dimension must be at least 1".into()).into());
        }
        if config.batch_size == 0 {
            return Err(
                ProviderError::InvalidConfig("batch size must be at least 1".into()).into(),
            );
        }
        if config.model.trim().is_empty() {
            return Err(ProviderError::InvalidConfig("model must not be empty".into()).into());
        }
        let endpoint = JsonEndpoint::new(
            &config.base_url,
            "/v1/embeddings",
            ENDPOINT,
            config.api_key.as_deref(),
            config.timeout,
            RetryPolicy {
                max_retries: config.max_retries,
                initial_backoff: config.initial_backoff,
                max_backoff: config.max_backoff,
            },
        )?;
        Ok(OpenAiEmbedder {
            endpoint,
            model: config.model,
            dimension: config.dimension,
            send_dimensions: config.send_dimensions,
            batch_size: config.batch_size,
        })
    }

    /// Embeds one request's worth of texts.
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let request = EmbeddingsRequest {
            model: &self.model,
            input: texts,
            dimensions: self.send_dimensions.then_some(self.dimension),
        };
        let response: EmbeddingsResponse = self.endpoint.post(&request).await?;
        let mut vectors = order_by_index(response.data, texts.len())?;
        for vector in &mut vectors {
            if vector.len() != self.dimension {
                return Err(ProviderError::DimensionMismatch {
                    model: self.model.clone(),
                    expected: self.dimension,
                    actual: vector.len(),
                });
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(ProviderError::MalformedResponse {
                    endpoint: ENDPOINT,
                    detail: "embedding contains a non-finite value".into(),
                });
            }
            l2_normalize(vector);
        }
        Ok(vectors)
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    /// Sends the texts in batches of `batch_size`, one batch at a time, and fails as a whole
    /// if any batch fails. OpenAI embeds documents and queries alike, so `purpose` is unused.
    #[instrument(name = "openai_embed", skip_all, fields(model = %self.model, texts = texts.len()))]
    async fn embed(
        &self,
        texts: &[String],
        _purpose: EmbedPurpose,
    ) -> astrocyte_core::Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    /// Position of the input this answers; servers may return items in any order.
    #[serde(default)]
    index: Option<usize>,
}

/// Puts items into input order by `index` (by position for servers that omit it), requiring
/// exactly one item per input.
fn order_by_index(items: Vec<EmbeddingItem>, inputs: usize) -> Result<Vec<Vec<f32>>> {
    let malformed = |detail: String| ProviderError::MalformedResponse {
        endpoint: ENDPOINT,
        detail,
    };
    if items.len() != inputs {
        return Err(malformed(format!(
            "expected {inputs} embeddings, got {}",
            items.len()
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (position, item) in items.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        let slot = slots.get_mut(index).ok_or_else(|| {
            malformed(format!("index {index} is out of range for {inputs} inputs"))
        })?;
        if slot.replace(item.embedding).is_some() {
            return Err(malformed(format!("index {index} appears twice")));
        }
    }
    // Invariant: `inputs` items landed in distinct slots of `inputs`, so every slot is full.
    Ok(slots
        .into_iter()
        .map(|slot| slot.expect("n distinct indices below n fill all n slots"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: f32, index: Option<usize>) -> EmbeddingItem {
        EmbeddingItem {
            embedding: vec![value],
            index,
        }
    }

    #[test]
    fn items_are_put_in_index_order() {
        let ordered = order_by_index(
            vec![item(2.0, Some(2)), item(0.0, Some(0)), item(1.0, Some(1))],
            3,
        );
        assert_eq!(ordered.ok(), Some(vec![vec![0.0], vec![1.0], vec![2.0]]));
        let positional = order_by_index(vec![item(0.0, None), item(1.0, None)], 2);
        assert_eq!(positional.ok(), Some(vec![vec![0.0], vec![1.0]]));
    }

    #[test]
    fn missing_duplicate_and_out_of_range_indices_are_rejected() {
        assert!(order_by_index(vec![item(0.0, Some(0))], 2).is_err());
        assert!(order_by_index(vec![item(0.0, Some(1)), item(1.0, Some(1))], 2).is_err());
        assert!(order_by_index(vec![item(0.0, Some(0)), item(1.0, Some(5))], 2).is_err());
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let mut config = OpenAiEmbedderConfig::new("http://127.0.0.1:1", "m", 4);
        config.api_key = Some("sk-very-secret".into());
        assert!(!format!("{config:?}").contains("sk-very-secret"));
        let embedder = OpenAiEmbedder::new(config).map(|e| format!("{e:?}"));
        assert!(embedder.is_ok_and(|debug| !debug.contains("sk-very-secret")));
    }

    #[test]
    fn unusable_configurations_are_invalid_input() {
        let base = OpenAiEmbedderConfig::new("http://127.0.0.1:1", "m", 4);
        let zero_batch = OpenAiEmbedderConfig {
            batch_size: 0,
            ..base.clone()
        };
        let zero_dimension = OpenAiEmbedderConfig {
            dimension: 0,
            ..base.clone()
        };
        let bad_url = OpenAiEmbedderConfig {
            base_url: "127.0.0.1:8080".into(),
            ..base
        };
        for config in [zero_batch, zero_dimension, bad_url] {
            let kind = OpenAiEmbedder::new(config).err().map(|e| e.kind());
            assert_eq!(kind, Some(astrocyte_core::ErrorKind::InvalidInput));
        }
    }
}
