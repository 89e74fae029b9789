//! The OpenAI-compatible chat client: `POST {base_url}/v1/chat/completions` and the first
//! choice's text. It does not stream, call tools or track token usage.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use astrocyte_core::embed::ChatRequest;
use astrocyte_core::Llm;

use crate::error::{ProviderError, Result};
use crate::http::{JsonEndpoint, RetryPolicy, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF};

/// Names the endpoint in errors and logs.
const ENDPOINT: &str = "chat completions";

/// Settings of an [`OpenAiChat`]; [`OpenAiChatConfig::new`] fills the defaults.
#[derive(Clone)]
pub struct OpenAiChatConfig {
    /// Server root without `/v1`, e.g. `https://api.openai.com`; requests go to
    /// `{base_url}/v1/chat/completions`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set and non-empty; never logged or shown.
    pub api_key: Option<String>,
    /// Model name sent with every request.
    pub model: String,
    /// Per-attempt timeout, connection through body. Default 120 s: completions are slow.
    pub timeout: Duration,
    /// Retries after a timeout, connection error, 429 or 5xx. Default 3.
    pub max_retries: u32,
    /// Pause before the first retry, doubled for each further one. Default 500 ms.
    pub initial_backoff: Duration,
    /// Cap on any pause, including one a server asks for with `Retry-After`. Default 20 s.
    pub max_backoff: Duration,
}

impl OpenAiChatConfig {
    /// Default per-attempt timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// Default retries.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;

    /// Returns a configuration with no API key and the documented defaults.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiChatConfig {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl fmt::Debug for OpenAiChatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiChatConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// An [`Llm`] backed by any server that speaks OpenAI's chat completions API.
#[derive(Debug)]
pub struct OpenAiChat {
    endpoint: JsonEndpoint,
    model: String,
}

impl OpenAiChat {
    /// Builds the client; fails with [`astrocyte_core::Error::InvalidInput`] on an unusable
    /// configuration (bad URL, empty model, zero timeout, API key that is not a valid header
    /// value). No request is made.
    pub fn new(config: OpenAiChatConfig) -> astrocyte_core::Result<Self> {
        if config.model.trim().is_empty() {
            return Err(ProviderError::InvalidConfig("model must not be empty".into()).into());
        }
        let endpoint = JsonEndpoint::new(
            &config.base_url,
            "/v1/chat/completions",
            ENDPOINT,
            config.api_key.as_deref(),
            config.timeout,
            RetryPolicy {
                max_retries: config.max_retries,
                initial_backoff: config.initial_backoff,
                max_backoff: config.max_backoff,
            },
        )?;
        Ok(OpenAiChat {
            endpoint,
            model: config.model,
        })
    }

    async fn complete_inner(&self, request: &ChatRequest) -> Result<String> {
        let wire = CompletionRequest {
            model: &self.model,
            messages: request
                .messages
                .iter()
                .map(|message| WireMessage {
                    role: &message.role,
                    content: &message.content,
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        };
        let response: CompletionResponse = self.endpoint.post(&wire).await?;
        let malformed = |detail: &str| ProviderError::MalformedResponse {
            endpoint: ENDPOINT,
            detail: detail.into(),
        };
        let choice = response
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| malformed("no choices"))?;
        // A null content means the model answered with something else (a refusal, tool calls).
        choice
            .message
            .content
            .ok_or_else(|| malformed("the first choice has no text content"))
    }
}

#[async_trait]
impl Llm for OpenAiChat {
    fn model(&self) -> &str {
        &self.model
    }

    /// Returns `choices[0].message.content`.
    #[instrument(name = "openai_chat", skip_all, fields(model = %self.model, messages = request.messages.len()))]
    async fn complete(&self, request: &ChatRequest) -> astrocyte_core::Result<String> {
        Ok(self.complete_inner(request).await?)
    }
}

#[derive(Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct CompletionResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: AssistantMessage,
}

#[derive(Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_api_key() {
        let mut config = OpenAiChatConfig::new("http://127.0.0.1:1", "m");
        config.api_key = Some("sk-very-secret".into());
        assert!(!format!("{config:?}").contains("sk-very-secret"));
        let chat = OpenAiChat::new(config).map(|c| format!("{c:?}"));
        assert!(chat.is_ok_and(|debug| !debug.contains("sk-very-secret")));
    }

    #[test]
    fn empty_model_is_invalid_input() {
        let kind = OpenAiChat::new(OpenAiChatConfig::new("http://127.0.0.1:1", " "))
            .err()
            .map(|e| e.kind());
        assert_eq!(kind, Some(astrocyte_core::ErrorKind::InvalidInput));
    }
}
