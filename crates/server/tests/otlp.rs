//! OTLP trace export, in a test binary of its own (the subscriber is process-global): a local
//! collector speaking OTLP/HTTP (protobuf on `POST /v1/traces`) receives the request spans and
//! the engine spans of real requests through the gateway, flushed when export shuts down.

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

use std::time::Duration;

use astrocyte_otlp_collector::{attribute as text, Collector};
use astrocyte_server::config::OtlpSettings;
use astrocyte_server::otlp::TraceExport;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use support::{config, serve, Harness};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn request_and_engine_spans_reach_the_collector_when_export_shuts_down() {
    // Spans must arrive through the shutdown flush, not a periodic export.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let collector = Collector::start().await;
    let base = collector.base();
    let h = Harness::new();
    let mut cfg = config();
    cfg.database_schema = astrocyte_core::tenancy::Schema::new("tenant_traced").expect("schema");
    cfg.otlp = Some(OtlpSettings {
        traces_endpoint: format!("{base}/v1/traces"),
        service_name: "astrocyte-test".into(),
    });
    let traces = TraceExport::from_config(&cfg)
        .expect("exporter starts")
        .expect("export is configured");
    tracing::subscriber::set_global_default(astrocyte_server::observability::subscriber_with(
        &cfg,
        std::io::sink,
        Some(&traces),
    ))
    .expect("the only subscriber of this binary");

    let server = serve(&h, cfg).await;
    let r = server
        .client
        .post(server.url("/v1/retain"))
        .json(&json!({"content": "Traces travel to the collector.", "bank_id": "t"}))
        .send()
        .await
        .expect("retain");
    assert_eq!(r.status(), 200);
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = server
        .client
        .post(server.url("/v1/recall"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .header("x-request-id", "req-traced")
        .json(&json!({"query": "collector", "bank_id": "t"}))
        .send()
        .await
        .expect("recall");
    assert_eq!(r.status(), 200);
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        collector.requests().is_empty(),
        "nothing is sent before the batch is due or flushed"
    );

    traces
        .shutdown(Duration::from_secs(10))
        .await
        .expect("the queued spans are delivered");

    assert!(!collector.requests().is_empty(), "the flush sent the batch");
    let spans: Vec<Span> = collector.spans("astrocyte-test");
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} among {names:?}"))
    };

    let recall_request = find("POST /v1/recall");
    assert_eq!(recall_request.kind, SpanKind::Server as i32);
    let attributes = &recall_request.attributes;
    assert_eq!(
        text(attributes, "http.route").as_deref(),
        Some("/v1/recall")
    );
    assert_eq!(
        text(attributes, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        text(attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(text(attributes, "tenant").as_deref(), Some("tenant_traced"));
    assert_eq!(
        text(attributes, "request_id").as_deref(),
        Some("req-traced")
    );
    // The caller's W3C trace context is the parent.
    assert_eq!(hex(&recall_request.trace_id), caller_trace);
    assert_eq!(hex(&recall_request.parent_span_id), caller_span);

    // The engine's span is a child of the service layer's span, itself a child of the
    // request span, all in the same trace.
    let recall = find("recall");
    let service = spans
        .iter()
        .find(|s| s.name == "service" && s.span_id == recall.parent_span_id)
        .expect("the engine span's parent is a service span");
    assert_eq!(recall.trace_id, recall_request.trace_id);
    assert_eq!(service.parent_span_id, recall_request.span_id);
    assert_eq!(
        text(&service.attributes, "operation").as_deref(),
        Some("recall")
    );
    assert_eq!(
        text(&recall.attributes, "tenant").as_deref(),
        Some("tenant_traced")
    );

    let retain_request = find("POST /v1/retain");
    assert!(
        retain_request.parent_span_id.is_empty(),
        "no traceparent: a root span"
    );
    assert_ne!(retain_request.trace_id, recall_request.trace_id);
    let retain = find("retain_many");
    assert_eq!(retain.trace_id, retain_request.trace_id);
    assert!(spans
        .iter()
        .any(|s| s.span_id == retain.parent_span_id && s.parent_span_id == retain_request.span_id));

    // The exporter's own HTTP traffic is not traced.
    assert!(
        spans.iter().all(|s| !s.name.contains("/v1/traces")),
        "{names:?}"
    );
}
