//! Authentication at the gateway: the tenant middleware (the configured `TenantExtension`, with
//! the schema bound for the request and always unbound after it), principal resolution, the
//! [`Caller`] extractor handlers take, and the admin guard. Authorisation per bank lives in
//! `access`.

pub mod jwt;
pub mod principal;
pub mod tenant;

use std::net::SocketAddr;

use astrocyte_core::tenancy::{self, RequestInfo, Schema, TenantContext, Transport};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::config::is_loopback_host;
use crate::error::ApiError;
use crate::state::AppState;

/// Paths that never need tenant authentication (probes and scraping).
pub const BYPASS_PATHS: &[&str] = &["/live", "/health/live", "/health", "/metrics"];

/// Tenant-directory administration is cross-tenant by nature and guarded by the admin token
/// instead: with the API-key extension the first key could not be issued otherwise.
const ADMIN_KEYS_PREFIX: &str = "/v1/admin/keys";

fn bypasses_tenant_auth(path: &str) -> bool {
    BYPASS_PATHS.contains(&path) || path == ADMIN_KEYS_PREFIX || path.starts_with("/v1/admin/keys/")
}

/// Who is calling and in which tenant: the result of the middleware, taken by every handler
/// that touches tenant data (so a handler cannot run without a tenant).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant, from the credential.
    pub tenant: TenantContext,
    /// The authenticated principal; `None` is anonymous.
    pub principal: Option<String>,
}

impl Caller {
    /// The tenant's schema.
    pub fn schema(&self) -> &Schema {
        &self.tenant.schema
    }
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
    let headers = request
        .headers()
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
        peer: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr),
        path: Some(request.uri().path().to_string()),
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
    let tenant = match state.tenants().authenticate(&info).await {
        Ok(tenant) => tenant,
        Err(error) => {
            // The extension's message may name schemas or token details: logs only.
            tracing::warn!(path = %path, error = %error, "tenant authentication failed");
            return ApiError::AuthenticationFailed.into_response();
        }
    };
    let principal = match state
        .principals()
        .resolve(request.headers(), &tenant.schema)
        .await
    {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = state.policy().admit_tenant(&tenant.schema) {
        return error.into_response();
    }
    tracing::Span::current().record("tenant", tracing::field::display(&tenant.schema));
    let schema = tenant.schema.clone();
    request
        .extensions_mut()
        .insert(Caller { tenant, principal });
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
        let config = state.config();
        match &config.admin_token {
            Some(expected) => {
                let presented = parts
                    .headers
                    .get("x-admin-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .unwrap_or("");
                if !presented.is_empty()
                    && bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes()))
                {
                    Ok(AdminAccess)
                } else {
                    Err(ApiError::Unauthorized(
                        "Invalid or missing X-Admin-Token".into(),
                    ))
                }
            }
            None => {
                let peer_is_loopback = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .is_some_and(|ConnectInfo(addr)| addr.ip().is_loopback());
                if peer_is_loopback && is_loopback_host(&config.host) {
                    Ok(AdminAccess)
                } else {
                    Err(ApiError::Forbidden(
                        "Admin endpoints are disabled: ASTROCYTE_ADMIN_TOKEN is not set and the request \
                         is not from loopback to a loopback-bound gateway. Set an admin token to enable these endpoints."
                            .into(),
                    ))
                }
            }
        }
    }
}
