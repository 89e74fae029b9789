//! [`SqliteOptions`]: the tunables of the embedded store, read by every layer from connections
//! up, so they sit at the bottom of the module graph.

use std::time::Duration;

use astrocyte_ann::HnswParams;

/// Tunables of the embedded store. `Default` suits a laptop or a small server.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// fsync on every commit (`synchronous = FULL`), so acknowledged memories also survive
    /// power loss and OS crashes. Off by default: `NORMAL` in WAL mode already survives the
    /// process being killed, and FULL costs an fsync per write transaction.
    pub durable_fsync: bool,
    /// How long a connection waits for a lock held by another connection (or process).
    pub busy_timeout: Duration,
    /// Idle read-only connections kept per tenant.
    pub max_idle_readers: usize,
    /// Index changes (inserts and removals) after which a bank's vector or keyword index
    /// snapshot is rewritten in the background, once they are also a quarter of the index (a
    /// snapshot rewrites all of it); bounds the rows re-indexed after a crash.
    pub snapshot_every: u64,
    /// A filtered semantic search whose SQL candidate set has at most this many rows scores
    /// them exactly instead of walking the HNSW graph.
    pub exact_scan_limit: usize,
    /// Filtered keyword search (unfiltered search prunes by itself) drops the most frequent
    /// query words until the rest match at most this many rows (the rarest word is always
    /// kept; if even it matches more, only that many of its newest rows are scored); 0 keeps
    /// every word. A filtered search scores every matching row, so this bounds its latency on
    /// large banks; the words dropped are those with the least BM25 weight. Small banks never
    /// reach it.
    pub keyword_posting_budget: usize,
    /// Tenant databases kept open at once; beyond it the least recently used tenant that no
    /// handle refers to is closed (each open tenant holds a few file descriptors, a page cache
    /// and its vector indexes).
    pub max_open_tenants: usize,
    /// HNSW construction and search parameters of new indexes.
    pub hnsw: HnswParams,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durable_fsync: false,
            busy_timeout: Duration::from_secs(5),
            max_idle_readers: 4,
            snapshot_every: 20_000,
            exact_scan_limit: 2_000,
            keyword_posting_budget: 5_000,
            max_open_tenants: 256,
            hnsw: HnswParams::default(),
        }
    }
}
