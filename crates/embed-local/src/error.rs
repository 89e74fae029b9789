//! Errors of the local embedding model and their mapping into [`astrocyte_core::Error`];
//! nothing here retries or falls back to another embedder.

use std::path::PathBuf;

/// What can go wrong loading or running the local model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocalEmbedError {
    /// The model directory lacks one of the files the model needs.
    #[error("local embedding model not found in {dir}: missing {missing}; fetch it with `{fetch_command}` (from the repository root)")]
    ModelMissing {
        /// The directory that was searched.
        dir: PathBuf,
        /// The missing file names, comma separated.
        missing: String,
        /// The exact command that fetches the model into `dir`.
        fetch_command: String,
    },
    /// A model file exists but cannot be read or parsed.
    #[error("cannot load {path}: {message}")]
    ModelFile {
        /// The offending file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// An option is out of range.
    #[error("invalid local embedder option: {0}")]
    InvalidOption(String),
    /// Tokenizing an input failed.
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    /// The inference backend failed.
    #[error("local model inference failed: {0}")]
    Inference(String),
    /// The inference worker thread is gone (it panicked or could not start).
    #[error("local embedding worker is not running")]
    WorkerStopped,
}

impl From<candle_core::Error> for LocalEmbedError {
    fn from(error: candle_core::Error) -> Self {
        LocalEmbedError::Inference(error.to_string())
    }
}

impl From<LocalEmbedError> for astrocyte_core::Error {
    fn from(error: LocalEmbedError) -> Self {
        match error {
            LocalEmbedError::InvalidOption(_) => {
                astrocyte_core::Error::InvalidInput(error.to_string())
            }
            LocalEmbedError::ModelMissing { .. }
            | LocalEmbedError::ModelFile { .. }
            | LocalEmbedError::WorkerStopped => astrocyte_core::Error::Provider(error.to_string()),
            LocalEmbedError::Tokenizer(_) | LocalEmbedError::Inference(_) => {
                astrocyte_core::Error::Internal(error.to_string())
            }
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = LocalEmbedError> = std::result::Result<T, E>;
