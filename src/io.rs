//! Cancel-safe owned-buffer I/O over a monoio `TcpStream`.
//!
//! io_uring reads and writes own their buffers while the kernel works on them. If the future
//! that awaits such an operation is dropped (a timeout fired, a `select!` took the other branch),
//! the bytes the kernel reads into the buffer would be lost with it, and a half-done write would
//! leave the stream corrupt. `Socket` therefore parks every in-flight operation in a slot it owns:
//! a dropped `read_into`/`write_all` leaves the operation in the slot, and the next call on the
//! same direction collects its result first. Nothing is lost, nothing is written twice.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

/// Bytes asked of the kernel per read: one full TLS record plus its overhead fits.
pub const READ_CHUNK: usize = 16 * 1024 + 512;

thread_local! {
    static KERNEL_DRIVEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Declares this thread's runtime io_uring-driven (or not): there the kernel carries a parked
/// operation to its end without anyone polling it, which epoll's readiness model does not.
pub fn set_kernel_driven(on: bool) {
    KERNEL_DRIVEN.with(|k| k.set(on));
}

/// Whether this thread's parked operations progress without being polled.
pub fn kernel_driven() -> bool {
    KERNEL_DRIVEN.with(std::cell::Cell::get)
}

/// Bytes a pooled connection's standing read may take at once: a small response fits.
const STANDING_READ: usize = 4 * 1024;

type ReadOp = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>, OwnedReadHalf<TcpStream>)>>>;
type WriteOp =
    Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>, OwnedWriteHalf<TcpStream>)>>>;

enum ReadSlot {
    Idle(OwnedReadHalf<TcpStream>, Vec<u8>),
    Busy(ReadOp),
    /// A read that finished while nobody waited for it (seen by [`Socket::is_reusable`]); the
    /// next `read_into` takes its result.
    Done(io::Result<usize>, Vec<u8>, OwnedReadHalf<TcpStream>),
    /// Only seen if an operation's future panicked; every call then fails.
    Broken,
}

enum WriteSlot {
    Idle(OwnedWriteHalf<TcpStream>, Vec<u8>),
    Busy(WriteOp),
    Broken,
}

/// A TCP connection whose reads and writes survive the cancellation of their futures.
pub struct Socket {
    rd: ReadSlot,
    wr: WriteSlot,
    fd: RawFd,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    /// A write error seen while completing a parked write, reported on the next write.
    write_error: Option<io::ErrorKind>,
}

impl Socket {
    /// Wraps an accepted or connected stream; fails only if the peer address cannot be read (the
    /// peer already reset the connection).
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let peer = stream.peer_addr()?;
        let local = stream.local_addr().ok();
        let fd = stream.as_raw_fd();
        let (rd, wr) = stream.into_split();
        Ok(Self {
            rd: ReadSlot::Idle(rd, Vec::new()),
            wr: WriteSlot::Idle(wr, Vec::new()),
            fd,
            peer,
            local,
            write_error: None,
        })
    }

    /// The remote address, read once at [`Socket::new`].
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address, `None` if it could not be read.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Reads once and appends what arrived to `dst`.
    ///
    /// # Return
    /// The number of bytes appended; 0 means the peer closed its side.
    ///
    /// # Cancel safety
    /// If the returned future is dropped, the read stays in flight inside `self`; its bytes are
    /// appended to whichever buffer the next `read_into` call passes.
    pub async fn read_into(&mut self, dst: &mut BytesMut) -> io::Result<usize> {
        self.start_read(READ_CHUNK);
        let (res, buf, half) = poll_fn(|cx| self.poll_read_op(cx)).await;
        let res = res.inspect(|&n| dst.extend_from_slice(&buf[..n]));
        self.rd = ReadSlot::Idle(half, buf);
        res
    }

    /// Parks a read of up to `size` bytes in the slot, unless one is parked or done already.
    fn start_read(&mut self, size: usize) {
        if !matches!(self.rd, ReadSlot::Idle(..)) {
            return;
        }
        let ReadSlot::Idle(half, mut buf) = std::mem::replace(&mut self.rd, ReadSlot::Broken)
        else {
            return;
        };
        buf.clear();
        if buf.capacity() < size {
            buf.reserve_exact(size);
        }
        self.rd = ReadSlot::Busy(Box::pin(async move {
            let mut half = half;
            let (res, buf) = half.read(buf).await;
            (res, buf, half)
        }));
    }

    /// Polls the parked read; `Ready` leaves the slot `Broken` until the caller puts the half
    /// back (with no await in between).
    #[allow(clippy::type_complexity)]
    fn poll_read_op(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(io::Result<usize>, Vec<u8>, OwnedReadHalf<TcpStream>)> {
        match std::mem::replace(&mut self.rd, ReadSlot::Broken) {
            ReadSlot::Busy(mut op) => match op.as_mut().poll(cx) {
                Poll::Ready(done) => Poll::Ready(done),
                Poll::Pending => {
                    self.rd = ReadSlot::Busy(op);
                    Poll::Pending
                }
            },
            ReadSlot::Done(res, buf, half) => Poll::Ready((res, buf, half)),
            other => {
                self.rd = other;
                Poll::Pending
            }
        }
    }

    /// Starts a read that stays in flight while the connection sits idle in a pool. The next
    /// `read_into` (the next response) collects it, so it costs no extra operation, and
    /// [`Socket::is_reusable`] learns without a syscall whether the server closed the
    /// connection or sent stray bytes meanwhile: the read has completed.
    pub fn stand_read(&mut self) {
        // A buffer grown by a large response is given back; a small one is kept (no
        // allocation per reuse).
        if let ReadSlot::Idle(_, buf) = &mut self.rd {
            if buf.capacity() > STANDING_READ {
                *buf = Vec::new();
            }
        }
        self.start_read(STANDING_READ);
        // An operation is submitted at its first poll.
        self.settle_standing_read();
    }

    /// Polls a standing read without a waker: true while it is still waiting, i.e. nothing
    /// arrived on the connection.
    fn settle_standing_read(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_read_op(&mut cx) {
            Poll::Pending => matches!(self.rd, ReadSlot::Busy(_)),
            Poll::Ready((res, buf, half)) => {
                self.rd = ReadSlot::Done(res, buf, half);
                false
            }
        }
    }

    /// Waits until the socket has something to read, without parking a buffer in the kernel:
    /// an idle keep-alive connection then costs no read buffer. Safe to cancel.
    pub async fn readable(&mut self) -> io::Result<()> {
        match &self.rd {
            // A parked read already holds a buffer; waiting on it is the same as waiting here.
            ReadSlot::Busy(_) | ReadSlot::Done(..) => Ok(()),
            ReadSlot::Idle(half, _) => {
                // SAFETY: the halves share one stream; readiness polling only reads the fd.
                let stream = unsafe { &*half.0.get() };
                // Not relaxed: epoll's cached readiness may be stale after our own reads, and
                // an idle connection must really wait (io_uring ignores the flag).
                stream.readable(false).await
            }
            ReadSlot::Broken => Err(broken()),
        }
    }

    /// Writes all of `data`.
    ///
    /// # Cancel safety
    /// Once started, a write is parked in `self`: if this future is dropped, the next
    /// `write_all`/`flush` finishes it before anything else is written.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.flush().await?;
        let WriteSlot::Idle(_, buf) = &mut self.wr else {
            return Err(broken());
        };
        buf.clear();
        buf.extend_from_slice(data);
        self.start_write();
        self.flush().await
    }

    /// Writes all of `data` and hands back the (emptied) buffer the socket owned before, so that
    /// callers producing whole buffers (the TLS layer) never copy.
    pub async fn write_owned(&mut self, data: &mut Vec<u8>) -> io::Result<()> {
        self.flush().await?;
        let WriteSlot::Idle(_, buf) = &mut self.wr else {
            return Err(broken());
        };
        std::mem::swap(buf, data);
        data.clear();
        self.start_write();
        self.flush().await
    }

    fn start_write(&mut self) {
        let WriteSlot::Idle(half, buf) = std::mem::replace(&mut self.wr, WriteSlot::Broken) else {
            return;
        };
        self.wr = WriteSlot::Busy(Box::pin(async move {
            let mut half = half;
            let (res, buf) = half.write_all(buf).await;
            (res, buf, half)
        }));
    }

    /// Collects a parked write that has completed, without waiting (a write handed over and
    /// not awaited, e.g. a request head sent while the response is awaited). True when no
    /// write is in flight any more; a failure is kept for the next write.
    pub fn settle_write(&mut self) -> bool {
        let WriteSlot::Busy(op) = &mut self.wr else {
            return matches!(self.wr, WriteSlot::Idle(..));
        };
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready((res, buf, half)) = op.as_mut().poll(&mut cx) else {
            return false;
        };
        self.wr = WriteSlot::Idle(half, buf);
        if let Err(e) = res {
            self.write_error = Some(e.kind());
        }
        true
    }

    /// Completes a parked write, if any.
    pub async fn flush(&mut self) -> io::Result<()> {
        if let Some(kind) = self.write_error {
            return Err(kind.into());
        }
        if !matches!(self.wr, WriteSlot::Busy(_)) {
            return match self.wr {
                WriteSlot::Broken => Err(broken()),
                _ => Ok(()),
            };
        }
        let (res, buf, half) = poll_fn(|cx| match &mut self.wr {
            WriteSlot::Busy(op) => op.as_mut().poll(cx),
            _ => Poll::Pending,
        })
        .await;
        self.wr = WriteSlot::Idle(half, buf);
        if let Err(e) = &res {
            self.write_error = Some(e.kind());
        }
        res.map(|_| ())
    }

    /// Sends FIN after what was written (half-close); reading goes on.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.flush().await?;
        // SAFETY: plain syscall on a descriptor this socket owns and keeps open.
        match unsafe { libc::shutdown(self.fd, libc::SHUT_WR) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Collects a finished write and releases the write buffer if it is larger than `max`.
    pub fn trim_write_buffer(&mut self, max: usize) {
        self.settle_write();
        if let WriteSlot::Idle(_, buf) = &mut self.wr {
            if buf.capacity() > max {
                *buf = Vec::new();
            }
        }
    }

    /// Releases the socket's own read buffer (kept between reads otherwise), e.g. before a long
    /// idle period.
    pub fn release_buffers(&mut self) {
        self.settle_write();
        if let ReadSlot::Idle(_, buf) = &mut self.rd {
            *buf = Vec::new();
        }
        if let WriteSlot::Idle(_, buf) = &mut self.wr {
            *buf = Vec::new();
        }
    }

    /// Checks without blocking whether a pooled connection is still usable: the peer has not
    /// closed it and sent nothing unexpected. With a standing read ([`Socket::stand_read`]) that
    /// is whether the read still waits; otherwise a one-byte peek.
    pub fn is_reusable(&mut self) -> bool {
        if !self.settle_write() || self.write_error.is_some() {
            return false;
        }
        match self.rd {
            ReadSlot::Busy(_) => return self.settle_standing_read(),
            ReadSlot::Idle(..) => {}
            ReadSlot::Done(..) | ReadSlot::Broken => return false,
        }
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a stack byte on a descriptor this socket owns.
        let n = unsafe {
            libc::recv(
                self.fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

fn broken() -> io::Error {
    io::Error::other("socket operation was interrupted by a panic")
}

// `Vec<u8>` reads fill from the start of the vector; assert that contract once here.
const _: fn() = || {
    fn is_buf<T: IoBufMut>() {}
    is_buf::<Vec<u8>>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::net::TcpListener;
    use std::time::Duration;

    async fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect_addr(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Socket::new(server).unwrap(), client)
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn timed_out_read_loses_nothing() {
        let (mut sock, mut peer) = pair().await;
        let mut buf = BytesMut::new();
        // The read is in flight when the timeout drops its future.
        let r = monoio::time::timeout(Duration::from_millis(20), sock.read_into(&mut buf)).await;
        assert!(r.is_err());
        let (res, _) = monoio::io::AsyncWriteRentExt::write_all(&mut peer, b"hello".to_vec()).await;
        res.unwrap();
        let n = sock.read_into(&mut buf).await.unwrap();
        assert_eq!(n, 5);
        assert_eq!(&buf[..], b"hello");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn cancelled_write_completes_on_next_call() {
        let (mut sock, mut peer) = pair().await;
        let big = vec![7u8; 8 << 20];
        // Cancel almost at once: the kernel buffers cannot take 8 MiB before the peer reads.
        let r = monoio::time::timeout(Duration::from_millis(1), sock.write_all(&big)).await;
        assert!(r.is_err());
        let reader = monoio::spawn(async move {
            let mut total = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let (res, b) = peer.read(buf).await;
                buf = b;
                let n = res.unwrap();
                if n == 0 {
                    break total;
                }
                assert!(buf[..n].iter().all(|&b| b == 7 || b == 9));
                total += n;
            }
        });
        sock.write_all(&[9u8; 10]).await.unwrap();
        sock.shutdown_write().await.unwrap();
        assert_eq!(reader.await, (8 << 20) + 10);
    }
    /// Lets the runtime park, so completions that arrived are reaped.
    async fn settle() {
        monoio::time::sleep(Duration::from_millis(30)).await;
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn standing_read_keeps_a_quiet_connection_and_delivers_the_next_response() {
        let (mut sock, mut peer) = pair().await;
        sock.stand_read();
        settle().await;
        assert!(sock.is_reusable(), "nothing arrived: reusable");
        assert!(sock.is_reusable(), "checking twice changes nothing");
        sock.write_all(b"GET").await.unwrap();
        let mut req = vec![0u8; 3];
        let (res, r) = peer.read(req).await;
        req = r;
        assert_eq!(res.unwrap(), 3);
        assert_eq!(&req[..], b"GET");
        let (res, _) =
            monoio::io::AsyncWriteRentExt::write_all(&mut peer, b"response".to_vec()).await;
        res.unwrap();
        // The standing read takes the response: nothing is lost or read twice.
        let mut buf = BytesMut::new();
        let n = sock.read_into(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"response");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn standing_read_sees_a_server_close() {
        let (mut sock, peer) = pair().await;
        sock.stand_read();
        drop(peer);
        settle().await;
        assert!(!sock.is_reusable(), "closed by the server");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn standing_read_sees_stray_bytes_and_keeps_them() {
        let (mut sock, mut peer) = pair().await;
        sock.stand_read();
        let (res, _) = monoio::io::AsyncWriteRentExt::write_all(&mut peer, b"junk".to_vec()).await;
        res.unwrap();
        settle().await;
        assert!(!sock.is_reusable(), "unrequested bytes: not reusable");
        // Whoever reads next still gets them (they were not dropped on the floor).
        let mut buf = BytesMut::new();
        let n = sock.read_into(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"junk");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn without_standing_read_the_peek_still_decides() {
        let (mut sock, peer) = pair().await;
        assert!(sock.is_reusable());
        drop(peer);
        settle().await;
        assert!(!sock.is_reusable());
    }
    // io_uring only: there the kernel finishes a parked operation that nobody polls.
    #[monoio::test(driver = "uring", timer_enabled = true)]
    async fn a_write_handed_over_and_not_awaited_completes_and_is_collected() {
        let (mut sock, mut peer) = pair().await;
        {
            let mut w = std::pin::pin!(sock.write_all(b"head"));
            let mut cx = Context::from_waker(Waker::noop());
            // Taken at the first poll; the future is dropped with the write in flight.
            let _ = w.as_mut().poll(&mut cx);
        }
        let mut got = vec![0u8; 4];
        let (res, g) = peer.read(got).await;
        got = g;
        assert_eq!(res.unwrap(), 4);
        assert_eq!(&got[..], b"head");
        settle().await;
        assert!(sock.is_reusable(), "the finished write is collected");
        sock.write_all(b"next").await.unwrap();
        let (res, g) = peer.read(got).await;
        assert_eq!(res.unwrap(), 4);
        assert_eq!(&g[..], b"next");
    }
}
