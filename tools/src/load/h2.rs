//! `--protocol h2`: requests as HTTP/2 streams, `--streams` of them in flight per connection.
//!
//! A connection is shared by its `--streams` slots through one [`H2Conn`]; each slot sends one
//! request at a time on it, so the connection carries up to `--streams` concurrent streams. The
//! `h2` crate does the framing, over certgate's cancel-safe connection (`PollConn`), so a
//! timeout that drops a request mid-way loses nothing. Each connection's `h2::client::Connection`
//! runs as a task of its own, for as long as the connection lives.
//!
//! Like HTTP/1.1 keep-alive, the slot that finds no usable connection opens one (and the
//! connection's handshake counts in its operation); the other slots of that connection wait for
//! it. A request refused before the server processed it (the connection had closed, GOAWAY,
//! REFUSED_STREAM) is sent once more on a new connection.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::task::JoinHandle;

use super::client::{io_kind, Client};
use super::report::{ErrorDetail, ErrorKind, Outcome};
use certgate::http2::io::PollConn;

/// Connection-level receive window: large enough that a body never waits for a WINDOW_UPDATE
/// round trip with `--streams` bodies in flight.
const CONNECTION_WINDOW: u32 = 4 << 20;
/// How long the end of a run waits for its connections to close cleanly (GOAWAY, close_notify).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One HTTP/2 connection and the slots that share it.
#[derive(Default)]
pub struct H2Conn {
    state: RefCell<State>,
    /// Slots waiting while another one connects.
    waiters: RefCell<Vec<Waker>>,
    /// Connections opened so far; tells a lost connection from its successor.
    generation: Cell<u64>,
    /// The tasks driving this slot's connections, awaited at the end of the run.
    drivers: RefCell<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
enum State {
    /// No connection: the next request opens one.
    #[default]
    Idle,
    /// A slot is opening one; the others wait.
    Connecting,
    Ready {
        generation: u64,
        send: SendRequest<Bytes>,
    },
}

impl H2Conn {
    /// The current connection's sender, waiting while another slot connects; `None` when there
    /// is none and the caller should connect.
    async fn sender(&self) -> Option<(u64, SendRequest<Bytes>)> {
        poll_fn(|cx| match &*self.state.borrow() {
            State::Ready { generation, send } => Poll::Ready(Some((*generation, send.clone()))),
            State::Idle => Poll::Ready(None),
            State::Connecting => {
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    /// Forgets connection `generation` (the next request opens a new one); requests in flight
    /// on it go on.
    pub fn lost(&self, generation: u64) {
        let mut state = self.state.borrow_mut();
        if matches!(&*state, State::Ready { generation: g, .. } if *g == generation) {
            *state = State::Idle;
        }
    }

    /// Forgets whatever connection is current (a request on it timed out).
    pub fn abandon(&self) {
        let mut state = self.state.borrow_mut();
        if matches!(&*state, State::Ready { .. }) {
            *state = State::Idle;
        }
    }

    fn wake_all(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// End of the run: drops the sender, so each connection sends GOAWAY and closes once its
    /// last stream ended, and waits (bounded) for the connection tasks.
    pub async fn close(&self) {
        *self.state.borrow_mut() = State::Idle;
        let drivers: Vec<_> = self.drivers.borrow_mut().drain(..).collect();
        for d in drivers {
            let _ = monoio::time::timeout(CLOSE_GRACE, d).await;
        }
    }
}

/// Puts the connection back to `Idle` and wakes the waiters if the connecting slot gives up
/// (an error, or its operation was dropped by a timeout).
struct ConnectingGuard<'a>(&'a H2Conn);

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.borrow_mut();
        if matches!(&*state, State::Connecting) {
            *state = State::Idle;
        }
        drop(state);
        self.0.wake_all();
    }
}

/// Opens a connection for `conn` (TCP, TLS with ALPN h2 or h2c, the HTTP/2 preface), starts its
/// task and publishes its sender.
async fn connect(
    client: &Client,
    conn: &Rc<H2Conn>,
    out: &mut Outcome,
) -> Result<(u64, SendRequest<Bytes>), (ErrorKind, ErrorDetail)> {
    *conn.state.borrow_mut() = State::Connecting;
    let guard = ConnectingGuard(conn);
    let io = client.connect_h2(out).await?;
    let (send, connection) = h2::client::Builder::new()
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(PollConn::new(io, Default::default()))
        .await
        .map_err(h2_error)?;
    let generation = conn.generation.get() + 1;
    conn.generation.set(generation);
    let shared = conn.clone();
    let driver = monoio::spawn(async move {
        let _ = connection.await;
        shared.lost(generation);
    });
    {
        let mut drivers = conn.drivers.borrow_mut();
        // Finished tasks of earlier connections are not kept.
        drivers.retain(|d| !d.is_finished());
        drivers.push(driver);
    }
    *conn.state.borrow_mut() = State::Ready {
        generation,
        send: send.clone(),
    };
    drop(guard);
    Ok((generation, send))
}

/// Opens the slot's connection before the measurement (a failure shows up again, counted, in
/// the measured requests).
pub async fn prime(client: &Client, conn: &Rc<H2Conn>) {
    let mut scratch = Outcome::default();
    let _ = monoio::time::timeout(client.plan.timeout, connect(client, conn, &mut scratch)).await;
}

/// One request on the slot's connection, opening one if needed; sent once more on a new
/// connection when the server refused it unprocessed.
pub async fn request(
    client: &Client,
    conn: &Rc<H2Conn>,
    out: &mut Outcome,
) -> Result<(), (ErrorKind, ErrorDetail)> {
    let mut retried = false;
    loop {
        let (generation, send) = match conn.sender().await {
            Some(s) => s,
            None => connect(client, conn, out).await?,
        };
        match exchange(client, send).await {
            Ok(status) => {
                out.completed = true;
                return if status.is_success() {
                    Ok(())
                } else {
                    Err((ErrorKind::HttpStatus, ErrorDetail::Status(status.as_u16())))
                };
            }
            Err(e) => {
                if e.connection_gone() {
                    conn.lost(generation);
                }
                if e.unprocessed && !retried {
                    retried = true;
                    continue;
                }
                return Err(h2_error(e.error));
            }
        }
    }
}

/// A failed exchange.
struct ExchangeError {
    error: h2::Error,
    /// The server did not process the request: sending it again is safe.
    unprocessed: bool,
}

impl ExchangeError {
    /// The connection is unusable for further requests.
    fn connection_gone(&self) -> bool {
        self.unprocessed || self.error.is_io() || self.error.is_go_away()
    }
}

/// Sends the request (no body) and reads the whole response, giving back flow-control credit
/// as the body arrives.
async fn exchange(
    client: &Client,
    send: SendRequest<Bytes>,
) -> Result<http::StatusCode, ExchangeError> {
    let unprocessed = |error| ExchangeError {
        error,
        unprocessed: true,
    };
    let mut send = send.ready().await.map_err(unprocessed)?;
    let (response, _) = send
        .send_request(client.plan.h2_request.clone(), true)
        .map_err(unprocessed)?;
    let response = response.await.map_err(|error| ExchangeError {
        // No response head yet: the connection was lost, or the server refused the stream
        // (REFUSED_STREAM, or above the last stream id of its GOAWAY).
        unprocessed: error.is_io()
            || error.reason() == Some(h2::Reason::REFUSED_STREAM)
            || (error.is_go_away() && error.is_remote()),
        error,
    })?;
    let status = response.status();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|error| ExchangeError {
            error,
            unprocessed: false,
        })?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(status)
}

/// The error kind of an HTTP/2 failure: I/O (or the TLS alert inside it), or protocol.
fn h2_error(e: h2::Error) -> (ErrorKind, ErrorDetail) {
    let kind = match e.get_io() {
        Some(io) => io_kind(io),
        None => ErrorKind::Protocol,
    };
    (kind, ErrorDetail::H2(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn waiters_wake_when_the_connecting_slot_gives_up() {
        let conn = H2Conn::default();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            std::pin::pin!(conn.sender()).as_mut().poll(&mut cx),
            Poll::Ready(None)
        ));
        *conn.state.borrow_mut() = State::Connecting;
        let guard = ConnectingGuard(&conn);
        // Polled twice while another slot connects: parked once.
        let mut waiting = Box::pin(conn.sender());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(conn.waiters.borrow().len(), 1);
        // The connecting slot's operation is dropped (timeout): the waiter wakes, finds no
        // connection and connects itself.
        drop(guard);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(waiting.as_mut().poll(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_lost_connection_does_not_forget_its_successor() {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(async {
                // A client handshake only writes the preface: an in-memory pipe will do.
                let (io, _peer) = tokio::io::duplex(1 << 16);
                let (send, _connection) = h2::client::handshake(io).await.unwrap();
                let conn = H2Conn::default();
                *conn.state.borrow_mut() = State::Ready {
                    generation: 2,
                    send,
                };
                // The task of connection 1 ends late: connection 2 stays.
                conn.lost(1);
                assert!(conn.sender().await.is_some_and(|(g, _)| g == 2));
                conn.lost(2);
                assert!(conn.sender().await.is_none());
            });
    }
}
