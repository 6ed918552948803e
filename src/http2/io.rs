//! tokio's poll-based `AsyncRead`/`AsyncWrite` over certgate's cancel-safe [`Conn`], for the `h2`
//! crate.
//!
//! Every `Conn` operation parks its in-flight io_uring operation inside the connection, so a
//! future created and polled once inside `poll_read`/`poll_write`, then dropped on `Pending`, loses
//! nothing: the kernel keeps the buffer, the parked operation keeps the waker it was last polled
//! with, and the next call collects its result. That is what lets a poll-based protocol stack run
//! over owned-buffer I/O without copying the stream into a second buffering layer.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::Conn;

/// A [`Conn`] as a tokio I/O object.
pub struct PollConn {
    conn: Conn,
    /// Plaintext read from the connection and not yet handed to the reader.
    rbuf: BytesMut,
}

impl PollConn {
    /// Wraps `conn`; `buffered` is plaintext already read from it (e.g. an HTTP/2 preface read
    /// while detecting the protocol), handed out first.
    pub fn new(conn: Conn, buffered: BytesMut) -> Self {
        Self {
            conn,
            rbuf: buffered,
        }
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &Conn {
        &self.conn
    }
}

impl AsyncRead for PollConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rbuf.is_empty() {
            let polled = pin!(this.conn.read_into(&mut this.rbuf)).poll(cx);
            match polled {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // End of stream: nothing appended, an empty read tells the reader.
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
                // A TLS read may have decrypted a record and then parked the write of a
                // post-handshake reply: the plaintext is ours already, hand it out.
                Poll::Pending if !this.rbuf.is_empty() => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(this.rbuf.len());
        buf.put_slice(&this.rbuf[..n]);
        this.rbuf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PollConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // The previous write must be out before this one is accepted: `Pending` here then
        // means nothing of `data` was taken, as the trait requires.
        match pin!(this.conn.flush()).poll(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        // With nothing in flight, `write_all` takes all of `data` before its first await (into
        // the socket's buffer, or encrypted into TLS records); a `Pending` after that is the
        // write parked in the connection, finished by the next write or flush.
        match pin!(this.conn.write_all(data)).poll(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        pin!(self.get_mut().conn.flush()).poll(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        pin!(self.get_mut().conn.shutdown_write()).poll(cx)
    }
}
