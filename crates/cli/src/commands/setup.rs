//! `astrocyte setup CLIENT`: writes (or prints) the MCP server entry an agent client needs to
//! start `astrocyte mcp` itself: absolute paths (the client starts it from anywhere), the data
//! directory, the embedder, and a default bank named after the project. Other servers in the
//! client's file are kept.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use astrocyte_settings::{EmbedderKind, Loaded};
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

/// Agent clients `setup` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Client {
    /// Claude Code: the project's `.mcp.json`.
    ClaudeCode,
    /// Claude Desktop: `~/.config/Claude/claude_desktop_config.json`.
    ClaudeDesktop,
    /// Cursor: the project's `.cursor/mcp.json`.
    Cursor,
    /// Codex: `~/.codex/config.toml`.
    Codex,
}

/// `setup` options.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The client to configure.
    #[arg(value_enum)]
    pub client: Client,
    /// Print the entry instead of writing it.
    #[arg(long)]
    pub print: bool,
    /// The project the default bank is named after (default: the current directory).
    #[arg(long)]
    pub project: Option<PathBuf>,
    /// The default bank (default: derived from the project's directory name).
    #[arg(long)]
    pub bank: Option<String>,
    /// The server's name in the client's configuration.
    #[arg(long, default_value = "astrocyte")]
    pub name: String,
}

/// A bank id from a directory name: allowed characters kept, the rest as `-`.
fn bank_for(project: &Path) -> String {
    let raw = project
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "default".into()
    } else {
        trimmed.chars().take(200).collect()
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(path))
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set: the client's configuration lives under it")
}

/// Runs `setup`.
pub fn run(loaded: &Loaded, args: SetupArgs) -> anyhow::Result<()> {
    let project = absolute(&match &args.project {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    })?;
    let bank = args.bank.clone().unwrap_or_else(|| bank_for(&project));
    astrocyte_core::BankId::new(&bank).map_err(|e| anyhow::anyhow!("--bank: {e}"))?;
    let settings = &loaded.settings;
    let command = std::env::current_exe().context("locating this binary")?;
    let mut env = Map::new();
    env.insert(
        "ASTROCYTE_DATA_DIR".into(),
        json!(absolute(&settings.data_dir)?.display().to_string()),
    );
    env.insert("ASTROCYTE_MCP_DEFAULT_BANK".into(), json!(bank));
    let embedder = match settings.embedder {
        EmbedderKind::Local => "local",
        EmbedderKind::Hashing => "hashing",
        EmbedderKind::Openai => "openai",
    };
    env.insert("ASTROCYTE_EMBEDDER".into(), json!(embedder));
    if settings.embedder == EmbedderKind::Local {
        let model = absolute(&settings.model_dir)?;
        if !model.join("model.onnx").exists() && !model.exists() {
            eprintln!(
                "warning: the local model is not at {} yet: run `bash scripts/fetch-model.sh {}`",
                model.display(),
                model.display()
            );
        }
        env.insert(
            "ASTROCYTE_MODEL_DIR".into(),
            json!(model.display().to_string()),
        );
    }
    if loaded.is_set("tenant") {
        env.insert("ASTROCYTE_TENANT".into(), json!(settings.tenant));
    }
    let command = command.display().to_string();
    let (target, text) = match args.client {
        Client::Codex => {
            let target = home()?.join(".codex/config.toml");
            let old = std::fs::read_to_string(&target).unwrap_or_default();
            (target, codex_toml(&old, &args.name, &command, &env))
        }
        client => {
            let target = match client {
                Client::ClaudeCode => project.join(".mcp.json"),
                Client::Cursor => project.join(".cursor/mcp.json"),
                _ => home()?.join(".config/Claude/claude_desktop_config.json"),
            };
            let mut entry = json!({"command": command, "args": ["mcp"], "env": env});
            if client == Client::ClaudeCode {
                entry["type"] = json!("stdio");
            }
            let old = match std::fs::read_to_string(&target) {
                Ok(text) if !text.trim().is_empty() => serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", target.display()))?,
                _ => json!({}),
            };
            (target, mcp_json(old, &args.name, entry)?)
        }
    };
    if args.print {
        print!("{text}");
        return Ok(());
    }
    // `astrocyte mcp` wants a named data directory to exist: make it now, once.
    let data = absolute(&settings.data_dir)?;
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    println!(
        "wrote the {} MCP server to {} (default bank {bank})",
        args.name,
        target.display()
    );
    Ok(())
}

/// The client's JSON with our entry under `mcpServers`, every other key kept.
fn mcp_json(mut old: Value, name: &str, entry: Value) -> anyhow::Result<String> {
    let Some(root) = old.as_object_mut() else {
        bail!("the client's configuration is not a JSON object");
    };
    let servers = root.entry("mcpServers").or_insert_with(|| json!({}));
    let Some(servers) = servers.as_object_mut() else {
        bail!("mcpServers is not a JSON object");
    };
    servers.insert(name.to_string(), entry);
    Ok(format!("{}\n", serde_json::to_string_pretty(&old)?))
}

/// `~/.codex/config.toml` with our `[mcp_servers.NAME]` table (replaced if present).
fn codex_toml(old: &str, name: &str, command: &str, env: &Map<String, Value>) -> String {
    let header = format!("[mcp_servers.{name}]");
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in old.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            skipping = trimmed == header || trimmed.starts_with(&format!("[mcp_servers.{name}."));
        }
        if !skipping {
            kept.push(line);
        }
    }
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = kept.join("\n").trim_end().to_string();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "{header}\ncommand = {}\nargs = [\"mcp\"]\n\n[mcp_servers.{name}.env]\n",
        quote(command)
    ));
    for (key, value) in env {
        out.push_str(&format!(
            "{key} = {}\n",
            quote(value.as_str().unwrap_or_default())
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banks_are_named_after_the_project() {
        assert_eq!(bank_for(Path::new("/home/a/my project")), "my-project");
        assert_eq!(bank_for(Path::new("/home/a/.hidden")), "hidden");
        assert_eq!(bank_for(Path::new("/")), "default");
        astrocyte_core::BankId::new(bank_for(Path::new("/x/Ünïcode dir"))).expect("valid bank");
    }

    #[test]
    fn codex_tables_are_replaced_and_others_kept() {
        let mut env = Map::new();
        env.insert("ASTROCYTE_DATA_DIR".into(), json!("/d"));
        let old = "model = \"o3\"\n\n[mcp_servers.astrocyte]\ncommand = \"/old\"\n\n[mcp_servers.astrocyte.env]\nX = \"1\"\n\n[mcp_servers.other]\ncommand = \"o\"\n";
        let new = codex_toml(old, "astrocyte", "/bin/astrocyte", &env);
        assert!(new.contains("model = \"o3\""), "{new}");
        assert!(new.contains("[mcp_servers.other]"), "{new}");
        assert!(!new.contains("/old"), "{new}");
        assert!(!new.contains("X = \"1\""), "{new}");
        assert_eq!(new.matches("[mcp_servers.astrocyte]").count(), 1, "{new}");
        assert!(new.contains("ASTROCYTE_DATA_DIR = \"/d\""), "{new}");
    }
}
