//! A client written against the reference's contract (as its smoke scripts and gateway
//! plugins talk to it): plain JSON, `X-Astrocyte-Principal`, reading only documented fields.
//! Retain → recall → forget → recall over real HTTP.

use serde_json::{json, Value};

use crate::support::{config, serve, Harness};

/// What a reference client does, without any knowledge of this implementation.
struct ReferenceClient {
    base: String,
    http: reqwest::Client,
    principal: String,
}

impl ReferenceClient {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("Content-Type", "application/json")
            .header("X-Astrocyte-Principal", &self.principal)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("json body")
    }

    async fn retain(&self, content: &str, bank_id: &str, tags: &[&str]) -> Value {
        self.post("/v1/retain", json!({"content": content, "bank_id": bank_id, "tags": tags, "metadata": {"source": "client"}}))
            .await
    }

    async fn recall(&self, query: &str, bank_id: &str) -> Vec<Value> {
        let result = self
            .post(
                "/v1/recall",
                json!({"query": query, "bank_id": bank_id, "max_results": 5}),
            )
            .await;
        assert!(result["total_available"].is_i64() || result["total_available"].is_u64());
        assert!(result["truncated"].is_boolean());
        result["hits"].as_array().cloned().expect("hits list")
    }

    async fn forget(&self, bank_id: &str, memory_ids: &[&str]) -> i64 {
        let result = self
            .post(
                "/v1/forget",
                json!({"bank_id": bank_id, "memory_ids": memory_ids}),
            )
            .await;
        result["deleted_count"].as_i64().expect("deleted_count")
    }
}

#[tokio::test]
async fn reference_client_retain_recall_forget_recall() {
    let h = Harness::new();
    let server = serve(&h, config()).await;
    let live: Value = reqwest::get(server.url("/live"))
        .await
        .expect("live")
        .json()
        .await
        .expect("json");
    assert_eq!(live["status"], "ok");
    let client = ReferenceClient {
        base: server.base.clone(),
        http: reqwest::Client::new(),
        principal: "agent:smoke".into(),
    };
    let kept = client
        .retain(
            "The staging database is called orion.",
            "smoke-bank",
            &["db"],
        )
        .await;
    assert_eq!(kept["stored"], true);
    let doomed = client
        .retain(
            "The old build server was named vega.",
            "smoke-bank",
            &["build"],
        )
        .await;
    let doomed_id = doomed["memory_id"].as_str().expect("memory_id").to_string();

    let hits = client
        .recall("what was the build server named", "smoke-bank")
        .await;
    assert_eq!(hits[0]["text"], "The old build server was named vega.");
    assert_eq!(hits[0]["memory_id"], doomed_id.as_str());
    assert!(hits[0]["score"]
        .as_f64()
        .is_some_and(|s| (0.0..=1.0).contains(&s)));
    assert_eq!(hits[0]["bank_id"], "smoke-bank");
    assert_eq!(hits[0]["tags"], json!(["build"]));
    assert_eq!(hits[0]["metadata"]["source"], "client");

    assert_eq!(client.forget("smoke-bank", &[&doomed_id]).await, 1);
    let hits = client
        .recall("what was the build server named", "smoke-bank")
        .await;
    assert!(
        hits.iter().all(|h| h["memory_id"] != doomed_id.as_str()),
        "forgotten memory is gone"
    );
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["text"], "The staging database is called orion.");
    server.stop().await;
}
