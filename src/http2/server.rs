//! One HTTP/2 client connection: the `h2` server over the connection, the accept loop (which
//! also drives the connection's I/O), and one task per stream.
//!
//! Each stream is a request under the connection's identity, decided once when the connection
//! starts: a refused client gets its page (or a gRPC-shaped refusal) on every stream. An
//! admitted stream is validated (`request`), its headers rewritten (client identity headers
//! stripped in every spelling, the connection's added), and handed to [`forward_stream`], the
//! one place that picks how to reach the upstream. One access line per stream.
//!
//! The connection ends when the client closes it, when it stays without streams for
//! `keepalive_idle` (before its first stream: `request_head`), or on a drain: GOAWAY, then the
//! streams in flight finish.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response};
use monoio::time::timeout;
use tracing::debug;

use super::io::PollConn;
use super::request::{self, Refuse};
use super::{grpc, to_h1};
use crate::config::Listener;
use crate::conn::Conn;
use crate::http::Page;
use crate::logging::{Access, TlsFacts};
use crate::proxy::identity::Identity;
use crate::proxy::request_id::{self, RequestId};
use crate::proxy::{BodyError, Session, Side};
use crate::runtime::Worker;

/// Response bytes buffered per stream beyond what the client's window lets out (h2's default is
/// 400 KiB); a slow reader holds at most this, then the upstream read waits.
const MAX_SEND_BUFFER: usize = 64 * 1024;
/// Streams reset by the client before certgate accepted them, pending at once (rapid reset,
/// CVE-2023-44487): past this the connection is closed with ENHANCE_YOUR_CALM.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams certgate may reset for the client's protocol errors before closing the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Rapid reset paced one stream at a time (each accepted before its reset arrives): a
/// connection whose streams the client cancels before their response, at least this many and at
/// least half of all its streams, is closed with ENHANCE_YOUR_CALM (Envoy's premature-reset rule).
const MAX_PREMATURE_RESETS: u64 = 100;

/// After a GOAWAY, how long a connection without streams waits for the client to acknowledge
/// it (the PING that follows) before it is closed anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What every stream of one connection shares.
pub struct Shared {
    /// The listener the connection came in on.
    pub listener: Arc<Listener>,
    /// The worker running the connection: its pools and metrics.
    pub worker: Rc<Worker>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's metrics index.
    index: usize,
    handshake_time: Option<Duration>,
    /// TLS version, cipher, resumed.
    tls: Option<(&'static str, String, bool)>,
    /// The connection's identity, judged once.
    pub identity: Identity,
    /// The identity headers as HTTP/2 fields (for HTTP/2 upstreams).
    add: Vec<(HeaderName, HeaderValue)>,
    /// The same as HTTP/1.1 field lines, written as they are into every request head.
    pub(super) add_h1: Vec<u8>,
    /// Streams being served.
    active: Cell<usize>,
    /// When the last stream ended (or the connection started).
    idle_since: Cell<Instant>,
    /// A stream has been accepted.
    used: Cell<bool>,
    /// Streams ended, and those the client cancelled before their response.
    ended: Cell<u64>,
    premature: Cell<u64>,
    /// Set when the premature resets passed the limit; wakes the accept loop.
    calm: Cell<bool>,
    calm_waker: Cell<Option<std::task::Waker>>,
}

impl Shared {
    /// Counts an ended stream; too many premature resets ask the connection to close.
    fn stream_ended(&self, client_gone: bool) {
        self.ended.set(self.ended.get() + 1);
        if !client_gone {
            return;
        }
        let premature = self.premature.get() + 1;
        self.premature.set(premature);
        if premature >= MAX_PREMATURE_RESETS
            && premature * 2 >= self.ended.get()
            && !self.calm.get()
        {
            self.calm.set(true);
            if let Some(w) = self.calm_waker.take() {
                w.wake();
            }
        }
    }

    /// Ready once [`Shared::stream_ended`] asked for the connection to close.
    fn calm_needed(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.calm.get() {
                return std::task::Poll::Ready(());
            }
            // Polled on every turn of the connection's loop: the stored waker is kept when
            // it is this task's already.
            let kept = self.calm_waker.take().filter(|w| w.will_wake(cx.waker()));
            self.calm_waker
                .set(Some(kept.unwrap_or_else(|| cx.waker().clone())));
            std::task::Poll::Pending
        })
    }
}

/// How a stream ended, for its access line.
#[derive(Debug)]
pub struct Outcome {
    /// The status sent (0: none).
    pub status: u16,
    /// The admission decision and how the exchange ended; empty: the connection's admission
    /// decision alone (not copied per stream).
    pub decision: String,
    /// The server that answered and the time to its answer.
    pub upstream: Option<(SocketAddr, Duration)>,
    /// Attempts made upstream.
    pub attempts: Option<usize>,
    /// Body bytes from the client and to it.
    pub bytes: (u64, u64),
    /// The last upstream connect's duration.
    pub connect_time: Option<Duration>,
    /// The client reset the stream (or failed) before its response was complete: a premature
    /// reset, counted against rapid-reset floods.
    pub client_gone: bool,
}

impl Outcome {
    /// A stream answered by certgate itself.
    pub fn answered(status: u16, decision: String, sent: u64) -> Self {
        Self {
            status,
            decision,
            upstream: None,
            attempts: None,
            bytes: (0, sent),
            connect_time: None,
            client_gone: false,
        }
    }
}

/// Counts a stream as active until it drops.
struct Active(Rc<Shared>);

impl Active {
    fn new(c: Rc<Shared>) -> Self {
        c.active.set(c.active.get() + 1);
        c.used.set(true);
        Self(c)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let left = self.0.active.get().saturating_sub(1);
        self.0.active.set(left);
        // Idle begins when the last stream ends (one clock read per idle spell, not per stream).
        if left == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

/// Serves an HTTP/2 connection: after ALPN `h2`, or on a plain listener once the prior-knowledge
/// preface was seen (`buffered` holds what was read of it).
pub async fn serve(s: Session, buffered: BytesMut) {
    let identity = s.authorize();
    let tls = match &s.client {
        Conn::Tls(t) => Some((
            t.ssl().version_str(),
            t.ssl()
                .current_cipher()
                .map_or("-", |c| c.standard_name().unwrap_or(c.name()))
                .to_owned(),
            t.ssl().session_reused(),
        )),
        Conn::Plain(_) => None,
    };
    let add: Vec<(HeaderName, HeaderValue)> = identity
        .headers
        .iter()
        .filter_map(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.as_bytes()).ok()?,
                HeaderValue::from_bytes(v).ok()?,
            ))
        })
        .collect();
    let mut add_h1 = Vec::new();
    for (n, v) in &add {
        for part in [n.as_str().as_bytes(), b": ", v.as_bytes(), b"\r\n"] {
            add_h1.extend_from_slice(part);
        }
    }
    let Session {
        listener,
        worker,
        client,
        peer,
        index,
        handshake_time,
        ..
    } = s;
    let c = Rc::new(Shared {
        listener,
        worker,
        peer,
        index,
        handshake_time,
        tls,
        identity,
        add,
        add_h1,
        active: Cell::new(0),
        idle_since: Cell::new(Instant::now()),
        used: Cell::new(false),
        ended: Cell::new(0),
        premature: Cell::new(0),
        calm: Cell::new(false),
        calm_waker: Cell::new(None),
    });
    let h = c.listener.http2;
    let t = c.listener.timeouts;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(h.max_concurrent_streams)
        .max_header_list_size(h.max_header_list_size)
        .initial_window_size(h.initial_stream_window_size)
        .initial_connection_window_size(h.initial_connection_window_size)
        .max_frame_size(h.max_frame_size)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    let io = PollConn::new(client, buffered);
    let mut conn = match timeout(t.request_head, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            debug!(peer = %c.peer, "HTTP/2 handshake failed: {e}");
            return;
        }
        Err(_) => {
            debug!(peer = %c.peer, "HTTP/2 preface timed out");
            return;
        }
    };
    let drain = c.worker.drain.clone();
    // Since when a GOAWAY went out (drain or idle): the streams in flight finish, then the
    // connection closes; a client that never acknowledges the GOAWAY's PING is dropped after
    // `CLOSE_GRACE` without streams.
    let mut closing: Option<Instant> = None;
    // Streams accepted, for `limits.max_requests_per_connection` (nginx's `keepalive_requests`,
    // which applies to HTTP/2 streams too): the last one accepted is followed by a GOAWAY.
    let mut served = 0u64;
    // The connection was closed for rapid reset (once).
    let mut calmed = false;
    let limit = c.listener.limits.max_requests_per_connection;
    // The connection's one timer, re-armed only when it fired or must fire sooner: streams
    // arrive in batches, and a timer per accepted stream cost a clock read and a wheel insert
    // and removal each.
    let mut check = std::pin::pin!(monoio::time::sleep(t.request_head));
    let mut armed = true;
    // Made once, polled on every turn: each registers its waker once, not once per stream.
    let mut drained = std::pin::pin!(drain.fired());
    let mut calm = std::pin::pin!(c.calm_needed());
    loop {
        // No stream for too long: before the first, `request_head`; after, `keepalive_idle`.
        let idle_limit = if c.used.get() {
            t.keepalive_idle
        } else {
            t.request_head
        };
        // With streams in flight and no GOAWAY sent, the timer only has the loop look again
        // later: whatever is armed will do.
        if !armed || closing.is_some() || c.active.get() == 0 {
            let now = Instant::now();
            let at = match closing {
                Some(at) if c.active.get() == 0 => (at + CLOSE_GRACE).max(now),
                Some(_) => now + Duration::from_secs(1),
                None if c.active.get() == 0 => c.idle_since.get() + idle_limit,
                None => now + idle_limit.max(Duration::from_secs(1)),
            };
            if !armed || at < check.deadline().into_std() {
                check.as_mut().reset(at.into());
                armed = true;
            }
        }
        monoio::select! {
            r = conn.accept() => match r {
                Some(Ok((req, respond))) => {
                    served += 1;
                    if limit > 0 && served >= limit && closing.is_none() {
                        conn.graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    let active = Active::new(c.clone());
                    monoio::spawn(async move {
                        stream(&active.0, req, respond).await;
                        drop(active);
                    });
                }
                Some(Err(e)) => {
                    debug!(peer = %c.peer, "HTTP/2 connection ended: {e}");
                    break;
                }
                None => break,
            },
            _ = calm.as_mut(), if !calmed => {
                calmed = true;
                tracing::warn!(
                    listener = %c.listener.name,
                    peer = %c.peer,
                    "HTTP/2 client cancelled {} of its {} streams before their response (rapid reset); closing the connection",
                    c.premature.get(),
                    c.ended.get()
                );
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                closing = Some(Instant::now());
            }
            _ = drained.as_mut(), if closing.is_none() => {
                conn.graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = check.as_mut() => {
                armed = false;
                match closing {
                    Some(at) => {
                        if c.active.get() == 0 && at.elapsed() >= CLOSE_GRACE {
                            debug!(peer = %c.peer, "HTTP/2 GOAWAY not acknowledged; closing");
                            break;
                        }
                    }
                    None => {
                        if c.active.get() == 0 && c.idle_since.get().elapsed() >= idle_limit {
                            conn.graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                    }
                }
            }
        }
    }
}

/// Serves one stream: refusal, validation, rewriting, [`forward_stream`], one access line.
async fn stream(c: &Shared, req: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let started = Instant::now();
    let method = req.method().clone();
    // Kept for the access line only: not built when there is none.
    let path = match c.worker.config.access_log.enabled() {
        true => req
            .uri()
            .path_and_query()
            .map_or_else(String::new, |p| p.as_str().to_owned()),
        false => String::new(),
    };
    let grpc = grpc::is_grpc(req.headers());
    let head_only = method == http::Method::HEAD;
    let rid = request_id::from_client(
        req.headers()
            .get(request_id::HEADER)
            .map(HeaderValue::as_bytes),
    );
    let id = &c.identity;
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .map(HeaderValue::as_bytes)
        });
    let outcome = if let Some(why) = c.listener.misdirected(authority) {
        tracing::info!(listener = %c.listener.name, peer = %c.peer, "421: {why}");
        // A real 421 for gRPC as well: the client retries on a connection for that name.
        let bytes = send_page(&mut respond, Page::Misdirected, head_only, c).await;
        Outcome::answered(Page::Misdirected.status(), why, bytes)
    } else if let Some(refusal) = &id.refusal {
        let page = refusal.page();
        let bytes = if grpc {
            let (status, message) = grpc::refusal_status(refusal);
            answer(&mut respond, grpc::trailers_only(status, message))
        } else {
            send_page(&mut respond, page, head_only, c).await
        };
        Outcome::answered(page.status(), refusal.to_string(), bytes)
    } else {
        match request::validate(&req) {
            Err(Refuse::Reset(reason, why)) => {
                respond.send_reset(reason);
                Outcome::answered(400, format!("{}; reset: {why}", id.admitted_by), 0)
            }
            Err(Refuse::Page(page, why)) => {
                let bytes = refuse(&mut respond, page, grpc, head_only, c).await;
                Outcome::answered(
                    page.status(),
                    format!("{}; bad request: {why}", id.admitted_by),
                    bytes,
                )
            }
            Ok(valid) => forward_stream(c, req, respond, valid, grpc, &rid, started).await,
        }
    };
    c.stream_ended(outcome.client_gone);
    log(c, &method, &path, &rid, &outcome, started);
}

/// The one place a validated stream goes upstream, where its fields are rewritten (identity
/// stripped and added, `x-request-id`, XFCC): into the HTTP/1.1 head in one pass for HTTP/1.1
/// upstreams ([`to_h1::forward`]), in the request's fields for HTTP/2 ones
/// ([`upstream_request`]). Its body still streams from the client; `respond` answers the client;
/// `valid` is what validation learnt (the declared length), `grpc` whether failures are
/// answered as gRPC statuses, `started` when the stream arrived. Every upstream protocol
/// returns the stream's [`Outcome`], which the caller logs.
pub async fn forward_stream(
    c: &Shared,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    valid: request::Valid,
    grpc: bool,
    rid: &RequestId,
    started: Instant,
) -> Outcome {
    let upstream = c.listener.upstream;
    // One call site per relay: two awaits of the same future type get two slots in this
    // future's state (measured: 3.5 KiB more per stream task).
    let pool = c
        .worker
        .pools
        .get(upstream)
        .filter(|p| p.upstream().protocol == crate::config::UpstreamProtocol::H2);
    let Some(pool) = pool else {
        return to_h1::forward(c, req, respond, valid, grpc, rid, started).await;
    };
    let mut req = upstream_request(c, req, rid);
    // The h2 relay keeps `te: trailers` (gRPC needs it) and checks the length as it relays.
    let key = pool.key(
        c.identity.cert.as_ref().map(|cert| cert.fingerprint()),
        c.peer.ip(),
    );
    req.extensions_mut().insert(key);
    // Boxed: the HTTP/2 relay's future is several KiB, and every stream task would be sized
    // (and moved into its task) by it, whatever its upstream's protocol.
    let f = Box::pin(super::to_h2::forward(
        &c.worker,
        upstream,
        req,
        respond,
        &c.listener.timeouts,
    ))
    .await;
    let mut out = Outcome::answered(f.status, c.identity.admitted_by.clone(), 0);
    if let Some(code) = f.grpc_status {
        out.decision = format!("{}; grpc-status {code}", out.decision);
    }
    if let Some(e) = &f.error {
        out.decision = format!("{}; {e}", out.decision);
    }
    out.client_gone = f
        .error
        .as_ref()
        .is_some_and(|e| e.side() == crate::proxy::Source::Client);
    out.upstream = f.upstream;
    out.attempts = Some(f.attempts);
    out.bytes = f.bytes;
    out
}

/// The request as the upstream gets it: the client's identity-named fields removed (h2 names
/// are lowercase; `_` reads as `-`), the connection's identity fields and the request id added.
fn upstream_request(c: &Shared, req: Request<RecvStream>, rid: &RequestId) -> Request<RecvStream> {
    let (mut parts, body) = req.into_parts();
    // `forward` mode: the client's elements go on, ours after them (as on HTTP/1.1).
    let xfcc = match c.listener.headers.xfcc {
        crate::config::XfccMode::Forward => crate::http::xfcc::join(
            parts
                .headers
                .get_all(crate::http::xfcc::HEADER)
                .iter()
                .map(HeaderValue::as_bytes),
            c.identity.xfcc.as_deref(),
        ),
        _ => None,
    };
    let strip: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|n| c.listener.strip.contains(n.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in strip {
        parts.headers.remove(name);
    }
    if rid.replaced() {
        parts.headers.remove(request_id::HEADER);
    }
    for (n, v) in &c.add {
        parts.headers.append(n.clone(), v.clone());
    }
    if let Some(v) = xfcc.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-client-cert"), v);
    }
    if rid.generated() {
        if let Ok(v) = HeaderValue::from_str(rid.as_str()) {
            parts
                .headers
                .insert(HeaderName::from_static("x-request-id"), v);
        }
    }
    Request::from_parts(parts, body)
}

/// Sends a head-only response (a trailers-only gRPC answer); the bytes are not counted.
fn answer(respond: &mut SendResponse<Bytes>, resp: Response<()>) -> u64 {
    if let Err(e) = respond.send_response(resp, true) {
        debug!("cannot answer a stream: {e}");
    }
    0
}

/// Refuses a stream with `page`, or its gRPC equivalent for a gRPC call.
pub(super) async fn refuse(
    respond: &mut SendResponse<Bytes>,
    page: Page,
    grpc: bool,
    head_only: bool,
    c: &Shared,
) -> u64 {
    if grpc {
        let (status, message) = grpc::page_status(page);
        return answer(respond, grpc::trailers_only(status, message));
    }
    send_page(respond, page, head_only, c).await
}

/// Answers one of the built-in pages; returns the body bytes sent.
async fn send_page(
    respond: &mut SendResponse<Bytes>,
    page: Page,
    head_only: bool,
    c: &Shared,
) -> u64 {
    let full = crate::http::render(page, false, false);
    let head = crate::http::render(page, false, true);
    let body = full.slice(head.len().min(full.len())..);
    let mut resp = Response::new(());
    *resp.status_mut() = http::StatusCode::from_u16(page.status())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("certgate"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let Ok(mut send) = respond.send_response(resp, head_only) else {
        return 0;
    };
    if head_only {
        return 0;
    }
    let n = body.len() as u64;
    match send_data(&mut send, body, true, c.listener.timeouts.body_idle).await {
        Ok(()) => n,
        Err(_) => 0,
    }
}

/// The stream's access line and metrics.
fn log(
    c: &Shared,
    method: &http::Method,
    path: &str,
    rid: &RequestId,
    o: &Outcome,
    started: Instant,
) {
    let total = started.elapsed();
    if let Some(m) = c.worker.metrics.listener(c.index) {
        m.request(o.status, total);
    }
    let log = &c.worker.config.access_log;
    if !log.enabled() {
        return;
    }
    let id = &c.identity;
    Access {
        event: "request",
        listener: &c.listener.name,
        sni: &c.listener.sni_label,
        peer: c.peer,
        request_id: Some(rid.as_str()),
        method: Some(method.as_str()),
        path: Some(path.as_bytes()),
        version: Some("HTTP/2.0"),
        status: Some(o.status),
        tls: c.tls.as_ref().map(|(version, cipher, resumed)| TlsFacts {
            version,
            cipher,
            resumed: *resumed,
        }),
        verify: &id.verify,
        dn: &id.subject,
        cert: id
            .cert
            .as_ref()
            .map(|c| (c.issuer_rfc2253(), c.serial(), c.fingerprint())),
        decision: match o.decision.is_empty() {
            true => &id.admitted_by,
            false => &o.decision,
        },
        upstream: Some(o.upstream.map(|(a, _)| a)),
        attempts: o.attempts,
        bytes: Some(o.bytes),
        connect_time: o.connect_time,
        handshake_time: c.handshake_time,
        upstream_time: Some(o.upstream.map_or(Duration::ZERO, |(_, d)| d)),
        total_time: Some(total),
    }
    .emit(log);
}

/// Sends `data` as the client's window allows, waiting at most `idle` for each opening.
pub async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
) -> Result<(), BodyError> {
    let client_err = |e: h2::Error| BodyError::Io(Side::Client, io::Error::other(e));
    if data.is_empty() {
        // An empty frame (the end of the stream) needs no window.
        return send.send_data(data, end).map_err(client_err);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let mut cap = send.capacity();
        while cap == 0 {
            match timeout(idle, poll_fn(|cx| send.poll_capacity(cx))).await {
                Err(_) => return Err(BodyError::Timeout(Side::Client)),
                Ok(None) => return Err(BodyError::Truncated(Side::Client)),
                Ok(Some(Err(e))) => return Err(client_err(e)),
                Ok(Some(Ok(n))) => cap = n,
            }
        }
        let piece = data.split_to(cap.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(client_err)?;
    }
    Ok(())
}
