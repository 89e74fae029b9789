//! JSON logs, in a test binary of its own: tracing caches per-callsite interest process-wide,
//! so a scoped subscriber in a binary where other tests log concurrently can miss events.

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

use serde_json::json;

use support::{config, Harness};

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
    // Other tests in this binary hit the same callsites concurrently with no subscriber; make
    // tracing re-evaluate its cached per-callsite interest now that this thread has one.
    tracing::callsite::rebuild_interest_cache();
    let state = astrocyte_server::AppState::builder(cfg, h.engine.clone())
        .tenant_extension(std::sync::Arc::new(Refuse))
        .build()
        .await
        .expect("state");
    let app = astrocyte_server::app(state);
    let r = support::call(
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
