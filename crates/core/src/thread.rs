//! Threads: memories retained one at a time that belong to one conversation get the keyword
//! context a whole-conversation retain gives its turns (the words of their neighbours), including
//! neighbours that arrive later. The relation is stored (each memory's `thread`), so the context
//! is rebuilt from the rows after a restart, an import or a forget, never from memory.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::error::Result;
use crate::model::{BankId, ForgetSelector, Memory, MemoryId, RetainRequest};
use crate::store::{ContextUpdate, TenantStore};

/// Metadata keys that name a thread when a retain gives no `thread_id`, in order.
pub const THREAD_METADATA_KEYS: [&str; 4] =
    ["thread_id", "conversation_id", "session_id", "session"];

/// The longest thread key kept.
pub const MAX_THREAD_KEY_CHARS: usize = 256;

/// The thread a retain belongs to: its `thread_id`, else the first thread metadata key (text
/// or number), trimmed; `None` when there is none.
pub fn thread_key(request: &RetainRequest) -> Option<String> {
    let from_metadata = || {
        THREAD_METADATA_KEYS
            .iter()
            .find_map(|key| match request.metadata.get(*key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    request
        .thread_id
        .clone()
        .or_else(from_metadata)
        .and_then(|k| normalize_thread_key(&k))
}

/// A thread key as stored: trimmed, without NUL characters (PostgreSQL text cannot hold
/// them), at most [`MAX_THREAD_KEY_CHARS`]; `None` when nothing is left.
pub fn normalize_thread_key(raw: &str) -> Option<String> {
    let key: String = raw
        .trim()
        .chars()
        .filter(|c| *c != '\0')
        .take(MAX_THREAD_KEY_CHARS)
        .collect();
    (!key.is_empty()).then_some(key)
}

/// What the keyword index covers as a memory's own text: its date in words, then its text.
pub fn own_index_text(memory: &Memory) -> String {
    crate::engine::own_index_text(&memory.text, memory.occurred_at)
}

impl Engine {
    /// Recomputes the keyword context of the thread neighbours of `around` (and of `around`
    /// themselves when `include_self`), from the stored thread.
    pub(crate) async fn relink_threads(
        &self,
        tenant: &dyn TenantStore,
        around: &[Memory],
        include_self: bool,
    ) -> Result<()> {
        let radius = self.config().neighbour_context;
        if radius == 0 {
            return Ok(());
        }
        let mut affected: BTreeMap<(BankId, MemoryId), Memory> = BTreeMap::new();
        for memory in around {
            let Some(thread) = &memory.thread else {
                continue;
            };
            if include_self {
                affected.insert((memory.bank_id.clone(), memory.id.clone()), memory.clone());
            }
            let (before, after) = tenant
                .thread_neighbours(
                    &memory.bank_id,
                    thread,
                    memory.effective_time(),
                    &memory.id,
                    radius,
                )
                .await?;
            for neighbour in before.into_iter().chain(after) {
                affected.insert((neighbour.bank_id.clone(), neighbour.id.clone()), neighbour);
            }
        }
        let mut updates: BTreeMap<BankId, Vec<ContextUpdate>> = BTreeMap::new();
        for ((bank, id), memory) in affected {
            let Some(thread) = &memory.thread else {
                continue;
            };
            let (before, after) = tenant
                .thread_neighbours(&bank, thread, memory.effective_time(), &id, radius)
                .await?;
            let words: Vec<&str> = before
                .iter()
                .rev()
                .chain(after.iter())
                .map(|n| n.text.as_str())
                .collect();
            updates.entry(bank).or_default().push(ContextUpdate {
                index_text: own_index_text(&memory),
                index_context: (!words.is_empty()).then(|| words.join("\n")),
                id,
            });
        }
        for (bank, updates) in updates {
            tenant.set_index_context(&bank, updates).await?;
        }
        Ok(())
    }

    /// The threaded memories a forget is about to remove (a superset is harmless: relinking
    /// recomputes what is already right).
    pub(crate) async fn threaded_victims(
        &self,
        tenant: &dyn TenantStore,
        bank: &BankId,
        selector: &ForgetSelector,
    ) -> Result<Vec<Memory>> {
        if selector.all {
            return Ok(Vec::new());
        }
        if let Some(ids) = &selector.memory_ids {
            let found = tenant.get(bank, ids).await?;
            return Ok(found.into_iter().filter(|m| m.thread.is_some()).collect());
        }
        const PAGE: usize = 1000;
        let mut out = Vec::new();
        let mut after: Option<MemoryId> = None;
        loop {
            let page = tenant.scan(bank, after.as_ref(), PAGE, false).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full = page.len() == PAGE;
            out.extend(page.into_iter().filter(|m| {
                m.thread.is_some()
                    && selector
                        .tags
                        .as_ref()
                        .is_none_or(|tags| m.tags.iter().any(|t| tags.contains(t)))
                    && selector.before.is_none_or(|b| m.effective_time() < b)
            }));
            if !full {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_thread_comes_from_the_field_then_the_metadata() {
        let mut request = RetainRequest::default();
        assert_eq!(thread_key(&request), None);
        request.metadata.insert("session".into(), json!(3));
        assert_eq!(thread_key(&request).as_deref(), Some("3"));
        request
            .metadata
            .insert("conversation_id".into(), json!("conv-9"));
        assert_eq!(thread_key(&request).as_deref(), Some("conv-9"));
        request.thread_id = Some("  explicit ".into());
        assert_eq!(thread_key(&request).as_deref(), Some("explicit"));
        request.thread_id = Some("   ".into());
        request.metadata.clear();
        assert_eq!(thread_key(&request), None);
        request.metadata.insert("session".into(), json!(true));
        assert_eq!(
            thread_key(&request),
            None,
            "only text or numbers name a thread"
        );
    }

    #[test]
    fn a_memory_indexes_the_dates_its_own_words_name() {
        use chrono::TimeZone;
        let at = chrono::Utc
            .with_ymd_and_hms(2023, 5, 8, 13, 0, 0)
            .single()
            .expect("date");
        let mut memory = Memory::new("m", crate::model::BankId::new("b").expect("bank"), "");
        memory.occurred_at = Some(at);
        memory.text = "I went to the support group yesterday and we meet again next Friday".into();
        let indexed = own_index_text(&memory);
        assert!(indexed.starts_with("8 May 2023, Monday"), "{indexed}");
        assert!(indexed.contains("7 May 2023"), "yesterday: {indexed}");
        assert!(indexed.contains("12 May 2023"), "next Friday: {indexed}");
        assert!(indexed.ends_with(&memory.text));
        memory.text = "last summer was hot".into();
        assert!(
            own_index_text(&memory).contains("2022"),
            "a season names its year"
        );
        memory.occurred_at = None;
        assert_eq!(
            own_index_text(&memory),
            memory.text,
            "no event time, nothing to resolve"
        );
    }
}
