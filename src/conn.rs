//! A connection on either side of the proxy, plain TCP or TLS, with one set of cancel-safe
//! operations (see `io::Socket` and `tls::TlsStream`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use crate::io::Socket;
use crate::tls::TlsStream;

/// Write buffer a pooled plain connection keeps: a request head with identity fields fits.
const STANDING_WRITE: usize = 8 * 1024;

/// A client or upstream connection, plain TCP or TLS over it; the proxy reads and writes both
/// alike.
pub enum Conn {
    /// Plain TCP: a plain-HTTP listener, or an upstream without `[upstream.tls]`.
    Plain(Socket),
    /// TLS over TCP (boxed: the stream holds its BoringSSL state and buffers).
    Tls(Box<TlsStream>),
}

impl Conn {
    /// The remote address of the TCP connection.
    pub fn peer_addr(&self) -> SocketAddr {
        match self {
            Self::Plain(s) => s.peer_addr(),
            Self::Tls(t) => t.socket().peer_addr(),
        }
    }

    /// The local address, `None` if the socket cannot tell (it was closed underneath).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Plain(s) => s.local_addr(),
            Self::Tls(t) => t.socket().local_addr(),
        }
    }

    /// Appends what arrived to `dst`; 0 means the peer closed. Cancel-safe.
    pub async fn read_into(&mut self, dst: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read_into(dst).await,
            Self::Tls(t) => t.read_into(dst).await,
        }
    }

    /// Waits for input without holding a read buffer. Cancel-safe.
    pub async fn readable(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.readable().await,
            Self::Tls(t) => t.readable().await,
        }
    }

    /// Sends all of `data`; bytes accepted before a cancellation are still sent, in order.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(data).await,
            Self::Tls(t) => t.write_all(data).await,
        }
    }

    /// Writes out what is buffered (for TLS, the records still in the write buffer).
    pub async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::Tls(t) => t.flush().await,
        }
    }

    /// Half-close: FIN (after close_notify on TLS); reading goes on.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown_write().await,
            Self::Tls(t) => t.shutdown_write().await,
        }
    }

    /// Gives back the read and write buffers while the connection sits idle (keep-alive, pool), so
    /// idle connections cost no buffer memory; they are taken again on the next I/O.
    pub fn release_buffers(&mut self) {
        match self {
            Self::Plain(s) => s.release_buffers(),
            Self::Tls(t) => t.release_buffers(),
        }
    }

    /// A pooled connection is reusable when nothing is in flight and the peer neither closed
    /// it nor sent unrequested bytes.
    pub fn is_reusable(&mut self) -> bool {
        match self {
            Self::Plain(s) => s.is_reusable(),
            Self::Tls(t) => !t.has_buffered_input() && t.socket_mut().is_reusable(),
        }
    }

    /// Writes `data` without waiting for the write to finish, when that is possible: on
    /// io_uring, whose kernel finishes a parked write that nobody polls, and with no write in
    /// flight (a finished one is collected first), so that the write takes all of `data` at
    /// its first poll. The write's completion is collected by the connection's next write or
    /// by the pool before reuse; a failure then shows as a closed connection.
    ///
    /// # Return
    /// `None` when the write cannot be handed over (the caller awaits `write_all`); otherwise
    /// how its start went.
    pub fn hand_over(&mut self, data: &[u8]) -> Option<io::Result<()>> {
        if !crate::io::kernel_driven() {
            return None;
        }
        let idle = match self {
            Self::Plain(s) => s.settle_write(),
            Self::Tls(t) => t.socket_mut().settle_write(),
        };
        if !idle {
            return None;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(self.write_all(data)).poll(&mut cx) {
            std::task::Poll::Ready(Err(e)) => Some(Err(e)),
            _ => Some(Ok(())),
        }
    }

    /// Readies a connection going into a pool: buffers released and, on plain TCP, a standing
    /// read (see [`Socket::stand_read`]) that the next response is read by and that tells the
    /// pool, without a syscall, whether the server closed the connection meanwhile. (On TLS a
    /// late record, such as a session ticket, must go through the TLS layer: the pool peeks.)
    pub fn park_idle(&mut self) {
        match self {
            // The standing read keeps a small read buffer (taken before the release, which
            // frees only what no operation holds), and a small write buffer stays for the next
            // request's head: a pooled connection then costs no allocation per reuse.
            Self::Plain(s) => {
                s.stand_read();
                s.trim_write_buffer(STANDING_WRITE);
            }
            Self::Tls(t) => t.release_buffers(),
        }
    }
}
