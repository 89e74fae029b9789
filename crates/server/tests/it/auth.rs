//! Principal authentication in every mode (dev, api_key, jwt_hs256, jwt_oidc with a JWKS from
//! a URL and from a file) including expired and forged tokens; issued API keys as tenant
//! credentials; the JWT tenant claim; the admin guard.

use std::net::SocketAddr;

use astrocyte_server::access::{AccessPolicy, DefaultPolicy, Grant, Permission};
use astrocyte_server::config::{AuthMode, JwksSource, Secret, TenantExtensionKind};
use astrocyte_server::{AppState, Gateway, ServerConfig};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::{call, config, spawn, Harness};

/// Grants `read` and `write` on every bank to `principal` only.
fn only(principal: &str) -> AccessPolicy {
    AccessPolicy {
        enabled: true,
        default_policy: DefaultPolicy::Deny,
        grants: vec![Grant {
            bank_id: "*".into(),
            principal: principal.into(),
            permissions: vec![Permission::Read, Permission::Write],
            tenant: None,
        }],
    }
}

fn recall_body() -> Option<Value> {
    Some(json!({"query": "anything", "bank_id": "b"}))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn dev_mode_trusts_the_principal_header() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.access = only("agent:bot");
    let app = h.app(cfg).await;
    let ok = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("x-astrocyte-principal", "agent:bot")],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let other = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("x-astrocyte-principal", "agent:eve")],
    )
    .await;
    assert_eq!(other.status, 403);
    assert_eq!(
        other.json["detail"],
        "Principal 'agent:eve' denied 'read' on bank 'b'"
    );
    let anonymous = call(&app, Method::POST, "/v1/recall", recall_body(), &[]).await;
    assert_eq!(anonymous.status, 403);
}

#[tokio::test]
async fn api_key_mode_with_the_configured_key() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.auth_mode = AuthMode::ApiKey;
    cfg.api_key = Some(Secret::new("static-key-123"));
    cfg.access = only("agent:bot");
    let app = h.app(cfg).await;
    let missing = call(&app, Method::POST, "/v1/recall", recall_body(), &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json,
        json!({"detail": "Invalid or missing API key"})
    );
    let wrong = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("x-api-key", "static-key-124")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    let no_principal = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("x-api-key", "static-key-123")],
    )
    .await;
    assert_eq!(no_principal.status, 401);
    assert_eq!(
        no_principal.json["detail"],
        "X-Astrocyte-Principal required when using API key auth"
    );
    let ok = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[
            ("x-api-key", "static-key-123"),
            ("x-astrocyte-principal", "agent:bot"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

fn key_config(admin_token: &str) -> ServerConfig {
    let mut cfg = config();
    cfg.auth_mode = AuthMode::ApiKey;
    cfg.tenant_extension = TenantExtensionKind::ApiKey;
    cfg.api_key_secret = Some(Secret::new("a-server-secret-of-32-characters"));
    cfg.admin_token = Some(Secret::new(admin_token));
    cfg
}

#[tokio::test]
async fn issued_keys_authenticate_their_tenant_and_stop_when_revoked() {
    let h = Harness::new();
    // The SQLite store's own directory: keys live in a file beside the tenant files.
    let directory = h
        .engine
        .store()
        .key_directory()
        .expect("the SQLite store keeps a key directory");
    let state = AppState::builder(key_config("admin-secret"), h.engine.clone())
        .key_directory(directory.clone())
        .build()
        .await
        .expect("state");
    let server = spawn(Gateway::from_state(state)).await;
    let client = &server.client;

    let denied = client
        .post(server.url("/v1/admin/keys"))
        .json(&json!({"tenant": "tenant_a", "principal": "agent:a"}))
        .send()
        .await
        .expect("request");
    assert_eq!(denied.status(), 401, "admin needs the token");
    let issued: Value = client
        .post(server.url("/v1/admin/keys"))
        .header("x-admin-token", "admin-secret")
        .json(&json!({"tenant": "tenant_a", "principal": "agent:a"}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let key = issued["api_key"]
        .as_str()
        .expect("plaintext key returned once")
        .to_string();
    let key_id = issued["key_id"].as_str().expect("key id").to_string();
    assert_eq!(issued["tenant"], "tenant_a");
    let stored = directory.list_keys(None).await.expect("list keys");
    assert!(
        stored
            .iter()
            .all(|r| !r.key_hash.contains(&key) && r.key_hash.len() == 64),
        "only the hash is stored"
    );

    let retain = client
        .post(server.url("/v1/retain"))
        .header("x-api-key", &key)
        .json(&json!({"content": "Tenant A keeps its notes here.", "bank_id": "notes"}))
        .send()
        .await
        .expect("request");
    assert_eq!(retain.status(), 200);
    let listed: Value = client
        .get(server.url("/v1/admin/keys?tenant=tenant_a"))
        .header("x-admin-token", "admin-secret")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains(&key));

    let bad = client
        .post(server.url("/v1/recall"))
        .header("x-api-key", format!("{key}x"))
        .json(&json!({"query": "notes", "bank_id": "notes"}))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.expect("json"),
        json!({"error": "authentication_failed"})
    );

    let revoked = client
        .delete(server.url(&format!("/v1/admin/keys/{key_id}")))
        .header("x-admin-token", "admin-secret")
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 200);
    let after = client
        .post(server.url("/v1/recall"))
        .header("x-api-key", &key)
        .json(&json!({"query": "notes", "bank_id": "notes"}))
        .send()
        .await
        .expect("request");
    assert_eq!(after.status(), 401, "a revoked key never authenticates");
    let unknown = client
        .delete(server.url("/v1/admin/keys/key_nope"))
        .header("x-admin-token", "admin-secret")
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);
    let invalid_tenant = client
        .post(server.url("/v1/admin/keys"))
        .header("x-admin-token", "admin-secret")
        .json(&json!({"tenant": "no-dashes", "principal": "agent:a"}))
        .send()
        .await
        .expect("request");
    assert_eq!(invalid_tenant.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn admin_routes_without_a_token_are_loopback_only() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let from = |ip: [u8; 4]| {
        let mut request = Request::builder()
            .uri("/v1/admin/banks")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 1234))));
        request
    };
    let local = app
        .clone()
        .oneshot(from([127, 0, 0, 1]))
        .await
        .expect("response");
    assert_eq!(local.status(), 200);
    let remote = app
        .clone()
        .oneshot(from([10, 1, 2, 3]))
        .await
        .expect("response");
    assert_eq!(remote.status(), 403);
}

fn hs256_config(secret: &str) -> ServerConfig {
    let mut cfg = config();
    cfg.auth_mode = AuthMode::JwtHs256;
    cfg.jwt.hs256_secret = Some(Secret::new(secret));
    cfg.jwt.hs256_audience = Some("astrocyte".into());
    cfg.jwt.hs256_issuer = Some("https://issuer.test".into());
    cfg.access = only("user:alice");
    cfg
}

fn hs256(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token")
}

#[tokio::test]
async fn jwt_hs256_accepts_valid_tokens_and_refuses_expired_forged_and_misaddressed_ones() {
    let h = Harness::new();
    let app = h.app(hs256_config("shared-secret")).await;
    let good = json!({"sub": "user:alice", "aud": "astrocyte", "iss": "https://issuer.test", "exp": now() + 600});
    let bearer = |t: String| format!("Bearer {t}");
    let ok = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[(
            "authorization",
            &bearer(hs256("shared-secret", good.clone())),
        )],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let missing = call(&app, Method::POST, "/v1/recall", recall_body(), &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json["detail"], "Bearer token required");

    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("another-service");
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.test");
    let mut no_exp = good.clone();
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    let cases = [
        ("expired", hs256("shared-secret", expired)),
        ("forged", hs256("not-the-secret", good.clone())),
        ("audience", hs256("shared-secret", wrong_aud)),
        ("issuer", hs256("shared-secret", wrong_iss)),
        ("no exp", hs256("shared-secret", no_exp)),
        ("garbage", "not.a.token".to_string()),
    ];
    for (name, token) in cases {
        let r = call(
            &app,
            Method::POST,
            "/v1/recall",
            recall_body(),
            &[("authorization", &bearer(token))],
        )
        .await;
        assert_eq!(r.status, 401, "{name}");
        assert_eq!(r.json, json!({"detail": "Invalid token"}), "{name}");
    }
    let no_sub = hs256(
        "shared-secret",
        json!({"aud": "astrocyte", "iss": "https://issuer.test", "exp": now() + 60}),
    );
    let r = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &bearer(no_sub))],
    )
    .await;
    assert_eq!(r.json["detail"], "Token missing sub");
}

#[tokio::test]
async fn jwt_tenant_extension_takes_the_tenant_from_a_verified_claim() {
    let h = Harness::new();
    let mut cfg = hs256_config("shared-secret");
    cfg.tenant_extension = TenantExtensionKind::Jwt;
    cfg.access = AccessPolicy::default();
    let app = h.app(cfg).await;
    let token = |tenant: &str| {
        format!(
            "Bearer {}",
            hs256(
                "shared-secret",
                json!({"sub": "user:alice", "aud": "astrocyte",
            "iss": "https://issuer.test", "exp": now() + 600, "tenant": tenant})
            )
        )
    };
    let r = call(
        &app,
        Method::POST,
        "/v1/retain",
        Some(json!({"content": "Only in tenant one.", "bank_id": "b"})),
        &[("authorization", &token("tenant_one"))],
    )
    .await;
    assert_eq!(r.json["stored"], true, "{}", r.text);
    let r = call(
        &app,
        Method::POST,
        "/v1/recall",
        Some(json!({"query": "only tenant", "bank_id": "b"})),
        &[("authorization", &token("tenant_two"))],
    )
    .await;
    assert_eq!(
        r.json["hits"].as_array().map(Vec::len),
        Some(0),
        "tenant two sees nothing of tenant one"
    );
    let r = call(
        &app,
        Method::POST,
        "/v1/recall",
        Some(json!({"query": "only tenant", "bank_id": "b"})),
        &[("authorization", &token("tenant_one"))],
    )
    .await;
    assert_eq!(r.json["hits"].as_array().map(Vec::len), Some(1));
    let r = call(
        &app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &token("bad-schema!"))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json, json!({"error": "authentication_failed"}));
    // The tenant never comes from the body.
    let r = call(&app, Method::POST, "/v1/recall",
        Some(json!({"query": "only tenant", "bank_id": "b", "tenant": "tenant_one", "schema": "tenant_one"})),
        &[("authorization", &token("tenant_two"))]).await;
    assert_eq!(r.json["hits"].as_array().map(Vec::len), Some(0));
}

/// An ES256 signing key with its public JWK.
struct EcKey {
    der: Vec<u8>,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("pair");
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    EcKey {
        der: pkcs8.as_ref().to_vec(),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            "kid": kid, "alg": "ES256", "use": "sig"}),
    }
}

fn es256(key: &EcKey, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    format!(
        "Bearer {}",
        encode(&header, &claims, &EncodingKey::from_ec_der(&key.der)).expect("token")
    )
}

fn oidc_config(source: JwksSource) -> ServerConfig {
    let mut cfg = config();
    cfg.auth_mode = AuthMode::JwtOidc;
    cfg.jwt.jwks = Some(source);
    cfg.jwt.oidc_issuer = Some("https://idp.test".into());
    cfg.jwt.oidc_audience = Some("astrocyte-api".into());
    cfg.access = only("user:alice");
    cfg
}

async fn oidc_checks(app: &axum::Router, key: &EcKey) {
    let claims = json!({"sub": "alice", "aud": "astrocyte-api", "iss": "https://idp.test", "exp": now() + 600});
    let ok = call(
        app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &es256(key, "k1", claims.clone()))],
    )
    .await;
    assert_eq!(ok.status, 200, "principal user:alice from sub: {}", ok.text);

    let forger = ec_key("k1");
    let forged = call(
        app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &es256(&forger, "k1", claims.clone()))],
    )
    .await;
    assert_eq!(forged.status, 401);
    assert_eq!(forged.json["detail"], "Invalid OIDC token");
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 3600);
    let r = call(
        app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &es256(key, "k1", expired))],
    )
    .await;
    assert_eq!(r.status, 401);
    let mut other_aud = claims.clone();
    other_aud["aud"] = json!("someone-else");
    let r = call(
        app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &es256(key, "k1", other_aud))],
    )
    .await;
    assert_eq!(r.status, 401);
    let hs = format!("Bearer {}", hs256("guess", claims.clone()));
    let r = call(
        app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &hs)],
    )
    .await;
    assert_eq!(r.status, 401, "HS256 is not accepted against a JWKS");
    let mut as_agent = claims.clone();
    as_agent["astrocyte_actor_type"] = json!("agent");
    let r = call(
        app,
        Method::POST,
        "/v1/recall",
        recall_body(),
        &[("authorization", &es256(key, "k1", as_agent))],
    )
    .await;
    assert_eq!(r.status, 403, "agent:alice holds no grant");
}

#[tokio::test]
async fn jwt_oidc_verifies_es256_against_a_jwks_served_over_http() {
    let key = ec_key("k1");
    let jwks = json!({"keys": [key.jwk.clone()]});
    let idp = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let idp_addr = listener.local_addr().expect("addr");
    let idp_task = tokio::spawn(async move { axum::serve(listener, idp).await });

    let h = Harness::new();
    let app = h
        .app(oidc_config(JwksSource::Url(format!(
            "http://{idp_addr}/jwks"
        ))))
        .await;
    oidc_checks(&app, &key).await;
    idp_task.abort();
}

#[tokio::test]
async fn jwt_oidc_reads_a_jwks_file_and_a_bad_file_refuses_to_start() {
    let key = ec_key("k1");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [key.jwk.clone()]}).to_string()).expect("write");
    let h = Harness::new();
    let app = h.app(oidc_config(JwksSource::File(path))).await;
    oidc_checks(&app, &key).await;

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "not json").expect("write");
    let result = AppState::builder(oidc_config(JwksSource::File(broken)), h.engine.clone())
        .build()
        .await;
    let err = result.err().expect("bad JWKS refuses to start");
    assert!(
        err.to_string().contains("ASTROCYTE_OIDC_JWKS_PATH"),
        "{err}"
    );
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_one_callers_request() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let queue = |principal: &'static str, bank: &'static str, content: &'static str| {
        let app = app.clone();
        async move {
            call(
                &app,
                Method::POST,
                "/v1/retain",
                Some(json!({"bank_id": bank, "content": content, "async": true, "idempotency_key": "shared"})),
                &[("x-astrocyte-principal", principal)],
            )
            .await
        }
    };
    let first = queue("agent:alice", "a", "Alice's note about the harbour.").await;
    assert_eq!(first.status, 202, "{}", first.text);
    let again = queue("agent:alice", "a", "Alice's note about the harbour.").await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(
        again.json["job_id"], first.json["job_id"],
        "a retry is the same job"
    );
    // Another principal's key, or another bank, is another request: its own job.
    let bob = queue("agent:bob", "a", "Bob's note about the lighthouse.").await;
    assert_eq!(bob.status, 202, "{}", bob.text);
    assert_ne!(bob.json["job_id"], first.json["job_id"]);
    let other_bank = queue("agent:alice", "b", "Alice's note about the harbour.").await;
    assert_ne!(other_bank.json["job_id"], first.json["job_id"]);
    // The same caller reusing a key for different content is refused, not silently dropped.
    let reused = queue("agent:alice", "a", "A different note.").await;
    assert_eq!(reused.status, 409, "{}", reused.text);
}
