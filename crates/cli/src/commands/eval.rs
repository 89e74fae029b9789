//! `astrocyte eval locomo`: LLM-free retrieval quality on the LoCoMo benchmark. Every turn of a
//! conversation becomes one memory in a throw-away tenant of the selected store (the embedded
//! one in a temporary directory, or a tenant created and dropped on `--database-url`), one bank
//! per conversation and path; every question is recalled and scored by evidence recall at k
//! (see shared/data/README.md).
//!
//! Two ingestion paths: `whole` retains each session as one batch, the harness giving each turn
//! its neighbouring turns as context; `turns` retains one turn at a time as an agent does, with
//! `{dia_id, session, speaker}` metadata, and the engine links the session's thread itself.
//! Nothing in the engine knows this data set.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use astrocyte_core::pipeline::rerank;
use astrocyte_core::{
    ContentType, Embedder, Engine, Metadata, RecallRequest, RetainRequest, Schema,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

/// `eval locomo` options.
#[derive(Debug, Args)]
pub struct LocomoArgs {
    /// Path to locomo10.json.
    #[arg(long, default_value = "../shared/data/locomo10.json")]
    pub data: PathBuf,
    /// Evaluate only the first N conversations.
    #[arg(long)]
    pub conversations: Option<usize>,
    /// Neighbouring turns on each side given as retrieval context (0 = none).
    #[arg(long, default_value_t = 1)]
    pub neighbours: usize,
    /// Override the semantic fusion weight.
    #[arg(long)]
    pub semantic_weight: Option<f32>,
    /// Override the keyword fusion weight.
    #[arg(long)]
    pub keyword_weight: Option<f32>,
    /// Override the recency fusion weight.
    #[arg(long)]
    pub recency_weight: Option<f32>,
    /// Override the entity fusion weight.
    #[arg(long)]
    pub entity_weight: Option<f32>,
    /// Override the reciprocal-rank-fusion constant k.
    #[arg(long)]
    pub rrf_k: Option<f32>,
    /// Override how much a time expression in the question lifts the memories it fits.
    #[arg(long)]
    pub time_boost: Option<f32>,
    /// Override how many fused candidates the reranker reorders (0 = off).
    #[arg(long)]
    pub rerank_depth: Option<usize>,
    /// Override how many candidates the semantic strategy fetches.
    #[arg(long)]
    pub semantic_depth: Option<usize>,
    /// Override the per-strategy over-fetch factor.
    #[arg(long)]
    pub overfetch: Option<usize>,
    /// How conversations are retained: whole sessions, turn by turn, or both.
    #[arg(long, value_enum, default_value = "all")]
    pub path: IngestPath,
    /// Write each question's top candidates as reranker feature rows (JSON Lines) to PATH,
    /// for fitting the reranker's weights (scripts/fit-reranker.py).
    #[arg(long)]
    pub dump_features: Option<PathBuf>,
}

const KS: [usize; 4] = [1, 5, 10, 20];

#[derive(Debug, Deserialize)]
struct Sample {
    sample_id: String,
    conversation: BTreeMap<String, Value>,
    qa: Vec<Question>,
}

#[derive(Debug, Deserialize)]
struct Question {
    question: String,
    #[serde(default)]
    evidence: Vec<String>,
    category: u32,
}

#[derive(Debug, Deserialize)]
struct Turn {
    speaker: String,
    dia_id: String,
    text: String,
    #[serde(default)]
    blip_caption: Option<String>,
}

/// Accumulated evidence recall for one group of questions.
#[derive(Debug, Default, Clone)]
struct Tally {
    questions: usize,
    frac: [f64; 4],
    any: [f64; 4],
}

impl Tally {
    fn add(&mut self, found_at: &[Option<usize>]) {
        self.questions += 1;
        for (i, k) in KS.iter().enumerate() {
            let hits = found_at
                .iter()
                .filter(|r| r.is_some_and(|r| r < *k))
                .count();
            self.frac[i] += hits as f64 / found_at.len() as f64;
            self.any[i] += if hits > 0 { 1.0 } else { 0.0 };
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.questions += other.questions;
        for i in 0..KS.len() {
            self.frac[i] += other.frac[i];
            self.any[i] += other.any[i];
        }
    }

    fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("questions".into(), json!(self.questions));
        let n = self.questions.max(1) as f64;
        for (i, k) in KS.iter().enumerate() {
            out.insert(format!("frac@{k}"), json!(round4(self.frac[i] / n)));
            out.insert(format!("any@{k}"), json!(round4(self.any[i] / n)));
        }
        Value::Object(out)
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Parses LoCoMo's `1:56 pm on 8 May, 2023`.
fn parse_session_date(raw: &str) -> Option<DateTime<Utc>> {
    let cleaned = raw.trim().replace("  ", " ");
    NaiveDateTime::parse_from_str(&cleaned, "%I:%M %p on %d %B, %Y")
        .ok()
        .map(|t| t.and_utc())
}

fn turn_text(turn: &Turn) -> String {
    match &turn.blip_caption {
        Some(caption) => format!(
            "{}: {} [shares an image: {}]",
            turn.speaker, turn.text, caption
        ),
        None => format!("{}: {}", turn.speaker, turn.text),
    }
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Evidence ids as listed, tolerating the few entries that pack several ids in one string.
fn evidence_ids(evidence: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = evidence
        .iter()
        .flat_map(|e| e.split([';', ',', ' ']))
        .map(str::trim)
        .filter(|e| e.len() > 1 && e.starts_with('D') && e.contains(':'))
        .map(String::from)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    started: Instant,
    unit: &'static str,
}

impl Progress {
    fn tick(&mut self, label: &str) {
        self.done += 1;
        let step = (self.total / 20).max(1);
        if self.tty || self.done.is_multiple_of(step) || self.done == self.total {
            let width = 30;
            let filled = width * self.done / self.total.max(1);
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "{}[{}{}] {}/{} {} {:.0}s {}{}",
                if self.tty { "\r" } else { "" },
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total,
                self.unit,
                self.started.elapsed().as_secs_f64(),
                label,
                if self.tty { "   " } else { "\n" }
            );
            let _ = err.flush();
        }
    }
}

/// How the conversations reach the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IngestPath {
    /// One batch per session, each turn given its neighbours as context by the harness.
    Whole,
    /// One retain per turn, in order, as an agent over REST or MCP sends them: metadata
    /// `{dia_id, session, speaker}` and the session date; the server links the thread.
    Turns,
    /// One retain per session: the whole conversation as one content (`conversation`), which
    /// the server chunks by turn; hits map back to turns by their text.
    Document,
    /// Whole and turns, one table each.
    Both,
    /// Every path, one table each.
    All,
}

/// One path's results.
struct PathReport {
    by_category: BTreeMap<u32, Tally>,
    latencies_ms: Vec<f64>,
    memories: usize,
    retain_seconds: f64,
}

/// Runs the evaluation and prints a table (or one JSON object) per ingestion path.
pub async fn locomo(
    args: LocomoArgs,
    loaded: &astrocyte_settings::Loaded,
    embedder: Arc<dyn Embedder>,
    json_output: bool,
) -> anyhow::Result<()> {
    let raw = std::fs::read(&args.data).with_context(|| {
        format!(
            "cannot read LoCoMo data at {} (pass --data PATH to locomo10.json)",
            args.data.display()
        )
    })?;
    let mut samples: Vec<Sample> =
        serde_json::from_slice(&raw).context("locomo10.json is not in the expected shape")?;
    if let Some(n) = args.conversations {
        samples.truncate(n);
    }
    if samples.is_empty() {
        bail!("no conversations to evaluate");
    }
    let mut config = loaded.engine_config();
    if let Some(w) = args.semantic_weight {
        config.fusion.semantic_weight = w;
    }
    if let Some(w) = args.keyword_weight {
        config.fusion.keyword_weight = w;
    }
    if let Some(w) = args.recency_weight {
        config.fusion.recency_weight = w;
    }
    if let Some(w) = args.entity_weight {
        config.fusion.entity_weight = w;
    }
    if let Some(boost) = args.time_boost {
        config.fusion.time_boost = boost;
    }
    if let Some(depth) = args.rerank_depth {
        config.fusion.rerank_depth = depth;
    }
    if let Some(depth) = args.semantic_depth {
        config.fusion.semantic_depth = depth;
    }
    // Rows describe the fused order the weights are fitted to reorder, as deep as it goes.
    let dump_candidates = config.fusion.rerank_depth.max(1);
    if args.dump_features.is_some() {
        // Each strategy then fetches `dump_candidates`, as recall does for the reranker.
        config.fusion.rerank_depth = 0;
        config.overfetch = 1;
    }
    if let Some(k) = args.rrf_k {
        config.fusion.k = k;
    }
    if let Some(o) = args.overfetch {
        config.overfetch = o;
    }
    // Server-side thread context uses the same radius the harness gives the whole path.
    config.neighbour_context = args.neighbours;
    let scratch = crate::commands::scratch::ScratchStore::open(loaded, "eval").await?;
    let engine = Engine::new(scratch.store(), embedder.clone(), config);
    let schema = scratch.schema().clone();
    let paths: Vec<IngestPath> = match args.path {
        IngestPath::Both => vec![IngestPath::Whole, IngestPath::Turns],
        IngestPath::All => vec![IngestPath::Whole, IngestPath::Turns, IngestPath::Document],
        one => vec![one],
    };
    let mut reports = Vec::new();
    let mut outcome = Ok(());
    let mut dump = match &args.dump_features {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    for path in paths {
        match run_path(
            &engine,
            &schema,
            &samples,
            path,
            args.neighbours,
            dump.as_mut(),
            dump_candidates,
        )
        .await
        {
            Ok(report) => reports.push((path, report)),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    let backend = scratch.backend();
    // The throw-away tenant goes whatever happened.
    scratch.drop().await?;
    outcome?;

    let mut json_paths = serde_json::Map::new();
    for (path, report) in &reports {
        let name = match path {
            IngestPath::Whole => "whole",
            IngestPath::Turns => "turns",
            IngestPath::Document => "document",
            IngestPath::Both => "both",
            IngestPath::All => "all",
        };
        let value = print_report(
            name,
            backend,
            embedder.model(),
            samples.len(),
            report,
            json_output,
        );
        json_paths.insert(name.into(), value);
    }
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Object(json_paths))?
        );
    }
    Ok(())
}

async fn run_path(
    engine: &Engine,
    schema: &Schema,
    samples: &[Sample],
    path: IngestPath,
    neighbours: usize,
    mut dump: Option<&mut std::io::BufWriter<std::fs::File>>,
    dump_candidates: usize,
) -> anyhow::Result<PathReport> {
    let total_questions: usize = samples
        .iter()
        .flat_map(|s| &s.qa)
        .filter(|q| !evidence_ids(&q.evidence).is_empty())
        .count();
    let total_turns: usize = samples
        .iter()
        .flat_map(|s| {
            (1..)
                .map_while(|n| s.conversation.get(&format!("session_{n}")))
                .filter_map(|t| t.as_array().map(Vec::len))
        })
        .sum();
    let tty = std::io::stderr().is_terminal();
    let mut ingest = Progress {
        total: total_turns,
        done: 0,
        tty,
        started: Instant::now(),
        unit: "turns retained",
    };
    let mut progress = Progress {
        total: total_questions,
        done: 0,
        tty,
        started: Instant::now(),
        unit: "questions",
    };
    let mut report = PathReport {
        by_category: BTreeMap::new(),
        latencies_ms: Vec::new(),
        memories: 0,
        retain_seconds: 0.0,
    };
    let suffix = match path {
        IngestPath::Turns => "-turns",
        IngestPath::Document => "-document",
        _ => "-whole",
    };
    for (sample_index, sample) in samples.iter().enumerate() {
        let bank = format!(
            "locomo-{}{suffix}",
            sample
                .sample_id
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let t0 = Instant::now();
        // For the document path: which turn a chunk's text came from, whitespace collapsed (the
        // chunker packs a turn's sentences with single spaces).
        let mut turn_texts: Vec<(String, String)> = Vec::new();
        let mut session = 1;
        while let Some(turns) = sample.conversation.get(&format!("session_{session}")) {
            let turns: Vec<Turn> = serde_json::from_value(turns.clone()).with_context(|| {
                format!("{} session {session} has malformed turns", sample.sample_id)
            })?;
            let date = sample
                .conversation
                .get(&format!("session_{session}_date_time"))
                .and_then(Value::as_str)
                .and_then(parse_session_date);
            let texts: Vec<String> = turns.iter().map(turn_text).collect();
            let metadata = |turn: &Turn| {
                let mut metadata = Metadata::new();
                metadata.insert("dia_id".into(), json!(turn.dia_id));
                metadata.insert("speaker".into(), json!(turn.speaker));
                metadata
            };
            report.memories += turns.len();
            match path {
                IngestPath::Document => {
                    turn_texts.extend(
                        turns
                            .iter()
                            .zip(&texts)
                            .map(|(turn, text)| (collapse_whitespace(text), turn.dia_id.clone())),
                    );
                    let mut metadata = Metadata::new();
                    metadata.insert("session".into(), json!(session));
                    engine
                        .retain(
                            schema,
                            RetainRequest {
                                bank_id: bank.clone(),
                                content: texts.join("\n"),
                                metadata,
                                occurred_at: date,
                                content_type: ContentType::Conversation,
                                ..Default::default()
                            },
                        )
                        .await?;
                    for _ in &turns {
                        ingest.tick(&sample.sample_id);
                    }
                }
                IngestPath::Turns => {
                    // What an agent sends: one retain per turn, in order, the session in
                    // metadata; the engine call the REST and MCP handlers make.
                    for (i, turn) in turns.iter().enumerate() {
                        let mut metadata = metadata(turn);
                        metadata.insert("session".into(), json!(session));
                        engine
                            .retain(
                                schema,
                                RetainRequest {
                                    bank_id: bank.clone(),
                                    content: texts[i].clone(),
                                    metadata,
                                    occurred_at: date,
                                    ..Default::default()
                                },
                            )
                            .await?;
                        ingest.tick(&sample.sample_id);
                    }
                }
                _ => {
                    let requests: Vec<RetainRequest> = turns
                        .iter()
                        .enumerate()
                        .map(|(i, turn)| {
                            let lo = i.saturating_sub(neighbours);
                            let hi = (i + neighbours + 1).min(texts.len());
                            let context: Vec<&str> = (lo..hi)
                                .filter(|j| *j != i)
                                .map(|j| texts[j].as_str())
                                .collect();
                            RetainRequest {
                                bank_id: bank.clone(),
                                content: texts[i].clone(),
                                metadata: metadata(turn),
                                occurred_at: date,
                                content_type: ContentType::Text,
                                context: (!context.is_empty()).then(|| context.join("\n")),
                                ..Default::default()
                            }
                        })
                        .collect();
                    engine.retain_many(schema, requests).await?;
                    for _ in &turns {
                        ingest.tick(&sample.sample_id);
                    }
                }
            }
            session += 1;
        }
        report.retain_seconds += t0.elapsed().as_secs_f64();
        for (question_index, qa) in sample.qa.iter().enumerate() {
            let evidence = evidence_ids(&qa.evidence);
            if evidence.is_empty() {
                continue;
            }
            let t = Instant::now();
            let result = engine
                .recall(
                    schema,
                    RecallRequest {
                        query: qa.question.clone(),
                        banks: vec![bank.clone()],
                        max_results: Some(if dump.is_some() {
                            dump_candidates
                        } else {
                            *KS.last().unwrap_or(&20)
                        }),
                        ..Default::default()
                    },
                )
                .await?;
            report.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            // Each hit's turns: its `dia_id`, or for a chunk of a whole conversation the turns
            // whose text it holds (or that hold it, when a long turn was split).
            let ranked: Vec<Vec<&str>> = result
                .hits
                .iter()
                .map(
                    |h| match h.memory.metadata.get("dia_id").and_then(Value::as_str) {
                        Some(id) => vec![id],
                        None => {
                            let hit = collapse_whitespace(&h.memory.text);
                            turn_texts
                                .iter()
                                .filter(|(text, _)| {
                                    hit.contains(text.as_str()) || text.contains(hit.as_str())
                                })
                                .map(|(_, id)| id.as_str())
                                .collect()
                        }
                    },
                )
                .collect();
            if let Some(out) = dump.as_deref_mut() {
                let query = rerank::QueryFeatures::new(&qa.question);
                let candidates: Vec<rerank::Candidate<'_>> = result
                    .hits
                    .iter()
                    .map(|h| rerank::Candidate {
                        memory: &h.memory,
                        ranks: &h.ranks,
                        score: h.score,
                    })
                    .collect();
                let rows = rerank::features(&query, &candidates);
                let labels: Vec<bool> = ranked
                    .iter()
                    .map(|ids| ids.iter().any(|id| evidence.iter().any(|e| e == id)))
                    .collect();
                let line = json!({
                    "path": format!("{path:?}").to_lowercase(),
                    "conversation": sample_index,
                    "question": question_index,
                    "category": qa.category,
                    "evidence": evidence.len(),
                    "evidence_ids": evidence,
                    "hit_ids": ranked,
                    "rows": rows,
                    "labels": labels,
                    // For prototyping features offline: what each candidate is.
                    "query": qa.question,
                    "hits": result.hits.iter().map(|h| json!({
                        "text": h.memory.text,
                        "metadata": h.memory.metadata,
                        "time": h.memory.effective_time(),
                        "retained_at": h.memory.retained_at,
                        "chunk": h.memory.chunk,
                        "thread": h.memory.thread,
                    })).collect::<Vec<_>>(),
                });
                writeln!(out, "{line}")?;
            }
            let found_at: Vec<Option<usize>> = evidence
                .iter()
                .map(|e| ranked.iter().position(|ids| ids.contains(&e.as_str())))
                .collect();
            report
                .by_category
                .entry(qa.category)
                .or_default()
                .add(&found_at);
            progress.tick(&sample.sample_id);
        }
    }
    if tty {
        eprintln!();
    }
    report.latencies_ms.sort_by(f64::total_cmp);
    Ok(report)
}

/// Prints one path's table (unless JSON is wanted) and returns its JSON.
fn print_report(
    path: &str,
    backend: &str,
    model: &str,
    conversations: usize,
    report: &PathReport,
    json_output: bool,
) -> Value {
    let mut pooled = Tally::default();
    let mut overall = Tally::default();
    let mut categories = serde_json::Map::new();
    for (category, tally) in &report.by_category {
        categories.insert(category.to_string(), tally.to_json());
        if (1..=4).contains(category) {
            pooled.merge(tally);
        }
        overall.merge(tally);
    }
    categories.insert("1-4".into(), pooled.to_json());
    categories.insert("all".into(), overall.to_json());
    let latencies = &report.latencies_ms;
    let retain_rate = report.memories as f64 / report.retain_seconds.max(1e-9);
    let value = json!({
        "path": path,
        "store": backend,
        "embedder": model,
        "conversations": conversations,
        "memories": report.memories,
        "questions": overall.questions,
        "retain_per_second": round4(retain_rate),
        "recall_latency_ms": {
            "p50": round4(percentile(latencies, 50.0)),
            "p95": round4(percentile(latencies, 95.0)),
        },
        "categories": categories,
    });
    if json_output {
        return value;
    }
    println!(
        "LoCoMo evidence recall, {path} path — store {backend}, embedder {model}, {conversations} conversations, {} memories, {} questions",
        report.memories, overall.questions
    );
    println!(
        "{:<10}{:>6}  {:>8}{:>8}{:>8}{:>8}  {:>7}{:>7}{:>7}{:>7}",
        "category",
        "n",
        "frac@1",
        "frac@5",
        "frac@10",
        "frac@20",
        "any@1",
        "any@5",
        "any@10",
        "any@20"
    );
    let mut rows: Vec<(String, &Tally)> = report
        .by_category
        .iter()
        .map(|(c, t)| (c.to_string(), t))
        .collect();
    rows.push(("1-4".into(), &pooled));
    rows.push(("all".into(), &overall));
    for (name, t) in rows {
        let n = t.questions.max(1) as f64;
        println!(
            "{:<10}{:>6}  {:>8.3}{:>8.3}{:>8.3}{:>8.3}  {:>7.3}{:>7.3}{:>7.3}{:>7.3}",
            name,
            t.questions,
            t.frac[0] / n,
            t.frac[1] / n,
            t.frac[2] / n,
            t.frac[3] / n,
            t.any[0] / n,
            t.any[1] / n,
            t.any[2] / n,
            t.any[3] / n
        );
    }
    println!(
        "recall latency p50 {:.2} ms, p95 {:.2} ms; retain {:.0} memories/s\n",
        percentile(latencies, 50.0),
        percentile(latencies, 95.0),
        retain_rate
    );
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_dates_parse() {
        let t = parse_session_date("1:56 pm on 8 May, 2023").expect("parses");
        assert_eq!(t.to_rfc3339(), "2023-05-08T13:56:00+00:00");
        assert!(parse_session_date("10:37 am on 27 June, 2023").is_some());
    }

    #[test]
    fn evidence_ids_are_split_and_cleaned() {
        let raw = vec![
            "D8:6; D9:17".to_string(),
            "D".to_string(),
            "D1:3".to_string(),
        ];
        assert_eq!(evidence_ids(&raw), vec!["D1:3", "D8:6", "D9:17"]);
    }

    #[test]
    fn tally_counts_fractions_and_any() {
        let mut t = Tally::default();
        t.add(&[Some(0), None]);
        t.add(&[Some(7)]);
        assert_eq!(t.questions, 2);
        assert!((t.frac[0] - 0.5).abs() < 1e-9); // k=1: first question half, second none
        assert!((t.any[2] - 2.0).abs() < 1e-9); // k=10: both found something
    }
}
