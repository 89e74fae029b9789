//! Browsing and managing a bank: listings with cursors, edits of a memory's tags and metadata,
//! and the per-bank change feed that lets a client mirror or audit a bank.
//!
//! Cursors are opaque strings to callers. A listing cursor names the last memory of a page;
//! a change cursor is the backend's own position in its change log (a sequence number in the
//! embedded store, a transaction id and sequence number in PostgreSQL, where sequence numbers
//! alone are not in commit order).

use serde::Serialize;

use std::collections::HashSet;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{BankId, Memory, MemoryId, Metadata, RecallFilter, Timestamp};
use crate::pipeline::validate::{
    check_id, check_metadata_scalars, check_metadata_shape, check_tags, check_text, normalize_tags,
    sanitize_metadata, MAX_ID_BYTES,
};
use crate::tenancy::Schema;

/// Longest entity-name prefix a listing takes, in characters.
pub const MAX_ENTITY_PREFIX_CHARS: usize = 64;

/// Most memories or changes one page may hold.
pub const MAX_PAGE: usize = 1000;

/// Longest text filter (`text_prefix`, `text_contains`) of a listing, in bytes: far past
/// any word or phrase searched for, and well inside SQLite's 50,000-byte LIKE pattern limit
/// after escaping.
pub const MAX_TEXT_FILTER_BYTES: usize = 4096;

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListOrder {
    /// Most recently retained first (ties: larger id first).
    #[default]
    Newest,
    /// By id, ascending (bytewise).
    Id,
}

impl ListOrder {
    /// Parses `newest` or `id`.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "newest" => Ok(ListOrder::Newest),
            "id" => Ok(ListOrder::Id),
            other => Err(Error::invalid(format!(
                "order must be \"newest\" or \"id\", not {other:?}"
            ))),
        }
    }
}

/// Where the previous page of a listing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// The last memory's retention time (only meaningful for [`ListOrder::Newest`]).
    pub retained_at: Timestamp,
    /// The last memory's id.
    pub id: MemoryId,
}

impl ListCursor {
    /// The cursor after `memory`.
    pub fn after(memory: &Memory) -> Self {
        ListCursor {
            retained_at: memory.retained_at,
            id: memory.id.clone(),
        }
    }

    /// `<micros>.<hex of the id>`: URL-safe whatever the id holds.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.retained_at.timestamp_micros(),
            hex(self.id.as_bytes())
        )
    }

    /// Reads a cursor made by [`Self::encode`].
    pub fn decode(value: &str) -> Result<Self> {
        let invalid = || Error::invalid(format!("cursor {value:?} is not a listing cursor"));
        let (micros, id) = value.split_once('.').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let retained_at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        // Any id is a position; bytes that are not UTF-8 (a cursor made by hand) are replaced.
        // No stored id holds a NUL (PostgreSQL text cannot), so a cursor with one is refused
        // rather than sent to the store.
        let id = String::from_utf8_lossy(&unhex(id).ok_or_else(invalid)?).into_owned();
        if id.contains('\0') {
            return Err(invalid());
        }
        Ok(ListCursor { retained_at, id })
    }
}

/// What a listing asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Tags (any of), time range (effective time), fact types and metadata equality; `as_of`
    /// lists what was visible then.
    pub filter: RecallFilter,
    /// Only memories whose text starts with this (case-insensitive for ASCII).
    pub text_prefix: Option<String>,
    /// Only memories whose text contains this (case-insensitive for ASCII).
    pub text_contains: Option<String>,
    /// Only the chunks of one retain.
    pub group_id: Option<String>,
    /// The order.
    pub order: ListOrder,
    /// Start strictly after this memory.
    pub after: Option<ListCursor>,
    /// At most this many memories.
    pub limit: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPage {
    /// The memories, in the listing's order.
    pub memories: Vec<Memory>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A new value for a memory's tags and/or metadata (each replaced whole when given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryPatch {
    /// The new tags.
    pub tags: Option<Vec<String>>,
    /// The new metadata.
    pub metadata: Option<Metadata>,
}

impl MemoryPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.tags.is_none() && self.metadata.is_none()
    }
}

/// What happened to a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Retained or imported.
    Created,
    /// Tags or metadata edited.
    Updated,
    /// Forgotten (soft) or erased; a tombstone, the memory is no longer visible.
    Forgotten,
}

impl ChangeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Forgotten => "forgotten",
        }
    }

    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "created" => Some(ChangeKind::Created),
            "updated" => Some(ChangeKind::Updated),
            "forgotten" => Some(ChangeKind::Forgotten),
            _ => None,
        }
    }
}

/// One entry of a bank's change log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Resume after this entry by passing it as `since`.
    pub cursor: String,
    /// What happened.
    pub kind: ChangeKind,
    /// To which memory.
    pub memory_id: MemoryId,
    /// When.
    pub at: Timestamp,
}

/// What a change-feed read asks for.
#[derive(Debug, Clone, Default)]
pub struct ChangeQuery {
    /// Entries strictly after this cursor; from the start when `None`.
    pub since: Option<String>,
    /// Only entries of this memory.
    pub memory_id: Option<MemoryId>,
    /// At most this many entries.
    pub limit: usize,
    /// The newest `limit` entries (after `since`, if given) instead of the oldest, still
    /// returned oldest first: what an activity view shows before following the feed.
    pub tail: bool,
}

/// A change with the memory as it is now (`None` once it is forgotten).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeEntry {
    /// The change.
    #[serde(flatten)]
    pub change: Change,
    /// The memory now, when still visible.
    pub memory: Option<Memory>,
}

/// One page of a change feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangePage {
    /// The entries, oldest first.
    pub changes: Vec<ChangeEntry>,
    /// Pass as `since` for the next read: the last entry's cursor, or the cursor given when
    /// there was nothing new.
    pub next_cursor: Option<String>,
    /// Whether more entries are ready now (for a tail: whether older entries exist).
    pub has_more: bool,
}

/// A memory with what explains it: the other chunks of its retain and its change history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryDetail {
    /// The memory.
    pub memory: Memory,
    /// Every visible chunk of the same retain, in chunk order (the memory included).
    pub chunks: Vec<Memory>,
    /// Its change log, oldest first.
    pub history: Vec<Change>,
}

fn check_limit(limit: usize) -> Result<()> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        )))
    }
}

/// Refuses a change-feed cursor that no page gave out: a position (`123`) or a
/// PostgreSQL position with its transaction (`456-123`), digits only.
fn check_change_cursor(since: &str) -> Result<()> {
    let digits = |part: &str, max: usize| {
        (1..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
    };
    let valid = match since.split_once('-') {
        None => digits(since, 18),
        Some((transaction, position)) => digits(transaction, 19) && digits(position, 18),
    };
    if valid {
        Ok(())
    } else {
        let shown: String = since.chars().take(40).collect();
        Err(Error::invalid(format!(
            "since {shown:?} is not a cursor from this bank's change feed"
        )))
    }
}

impl Engine {
    /// A page of a bank's memories.
    pub async fn list(
        &self,
        schema: &Schema,
        bank_id: &str,
        mut query: ListQuery,
    ) -> Result<MemoryPage> {
        let bank = BankId::new(bank_id)?;
        check_limit(query.limit)?;
        for (field, value) in [
            ("text_prefix", &query.text_prefix),
            ("text_contains", &query.text_contains),
            ("group_id", &query.group_id),
        ] {
            if let Some(value) = value {
                check_text(field, value)?;
                if value.len() > MAX_TEXT_FILTER_BYTES {
                    return Err(Error::invalid(format!(
                        "{field} is longer than {MAX_TEXT_FILTER_BYTES} bytes"
                    )));
                }
            }
        }
        for value in query
            .filter
            .tags
            .iter()
            .chain(query.filter.fact_types.iter())
            .flatten()
        {
            check_text("filter", value)?;
        }
        let limit = query.limit;
        // One more than asked says whether another page exists.
        query.limit = limit + 1;
        let mut memories = self
            .store()
            .tenant(schema)
            .await?
            .list(&bank, &query)
            .await?;
        let next_cursor = if memories.len() > limit {
            memories.truncate(limit);
            memories.last().map(|m| ListCursor::after(m).encode())
        } else {
            None
        };
        Ok(MemoryPage {
            memories,
            next_cursor,
        })
    }

    /// A visible memory with its retain's other chunks and its change history.
    pub async fn memory(
        &self,
        schema: &Schema,
        bank_id: &str,
        id: &str,
    ) -> Result<Option<MemoryDetail>> {
        let bank = BankId::new(bank_id)?;
        check_id("memory_id", id, MAX_ID_BYTES)?;
        let tenant = self.store().tenant(schema).await?;
        let Some(memory) = tenant.get(&bank, &[id.to_string()]).await?.pop() else {
            return Ok(None);
        };
        let mut chunks = match &memory.chunk {
            Some(chunk) if chunk.count > 1 => {
                let query = ListQuery {
                    group_id: Some(chunk.group_id.clone()),
                    order: ListOrder::Id,
                    limit: MAX_PAGE,
                    ..Default::default()
                };
                tenant.list(&bank, &query).await?
            }
            _ => vec![memory.clone()],
        };
        chunks.sort_by_key(|m| m.chunk.as_ref().map(|c| c.index));
        let history = tenant
            .changes(
                &bank,
                &ChangeQuery {
                    since: None,
                    memory_id: Some(memory.id.clone()),
                    limit: MAX_PAGE,
                    tail: false,
                },
            )
            .await?;
        Ok(Some(MemoryDetail {
            memory,
            chunks,
            history,
        }))
    }

    /// Replaces a memory's tags and/or metadata under the rules a retain applies to them;
    /// `None` when no visible memory has that id.
    pub async fn update_memory(
        &self,
        schema: &Schema,
        bank_id: &str,
        id: &str,
        mut patch: MemoryPatch,
    ) -> Result<Option<Memory>> {
        let bank = BankId::new(bank_id)?;
        check_id("memory_id", id, MAX_ID_BYTES)?;
        // Nothing to change is not an error: the memory as it is, and no change logged.
        if patch.is_empty() {
            return Ok(self
                .store()
                .tenant(schema)
                .await?
                .get(&bank, &[id.to_string()])
                .await?
                .pop());
        }
        let limits = &self.config().limits;
        if let Some(tags) = &patch.tags {
            for tag in tags {
                check_text("tags", tag)?;
            }
            if let Some(error) = check_tags(tags, limits) {
                return Err(Error::invalid(error));
            }
            patch.tags = Some(normalize_tags(tags));
        }
        if let Some(metadata) = patch.metadata.take() {
            check_metadata_shape("metadata", &metadata, limits)?;
            if let Some(error) = check_metadata_scalars(&metadata) {
                return Err(Error::invalid(error));
            }
            // As at retain: blocked keys are dropped and oversized metadata truncated; the
            // memory returned shows what was kept.
            let (metadata, warnings) = sanitize_metadata(metadata, limits);
            if !warnings.is_empty() {
                tracing::info!(?warnings, "metadata of an edit sanitised");
            }
            patch.metadata = Some(metadata);
        }
        let id = id.to_string();
        self.store()
            .tenant(schema)
            .await?
            .update(&bank, &id, &patch)
            .await
    }

    /// A bank's entities, most-mentioned first: `limit` 1 to [`MAX_PAGE`]; `prefix` at
    /// most [`MAX_ENTITY_PREFIX_CHARS`] characters, no NUL.
    pub async fn entities(
        &self,
        schema: &Schema,
        bank_id: &str,
        query: crate::store::EntityQuery,
    ) -> Result<Vec<crate::store::EntitySummary>> {
        let bank = BankId::new(bank_id)?;
        check_limit(query.limit)?;
        if let Some(prefix) = &query.prefix {
            if prefix.chars().count() > MAX_ENTITY_PREFIX_CHARS || prefix.contains('\0') {
                return Err(Error::invalid(format!(
                    "prefix must be at most {MAX_ENTITY_PREFIX_CHARS} characters without NUL"
                )));
            }
        }
        let tenant = self.store().tenant(schema).await?;
        tenant.entities(&bank, &query).await
    }

    /// A page of a bank's change feed, each entry with the memory as it is now.
    pub async fn changes(
        &self,
        schema: &Schema,
        bank_id: &str,
        mut query: ChangeQuery,
    ) -> Result<ChangePage> {
        let bank = BankId::new(bank_id)?;
        check_limit(query.limit)?;
        if let Some(since) = &query.since {
            check_change_cursor(since)?;
        }
        if let Some(id) = &query.memory_id {
            check_id("memory_id", id, MAX_ID_BYTES)?;
        }
        let limit = query.limit;
        query.limit = limit + 1;
        let tenant = self.store().tenant(schema).await?;
        let mut changes = tenant.changes(&bank, &query).await?;
        let has_more = changes.len() > limit;
        if query.tail {
            // Oldest first; the extra entry is the oldest one.
            let extra = changes.len().saturating_sub(limit);
            changes.drain(..extra);
        } else {
            changes.truncate(limit);
        }
        let wanted: Vec<MemoryId> = changes
            .iter()
            .map(|c| c.memory_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let visible: std::collections::HashMap<MemoryId, Memory> = tenant
            .get(&bank, &wanted)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let next_cursor = changes.last().map(|c| c.cursor.clone()).or(query.since);
        Ok(ChangePage {
            changes: changes
                .into_iter()
                .map(|change| ChangeEntry {
                    memory: visible.get(&change.memory_id).cloned(),
                    change,
                })
                .collect(),
            next_cursor,
            has_more,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BankId;

    #[test]
    fn listing_cursors_round_trip_any_id_and_refuse_garbage() {
        let mut memory = Memory::new(
            "id with spaces/and.dots",
            BankId::new("b").expect("bank"),
            "x",
        );
        memory.retained_at =
            chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("timestamp");
        let cursor = ListCursor::after(&memory);
        let encoded = cursor.encode();
        assert!(encoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        assert_eq!(ListCursor::decode(&encoded).expect("decodes"), cursor);
        for bad in ["", "abc", "12.zz", "12.abc", "x.00", "0.00", "0.610062"] {
            assert!(ListCursor::decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn orders_and_kinds_parse_their_names_only() {
        assert_eq!(
            ListOrder::parse("newest").expect("newest"),
            ListOrder::Newest
        );
        assert_eq!(ListOrder::parse("id").expect("id"), ListOrder::Id);
        assert!(ListOrder::parse("oldest").is_err());
        for kind in [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Forgotten,
        ] {
            assert_eq!(ChangeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ChangeKind::parse("deleted"), None);
    }
}
