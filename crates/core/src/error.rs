//! The core error type every layer maps into: variants are named for causes and carry a
//! small closed [`ErrorKind`] from which transports derive status codes in one place.

use crate::tenancy::{IdentifierError, TenancyError};

/// The class of an error, as transports see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid (HTTP 400).
    InvalidInput,
    /// The named thing does not exist (404).
    NotFound,
    /// The request conflicts with stored state (409).
    Conflict,
    /// The caller may not do this (403).
    Forbidden,
    /// The capability is not supported by this deployment (501).
    Unsupported,
    /// A dependency (database, embedding or LLM provider) is unavailable (503).
    Unavailable,
    /// Our fault (500).
    Internal,
}

/// Errors of the memory engine, its stores and its providers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input failed validation; the message says which field and rule.
    #[error("{0}")]
    InvalidInput(String),
    /// A tenant, bank or memory was not found.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with existing state (e.g. tenant already exists).
    #[error("{0}")]
    Conflict(String),
    /// An identifier (schema/table/function) failed the identifier rule.
    #[error(transparent)]
    Identifier(#[from] IdentifierError),
    /// Tenancy misuse, e.g. strict mode with no tenant bound.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// The store was built for a different embedding space than the configured embedder.
    #[error("embedding dimension mismatch: store holds {stored_model} vectors of dimension {stored}, embedder {model} produces {configured}")]
    DimensionMismatch {
        /// Model recorded in the store.
        stored_model: String,
        /// Dimension recorded in the store.
        stored: usize,
        /// Model configured now.
        model: String,
        /// Dimension configured now.
        configured: usize,
    },
    /// Access was denied.
    #[error("{0}")]
    Forbidden(String),
    /// Not supported by this deployment.
    #[error("{0}")]
    Unsupported(String),
    /// An embedding or LLM provider failed or timed out.
    #[error("provider unavailable: {0}")]
    Provider(String),
    /// The storage backend failed; details are for logs.
    #[error("storage error: {0}")]
    Storage(String),
    /// The storage backend cannot be reached right now (connection refused or lost, server
    /// shutting down, pool exhausted): retrying later may succeed. Details are for logs.
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    /// Local file I/O failed (export/import, data directory).
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    /// A bug or broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) | Error::Identifier(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) | Error::DimensionMismatch { .. } => ErrorKind::Conflict,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Provider(_) | Error::StorageUnavailable(_) => ErrorKind::Unavailable,
            Error::Tenancy(_) | Error::Storage(_) | Error::Io(_) | Error::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// Shorthand for [`Error::Storage`] from any displayable driver error.
    pub fn storage(error: impl std::fmt::Display) -> Self {
        Error::Storage(error.to_string())
    }
}

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
