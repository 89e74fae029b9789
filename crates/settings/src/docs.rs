//! The configuration reference and the example YAML, generated from the table, and the
//! `config show` listing.

use std::fmt::Write as _;

use crate::load::{Loaded, TEST_VAR_PREFIX};
use crate::table::{Settings, Spec, TABLE};

/// The documented default of a setting (the data directory depends on the machine, so its
/// rule is written instead of its value).
pub fn default_text(spec: &Spec) -> String {
    if spec.field == "data_dir" {
        return "`$XDG_DATA_HOME/astrocyte` (else `~/.local/share/astrocyte`)".into();
    }
    match Settings::default().show(spec.field) {
        Some(value) if value.is_empty() => "unset".into(),
        Some(value) => format!("`{}`", value.replace('|', "\\|")),
        None => "unset".into(),
    }
}

fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for spec in TABLE {
        if !out.contains(&spec.section) {
            out.push(spec.section);
        }
    }
    out
}

/// `docs/configuration.md`.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    out.push_str("<!-- Generated from crates/settings/src/table.rs by `astrocyte config docs`; a test fails when this file differs. -->\n\n");
    out.push_str("Every setting is declared once, in `crates/settings/src/table.rs`; `serve`, `mcp`, the workers and every command load them the same way.\n\n");
    out.push_str("- **Precedence:** defaults < the YAML file < environment variables < command-line flags.\n");
    out.push_str("- **The YAML file:** `--config FILE`, else `ASTROCYTE_CONFIG_PATH`; nested keys follow the dotted names below (`mcp.expose_forget` is `expose_forget` under `mcp:`). [`astrocyte.example.yaml`](astrocyte.example.yaml) lists every key.\n");
    let _ = writeln!(out, "- **Checked at start-up:** an unknown key in the file or an unknown `ASTROCYTE_*` variable stops start-up and names the nearest known one (variables starting with `{TEST_VAR_PREFIX}` belong to test harnesses); an invalid value names the setting, the value and what is allowed. A blank environment variable counts as unset.");
    out.push_str("- **Values:** booleans are `true/false`, `1/0`, `yes/no` or `on/off` everywhere; lists are comma-separated in the environment (paths `:`-separated) and YAML lists in the file; grants and PII overrides are JSON in the environment.\n");
    out.push_str("- **Secrets** are never printed: `astrocyte config show` prints the effective settings with where each came from and `***` for secrets; `astrocyte config check [FILE]` validates without starting anything.\n");
    out.push_str("- Where a variable has aliases, the first is documented and the others (the reference's older names) are accepted.\n");
    for section in sections() {
        let _ = writeln!(out, "\n## {section}\n");
        out.push_str(
            "| Key | Environment | Flag | Default | Description |\n|---|---|---|---|---|\n",
        );
        for spec in TABLE.iter().filter(|s| s.section == section) {
            let env = spec
                .env
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let flag = spec.flag.map(|f| format!("`{f}`")).unwrap_or_default();
            let secret = if spec.secret { " Secret." } else { "" };
            let _ = writeln!(
                out,
                "| `{}` | {env} | {flag} | {} | {}{secret} Allowed: {}. |",
                spec.yaml,
                default_text(spec),
                spec.doc.trim().replace('|', "\\|"),
                spec.kind.replace('|', "\\|"),
            );
        }
    }
    out
}

/// How a value is written in YAML.
fn yaml_scalar(spec: &Spec, shown: &str) -> String {
    let kind = spec.kind;
    if kind.starts_with("a boolean")
        || kind.contains("number")
        || kind.starts_with("one of")
        || kind.starts_with("a map of")
        || kind.starts_with("a list of {")
    {
        return shown.to_string();
    }
    if kind.starts_with("a list of paths") {
        let items: Vec<String> = std::env::split_paths(shown)
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.display().to_string())
            .collect();
        return serde_json::Value::from(items).to_string();
    }
    if kind.starts_with("a list") {
        let items: Vec<&str> = shown.split(',').filter(|s| !s.is_empty()).collect();
        return serde_json::Value::from(items).to_string();
    }
    serde_json::Value::from(shown).to_string()
}

/// `docs/astrocyte.example.yaml`: every key, set to its default; settings unset by default
/// (and secrets) are commented out with an example value.
pub fn example_yaml() -> String {
    let defaults = Settings::default();
    let mut out = String::from(
        "# Every Astrocyte setting, at its default. Generated from crates/settings/src/table.rs\n\
         # by `astrocyte config example`; docs/configuration.md describes each key.\n",
    );
    let mut open: Vec<&str> = Vec::new();
    for spec in TABLE {
        let parts: Vec<&str> = spec.yaml.split('.').collect();
        let (leaf, path) = parts
            .split_last()
            .map(|(l, p)| (*l, p))
            .unwrap_or(("", &[]));
        let common = open.iter().zip(path).take_while(|(a, b)| a == b).count();
        open.truncate(common);
        for section in &path[common..] {
            let indent = "  ".repeat(open.len());
            let _ = writeln!(out, "{indent}{section}:");
            open.push(section);
        }
        let indent = "  ".repeat(open.len());
        let _ = writeln!(out, "{indent}# {}", spec.doc.trim());
        let shown = if spec.field == "data_dir" {
            None
        } else {
            defaults.show(spec.field).filter(|v| !v.is_empty())
        };
        match shown {
            Some(value) if !spec.secret => {
                let _ = writeln!(out, "{indent}{leaf}: {}", yaml_scalar(spec, &value));
            }
            _ => {
                let _ = writeln!(out, "{indent}# {leaf}: {}", yaml_scalar(spec, spec.example));
            }
        }
    }
    out
}

/// `astrocyte config show`: each setting's effective value and origin; secrets as `***`.
pub fn show(loaded: &Loaded) -> String {
    let mut out = String::new();
    let width = TABLE.iter().map(|s| s.yaml.len()).max().unwrap_or(0);
    if let Some(file) = &loaded.file {
        let _ = writeln!(out, "# file: {}", file.display());
    }
    for spec in TABLE {
        let value = loaded.settings.show(spec.field).unwrap_or_default();
        let value = if spec.secret && !value.is_empty() {
            "***".to_string()
        } else if value.is_empty() {
            "(unset)".to_string()
        } else {
            value
        };
        let _ = writeln!(
            out,
            "{:width$}  {value}  [{}]",
            spec.yaml,
            loaded.origin(spec.field)
        );
    }
    out
}
