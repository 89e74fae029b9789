//! Shared test fixtures: an engine over a real SQLite store in a temp directory with the
//! hashing embedder, in-process calls through `oneshot`, a real server on 127.0.0.1:0, and a
//! temporary in-memory key directory.

use std::net::SocketAddr;
use std::sync::Arc;

use astrocyte_core::tenancy::Schema;
use astrocyte_core::{Engine, EngineConfig};
use astrocyte_providers::HashingEmbedder;
use astrocyte_server::{AppState, Gateway, ServerConfig};
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// An engine over a fresh SQLite data directory.
pub struct Harness {
    /// Keeps the data directory alive.
    pub dir: tempfile::TempDir,
    /// The engine.
    pub engine: Arc<Engine>,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine_at(dir.path());
        Harness { dir, engine }
    }

    /// A state with the configured built-in extension.
    pub async fn state(&self, config: ServerConfig) -> AppState {
        AppState::builder(config, self.engine.clone())
            .build()
            .await
            .expect("valid test configuration")
    }

    /// The app for a configuration.
    pub async fn app(&self, config: ServerConfig) -> Router {
        astrocyte_server::app(self.state(config).await)
    }
}

/// An engine over the SQLite store in `dir`.
pub fn engine_at(dir: &std::path::Path) -> Arc<Engine> {
    let store = SqliteStore::open(dir, SqliteOptions::default()).expect("sqlite store opens");
    Arc::new(Engine::new(
        Arc::new(store),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    ))
}

/// The default test configuration: loopback, dev auth, no PII redaction surprises.
pub fn config() -> ServerConfig {
    ServerConfig {
        port: 0,
        ..ServerConfig::default()
    }
}

/// A response, decoded.
pub struct Reply {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
}

/// Calls the app in process, from a loopback peer.
pub async fn call(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Body::from(serde_json::to_vec(&json).expect("json"))
        }
        None => Body::empty(),
    };
    let mut request = builder.body(body).expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("infallible service");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).to_string();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, json, text }
}

pub async fn post(app: &Router, path: &str, body: Value) -> Reply {
    call(app, Method::POST, path, Some(body), &[]).await
}

/// A gateway serving on a real loopback socket.
pub struct Running {
    pub base: String,
    /// `host:port` of gRPC, when it is served.
    pub grpc_addr: Option<String>,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::result::Result<(), astrocyte_server::ServerError>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Starts graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits for the server to stop.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.handle)
            .await
            .expect("server stops within 10 s")
            .expect("server task")
            .expect("server ran cleanly");
    }
}

/// Serves `gateway` on 127.0.0.1:0.
pub async fn spawn(gateway: Gateway) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bound = gateway.bind_listener(listener).expect("bound");
    run_bound(bound)
}

/// Binds the gateway's configured addresses (gRPC too, when configured) and serves them.
pub async fn spawn_bound(gateway: Gateway) -> Running {
    run_bound(gateway.bind().await.expect("bound"))
}

fn run_bound(bound: astrocyte_server::BoundServer) -> Running {
    let base = format!("http://{}", bound.local_addr());
    let grpc_addr = bound.grpc_addr().map(|a| a.to_string());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(bound.run(async move {
        let _ = rx.await;
    }));
    Running {
        base,
        grpc_addr,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        handle,
    }
}

/// Serves the configured gateway of `harness` on loopback.
pub async fn serve(harness: &Harness, config: ServerConfig) -> Running {
    spawn(Gateway::from_state(harness.state(config).await)).await
}

pub fn schema(name: &str) -> Schema {
    Schema::new(name).expect("valid schema")
}
