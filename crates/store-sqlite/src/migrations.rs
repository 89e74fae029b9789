//! Versioned schema migrations of a tenant database, recorded in a `schema_migrations` ledger
//! and applied on open. Each migration runs in its own immediate transaction, so two processes
//! opening the same file cannot apply one twice. There are no down-migrations.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::StoreResult;

/// One forward step of the schema.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append only: an applied migration is never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "memories_fts_vectors",
        sql: r#"
-- AUTOINCREMENT keeps row ids monotonic even after the newest row is purged: vector index
-- snapshots record the highest row id they contain and catch up with the rows after it.
CREATE TABLE memories (
    rowid        INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL,
    bank_id      TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    tags         TEXT    NOT NULL DEFAULT '[]',
    metadata     TEXT    NOT NULL DEFAULT '{}',
    fact_type    TEXT    NOT NULL,
    occurred_at  INTEGER,
    retained_at  INTEGER NOT NULL,
    forgotten_at INTEGER,
    effective_at INTEGER NOT NULL,
    source       TEXT,
    chunk        TEXT,
    embedding    BLOB    NOT NULL,
    -- FNV-1a of the embedding blob: finds exact twins (the same text retained again) without
    -- relying on the approximate index.
    embedding_hash INTEGER NOT NULL,
    -- What the keyword index covers when it differs from text (retrieval context such as the
    -- date in words or neighbouring turns); never returned to callers.
    index_text   TEXT,
    search_text  TEXT GENERATED ALWAYS AS (COALESCE(index_text, text)) VIRTUAL
);
-- Memory ids are unique per bank, so one export can be imported into several banks.
CREATE UNIQUE INDEX memories_bank_id ON memories (bank_id, id);
CREATE INDEX memories_bank_effective ON memories (bank_id, effective_at);
CREATE INDEX memories_bank_forgotten ON memories (bank_id, forgotten_at);
CREATE INDEX memories_bank_embedding_hash ON memories (bank_id, embedding_hash);

CREATE TABLE memory_tags (
    tag          TEXT    NOT NULL,
    memory_rowid INTEGER NOT NULL REFERENCES memories (rowid) ON DELETE CASCADE,
    PRIMARY KEY (tag, memory_rowid)
) WITHOUT ROWID;
CREATE INDEX memory_tags_memory ON memory_tags (memory_rowid);

CREATE VIRTUAL TABLE memories_fts USING fts5 (
    search_text,
    content = 'memories',
    content_rowid = 'rowid',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
-- Purged text must leave the full-text index at once, not at the next segment merge.
INSERT INTO memories_fts (memories_fts, rank) VALUES ('secure-delete', 1);
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF text, index_text ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
    INSERT INTO memories_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
END;

CREATE TABLE embedding_space (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    model       TEXT    NOT NULL,
    dimension   INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
);

-- Derived data: a serialised HNSW index per bank holding every visible row up to max_rowid.
CREATE TABLE vector_index (
    bank_id    TEXT    PRIMARY KEY,
    max_rowid  INTEGER NOT NULL,
    dimension  INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    written_at INTEGER NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        name: "jobs_settings",
        sql: r#"
-- The tenant's background job queue. Timestamps are microseconds since the epoch; payload and
-- result are JSON text.
CREATE TABLE jobs (
    id              TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts > 0),
    last_error      TEXT,
    result          TEXT,
    idempotency_key TEXT,
    run_at          INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Claims look for due queued jobs and for running jobs whose lease expired.
CREATE INDEX jobs_state_run_at ON jobs (state, run_at, id);
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_state_created ON jobs (state, created_at, id);
CREATE INDEX jobs_created ON jobs (created_at, id);

-- Tenant-level settings (lifecycle policies, legal holds) as JSON text.
CREATE TABLE settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
"#,
    },
    Migration {
        version: 3,
        name: "keyword_context_column",
        sql: r#"
-- The keyword index gets a second column for a memory's retrieval context (neighbouring turns,
-- the caller's context), ranked with a lower BM25 weight than the memory's own text: context
-- helps a memory be found, but a match in it is weaker evidence than a match in the memory.
-- Rows written before keep their context inside index_text (first column).
ALTER TABLE memories ADD COLUMN index_context TEXT;
DROP TRIGGER memories_fts_insert;
DROP TRIGGER memories_fts_delete;
DROP TRIGGER memories_fts_update;
DROP TABLE memories_fts;
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    search_text,
    index_context,
    content = 'memories',
    content_rowid = 'rowid',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO memories_fts (memories_fts, rank) VALUES ('secure-delete', 1);
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, search_text, index_context)
    VALUES (new.rowid, new.search_text, new.index_context);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, search_text, index_context)
    VALUES ('delete', old.rowid, old.search_text, old.index_context);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF text, index_text, index_context ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, search_text, index_context)
    VALUES ('delete', old.rowid, old.search_text, old.index_context);
    INSERT INTO memories_fts (rowid, search_text, index_context)
    VALUES (new.rowid, new.search_text, new.index_context);
END;
INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');
"#,
    },
    Migration {
        version: 4,
        name: "thread_column",
        sql: r#"
-- The conversation or thread a memory belongs to: its neighbours there lend it keyword context,
-- looked up by position (effective time, then id) within the bank's thread.
ALTER TABLE memories ADD COLUMN thread TEXT;
CREATE INDEX memories_thread ON memories (bank_id, thread, effective_at, id) WHERE thread IS NOT NULL;
"#,
    },
    Migration {
        version: 5,
        name: "change_log",
        sql: r#"
-- Listings newest first walk this index.
CREATE INDEX memories_bank_retained ON memories (bank_id, retained_at, id);
-- Each bank's change log, written by triggers in the transaction of the change, so no write
-- path can forget it. One writer at a time means sequence order is commit order.
CREATE TABLE memory_changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    bank_id   TEXT    NOT NULL,
    memory_id TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('created', 'updated', 'forgotten')),
    at        INTEGER NOT NULL
);
CREATE INDEX memory_changes_bank ON memory_changes (bank_id, seq);
CREATE INDEX memory_changes_memory ON memory_changes (bank_id, memory_id, seq);
-- What a database already holds enters the log as created (and forgotten) at its own times.
INSERT INTO memory_changes (bank_id, memory_id, kind, at)
    SELECT bank_id, id, 'created', retained_at FROM memories ORDER BY rowid;
INSERT INTO memory_changes (bank_id, memory_id, kind, at)
    SELECT bank_id, id, 'forgotten', forgotten_at FROM memories
    WHERE forgotten_at IS NOT NULL ORDER BY forgotten_at, rowid;
CREATE TRIGGER memory_changes_created AFTER INSERT ON memories BEGIN
    INSERT INTO memory_changes (bank_id, memory_id, kind, at)
    VALUES (new.bank_id, new.id, 'created', CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER));
END;
CREATE TRIGGER memory_changes_updated AFTER UPDATE OF tags, metadata ON memories
WHEN new.forgotten_at IS NULL BEGIN
    INSERT INTO memory_changes (bank_id, memory_id, kind, at)
    VALUES (new.bank_id, new.id, 'updated', CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER));
END;
CREATE TRIGGER memory_changes_forgotten AFTER UPDATE OF forgotten_at ON memories
WHEN old.forgotten_at IS NULL AND new.forgotten_at IS NOT NULL BEGIN
    INSERT INTO memory_changes (bank_id, memory_id, kind, at)
    VALUES (new.bank_id, new.id, 'forgotten', new.forgotten_at);
END;
-- Erasing a visible memory is a forget too; erasing a forgotten one was already logged.
CREATE TRIGGER memory_changes_erased AFTER DELETE ON memories
WHEN old.forgotten_at IS NULL BEGIN
    INSERT INTO memory_changes (bank_id, memory_id, kind, at)
    VALUES (old.bank_id, old.id, 'forgotten', CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER));
END;
"#,
    },
    Migration {
        version: 6,
        name: "memory_entities",
        sql: r#"
-- Each memory's entities (core::entities), written with the memory; a bank's entity table is
-- the aggregate over its visible memories, so forgetting needs no bookkeeping.
CREATE TABLE memory_entities (
    memory_rowid INTEGER NOT NULL REFERENCES memories (rowid) ON DELETE CASCADE,
    bank_id      TEXT    NOT NULL,
    entity_key   TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    mentions     INTEGER NOT NULL,
    speaker      INTEGER NOT NULL,
    PRIMARY KEY (memory_rowid, entity_key)
) WITHOUT ROWID;
CREATE INDEX memory_entities_key ON memory_entities (bank_id, entity_key, memory_rowid);
"#,
    },
    Migration {
        version: 7,
        name: "vector_index_chunks",
        sql: r#"
-- A snapshot larger than SQLite's value limit (1 GB: some 600,000 vectors of 384 dimensions)
-- continues here: vector_index.data holds its first piece, these rows the rest, in order.
CREATE TABLE vector_index_chunks (
    bank_id TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    data    BLOB    NOT NULL,
    PRIMARY KEY (bank_id, seq)
);
CREATE TRIGGER vector_index_chunks_follow AFTER DELETE ON vector_index BEGIN
    DELETE FROM vector_index_chunks WHERE bank_id = old.bank_id;
END;
"#,
    },
    Migration {
        version: 8,
        name: "keyword_index_snapshots",
        sql: r#"
-- Snapshots of the per-bank keyword index (store-sqlite keyword/snapshot.rs): one row per bank
-- with the highest row id it covers and a checksum of its bytes, which are in the pieces.
CREATE TABLE keyword_index (
    bank_id    TEXT    PRIMARY KEY,
    max_rowid  INTEGER NOT NULL,
    pieces     INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    checksum   INTEGER NOT NULL,
    written_at INTEGER NOT NULL
);
CREATE TABLE keyword_index_chunks (
    bank_id TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    data    BLOB    NOT NULL,
    PRIMARY KEY (bank_id, seq)
);
-- Rows a snapshot covers whose words or visibility changed after it was written; a load
-- re-reads them. Written by triggers in the transaction of the change, so no write path can
-- leave a snapshot stale, and only while the bank has a snapshot covering the row.
CREATE TABLE keyword_index_changed (
    bank_id      TEXT    NOT NULL,
    memory_rowid INTEGER NOT NULL,
    PRIMARY KEY (bank_id, memory_rowid)
) WITHOUT ROWID;
CREATE TRIGGER keyword_index_follow AFTER DELETE ON keyword_index BEGIN
    DELETE FROM keyword_index_chunks WHERE bank_id = old.bank_id;
    DELETE FROM keyword_index_changed WHERE bank_id = old.bank_id;
END;
CREATE TRIGGER keyword_index_changed_update
AFTER UPDATE OF bank_id, text, index_text, index_context, forgotten_at ON memories
WHEN EXISTS (SELECT 1 FROM keyword_index k WHERE k.bank_id IN (old.bank_id, new.bank_id) AND old.rowid <= k.max_rowid)
BEGIN
    INSERT OR IGNORE INTO keyword_index_changed (bank_id, memory_rowid)
        SELECT k.bank_id, old.rowid FROM keyword_index k
        WHERE k.bank_id IN (old.bank_id, new.bank_id) AND old.rowid <= k.max_rowid;
END;
CREATE TRIGGER keyword_index_changed_delete AFTER DELETE ON memories
WHEN EXISTS (SELECT 1 FROM keyword_index k WHERE k.bank_id = old.bank_id AND old.rowid <= k.max_rowid)
BEGIN
    INSERT OR IGNORE INTO keyword_index_changed (bank_id, memory_rowid) VALUES (old.bank_id, old.rowid);
END;
"#,
    },
    Migration {
        version: 9,
        name: "memories_rowid_hash",
        sql: r#"
-- The near-duplicate check finds exact twins through a map of hashes to rows kept in memory
-- (store-sqlite vectors.rs), loaded from this index; a new row's entry lands at its end. The
-- index on (bank_id, embedding_hash) it replaces took each insert to a random page: at 1M rows
-- that was a third of a retain's commit.
DROP INDEX memories_bank_embedding_hash;
CREATE INDEX memories_bank_rowid_hash ON memories (bank_id, rowid, embedding_hash);
"#,
    },
    Migration {
        version: 10,
        name: "drop_fts5",
        sql: r#"
-- Every keyword search now ranks through the bank's in-memory index (store-sqlite
-- keyword.rs), filtered ones included. Keeping FTS5 in step doubled a retain's row writes
-- (56 s against 26 s over a million memories in one bank), for searches the index answers.
DROP TRIGGER memories_fts_insert;
DROP TRIGGER memories_fts_delete;
DROP TRIGGER memories_fts_update;
DROP TABLE memories_fts;
"#,
    },
];

/// Migrations of the API-key directory file (`_directory.keys.db`), which is not a tenant.
const KEY_DIRECTORY_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "api_keys",
    sql: r#"
CREATE TABLE api_keys (
    key_id     TEXT    PRIMARY KEY,
    key_hash   TEXT    NOT NULL UNIQUE,
    schema     TEXT    NOT NULL,
    principal  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_schema ON api_keys (schema, key_id);
"#,
}];

/// Brings a tenant database up to the newest schema; a no-op when it already is. Fails when the
/// file was migrated by a newer build than this one (its schema is unknown to us).
pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    apply(conn, MIGRATIONS)
}

/// [`migrate`] for the API-key directory file.
pub(crate) fn migrate_key_directory(conn: &mut Connection) -> StoreResult<()> {
    apply(conn, KEY_DIRECTORY_MIGRATIONS)
}

fn apply(conn: &mut Connection, migrations: &[Migration]) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         );",
    )?;
    let newest_known = migrations.last().map(|m| m.version).unwrap_or(0);
    for migration in migrations {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [migration.version],
                |row| row.get(0),
            )
            .optional()?;
        if applied.is_none() {
            tx.execute_batch(migration.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    migration.version,
                    migration.name,
                    chrono::Utc::now().timestamp_micros()
                ],
            )?;
            tracing::debug!(
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
        }
        tx.commit()?;
    }
    let newest_applied: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    if newest_applied > newest_known {
        return Err(astrocyte_core::Error::Conflict(format!(
            "database schema version {newest_applied} is newer than this build supports ({newest_known})"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_applies_each_version_once() {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        migrate(&mut conn).expect("first migration");
        migrate(&mut conn).expect("second migration is a no-op");
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| {
                row.get(0)
            })
            .expect("ledger");
        assert_eq!(rows, MIGRATIONS.len() as i64);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('memories', 'memory_tags', 'vector_index', 'embedding_space')",
                [],
                |row| row.get(0),
            )
            .expect("schema");
        assert_eq!(tables, 4);
    }

    #[test]
    fn a_database_of_the_first_version_gains_jobs_and_settings() {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        apply(&mut conn, &MIGRATIONS[..1]).expect("version 1 only");
        conn.execute_batch(
            "INSERT INTO embedding_space (singleton, model, dimension, recorded_at) VALUES (1, 'm', 3, 0)",
        )
        .expect("data of version 1");
        migrate(&mut conn).expect("upgrade");
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('jobs', 'settings')",
                [],
                |row| row.get(0),
            )
            .expect("schema");
        assert_eq!(tables, 2);
        let kept: String = conn
            .query_row("SELECT model FROM embedding_space", [], |row| row.get(0))
            .expect("old data kept");
        assert_eq!(kept, "m");
        let newest: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |row| {
                row.get(0)
            })
            .expect("ledger");
        assert_eq!(newest, MIGRATIONS.len() as i64);
    }

    #[test]
    fn upgrading_keeps_old_rows_searchable_and_indexes_context_apart() {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        apply(&mut conn, &MIGRATIONS[..2]).expect("version 2");
        conn.execute(
            "INSERT INTO memories (id, bank_id, text, index_text, fact_type, retained_at, effective_at, embedding, embedding_hash)
             VALUES ('old', 'b', 'lighthouse keeper', 'May 2023 lighthouse keeper', 'world', 0, 0, x'', 0)",
            [],
        )
        .expect("row of version 2");
        // Up to the last version with FTS5, which the next one drops.
        apply(&mut conn, &MIGRATIONS[..9]).expect("upgrade to version 9");
        conn.execute(
            "INSERT INTO memories (id, bank_id, text, index_context, fact_type, retained_at, effective_at, embedding, embedding_hash)
             VALUES ('new', 'b', 'keeper of bees', 'lighthouse tour', 'world', 0, 0, x'', 0)",
            [],
        )
        .expect("row of version 3");
        let matching = |query: &str| -> Vec<String> {
            let mut statement = conn
                .prepare(
                    "SELECT m.id FROM memories_fts JOIN memories m ON m.rowid = memories_fts.rowid
                     WHERE memories_fts MATCH ?1 ORDER BY bm25(memories_fts, 1.0, 0.5), m.id",
                )
                .expect("query");
            let ids = statement
                .query_map([query], |row| row.get(0))
                .expect("rows")
                .collect::<Result<Vec<String>, _>>()
                .expect("ids");
            ids
        };
        assert_eq!(matching("may"), vec!["old"], "the old row was re-indexed");
        assert_eq!(
            matching("lighthouse"),
            vec!["old", "new"],
            "a match in the memory's own text outranks one in its context"
        );
        conn.execute("DELETE FROM memories WHERE id = 'new'", [])
            .expect("delete");
        assert_eq!(
            matching("tour"),
            Vec::<String>::new(),
            "deleted context leaves the index"
        );
        migrate(&mut conn).expect("upgrade");
        let (fts, rows): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'memories_fts%'),
                        (SELECT COUNT(*) FROM memories)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("schema");
        assert_eq!((fts, rows), (0, 1), "FTS5 is gone and the rows stay");
    }

    #[test]
    fn the_key_directory_has_its_own_ledger() {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        migrate_key_directory(&mut conn).expect("migration");
        migrate_key_directory(&mut conn).expect("no-op");
        let memories: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'memories'",
                [],
                |row| row.get(0),
            )
            .expect("schema");
        assert_eq!(memories, 0, "the key directory holds no tenant tables");
        conn.execute(
            "INSERT INTO api_keys (key_id, key_hash, schema, principal, created_at) VALUES ('k', 'h', 's', 'p', 0)",
            [],
        )
        .expect("api_keys exists");
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        migrate(&mut conn).expect("migration");
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
            [],
        )
        .expect("fake future migration");
        let error = migrate(&mut conn).expect_err("newer schema must be refused");
        assert!(error.to_string().contains("newer"), "{error}");
    }
}
