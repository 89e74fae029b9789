//! Token budgeting: keep the best hits whose texts fit a token budget.

/// A cheap, model-independent token estimate: about four characters per token for English,
/// never zero for non-empty text. Good enough for budgeting; not a tokenizer.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// How many of `texts`, taken in order, fit within `max_tokens`. The first item is always
/// kept so a tiny budget still returns the best hit rather than nothing.
pub fn fit_to_budget<'a>(texts: impl IntoIterator<Item = &'a str>, max_tokens: usize) -> usize {
    let mut used = 0usize;
    let mut kept = 0usize;
    for text in texts {
        let cost = estimate_tokens(text);
        if kept > 0 && used + cost > max_tokens {
            break;
        }
        used += cost;
        kept += 1;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_a_prefix_that_fits() {
        let texts = ["aaaa".repeat(10), "bbbb".repeat(10), "cccc".repeat(10)];
        assert_eq!(fit_to_budget(texts.iter().map(String::as_str), 25), 2);
        assert_eq!(fit_to_budget(texts.iter().map(String::as_str), 1000), 3);
        assert_eq!(fit_to_budget(texts.iter().map(String::as_str), 1), 1);
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}
