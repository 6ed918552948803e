//! HTTP/2 towards the servers of a `protocol = "h2"` upstream: per worker and server, client
//! connections (the `h2` crate over [`PollConn`]) that every stream shares, up to the server's
//! `max_concurrent_streams`; a further one is opened on demand when they are all full. A
//! connection that failed, received GOAWAY or refused a stream is not handed out again (its
//! streams in flight finish on it); one idle for [`IDLE_MAX`] is closed.
//!
//! Each connection's frames are driven by its own task (`monoio::spawn`); the pool keeps a
//! `SendRequest` handle, and the connection ends once the handle and its streams are gone.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use tracing::debug;

use super::ConnectError;
use crate::http2::io::PollConn;
use crate::tls::UpstreamTls;

/// An HTTP/2 connection without streams for this long is closed (as idle HTTP/1.1 ones are).
pub const IDLE_MAX: Duration = Duration::from_secs(30);

/// Stream-level receive window offered to the servers: how much of a response body a stream
/// may have in flight before certgate hands some of it to the client.
const STREAM_WINDOW: u32 = 256 * 1024;

/// Connection-level receive window offered to the servers.
const CONN_WINDOW: u32 = 1024 * 1024;

/// One worker's HTTP/2 connections to the servers of one upstream.
#[derive(Default)]
pub struct Conns {
    by_server: RefCell<HashMap<SocketAddr, Vec<Shared>>>,
    /// Connections being made: streams that find none with room wait for it rather than open
    /// one each.
    connecting: RefCell<HashMap<SocketAddr, Rc<Opening>>>,
}

/// A connection being made, and the streams waiting for it.
#[derive(Default)]
struct Opening {
    done: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

/// Ends an [`Opening`] however the connect ends (cancellation included) and wakes its waiters.
struct Opened<'a> {
    conns: &'a Conns,
    addr: SocketAddr,
    opening: Rc<Opening>,
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.conns.connecting.borrow_mut().remove(&self.addr);
        self.opening.done.set(true);
        for w in self.opening.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// A connection in the pool.
struct Shared {
    send: SendRequest<Bytes>,
    state: Rc<State>,
}

/// What the pool knows of a connection, shared with its streams and its driver task.
struct State {
    /// Streams open on it.
    active: Cell<usize>,
    /// The driver ended, or a stream saw GOAWAY or a refusal: no new stream goes on it.
    closed: Cell<bool>,
    /// When its last stream ended.
    idle_since: Cell<Instant>,
}

/// A stream slot on a connection to `addr`: the handle to open the stream with. It counts
/// towards the connection's concurrent streams until dropped.
pub struct Stream {
    /// Opens the stream (`send_request`).
    pub send: SendRequest<Bytes>,
    /// The server.
    pub addr: SocketAddr,
    /// The connection carried streams before this one.
    pub reused: bool,
    state: Rc<State>,
}

impl Stream {
    /// The connection failed, received GOAWAY or refused this stream: no new stream is opened
    /// on it.
    pub fn retire(&self) {
        self.state.closed.set(true);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let n = self.state.active.get().saturating_sub(1);
        self.state.active.set(n);
        if n == 0 {
            self.state.idle_since.set(Instant::now());
        }
    }
}

impl Conns {
    /// A stream slot on a connection to `addr` that has room, or on a new connection (TCP
    /// connect, TLS with ALPN `h2` when `tls` is given, the HTTP/2 preface) made within
    /// `timeout`.
    ///
    /// # Errors
    /// What prevented the new connection, as for HTTP/1.1 ([`ConnectError`]).
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        host: Option<&str>,
        timeout: Duration,
        tls: Option<&UpstreamTls>,
    ) -> Result<Stream, ConnectError> {
        let deadline = monoio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.take(addr) {
                return Ok(s);
            }
            let Some(opening) = self.connecting.borrow().get(&addr).cloned() else {
                break;
            };
            let opened = std::future::poll_fn(|cx| {
                if opening.done.get() {
                    return Poll::Ready(());
                }
                opening.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            });
            if monoio::time::timeout_at(deadline, opened).await.is_err() {
                return Err(ConnectError::Timeout);
            }
        }
        let opening = Rc::new(Opening::default());
        self.connecting.borrow_mut().insert(addr, opening.clone());
        let _opened = Opened {
            conns: self,
            addr,
            opening,
        };
        let conn = super::connect_as(addr, host, timeout, tls, true).await?;
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(PollConn::new(conn, BytesMut::new()));
        let (send, connection) = match monoio::time::timeout_at(deadline, handshake).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => return Err(ConnectError::Refused(io_error(e))),
            Ok(Ok(x)) => x,
        };
        let state = Rc::new(State {
            active: Cell::new(1),
            closed: Cell::new(false),
            idle_since: Cell::new(Instant::now()),
        });
        let driven = state.clone();
        monoio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(upstream = %addr, "h2 connection ended: {e}");
            }
            driven.closed.set(true);
        });
        self.by_server
            .borrow_mut()
            .entry(addr)
            .or_default()
            .push(Shared {
                send: send.clone(),
                state: state.clone(),
            });
        Ok(Stream {
            send,
            addr,
            reused: false,
            state,
        })
    }

    /// A slot on a pooled connection to `addr` with room for one more stream; drops those that
    /// are closed or were idle too long.
    fn take(&self, addr: SocketAddr) -> Option<Stream> {
        let mut map = self.by_server.borrow_mut();
        let list = map.get_mut(&addr)?;
        list.retain_mut(usable);
        let c = list
            .iter()
            .find(|c| c.state.active.get() < c.send.current_max_send_streams())?;
        c.state.active.set(c.state.active.get() + 1);
        Some(Stream {
            send: c.send.clone(),
            addr,
            reused: true,
            state: c.state.clone(),
        })
    }

    /// Connections kept to `addr`, in use or idle (for tests).
    pub fn count(&self, addr: SocketAddr) -> usize {
        self.by_server.borrow().get(&addr).map_or(0, Vec::len)
    }
}

/// Whether a pooled connection may take a new stream: its driver runs, no GOAWAY came, and it
/// was not idle past [`IDLE_MAX`].
fn usable(c: &mut Shared) -> bool {
    let s = &c.state;
    if s.closed.get() || (s.active.get() == 0 && s.idle_since.get().elapsed() >= IDLE_MAX) {
        return false;
    }
    // A connection that received GOAWAY (or failed) reports it here at once; a handle without
    // a stream waiting to open never returns `Pending`.
    let mut cx = Context::from_waker(Waker::noop());
    match c.send.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) | Poll::Pending => true,
        Poll::Ready(Err(_)) => {
            s.closed.set(true);
            false
        }
    }
}

/// An `h2` error as an I/O error (the one underneath when there is one).
pub fn io_error(e: h2::Error) -> std::io::Error {
    if e.is_io() {
        match e.into_io() {
            Some(io) => io,
            None => std::io::Error::other("HTTP/2 i/o error"),
        }
    } else {
        std::io::Error::other(e)
    }
}
