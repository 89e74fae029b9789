//! `astrocyte serve` as a real process: asynchronous retain through the background workers,
//! survival of `kill -9` mid-queue, acknowledged retains surviving `kill -9` under concurrent
//! load (embedded store and PostgreSQL), two processes sharing one queue, tenants discovered
//! without a restart, and OTLP trace export flushed on SIGTERM.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path, workers: bool, env: &[(&str, &str)]) -> Server {
        Self::start_on(dir, None, workers, env)
    }

    /// `serve` on the embedded store in `dir`, or on PostgreSQL at `database_url`.
    fn start_on(
        dir: &Path,
        database_url: Option<&str>,
        workers: bool,
        env: &[(&str, &str)],
    ) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut command = Command::new(env!("CARGO_BIN_EXE_astrocyte"));
        command.arg("--data-dir").arg(dir);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        command
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
    // The workers' outcomes and the queue sizes reach /metrics.
    let metrics = client
        .get(format!("{}/metrics", second.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let value = |series: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    };
    assert_eq!(
        value("astrocyte_jobs_finished_total{outcome=\"done\"}"),
        Some(30.0),
        "{metrics}"
    );
    assert_eq!(
        value("astrocyte_jobs_finished_total{outcome=\"dead\"}"),
        Some(0.0)
    );
    for state in ["queued", "running", "dead"] {
        assert!(
            value(&format!("astrocyte_jobs{{state=\"{state}\"}}")).is_some(),
            "{state}: {metrics}"
        );
    }
    // At least one poll found each of the 30 jobs.
    assert!(
        value("astrocyte_job_polls_total").is_some_and(|polls| polls >= 30.0),
        "{metrics}"
    );
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
            "from 0 to",
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
            json!({"kind": "observe", "payload": {"bank_id": "queue", "max_sources": 0}}),
            "max_sources",
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

/// A scratch PostgreSQL database on the shared test server, with a role prefix of its own;
/// both are dropped at the end (never the server itself).
struct ScratchDb {
    admin_url: String,
    name: String,
    role_prefix: String,
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl ScratchDb {
    fn create(tag: &str) -> ScratchDb {
        let admin_url = std::env::var("ASTROCYTE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("astro_serve_{tag}_{}", &unique[..10]);
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        ScratchDb {
            admin_url,
            name,
            role_prefix: format!("as{}_", &unique[10..18]),
        }
    }

    fn url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => panic!("ASTROCYTE_TEST_DATABASE_URL has no database part"),
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        let roles = psql(
            &self.admin_url,
            &format!(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{}')",
                self.role_prefix
            ),
        );
        for role in roles.lines().filter(|r| !r.is_empty()) {
            psql(&self.admin_url, &format!("DROP ROLE IF EXISTS \"{role}\""));
        }
    }
}

/// Every memory of `bank` in the default tenant, exported by the CLI as a separate process:
/// (id, text) in file order.
fn export_bank(
    dir: &Path,
    database_url: Option<&str>,
    env: &[(&str, &str)],
    bank: &str,
) -> Vec<(String, String)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_astrocyte"));
    command.arg("--data-dir").arg(dir);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    command
        .args(["export", "--bank", bank])
        .env_remove("DATABASE_URL")
        .env("ASTROCYTE_EMBEDDER", "hashing")
        .env("ASTROCYTE_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("export runs");
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("an AMA line"))
        .collect::<Vec<_>>()
        .into_iter();
    let header = lines.next().expect("a header line");
    let records: Vec<(String, String)> = lines
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["text"].as_str().expect("text").to_string(),
            )
        })
        .collect();
    assert_eq!(header["memory_count"], records.len(), "{header}");
    records
}

/// Concurrent writers retain distinct texts into `serve`; the server is killed with SIGKILL
/// mid-load, restarted on the same storage, and every retain that got a 200 must be there
/// under the id it was given, with its text, exactly once; no text is stored twice (writes
/// cut off in flight may or may not be there, but never doubled); the restarted server
/// recalls acknowledged memories and takes new writes.
async fn acknowledged_retains_survive_kill_9_under_load(
    dir: &Path,
    database_url: Option<&str>,
    env: &[(&str, &str)],
) {
    const WRITERS: usize = 8;
    const BEFORE_KILL: usize = 120;
    let first = Server::start_on(dir, database_url, true, env);
    first.ready().await;
    let acknowledged = Arc::new(acks::Acks::default());
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (base, acknowledged, sent) = (first.base.clone(), acknowledged.clone(), sent.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client");
            for i in 0.. {
                let content = format!("writer {writer} {}", text(writer * 100_000 + i));
                sent.fetch_add(1, Ordering::SeqCst);
                let response = client
                    .post(format!("{base}/v1/retain"))
                    .json(&json!({"bank_id": "load", "content": content}))
                    .send()
                    .await;
                // The server is gone: stop this writer.
                let Ok(response) = response else { break };
                let status = response.status().as_u16();
                let Ok(body) = response.json::<Value>().await else {
                    break;
                };
                assert_eq!(status, 200, "a retain answered {status}: {body}");
                assert_eq!(body["stored"], true, "{body}");
                let id = body["memory_id"].as_str().expect("an id").to_string();
                acknowledged.push(id, content);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.len() < BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "too few acknowledged retains before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGKILL while every writer has a request in flight.
    first.kill9();
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let acknowledged = acknowledged.take();
    let in_flight = sent.load(Ordering::SeqCst) - acknowledged.len();
    assert!(acknowledged.len() >= BEFORE_KILL);
    assert!(in_flight >= 1, "the kill cut no request off");
    eprintln!(
        "{} retains acknowledged, {in_flight} cut off by kill -9",
        acknowledged.len()
    );

    let second = Server::start_on(dir, database_url, true, env);
    second.ready().await;
    let exported = export_bank(dir, database_url, env, "load");
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    for (id, text) in &exported {
        assert!(by_id.insert(id, text).is_none(), "id {id} exported twice");
    }
    let distinct_texts: HashSet<&str> = exported.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        distinct_texts.len(),
        exported.len(),
        "a text was stored twice"
    );
    for (id, content) in &acknowledged {
        assert_eq!(
            by_id.get(id.as_str()).copied(),
            Some(content.as_str()),
            "acknowledged retain {id} lost after kill -9"
        );
    }
    assert!(
        exported.len() <= acknowledged.len() + in_flight,
        "more memories than retains sent"
    );
    // The restarted server serves them: recall finds acknowledged memories by their text.
    let client = reqwest::Client::new();
    for (id, content) in acknowledged.iter().step_by(acknowledged.len() / 10 + 1) {
        let (status, body) = post(
            &client,
            format!("{}/v1/recall", second.base),
            json!({"bank_id": "load", "query": content, "max_results": 5}),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let hits: Vec<&str> = body["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .filter_map(|h| h["memory_id"].as_str())
            .collect();
        assert!(hits.contains(&id.as_str()), "{id} not recalled: {body}");
    }
    let (status, body) = post(
        &client,
        format!("{}/v1/retain", second.base),
        json!({"bank_id": "load", "content": "written after the restart"}),
        None,
    )
    .await;
    assert_eq!((status, &body["stored"]), (200, &json!(true)), "{body}");
}

/// The acknowledged (id, text) pairs, shared by the writers.
mod acks {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Acks(Mutex<Vec<(String, String)>>);

    impl Acks {
        pub fn push(&self, id: String, text: String) {
            self.0.lock().expect("not poisoned").push((id, text));
        }

        pub fn len(&self) -> usize {
            self.0.lock().expect("not poisoned").len()
        }

        pub fn take(&self) -> Vec<(String, String)> {
            std::mem::take(&mut *self.0.lock().expect("not poisoned"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_retains_survive_kill_9_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    acknowledged_retains_survive_kill_9_under_load(dir.path(), None, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_retains_survive_kill_9_on_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = ScratchDb::create("kill9");
    let url = db.url();
    let env = [("ASTROCYTE_ROLE_PREFIX", db.role_prefix.as_str())];
    acknowledged_retains_survive_kill_9_under_load(dir.path(), Some(&url), &env).await;
    // The data lives in the scratch database, not in the data directory.
    let rows = psql(
        &url,
        "SELECT count(*) FROM public.astrocyte_memories WHERE bank_id = 'load'",
    );
    assert!(
        rows.trim().parse::<usize>().expect("a count") >= 120,
        "{rows}"
    );
}

/// HNSW indexes of the default tenant and whether its vector index is marked set aside.
fn default_tenant_index(url: &str) -> (usize, bool) {
    let indexes = psql(
        url,
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' \
         AND tablename = 'astrocyte_memories' AND indexdef LIKE '%USING hnsw%'",
    );
    let marks = psql(
        url,
        "SELECT count(*) FROM public.astrocyte_meta WHERE key = 'vector_index_deferred'",
    );
    (
        indexes.trim().parse().expect("a count"),
        marks.trim() != "0",
    )
}

/// An import killed with SIGKILL half way leaves the tenant's vector index set aside (an
/// import into a small tenant builds it once, at its end); the next server to use the tenant
/// builds it, and recall finds what the import stored, before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_half_way_has_its_index_built_by_the_next_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = ScratchDb::create("bulk");
    let url = db.url();
    let env = [("ASTROCYTE_ROLE_PREFIX", db.role_prefix.as_str())];
    let file = dir.path().join("bank.jsonl");
    let mut ama = String::from(
        "{\"_ama_version\":1,\"bank_id\":\"notes\",\"exported_at\":\"2024-01-01T00:00:00Z\",\
         \"provider\":\"test\",\"memory_count\":100000}\n",
    );
    for i in 0..100_000 {
        ama.push_str(&json!({"id": format!("r{i}"), "text": text(i)}).to_string());
        ama.push('\n');
    }
    std::fs::write(&file, ama).expect("write the file");
    let cli = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_astrocyte"));
        command
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database-url", &url])
            .args(args)
            .env_remove("DATABASE_URL")
            .env("ASTROCYTE_EMBEDDER", "hashing")
            .env("ASTROCYTE_LOG", "warn")
            .env("ASTROCYTE_ROLE_PREFIX", &db.role_prefix);
        command
    };
    let created = cli(&["tenant", "create", "public"])
        .output()
        .expect("tenant create runs");
    assert!(created.status.success(), "{created:?}");
    let mut import = cli(&["import", "--bank", "notes"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("import starts");
    // 0 until the import has created the default tenant's tables.
    let count = || {
        let out = Command::new("psql")
            .args([
                url.as_str(),
                "-Atq",
                "-c",
                "SELECT count(*) FROM public.astrocyte_memories WHERE bank_id = 'notes'",
            ])
            .output()
            .expect("psql runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < 2_000 {
        assert!(Instant::now() < deadline, "the import stored too little");
        assert!(
            import.try_wait().expect("wait").is_none(),
            "the import ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    import.kill().expect("SIGKILL delivered");
    let _ = import.wait();
    let stored = count();
    assert!(stored < 100_000, "the kill came after the import");
    assert_eq!(default_tenant_index(&url), (0, true));

    let server = Server::start_on(dir.path(), Some(&url), false, &env);
    server.ready().await;
    let client = reqwest::Client::new();
    let recall = |query: String| {
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            let (status, body) = post(
                &client,
                format!("{base}/v1/recall"),
                json!({"bank_id": "notes", "query": query, "max_results": 5}),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["hits"]
                .as_array()
                .expect("hits")
                .iter()
                .map(|hit| hit["memory_id"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    // The first request uses the tenant: searched exactly until the index is back.
    assert!(recall(text(1_234)).await.contains(&"r1234".to_string()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while default_tenant_index(&url) != (1, false) {
        assert!(Instant::now() < deadline, "the index was never built");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recall(text(1_500)).await.contains(&"r1500".to_string()));
    assert_eq!(count(), stored, "nothing was lost or added");
}
