//! One HTTP/2 request stream forwarded to a `protocol = "h2"` upstream, as a stream of its own
//! on the worker's multiplexed connection to the server (`upstream::h2`).
//!
//! The request arrives with its final headers (identity headers set by the caller). Both
//! directions stream at once (gRPC's bidirectional calls): request DATA and trailers go up,
//! response headers, DATA and trailers come back, and each side's flow-control window is
//! released only as the other side accepts the bytes, so no body is ever held whole. A reset
//! on either side resets the other (CANCEL).
//!
//! Timeouts: `upstream_connect` (TCP, TLS with ALPN `h2`, preface), `upstream_read` (to the
//! response headers), `body_idle` (no frame either way); a request's `grpc-timeout` bounds the
//! whole stream. Tries follow the HTTP/1.1 rules in spirit: a failed connect, or a stream the
//! server refused (REFUSED_STREAM, or above a GOAWAY's last stream) before any request DATA
//! was taken from the client, goes to the next server; nothing else is sent again. A stream so
//! refused on a pooled connection (the server was closing it, or full) first gets one more try
//! on the same server, on a new connection, as a kept-alive HTTP/1.1 connection found closed.
//!
//! Failures before the response began are answered 502 / 504, or for gRPC requests
//! (`content-type: application/grpc*`) with a trailers-only response: `grpc-status` 14
//! UNAVAILABLE, or 4 DEADLINE_EXCEEDED for timeouts.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use tracing::{debug, warn};

use crate::config::Timeouts;
use crate::proxy::error::{Error, Kind, Source};
use crate::proxy::{BodyError, Side};
use crate::runtime::Worker;
use crate::upstream::balance::{Active, Key, Tried};
use crate::upstream::h2::io_error;
use crate::upstream::{ConnectError, Pool};

/// What became of a forwarded stream, for the access log and the metrics.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// HTTP status sent to the client (0: none, the stream was reset). A gRPC failure answered
    /// trailers-only is 200, with its code in `grpc_status`.
    pub status: u16,
    /// `grpc-status` certgate itself answered with, when it did.
    pub grpc_status: Option<u8>,
    /// Body bytes relayed: client to upstream, upstream to client.
    pub bytes: (u64, u64),
    /// The server that answered (or was reached last), and the time to its response headers.
    pub upstream: Option<(SocketAddr, Duration)>,
    /// Servers tried (0: none was available).
    pub attempts: usize,
    /// Why the stream failed; `None` when the response was relayed whole.
    pub error: Option<Error>,
}

/// gRPC status codes certgate answers with itself.
const GRPC_DEADLINE_EXCEEDED: u8 = 4;
const GRPC_UNAVAILABLE: u8 = 14;

/// Forwards one request stream to upstream `upstream` of the worker's configuration and relays
/// the response back on `respond`.
///
/// `req` carries the final headers; a [`Key`] in its extensions picks the server for
/// `balance = "client_hash"`. Returns once both directions ended or the stream failed.
pub async fn forward(
    worker: &Rc<Worker>,
    upstream: usize,
    req: Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    timeouts: &Timeouts,
) -> Forwarded {
    let started = Instant::now();
    let (parts, mut body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);
    let deadline = grpc_timeout(&parts.headers).map(|d| monoio::time::Instant::now() + d);
    let mut fwd = Forwarded::default();
    let Some(pool) = worker.pools.get(upstream).cloned() else {
        let e = Error::new(Kind::NoServer, None);
        answer_failure(&mut respond, grpc, &e, &mut fwd);
        fwd.error = Some(e);
        return fwd;
    };
    let key = parts.extensions.get::<Key>().copied().unwrap_or_default();
    let head = upstream_head(&parts, pool.upstream().tls.is_some());
    let mut tries = Tries::new(&pool, key);
    loop {
        let (server, _active) = match tries.next() {
            Ok(x) => x,
            Err(e) => {
                fwd.attempts = tries.attempts;
                answer_failure(&mut respond, grpc, &e, &mut fwd);
                fwd.error = Some(e);
                return fwd;
            }
        };
        let addr = pool.server(server).addr;
        let ex = Exchange {
            pool: &pool,
            server,
            head: &head,
            timeouts,
            deadline,
            started,
        };
        let failed = match ex.run(&mut body, &mut respond, &mut fwd).await {
            Ok(()) => {
                pool.succeeded(server);
                fwd.attempts = tries.attempts;
                fwd.error = None;
                return fwd;
            }
            Err(f) => f,
        };
        let error = match tries.failed(server, failed.kind, failed.how) {
            None => continue,
            Some(e) => e,
        };
        fwd.attempts = tries.attempts;
        if !failed.how.responded {
            answer_failure(&mut respond, grpc, &error, &mut fwd);
        } else if let Some(mut down) = failed.down {
            // The response is under way: a gRPC deadline still reaches the client as its
            // status; anything else ends the stream.
            if grpc && failed.deadline {
                let _ =
                    down.send_trailers(grpc_trailers(GRPC_DEADLINE_EXCEEDED, "deadline exceeded"));
                fwd.grpc_status = Some(GRPC_DEADLINE_EXCEEDED);
            } else {
                down.send_reset(Reason::CANCEL);
            }
        }
        if error.reached() && fwd.upstream.is_none() {
            fwd.upstream = Some((addr, started.elapsed()));
        }
        fwd.error = Some(error);
        return fwd;
    }
}

/// The servers one request goes to, in turn, as the module's retry rules say; shared by every
/// client protocol that forwards to a `protocol = "h2"` upstream.
pub(crate) struct Tries<'p> {
    pool: &'p Pool,
    key: Key,
    tried: Tried,
    tries_left: usize,
    /// A server whose pooled connection turned out to be closing (GOAWAY) or refused the
    /// stream: tried once more at once, on a new connection.
    again: Option<usize>,
    stale_retried: bool,
    /// The last failure, answered when no server is left.
    last: Option<Error>,
    /// Servers tried so far (0: none was available).
    pub attempts: usize,
}

/// How far a failed attempt went, which decides whether the request may go again.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct How {
    /// Nothing of the request reached the server's application: another server may take it.
    pub retry: bool,
    /// As `retry`, on a pooled connection the server was closing or full: the same server may
    /// take it on a new connection.
    pub stale: bool,
    /// Response headers went to the client.
    pub responded: bool,
}

impl<'p> Tries<'p> {
    pub(crate) fn new(pool: &'p Pool, key: Key) -> Self {
        Self {
            pool,
            key,
            tried: Tried::default(),
            tries_left: pool.tries(),
            again: None,
            stale_retried: false,
            last: None,
            attempts: 0,
        }
    }

    /// The next server to try, counted as a request to it (and for `least_conn` while the
    /// guard lives).
    ///
    /// # Errors
    /// No server is left: the last attempt's failure, or `NoServer` when none was tried.
    pub(crate) fn next(&mut self) -> Result<(usize, Active<'p>), Error> {
        let Some(server) = self
            .again
            .take()
            .or_else(|| self.pool.choose(&self.key, &self.tried))
        else {
            return Err(self
                .last
                .take()
                .unwrap_or_else(|| Error::new(Kind::NoServer, None)));
        };
        self.tried.insert(server);
        self.attempts += 1;
        self.pool.stats(server).requests.inc();
        Ok((server, self.pool.begin(server)))
    }

    /// Records the failure of an attempt on `server`, reported to passive health as the HTTP/1.1
    /// path does.
    ///
    /// # Return
    /// `None` when the request goes again (call [`Tries::next`]); else the error that ends it.
    pub(crate) fn failed(&mut self, server: usize, kind: Kind, how: How) -> Option<Error> {
        let pool = self.pool;
        let addr = pool.server(server).addr;
        let error = crate::proxy::retry::attempt_failed(pool, server, kind);
        if how.stale && !self.stale_retried {
            // Not the server's fault, and no try used up: a pooled connection the server was
            // closing.
            self.stale_retried = true;
            self.again = Some(server);
            debug!(upstream = %addr, "h2 stream not processed: {error}; trying again");
            self.last = Some(error);
            return None;
        }
        if error.side() == Source::Upstream && !how.responded {
            pool.failed(server);
        }
        self.tries_left = self.tries_left.saturating_sub(1);
        if how.retry && self.tries_left > 0 {
            pool.stats(server).retries.inc();
            debug!(upstream = %addr, "h2 upstream attempt failed: {error}; trying another server");
            self.last = Some(error);
            return None;
        }
        if error.side() == Source::Upstream {
            warn!(upstream = %addr, "h2 upstream failed: {error}");
        }
        Some(error)
    }
}

/// A stream opened on a server: its connection slot (held until the stream is done), the
/// response to come and the request body's way up.
pub(crate) struct Opened {
    pub slot: crate::upstream::h2::Stream,
    pub response: h2::client::ResponseFuture,
    pub send: SendStream<Bytes>,
}

/// Opens a stream for `head` on `server`: a connection with room (pooled, or new within
/// `upstream_connect`), a stream allowed by its `max_concurrent_streams` (within
/// `upstream_connect` too), the request headers sent (`eos`: no body follows).
///
/// # Errors
/// The failure, with what it allows (a connect failure or a refused stream: another server).
pub(crate) async fn open_stream(
    pool: &Pool,
    server: usize,
    head: &Request<()>,
    eos: bool,
    connect: Duration,
) -> Result<Opened, (Kind, How)> {
    let s = pool.server(server);
    let retry = How {
        retry: true,
        ..How::default()
    };
    let slot = pool
        .h2()
        .checkout(s.addr, s.host_name(), connect, pool.upstream().tls.as_ref())
        .await
        .map_err(|e| (Kind::Connect(e), retry))?;
    let mut send = slot.send.clone();
    // Waits for a stream to be allowed (max_concurrent_streams) within the connect timeout.
    let ready = monoio::time::timeout(connect, poll_fn(|cx| send.poll_ready(cx)));
    match ready.await {
        Err(_) => return Err((Kind::Connect(ConnectError::Timeout), How::default())),
        Ok(Err(e)) => {
            slot.retire();
            let how = How {
                stale: slot.reused,
                ..retry
            };
            return Err((Kind::SendHead(io_error(e)), how));
        }
        Ok(Ok(())) => {}
    }
    match send.send_request(head.clone(), eos) {
        Ok((response, send)) => Ok(Opened {
            slot,
            response,
            send,
        }),
        Err(e) => {
            slot.retire();
            let retry = refused(&e) || e.is_go_away();
            let how = How {
                retry,
                stale: retry && slot.reused,
                responded: false,
            };
            Err((Kind::SendHead(io_error(e)), how))
        }
    }
}

/// Whether a failure of an opened stream left the request unprocessed: refused (RFC 9113
/// §8.7) or above a graceful GOAWAY's last stream, before any response and before any of the
/// request body was taken from the client.
pub(crate) fn unprocessed(e: &h2::Error) -> bool {
    refused(e) || (e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR))
}

/// Whether a failure of an upstream stream means its connection takes no new stream.
pub(crate) fn retires(e: &h2::Error) -> bool {
    e.is_go_away() || e.is_io() || refused(e)
}

/// One attempt on one server.
struct Exchange<'a> {
    pool: &'a Pool,
    server: usize,
    head: &'a Request<()>,
    timeouts: &'a Timeouts,
    deadline: Option<monoio::time::Instant>,
    started: Instant,
}

/// A failed attempt.
struct Failed {
    kind: Kind,
    how: How,
    /// The stream to the client, once the response headers went out.
    down: Option<SendStream<Bytes>>,
    /// The gRPC deadline ended the stream.
    deadline: bool,
}

impl Failed {
    fn new(kind: Kind, how: How) -> Self {
        Self {
            kind,
            how,
            down: None,
            deadline: false,
        }
    }
}

/// Why one direction of an exchange stopped.
#[derive(Debug)]
enum Stop {
    /// The client's stream failed (reset, connection gone).
    Client(h2::Error),
    /// The upstream's stream or connection failed.
    Upstream(h2::Error),
    /// No frame either way for `body_idle`; the side that was waited on.
    Idle(Side),
    /// No response headers within `upstream_read`.
    ResponseTimeout,
    /// The request's `grpc-timeout` passed.
    Deadline,
}

impl Exchange<'_> {
    async fn run(
        &self,
        body: &mut RecvStream,
        respond: &mut h2::server::SendResponse<Bytes>,
        fwd: &mut Forwarded,
    ) -> Result<(), Failed> {
        let t = self.timeouts;
        let addr = self.pool.server(self.server).addr;
        let eos = body.is_end_stream();
        let Opened {
            slot,
            response,
            send: mut up,
        } = open_stream(self.pool, self.server, self.head, eos, t.upstream_connect)
            .await
            .map_err(|(kind, how)| Failed::new(kind, how))?;

        let progress = Cell::new(Instant::now());
        let taken = Cell::new(false);
        let sent = Cell::new(0u64);
        let received = Cell::new(0u64);
        let status = Cell::new(0u16);
        let answered_at = Cell::new(None);
        let mut down: Option<SendStream<Bytes>> = None;
        let first = monoio::time::Instant::now() + t.upstream_read;
        let result = {
            let pump = pin!(pump_request(
                body,
                &mut up,
                t.body_idle,
                &progress,
                &taken,
                &sent
            ));
            let relay = pin!(relay_response(
                response,
                respond,
                &mut down,
                Relay {
                    first,
                    idle: t.body_idle,
                    progress: &progress,
                    received: &received,
                    status: &status,
                    answered_at: &answered_at,
                    started: self.started,
                },
            ));
            let both = both_ways(pump, relay);
            match self.deadline {
                Some(d) => monoio::time::timeout_at(d, both)
                    .await
                    .unwrap_or(Err(Stop::Deadline)),
                None => both.await,
            }
        };
        fwd.bytes.0 += sent.get();
        fwd.bytes.1 += received.get();
        if status.get() != 0 {
            fwd.status = status.get();
        }
        if let Some(at) = answered_at.get() {
            fwd.upstream = Some((addr, at));
        }
        let stop = match result {
            Ok(()) => return Ok(()),
            Err(stop) => stop,
        };
        // Whatever is left of the upstream stream is cancelled (a no-op once it closed).
        up.send_reset(Reason::CANCEL);
        let responded = status.get() != 0;
        if let Stop::Upstream(e) = &stop {
            if retires(e) {
                slot.retire();
            }
        }
        let retry =
            !responded && !taken.get() && matches!(&stop, Stop::Upstream(e) if unprocessed(e));
        let deadline = matches!(stop, Stop::Deadline);
        let kind = match (stop, responded) {
            (Stop::ResponseTimeout | Stop::Deadline, false) => Kind::ResponseTimeout,
            (Stop::Deadline, true) => Kind::ResponseBody(BodyError::Timeout(Side::Upstream)),
            (Stop::Upstream(e), false) => Kind::ReadResponse(io_error(e)),
            (Stop::Upstream(e), true) => {
                Kind::ResponseBody(BodyError::Io(Side::Upstream, io_error(e)))
            }
            (Stop::Client(e), false) => Kind::RequestBody(BodyError::Io(Side::Client, io_error(e))),
            (Stop::Client(e), true) => Kind::ResponseBody(BodyError::Io(Side::Client, io_error(e))),
            (Stop::Idle(side), false) => Kind::RequestBody(BodyError::Timeout(side)),
            (Stop::Idle(side), true) => Kind::ResponseBody(BodyError::Timeout(side)),
            (Stop::ResponseTimeout, true) => Kind::ResponseBody(BodyError::Timeout(Side::Upstream)),
        };
        Err(Failed {
            kind,
            how: How {
                retry,
                stale: retry && slot.reused,
                responded,
            },
            down,
            deadline,
        })
    }
}

/// Whether the server refused the stream unprocessed (RFC 9113 §8.7).
fn refused(e: &h2::Error) -> bool {
    e.reason() == Some(Reason::REFUSED_STREAM) && e.is_remote()
}

/// Runs both directions; ends when the response is relayed whole, or either side failed in a
/// way that ends the stream. The request side stopping on the upstream's account does not end
/// it by itself: a server may answer and close its side before the request body is in.
async fn both_ways(
    mut pump: std::pin::Pin<&mut impl Future<Output = Result<(), Stop>>>,
    mut relay: std::pin::Pin<&mut impl Future<Output = Result<(), Stop>>>,
) -> Result<(), Stop> {
    let mut pumping = true;
    poll_fn(|cx| {
        if pumping {
            if let Poll::Ready(r) = pump.as_mut().poll(cx) {
                pumping = false;
                match r {
                    Err(stop @ (Stop::Client(_) | Stop::Idle(Side::Client))) => {
                        return Poll::Ready(Err(stop))
                    }
                    Err(stop) => debug!("request body to the upstream ended: {stop:?}"),
                    Ok(()) => {}
                }
            }
        }
        relay.as_mut().poll(cx)
    })
    .await
}

/// Waits for `fut` while the exchange progresses: `Idle(side)` once neither direction moved
/// for `idle`.
async fn bounded<F: Future>(
    fut: F,
    idle: Duration,
    progress: &Cell<Instant>,
    side: Side,
) -> Result<F::Output, Stop> {
    let mut fut = pin!(fut);
    loop {
        let until = monoio::time::Instant::from_std(progress.get() + idle);
        match monoio::time::timeout_at(until, fut.as_mut()).await {
            Ok(v) => return Ok(v),
            Err(_) if progress.get().elapsed() < idle => continue,
            Err(_) => return Err(Stop::Idle(side)),
        }
    }
}

/// Moves `data` onto `to` as its window allows (waiting for capacity, bounded by the idle
/// time); `end` ends the stream with the last frame.
async fn send_all(
    to: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
    progress: &Cell<Instant>,
    side: Side,
    fail: fn(h2::Error) -> Stop,
) -> Result<(), Stop> {
    if data.is_empty() {
        return match end {
            true => to.send_data(data, true).map_err(fail),
            false => Ok(()),
        };
    }
    while !data.is_empty() {
        to.reserve_capacity(data.len());
        let cap = bounded(poll_fn(|cx| to.poll_capacity(cx)), idle, progress, side).await?;
        match cap {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => {
                let part = data.split_to(n.min(data.len()));
                to.send_data(part, end && data.is_empty()).map_err(fail)?;
                progress.set(Instant::now());
            }
            Some(Err(e)) => return Err(fail(e)),
            None => return Err(fail(h2::Error::from(Reason::STREAM_CLOSED))),
        }
    }
    Ok(())
}

/// The client's request DATA and trailers to the upstream stream, releasing the client's
/// window as the upstream takes each frame. On a client reset, the upstream stream is
/// cancelled.
async fn pump_request(
    body: &mut RecvStream,
    up: &mut SendStream<Bytes>,
    idle: Duration,
    progress: &Cell<Instant>,
    taken: &Cell<bool>,
    sent: &Cell<u64>,
) -> Result<(), Stop> {
    if body.is_end_stream() {
        return Ok(());
    }
    let fail_up: fn(h2::Error) -> Stop = Stop::Upstream;
    loop {
        let next = bounded(body.data(), idle, progress, Side::Client).await?;
        let data = match next {
            None => break,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                up.send_reset(Reason::CANCEL);
                return Err(Stop::Client(e));
            }
        };
        taken.set(true);
        progress.set(Instant::now());
        let len = data.len();
        let last = body.is_end_stream();
        send_all(up, data, last, idle, progress, Side::Upstream, fail_up).await?;
        body.flow_control()
            .release_capacity(len)
            .map_err(Stop::Client)?;
        sent.set(sent.get() + len as u64);
        if last {
            return Ok(());
        }
    }
    match bounded(body.trailers(), idle, progress, Side::Client).await? {
        Ok(Some(t)) => up.send_trailers(t).map_err(Stop::Upstream),
        Ok(None) => up.send_data(Bytes::new(), true).map_err(Stop::Upstream),
        Err(e) => {
            up.send_reset(Reason::CANCEL);
            Err(Stop::Client(e))
        }
    }
}

/// What the response side reports and is bounded by.
struct Relay<'a> {
    /// When the response headers are due (`upstream_read`).
    first: monoio::time::Instant,
    idle: Duration,
    progress: &'a Cell<Instant>,
    received: &'a Cell<u64>,
    status: &'a Cell<u16>,
    answered_at: &'a Cell<Option<Duration>>,
    started: Instant,
}

/// The upstream's response headers, DATA and trailers to the client, releasing the upstream's
/// window as the client takes each frame. A client reset while waiting ends it.
async fn relay_response(
    response: h2::client::ResponseFuture,
    respond: &mut h2::server::SendResponse<Bytes>,
    down: &mut Option<SendStream<Bytes>>,
    r: Relay<'_>,
) -> Result<(), Stop> {
    let mut response = pin!(response);
    let waited = poll_fn(|cx| {
        if let Poll::Ready(reset) = respond.poll_reset(cx) {
            return Poll::Ready(Err(match reset {
                Ok(reason) => Stop::Client(h2::Error::from(reason)),
                Err(e) => Stop::Client(e),
            }));
        }
        response.as_mut().poll(cx).map_err(Stop::Upstream)
    });
    let resp = match monoio::time::timeout_at(r.first, waited).await {
        Err(_) => return Err(Stop::ResponseTimeout),
        Ok(x) => x?,
    };
    r.answered_at.set(Some(r.started.elapsed()));
    r.progress.set(Instant::now());
    let (parts, mut up_body) = resp.into_parts();
    let mut head = Response::new(());
    *head.status_mut() = parts.status;
    *head.headers_mut() = parts.headers;
    strip_connection_headers(head.headers_mut());
    let eos = up_body.is_end_stream();
    let tx = respond.send_response(head, eos).map_err(Stop::Client)?;
    r.status.set(parts.status.as_u16());
    if eos {
        return Ok(());
    }
    let tx = down.insert(tx);
    let fail_client: fn(h2::Error) -> Stop = Stop::Client;
    loop {
        let next = bounded(
            until_reset(up_body.data(), tx),
            r.idle,
            r.progress,
            Side::Upstream,
        )
        .await??;
        let data = match next {
            None => break,
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(Stop::Upstream(e)),
        };
        r.progress.set(Instant::now());
        let len = data.len();
        let last = up_body.is_end_stream();
        send_all(
            tx,
            data,
            last,
            r.idle,
            r.progress,
            Side::Client,
            fail_client,
        )
        .await?;
        up_body
            .flow_control()
            .release_capacity(len)
            .map_err(Stop::Upstream)?;
        r.received.set(r.received.get() + len as u64);
        if last {
            return Ok(());
        }
    }
    let trailers = bounded(
        until_reset(up_body.trailers(), tx),
        r.idle,
        r.progress,
        Side::Upstream,
    )
    .await??;
    match trailers {
        Ok(Some(t)) => tx.send_trailers(t).map_err(Stop::Client),
        Ok(None) => tx.send_data(Bytes::new(), true).map_err(Stop::Client),
        Err(e) => Err(Stop::Upstream(e)),
    }
}

/// `fut`, unless the client resets its stream first.
async fn until_reset<F: Future>(fut: F, tx: &mut SendStream<Bytes>) -> Result<F::Output, Stop> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(reset) = tx.poll_reset(cx) {
            return Poll::Ready(Err(match reset {
                Ok(reason) => Stop::Client(h2::Error::from(reason)),
                Err(e) => Stop::Client(e),
            }));
        }
        fut.as_mut().poll(cx).map(Ok)
    })
    .await
}

/// Answers a stream whose response had not begun: 502 / 504 (or a gRPC trailers-only status),
/// or a reset when the client is the one that failed.
fn answer_failure(
    respond: &mut h2::server::SendResponse<Bytes>,
    grpc: bool,
    error: &Error,
    fwd: &mut Forwarded,
) {
    let Some(page) = error.page() else {
        respond.send_reset(Reason::CANCEL);
        return;
    };
    if error.side() == Source::Client {
        respond.send_reset(Reason::CANCEL);
        return;
    }
    let timeout = page.status() == 504;
    if grpc {
        let (code, message) = match timeout {
            true => (GRPC_DEADLINE_EXCEEDED, "upstream timed out"),
            false => (GRPC_UNAVAILABLE, "upstream unavailable"),
        };
        let mut head = Response::new(());
        *head.headers_mut() = grpc_trailers(code, message);
        head.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        if respond.send_response(head, true).is_ok() {
            fwd.status = 200;
            fwd.grpc_status = Some(code);
        }
        return;
    }
    let status = StatusCode::from_u16(page.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut head = Response::new(());
    *head.status_mut() = status;
    let h = head.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    if let Ok(mut tx) = respond.send_response(head, false) {
        fwd.status = status.as_u16();
        // The window of a new stream holds a few bytes of text: sent at once or not at all.
        let _ = tx.send_data(Bytes::from(text), true);
    }
}

/// `grpc-status` and `grpc-message` (percent-encoded as the gRPC spec asks).
fn grpc_trailers(code: u8, message: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(&message.replace('%', "%25")) {
        h.insert("grpc-message", v);
    }
    h
}

/// `content-type: application/grpc`, `application/grpc+proto` and the like.
pub fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.strip_prefix("application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
        })
}

/// The `grpc-timeout` of a request: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`); `None` when absent or malformed (then only certgate's own timeouts apply).
pub fn grpc_timeout(h: &HeaderMap) -> Option<Duration> {
    let v = h.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Connection-specific fields, which HTTP/2 forbids (RFC 9113 §8.2.2); `te` may only say
/// `trailers`.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_connection_headers(h: &mut HeaderMap) {
    for name in &CONNECTION_SPECIFIC {
        h.remove(name);
    }
    if h.get(header::TE).is_some_and(|v| v != "trailers") {
        h.remove(header::TE);
    }
}

/// The request as sent upstream: the client's method, target and final headers; a target
/// without scheme and authority gets them (`https` over upstream TLS, the `host` field).
fn upstream_head(parts: &http::request::Parts, tls: bool) -> Request<()> {
    let mut uri = parts.uri.clone();
    if uri.scheme().is_none() {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let scheme = if tls { "https" } else { "http" };
        if let Ok(u) = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
        {
            uri = u;
        }
    }
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = uri;
    *head.headers_mut() = parts.headers.clone();
    // The authority travels as `:authority`.
    head.headers_mut().remove(header::HOST);
    strip_connection_headers(head.headers_mut());
    head
}

#[cfg(test)]
mod tests {
    //! `forward` between a real h2 client and real h2 servers on loopback: the front is an h2c
    //! server on this runtime that hands every stream to `forward` (as the client side will),
    //! the upstreams are h2c servers with scripted behaviours.

    use std::cell::RefCell;
    use std::path::Path;
    use std::sync::Arc;

    use bytes::BytesMut;
    use monoio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::Config;
    use crate::conn::Conn;
    use crate::http2::io::PollConn;
    use crate::io::Socket;
    use crate::runtime::Drain;

    /// An upstream server's behaviour, per request path.
    async fn upstream_stream(
        req: Request<RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
        seen: Rc<RefCell<Vec<String>>>,
    ) {
        let (parts, mut body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        seen.borrow_mut().push(format!(
            "{} {} {}",
            parts.method,
            parts.uri,
            parts
                .headers
                .get("x-identity")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        ));
        match path.as_str() {
            "/refuse" => respond.send_reset(Reason::REFUSED_STREAM),
            "/reset" => respond.send_reset(Reason::INTERNAL_ERROR),
            "/slow" => {
                monoio::time::sleep(Duration::from_secs(3)).await;
                let _ = respond.send_response(Response::new(()), true);
            }
            "/grpc-error" => {
                let mut head = Response::new(());
                *head.headers_mut() = grpc_trailers(5, "no such thing");
                head.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                let _ = respond.send_response(head, true);
            }
            "/reset-mid-body" => {
                let mut tx = respond.send_response(Response::new(()), false).unwrap();
                tx.send_data(Bytes::from_static(b"part"), false).unwrap();
                monoio::time::sleep(Duration::from_millis(100)).await;
                tx.send_reset(Reason::INTERNAL_ERROR);
            }
            "/wait-for-reset" => {
                // Reads until the request ends one way or the other; reports how.
                let mut how = "ended".to_owned();
                while let Some(d) = body.data().await {
                    match d {
                        Ok(d) => {
                            let _ = body.flow_control().release_capacity(d.len());
                        }
                        Err(e) => {
                            how = format!("reset {:?}", e.reason());
                            break;
                        }
                    }
                }
                seen.borrow_mut().push(how);
            }
            "/bytes" => {
                // 2 MiB in 16 KiB frames, as the windows allow; logs what it could send.
                let mut tx = respond.send_response(Response::new(()), false).unwrap();
                let mut sent = 0usize;
                while sent < 2 << 20 {
                    let n = ((2 << 20) - sent).min(16 * 1024);
                    tx.reserve_capacity(n);
                    let cap = match poll_fn(|cx| tx.poll_capacity(cx)).await {
                        Some(Ok(c)) => c.min(n),
                        _ => break,
                    };
                    if tx.send_data(Bytes::from(vec![b'x'; cap]), false).is_err() {
                        break;
                    }
                    sent += cap;
                }
                let _ = tx.send_data(Bytes::new(), true);
                seen.borrow_mut().push(format!("sent {sent}"));
            }
            "/stall" => {
                let mut tx = respond.send_response(Response::new(()), false).unwrap();
                tx.send_data(Bytes::from_static(b"first"), false).unwrap();
                monoio::time::sleep(Duration::from_secs(3)).await;
                let _ = tx.send_data(Bytes::new(), true);
            }
            _ => {
                // Echo: the body back as it comes, the request trailers back as trailers.
                let mut head = Response::new(());
                if let Some(v) = parts.headers.get("x-identity") {
                    head.headers_mut().insert("x-seen-identity", v.clone());
                }
                let mut tx = respond.send_response(head, false).unwrap();
                while let Some(Ok(d)) = body.data().await {
                    let n = d.len();
                    tx.reserve_capacity(n);
                    let mut d = d;
                    while !d.is_empty() {
                        match poll_fn(|cx| tx.poll_capacity(cx)).await {
                            Some(Ok(c)) => {
                                let part = d.split_to(c.min(d.len()));
                                if tx.send_data(part, false).is_err() {
                                    return;
                                }
                            }
                            _ => return,
                        }
                    }
                    let _ = body.flow_control().release_capacity(n);
                }
                let mut trailers = body.trailers().await.ok().flatten().unwrap_or_default();
                trailers.insert("x-echo", HeaderValue::from_static("done"));
                let _ = tx.send_trailers(trailers);
            }
        }
    }

    /// An h2c upstream on loopback; what reached it goes to the returned log.
    fn upstream() -> (SocketAddr, Rc<RefCell<Vec<String>>>) {
        upstream_with(Conns::Many)
    }

    /// How an upstream's connections treat their streams.
    #[derive(Clone, Copy, PartialEq)]
    enum Conns {
        /// Serve them all.
        Many,
        /// Serve the first, then shut down gracefully (GOAWAY).
        GoAway,
        /// Serve the first, refuse the others (REFUSED_STREAM).
        Refuse,
    }

    /// [`upstream`], with connections as `mode` says; unless `Many`, the log notes every new
    /// connection.
    fn upstream_with(mode: Conns) -> (SocketAddr, Rc<RefCell<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let log = seen.clone();
        monoio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let seen = seen.clone();
                monoio::spawn(async move {
                    let conn = Conn::Plain(Socket::new(s).unwrap());
                    let Ok(mut h) =
                        h2::server::handshake(PollConn::new(conn, BytesMut::new())).await
                    else {
                        return;
                    };
                    if mode != Conns::Many {
                        seen.borrow_mut().push("connection".into());
                    }
                    let mut first = true;
                    while let Some(Ok((req, mut respond))) = h.accept().await {
                        if mode == Conns::Refuse && !first {
                            respond.send_reset(Reason::REFUSED_STREAM);
                            continue;
                        }
                        first = false;
                        monoio::spawn(upstream_stream(req, respond, seen.clone()));
                        if mode == Conns::GoAway {
                            h.graceful_shutdown();
                        }
                    }
                });
            }
        });
        (addr, log)
    }

    /// Waits (at most 5 s) until `list` holds `n` entries: what a server task records after
    /// the client already has its answer.
    async fn settled<T>(list: &RefCell<Vec<T>>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while list.borrow().len() < n && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The front: an h2c server whose every stream goes through `forward`; the results go to
    /// the returned list.
    fn front(worker: Rc<Worker>) -> (SocketAddr, Rc<RefCell<Vec<Forwarded>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let done: Rc<RefCell<Vec<Forwarded>>> = Rc::default();
        let log = done.clone();
        monoio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (worker, done) = (worker.clone(), done.clone());
                monoio::spawn(async move {
                    let conn = Conn::Plain(Socket::new(s).unwrap());
                    let Ok(mut h) =
                        h2::server::handshake(PollConn::new(conn, BytesMut::new())).await
                    else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = h.accept().await {
                        let (worker, done) = (worker.clone(), done.clone());
                        monoio::spawn(async move {
                            let t = worker.config.listeners[0].timeouts;
                            let f = forward(&worker, 0, req, respond, &t).await;
                            done.borrow_mut().push(f);
                        });
                    }
                });
            }
        });
        (addr, log)
    }

    /// A worker for one h2 upstream of `servers`; `timeouts` lines go into
    /// `[listener.timeouts]`.
    fn worker(servers: &[SocketAddr], timeouts: &str) -> Rc<Worker> {
        worker_with(servers, timeouts, "")
    }

    /// [`worker`], with `upstream` lines at the end of `[[upstream]]` (`[upstream.tls]`...).
    fn worker_with(servers: &[SocketAddr], timeouts: &str, upstream: &str) -> Rc<Worker> {
        let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            "[[listener]]\nname = \"t\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n\n\
             [listener.timeouts]\n{timeouts}\n\n\
             [[upstream]]\nname = \"app\"\nservers = [{}]\nprotocol = \"h2\"\n{upstream}\n",
            list.join(", ")
        );
        let config = Config::parse(Path::new("/nonexistent/certgate.toml"), &text).unwrap();
        Rc::new(Worker::new(0, Arc::new(config), Rc::new(Drain::default())))
    }

    /// An h2 client connection to `addr`.
    async fn client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
        let s = TcpStream::connect_addr(addr).await.unwrap();
        let conn = Conn::Plain(Socket::new(s).unwrap());
        let (send, connection) = h2::client::handshake(PollConn::new(conn, BytesMut::new()))
            .await
            .unwrap();
        monoio::spawn(async move {
            let _ = connection.await;
        });
        send
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::new(());
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = format!("http://test{path}").parse().unwrap();
        for (n, v) in headers {
            r.headers_mut().append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        r
    }

    /// A response read whole: head, body, trailers (or the error that ended it).
    struct Got {
        head: http::response::Parts,
        body: Vec<u8>,
        trailers: Option<HeaderMap>,
        error: Option<h2::Error>,
    }

    async fn read(resp: h2::client::ResponseFuture) -> Result<Got, h2::Error> {
        let (head, mut body) = resp.await?.into_parts();
        let mut got = Got {
            head,
            body: Vec::new(),
            trailers: None,
            error: None,
        };
        while let Some(d) = body.data().await {
            match d {
                Ok(d) => {
                    got.body.extend_from_slice(&d);
                    let _ = body.flow_control().release_capacity(d.len());
                }
                Err(e) => {
                    got.error = Some(e);
                    return Ok(got);
                }
            }
        }
        match body.trailers().await {
            Ok(t) => got.trailers = t,
            Err(e) => got.error = Some(e),
        }
        Ok(got)
    }

    /// Sends `path` with no body and reads the response.
    async fn get(send: &mut h2::client::SendRequest<Bytes>, path: &str, h: &[(&str, &str)]) -> Got {
        let (resp, _) = send.send_request(request(path, h), true).unwrap();
        read(resp).await.unwrap()
    }

    fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
        h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    const GRPC: (&str, &str) = ("content-type", "application/grpc");

    #[monoio::test_all(timer_enabled = true)]
    async fn bodies_and_trailers_stream_both_ways() {
        let (up, seen) = upstream();
        let (addr, done) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        let (resp, mut tx) = send
            .send_request(request("/echo", &[("x-identity", "CN=client.1")]), false)
            .unwrap();
        // The first chunk comes back before the request ends: both directions are live.
        tx.send_data(Bytes::from_static(b"hello "), false).unwrap();
        let (head, mut body) = resp.await.unwrap().into_parts();
        assert_eq!(head.status, 200);
        assert_eq!(header(&head.headers, "x-seen-identity"), "CN=client.1");
        let first = body.data().await.unwrap().unwrap();
        assert_eq!(&first[..], b"hello ");
        tx.send_data(Bytes::from_static(b"world"), false).unwrap();
        let mut t = HeaderMap::new();
        t.insert("x-client-trailer", HeaderValue::from_static("yes"));
        tx.send_trailers(t).unwrap();
        let second = body.data().await.unwrap().unwrap();
        assert_eq!(&second[..], b"world");
        assert!(body.data().await.is_none());
        let trailers = body.trailers().await.unwrap().unwrap();
        assert_eq!(header(&trailers, "x-echo"), "done");
        assert_eq!(header(&trailers, "x-client-trailer"), "yes");
        settled(&done, 1).await;
        let done = done.borrow();
        assert_eq!(done.len(), 1);
        let f = &done[0];
        assert!(f.error.is_none(), "{:?}", f.error);
        assert_eq!((f.status, f.bytes, f.attempts), (200, (11, 11), 1));
        assert_eq!(f.upstream.map(|u| u.0), Some(up));
        assert_eq!(seen.borrow()[0], "POST http://test/echo CN=client.1");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn large_bodies_pass_within_the_windows() {
        let (up, _) = upstream();
        let (addr, done) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        // 2 MiB down: eight times the stream window certgate offers upstream.
        let got = get(&mut send, "/bytes", &[]).await;
        assert!(got.error.is_none(), "{:?}", got.error);
        assert_eq!(got.body.len(), 2 << 20);
        // 1 MiB up and back through the echo, sent as the windows allow.
        let (resp, mut tx) = send.send_request(request("/echo", &[]), false).unwrap();
        let payload = crate::http2::to_h2::tests::noise(1 << 20);
        let reader = monoio::spawn(read(resp));
        let mut rest = Bytes::from(payload.clone());
        while !rest.is_empty() {
            tx.reserve_capacity(rest.len());
            let n = poll_fn(|cx| tx.poll_capacity(cx)).await.unwrap().unwrap();
            tx.send_data(rest.split_to(n.min(rest.len())), false)
                .unwrap();
        }
        tx.send_data(Bytes::new(), true).unwrap();
        let got = reader.await.unwrap();
        assert!(got.error.is_none(), "{:?}", got.error);
        assert!(got.body == payload, "echoed body differs");
        settled(&done, 2).await;
        let done = done.borrow();
        assert_eq!(done[0].bytes, (0, 2 << 20));
        assert_eq!(done[1].bytes, (1 << 20, 1 << 20));
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn an_unreachable_upstream_is_502_or_grpc_unavailable() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (addr, done) = front(worker(&[dead], ""));
        let mut send = client(addr).await;
        let got = get(&mut send, "/", &[]).await;
        assert_eq!(got.head.status, 502);
        assert_eq!(got.body, b"502 Bad Gateway\n");
        let got = get(&mut send, "/", &[GRPC]).await;
        // Trailers-only: status 200, the gRPC status in the headers, the stream ended.
        assert_eq!(got.head.status, 200);
        assert_eq!(header(&got.head.headers, "grpc-status"), "14");
        assert!(got.body.is_empty() && got.trailers.is_none());
        settled(&done, 2).await;
        let done = done.borrow();
        assert!(matches!(
            done[0].error.as_ref().map(|e| &e.kind),
            Some(Kind::Connect(ConnectError::Refused(_)))
        ));
        assert_eq!(done[1].grpc_status, Some(14));
        assert!(
            done[0].upstream.is_none(),
            "a failed connect reached no server"
        );
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_late_response_is_504_or_grpc_deadline_exceeded() {
        let (up, _) = upstream();
        let (addr, done) = front(worker(&[up], "upstream_read = \"300ms\""));
        let mut send = client(addr).await;
        let started = Instant::now();
        let got = get(&mut send, "/slow", &[]).await;
        assert_eq!(got.head.status, 504);
        let got = get(&mut send, "/slow", &[GRPC]).await;
        assert_eq!(header(&got.head.headers, "grpc-status"), "4");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        settled(&done, 2).await;
        let done = done.borrow();
        assert!(matches!(
            done[0].error.as_ref().map(|e| &e.kind),
            Some(Kind::ResponseTimeout)
        ));
        // A response timeout is not sent to another server.
        assert_eq!(done[0].attempts, 1);
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn grpc_timeout_bounds_the_stream() {
        let (up, seen) = upstream();
        let (addr, _) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        let started = Instant::now();
        let got = get(&mut send, "/slow", &[GRPC, ("grpc-timeout", "200m")]).await;
        assert_eq!(header(&got.head.headers, "grpc-status"), "4");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(seen.borrow().len(), 1);
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn grpc_status_from_the_server_reaches_the_client() {
        let (up, _) = upstream();
        let (addr, _) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        let got = get(&mut send, "/grpc-error", &[GRPC]).await;
        assert_eq!(got.head.status, 200);
        assert_eq!(header(&got.head.headers, "grpc-status"), "5");
        assert_eq!(header(&got.head.headers, "grpc-message"), "no such thing");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_refused_stream_goes_to_the_next_server() {
        let (a, seen_a) = upstream();
        let (b, seen_b) = upstream();
        let (addr, done) = front(worker(&[a, b], ""));
        let mut send = client(addr).await;
        // Round robin starts at a: it refuses /refuse, b answers the echo... b also refuses
        // it, so ask for a path both treat alike only after a refusal on the first.
        let got = get(&mut send, "/refuse", &[]).await;
        assert_eq!(got.head.status, 502, "both refused");
        assert_eq!((seen_a.borrow().len(), seen_b.borrow().len()), (1, 1));
        settled(&done, 1).await;
        let f = &done.borrow()[0];
        assert_eq!(f.attempts, 2, "refused on one server, tried on the other");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_reset_or_error_is_not_sent_again() {
        let (a, seen_a) = upstream();
        let (b, seen_b) = upstream();
        let (addr, done) = front(worker(&[a, b], ""));
        let mut send = client(addr).await;
        let got = get(&mut send, "/reset", &[]).await;
        assert_eq!(got.head.status, 502);
        assert_eq!(seen_a.borrow().len() + seen_b.borrow().len(), 1);
        settled(&done, 1).await;
        assert_eq!(done.borrow()[0].attempts, 1);
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn an_upstream_reset_mid_body_resets_the_client_stream() {
        let (up, _) = upstream();
        let (addr, _) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        let got = get(&mut send, "/reset-mid-body", &[]).await;
        assert_eq!(got.head.status, 200);
        assert_eq!(got.body, b"part");
        let e = got.error.expect("the stream was reset");
        assert_eq!(e.reason(), Some(Reason::CANCEL), "{e:?}");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_client_reset_cancels_the_upstream_stream() {
        let (up, seen) = upstream();
        let (addr, _) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        let (_resp, mut tx) = send
            .send_request(request("/wait-for-reset", &[]), false)
            .unwrap();
        tx.send_data(Bytes::from_static(b"some"), false).unwrap();
        monoio::time::sleep(Duration::from_millis(100)).await;
        tx.send_reset(Reason::CANCEL);
        settled(&seen, 2).await;
        let seen = seen.borrow();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1], "reset Some(CANCEL)");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_connection_closing_with_goaway_is_replaced() {
        let (up, seen) = upstream_with(Conns::GoAway);
        let (addr, done) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        for i in 0..4 {
            let got = get(&mut send, "/echo", &[]).await;
            assert_eq!(got.head.status, 200, "request {i}");
        }
        let connections = seen.borrow().iter().filter(|l| *l == "connection").count();
        assert_eq!(connections, 4, "{:?}", seen.borrow());
        settled(&done, 4).await;
        assert!(done.borrow().iter().all(|f| f.error.is_none()));
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_stream_refused_on_a_pooled_connection_goes_again_on_a_new_one() {
        let (up, seen) = upstream_with(Conns::Refuse);
        let (addr, done) = front(worker(&[up], ""));
        let mut send = client(addr).await;
        for i in 0..3 {
            let got = get(&mut send, "/echo", &[]).await;
            assert_eq!(got.head.status, 200, "request {i}");
        }
        let connections = seen.borrow().iter().filter(|l| *l == "connection").count();
        assert_eq!(connections, 3, "{:?}", seen.borrow());
        settled(&done, 3).await;
        let done = done.borrow();
        assert_eq!(done[0].attempts, 1);
        // Refused on the pooled connection, then served on a new one; the only server.
        assert_eq!((done[1].attempts, done[2].attempts), (2, 2));
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_client_that_stops_reading_stalls_the_server_not_certgate() {
        let (up, seen) = upstream();
        let (addr, done) = front(worker(&[up], "body_idle = \"300ms\""));
        // A client with a 16 KiB window that never releases any of it.
        let s = TcpStream::connect_addr(addr).await.unwrap();
        let conn = Conn::Plain(Socket::new(s).unwrap());
        let (mut send, connection) = h2::client::Builder::new()
            .initial_window_size(16 * 1024)
            .handshake::<_, Bytes>(PollConn::new(conn, BytesMut::new()))
            .await
            .unwrap();
        monoio::spawn(async move {
            let _ = connection.await;
        });
        let (resp, _) = send.send_request(request("/bytes", &[]), true).unwrap();
        let (head, mut body) = resp.await.unwrap().into_parts();
        assert_eq!(head.status, 200);
        let mut got = 0;
        let error = loop {
            match body.data().await {
                Some(Ok(d)) => got += d.len(),
                Some(Err(e)) => break e,
                None => panic!("the stream ended normally after {got} bytes"),
            }
        };
        assert_eq!(error.reason(), Some(Reason::CANCEL), "{error:?}");
        assert_eq!(got, 16 * 1024);
        settled(&done, 1).await;
        settled(&seen, 2).await;
        // The server got no further than the windows certgate offers it: nothing was held
        // beyond them while the client did not read.
        let sent: usize = seen.borrow()[1]
            .strip_prefix("sent ")
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(
            sent <= 16 * 1024 + 256 * 1024,
            "the server sent {sent} bytes"
        );
        let e = done.borrow_mut().remove(0).error.unwrap();
        assert!(
            matches!(e.kind, Kind::ResponseBody(BodyError::Timeout(Side::Client))),
            "{e:?}"
        );
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_server_silent_mid_body_is_cut_after_body_idle() {
        let (up, _) = upstream();
        let (addr, done) = front(worker(&[up], "body_idle = \"300ms\""));
        let mut send = client(addr).await;
        let started = Instant::now();
        let got = get(&mut send, "/stall", &[]).await;
        assert_eq!(
            (got.head.status, &got.body[..]),
            (StatusCode::OK, &b"first"[..])
        );
        assert_eq!(got.error.and_then(|e| e.reason()), Some(Reason::CANCEL));
        assert!(started.elapsed() < Duration::from_secs(2));
        settled(&done, 1).await;
        let e = done.borrow_mut().remove(0).error.unwrap();
        assert!(
            matches!(
                e.kind,
                Kind::ResponseBody(BodyError::Timeout(Side::Upstream))
            ),
            "{e:?}"
        );
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn streams_share_one_connection_per_server() {
        let (up, _) = upstream();
        let w = worker(&[up], "");
        let (addr, _) = front(w.clone());
        let mut send = client(addr).await;
        let mut pending = Vec::new();
        for _ in 0..8 {
            let (resp, _) = send.send_request(request("/echo", &[]), true).unwrap();
            pending.push(monoio::spawn(read(resp)));
        }
        for p in pending {
            assert_eq!(p.await.unwrap().head.status, 200);
        }
        assert_eq!(w.pools[0].h2().count(up), 1);
    }

    /// A TLS upstream with the test PKI's localhost certificate; it selects ALPN h2 when
    /// `h2`, none otherwise (a server that only speaks HTTP/1.1). Streams are echoed.
    fn tls_upstream(pki: &crate::pki::Pki, h2: bool) -> SocketAddr {
        use boring::ssl::{select_next_proto, AlpnError, SslContextBuilder, SslFiletype};
        let mut b = SslContextBuilder::new(boring::ssl::SslMethod::tls()).unwrap();
        b.set_certificate_chain_file(&pki.server.cert).unwrap();
        b.set_private_key_file(&pki.server.key, SslFiletype::PEM)
            .unwrap();
        if h2 {
            b.set_alpn_select_callback(|_, offered| {
                select_next_proto(b"\x02h2", offered).ok_or(AlpnError::NOACK)
            });
        }
        let ctx = b.build();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        monoio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let ssl = boring::ssl::Ssl::new(&ctx).unwrap();
                monoio::spawn(async move {
                    let Ok(t) = crate::tls::TlsStream::accept(ssl, Socket::new(s).unwrap()).await
                    else {
                        return;
                    };
                    let conn = Conn::Tls(Box::new(t));
                    let Ok(mut h) =
                        h2::server::handshake(PollConn::new(conn, BytesMut::new())).await
                    else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = h.accept().await {
                        monoio::spawn(upstream_stream(req, respond, Rc::default()));
                    }
                });
            }
        });
        addr
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn over_tls_the_server_must_select_alpn_h2() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::generate(dir.path()).unwrap();
        let tls = format!(
            "[upstream.tls]\nca = \"{}\"\nserver_name = \"localhost\"",
            pki.server_ca.display()
        );
        let (h2, h1) = (tls_upstream(&pki, true), tls_upstream(&pki, false));
        let (addr, done) = front(worker_with(&[h2], "", &tls));
        let mut send = client(addr).await;
        let got = get(&mut send, "/echo", &[("x-identity", "CN=over-tls")]).await;
        assert_eq!(got.head.status, 200);
        assert_eq!(header(&got.head.headers, "x-seen-identity"), "CN=over-tls");

        let (addr, done_h1) = front(worker_with(&[h1], "", &tls));
        let mut send = client(addr).await;
        let got = get(&mut send, "/echo", &[GRPC]).await;
        assert_eq!(header(&got.head.headers, "grpc-status"), "14");
        settled(&done, 1).await;
        settled(&done_h1, 1).await;
        assert!(done.borrow()[0].error.is_none());
        let e = done_h1.borrow_mut().remove(0).error.unwrap();
        assert!(matches!(e.kind, Kind::Connect(ConnectError::NoH2)), "{e:?}");
        assert!(
            e.to_string().contains("did not select ALPN h2"),
            "the log line says why: {e}"
        );
    }

    /// A child process killed and reaped on drop.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// tests/grpc/server.py on loopback (h2c).
    fn grpcio_server() -> (Child, SocketAddr) {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/server.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().unwrap();
        let child = Child(child);
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server.py said {line:?}"));
        (child, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A front forwarding to `upstream`, on its own thread with the given driver, until
    /// `stop` is set.
    fn front_thread(
        uring: bool,
        upstream: SocketAddr,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let run = move || async move {
            let (addr, _) = front(worker(&[upstream], ""));
            tx.send(addr).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let thread = std::thread::spawn(move || {
            if uring {
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap()
                    .block_on(run());
            } else {
                monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap()
                    .block_on(run());
            }
        });
        (rx.recv().unwrap(), thread)
    }

    /// The four kinds of gRPC call, a server error, a deadline and metadata, between a real
    /// grpcio client and a real grpcio server, through `forward`.
    #[test]
    fn grpcio_calls_pass_through_forward() {
        let (_server, upstream) = grpcio_server();
        for uring in [true, false] {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (front, thread) = front_thread(uring, upstream, stop.clone());
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/client.py");
            let out = std::process::Command::new("timeout")
                .args(["60", "python3", script, &front.to_string()])
                .args(["--meta", "x-identity=CN=client.1"])
                .args(["unary", "split", "join", "chat", "fail", "slow", "whoami"])
                .output()
                .unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            thread.join().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            let expect = [
                r#"{"call": "unary", "code": "OK", "details": "", "value": "hello"}"#,
                r#"{"call": "split", "code": "OK", "details": "", "value": ["a", "b", "c"]}"#,
                r#"{"call": "join", "code": "OK", "details": "", "value": "xyz"}"#,
                r#"{"call": "chat", "code": "OK", "details": "", "value": ["ONE", "TWO", "THREE"]}"#,
                r#"{"call": "fail", "code": "NOT_FOUND", "details": "no such thing", "value": null}"#,
            ];
            assert!(
                lines.len() == 7,
                "uring={uring}: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            for (got, want) in lines.iter().zip(expect) {
                assert_eq!(*got, want, "uring={uring}");
            }
            assert!(lines[5].contains("DEADLINE_EXCEEDED"), "{}", lines[5]);
            assert!(
                lines[6].contains(r#""x-identity": ["CN=client.1"]"#),
                "{}",
                lines[6]
            );
        }
    }

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(t("200m"), Some(Duration::from_millis(200)));
        assert_eq!(t("3S"), Some(Duration::from_secs(3)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            is_grpc(&h)
        };
        assert!(ct("application/grpc") && ct("application/grpc+proto"));
        assert!(!ct("application/grpc-web") && !ct("application/json"));
    }
}
