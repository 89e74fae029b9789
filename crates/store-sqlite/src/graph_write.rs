//! The graph half of an insert, finished on its own thread after the rows commit.
//!
//! At a million memories, linking a batch's vectors into the bank's HNSW graph takes longer
//! than writing its rows. The thread takes each touched bank's index write lock before the
//! rows are written and holds it until the commit is settled and the graph updated, so:
//! - the retain is acknowledged once its rows commit, and the caller can prepare its next
//!   batch while the graph work finishes;
//! - every search waits on that lock (the next near-duplicate check included), so a read that
//!   starts after the acknowledgement sees the new vectors;
//! - no search sees a vector whose row is not committed: a failed commit takes them out again
//!   before the lock is let go.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use astrocyte_core::{BankId, Error};

use crate::error::{StoreError, StoreResult};
use crate::inner::TenantInner;
use crate::vectors::BankSlot;

/// A new row's id, vector and vector hash, on their way into a bank's index.
pub(crate) struct RowVector {
    pub(crate) rowid: i64,
    pub(crate) vector: Vec<f32>,
    pub(crate) hash: i64,
}

/// One bank's share of an insert.
pub(crate) struct BankVectors {
    pub(crate) bank: BankId,
    pub(crate) slot: Arc<BankSlot>,
    pub(crate) rows: Vec<RowVector>,
}

/// A running graph write, waiting to hear how the commit went.
pub(crate) struct GraphWrite {
    /// `None` when no touched bank has its index loaded: there is nothing to link.
    outcome: Option<SyncSender<(bool, Instant)>>,
}

impl GraphWrite {
    /// Starts the graph work of `banks` and returns once it holds every index lock. Call it
    /// under the writer, before writing the rows: index updates then follow commit order.
    pub(crate) fn start(inner: &Arc<TenantInner>, banks: Vec<BankVectors>) -> StoreResult<Self> {
        if banks.is_empty() {
            return Ok(Self { outcome: None });
        }
        let (locked_tx, locked_rx) = sync_channel(1);
        let (outcome_tx, outcome_rx) = sync_channel(1);
        let inner = Arc::clone(inner);
        std::thread::Builder::new()
            .name("astrocyte-graph".into())
            .spawn(move || run(&inner, banks, &locked_tx, &outcome_rx))?;
        locked_rx.recv().map_err(|_| {
            StoreError::Core(Error::Internal(
                "the graph write stopped before locking its indexes".into(),
            ))
        })?;
        Ok(Self {
            outcome: Some(outcome_tx),
        })
    }

    /// Tells the graph write whether the rows committed; if not, it takes the vectors out
    /// again. Dropping it unsettled counts as a failed commit.
    pub(crate) fn settle(self, committed: bool) {
        if let Some(outcome) = self.outcome {
            // The thread only stops early after a panic, which it has already reported.
            let _ = outcome.send((committed, Instant::now()));
        }
    }
}

fn run(
    inner: &Arc<TenantInner>,
    banks: Vec<BankVectors>,
    locked: &SyncSender<()>,
    outcome: &Receiver<(bool, Instant)>,
) {
    // Locked in the caller's order (the writer is held), as every insert did inline before.
    let mut guards: Vec<_> = banks.iter().map(|b| b.slot.index.write()).collect();
    let hints: Vec<_> = banks
        .iter()
        .zip(&guards)
        .map(|(b, guard)| {
            if guard.is_some() {
                let vectors = b.rows.iter().map(|r| r.vector.as_slice());
                b.slot.hints.lock().take_all(vectors)
            } else {
                Vec::new()
            }
        })
        .collect();
    let before: Vec<Option<i64>> = guards
        .iter()
        .map(|guard| guard.as_ref().map(|index| index.max_rowid))
        .collect();
    if locked.send(()).is_err() {
        return;
    }
    let started = Instant::now();
    let linked = catch_unwind(AssertUnwindSafe(|| {
        for ((guard, b), hints) in guards.iter_mut().zip(&banks).zip(&hints) {
            let Some(index) = guard.as_mut() else {
                continue;
            };
            for (row, hint) in b.rows.iter().zip(hints) {
                index.twins.add(row.hash, row.rowid);
                // The rows are validated by the caller: a vector the index still refuses
                // stays findable by keyword and recency.
                if let Err(error) = index.add_hinted(row.rowid, &row.vector, hint.as_ref()) {
                    tracing::warn!(rowid = row.rowid, %error, "vector left out of the index");
                }
            }
        }
    }));
    let linked_at = Instant::now();
    let (committed, settled_at) = outcome.recv().unwrap_or((false, linked_at));
    if linked.is_err() {
        // Only a bug panics in there. The graph may be half updated: unload it, so the next
        // search reloads it from the committed rows.
        tracing::error!(tenant = %inner.schema, "graph write panicked; the indexes will reload");
        for guard in guards.iter_mut() {
            **guard = None;
        }
        return;
    }
    if !committed {
        // Rolled back: marked like a purge, so a snapshot never persists vectors of rows that
        // never existed.
        for ((guard, b), max_rowid) in guards.iter_mut().zip(&banks).zip(before) {
            if let (Some(index), Some(max_rowid)) = (guard.as_mut(), max_rowid) {
                for row in &b.rows {
                    index.twins.remove(row.hash, row.rowid);
                    index.remove(row.rowid, true);
                }
                index.max_rowid = max_rowid;
            }
        }
        return;
    }
    let wanted: Vec<bool> = guards
        .iter()
        .map(|guard| {
            guard
                .as_ref()
                .is_some_and(|index| index.wants_background_snapshot(inner.options.snapshot_every))
        })
        .collect();
    drop(guards);
    for (b, wanted) in banks.iter().zip(wanted) {
        inner.maybe_schedule_snapshot(&b.bank, &b.slot, wanted);
    }
    // How long the graph work ran past the commit: the part a retain no longer waits for.
    tracing::debug!(
        rows = banks.iter().map(|b| b.rows.len()).sum::<usize>(),
        graph_us = linked_at.duration_since(started).as_micros() as u64,
        after_commit_us = linked_at.saturating_duration_since(settled_at).as_micros() as u64,
        "linked"
    );
}
