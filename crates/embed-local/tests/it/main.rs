//! Integration tests of the local embedder against the real models, which they fetch with
//! `scripts/fetch-model.sh` into `<repo>/models/<name>` when absent: all-MiniLM-L6-v2 on both
//! backends, and bge-small-en-v1.5 (the default) on ONNX Runtime.

mod bge;
mod loading;
mod quality;
mod support;
