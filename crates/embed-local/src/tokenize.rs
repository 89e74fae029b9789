//! Turns texts into padded token batches for the encoder: WordPiece via the model's own
//! `tokenizer.json`, truncated at the model's limit, padded per batch (not to a fixed length).

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{LocalEmbedError, Result};
use crate::model_files;

/// A rectangular batch of token ids with its attention mask, row-major `[rows, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenBatch {
    /// Token ids, padded with 0 (`[PAD]`).
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Number of texts.
    pub rows: usize,
    /// Length of the longest text in the batch, in tokens.
    pub seq_len: usize,
}

impl TokenBatch {
    /// Pads `sequences` to their longest member.
    pub fn pad(sequences: &[&[u32]]) -> Self {
        let rows = sequences.len();
        let seq_len = sequences.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut ids = vec![0u32; rows * seq_len];
        let mut mask = vec![0u32; rows * seq_len];
        for (row, sequence) in sequences.iter().enumerate() {
            let start = row * seq_len;
            ids[start..start + sequence.len()].copy_from_slice(sequence);
            mask[start..start + sequence.len()].fill(1);
        }
        TokenBatch {
            ids,
            mask,
            rows,
            seq_len,
        }
    }
}

/// The model's tokenizer, configured to truncate at `max_tokens` and never pad.
pub(crate) struct TextTokenizer {
    tokenizer: Tokenizer,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `model_dir`, overriding its truncation and padding settings.
    pub fn load(model_dir: &Path, max_tokens: usize) -> Result<Self> {
        let bytes = model_files::read(model_dir, model_files::TOKENIZER_FILE)?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|error| model_files::invalid(model_dir, model_files::TOKENIZER_FILE, error))?;
        // The shipped file pads every input to 128 tokens and truncates there; we pad per batch
        // instead (far less work for short texts) and truncate at the model's sequence limit.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|error| model_files::invalid(model_dir, model_files::TOKENIZER_FILE, error))?;
        Ok(TextTokenizer { tokenizer })
    }

    /// Returns the token ids of each text, `[CLS] … [SEP]` included.
    pub fn encode(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let encodings = if texts.len() == 1 {
            // A lone query skips the batch path's thread-pool hand-off.
            vec![self
                .tokenizer
                .encode_fast(texts[0].as_str(), true)
                .map_err(|error| LocalEmbedError::Tokenizer(error.to_string()))?]
        } else {
            let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.tokenizer
                .encode_batch_fast(inputs, true)
                .map_err(|error| LocalEmbedError::Tokenizer(error.to_string()))?
        };
        Ok(encodings
            .into_iter()
            .map(|encoding| encoding.get_ids().to_vec())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_the_longest_sequence_with_a_matching_mask() {
        let batch = TokenBatch::pad(&[&[101, 7, 102], &[101, 102]]);
        assert_eq!(batch.rows, 2);
        assert_eq!(batch.seq_len, 3);
        assert_eq!(batch.ids, vec![101, 7, 102, 101, 102, 0]);
        assert_eq!(batch.mask, vec![1, 1, 1, 1, 1, 0]);
    }
}
