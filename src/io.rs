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
use std::task::Poll;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

/// Bytes asked of the kernel per read: one full TLS record plus its overhead fits.
pub const READ_CHUNK: usize = 16 * 1024 + 512;

type ReadOp = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>, OwnedReadHalf<TcpStream>)>>>;
type WriteOp =
    Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>, OwnedWriteHalf<TcpStream>)>>>;

enum ReadSlot {
    Idle(OwnedReadHalf<TcpStream>, Vec<u8>),
    Busy(ReadOp),
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
        if let ReadSlot::Idle(..) = self.rd {
            let ReadSlot::Idle(half, mut buf) = std::mem::replace(&mut self.rd, ReadSlot::Broken)
            else {
                unreachable!("checked above")
            };
            buf.clear();
            if buf.capacity() < READ_CHUNK {
                buf.reserve_exact(READ_CHUNK);
            }
            self.rd = ReadSlot::Busy(Box::pin(async move {
                let mut half = half;
                let (res, buf) = half.read(buf).await;
                (res, buf, half)
            }));
        }
        let (res, buf, half) = poll_fn(|cx| match &mut self.rd {
            ReadSlot::Busy(op) => op.as_mut().poll(cx),
            _ => Poll::Pending,
        })
        .await;
        let res = res.inspect(|&n| dst.extend_from_slice(&buf[..n]));
        self.rd = ReadSlot::Idle(half, buf);
        res
    }

    /// Waits until the socket has something to read, without parking a buffer in the kernel:
    /// an idle keep-alive connection then costs no read buffer. Safe to cancel.
    pub async fn readable(&mut self) -> io::Result<()> {
        match &self.rd {
            // A parked read already holds a buffer; waiting on it is the same as waiting here.
            ReadSlot::Busy(_) => Ok(()),
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

    /// True when no read or write is parked: the connection may be pooled or reused.
    pub fn is_quiet(&self) -> bool {
        matches!(self.rd, ReadSlot::Idle(..)) && matches!(self.wr, WriteSlot::Idle(..))
    }

    /// Releases the socket's own read buffer (kept between reads otherwise), e.g. before a long
    /// idle period.
    pub fn release_buffers(&mut self) {
        if let ReadSlot::Idle(_, buf) = &mut self.rd {
            *buf = Vec::new();
        }
        if let WriteSlot::Idle(_, buf) = &mut self.wr {
            *buf = Vec::new();
        }
    }

    /// Checks without blocking whether a pooled connection is still usable: the peer has not
    /// closed it and sent nothing unexpected.
    pub fn is_reusable(&self) -> bool {
        if !self.is_quiet() || self.write_error.is_some() {
            return false;
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
}
