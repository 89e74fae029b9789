//! `astrocyte serve` as a real process: asynchronous retain through the background workers,
//! survival of `kill -9` mid-queue, two processes sharing one queue, tenants discovered
//! without a restart, and OTLP trace export flushed on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path, workers: bool, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut command = Command::new(env!("CARGO_BIN_EXE_astrocyte"));
        command
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--port", &port.to_string()])
            .env_remove("DATABASE_URL")
            .env("ASTROCYTE_EMBEDDER", "hashing")
            .env("ASTROCYTE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !workers {
            command.arg("--no-workers");
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("serve starts");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/live", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server at {} never became ready", self.base);
    }

    /// SIGTERM (graceful shutdown), then waits for the exit without blocking the runtime,
    /// which may be serving something the process still talks to.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM delivered");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not stop within 30 s of SIGTERM");
    }

    fn kill9(mut self) {
        // Child::kill sends SIGKILL on Unix: no shutdown hook runs.
        self.child.kill().expect("SIGKILL delivered");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WORDS: &[&str] = &[
    "amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
    "kelp", "lagoon", "meadow", "nectar", "obsidian", "prairie", "quartz", "raven", "saffron",
    "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zephyr",
];

/// Distinct enough texts that the near-duplicate check never merges two of them.
fn text(i: usize) -> String {
    let w = |k: usize| WORDS[(i * 7 + k * 11) % WORDS.len()];
    format!(
        "memo {i}: {} {} {} {} visited on day {}",
        w(1),
        w(2),
        w(3),
        w(4),
        i * 13 + 1
    )
}

async fn post(
    client: &reqwest::Client,
    url: String,
    body: Value,
    tenant: Option<&str>,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(t) = tenant {
        request = request.header("X-Tenant-Schema", t);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn enqueue(
    server: &Server,
    client: &reqwest::Client,
    n: usize,
    tenant: Option<&str>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, body) = post(
            client,
            format!("{}/v1/retain", server.base),
            json!({"bank_id": "queue", "content": text(i), "async": true, "idempotency_key": format!("k{i}")}),
            tenant,
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["job_id"].as_str().expect("a job id").to_string());
    }
    ids
}

/// Queues a maintenance job through the admin API and waits until it is done.
async fn run_admin_job(server: &Server, client: &reqwest::Client, job: Value) -> Value {
    let (status, queued) = post(client, format!("{}/v1/admin/jobs", server.base), job, None).await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["job_id"].as_str().expect("id").to_string();
    wait_done(server, client, &[id], None)
        .await
        .pop()
        .expect("one job")
}

async fn wait_done(
    server: &Server,
    client: &reqwest::Client,
    ids: &[String],
    tenant: Option<&str>,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut jobs = Vec::new();
        for id in ids {
            let mut request = client.get(format!("{}/v1/jobs/{id}", server.base));
            if let Some(t) = tenant {
                request = request.header("X-Tenant-Schema", t);
            }
            let job: Value = request
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            jobs.push(job);
        }
        if jobs.iter().all(|j| j["state"] == "done") {
            return jobs;
        }
        assert!(Instant::now() < deadline, "jobs not done in time: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn recall_count(server: &Server, client: &reqwest::Client, tenant: Option<&str>) -> usize {
    let (status, body) = post(
        client,
        format!("{}/v1/recall", server.base),
        json!({"bank_id": "queue", "query": "memo visited on day", "max_results": 1000}),
        tenant,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["hits"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn queued_retains_survive_kill_9_and_run_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let first = Server::start(dir.path(), false, &[]);
    first.ready().await;
    let ids = enqueue(&first, &client, 30, None).await;
    // Re-sending with the same idempotency key returns the same job, not a second one.
    let again = enqueue(&first, &client, 1, None).await;
    assert_eq!(again[0], ids[0]);
    assert_eq!(
        recall_count(&first, &client, None).await,
        0,
        "nothing runs without workers"
    );
    first.kill9();

    let second = Server::start(dir.path(), true, &[]);
    second.ready().await;
    let jobs = wait_done(&second, &client, &ids, None).await;
    for job in &jobs {
        assert_eq!(job["attempts"], 1, "a job ran twice: {job}");
        assert_eq!(job["result"]["stored"], true, "{job}");
    }
    assert_eq!(recall_count(&second, &client, None).await, 30);
}

#[tokio::test]
async fn two_server_processes_share_one_queue_without_running_a_job_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let a = Server::start(dir.path(), true, &[]);
    let b = Server::start(dir.path(), true, &[]);
    a.ready().await;
    b.ready().await;
    let ids = enqueue(&a, &client, 60, None).await;
    let jobs = wait_done(&b, &client, &ids, None).await;
    for job in &jobs {
        assert_eq!(job["attempts"], 1, "a job was claimed twice: {job}");
        assert_eq!(job["result"]["stored"], true, "{job}");
    }
    assert_eq!(recall_count(&a, &client, None).await, 60);
}

#[tokio::test]
async fn a_tenant_created_after_start_up_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let server = Server::start(
        dir.path(),
        true,
        &[("ASTROCYTE_TENANT_EXTENSION", "header")],
    );
    server.ready().await;
    for tenant in ["tenant_late_a", "tenant_late_b"] {
        let ids = enqueue(&server, &client, 3, Some(tenant)).await;
        wait_done(&server, &client, &ids, Some(tenant)).await;
        assert_eq!(recall_count(&server, &client, Some(tenant)).await, 3);
    }
    // Jobs are per tenant: one tenant cannot read another's job.
    let ids = enqueue(&server, &client, 1, Some("tenant_late_a")).await;
    let response = client
        .get(format!("{}/v1/jobs/{}", server.base, ids[0]))
        .header("X-Tenant-Schema", "tenant_late_b")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn lifecycle_jobs_respect_legal_holds_through_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let server = Server::start(dir.path(), true, &[]);
    server.ready().await;
    let old = (chrono::Utc::now() - chrono::Duration::days(90)).to_rfc3339();
    for (i, tags) in [(0, json!([])), (1, json!(["keep"]))] {
        let (status, body) = post(
            &client,
            format!("{}/v1/retain", server.base),
            json!({"bank_id": "queue", "content": text(i), "occurred_at": old, "tags": tags}),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let hold = client
        .put(format!("{}/v1/admin/legal-holds/queue", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(hold.status().as_u16(), 200);
    let lifecycle = json!({"kind": "lifecycle", "payload": {"bank_id": "queue", "archive_after_days": 30, "exempt_tags": ["keep"]}});
    let done = run_admin_job(&server, &client, lifecycle.clone()).await;
    assert_eq!(done["result"]["skipped"], "legal_hold");
    assert_eq!(recall_count(&server, &client, None).await, 2);

    let lifted = client
        .delete(format!("{}/v1/admin/legal-holds/queue", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(lifted.status().as_u16(), 200);
    let done = run_admin_job(&server, &client, lifecycle).await;
    assert_eq!(done["result"]["archived"], 1);
    assert_eq!(
        recall_count(&server, &client, None).await,
        1,
        "the exempt memory stays"
    );

    let (status, _) = post(
        &client,
        format!("{}/v1/admin/jobs", server.base),
        json!({"kind": "teleport", "payload": {"bank_id": "queue"}}),
        None,
    )
    .await;
    assert_eq!(status, 400);
    // Payloads are decoded and validated when queued, not later in a worker.
    for (payload, says) in [
        (json!({"kind": "lifecycle", "payload": {}}), "bank"),
        (
            json!({"kind": "lifecycle", "payload": {"bank_id": "queue"}}),
            "archive_after_days",
        ),
        (
            json!({"kind": "lifecycle", "payload": {"bank_id": "queue", "archive_after_days": -3}}),
            "0 or more",
        ),
        (
            json!({"kind": "lifecycle", "payload": {"bank_id": "queue", "archive_after_days": "soon"}}),
            "malformed lifecycle job payload",
        ),
        (
            json!({"kind": "consolidate", "payload": {"bank_id": "queue", "threshold": 7}}),
            "threshold",
        ),
        (
            json!({"kind": "reembed", "payload": {"bank_id": "queue", "extra": 1}}),
            "unknown field",
        ),
        (
            json!({"kind": "reembed", "payload": {"bank_id": "bad bank!"}}),
            "bank",
        ),
        (
            json!({"kind": "retain", "payload": {"bank_id": "queue", "content": "x"}}),
            "unknown job kind",
        ),
    ] {
        let (status, body) = post(
            &client,
            format!("{}/v1/admin/jobs", server.base),
            payload.clone(),
            None,
        )
        .await;
        assert_eq!(status, 400, "{payload}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{payload}: {detail}");
    }
}

#[tokio::test]
async fn serve_exports_spans_over_otlp_and_flushes_them_on_sigterm() {
    use astrocyte_otlp_collector::{attribute as text, Collector};
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let server = Server::start(
        dir.path(),
        false,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base()),
            ("OTEL_SERVICE_NAME", "astrocyte-e2e"),
            // Only the shutdown flush can deliver within this test.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    server.ready().await;
    let (status, body) = post(
        &client,
        format!("{}/v1/retain", server.base),
        json!({"content": "Spans leave the process.", "bank_id": "otlp"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &client,
        format!("{}/v1/recall", server.base),
        json!({"query": "spans", "bank_id": "otlp"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(collector.requests().is_empty(), "nothing sent yet");

    let exit = server.terminate().await;
    assert!(exit.success(), "graceful shutdown exits cleanly: {exit}");

    let spans = collector.spans("astrocyte-e2e");
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let request = spans
        .iter()
        .find(|s| s.name == "POST /v1/recall")
        .unwrap_or_else(|| panic!("no recall request span among {names:?}"));
    assert_eq!(
        text(&request.attributes, "http.route").as_deref(),
        Some("/v1/recall")
    );
    assert_eq!(
        text(&request.attributes, "tenant").as_deref(),
        Some("public")
    );
    let recall = spans
        .iter()
        .find(|s| s.name == "recall")
        .unwrap_or_else(|| panic!("no engine recall span among {names:?}"));
    // request → service layer → engine, one trace.
    let service = spans
        .iter()
        .find(|s| s.name == "service" && s.span_id == recall.parent_span_id)
        .unwrap_or_else(|| panic!("the engine span's parent is no service span: {names:?}"));
    assert_eq!(service.parent_span_id, request.span_id);
    assert_eq!(recall.trace_id, request.trace_id);
    assert!(names.contains(&"POST /v1/retain"), "{names:?}");
}
