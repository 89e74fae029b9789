//! One loader, one precedence: defaults < YAML file < environment < command-line flags.
//! Unknown YAML keys and unknown `ASTROCYTE_*` variables stop start-up, naming the nearest
//! known key; an invalid value names the setting, the value (unless secret) and what is
//! allowed, once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

use crate::table::{Settings, Spec, TABLE};
use crate::value::Raw;

/// The environment variable naming the YAML file (the `--config` flag wins over it).
pub const CONFIG_PATH_VAR: &str = "ASTROCYTE_CONFIG_PATH";

/// `ASTROCYTE_*` variables with this prefix belong to test harnesses and are not settings.
pub const TEST_VAR_PREFIX: &str = "ASTROCYTE_TEST_";

/// Where the values come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The process environment (or a test's map).
    pub env: HashMap<String, String>,
    /// `--config FILE`; otherwise `ASTROCYTE_CONFIG_PATH`, otherwise no file.
    pub config_file: Option<PathBuf>,
    /// Flags the user passed, as `(flag, value)`, e.g. `("--port", "8081")`.
    pub flags: Vec<(&'static str, String)>,
}

impl Sources {
    /// The process environment, with these flags.
    pub fn process(config_file: Option<PathBuf>, flags: Vec<(&'static str, String)>) -> Self {
        Sources {
            env: std::env::vars().collect(),
            config_file,
            flags,
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Its documented default.
    Default,
    /// The YAML file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the settings could not be loaded; the message is the whole story, said once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// Settings with the origin of each value.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The values.
    pub settings: Settings,
    /// Each field's origin.
    pub origins: BTreeMap<&'static str, Origin>,
    /// The YAML file read, if any.
    pub file: Option<PathBuf>,
}

impl Loaded {
    /// Where `field` came from.
    pub fn origin(&self, field: &str) -> &Origin {
        self.origins.get(field).unwrap_or(&Origin::Default)
    }

    /// Whether the user set `field` anywhere.
    pub fn is_set(&self, field: &str) -> bool {
        self.origin(field) != &Origin::Default
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// The known name nearest to `wanted`, when it is near enough to be a typo.
pub fn nearest<'a>(wanted: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| {
            (
                distance(&wanted.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn did_you_mean(hint: Option<&str>) -> String {
    hint.map(|h| format!(" (did you mean {h:?}?)"))
        .unwrap_or_default()
}

fn spec_by_yaml(path: &str) -> Option<&'static Spec> {
    TABLE.iter().find(|s| s.yaml == path)
}

fn is_section(path: &str) -> bool {
    TABLE.iter().any(|s| {
        s.yaml
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Collects `(spec, node)` pairs from a YAML mapping, refusing unknown keys.
fn walk(
    node: &serde_yaml::Mapping,
    prefix: &str,
    file: &Path,
    out: &mut Vec<(&'static Spec, Yaml)>,
) -> Result<(), SettingsError> {
    for (key, value) in node {
        let Some(key) = key.as_str() else {
            return Err(SettingsError(format!(
                "{}: {prefix}{key:?} is not a text key",
                file.display()
            )));
        };
        let path = format!("{prefix}{key}");
        if let Some(spec) = spec_by_yaml(&path) {
            out.push((spec, value.clone()));
        } else if is_section(&path) {
            match value {
                Yaml::Mapping(inner) => walk(inner, &format!("{path}."), file, out)?,
                Yaml::Null => {}
                _ => {
                    return Err(SettingsError(format!(
                        "{}: {path} is a section; its keys go under it",
                        file.display()
                    )))
                }
            }
        } else {
            let hint = nearest(&path, TABLE.iter().map(|s| s.yaml));
            return Err(SettingsError(format!(
                "{}: unknown setting {path:?}{}",
                file.display(),
                did_you_mean(hint)
            )));
        }
    }
    Ok(())
}

fn read_yaml(path: &Path, text: &str) -> Result<Vec<(&'static Spec, Yaml)>, SettingsError> {
    let mut out = Vec::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let root: Yaml = serde_yaml::from_str(text)
        .map_err(|e| SettingsError(format!("{}: not valid YAML: {e}", path.display())))?;
    match root {
        Yaml::Mapping(map) => walk(&map, "", path, &mut out)?,
        Yaml::Null => {}
        _ => {
            return Err(SettingsError(format!(
                "{}: the top level must be a map of settings",
                path.display()
            )))
        }
    }
    Ok(out)
}

/// Every `ASTROCYTE_*` variable must be a setting's (or the config path, or a test harness's).
fn check_env_names(env: &HashMap<String, String>) -> Result<(), SettingsError> {
    let known = || {
        TABLE
            .iter()
            .flat_map(|s| s.env.iter().copied())
            .chain([CONFIG_PATH_VAR])
    };
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("ASTROCYTE_") && !k.starts_with(TEST_VAR_PREFIX))
        .filter(|k| !known().any(|n| n == k.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(var) => Err(SettingsError(format!(
            "unknown environment variable {var}{}",
            did_you_mean(nearest(var, known()))
        ))),
    }
}

fn describe(spec: &Spec, origin: &Origin) -> String {
    match origin {
        Origin::Env(var) => var.clone(),
        Origin::Flag(flag) => flag.to_string(),
        Origin::File(path) => format!("{} in {}", spec.yaml, path.display()),
        Origin::Default => spec.yaml.to_string(),
    }
}

fn shown(spec: &Spec, raw: &Raw) -> String {
    if spec.secret {
        return "(secret)".into();
    }
    match raw {
        Raw::Text(text) => format!("{text:?}"),
        Raw::Yaml(node) => serde_yaml::to_string(node)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn env_value(env: &HashMap<String, String>, name: &str) -> Option<String> {
    env.get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Loads every setting from `sources`, reading the YAML file they name.
pub fn load(sources: &Sources) -> Result<Loaded, SettingsError> {
    let file = sources
        .config_file
        .clone()
        .or_else(|| env_value(&sources.env, CONFIG_PATH_VAR).map(PathBuf::from));
    let text = match &file {
        None => None,
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            SettingsError(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?),
    };
    load_from(sources, file.zip(text))
}

/// Loads from a YAML text (named `path` in messages) and an environment map.
pub fn load_yaml(
    path: &Path,
    text: &str,
    env: HashMap<String, String>,
) -> Result<Loaded, SettingsError> {
    let sources = Sources {
        env,
        config_file: None,
        flags: Vec::new(),
    };
    load_from(&sources, Some((path.to_path_buf(), text.to_string())))
}

fn load_from(
    sources: &Sources,
    yaml_file: Option<(PathBuf, String)>,
) -> Result<Loaded, SettingsError> {
    check_env_names(&sources.env)?;
    let env_value = |name: &str| env_value(&sources.env, name);
    let from_file = match &yaml_file {
        None => Vec::new(),
        Some((path, text)) => read_yaml(path, text)?,
    };
    let file = yaml_file.map(|(path, _)| path);
    for (flag, _) in &sources.flags {
        if !TABLE.iter().any(|s| s.flag == Some(flag)) {
            return Err(SettingsError(format!("{flag} is not a settings flag")));
        }
    }

    let mut settings = Settings::default();
    let mut origins = BTreeMap::new();
    for spec in TABLE {
        let flag = spec.flag.and_then(|flag| {
            sources
                .flags
                .iter()
                .rev()
                .find(|(f, _)| *f == flag)
                .map(|(_, v)| (Origin::Flag(flag), Raw::Text(v.clone())))
        });
        let env = || {
            spec.env.iter().find_map(|var| {
                env_value(var).map(|v| (Origin::Env((*var).to_string()), Raw::Text(v)))
            })
        };
        let yaml = || {
            from_file
                .iter()
                .find(|(s, _)| s.field == spec.field)
                .zip(file.as_ref())
                .map(|((_, node), path)| (Origin::File(path.clone()), Raw::Yaml(node.clone())))
        };
        let Some((origin, raw)) = flag.or_else(env).or_else(yaml) else {
            continue;
        };
        settings.assign(spec.field, &raw).map_err(|why| {
            SettingsError(format!(
                "{}: {} is not valid for {}: {why} (expected {})",
                describe(spec, &origin),
                shown(spec, &raw),
                spec.yaml,
                spec.kind
            ))
        })?;
        origins.insert(spec.field, origin);
    }
    Ok(Loaded {
        settings,
        origins,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn yaml(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, SettingsError> {
        load_yaml(Path::new("test.yaml"), text, env(vars))
    }

    #[test]
    fn precedence_is_default_then_file_then_env_then_flag() {
        let loaded = yaml("port: 7000\nhost: 127.0.0.2\n", &[]).expect("loads");
        assert_eq!(loaded.settings.port, 7000);
        assert!(matches!(loaded.origin("port"), Origin::File(_)));
        assert_eq!(loaded.origin("max_result_limit"), &Origin::Default);

        let loaded = yaml("port: 7000\n", &[("ASTROCYTE_PORT", "7001")]).expect("loads");
        assert_eq!(loaded.settings.port, 7001);
        assert_eq!(loaded.origin("port"), &Origin::Env("ASTROCYTE_PORT".into()));

        let loaded = load(&Sources {
            env: env(&[("ASTROCYTE_PORT", "7001")]),
            config_file: None,
            flags: vec![("--port", "7002".into())],
        })
        .expect("loads");
        assert_eq!(loaded.settings.port, 7002);
        assert_eq!(loaded.origin("port"), &Origin::Flag("--port"));
    }

    #[test]
    fn unknown_keys_and_variables_name_the_nearest_known_one() {
        let error = yaml("prot: 9999\n", &[]).expect_err("typo");
        assert!(error.0.contains("\"prot\""), "{error}");
        assert!(error.0.contains("did you mean \"port\""), "{error}");
        let error = yaml("mcp:\n  expose_forgett: true\n", &[]).expect_err("typo");
        assert!(
            error.0.contains("did you mean \"mcp.expose_forget\""),
            "{error}"
        );
        let error = yaml("", &[("ASTROCYTE_PROT", "1")]).expect_err("typo");
        assert_eq!(
            error.0,
            "unknown environment variable ASTROCYTE_PROT (did you mean \"ASTROCYTE_PORT\"?)"
        );
        // Test harness variables are not settings.
        yaml("", &[("ASTROCYTE_TEST_DATABASE_URL", "x")]).expect("allowed");
    }

    #[test]
    fn invalid_values_name_setting_value_and_what_is_allowed_once() {
        let error = yaml("", &[("ASTROCYTE_AUTH_MODE", "magic")]).expect_err("bad");
        assert_eq!(error.0.matches("invalid").count(), 0, "{error}");
        assert!(
            error.0.starts_with("ASTROCYTE_AUTH_MODE: \"magic\""),
            "{error}"
        );
        assert!(error.0.contains("dev, api_key"), "{error}");
        let error = yaml("", &[("ASTROCYTE_LOG_FORMAT", "1")]).expect_err("1 is no format");
        assert!(error.0.contains("text, json"), "{error}");
        let error = yaml("port: not-a-port\n", &[]).expect_err("bad");
        assert!(error.0.starts_with("port in "), "{error}");
        let error = yaml("", &[("ASTROCYTE_ADMIN_TOKEN", "")]).map(|l| l.settings.admin_token);
        assert!(matches!(error, Ok(None)), "a blank variable is unset");
        let error = yaml("api_key: [1, 2]\n", &[]).expect_err("bad");
        assert!(error.0.contains("(secret)"), "{error}");
        assert!(!error.0.contains("[1, 2]"), "{error}");
    }

    #[test]
    fn aliases_and_sections_load() {
        let loaded = yaml(
            "homeostasis:\n  quotas:\n    retain_per_day: 5\nbarriers:\n  pii:\n    action: reject\n",
            &[("ASTROCYTE_EXPORT_ROOTS", "/tmp"), ("ASTROCYTE_LOG", "debug")],
        )
        .expect("loads");
        assert_eq!(loaded.settings.retain_per_day, Some(5));
        assert_eq!(
            loaded.settings.portability_roots,
            vec![PathBuf::from("/tmp")]
        );
        assert_eq!(loaded.settings.log_level, "debug");
    }
}
