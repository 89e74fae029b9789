//! list, get and changes: reading a bank the way a person browses it.

use std::time::Duration;

use anyhow::bail;
use astrocyte_core::browse::{ChangeEntry, ChangeQuery, ListCursor, ListOrder, ListQuery};
use astrocyte_core::{Engine, Memory, RecallFilter, Schema};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::args::{ChangesArgs, GetArgs, ListArgs};
use crate::commands::memory::parse_time;
use crate::output::print_json;

fn memory_json(m: &Memory) -> Value {
    json!({
        "memory_id": m.id,
        "bank_id": m.bank_id,
        "text": m.text,
        "tags": m.tags,
        "metadata": m.metadata,
        "fact_type": m.fact_type,
        "occurred_at": m.occurred_at,
        "retained_at": m.retained_at,
        "source": m.source,
        "chunk": m.chunk,
        "thread": m.thread,
    })
}

/// One line per memory: when, id, tags, and the start of the text.
fn memory_line(m: &Memory) -> String {
    let text: String = m.text.chars().take(100).collect();
    let more = if m.text.chars().count() > 100 {
        "…"
    } else {
        ""
    };
    let tags = if m.tags.is_empty() {
        String::new()
    } else {
        format!(" [{}]", m.tags.join(", "))
    };
    format!(
        "{}  {}{}  {}{}",
        m.effective_time().format("%Y-%m-%d %H:%M"),
        m.id,
        tags,
        text.replace('\n', " "),
        more
    )
}

fn bound(raw: Option<&str>, what: &str, edge: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    raw.map_or(Ok(edge), |raw| parse_time(raw, what))
}

pub async fn list(
    engine: &Engine,
    schema: &Schema,
    args: ListArgs,
    json: bool,
) -> anyhow::Result<()> {
    let time_range = if args.since.is_some() || args.until.is_some() {
        let first = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single();
        let last = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single();
        match (first, last) {
            (Some(first), Some(last)) => Some((
                bound(args.since.as_deref(), "--since", first)?,
                bound(args.until.as_deref(), "--until", last)?,
            )),
            _ => bail!("the calendar's edges are not representable"),
        }
    } else {
        None
    };
    let query = ListQuery {
        filter: RecallFilter {
            tags: (!args.tags.is_empty()).then_some(args.tags),
            fact_types: (!args.fact_types.is_empty()).then_some(args.fact_types),
            time_range,
            ..Default::default()
        },
        text_prefix: args.prefix,
        text_contains: args.contains,
        group_id: None,
        order: ListOrder::parse(&args.order)?,
        after: args.cursor.as_deref().map(ListCursor::decode).transpose()?,
        limit: args.limit,
    };
    let page = engine.list(schema, &args.bank, query).await?;
    if json {
        print_json(&json!({
            "memories": page.memories.iter().map(memory_json).collect::<Vec<_>>(),
            "next_cursor": page.next_cursor,
        }))?;
        return Ok(());
    }
    if page.memories.is_empty() {
        println!("no memories in bank {} match", args.bank);
    }
    for memory in &page.memories {
        println!("{}", memory_line(memory));
    }
    if let Some(cursor) = page.next_cursor {
        println!("more: --cursor {cursor}");
    }
    Ok(())
}

pub async fn get(
    engine: &Engine,
    schema: &Schema,
    args: GetArgs,
    json: bool,
) -> anyhow::Result<()> {
    let Some(detail) = engine.memory(schema, &args.bank, &args.id).await? else {
        bail!("no memory {:?} in bank {:?}", args.id, args.bank);
    };
    if json {
        print_json(&json!({
            "memory": memory_json(&detail.memory),
            "chunks": detail.chunks.iter().map(memory_json).collect::<Vec<_>>(),
            "history": detail.history,
        }))?;
        return Ok(());
    }
    let m = &detail.memory;
    println!("id:          {}", m.id);
    println!("bank:        {}", m.bank_id);
    println!("fact type:   {}", m.fact_type);
    if let Some(at) = m.occurred_at {
        println!("happened:    {}", at.to_rfc3339());
    }
    println!("retained:    {}", m.retained_at.to_rfc3339());
    if !m.tags.is_empty() {
        println!("tags:        {}", m.tags.join(", "));
    }
    if !m.metadata.is_empty() {
        println!("metadata:    {}", serde_json::to_string(&m.metadata)?);
    }
    if let Some(source) = &m.source {
        println!("source:      {source}");
    }
    if let Some(thread) = &m.thread {
        println!("thread:      {thread}");
    }
    if let Some(chunk) = &m.chunk {
        println!(
            "chunk:       {} of {} (group {})",
            chunk.index + 1,
            chunk.count,
            chunk.group_id
        );
    }
    println!("\n{}\n", m.text);
    for change in &detail.history {
        println!(
            "{}  {}",
            change.at.format("%Y-%m-%d %H:%M:%S"),
            change.kind.as_str()
        );
    }
    Ok(())
}

fn print_change(entry: &ChangeEntry, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(&json!({
                "cursor": entry.change.cursor,
                "kind": entry.change.kind,
                "memory_id": entry.change.memory_id,
                "at": entry.change.at,
                "memory": entry.memory.as_ref().map(memory_json),
            }))?
        );
    } else {
        let text = entry
            .memory
            .as_ref()
            .map(|m| {
                m.text
                    .chars()
                    .take(80)
                    .collect::<String>()
                    .replace('\n', " ")
            })
            .unwrap_or_default();
        println!(
            "{}  {:<9}  {}  {}",
            entry.change.at.format("%Y-%m-%d %H:%M:%S"),
            entry.change.kind.as_str(),
            entry.change.memory_id,
            text
        );
    }
    Ok(())
}

pub async fn changes(
    engine: &Engine,
    schema: &Schema,
    args: ChangesArgs,
    json: bool,
) -> anyhow::Result<()> {
    let mut since = args.since;
    loop {
        let page = engine
            .changes(
                schema,
                &args.bank,
                ChangeQuery {
                    since: since.clone(),
                    memory_id: None,
                    limit: args.limit,
                    tail: false,
                },
            )
            .await?;
        for entry in &page.changes {
            print_change(entry, json)?;
        }
        since = page.next_cursor;
        if page.has_more {
            continue;
        }
        if !args.follow {
            if !json {
                match &since {
                    Some(cursor) => println!("next: --since {cursor}"),
                    None => println!("no changes in bank {} yet", args.bank),
                }
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
