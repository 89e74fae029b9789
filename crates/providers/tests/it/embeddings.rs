//! The embeddings client against the fake server: batching and order, auth, dimensions, and the
//! retry policy (5xx, 429 with `Retry-After`, no retry on other 4xx, timeouts, refused connections).

use std::time::{Duration, Instant};

use astrocyte_core::embed::l2_normalize;
use astrocyte_core::{EmbedPurpose, Embedder, Error, ErrorKind};
use astrocyte_providers::{OpenAiEmbedder, OpenAiEmbedderConfig};
use serde_json::json;

use crate::fake::{raw_vector, spawn, FakeOptions, Scripted};

/// A config for `base_url` with pauses short enough for tests.
fn config(base_url: &str, dimension: usize) -> OpenAiEmbedderConfig {
    OpenAiEmbedderConfig {
        initial_backoff: Duration::from_millis(5),
        ..OpenAiEmbedderConfig::new(base_url, "text-embedding-test", dimension)
    }
}

fn embedder(config: OpenAiEmbedderConfig) -> OpenAiEmbedder {
    OpenAiEmbedder::new(config).expect("test configurations are valid")
}

fn texts(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("memory number {i}")).collect()
}

/// Asserts the error is a provider error and returns its message.
fn provider_message(result: astrocyte_core::Result<Vec<Vec<f32>>>) -> String {
    match result {
        Err(error @ Error::Provider(_)) => {
            assert_eq!(error.kind(), ErrorKind::Unavailable);
            error.to_string()
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn batches_inputs_and_keeps_input_order_when_the_server_shuffles() {
    let server = spawn(FakeOptions {
        reverse: true,
        ..FakeOptions::default()
    })
    .await;
    let embedder = embedder(config(&server.base_url, 8));
    let inputs = texts(150);

    let vectors = embedder
        .embed(&inputs, EmbedPurpose::Document)
        .await
        .expect("embedding succeeds");

    assert_eq!(server.requests(), 3);
    let batch_sizes: Vec<usize> = server
        .seen()
        .iter()
        .map(|seen| seen.body["input"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(batch_sizes, vec![64, 64, 22]);
    assert_eq!(vectors.len(), inputs.len());
    for (text, vector) in inputs.iter().zip(&vectors) {
        let mut expected = raw_vector(text, 8);
        l2_normalize(&mut expected);
        assert_eq!(vector, &expected, "vector for {text:?} is out of order");
        let norm: f32 = vector.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5, "vector is not normalised");
    }
    let first = &server.seen()[0].body;
    assert_eq!(first["model"], "text-embedding-test");
    assert!(
        first.get("dimensions").is_none(),
        "dimensions sent without send_dimensions"
    );
}

#[tokio::test]
async fn batch_size_is_configurable() {
    let server = spawn(FakeOptions::default()).await;
    let embedder = embedder(OpenAiEmbedderConfig {
        batch_size: 10,
        ..config(&server.base_url, 8)
    });
    let vectors = embedder.embed(&texts(25), EmbedPurpose::Query).await;
    assert_eq!(vectors.map(|v| v.len()).ok(), Some(25));
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn empty_input_makes_no_request() {
    let server = spawn(FakeOptions::default()).await;
    let vectors = embedder(config(&server.base_url, 8))
        .embed(&[], EmbedPurpose::Document)
        .await;
    assert_eq!(vectors.ok(), Some(Vec::new()));
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn bearer_key_is_sent_only_when_configured() {
    let server = spawn(FakeOptions::default()).await;
    let with_key = embedder(OpenAiEmbedderConfig {
        api_key: Some("sk-test-key".into()),
        ..config(&server.base_url, 8)
    });
    let without_key = embedder(config(&server.base_url, 8));

    with_key
        .embed(&texts(1), EmbedPurpose::Document)
        .await
        .expect("embedding with a key succeeds");
    without_key
        .embed(&texts(1), EmbedPurpose::Document)
        .await
        .expect("embedding without a key succeeds");

    let seen = server.seen();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test-key"));
    assert_eq!(seen[1].authorization, None);
}

#[tokio::test]
async fn dimensions_are_requested_when_asked() {
    let server = spawn(FakeOptions::default()).await;
    let embedder = embedder(OpenAiEmbedderConfig {
        send_dimensions: true,
        ..config(&server.base_url, 4)
    });
    let vectors = embedder
        .embed(&texts(2), EmbedPurpose::Document)
        .await
        .expect("the server honours dimensions");
    assert!(vectors.iter().all(|v| v.len() == 4));
    assert_eq!(server.seen()[0].body["dimensions"], json!(4));
}

#[tokio::test]
async fn dimension_mismatch_is_a_clear_error_without_retry() {
    let server = spawn(FakeOptions::default()).await;
    let result = embedder(config(&server.base_url, 16))
        .embed(&texts(3), EmbedPurpose::Document)
        .await;
    let message = provider_message(result);
    assert!(
        message.contains("text-embedding-test")
            && message.contains("dimension 8")
            && message.contains("16"),
        "unclear message: {message}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn server_error_is_retried_then_succeeds() {
    let server = spawn(FakeOptions {
        script: vec![Scripted::error(500, "upstream exploded")],
        ..FakeOptions::default()
    })
    .await;
    let vectors = embedder(config(&server.base_url, 8))
        .embed(&texts(2), EmbedPurpose::Document)
        .await;
    assert_eq!(vectors.map(|v| v.len()).ok(), Some(2));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn persistent_server_errors_exhaust_the_retries() {
    let server = spawn(FakeOptions {
        script: (0..10)
            .map(|_| Scripted::error(503, "model overloaded"))
            .collect(),
        ..FakeOptions::default()
    })
    .await;
    let result = embedder(OpenAiEmbedderConfig {
        max_retries: 2,
        ..config(&server.base_url, 8)
    })
    .embed(&texts(1), EmbedPurpose::Document)
    .await;
    let message = provider_message(result);
    assert!(
        message.contains("503")
            && message.contains("model overloaded")
            && message.contains("3 attempt"),
        "unclear message: {message}"
    );
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_servers_retry_after() {
    let server = spawn(FakeOptions {
        script: vec![Scripted::error(429, "slow down").with_header("retry-after", "1")],
        ..FakeOptions::default()
    })
    .await;
    let started = Instant::now();
    let vectors = embedder(config(&server.base_url, 8))
        .embed(&texts(1), EmbedPurpose::Document)
        .await;
    let elapsed = started.elapsed();
    assert_eq!(vectors.map(|v| v.len()).ok(), Some(1));
    assert_eq!(server.requests(), 2);
    // The configured backoff is 5 ms, so only Retry-After explains a pause of a second.
    assert!(
        elapsed >= Duration::from_millis(950),
        "retried after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "retried after {elapsed:?}"
    );
}

#[tokio::test]
async fn retry_after_is_capped_by_max_backoff() {
    let server = spawn(FakeOptions {
        script: vec![
            Scripted::error(429, "come back in an hour").with_header("retry-after", "3600")
        ],
        ..FakeOptions::default()
    })
    .await;
    let started = Instant::now();
    let vectors = embedder(OpenAiEmbedderConfig {
        max_backoff: Duration::from_millis(50),
        ..config(&server.base_url, 8)
    })
    .embed(&texts(1), EmbedPurpose::Document)
    .await;
    assert_eq!(vectors.map(|v| v.len()).ok(), Some(1));
    assert_eq!(server.requests(), 2);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = spawn(FakeOptions {
        script: vec![Scripted::error(400, "input is too long")],
        ..FakeOptions::default()
    })
    .await;
    let result = embedder(config(&server.base_url, 8))
        .embed(&texts(1), EmbedPurpose::Document)
        .await;
    let message = provider_message(result);
    assert!(
        message.contains("400") && message.contains("input is too long"),
        "unclear message: {message}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn error_messages_never_contain_the_api_key() {
    let server = spawn(FakeOptions {
        script: vec![Scripted::error(
            401,
            "Incorrect API key provided: sk-leaky-secret",
        )],
        ..FakeOptions::default()
    })
    .await;
    let result = embedder(OpenAiEmbedderConfig {
        api_key: Some("sk-leaky-secret".into()),
        ..config(&server.base_url, 8)
    })
    .embed(&texts(1), EmbedPurpose::Document)
    .await;
    let message = provider_message(result);
    assert!(message.contains("401") && message.contains("Incorrect API key provided"));
    assert!(
        !message.contains("sk-leaky-secret"),
        "key leaked: {message}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn timeouts_are_retried_then_fail_in_bounded_time() {
    let server = spawn(FakeOptions {
        delay: Duration::from_secs(3),
        ..FakeOptions::default()
    })
    .await;
    let started = Instant::now();
    let result = embedder(OpenAiEmbedderConfig {
        timeout: Duration::from_millis(200),
        max_retries: 2,
        ..config(&server.base_url, 8)
    })
    .embed(&texts(1), EmbedPurpose::Document)
    .await;
    let elapsed = started.elapsed();
    let message = provider_message(result);
    assert!(
        message.contains("timed out after 3 attempt"),
        "unclear message: {message}"
    );
    assert_eq!(server.requests(), 3);
    // Three 200 ms attempts plus short pauses; far less than one server delay of 3 s.
    assert!(
        elapsed >= Duration::from_millis(600),
        "gave up after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );
}

#[tokio::test]
async fn refused_connections_are_retried_then_reported() {
    // A port that was just free: nothing listens there any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    drop(listener);
    let result = embedder(OpenAiEmbedderConfig {
        max_retries: 1,
        ..config(&format!("http://{address}"), 8)
    })
    .embed(&texts(1), EmbedPurpose::Document)
    .await;
    let message = provider_message(result);
    assert!(
        message.contains("could not reach") && message.contains("2 attempt"),
        "unclear message: {message}"
    );
}

#[tokio::test]
async fn malformed_success_bodies_are_rejected() {
    let server = spawn(FakeOptions {
        script: vec![Scripted {
            status: axum::http::StatusCode::OK,
            headers: Vec::new(),
            body: json!({"object": "list", "data": []}),
        }],
        ..FakeOptions::default()
    })
    .await;
    let result = embedder(config(&server.base_url, 8))
        .embed(&texts(2), EmbedPurpose::Document)
        .await;
    let message = provider_message(result);
    assert!(
        message.contains("expected 2 embeddings, got 0"),
        "unclear message: {message}"
    );
    assert_eq!(server.requests(), 1);
}
