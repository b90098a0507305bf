//! Closing a connection without losing the end of what it sent.
//!
//! A TCP socket closed while it holds bytes the peer sent and nobody read
//! is reset (RFC 2525, 2.17), and the reset throws away whatever was written
//! but not yet delivered: the tail of a stream that ended just before its
//! connection closed. HTTP/2 closes a connection as soon as its last stream
//! ends once a GOAWAY was sent (a graceful shutdown does so), and by then
//! the client has usually sent something more: a WINDOW_UPDATE, a PING's
//! acknowledgement. So, as HTTP servers do (nginx's lingering close), a
//! shutdown here sends FIN after everything written, then reads and drops
//! what the peer still sends until it closes its side too, for at most
//! [`LINGER`]: a peer that never closes holds the socket no longer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::{Stream, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};
use tonic::transport::server::Connected;

/// The longest a shut-down connection waits for its peer to close.
const LINGER: Duration = Duration::from_secs(10);

/// Every connection of `incoming`, closed without losing its last bytes.
pub fn lingering_close<S, IO>(incoming: S) -> impl Stream<Item = io::Result<LingeringClose<IO>>>
where
    S: Stream<Item = io::Result<IO>>,
{
    incoming.map_ok(LingeringClose::new)
}

/// A connection whose shutdown waits for the peer to close (see the module).
#[derive(Debug)]
pub struct LingeringClose<IO> {
    io: IO,
    linger: Duration,
    closing: Closing,
}

#[derive(Debug)]
enum Closing {
    Open,
    /// FIN sent; the peer's last bytes are read and dropped until it closes
    /// or the deadline passes.
    Draining(Pin<Box<Sleep>>),
    Closed,
}

impl<IO> LingeringClose<IO> {
    pub fn new(io: IO) -> Self {
        Self::with_linger(io, LINGER)
    }

    fn with_linger(io: IO, linger: Duration) -> Self {
        Self {
            io,
            linger,
            closing: Closing::Open,
        }
    }
}

impl<IO: AsyncRead + Unpin> LingeringClose<IO> {
    /// Reads and drops until the peer closes, fails, or `deadline` passes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Closing::Draining(deadline) = &mut self.closing else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; 4096];
        loop {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(()),
                Ok(()) => continue,
                // A peer that resets has nothing left to receive.
                Err(_) => return Poll::Ready(()),
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for LingeringClose<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Closing::Open = this.closing {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.closing = Closing::Draining(Box::pin(sleep(this.linger)));
        }
        ready!(this.poll_drain(cx));
        this.closing = Closing::Closed;
        Poll::Ready(Ok(()))
    }
}

impl<IO: Connected> Connected for LingeringClose<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    const TAIL: usize = 128 * 1024;

    /// A connected pair: the closing side can buffer all of `TAIL`, the
    /// peer's receive window is small, so most of `TAIL` is still in the
    /// closing side's send buffer when it closes. The peer has sent bytes
    /// the closing side never reads (as an HTTP/2 client sends a
    /// WINDOW_UPDATE).
    async fn pair() -> (TcpStream, TcpStream) {
        let listening = TcpSocket::new_v4().unwrap();
        listening.set_recv_buffer_size(4096).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener: TcpListener = listening.listen(1).unwrap();
        let closing = TcpSocket::new_v4().unwrap();
        closing.set_send_buffer_size(2 * TAIL as u32).unwrap();
        let closing = closing
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        peer.write_all(b"WINDOW_UPDATE").await.unwrap();
        closing.readable().await.unwrap();
        (closing, peer)
    }

    /// Writes `TAIL`, shuts down and closes.
    async fn write_tail_and_close(mut closing: impl AsyncWrite + Unpin) -> io::Result<()> {
        closing.write_all(&[7u8; TAIL]).await?;
        closing.shutdown().await
    }

    #[tokio::test]
    async fn a_peer_that_sent_unread_bytes_still_receives_the_whole_tail() {
        let (closing, mut peer) = pair().await;
        let closed = tokio::spawn(write_tail_and_close(LingeringClose::new(closing)));
        let mut received = Vec::new();
        peer.read_to_end(&mut received).await.unwrap();
        drop(peer);
        closed.await.unwrap().unwrap();
        assert_eq!(received.len(), TAIL);
    }

    #[tokio::test]
    async fn a_plain_close_loses_the_tail_to_a_reset() {
        // Why LingeringClose exists.
        let (closing, mut peer) = pair().await;
        write_tail_and_close(closing).await.unwrap();
        let mut received = Vec::new();
        let read = peer.read_to_end(&mut received).await;
        assert!(
            matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{read:?} after {} bytes",
            received.len()
        );
    }

    #[tokio::test]
    async fn a_peer_that_never_closes_is_let_go_after_the_linger_time() {
        let (closing, _peer_never_closing) = pair().await;
        let linger = Duration::from_millis(300);
        let started = std::time::Instant::now();
        LingeringClose::with_linger(closing, linger)
            .shutdown()
            .await
            .unwrap();
        assert!(started.elapsed() >= linger);
    }
}
