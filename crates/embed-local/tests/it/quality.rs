//! What the vectors mean: published similarities of all-MiniLM-L6-v2, normalisation,
//! batch/single agreement, truncation and determinism, for both backends.

use astrocyte_core::embed::dot;
use astrocyte_core::{EmbedPurpose, Embedder};
use astrocyte_embed_local::{LocalBackend, LocalEmbedderOptions, MODEL_NAME};

use crate::support::{cosine, embed, embedder, load, max_difference};

const BACKENDS: [LocalBackend; 2] = [LocalBackend::Onnx, LocalBackend::Candle];

/// Cosines published for all-MiniLM-L6-v2 (sentence-transformers' paraphrase-mining and
/// quickstart examples) and reproduced by an independent float64 numpy forward pass of the
/// same weights: a broken tokenizer, pooling or normalisation moves them far.
const PUBLISHED: [(&str, &str, f32); 5] = [
    (
        "The new movie is awesome",
        "The new movie is so great",
        0.8939,
    ),
    (
        "The cat sits outside",
        "The cat plays in the garden",
        0.6788,
    ),
    ("I love pasta", "Do you like pizza?", 0.5096),
    (
        "The weather is lovely today.",
        "He drove to the stadium.",
        0.1046,
    ),
    ("The cat plays in the garden", "Do you like pizza?", 0.0900),
];

#[tokio::test]
async fn similarities_match_the_published_values() {
    let embedder = embedder(LocalBackend::Onnx);
    // The ONNX export has int8 weights, hence a wider band than candle's below.
    for (first, second, published) in PUBLISHED {
        let measured = cosine(embedder, first, second).await;
        assert!(
            (measured - published).abs() <= 0.03,
            "cos({first:?}, {second:?}) = {measured}, published {published}"
        );
    }
}

#[tokio::test]
async fn candle_similarities_match_the_published_values_closely() {
    // candle runs the original f32 weights, so it lands within rounding of the published values.
    // Three pairs only: candle is slow in debug builds.
    let embedder = embedder(LocalBackend::Candle);
    for (first, second, published) in [PUBLISHED[0], PUBLISHED[2], PUBLISHED[4]] {
        let measured = cosine(embedder, first, second).await;
        assert!(
            (measured - published).abs() <= 0.002,
            "cos({first:?}, {second:?}) = {measured}, published {published}"
        );
    }
}

#[tokio::test]
async fn candle_reproduces_the_reference_vector() {
    // The first components of "The new movie is awesome" from the numpy float64 reference.
    let reference = [-0.100443f32, -0.077393, -0.001374, -0.048461, 0.004557];
    let vector = &embed(
        embedder(LocalBackend::Candle),
        &["The new movie is awesome"],
    )
    .await[0];
    assert!(
        max_difference(&vector[..5], &reference) < 1e-4,
        "{:?}",
        &vector[..5]
    );
}

#[tokio::test]
async fn backends_agree() {
    let texts = ["when is the budget meeting?"];
    let onnx = embed(embedder(LocalBackend::Onnx), &texts).await;
    let candle = embed(embedder(LocalBackend::Candle), &texts).await;
    for (onnx_vector, candle_vector) in onnx.iter().zip(&candle) {
        let agreement = dot(onnx_vector, candle_vector);
        assert!(agreement > 0.995, "backends disagree: cosine {agreement}");
    }
}

#[tokio::test]
async fn vectors_are_normalised_with_the_model_dimension() {
    for backend in BACKENDS {
        let embedder = embedder(backend);
        assert_eq!(embedder.model(), MODEL_NAME);
        assert_eq!(embedder.dimension(), 384);
        for vector in embed(
            embedder,
            &["short", "", "A somewhat longer sentence about the weather."],
        )
        .await
        {
            assert_eq!(vector.len(), 384);
            let norm = dot(&vector, &vector).sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{backend:?}: norm {norm}");
        }
    }
}

#[tokio::test]
async fn a_batch_equals_its_texts_embedded_alone() {
    // Different lengths force padding inside the batch, which must not leak into the vectors.
    let texts = [
        "Bob prefers tea.",
        "The quarterly review moved to Thursday because the auditors arrive next month.",
        "ok",
    ];
    for backend in BACKENDS {
        let embedder = embedder(backend);
        // candle is slow in debug builds: two of the texts suffice there.
        let texts = match backend {
            LocalBackend::Onnx => &texts[..],
            LocalBackend::Candle => &texts[..2],
        };
        let batched = embed(embedder, texts).await;
        for (text, batched_vector) in texts.iter().zip(&batched) {
            let single = embed(embedder, &[text]).await;
            let difference = max_difference(&single[0], batched_vector);
            assert!(
                difference < 1e-4,
                "{backend:?}: {text:?} differs by {difference}"
            );
        }
    }
}

#[tokio::test]
async fn long_texts_are_truncated_at_the_model_limit() {
    // Two texts that differ only after 300 words embed identically once cut at 256 tokens.
    let prefix = "apple ".repeat(300);
    let first = format!("{prefix} banana bread");
    let second = format!("{prefix} quantum chromodynamics");
    let vectors = embed(embedder(LocalBackend::Onnx), &[&first, &second]).await;
    assert!(max_difference(&vectors[0], &vectors[1]) < 1e-6);
    let norm = dot(&vectors[0], &vectors[0]).sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
}

#[tokio::test]
async fn max_tokens_sets_the_truncation_point() {
    let embedder = load(LocalEmbedderOptions {
        max_tokens: 6,
        ..LocalEmbedderOptions::default()
    });
    // [CLS] + four words + [SEP]: everything after "one two three four" is cut.
    let vectors = embed(
        &embedder,
        &[
            "one two three four five six",
            "one two three four seven eight",
        ],
    )
    .await;
    assert!(max_difference(&vectors[0], &vectors[1]) < 1e-6);
    let default_vectors = embed(
        crate::support::embedder(LocalBackend::Onnx),
        &[
            "one two three four five six",
            "one two three four seven eight",
        ],
    )
    .await;
    assert!(max_difference(&default_vectors[0], &default_vectors[1]) > 1e-3);
}

#[tokio::test]
async fn small_batches_and_one_thread_give_the_same_vectors() {
    let texts: Vec<String> = (0..5)
        .map(|index| format!("memory number {index} about topic {}", index * 7))
        .collect();
    let reference = embedder(LocalBackend::Onnx)
        .embed(&texts, EmbedPurpose::Document)
        .await
        .expect("embeds");
    let tuned = load(LocalEmbedderOptions {
        max_batch: 2,
        threads: 1,
        ..LocalEmbedderOptions::default()
    });
    let vectors = tuned
        .embed(&texts, EmbedPurpose::Document)
        .await
        .expect("embeds");
    assert_eq!(vectors.len(), texts.len());
    for (vector, expected) in vectors.iter().zip(&reference) {
        assert!(max_difference(vector, expected) < 1e-4);
    }
}

#[tokio::test]
async fn embedding_is_deterministic() {
    for backend in BACKENDS {
        let texts = ["recall this exactly"];
        let first = embed(embedder(backend), &texts).await;
        let second = embed(embedder(backend), &texts).await;
        assert_eq!(first, second, "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_each_get_their_own_vector() {
    // Queries that queue up while a pass runs are merged into one pass; each caller must still
    // get exactly its own vector back.
    let embedder = embedder(LocalBackend::Onnx);
    let queries: Vec<String> = (0..12)
        .map(|index| format!("question {index}: where is meeting {index}?"))
        .collect();
    let expected = embedder
        .embed(&queries, EmbedPurpose::Query)
        .await
        .expect("embeds");
    let answers = futures_join_all(queries.iter().map(|query| {
        let query = vec![query.clone()];
        async move { embedder.embed(&query, EmbedPurpose::Query).await }
    }))
    .await;
    for (answer, expected_vector) in answers.into_iter().zip(&expected) {
        let vectors = answer.expect("embeds");
        assert_eq!(vectors.len(), 1);
        assert!(max_difference(&vectors[0], expected_vector) < 1e-4);
    }
}

/// Runs the futures concurrently on the test runtime and returns their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task completes"));
    }
    outputs
}

#[tokio::test]
async fn an_empty_request_needs_no_model_pass() {
    let vectors = embedder(LocalBackend::Onnx)
        .embed(&[], EmbedPurpose::Query)
        .await
        .expect("embeds nothing");
    assert!(vectors.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_overtakes_a_bulk_retain() {
    // With two texts per pass, 80 texts take 40 passes; a query sent meanwhile must be answered
    // after at most one of them, not after all.
    let embedder = std::sync::Arc::new(load(LocalEmbedderOptions {
        max_batch: 2,
        ..LocalEmbedderOptions::default()
    }));
    let texts: Vec<String> = (0..80)
        .map(|index| format!("bulk memory {index}: the vendor changed its pricing without notice"))
        .collect();
    let bulk = tokio::spawn({
        let embedder = embedder.clone();
        let texts = texts.clone();
        async move { embedder.embed(&texts, EmbedPurpose::Document).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let query = embedder
        .embed(&["where is the vendor?".to_owned()], EmbedPurpose::Query)
        .await
        .expect("query embeds");
    assert!(
        !bulk.is_finished(),
        "the query waited for the whole bulk job"
    );
    assert_eq!(query.len(), 1);
    let bulk_vectors = bulk.await.expect("task completes").expect("bulk embeds");
    assert_eq!(bulk_vectors.len(), texts.len());
    let alone = embed(&embedder, &[texts[79].as_str()]).await;
    assert!(max_difference(&alone[0], &bulk_vectors[79]) < 1e-4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_lane_gives_the_main_lanes_vectors_while_a_bulk_embed_runs() {
    let queries: Vec<String> = ["when is the budget meeting?", "who adopted a cat"]
        .iter()
        .map(|text| (*text).to_owned())
        .collect();
    let shared = load(LocalEmbedderOptions {
        query_threads: 0,
        ..LocalEmbedderOptions::default()
    });
    let expected = shared
        .embed(&queries, EmbedPurpose::Query)
        .await
        .expect("embeds");
    let laned = std::sync::Arc::new(load(LocalEmbedderOptions {
        max_batch: 2,
        ..LocalEmbedderOptions::default()
    }));
    let bulk_texts: Vec<String> = (0..1000)
        .map(|index| format!("memory {index} about the quarterly report and topic {index}"))
        .collect();
    let bulk = {
        let laned = laned.clone();
        tokio::spawn(async move { laned.embed(&bulk_texts, EmbedPurpose::Document).await })
    };
    let vectors = laned
        .embed(&queries, EmbedPurpose::Query)
        .await
        .expect("embeds");
    // Five hundred batches of two: the query, on its own lane, is answered long before.
    assert!(
        !bulk.is_finished(),
        "the bulk embed finished before the query"
    );
    for (vector, expected) in vectors.iter().zip(&expected) {
        assert!(max_difference(vector, expected) < 1e-4);
    }
    assert_eq!(bulk.await.expect("joins").expect("embeds").len(), 1000);
}
