//! Embedding and LLM providers implementing core's [`astrocyte_core::Embedder`] and
//! [`astrocyte_core::Llm`]. Each provider lives in its own module; nothing here knows about
//! stores or transports.
#![deny(missing_docs)]

pub mod chat;
mod error;
pub mod hashing;
mod http;
pub mod openai;

pub use chat::{OpenAiChat, OpenAiChatConfig};
pub use hashing::HashingEmbedder;
pub use openai::{OpenAiEmbedder, OpenAiEmbedderConfig};
