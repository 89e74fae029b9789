//! The settings loader takes outside input (environment values, YAML files): whatever it is
//! given, it answers a value or an error naming the setting, and never panics.

use std::collections::HashMap;
use std::path::Path;

use astrocyte_settings::{load_yaml, TABLE};
use proptest::prelude::*;

fn any_spec() -> impl Strategy<Value = usize> {
    0..TABLE.len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text in any setting's variable: loaded, or refused with a message naming it.
    #[test]
    fn any_environment_value_is_loaded_or_refused_by_name(index in any_spec(), value in "\\PC{0,40}") {
        let spec = &TABLE[index];
        let var = spec.env[0];
        let env: HashMap<String, String> = [(var.to_string(), value.clone())].into();
        match load_yaml(Path::new("p.yaml"), "", env) {
            Ok(loaded) => {
                // Converting never panics either.
                let _ = loaded.server_config();
                let _ = loaded.mcp_config();
                let _ = loaded.llm_config();
                let _ = loaded.engine_config();
            }
            Err(error) => prop_assert!(error.0.contains(var), "{error} does not name {var}"),
        }
    }

    /// Any YAML document: loaded, or refused with a message.
    #[test]
    fn any_yaml_document_is_loaded_or_refused(text in "\\PC{0,200}") {
        match load_yaml(Path::new("p.yaml"), &text, HashMap::new()) {
            Ok(_) => {}
            Err(error) => prop_assert!(!error.0.is_empty()),
        }
    }

    /// A YAML key at any known path with any scalar: loaded, or refused naming the key.
    #[test]
    fn any_value_under_a_known_key_is_loaded_or_refused_by_name(index in any_spec(), value in "[ -~]{0,30}") {
        let spec = &TABLE[index];
        let parts: Vec<&str> = spec.yaml.split('.').collect();
        let mut text = String::new();
        for (depth, part) in parts.iter().enumerate() {
            text.push_str(&"  ".repeat(depth));
            if depth + 1 == parts.len() {
                text.push_str(&format!("{part}: {}\n", serde_json::Value::from(value.clone())));
            } else {
                text.push_str(&format!("{part}:\n"));
            }
        }
        match load_yaml(Path::new("p.yaml"), &text, HashMap::new()) {
            Ok(_) => {}
            Err(error) => prop_assert!(error.0.contains(spec.yaml), "{error} does not name {}", spec.yaml),
        }
    }
}
