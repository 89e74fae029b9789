//! The store conformance suite: backend-neutral async checks that every
//! [`astrocyte_core::Store`] must pass, driven through [`astrocyte_core::Engine`] with the
//! deterministic [`astrocyte_providers::HashingEmbedder`] plus direct
//! [`astrocyte_core::TenantStore`] calls where the engine hides what is being checked.
//! It holds no backend code and needs no particular one; each store crate runs it from its
//! own `tests/conformance.rs`.
//!
//! # Using it
//! Add this crate and `tokio` (with the `macros` and `rt-multi-thread` features) as
//! dev-dependencies, write an async factory returning a fresh [`TestStore`], and invoke the
//! macro once:
//!
//! ```text
//! use std::sync::Arc;
//! use astrocyte_store_tests::{store_conformance_tests, TestStore};
//!
//! async fn fresh_store() -> TestStore {
//!     let dir = tempfile::tempdir().expect("temp dir");
//!     let store = MyStore::open(dir.path()).await.expect("open store");
//!     // The guard (here the TempDir) lives as long as the test does.
//!     TestStore::new(Arc::new(store), dir)
//! }
//!
//! store_conformance_tests!(fresh_store);
//! ```
//!
//! The macro stamps out one `#[tokio::test]` per check in [`cases`], named after it; wrap the
//! invocation in a `mod` to run it twice with different factories. Every check creates its own
//! tenants with unique names (`ct_<label>_<random>`) through `create_tenant` and drops them at
//! the end, so backends whose tenants share one database (PostgreSQL schemas) can run the
//! checks in parallel; a check that fails may leave its tenants behind.

mod browse_cases;
pub mod cases;
mod entity_cases;
mod fixture;
pub mod instances;

use std::any::Any;
use std::sync::Arc;

use astrocyte_core::Store;

pub use fixture::Fixture;

/// A store under test and whatever must outlive it (a temporary directory, a connection pool).
pub struct TestStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Dropped after the check finishes.
    pub guard: Box<dyn Any + Send + Sync>,
}

impl TestStore {
    /// Wraps a fresh store and its guard.
    pub fn new(store: Arc<dyn Store>, guard: impl Any + Send + Sync) -> Self {
        TestStore {
            store,
            guard: Box::new(guard),
        }
    }
}

/// Stamps out one `#[tokio::test]` per conformance check. `$factory` is an async fn (or
/// closure) taking no argument and returning a fresh [`TestStore`]; it is called once per
/// test.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@each $factory;
            retain_then_recall_finds_it,
            ranking_is_deterministic_with_ties_by_id,
            filters_apply_to_every_strategy,
            recall_spans_several_banks,
            max_results_is_clamped_and_tokens_trimmed,
            near_duplicates_are_skipped,
            batch_near_duplicates_of_the_bank_and_of_each_other,
            multi_chunk_retain_and_batch_insert_are_atomic,
            forget_by_ids,
            forget_by_tags_before_and_combined,
            forget_all_empties_the_bank,
            soft_forget_keeps_time_travel_and_purge_does_not,
            export_streams_every_memory_and_import_round_trips,
            import_refuses_bad_lines_alone_and_repeated_ids_once,
            tenants_are_isolated_and_drop_removes_one,
            embedding_space_mismatch_is_a_clear_error,
            validation_failure_stores_nothing_and_loses_nothing,
            store_reads_scan_get_exists_count,
            tenant_lifecycle,
            keyword_search_accepts_any_text,
            nearest_each_finds_the_closest_visible_memory,
            keyword_index_covers_context_never_returned,
            hostile_inputs_are_refused_alike,
            threaded_turns_lend_their_neighbours_context,
            listing_pages_filters_and_orders,
            updates_replace_tags_and_metadata,
            change_feed_logs_every_change_in_order,
            change_feed_never_skips_under_concurrent_writes,
            entities_are_listed_with_counts,
            forgotten_memories_leave_the_entity_counts,
            entity_hits_score_rare_entities_higher,
            entities_are_isolated_between_tenants,
        );
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: $crate::TestStore = ($factory)().await;
                $crate::cases::$name(store).await;
            }
        )*
    };
}
