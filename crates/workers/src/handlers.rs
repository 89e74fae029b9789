//! What each job kind does. Handlers are plain async functions over the Engine and the tenant
//! store; they must be safe to run twice (a worker can die after the work but before marking
//! the job done), which each one documents.

use std::collections::BTreeSet;

use astrocyte_core::embed::EmbedPurpose;
use astrocyte_core::jobs::{
    ConsolidateJob, Job, JobSpec, LegalHoldKey, LifecycleJob, ObserveJob, ReembedJob,
};
use astrocyte_core::store::{EmbeddingSpace, SearchRequest};
use astrocyte_core::{
    BankId, Engine, Error, ForgetMode, ForgetSelector, RecallFilter, Result, Schema,
};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

const PAGE: usize = 500;

/// Runs one job and returns its result.
pub async fn run(engine: &Engine, schema: &Schema, job: &Job) -> Result<Value> {
    match JobSpec::of(job)? {
        // Twice-safe: a second run finds every chunk a near-duplicate of the first and stores nothing.
        JobSpec::Retain(request) => {
            let outcome = engine.retain(schema, request).await?;
            Ok(serde_json::to_value(outcome).map_err(|e| Error::Internal(e.to_string()))?)
        }
        JobSpec::Reembed(job) => reembed(engine, schema, job).await,
        JobSpec::Lifecycle(job) => lifecycle(engine, schema, job).await,
        JobSpec::Consolidate(job) => consolidate(engine, schema, job).await,
        // Twice-safe: memories an observation cites are not read again, and a repeated fact
        // is a near-duplicate on retain.
        JobSpec::Observe(job) => {
            let max = job.max_sources.unwrap_or(ObserveJob::DEFAULT_MAX_SOURCES);
            let outcome =
                astrocyte_core::observe::observe(engine, schema, &job.bank_id, max).await?;
            Ok(serde_json::to_value(outcome).map_err(|e| Error::Internal(e.to_string()))?)
        }
    }
}

/// Twice-safe: re-embedding is a pure function of the text and the model.
async fn reembed(engine: &Engine, schema: &Schema, job: ReembedJob) -> Result<Value> {
    let bank = BankId::new(&job.bank_id)?;
    // Not `engine.tenant()`: that checks the recorded space, which is what this job changes.
    let tenant = engine.store().tenant(schema).await?;
    let space = EmbeddingSpace {
        model: engine.embedder().model().to_string(),
        dimension: engine.embedder().dimension(),
    };
    let mut after: Option<String> = None;
    let mut done = 0usize;
    loop {
        let page = tenant.scan(&bank, after.as_ref(), PAGE, false).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let texts: Vec<String> = page.iter().map(|m| m.text.clone()).collect();
        let vectors = engine.embed_all(&texts, EmbedPurpose::Document).await?;
        let pairs = page
            .iter()
            .map(|m| m.id.clone())
            .zip(vectors)
            .collect::<Vec<_>>();
        done += pairs.len();
        tenant.replace_embeddings(&space, pairs).await?;
        if texts.len() < PAGE {
            break;
        }
    }
    engine.invalidate_tenant(schema);
    Ok(json!({"reembedded": done, "model": space.model}))
}

/// Twice-safe: forgetting what is already forgotten affects nothing.
async fn lifecycle(engine: &Engine, schema: &Schema, job: LifecycleJob) -> Result<Value> {
    let bank = BankId::new(&job.bank_id)?;
    let tenant = engine.store().tenant(schema).await?;
    if let Some(hold) = tenant
        .setting(LegalHoldKey::of(&bank).as_str())
        .await?
        .filter(|v| !v.is_null() && v != &Value::Bool(false))
    {
        return Ok(json!({"skipped": "legal_hold", "hold": hold}));
    }
    let now = Utc::now();
    let exempt: BTreeSet<&str> = job.exempt_tags.iter().map(String::as_str).collect();
    let mut results = serde_json::Map::new();
    // Purge first so archived-then-purged memories are not counted twice.
    for (mode, days, name) in [
        (ForgetMode::Purge, job.delete_after_days, "deleted"),
        (ForgetMode::Soft, job.archive_after_days, "archived"),
    ] {
        let Some(days) = days else { continue };
        let cutoff = now - Duration::days(days.max(0));
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = tenant.scan(&bank, after.as_ref(), PAGE, false).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full = page.len() == PAGE;
            ids.extend(
                page.into_iter()
                    .filter(|m| m.effective_time() < cutoff)
                    .filter(|m| !m.tags.iter().any(|t| exempt.contains(t.as_str())))
                    .map(|m| m.id),
            );
            if !full {
                break;
            }
        }
        let count = if ids.is_empty() {
            0
        } else {
            let selector = ForgetSelector {
                memory_ids: Some(ids),
                ..Default::default()
            };
            tenant.forget(&bank, &selector, mode, now).await?
        };
        results.insert(name.into(), json!(count));
    }
    Ok(Value::Object(results))
}

/// Twice-safe: the second run finds the duplicates already forgotten.
async fn consolidate(engine: &Engine, schema: &Schema, job: ConsolidateJob) -> Result<Value> {
    let bank = BankId::new(&job.bank_id)?;
    let threshold = job.threshold.unwrap_or(engine.config().dedup_threshold);
    let tenant = engine.tenant(schema).await?;
    let mut forgotten: BTreeSet<String> = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = tenant.scan(&bank, after.as_ref(), PAGE, true).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let full = page.len() == PAGE;
        for memory in page {
            if forgotten.contains(&memory.id) {
                continue;
            }
            let Some(vector) = memory.embedding.clone() else {
                continue;
            };
            let response = tenant
                .search(&SearchRequest {
                    banks: vec![bank.clone()],
                    vector: Some(vector),
                    text: None,
                    recency: false,
                    limit: 8,
                    filter: RecallFilter::default(),
                })
                .await?;
            // Ids are time-ordered (UUID v7): keep the oldest, forget the newer twins.
            for hit in response.semantic.map(|s| s.hits).unwrap_or_default() {
                if hit.memory.id > memory.id && hit.score >= threshold {
                    forgotten.insert(hit.memory.id);
                }
            }
        }
        if !full {
            break;
        }
    }
    let count = if forgotten.is_empty() {
        0
    } else {
        let selector = ForgetSelector {
            memory_ids: Some(forgotten.into_iter().collect()),
            ..Default::default()
        };
        tenant
            .forget(&bank, &selector, ForgetMode::Soft, Utc::now())
            .await?
    };
    Ok(json!({"consolidated": count}))
}
