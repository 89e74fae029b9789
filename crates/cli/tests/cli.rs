//! The `astrocyte` binary as a user runs it: real processes over a real data directory.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn astrocyte(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_astrocyte"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("ASTROCYTE_EMBEDDER", "hashing")
        .env_remove("ASTROCYTE_TENANT")
        .output()
        .expect("the binary runs")
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let out = astrocyte(dir, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn retain_then_recall_and_tenants_stay_isolated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let stored = ok_json(
        d,
        &[
            "--tenant",
            "tenant_a",
            "retain",
            "--bank",
            "notes",
            "--json",
            "Miso is the cat's name",
        ],
    );
    assert_eq!(stored["stored"], true);
    let id = stored["memory_id"].as_str().expect("an id").to_string();
    // Global options after the subcommand work too.
    let recalled = ok_json(
        d,
        &[
            "recall",
            "--bank",
            "notes",
            "--tenant",
            "tenant_a",
            "--json",
            "what is the cat called",
        ],
    );
    let hits = recalled["hits"].as_array().expect("hits");
    assert_eq!(hits[0]["memory_id"], id.as_str());
    assert_eq!(hits[0]["text"], "Miso is the cat's name");
    let score = hits[0]["score"].as_f64().expect("score");
    assert!(score > 0.0 && score <= 1.0);

    // A read on a tenant that does not exist says so, and creates nothing.
    let typo = astrocyte(d, &["--tenant", "tennat_a", "banks"]);
    assert!(!typo.status.success());
    assert!(
        stderr(&typo).contains("tenant tennat_a does not exist"),
        "{}",
        stderr(&typo)
    );
    assert!(!d.join("tennat_a.db").exists(), "the typo created a tenant");
    let created = astrocyte(d, &["tenant", "create", "tenant_b"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let empty = astrocyte(d, &["--tenant", "tenant_b", "banks"]);
    assert!(String::from_utf8_lossy(&empty.stdout).contains("no banks in tenant tenant_b"));
    let other = ok_json(
        d,
        &[
            "--tenant",
            "tenant_b",
            "recall",
            "--bank",
            "notes",
            "--json",
            "what is the cat called",
        ],
    );
    assert_eq!(
        other["hits"].as_array().map(Vec::len),
        Some(0),
        "tenant_b must not see tenant_a"
    );
    let banks_b = ok_json(d, &["--tenant", "tenant_b", "banks", "--json"]);
    assert_eq!(banks_b["banks"].as_array().map(Vec::len), Some(0));
    let banks_a = ok_json(d, &["--tenant", "tenant_a", "banks", "--json"]);
    assert_eq!(banks_a["banks"][0], "notes");

    let tenants = ok_json(d, &["tenant", "list", "--json"]);
    let names: Vec<&str> = tenants["tenants"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&"tenant_a"));
}

#[test]
fn forget_export_import_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for (text, tag) in [
        ("The meeting moved to Tuesday", "work"),
        ("Buy oat milk", "shopping"),
    ] {
        ok_json(
            d,
            &[
                "--tenant", "t1", "retain", "--bank", "b", "--tag", tag, "--json", text,
            ],
        );
    }
    let file = d.join("b.jsonl");
    let file_arg = file.to_str().expect("utf-8 path");
    ok_json(
        d,
        &[
            "--tenant", "t1", "export", "--bank", "b", "--out", file_arg, "--json",
        ],
    );
    let text = std::fs::read_to_string(&file).expect("export written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "header + 2 memories");
    assert!(lines[0].contains("\"_ama_version\":1"));

    let imported = ok_json(
        d,
        &[
            "--tenant", "t2", "import", "--bank", "copy", file_arg, "--json",
        ],
    );
    assert_eq!(imported["imported"], 2);
    let again = ok_json(
        d,
        &[
            "--tenant", "t2", "import", "--bank", "copy", file_arg, "--json",
        ],
    );
    assert_eq!(again["skipped"], 2);

    let forgotten = ok_json(
        d,
        &[
            "--tenant", "t1", "forget", "--bank", "b", "--tag", "shopping", "--json",
        ],
    );
    assert_eq!(forgotten["deleted_count"], 1);
    let recalled = ok_json(
        d,
        &[
            "--tenant", "t1", "recall", "--bank", "b", "--json", "oat milk",
        ],
    );
    assert!(recalled["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .all(|h| h["text"] != "Buy oat milk"));
}

#[test]
fn list_get_changes_and_a_partial_import_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut ids = Vec::new();
    for text in [
        "Planted tomatoes",
        "Watered the basil",
        "Picked the first pepper",
    ] {
        let stored = ok_json(d, &["retain", "--bank", "garden", "--json", text]);
        ids.push(stored["memory_id"].as_str().expect("id").to_string());
    }
    let page = ok_json(d, &["list", "--bank", "garden", "--limit", "2", "--json"]);
    let listed: Vec<&str> = page["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["memory_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        listed,
        vec![ids[2].as_str(), ids[1].as_str()],
        "newest first"
    );
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let rest = ok_json(
        d,
        &["list", "--bank", "garden", "--cursor", cursor, "--json"],
    );
    assert_eq!(rest["memories"][0]["memory_id"], json!(ids[0]));
    assert!(rest["next_cursor"].is_null());
    let found = ok_json(
        d,
        &["list", "--bank", "garden", "--contains", "BASIL", "--json"],
    );
    assert_eq!(found["memories"].as_array().map(Vec::len), Some(1));

    let human = astrocyte(d, &["get", "--bank", "garden", &ids[1]]);
    assert!(human.status.success(), "{}", stderr(&human));
    let shown = String::from_utf8_lossy(&human.stdout);
    assert!(
        shown.contains("Watered the basil") && shown.contains("created"),
        "{shown}"
    );
    let missing = astrocyte(d, &["get", "--bank", "garden", "no-such-id"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no memory"),
        "{}",
        stderr(&missing)
    );

    ok_json(
        d,
        &["forget", "--bank", "garden", "--id", &ids[0], "--json"],
    );
    let feed = astrocyte(d, &["changes", "--bank", "garden", "--json"]);
    assert!(feed.status.success(), "{}", stderr(&feed));
    let kinds: Vec<String> = String::from_utf8_lossy(&feed.stdout)
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).expect("one JSON entry per line");
            entry["kind"].as_str().expect("kind").to_string()
        })
        .collect();
    assert_eq!(kinds, ["created", "created", "created", "forgotten"]);

    let file = d.join("mixed.jsonl");
    let header = json!({"_ama_version": 1, "bank_id": "x", "exported_at": "2024-01-01T00:00:00Z",
        "provider": "test", "memory_count": 3});
    std::fs::write(
        &file,
        format!(
            "{header}\n{}\nnot json at all\n{}\n",
            json!({"id": "m1", "text": "A good line"}),
            json!({"id": "m2", "text": "   "}),
        ),
    )
    .expect("write");
    let file_arg = file.to_str().expect("utf-8 path");
    let partial = astrocyte(d, &["import", "--bank", "copy", file_arg]);
    assert!(!partial.status.success(), "refused lines fail the import");
    let reasons = stderr(&partial);
    assert!(
        reasons.contains("line 3:") && reasons.contains("line 4:"),
        "{reasons}"
    );
    assert!(reasons.contains("--allow-partial"), "{reasons}");
    let allowed = astrocyte(
        d,
        &["import", "--bank", "copy2", "--allow-partial", file_arg],
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let copied = ok_json(d, &["list", "--bank", "copy", "--json"]);
    assert_eq!(
        copied["memories"][0]["text"],
        json!("A good line"),
        "the good line is imported either way"
    );
}

#[test]
fn bad_input_gives_clear_errors_and_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = astrocyte(d, &["--tenant", "bad-name", "banks"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid --tenant"),
        "{}",
        stderr(&out)
    );

    let out = astrocyte(d, &["retain", "--bank", "no spaces", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Invalid bank_id"), "{}", stderr(&out));

    let out = astrocyte(&d.join("missing"), &["banks"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    let out = astrocyte(d, &["import", "--bank", "b", "/nonexistent/file.jsonl"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read import file"),
        "{}",
        stderr(&out)
    );

    let out = astrocyte(d, &["retain", "--bank", "b", "   "]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Content is empty"),
        "{}",
        stderr(&out)
    );

    let out = astrocyte(d, &["forget", "--bank", "b"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("forget needs"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--tag"),
        "names the CLI flags: {}",
        stderr(&out)
    );
}

/// A fresh PostgreSQL database for one test, dropped (with its tenant roles) afterwards.
struct PgDatabase {
    name: String,
    admin_url: String,
}

impl PgDatabase {
    fn create(tag: &str) -> PgDatabase {
        let admin_url = std::env::var("ASTROCYTE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("astro_cli_{tag}_{}", std::process::id());
        psql(&admin_url, &format!("DROP DATABASE IF EXISTS {name}"));
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        PgDatabase { name, admin_url }
    }

    fn url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => panic!("ASTROCYTE_TEST_DATABASE_URL has no database part"),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let url = self.url();
        // Tenant roles are cluster-wide: drop every role owning something in this database.
        let roles = Command::new("psql")
            .args([
                url.as_str(),
                "-At",
                "-c",
                "SELECT role FROM public.astrocyte_tenants",
            ])
            .output();
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        if let Ok(out) = roles {
            for role in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|r| !r.is_empty())
            {
                psql(&self.admin_url, &format!("DROP ROLE IF EXISTS \"{role}\""));
            }
        }
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn astrocyte_pg(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_astrocyte"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env_remove("ASTROCYTE_AUTO_CREATE_TENANTS")
        .env("ASTROCYTE_EMBEDDER", "hashing")
        // Roles are cluster-wide: a per-run prefix keeps concurrent test runs apart.
        .env(
            "ASTROCYTE_ROLE_PREFIX",
            format!("ac{}_", std::process::id()),
        )
        .output()
        .expect("the binary runs")
}

#[test]
fn postgres_tenants_memories_and_migrations_from_the_command_line() {
    let db = PgDatabase::create("main");
    let url = db.url();
    let run = |args: &[&str]| {
        let out = astrocyte_pg(&url, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Unknown tenants are not created implicitly.
    let out = astrocyte_pg(
        &url,
        &["--tenant", "acme", "retain", "--bank", "b", "hello"],
    );
    assert!(!out.status.success());
    run(&["tenant", "create", "acme"]);
    run(&["tenant", "create", "globex"]);
    let listed = run(&["tenant", "list"]);
    assert!(
        listed.contains("acme") && listed.contains("globex"),
        "{listed}"
    );
    run(&[
        "--tenant",
        "acme",
        "retain",
        "--bank",
        "b",
        "Miso is the cat's name",
    ]);
    let hits: Value = serde_json::from_str(&run(&[
        "--tenant", "acme", "recall", "--bank", "b", "--json", "cat name",
    ]))
    .expect("json");
    assert_eq!(hits["hits"][0]["text"], "Miso is the cat's name");
    let other: Value = serde_json::from_str(&run(&[
        "--tenant", "globex", "recall", "--bank", "b", "--json", "cat name",
    ]))
    .expect("json");
    assert_eq!(other["hits"].as_array().map(Vec::len), Some(0));
    let migrated = run(&["migrate", "--all-tenants"]);
    assert!(migrated.contains("acme: already current"), "{migrated}");
    assert!(migrated.contains("globex: already current"), "{migrated}");
    // Many tenants at once, a line each; the fan-out and the status narrowed by prefix.
    let created = run(&["tenant", "create", "wave_1", "wave_2", "wave_3"]);
    for name in ["wave_1", "wave_2", "wave_3"] {
        assert!(created.contains(&format!("{name}: created")), "{created}");
    }
    let status = run(&["migrate", "--status", "--tenant-prefix", "wave_"]);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(
        lines,
        [
            "wave_1: current (9)",
            "wave_2: current (9)",
            "wave_3: current (9)"
        ]
    );
    let migrated = run(&["migrate", "--all-tenants", "--tenant-prefix", "wave_"]);
    assert_eq!(migrated.lines().count(), 3, "{migrated}");
    assert!(!migrated.contains("acme"), "{migrated}");
    let out = astrocyte_pg(&url, &["tenant", "create", "wave_2", "wave_4"]);
    assert!(
        !out.status.success(),
        "an existing tenant fails the command"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("wave_2: failed"), "{printed}");
    assert!(
        printed.contains("wave_4: created"),
        "the others are created all the same"
    );
    let dropped = run(&["tenant", "drop", "wave_1", "wave_2", "wave_3", "wave_4"]);
    assert_eq!(
        dropped.lines().filter(|l| l.ends_with(": dropped")).count(),
        4
    );
    run(&["tenant", "drop", "acme"]);
    let listed = run(&["tenant", "list"]);
    assert!(
        !listed.contains("acme") && listed.contains("globex"),
        "{listed}"
    );
}

/// `tenant roles` and `tenant prune-roles`: a tenant whose directory row and schema were
/// removed by hand leaves its role behind; the command lists it and removes it, and nothing
/// else (the same tenant names live in `postgres_tenants_…`'s database under the same prefix).
#[test]
fn postgres_orphaned_tenant_roles_are_listed_and_pruned() {
    let db = PgDatabase::create("roles");
    let url = db.url();
    let run = |args: &[&str]| {
        let out = astrocyte_pg(&url, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let orphans = |run: &dyn Fn(&[&str]) -> String| -> Value {
        serde_json::from_str(&run(&["tenant", "roles", "--json"])).expect("json")
    };
    run(&["tenant", "create", "acme"]);
    run(&["tenant", "create", "globex"]);
    assert_eq!(orphans(&run)["orphans"], json!([]));
    let role = Command::new("psql")
        .args([
            url.as_str(),
            "-At",
            "-c",
            "SELECT role FROM public.astrocyte_tenants WHERE schema = 'acme'",
        ])
        .output()
        .expect("psql runs");
    let role = String::from_utf8_lossy(&role.stdout).trim().to_string();
    assert!(!role.is_empty());
    psql(
        &url,
        "DROP SCHEMA acme CASCADE; DELETE FROM public.astrocyte_tenants WHERE schema = 'acme'",
    );
    let listed = orphans(&run);
    assert_eq!(
        listed["orphans"],
        json!([{"role": role, "owned_objects": 0}]),
        "{listed}"
    );
    let pruned = run(&["tenant", "prune-roles"]);
    assert_eq!(pruned.trim(), format!("removed {role}"));
    assert_eq!(orphans(&run)["orphans"], json!([]));
    // globex is untouched and the name acme is free again.
    run(&["--tenant", "globex", "retain", "--bank", "b", "still here"]);
    run(&["tenant", "create", "acme"]);
    // The embedded store has no roles.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = astrocyte(dir.path(), &["tenant", "roles"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--database-url"), "{}", stderr(&out));
}

/// The default embedder is the local model: semantic recall without shared words.
#[test]
fn the_local_model_recalls_by_meaning() {
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    if !model_dir.join("config.json").exists() {
        let status = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-model.sh"))
            .arg(&model_dir)
            .status()
            .expect("fetch script runs");
        assert!(status.success(), "fetching the model failed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_astrocyte"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--model-dir")
            .arg(&model_dir)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("ASTROCYTE_EMBEDDER")
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).expect("json")
    };
    for text in [
        "Miso is the cat's name",
        "The quarterly budget review is on Friday",
        "I planted tomatoes in the garden",
    ] {
        run(&["retain", "--bank", "home", "--json", text]);
    }
    let hits = run(&[
        "recall",
        "--bank",
        "home",
        "--json",
        "--max-results",
        "1",
        "what is my pet called",
    ]);
    assert_eq!(hits["hits"][0]["text"], "Miso is the cat's name");
    let hits = run(&[
        "recall",
        "--bank",
        "home",
        "--json",
        "--max-results",
        "1",
        "vegetables growing outside",
    ]);
    assert_eq!(hits["hits"][0]["text"], "I planted tomatoes in the garden");

    // Without the model the error names the command that fetches it.
    let out = Command::new(env!("CARGO_BIN_EXE_astrocyte"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--model-dir", "/nonexistent/model", "banks"])
        .env_remove("ASTROCYTE_EMBEDDER")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("scripts/fetch-model.sh"),
        "{}",
        stderr(&out)
    );
}

fn locomo_data() -> Option<std::path::PathBuf> {
    let data = std::env::var_os("ASTROCYTE_TEST_LOCOMO_PATH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/locomo10.json")
        });
    if data.exists() {
        return Some(data);
    }
    // The data set's licence keeps it out of the repository; its README asks tests to skip
    // with a clear message when it is absent. CI always has it beside the clone.
    eprintln!(
        "SKIPPED: LoCoMo data not found at {} (set ASTROCYTE_TEST_LOCOMO_PATH)",
        data.display()
    );
    None
}

/// One conversation through both ingestion paths on the given store (extra global flags).
fn locomo_report(data: &Path, store: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_astrocyte"))
        .args(store)
        .args(["eval", "locomo", "--data"])
        .arg(data)
        .args(["--conversations", "1", "--json"])
        .env_remove("DATABASE_URL")
        .env("ASTROCYTE_EMBEDDER", "hashing")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "eval failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn check_locomo(report: &Value, store: &str) {
    let mut frac10 = Vec::new();
    for path in ["whole", "turns", "document"] {
        let report = &report[path];
        assert_eq!(report["store"], store, "{report}");
        assert_eq!(report["conversations"], 1);
        assert!(report["memories"].as_u64().unwrap_or(0) > 300);
        let pooled = &report["categories"]["1-4"];
        assert!(pooled["questions"].as_u64().unwrap_or(0) > 100);
        let at = |k: &str| pooled[k].as_f64().expect("a fraction");
        // Monotone in k, and far above chance for a bank of ~400 turns.
        assert!(
            at("frac@1") <= at("frac@5")
                && at("frac@5") <= at("frac@10")
                && at("frac@10") <= at("frac@20")
        );
        assert!(at("frac@10") > 0.3, "evidence recall collapsed: {pooled}");
        assert!(report["recall_latency_ms"]["p50"].as_f64().unwrap_or(0.0) > 0.0);
        frac10.push(at("frac@10"));
    }
    // Turn-by-turn retains get the context a whole-session retain gives.
    assert!(
        (frac10[0] - frac10[1]).abs() <= 0.02,
        "whole {} vs turns {}",
        frac10[0],
        frac10[1]
    );
}

/// The LoCoMo evaluation on one conversation, as a smoke test of the harness and the metric
/// (the full run is `astrocyte eval locomo`, a command), on the embedded store. The data set is
/// never copied here.
#[test]
fn locomo_eval_smoke_test_on_one_conversation() {
    let Some(data) = locomo_data() else { return };
    check_locomo(&locomo_report(&data, &[]), "sqlite");
    // A flag the command does not use is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_astrocyte"))
        .args([
            "--data-dir",
            "/tmp",
            "eval",
            "locomo",
            "--conversations",
            "1",
        ])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("eval does not use --data-dir"),
        "{}",
        stderr(&out)
    );
}

/// The same on PostgreSQL: a throw-away tenant created, used and dropped.
#[test]
fn locomo_eval_smoke_test_on_postgres() {
    let Some(data) = locomo_data() else { return };
    let url = std::env::var("ASTROCYTE_TEST_DATABASE_URL")
        .expect("ASTROCYTE_TEST_DATABASE_URL names the test PostgreSQL");
    check_locomo(&locomo_report(&data, &["--database-url", &url]), "postgres");
}

/// `bench --keep-banks` on PostgreSQL: the first run builds the bank in a kept tenant, the
/// second only measures it there; the settings in the environment reach the engine.
#[test]
fn postgres_bench_keeps_its_bank_for_the_next_run() {
    let db = PgDatabase::create("keptbench");
    let url = db.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let keep = dir.path().join("banks");
    let keep = keep.to_str().expect("utf-8 path");
    let out_dir = dir.path().join("out");
    let bench = |extra: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_astrocyte"));
        command
            .args([
                "--database-url",
                &url,
                "--embedder",
                "hashing",
                "--json",
                "bench",
            ])
            .args(["--sizes", "300", "--tenants", "0", "--async-retains", "0"])
            .args(["--queries", "20", "--keep-banks", keep, "--out-dir"])
            .arg(&out_dir)
            .env(
                "ASTROCYTE_ROLE_PREFIX",
                format!("ac{}_", std::process::id()),
            );
        for (name, value) in extra {
            command.env(name, value);
        }
        command.output().expect("the binary runs")
    };
    let report = |out: Output| {
        assert!(out.status.success(), "bench: {}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).expect("bench prints JSON")
    };
    let built = report(bench(&[]));
    let bank = &built["banks"][0];
    assert_eq!(bank["bank_size"], 300, "{built}");
    assert!(
        bank["retain_batched_per_second"].as_f64().is_some(),
        "{built}"
    );
    assert!(bank.get("kept_bank").is_none(), "{built}");
    let tenants = astrocyte_pg(&url, &["tenant", "list"]);
    assert!(
        String::from_utf8_lossy(&tenants.stdout).contains("bench_kept_300_42"),
        "{}",
        String::from_utf8_lossy(&tenants.stdout)
    );
    // The second run finds the bank finished and only measures recall; a semantic depth of
    // 12 reaches the engine (the bench's recalls ask for 10 results).
    let reused = report(bench(&[("ASTROCYTE_SEMANTIC_DEPTH", "12")]));
    let bank = &reused["banks"][0];
    assert_eq!(bank["kept_bank"], "bench_kept_300_42", "{reused}");
    assert!(bank.get("retain_batched_per_second").is_none(), "{reused}");
    assert!(
        bank["recall_latency_ms"]["p50"].as_f64().is_some(),
        "{reused}"
    );
    assert_eq!(
        bank["recall_strategy_candidates"]["semantic"]["p50"], 12.0,
        "{reused}"
    );
    assert_eq!(
        bank["recall_strategy_candidates"]["keyword"]["p50"], 100.0,
        "{reused}"
    );
    // An unfinished bank is refused with what to remove, not silently rebuilt.
    std::fs::remove_file(dir.path().join("banks/postgres-bank-300/bench-bank.json"))
        .expect("marker");
    let refused = bench(&[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("drop the tenant bench_kept_300_42"),
        "{}",
        stderr(&refused)
    );
}
