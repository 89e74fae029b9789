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
    ] {
        assert!(text.contains(needle), "metrics lack {needle}\n{text}");
    }
    server.stop().await;
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn json_logs_carry_the_request_id_and_the_auth_failure_cause() {
    use astrocyte_core::tenancy::{
        AuthenticationError, RequestInfo, Tenant, TenantContext, TenantExtension,
    };
    struct Refuse;
    #[async_trait::async_trait]
    impl TenantExtension for Refuse {
        async fn authenticate(
            &self,
            _: &RequestInfo,
        ) -> Result<TenantContext, AuthenticationError> {
            Err(AuthenticationError("no api key supplied".into()))
        }
        async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
            Ok(vec![])
        }
    }
    let h = Harness::new();
    let mut cfg = config();
    cfg.log_format = astrocyte_server::config::LogFormat::Json;
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(astrocyte_server::observability::subscriber(
        &cfg,
        capture.clone(),
    ));
    let state = astrocyte_server::AppState::builder(cfg, h.engine.clone())
        .tenant_extension(std::sync::Arc::new(Refuse))
        .build()
        .await
        .expect("state");
    let app = astrocyte_server::app(state);
    let r = crate::support::call(
        &app,
        axum::http::Method::POST,
        "/v1/recall",
        Some(json!({})),
        &[("x-request-id", "req-42")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json, json!({"error": "authentication_failed"}));
    let output = String::from_utf8_lossy(&capture.0.lock()).to_string();
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line: {l}: {e}"))
        })
        .collect();
    let failure = lines
        .iter()
        .find(|l| l["message"] == "tenant authentication failed")
        .expect("the failure is logged");
    assert!(failure["error"]
        .as_str()
        .is_some_and(|e| e.contains("no api key supplied")));
    assert_eq!(failure["span"]["request_id"], "req-42");
    let access = lines
        .iter()
        .find(|l| l["target"] == "astrocyte::access")
        .expect("access line");
    assert_eq!(access["status"], 401);
    assert_eq!(access["span"]["request_id"], "req-42");
}
