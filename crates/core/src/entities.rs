//! LLM-free entity extraction: the proper names a text mentions (people, places,
//! organisations, products), with possessives and honorifics folded so "Caroline's",
//! "caroline" and "Dr. Caroline" meet as one key.
//!
//! English capitalisation carries most of the signal: a run of capitalised words that is not
//! a sentence's function word is a name. Sentence-initial words count only when they are not
//! common words, and a speaker label ("Caroline: …") is a person. The kind is a best guess
//! from the words around and inside the name; the key is what matching uses.

use std::collections::HashMap;

/// What sort of thing an entity names (a heuristic; `other` when nothing says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A speaker, or a name after a personal title or kinship word.
    Person,
    /// A name after "in", "at", "from", "to", "near" or with a place word inside.
    Place,
    /// A name with an organisation word inside ("… University", "… Inc").
    Organization,
    /// A name with a product cue inside ("iPhone 14", "… app").
    Product,
    /// A capitalised name nothing classifies.
    Other,
}

impl EntityKind {
    /// The kind's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Place => "place",
            EntityKind::Organization => "organization",
            EntityKind::Product => "product",
            EntityKind::Other => "other",
        }
    }

    /// Parses a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "person" => EntityKind::Person,
            "place" => EntityKind::Place,
            "organization" => EntityKind::Organization,
            "product" => EntityKind::Product,
            "other" => EntityKind::Other,
            _ => return None,
        })
    }
}

/// One entity mentioned in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// Lower-case matching key ("new york").
    pub key: String,
    /// The name as first written ("New York").
    pub name: String,
    /// Best-guess kind.
    pub kind: EntityKind,
    /// Times it occurs in the text.
    pub count: u32,
    /// Whether the text is attributed to it (a leading "Name:" speaker label).
    pub speaker: bool,
}

/// Words that start sentences or questions in capitals without naming anything.
const COMMON: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "ah",
    "all",
    "also",
    "although",
    "always",
    "am",
    "an",
    "and",
    "any",
    "anyway",
    "april",
    "are",
    "as",
    "at",
    "aw",
    "awesome",
    "aww",
    "be",
    "because",
    "been",
    "before",
    "both",
    "but",
    "by",
    "can",
    "congrats",
    "congratulations",
    "cool",
    "could",
    "dear",
    "definitely",
    "did",
    "do",
    "does",
    "each",
    "even",
    "ever",
    "every",
    "exactly",
    "for",
    "friday",
    "from",
    "glad",
    "good",
    "great",
    "had",
    "has",
    "have",
    "he",
    "hello",
    "her",
    "here",
    "hey",
    "hi",
    "his",
    "how",
    "however",
    "i",
    "i'd",
    "i'll",
    "i'm",
    "i've",
    "if",
    "in",
    "is",
    "it",
    "it's",
    "its",
    "just",
    "last",
    "let",
    "let's",
    "like",
    "lol",
    "maybe",
    "me",
    "monday",
    "my",
    "next",
    "nice",
    "no",
    "not",
    "now",
    "of",
    "oh",
    "ok",
    "okay",
    "on",
    "once",
    "one",
    "or",
    "our",
    "please",
    "really",
    "right",
    "saturday",
    "see",
    "she",
    "since",
    "so",
    "some",
    "sorry",
    "sounds",
    "still",
    "sunday",
    "sure",
    "thank",
    "thanks",
    "that",
    "that's",
    "the",
    "their",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "thursday",
    "to",
    "today",
    "tomorrow",
    "totally",
    "tuesday",
    "uh",
    "um",
    "was",
    "we",
    "wednesday",
    "well",
    "were",
    "what",
    "what's",
    "when",
    "where",
    "which",
    "while",
    "who",
    "why",
    "will",
    "with",
    "would",
    "wow",
    "yeah",
    "yes",
    "yesterday",
    "yet",
    "you",
    "your",
];

/// Months and weekdays are times, not entities (the time layer reads them).
const CALENDAR: &[&str] = &[
    "april",
    "august",
    "december",
    "february",
    "friday",
    "january",
    "july",
    "june",
    "march",
    "may",
    "monday",
    "november",
    "october",
    "saturday",
    "september",
    "sunday",
    "thursday",
    "tuesday",
    "wednesday",
];

const TITLES: &[&str] = &[
    "aunt", "dr", "grandma", "grandpa", "miss", "mom", "mr", "mrs", "ms", "mum", "prof", "sir",
    "uncle",
];
const PLACE_CUES: &[&str] = &[
    "avenue",
    "bay",
    "beach",
    "city",
    "county",
    "island",
    "lake",
    "mountain",
    "mountains",
    "park",
    "river",
    "street",
    "valley",
];
const ORG_CUES: &[&str] = &[
    "academy",
    "agency",
    "bank",
    "church",
    "club",
    "co",
    "college",
    "company",
    "corp",
    "corporation",
    "foundation",
    "group",
    "hospital",
    "inc",
    "institute",
    "llc",
    "ltd",
    "museum",
    "school",
    "society",
    "team",
    "university",
];
const PRODUCT_CUES: &[&str] = &["app", "console", "edition", "phone", "pro", "series"];
const PLACE_PREPOSITIONS: &[&str] = &["at", "from", "in", "near", "to", "visit", "visited"];

fn contains(list: &[&str], word: &str) -> bool {
    list.binary_search(&word).is_ok()
}

/// A word of the text with where it stands.
struct Word<'a> {
    raw: &'a str,
    sentence_start: bool,
}

fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut sentence_start = true;
    for raw in text.split_whitespace() {
        let trimmed = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-');
        let trimmed = trimmed.trim_matches('\'');
        if !trimmed.is_empty() {
            out.push(Word {
                raw: trimmed,
                sentence_start,
            });
        }
        // "Dr. Smith" goes on: a title's full stop ends no sentence.
        let title = contains(TITLES, &trimmed.to_lowercase());
        sentence_start = (raw.ends_with(['.', '!', '?', ':', '"']) && !title) || trimmed.is_empty();
    }
    out
}

/// The word without a possessive ending.
fn strip_possessive(word: &str) -> &str {
    word.strip_suffix("'s")
        .or_else(|| word.strip_suffix("’s"))
        .or_else(|| word.strip_suffix('\''))
        .unwrap_or(word)
}

fn is_capitalised(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_uppercase())
        || (word.len() > 1 && word.starts_with('i') && word[1..].starts_with(char::is_uppercase))
}

/// Whether a capitalised word can begin or continue a name here.
fn name_word(word: &Word<'_>) -> bool {
    let bare = strip_possessive(word.raw);
    if bare.is_empty() || !is_capitalised(bare) {
        return false;
    }
    let lower = bare.to_lowercase();
    if contains(CALENDAR, &lower) || lower == "i" {
        return false;
    }
    !(word.sentence_start && contains(COMMON, &lower))
}

/// Mentions collected so far, one per key.
#[derive(Default)]
struct Found {
    list: Vec<Mention>,
    index: HashMap<String, usize>,
}

impl Found {
    fn add(&mut self, name: String, kind: EntityKind, speaker: bool) {
        let key = name.to_lowercase();
        if let Some(&i) = self.index.get(&key) {
            let m = &mut self.list[i];
            m.count += 1;
            m.speaker |= speaker;
            if m.kind == EntityKind::Other {
                m.kind = kind;
            }
            return;
        }
        self.index.insert(key.clone(), self.list.len());
        self.list.push(Mention {
            key,
            name,
            kind,
            count: 1,
            speaker,
        });
    }
}

/// The entities `text` mentions, in order of first mention, each once with its count.
pub fn extract(text: &str) -> Vec<Mention> {
    let mut found = Found::default();
    // A speaker label: one or two capitalised words, then a colon, at the start of a line.
    for line in text.lines() {
        if let Some((label, _)) = line.split_once(':') {
            let label = label.trim();
            let parts: Vec<&str> = label.split_whitespace().collect();
            if (1..=2).contains(&parts.len())
                && parts
                    .iter()
                    .all(|p| is_capitalised(p) && p.chars().all(char::is_alphabetic))
                && !contains(COMMON, &label.to_lowercase())
            {
                found.add(label.to_string(), EntityKind::Person, true);
            }
        }
    }
    let speakers: Vec<String> = found.list.iter().map(|m| m.key.clone()).collect();
    let words = words(text);
    let mut i = 0;
    while i < words.len() {
        if !name_word(&words[i]) {
            i += 1;
            continue;
        }
        // A run of capitalised words ("New York City"), ending at a possessive.
        let start = i;
        let mut end = i + 1;
        while end < words.len()
            && !words[end - 1].raw.ends_with("'s")
            && !words[end].sentence_start
            && (is_capitalised(strip_possessive(words[end].raw))
                || words[end].raw.chars().all(|c| c.is_ascii_digit()))
            && !contains(CALENDAR, &strip_possessive(words[end].raw).to_lowercase())
            && end - start < 4
        {
            end += 1;
        }
        let parts: Vec<&str> = words[start..end]
            .iter()
            .map(|w| strip_possessive(w.raw))
            .collect();
        // A speaker label is counted once above, not again as a word.
        let label_here = words[start].sentence_start
            && start == 0
            && end - start <= 2
            && speakers.contains(&parts.join(" ").to_lowercase());
        i = end;
        if label_here {
            continue;
        }
        let lowers: Vec<String> = parts.iter().map(|p| p.to_lowercase()).collect();
        let before = start
            .checked_sub(1)
            .map(|b| strip_possessive(words[b].raw).to_lowercase());
        let (parts, kind) = if contains(TITLES, lowers[0].trim_end_matches('.')) && parts.len() > 1
        {
            (&parts[1..], EntityKind::Person)
        } else if lowers.iter().any(|w| contains(ORG_CUES, w)) {
            (&parts[..], EntityKind::Organization)
        } else if lowers.iter().any(|w| contains(PLACE_CUES, w)) {
            (&parts[..], EntityKind::Place)
        } else if lowers.iter().skip(1).any(|w| contains(PRODUCT_CUES, w))
            || parts.iter().any(|p| p.chars().any(|c| c.is_ascii_digit()))
        {
            (&parts[..], EntityKind::Product)
        } else if before.as_deref().is_some_and(|b| contains(TITLES, b)) {
            (&parts[..], EntityKind::Person)
        } else if before
            .as_deref()
            .is_some_and(|b| contains(PLACE_PREPOSITIONS, b))
        {
            (&parts[..], EntityKind::Place)
        } else if speakers.contains(&lowers.join(" ")) {
            (&parts[..], EntityKind::Person)
        } else {
            (&parts[..], EntityKind::Other)
        };
        let name = parts.join(" ");
        if name.chars().filter(|c| c.is_alphabetic()).count() >= 2 {
            found.add(name, kind, false);
        }
    }
    found.list
}

/// The lower-case keys of the entities `text` mentions.
pub fn keys(text: &str) -> Vec<String> {
    extract(text).into_iter().map(|m| m.key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_lists_are_sorted_for_binary_search() {
        for list in [
            COMMON,
            CALENDAR,
            TITLES,
            PLACE_CUES,
            ORG_CUES,
            PRODUCT_CUES,
            PLACE_PREPOSITIONS,
        ] {
            assert!(list.windows(2).all(|p| p[0] < p[1]), "{:?}", list);
        }
    }

    fn names(text: &str) -> Vec<(String, EntityKind)> {
        extract(text)
            .into_iter()
            .map(|m| (m.name, m.kind))
            .collect()
    }

    #[test]
    fn speakers_are_people_and_counted_once_per_label() {
        let m = extract("Caroline: I went to the LGBTQ support group yesterday.");
        assert_eq!(m[0].key, "caroline");
        assert!(m[0].speaker);
        assert_eq!(m[0].kind, EntityKind::Person);
        assert_eq!(m[0].count, 1);
        assert!(m.iter().any(|e| e.key == "lgbtq"));
    }

    #[test]
    fn possessives_and_titles_fold() {
        let m = extract("Melanie's kids love Dr. Smith. Then melanie left with Melanie's mom.");
        let melanie = m.iter().find(|e| e.key == "melanie").expect("melanie");
        assert_eq!(melanie.count, 2);
        assert!(names("We met Dr. Smith there.").contains(&("Smith".into(), EntityKind::Person)));
    }

    #[test]
    fn multiword_names_and_kinds() {
        let found = names(
            "Last year I moved to New York City and joined Acme Corp, then bought an iPhone 14.",
        );
        assert!(
            found.contains(&("New York City".into(), EntityKind::Place)),
            "{found:?}"
        );
        assert!(
            found.contains(&("Acme Corp".into(), EntityKind::Organization)),
            "{found:?}"
        );
        assert!(
            found.contains(&("iPhone 14".into(), EntityKind::Product)),
            "{found:?}"
        );
        assert!(!found.iter().any(|(n, _)| n == "Last"), "{found:?}");
    }

    #[test]
    fn sentence_starts_months_and_pronouns_are_not_entities() {
        let found = names("Yes! I think so. What did you do in May? Thanks, Sweden was lovely.");
        let keys: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(keys, vec!["Sweden"]);
    }

    #[test]
    fn lower_case_text_has_no_entities() {
        assert!(extract("nothing here is named at all").is_empty());
        assert!(extract("").is_empty());
    }
}
