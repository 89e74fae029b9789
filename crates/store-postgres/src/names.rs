//! Every SQL identifier this backend interpolates: tenant tables through `fq_table`, tenant
//! role names derived from the database and the schema, and pgvector's qualified type and operator. Values are
//! never formatted into SQL; only these validated names are.

use astrocyte_core::tenancy::{
    fq_table, validate_identifier, IdentifierLabel, MAX_IDENTIFIER_BYTES,
};
use astrocyte_core::Schema;
use sha2::{Digest, Sha256};

use crate::error::{PgError, PgResult};

/// The tenant directory's table in `public`.
pub(crate) const DIRECTORY_TABLE: &str = "astrocyte_tenants";
/// A tenant's memories.
pub(crate) const MEMORIES_TABLE: &str = "astrocyte_memories";
/// A tenant's key/value facts about itself (the embedding space).
pub(crate) const META_TABLE: &str = "astrocyte_meta";
/// A tenant's migration ledger.
pub(crate) const LEDGER_TABLE: &str = "astrocyte_migrations";
/// A tenant's background job queue.
pub(crate) const JOBS_TABLE: &str = "astrocyte_jobs";
/// A tenant's JSON settings (lifecycle policies, legal holds).
pub(crate) const SETTINGS_TABLE: &str = "astrocyte_settings";
/// A tenant's change log (created, updated, forgotten per memory).
pub(crate) const CHANGES_TABLE: &str = "astrocyte_changes";
/// A tenant's entity table: which entities each memory mentions.
pub(crate) const ENTITIES_TABLE: &str = "astrocyte_memory_entities";
/// The API-key directory's table in `public`, beside the tenant directory.
pub(crate) const KEYS_TABLE: &str = "astrocyte_api_keys";
/// Name of the HNSW index (over the vectors' half-precision cast); indexes always live in
/// their table's schema.
pub(crate) const HNSW_INDEX: &str = "astrocyte_memories_halfvec_hnsw";
/// Name of the full-precision HNSW index tenants had before migration 8 replaced it.
pub(crate) const VECTOR_HNSW_INDEX: &str = "astrocyte_memories_embedding_hnsw";
/// pgvector's HNSW index takes `halfvec` values of up to this many dimensions; larger spaces
/// are stored and searched exactly, without an index.
pub(crate) const HNSW_MAX_DIMENSION: usize = 4000;

/// Advisory-lock class for migrations of one schema (`pg_advisory_xact_lock(class, hashtext(schema))`).
pub(crate) const LOCK_MIGRATE: i32 = 0x4153_4d31;
/// Advisory-lock class for tenant creation and drop.
pub(crate) const LOCK_TENANT: i32 = 0x4153_5431;
/// Advisory-lock class for typing a tenant's vector column on first use.
pub(crate) const LOCK_SPACE: i32 = 0x4153_5331;
/// Advisory-lock class for the one-time bootstrap (extension and directory).
pub(crate) const LOCK_BOOTSTRAP: i32 = 0x4153_4231;
/// Advisory-lock class (key 0, on the home database) serialising placed tenant creations.
pub(crate) const LOCK_PLACEMENT: i32 = 0x4153_504c;
/// Advisory-lock class held (per tenant, on the home database) by a running move.
pub(crate) const LOCK_MOVE: i32 = 0x4153_4d56;

/// Hex digits of the schema hash appended to every role name: 48 bits keeps collisions out of
/// reach for any realistic tenant count while leaving room for a readable schema prefix.
const ROLE_HASH_HEX: usize = 12;

/// Hex digits of the database tag: the database's OID (a `u32`), so fixed width.
pub(crate) const DATABASE_TAG_HEX: usize = 8;

/// The longest role prefix accepted, so a useful slice of the schema name still fits.
pub(crate) const MAX_ROLE_PREFIX_BYTES: usize = 32;

/// A validated PostgreSQL role name owning one tenant's schema.
///
/// Invariant: satisfies the identifier rule and is at most 63 bytes, so it can be
/// double-quoted into SQL without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleName(String);

impl RoleName {
    /// Validates a stored role name (read back from the directory).
    pub(crate) fn parse(name: &str) -> PgResult<Self> {
        // The identifier rule is the same for roles; the label only shapes the message.
        validate_identifier(name, IdentifierLabel::Schema).map_err(|_| {
            PgError::Decode(format!(
                "invalid role name {name:?} in the tenant directory"
            ))
        })?;
        Ok(RoleName(name.to_string()))
    }

    /// Derives the role for `schema` in the database tagged `database`: the prefix, the
    /// database tag, as much of the schema as fits, and a hash of the whole schema so
    /// truncated names never collide. Roles are cluster-wide; the tag keeps two databases of
    /// one cluster from wanting the same role for the same tenant, and lets
    /// [`orphan_role_pattern`] find exactly the roles this database created.
    pub(crate) fn derive(prefix: &str, database: &DatabaseTag, schema: &Schema) -> PgResult<Self> {
        validate_role_prefix(prefix)?;
        let hash = schema_hash(schema);
        let room = MAX_IDENTIFIER_BYTES - prefix.len() - DATABASE_TAG_HEX - 2 - ROLE_HASH_HEX;
        // Schema names are ASCII (identifier rule), so byte slicing is on a char boundary.
        let head = &schema.as_str()[..schema.as_str().len().min(room)];
        let name = format!("{prefix}{database}_{head}_{hash}");
        debug_assert!(name.len() <= MAX_IDENTIFIER_BYTES);
        Self::parse(&name)
    }

    /// The name releases before the database tag gave `schema`'s role
    /// (`<prefix><schema head>_<hash>`). Tenants created then keep that role: the directory
    /// records every tenant's role, and only new tenants get tagged names.
    pub fn legacy(prefix: &str, schema: &Schema) -> PgResult<Self> {
        validate_role_prefix(prefix)?;
        let hash = schema_hash(schema);
        let room = MAX_IDENTIFIER_BYTES - prefix.len() - 1 - ROLE_HASH_HEX;
        let head = &schema.as_str()[..schema.as_str().len().min(room)];
        Self::parse(&format!("{prefix}{head}_{hash}"))
    }

    /// The role name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name double-quoted for SQL.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn schema_hash(schema: &Schema) -> String {
    let digest = Sha256::digest(schema.as_str().as_bytes());
    hex::encode(digest)[..ROLE_HASH_HEX].to_string()
}

/// A short identifier of one database of the cluster, part of every tenant role name it
/// creates: its OID in eight lower-case hex digits. Unique among the cluster's live databases
/// and stable for the database's life (a rename keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabaseTag(String);

impl DatabaseTag {
    /// The tag of the database with this OID.
    pub(crate) fn from_oid(oid: u32) -> Self {
        DatabaseTag(format!("{oid:08x}"))
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DatabaseTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `role` has the exact shape [`RoleName::derive`] gives roles of the database
/// tagged `database` under `prefix`: `<prefix><tag>_<schema head>_<12 hex>`.
pub(crate) fn is_tagged_role(prefix: &str, database: &DatabaseTag, role: &str) -> bool {
    let Some(rest) = role
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(database.as_str()))
        .and_then(|rest| rest.strip_prefix('_'))
    else {
        return false;
    };
    let Some((head, hash)) = rest.rsplit_once('_') else {
        return false;
    };
    !head.is_empty()
        && hash.len() == ROLE_HASH_HEX
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && validate_identifier(head, IdentifierLabel::Schema).is_ok()
}

/// Checks a role prefix: identifier characters, starting like an identifier, short enough.
pub(crate) fn validate_role_prefix(prefix: &str) -> PgResult<()> {
    if prefix.len() > MAX_ROLE_PREFIX_BYTES
        || validate_identifier(prefix, IdentifierLabel::Schema).is_err()
    {
        return Err(PgError::Config(format!(
            "role prefix {prefix:?} must match ^[a-zA-Z_][a-zA-Z0-9_]*$ and be at most {MAX_ROLE_PREFIX_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Double-quotes an already validated schema name.
pub(crate) fn quoted_schema(schema: &Schema) -> String {
    format!("\"{}\"", schema.as_str())
}

/// The fully qualified tables of one tenant, built once through `fq_table`.
#[derive(Debug, Clone)]
pub(crate) struct TenantTables {
    pub(crate) memories: String,
    pub(crate) meta: String,
    pub(crate) ledger: String,
    pub(crate) jobs: String,
    pub(crate) settings: String,
    pub(crate) changes: String,
    pub(crate) entities: String,
}

impl TenantTables {
    pub(crate) fn new(schema: &Schema) -> Self {
        // The table names are constants satisfying the identifier rule.
        let table = |name: &str| {
            fq_table(schema, name).expect("table name constants are valid identifiers")
        };
        TenantTables {
            memories: table(MEMORIES_TABLE),
            meta: table(META_TABLE),
            ledger: table(LEDGER_TABLE),
            jobs: table(JOBS_TABLE),
            settings: table(SETTINGS_TABLE),
            changes: table(CHANGES_TABLE),
            entities: table(ENTITIES_TABLE),
        }
    }
}

/// What a server's tenant SQL is built with: pgvector's type and operators qualified by the
/// schema the extension lives in (so tenant SQL resolves them without `public`, or anything
/// else, on the search path), the HNSW parameters and the statement timeout.
///
/// The HNSW graph is built over the vectors cast to `halfvec`: half the bytes per node made
/// inserts 1.5 times and scans twice as fast at 100k with the same recall@10
/// (docs/benchmarks/postgres-hnsw.md). The column and every returned distance stay full
/// precision; only the index's ordering is computed on the cast.
#[derive(Debug, Clone)]
pub(crate) struct VectorSql {
    /// `"<ext>".vector`
    pub(crate) vector: String,
    /// `OPERATOR("<ext>".<=>)`: cosine distance.
    pub(crate) cosine: String,
    /// `"<ext>".halfvec`
    pub(crate) halfvec: String,
    /// `"<ext>".halfvec_cosine_ops`
    pub(crate) halfvec_cosine_ops: String,
    /// The extension's schema.
    pub(crate) schema: Schema,
    /// The HNSW parameters of the indexes built and scanned.
    pub(crate) hnsw: HnswParams,
    /// The store's statement timeout in milliseconds, set again in every tenant transaction:
    /// a pooler in transaction mode drops the startup parameter that sets it per connection.
    pub(crate) statement_timeout_ms: Option<u128>,
}

/// pgvector HNSW parameters, within pgvector's bounds (checked by the store's options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HnswParams {
    pub(crate) m: usize,
    pub(crate) ef_construction: usize,
    pub(crate) ef_search: usize,
    /// A bulk load into a tenant holding fewer rows than this builds the index once at its end
    /// (0: never); see `bulk.rs`.
    pub(crate) bulk_load_below: usize,
    /// `maintenance_work_mem` in MiB for the index builds the store starts (0: the server's).
    pub(crate) build_memory_mb: usize,
}

impl HnswParams {
    /// `SET LOCAL` statements for a transaction that builds an index: no statement timeout (a
    /// build is bounded by the tenant's size) and the configured build memory.
    pub(crate) fn build_settings(&self) -> String {
        let memory = match self.build_memory_mb {
            0 => String::new(),
            mb => format!(" SET LOCAL maintenance_work_mem = '{mb}MB';"),
        };
        format!("SET LOCAL statement_timeout = 0;{memory}")
    }
}

impl VectorSql {
    pub(crate) fn new(
        schema: Schema,
        hnsw: HnswParams,
        statement_timeout_ms: Option<u128>,
    ) -> Self {
        let quoted = quoted_schema(&schema);
        VectorSql {
            vector: format!("{quoted}.vector"),
            cosine: format!("OPERATOR({quoted}.<=>)"),
            halfvec: format!("{quoted}.halfvec"),
            halfvec_cosine_ops: format!("{quoted}.halfvec_cosine_ops"),
            schema,
            hnsw,
            statement_timeout_ms,
        }
    }

    /// Builds the HNSW index on `table`'s vectors of `dimension` (text, so that migration 8
    /// can fill it in from a PL/pgSQL variable). The caller checks `HNSW_MAX_DIMENSION`.
    pub(crate) fn index_ddl(&self, table: &str, dimension: &str) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON {table} USING hnsw \
             ((embedding::{halfvec}({dimension})) {ops}) WITH (m = {m}, ef_construction = {ef})",
            halfvec = self.halfvec,
            ops = self.halfvec_cosine_ops,
            m = self.hnsw.m,
            ef = self.hnsw.ef_construction
        )
    }

    /// The distance of `column` to `query` (a `vector`) in the index's own expression, for
    /// `ORDER BY`: PostgreSQL answers an ordering from the index only when it is written
    /// exactly as the index was built.
    pub(crate) fn indexed_distance(&self, column: &str, query: &str, dimension: usize) -> String {
        format!(
            "({column}::{half}({dimension})) {op} ({query})::{half}({dimension})",
            half = self.halfvec,
            op = self.cosine
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag() -> DatabaseTag {
        DatabaseTag::from_oid(16_384)
    }

    #[test]
    fn role_names_fit_and_differ_for_long_schemas() {
        let long_a = Schema::new("a".repeat(63)).expect("valid");
        let long_b = Schema::new(format!("{}b", "a".repeat(62))).expect("valid");
        let prefix = "x".repeat(MAX_ROLE_PREFIX_BYTES);
        for prefix in ["astro_t_", prefix.as_str()] {
            let role_a = RoleName::derive(prefix, &tag(), &long_a).expect("role");
            let role_b = RoleName::derive(prefix, &tag(), &long_b).expect("role");
            assert!(role_a.as_str().len() <= 63, "{role_a}");
            assert_ne!(role_a, role_b);
            assert!(role_a
                .as_str()
                .starts_with(&format!("{prefix}00004000_aaaa")));
            assert!(is_tagged_role(prefix, &tag(), role_a.as_str()));
        }
    }

    #[test]
    fn role_names_are_stable_and_differ_per_database() {
        let schema = Schema::new("acme").expect("valid");
        let first = RoleName::derive("p_", &tag(), &schema).expect("role");
        let second = RoleName::derive("p_", &tag(), &schema).expect("role");
        assert_eq!(first, second);
        assert!(first.as_str().starts_with("p_00004000_acme_"), "{first}");
        assert_eq!(first.as_str().len(), "p_00004000_acme_".len() + 12);
        let other = RoleName::derive("p_", &DatabaseTag::from_oid(16_385), &schema).expect("role");
        assert_ne!(first, other);
        assert!(!is_tagged_role("p_", &tag(), other.as_str()));
        assert!(is_tagged_role(
            "p_",
            &DatabaseTag::from_oid(16_385),
            other.as_str()
        ));
    }

    #[test]
    fn legacy_names_are_the_old_derivation_and_not_tagged() {
        let schema = Schema::new("acme").expect("valid");
        let legacy = RoleName::legacy("p_", &schema).expect("role");
        // The pre-tag scheme: prefix, schema, 12 hex digits of sha256(schema).
        let digest = hex::encode(Sha256::digest(b"acme"));
        assert_eq!(legacy.as_str(), format!("p_acme_{}", &digest[..12]));
        assert!(!is_tagged_role("p_", &tag(), legacy.as_str()));
        assert!(!is_tagged_role(
            "p_",
            &tag(),
            "p_00004000_acme_notahexhash1"
        ));
        assert!(!is_tagged_role("p_", &tag(), "p_00004000__0123456789ab"));
        assert!(!is_tagged_role(
            "q_",
            &tag(),
            "p_00004000_acme_0123456789ab"
        ));
        assert!(is_tagged_role("p_", &tag(), "p_00004000_acme_0123456789ab"));
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        assert!(validate_role_prefix("bad-prefix").is_err());
        assert!(validate_role_prefix("1abc").is_err());
        assert!(validate_role_prefix(&"x".repeat(33)).is_err());
        assert!(validate_role_prefix("ok_").is_ok());
    }
}
