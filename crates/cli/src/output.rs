//! Shared output helpers for `--json` mode.

use astrocyte_core::RecallHit;
use serde_json::{json, Value};

/// Prints one JSON document on standard output.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A recall hit in the contract's MemoryHit shape.
pub fn hit_json(hit: &RecallHit) -> Value {
    let m = &hit.memory;
    json!({
        "memory_id": m.id,
        "bank_id": m.bank_id,
        "text": m.text,
        "score": hit.score,
        "fact_type": m.fact_type,
        "metadata": m.metadata,
        "tags": m.tags,
        "occurred_at": m.occurred_at,
        "retained_at": m.retained_at,
        "source": m.source,
    })
}
