//! A feature-based reranker over the fused candidates.
//!
//! Fusion sees only ranks; it cannot tell that a candidate holds every word of the question,
//! names the person asked about, or is that person speaking. The reranker scores each of the
//! top fused candidates by a weighted sum of such features, all computed from what recall
//! already has (the strategies' ranks and scores, the texts, the time match), and reorders
//! them. The weights are fitted offline on one half of a split of the evaluation data and
//! reported on the other half (`astrocyte eval locomo --dump-features`, then
//! `scripts/fit-reranker.py`); see [`WEIGHTS`].

use std::collections::{HashMap, HashSet};

use crate::entities;
use crate::model::Memory;
use crate::pipeline::fuse::{Fused, StrategyRank};
use crate::pipeline::query::keyword_terms;

/// Feature names, in the order of a feature row.
pub const FEATURES: [&str; 14] = [
    "semantic_rr",
    "semantic_cosine",
    "keyword_rr",
    "keyword_relative",
    "fused",
    "time_fit",
    "term_coverage",
    "rare_term_coverage",
    "entity_match",
    "speaker_match",
    "recency",
    "length",
    "entity_rr",
    "episode_density",
];

/// A feature row.
pub type Row = [f32; FEATURES.len()];

/// Fitted weights, one per feature: `scripts/fit-reranker.py` on the rows of
/// `astrocyte eval locomo --dump-features` with bge-small-en-v1.5, trained on conversations
/// 0–4 (all three paths), reported on 5–9: categories 1–4 frac@10 fused → reranked 0.741 →
/// 0.804 whole, 0.733 → 0.803 turns, 0.705 → 0.787 document (the first 13 features alone:
/// 0.792, 0.780, 0.764). Longer memories, a fused rank, the episode the head keeps returning
/// to, the speaker being the person asked about and rare query words covered count for;
/// plain word coverage counts against once those are known (common words).
pub const WEIGHTS: Row = [
    0.152, 0.276, 0.216, 0.117, 0.580, 0.180, -0.315, 0.320, -0.144, 0.295, -0.093, 1.000, 0.000,
    0.707,
];

/// How many of the fused head the episode-density feature looks at.
const EPISODE_HEAD: usize = 10;

/// Half-life of the relative-recency feature.
const RECENCY_HALF_LIFE_DAYS: f32 = 30.0;

/// One candidate as the reranker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The memory.
    pub memory: &'a Memory,
    /// Its strategy ranks (including `time` when the time hint lifted it).
    pub ranks: &'a [StrategyRank],
    /// Its fused score.
    pub score: f32,
}

impl<'a> From<&'a Fused> for Candidate<'a> {
    fn from(f: &'a Fused) -> Self {
        Candidate {
            memory: &f.memory,
            ranks: &f.ranks,
            score: f.score,
        }
    }
}

/// What the reranker reads from a query once.
#[derive(Debug, Clone)]
pub struct QueryFeatures {
    stems: Vec<String>,
    entities: HashSet<String>,
}

impl QueryFeatures {
    /// Analyses `query`.
    pub fn new(query: &str) -> Self {
        QueryFeatures {
            // At most 64, one bit each in `covered_stems`.
            stems: dedup(keyword_terms(query, 32).iter().map(|t| stem(t).to_string()))
                .into_iter()
                .take(64)
                .collect(),
            entities: entities::keys(query).into_iter().collect(),
        }
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items.filter(|s| seen.insert(s.clone())).collect()
}

/// A crude English stem: enough that "painting", "painted" and "paints" meet.
fn stem(word: &str) -> &str {
    let word = word.strip_suffix("'s").unwrap_or(word);
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(base) = word.strip_suffix(suffix) {
            if base.chars().count() >= 3 {
                return first_chars(base, 6);
            }
        }
    }
    first_chars(word, 6)
}

fn first_chars(text: &str, count: usize) -> &str {
    match text.char_indices().nth(count) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Which of the query's `stems` `text` holds, bit `i` for `stems[i]`: one pass over the
/// words and no set per candidate, since only the query's stems are ever looked up.
fn covered_stems(text: &str, stems: &[String]) -> u64 {
    let mut covered = 0u64;
    let mut lower = String::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
    {
        lower.clear();
        lower.extend(word.chars().flat_map(char::to_lowercase));
        let word_stem = stem(&lower);
        if let Some(index) = stems.iter().position(|s| s == word_stem) {
            covered |= 1 << index;
        }
    }
    covered
}

/// Feature rows for `candidates`, in their order.
pub fn features(query: &QueryFeatures, candidates: &[Candidate<'_>]) -> Vec<Row> {
    let covered_by: Vec<u64> = candidates
        .iter()
        .map(|c| covered_stems(&c.memory.text, &query.stems))
        .collect();
    // Rarity within the pool: a query word most candidates share says little about which
    // one answers.
    let n = candidates.len().max(1) as f32;
    let idf: Vec<f32> = (0..query.stems.len())
        .map(|term| {
            let df = covered_by.iter().filter(|&&c| c & (1 << term) != 0).count();
            (1.0 + n / (1.0 + df as f32)).ln()
        })
        .collect();
    let idf_total: f32 = idf.iter().sum();
    let best_keyword = candidates
        .iter()
        .flat_map(|c| c.ranks.iter())
        .filter(|r| r.strategy == "keyword")
        .map(|r| r.score)
        .fold(0.0f32, f32::max);
    // Recency relative to the pool's newest: the same feature whether the bank is fresh or
    // years old.
    let newest = candidates.iter().map(|c| c.memory.effective_time()).max();
    // An episode the fused head returns to again and again is likely the one asked about:
    // its other memories deserve a look even where their own words match less.
    let episodes: Vec<String> = candidates.iter().map(|c| episode(c.memory)).collect();
    let head = EPISODE_HEAD.min(candidates.len());
    let mut in_head: HashMap<&str, usize> = HashMap::new();
    for key in &episodes[..head] {
        *in_head.entry(key.as_str()).or_default() += 1;
    }
    candidates
        .iter()
        .zip(&covered_by)
        .enumerate()
        .map(|(index, (c, &covered))| {
            let rank = |name: &str| c.ranks.iter().find(|r| r.strategy == name);
            let semantic = rank("semantic");
            let keyword = rank("keyword");
            let mentions = entities::extract(&c.memory.text);
            let entity_match = if query.entities.is_empty() {
                0.0
            } else {
                mentions
                    .iter()
                    .filter(|m| query.entities.contains(&m.key))
                    .count() as f32
                    / query.entities.len() as f32
            };
            let speaker = c
                .memory
                .metadata
                .get("speaker")
                .and_then(|v| v.as_str())
                .map(str::to_lowercase)
                .or_else(|| mentions.iter().find(|m| m.speaker).map(|m| m.key.clone()));
            let words = c.memory.text.split_whitespace().count() as f32;
            [
                semantic.map_or(0.0, |r| 1.0 / r.rank as f32),
                semantic.map_or(0.0, |r| r.score),
                keyword.map_or(0.0, |r| 1.0 / r.rank as f32),
                match keyword {
                    Some(r) if best_keyword > 0.0 => r.score / best_keyword,
                    _ => 0.0,
                },
                c.score,
                if rank("time").is_some() { 1.0 } else { 0.0 },
                if query.stems.is_empty() {
                    0.0
                } else {
                    covered.count_ones() as f32 / query.stems.len() as f32
                },
                if idf_total > 0.0 {
                    idf.iter()
                        .enumerate()
                        .filter(|(term, _)| covered & (1 << term) != 0)
                        .map(|(_, weight)| weight)
                        .sum::<f32>()
                        / idf_total
                } else {
                    0.0
                },
                entity_match.min(1.0),
                match speaker {
                    Some(s) if query.entities.contains(&s) => 1.0,
                    _ => 0.0,
                },
                newest.map_or(0.0, |newest| {
                    let days = (newest - c.memory.effective_time()).num_seconds() as f32 / 86_400.0;
                    0.5f32.powf(days / RECENCY_HALF_LIFE_DAYS)
                }),
                (1.0 + words).ln() / 5.0,
                rank("entity").map_or(0.0, |r| 1.0 / r.rank as f32),
                {
                    let shared = in_head.get(episodes[index].as_str()).copied().unwrap_or(0);
                    let others = shared.saturating_sub(usize::from(index < head));
                    others as f32 / EPISODE_HEAD as f32
                },
            ]
        })
        .collect()
}

/// The episode a memory belongs to: its thread, else the retain it was chunked from, else the
/// day it happened (a conversation's session, or a day of an agent's turns).
fn episode(memory: &Memory) -> String {
    if let Some(thread) = &memory.thread {
        return format!("t:{thread}");
    }
    match &memory.chunk {
        Some(chunk) if chunk.count > 1 => format!("g:{}", chunk.group_id),
        _ => format!("d:{}", memory.effective_time().date_naive()),
    }
}

/// The weighted sum of a row.
pub fn score(row: &Row, weights: &Row) -> f32 {
    row.iter().zip(weights).map(|(x, w)| x * w).sum()
}

/// Reorders the first `depth` of `fused` (already in fused order) by [`WEIGHTS`]; the rest
/// keep their place below. Each reranked candidate's score becomes the logistic of its
/// weighted sum, so scores stay in (0, 1) and fall with the order; a `rerank` entry in its
/// ranks records the sum.
pub fn rerank(query: &str, fused: &mut [Fused], depth: usize) {
    let depth = depth.min(fused.len());
    if depth < 2 {
        return;
    }
    let query = QueryFeatures::new(query);
    let rows = {
        let candidates: Vec<Candidate<'_>> = fused[..depth].iter().map(Candidate::from).collect();
        features(&query, &candidates)
    };
    for (candidate, row) in fused[..depth].iter_mut().zip(&rows) {
        let sum = score(row, &WEIGHTS);
        candidate.score = 1.0 / (1.0 + (-sum).exp());
        candidate.ranks.push(StrategyRank {
            strategy: "rerank",
            rank: 0,
            score: sum,
            contribution: 0.0,
        });
    }
    // Stable: equal scores keep their fused order.
    fused[..depth].sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut position = 0;
    for candidate in fused[..depth].iter_mut() {
        position += 1;
        if let Some(entry) = candidate.ranks.iter_mut().find(|r| r.strategy == "rerank") {
            entry.rank = position;
        }
    }
    // Below the reranked head, scores must not exceed the lowest reranked one.
    let floor = fused[depth - 1].score;
    for candidate in fused[depth..].iter_mut() {
        candidate.score = candidate.score.min(floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BankId;
    use chrono::{TimeZone, Utc};

    fn fused(id: &str, text: &str, score: f32, keyword_rank: Option<usize>) -> Fused {
        let bank = BankId::new("b").expect("bank");
        let mut memory = Memory::new(id, bank, text);
        memory.occurred_at = Some(Utc::now());
        Fused {
            memory,
            score,
            semantic_score: Some(0.4),
            ranks: keyword_rank
                .map(|rank| StrategyRank {
                    strategy: "keyword",
                    rank,
                    score: 3.0 / rank as f32,
                    contribution: 0.0,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn the_candidate_that_covers_the_question_and_its_person_rises() {
        let mut list = vec![
            fused(
                "a",
                "Melanie: we went camping with the kids last week",
                0.60,
                None,
            ),
            fused("b", "John: painting is relaxing", 0.58, Some(2)),
            fused(
                "c",
                "Caroline: I started painting sunsets at the lake, it calms me",
                0.55,
                Some(1),
            ),
        ];
        rerank("What does Caroline like painting?", &mut list, 10);
        assert_eq!(list[0].memory.id, "c", "{list:?}");
        let scores: Vec<f32> = list.iter().map(|f| f.score).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        assert!(scores.iter().all(|s| *s > 0.0 && *s < 1.0), "{scores:?}");
        let entry = list[0].ranks.iter().find(|r| r.strategy == "rerank");
        assert_eq!(entry.map(|r| r.rank), Some(1));
    }

    #[test]
    fn candidates_below_the_depth_keep_their_place_and_stay_below() {
        let mut list = vec![
            fused("a", "alpha", 0.9, None),
            fused("b", "beta", 0.8, None),
            fused("c", "gamma painting Caroline", 0.7, Some(1)),
        ];
        rerank("Caroline painting", &mut list, 2);
        assert_eq!(list[2].memory.id, "c");
        assert!(list[2].score <= list[1].score);
        let mut untouched = vec![fused("a", "alpha", 0.9, None)];
        rerank("anything", &mut untouched, 0);
        assert_eq!(untouched[0].score, 0.9);
    }

    #[test]
    fn a_memory_from_the_episode_the_head_keeps_returning_to_counts_more() {
        let day = |d: u32| {
            Utc.with_ymd_and_hms(2023, 5, d, 12, 0, 0)
                .single()
                .expect("date")
        };
        let mut list: Vec<Fused> = (0..6)
            .map(|i| fused(&format!("m{i}"), "a line", 0.5 - i as f32 * 0.01, None))
            .collect();
        for (i, f) in list.iter_mut().enumerate() {
            f.memory.occurred_at = Some(day(if i < 4 { 1 } else { 2 + i as u32 }));
        }
        let rows = features(
            &QueryFeatures::new("anything"),
            &list.iter().map(Candidate::from).collect::<Vec<_>>(),
        );
        let density = FEATURES
            .iter()
            .position(|f| *f == "episode_density")
            .unwrap_or(0);
        // Three others of the head share day 1; days 6 and 7 share with no one.
        assert_eq!(rows[0][density], 0.3);
        assert_eq!(rows[4][density], 0.0);
        // A thread outweighs the day: the same day in two threads is two episodes.
        list[1].memory.thread = Some("other".into());
        let rows = features(
            &QueryFeatures::new("anything"),
            &list.iter().map(Candidate::from).collect::<Vec<_>>(),
        );
        assert_eq!(rows[0][density], 0.2);
        assert_eq!(rows[1][density], 0.0);
    }

    #[test]
    fn features_are_finite_and_named() {
        let list = [fused("a", "Caroline: hi", 0.5, Some(1))];
        let candidates: Vec<Candidate<'_>> = list.iter().map(Candidate::from).collect();
        let rows = features(&QueryFeatures::new("Caroline?"), &candidates);
        assert_eq!(rows[0].len(), FEATURES.len());
        assert!(rows[0].iter().all(|x| x.is_finite()));
        assert_eq!(
            rows[0][FEATURES
                .iter()
                .position(|f| *f == "speaker_match")
                .unwrap_or(0)],
            1.0
        );
    }
}
