//! Observations: durable facts an LLM distils from a bank's memories, stored as ordinary
//! memories of fact type [`OBSERVATION_FACT_TYPE`] whose metadata names their sources, so
//! recall returns them (and a `fact_types` filter selects or leaves them out) with no
//! retrieval change.
//!
//! A run reads the bank's newest memories that no observation cites yet, asks the LLM for
//! facts as strict JSON in prompt-sized batches, keeps the facts whose sources are among the
//! memories it was shown, and retains them. Running twice is safe: cited memories are not
//! read again, and a fact the bank already holds is a near-duplicate on retain (its sources
//! are merged into the existing observation instead).

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;
use serde_json::Value;
use tracing::debug;

use crate::browse::MemoryPatch;
use crate::embed::{ChatMessage, ChatRequest};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{BankId, Memory, MemoryId, RetainRequest};
use crate::pipeline::budget::estimate_tokens;
use crate::store::TenantStore;
use crate::tenancy::Schema;

/// The fact type of an observation.
pub const OBSERVATION_FACT_TYPE: &str = "observation";
/// Metadata key holding an observation's source memory ids, comma-joined (metadata values are
/// scalars).
pub const SOURCE_IDS_KEY: &str = "source_ids";
/// Metadata key holding how many memories an observation rests on.
pub const SOURCE_COUNT_KEY: &str = "observation_of";
/// The `source` of an observation memory.
pub const OBSERVATION_SOURCE: &str = "astrocyte:observe";
/// The error when no LLM is configured.
pub const NO_LLM: &str = "observations need an LLM: set llm.base_url and llm.model \
    (ASTROCYTE_LLM_BASE_URL, ASTROCYTE_LLM_MODEL)";

/// Sources one observation may name: 32 ids fit the metadata size limit with room to spare.
const MAX_SOURCES_PER_FACT: usize = 32;
/// Estimated tokens of memories per chat call; small enough for any current chat model's
/// context with room for the answer.
const PROMPT_TOKENS: usize = 6_000;
/// The answer's token bound.
const ANSWER_TOKENS: usize = 2_048;
const PAGE: usize = 500;

const SYSTEM_PROMPT: &str = "You distil memories into durable facts. Each memory is a line \
    \"[<id>] (<date>) <text>\". Reply with only a JSON array, no prose: \
    [{\"text\": \"<one self-contained fact>\", \"sources\": [\"<id>\", ...]}]. \
    Each fact must be supported by the memories whose ids it lists, name people and things \
    explicitly (no pronouns), and state dates when the memories give them. Skip small talk \
    and anything not worth remembering; reply [] when nothing is.";

/// A fact proposed by the LLM, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedFact {
    /// The fact.
    pub text: String,
    /// The memories it rests on (each among those shown), in the order the LLM gave them.
    pub sources: Vec<MemoryId>,
}

/// What an observe run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObserveOutcome {
    /// Memories given to the LLM.
    pub considered: usize,
    /// Chat calls made.
    pub llm_calls: usize,
    /// Facts the LLM proposed.
    pub proposed: usize,
    /// Proposed facts dropped (unknown sources, empty or over-long text).
    pub dropped: usize,
    /// New observation memories.
    pub stored: usize,
    /// Facts the bank already held (their sources merged into an existing observation).
    pub deduplicated: usize,
    /// Ids of the new observations.
    pub observation_ids: Vec<MemoryId>,
}

/// The source ids an observation names (empty for any other memory).
pub fn source_ids(memory: &Memory) -> Vec<MemoryId> {
    if memory.fact_type != OBSERVATION_FACT_TYPE {
        return Vec::new();
    }
    memory
        .metadata
        .get(SOURCE_IDS_KEY)
        .and_then(Value::as_str)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Distils up to `max_sources` of the bank's newest memories not yet cited by an observation.
pub async fn observe(
    engine: &Engine,
    schema: &Schema,
    bank_id: &str,
    max_sources: usize,
) -> Result<ObserveOutcome> {
    let bank = BankId::new(bank_id)?;
    let llm = engine
        .llm()
        .cloned()
        .ok_or_else(|| Error::Unsupported(NO_LLM.into()))?;
    let tenant = engine.tenant(schema).await?;
    let sources = unobserved(tenant.as_ref(), &bank, max_sources.max(1)).await?;
    let mut outcome = ObserveOutcome {
        considered: sources.len(),
        ..Default::default()
    };
    let max_chars = engine.config().chunking.max_chars;
    let mut facts: Vec<ObservedFact> = Vec::new();
    for batch in batches(&sources, PROMPT_TOKENS) {
        let listing: String = batch.iter().map(prompt_line).collect();
        let chat = ChatRequest {
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: SYSTEM_PROMPT.into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: format!("Memories:\n{listing}"),
                },
            ],
            max_tokens: Some(ANSWER_TOKENS),
            temperature: Some(0.0),
        };
        let answer = llm.complete(&chat).await?;
        outcome.llm_calls += 1;
        let ids: HashSet<&str> = batch.iter().map(|m| m.id.as_str()).collect();
        let (kept, proposed) = parse_facts(&answer, &ids, max_chars);
        outcome.proposed += proposed;
        outcome.dropped += proposed - kept.len();
        facts.extend(kept);
    }
    if facts.is_empty() {
        return Ok(outcome);
    }
    let requests: Vec<RetainRequest> = facts
        .iter()
        .map(|fact| observation_request(&bank, fact, &sources))
        .collect();
    let outcomes = engine.retain_many(schema, requests).await?;
    for (fact, retained) in facts.iter().zip(outcomes) {
        if retained.stored {
            outcome.stored += 1;
            outcome.observation_ids.extend(retained.memory_ids);
        } else if retained.deduplicated {
            outcome.deduplicated += 1;
            if let Some(twin) = retained.memory_id {
                merge_sources(tenant.as_ref(), &bank, &twin, &fact.sources).await?;
            }
        } else {
            outcome.dropped += 1;
        }
    }
    debug!(?outcome, "observed");
    Ok(outcome)
}

/// The newest `limit` visible non-observation memories no observation cites, oldest first.
/// Two scans so only the bounded batch and the cited ids are held, whatever the bank's size.
async fn unobserved(tenant: &dyn TenantStore, bank: &BankId, limit: usize) -> Result<Vec<Memory>> {
    let mut cited: HashSet<MemoryId> = HashSet::new();
    scan_all(tenant, bank, |m| {
        cited.extend(source_ids(&m));
    })
    .await?;
    // Ids are UUID v7, so scan order is retention order and the tail is the newest.
    let mut newest: std::collections::VecDeque<Memory> = std::collections::VecDeque::new();
    scan_all(tenant, bank, |m| {
        if m.fact_type != OBSERVATION_FACT_TYPE && !cited.contains(&m.id) {
            if newest.len() == limit {
                newest.pop_front();
            }
            newest.push_back(m);
        }
    })
    .await?;
    Ok(newest.into())
}

async fn scan_all(
    tenant: &dyn TenantStore,
    bank: &BankId,
    mut each: impl FnMut(Memory),
) -> Result<()> {
    let mut after: Option<MemoryId> = None;
    loop {
        let page = tenant.scan(bank, after.as_ref(), PAGE, false).await?;
        let full = page.len() == PAGE;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        page.into_iter().for_each(&mut each);
        if !full {
            break;
        }
    }
    Ok(())
}

/// How a memory is shown to the LLM: one line, its id in brackets, its date when known.
fn prompt_line(memory: &Memory) -> String {
    let text = memory.text.replace(['\n', '\r'], " ");
    match memory.occurred_at {
        Some(at) => format!("[{}] ({}) {text}\n", memory.id, at.format("%Y-%m-%d")),
        None => format!("[{}] {text}\n", memory.id),
    }
}

/// Splits memories, in order, into batches whose prompt lines fit `budget` estimated tokens
/// (a single over-budget memory still goes, alone).
fn batches(memories: &[Memory], budget: usize) -> Vec<&[Memory]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, memory) in memories.iter().enumerate() {
        let cost = estimate_tokens(&prompt_line(memory));
        if i > start && used + cost > budget {
            out.push(&memories[start..i]);
            start = i;
            used = 0;
        }
        used += cost;
    }
    if start < memories.len() {
        out.push(&memories[start..]);
    }
    out
}

/// Reads the facts in an LLM answer: the first JSON array of facts (or an object holding one
/// under `observations`/`facts`), inside code fences or prose or not. Keeps facts with a
/// non-empty text of at most `max_chars` characters and at least one source among `known`
/// (unknown sources are dropped from a fact). Returns the kept facts and how many were
/// proposed.
pub fn parse_facts(
    answer: &str,
    known: &HashSet<&str>,
    max_chars: usize,
) -> (Vec<ObservedFact>, usize) {
    let Some(items) = find_fact_array(answer) else {
        return (Vec::new(), 0);
    };
    let proposed = items.len();
    let mut seen_texts: HashSet<String> = HashSet::new();
    let kept = items
        .iter()
        .filter_map(|item| {
            let text = ["text", "fact", "observation"]
                .iter()
                .find_map(|k| item.get(*k).and_then(Value::as_str))?
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if text.is_empty() || text.chars().count() > max_chars || text.contains('\0') {
                return None;
            }
            let listed = ["sources", "source_ids", "source"]
                .iter()
                .find_map(|k| item.get(*k))?;
            let listed: Vec<&str> = match listed {
                Value::Array(values) => values.iter().filter_map(Value::as_str).collect(),
                Value::String(one) => one.split(',').collect(),
                _ => Vec::new(),
            };
            let mut sources: Vec<MemoryId> = Vec::new();
            for id in listed {
                // Models echo the prompt's brackets now and then.
                let id = id
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim();
                if known.contains(id) && !sources.iter().any(|s| s == id) {
                    sources.push(id.to_string());
                }
            }
            sources.truncate(MAX_SOURCES_PER_FACT);
            if sources.is_empty() || !seen_texts.insert(text.to_lowercase()) {
                return None;
            }
            Some(ObservedFact { text, sources })
        })
        .collect();
    (kept, proposed)
}

/// The first JSON value in `answer` that is an array of objects, or an object holding one.
fn find_fact_array(answer: &str) -> Option<Vec<Value>> {
    let as_facts = |value: Value| -> Option<Vec<Value>> {
        let items = match value {
            Value::Array(items) => items,
            Value::Object(mut object) => match ["observations", "facts"]
                .iter()
                .find_map(|k| object.remove(*k))?
            {
                Value::Array(items) => items,
                _ => return None,
            },
            _ => return None,
        };
        items.iter().all(Value::is_object).then_some(items)
    };
    // Try every `[` or `{` as a start: prose and code fences around the JSON are skipped,
    // and the stream deserializer stops at the value's end whatever follows it.
    for (start, c) in answer.char_indices() {
        if c != '[' && c != '{' {
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&answer[start..]).into_iter::<Value>();
        if let Some(Ok(value)) = stream.next() {
            if let Some(items) = as_facts(value) {
                return Some(items);
            }
        }
    }
    None
}

/// The retain of one fact: dated by its newest source, tagged with the tags all its sources
/// share (so a tag filter never surfaces a fact drawn from memories outside it).
fn observation_request(bank: &BankId, fact: &ObservedFact, shown: &[Memory]) -> RetainRequest {
    let sources: Vec<&Memory> = shown
        .iter()
        .filter(|m| fact.sources.contains(&m.id))
        .collect();
    let occurred_at = sources.iter().map(|m| m.effective_time()).max();
    let mut tags: Option<BTreeSet<&String>> = None;
    for memory in &sources {
        let own: BTreeSet<&String> = memory.tags.iter().collect();
        tags = Some(match tags {
            None => own,
            Some(shared) => shared.intersection(&own).copied().collect(),
        });
    }
    let mut metadata = crate::model::Metadata::new();
    metadata.insert(SOURCE_IDS_KEY.into(), Value::from(fact.sources.join(",")));
    metadata.insert(SOURCE_COUNT_KEY.into(), Value::from(fact.sources.len()));
    RetainRequest {
        bank_id: bank.to_string(),
        content: fact.text.clone(),
        tags: tags.unwrap_or_default().into_iter().cloned().collect(),
        metadata,
        occurred_at,
        fact_type: Some(OBSERVATION_FACT_TYPE.into()),
        source: Some(OBSERVATION_SOURCE.into()),
        ..Default::default()
    }
}

/// Adds `sources` to an existing observation's, so its twin's sources count as observed too.
/// A twin that is not an observation (a memory saying the same thing) is left alone.
async fn merge_sources(
    tenant: &dyn TenantStore,
    bank: &BankId,
    twin: &MemoryId,
    sources: &[MemoryId],
) -> Result<()> {
    let Some(existing) = tenant.get(bank, std::slice::from_ref(twin)).await?.pop() else {
        return Ok(());
    };
    if existing.fact_type != OBSERVATION_FACT_TYPE {
        return Ok(());
    }
    let mut merged = source_ids(&existing);
    let before = merged.len();
    for id in sources {
        if merged.len() < MAX_SOURCES_PER_FACT && !merged.contains(id) {
            merged.push(id.clone());
        }
    }
    if merged.len() == before {
        return Ok(());
    }
    let mut metadata = existing.metadata.clone();
    metadata.insert(SOURCE_IDS_KEY.into(), Value::from(merged.join(",")));
    metadata.insert(SOURCE_COUNT_KEY.into(), Value::from(merged.len()));
    let patch = MemoryPatch {
        tags: None,
        metadata: Some(metadata),
    };
    tenant.update(bank, twin, &patch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0190a000-0000-7000-8000-00000000000a";
    const B: &str = "0190a000-0000-7000-8000-00000000000b";

    fn known() -> HashSet<&'static str> {
        [A, B].into_iter().collect()
    }

    #[test]
    fn reads_a_bare_array() {
        let answer = format!(r#"[{{"text": "Alice owns a cat named Miso.", "sources": ["{A}"]}}]"#);
        let (facts, proposed) = parse_facts(&answer, &known(), 512);
        assert_eq!(proposed, 1);
        assert_eq!(
            facts,
            vec![ObservedFact {
                text: "Alice owns a cat named Miso.".into(),
                sources: vec![A.into()],
            }]
        );
    }

    #[test]
    fn reads_through_fences_and_prose() {
        let answer = format!(
            "Sure! Here are the facts [as requested]:\n```json\n[\n  {{\"text\": \"Bob  moved\\nto Oslo in 2021.\", \"sources\": [\"[{B}]\", \"{A}\"]}}\n]\n```\nLet me know [if] you need more."
        );
        let (facts, proposed) = parse_facts(&answer, &known(), 512);
        assert_eq!(proposed, 1);
        assert_eq!(facts.len(), 1);
        // Whitespace is normalised and bracketed ids are understood.
        assert_eq!(facts[0].text, "Bob moved to Oslo in 2021.");
        assert_eq!(facts[0].sources, vec![B.to_string(), A.to_string()]);
    }

    #[test]
    fn reads_an_object_wrapper() {
        let answer =
            format!(r#"{{"observations": [{{"fact": "x is y", "source_ids": "{A},{B}"}}]}}"#);
        let (facts, _) = parse_facts(&answer, &known(), 512);
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].sources, vec![A.to_string(), B.to_string()]);
    }

    #[test]
    fn drops_unknown_sources_empty_long_and_repeated_texts() {
        let long = "y".repeat(600);
        let answer = format!(
            r#"[
              {{"text": "invented", "sources": ["not-an-id"]}},
              {{"text": "partly real", "sources": ["not-an-id", "{A}", "{A}"]}},
              {{"text": "   ", "sources": ["{A}"]}},
              {{"text": "{long}", "sources": ["{A}"]}},
              {{"text": "no sources"}},
              {{"text": "Partly  real", "sources": ["{B}"]}}
            ]"#
        );
        let (facts, proposed) = parse_facts(&answer, &known(), 512);
        assert_eq!(proposed, 6);
        assert_eq!(
            facts,
            vec![ObservedFact {
                text: "partly real".into(),
                sources: vec![A.into()],
            }]
        );
    }

    #[test]
    fn no_json_means_no_facts() {
        for answer in [
            "",
            "Nothing worth remembering.",
            "[1, 2, 3]",
            "{\"text\": 1}",
            "[{",
        ] {
            let (facts, proposed) = parse_facts(answer, &known(), 512);
            assert!(facts.is_empty(), "{answer}");
            assert_eq!(proposed, 0, "{answer}");
        }
        // An empty array is a valid "nothing".
        assert_eq!(parse_facts("[]", &known(), 512), (Vec::new(), 0));
    }

    #[test]
    fn batches_respect_the_budget_and_keep_order() {
        let bank = BankId::new("b").expect("valid");
        let memories: Vec<Memory> = (0..10)
            .map(|i| Memory::new(format!("id-{i}"), bank.clone(), "w".repeat(400)))
            .collect();
        let split = batches(&memories, 250);
        assert!(split.len() > 1);
        let flat: Vec<&str> = split
            .iter()
            .flat_map(|b| b.iter().map(|m| m.id.as_str()))
            .collect();
        let ids: Vec<&str> = memories.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(flat, ids);
        for batch in &split {
            let cost: usize = batch.iter().map(|m| estimate_tokens(&prompt_line(m))).sum();
            assert!(batch.len() == 1 || cost <= 250);
        }
        assert_eq!(
            batches(&memories, 1).len(),
            10,
            "an over-budget memory goes alone"
        );
        assert!(batches(&[], 100).is_empty());
    }
}
