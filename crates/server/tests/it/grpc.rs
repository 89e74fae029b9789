//! gRPC specifics the parity table does not cover: TLS with a certificate from files, the
//! standard health service reflecting the store, and dev-mode principals from metadata.

use astrocyte_server::config::TlsFiles;
use astrocyte_server::grpc::proto::{self, memory_client::MemoryClient};
use astrocyte_server::Gateway;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::{config, spawn_bound, Harness};

/// A self-signed certificate for `localhost` in files (kept while the directory lives), and
/// its PEM.
fn tls_files() -> (tempfile::TempDir, TlsFiles, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    let files = tempfile::tempdir().expect("tempdir");
    let cert = files.path().join("cert.pem");
    let key = files.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (files, TlsFiles { cert, key }, cert_pem)
}

async fn tls_channel(addr: &str, cert_pem: &str) -> Channel {
    let port = addr.rsplit(':').next().expect("port");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cert_pem))
        .domain_name("localhost");
    Channel::from_shared(format!("https://localhost:{port}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("a TLS client connects")
}

#[tokio::test]
async fn grpc_serves_tls_health_and_dev_principals() {
    let h = Harness::new();
    let (_files, tls, cert_pem) = tls_files();
    let mut cfg = config();
    cfg.grpc_port = Some(0);
    cfg.grpc_tls = Some(tls);
    let server = spawn_bound(Gateway::from_state(h.state(cfg).await)).await;
    let addr = server.grpc_addr.clone().expect("grpc served");
    let channel = tls_channel(&addr, &cert_pem).await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "astrocyte.v1.Memory"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut memory = MemoryClient::new(channel);
    let mut request = tonic::Request::new(proto::RetainRequest {
        bank_id: "notes".into(),
        content: "Sent over TLS by a principal named in metadata.".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-astrocyte-principal", "agent:tls".parse().expect("ascii"));
    let stored = memory.retain(request).await.expect("retain").into_inner();
    assert!(stored.stored);

    // The same port refuses plaintext.
    let plaintext = MemoryClient::connect(format!("http://{addr}")).await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(mut client) => client.list_banks(proto::ListBanksRequest {}).await.is_err(),
    };
    assert!(refused, "plaintext gRPC must not reach a TLS port");
    server.stop().await;
}

/// A retain request as a client with its own encoder may send it: `content` as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRetain {
    #[prost(string, tag = "1")]
    bank_id: String,
    #[prost(bytes = "vec", tag = "2")]
    content: Vec<u8>,
}

fn error_kind(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get(astrocyte_server::grpc::ERROR_KIND_KEY)
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn grpc_refuses_a_callers_bad_messages_with_its_kind() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.grpc_port = Some(0);
    cfg.max_request_body_bytes = Some(64 * 1024);
    let server = spawn_bound(Gateway::from_state(h.state(cfg).await)).await;
    let addr = server.grpc_addr.clone().expect("grpc served");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");

    // Bytes that do not decode (a string field holding invalid UTF-8): the caller's mistake.
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.expect("ready");
    let refused = raw
        .unary(
            tonic::Request::new(RawRetain {
                bank_id: "notes".into(),
                content: vec![b'o', b'k', 0xff, 0xfe],
            }),
            tonic::codegen::http::uri::PathAndQuery::from_static("/astrocyte.v1.Memory/Retain"),
            tonic_prost::ProstCodec::<RawRetain, proto::RetainResponse>::default(),
        )
        .await
        .expect_err("undecodable");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(error_kind(&refused), Some("invalid_input"));

    let mut memory = MemoryClient::new(channel.clone());
    // Over the body limit: payload_too_large, as REST's 413.
    let refused = memory
        .retain(proto::RetainRequest {
            bank_id: "notes".into(),
            content: "x".repeat(100 * 1024),
            ..Default::default()
        })
        .await
        .expect_err("too large");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(error_kind(&refused), Some("payload_too_large"));

    // A detail quoting a huge input is cut, so the client reads the real error.
    let refused = memory
        .retain(proto::RetainRequest {
            bank_id: "b".repeat(20_000),
            content: "A bank name far too long.".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad bank");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().chars().count() <= 501,
        "{}",
        refused.message().len()
    );

    // What JSON cannot hold is refused, not stored as null.
    let refused = memory
        .retain(proto::RetainRequest {
            bank_id: "notes".into(),
            content: "A number that is not one.".into(),
            metadata: Some(prost_types::Struct {
                fields: [(
                    "x".to_string(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
                    },
                )]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("NaN");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // An empty name among several banks is refused, as REST refuses it.
    let refused = memory
        .recall(proto::RecallRequest {
            query: "anything".into(),
            banks: vec![String::new(), "notes".into()],
            ..Default::default()
        })
        .await
        .expect_err("empty bank");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // A compressing client is understood; a time range may leave its end open.
    let mut gzip = MemoryClient::new(channel)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let stored = gzip
        .retain(proto::RetainRequest {
            bank_id: "notes".into(),
            content: "Sent gzip-compressed, and it happened in 2021.".into(),
            occurred_at: Some("2021-06-01T00:00:00Z".into()),
            ..Default::default()
        })
        .await
        .expect("a compressed retain")
        .into_inner();
    assert!(stored.stored);
    // Compressed small, but over the limit once inflated: the same kind as uncompressed.
    let refused = gzip
        .retain(proto::RetainRequest {
            bank_id: "notes".into(),
            content: "z".repeat(100 * 1024),
            ..Default::default()
        })
        .await
        .expect_err("too large inflated");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(error_kind(&refused), Some("payload_too_large"));
    let since = |start: &str| proto::ListMemoriesRequest {
        bank_id: "notes".into(),
        time_range: Some(proto::TimeRange {
            start: start.into(),
            end: String::new(),
        }),
        ..Default::default()
    };
    let listed = gzip
        .list_memories(since("2020-01-01T00:00:00Z"))
        .await
        .expect("since 2020")
        .into_inner();
    assert_eq!(listed.memories.len(), 1);
    let listed = gzip
        .list_memories(since("2022-01-01T00:00:00Z"))
        .await
        .expect("since 2022")
        .into_inner();
    assert!(listed.memories.is_empty());
    server.stop().await;
}

/// Holds the server's only gRPC slot with a socket that sends `opening` and then nothing, and
/// checks that a client asking meanwhile (on `channel`, connected only then) is served once
/// the holder has lost the slot, not before.
async fn served_once_the_holder_loses_its_slot(
    addr: &str,
    opening: &[u8],
    channel: impl std::future::Future<Output = Channel>,
) {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    let mut holder = tokio::net::TcpStream::connect(addr).await.expect("connect");
    holder.write_all(opening).await.expect("write");
    // Let the holder take the slot before the client asks.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        HealthClient::new(channel.await)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("check")
            .into_inner()
            .status
    })
    .await
    .expect("served once the holder lost its slot");
    assert_eq!(status, ServingStatus::Serving as i32);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "served past the cap after {:?}",
        started.elapsed()
    );
    drop(holder);
}

/// The gRPC listener keeps REST's connection limits: with one slot, a socket that never
/// speaks holds it until the head timeout, and one that opens HTTP/2 but leaves pings
/// unanswered until the ping timeout; the waiting client is served after each.
#[tokio::test]
async fn grpc_connections_are_capped_and_silent_ones_give_their_slot_back() {
    let h = Harness::new();
    let mut cfg = config();
    cfg.grpc_port = Some(0);
    cfg.max_connections = 1;
    cfg.request_head_timeout = std::time::Duration::from_millis(300);
    let server = spawn_bound(Gateway::from_state(h.state(cfg).await)).await;
    let addr = server.grpc_addr.clone().expect("grpc served");
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    for opening in [&b""[..], &preface[..]] {
        let channel = async {
            Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connects")
        };
        served_once_the_holder_loses_its_slot(&addr, opening, channel).await;
    }
}

/// A TLS handshake that stalls after its first byte gives its slot back at the head timeout.
#[tokio::test]
async fn a_stalled_grpc_tls_handshake_gives_its_slot_back() {
    let h = Harness::new();
    let (_files, tls, cert_pem) = tls_files();
    let mut cfg = config();
    cfg.grpc_port = Some(0);
    cfg.grpc_tls = Some(tls);
    cfg.max_connections = 1;
    cfg.request_head_timeout = std::time::Duration::from_millis(300);
    let server = spawn_bound(Gateway::from_state(h.state(cfg).await)).await;
    let addr = server.grpc_addr.clone().expect("grpc served");
    // The first byte of a TLS handshake record, then nothing.
    served_once_the_holder_loses_its_slot(&addr, &[0x16], tls_channel(&addr, &cert_pem)).await;
}
