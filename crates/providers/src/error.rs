//! The providers' error enum and its one mapping into [`astrocyte_core::Error`]. Messages name
//! the endpoint, the HTTP status and the server's own message; they never carry the API key.

use std::time::Duration;

/// Why a provider call or a provider's construction failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderError {
    /// The configuration cannot work (bad URL, zero batch size, unusable API key).
    #[error("invalid provider configuration: {0}")]
    InvalidConfig(String),
    /// The server answered with a non-success status (after retries, for retryable ones).
    #[error("{endpoint} request failed with http {status} after {attempts} attempt(s): {message}")]
    Status {
        /// What was called, e.g. `embeddings`.
        endpoint: &'static str,
        /// Status code and reason phrase.
        status: String,
        /// The server's error message, redacted and truncated.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Every attempt ran into the per-attempt timeout.
    #[error("{endpoint} request timed out after {attempts} attempt(s) of {timeout:?} each")]
    Timeout {
        /// What was called.
        endpoint: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The per-attempt timeout.
        timeout: Duration,
    },
    /// The server could not be reached or the connection broke.
    #[error(
        "{endpoint} request could not reach the provider after {attempts} attempt(s): {detail}"
    )]
    Transport {
        /// What was called.
        endpoint: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The transport error chain.
        detail: String,
    },
    /// A success response that does not have the promised shape.
    #[error("{endpoint} response is malformed: {detail}")]
    MalformedResponse {
        /// What was called.
        endpoint: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The embedding model produced vectors of another dimension than configured.
    #[error("embedding model {model} returned vectors of dimension {actual}, but the configured dimension is {expected}")]
    DimensionMismatch {
        /// The configured model.
        model: String,
        /// The configured dimension.
        expected: usize,
        /// The dimension received.
        actual: usize,
    },
}

/// Result alias of the providers crate's internals.
pub(crate) type Result<T, E = ProviderError> = std::result::Result<T, E>;

impl From<ProviderError> for astrocyte_core::Error {
    fn from(error: ProviderError) -> Self {
        match error {
            // Only constructors return this, so the caller is the operator's configuration.
            ProviderError::InvalidConfig(_) => {
                astrocyte_core::Error::InvalidInput(error.to_string())
            }
            other => astrocyte_core::Error::Provider(other.to_string()),
        }
    }
}
