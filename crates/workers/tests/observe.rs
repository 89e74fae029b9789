//! The observe job against a local server that speaks the OpenAI chat-completions wire format
//! (real HTTP over loopback), over a real embedded store.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use astrocyte_core::jobs::{Job, JobState};
use astrocyte_core::observe::{source_ids, OBSERVATION_FACT_TYPE, SOURCE_IDS_KEY};
use astrocyte_core::{
    BankId, Engine, EngineConfig, ErrorKind, Memory, RecallFilter, RecallRequest, RetainRequest,
    Schema,
};
use astrocyte_providers::{HashingEmbedder, OpenAiChat, OpenAiChatConfig};
use astrocyte_store_sqlite::{SqliteOptions, SqliteStore};
use astrocyte_workers::handlers::run;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

/// What the fake model answers.
#[derive(Clone)]
enum Reply {
    /// One fact citing every memory in the prompt, plus one citing an id it was never shown,
    /// wrapped in prose and a code fence.
    Summarise,
    /// This exact fact, citing every memory in the prompt.
    Fixed(String),
}

#[derive(Clone)]
struct Fake {
    prompts: Arc<Mutex<Vec<String>>>,
    reply: Arc<Mutex<Reply>>,
}

async fn chat(State(fake): State<Fake>, Json(body): Json<Value>) -> Json<Value> {
    let prompt = body["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    fake.prompts.lock().expect("lock").push(prompt.clone());
    // Memory lines look like "[<id>] <text>" (a date may come between).
    let lines: Vec<(&str, &str)> = prompt
        .lines()
        .filter_map(|l| l.strip_prefix('[').and_then(|r| r.split_once("] ")))
        .collect();
    let ids: Vec<&str> = lines.iter().map(|(id, _)| *id).collect();
    let reply = fake.reply.lock().expect("lock").clone();
    let content = match reply {
        Reply::Summarise => {
            let texts: Vec<&str> = lines.iter().map(|(_, t)| *t).collect();
            let facts = json!([
                {"text": format!("Observed: {}", texts.join(" / ")), "sources": ids},
                {"text": "An invented fact", "sources": ["00000000-0000-7000-8000-000000000000"]},
            ]);
            format!("Here are the durable facts:\n```json\n{facts}\n```\nThat is all.")
        }
        Reply::Fixed(text) => json!([{"text": text, "sources": ids}]).to_string(),
    };
    Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
    }))
}

async fn start_fake() -> (String, Fake) {
    let fake = Fake {
        prompts: Arc::new(Mutex::new(Vec::new())),
        reply: Arc::new(Mutex::new(Reply::Summarise)),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), fake)
}

fn engine(dir: &std::path::Path, llm: Option<&str>) -> Engine {
    let store = SqliteStore::open(dir, SqliteOptions::default()).expect("store opens");
    let engine = Engine::new(
        Arc::new(store),
        Arc::new(HashingEmbedder::default()),
        EngineConfig::default(),
    );
    match llm {
        Some(base_url) => {
            let mut config = OpenAiChatConfig::new(base_url, "fake-model");
            config.max_retries = 0;
            config.timeout = Duration::from_secs(10);
            engine.with_llm(Arc::new(OpenAiChat::new(config).expect("chat client")))
        }
        None => engine,
    }
}

fn job(payload: Value) -> Job {
    let now = Utc::now();
    Job {
        id: "observe-job".into(),
        kind: "observe".into(),
        payload,
        state: JobState::Running,
        attempts: 1,
        max_attempts: 3,
        last_error: None,
        result: None,
        idempotency_key: None,
        run_at: now,
        lease_owner: None,
        lease_until: None,
        created_at: now,
        updated_at: now,
    }
}

async fn retain(engine: &Engine, schema: &Schema, text: &str, tags: &[&str]) -> String {
    let outcome = engine
        .retain(
            schema,
            RetainRequest {
                bank_id: "b".into(),
                content: text.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
        )
        .await
        .expect("retain");
    assert!(outcome.stored, "{text}");
    outcome.memory_id.expect("id")
}

async fn observations(engine: &Engine, schema: &Schema) -> Vec<Memory> {
    let tenant = engine.store().tenant(schema).await.expect("tenant");
    let bank = BankId::new("b").expect("valid");
    tenant
        .scan(&bank, None, 1000, false)
        .await
        .expect("scan")
        .into_iter()
        .filter(|m| m.fact_type == OBSERVATION_FACT_TYPE)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_distils_memories_into_cited_observations_once() {
    let (base_url, fake) = start_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path(), Some(&base_url));
    let schema = Schema::new("t_observe").expect("valid");
    let texts = [
        "Alice adopted a cat named Miso in March",
        "Miso the cat refuses every food except tuna",
        "Alice plays the cello in a quartet on Sundays",
    ];
    // The last shares only "alice" with the others: the observation carries the shared tag.
    let mut ids = Vec::new();
    for (text, tags) in texts
        .iter()
        .zip([&["home", "alice"][..], &["alice", "home"], &["alice"]])
    {
        ids.push(retain(&engine, &schema, text, tags).await);
    }

    let result = run(&engine, &schema, &job(json!({"bank_id": "b"})))
        .await
        .expect("observe");
    assert_eq!(result["considered"], 3, "{result}");
    assert_eq!(result["llm_calls"], 1, "{result}");
    assert_eq!(result["proposed"], 2, "{result}");
    assert_eq!(
        result["dropped"], 1,
        "the fact citing an unknown id is dropped: {result}"
    );
    assert_eq!(result["stored"], 1, "{result}");

    // The model was shown every memory, by id and text.
    let prompts = fake.prompts.lock().expect("lock").clone();
    assert_eq!(prompts.len(), 1);
    for (id, text) in ids.iter().zip(texts) {
        assert!(
            prompts[0].contains(&format!("[{id}] {text}")),
            "{}",
            prompts[0]
        );
    }

    let found = observations(&engine, &schema).await;
    assert_eq!(found.len(), 1);
    let observation = &found[0];
    assert_eq!(result["observation_ids"], json!([observation.id]));
    assert!(
        observation.text.starts_with("Observed: Alice adopted"),
        "{}",
        observation.text
    );
    let cited: BTreeSet<String> = source_ids(observation).into_iter().collect();
    assert_eq!(cited, ids.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(observation.metadata["observation_of"], 3);
    assert_eq!(observation.tags, vec!["alice".to_string()]);
    assert!(
        observation.occurred_at.is_some(),
        "dated by its newest source"
    );

    // Twice-safe: every memory is cited now, so the model is not asked again.
    let again = run(&engine, &schema, &job(json!({"bank_id": "b"})))
        .await
        .expect("rerun");
    assert_eq!(again["considered"], 0, "{again}");
    assert_eq!(again["stored"], 0, "{again}");
    assert_eq!(fake.prompts.lock().expect("lock").len(), 1);
    assert_eq!(observations(&engine, &schema).await.len(), 1);

    // A new memory alone is read next time; a fact the bank already holds is not stored
    // twice, its new source joins the existing observation instead.
    let new_id = retain(&engine, &schema, "Bob repairs bicycles in his garage", &[]).await;
    *fake.reply.lock().expect("lock") = Reply::Fixed(observation.text.clone());
    let third = run(
        &engine,
        &schema,
        &job(json!({"bank_id": "b", "max_sources": 50})),
    )
    .await
    .expect("third run");
    assert_eq!(third["considered"], 1, "{third}");
    assert_eq!(third["stored"], 0, "{third}");
    assert_eq!(third["deduplicated"], 1, "{third}");
    let prompts = fake.prompts.lock().expect("lock").clone();
    assert_eq!(prompts.len(), 2);
    assert!(
        prompts[1].contains(&new_id) && !prompts[1].contains(&ids[0]),
        "{}",
        prompts[1]
    );
    let found = observations(&engine, &schema).await;
    assert_eq!(found.len(), 1);
    assert!(
        source_ids(&found[0]).contains(&new_id),
        "{:?}",
        found[0].metadata
    );
    assert_eq!(found[0].metadata["observation_of"], 4);

    // Recall returns the observation, with its sources, when asked for observations, and
    // leaves it out when asked for other fact types.
    let recall = |fact_types: Vec<&str>| {
        let engine = &engine;
        let schema = &schema;
        let fact_types: Vec<String> = fact_types.into_iter().map(String::from).collect();
        async move {
            engine
                .recall(
                    schema,
                    RecallRequest {
                        query: "Alice cat Miso".into(),
                        banks: vec!["b".into()],
                        max_results: Some(20),
                        filter: RecallFilter {
                            fact_types: Some(fact_types),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                )
                .await
                .expect("recall")
        }
    };
    let only = recall(vec![OBSERVATION_FACT_TYPE]).await;
    assert_eq!(only.hits.len(), 1);
    assert_eq!(only.hits[0].memory.id, found[0].id);
    let listed = only.hits[0].memory.metadata[SOURCE_IDS_KEY]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        listed.contains(&ids[0]) && listed.contains(&new_id),
        "{listed}"
    );
    let world = recall(vec!["world"]).await;
    assert!(!world.hits.is_empty());
    assert!(world.hits.iter().all(|h| h.memory.fact_type == "world"));
}

#[tokio::test]
async fn observe_without_an_llm_fails_clearly_and_bad_payloads_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path(), None);
    let schema = Schema::new("t_no_llm").expect("valid");
    retain(&engine, &schema, "Alice adopted a cat named Miso", &[]).await;
    let error = run(&engine, &schema, &job(json!({"bank_id": "b"})))
        .await
        .expect_err("no LLM");
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(
        error.to_string().contains("observations need an LLM"),
        "{error}"
    );
    assert!(observations(&engine, &schema).await.is_empty());

    for (payload, expected) in [
        (json!({"bank_id": "b", "max_sources": 0}), "max_sources"),
        (
            json!({"bank_id": "b", "max_sources": -1}),
            "malformed observe job payload",
        ),
        (json!({"bank_id": "b", "limit": 5}), "unknown field"),
        (json!({"bank_id": "bad bank!"}), "bank"),
    ] {
        let error = run(&engine, &schema, &job(payload.clone()))
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{payload}");
        assert!(error.to_string().contains(expected), "{payload}: {error}");
    }
}
