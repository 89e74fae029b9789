//! Integration tests of the OpenAI-compatible providers against a local HTTP server that speaks
//! the OpenAI wire format; no real provider is contacted.

mod chat;
mod embeddings;
mod fake;
