//! The gRPC listener's connections, under the same limits as REST's: at most
//! `max_connections` at once (more wait in the listen backlog), and a connection that sends
//! nothing within the head timeout is closed before tonic sees it. tonic's HTTP/2 pings then
//! drop a peer that goes silent later.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding one slot until it is dropped.
pub(super) struct Slotted {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
}

/// Accepts on `listener` until the returned task is aborted; the stream yields the
/// connections that spoke in time.
pub(super) fn accept(
    listener: TcpListener,
    max_connections: usize,
    head_timeout: Duration,
) -> (ReceiverStream<io::Result<Slotted>>, JoinHandle<()>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(crate::connection_slots(max_connections)));
    let accepting = tokio::spawn(async move {
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "accepting a gRPC connection failed");
                    tokio::time::sleep(crate::ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            // Small replies must not wait on Nagle's algorithm (a 40 ms stall per call).
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            let sender = sender.clone();
            tokio::spawn(async move {
                if crate::spoke_within(&tcp, head_timeout).await {
                    let _ = sender.send(Ok(Slotted { tcp, _slot: slot })).await;
                }
            });
        }
    });
    (ReceiverStream::new(receiver), accepting)
}

impl Connected for Slotted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

impl AsyncRead for Slotted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
