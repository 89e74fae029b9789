//! The shared state of every handler and its builder, which turns a validated
//! [`ServerConfig`] into the tenant extension, principal authentication, policy and path
//! policy. Building may fail (an unreadable JWKS, a store without a key directory); serving
//! never re-reads configuration.

use std::sync::Arc;

use astrocyte_core::portability::PathPolicy;
use astrocyte_core::tenancy::{DefaultTenantExtension, TenantExtension};
use astrocyte_core::{Engine, KeyDirectory};

use crate::access::AccessPolicy;
use crate::auth::jwt::JwtVerifier;
use crate::auth::principal::PrincipalAuth;
use crate::auth::tenant::{
    ApiKeyTenantExtension, JwtTenantExtension, TrustedHeaderTenantExtension,
};
use crate::config::{AuthMode, ConfigError, ServerConfig, TenantExtensionKind};
use crate::keys::{ApiKeys, KeyHasher};
use crate::policy::Policy;
use crate::ServerError;

struct Inner {
    engine: Arc<Engine>,
    config: ServerConfig,
    tenants: Arc<dyn TenantExtension>,
    tenants_authenticated: bool,
    principals: PrincipalAuth,
    policy: Policy,
    api_keys: Option<ApiKeys>,
    paths: PathPolicy,
}

/// Shared, cheaply cloned handler state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// Starts building state for `engine` under `config`.
    pub fn builder(config: ServerConfig, engine: Arc<Engine>) -> AppStateBuilder {
        AppStateBuilder {
            config,
            engine,
            tenant_extension: None,
            key_directory: None,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    /// The configuration the state was built from.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The tenant extension.
    pub fn tenants(&self) -> &Arc<dyn TenantExtension> {
        &self.inner.tenants
    }

    /// Whether the tenant comes from a credential (a custom extension or any built-in one but
    /// the default), as opposed to one fixed schema for every caller.
    pub fn tenants_authenticated(&self) -> bool {
        self.inner.tenants_authenticated
    }

    /// Principal authentication.
    pub fn principals(&self) -> &PrincipalAuth {
        &self.inner.principals
    }

    /// Rate limits, quotas and the PII barrier.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Per-bank grants.
    pub fn access(&self) -> &AccessPolicy {
        &self.inner.config.access
    }

    /// Issued API keys, when a key directory and `ASTROCYTE_API_KEY_SECRET` are both present.
    pub fn api_keys(&self) -> Option<&ApiKeys> {
        self.inner.api_keys.as_ref()
    }

    /// The service layer over this state: every transport's one way to the engine.
    pub fn service(&self) -> crate::service::Service {
        crate::service::Service::new(self.clone())
    }

    /// Where export/import files may live.
    pub fn paths(&self) -> &PathPolicy {
        &self.inner.paths
    }
}

/// Builds [`AppState`]; lets the composition root or a test replace the tenant extension or
/// supply the key directory.
pub struct AppStateBuilder {
    config: ServerConfig,
    engine: Arc<Engine>,
    tenant_extension: Option<Arc<dyn TenantExtension>>,
    key_directory: Option<Arc<dyn KeyDirectory>>,
}

impl AppStateBuilder {
    /// Uses a custom tenant extension instead of the configured built-in one.
    pub fn tenant_extension(mut self, extension: Arc<dyn TenantExtension>) -> Self {
        self.tenant_extension = Some(extension);
        self
    }

    /// Uses this key directory instead of the store's.
    pub fn key_directory(mut self, directory: Arc<dyn KeyDirectory>) -> Self {
        self.key_directory = Some(directory);
        self
    }

    /// Validates what depends on the outside world (JWKS, key directory, export roots) and
    /// builds the state.
    pub async fn build(self) -> Result<AppState, ServerError> {
        let config = self.config;
        let directory = self
            .key_directory
            .or_else(|| self.engine.store().key_directory());
        let api_keys = match (&directory, &config.api_key_secret) {
            (Some(directory), Some(secret)) => Some(ApiKeys::new(
                directory.clone(),
                KeyHasher::new(secret.clone()),
            )),
            _ => None,
        };

        let hs256 = config.jwt.hs256_secret.as_ref().map(|secret| {
            Arc::new(
                JwtVerifier::hs256(
                    secret,
                    config.jwt.hs256_issuer.clone(),
                    config.jwt.hs256_audience.clone(),
                )
                .with_leeway(config.jwt.leeway_seconds),
            )
        });
        let jwks = match &config.jwt.jwks {
            Some(source) => Some(Arc::new(
                JwtVerifier::jwks(
                    source.clone(),
                    config.jwt.oidc_issuer.clone(),
                    config.jwt.oidc_audience.clone(),
                )
                .await?
                .with_leeway(config.jwt.leeway_seconds),
            )),
            None => None,
        };

        let tenants_authenticated = self.tenant_extension.is_some()
            || config.tenant_extension != TenantExtensionKind::Default;
        let tenants: Arc<dyn TenantExtension> = match self.tenant_extension {
            Some(custom) => custom,
            None => match config.tenant_extension {
                TenantExtensionKind::Default => Arc::new(
                    DefaultTenantExtension::new(config.database_schema.as_str()).map_err(|e| {
                        ConfigError::Invalid {
                            setting: "ASTROCYTE_DATABASE_SCHEMA".into(),
                            message: e.to_string(),
                        }
                    })?,
                ),
                TenantExtensionKind::ApiKey => {
                    let keys = api_keys.clone().ok_or_else(|| ConfigError::Invalid {
                        setting: "ASTROCYTE_TENANT_EXTENSION".into(),
                        message: "api_key needs a store with a key directory and ASTROCYTE_API_KEY_SECRET"
                            .into(),
                    })?;
                    Arc::new(ApiKeyTenantExtension::new(keys))
                }
                TenantExtensionKind::Jwt => {
                    // Validation guaranteed one of the two key sources; a JWKS wins when both are set.
                    let verifier = jwks.clone().or_else(|| hs256.clone()).ok_or_else(|| {
                        ConfigError::Invalid {
                            setting: "ASTROCYTE_TENANT_EXTENSION".into(),
                            message: "jwt needs ASTROCYTE_JWT_SECRET or a JWKS".into(),
                        }
                    })?;
                    Arc::new(JwtTenantExtension::new(
                        verifier,
                        config.jwt.tenant_claim.clone(),
                    ))
                }
                TenantExtensionKind::TrustedHeader => {
                    tracing::warn!(
                        "tenant comes from X-Tenant-Schema: only safe behind a proxy that authenticates and sets it"
                    );
                    Arc::new(TrustedHeaderTenantExtension)
                }
            },
        };

        let principals = match config.auth_mode {
            AuthMode::Dev => PrincipalAuth::Dev,
            AuthMode::ApiKey => {
                if config.api_key.is_none() && api_keys.is_none() {
                    return Err(ConfigError::Invalid {
                        setting: "ASTROCYTE_API_KEY".into(),
                        message: "api_key auth needs ASTROCYTE_API_KEY or issued keys (a key directory and ASTROCYTE_API_KEY_SECRET)".into(),
                    }
                    .into());
                }
                PrincipalAuth::ApiKey {
                    static_key: config.api_key.clone(),
                    issued: api_keys.clone(),
                }
            }
            AuthMode::JwtHs256 => {
                PrincipalAuth::JwtHs256(hs256.clone().ok_or_else(|| ConfigError::Invalid {
                    setting: "ASTROCYTE_JWT_SECRET".into(),
                    message: "required when ASTROCYTE_AUTH_MODE=jwt_hs256".into(),
                })?)
            }
            AuthMode::JwtOidc => PrincipalAuth::JwtOidc {
                verifier: jwks.clone().ok_or_else(|| ConfigError::Invalid {
                    setting: "ASTROCYTE_OIDC_JWKS_URL".into(),
                    message: "required when ASTROCYTE_AUTH_MODE=jwt_oidc".into(),
                })?,
                default_actor_type: config.jwt.oidc_actor_type.clone(),
            },
        };

        let paths = PathPolicy::new(config.portability_roots.clone()).map_err(|e| {
            ConfigError::Invalid {
                setting: "ASTROCYTE_PORTABILITY_ROOTS".into(),
                message: e.to_string(),
            }
        })?;
        let policy = Policy::new(&config.rate_limits, &config.quotas, &config.pii);

        // Every request binds its tenant; from here on, storage reached with none bound is a bug.
        astrocyte_core::tenancy::enable_strict_mode();

        Ok(AppState {
            inner: Arc::new(Inner {
                engine: self.engine,
                config,
                tenants,
                tenants_authenticated,
                principals,
                policy,
                api_keys,
                paths,
            }),
        })
    }
}
