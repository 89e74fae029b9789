//! Which model a directory holds and how to run it. `scripts/fetch-model.sh` writes a
//! `model.json` beside the weights for models other than all-MiniLM-L6-v2; a directory
//! without one is all-MiniLM-L6-v2 (mean pooling, no query prefix, shape from `config.json`).

use std::path::Path;

use serde::Deserialize;

use crate::error::Result;
use crate::model_files::{self, CONFIG_FILE};

/// The profile file's name.
pub(crate) const PROFILE_FILE: &str = "model.json";

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Pooling {
    /// The mean of the real tokens' vectors (sentence-transformers' MiniLM).
    Mean,
    /// The `[CLS]` token's vector (BGE).
    Cls,
}

/// A model's name, shape and the conventions it was trained with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// Recorded with every stored vector; a bank embedded by another model is refused.
    pub name: String,
    pub pooling: Pooling,
    /// Prepended to queries (not documents) when the model was trained asymmetrically.
    #[serde(default)]
    pub query_prefix: String,
    pub hidden_size: usize,
    pub max_position_embeddings: usize,
}

#[derive(Deserialize)]
struct BertShape {
    hidden_size: usize,
    max_position_embeddings: usize,
}

impl Profile {
    /// Reads `model.json`, or `config.json` for a directory without one.
    pub fn load(model_dir: &Path) -> Result<Self> {
        // A directory with neither file is a model not fetched yet: say which command fetches it.
        if !model_dir.join(PROFILE_FILE).is_file() {
            model_files::check_present(model_dir, &[CONFIG_FILE], &[])?;
        }
        if model_dir.join(PROFILE_FILE).is_file() {
            let bytes = model_files::read(model_dir, PROFILE_FILE)?;
            return serde_json::from_slice(&bytes)
                .map_err(|error| model_files::invalid(model_dir, PROFILE_FILE, error));
        }
        let bytes = model_files::read(model_dir, CONFIG_FILE)?;
        let shape: BertShape = serde_json::from_slice(&bytes)
            .map_err(|error| model_files::invalid(model_dir, CONFIG_FILE, error))?;
        Ok(Profile {
            name: crate::embedder::MODEL_NAME.to_owned(),
            pooling: Pooling::Mean,
            query_prefix: String::new(),
            hidden_size: shape.hidden_size,
            max_position_embeddings: shape.max_position_embeddings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_file_names_the_model_and_its_conventions() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(PROFILE_FILE),
            r#"{"name":"bge-small-en-v1.5","pooling":"cls","query_prefix":"Q: ","hidden_size":384,"max_position_embeddings":512}"#,
        )
        .expect("write");
        let profile = Profile::load(dir.path()).expect("loads");
        assert_eq!(profile.name, "bge-small-en-v1.5");
        assert_eq!(profile.pooling, Pooling::Cls);
        assert_eq!(profile.query_prefix, "Q: ");
        std::fs::write(
            dir.path().join(PROFILE_FILE),
            r#"{"name":"x","pooling":"max"}"#,
        )
        .expect("write");
        let error = Profile::load(dir.path()).expect_err("unknown pooling refused");
        assert!(error.to_string().contains("model.json"), "{error}");
    }

    #[test]
    fn an_empty_directory_names_the_fetch_command() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = Profile::load(dir.path()).expect_err("nothing there");
        assert!(
            error.to_string().contains("scripts/fetch-model.sh"),
            "{error}"
        );
    }

    #[test]
    fn without_a_profile_the_directory_is_minilm() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            r#"{"hidden_size":384,"max_position_embeddings":512,"other":1}"#,
        )
        .expect("write");
        let profile = Profile::load(dir.path()).expect("loads");
        assert_eq!(profile.name, crate::embedder::MODEL_NAME);
        assert_eq!(profile.pooling, Pooling::Mean);
        assert!(profile.query_prefix.is_empty());
    }
}
