//! Principal authentication, the reference's `ASTROCYTE_AUTH_MODE`: who is calling, as opposed
//! to which tenant the call runs in. Failures answer 401 with a fixed `detail`; the cause is
//! logged, never returned.

use std::sync::Arc;

use astrocyte_core::tenancy::{RequestInfo, Schema};
use subtle::ConstantTimeEq;

use super::jwt::{bearer, JwtVerifier};
use super::tenant::presented_api_key;
use crate::config::Secret;
use crate::error::ApiError;
use crate::keys::ApiKeys;

/// The header naming the principal in dev and static-key modes.
pub const PRINCIPAL_HEADER: &str = "x-astrocyte-principal";

/// How the caller's principal is established.
pub enum PrincipalAuth {
    /// Trust `X-Astrocyte-Principal` (absent = anonymous).
    Dev,
    /// `X-Api-Key`: the configured static key (then `X-Astrocyte-Principal` is required) or an
    /// issued key of the request's tenant (then the key's principal is used).
    ApiKey {
        /// `ASTROCYTE_API_KEY`.
        static_key: Option<Secret>,
        /// The issued-key directory, when there is one.
        issued: Option<ApiKeys>,
    },
    /// HS256 bearer token; principal = `sub`.
    JwtHs256(Arc<JwtVerifier>),
    /// JWKS bearer token; principal = `astrocyte_principal`, else `<actor type>:<sub>`.
    JwtOidc {
        /// The verifier.
        verifier: Arc<JwtVerifier>,
        /// Actor type when the token names none.
        default_actor_type: String,
    },
}

fn unauthorized(public: &str, cause: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%cause, "principal authentication failed");
    ApiError::Unauthorized(public.to_string())
}

fn header<'a>(request: &'a RequestInfo, name: &str) -> Option<&'a str> {
    request
        .header(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl PrincipalAuth {
    /// The authenticated principal of a request (from any transport) running in `tenant`;
    /// `None` is anonymous.
    pub async fn resolve(
        &self,
        headers: &RequestInfo,
        tenant: &Schema,
    ) -> Result<Option<String>, ApiError> {
        match self {
            PrincipalAuth::Dev => Ok(header(headers, PRINCIPAL_HEADER).map(str::to_string)),
            PrincipalAuth::ApiKey { static_key, issued } => {
                let presented = presented_api_key(headers).unwrap_or("");
                if let Some(expected) = static_key {
                    if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
                        return match header(headers, PRINCIPAL_HEADER) {
                            Some(principal) => Ok(Some(principal.to_string())),
                            None => Err(ApiError::Unauthorized(
                                "X-Astrocyte-Principal required when using API key auth".into(),
                            )),
                        };
                    }
                }
                let Some(issued) = issued else {
                    return Err(unauthorized(
                        "Invalid or missing API key",
                        "key does not match ASTROCYTE_API_KEY",
                    ));
                };
                match issued.verify(presented).await {
                    Ok(Some(record)) if &record.schema == tenant => Ok(Some(record.principal)),
                    Ok(Some(record)) => Err(unauthorized(
                        "Invalid or missing API key",
                        format!("key {} belongs to another tenant", record.key_id),
                    )),
                    Ok(None) => Err(unauthorized(
                        "Invalid or missing API key",
                        "unknown or revoked key",
                    )),
                    Err(error) => Err(ApiError::Core(error)),
                }
            }
            PrincipalAuth::JwtHs256(verifier) => {
                let token = bearer(header(headers, "authorization"))
                    .ok_or_else(|| ApiError::Unauthorized("Bearer token required".into()))?;
                let claims = verifier
                    .verify(token)
                    .await
                    .map_err(|cause| unauthorized("Invalid token", cause))?;
                match claims
                    .get("sub")
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                {
                    Some(sub) => Ok(Some(sub.to_string())),
                    None => Err(ApiError::Unauthorized("Token missing sub".into())),
                }
            }
            PrincipalAuth::JwtOidc {
                verifier,
                default_actor_type,
            } => {
                let token = bearer(header(headers, "authorization"))
                    .ok_or_else(|| ApiError::Unauthorized("Bearer token required".into()))?;
                let claims = verifier
                    .verify(token)
                    .await
                    .map_err(|cause| unauthorized("Invalid OIDC token", cause))?;
                let sub = claims
                    .get("sub")
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ApiError::Unauthorized("Token missing sub".into()))?;
                if let Some(principal) = claims
                    .get("astrocyte_principal")
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                {
                    return Ok(Some(principal.to_string()));
                }
                let actor_type = claims
                    .get("astrocyte_actor_type")
                    .and_then(|v| v.as_str())
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| default_actor_type.clone());
                Ok(Some(format!("{actor_type}:{sub}")))
            }
        }
    }
}
