//! The local embedding model, run in-process on the CPU from a directory that
//! `scripts/fetch-model.sh` fills. Two models:
//! - bge-small-en-v1.5, the default (384 dimensions, `[CLS]` pooled, queries prefixed with its
//!   retrieval instruction; int8 ONNX export): on LoCoMo it raised evidence recall at 10 of
//!   the fused list from 0.743 to 0.753 (`astrocyte eval locomo`) and after the reranker from
//!   about 0.77 to 0.79. Its `model.json` (written by the fetch script) names the model and
//!   how to pool; ONNX Runtime only.
//! - all-MiniLM-L6-v2 (384 dimensions, mean pooled, no prefix), for banks embedded with it;
//!   a directory without `model.json` holds it ([`MODEL_NAME`]).
//!
//! It lives in its own crate so the ML dependencies compile only where the model is used, and
//! it never downloads anything at run time.
//!
//! Two backends run all-MiniLM-L6-v2 in the same embedding space (cosine ≥ 0.995 between them):
//! - [`LocalBackend::Onnx`], the default: ONNX Runtime, loaded dynamically from the
//!   `libonnxruntime.so` of the PyPI `onnxruntime` wheel, running the int8-weight export of the
//!   model (the weights are widened to f32 at load).
//! - [`LocalBackend::Candle`]: candle-transformers' BERT on the original f32 safetensors;
//!   pure Rust and exact to the published similarities, but slower.
//!
//! Why ONNX is the default: on the 2-core target machine a short recall query costs about
//! 2.5–4 ms of CPU with ONNX Runtime against 11–13 ms with candle, and a ~30-token memory in
//! a batch of 32 about 8–10 ms against 16–20 ms (`examples/embed_bench.rs`; candle's f32
//! matrix kernels stop at AVX2 and it runs many small unfused ops). Only ONNX Runtime leaves
//! room for recall's 10 ms p50 budget including the query embedding. Its int8 weights move
//! the published cosines by about 0.002 (0.8920 against 0.8939 for the reference paraphrase
//! pair) and stay at cosine ≥ 0.996 to the f32 model's vectors.
//!
//! Inference runs on dedicated threads (never on the async runtime): a retain lane whose
//! passes use every core, texts sorted by length and padded per batch, and (ONNX) a query
//! lane with its own one-thread session, so a recall query never waits behind a retain's
//! batches and leaves the other core to the keyword search that runs beside it. Requests
//! that queue up on a lane meanwhile share its next pass.
#![deny(missing_docs)]

mod candle_bert;
mod embedder;
mod error;
mod model_files;
mod onnx_bert;
mod pooling;
mod profile;
mod tokenize;

pub use embedder::{LocalBackend, LocalEmbedder, LocalEmbedderOptions, MODEL_NAME};
pub use error::{LocalEmbedError, Result};
pub use model_files::fetch_command;
