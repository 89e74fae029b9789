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

#[tokio::test]
async fn grpc_serves_tls_health_and_dev_principals() {
    let h = Harness::new();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    let files = tempfile::tempdir().expect("tempdir");
    let cert = files.path().join("cert.pem");
    let key = files.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut cfg = config();
    cfg.grpc_port = Some(0);
    cfg.grpc_tls = Some(TlsFiles { cert, key });
    let server = spawn_bound(Gateway::from_state(h.state(cfg).await)).await;
    let addr = server.grpc_addr.clone().expect("grpc served");
    let port = addr.rsplit(':').next().expect("port").to_string();

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("a TLS client connects");

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
