//! gRPC, the third transport: the `astrocyte.v1.Memory` service of
//! `proto/astrocyte/v1/astrocyte.proto` over tonic, with the standard health service and server
//! reflection. Each method decodes its message, authenticates the metadata through the same
//! [`Service::authenticate`] as REST (`Transport::Grpc`), calls the service, and encodes the
//! result; failures map through one table, [`status_code`].
//!
//! | error kind | gRPC status |
//! |---|---|
//! | `invalid_input`, `pii_rejected` | `INVALID_ARGUMENT` |
//! | `unauthenticated` | `UNAUTHENTICATED` |
//! | `forbidden` | `PERMISSION_DENIED` |
//! | `not_found` | `NOT_FOUND` |
//! | `conflict` | `ALREADY_EXISTS` |
//! | `payload_too_large`, `rate_limited` | `RESOURCE_EXHAUSTED` |
//! | `unsupported` | `UNIMPLEMENTED` |
//! | `unavailable` | `UNAVAILABLE` |
//! | `internal` | `INTERNAL` |
//!
//! The kind itself travels in the `x-astrocyte-error` metadata; a rate limit adds
//! `retry-after` (whole seconds) and a PII rejection `x-astrocyte-pii-types`.

mod convert;
mod incoming;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use astrocyte_core::tenancy::{RequestInfo, Transport};
use futures::Stream;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::metadata::{KeyAndValueRef, MetadataValue};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::access::Permission;
use crate::config::TlsFiles;
use crate::error::{ApiError, ErrorCode};
use crate::service::{Caller, Reflect, Service};
use crate::state::AppState;
use crate::ServerError;

/// The generated messages, client and server of `astrocyte.v1`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("astrocyte.v1");
}

/// The encoded descriptor set of the API, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/astrocyte_descriptor.bin"));

/// The metadata key carrying the error kind of a failed call.
pub const ERROR_KIND_KEY: &str = "x-astrocyte-error";

/// How often the health service re-checks the store.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The gRPC status code of an error kind.
pub fn status_code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::InvalidInput | ErrorCode::PiiRejected => tonic::Code::InvalidArgument,
        ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorCode::Forbidden => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::Conflict => tonic::Code::AlreadyExists,
        ErrorCode::PayloadTooLarge | ErrorCode::RateLimited => tonic::Code::ResourceExhausted,
        ErrorCode::Unsupported => tonic::Code::Unimplemented,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::Internal => tonic::Code::Internal,
    }
}

/// Longest detail a status carries, in characters. A detail may quote the caller's input, and
/// it travels percent-encoded in the `grpc-message` header: common clients fail the whole call
/// when headers pass 8 KiB, which would hide the real error.
const MAX_DETAIL_CHARS: usize = 500;

/// The status of a failure: its code, the public detail, and the kind in metadata.
pub fn to_status(error: ApiError) -> Status {
    let code = error.code();
    let mut detail = error.public_detail();
    if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
        detail.truncate(cut);
        detail.push('…');
    }
    let mut status = Status::new(status_code(code), detail);
    let metadata = status.metadata_mut();
    metadata.insert(ERROR_KIND_KEY, MetadataValue::from_static(code.as_str()));
    if let ApiError::RateLimited {
        retry_after_seconds,
        ..
    } = &error
    {
        let whole = retry_after_seconds.ceil().max(1.0) as u64;
        if let Ok(value) = whole.to_string().parse() {
            metadata.insert("retry-after", value);
        }
    }
    if let ApiError::PiiRejected(types) = &error {
        if let Ok(value) = types.join(",").parse() {
            metadata.insert("x-astrocyte-pii-types", value);
        }
    }
    status
}

/// The transport-neutral view of a call: its text metadata as headers, its peer and method.
fn request_info<T>(request: &Request<T>, method: &str) -> RequestInfo {
    let headers = request
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => value
                .to_str()
                .ok()
                .map(|v| (key.as_str().to_ascii_lowercase(), v.to_string())),
            KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    RequestInfo {
        transport: Transport::Grpc,
        headers,
        peer: request.remote_addr(),
        path: Some(format!("/astrocyte.v1.Memory/{method}")),
    }
}

/// The `astrocyte.v1.Memory` implementation: adapters over the [`Service`].
#[derive(Clone)]
pub struct GrpcMemory {
    service: Service,
}

impl GrpcMemory {
    /// The adapter over `service`.
    pub fn new(service: Service) -> Self {
        GrpcMemory { service }
    }

    async fn caller<T>(&self, request: &Request<T>, method: &str) -> Result<Caller, Status> {
        self.service
            .authenticate(&request_info(request, method))
            .await
            .map_err(to_status)
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<proto::ExportLine, Status>> + Send>>;

#[tonic::async_trait]
impl proto::memory_server::Memory for GrpcMemory {
    async fn retain(
        &self,
        request: Request<proto::RetainRequest>,
    ) -> Result<Response<proto::RetainResponse>, Status> {
        let caller = self.caller(&request, "Retain").await?;
        let command = convert::retain(request.into_inner()).map_err(to_status)?;
        let retained = self
            .service
            .retain(&caller, command)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::retained(retained)))
    }

    async fn retain_many(
        &self,
        request: Request<proto::RetainManyRequest>,
    ) -> Result<Response<proto::RetainManyResponse>, Status> {
        let caller = self.caller(&request, "RetainMany").await?;
        let commands = request
            .into_inner()
            .items
            .into_iter()
            .map(convert::retain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_status)?;
        let outcomes = self
            .service
            .retain_many(&caller, commands)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::RetainManyResponse {
            results: outcomes.into_iter().map(convert::retain_outcome).collect(),
        }))
    }

    async fn recall(
        &self,
        request: Request<proto::RecallRequest>,
    ) -> Result<Response<proto::RecallResponse>, Status> {
        let caller = self.caller(&request, "Recall").await?;
        let command = convert::recall(request.into_inner()).map_err(to_status)?;
        let result = self
            .service
            .recall(&caller, command)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::recall_result(result)))
    }

    async fn reflect(
        &self,
        request: Request<proto::ReflectRequest>,
    ) -> Result<Response<proto::ReflectResponse>, Status> {
        let caller = self.caller(&request, "Reflect").await?;
        let message = request.into_inner();
        let include_sources = message.include_sources.unwrap_or(true);
        let command = Reflect {
            query: message.query,
            bank_id: message.bank_id,
            max_tokens: message.max_tokens,
        };
        let result = self
            .service
            .reflect(&caller, command)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ReflectResponse {
            answer: result.answer,
            confidence: result.confidence,
            sources: if include_sources {
                result.sources.into_iter().map(convert::hit).collect()
            } else {
                Vec::new()
            },
        }))
    }

    async fn forget(
        &self,
        request: Request<proto::ForgetRequest>,
    ) -> Result<Response<proto::ForgetResponse>, Status> {
        let caller = self.caller(&request, "Forget").await?;
        let command = convert::forget(request.into_inner()).map_err(to_status)?;
        let deleted = self
            .service
            .forget(&caller, command)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ForgetResponse {
            deleted_count: deleted,
        }))
    }

    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::RecallResponse>, Status> {
        let caller = self.caller(&request, "History").await?;
        let command = convert::history(request.into_inner()).map_err(to_status)?;
        let (_, result) = self
            .service
            .history(&caller, command)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::recall_result(result)))
    }

    async fn list_banks(
        &self,
        request: Request<proto::ListBanksRequest>,
    ) -> Result<Response<proto::ListBanksResponse>, Status> {
        let caller = self.caller(&request, "ListBanks").await?;
        let banks = self.service.banks(&caller, None).await.map_err(to_status)?;
        Ok(Response::new(proto::ListBanksResponse { banks }))
    }

    async fn get_job(
        &self,
        request: Request<proto::GetJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let caller = self.caller(&request, "GetJob").await?;
        let job = self
            .service
            .job(&caller, &request.into_inner().job_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::job(job)))
    }

    async fn list_memories(
        &self,
        request: Request<proto::ListMemoriesRequest>,
    ) -> Result<Response<proto::ListMemoriesResponse>, Status> {
        let caller = self.caller(&request, "ListMemories").await?;
        let command = convert::list(request.into_inner()).map_err(to_status)?;
        let page = self
            .service
            .list_memories(&caller, command)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ListMemoriesResponse {
            memories: page.memories.into_iter().map(convert::stored).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn get_memory(
        &self,
        request: Request<proto::GetMemoryRequest>,
    ) -> Result<Response<proto::MemoryDetail>, Status> {
        let caller = self.caller(&request, "GetMemory").await?;
        let message = request.into_inner();
        let detail = self
            .service
            .memory(&caller, &message.bank_id, &message.memory_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::detail(detail)))
    }

    async fn update_memory(
        &self,
        request: Request<proto::UpdateMemoryRequest>,
    ) -> Result<Response<proto::StoredMemory>, Status> {
        let caller = self.caller(&request, "UpdateMemory").await?;
        let mut message = request.into_inner();
        let patch = convert::patch(&mut message).map_err(to_status)?;
        let memory = self
            .service
            .update_memory(&caller, &message.bank_id, &message.memory_id, patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::stored(memory)))
    }

    async fn delete_memory(
        &self,
        request: Request<proto::DeleteMemoryRequest>,
    ) -> Result<Response<proto::DeleteMemoryResponse>, Status> {
        let caller = self.caller(&request, "DeleteMemory").await?;
        let message = request.into_inner();
        self.service
            .forget_memory(&caller, &message.bank_id, &message.memory_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::DeleteMemoryResponse {
            memory_id: message.memory_id,
            forgotten: true,
        }))
    }

    async fn list_changes(
        &self,
        request: Request<proto::ListChangesRequest>,
    ) -> Result<Response<proto::ListChangesResponse>, Status> {
        let caller = self.caller(&request, "ListChanges").await?;
        let message = request.into_inner();
        let page = self
            .service
            .changes(
                &caller,
                &message.bank_id,
                message.since,
                message.limit,
                message.tail,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::changes(page)))
    }

    type ExportStream = ExportStream;

    async fn export(
        &self,
        request: Request<proto::ExportRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let caller = self.caller(&request, "Export").await?;
        let message = request.into_inner();
        // Refuse before the stream starts, so a refusal is a status rather than a cut stream.
        self.service
            .authorize(&caller, &message.bank_id, Permission::Admin)
            .map_err(to_status)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(32);
        let service = self.service.clone();
        tokio::spawn(async move {
            let (writer, reader) = tokio::io::duplex(64 * 1024);
            let export = async {
                let mut writer = writer;
                service
                    .export_to(
                        &caller,
                        &message.bank_id,
                        message.include_embeddings,
                        &mut writer,
                    )
                    .await
                // Dropping the writer here ends the reader's lines.
            };
            let forward = async {
                let mut lines = tokio::io::BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if sender.send(Ok(proto::ExportLine { line })).await.is_err() {
                        // The client went away: dropping the reader stops the export.
                        break;
                    }
                }
            };
            let (exported, ()) = tokio::join!(export, forward);
            match exported {
                // Nobody is left to tell.
                Err(error) if error.is_client_gone() => {}
                Err(error) => {
                    let _ = sender.send(Err(to_status(error))).await;
                }
                Ok(_) => {}
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// A bound gRPC listener, not yet serving.
pub struct GrpcListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<Identity>,
}

impl GrpcListener {
    /// Binds `host:port` and reads the TLS files, if any.
    pub async fn bind(host: &str, port: u16, tls: Option<&TlsFiles>) -> Result<Self, ServerError> {
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tls = match tls {
            None => None,
            Some(files) => {
                let read = |path: &std::path::Path| {
                    std::fs::read(path).map_err(|e| crate::config::ConfigError::Invalid {
                        setting: "ASTROCYTE_GRPC_TLS_CERT".into(),
                        message: format!("cannot read {}: {e}", path.display()),
                    })
                };
                Some(Identity::from_pem(read(&files.cert)?, read(&files.key)?))
            }
        };
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        let local_addr = listener.local_addr()?;
        Ok(GrpcListener {
            listener,
            local_addr,
            tls,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the memory, health and reflection services until `shutdown` completes.
    pub async fn run(
        self,
        state: AppState,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let service = state.service();
        let (reporter, health) = tonic_health::server::health_reporter();
        let memory = proto::memory_server::MemoryServer::new(GrpcMemory::new(service.clone()))
            .max_decoding_message_size(state.config().max_request_body_bytes.unwrap_or(usize::MAX))
            .max_encoding_message_size(usize::MAX)
            // Clients that compress their messages (gzip or deflate) are understood, and
            // a client that accepts gzip gets its replies compressed.
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Deflate)
            .send_compressed(CompressionEncoding::Gzip);
        // Health is the service's one check, refreshed in the background. The first is
        // recorded before serving, so no client is told the service is not registered.
        let report = move |healthy: bool| {
            let reporter = reporter.clone();
            async move {
                let status = if healthy {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                for name in ["", "astrocyte.v1.Memory"] {
                    reporter.set_service_status(name, status).await;
                }
            }
        };
        report(service.health().await.healthy).await;
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEALTH_INTERVAL).await;
                report(service.health().await.healthy).await;
            }
        });
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_alpha = reflection()
            .build_v1alpha()
            .map_err(|e| ServerError::Grpc(e.to_string()))?;
        let reflection = reflection()
            .build_v1()
            .map_err(|e| ServerError::Grpc(e.to_string()))?;
        let head_timeout = state.config().request_head_timeout;
        // A peer that leaves a ping unanswered for the head timeout is dropped, and a TLS
        // handshake must finish within it.
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(head_timeout))
            .http2_keepalive_timeout(Some(head_timeout))
            .layer(tower::util::MapResponseLayer::new(restate_codec_refusals));
        if let Some(identity) = self.tls {
            builder = builder
                .tls_config(
                    ServerTlsConfig::new()
                        .identity(identity)
                        .timeout(head_timeout),
                )
                .map_err(|e| ServerError::Grpc(e.to_string()))?;
        }
        let (incoming, accepting) =
            incoming::accept(self.listener, state.config().max_connections, head_timeout);
        tracing::info!(address = %self.local_addr, tls = builder_has_tls(&state), "astrocyte gRPC listening");
        let served = builder
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(memory)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        accepting.abort();
        watcher.abort();
        served.map_err(|e| ServerError::Grpc(e.to_string()))?;
        tracing::info!("astrocyte gRPC stopped");
        Ok(())
    }
}

/// Restates tonic's own refusals of a request message in the table above. tonic answers a
/// message it cannot decode with `INTERNAL` and one over the size limit with `OUT_OF_RANGE`
/// (`RESOURCE_EXHAUSTED` when it decompresses past it), before any method runs; both are the caller's doing (`invalid_input`, and
/// `payload_too_large` as REST's 413). The status is in the trailers, or in the headers of a
/// trailers-only response.
fn restate_codec_refusals(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    use http_body_util::BodyExt;
    let (mut parts, body) = response.into_parts();
    restate_codec_refusal(&mut parts.headers);
    let body = body.map_frame(|mut frame| {
        if let Some(trailers) = frame.trailers_mut() {
            restate_codec_refusal(trailers);
        }
        frame
    });
    http::Response::from_parts(parts, tonic::body::Body::new(body))
}

fn restate_codec_refusal(headers: &mut http::HeaderMap) {
    // Percent-encoded on the wire; the spaces are all that matter here.
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replace("%20", " ");
    let (code, kind) = match headers.get("grpc-status").map(|v| v.as_bytes()) {
        Some(b"13") if message.starts_with("failed to decode") => {
            (tonic::Code::InvalidArgument, ErrorCode::InvalidInput)
        }
        Some(b"11" | b"8")
            if message.contains("message length too large") || message.contains("size limit") =>
        {
            headers.insert(
                "grpc-message",
                http::HeaderValue::from_static("Request body too large"),
            );
            (tonic::Code::ResourceExhausted, ErrorCode::PayloadTooLarge)
        }
        _ => return,
    };
    headers.insert("grpc-status", http::HeaderValue::from(code as i32));
    headers.insert(
        ERROR_KIND_KEY,
        http::HeaderValue::from_static(kind.as_str()),
    );
}

fn builder_has_tls(state: &AppState) -> bool {
    state.config().grpc_tls.is_some()
}
