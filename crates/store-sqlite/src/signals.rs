//! [`LocalSignals`]: which tenants of this store had jobs enqueued through this process, so
//! the workers visit those at once instead of polling every tenant file. Another process
//! sharing the data directory is not seen here, which is why the signals say they are not
//! shared and the workers still poll idle tenants now and then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use astrocyte_core::jobs::{DueTenant, JobSignals};
use astrocyte_core::{Result, Schema, Timestamp};
use async_trait::async_trait;
use parking_lot::Mutex;

/// Per-tenant earliest due time, with a version from one counter so a removed and re-raised
/// signal never reuses a version an old settle could match.
#[derive(Default)]
pub(crate) struct LocalSignals {
    due: Mutex<HashMap<Schema, (Timestamp, u64)>>,
    versions: AtomicU64,
}

impl LocalSignals {
    /// A job for `schema` runs from `run_at`.
    pub(crate) fn raise(&self, schema: &Schema, run_at: Timestamp) {
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let mut due = self.due.lock();
        let entry = due.entry(schema.clone()).or_insert((run_at, version));
        entry.0 = entry.0.min(run_at);
        entry.1 = version;
    }

    /// The tenant is gone.
    pub(crate) fn forget(&self, schema: &Schema) {
        self.due.lock().remove(schema);
    }
}

#[async_trait]
impl JobSignals for LocalSignals {
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<DueTenant>> {
        let mut due: Vec<(Timestamp, DueTenant)> = self
            .due
            .lock()
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(schema, (at, version))| {
                (
                    *at,
                    DueTenant {
                        schema: schema.clone(),
                        version: *version,
                    },
                )
            })
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.schema.cmp(&b.1.schema)));
        Ok(due.into_iter().take(limit).map(|(_, t)| t).collect())
    }

    async fn settle(
        &self,
        schema: &Schema,
        version: Option<u64>,
        next_due: Option<Timestamp>,
    ) -> Result<()> {
        let mut due = self.due.lock();
        match (version, next_due) {
            (Some(version), next) => {
                if due.get(schema).is_some_and(|(_, v)| *v == version) {
                    match next {
                        Some(at) => {
                            due.insert(schema.clone(), (at, version));
                        }
                        None => {
                            due.remove(schema);
                        }
                    }
                }
            }
            (None, Some(at)) => {
                let fresh = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
                let entry = due.entry(schema.clone()).or_insert((at, fresh));
                entry.0 = entry.0.min(at);
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(name: &str) -> Schema {
        Schema::new(name).expect("schema")
    }

    #[tokio::test]
    async fn a_settle_never_hides_a_job_raised_after_the_read() {
        let signals = LocalSignals::default();
        let now = chrono::Utc::now();
        signals.raise(&schema("a"), now);
        let read = signals.due(now, 10).await.expect("due");
        assert_eq!(read.len(), 1);
        // Raised again between the visit's read and its settle: the settle must not clear it.
        signals.raise(&schema("a"), now);
        signals
            .settle(&schema("a"), Some(read[0].version), None)
            .await
            .expect("settle");
        assert_eq!(signals.due(now, 10).await.expect("due").len(), 1);
        // A settle with the current version clears it; a later due time is kept for later.
        let read = signals.due(now, 10).await.expect("due");
        let later = now + chrono::Duration::seconds(60);
        signals
            .settle(&schema("a"), Some(read[0].version), Some(later))
            .await
            .expect("settle");
        assert!(signals.due(now, 10).await.expect("due").is_empty());
        assert_eq!(signals.due(later, 10).await.expect("due").len(), 1);
        signals.forget(&schema("a"));
        assert!(signals.due(later, 10).await.expect("due").is_empty());
    }

    #[tokio::test]
    async fn an_unprompted_settle_only_brings_a_signal_earlier() {
        let signals = LocalSignals::default();
        let now = chrono::Utc::now();
        let later = now + chrono::Duration::seconds(60);
        signals.raise(&schema("b"), now);
        signals
            .settle(&schema("b"), None, Some(later))
            .await
            .expect("settle");
        signals
            .settle(&schema("b"), None, None)
            .await
            .expect("settle");
        assert_eq!(signals.due(now, 10).await.expect("due").len(), 1);
        signals
            .settle(&schema("c"), None, Some(later))
            .await
            .expect("settle");
        assert_eq!(signals.due(later, 10).await.expect("due").len(), 2);
        assert_eq!(
            signals.due(later, 1).await.expect("due")[0].schema,
            schema("b")
        );
    }
}
