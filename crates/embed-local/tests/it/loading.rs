//! Loading failures: a missing model names the exact fetch command; bad options are refused.

use std::path::PathBuf;

use astrocyte_core::ErrorKind;
use astrocyte_embed_local::{fetch_command, LocalBackend, LocalEmbedder, LocalEmbedderOptions};

use crate::support::model_dir;

#[test]
fn a_missing_model_names_the_fetch_command() {
    let empty = tempfile::tempdir().expect("temp dir");
    for backend in [LocalBackend::Onnx, LocalBackend::Candle] {
        let error = LocalEmbedder::load(
            empty.path(),
            LocalEmbedderOptions {
                backend,
                ..LocalEmbedderOptions::default()
            },
        )
        .expect_err("no model in an empty directory");
        let message = error.to_string();
        let command = format!("bash scripts/fetch-model.sh {}", empty.path().display());
        assert_eq!(fetch_command(empty.path()), command);
        assert!(message.contains(&command), "{backend:?}: {message}");
        assert!(message.contains("tokenizer.json"), "{backend:?}: {message}");
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
}

#[test]
fn an_absent_onnxruntime_library_is_reported_by_path() {
    let library = PathBuf::from("/nonexistent/libonnxruntime.so");
    let error = LocalEmbedder::load(
        model_dir(),
        LocalEmbedderOptions {
            onnxruntime_library: Some(library.clone()),
            ..LocalEmbedderOptions::default()
        },
    )
    .expect_err("the library does not exist");
    assert!(
        error.to_string().contains("/nonexistent/libonnxruntime.so"),
        "{error}"
    );
}

#[test]
fn out_of_range_options_are_refused() {
    for options in [
        LocalEmbedderOptions {
            max_tokens: 513,
            ..LocalEmbedderOptions::default()
        },
        LocalEmbedderOptions {
            max_batch: 0,
            ..LocalEmbedderOptions::default()
        },
    ] {
        let error = LocalEmbedder::load(model_dir(), options).expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    }
}

#[tokio::test]
async fn a_relative_model_dir_loads() {
    // Integration tests run in the package directory, so this is the fetched model.
    // Fetched first: the relative path only exists once the model is there.
    let fetched = std::fs::canonicalize(model_dir()).expect("model dir exists");
    let relative = std::path::Path::new("../../models/all-MiniLM-L6-v2");
    assert_eq!(
        std::fs::canonicalize(relative).expect("model dir exists"),
        fetched
    );
    let embedder = LocalEmbedder::load(relative, LocalEmbedderOptions::default()).expect("loads");
    let vectors = astrocyte_core::Embedder::embed(
        &embedder,
        &["hello".to_owned()],
        astrocyte_core::EmbedPurpose::Query,
    )
    .await
    .expect("embeds");
    assert_eq!(vectors[0].len(), 384);
}
