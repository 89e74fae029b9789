//! Embedding and LLM providers implementing core's [`astrocyte_core::Embedder`] and
//! [`astrocyte_core::Llm`]. Each provider lives in its own module; nothing here knows about
//! stores or transports.
#![deny(missing_docs)]

pub mod hashing;

pub use hashing::HashingEmbedder;
