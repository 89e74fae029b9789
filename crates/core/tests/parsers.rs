//! Property tests for the parsers that take outside input: the chunker, the keyword query
//! pipeline and AMA import lines. Whatever arrives, they do not panic and keep their contract.

use astrocyte_core::pipeline::chunk::{chunk, ChunkParams};
use astrocyte_core::pipeline::query::keyword_terms;
use astrocyte_core::pipeline::validate::RetainLimits;
use astrocyte_core::portability::{check_record, AmaRecord};
use astrocyte_core::ContentType;
use proptest::prelude::*;

fn content_type() -> impl Strategy<Value = ContentType> {
    prop_oneof![
        Just(ContentType::Text),
        Just(ContentType::Conversation),
        Just(ContentType::Document),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Chunks are never blank, there are none only for blank content, and every word of the
    /// content is in some chunk.
    #[test]
    fn chunks_cover_the_content_and_are_never_blank(
        content in "(\\PC|\\n|\\t| |[.!?]){0,2000}",
        kind in content_type(),
        max_chars in 20usize..600,
        overlap in 0usize..60,
    ) {
        let params = ChunkParams { max_chars, overlap_chars: overlap.min(max_chars / 2) };
        let chunks = chunk(&content, kind, params);
        prop_assert_eq!(chunks.is_empty(), content.trim().is_empty());
        for c in &chunks {
            prop_assert!(!c.trim().is_empty());
        }
        let joined = chunks.join(" ");
        for word in content.split_whitespace().filter(|w| w.chars().count() < max_chars / 2) {
            prop_assert!(joined.contains(word.trim_matches(|c: char| !c.is_alphanumeric())), "{:?} lost", word);
        }
    }

    /// Keyword terms are distinct, lower-cased, alphanumeric and at most `max`.
    #[test]
    fn keyword_terms_are_bounded_distinct_words(text in "\\PC{0,400}", max in 0usize..40) {
        let terms = keyword_terms(&text, max);
        prop_assert!(terms.len() <= max);
        let mut seen = std::collections::HashSet::new();
        for term in &terms {
            prop_assert!(!term.is_empty() && term.chars().all(char::is_alphanumeric));
            prop_assert_eq!(term, &term.to_lowercase());
            prop_assert!(seen.insert(term.clone()), "duplicate {}", term);
        }
    }

    /// Any line is either refused by the parser or yields a record the structural check
    /// accepts exactly when it holds no NUL character; nothing panics.
    #[test]
    fn ama_lines_parse_or_fail_cleanly(
        id in "\\PC{0,40}",
        text in "(\\PC|\\x00){0,80}",
        tags in proptest::collection::vec("(\\PC|\\x00){0,10}", 0..4),
        junk in "\\PC{0,20}",
    ) {
        let line = serde_json::json!({"id": id, "text": text, "tags": tags}).to_string();
        let record: AmaRecord = serde_json::from_str(&line).expect("a well-formed line parses");
        let has_nul = text.contains('\0') || tags.iter().any(|t| t.contains('\0'));
        let valid_id = !id.is_empty() && id.len() <= 128;
        prop_assert_eq!(check_record(&record, &RetainLimits::default()).is_ok(), valid_id && !has_nul);
        // Damaged lines are parse errors (counted by import), never panics.
        let _ = serde_json::from_str::<AmaRecord>(&format!("{line}{junk}"));
        let _ = serde_json::from_str::<AmaRecord>(&junk);
    }
}
