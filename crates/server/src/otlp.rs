//! Optional trace export: the process's `tracing` spans (the request span of every HTTP call,
//! the engine's `recall`/`retain_many`/... spans inside it, MCP tools, background jobs) sent as
//! OTLP protobuf over HTTP to a collector.
//!
//! Spans are batched by the OpenTelemetry SDK on a thread of its own; the POSTs go out on the
//! Tokio runtime that started the exporter, through the same rustls `reqwest` client the rest of
//! the gateway uses (no gRPC stack, no OpenSSL). [`TraceExport::shutdown`] flushes what is still
//! queued. Nothing here runs unless [`crate::config::OtlpSettings`] is configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::level_filters::LevelFilter;
use tracing::{Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::OtlpSettings;

/// How long one export request may take (the OTLP default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// A collector's reply is a small status message; anything larger is not read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Set once an export layer exists: only then do request spans get their OTel name and kind
/// (recorded as span fields, they would otherwise show in every log line).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Why trace export could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum TraceExportError {
    /// The exporter was started outside a Tokio runtime, which it sends its requests on.
    #[error("OTLP trace export must be started inside a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for OTLP trace export: {0}")]
    Client(#[source] reqwest::Error),
    /// The exporter rejected its configuration (including `OTEL_EXPORTER_OTLP_*` variables
    /// it reads itself, such as headers or compression).
    #[error("cannot start OTLP trace export to {endpoint}: {message}")]
    Build {
        /// The traces endpoint.
        endpoint: String,
        /// The exporter's message.
        message: String,
    },
    /// Queued spans could not all be delivered at shutdown.
    #[error("flushing traces to the OTLP collector failed: {0}")]
    Flush(String),
}

/// A running OTLP trace exporter. Add [`TraceExport::layer`] to the process's subscriber and
/// call [`TraceExport::shutdown`] once serving has stopped.
#[derive(Debug)]
pub struct TraceExport {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl TraceExport {
    /// Starts exporting to `settings.traces_endpoint`; must be called inside a Tokio runtime.
    pub fn start(settings: &OtlpSettings) -> Result<Self, TraceExportError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TraceExportError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(TraceExportError::Client)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(RuntimeClient { client, runtime })
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TraceExportError::Build {
                endpoint: settings.traces_endpoint.clone(),
                message: e.to_string(),
            })?;
        // `Resource::builder` also reads OTEL_RESOURCE_ATTRIBUTES; the configured name wins.
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(TraceExport {
            provider,
            endpoint: settings.traces_endpoint.clone(),
        })
    }

    /// Starts the exporter when `config` asks for one.
    pub fn from_config(config: &crate::ServerConfig) -> Result<Option<Self>, TraceExportError> {
        config.otlp.as_ref().map(Self::start).transpose()
    }

    /// The collector URL spans go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The layer turning closed `tracing` spans into exported spans, with its own filter (so
    /// the log level does not decide what is traced): INFO and above, without the HTTP
    /// client's own spans and without the idle job-queue polling.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("astrocyte"))
            .with_filter(Traced)
    }

    /// Exports every span still queued, then stops; gives up after `timeout`.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), TraceExportError> {
        let provider = self.provider;
        // The SDK blocks until its batch thread has sent the rest; the sending happens on this
        // runtime, so the wait must not hold one of its worker threads.
        tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout))
            .await
            .map_err(|e| TraceExportError::Flush(e.to_string()))?
            .map_err(|e| TraceExportError::Flush(e.to_string()))
    }
}

/// What is traced: see [`TraceExport::layer`].
struct Traced;

impl Traced {
    fn wanted(metadata: &Metadata<'_>) -> bool {
        if *metadata.level() > tracing::Level::INFO {
            return false;
        }
        let target = metadata.target();
        // The exporter's own HTTP traffic must never feed back into itself.
        let plumbing = ["hyper", "h2", "reqwest", "rustls", "tower", "opentelemetry"];
        // (Crate names as prefixes: `opentelemetry-otlp` logs under its hyphenated name.)
        if plumbing.iter().any(|p| target.starts_with(p)) {
            return false;
        }
        // A worker's lifetime span would parent every job for hours, and empty polls would
        // flood the collector; jobs themselves become traces of their own.
        !(metadata.is_span()
            && matches!(
                (target, metadata.name()),
                ("astrocyte_workers::pool", "tenant_worker")
                    | ("astrocyte_store_postgres::jobs", "claim")
            ))
    }
}

impl<S> Filter<S> for Traced {
    fn enabled(
        &self,
        metadata: &Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        Self::wanted(metadata)
    }

    fn callsite_enabled(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wanted(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
}

/// Sends the exporter's requests on the Tokio runtime that started it: the SDK's batch thread
/// has no runtime of its own, and the async `reqwest` client needs one.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let mut response = client.execute(request).await?;
                let status = response.status();
                let headers = std::mem::take(response.headers_mut());
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                let mut reply = Response::builder().status(status).body(Bytes::from(body))?;
                *reply.headers_mut() = headers;
                Ok::<_, HttpError>(reply)
            })
            .await?
    }
}

/// Dresses the request span for export: the semantic-convention name, kind and attributes,
/// and the caller's W3C `traceparent` as its parent. Does nothing when no exporter is
/// installed, so plain log lines keep their fields.
pub(crate) fn begin_request_span(
    span: &tracing::Span,
    headers: &HeaderMap,
    method: &str,
    route: &str,
    path: &str,
) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    // Before anything reads the span's context: the parent can only be set until it starts.
    if headers.contains_key("traceparent") {
        let parent =
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
        if parent.span().span_context().is_remote() {
            let _ = span.set_parent(parent);
        }
    }
    span.record("otel.name", format!("{method} {route}"));
    span.record("otel.kind", "server");
    span.set_attribute("http.request.method", method.to_string());
    span.set_attribute("http.route", route.to_string());
    span.set_attribute("url.path", path.to_string());
}

/// Records the response status on the request span (an error status for 5xx).
pub(crate) fn end_request_span(span: &tracing::Span, status: u16) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
}
