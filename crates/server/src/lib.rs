//! The Astrocyte HTTP gateway: the reference's REST wire contract over core's [`Engine`], with
//! tenant authentication (a pluggable `TenantExtension` binding the schema per request),
//! principal authentication, per-bank access control, rate limits, quotas, the PII barrier,
//! Prometheus metrics and a generated OpenAPI document; plus the MCP tools over stdio and
//! streamable HTTP ([`mcp`]).
//!
//! This crate never names a store or an embedder: the composition root (the CLI) builds an
//! [`Engine`] and hands it to [`serve`] or [`Gateway`].
//!
//! ```no_run
//! # async fn run(engine: std::sync::Arc<astrocyte_core::Engine>) -> Result<(), astrocyte_server::ServerError> {
//! use astrocyte_server::{serve, shutdown_signal, ServerConfig};
//! // Loaded by `astrocyte-settings` in the binary; defaults here.
//! let config = ServerConfig::default();
//! // Logs, plus OTLP trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the YAML) sets it.
//! let traces = astrocyte_server::init_tracing(&config)?;
//! let served = serve(config, engine, shutdown_signal()).await;
//! if let Some(traces) = traces {
//!     traces.shutdown(std::time::Duration::from_secs(5)).await?;
//! }
//! served
//! # }
//! ```
#![deny(missing_docs)]

pub mod access;
pub mod auth;
pub mod config;
pub mod dto;
pub mod error;
pub mod grpc;
pub mod keys;
pub mod mcp;
pub mod metrics;
pub mod observability;
pub mod openapi;
pub mod otlp;
pub mod policy;
pub mod routes;
pub mod service;
pub mod state;
pub mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use astrocyte_core::Engine;
use axum::Router;
use tokio::net::TcpListener;

pub use auth::AdminAccess;
pub use config::{ConfigError, ServerConfig};
pub use error::ApiError;
pub use keys::{ApiKeys, IssuedKey, KeyHasher};
pub use observability::init_tracing;
pub use service::{Caller, Service};
pub use state::{AppState, AppStateBuilder};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration; the message names the setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server could not start or failed.
    #[error("gRPC server error: {0}")]
    Grpc(String),
    /// OTLP trace export could not start or flush.
    #[error(transparent)]
    Tracing(#[from] otlp::TraceExportError),
}

/// The application for `state`: every contract route behind the full middleware stack.
/// Tests drive it with `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    routes::app_with(state, Vec::new())
}

/// A configured gateway, ready to bind. Extra routers (such as MCP) can be merged in; they run
/// behind the same middleware, so their handlers can take [`Caller`].
pub struct Gateway {
    state: AppState,
    extra: Vec<Router<AppState>>,
}

impl Gateway {
    /// Builds a gateway with the configured built-in tenant extension.
    pub async fn new(config: ServerConfig, engine: Arc<Engine>) -> Result<Self, ServerError> {
        Ok(Gateway::from_state(
            AppState::builder(config, engine).build().await?,
        ))
    }

    /// A gateway over prepared state (e.g. with a custom tenant extension).
    pub fn from_state(state: AppState) -> Self {
        Gateway {
            state,
            extra: Vec::new(),
        }
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Adds routes served behind the same middleware.
    pub fn merge(mut self, routes: Router<AppState>) -> Self {
        self.extra.push(routes);
        self
    }

    /// Adds the MCP tools over streamable HTTP at `/mcp`, behind the tenant middleware; fails
    /// when they would be anonymous on a public bind (see [`mcp::router`]).
    pub fn with_mcp(self, config: mcp::McpConfig) -> Result<Self, mcp::McpError> {
        let routes = mcp::router(&self.state, config)?;
        Ok(self.merge(routes))
    }

    /// The complete router.
    pub fn router(&self) -> Router {
        routes::app_with(self.state.clone(), self.extra.clone())
    }

    /// Binds the configured address (`port 0` picks a free port), and the gRPC port when one
    /// is configured.
    pub async fn bind(self) -> Result<BoundServer, ServerError> {
        let access = &self.state.config().access;
        if !access.enabled && !access.grants.is_empty() {
            tracing::warn!(
                grants = access.grants.len(),
                "access grants are configured but not enforced: set ASTROCYTE_ACCESS_CONTROL_ENABLED=true"
            );
        }
        let address = self.state.config().bind_address();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        let config = self.state.config();
        let grpc = match config.grpc_port {
            Some(port) => {
                Some(grpc::GrpcListener::bind(&config.host, port, config.grpc_tls.as_ref()).await?)
            }
            None => None,
        };
        let mut bound = self.bind_listener(listener)?;
        bound.grpc = grpc;
        Ok(bound)
    }

    /// Serves REST and MCP on an already bound listener (no gRPC).
    pub fn bind_listener(self, listener: TcpListener) -> Result<BoundServer, ServerError> {
        let local_addr = listener.local_addr()?;
        Ok(BoundServer {
            listener,
            local_addr,
            router: self.router(),
            grpc: None,
            state: self.state,
        })
    }
}

/// A bound, not yet running server.
pub struct BoundServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    grpc: Option<grpc::GrpcListener>,
    state: AppState,
}

impl BoundServer {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The gRPC address actually bound, when gRPC is served.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(grpc::GrpcListener::local_addr)
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for in-flight
    /// requests to finish: every acknowledged write was committed before its response.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let limits = (
            self.state.config().max_connections,
            self.state.config().request_head_timeout,
        );
        // One shutdown for both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let signal = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let http = Self::run_http(
            self.listener,
            self.local_addr,
            self.router,
            limits,
            signal(),
        );
        match self.grpc {
            None => http.await,
            Some(grpc) => {
                tokio::try_join!(http, grpc.run(self.state, signal()))?;
                Ok(())
            }
        }
    }

    async fn run_http(
        listener: TcpListener,
        local_addr: SocketAddr,
        router: Router,
        (max_connections, head_timeout): (usize, std::time::Duration),
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        use tower::ServiceExt;
        tracing::info!(address = %local_addr, "astrocyte gateway listening");
        let slots = connection_slots(max_connections);
        let connections = Arc::new(tokio::sync::Semaphore::new(slots));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // A free slot first, then a connection: beyond the cap, clients wait in the backlog.
            let slot = tokio::select! {
                slot = connections.clone().acquire_owned() => slot,
                () = &mut shutdown => break,
            };
            let Ok(slot) = slot else { break };
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors, or a connection reset before it was accepted:
                        // pause rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Small JSON responses must not wait on Nagle's algorithm.
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            let activity = Arc::new(Activity::new());
            let busy = Arc::clone(&activity);
            let service = router
                .clone()
                .map_request(move |request: axum::http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(remote));
                    request
                })
                .map_future(move |response| {
                    let serving = busy.begin();
                    async move {
                        let response = response.await;
                        drop(serving);
                        response
                    }
                });
            let mut stopping = stopping.clone();
            tokio::spawn(async move {
                // A client that sends nothing at all would hold its slot for ever: hyper's
                // head timeout only starts once it knows the protocol from the first bytes.
                // Shutting down ends the wait too: a client's spare pooled connection may never
                // send anything.
                let spoke = tokio::select! {
                    spoke = spoke_within(&tcp, head_timeout) => spoke,
                    () = async { drop(stopping.wait_for(|stop| *stop).await) } => false,
                };
                if !spoke {
                    return drop(slot);
                }
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(head_timeout)
                    .max_headers(HTTP1_MAX_HEADERS);
                // A peer that stops answering pings is dropped; one that answers gets the
                // graceful close below once idle (HTTP/2's goodbye waits for a ping's answer).
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(head_timeout))
                    .keep_alive_timeout(head_timeout);
                let connection = builder.serve_connection_with_upgrades(
                    TokioIo::new(tcp),
                    hyper_util::service::TowerToHyperService::new(service),
                );
                let mut connection = std::pin::pin!(connection);
                // hyper's head timeout covers an idle HTTP/1 keep-alive wait, not an HTTP/2
                // connection with no stream open: this closes either (gracefully: a response
                // still streaming finishes first).
                let idle = async {
                    while let Some(left) = activity.idle_left(head_timeout) {
                        tokio::time::sleep(left).await;
                    }
                };
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                    () = idle => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = served {
                    tracing::trace!(%error, "connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(listener);
        let _ = stop.send(true);
        // Every connection holds a slot until it is done: all of them back means all done.
        let _ = connections.acquire_many(slots as u32).await;
        tracing::info!("astrocyte gateway stopped");
        Ok(())
    }
}

/// Requests a connection is serving and when it last finished one.
struct Activity {
    opened: std::time::Instant,
    serving: std::sync::atomic::AtomicUsize,
    /// Milliseconds from `opened` to the end of the last request.
    last_ms: std::sync::atomic::AtomicU64,
}

/// One request in progress; dropped when its response head is ready or the request is
/// abandoned.
struct Serving(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Activity {
            opened: std::time::Instant::now(),
            serving: std::sync::atomic::AtomicUsize::new(0),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Serving {
        self.serving
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Serving(Arc::clone(self))
    }

    /// How much longer until the connection has been idle for `limit`; `None` once it has.
    fn idle_left(&self, limit: std::time::Duration) -> Option<std::time::Duration> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.serving.load(SeqCst) > 0 {
            return Some(limit);
        }
        let last = std::time::Duration::from_millis(self.last_ms.load(SeqCst));
        let idle = self.opened.elapsed().saturating_sub(last);
        limit.checked_sub(idle).filter(|left| !left.is_zero())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        // The time first, so a watchdog that sees nothing serving also sees when it ended.
        let now = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(now, SeqCst);
        self.0.serving.fetch_sub(1, SeqCst);
    }
}

/// Connection slots for a `max_connections` setting: at least one, and few enough for a
/// semaphore to hand out (and to take back all at once on shutdown).
pub(crate) fn connection_slots(max_connections: usize) -> usize {
    max_connections.clamp(
        1,
        tokio::sync::Semaphore::MAX_PERMITS.min(u32::MAX as usize),
    )
}

/// Whether a newly accepted client sent its first bytes within `timeout`, read without
/// consuming them.
pub(crate) async fn spoke_within(
    tcp: &tokio::net::TcpStream,
    timeout: std::time::Duration,
) -> bool {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(timeout, tcp.peek(&mut first)).await;
    matches!(peeked, Ok(Ok(read)) if read > 0)
}

/// The pause after a failed accept (such as running out of file descriptors).
const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Headers hyper's HTTP/1 parser accepts in one request, above the served limit
/// (`routes::MAX_REQUEST_HEADERS`): hyper's own refusal has an empty body, the router's is
/// JSON.
pub(crate) const HTTP1_MAX_HEADERS: usize = 1_000;

/// Builds the gateway, binds the configured address and serves until `shutdown`.
pub async fn serve(
    config: ServerConfig,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Gateway::new(config, engine)
        .await?
        .bind()
        .await?
        .run(shutdown)
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
