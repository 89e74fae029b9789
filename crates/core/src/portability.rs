//! Export and import in the AMA v1 JSON Lines format, streamed page by page so a bank of any
//! size is exported whole, and the path policy that confines files to configured roots.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::embed::EmbedPurpose;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{
    BankId, ForgetMode, ForgetSelector, Memory, MemoryId, Metadata, NewMemory, Timestamp,
    DEFAULT_FACT_TYPE,
};
use crate::pipeline::validate::{
    check_content, check_id, check_metadata_scalars, check_metadata_shape, check_text,
    check_timestamp, normalize_tags, sanitize_metadata, RetainLimits, MAX_ID_BYTES,
};
use crate::store::TenantStore;
use crate::tenancy::Schema;

/// Memories read per page while exporting.
const EXPORT_PAGE: usize = 500;

/// The first line of an AMA file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AmaHeader {
    /// Always 1.
    #[serde(rename = "_ama_version")]
    pub ama_version: u32,
    /// The exported bank.
    pub bank_id: String,
    /// When the export started.
    pub exported_at: Timestamp,
    /// The backend that produced it.
    pub provider: String,
    /// Memories in the file.
    pub memory_count: u64,
}

/// One memory line of an AMA file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AmaRecord {
    /// Memory id.
    pub id: String,
    /// Text.
    pub text: String,
    /// Fact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact_type: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
    /// Origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Bank at export time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_id: Option<String>,
    /// When it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_at: Option<Timestamp>,
    /// The conversation or thread it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// Vector, when exported with embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// The structural rules of an imported record, the same a retain obeys (no NUL character,
/// dates both stores hold, bounded id and metadata), so both stores take the same files.
pub fn check_record(record: &AmaRecord, limits: &RetainLimits) -> Result<()> {
    check_id("id", &record.id, MAX_ID_BYTES)?;
    check_text("text", &record.text)?;
    for tag in record.tags.iter().flatten() {
        check_text("tags", tag)?;
    }
    if let Some(metadata) = &record.metadata {
        check_metadata_shape("metadata", metadata, limits)?;
    }
    for (field, value) in [("fact_type", &record.fact_type), ("source", &record.source)] {
        if let Some(value) = value {
            check_text(field, value)?;
        }
    }
    for (field, at) in [
        ("occurred_at", &record.occurred_at),
        ("retained_at", &record.retained_at),
    ] {
        if let Some(at) = at {
            check_timestamp(field, at)?;
        }
    }
    Ok(())
}

impl From<Memory> for AmaRecord {
    fn from(m: Memory) -> Self {
        AmaRecord {
            id: m.id,
            text: m.text,
            fact_type: Some(m.fact_type),
            tags: (!m.tags.is_empty()).then_some(m.tags),
            metadata: (!m.metadata.is_empty()).then_some(m.metadata),
            occurred_at: m.occurred_at,
            source: m.source,
            bank_id: Some(m.bank_id.to_string()),
            retained_at: Some(m.retained_at),
            thread: m.thread,
            embedding: m.embedding,
        }
    }
}

/// What to do when an imported id already exists in the bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Keep the stored memory.
    #[default]
    Skip,
    /// Replace it.
    Overwrite,
}

/// Counts of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Memories written.
    pub imported: u64,
    /// Memories skipped because the id existed.
    pub skipped: u64,
    /// Lines that could not be imported.
    pub errors: u64,
    /// Why, for the first [`MAX_REJECTIONS_REPORTED`] of them.
    pub rejected: Vec<RejectedLine>,
}

/// A line an import refused, with its number in the file (the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedLine {
    /// 1-based line number.
    pub line: u64,
    /// Why it was refused.
    pub reason: String,
}

/// Reasons kept per import: enough to fix a file, bounded for a file of garbage.
pub const MAX_REJECTIONS_REPORTED: usize = 10_000;

impl ImportReport {
    fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.errors += 1;
        if self.rejected.len() < MAX_REJECTIONS_REPORTED {
            self.rejected.push(RejectedLine {
                line,
                reason: reason.into(),
            });
        }
    }
}

/// Longest path accepted for export or import, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest file name accepted, in bytes (`NAME_MAX` of common file systems).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Confines export/import files to configured root directories.
#[derive(Debug, Clone, Default)]
pub struct PathPolicy {
    roots: Vec<PathBuf>,
}

impl PathPolicy {
    /// A policy allowing files under `roots` (which must exist).
    pub fn new(roots: Vec<PathBuf>) -> Result<Self> {
        let roots = roots
            .into_iter()
            .map(|r| {
                r.canonicalize().map_err(|e| {
                    Error::invalid(format!("export root {} is not usable: {e}", r.display()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PathPolicy { roots })
    }

    /// Resolves `requested` (absolute, or relative to the first root) to a path inside a root.
    /// `..` components are refused outright and the parent directory is canonicalised, so
    /// neither traversal nor a symlinked directory can escape.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf> {
        if self.roots.is_empty() {
            return Err(Error::Forbidden(
                "file export/import is disabled: no export roots are configured".into(),
            ));
        }
        if requested.contains('\0') {
            return Err(Error::invalid("path must not contain a NUL character"));
        }
        if requested.len() > MAX_PATH_BYTES {
            return Err(Error::invalid(format!(
                "path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        let path = Path::new(requested);
        if requested.is_empty() || path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(Error::invalid(format!("path {requested:?} is not allowed")));
        }
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.roots[0].join(path)
        };
        let file_name = joined
            .file_name()
            .ok_or_else(|| Error::invalid(format!("path {requested:?} names no file")))?;
        let parent = joined
            .parent()
            .ok_or_else(|| Error::invalid(format!("path {requested:?} names no file")))?
            .canonicalize()
            .map_err(|e| {
                Error::invalid(format!("directory of {requested:?} is not usable: {e}"))
            })?;
        if file_name.len() > MAX_FILE_NAME_BYTES {
            return Err(Error::invalid(format!(
                "file name of {requested:?} is longer than {MAX_FILE_NAME_BYTES} bytes"
            )));
        }
        let resolved = parent.join(file_name);
        let resolved = match resolved.canonicalize() {
            Ok(existing) => existing,
            Err(_) => resolved,
        };
        if resolved.is_dir() {
            return Err(Error::invalid(format!(
                "path {requested:?} is a directory, not a file"
            )));
        }
        // Both the file and its directory (where an export writes its temporary file) must be
        // inside a root: `"."` or the root itself would otherwise name the root, whose parent
        // is outside.
        let inside = |p: &Path| self.roots.iter().any(|root| p.starts_with(root));
        let resolved_parent = resolved.parent().unwrap_or(&parent);
        if inside(&resolved) && inside(resolved_parent) && inside(&parent) {
            Ok(resolved)
        } else {
            Err(Error::Forbidden(format!(
                "path {requested:?} is outside the configured export roots"
            )))
        }
    }
}

impl Engine {
    /// Streams every visible memory of a bank as AMA v1 JSON Lines; returns how many.
    pub async fn export<W: AsyncWrite + Unpin + Send>(
        &self,
        schema: &Schema,
        bank_id: &str,
        include_embeddings: bool,
        writer: &mut W,
    ) -> Result<u64> {
        let bank = BankId::new(bank_id)?;
        let tenant = self.store().tenant(schema).await?;
        let header = AmaHeader {
            ama_version: 1,
            bank_id: bank.to_string(),
            exported_at: Utc::now(),
            provider: format!("astrocyte-{}", self.store().backend()),
            memory_count: tenant.count(&bank).await?,
        };
        write_json_line(writer, &header).await?;
        let mut after: Option<String> = None;
        let mut written = 0u64;
        loop {
            let page = tenant
                .scan(&bank, after.as_ref(), EXPORT_PAGE, include_embeddings)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full_page = page.len() == EXPORT_PAGE;
            for memory in page {
                write_json_line(writer, &AmaRecord::from(memory)).await?;
                written += 1;
            }
            if !full_page {
                break;
            }
        }
        writer.flush().await?;
        Ok(written)
    }

    /// Imports AMA v1 JSON Lines into `bank_id` (the file's own bank is ignored), re-embedding
    /// texts unless a vector of the right dimension is present. Bad lines are counted, not fatal.
    pub async fn import<R: AsyncBufRead + Unpin + Send>(
        &self,
        schema: &Schema,
        bank_id: &str,
        on_conflict: OnConflict,
        reader: R,
    ) -> Result<ImportReport> {
        let bank = BankId::new(bank_id)?;
        let tenant = self.tenant(schema).await?;
        // Lines as bytes: one that is not UTF-8 is refused on its own, not the whole file.
        let mut lines = reader.split(b'\n');
        let header_line = lines
            .next_segment()
            .await?
            .ok_or_else(|| Error::invalid("import file is empty"))?;
        let header_line = utf8_line(header_line)
            .map_err(|reason| Error::invalid(format!("not an AMA file: header line {reason}")))?;
        let header: AmaHeader = serde_json::from_str(&header_line)
            .map_err(|e| Error::invalid(format!("not an AMA file: bad header line: {e}")))?;
        if header.ama_version != 1 {
            return Err(Error::invalid(format!(
                "unsupported AMA version {}",
                header.ama_version
            )));
        }
        let mut bulk = BulkLoad::new(&tenant);
        let read = self
            .import_lines(&tenant, &bank, on_conflict, lines, &mut bulk)
            .await;
        bulk.end(read).await
    }

    /// The records of an import after its header, in batches.
    async fn import_lines<R: AsyncBufRead + Unpin + Send>(
        &self,
        tenant: &Arc<dyn TenantStore>,
        bank: &BankId,
        on_conflict: OnConflict,
        mut lines: tokio::io::Split<R>,
        bulk: &mut BulkLoad,
    ) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let mut batch: Vec<(u64, AmaRecord)> = Vec::new();
        let mut full_batches = 0usize;
        let mut number = 1u64;
        while let Some(line) = lines.next_segment().await? {
            number += 1;
            let line = match utf8_line(line) {
                Ok(line) => line,
                Err(reason) => {
                    report.reject(number, reason);
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<AmaRecord>(&line) {
                Ok(record) => batch.push((number, record)),
                Err(error) => report.reject(number, format!("not a memory record: {error}")),
            }
            if batch.len() >= IMPORT_BATCH {
                // From the second full batch on, the import is a bulk load: one batch alone
                // is cheaper to index row by row than to rebuild an index for.
                if full_batches == 1 {
                    bulk.begin().await?;
                }
                full_batches += 1;
                self.import_batch(
                    tenant,
                    bank,
                    on_conflict,
                    std::mem::take(&mut batch),
                    &mut report,
                )
                .await?;
            }
        }
        self.import_batch(tenant, bank, on_conflict, batch, &mut report)
            .await?;
        Ok(report)
    }

    async fn import_batch(
        &self,
        tenant: &Arc<dyn TenantStore>,
        bank: &BankId,
        on_conflict: OnConflict,
        records: Vec<(u64, AmaRecord)>,
        report: &mut ImportReport,
    ) -> Result<()> {
        let limits = &self.config().limits;
        let mut accepted: Vec<Memory> = Vec::new();
        let mut given_vectors: Vec<Option<Vec<f32>>> = Vec::new();
        let mut replaced: Vec<String> = Vec::new();
        // Where each id of this batch went in `accepted`: a later line with the same id is
        // skipped or replaces it, as a stored one would be.
        let mut placed: std::collections::HashMap<String, usize> = Default::default();
        // One look-up for the whole batch: a round trip per record was most of an import's
        // time on PostgreSQL.
        let ids: Vec<MemoryId> = records.iter().map(|(_, r)| r.id.clone()).collect();
        let stored: std::collections::HashSet<MemoryId> =
            tenant.existing(bank, &ids).await?.into_iter().collect();
        for (line, record) in records {
            let tags = record.tags.clone().unwrap_or_default();
            let metadata = record.metadata.clone().unwrap_or_default();
            let refusal = if record.id.trim().is_empty() {
                Some("id is empty".to_string())
            } else {
                check_record(&record, limits)
                    .err()
                    .map(|e| e.to_string())
                    .or_else(|| check_content(&record.text, &tags, limits))
                    .or_else(|| check_metadata_scalars(&metadata))
            };
            if let Some(reason) = refusal {
                report.reject(line, reason);
                continue;
            }
            let earlier = placed.get(&record.id).copied();
            if earlier.is_some() && on_conflict == OnConflict::Skip {
                report.skipped += 1;
                continue;
            }
            if earlier.is_none() && stored.contains(&record.id) {
                match on_conflict {
                    OnConflict::Skip => {
                        report.skipped += 1;
                        continue;
                    }
                    OnConflict::Overwrite => replaced.push(record.id.clone()),
                }
            }
            let (metadata, _) = sanitize_metadata(metadata, limits);
            let given = record
                .embedding
                .filter(|v| v.len() == self.embedder().dimension());
            let memory = Memory {
                id: record.id,
                bank_id: bank.clone(),
                text: record.text,
                tags: normalize_tags(&tags),
                metadata,
                fact_type: record.fact_type.unwrap_or_else(|| DEFAULT_FACT_TYPE.into()),
                occurred_at: record.occurred_at,
                retained_at: record.retained_at.unwrap_or_else(Utc::now),
                forgotten_at: None,
                source: record.source,
                chunk: None,
                thread: record
                    .thread
                    .as_deref()
                    .and_then(crate::thread::normalize_thread_key),
                embedding: None,
            };
            match earlier {
                Some(at) => {
                    report.skipped += 1;
                    accepted[at] = memory;
                    given_vectors[at] = given;
                }
                None => {
                    placed.insert(memory.id.clone(), accepted.len());
                    accepted.push(memory);
                    given_vectors.push(given);
                }
            }
        }
        if accepted.is_empty() {
            return Ok(());
        }
        let missing: Vec<String> = accepted
            .iter()
            .zip(&given_vectors)
            .filter(|(_, v)| v.is_none())
            .map(|(m, _)| m.text.clone())
            .collect();
        let mut fresh = self
            .embed_all(&missing, EmbedPurpose::Document)
            .await?
            .into_iter();
        let mut rows = Vec::with_capacity(accepted.len());
        for (memory, given) in accepted.into_iter().zip(given_vectors) {
            let embedding = match given {
                Some(v) => v,
                None => fresh
                    .next()
                    .ok_or_else(|| Error::Internal("embedding count mismatch".into()))?,
            };
            rows.push(NewMemory::plain(memory, embedding));
        }
        if !replaced.is_empty() {
            let selector = ForgetSelector {
                memory_ids: Some(replaced),
                ..Default::default()
            };
            tenant
                .forget(bank, &selector, ForgetMode::Purge, Utc::now())
                .await?;
        }
        report.imported += rows.len() as u64;
        let threaded: Vec<Memory> = rows
            .iter()
            .filter(|r| r.memory.thread.is_some())
            .map(|r| r.memory.clone())
            .collect();
        tenant.insert(rows).await?;
        // Imported turns lend each other (and the bank's) context as retained ones do.
        self.relink_threads(tenant.as_ref(), &threaded, true).await
    }
}

/// Records an import reads and stores at a time.
const IMPORT_BATCH: usize = 256;

/// An import's bulk load (see [`TenantStore::begin_bulk_load`]): begun once the import proves
/// large, ended by [`BulkLoad::end`], or, when the import is dropped half way (a client that
/// hung up), on a task of its own.
struct BulkLoad {
    tenant: Arc<dyn TenantStore>,
    /// The store set something aside that the end must build.
    started: bool,
}

impl BulkLoad {
    fn new(tenant: &Arc<dyn TenantStore>) -> Self {
        BulkLoad {
            tenant: Arc::clone(tenant),
            started: false,
        }
    }

    async fn begin(&mut self) -> Result<()> {
        self.started = self.tenant.begin_bulk_load().await?;
        Ok(())
    }

    /// Ends the load after `outcome`; the import's own error comes first.
    async fn end<T>(mut self, outcome: Result<T>) -> Result<T> {
        let ended = match std::mem::take(&mut self.started) {
            true => self.tenant.end_bulk_load().await,
            false => Ok(()),
        };
        let value = outcome?;
        ended?;
        Ok(value)
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let tenant = Arc::clone(&self.tenant);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = tenant.end_bulk_load().await {
                    tracing::warn!(%error, "an abandoned import's bulk load did not end");
                }
            });
        }
    }
}

/// A line read as bytes, without its line ending, as text; the reason when it is not UTF-8.
fn utf8_line(mut bytes: Vec<u8>) -> std::result::Result<String, String> {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

async fn write_json_line<W: AsyncWrite + Unpin + Send, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> Result<()> {
    let mut line = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_policy_confines_to_roots() {
        let root = tempfile::tempdir().expect("tempdir");
        let policy = PathPolicy::new(vec![root.path().to_path_buf()]).expect("policy");
        assert!(policy.resolve("bank.jsonl").is_ok());
        let inside = root.path().join("x.jsonl");
        assert!(policy.resolve(inside.to_str().unwrap_or_default()).is_ok());
        assert!(policy.resolve("../escape.jsonl").is_err());
        assert!(policy.resolve("/etc/passwd").is_err());
        assert!(policy.resolve("").is_err());
        assert!(PathPolicy::default().resolve("a.jsonl").is_err());
    }

    #[test]
    fn directories_nul_bytes_and_long_names_are_invalid_input() {
        let outer = tempfile::tempdir().expect("tempdir");
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("sub")).expect("dirs");
        let policy = PathPolicy::new(vec![root.clone()]).expect("policy");
        let root_text = root.to_string_lossy().to_string();
        let long_path = format!("{}x", "d/".repeat(2100));
        for path in [
            ".",
            "./",
            "sub",
            "sub/.",
            root_text.as_str(),
            "a\0b",
            &"n".repeat(256),
            &long_path,
        ] {
            let error = policy.resolve(path).expect_err(path);
            assert_eq!(
                error.kind(),
                crate::ErrorKind::InvalidInput,
                "{path}: {error}"
            );
        }
        let inside = policy
            .resolve("sub/ok.jsonl")
            .expect("a file in a subdirectory");
        assert!(inside.starts_with(root.canonicalize().expect("canonical")));
        assert!(policy.resolve(&"n".repeat(255)).is_ok());
    }

    #[test]
    fn a_symlinked_directory_cannot_escape() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(outside.path(), &link).expect("symlink");
        let policy = PathPolicy::new(vec![root.path().to_path_buf()]).expect("policy");
        assert!(policy.resolve("link/out.jsonl").is_err());
    }
}
