//! How a setting's value is read from text (environment, flags) or YAML, and shown back. One
//! set of rules for every setting: booleans, numbers, lists and enums parse the same way
//! wherever they come from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use astrocyte_server::access::{DefaultPolicy, Grant, Permission};
use astrocyte_server::config::{AuthMode, LogFormat, Secret, TenantExtensionKind};
use astrocyte_server::policy::pii::{PiiAction, PiiMode};
use astrocyte_store_postgres::Placement;
use serde_yaml::Value as Yaml;

/// A raw value before parsing: text from the environment or a flag, or a YAML node.
#[derive(Debug, Clone)]
pub enum Raw {
    /// From the environment or the command line.
    Text(String),
    /// From the YAML file.
    Yaml(Yaml),
}

/// A type a setting can have.
pub trait Value: Sized {
    /// What is allowed, for messages and the reference.
    const KIND: &'static str;

    /// Parses text (an environment variable or a flag).
    fn parse(text: &str) -> Result<Self, String>;

    /// Parses a YAML node; scalars go through [`Value::parse`].
    fn from_yaml(node: &Yaml) -> Result<Self, String> {
        match node {
            Yaml::String(s) => Self::parse(s),
            Yaml::Number(n) => Self::parse(&n.to_string()),
            Yaml::Bool(b) => Self::parse(&b.to_string()),
            Yaml::Null => Self::parse(""),
            _ => Err(format!("expected {}, not a YAML list or map", Self::KIND)),
        }
    }

    /// The value as a person would write it.
    fn show(&self) -> String;

    /// Parses either kind of raw value.
    fn from_raw(raw: &Raw) -> Result<Self, String> {
        match raw {
            Raw::Text(text) => Self::parse(text.trim()),
            Raw::Yaml(node) => Self::from_yaml(node),
        }
    }
}

impl Value for String {
    const KIND: &'static str = "text";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl Value for PathBuf {
    const KIND: &'static str = "a path";
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a path must not be empty".into());
        }
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl Value for Secret {
    const KIND: &'static str = "text (secret)";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Secret::new(text))
    }
    fn show(&self) -> String {
        self.expose().to_string()
    }
}

/// The one boolean rule: `1/true/yes/on` and `0/false/no/off`, any case.
impl Value for bool {
    const KIND: &'static str = "a boolean (true/false, 1/0, yes/no, on/off)";
    fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("{text:?} is not a boolean")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

macro_rules! number {
    ($($ty:ty => $kind:literal),*) => {$(
        impl Value for $ty {
            const KIND: &'static str = $kind;
            fn parse(text: &str) -> Result<Self, String> {
                let value: $ty = text
                    .parse()
                    .map_err(|_| format!("{text:?} is not {}", $kind))?;
                Ok(value)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

number!(u16 => "a whole number from 0 to 65535", u32 => "a whole number", u64 => "a whole number",
    usize => "a whole number");

macro_rules! float {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            const KIND: &'static str = "a number";
            fn parse(text: &str) -> Result<Self, String> {
                let value: $ty = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
                if value.is_finite() {
                    Ok(value)
                } else {
                    Err(format!("{text:?} is not a finite number"))
                }
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

float!(f32, f64);

/// Unset by default; an empty value unsets it.
impl<T: Value> Value for Option<T> {
    const KIND: &'static str = T::KIND;
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            T::parse(text).map(Some)
        }
    }
    fn from_yaml(node: &Yaml) -> Result<Self, String> {
        match node {
            Yaml::Null => Ok(None),
            other => T::from_yaml(other).map(Some),
        }
    }
    fn show(&self) -> String {
        match self {
            Some(value) => value.show(),
            None => String::new(),
        }
    }
}

/// Comma-separated in text, a list in YAML.
impl Value for Vec<String> {
    const KIND: &'static str = "a list (comma-separated in the environment)";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect())
    }
    fn from_yaml(node: &Yaml) -> Result<Self, String> {
        match node {
            Yaml::Sequence(items) => items.iter().map(String::from_yaml).collect(),
            other => String::from_yaml(other).and_then(|s| Self::parse(&s)),
        }
    }
    fn show(&self) -> String {
        self.join(",")
    }
}

/// `:`-separated in text (as `PATH`), a list in YAML.
impl Value for Vec<PathBuf> {
    const KIND: &'static str = "a list of paths (`:`-separated in the environment)";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(std::env::split_paths(text)
            .filter(|p| !p.as_os_str().is_empty())
            .collect())
    }
    fn from_yaml(node: &Yaml) -> Result<Self, String> {
        match node {
            Yaml::Sequence(items) => items.iter().map(PathBuf::from_yaml).collect(),
            other => String::from_yaml(other).and_then(|s| Self::parse(&s)),
        }
    }
    fn show(&self) -> String {
        std::env::join_paths(self)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// An enum parsed by its `FromStr`, shown by the name it parses from.
macro_rules! choice {
    ($ty:ty, $kind:literal, $($variant:path => $name:literal),+ $(,)?) => {
        impl Value for $ty {
            const KIND: &'static str = $kind;
            fn parse(text: &str) -> Result<Self, String> {
                text.parse::<$ty>().map_err(|e| e.to_string())
            }
            fn show(&self) -> String {
                match self { $($variant => $name.to_string(),)+ }
            }
        }
    };
}

choice!(AuthMode, "one of dev, api_key, jwt_hs256, jwt_oidc",
    AuthMode::Dev => "dev", AuthMode::ApiKey => "api_key", AuthMode::JwtHs256 => "jwt_hs256",
    AuthMode::JwtOidc => "jwt_oidc");
choice!(TenantExtensionKind, "one of default, api_key, jwt, header",
    TenantExtensionKind::Default => "default", TenantExtensionKind::ApiKey => "api_key",
    TenantExtensionKind::Jwt => "jwt", TenantExtensionKind::TrustedHeader => "header");
choice!(PiiMode, "one of regex, disabled", PiiMode::Regex => "regex", PiiMode::Disabled => "disabled");
choice!(PiiAction, "one of redact, reject, warn",
    PiiAction::Redact => "redact", PiiAction::Reject => "reject", PiiAction::Warn => "warn");
choice!(DefaultPolicy, "one of owner_only, open, deny",
    DefaultPolicy::OwnerOnly => "owner_only", DefaultPolicy::Open => "open", DefaultPolicy::Deny => "deny");
choice!(LogFormat, "one of text, json", LogFormat::Text => "text", LogFormat::Json => "json");
choice!(Placement, "one of least_tenants, home",
    Placement::LeastTenants => "least_tenants", Placement::Home => "home");

/// The embedding provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderKind {
    /// The local model (bge-small-en-v1.5 by default) in-process.
    Local,
    /// The deterministic hashing embedder (no model, no network).
    Hashing,
    /// An OpenAI-compatible embeddings API.
    Openai,
}

impl std::str::FromStr for EmbedderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(EmbedderKind::Local),
            "hashing" => Ok(EmbedderKind::Hashing),
            "openai" => Ok(EmbedderKind::Openai),
            other => Err(format!(
                "unknown embedder {other:?} (expected local, hashing or openai)"
            )),
        }
    }
}

choice!(EmbedderKind, "one of local, hashing, openai",
    EmbedderKind::Local => "local", EmbedderKind::Hashing => "hashing", EmbedderKind::Openai => "openai");

/// Per-bank grants: a YAML list of `{bank_id, principal, permissions, tenant?}` (JSON in the
/// environment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants(pub Vec<Grant>);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantSpec {
    bank_id: String,
    principal: String,
    permissions: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
}

impl Value for Grants {
    const KIND: &'static str =
        "a list of {bank_id, principal, permissions, tenant?} (JSON in the environment)";
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Grants::default());
        }
        let node: Yaml = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        Self::from_yaml(&node)
    }
    fn from_yaml(node: &Yaml) -> Result<Self, String> {
        let specs: Vec<GrantSpec> =
            serde_yaml::from_value(node.clone()).map_err(|e| e.to_string())?;
        specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let permissions = spec
                    .permissions
                    .iter()
                    .map(|p| p.parse::<Permission>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("[{index}].permissions: {e}"))?;
                let tenant = spec
                    .tenant
                    .map(astrocyte_core::Schema::new)
                    .transpose()
                    .map_err(|e| format!("[{index}].tenant: {e}"))?;
                Ok(Grant {
                    bank_id: spec.bank_id,
                    principal: spec.principal,
                    permissions,
                    tenant,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(Grants)
    }
    fn show(&self) -> String {
        let specs: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|g| {
                serde_json::json!({
                    "bank_id": g.bank_id,
                    "principal": g.principal,
                    "permissions": g.permissions.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "tenant": g.tenant.as_ref().map(|t| t.to_string()),
                })
            })
            .collect();
        serde_json::Value::from(specs).to_string()
    }
}

/// Per-PII-type actions: YAML `{ssn: {action: reject}}` (JSON in the environment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PiiOverrides(pub BTreeMap<String, PiiAction>);

impl Value for PiiOverrides {
    const KIND: &'static str = "a map of PII type to {action} (JSON in the environment)";
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(PiiOverrides::default());
        }
        let node: Yaml = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        Self::from_yaml(&node)
    }
    fn from_yaml(node: &Yaml) -> Result<Self, String> {
        let Yaml::Mapping(map) = node else {
            return Err("expected a map of PII type to {action}".into());
        };
        let known = astrocyte_server::policy::pii::DETECTOR_NAMES;
        let mut out = BTreeMap::new();
        for (key, value) in map {
            let name = key.as_str().unwrap_or_default().to_string();
            if !known.contains(&name.as_str()) {
                return Err(format!(
                    "unknown PII type {name:?} (known: {})",
                    known.join(", ")
                ));
            }
            let action = match value {
                Yaml::Mapping(inner) => inner
                    .iter()
                    .map(|(k, v)| match k.as_str() {
                        Some("action") => PiiAction::from_yaml(v),
                        other => Err(format!("{name}: unknown key {other:?} (expected action)")),
                    })
                    .next()
                    .unwrap_or_else(|| Err(format!("{name}: action is missing")))?,
                other => PiiAction::from_yaml(other)?,
            };
            out.insert(name, action);
        }
        Ok(PiiOverrides(out))
    }
    fn show(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!({ "action": v.show() })))
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_boolean_rule_everywhere() {
        for yes in ["1", "true", "TRUE", "yes", "on"] {
            assert_eq!(bool::parse(yes), Ok(true), "{yes}");
        }
        for no in ["0", "false", "No", "off"] {
            assert_eq!(bool::parse(no), Ok(false), "{no}");
        }
        assert!(bool::parse("2").is_err());
        assert_eq!(bool::from_yaml(&Yaml::Bool(true)), Ok(true));
    }

    #[test]
    fn lists_and_options_parse_from_text_and_yaml() {
        assert_eq!(
            Vec::<String>::parse("a, b,,c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        let node: Yaml = serde_yaml::from_str("[x, y]").expect("yaml");
        assert_eq!(
            Vec::<String>::from_yaml(&node),
            Ok(vec!["x".into(), "y".into()])
        );
        assert_eq!(Option::<u16>::parse(""), Ok(None));
        assert_eq!(Option::<u16>::parse("9090"), Ok(Some(9090)));
        assert!(u16::parse("70000").is_err());
        assert!(f32::parse("NaN").is_err());
    }

    #[test]
    fn grants_and_overrides_are_checked() {
        let grants = Grants::parse(
            r#"[{"bank_id": "*", "principal": "agent:a", "permissions": ["read", "write"]}]"#,
        )
        .expect("grants");
        assert_eq!(grants.0.len(), 1);
        assert!(
            Grants::parse(r#"[{"bank_id": "b", "principal": "p", "permissions": ["fly"]}]"#)
                .is_err()
        );
        assert!(Grants::parse(
            r#"[{"bank_id": "b", "principal": "p", "permissions": [], "extra": 1}]"#
        )
        .is_err());
        let overrides: Yaml = serde_yaml::from_str("{ssn: {action: reject}}").expect("yaml");
        assert_eq!(
            PiiOverrides::from_yaml(&overrides)
                .expect("overrides")
                .0
                .get("ssn"),
            Some(&PiiAction::Reject)
        );
        let unknown: Yaml = serde_yaml::from_str("{dna: {action: reject}}").expect("yaml");
        assert!(PiiOverrides::from_yaml(&unknown).is_err());
    }
}
