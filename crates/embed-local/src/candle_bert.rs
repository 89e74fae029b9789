//! The candle backend: runs the BERT encoder of candle-transformers on the CPU in f32 and
//! returns last hidden states; pooling and batching live elsewhere.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use crate::error::Result;
use crate::model_files;
use crate::tokenize::TokenBatch;

/// A loaded BERT encoder.
pub(crate) struct CandleBert {
    model: BertModel,
    device: Device,
}

impl CandleBert {
    /// Loads `config.json` and `model.safetensors` from `model_dir`.
    pub fn load(model_dir: &Path, config: &Config) -> Result<Self> {
        let device = Device::Cpu;
        let weights = model_files::read(model_dir, model_files::SAFETENSORS_FILE)?;
        let var_builder = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|error| {
                model_files::invalid(model_dir, model_files::SAFETENSORS_FILE, error)
            })?;
        let model = BertModel::load(var_builder, config).map_err(|error| {
            model_files::invalid(model_dir, model_files::SAFETENSORS_FILE, error)
        })?;
        Ok(CandleBert { model, device })
    }

    /// Returns the last hidden states, row-major `[rows, seq_len, hidden_size]`.
    pub fn hidden_states(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let shape = (batch.rows, batch.seq_len);
        let input_ids = Tensor::from_slice(&batch.ids, shape, &self.device)?;
        let token_type_ids = input_ids.zeros_like()?;
        let attention_mask = Tensor::from_slice(&batch.mask, shape, &self.device)?;
        let hidden = self
            .model
            .forward(&input_ids, &token_type_ids, Some(&attention_mask))?;
        Ok(hidden.flatten_all()?.to_vec1::<f32>()?)
    }
}
