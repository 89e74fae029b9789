//! The transport-neutral service layer: one function per operation behind REST, MCP and gRPC.
//!
//! Every transport decodes its request into a typed command, calls the [`Service`] with the
//! authenticated [`Caller`], and encodes the result or the [`ApiError`]. Everything around the
//! [`Engine`](astrocyte_core::Engine) lives here, once: authentication (tenant extension,
//! principal, per-tenant rate limit), per-bank grants, rate limits and daily quotas with refunds,
//! the PII barrier, asynchronous retain and job queueing, legal holds, metrics and spans, the
//! tenant binding around each call, and health. The transports hold none of it.

mod browse;
mod commands;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use astrocyte_core::jobs::{Job, JobQueue, JobSpec, LegalHoldKey};
use astrocyte_core::pipeline::validate;
use astrocyte_core::portability::{ImportReport, OnConflict};
use astrocyte_core::tenancy::{self, RequestInfo, Schema, TenantContext};
use astrocyte_core::{
    ApiKeyRecord, BankId, Error, ForgetMode, ForgetSelector, RecallFilter, RecallRequest,
    RecallResult, ReflectRequest, ReflectResult, RetainOutcome, RetainRequest,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tracing::Instrument;

pub use browse::{BankSummary, ListMemories, DEFAULT_PAGE};
pub use commands::{Forget, History, Recall, Reflect, Retain, Retained};

use crate::access::Permission;
use crate::config::is_loopback_host;
use crate::dto::{clamp_results, clamp_tokens};
use crate::error::ApiError;
use crate::keys::{ApiKeys, IssuedKey};
use crate::metrics;
use crate::policy::{Operation, QuotaTicket};
use crate::state::AppState;

/// Content longer than this (in bytes) is scanned for PII on the blocking pool.
const BLOCKING_SCAN_BYTES: usize = 16 * 1024;

/// Bounds a health check when the store does not answer.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(8);

/// Who is calling and in which tenant: the result of [`Service::authenticate`], taken by every
/// operation that touches tenant data (so none can run without a tenant).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant, from the credential.
    pub tenant: TenantContext,
    /// The authenticated principal; `None` is anonymous.
    pub principal: Option<String>,
}

impl Caller {
    /// A caller fixed by the composition root (MCP over stdio: whoever runs the process owns
    /// the tenant's data), with no principal.
    pub fn local(schema: Schema) -> Self {
        Caller {
            tenant: TenantContext::new(schema),
            principal: None,
        }
    }

    /// The tenant's schema.
    pub fn schema(&self) -> &Schema {
        &self.tenant.schema
    }
}

/// The store's answer to a health check.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Whether the store answered in time.
    pub healthy: bool,
    /// A short description naming the backend.
    pub message: String,
    /// How long the check took.
    pub latency_ms: f64,
    /// Whether the check ran out of time (as opposed to the store answering with an error).
    pub timed_out: bool,
}

/// The service over the gateway's state; cheap to clone.
#[derive(Clone)]
pub struct Service {
    state: AppState,
}

impl Service {
    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Service { state }
    }

    // --- Authentication -----------------------------------------------------------------------

    /// Authenticates a request from any transport: the tenant extension, then the principal,
    /// then the per-tenant rate limit. A tenant refusal is the fixed
    /// [`ApiError::AuthenticationFailed`]; its cause goes to the logs only.
    pub async fn authenticate(&self, request: &RequestInfo) -> Result<Caller, ApiError> {
        single_credentials(request)?;
        let tenant = match self.state.tenants().authenticate(request).await {
            Ok(tenant) => tenant,
            Err(error) if error.is_unavailable() => {
                return Err(Error::StorageUnavailable(error.0).into());
            }
            Err(error) => {
                tracing::warn!(transport = ?request.transport, path = ?request.path, %error, "tenant authentication failed");
                return Err(ApiError::AuthenticationFailed);
            }
        };
        let principal = self
            .state
            .principals()
            .resolve(request, &tenant.schema)
            .await?;
        self.state.policy().admit_tenant(&tenant.schema)?;
        Ok(Caller { tenant, principal })
    }

    /// Admin operations: `X-Admin-Token` (or the same metadata key) when an admin token is
    /// configured, otherwise a loopback peer of a loopback-bound server.
    pub fn authorize_admin(&self, request: &RequestInfo) -> Result<(), ApiError> {
        single_credentials(request)?;
        let config = self.state.config();
        match &config.admin_token {
            Some(expected) => {
                let presented = request.header("x-admin-token").map(str::trim).unwrap_or("");
                if !presented.is_empty()
                    && bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes()))
                {
                    Ok(())
                } else {
                    Err(ApiError::Unauthorized(
                        "Invalid or missing X-Admin-Token".into(),
                    ))
                }
            }
            None => {
                let peer_is_loopback = request
                    .peer
                    .is_some_and(|addr: SocketAddr| addr.ip().is_loopback());
                if peer_is_loopback && is_loopback_host(&config.host) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(
                        "Admin endpoints are disabled: ASTROCYTE_ADMIN_TOKEN is not set and the request \
                         is not from loopback to a loopback-bound gateway. Set an admin token to enable these endpoints."
                            .into(),
                    ))
                }
            }
        }
    }

    /// Validates a bank id and checks the caller's permission on it.
    pub fn authorize(
        &self,
        caller: &Caller,
        bank_id: &str,
        permission: Permission,
    ) -> Result<BankId, ApiError> {
        let bank = BankId::new(bank_id)?;
        self.state
            .access()
            .check(
                caller.schema(),
                caller.principal.as_deref(),
                bank.as_str(),
                permission,
            )
            .map_err(ApiError::Forbidden)?;
        Ok(bank)
    }

    /// Runs `call` with the caller's tenant bound (the second check stores make in strict
    /// mode), inside a span, recording its latency and outcome.
    async fn run<T>(
        &self,
        operation: &'static str,
        caller: &Caller,
        call: impl Future<Output = astrocyte_core::Result<T>>,
    ) -> Result<T, ApiError> {
        let span = tracing::info_span!("service", operation, tenant = %caller.schema());
        let started = Instant::now();
        let result = tenancy::use_schema(caller.schema().clone(), call)
            .instrument(span)
            .await;
        let result = result.map_err(ApiError::from);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) if error.is_client_gone() => "cancelled",
            Err(error) => match error.code() {
                crate::error::ErrorCode::Unavailable | crate::error::ErrorCode::Internal => "error",
                _ => "rejected",
            },
        };
        let tenant = if self.state.config().metrics_per_tenant {
            caller.schema().as_str()
        } else {
            metrics::ALL_TENANTS
        };
        metrics::global().operation(operation, tenant, outcome, started.elapsed());
        result
    }

    fn max_results(&self, requested: Option<i64>) -> usize {
        clamp_results(requested, 10, self.state.config().max_result_limit)
    }

    // --- Memory operations --------------------------------------------------------------------

    /// Grants, the rate limit and quota, and the PII barrier of one retain: the request to
    /// run and the quota use to give back if it stores nothing.
    async fn admit_retain(
        &self,
        caller: &Caller,
        command: Retain,
    ) -> Result<(RetainRequest, QuotaTicket), ApiError> {
        let bank = self.authorize(caller, &command.bank_id, Permission::Write)?;
        let ticket =
            self.state
                .policy()
                .admit_bank(caller.schema(), bank.as_str(), Operation::Retain)?;
        let scanned = if command.content.len() > BLOCKING_SCAN_BYTES {
            // Scanning long content is CPU work: keep it off the runtime's worker threads.
            let state = self.state.clone();
            let content = command.content;
            tokio::task::spawn_blocking(move || state.policy().pii().apply(&content)).await
        } else {
            Ok(self.state.policy().pii().apply(&command.content))
        };
        let content = match scanned {
            Ok(Ok(verdict)) => {
                if !verdict.found.is_empty() {
                    tracing::warn!(pii_types = ?verdict.found, bank = %bank, "pii detected in retained content");
                }
                verdict.text
            }
            Ok(Err(rejected)) => {
                self.state.policy().refund(ticket);
                return Err(ApiError::PiiRejected(rejected.pii_types));
            }
            Err(join) => {
                self.state.policy().refund(ticket);
                return Err(Error::Internal(format!("pii scan failed: {join}")).into());
            }
        };
        let request = RetainRequest {
            bank_id: bank.to_string(),
            content,
            tags: command.tags,
            metadata: command.metadata,
            occurred_at: command.occurred_at,
            content_type: command.content_type,
            thread_id: command.thread_id,
            ..Default::default()
        };
        Ok((request, ticket))
    }

    /// Stores content, or queues it when `run_async` is set.
    pub async fn retain(&self, caller: &Caller, command: Retain) -> Result<Retained, ApiError> {
        let (run_async, idempotency_key) = (command.run_async, command.idempotency_key.clone());
        // Checked even where it has no use (a synchronous retain), so one key is valid or
        // invalid everywhere.
        astrocyte_core::pipeline::validate::check_idempotency_key(idempotency_key.as_deref())?;
        let (request, ticket) = self.admit_retain(caller, command).await?;
        let result = if run_async {
            self.enqueue_retain(caller, request, idempotency_key).await
        } else {
            self.run(
                "retain",
                caller,
                self.state.engine().retain(caller.schema(), request),
            )
            .await
            .map(Retained::Done)
        };
        // A failure, a duplicate or a rejected content stored nothing: it uses no quota.
        match &result {
            Ok(Retained::Queued(_)) => {}
            Ok(Retained::Done(outcome)) if outcome.stored => {}
            _ => self.state.policy().refund(ticket),
        }
        result
    }

    /// Stores several contents in one embedding pass and one transaction. Every item is
    /// admitted first; if one is refused, nothing runs and every quota use is given back.
    pub async fn retain_many(
        &self,
        caller: &Caller,
        commands: Vec<Retain>,
    ) -> Result<Vec<RetainOutcome>, ApiError> {
        if commands.iter().any(|c| c.run_async) {
            return Err(ApiError::BadRequest(
                "run_async is not supported in a batch: queue each retain on its own".into(),
            ));
        }
        let mut requests = Vec::with_capacity(commands.len());
        let mut tickets = Vec::with_capacity(commands.len());
        for command in commands {
            match self.admit_retain(caller, command).await {
                Ok((request, ticket)) => {
                    requests.push(request);
                    tickets.push(ticket);
                }
                Err(error) => {
                    tickets
                        .into_iter()
                        .for_each(|t| self.state.policy().refund(t));
                    return Err(error);
                }
            }
        }
        let result = self
            .run(
                "retain_many",
                caller,
                self.state.engine().retain_many(caller.schema(), requests),
            )
            .await;
        match &result {
            Ok(outcomes) => {
                for (outcome, ticket) in outcomes.iter().zip(tickets) {
                    if !outcome.stored {
                        self.state.policy().refund(ticket);
                    }
                }
            }
            Err(_) => tickets
                .into_iter()
                .for_each(|t| self.state.policy().refund(t)),
        }
        result
    }

    /// Validates like a synchronous retain would, then queues the work.
    async fn enqueue_retain(
        &self,
        caller: &Caller,
        request: RetainRequest,
        idempotency_key: Option<String>,
    ) -> Result<Retained, ApiError> {
        // Reject now what a synchronous retain would reject, not later inside a worker.
        validate::check_retain_request(&request, &self.state.engine().config().limits)?;
        if let Some(error) = validate::check_content(
            &request.content,
            &request.tags,
            &self.state.engine().config().limits,
        ) {
            return Ok(Retained::Done(RetainOutcome::rejected(error)));
        }
        let job = self
            .enqueue(caller, JobSpec::Retain(request), idempotency_key)
            .await?;
        Ok(Retained::Queued(job))
    }

    async fn queue(&self, caller: &Caller) -> Result<std::sync::Arc<dyn JobQueue>, ApiError> {
        let store = self.state.engine().store().clone();
        let schema = caller.schema().clone();
        let tenant = tenancy::use_schema(schema.clone(), store.tenant(&schema)).await?;
        tenant.jobs().ok_or_else(|| {
            ApiError::Core(Error::Unsupported(
                "this store has no job queue for background jobs".into(),
            ))
        })
    }

    async fn enqueue(
        &self,
        caller: &Caller,
        spec: JobSpec,
        idempotency_key: Option<String>,
    ) -> Result<Job, ApiError> {
        let queue = self.queue(caller).await?;
        let bank = spec.bank_id().to_string();
        let mut job = spec.into_new_job(idempotency_key)?;
        // A key names one caller's request: scoped to the principal, the kind and the bank,
        // so another caller's key can neither return nor swallow this request.
        job.idempotency_key = job.idempotency_key.map(|key| {
            let scope = Sha256::new()
                .chain_update(caller.principal.as_deref().unwrap_or_default())
                .chain_update([0x1f])
                .chain_update(&job.kind)
                .chain_update([0x1f])
                .chain_update(&bank)
                .finalize();
            format!("{}:{key}", hex::encode(&scope[..12]))
        });
        let (kind, payload) = (job.kind.clone(), job.payload.clone());
        let enqueued = self.run("enqueue", caller, queue.enqueue(job)).await?;
        if enqueued.kind != kind || enqueued.payload != payload {
            return Err(ApiError::Core(Error::Conflict(
                "idempotency_key was already used for a different request".into(),
            )));
        }
        Ok(enqueued)
    }

    /// A background job of the caller's tenant, visible to whoever may read its bank.
    pub async fn job(&self, caller: &Caller, job_id: &str) -> Result<Job, ApiError> {
        validate::check_id("job_id", job_id, validate::MAX_ID_BYTES)?;
        let queue = self.queue(caller).await?;
        let job = self
            .run("job", caller, queue.job(job_id))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no job {job_id:?}")))?;
        if let Some(bank) = job.payload.get("bank_id").and_then(|b| b.as_str()) {
            self.authorize(caller, bank, Permission::Read)?;
        }
        Ok(job)
    }

    /// Queues a maintenance job (`reembed`, `lifecycle`, `consolidate`, `observe`); the payload is decoded
    /// and validated now, so a bad one is refused before it reaches a worker.
    pub async fn enqueue_maintenance(
        &self,
        caller: &Caller,
        kind: &str,
        payload: serde_json::Value,
        idempotency_key: Option<String>,
    ) -> Result<Job, ApiError> {
        if !JobSpec::MAINTENANCE.contains(&kind) {
            return Err(ApiError::BadRequest(format!(
                "unknown job kind {kind:?} (expected {})",
                JobSpec::expected_kinds()
            )));
        }
        let spec = JobSpec::decode(kind, payload)?;
        self.authorize(caller, spec.bank_id(), Permission::Admin)?;
        self.enqueue(caller, spec, idempotency_key).await
    }

    /// Places or lifts a legal hold on a bank; holds persist as tenant settings.
    pub async fn set_legal_hold(
        &self,
        caller: &Caller,
        bank_id: &str,
        held: bool,
    ) -> Result<BankId, ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Admin)?;
        let value = held.then(|| serde_json::json!({"held_since": chrono::Utc::now()}));
        let store = self.state.engine().store().clone();
        let key = LegalHoldKey::of(&bank);
        self.run("legal_hold", caller, async {
            store
                .tenant(caller.schema())
                .await?
                .put_setting(key.as_str(), value)
                .await
        })
        .await?;
        Ok(bank)
    }

    /// Recalls from one or more banks.
    pub async fn recall(&self, caller: &Caller, command: Recall) -> Result<RecallResult, ApiError> {
        if command.banks.is_empty() {
            return Err(ApiError::BadRequest("bank_id or banks is required".into()));
        }
        // A bank named twice is recalled, and rate-limited, once.
        let mut banks: Vec<String> = Vec::with_capacity(command.banks.len());
        for bank_id in &command.banks {
            let bank = self
                .authorize(caller, bank_id, Permission::Read)?
                .to_string();
            if !banks.contains(&bank) {
                banks.push(bank);
            }
        }
        let names: Vec<&str> = banks.iter().map(String::as_str).collect();
        self.state.policy().admit_recall(caller.schema(), &names)?;
        let request = RecallRequest {
            query: command.query,
            banks,
            max_results: Some(self.max_results(command.max_results)),
            max_tokens: clamp_tokens(command.max_tokens),
            filter: RecallFilter {
                tags: command.tags,
                time_range: command.time_range,
                as_of: command.as_of,
                ..Default::default()
            },
        };
        self.run(
            "recall",
            caller,
            self.state.engine().recall(caller.schema(), request),
        )
        .await
    }

    /// What a bank held at a past instant.
    pub async fn history(
        &self,
        caller: &Caller,
        command: History,
    ) -> Result<(BankId, RecallResult), ApiError> {
        let bank = self.authorize(caller, &command.bank_id, Permission::Read)?;
        let _no_quota =
            self.state
                .policy()
                .admit_bank(caller.schema(), bank.as_str(), Operation::Recall)?;
        let request = RecallRequest {
            query: command.query,
            banks: vec![bank.to_string()],
            max_results: Some(self.max_results(command.max_results)),
            max_tokens: clamp_tokens(command.max_tokens),
            filter: RecallFilter {
                tags: command.tags,
                as_of: Some(command.as_of),
                ..Default::default()
            },
        };
        let result = self
            .run(
                "history",
                caller,
                self.state.engine().recall(caller.schema(), request),
            )
            .await?;
        Ok((bank, result))
    }

    /// Answers a question from a bank's memories.
    pub async fn reflect(
        &self,
        caller: &Caller,
        command: Reflect,
    ) -> Result<ReflectResult, ApiError> {
        let bank = self.authorize(caller, &command.bank_id, Permission::Read)?;
        let ticket =
            self.state
                .policy()
                .admit_bank(caller.schema(), bank.as_str(), Operation::Reflect)?;
        let request = ReflectRequest {
            query: command.query,
            bank_id: bank.to_string(),
            max_tokens: clamp_tokens(command.max_tokens),
        };
        let result = self
            .run(
                "reflect",
                caller,
                self.state.engine().reflect(caller.schema(), request),
            )
            .await;
        if result.is_err() {
            self.state.policy().refund(ticket);
        }
        result
    }

    /// Forgets by id, tag or date, or a whole bank (an admin act).
    pub async fn forget(&self, caller: &Caller, command: Forget) -> Result<u64, ApiError> {
        let permission = if command.all {
            Permission::Admin
        } else {
            Permission::Forget
        };
        let bank = self.authorize(caller, &command.bank_id, permission)?;
        let selector = ForgetSelector {
            memory_ids: command.memory_ids,
            tags: command.tags,
            before: command.before,
            all: command.all,
        };
        self.run(
            "forget",
            caller,
            self.state
                .engine()
                .forget(caller.schema(), bank.as_str(), &selector, ForgetMode::Soft),
        )
        .await
    }

    /// The caller's tenant's banks that the caller may read; `also` (a configured default
    /// bank) is listed first even before it holds anything.
    pub async fn banks(
        &self,
        caller: &Caller,
        also: Option<&BankId>,
    ) -> Result<Vec<String>, ApiError> {
        let stored = self
            .run(
                "banks",
                caller,
                self.state.engine().list_banks(caller.schema()),
            )
            .await?;
        let mut banks: Vec<String> = also.map(|b| b.to_string()).into_iter().collect();
        for bank in stored {
            if !banks.iter().any(|b| b == bank.as_str()) {
                banks.push(bank.to_string());
            }
        }
        // Only banks the caller may read: the list itself would otherwise leak names.
        banks.retain(|bank| {
            self.state
                .access()
                .check(
                    caller.schema(),
                    caller.principal.as_deref(),
                    bank,
                    Permission::Read,
                )
                .is_ok()
        });
        Ok(banks)
    }

    // --- Export and import --------------------------------------------------------------------

    /// Writes a bank as AMA v1 JSON Lines to `writer`; the caller needs admin on the bank.
    pub async fn export_to<W: AsyncWrite + Unpin + Send>(
        &self,
        caller: &Caller,
        bank_id: &str,
        include_embeddings: bool,
        writer: &mut W,
    ) -> Result<u64, ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Admin)?;
        let count = self
            .run(
                "export",
                caller,
                self.state.engine().export(
                    caller.schema(),
                    bank.as_str(),
                    include_embeddings,
                    writer,
                ),
            )
            .await?;
        writer.flush().await.map_err(Error::Io)?;
        Ok(count)
    }

    /// Exports a bank to a file under the portability roots, written beside the target and
    /// renamed so a reader never sees half a file.
    pub async fn export_to_path(
        &self,
        caller: &Caller,
        bank_id: &str,
        path: &str,
        include_embeddings: bool,
    ) -> Result<u64, ApiError> {
        self.authorize(caller, bank_id, Permission::Admin)?;
        let target = self.state.paths().resolve(path)?;
        let partial = partial_path(&target);
        let file = tokio::fs::File::create(&partial).await.map_err(Error::Io)?;
        let mut writer = BufWriter::new(file);
        let written = async {
            let count = self
                .export_to(caller, bank_id, include_embeddings, &mut writer)
                .await?;
            async {
                writer.get_ref().sync_all().await?;
                tokio::fs::rename(&partial, &target).await
            }
            .await
            .map_err(Error::Io)?;
            Ok::<u64, ApiError>(count)
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        written
    }

    /// Imports AMA v1 JSON Lines from `reader` into a bank; the caller needs admin on it.
    pub async fn import_from<R: AsyncBufRead + Unpin + Send>(
        &self,
        caller: &Caller,
        bank_id: &str,
        on_conflict: OnConflict,
        reader: R,
    ) -> Result<ImportReport, ApiError> {
        let bank = self.authorize(caller, bank_id, Permission::Admin)?;
        self.run(
            "import",
            caller,
            self.state
                .engine()
                .import(caller.schema(), bank.as_str(), on_conflict, reader),
        )
        .await
    }

    /// Imports from a file under the portability roots.
    pub async fn import_from_path(
        &self,
        caller: &Caller,
        bank_id: &str,
        path: &str,
        on_conflict: OnConflict,
    ) -> Result<ImportReport, ApiError> {
        self.authorize(caller, bank_id, Permission::Admin)?;
        let source = self.state.paths().resolve(path)?;
        let file = tokio::fs::File::open(&source).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ApiError::BadRequest(format!("import file {path:?} does not exist"))
            } else {
                ApiError::Core(Error::Io(e))
            }
        })?;
        self.import_from(
            caller,
            bank_id,
            on_conflict,
            tokio::io::BufReader::new(file),
        )
        .await
    }

    // --- API keys (cross-tenant: callers pass the admin guard first) -------------------------

    fn api_keys(&self) -> Result<&ApiKeys, ApiError> {
        // Not configured here: a refusal the operator can act on, not a server fault (a 5xx
        // would read as one to clients and tools alike).
        self.state.api_keys().ok_or_else(|| {
            ApiError::Forbidden(
                "API key issuing is not enabled: it needs ASTROCYTE_API_KEY_SECRET and a store with a key directory"
                    .into(),
            )
        })
    }

    /// Issues a key for `principal` in `tenant`; the plaintext key is in the result, once.
    pub async fn issue_key(&self, tenant: &str, principal: &str) -> Result<IssuedKey, ApiError> {
        let schema = Schema::new(tenant).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(self.api_keys()?.issue(&schema, principal.trim()).await?)
    }

    /// Issued keys (never the keys themselves), optionally of one tenant.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, ApiError> {
        let schema = tenant
            .map(Schema::new)
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(self.api_keys()?.list(schema.as_ref()).await?)
    }

    /// Revokes a key; it stops authenticating at once.
    pub async fn revoke_key(&self, key_id: &str) -> Result<(), ApiError> {
        if self.api_keys()?.revoke(key_id).await? {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no API key {key_id:?}")))
        }
    }

    // --- Health -------------------------------------------------------------------------------

    /// Whether the store answers, within [`HEALTH_TIMEOUT`]. Needs no tenant.
    pub async fn health(&self) -> Health {
        let store = self.state.engine().store();
        let started = Instant::now();
        let checked = tokio::time::timeout(HEALTH_TIMEOUT, store.health()).await;
        let latency_ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
        let backend = store.backend();
        let (healthy, message, timed_out) = match checked {
            Ok(Ok(())) => (true, format!("{backend} store reachable"), false),
            Ok(Err(error)) => {
                tracing::warn!(%error, "health check failed");
                metrics::global().store_error("health");
                (false, format!("{backend} store unavailable"), false)
            }
            Err(_) => (
                false,
                format!("{backend} store did not answer in time"),
                true,
            ),
        };
        Health {
            healthy,
            message,
            latency_ms,
            timed_out,
        }
    }
}

/// `.<name>.partial-<uuid>` beside `target`.
fn partial_path(target: &std::path::Path) -> PathBuf {
    target.with_file_name(format!(
        ".{}.partial-{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        uuid::Uuid::new_v4()
    ))
}

/// Refuses a request naming a credential twice. Which one wins would be a guess, and a proxy
/// that appends its own principal after the client's must not be bypassed by the first.
fn single_credentials(request: &RequestInfo) -> Result<(), ApiError> {
    for name in [
        crate::auth::tenant::API_KEY_HEADER,
        crate::auth::tenant::TENANT_HEADER,
        crate::auth::principal::PRINCIPAL_HEADER,
        "authorization",
        "x-admin-token",
    ] {
        if request
            .headers
            .iter()
            .filter(|(key, _)| key == name)
            .count()
            > 1
        {
            return Err(ApiError::BadRequest(format!(
                "the {name} header is given more than once"
            )));
        }
    }
    Ok(())
}
