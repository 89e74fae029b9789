//! JWT verification: HS256 with a shared secret, or RS256/ES256 against a JWKS read from a file
//! or fetched from a URL (re-fetched, at most every 30 s, when a token names an unknown key).
//! Tokens must carry `exp`, are refused before their `nbf`; issuer and audience are checked when configured. This module only
//! verifies; deciding what a claim means is up to the caller.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::config::{ConfigError, JwksSource, Secret};

/// Verified claims of a token.
pub type Claims = HashMap<String, Value>;

/// Minimum time between two JWKS fetches triggered by unknown key ids.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

enum Keys {
    Hs256(DecodingKey),
    Jwks {
        source: JwksSource,
        set: RwLock<JwkSet>,
        last_fetch: Mutex<Instant>,
        client: reqwest::Client,
    },
}

/// Clock skew tolerated on `exp` and `nbf`, in seconds, unless [`JwtVerifier::with_leeway`]
/// sets another.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 60;

/// Verifies bearer tokens.
pub struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_seconds: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_seconds", &self.leeway_seconds)
            .finish_non_exhaustive()
    }
}

async fn load_jwks(source: &JwksSource, client: &reqwest::Client) -> Result<JwkSet, String> {
    let text = match source {
        JwksSource::File(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        JwksSource::Url(url) => client
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot fetch {url}: {e}"))?
            .text()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?,
    };
    serde_json::from_str::<JwkSet>(&text).map_err(|e| format!("not a JWKS document: {e}"))
}

impl JwtVerifier {
    /// An HS256 verifier.
    pub fn hs256(secret: &Secret, issuer: Option<String>, audience: Option<String>) -> Self {
        if audience.is_none() {
            tracing::warn!("ASTROCYTE_JWT_AUDIENCE is not set: HS256 tokens are accepted without audience validation");
        }
        JwtVerifier {
            keys: Keys::Hs256(DecodingKey::from_secret(secret.expose().as_bytes())),
            issuer,
            audience,
            leeway_seconds: DEFAULT_JWT_LEEWAY_SECONDS,
        }
    }

    /// A JWKS verifier; the keys are loaded now so a bad source stops start-up.
    pub async fn jwks(
        source: JwksSource,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConfigError::Invalid {
                setting: "ASTROCYTE_OIDC_JWKS_URL".into(),
                message: e.to_string(),
            })?;
        let setting = match &source {
            JwksSource::Url(_) => "ASTROCYTE_OIDC_JWKS_URL",
            JwksSource::File(_) => "ASTROCYTE_OIDC_JWKS_PATH",
        };
        let set = load_jwks(&source, &client)
            .await
            .map_err(|message| ConfigError::Invalid {
                setting: setting.into(),
                message,
            })?;
        Ok(JwtVerifier {
            keys: Keys::Jwks {
                source,
                set: RwLock::new(set),
                last_fetch: Mutex::new(Instant::now()),
                client,
            },
            issuer,
            audience,
            leeway_seconds: DEFAULT_JWT_LEEWAY_SECONDS,
        })
    }

    /// The clock skew tolerated on `exp` and `nbf`, in seconds.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway_seconds = seconds;
        self
    }

    /// The clock skew tolerated on `exp` and `nbf`, in seconds.
    pub fn leeway_seconds(&self) -> u64 {
        self.leeway_seconds
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        // A token is refused before its `nbf` (when it has one), as after its `exp`.
        validation.validate_nbf = true;
        validation.leeway = self.leeway_seconds;
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            validation.set_required_spec_claims(&["exp", "iss"]);
        }
        validation
    }

    /// Verifies `token` and returns its claims; the error is for logs only.
    pub async fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        match &self.keys {
            Keys::Hs256(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(format!("algorithm {:?} is not accepted", header.alg));
                }
                decode::<Claims>(token, key, &self.validation(Algorithm::HS256))
                    .map(|data| data.claims)
                    .map_err(|e| format!("invalid token: {e}"))
            }
            Keys::Jwks {
                source,
                set,
                last_fetch,
                client,
            } => {
                if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
                    return Err(format!("algorithm {:?} is not accepted", header.alg));
                }
                let kid = header.kid.clone().unwrap_or_default();
                let mut key = Self::find_key(&set.read(), &kid)?;
                if key.is_none() && matches!(source, JwksSource::Url(_)) {
                    let due = {
                        let mut last = last_fetch.lock();
                        let due = last.elapsed() >= JWKS_REFRESH_INTERVAL;
                        if due {
                            *last = Instant::now();
                        }
                        due
                    };
                    if due {
                        match load_jwks(source, client).await {
                            Ok(fresh) => *set.write() = fresh,
                            Err(error) => tracing::warn!(%error, "jwks refresh failed"),
                        }
                        key = Self::find_key(&set.read(), &kid)?;
                    }
                }
                let key = key.ok_or_else(|| format!("no JWKS key for kid {kid:?}"))?;
                decode::<Claims>(token, &key, &self.validation(header.alg))
                    .map(|data| data.claims)
                    .map_err(|e| format!("invalid token: {e}"))
            }
        }
    }

    fn find_key(set: &JwkSet, kid: &str) -> Result<Option<DecodingKey>, String> {
        // A token without kid is accepted only against a single-key set.
        let jwk = if kid.is_empty() {
            (set.keys.len() == 1).then(|| &set.keys[0])
        } else {
            set.find(kid)
        };
        jwk.map(|j| DecodingKey::from_jwk(j).map_err(|e| format!("unusable JWKS key: {e}")))
            .transpose()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .expect("encodes")
    }

    #[tokio::test]
    async fn a_token_is_refused_before_its_nbf_within_the_leeway_only() {
        let now = chrono::Utc::now().timestamp();
        let verifier = JwtVerifier::hs256(&Secret::new("test-secret"), None, None);
        assert_eq!(verifier.leeway_seconds(), DEFAULT_JWT_LEEWAY_SECONDS);
        let tomorrow = token(json!({"sub": "a", "exp": now + 172_800, "nbf": now + 86_400}));
        let error = verifier.verify(&tomorrow).await.expect_err("not yet valid");
        assert!(error.contains("ImmatureSignature"), "{error}");
        let started = token(json!({"sub": "a", "exp": now + 600, "nbf": now - 10}));
        assert!(verifier.verify(&started).await.is_ok());
        let soon = token(json!({"sub": "a", "exp": now + 600, "nbf": now + 30}));
        assert!(
            verifier.verify(&soon).await.is_ok(),
            "30 s of skew is tolerated"
        );
        let strict = JwtVerifier::hs256(&Secret::new("test-secret"), None, None).with_leeway(0);
        assert!(strict.verify(&soon).await.is_err());
        let no_nbf = token(json!({"sub": "a", "exp": now + 600}));
        assert!(strict.verify(&no_nbf).await.is_ok(), "nbf is optional");
    }
}
