//! Shared fixtures: the fetched model directory and one loaded embedder per backend.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use astrocyte_core::embed::dot;
use astrocyte_core::{EmbedPurpose, Embedder};
use astrocyte_embed_local::{LocalBackend, LocalEmbedder, LocalEmbedderOptions};

/// Returns the model directory, running the fetch script once per test process; the script
/// is idempotent and only verifies checksums when the files are already there.
pub fn model_dir() -> &'static Path {
    static MODEL_DIR: OnceLock<PathBuf> = OnceLock::new();
    MODEL_DIR.get_or_init(|| {
        let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let model_dir = repo_root.join("models/all-MiniLM-L6-v2");
        let status = Command::new("bash")
            .arg(repo_root.join("scripts/fetch-model.sh"))
            .arg(&model_dir)
            .status()
            .expect("bash runs the fetch script");
        assert!(status.success(), "scripts/fetch-model.sh failed: {status}");
        model_dir
    })
}

/// Returns the shared embedder of `backend`, loaded with default options.
pub fn embedder(backend: LocalBackend) -> &'static LocalEmbedder {
    static ONNX: OnceLock<LocalEmbedder> = OnceLock::new();
    static CANDLE: OnceLock<LocalEmbedder> = OnceLock::new();
    let cell = match backend {
        LocalBackend::Onnx => &ONNX,
        LocalBackend::Candle => &CANDLE,
    };
    cell.get_or_init(|| {
        load(LocalEmbedderOptions {
            backend,
            ..LocalEmbedderOptions::default()
        })
    })
}

/// Loads a fresh embedder with `options` from the fetched model.
pub fn load(options: LocalEmbedderOptions) -> LocalEmbedder {
    LocalEmbedder::load(model_dir(), options).expect("the fetched model loads")
}

/// Embeds `texts` as documents.
pub async fn embed(embedder: &LocalEmbedder, texts: &[&str]) -> Vec<Vec<f32>> {
    let owned: Vec<String> = texts.iter().map(|text| (*text).to_owned()).collect();
    embedder
        .embed(&owned, EmbedPurpose::Document)
        .await
        .expect("embedding succeeds")
}

/// Cosine similarity of two texts embedded in one batch.
pub async fn cosine(embedder: &LocalEmbedder, first: &str, second: &str) -> f32 {
    let vectors = embed(embedder, &[first, second]).await;
    dot(&vectors[0], &vectors[1])
}

/// Largest absolute component difference.
pub fn max_difference(first: &[f32], second: &[f32]) -> f32 {
    assert_eq!(first.len(), second.len());
    first
        .iter()
        .zip(second)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
