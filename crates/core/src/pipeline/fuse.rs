//! Weighted reciprocal-rank fusion of the strategy rankings into one scored list.
//!
//! RRF is used because the strategies' raw scores (cosine, BM25, age) live on incomparable
//! scales; ranks do not. The constant k damps the advantage of rank 1 over rank 2 so one
//! strategy alone cannot dominate; the RRF paper's 60 was tuned on long documents, ours is
//! smaller (see [`FusionParams::default`]).

use std::collections::HashMap;

use crate::model::{Memory, Timestamp};
use crate::store::StrategyHits;

/// Fusion parameters.
#[derive(Debug, Clone, Copy)]
pub struct FusionParams {
    /// The RRF constant.
    pub k: f32,
    /// Weight of the semantic ranking.
    pub semantic_weight: f32,
    /// Weight of the keyword ranking.
    pub keyword_weight: f32,
    /// Weight of the recency ranking at age zero.
    pub recency_weight: f32,
    /// Weight of the entity ranking (memories naming the query's entities; 0 turns it off).
    pub entity_weight: f32,
    /// Recency weight halves every this many days of age.
    pub recency_half_life_days: f32,
    /// How much a time expression in the query lifts the candidates it fits: those whose
    /// event time falls in the named range, or, for a "when …" question, those whose text
    /// states a time. 0 turns it off.
    pub time_boost: f32,
    /// How many of the top fused candidates the feature reranker reorders (0 turns it off).
    pub rerank_depth: usize,
    /// How many candidates the semantic strategy fetches: at least the request's
    /// `max_results`, at most what the other strategies fetch. Its vector index search's
    /// cost grows with it.
    pub semantic_depth: usize,
}

impl Default for FusionParams {
    /// Keyword outweighs dense similarity: in personal memories the decisive words are names,
    /// places and dates, which BM25 matches exactly and a small sentence encoder blurs; dense
    /// retrieval still carries queries that share no word with the memory. Measured with
    /// `astrocyte eval locomo` (local model, evidence recall@10, categories 1–4): semantic
    /// weight 1.0 → 0.628, 0.5 → 0.668, 0.3 → 0.707, 0.0 → 0.685; then k = 20 with weight
    /// 0.4 → 0.717 (@5 0.595 → 0.619). A smaller k than the paper's 60 lets a strategy's first
    /// few ranks count for more, which suits short memories where the top keyword hits are
    /// usually right. A time expression in the query lifts the candidates it fits by half
    /// (`time_boost` 0.5): on LoCoMo the temporal category's frac@1 rose 0.431 → 0.521 and
    /// categories 1–4 frac@1 0.328 → 0.349, frac@10 0.733 → 0.735 (whole path).
    fn default() -> Self {
        FusionParams {
            k: 20.0,
            semantic_weight: 0.4,
            keyword_weight: 1.0,
            recency_weight: 0.25,
            entity_weight: 0.0,
            recency_half_life_days: 7.0,
            time_boost: 0.5,
            rerank_depth: 100,
            semantic_depth: 100,
        }
    }
}

/// A fused candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// The memory.
    pub memory: Memory,
    /// Normalised fused score in [0, 1].
    pub score: f32,
    /// Cosine similarity when the semantic strategy returned it.
    pub semantic_score: Option<f32>,
    /// Where each strategy that found it ranked it (semantic, keyword, recency order).
    pub ranks: Vec<StrategyRank>,
}

/// One strategy's verdict on a candidate: why it won or lost is read from these.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StrategyRank {
    /// `semantic`, `keyword` or `recency`.
    pub strategy: &'static str,
    /// 1-based rank in that strategy's list.
    pub rank: usize,
    /// The strategy's own score (cosine, BM25, or recency's time score).
    pub score: f32,
    /// What it added to the fused sum, before normalisation.
    pub contribution: f32,
}

/// A candidate's running fused sum, cosine, memory and ranks.
type Tally<'a> = (f64, Option<f32>, &'a Memory, Vec<StrategyRank>);

/// Fuses up to four rankings. Semantic, keyword and entity contribute `weight / (k + rank)` (rank
/// from 1); a recency candidate contributes `weight × 0.5^(age / half_life) / (k + 1)`, by
/// its age and not its rank, so a week-old memory counts half and equally fresh ones equally. The sum is
/// divided by the best possible sum, `(w_sem + w_kw + w_rec + w_ent) / (k + 1)` over the strategies that ran, which maps the
/// score into [0, 1] with 1 meaning "first in every strategy and brand new". Ordering: score
/// descending, ties by memory id ascending, so identical calls give identical results.
pub fn fuse<'a>(
    semantic: Option<&'a StrategyHits>,
    keyword: Option<&'a StrategyHits>,
    recency: Option<&'a StrategyHits>,
    entity: Option<&'a StrategyHits>,
    params: &FusionParams,
    now: Timestamp,
) -> Vec<Fused> {
    let mut by_id: HashMap<&'a str, Tally<'a>> = HashMap::new();
    let mut max_total = 0.0f64;
    let k = params.k as f64;
    let mut add = |strategy: &'static str,
                   hits: Option<&'a StrategyHits>,
                   weight: f32,
                   is_semantic: bool,
                   is_recency: bool| {
        let Some(hits) = hits else { return };
        max_total += weight as f64 / (k + 1.0);
        for (index, hit) in hits.hits.iter().enumerate() {
            let mut w = weight as f64;
            if is_recency {
                let age_days =
                    (now - hit.memory.effective_time()).num_seconds().max(0) as f64 / 86_400.0;
                w *= 0.5f64.powf(age_days / params.recency_half_life_days.max(1e-3) as f64);
            }
            // Recency counts by age alone, as if first: memories written seconds apart are
            // equally recent, and ranking them by write order would let the newest of a
            // fresh bank outrank the one that answers the query.
            let rank = if is_recency { 0.0 } else { index as f64 };
            let contribution = w / (k + rank + 1.0);
            let entry =
                by_id
                    .entry(hit.memory.id.as_str())
                    .or_insert((0.0, None, &hit.memory, Vec::new()));
            entry.0 += contribution;
            if is_semantic {
                entry.1 = Some(hit.score);
            }
            entry.3.push(StrategyRank {
                strategy,
                rank: index + 1,
                score: hit.score,
                contribution: contribution as f32,
            });
        }
    };
    add("semantic", semantic, params.semantic_weight, true, false);
    add("keyword", keyword, params.keyword_weight, false, false);
    add("recency", recency, params.recency_weight, false, true);
    add("entity", entity, params.entity_weight, false, false);
    let mut fused: Vec<Fused> = by_id
        .into_values()
        .map(|(sum, semantic_score, memory, ranks)| Fused {
            ranks,
            memory: memory.clone(),
            score: if max_total > 0.0 {
                (sum / max_total).clamp(0.0, 1.0) as f32
            } else {
                0.0
            },
            semantic_score,
        })
        .collect();
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.memory.id.cmp(&b.memory.id))
    });
    fused
}

/// Lifts the candidates a query's time expression fits by `boost` (their fused score times
/// `1 + boost`), then divides every score by `1 + boost` so scores stay in [0, 1], and sorts
/// again. Fitting: the event time inside the hint's range; for a "when" question, a time
/// expression in the memory's own text. Returns how many candidates it lifted.
pub fn apply_time_hint(fused: &mut [Fused], hint: &crate::timeexpr::TimeHint, boost: f32) -> usize {
    use crate::timeexpr::{resolve_in_text, TimeHintKind};
    if boost <= 0.0 {
        return 0;
    }
    let mut lifted = 0;
    for candidate in fused.iter_mut() {
        let at = candidate.memory.effective_time();
        let fits = match hint.kind {
            TimeHintKind::When => !resolve_in_text(&candidate.memory.text, at).is_empty(),
            _ => hint.start <= at && at <= hint.end,
        };
        let factor = if fits { 1.0 + boost } else { 1.0 };
        if fits {
            lifted += 1;
            candidate.ranks.push(StrategyRank {
                strategy: "time",
                rank: lifted,
                score: 1.0,
                contribution: candidate.score * boost,
            });
        }
        candidate.score = candidate.score * factor / (1.0 + boost);
    }
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.memory.id.cmp(&b.memory.id))
    });
    lifted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BankId;
    use crate::store::ScoredMemory;
    use chrono::{Duration, TimeZone, Utc};

    fn mem(id: &str, at: Timestamp) -> Memory {
        Memory {
            id: id.into(),
            bank_id: BankId::new("b").expect("valid bank"),
            text: id.into(),
            tags: vec![],
            metadata: Default::default(),
            fact_type: "world".into(),
            occurred_at: Some(at),
            retained_at: at,
            forgotten_at: None,
            source: None,
            chunk: None,
            thread: None,
            embedding: None,
        }
    }

    fn hits(ids: &[&str], at: Timestamp) -> StrategyHits {
        StrategyHits {
            hits: ids
                .iter()
                .map(|id| ScoredMemory {
                    memory: mem(id, at),
                    score: 0.5,
                })
                .collect(),
            elapsed: Default::default(),
        }
    }

    #[test]
    fn first_everywhere_scores_one_and_scores_stay_in_unit_range() {
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date");
        let s = hits(&["a", "b", "c"], now);
        let k = hits(&["a", "c"], now);
        let r = hits(&["a", "b"], now);
        let fused = fuse(
            Some(&s),
            Some(&k),
            Some(&r),
            None,
            &FusionParams::default(),
            now,
        );
        assert_eq!(fused[0].memory.id, "a");
        assert!((fused[0].score - 1.0).abs() < 1e-6);
        assert!(fused.iter().all(|f| (0.0..=1.0).contains(&f.score)));
        assert_eq!(fused.len(), 3);
    }

    #[test]
    fn ties_are_broken_by_id() {
        let now = Utc::now();
        let s = hits(&["z", "y"], now);
        let k = hits(&["y", "z"], now);
        // Equal weights make the two mirror-image rankings tie exactly.
        let params = FusionParams {
            semantic_weight: 1.0,
            keyword_weight: 1.0,
            ..FusionParams::default()
        };
        let fused = fuse(Some(&s), Some(&k), None, None, &params, now);
        assert_eq!(fused[0].score, fused[1].score);
        assert_eq!(fused[0].memory.id, "y");
    }

    #[test]
    fn equally_fresh_memories_get_equal_recency_so_relevance_decides() {
        let now = Utc::now();
        // A fresh bank: all three written moments ago, the best match written first. Ranked
        // by write order, recency would lift "tomatoes" (newest, second by meaning) above it.
        let semantic = hits(&["cat", "tomatoes", "budget"], now);
        let recency = hits(&["tomatoes", "budget", "cat"], now);
        let fused = fuse(
            Some(&semantic),
            None,
            Some(&recency),
            None,
            &FusionParams::default(),
            now,
        );
        let order: Vec<&str> = fused.iter().map(|f| f.memory.id.as_str()).collect();
        assert_eq!(order, vec!["cat", "tomatoes", "budget"]);
    }

    #[test]
    fn old_memories_get_less_recency_weight() {
        let now = Utc::now();
        let fresh = hits(&["fresh"], now);
        let old = hits(&["old"], now - Duration::days(14));
        let a = fuse(
            None,
            None,
            Some(&fresh),
            None,
            &FusionParams::default(),
            now,
        );
        let b = fuse(None, None, Some(&old), None, &FusionParams::default(), now);
        assert!((a[0].score - 1.0).abs() < 1e-6);
        assert!(
            (b[0].score - 0.25).abs() < 1e-3,
            "two half-lives leave a quarter: {}",
            b[0].score
        );
    }

    fn fused(id: &str, text: &str, at: Timestamp, score: f32) -> Fused {
        let mut memory = mem(id, at);
        memory.text = text.into();
        Fused {
            memory,
            score,
            semantic_score: None,
            ranks: Vec::new(),
        }
    }

    #[test]
    fn a_time_hint_lifts_what_it_fits_and_keeps_scores_in_range() {
        let reference = Utc.with_ymd_and_hms(2023, 6, 15, 12, 0, 0).unwrap();
        let may = Utc.with_ymd_and_hms(2023, 5, 8, 0, 0, 0).unwrap();
        let march = Utc.with_ymd_and_hms(2023, 3, 2, 0, 0, 0).unwrap();
        let mut candidates = vec![
            fused("a", "went hiking with friends", march, 0.9),
            fused("b", "painted a sunrise", may, 0.7),
        ];
        let hint = crate::timeexpr::parse_query_time("What did she do in May 2023?", reference)
            .expect("a hint");
        assert_eq!(apply_time_hint(&mut candidates, &hint, 0.5), 1);
        assert_eq!(candidates[0].memory.id, "b", "the May memory now leads");
        assert!(candidates.iter().all(|c| (0.0..=1.0).contains(&c.score)));
        assert_eq!(candidates[0].ranks[0].strategy, "time");

        // A "when" question lifts memories that state a time.
        let mut candidates = vec![
            fused("a", "I love the support group", march, 0.8),
            fused("b", "I went to the support group yesterday", march, 0.6),
        ];
        let when =
            crate::timeexpr::parse_query_time("When did she go to the support group?", reference)
                .expect("a when hint");
        assert_eq!(apply_time_hint(&mut candidates, &when, 0.5), 1);
        assert_eq!(candidates[0].memory.id, "b");

        // Off: nothing moves.
        let mut candidates = vec![fused("a", "x", march, 0.9), fused("b", "y", may, 0.7)];
        assert_eq!(apply_time_hint(&mut candidates, &hint, 0.0), 0);
        assert_eq!(candidates[0].memory.id, "a");
        assert_eq!(candidates[0].score, 0.9);
    }
}
