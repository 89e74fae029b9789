//! A fake OpenAI-compatible server on 127.0.0.1:0: serves `/v1/embeddings` and
//! `/v1/chat/completions`, counts and records requests, and plays scripted failures first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// A response the server gives instead of its normal answer, in order, one per request.
pub struct Scripted {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Value,
}

impl Scripted {
    /// An OpenAI-style error body with the given status.
    pub fn error(status: u16, message: &str) -> Scripted {
        Scripted {
            status: StatusCode::from_u16(status).expect("tests use valid status codes"),
            headers: Vec::new(),
            body: json!({"error": {"message": message, "type": "test_error", "code": null}}),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Scripted {
        self.headers.push((name, value));
        self
    }
}

/// How the fake behaves.
pub struct FakeOptions {
    /// Dimension of returned vectors unless the request names `dimensions`.
    pub native_dimension: usize,
    /// Return embedding items in reverse order (their `index` still tells the truth).
    pub reverse: bool,
    /// Sleep before answering each request.
    pub delay: Duration,
    /// Responses served before normal behaviour resumes.
    pub script: Vec<Scripted>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            native_dimension: 8,
            reverse: false,
            delay: Duration::ZERO,
            script: Vec::new(),
        }
    }
}

/// What one request carried.
#[derive(Clone, Debug)]
pub struct Seen {
    pub authorization: Option<String>,
    pub body: Value,
}

struct Fake {
    requests: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    script: Mutex<VecDeque<Scripted>>,
    native_dimension: usize,
    reverse: bool,
    delay: Duration,
}

/// A running fake server.
pub struct FakeServer {
    pub base_url: String,
    fake: Arc<Fake>,
}

impl FakeServer {
    /// Requests received so far, answered or not.
    pub fn requests(&self) -> usize {
        self.fake.requests.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.fake.seen.lock().expect("seen lock").clone()
    }
}

/// Starts a fake server on a free loopback port.
pub async fn spawn(options: FakeOptions) -> FakeServer {
    let fake = Arc::new(Fake {
        requests: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
        script: Mutex::new(options.script.into()),
        native_dimension: options.native_dimension,
        reverse: options.reverse,
        delay: options.delay,
    });
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/chat/completions", post(chat))
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeServer {
        base_url: format!("http://{address}"),
        fake,
    }
}

/// The vector the fake returns for `text` before normalisation: a hash per component, so
/// distinct texts get distinct directions and the client must normalise.
pub fn raw_vector(text: &str, dimension: usize) -> Vec<f32> {
    (0..dimension)
        .map(|component| {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in text.bytes().chain([component as u8]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            (hash % 1000) as f32 + 1.0
        })
        .collect()
}

impl Fake {
    /// Counts and records the request, sleeps, and returns a scripted response if one is due.
    async fn begin(&self, headers: &HeaderMap, body: &Value) -> Option<Response> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().expect("seen lock").push(Seen {
            authorization: headers
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
        });
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let scripted = self.script.lock().expect("script lock").pop_front()?;
        let mut response = (scripted.status, Json(scripted.body)).into_response();
        for (name, value) in scripted.headers {
            response.headers_mut().insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        Some(response)
    }
}

async fn embeddings(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(response) = fake.begin(&headers, &body).await {
        return response;
    }
    let dimension = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(fake.native_dimension, |d| d as usize);
    let inputs = body["input"].as_array().cloned().unwrap_or_default();
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({
                "object": "embedding",
                "index": index,
                "embedding": raw_vector(text.as_str().unwrap_or_default(), dimension),
            })
        })
        .collect();
    if fake.reverse {
        data.reverse();
    }
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()},
    }))
    .into_response()
}

async fn chat(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(response) = fake.begin(&headers, &body).await {
        return response;
    }
    let last = body["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .and_then(|message| message["content"].as_str())
        .unwrap_or_default();
    Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": format!("echo: {last}")},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }))
    .into_response()
}
