//! Issued API keys: generation, keyed hashing and revocation over a [`KeyDirectory`]. Keys are
//! stored as HMAC-SHA256 under a server secret: a fast keyed hash is right for long random keys
//! (nothing to brute-force) and keeps lookups on the request path cheap. The CLI and the admin
//! endpoints both call these functions.

use std::sync::Arc;

use astrocyte_core::tenancy::Schema;
use astrocyte_core::{ApiKeyRecord, Error, KeyDirectory, Result};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::config::Secret;

/// Computes the stored form of a key.
#[derive(Clone)]
pub struct KeyHasher {
    secret: Secret,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(***)")
    }
}

impl KeyHasher {
    /// A hasher keyed with the server secret (`ASTROCYTE_API_KEY_SECRET`).
    pub fn new(secret: Secret) -> Self {
        KeyHasher { secret }
    }

    /// Hex-encoded HMAC-SHA256 of `api_key`.
    pub fn hash(&self, api_key: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(api_key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A key directory together with the hasher of its records: what issuing and checking need.
#[derive(Clone)]
pub struct ApiKeys {
    directory: Arc<dyn KeyDirectory>,
    hasher: KeyHasher,
}

/// A freshly issued key; `api_key` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The plaintext key.
    pub api_key: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn validate_principal(principal: &str) -> Result<()> {
    let ok = !principal.trim().is_empty()
        && principal.len() <= 256
        && !principal.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "principal must be 1-256 characters without control characters",
        ))
    }
}

impl ApiKeys {
    /// Keys stored in `directory`, hashed with `hasher`.
    pub fn new(directory: Arc<dyn KeyDirectory>, hasher: KeyHasher) -> Self {
        ApiKeys { directory, hasher }
    }

    /// Issues a key for `principal` in `schema`'s tenant.
    pub async fn issue(&self, schema: &Schema, principal: &str) -> Result<IssuedKey> {
        validate_principal(principal)?;
        let key_id = format!("key_{}", random_hex(8));
        // The id is embedded so an operator can tell which key leaked from the key alone.
        let api_key = format!("ak_{}_{}", &key_id[4..], random_hex(32));
        let record = ApiKeyRecord {
            key_id,
            key_hash: self.hasher.hash(&api_key),
            schema: schema.clone(),
            principal: principal.to_string(),
            created_at: chrono::Utc::now(),
            revoked_at: None,
        };
        self.directory.put_key(&record).await?;
        tracing::info!(key_id = %record.key_id, tenant = %schema, principal, "api key issued");
        Ok(IssuedKey { record, api_key })
    }

    /// Revokes a key; false when there is no such key.
    pub async fn revoke(&self, key_id: &str) -> Result<bool> {
        astrocyte_core::pipeline::validate::check_id(
            "key_id",
            key_id,
            astrocyte_core::pipeline::validate::MAX_ID_BYTES,
        )?;
        let revoked = self
            .directory
            .revoke_key(key_id, chrono::Utc::now())
            .await?;
        if revoked {
            tracing::info!(key_id, "api key revoked");
        }
        Ok(revoked)
    }

    /// Keys of one tenant or all tenants.
    pub async fn list(&self, schema: Option<&Schema>) -> Result<Vec<ApiKeyRecord>> {
        self.directory.list_keys(schema).await
    }

    /// The live (unrevoked) record of a presented key.
    pub async fn verify(&self, api_key: &str) -> Result<Option<ApiKeyRecord>> {
        if api_key.is_empty() || api_key.len() > 512 {
            return Ok(None);
        }
        let hash = self.hasher.hash(api_key);
        let record = self.directory.find_key_by_hash(&hash).await?;
        // The directory matched on the hash; compare again in constant time so a backend that
        // matches loosely (collation, prefix) cannot widen what authenticates.
        Ok(record.filter(|r| {
            r.revoked_at.is_none()
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    r.key_hash.as_bytes(),
                    hash.as_bytes(),
                ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = KeyHasher::new(Secret::new("0123456789abcdef"));
        let b = KeyHasher::new(Secret::new("fedcba9876543210"));
        assert_eq!(a.hash("k"), a.hash("k"));
        assert_ne!(a.hash("k"), b.hash("k"));
        assert_eq!(a.hash("k").len(), 64);
    }
}
