//! The inspector's HTTP behaviour (the browser tests in `tests/ui` drive the pages themselves):
//! escaping of stored text, the sign-in flow and its cookie in API-key mode, tenant isolation,
//! refusal of cross-site posts, and the switch that turns it off.

use astrocyte_server::config::{AuthMode, Secret, TenantExtensionKind};
use astrocyte_server::{AppState, Gateway};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{config, schema, serve, spawn, Harness};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn pages_escape_what_memories_hold_and_refuse_cross_site_posts() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let stored: Value = server
        .client
        .post(server.url("/v1/retain"))
        .json(&json!({"bank_id": "b1", "content": "<script>alert('x')</script> tea with Ana", "tags": ["<b>t</b>"]}))
        .send()
        .await
        .expect("retain")
        .json()
        .await
        .expect("json");
    let id = stored["memory_id"].as_str().expect("id").to_string();
    for path in [
        "/ui/banks/b1".to_string(),
        format!("/ui/banks/b1/memories/{id}"),
        "/ui/banks/b1/recall?q=tea+Ana".to_string(),
        "/ui/banks/b1/activity".to_string(),
    ] {
        let response = server
            .client
            .get(server.url(&path))
            .send()
            .await
            .expect("page");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")));
        let html = response.text().await.expect("html");
        assert!(!html.contains("<script>alert"), "{path} echoes markup");
        assert!(!html.contains("<b>t</b>"), "{path} echoes markup");
    }
    let detail = server
        .client
        .get(server.url(&format!("/ui/banks/b1/memories/{id}")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(detail.contains("&lt;script&gt;alert('x')&lt;/script&gt; tea with Ana"));

    // Another site cannot make a browser forget or edit memories, even in dev mode.
    let client = no_redirects();
    let forget = format!("/ui/banks/b1/memories/{id}/forget");
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let response = client
            .post(server.url(&forget))
            .header(name, value)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
    }
    let edit = client
        .post(server.url(&format!("/ui/banks/b1/memories/{id}")))
        .header("origin", "https://evil.example")
        .form(&[("tags", "hacked"), ("metadata", "{}")])
        .send()
        .await
        .expect("post");
    assert_eq!(edit.status(), StatusCode::FORBIDDEN);
    let still: Value = server
        .client
        .get(server.url(&format!("/v1/banks/b1/memories/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(still["memory"]["tags"], json!(["<b>t</b>"]));

    // The same form from this origin works and redirects back to the list.
    let host = server.base.trim_start_matches("http://").to_string();
    let response = client
        .post(server.url(&forget))
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let gone = server
        .client
        .get(server.url(&format!("/v1/banks/b1/memories/{id}")))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn api_key_mode_signs_in_with_a_key_and_keeps_tenants_apart() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.auth_mode = AuthMode::ApiKey;
    cfg.tenant_extension = TenantExtensionKind::ApiKey;
    cfg.api_key_secret = Some(Secret::new("a-server-secret-of-32-characters"));
    let state: AppState = AppState::builder(cfg, h.engine.clone())
        .build()
        .await
        .expect("state");
    let keys = state.api_keys().expect("keys");
    let key_a = keys
        .issue(&schema("ui_a"), "agent:a")
        .await
        .expect("key")
        .api_key;
    let key_b = keys
        .issue(&schema("ui_b"), "agent:b")
        .await
        .expect("key")
        .api_key;
    let server = spawn(Gateway::from_state(state)).await;
    let stored = server
        .client
        .post(server.url("/v1/retain"))
        .header("x-api-key", &key_a)
        .json(&json!({"bank_id": "secrets", "content": "The vault code is heron"}))
        .send()
        .await
        .expect("retain");
    assert_eq!(stored.status(), StatusCode::OK);

    let client = no_redirects();
    let anonymous = client
        .get(server.url("/ui/banks/secrets"))
        .send()
        .await
        .expect("page");
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    let location = anonymous.headers()["location"].to_str().expect("location");
    assert_eq!(location, "/ui/login?next=%2Fui%2Fbanks%2Fsecrets");

    let sign_in = |key: String| {
        let client = client.clone();
        let url = server.url("/ui/login");
        async move {
            client
                .post(url)
                .form(&[("credential", key.as_str()), ("next", "/ui/banks/secrets")])
                .send()
                .await
                .expect("sign in")
        }
    };
    let refused = sign_in("ak_not_a_key".into()).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused
        .text()
        .await
        .expect("html")
        .contains("That credential was refused."));

    let accepted = sign_in(key_a.clone()).await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert_eq!(accepted.headers()["location"], "/ui/banks/secrets");
    let cookie = accepted.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/ui")
    );
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "a session cookie"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    let page = client
        .get(server.url("/ui/banks/secrets"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("The vault code is heron"));

    let b_cookie = sign_in(key_b).await.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    for path in ["/ui", "/ui/banks/secrets", "/ui/banks/secrets/activity"] {
        let html = client
            .get(server.url(path))
            .header("cookie", &b_cookie)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html");
        assert!(
            !html.contains("heron"),
            "tenant b saw tenant a's memory on {path}"
        );
    }
    let banks = client
        .get(server.url("/ui"))
        .header("cookie", &b_cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(!banks.contains("secrets"), "tenant b saw tenant a's bank");
    server.stop().await;
}

#[tokio::test]
async fn the_inspector_can_be_turned_off() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.ui_enabled = false;
    let server = serve(&h, cfg).await;
    let response = server
        .client
        .get(server.url("/ui"))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}
