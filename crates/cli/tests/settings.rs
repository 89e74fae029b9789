//! Settings as a user meets them, through the real binary: one default data directory for
//! `serve` and every command, typos refused with a suggestion, `config show` and `config check`,
//! and logs shaped by the settings (level, format, no colour off a terminal, the MCP library
//! quiet at info).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn astrocyte(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_astrocyte"));
    command
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ASTROCYTE_EMBEDDER", "hashing");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.1 POST on loopback; `None` until the server answers 200.
fn post(port: u16, path: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.starts_with("HTTP/1.1 200").then_some(reply)
}

fn post_recall(port: u16) -> Option<String> {
    post(
        port,
        "/v1/recall",
        r#"{"query": "shared by every command", "bank_id": "b"}"#,
    )
}

#[test]
fn serve_and_the_commands_share_one_default_data_directory() {
    let home = tempfile::tempdir().expect("home");
    let stored =
        run(astrocyte(home.path()).args(["retain", "--bank", "b", "shared by every command"]));
    assert!(stored.status.success(), "{}", text(&stored.stderr));
    let data = home.path().join(".local/share/astrocyte");
    assert!(
        data.join("public.db").exists(),
        "the CLI wrote to {}",
        data.display()
    );

    // `serve` with no --data-dir reads the same directory.
    let port = free_port();
    let mut child = astrocyte(home.path())
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some(reply) = post_recall(port) {
            break reply;
        }
        assert!(Instant::now() < deadline, "serve never answered");
        std::thread::sleep(Duration::from_millis(100));
    };
    // An MCP request: the MCP library's per-request lines stay below the info level.
    let initialized = post(
        port,
        "/mcp",
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .expect("mcp answers");
    assert!(initialized.contains("astrocyte-memory"), "{initialized}");
    let _ = child.kill();
    let output = child.wait_with_output().expect("serve exits");
    assert!(body.contains("shared by every command"), "{body}");
    let logs = text(&output.stderr);
    assert!(logs.contains("listening"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "no colour codes off a terminal: {logs:?}"
    );
    assert!(!logs.contains("rmcp"), "MCP library lines at info: {logs}");
}

#[test]
fn typos_stop_start_up_with_the_nearest_known_name() {
    let home = tempfile::tempdir().expect("home");
    let file = home.path().join("astrocyte.yaml");
    std::fs::write(&file, "prot: 9999\n").expect("write");
    let out = run(astrocyte(home.path())
        .arg("--config")
        .arg(&file)
        .arg("banks"));
    assert_eq!(out.status.code(), Some(2));
    let error = text(&out.stderr);
    assert!(error.contains("unknown setting \"prot\""), "{error}");
    assert!(error.contains("did you mean \"port\""), "{error}");
    assert_eq!(error.matches("invalid configuration").count(), 1, "{error}");

    std::fs::write(&file, "mcp:\n  expose_forgett: true\n").expect("write");
    let out = run(astrocyte(home.path())
        .arg("--config")
        .arg(&file)
        .args(["serve", "--port", "0"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean \"mcp.expose_forget\""));

    let out = run(astrocyte(home.path())
        .env("ASTROCYTE_LOG_LEVL", "debug")
        .arg("banks"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("ASTROCYTE_LOG_LEVL (did you mean \"ASTROCYTE_LOG_LEVEL\"?)"),
        "{}",
        text(&out.stderr)
    );

    let out = run(astrocyte(home.path())
        .env("ASTROCYTE_LOG_FORMAT", "1")
        .arg("banks"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("expected one of text, json"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_show_tells_where_each_value_came_from_and_hides_secrets() {
    let home = tempfile::tempdir().expect("home");
    let file = home.path().join("astrocyte.yaml");
    std::fs::write(&file, "port: 7001\nmcp:\n  default_bank_id: notes\n").expect("write");
    let out = run(astrocyte(home.path())
        .arg("--config")
        .arg(&file)
        .env("ASTROCYTE_ADMIN_TOKEN", "super-secret-token")
        .env("ASTROCYTE_MAX_RESULT_LIMIT", "77")
        .args(["config", "show"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {shown}"))
            .to_string()
    };
    assert!(
        line("port").contains("7001") && line("port").contains("[file "),
        "{}",
        line("port")
    );
    assert!(line("max_result_limit").contains("[env ASTROCYTE_MAX_RESULT_LIMIT]"));
    assert!(line("mcp.default_bank_id").contains("notes"));
    assert!(line("admin_token").contains("***"));
    assert!(line("host").contains("[default]"));
    assert!(!shown.contains("super-secret-token"), "{shown}");

    let good = run(astrocyte(home.path()).args(["config", "check"]).arg(&file));
    assert!(good.status.success(), "{}", text(&good.stderr));
    assert!(text(&good.stdout).contains("configuration ok"));
    std::fs::write(&file, "auth_mode: jwt_hs256\n").expect("write");
    let bad = run(astrocyte(home.path()).args(["config", "check"]).arg(&file));
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("ASTROCYTE_JWT_SECRET"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn log_level_and_format_come_from_the_settings() {
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join("d")).expect("dir");
    // A one-shot command is quiet by default and chatty when asked.
    let quiet = run(astrocyte(home.path()).args(["banks"]));
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert!(text(&quiet.stderr).is_empty(), "{}", text(&quiet.stderr));
    let json = run(astrocyte(home.path())
        .env("ASTROCYTE_LOG_LEVEL", "debug")
        .env("ASTROCYTE_LOG_FORMAT", "json")
        .args(["retain", "--bank", "b", "a logged retain"]));
    assert!(json.status.success(), "{}", text(&json.stderr));
    let lines: Vec<String> = text(&json.stderr).lines().map(str::to_string).collect();
    assert!(!lines.is_empty(), "debug logs something");
    for line in &lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
}

#[test]
fn version_names_the_commit() {
    let home = tempfile::tempdir().expect("home");
    let out = run(astrocyte(home.path()).arg("--version"));
    assert!(out.status.success());
    let version = text(&out.stdout);
    assert!(version.starts_with("astrocyte 0."), "{version}");
    assert!(version.contains("(commit "), "{version}");
}

#[test]
fn setup_writes_each_clients_entry_and_the_entry_starts_from_anywhere() {
    use std::io::{BufRead, Write};
    let home = tempfile::tempdir().expect("home");
    let project = home.path().join("My Project");
    std::fs::create_dir_all(&project).expect("project");
    std::fs::write(
        project.join(".mcp.json"),
        r#"{"mcpServers": {"other": {"command": "/bin/other"}}, "keep": 1}"#,
    )
    .expect("existing file");
    let setup = |client: &str, extra: &[&str]| {
        let out = run(astrocyte(home.path())
            .current_dir(&project)
            .args(["setup", client])
            .args(extra));
        assert!(out.status.success(), "{client}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    setup("claude-code", &[]);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join(".mcp.json")).expect("read"))
            .expect("json");
    assert_eq!(written["keep"], 1, "other keys kept");
    assert_eq!(written["mcpServers"]["other"]["command"], "/bin/other");
    let entry = &written["mcpServers"]["astrocyte"];
    assert_eq!(entry["type"], "stdio");
    assert_eq!(entry["args"], serde_json::json!(["mcp"]));
    let command = entry["command"].as_str().expect("command");
    assert!(
        Path::new(command).is_absolute() && Path::new(command).exists(),
        "{command}"
    );
    let env = entry["env"].as_object().expect("env");
    assert_eq!(env["ASTROCYTE_MCP_DEFAULT_BANK"], "My-Project");
    let data = env["ASTROCYTE_DATA_DIR"].as_str().expect("data dir");
    assert_eq!(Path::new(data), home.path().join(".local/share/astrocyte"));

    setup("cursor", &[]);
    assert!(project.join(".cursor/mcp.json").exists());
    setup("claude-desktop", &["--bank", "desk"]);
    let desktop = std::fs::read_to_string(
        home.path()
            .join(".config/Claude/claude_desktop_config.json"),
    )
    .expect("desktop config");
    assert!(
        desktop.contains("\"ASTROCYTE_MCP_DEFAULT_BANK\": \"desk\""),
        "{desktop}"
    );
    setup("codex", &[]);
    let codex = std::fs::read_to_string(home.path().join(".codex/config.toml")).expect("codex");
    assert!(codex.contains("[mcp_servers.astrocyte]"), "{codex}");
    assert!(codex.contains("args = [\"mcp\"]"), "{codex}");
    let printed = setup("claude-code", &["--print", "--name", "printed"]);
    assert!(printed.contains("\"printed\""), "{printed}");
    let again = std::fs::read_to_string(project.join(".mcp.json")).expect("read");
    assert!(!again.contains("\"printed\""), "--print writes nothing");

    // The entry works from another directory: an MCP handshake over stdio.
    let mut child = Command::new(command)
        .args(["mcp"])
        .env_clear()
        .env("HOME", home.path())
        .envs(
            env.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
        )
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the configured command starts");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
    )
    .expect("write");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("astrocyte-memory"), "{line}");
}

#[test]
fn a_port_in_use_is_reported_before_the_model_loads() {
    let home = tempfile::tempdir().expect("home");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").port().to_string();
    // The local model is missing: if it were loaded first, the error would be about it.
    let out = run(astrocyte(home.path())
        .env("ASTROCYTE_EMBEDDER", "local")
        .env("ASTROCYTE_MODEL_DIR", "/nonexistent/model")
        .args(["serve", "--port", &port]));
    assert!(!out.status.success());
    let error = text(&out.stderr);
    assert!(
        error.contains(&format!("cannot listen on 127.0.0.1:{port} (--port)")),
        "{error}"
    );
    assert_eq!(
        error.matches("cannot listen").count(),
        1,
        "said once: {error}"
    );
}

#[test]
fn bench_writes_its_figures_next_to_its_chart() {
    let home = tempfile::tempdir().expect("home");
    let out_dir = home.path().join("bench-results");
    let out = run(astrocyte(home.path())
        .args([
            "bench",
            "--sizes",
            "300",
            "--tenants",
            "0",
            "--async-retains",
            "0",
            "--hashing-dimension",
            "384",
        ])
        .args(["--queries", "10", "--out-dir"])
        .arg(&out_dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let figures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("bench-hashing-md5-384.json")).expect("figures"),
    )
    .expect("json");
    assert_eq!(figures["banks"][0]["bank_size"], 300);
    assert_eq!(figures["store"], "sqlite");
    assert!(
        figures["banks"][0]["restart"]["open_to_first_recall_ms"].as_f64() > Some(0.0),
        "the bank was reopened and served: {figures}"
    );
    let chart = std::fs::read_to_string(out_dir.join("bench-hashing-md5-384.svg")).expect("chart");
    assert!(
        chart.contains("<circle"),
        "one bank size still shows its points"
    );
    let refused = run(astrocyte(home.path()).args(["--tenant", "x", "bench", "--sizes", "10"]));
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("bench does not use --tenant"));
    let refused = run(astrocyte(home.path()).args([
        "--embedder",
        "local",
        "bench",
        "--hashing-dimension",
        "384",
    ]));
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--hashing-dimension needs --embedder hashing"));
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let home = tempfile::tempdir().expect("home");
    let bash = run(astrocyte(home.path()).args(["completions", "bash"]));
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    let script = text(&bash.stdout);
    assert!(
        script.contains("_astrocyte()") && script.contains("retain"),
        "{script}"
    );
    let man = run(astrocyte(home.path()).arg("man"));
    assert!(man.status.success(), "{}", text(&man.stderr));
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH astrocyte"),
        "{page}"
    );
    assert!(page.contains("memory server for AI agents"), "{page}");
}
