//! The inspector's pages: banks, a bank's memories, one memory (edit, forget), the recall
//! playground, activity (the change feed and the job queue) and, for an admin, the tenants.

use astrocyte_core::browse::MemoryPatch;
use astrocyte_core::jobs::{Job, JobState};
use astrocyte_core::{Memory, Metadata, RecallHit, RecallResult};
use axum::extract::{Form, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use super::layout::{bank_href, memory_href, notice, page, when, Tab};
use super::{caller, error_page, is_admin, signed_in};
use crate::dto::{comma_list, open_range, optional_field_datetime};
use crate::error::ApiError;
use crate::service::{ListMemories, Recall};
use crate::state::AppState;

/// Unwraps a page's work or renders its error.
macro_rules! attempt {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(error) => return error_page(error),
        }
    };
}

/// Resolves the caller or returns the response that replaces the page.
macro_rules! who {
    ($state:expr, $parts:expr) => {
        match caller(&$state, &$parts).await {
            Ok(caller) => caller,
            Err(response) => return response,
        }
    };
}

fn excerpt(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        out.push('…');
    }
    out
}

/// A day or instant from a form field; a bare date ends at its last second when `end`.
fn form_time(
    field: &str,
    raw: &Option<String>,
    end: bool,
) -> Result<Option<astrocyte_core::Timestamp>, ApiError> {
    let raw = raw.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let Some(raw) = raw else { return Ok(None) };
    let at = optional_field_datetime(field, Some(raw.to_string()))?;
    let is_date = raw.len() == 10;
    Ok(at.map(|t| {
        if end && is_date {
            t + chrono::Duration::days(1) - chrono::Duration::microseconds(1)
        } else {
            t
        }
    }))
}

fn range(
    from: &Option<String>,
    to: &Option<String>,
) -> Result<Option<(astrocyte_core::Timestamp, astrocyte_core::Timestamp)>, ApiError> {
    let start = form_time("from", from, false)?;
    let end = form_time("to", to, true)?;
    Ok(open_range(start, end))
}

/// `812 B`, `4.2 KB`, `1.3 MB`.
fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b < 1_000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} KB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} GB", b as f64 / 1e9),
    }
}

// --- Banks ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct BanksQuery {
    q: Option<String>,
}

pub async fn banks(
    State(state): State<AppState>,
    parts: Parts,
    Query(query): Query<BanksQuery>,
) -> Response {
    let caller = who!(state, parts);
    let mut summaries = attempt!(state.service().bank_summaries(&caller).await);
    let search = query.q.clone().unwrap_or_default();
    let needle = search.trim().to_lowercase();
    if !needle.is_empty() {
        summaries.retain(|s| s.bank_id.to_lowercase().contains(&needle));
    }
    let admin = is_admin(&state, &parts);
    page(
        signed_in(&parts),
        "Banks",
        None,
        html! {
            h1 { "Banks" }
            p class="muted" { "Tenant " code { (caller.schema()) } }
            form method="get" action="/ui" class="row" role="search" {
                label for="q" { "Find a bank" }
                input id="q" name="q" type="search" value=(search);
                button type="submit" { "Search" }
            }
            @if summaries.is_empty() {
                p { @if needle.is_empty() { "No bank holds memories yet. Retain one through the API, MCP or "
                    code { "astrocyte retain" } " and it appears here." } @else { "No bank matches." } }
            } @else {
                table {
                    caption class="sr-only" { "Banks with their memory counts" }
                    thead { tr { th scope="col" { "Bank" } th scope="col" class="num" { "Memories" } th scope="col" class="num" { "Text size" } th scope="col" { "Last write" } } }
                    tbody {
                        @for s in &summaries {
                            tr {
                                td { a href=(bank_href(&s.bank_id)) { (s.bank_id) } }
                                td class="num" { (s.memory_count) }
                                td class="num" { (human_bytes(s.text_bytes)) }
                                td { @if let Some(at) = &s.last_retained_at { (when(at)) } @else { "—" } }
                            }
                        }
                    }
                }
            }
            @if admin {
                p { a href="/ui/tenants" { "All tenants (admin)" } }
            }
        },
    )
    .into_response()
}

pub async fn tenants(State(state): State<AppState>, parts: Parts) -> Response {
    let _caller = who!(state, parts);
    let info = super::request_info(&parts);
    attempt!(state.service().authorize_admin(&info));
    let tenants = attempt!(state.service().tenants().await);
    page(
        signed_in(&parts),
        "Tenants",
        None,
        html! {
            h1 { "Tenants" }
            p class="muted" { "Every tenant of this store. Each tenant's banks are visible only with that tenant's credentials." }
            ul { @for t in &tenants { li { code { (t.schema) } } } }
        },
    )
    .into_response()
}

// --- Memories -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
pub struct MemoriesQuery {
    contains: Option<String>,
    tags: Option<String>,
    from: Option<String>,
    to: Option<String>,
    order: Option<String>,
    cursor: Option<String>,
    forgotten: Option<String>,
}

fn memories_query_string(query: &MemoriesQuery, cursor: Option<&str>) -> String {
    let mut pairs = Vec::new();
    for (name, value) in [
        ("contains", &query.contains),
        ("tags", &query.tags),
        ("from", &query.from),
        ("to", &query.to),
        ("order", &query.order),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            pairs.push(format!("{name}={}", super::layout::segment(value)));
        }
    }
    if let Some(cursor) = cursor {
        pairs.push(format!("cursor={}", super::layout::segment(cursor)));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

pub async fn memories(
    State(state): State<AppState>,
    parts: Parts,
    Path(bank_id): Path<String>,
    Query(query): Query<MemoriesQuery>,
) -> Response {
    let caller = who!(state, parts);
    let command = ListMemories {
        bank_id: bank_id.clone(),
        limit: Some(25),
        cursor: query.cursor.clone(),
        order: query.order.clone().filter(|o| !o.is_empty()),
        tags: comma_list(query.tags.as_deref()),
        time_range: attempt!(range(&query.from, &query.to)),
        text_contains: query.contains.clone().filter(|c| !c.trim().is_empty()),
        ..Default::default()
    };
    let page_of = attempt!(state.service().list_memories(&caller, command).await);
    let order = query.order.clone().unwrap_or_else(|| "newest".into());
    let filtered = [&query.contains, &query.tags, &query.from, &query.to]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.is_empty()));
    page(
        signed_in(&parts),
        &format!("Memories of {bank_id}"),
        Some((&bank_id, Tab::Memories)),
        html! {
            h1 { "Memories" }
            @if let Some(id) = &query.forgotten { (notice(&format!("Memory {id} was forgotten; it is gone from this list and logged in the activity feed."))) }
            form method="get" action=(bank_href(&bank_id)) class="filters" aria-label="Filter memories" {
                div { label for="contains" { "Text contains" } input id="contains" name="contains" type="search" value=(query.contains.clone().unwrap_or_default()); }
                div { label for="tags" { "Tags (any, comma-separated)" } input id="tags" name="tags" value=(query.tags.clone().unwrap_or_default()); }
                div { label for="from" { "From" } input id="from" name="from" type="date" value=(query.from.clone().unwrap_or_default()); }
                div { label for="to" { "To" } input id="to" name="to" type="date" value=(query.to.clone().unwrap_or_default()); }
                div {
                    label for="order" { "Order" }
                    select id="order" name="order" {
                        option value="newest" selected[order == "newest"] { "Newest first" }
                        option value="id" selected[order == "id"] { "By id" }
                    }
                }
                div class="actions" {
                    button type="submit" { "Apply" }
                    @if filtered { a href=(bank_href(&bank_id)) { "Clear filters" } }
                }
            }
            @if page_of.memories.is_empty() {
                p { "No memories match." }
            } @else {
                ol class="memories" {
                    @for m in &page_of.memories { li { (memory_card(&bank_id, m)) } }
                }
            }
            nav aria-label="Pages" class="pager" {
                @if query.cursor.is_some() {
                    a href=(format!("{}{}", bank_href(&bank_id), memories_query_string(&query, None))) { "First page" }
                }
                @if let Some(next) = &page_of.next_cursor {
                    a href=(format!("{}{}", bank_href(&bank_id), memories_query_string(&query, Some(next)))) rel="next" { "Next page" }
                }
            }
        },
    )
    .into_response()
}

fn tag_list(tags: &[String]) -> Markup {
    html! {
        @if !tags.is_empty() {
            ul class="tags" aria-label="Tags" { @for t in tags { li { (t) } } }
        }
    }
}

fn memory_card(bank_id: &str, m: &Memory) -> Markup {
    html! {
        article class="memory" {
            p class="meta" {
                (when(&m.effective_time()))
                " · " span class="muted" { (m.fact_type) }
            }
            p class="text" { a href=(memory_href(bank_id, &m.id)) { (excerpt(&m.text, 240)) } }
            (tag_list(&m.tags))
        }
    }
}

// --- One memory -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
pub struct MemoryQuery {
    saved: Option<String>,
}

pub async fn memory(
    State(state): State<AppState>,
    parts: Parts,
    Path((bank_id, memory_id)): Path<(String, String)>,
    Query(query): Query<MemoryQuery>,
) -> Response {
    let caller = who!(state, parts);
    let detail = attempt!(state.service().memory(&caller, &bank_id, &memory_id).await);
    memory_page(
        signed_in(&parts),
        &bank_id,
        &detail,
        query.saved.is_some(),
        None,
        None,
    )
    .into_response()
}

fn memory_page(
    chrome: bool,
    bank_id: &str,
    detail: &astrocyte_core::browse::MemoryDetail,
    saved: bool,
    error: Option<&str>,
    draft: Option<&EditForm>,
) -> Markup {
    let m = &detail.memory;
    let tags_value = draft
        .map(|d| d.tags.clone())
        .unwrap_or_else(|| m.tags.join(", "));
    let metadata_value = draft.map(|d| d.metadata.clone()).unwrap_or_else(|| {
        serde_json::to_string_pretty(&m.metadata).unwrap_or_else(|_| "{}".into())
    });
    page(
        chrome,
        "Memory",
        Some((bank_id, Tab::Memories)),
        html! {
            h1 { "Memory" }
            @if saved { (notice("Saved.")) }
            @if let Some(error) = error { p role="alert" class="error" { (error) } }
            p class="text full" { (m.text) }
            dl class="facts" {
                dt { "Id" } dd { code { (m.id) } }
                dt { "Fact type" } dd { (m.fact_type) }
                dt { "Happened" } dd { @if let Some(at) = &m.occurred_at { (when(at)) } @else { "not given" } }
                dt { "Retained" } dd { (when(&m.retained_at)) }
                dt { "Tags" } dd { @if m.tags.is_empty() { "none" } @else { (tag_list(&m.tags)) } }
                dt { "Metadata" } dd { @if m.metadata.is_empty() { "none" } @else { pre { (serde_json::to_string_pretty(&m.metadata).unwrap_or_default()) } } }
                @if let Some(source) = &m.source { dt { "Source" } dd { (source) } }
                @if let Some(thread) = &m.thread { dt { "Thread" } dd { code { (thread) } } }
            }
            @if detail.chunks.len() > 1 {
                h2 { "Chunks of the same retain" }
                ol class="chunks" {
                    @for c in &detail.chunks {
                        li {
                            @if c.id == m.id { strong aria-current="true" { (excerpt(&c.text, 160)) " (this one)" } }
                            @else { a href=(memory_href(bank_id, &c.id)) { (excerpt(&c.text, 160)) } }
                        }
                    }
                }
            }
            h2 { "History" }
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Change" } } }
                tbody { @for c in &detail.history { tr { td { (when(&c.at)) } td { (c.kind.as_str()) } } } }
            }
            h2 { "Edit" }
            form method="post" action=(memory_href(bank_id, &m.id)) class="stack" {
                label for="tags" { "Tags (comma-separated)" }
                input id="tags" name="tags" value=(tags_value);
                label for="metadata" { "Metadata (a JSON object of strings, numbers, booleans or null)" }
                textarea id="metadata" name="metadata" rows="6" { (metadata_value) }
                button type="submit" { "Save" }
            }
            h2 { "Forget" }
            p { a class="danger" href=(format!("{}/forget", memory_href(bank_id, &m.id))) { "Forget this memory…" } }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    tags: String,
    #[serde(default)]
    metadata: String,
}

pub async fn edit(
    State(state): State<AppState>,
    parts: Parts,
    Path((bank_id, memory_id)): Path<(String, String)>,
    Form(form): Form<EditForm>,
) -> Response {
    let caller = who!(state, parts);
    let tags: Vec<String> = form
        .tags
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let metadata: Result<Metadata, String> = if form.metadata.trim().is_empty() {
        Ok(Metadata::new())
    } else {
        serde_json::from_str::<Metadata>(&form.metadata)
            .map_err(|e| format!("Metadata is not a JSON object: {e}"))
    };
    let outcome = match metadata {
        Ok(metadata) => state
            .service()
            .update_memory(
                &caller,
                &bank_id,
                &memory_id,
                MemoryPatch {
                    tags: Some(tags),
                    metadata: Some(metadata),
                },
            )
            .await
            .map_err(|e| (e.code(), e.to_string())),
        Err(message) => Err((crate::error::ErrorCode::InvalidInput, message)),
    };
    match outcome {
        Ok(_) => {
            Redirect::to(&format!("{}?saved=1", memory_href(&bank_id, &memory_id))).into_response()
        }
        Err((crate::error::ErrorCode::InvalidInput, message)) => {
            let detail = attempt!(state.service().memory(&caller, &bank_id, &memory_id).await);
            (
                axum::http::StatusCode::BAD_REQUEST,
                memory_page(
                    signed_in(&parts),
                    &bank_id,
                    &detail,
                    false,
                    Some(&message),
                    Some(&form),
                ),
            )
                .into_response()
        }
        Err((code, message)) => error_page(match code {
            crate::error::ErrorCode::NotFound => {
                ApiError::Core(astrocyte_core::Error::NotFound(message))
            }
            crate::error::ErrorCode::Forbidden => ApiError::Forbidden(message),
            _ => ApiError::Core(astrocyte_core::Error::Internal(message)),
        }),
    }
}

pub async fn confirm_forget(
    State(state): State<AppState>,
    parts: Parts,
    Path((bank_id, memory_id)): Path<(String, String)>,
) -> Response {
    let caller = who!(state, parts);
    let detail = attempt!(state.service().memory(&caller, &bank_id, &memory_id).await);
    page(
        signed_in(&parts),
        "Forget a memory",
        Some((&bank_id, Tab::Memories)),
        html! {
            h1 { "Forget this memory?" }
            blockquote { (detail.memory.text) }
            p { "It stops being recalled at once. It stays visible to time-travel queries (" code { "as_of" } ") until erased by a lifecycle job." }
            form method="post" action=(format!("{}/forget", memory_href(&bank_id, &memory_id))) class="row" {
                button type="submit" class="danger" { "Forget" }
                a href=(memory_href(&bank_id, &memory_id)) { "Cancel" }
            }
        },
    )
    .into_response()
}

pub async fn forget(
    State(state): State<AppState>,
    parts: Parts,
    Path((bank_id, memory_id)): Path<(String, String)>,
) -> Response {
    let caller = who!(state, parts);
    attempt!(
        state
            .service()
            .forget_memory(&caller, &bank_id, &memory_id)
            .await
    );
    Redirect::to(&format!(
        "{}?forgotten={}",
        bank_href(&bank_id),
        super::layout::segment(&memory_id)
    ))
    .into_response()
}

// --- Recall playground ----------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
pub struct RecallQuery {
    q: Option<String>,
    tags: Option<String>,
    from: Option<String>,
    to: Option<String>,
    max_results: Option<String>,
    max_tokens: Option<String>,
}

fn number(field: &str, raw: &Option<String>) -> Result<Option<i64>, ApiError> {
    match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("{field} must be a whole number"))),
    }
}

pub async fn recall(
    State(state): State<AppState>,
    parts: Parts,
    Path(bank_id): Path<String>,
    Query(query): Query<RecallQuery>,
) -> Response {
    let caller = who!(state, parts);
    let text = query.q.clone().unwrap_or_default();
    let result = if text.trim().is_empty() {
        None
    } else {
        let command = Recall {
            query: text.clone(),
            banks: vec![bank_id.clone()],
            max_results: attempt!(number("max_results", &query.max_results)),
            max_tokens: attempt!(number("max_tokens", &query.max_tokens)),
            tags: comma_list(query.tags.as_deref()),
            time_range: attempt!(range(&query.from, &query.to)),
            as_of: None,
        };
        Some(attempt!(state.service().recall(&caller, command).await))
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    page(
        signed_in(&parts),
        "Recall playground",
        Some((&bank_id, Tab::Recall)),
        html! {
            h1 { "Recall playground" }
            p class="muted" { "Runs a real recall and shows, for each hit, where every strategy ranked it and what that added to the fused score." }
            form method="get" action=(format!("{}/recall", bank_href(&bank_id))) class="filters" aria-label="Recall" {
                div class="wide" { label for="q" { "Query" } input id="q" name="q" type="search" required value=(text); }
                div { label for="tags" { "Tags (any)" } input id="tags" name="tags" value=(value(&query.tags)); }
                div { label for="from" { "From" } input id="from" name="from" type="date" value=(value(&query.from)); }
                div { label for="to" { "To" } input id="to" name="to" type="date" value=(value(&query.to)); }
                div { label for="max_results" { "Max results" } input id="max_results" name="max_results" type="number" min="1" value=(value(&query.max_results)); }
                div { label for="max_tokens" { "Token budget" } input id="max_tokens" name="max_tokens" type="number" min="1" value=(value(&query.max_tokens)); }
                div class="actions" { button type="submit" { "Recall" } }
            }
            @if let Some(result) = &result { (recall_result(&bank_id, result)) }
        },
    )
    .into_response()
}

fn rank_cell(hit: &RecallHit, strategy: &str) -> Markup {
    match hit.ranks.iter().find(|r| r.strategy == strategy) {
        // Recency's own score is a time; its contribution (by age) says what it means here.
        Some(r) => html! {
            td class="num" data-strategy=(strategy) {
                "#" (r.rank)
                @if strategy != "recency" { span class="muted" { " " (format!("{:.3}", r.score)) } }
                br;
                span class="muted small" { "+" (format!("{:.4}", r.contribution)) }
            }
        },
        None => html! { td class="num muted" data-strategy=(strategy) { "—" } },
    }
}

fn recall_result(bank_id: &str, result: &RecallResult) -> Markup {
    let trace = &result.trace;
    html! {
        h2 { "Hits" }
        @if result.hits.is_empty() {
            p { "Nothing matched." }
        } @else {
            div class="scroll" {
                table class="hits" {
                    caption class="sr-only" { "Hits with each strategy's rank, score and contribution" }
                    thead { tr {
                        th scope="col" class="num" { "Rank" }
                        th scope="col" { "Memory" }
                        th scope="col" class="num" { "Fused" }
                        th scope="col" class="num" { "Semantic" }
                        th scope="col" class="num" { "Keyword" }
                        th scope="col" class="num" { "Recency" }
                    } }
                    tbody {
                        @for (i, hit) in result.hits.iter().enumerate() {
                            tr {
                                td class="num" { (i + 1) }
                                td { a href=(memory_href(bank_id, &hit.memory.id)) { (excerpt(&hit.memory.text, 160)) } }
                                td class="num" {
                                    (format!("{:.3}", hit.score))
                                    @if hit.ranks.iter().any(|r| r.strategy == "time") { br; span class="muted small" { "time fit" } }
                                }
                                (rank_cell(hit, "semantic"))
                                (rank_cell(hit, "keyword"))
                                (rank_cell(hit, "recency"))
                            }
                        }
                    }
                }
            }
        }
        h2 { "Trace" }
        dl class="facts" {
            dt { "Strategies" } dd { (trace.strategies_used.join(", ")) }
            dt { "Time in the query" } dd { @if let Some(hint) = &trace.time_hint { (hint) } @else { "none found" } }
            dt { "Candidates" } dd {
                (trace.total_candidates) " after fusion ("
                (trace.strategy_candidate_counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
                ")"
            }
            dt { "Timings" } dd {
                (trace.strategy_timings_ms.iter().map(|(k, v)| format!("{k} {v:.2} ms")).collect::<Vec<_>>().join(", "))
                "; total " (format!("{:.2}", trace.latency_ms)) " ms"
            }
            dt { "Cut" } dd {
                (result.hits.len()) " shown of " (result.total_available)
                @if trace.dropped_by_token_budget > 0 { "; the token budget dropped " (trace.dropped_by_token_budget) }
                @if result.truncated { " (truncated)" }
            }
        }
    }
}

// --- Activity -------------------------------------------------------------------------------

pub async fn activity(
    State(state): State<AppState>,
    parts: Parts,
    Path(bank_id): Path<String>,
) -> Response {
    let caller = who!(state, parts);
    let feed = attempt!(
        state
            .service()
            .changes(&caller, &bank_id, None, Some(50), true)
            .await
    );
    let jobs = match state.service().jobs(&caller, None, 200).await {
        Ok(jobs) => Some(jobs),
        // A store without a queue has no jobs to show; anything else is an error.
        Err(error) if error.code() == crate::error::ErrorCode::Unsupported => None,
        Err(error) => return error_page(error),
    };
    let jobs_of = |state: JobState| -> Vec<&Job> {
        jobs.iter()
            .flatten()
            .filter(|j| j.state == state)
            .filter(|j| j.payload.get("bank_id").and_then(|b| b.as_str()) == Some(bank_id.as_str()))
            .collect()
    };
    page(
        signed_in(&parts),
        "Activity",
        Some((&bank_id, Tab::Activity)),
        html! {
            h1 { "Activity" }
            h2 id="feed-heading" { "Changes" }
            p class="muted" { "Newest last. " span id="live" role="status" aria-live="polite" { "Reload the page to see new changes." } }
            table aria-labelledby="feed-heading" data-feed=(format!("{}/activity.json", bank_href(&bank_id))) data-cursor=(feed.next_cursor.clone().unwrap_or_default()) {
                thead { tr { th scope="col" { "When" } th scope="col" { "Change" } th scope="col" { "Memory" } } }
                tbody id="feed" {
                    @for entry in &feed.changes {
                        tr class=(entry.change.kind.as_str()) {
                            td { (when(&entry.change.at)) }
                            td { (entry.change.kind.as_str()) }
                            td {
                                @if let Some(m) = &entry.memory { a href=(memory_href(&bank_id, &m.id)) { (excerpt(&m.text, 120)) } }
                                @else { code { (entry.change.memory_id) } }
                            }
                        }
                    }
                }
            }
            @if feed.changes.is_empty() { p { "No changes yet." } }
            h2 { "Jobs" }
            @match &jobs {
                None => p { "This store keeps no job queue." },
                Some(_) => {
                    (job_table("Queued", &jobs_of(JobState::Queued)))
                    (job_table("Running", &jobs_of(JobState::Running)))
                    (job_table("Failed (dead letters)", &jobs_of(JobState::Dead)))
                }
            }
        },
    )
    .into_response()
}

fn job_table(title: &str, jobs: &[&Job]) -> Markup {
    html! {
        h3 { (title) " (" (jobs.len()) ")" }
        @if !jobs.is_empty() {
            table {
                thead { tr { th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" class="num" { "Attempts" } th scope="col" { "Created" } th scope="col" { "Error" } } }
                tbody {
                    @for j in jobs {
                        tr {
                            td { code { (j.id) } }
                            td { (j.kind) }
                            td class="num" { (j.attempts) "/" (j.max_attempts) }
                            td { (when(&j.created_at)) }
                            td { (j.last_error.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    since: Option<String>,
}

/// New changes after a cursor, for the activity page's live updates.
pub async fn activity_json(
    State(state): State<AppState>,
    parts: Parts,
    Path(bank_id): Path<String>,
    Query(query): Query<FeedQuery>,
) -> Response {
    let caller = match caller(&state, &parts).await {
        Ok(caller) => caller,
        Err(_) => return ApiError::AuthenticationFailed.into_response(),
    };
    match state
        .service()
        .changes(&caller, &bank_id, query.since, Some(100), false)
        .await
    {
        Ok(page) => Json(json!({
            "next_cursor": page.next_cursor,
            "changes": page.changes.iter().map(|e| json!({
                "at": e.change.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                "at_iso": e.change.at.to_rfc3339(),
                "kind": e.change.kind.as_str(),
                "memory_id": e.change.memory_id,
                "text": e.memory.as_ref().map(|m| excerpt(&m.text, 120)),
                "href": e.memory.as_ref().map(|m| memory_href(&bank_id, &m.id)),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(error) => error.into_response(),
    }
}
