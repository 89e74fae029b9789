//! Read replicas: recall, the change feed and export may read from PostgreSQL streaming
//! replicas (hot standbys) instead of the primary. Nothing here replicates anything; this
//! module only chooses where a read-only tenant transaction runs.
//!
//! A replica serves a tenant's read only when all of these hold, else the primary does:
//! - the monitor's last poll of it succeeded and it is still in recovery (not promoted);
//! - it is fresh: it has replayed everything the primary had written `max_lag` ago;
//! - it has replayed this tenant's last write (read-your-writes, per process): after every write
//!   the tenant's handle records the primary's WAL insert position (an opening handle records
//!   the flushed one), and a replica read first checks the replica's replay position against
//!   it, waiting at most `wait`.
//!
//! A replica transaction is `READ ONLY` and runs under the tenant's role like every tenant
//! transaction (roles replicate with the catalog). Any failure on a replica (connection lost,
//! a conflict with recovery, a tenant not replayed yet) re-runs the read on the primary.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use parking_lot::Mutex;
use tokio_postgres::{Client, Config, NoTls, Row, SimpleQueryMessage};
use tracing::{debug, info, warn};

use crate::error::{PgError, PgResult};
use crate::session::{TenantBinding, TenantTransaction};
use crate::sql::Params;

/// Streaming replicas a [`crate::PostgresStore`] may read from.
#[derive(Clone)]
pub struct ReplicaOptions {
    /// Connection URLs of hot standbys of the primary (same user, same database). Empty: every
    /// read goes to the primary.
    pub urls: Vec<String>,
    /// A replica further behind the primary than this is not read from.
    pub max_lag: Duration,
    /// How long a read after the tenant's own write waits for a replica to replay that write
    /// before it goes to the primary instead.
    pub wait: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            urls: Vec::new(),
            max_lag: Duration::from_millis(1000),
            wait: Duration::from_millis(50),
        }
    }
}

impl std::fmt::Debug for ReplicaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("ReplicaOptions")
            .field("urls", &urls)
            .field("max_lag", &self.max_lag)
            .field("wait", &self.wait)
            .finish()
    }
}

/// A connection string without its password (URL or key/value form), for logs and `Debug`.
pub(crate) fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some((user, _)) = rest[..at].split_once(':') {
                return format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..]);
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A WAL position (`pg_lsn`) as a number.
type Lsn = u64;

/// Parses PostgreSQL's `X/Y` text form of a `pg_lsn`.
pub(crate) fn parse_lsn(text: &str) -> Option<Lsn> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= u64::from(u32::MAX) && low <= u64::from(u32::MAX)).then_some((high << 32) | low)
}

/// The last record end at or before an insert position. `pg_current_wal_insert_lsn()` on a
/// fresh page points past the page header, where no record ends; a replica reports record
/// ends, so that position would not be reached until more WAL is written. Records end on
/// MAXALIGN boundaries and a page header is 24 or 40 bytes, so an insert position that far
/// into a page has no record end between the page start and itself.
fn record_end(insert: Lsn, block_size: u64) -> Lsn {
    const SHORT_HEADER: u64 = 24;
    const LONG_HEADER: u64 = 40;
    match insert.checked_rem(block_size) {
        Some(offset @ (SHORT_HEADER | LONG_HEADER)) => insert - offset,
        _ => insert,
    }
}

/// The first column of the first row of a simple query, as text.
fn first_text(messages: &[SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}

/// One replica as the monitor and the readers see it.
struct ReplicaState {
    /// For logs: the URL without its password.
    name: String,
    /// The last poll succeeded and the server is in recovery; a failed read clears it until
    /// the next good poll.
    usable: AtomicBool,
    /// The replica holds everything the primary had written at this instant (a lower bound).
    fresh_as_of: Mutex<Option<Instant>>,
}

impl ReplicaState {
    fn set_usable(&self, usable: bool, why: &str) {
        if self.usable.swap(usable, Ordering::AcqRel) != usable {
            if usable {
                info!(replica = %self.name, "replica usable");
            } else {
                warn!(replica = %self.name, why, "replica not usable; reads go to the primary");
            }
        }
    }

    fn is_fresh(&self, max_lag: Duration) -> bool {
        self.fresh_as_of
            .lock()
            .is_some_and(|at| at.elapsed() <= max_lag)
    }
}

struct Replica {
    pool: Pool,
    state: Arc<ReplicaState>,
}

/// Which of the primary's WAL positions a replay target is taken from.
#[derive(Clone, Copy)]
enum Position {
    Inserted,
    Flushed,
}

/// The replicas of one store, the task that watches them and the choice of one per read.
pub(crate) struct ReplicaSet {
    replicas: Vec<Replica>,
    options: ReplicaOptions,
    /// The primary's WAL page size, for [`record_end`].
    block_size: u64,
    /// Round-robin start.
    next: AtomicUsize,
    monitor: tokio::task::JoinHandle<()>,
}

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

/// How often the monitor polls: often enough to tell a replica within `max_lag` from one
/// beyond it, and to take a replica back soon after it recovers.
fn poll_interval(max_lag: Duration) -> Duration {
    (max_lag / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

impl ReplicaSet {
    /// Builds the replica pools (no connection is made yet) and starts the monitor.
    /// `pool_for` builds a pool like the primary's from a parsed URL.
    pub(crate) async fn start(
        primary: &Pool,
        primary_config: &Config,
        options: ReplicaOptions,
        pool_for: impl Fn(Config) -> PgResult<Pool>,
    ) -> PgResult<Option<Arc<ReplicaSet>>> {
        if options.urls.is_empty() {
            return Ok(None);
        }
        let mut replicas = Vec::with_capacity(options.urls.len());
        let mut watched = Vec::with_capacity(options.urls.len());
        for url in &options.urls {
            let mut config: Config = url.parse().map_err(|error| {
                PgError::Config(format!("invalid replica url {}: {error}", redact(url)))
            })?;
            if config.get_application_name().is_none() {
                config.application_name("astrocyte-replica");
            }
            // A replica that does not answer should send reads to the primary soon, not
            // after the operating system gives up on the connection.
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(Duration::from_secs(2));
            }
            let state = Arc::new(ReplicaState {
                name: redact(url),
                usable: AtomicBool::new(false),
                fresh_as_of: Mutex::new(None),
            });
            let mut monitor_config = config.clone();
            monitor_config
                .application_name("astrocyte-replica-monitor")
                .connect_timeout(Duration::from_secs(2));
            watched.push((monitor_config, state.clone()));
            replicas.push(Replica {
                pool: pool_for(config)?,
                state,
            });
        }
        let client = primary.get().await?;
        let block_size = client
            .simple_query("SELECT current_setting('wal_block_size')")
            .await?;
        let block_size = first_text(&block_size)
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| PgError::Decode("wal_block_size is not a number".into()))?;
        drop(client);
        let mut primary_config = primary_config.clone();
        primary_config
            .application_name("astrocyte-replica-monitor")
            .connect_timeout(Duration::from_secs(2));
        let monitor = tokio::spawn(monitor(primary_config, watched, options.max_lag));
        info!(replicas = replicas.len(), max_lag = ?options.max_lag, "reading from replicas");
        Ok(Some(Arc::new(ReplicaSet {
            replicas,
            options,
            block_size,
            next: AtomicUsize::new(0),
            monitor,
        })))
    }

    /// The primary's current WAL position as a replay target: `Inserted` covers a commit
    /// just made even if it is not flushed yet (asynchronous commit); `Flushed` covers every
    /// synchronous commit and is always reachable. An inserted position can run ahead of the
    /// flushed one for as long as the primary stays quiet (a read's page pruning is WAL no
    /// commit flushes), and no replica replays past what was flushed.
    async fn primary_position(&self, primary: &Pool, position: Position) -> PgResult<Lsn> {
        let function = match position {
            Position::Inserted => "pg_current_wal_insert_lsn()",
            Position::Flushed => "pg_current_wal_flush_lsn()",
        };
        let client = primary.get().await?;
        let messages = client
            .simple_query(&format!("SELECT {function}::text"))
            .await?;
        let lsn = first_text(&messages)
            .and_then(parse_lsn)
            .ok_or_else(|| PgError::Decode(format!("{function} unreadable")))?;
        Ok(match position {
            Position::Inserted => record_end(lsn, self.block_size),
            Position::Flushed => lsn,
        })
    }

    /// A usable, fresh replica, taken in turn.
    fn choose(&self) -> Option<&Replica> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.replicas.len())
            .map(|i| &self.replicas[(start + i) % self.replicas.len()])
            .find(|r| {
                r.state.usable.load(Ordering::Acquire) && r.state.is_fresh(self.options.max_lag)
            })
    }

    /// Runs the read on a replica that has replayed `target`; `None` when no replica could
    /// (the caller then reads from the primary).
    async fn read(
        &self,
        target: Lsn,
        binding: &TenantBinding,
        settings: &str,
        sql: &str,
        params: &Params,
    ) -> Option<Vec<Row>> {
        let replica = self.choose()?;
        let failed = |error: PgError| {
            // Only a lost connection says the replica is gone; other errors (a conflict with
            // recovery, a tenant not replayed yet) concern this read alone.
            if is_connection_failure(&error) {
                replica.state.set_usable(false, &error.to_string());
            } else {
                debug!(replica = %replica.state.name, %error, "replica read failed; reading from the primary");
            }
            None
        };
        let (mut transaction, replayed) =
            match TenantTransaction::begin_standby(&replica.pool, binding, settings).await {
                Ok(opened) => opened,
                Err(error) => return failed(error),
            };
        let Some(mut replayed) = replayed else {
            let _ = transaction.finish("ROLLBACK").await;
            replica
                .state
                .set_usable(false, "the server is not in recovery");
            return None;
        };
        // Read committed: every statement takes a new snapshot, so once the replay position
        // has passed the target the next statement sees the tenant's write.
        let deadline = Instant::now() + self.options.wait;
        let mut pause = Duration::from_millis(1);
        while replayed < target {
            if Instant::now() + pause > deadline {
                let _ = transaction.finish("ROLLBACK").await;
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(8));
            replayed = match transaction.replay_position().await {
                Ok(Some(replayed)) => replayed,
                Ok(None) => 0,
                Err(error) => return failed(error),
            };
        }
        match transaction.typed_then_commit(sql, params).await {
            Ok(rows) => Some(rows),
            Err(error) => failed(error),
        }
    }
}

/// Whether an error means the connection (or the server) is gone, not that this statement
/// failed.
fn is_connection_failure(error: &PgError) -> bool {
    match error {
        PgError::Pool(_) => true,
        PgError::Db(db) => match db.code() {
            None => true,
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P")
            }
        },
        _ => false,
    }
}

/// Where one tenant's reads go, and what its own writes require of a replica. One per tenant
/// handle, so the read-your-writes guarantee holds within one process.
pub(crate) struct TenantReads {
    replicas: Option<Arc<ReplicaSet>>,
    /// A replica must have replayed this far before it serves this tenant.
    target: AtomicU64,
    /// Writes whose end could not be read, counted; `settled` says how many of them a later
    /// reading of the primary's position covers. While it lags, reads ask the primary first.
    unknown: AtomicU64,
    settled: AtomicU64,
}

impl std::fmt::Debug for TenantReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantReads")
            .field(
                "replicas",
                &self.replicas.as_ref().map_or(0, |r| r.replicas.len()),
            )
            .field("target", &self.target.load(Ordering::Relaxed))
            .finish()
    }
}

impl TenantReads {
    /// The reads of a newly opened handle: with replicas, they must not see a state older than
    /// the primary's now (the tenant may just have been created or migrated).
    pub(crate) async fn open(replicas: Option<Arc<ReplicaSet>>, primary: &Pool) -> Self {
        let reads = TenantReads {
            replicas,
            target: AtomicU64::new(0),
            unknown: AtomicU64::new(1),
            settled: AtomicU64::new(0),
        };
        reads.settle(primary).await;
        reads
    }

    /// Records where the tenant's last write ended. Call after the write committed; a
    /// failure here fails nothing (the write is durable): the next read asks again.
    pub(crate) async fn after_write(&self, primary: &Pool) {
        let Some(replicas) = &self.replicas else {
            return;
        };
        match replicas.primary_position(primary, Position::Inserted).await {
            Ok(lsn) => {
                self.target.fetch_max(lsn, Ordering::AcqRel);
            }
            Err(error) => {
                debug!(%error, "primary WAL position unreadable after a write");
                self.unknown.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Covers the writes whose end is unknown with the primary's position now; false if that
    /// could not be read either.
    async fn settle(&self, primary: &Pool) -> bool {
        let Some(replicas) = &self.replicas else {
            return true;
        };
        // Those writes committed before they were counted, so before this position is read.
        let unknown = self.unknown.load(Ordering::Acquire);
        if self.settled.load(Ordering::Acquire) >= unknown {
            return true;
        }
        // Flushed, not inserted: what is settled here committed synchronously (the opening
        // handle's tenant state, a write whose commit returned).
        match replicas.primary_position(primary, Position::Flushed).await {
            Ok(lsn) => {
                self.target.fetch_max(lsn, Ordering::AcqRel);
                self.settled.fetch_max(unknown, Ordering::AcqRel);
                true
            }
            Err(error) => {
                debug!(%error, "primary WAL position unreadable; reading from the primary");
                false
            }
        }
    }

    /// Runs one read-only statement (with `SET LOCAL` `settings`) for the tenant: on a replica
    /// when one qualifies, else on the primary.
    pub(crate) async fn rows(
        &self,
        primary: &Pool,
        binding: &TenantBinding,
        settings: &str,
        sql: &str,
        params: &Params,
    ) -> PgResult<Vec<Row>> {
        if let Some(replicas) = &self.replicas {
            if self.settle(primary).await {
                let target = self.target.load(Ordering::Acquire);
                if let Some(rows) = replicas.read(target, binding, settings, sql, params).await {
                    return Ok(rows);
                }
            }
        }
        TenantTransaction::begin(primary, binding, settings)
            .await?
            .typed_then_commit(sql, params)
            .await
    }
}

/// The primary's WAL write position over the last while: `(when asked, position)`.
struct Samples {
    samples: VecDeque<(Instant, Lsn)>,
    keep: Duration,
}

impl Samples {
    fn push(&mut self, at: Instant, lsn: Lsn) {
        self.samples.push_back((at, lsn));
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|(at, _)| at.elapsed() > self.keep)
        {
            self.samples.pop_front();
        }
    }

    /// The latest instant at which the primary had written no more than `replayed`: a replica
    /// that replayed that far holds everything the primary had then.
    fn fresh_as_of(&self, replayed: Lsn) -> Option<Instant> {
        self.samples
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replayed)
            .map(|(at, _)| *at)
    }
}

async fn connect(config: &Config) -> PgResult<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// One query on a monitor connection, reconnecting when there is none; a failure drops it.
async fn poll(
    config: &Config,
    client: &mut Option<Client>,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<SimpleQueryMessage>, String> {
    let attempt = async {
        if client.is_none() {
            *client = Some(connect(config).await?);
        }
        match client.as_ref() {
            Some(c) => Ok::<_, PgError>(c.simple_query(sql).await?),
            None => Err(PgError::Finished),
        }
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(messages)) => return Ok(messages),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "timed out".to_string(),
    };
    *client = None;
    Err(outcome)
}

/// Polls the primary's WAL position and each replica's replay position, and keeps each
/// replica's usability and freshness up to date. Runs until the store is dropped.
async fn monitor(primary: Config, replicas: Vec<(Config, Arc<ReplicaState>)>, max_lag: Duration) {
    let interval = poll_interval(max_lag);
    let timeout = Duration::from_secs(2).max(interval);
    let mut samples = Samples {
        samples: VecDeque::new(),
        keep: max_lag * 2 + Duration::from_secs(1),
    };
    let mut primary_client = None;
    let mut clients: Vec<Option<Client>> = replicas.iter().map(|_| None).collect();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Asked before the replicas, so a replica that replayed this far holds at least what
        // the primary had when the question was sent.
        let asked = Instant::now();
        match poll(
            &primary,
            &mut primary_client,
            "SELECT pg_current_wal_lsn()::text",
            timeout,
        )
        .await
        {
            Ok(messages) => {
                if let Some(lsn) = first_text(&messages).and_then(parse_lsn) {
                    samples.push(asked, lsn);
                }
            }
            Err(error) => debug!(%error, "primary WAL position unreadable"),
        }
        let polls = replicas
            .iter()
            .zip(clients.iter_mut())
            .map(|((config, _), client)| {
                poll(
                    config,
                    client,
                    "SELECT pg_is_in_recovery()::text, pg_last_wal_replay_lsn()::text",
                    timeout,
                )
            });
        let answers = futures::future::join_all(polls).await;
        for ((_, state), answer) in replicas.iter().zip(answers) {
            let messages = match answer {
                Ok(messages) => messages,
                Err(error) => {
                    state.set_usable(false, &error);
                    continue;
                }
            };
            let row = messages.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some((row.get(0), row.get(1))),
                _ => None,
            });
            let replayed = match row {
                Some((Some("true"), Some(lsn))) => parse_lsn(lsn),
                _ => None,
            };
            let Some(replayed) = replayed else {
                state.set_usable(false, "the server is not in recovery");
                continue;
            };
            if let Some(at) = samples.fresh_as_of(replayed) {
                let mut fresh = state.fresh_as_of.lock();
                if fresh.is_none_or(|known| known < at) {
                    *fresh = Some(at);
                }
            }
            state.set_usable(true, "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_from_their_text_form() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/"), None);
        assert_eq!(parse_lsn("100000000/0"), None);
    }

    #[test]
    fn an_insert_position_past_a_page_header_becomes_the_page_start() {
        let page = 8192;
        assert_eq!(record_end(3 * page + 24, page), 3 * page);
        assert_eq!(record_end(3 * page + 40, page), 3 * page);
        assert_eq!(record_end(3 * page + 48, page), 3 * page + 48);
        assert_eq!(record_end(3 * page + 24, 16384), 3 * page + 24);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/astro?sslmode=disable"),
            "postgres://app:***@db:5432/astro?sslmode=disable"
        );
        assert_eq!(redact("postgres://app@db/astro"), "postgres://app@db/astro");
        assert_eq!(redact("postgres://db/astro"), "postgres://db/astro");
        assert_eq!(
            redact("host=db user=app password=s3cret"),
            "host=db user=app password=***"
        );
    }

    #[test]
    fn freshness_is_the_latest_sample_a_replay_covers() {
        let start = Instant::now();
        let mut samples = Samples {
            samples: VecDeque::new(),
            keep: Duration::from_secs(60),
        };
        let at = |ms| start + Duration::from_millis(ms);
        samples
            .samples
            .extend([(at(0), 100), (at(10), 200), (at(20), 200), (at(30), 300)]);
        assert_eq!(samples.fresh_as_of(50), None);
        assert_eq!(samples.fresh_as_of(100), Some(at(0)));
        assert_eq!(samples.fresh_as_of(250), Some(at(20)));
        assert_eq!(samples.fresh_as_of(300), Some(at(30)));
    }
}
