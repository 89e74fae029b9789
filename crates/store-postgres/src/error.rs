//! The backend's error enum and the one function that maps driver failures into core's
//! [`astrocyte_core::Error`] by SQLSTATE. Nothing here retries or logs.

use astrocyte_core::Error;
use tokio_postgres::error::SqlState;

/// Failures of the PostgreSQL backend before they are mapped into core's error.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The server answered with an error or the connection failed.
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No pooled connection could be obtained.
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The pool could not be built from the options.
    #[error("connection pool setup: {0}")]
    PoolSetup(#[from] deadpool_postgres::BuildError),
    /// The connection URL or an option is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A tenant transaction was used after it was committed or rolled back.
    #[error("transaction already finished")]
    Finished,
    /// A stored row could not be turned back into a domain value.
    #[error("corrupt row: {0}")]
    Decode(String),
    /// The tenant's copy on this server is fenced for a move, or gone (its schema or role
    /// dropped after a move): the directory may place it elsewhere now.
    #[error("tenant not on this server any more: {0}")]
    Relocated(tokio_postgres::Error),
}

/// Result alias of this crate's internals.
pub(crate) type PgResult<T> = std::result::Result<T, PgError>;

impl From<PgError> for Error {
    fn from(error: PgError) -> Self {
        match error {
            PgError::Db(db) => map_db_error(db),
            // No connection could be had (refused, timed out, pool closed): an outage, not a bug.
            PgError::Pool(pool) => Error::StorageUnavailable(pool_message(&pool)),
            PgError::PoolSetup(setup) => Error::Storage(format!("connection pool setup: {setup}")),
            PgError::Config(message) => Error::InvalidInput(message),
            PgError::Decode(message) => Error::Internal(format!("corrupt row: {message}")),
            PgError::Finished => Error::Internal("transaction already finished".into()),
            // The next attempt looks the tenant up again and goes where it is now.
            PgError::Relocated(db) => Error::StorageUnavailable(format!(
                "tenant moved or moving between servers, retry: {}",
                db.as_db_error().map(|e| e.message()).unwrap_or("")
            )),
        }
    }
}

/// A pool error with the server's own words when the server refused the connection (the
/// driver's text alone is "db error").
fn pool_message(pool: &deadpool_postgres::PoolError) -> String {
    match pool {
        deadpool_postgres::PoolError::Backend(error) => match error.as_db_error() {
            Some(db) => format!("connection pool: {pool}: {}", db.message()),
            None => format!("connection pool: {pool}"),
        },
        _ => format!("connection pool: {pool}"),
    }
}

/// Maps a driver error into core's error by SQLSTATE, so callers see causes (conflict,
/// forbidden, missing tenant) instead of driver text.
pub(crate) fn map_db_error(error: tokio_postgres::Error) -> Error {
    let Some(db) = error.as_db_error() else {
        // No answer from the server: the connection was refused, reset or closed.
        return if error.is_closed() || is_connection_failure(&error) {
            Error::StorageUnavailable(format!("postgres: {error}"))
        } else {
            Error::Storage(format!("postgres: {error}"))
        };
    };
    let detail = match db.detail() {
        Some(detail) => format!("{}: {detail}", db.message()),
        None => db.message().to_string(),
    };
    let code = db.code();
    if code.code() == crate::relocate::FENCED_SQLSTATE {
        // A write reached a tenant fenced for a move (outside a tenant transaction, which
        // reports `Relocated`).
        return Error::StorageUnavailable(format!("tenant is moving between servers: {detail}"));
    }
    if *code == SqlState::UNIQUE_VIOLATION
        || *code == SqlState::DUPLICATE_SCHEMA
        || *code == SqlState::DUPLICATE_OBJECT
        || *code == SqlState::DUPLICATE_TABLE
    {
        Error::Conflict(detail)
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        // The role layer refused: a query reached outside its tenant.
        Error::Forbidden(detail)
    } else if *code == SqlState::INVALID_SCHEMA_NAME || *code == SqlState::UNDEFINED_TABLE {
        Error::NotFound(format!("tenant storage missing: {detail}"))
    } else if *code == SqlState::DATA_EXCEPTION
        || *code == SqlState::INVALID_TEXT_REPRESENTATION
        || *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
    {
        // pgvector reports dimension mismatches and bad vectors as data exceptions.
        Error::InvalidInput(detail)
    } else if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
    {
        // Connection exceptions and a server going down or starting up: retry later.
        Error::StorageUnavailable(format!("postgres {}: {detail}", code.code()))
    } else if *code == SqlState::QUERY_CANCELED {
        Error::Storage(format!("statement timed out: {detail}"))
    } else {
        Error::Storage(format!("postgres {}: {detail}", code.code()))
    }
}

/// Whether a driver error without a server answer comes from the connection (I/O) rather than
/// from encoding or decoding values.
fn is_connection_failure(error: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether a driver error carries this SQLSTATE.
pub(crate) fn has_code(error: &PgError, state: &SqlState) -> bool {
    match error {
        PgError::Db(db) | PgError::Relocated(db) => db.code() == Some(state),
        _ => false,
    }
}
