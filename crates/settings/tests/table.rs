//! The table holds its promises: the checked-in reference and example are what the table
//! generates, every example value parses, the example file loads, and every setting changes
//! the configuration of the component it is for (or is read by the binary).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use astrocyte_settings::docs::{example_yaml, reference_markdown};
use astrocyte_settings::{load, load_yaml, Loaded, Sources, TABLE};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn checked_in(name: &str) -> String {
    std::fs::read_to_string(repo().join("docs").join(name)).unwrap_or_default()
}

#[test]
fn the_reference_is_generated_from_the_table() {
    assert!(
        checked_in("configuration.md") == reference_markdown(),
        "docs/configuration.md is stale: run `cargo run -p astrocyte-cli -- config docs > docs/configuration.md`"
    );
    assert!(
        checked_in("astrocyte.example.yaml") == example_yaml(),
        "docs/astrocyte.example.yaml is stale: run `cargo run -p astrocyte-cli -- config example > docs/astrocyte.example.yaml`"
    );
}

#[test]
fn the_example_file_loads_and_validates() {
    let path = repo().join("docs/astrocyte.example.yaml");
    let loaded = load(&Sources {
        env: HashMap::new(),
        config_file: Some(path),
        flags: Vec::new(),
    })
    .expect("the example loads");
    loaded.server_config().expect("valid server configuration");
    loaded.mcp_config().expect("valid MCP configuration");
    // Every key the example sets came from the file.
    assert!(
        loaded.origins.len() > TABLE.len() / 2,
        "{}",
        loaded.origins.len()
    );
}

/// Sets `field` to its example value: in the environment when it has a variable, else in YAML.
fn with_example(field: &str, extra: &[(&str, &str)]) -> Result<Loaded, String> {
    let spec = TABLE.iter().find(|s| s.field == field).expect("spec");
    let mut env: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let var = spec.env.first().expect("every setting has a variable");
    env.insert(var.to_string(), spec.example.to_string());
    load_yaml(Path::new("effect.yaml"), "", env).map_err(|e| e.0)
}

#[test]
fn every_example_value_parses_from_the_environment_and_from_yaml() {
    for spec in TABLE {
        with_example(spec.field, &[]).unwrap_or_else(|e| panic!("{}: {e}", spec.yaml));
        // The same value under its YAML path, as the user would write it.
        let mut yaml = String::new();
        let parts: Vec<&str> = spec.yaml.split('.').collect();
        for (depth, part) in parts.iter().enumerate() {
            yaml.push_str(&"  ".repeat(depth));
            if depth + 1 == parts.len() {
                yaml.push_str(&format!(
                    "{part}: {}\n",
                    yaml_value(spec.example, spec.kind)
                ));
            } else {
                yaml.push_str(&format!("{part}:\n"));
            }
        }
        let loaded = load_yaml(Path::new("one.yaml"), &yaml, HashMap::new())
            .unwrap_or_else(|e| panic!("{}: {e}\n{yaml}", spec.yaml));
        assert!(loaded.is_set(spec.field), "{}", spec.yaml);
    }
}

fn yaml_value(example: &str, kind: &str) -> String {
    if kind.starts_with("a list of {") || kind.starts_with("a map of") {
        example.to_string()
    } else if kind.starts_with("a list") {
        let separator = if kind.contains("paths") { ':' } else { ',' };
        serde_json::Value::from(example.split(separator).collect::<Vec<_>>()).to_string()
    } else {
        serde_json::Value::from(example).to_string()
    }
}

/// Everything the settings configure, as one comparable text.
fn fingerprint(loaded: &Loaded) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        loaded.server_config().map_err(|e| e.0),
        loaded.mcp_config().map_err(|e| e.0),
        loaded.engine_config(),
        {
            // Not the worker id: it is random per process.
            let w = loaded.worker_config();
            (
                w.poll_interval,
                w.tenant_refresh_interval,
                w.lease,
                w.base_backoff,
                w.max_backoff,
                w.concurrency,
                w.idle_poll_max,
                w.idle_polls_per_second,
            )
        },
        loaded.sqlite_options(),
        loaded.postgres_options(),
        loaded
            .llm_config()
            .map(|c| c.map(|c| format!(
                "{}|{}|{:?}|{}|{}",
                c.base_url,
                c.model,
                c.timeout,
                c.max_retries,
                c.api_key.is_some()
            )))
            .map_err(|e| e.0),
    )
}

/// Settings the binary reads itself (to choose a store, an embedder, a tenant): each must be
/// read in `crates/cli/src`.
const READ_BY_THE_BINARY: &[&str] = &[
    "tenant",
    "embedder",
    "model_dir",
    "model_threads",
    "model_query_threads",
    "embeddings_url",
    "embeddings_model",
    "embeddings_dimension",
    "embeddings_api_key",
];

/// What a setting needs beside it to take effect at all.
fn companions(field: &str) -> &'static [(&'static str, &'static str)] {
    match field {
        "host" => &[("ASTROCYTE_ALLOW_DEV_AUTH", "1")],
        "auth_mode" => &[("ASTROCYTE_API_KEY", "k")],
        "tenant_extension" => &[(
            "ASTROCYTE_API_KEY_SECRET",
            "a-server-secret-of-32-characters",
        )],
        "grpc_tls_cert" => &[("ASTROCYTE_GRPC_TLS_KEY", "/k.pem")],
        "grpc_tls_key" => &[("ASTROCYTE_GRPC_TLS_CERT", "/c.pem")],
        "otlp_protocol" | "otlp_service_name" | "otlp_disabled" => {
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]
        }
        "llm_base_url" => &[("ASTROCYTE_LLM_MODEL", "m")],
        "llm_model" => &[("ASTROCYTE_LLM_BASE_URL", "http://127.0.0.1:1")],
        "llm_api_key" | "llm_timeout_seconds" | "llm_max_retries" => &[
            ("ASTROCYTE_LLM_MODEL", "m"),
            ("ASTROCYTE_LLM_BASE_URL", "http://127.0.0.1:1"),
        ],
        _ => &[],
    }
}

#[test]
fn every_setting_changes_what_it_configures() {
    let cli_sources: String = [
        "main.rs",
        "backend.rs",
        "commands/serve.rs",
        "commands/memory.rs",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(repo().join("crates/cli/src").join(f)).unwrap_or_default())
    .collect();
    for spec in TABLE {
        if READ_BY_THE_BINARY.contains(&spec.field) {
            assert!(
                cli_sources.contains(&format!(".{}", spec.field)),
                "{} is not read by the binary",
                spec.yaml
            );
            continue;
        }
        let extra = companions(spec.field);
        let base = load_yaml(
            Path::new("base.yaml"),
            "",
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .expect("base loads");
        let changed = with_example(spec.field, extra).expect("example loads");
        assert_ne!(
            fingerprint(&base),
            fingerprint(&changed),
            "{} = {:?} changes nothing",
            spec.yaml,
            spec.example
        );
    }
}
