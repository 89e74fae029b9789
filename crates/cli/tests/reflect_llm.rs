//! Reflect with an OpenAI-compatible LLM: a local server that speaks the chat-completions wire
//! format stands in for the remote model; the `astrocyte` binary runs as a real process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers citing every memory id found in the prompt.
    Cite,
    /// Always 500.
    Fail,
    /// Sleeps past any sane timeout.
    Hang,
}

struct FakeLlm {
    address: SocketAddr,
    calls: Arc<AtomicUsize>,
}

async fn start_fake(behaviour: Behaviour) -> FakeLlm {
    let calls = Arc::new(AtomicUsize::new(0));
    let state = (calls.clone(), behaviour);
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State((calls, behaviour)): State<(Arc<AtomicUsize>, Behaviour)>, Json(body): Json<Value>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                match behaviour {
                    Behaviour::Fail => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": {"message": "model overloaded"}}))),
                    Behaviour::Hang => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        (StatusCode::OK, Json(json!({})))
                    }
                    Behaviour::Cite => {
                        let prompt = body["messages"][1]["content"].as_str().unwrap_or_default().to_string();
                        // Memory lines look like "[<id>] <text>".
                        let ids: Vec<&str> = prompt
                            .lines()
                            .filter_map(|l| l.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(id, _)| id))
                            .collect();
                        let answer = format!("The cat is called Miso [{}].", ids.first().copied().unwrap_or("none"));
                        (StatusCode::OK, Json(json!({"choices": [{"message": {"role": "assistant", "content": answer}}]})))
                    }
                }
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeLlm { address, calls }
}

fn astrocyte(dir: &Path, llm: Option<SocketAddr>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_astrocyte"));
    command
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("ASTROCYTE_EMBEDDER", "hashing");
    if let Some(address) = llm {
        command
            .env("ASTROCYTE_LLM_BASE_URL", format!("http://{address}"))
            .env("ASTROCYTE_LLM_MODEL", "fake-model")
            .env("ASTROCYTE_LLM_MAX_RETRIES", "1")
            .env("ASTROCYTE_LLM_TIMEOUT_SECONDS", "0.5");
    }
    command.output().expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflect_cites_the_memories_the_llm_used() {
    let llm = start_fake(Behaviour::Cite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = astrocyte(
        dir.path(),
        None,
        &[
            "retain",
            "--bank",
            "pets",
            "--json",
            "Miso is the cat's name",
        ],
    );
    assert!(out.status.success());
    let stored: Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = stored["memory_id"].as_str().expect("id").to_string();

    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let llm_address = llm.address;
        move || {
            astrocyte(
                &dir,
                Some(llm_address),
                &[
                    "reflect",
                    "--bank",
                    "pets",
                    "--json",
                    "what is the cat called",
                ],
            )
        }
    })
    .await
    .expect("joined");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reflected: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(reflected["mode"], "llm");
    assert!(reflected["answer"]
        .as_str()
        .unwrap_or_default()
        .contains(&id));
    assert_eq!(reflected["sources"][0]["memory_id"], id.as_str());
    assert_eq!(llm.calls.load(Ordering::SeqCst), 1);

    // No evidence: the engine says so without asking the model to invent an answer.
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let llm_address = llm.address;
        move || {
            astrocyte(
                &dir,
                Some(llm_address),
                &[
                    "reflect",
                    "--bank",
                    "empty-bank",
                    "--json",
                    "what is the cat called",
                ],
            )
        }
    })
    .await
    .expect("joined");
    assert!(out.status.success());
    let reflected: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(reflected["confidence"], 0.0);
    assert_eq!(reflected["sources"].as_array().map(Vec::len), Some(0));
    assert!(reflected["answer"]
        .as_str()
        .unwrap_or_default()
        .contains("no memories"));
    assert_eq!(
        llm.calls.load(Ordering::SeqCst),
        1,
        "no call for an empty bank"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_errors_and_timeouts_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = astrocyte(
        dir.path(),
        None,
        &["retain", "--bank", "pets", "Miso is the cat's name"],
    );
    assert!(out.status.success());
    for behaviour in [Behaviour::Fail, Behaviour::Hang] {
        let llm = start_fake(behaviour).await;
        let address = llm.address;
        let dir_path = dir.path().to_path_buf();
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            astrocyte(
                &dir_path,
                Some(address),
                &["reflect", "--bank", "pets", "what is the cat called"],
            )
        })
        .await
        .expect("joined");
        assert!(
            !out.status.success(),
            "an unavailable LLM must fail the reflect"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("provider unavailable"), "{stderr}");
        assert_eq!(
            llm.calls.load(Ordering::SeqCst),
            2,
            "one try plus one retry"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bounded by timeout and retries"
        );
    }
}
