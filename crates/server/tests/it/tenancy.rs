//! The reference's tenancy-middleware cases: default schema, per-request extension, the fixed
//! 401 body, health bypass, schema reset between requests, the environment default, and an
//! invalid default refusing to start; plus graceful shutdown with a request in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use astrocyte_core::tenancy::{
    bound_schema, AuthenticationError, RequestInfo, Tenant, TenantContext, TenantExtension,
};
use astrocyte_server::{AppState, Caller, Gateway, ServerConfig};
use async_trait::async_trait;
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::support::{call, config, schema, spawn, Harness};

/// A route that reports the schema bound inside the handler and the caller's tenant.
fn probe() -> Router<AppState> {
    Router::new().route(
        "/probe",
        get(|caller: Caller| async move {
            Json(json!({
                "schema": bound_schema().map(|s| s.to_string()),
                "caller": caller.schema().to_string(),
            }))
        }),
    )
}

async fn probe_app(
    h: &Harness,
    cfg: ServerConfig,
    extension: Option<Arc<dyn TenantExtension>>,
) -> Router {
    let mut builder = AppState::builder(cfg, h.engine.clone());
    if let Some(extension) = extension {
        builder = builder.tenant_extension(extension);
    }
    Gateway::from_state(builder.build().await.expect("state"))
        .merge(probe())
        .router()
}

struct HeaderExtension;

#[async_trait]
impl TenantExtension for HeaderExtension {
    async fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> Result<TenantContext, AuthenticationError> {
        let raw = request
            .header("x-tenant-schema")
            .ok_or_else(|| AuthenticationError("missing X-Tenant-Schema".into()))?;
        astrocyte_core::tenancy::Schema::new(raw)
            .map(TenantContext::new)
            .map_err(|e| AuthenticationError(e.to_string()))
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        Ok(vec![])
    }
}

struct FailingExtension;

#[async_trait]
impl TenantExtension for FailingExtension {
    async fn authenticate(&self, _: &RequestInfo) -> Result<TenantContext, AuthenticationError> {
        Err(AuthenticationError(
            "no api key supplied for schema tenant_secret_name".into(),
        ))
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn default_extension_binds_public_or_the_configured_schema() {
    let h = Harness::new();
    let app = probe_app(&h, config(), None).await;
    let r = call(&app, Method::GET, "/probe", None, &[]).await;
    assert_eq!(r.json, json!({"schema": "public", "caller": "public"}));

    let mut cfg = config();
    cfg.database_schema = schema("tenant_acme");
    let app = probe_app(&h, cfg, None).await;
    let r = call(&app, Method::GET, "/probe", None, &[]).await;
    assert_eq!(
        r.json,
        json!({"schema": "tenant_acme", "caller": "tenant_acme"})
    );
}

#[tokio::test]
async fn per_request_extension_binds_each_requests_schema() {
    let h = Harness::new();
    let app = probe_app(&h, config(), Some(Arc::new(HeaderExtension))).await;
    for tenant in ["tenant_acme", "tenant_globex", "tenant_acme"] {
        let r = call(
            &app,
            Method::GET,
            "/probe",
            None,
            &[("x-tenant-schema", tenant)],
        )
        .await;
        assert_eq!(r.json["schema"], tenant);
    }
}

#[tokio::test]
async fn authentication_failure_is_a_fixed_401_without_the_extension_message() {
    let h = Harness::new();
    let app = probe_app(&h, config(), Some(Arc::new(FailingExtension))).await;
    for (method, path) in [
        (Method::GET, "/probe"),
        (Method::POST, "/v1/recall"),
        (Method::GET, "/openapi.json"),
    ] {
        let r = call(&app, method, path, None, &[]).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json, json!({"error": "authentication_failed"}));
        assert!(!r.text.contains("tenant_secret_name"));
    }
}

#[tokio::test]
async fn invalid_schema_from_a_header_is_401_not_500() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.tenant_extension = astrocyte_server::config::TenantExtensionKind::TrustedHeader;
    let app = probe_app(&h, cfg, None).await;
    for bad in [
        "bad-schema",
        "x\"; drop schema public; --",
        "1starts_with_digit",
    ] {
        let r = call(
            &app,
            Method::GET,
            "/probe",
            None,
            &[("x-tenant-schema", bad)],
        )
        .await;
        assert_eq!(r.status, 401, "{bad}");
        assert_eq!(r.json, json!({"error": "authentication_failed"}));
    }
    let r = call(
        &app,
        Method::GET,
        "/probe",
        None,
        &[("x-tenant-schema", "tenant_ok")],
    )
    .await;
    assert_eq!(r.json["schema"], "tenant_ok");
}

#[tokio::test]
async fn probes_and_metrics_bypass_tenant_authentication() {
    let h = Harness::new();
    let app = probe_app(&h, config(), Some(Arc::new(FailingExtension))).await;
    assert_eq!(
        call(&app, Method::GET, "/probe", None, &[]).await.status,
        401
    );
    for path in ["/live", "/health/live", "/health", "/metrics"] {
        let r = call(&app, Method::GET, path, None, &[]).await;
        assert_eq!(r.status, 200, "{path} must not need tenant auth");
    }
}

struct AlternatingExtension(AtomicUsize);

#[async_trait]
impl TenantExtension for AlternatingExtension {
    async fn authenticate(&self, _: &RequestInfo) -> Result<TenantContext, AuthenticationError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        let name = if n.is_multiple_of(2) {
            "tenant_acme"
        } else {
            "tenant_globex"
        };
        Ok(TenantContext::new(schema(name)))
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn schema_is_reset_between_requests_on_one_keep_alive_connection() {
    let h = Harness::new();
    let state = AppState::builder(config(), h.engine.clone())
        .tenant_extension(Arc::new(AlternatingExtension(AtomicUsize::new(0))))
        .build()
        .await
        .expect("state");
    let server = spawn(Gateway::from_state(state).merge(probe())).await;
    // One client reuses one connection, so hyper serves these on one task in sequence.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let body: Value = server
            .client
            .get(server.url("/probe"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(body["schema"], body["caller"]);
        seen.push(body["schema"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        seen,
        [
            "tenant_acme",
            "tenant_globex",
            "tenant_acme",
            "tenant_globex"
        ]
    );
    assert!(bound_schema().is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_configured_default_schema_is_the_unauthenticated_tenant() {
    let h = Harness::new();
    let cfg = ServerConfig {
        database_schema: schema("tenant_from_env"),
        ..config()
    };
    let app = probe_app(&h, cfg, None).await;
    let r = call(&app, Method::GET, "/probe", None, &[]).await;
    assert_eq!(r.json["schema"], "tenant_from_env");
}

#[tokio::test]
async fn tenant_data_is_isolated_between_header_tenants() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.tenant_extension = astrocyte_server::config::TenantExtensionKind::TrustedHeader;
    let app = h.app(cfg).await;
    let retain = |tenant: &'static str, text: &'static str| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::POST,
                "/v1/retain",
                Some(json!({"content": text, "bank_id": "shared"})),
                &[("x-tenant-schema", tenant)],
            )
            .await
        }
    };
    assert_eq!(
        retain("tenant_a", "Acme's secret formula is blue.")
            .await
            .json["stored"],
        true
    );
    assert_eq!(
        retain("tenant_b", "Globex prefers red paint.").await.json["stored"],
        true
    );
    let r = call(
        &app,
        Method::POST,
        "/v1/recall",
        Some(json!({"query": "secret formula blue red paint", "bank_id": "shared"})),
        &[("x-tenant-schema", "tenant_b")],
    )
    .await;
    let texts: Vec<&str> = r.json["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["text"].as_str())
        .collect();
    assert_eq!(texts, ["Globex prefers red paint."]);
}

/// Holds each request in authentication until released, to have one provably in flight.
struct GateExtension {
    entered: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

#[async_trait]
impl TenantExtension for GateExtension {
    async fn authenticate(&self, _: &RequestInfo) -> Result<TenantContext, AuthenticationError> {
        self.entered.notify_one();
        let _permit = self
            .release
            .acquire()
            .await
            .map_err(|e| AuthenticationError(e.to_string()))?;
        Ok(TenantContext::new(schema("public")))
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_keeps_what_it_acknowledged() {
    let h = Harness::new();
    let gate = Arc::new(GateExtension {
        entered: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    let state = AppState::builder(config(), h.engine.clone())
        .tenant_extension(gate.clone())
        .build()
        .await
        .expect("state");
    let mut server = spawn(Gateway::from_state(state)).await;
    let request = server
        .client
        .post(server.url("/v1/retain"))
        .json(&json!({"content": "Acknowledged just before shutdown.", "bank_id": "durable"}))
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::timeout(Duration::from_secs(5), gate.entered.notified())
        .await
        .expect("request reached the server");
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.release.add_permits(1);
    let response = in_flight
        .await
        .expect("task")
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["stored"], true);
    server.stop().await;

    // A new engine over the same files sees the acknowledged memory.
    let reopened = crate::support::engine_at(h.dir.path());
    // Strict tenancy is on in this process (a served MCP enables it): bind the tenant.
    let found = astrocyte_core::tenancy::use_schema(
        schema("public"),
        reopened.recall(
            &schema("public"),
            astrocyte_core::RecallRequest {
                query: "acknowledged shutdown".into(),
                banks: vec!["durable".into()],
                ..Default::default()
            },
        ),
    )
    .await
    .expect("recall");
    assert_eq!(found.hits.len(), 1);
}
