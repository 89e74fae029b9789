//! Authentication at the gateway: the tenant middleware (the configured `TenantExtension`, with
//! the schema bound for the request and always unbound after it), principal resolution, the
//! [`Caller`] extractor handlers take, and the admin guard. Authorisation per bank lives in
//! `access`.

pub mod jwt;
pub mod principal;
pub mod tenant;

use std::net::SocketAddr;

use crate::error::ApiError;
pub use crate::service::Caller;
use crate::state::AppState;
use astrocyte_core::tenancy::{self, RequestInfo, Transport};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths that never need tenant authentication (probes and scraping).
pub const BYPASS_PATHS: &[&str] = &["/live", "/health/live", "/health", "/metrics"];

/// Tenant-directory administration is cross-tenant by nature and guarded by the admin token
/// instead: with the API-key extension the first key could not be issued otherwise.
const ADMIN_KEYS_PREFIX: &str = "/v1/admin/keys";

fn bypasses_tenant_auth(path: &str) -> bool {
    BYPASS_PATHS.contains(&path)
        || path == ADMIN_KEYS_PREFIX
        || path.starts_with("/v1/admin/keys/")
        // The inspector authenticates itself (its credential may come from its cookie).
        || crate::ui::is_ui_path(path)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Core(astrocyte_core::Error::Internal(
                "a tenant route is not behind the tenant middleware".into(),
            ))
        })
    }
}

/// Builds the transport-neutral view of an HTTP request that extensions see.
pub fn request_info(request: &Request) -> RequestInfo {
    parts_info(
        request.headers(),
        request.extensions(),
        request.uri().path(),
    )
}

pub(crate) fn parts_info(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    path: &str,
) -> RequestInfo {
    let headers = headers
        .iter()
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    RequestInfo {
        transport: Transport::Http,
        headers,
        peer: extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr),
        path: Some(path.to_string()),
    }
}

/// The tenant middleware: authenticates, resolves the principal, applies the per-tenant rate
/// limit, then runs the rest of the request with the schema bound.
pub async fn tenant_middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if bypasses_tenant_auth(&path) {
        return next.run(request).await;
    }
    let info = request_info(&request);
    let caller = match state.service().authenticate(&info).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    tracing::Span::current().record("tenant", tracing::field::display(caller.schema()));
    let schema = caller.schema().clone();
    request.extensions_mut().insert(caller);
    // Bound for the whole handler; the scope ends with the future, on error and panic too.
    tenancy::use_schema(schema, next.run(request)).await
}

/// Proof that the caller may use admin routes: `X-Admin-Token` when `ASTROCYTE_ADMIN_TOKEN` is
/// set, otherwise a loopback peer of a loopback-bound server.
#[derive(Debug, Clone, Copy)]
pub struct AdminAccess;

impl FromRequestParts<AppState> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let info = parts_info(&parts.headers, &parts.extensions, parts.uri.path());
        state.service().authorize_admin(&info).map(|()| AdminAccess)
    }
}
