//! The ONNX Runtime backend: runs an ONNX export of the same BERT encoder through a
//! dynamically loaded `libonnxruntime` and returns last hidden states. It never downloads
//! the runtime; `scripts/fetch-model.sh` places it next to the model.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::error::{LocalEmbedError, Result};
use crate::tokenize::TokenBatch;

/// ONNX Runtime allows one environment per process, created with the first library loaded.
static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// Returns the process's ONNX Runtime environment, loading `library` the first time.
fn environment(library: &Path) -> std::result::Result<&'static Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|error| error.to_string())?
                .with_name("astrocyte-embed")
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A loaded ONNX encoder session.
pub(crate) struct OnnxBert {
    session: Session,
}

impl OnnxBert {
    /// Loads ONNX Runtime from `library` (once per process: the first library loaded stays)
    /// and the model from `model`, running each pass on `threads` threads.
    pub fn load(model: &Path, library: &Path, threads: usize) -> Result<Self> {
        let runtime_error = |message: String| LocalEmbedError::ModelFile {
            path: library.to_path_buf(),
            message,
        };
        let environment = environment(library).map_err(runtime_error)?;
        let model_error = |error: &dyn std::fmt::Display| LocalEmbedError::ModelFile {
            path: model.to_path_buf(),
            message: error.to_string(),
        };
        let builder_error = |error: ort::Error<_>| runtime_error(error.to_string());
        let mut builder = Session::builder(environment)
            .map_err(|error| runtime_error(error.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(builder_error)?
            .with_intra_threads(threads)
            .map_err(builder_error)?
            .with_inter_threads(1)
            .map_err(builder_error)?
            // Spinning workers would burn the CPU the server's other tasks need between passes.
            .with_intra_op_spinning(false)
            .map_err(builder_error)?;
        let session = builder
            .commit_from_file(model)
            .map_err(|error| model_error(&error))?;
        Ok(OnnxBert { session })
    }

    /// Returns the last hidden states, row-major `[rows, seq_len, hidden_size]`.
    pub fn hidden_states(&mut self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let shape = [batch.rows, batch.seq_len];
        let widen = |values: &[u32]| {
            values
                .iter()
                .map(|&value| i64::from(value))
                .collect::<Vec<i64>>()
        };
        let inference = |error: ort::Error| LocalEmbedError::Inference(error.to_string());
        let input_ids = Tensor::from_array((shape, widen(&batch.ids))).map_err(inference)?;
        let attention_mask = Tensor::from_array((shape, widen(&batch.mask))).map_err(inference)?;
        let token_type_ids =
            Tensor::from_array((shape, vec![0i64; batch.ids.len()])).map_err(inference)?;
        let outputs = self
            .session
            .run(ort::inputs![
                "input_ids" => input_ids,
                "attention_mask" => attention_mask,
                "token_type_ids" => token_type_ids,
            ])
            .map_err(inference)?;
        let hidden = outputs.get("last_hidden_state").ok_or_else(|| {
            LocalEmbedError::Inference("model has no last_hidden_state output".to_owned())
        })?;
        let (_, values) = hidden.try_extract_tensor::<f32>().map_err(inference)?;
        Ok(values.to_vec())
    }
}
