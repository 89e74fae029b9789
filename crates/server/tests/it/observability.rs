//! Observability over HTTP: `X-Request-ID` echoed or generated, Prometheus metrics by route and
//! status, operation counters per tenant.

use serde_json::json;

use crate::support::{config, serve, Harness};

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let r = server
        .client
        .get(server.url("/live"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-abc-123")
    );
    let r = server
        .client
        .get(server.url("/live"))
        .send()
        .await
        .expect("request");
    let generated = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated:?}");
    let r = server
        .client
        .post(server.url("/v1/recall"))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    assert!(
        r.headers().get("x-request-id").is_some(),
        "errors carry the id too"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_operations_by_tenant() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.database_schema = astrocyte_core::tenancy::Schema::new("tenant_metrics").expect("schema");
    cfg.metrics_per_tenant = true;
    let server = serve(&h, cfg).await;
    let r = server
        .client
        .post(server.url("/v1/retain"))
        .json(&json!({"content": "Metrics are counted.", "bank_id": "m"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = server
        .client
        .post(server.url("/v1/recall"))
        .json(&json!({"query": "metrics", "bank_id": "m"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // A refused request is the caller's doing: `rejected`, not `error`.
    let r = server
        .client
        .post(server.url("/v1/recall"))
        .json(&json!({"query": "   ", "bank_id": "m"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    let r = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = r.text().await.expect("text");
    for needle in [
        r#"astrocyte_http_requests_total{method="POST",route="/v1/recall",status="200"}"#,
        r#"astrocyte_http_request_duration_seconds_bucket{method="POST",route="/v1/retain""#,
        r#"astrocyte_operations_total{operation="retain",outcome="ok",tenant="tenant_metrics"}"#,
        r#"astrocyte_operation_duration_seconds_count{operation="recall",tenant="tenant_metrics"}"#,
        r#"astrocyte_operations_total{operation="recall",outcome="rejected",tenant="tenant_metrics"}"#,
        r#"astrocyte_store_errors_total{kind="internal"} 0"#,
        "astrocyte_build_info{version=",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}\n{text}");
    }
    assert!(
        !text.contains(r#"outcome="error",tenant="tenant_metrics""#),
        "a 400 is no error\n{text}"
    );
    server.stop().await;
}
