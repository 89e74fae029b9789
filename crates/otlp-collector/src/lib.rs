//! An OTLP/HTTP trace collector for tests: it listens on loopback, accepts protobuf export
//! requests on `POST /v1/traces` as a real collector would, and keeps them so a test can
//! check the spans a gateway (in process or as a child process) exported.
//!
//! Test support only: no other signal than traces, no JSON encoding, no gzip.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message;

/// A running collector. It stops with the test's runtime.
#[derive(Clone)]
pub struct Collector {
    base: String,
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Collector {
    /// Starts a collector on a free loopback port.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test environment failure).
    pub async fn start() -> Collector {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(collect))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector on loopback");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("the collector's address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { base, received }
    }

    /// The base URL (`http://127.0.0.1:PORT`), as for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The export requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.received.lock().clone()
    }

    /// Every span received so far.
    ///
    /// # Panics
    /// When a batch came without a resource or from another `service.name` than `service`.
    pub fn spans(&self, service: &str) -> Vec<Span> {
        let mut spans = Vec::new();
        for request in self.received.lock().iter() {
            for resource_spans in &request.resource_spans {
                let resource = resource_spans
                    .resource
                    .as_ref()
                    .expect("every batch names its resource");
                assert_eq!(
                    attribute(&resource.attributes, "service.name").as_deref(),
                    Some(service),
                    "spans from another service"
                );
                for scope in &resource_spans.scope_spans {
                    spans.extend(scope.spans.iter().cloned());
                }
            }
        }
        spans
    }
}

/// A string or integer attribute's value, as text.
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            Some(any_value::Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

async fn collect(
    State(received): State<Arc<Mutex<Vec<ExportTraceServiceRequest>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<([(&'static str, &'static str); 1], Vec<u8>), StatusCode> {
    // The exporter speaks http/protobuf: anything else is a bug worth failing the test on.
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let request = ExportTraceServiceRequest::decode(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    received.lock().push(request);
    Ok((
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    ))
}
