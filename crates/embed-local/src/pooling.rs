//! Pooling token vectors into one unit-length text vector: mean over real tokens (as
//! sentence-transformers configures all-MiniLM-L6-v2) or the `[CLS]` token (BGE). It knows
//! nothing about how the hidden states were computed.

use astrocyte_core::embed::l2_normalize;

use crate::tokenize::TokenBatch;

/// Takes each row's first (`[CLS]`) hidden state, scaled to unit length, as BGE models pool.
pub(crate) fn cls_pool_normalized(
    hidden: &[f32],
    batch: &TokenBatch,
    hidden_size: usize,
) -> Vec<Vec<f32>> {
    debug_assert_eq!(hidden.len(), batch.rows * batch.seq_len * hidden_size);
    (0..batch.rows)
        .map(|row| {
            let start = row * batch.seq_len * hidden_size;
            let mut pooled = hidden[start..start + hidden_size].to_vec();
            l2_normalize(&mut pooled);
            pooled
        })
        .collect()
}

/// Averages each row's hidden states over its unmasked tokens and scales to unit length.
///
/// `hidden` is row-major `[batch.rows, batch.seq_len, hidden_size]`.
pub(crate) fn mean_pool_normalized(
    hidden: &[f32],
    batch: &TokenBatch,
    hidden_size: usize,
) -> Vec<Vec<f32>> {
    debug_assert_eq!(hidden.len(), batch.rows * batch.seq_len * hidden_size);
    (0..batch.rows)
        .map(|row| {
            let mut pooled = vec![0f32; hidden_size];
            let mut count = 0f32;
            for position in 0..batch.seq_len {
                let index = row * batch.seq_len + position;
                if batch.mask[index] == 0 {
                    continue;
                }
                count += 1.0;
                let token = &hidden[index * hidden_size..(index + 1) * hidden_size];
                pooled
                    .iter_mut()
                    .zip(token)
                    .for_each(|(sum, value)| *sum += value);
            }
            // Every row holds at least [CLS] and [SEP], so count is never zero; the guard only
            // keeps a malformed batch from producing NaNs.
            let divisor = count.max(1.0);
            pooled.iter_mut().for_each(|value| *value /= divisor);
            l2_normalize(&mut pooled);
            pooled
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_padding_and_normalises() {
        let batch = TokenBatch::pad(&[&[1, 2], &[3]]);
        // Row 0: tokens (1,0) and (3,0) average to (2,0); row 1: (0,4) then padding (9,9).
        let hidden = [1.0, 0.0, 3.0, 0.0, 0.0, 4.0, 9.0, 9.0];
        let pooled = mean_pool_normalized(&hidden, &batch, 2);
        assert_eq!(pooled, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }
}
