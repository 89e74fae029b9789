//! Integration tests of the local embedder against the real model, which they fetch with
//! `scripts/fetch-model.sh` into `<repo>/models/all-MiniLM-L6-v2` when it is absent.

mod loading;
mod quality;
mod support;
