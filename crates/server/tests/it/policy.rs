//! Policy over HTTP: body cap (413), per-tenant and per-bank rate limits and daily quotas (429
//! with `retry_after_seconds`), the PII barrier (redact, reject with 422, warn) and per-bank
//! grants with wildcards (403).

use astrocyte_server::access::{AccessPolicy, DefaultPolicy, Grant, Permission};
use astrocyte_server::policy::pii::{PiiAction, PiiMode};
use axum::http::Method;
use serde_json::{json, Value};

use crate::support::{call, config, post, serve, Harness};

#[tokio::test]
async fn body_over_the_cap_is_413_over_real_http() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.max_request_body_bytes = Some(1024);
    let server = serve(&h, cfg).await;
    let big = json!({"content": "x".repeat(4096), "bank_id": "b"});
    let r = server
        .client
        .post(server.url("/v1/retain"))
        .json(&big)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"detail": "Request body too large"})
    );

    // A chunked body without Content-Length is capped too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"content\":\"".to_vec()),
        Ok(vec![b'y'; 4096]),
        Ok(b"\",\"bank_id\":\"b\"}".to_vec()),
    ];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = server
        .client
        .post(server.url("/v1/retain"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);

    let small = server
        .client
        .post(server.url("/v1/retain"))
        .json(&json!({"content": "fits", "bank_id": "b"}))
        .send()
        .await
        .expect("request");
    assert_eq!(small.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn per_tenant_rate_limit_answers_429_with_retry_after() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.rate_limits.tenant_per_second = Some(2);
    let server = serve(&h, cfg).await;
    let mut statuses = Vec::new();
    let mut limited: Option<(reqwest::header::HeaderMap, Value)> = None;
    for _ in 0..4 {
        let r = server
            .client
            .post(server.url("/v1/recall"))
            .json(&json!({"query": "q", "bank_id": "b"}))
            .send()
            .await
            .expect("request");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let headers = r.headers().clone();
            limited = Some((headers, r.json().await.expect("json")));
        }
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    let (headers, body) = limited.expect("limited");
    let retry = body["retry_after_seconds"]
        .as_f64()
        .expect("retry_after_seconds");
    assert!(retry > 0.0 && retry <= 1.0, "{retry}");
    assert_eq!(body["detail"], "Rate limit exceeded");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Probes are not limited.
    let live = server
        .client
        .get(server.url("/live"))
        .send()
        .await
        .expect("request");
    assert_eq!(live.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn per_bank_rate_limit_and_daily_quota() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.rate_limits.recall_per_minute = Some(2);
    cfg.quotas.retain_per_day = Some(2);
    let app = h.app(cfg).await;
    for _ in 0..2 {
        assert_eq!(
            post(&app, "/v1/recall", json!({"query": "q", "bank_id": "one"}))
                .await
                .status,
            200
        );
    }
    let r = post(&app, "/v1/recall", json!({"query": "q", "bank_id": "one"})).await;
    assert_eq!(r.status, 429);
    assert!(r.json["detail"]
        .as_str()
        .is_some_and(|d| d.starts_with("Rate limited: recall on bank 'one'")));
    assert!(r.json["retry_after_seconds"]
        .as_f64()
        .is_some_and(|s| s > 0.0 && s <= 30.0));
    assert_eq!(
        post(&app, "/v1/recall", json!({"query": "q", "bank_id": "two"}))
            .await
            .status,
        200,
        "per bank"
    );

    // Rejected retains do not spend the quota; stored ones do.
    let empty = post(&app, "/v1/retain", json!({"content": " ", "bank_id": "q"})).await;
    assert_eq!(empty.json["stored"], false);
    for text in ["First stored memory.", "Second stored memory, other words."] {
        assert_eq!(
            post(&app, "/v1/retain", json!({"content": text, "bank_id": "q"}))
                .await
                .json["stored"],
            true
        );
    }
    let r = post(
        &app,
        "/v1/retain",
        json!({"content": "Third one, over quota.", "bank_id": "q"}),
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(r.json["detail"]
        .as_str()
        .is_some_and(|d| d.contains("daily quota")));
    assert!(r.json["retry_after_seconds"]
        .as_f64()
        .is_some_and(|s| s > 0.0 && s <= 86_400.0));
}

#[tokio::test]
async fn pii_redact_reject_and_warn() {
    let h = Harness::new();
    let app = h.app(config()).await;
    let r = post(
        &app,
        "/v1/retain",
        json!({"content": "Reach Dana at dana@example.com or 555-123-4567.", "bank_id": "crm"}),
    )
    .await;
    assert_eq!(r.json["stored"], true);
    let hits = post(
        &app,
        "/v1/recall",
        json!({"query": "reach Dana", "bank_id": "crm"}),
    )
    .await;
    assert_eq!(
        hits.json["hits"][0]["text"],
        "Reach Dana at [EMAIL_REDACTED] or [PHONE_REDACTED]."
    );

    let mut cfg = config();
    cfg.pii.action = PiiAction::Reject;
    let app = h.app(cfg).await;
    let r = post(
        &app,
        "/v1/retain",
        json!({"content": "Card 4111 1111 1111 1111, SSN 123-45-6789.", "bank_id": "crm"}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json["pii_types"], json!(["credit_card", "ssn"]));
    assert_eq!(
        r.json["detail"],
        "Content rejected: PII detected (credit_card, ssn)"
    );

    let mut cfg = config();
    cfg.pii.action = PiiAction::Warn;
    let app = h.app(cfg).await;
    let r = post(
        &app,
        "/v1/retain",
        json!({"content": "Server 10.1.2.3 belongs to Ops.", "bank_id": "warned"}),
    )
    .await;
    assert_eq!(r.json["stored"], true);
    let hits = post(
        &app,
        "/v1/recall",
        json!({"query": "server ops", "bank_id": "warned"}),
    )
    .await;
    assert_eq!(
        hits.json["hits"][0]["text"],
        "Server 10.1.2.3 belongs to Ops."
    );

    let mut cfg = config();
    cfg.pii.mode = PiiMode::Disabled;
    cfg.pii.action = PiiAction::Reject;
    let app = h.app(cfg).await;
    let r = post(
        &app,
        "/v1/retain",
        json!({"content": "mail me: x@y.org", "bank_id": "off"}),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn grants_with_wildcards_and_forget_scopes() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.access = AccessPolicy {
        enabled: true,
        default_policy: DefaultPolicy::Deny,
        grants: vec![
            Grant {
                bank_id: "*".into(),
                principal: "agent:root".into(),
                permissions: vec![Permission::All],
                tenant: None,
            },
            Grant {
                bank_id: "shared".into(),
                principal: "*".into(),
                permissions: vec![Permission::Read],
                tenant: None,
            },
            Grant {
                bank_id: "shared".into(),
                principal: "agent:writer".into(),
                permissions: vec![Permission::Write, Permission::Forget],
                tenant: None,
            },
        ],
    };
    let app = h.app(cfg).await;
    let as_ = |p: &'static str| [("x-astrocyte-principal", p)];
    let retain =
        json!({"content": "Shared fact about the roadmap.", "bank_id": "shared", "tags": ["road"]});
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/v1/retain",
            Some(retain.clone()),
            &as_("agent:reader")
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/v1/retain",
            Some(retain),
            &as_("agent:writer")
        )
        .await
        .status,
        200
    );
    let recall = json!({"query": "roadmap", "bank_id": "shared"});
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/v1/recall",
            Some(recall),
            &as_("agent:anyone")
        )
        .await
        .status,
        200
    );
    let private = json!({"query": "roadmap", "banks": ["shared", "private"]});
    let r = call(
        &app,
        Method::POST,
        "/v1/recall",
        Some(private),
        &as_("agent:anyone"),
    )
    .await;
    assert_eq!(r.status, 403, "every requested bank is checked");

    let by_tag = json!({"bank_id": "shared", "tags": ["road"]});
    let wipe = json!({"bank_id": "shared", "scope": "all"});
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/v1/forget",
            Some(wipe.clone()),
            &as_("agent:writer")
        )
        .await
        .status,
        403,
        "scope all needs admin"
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/v1/forget",
            Some(by_tag),
            &as_("agent:writer")
        )
        .await
        .status,
        200
    );
    let r = call(
        &app,
        Method::POST,
        "/v1/forget",
        Some(wipe),
        &as_("agent:root"),
    )
    .await;
    assert_eq!(r.status, 200, "`*` permission grants admin: {}", r.text);
    let r = call(
        &app,
        Method::POST,
        "/v1/reflect",
        Some(json!({"query": "q", "bank_id": "anything"})),
        &as_("agent:root"),
    )
    .await;
    assert_eq!(r.status, 200);
}
