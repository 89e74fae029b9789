//! retain, recall, reflect, forget, banks, export and import.

use anyhow::{bail, Context};
use astrocyte_core::portability::OnConflict;
use astrocyte_core::{
    ContentType, Engine, ForgetMode, ForgetSelector, Metadata, RecallFilter, RecallRequest,
    ReflectRequest, RetainRequest, Schema,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use crate::args::{ExportArgs, ForgetArgs, ImportArgs, RecallArgs, ReflectArgs, RetainArgs};
use crate::output::{hit_json, print_json};

/// Parses RFC 3339, or a bare date taken as midnight UTC.
pub fn parse_time(raw: &str, what: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    bail!("{what} {raw:?} is not an RFC 3339 time or a YYYY-MM-DD date")
}

pub async fn retain(
    engine: &Engine,
    schema: &Schema,
    args: RetainArgs,
    json: bool,
) -> anyhow::Result<()> {
    let content = if args.content == "-" {
        let mut buffer = String::new();
        tokio::io::stdin()
            .read_to_string(&mut buffer)
            .await
            .context("reading content from standard input")?;
        buffer
    } else {
        args.content
    };
    let content_type: ContentType =
        serde_json::from_value(json!(args.content_type)).map_err(|_| {
            anyhow::anyhow!(
                "content type {:?} is not one of text, conversation, document",
                args.content_type
            )
        })?;
    let occurred_at = args
        .occurred_at
        .as_deref()
        .map(|t| parse_time(t, "occurred_at"))
        .transpose()?;
    let metadata: Metadata = args
        .metadata
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let outcome = engine
        .retain(
            schema,
            RetainRequest {
                bank_id: args.bank,
                content,
                tags: args.tags,
                metadata,
                occurred_at,
                content_type,
                fact_type: args.fact_type,
                source: args.source,
                context: None,
                thread_id: args.thread,
            },
        )
        .await?;
    if json {
        print_json(&json!({
            "stored": outcome.stored,
            "memory_id": outcome.memory_id,
            "memory_ids": outcome.memory_ids,
            "deduplicated": outcome.deduplicated,
            "error": outcome.error,
            "warnings": outcome.warnings,
        }))?;
    } else if outcome.stored {
        println!("stored {}", outcome.memory_ids.join(" "));
    } else if outcome.deduplicated {
        println!(
            "not stored: near-duplicate of {}",
            outcome.memory_id.unwrap_or_default()
        );
    }
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    match outcome.error {
        Some(error) if !outcome.stored && !outcome.deduplicated => bail!("not stored: {error}"),
        _ => Ok(()),
    }
}

pub async fn recall(
    engine: &Engine,
    schema: &Schema,
    args: RecallArgs,
    json: bool,
) -> anyhow::Result<()> {
    let as_of = args
        .as_of
        .as_deref()
        .map(|t| parse_time(t, "as_of"))
        .transpose()?;
    let result = engine
        .recall(
            schema,
            RecallRequest {
                query: args.query,
                banks: args.banks,
                max_results: Some(args.max_results),
                max_tokens: args.max_tokens,
                filter: RecallFilter {
                    tags: (!args.tags.is_empty()).then_some(args.tags),
                    as_of,
                    ..Default::default()
                },
            },
        )
        .await?;
    if json {
        print_json(&json!({
            "hits": result.hits.iter().map(hit_json).collect::<Vec<_>>(),
            "total_available": result.total_available,
            "truncated": result.truncated,
            "trace": result.trace,
        }))?;
    } else if result.hits.is_empty() {
        println!("no memories found");
    } else {
        for hit in &result.hits {
            println!("{:.3}  {}  {}", hit.score, hit.memory.id, hit.memory.text);
        }
    }
    Ok(())
}

pub async fn reflect(
    engine: &Engine,
    schema: &Schema,
    args: ReflectArgs,
    json: bool,
) -> anyhow::Result<()> {
    let result = engine
        .reflect(
            schema,
            ReflectRequest {
                query: args.query,
                bank_id: args.bank,
                max_tokens: args.max_tokens,
            },
        )
        .await?;
    if json {
        print_json(&json!({
            "answer": result.answer,
            "confidence": result.confidence,
            "mode": result.mode,
            "sources": result.sources.iter().map(hit_json).collect::<Vec<_>>(),
        }))?;
    } else {
        println!("{}", result.answer);
    }
    Ok(())
}

pub async fn forget(
    engine: &Engine,
    schema: &Schema,
    args: ForgetArgs,
    json: bool,
) -> anyhow::Result<()> {
    if args.ids.is_empty() && args.tags.is_empty() && args.before.is_none() && !args.all {
        anyhow::bail!("forget needs --id, --tag, --before or --all (it never reads an empty selector as everything)");
    }
    let selector = ForgetSelector {
        memory_ids: (!args.ids.is_empty()).then_some(args.ids),
        tags: (!args.tags.is_empty()).then_some(args.tags),
        before: args
            .before
            .as_deref()
            .map(|t| parse_time(t, "before"))
            .transpose()?,
        all: args.all,
    };
    let mode = if args.purge {
        ForgetMode::Purge
    } else {
        ForgetMode::Soft
    };
    let count = engine.forget(schema, &args.bank, &selector, mode).await?;
    if json {
        print_json(&json!({"deleted_count": count, "archived_count": 0}))?;
    } else {
        println!("forgot {count} memories");
    }
    Ok(())
}

pub async fn banks(engine: &Engine, schema: &Schema, json: bool) -> anyhow::Result<()> {
    let banks = engine.list_banks(schema).await?;
    if json {
        print_json(&json!({ "banks": banks }))?;
    } else if banks.is_empty() {
        println!("no banks in tenant {schema} yet (`astrocyte retain --bank NAME TEXT` makes one)");
    } else {
        for bank in banks {
            println!("{bank}");
        }
    }
    Ok(())
}

pub async fn export(
    engine: &Engine,
    schema: &Schema,
    args: ExportArgs,
    json: bool,
) -> anyhow::Result<()> {
    let count = match &args.out {
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .with_context(|| format!("creating {}", path.display()))?;
            let mut writer = tokio::io::BufWriter::new(file);
            engine
                .export(schema, &args.bank, args.include_embeddings, &mut writer)
                .await?
        }
        None => {
            let mut stdout = tokio::io::stdout();
            engine
                .export(schema, &args.bank, args.include_embeddings, &mut stdout)
                .await?
        }
    };
    if let Some(path) = &args.out {
        if json {
            print_json(&json!({"bank_id": args.bank, "path": path, "exported_count": count}))?;
        } else {
            println!("exported {count} memories to {}", path.display());
        }
    }
    Ok(())
}

pub async fn import(
    engine: &Engine,
    schema: &Schema,
    args: ImportArgs,
    json: bool,
) -> anyhow::Result<()> {
    let on_conflict: OnConflict = serde_json::from_value(json!(args.on_conflict))
        .map_err(|_| anyhow::anyhow!("--on-conflict must be skip or overwrite"))?;
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("cannot read import file {}", args.file.display()))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let reader = Counted {
        inner: file,
        read: read.clone(),
    };
    // A bar on a terminal only: redirected output stays clean.
    let ticker =
        (!json && std::io::stderr().is_terminal()).then(|| tokio::spawn(show_progress(read, size)));
    let report = engine
        .import(schema, &args.bank, on_conflict, BufReader::new(reader))
        .await;
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r{:60}\r", "");
    }
    let report = report?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "imported {}, skipped {}, errors {}",
            report.imported, report.skipped, report.errors
        );
        for rejected in &report.rejected {
            eprintln!("line {}: {}", rejected.line, rejected.reason);
        }
        let unlisted = report.errors - report.rejected.len() as u64;
        if unlisted > 0 {
            eprintln!("… and {unlisted} more refused lines");
        }
    }
    if report.errors > 0 && !args.allow_partial {
        bail!(
            "{} line(s) of {} were refused; the others were imported (--allow-partial exits 0 on a partial import)",
            report.errors,
            args.file.display()
        );
    }
    Ok(())
}

/// Redraws `[####    ] 45% 1.2 of 2.6 MB 3s` on standard error until aborted.
async fn show_progress(read: Arc<AtomicU64>, size: u64) {
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let done = read.load(Ordering::Relaxed).min(size.max(1));
        let width = 30u64;
        let filled = (width * done / size.max(1)) as usize;
        eprint!(
            "\r[{}{}] {:>3}% {:.1} of {:.1} MB {:.0}s",
            "#".repeat(filled),
            " ".repeat(width as usize - filled),
            100 * done / size.max(1),
            done as f64 / 1e6,
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    }
}

/// A reader that counts the bytes it hands out (for the progress bar).
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let added = (buf.filled().len() - before) as u64;
            self.read.fetch_add(added, Ordering::Relaxed);
        }
        polled
    }
}
