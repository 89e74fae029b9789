//! The store's own error type and its one mapping into [`astrocyte_core::Error`]; driver
//! errors never cross the crate boundary unmapped.

use astrocyte_core::Error;

/// Everything that can go wrong inside the SQLite store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The SQLite driver failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An error already expressed in core's terms (validation, not found, mismatch).
    #[error(transparent)]
    Core(#[from] Error),
    /// A stored JSON column could not be read back; the database was edited by hand or is
    /// damaged.
    #[error("stored json is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value broke an invariant the store maintains (bad timestamp, vector blob).
    #[error("corrupt row: {0}")]
    CorruptRow(String),
    /// The tenant was dropped while a handle to it was still in use.
    #[error("tenant {0} was dropped")]
    TenantDropped(String),
    /// The blocking task running the query panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The vector index refused an operation (a broken invariant: vectors are validated
    /// before they reach it).
    #[error("vector index: {0}")]
    Ann(#[from] astrocyte_ann::AnnError),
    /// Reading or writing the data directory failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias used inside the crate.
pub(crate) type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for Error {
    /// The one place driver errors become core errors: constraint violations are conflicts
    /// (a duplicate memory id), a busy database is reported as a storage error with the
    /// driver's message for the logs, everything unexpected is a storage or internal error.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Core(core) => core,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, message))
                if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::Conflict(format!(
                    "write conflicts with stored data: {}",
                    message.unwrap_or_else(|| failure.to_string())
                ))
            }
            StoreError::Sqlite(other) => Error::storage(other),
            StoreError::TenantDropped(schema) => {
                Error::NotFound(format!("tenant {schema} was dropped"))
            }
            StoreError::Io(io) => Error::Io(io),
            StoreError::Json(_)
            | StoreError::CorruptRow(_)
            | StoreError::Join(_)
            | StoreError::Ann(_) => Error::Internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use astrocyte_core::ErrorKind;

    #[test]
    fn a_unique_violation_is_a_conflict_and_others_are_storage_errors() {
        let conn = rusqlite::Connection::open_in_memory().expect("in-memory sqlite");
        conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY); INSERT INTO t VALUES ('a');")
            .expect("setup");
        let duplicate = conn
            .execute("INSERT INTO t VALUES ('a')", [])
            .expect_err("duplicate key must fail");
        assert_eq!(
            Error::from(StoreError::from(duplicate)).kind(),
            ErrorKind::Conflict
        );
        let syntax = conn.execute("NOT SQL", []).expect_err("bad sql must fail");
        assert_eq!(
            Error::from(StoreError::from(syntax)).kind(),
            ErrorKind::Internal
        );
        let dropped = Error::from(StoreError::TenantDropped("t1".into()));
        assert_eq!(dropped.kind(), ErrorKind::NotFound);
    }
}
