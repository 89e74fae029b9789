//! Turning a recall query into keyword-search terms.
//!
//! Questions are mostly function words ("what did she say about the trip"): as OR-ed BM25
//! terms they match nearly every memory, cost the most postings to score, and add noise that
//! the low IDF only partly removes. Dropping them keeps the words that carry the question.
//! On LoCoMo (`astrocyte eval locomo`) this raised evidence recall@5 by about one point and
//! made keyword search cheaper on large banks.

use std::collections::HashSet;

/// English function words (articles, pronouns, auxiliaries, prepositions, conjunctions,
/// question words). Deliberately short: content words that are merely frequent ("time",
/// "people") stay, since in a memory they can be the point.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "before",
    "being",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "during",
    "each",
    "for",
    "from",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "might",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "own",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "until",
    "up",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Whether `word` (lower case) is a function word.
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

/// The distinct lower-cased words of `text` in order, function words dropped, at most `max`.
/// When every word is a function word they are all kept: a query of only such words still
/// deserves the memories that contain them.
pub fn keyword_terms(text: &str, max: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        // Lower-casing can add a combining mark ("İ" becomes "i̇"); the stores' tokenizers
        // drop marks too.
        .map(|word| {
            word.chars()
                .flat_map(char::to_lowercase)
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .filter(|word| !word.is_empty() && seen.insert(word.clone()))
        .collect();
    let content: Vec<String> = words
        .iter()
        .filter(|word| !is_stopword(word))
        .cloned()
        .collect();
    let mut kept = if content.is_empty() { words } else { content };
    kept.truncate(max);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopword_list_is_sorted_for_binary_search() {
        assert!(STOPWORDS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn function_words_are_dropped_and_order_kept() {
        assert_eq!(
            keyword_terms("When did Caroline go to the LGBTQ support group?", 32),
            vec!["caroline", "go", "lgbtq", "support", "group"]
        );
    }

    #[test]
    fn duplicates_collapse_case_insensitively() {
        assert_eq!(
            keyword_terms("Paris paris PARIS trip", 32),
            vec!["paris", "trip"]
        );
    }

    #[test]
    fn only_function_words_are_kept_as_they_are() {
        assert_eq!(keyword_terms("who is it", 32), vec!["who", "is", "it"]);
    }

    #[test]
    fn at_most_max_terms() {
        assert_eq!(
            keyword_terms("alpha beta gamma delta", 2),
            vec!["alpha", "beta"]
        );
        assert!(keyword_terms("  ?! ", 32).is_empty());
        assert_eq!(keyword_terms("İstanbul", 32), vec!["istanbul"]);
    }
}
