//! The built-in [`TenantExtension`]s besides core's default: issued API keys, a JWT claim, and a
//! trusted proxy header. Each maps a credential to a schema; a schema that fails the identifier
//! rule is an authentication failure (401), never a server error.

use std::collections::BTreeSet;
use std::sync::Arc;

use astrocyte_core::tenancy::{
    AuthenticationError, RequestInfo, Schema, Tenant, TenantContext, TenantExtension,
};
use async_trait::async_trait;

use super::jwt::{bearer, JwtVerifier};
use crate::keys::ApiKeys;

/// The header carrying an API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header a trusted proxy sets to name the tenant.
pub const TENANT_HEADER: &str = "x-tenant-schema";

/// The API key a request presents: `X-Api-Key`, else an `Authorization: Bearer` token (many
/// MCP clients can send only the latter).
pub fn presented_api_key(request: &RequestInfo) -> Option<&str> {
    request
        .header(API_KEY_HEADER)
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .or_else(|| bearer(request.header("authorization")))
}

fn schema_from_credential(raw: &str) -> Result<Schema, AuthenticationError> {
    Schema::new(raw)
        .map_err(|e| AuthenticationError(format!("credential names an invalid schema: {e}")))
}

/// Tenants from issued API keys (`X-Api-Key`), looked up by keyed hash.
pub struct ApiKeyTenantExtension {
    keys: ApiKeys,
}

impl ApiKeyTenantExtension {
    /// An extension over an issued-key directory.
    pub fn new(keys: ApiKeys) -> Self {
        ApiKeyTenantExtension { keys }
    }
}

#[async_trait]
impl TenantExtension for ApiKeyTenantExtension {
    async fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> Result<TenantContext, AuthenticationError> {
        let presented = presented_api_key(request)
            .ok_or_else(|| AuthenticationError("missing X-Api-Key".into()))?;
        let record = self
            .keys
            .verify(presented)
            .await
            .map_err(|e| {
                // An unreachable directory says nothing about the key: 503, not 401.
                if e.kind() == astrocyte_core::ErrorKind::Unavailable {
                    AuthenticationError::unavailable(e)
                } else {
                    AuthenticationError(format!("key directory failed: {e}"))
                }
            })?
            .ok_or_else(|| AuthenticationError("unknown or revoked api key".into()))?;
        Ok(TenantContext::new(record.schema))
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        let records = self
            .keys
            .list(None)
            .await
            .map_err(|e| AuthenticationError(e.to_string()))?;
        let schemas: BTreeSet<Schema> = records
            .into_iter()
            .filter(|r| r.revoked_at.is_none())
            .map(|r| r.schema)
            .collect();
        Ok(schemas
            .into_iter()
            .map(|schema| Tenant { schema })
            .collect())
    }
}

/// Tenants from a claim of a verified bearer token.
pub struct JwtTenantExtension {
    verifier: Arc<JwtVerifier>,
    claim: String,
}

impl JwtTenantExtension {
    /// An extension reading `claim` from tokens `verifier` accepts.
    pub fn new(verifier: Arc<JwtVerifier>, claim: impl Into<String>) -> Self {
        JwtTenantExtension {
            verifier,
            claim: claim.into(),
        }
    }
}

#[async_trait]
impl TenantExtension for JwtTenantExtension {
    async fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> Result<TenantContext, AuthenticationError> {
        let token = bearer(request.header("authorization"))
            .ok_or_else(|| AuthenticationError("missing bearer token".into()))?;
        let claims = self
            .verifier
            .verify(token)
            .await
            .map_err(AuthenticationError)?;
        let raw = claims
            .get(&self.claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                AuthenticationError(format!("token has no string claim {:?}", self.claim))
            })?;
        Ok(TenantContext::new(schema_from_credential(raw)?))
    }

    /// Tenants exist wherever the issuer says; workers use the store's tenant list instead.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        Ok(Vec::new())
    }
}

/// Tenants from `X-Tenant-Schema`, for deployments behind a proxy that authenticates and sets
/// the header (and strips it from client requests). Only enabled explicitly.
#[derive(Debug, Default)]
pub struct TrustedHeaderTenantExtension;

#[async_trait]
impl TenantExtension for TrustedHeaderTenantExtension {
    async fn authenticate(
        &self,
        request: &RequestInfo,
    ) -> Result<TenantContext, AuthenticationError> {
        let raw = request
            .header(TENANT_HEADER)
            .ok_or_else(|| AuthenticationError("missing X-Tenant-Schema".into()))?;
        Ok(TenantContext::new(schema_from_credential(raw.trim())?))
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, AuthenticationError> {
        Ok(Vec::new())
    }
}
