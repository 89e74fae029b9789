//! Locates and checks the model directory laid down by `scripts/fetch-model.sh`; it never
//! downloads anything itself, it only says which command does.

use std::path::{Path, PathBuf};

use crate::error::{LocalEmbedError, Result};

/// The model configuration (hidden size, position limit), shared by both backends.
pub(crate) const CONFIG_FILE: &str = "config.json";
/// The WordPiece tokenizer, shared by both backends.
pub(crate) const TOKENIZER_FILE: &str = "tokenizer.json";
/// The f32 weights the candle backend runs.
pub(crate) const SAFETENSORS_FILE: &str = "model.safetensors";
/// The ONNX export (int8 weights) the ONNX Runtime backend runs.
pub(crate) const ONNX_MODEL_FILE: &str = "model-int8.onnx";
/// The ONNX Runtime shared library, loaded at run time.
pub(crate) const ONNX_RUNTIME_FILE: &str = "libonnxruntime.so";

/// Returns the exact command that fetches the model into `model_dir`.
pub fn fetch_command(model_dir: &Path) -> String {
    // An absolute path keeps the command valid whatever directory the server was started from.
    let shown = std::path::absolute(model_dir).unwrap_or_else(|_| model_dir.to_path_buf());
    format!("bash scripts/fetch-model.sh {}", shown.display())
}

/// Fails with [`LocalEmbedError::ModelMissing`] unless every file named in `in_dir` exists
/// inside `model_dir` and every path in `elsewhere` exists.
pub(crate) fn check_present(model_dir: &Path, in_dir: &[&str], elsewhere: &[&Path]) -> Result<()> {
    let missing: Vec<String> = in_dir
        .iter()
        .filter(|name| !model_dir.join(name).is_file())
        .map(|name| (*name).to_owned())
        .chain(
            elsewhere
                .iter()
                .filter(|path| !path.is_file())
                .map(|path| path.display().to_string()),
        )
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(LocalEmbedError::ModelMissing {
        dir: model_dir.to_path_buf(),
        missing: missing.join(", "),
        fetch_command: fetch_command(model_dir),
    })
}

/// Reads a whole model file, naming it in the error.
pub(crate) fn read(model_dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path: PathBuf = model_dir.join(name);
    std::fs::read(&path).map_err(|error| LocalEmbedError::ModelFile {
        path,
        message: error.to_string(),
    })
}

/// Wraps a parse failure of `name` into [`LocalEmbedError::ModelFile`].
pub(crate) fn invalid(
    model_dir: &Path,
    name: &str,
    message: impl std::fmt::Display,
) -> LocalEmbedError {
    LocalEmbedError::ModelFile {
        path: model_dir.join(name),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_fetch_command() {
        let dir = std::env::temp_dir().join("astrocyte-embed-local-missing-model");
        let error = check_present(&dir, &[SAFETENSORS_FILE], &[]).expect_err("no model there");
        let message = error.to_string();
        assert!(message.contains("model.safetensors"), "{message}");
        assert!(
            message.contains(&format!("bash scripts/fetch-model.sh {}", dir.display())),
            "{message}"
        );
    }
}
