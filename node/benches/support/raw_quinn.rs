//! The baseline for blob transfers: raw quinn streams moving bytes from memory to memory, with
//! the node's TLS setup and transport settings, and no wasmesh code on either end.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use wasmesh_node::admission::Admission;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::Keypair;

const ALPN: &[u8] = b"raw";

fn server_keys() -> Keypair {
    Keypair::from_seed([1; 32])
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// The same transport settings as the node's data plane.
pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(16 << 20))
        .receive_window(quinn::VarInt::from_u32(64 << 20))
        .send_window(64 << 20);
    Arc::new(t)
}

/// Starts a server that answers every stream with `size` bytes; returns its endpoint.
pub fn serve(size: usize) -> quinn::Endpoint {
    let identity = TlsIdentity::new(&server_keys(), None).expect("identity");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(
            identity
                .server_config(Admission::Open, &[ALPN])
                .expect("tls"),
        )
        .expect("quic tls"),
    ));
    config.transport_config(transport());
    let server = quinn::Endpoint::server(config, local()).expect("server");
    let accepting = server.clone();
    let payload = Arc::new(vec![7u8; size]);
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            let payload = payload.clone();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, _recv)) = connection.accept_bi().await {
                    let _ = send.write_all(&payload).await;
                    let _ = send.finish();
                    let _ = send.stopped().await;
                }
            });
        }
    });
    server
}

/// A connection to a [`serve`] server.
pub struct RawClient {
    connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    /// Connects to the [`serve`] server at `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let client_keys = Keypair::from_seed([2; 32]);
        let identity = TlsIdentity::new(&client_keys, None).expect("identity");
        let mut config = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(
                identity
                    .client_config(
                        server_keys().public(),
                        &wasmesh_node::admission::Admission::Open,
                        ALPN,
                    )
                    .expect("tls"),
            )
            .expect("quic tls"),
        ));
        config.transport_config(transport());
        let endpoint = quinn::Endpoint::client(local()).expect("client");
        let connection = endpoint
            .connect_with(config, addr, "wasmesh")
            .expect("connect")
            .await
            .expect("handshake");
        Self {
            connection,
            _endpoint: endpoint,
        }
    }

    /// Times one stream of `size` bytes from the server.
    pub async fn time_stream(&self, size: usize) -> Duration {
        let start = Instant::now();
        let (mut send, mut recv) = self.connection.open_bi().await.expect("stream");
        send.write_all(b"go").await.expect("write");
        let mut received = 0;
        while let Some(chunk) = recv.read_chunk(256 * 1024, true).await.expect("read") {
            received += chunk.bytes.len();
        }
        assert_eq!(received, size);
        start.elapsed()
    }
}
