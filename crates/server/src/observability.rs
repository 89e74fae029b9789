//! Request IDs, the per-request span and access log line, HTTP metrics, the body-size cap, and
//! process logging set-up (text or JSON), with OTLP trace export ([`crate::otlp`]) when configured.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::config::{LogFormat, ServerConfig};
use crate::error::ApiError;
use crate::metrics;
use crate::otlp::{self, TraceExport, TraceExportError};

/// The request id header, echoed or generated.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An incoming id is echoed only when it is short printable ASCII (it lands in logs).
fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    (!text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| text.to_string())
}

/// Outermost middleware: request id, span, access log and HTTP metrics.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(acceptable_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let span = tracing::info_span!(
        "http_request",
        request_id = %request_id,
        method = %method,
        path = %path,
        tenant = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    otlp::begin_request_span(&span, request.headers(), &method, &route, &path);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    metrics::global().http_request(&route, &method, status, elapsed);
    otlp::end_request_span(&span, status);
    span.in_scope(|| {
        tracing::info!(
            target: "astrocyte::access",
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    response
}

/// Refuses bodies whose declared length exceeds the cap (413); chunked bodies are capped by
/// the body extractor with the same limit.
pub async fn body_cap(limit: Option<usize>, request: Request, next: Next) -> Response {
    if let Some(limit) = limit {
        if let Some(length) = request.headers().get(header::CONTENT_LENGTH) {
            match length
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(n) if n > limit as u64 => return ApiError::PayloadTooLarge.into_response(),
                Some(_) => {}
                None => {
                    return ApiError::BadRequest("Invalid Content-Length".into()).into_response()
                }
            }
        }
    }
    next.run(request).await
}

/// The process's tracing subscriber writing to `writer`: JSON lines when the configured
/// format is JSON, otherwise text; `ASTROCYTE_LOG_LEVEL` (or `RUST_LOG`) filters.
pub fn subscriber<W>(config: &ServerConfig, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    subscriber_with(config, writer, None)
}

/// [`subscriber`] plus, when given, the layer feeding spans to an OTLP exporter (which has
/// its own filter: the log level does not decide what is traced).
pub fn subscriber_with<W>(
    config: &ServerConfig,
    writer: W,
    traces: Option<&TraceExport>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .or_else(|| EnvFilter::try_new(&config.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = match config.log_format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    Box::new(
        tracing_subscriber::registry()
            .with(traces.map(TraceExport::layer))
            .with(fmt),
    )
}

/// Installs the process's subscriber (logs on stdout, plus OTLP trace export when
/// `config.otlp` is set; call inside the Tokio runtime). A second call installs nothing.
/// Keep the returned exporter and call [`TraceExport::shutdown`] after serving, so the last
/// spans are flushed.
pub fn init_tracing(config: &ServerConfig) -> Result<Option<TraceExport>, TraceExportError> {
    let traces = TraceExport::from_config(config)?;
    let subscriber = subscriber_with(config, std::io::stdout, traces.as_ref());
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
    Ok(traces)
}
