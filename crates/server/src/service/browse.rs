//! Browsing and managing a bank: listings, one memory with its chunks and history, edits,
//! forgetting one memory, the change feed, bank summaries and the export download.

use astrocyte_core::browse::{
    ChangePage, ChangeQuery, ListCursor, ListOrder, ListQuery, MemoryDetail, MemoryPage,
    MemoryPatch, MAX_PAGE,
};
use astrocyte_core::{BankId, Error, ForgetMode, ForgetSelector, Memory, RecallFilter, Timestamp};
use futures::Stream;
use tokio::io::AsyncReadExt;

use super::{Caller, Service};
use crate::access::Permission;
use crate::error::ApiError;
use crate::policy::Operation;

/// Page size when the caller names none.
pub const DEFAULT_PAGE: usize = 50;

/// List a bank's memories.
#[derive(Debug, Clone, Default)]
pub struct ListMemories {
    /// The bank.
    pub bank_id: String,
    /// Page size (1 to 1000; default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `newest` (default) or `id`.
    pub order: Option<String>,
    /// Only memories with any of these tags.
    pub tags: Option<Vec<String>>,
    /// Only these fact types.
    pub fact_types: Option<Vec<String>>,
    /// Inclusive range over when memories happened.
    pub time_range: Option<(Timestamp, Timestamp)>,
    /// Text starts with this (case-insensitive).
    pub text_prefix: Option<String>,
    /// Text contains this (case-insensitive).
    pub text_contains: Option<String>,
}

/// A bank with what a person browsing it first wants to know.
#[derive(Debug, Clone, PartialEq)]
pub struct BankSummary {
    /// The bank.
    pub bank_id: String,
    /// Visible memories.
    pub memory_count: u64,
    /// When the newest visible memory was retained.
    pub last_retained_at: Option<Timestamp>,
    /// UTF-8 bytes of the visible memories' texts.
    pub text_bytes: u64,
}

fn page_size(limit: Option<i64>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}, not {n}"
        ))),
    }
}

impl Service {
    /// Reads of a bank share recall's rate limit (and, like recall, use no quota).
    fn admit_read(&self, caller: &Caller, bank: &BankId) -> Result<(), ApiError> {
        let _no_quota =
            self.state
                .policy()
                .admit_bank(caller.schema(), bank.as_str(), Operation::Recall)?;
        Ok(())
    }

    /// A page of a bank's memories.
    pub async fn list_memories(
        &self,
        caller: &Caller,
        command: ListMemories,
    ) -> Result<MemoryPage, ApiError> {
        let bank = self.authorize(caller, &command.bank_id, Permission::Read)?;
        self.admit_read(caller, &bank)?;
        let query = ListQuery {
            filter: RecallFilter {
                tags: command.tags,
                time_range: command.time_range,
                fact_types: command.fact_types,
                ..Default::default()
            },
            text_prefix: command.text_prefix.filter(|t| !t.is_empty()),
            text_contains: command.text_contains.filter(|t| !t.is_empty()),
            group_id: None,
            order: command
                .order
                .as_deref()
                .filter(|o| !o.is_empty())
                .map(ListOrder::parse)
                .transpose()?
                .unwrap_or_default(),
            after: command
                .cursor
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(ListCursor::decode)
                .transpose()?,
            limit: page_size(command.limit)?,
        };
        self.run(
            "list",
            caller,
            self.state
                .engine()
                .list(caller.schema(), bank.as_str(), query),
        )
        .await
    }

    /// One visible memory with its retain's chunks and its change history.
    pub async fn memory(
        &self,
        caller: &Caller,
        bank_id: &str,
        memory_id: &str,
    ) -> Result<MemoryDetail, ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Read)?;
        self.admit_read(caller, &bank)?;
        self.run(
            "get",
            caller,
            self.state
                .engine()
                .memory(caller.schema(), bank.as_str(), memory_id),
        )
        .await?
        .ok_or_else(|| not_found(bank_id, memory_id))
    }

    /// Replaces a memory's tags and/or metadata.
    pub async fn update_memory(
        &self,
        caller: &Caller,
        bank_id: &str,
        memory_id: &str,
        patch: MemoryPatch,
    ) -> Result<Memory, ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Write)?;
        self.run(
            "update",
            caller,
            self.state
                .engine()
                .update_memory(caller.schema(), bank.as_str(), memory_id, patch),
        )
        .await?
        .ok_or_else(|| not_found(bank_id, memory_id))
    }

    /// Forgets one memory by id; a 404 when no visible memory has it.
    pub async fn forget_memory(
        &self,
        caller: &Caller,
        bank_id: &str,
        memory_id: &str,
    ) -> Result<(), ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Forget)?;
        let selector = ForgetSelector {
            memory_ids: Some(vec![memory_id.to_string()]),
            ..Default::default()
        };
        let forgotten = self
            .run(
                "forget",
                caller,
                self.state.engine().forget(
                    caller.schema(),
                    bank.as_str(),
                    &selector,
                    ForgetMode::Soft,
                ),
            )
            .await?;
        if forgotten == 0 {
            return Err(not_found(bank_id, memory_id));
        }
        Ok(())
    }

    /// A bank's entities, most-mentioned first.
    pub async fn entities(
        &self,
        caller: &Caller,
        bank_id: &str,
        prefix: Option<String>,
        kind: Option<String>,
        limit: Option<i64>,
    ) -> Result<Vec<astrocyte_core::store::EntitySummary>, ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Read)?;
        self.admit_read(caller, &bank)?;
        // An empty kind is not "any kind": the documented enum has no empty member.
        let kind = match kind.as_deref() {
            None => None,
            Some(raw) => Some(astrocyte_core::entities::EntityKind::parse(raw).ok_or_else(
                || {
                    Error::invalid(format!(
                        "kind must be person, place, organization, product or other, not {raw:?}"
                    ))
                },
            )?),
        };
        let query = astrocyte_core::store::EntityQuery {
            prefix: prefix.filter(|p| !p.is_empty()),
            kind,
            limit: page_size(limit.or(Some(100)))?,
        };
        self.run(
            "entities",
            caller,
            self.state
                .engine()
                .entities(caller.schema(), bank.as_str(), query),
        )
        .await
    }

    /// A page of a bank's change feed.
    pub async fn changes(
        &self,
        caller: &Caller,
        bank_id: &str,
        since: Option<String>,
        limit: Option<i64>,
        tail: bool,
    ) -> Result<ChangePage, ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Read)?;
        self.admit_read(caller, &bank)?;
        let query = ChangeQuery {
            since: since.filter(|s| !s.is_empty()),
            memory_id: None,
            limit: page_size(limit.or(Some(100)))?,
            tail,
        };
        self.run(
            "changes",
            caller,
            self.state
                .engine()
                .changes(caller.schema(), bank.as_str(), query),
        )
        .await
    }

    /// The tenant's background jobs in `state` (all when `None`), newest last, that concern a
    /// bank the caller may read.
    pub async fn jobs(
        &self,
        caller: &Caller,
        state: Option<astrocyte_core::jobs::JobState>,
        limit: usize,
    ) -> Result<Vec<astrocyte_core::jobs::Job>, ApiError> {
        let queue = self.queue(caller).await?;
        let jobs = self
            .run("jobs", caller, queue.list_jobs(state, limit))
            .await?;
        Ok(jobs
            .into_iter()
            .filter(|job| {
                job.payload
                    .get("bank_id")
                    .and_then(|b| b.as_str())
                    .is_none_or(|bank| self.authorize(caller, bank, Permission::Read).is_ok())
            })
            .collect())
    }

    /// Every tenant of the store (cross-tenant: callers pass the admin guard first).
    pub async fn tenants(&self) -> Result<Vec<astrocyte_core::tenancy::Tenant>, ApiError> {
        Ok(self.state.engine().store().list_tenants().await?)
    }

    /// The caller's readable banks with their memory counts and newest retain.
    pub async fn bank_summaries(&self, caller: &Caller) -> Result<Vec<BankSummary>, ApiError> {
        let banks = self.banks(caller, None).await?;
        let engine = self.state.engine();
        let schema = caller.schema().clone();
        self.run("banks", caller, async move {
            let tenant = engine.store().tenant(&schema).await?;
            let mut summaries = Vec::with_capacity(banks.len());
            for bank_id in banks {
                let bank = astrocyte_core::BankId::new(&bank_id)?;
                let newest = tenant
                    .list(
                        &bank,
                        &ListQuery {
                            limit: 1,
                            ..Default::default()
                        },
                    )
                    .await?;
                summaries.push(BankSummary {
                    memory_count: tenant.count(&bank).await?,
                    text_bytes: tenant.text_bytes(&bank).await?,
                    last_retained_at: newest.first().map(|m| m.retained_at),
                    bank_id,
                });
            }
            Ok(summaries)
        })
        .await
    }

    /// Starts a bank's export as a stream of AMA v1 JSON Lines. Access is checked before
    /// anything is sent; a failure after that ends the stream with an error, so the transport
    /// aborts the response instead of ending it cleanly.
    pub fn export_stream(
        &self,
        caller: &Caller,
        bank_id: &str,
        include_embeddings: bool,
    ) -> Result<impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static, ApiError> {
        self.authorize(caller, bank_id, Permission::Admin)?;
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let service = self.clone();
        let caller = caller.clone();
        let bank_id = bank_id.to_string();
        let task = tokio::spawn(async move {
            let written = service
                .export_to(&caller, &bank_id, include_embeddings, &mut writer)
                .await;
            match &written {
                Err(error) if error.is_client_gone() => {
                    tracing::debug!(bank = %bank_id, "export download cancelled by the client")
                }
                Err(error) => {
                    tracing::warn!(%error, bank = %bank_id, "export download ended early")
                }
                Ok(_) => {}
            }
            written
        });
        Ok(futures::stream::unfold(
            (reader, Some(task)),
            |(mut reader, task)| async move {
                let task = task?;
                let mut buffer = vec![0u8; 64 * 1024];
                match reader.read(&mut buffer).await {
                    // The writer is gone: the export ended, well or not.
                    Ok(0) => match task.await {
                        Ok(Ok(_)) => None,
                        Ok(Err(error)) => Some((
                            Err(std::io::Error::other(error.to_string())),
                            (reader, None),
                        )),
                        Err(join) => {
                            Some((Err(std::io::Error::other(join.to_string())), (reader, None)))
                        }
                    },
                    Ok(read) => {
                        buffer.truncate(read);
                        Some((Ok(buffer), (reader, Some(task))))
                    }
                    Err(error) => Some((Err(error), (reader, None))),
                }
            },
        ))
    }
}

fn not_found(bank_id: &str, memory_id: &str) -> ApiError {
    ApiError::Core(Error::NotFound(format!(
        "no memory {memory_id:?} in bank {bank_id:?}"
    )))
}
