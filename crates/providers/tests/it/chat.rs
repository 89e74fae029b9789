//! The chat client against the fake server: the request it sends, the content it returns, and
//! the shared error and retry policy.

use std::time::Duration;

use astrocyte_core::embed::{ChatMessage, ChatRequest};
use astrocyte_core::{Error, ErrorKind, Llm};
use astrocyte_providers::{OpenAiChat, OpenAiChatConfig};
use serde_json::json;

use crate::fake::{spawn, FakeOptions, Scripted};

fn chat(base_url: &str, api_key: Option<&str>) -> OpenAiChat {
    OpenAiChat::new(OpenAiChatConfig {
        api_key: api_key.map(str::to_owned),
        initial_backoff: Duration::from_millis(5),
        ..OpenAiChatConfig::new(base_url, "gpt-test")
    })
    .expect("test configurations are valid")
}

fn request(max_tokens: Option<usize>, temperature: Option<f32>) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "You summarise memories.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "What did Alice say?".into(),
            },
        ],
        max_tokens,
        temperature,
    }
}

#[tokio::test]
async fn completion_returns_the_first_choice_content() {
    let server = spawn(FakeOptions::default()).await;
    let llm = chat(&server.base_url, Some("sk-chat"));

    let answer = llm.complete(&request(Some(64), Some(0.5))).await;

    assert_eq!(answer.ok().as_deref(), Some("echo: What did Alice say?"));
    assert_eq!(llm.model(), "gpt-test");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-chat"));
    assert_eq!(
        seen[0].body,
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You summarise memories."},
                {"role": "user", "content": "What did Alice say?"},
            ],
            "max_tokens": 64,
            "temperature": 0.5,
        })
    );
}

#[tokio::test]
async fn unset_options_are_left_out_of_the_request() {
    let server = spawn(FakeOptions::default()).await;
    chat(&server.base_url, None)
        .complete(&request(None, None))
        .await
        .expect("completion succeeds");
    let body = &server.seen()[0].body;
    assert!(body.get("max_tokens").is_none() && body.get("temperature").is_none());
    assert_eq!(server.seen()[0].authorization, None);
}

#[tokio::test]
async fn error_status_maps_to_a_provider_error_without_retry() {
    let server = spawn(FakeOptions {
        script: vec![Scripted::error(
            401,
            "Incorrect API key provided: sk-chat-secret",
        )],
        ..FakeOptions::default()
    })
    .await;
    let result = chat(&server.base_url, Some("sk-chat-secret"))
        .complete(&request(None, None))
        .await;
    let error = result.expect_err("a 401 fails the completion");
    assert!(matches!(error, Error::Provider(_)));
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let message = error.to_string();
    assert!(
        message.contains("chat completions")
            && message.contains("401")
            && message.contains("Incorrect API key provided"),
        "unclear message: {message}"
    );
    assert!(!message.contains("sk-chat-secret"), "key leaked: {message}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_like_embeddings() {
    let server = spawn(FakeOptions {
        script: vec![
            Scripted::error(502, "bad gateway"),
            Scripted::error(429, "slow down").with_header("retry-after-ms", "20"),
        ],
        ..FakeOptions::default()
    })
    .await;
    let answer = chat(&server.base_url, None)
        .complete(&request(None, None))
        .await;
    assert_eq!(answer.ok().as_deref(), Some("echo: What did Alice say?"));
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn a_choice_without_text_is_an_error() {
    let server = spawn(FakeOptions {
        script: vec![Scripted {
            status: axum::http::StatusCode::OK,
            headers: Vec::new(),
            body: json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null}}]}),
        }],
        ..FakeOptions::default()
    })
    .await;
    let result = chat(&server.base_url, None)
        .complete(&request(None, None))
        .await;
    let message = result.expect_err("null content fails").to_string();
    assert!(
        message.contains("no text content"),
        "unclear message: {message}"
    );
}
