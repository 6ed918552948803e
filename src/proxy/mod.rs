//! One client connection's life: handshake -> authorize -> (read head -> forward -> log)*.
//!
//! Phases, in order:
//! - `proxy_header` (listeners with `proxy_protocol`): only a trusted balancer may connect; its
//!   PROXY header is read under the handshake timeout and names the client (`Session::peer`).
//! - `handshake`: TLS with the listener's context; a failed handshake is logged and closed.
//! - `authorize`: once per connection, when the first request (or the TCP relay) needs it
//!   (`Identity::establish`): the verify result, the rules' verdict and the identity headers,
//!   reused by every request on the connection.
//! - per request: the head is read under the head timeout and validated (bad input gets its
//!   status and the connection closes); a refused client gets nginx's page; otherwise the
//!   request is forwarded (`forward`) and one access line is logged.

mod body;
pub mod error;
mod forward;
pub mod identity;
pub mod proxy_protocol;
pub mod request_id;
pub mod retry;
mod tcp;
mod to_h2;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use boring::ssl::Ssl;
use bytes::BytesMut;
use monoio::net::TcpStream;
use monoio::time::timeout;
use tracing::{debug, info, warn};

use crate::config::{Listener, ListenerMode};
use crate::conn::Conn;
use crate::http::{self, Page, RequestHead};
use crate::io::Socket;
use crate::logging::Access;
use crate::runtime::Worker;
use crate::tls::{HandshakeError, TlsStream};

pub use self::body::{BodyError, Side};
pub use self::error::{Error, Fate, Source};
use self::identity::Identity;

/// Where one connection is: what every phase needs.
pub struct Session {
    /// The listener the connection was accepted on (the configuration at accept time: a reload does
    /// not change it).
    pub listener: Arc<Listener>,
    /// The worker running the connection: its upstream pools and rule caches.
    pub worker: Rc<Worker>,
    /// The client connection.
    pub client: Conn,
    /// Bytes read from the client and not yet consumed (a pipelined request may wait here).
    pub buf: BytesMut,
    /// The client's address: the TCP peer's, or behind a trusted balancer the one its PROXY
    /// header names.
    pub peer: SocketAddr,
    /// Requests served so far on this connection (for `max_requests_per_connection`).
    pub requests: u64,
    /// The listener's position in the configuration (its metrics).
    pub index: usize,
    /// How long the TLS handshake took.
    pub handshake_time: Option<std::time::Duration>,
    /// The current request's bytes from the client (head and body relayed) and to it (response
    /// head, body, page), for the access line.
    pub bytes: (u64, u64),
    /// The current request's last upstream connect (zero for a pooled connection).
    pub connect_time: Option<std::time::Duration>,
}

/// Counts a connection as active until it drops.
struct Open(Rc<Worker>, usize);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(m) = self.0.metrics.listener(self.1) {
            m.closed();
        }
    }
}

/// Serves one accepted connection until it closes. Never panics on network input; every
/// failure ends as a log line.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    worker: Rc<Worker>,
) {
    let index = worker
        .config
        .listeners
        .iter()
        .position(|l| Arc::ptr_eq(l, &listener))
        .unwrap_or(usize::MAX);
    let stats = worker.metrics.listener(index);
    if let Some(m) = stats {
        m.accepted();
    }
    let _open = Open(worker.clone(), index);
    let accepted = Instant::now();
    let mut peer = peer;
    let mut limit = listener.timeouts.handshake;
    if let Some(p) = &listener.proxy_in {
        if !p.trusts(peer.ip()) {
            info!(listener = %listener.name, %peer, "connection refused: the peer is not in trusted_proxies, and this listener takes connections only from them (proxy_protocol)");
            return;
        }
    }
    let _ = stream.set_nodelay(true);
    let mut sock = match Socket::new(stream) {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, "cannot set up the connection: {e}");
            return;
        }
    };
    let mut early = BytesMut::new();
    if let Some(p) = &listener.proxy_in {
        match proxy_header(&mut sock, p.version, limit).await {
            Ok((source, rest)) => {
                match source {
                    Some(client) => {
                        debug!(listener = %listener.name, proxy = %peer, %client, "PROXY header read");
                        peer = client;
                    }
                    None => {
                        debug!(listener = %listener.name, %peer, "PROXY header without a client address (LOCAL or UNKNOWN): the peer's own stands");
                    }
                }
                early = rest;
            }
            // A balancer's TCP check connects and closes: not worth a line at info.
            Err(None) => {
                debug!(listener = %listener.name, %peer, "connection closed before a PROXY header");
                return;
            }
            Err(Some(why)) => {
                info!(listener = %listener.name, %peer, "connection closed: {why}");
                return;
            }
        }
        // The header and the handshake share the handshake timeout.
        limit = limit.saturating_sub(accepted.elapsed());
    }
    // The handshake's own time, for the metrics and the access log.
    let started = Instant::now();
    let (client, handshake_time) = match &listener.tls {
        None => (Conn::Plain(sock), None),
        Some(ctx) => {
            let log = &worker.config.access_log;
            // Boxed, as the other phases below: the task keeps only the largest phase's state
            // inline for its whole life, and an idle connection is in none of them.
            let shake = handshake(ctx, sock, early.split(), limit, &listener, peer, stats, log);
            match Box::pin(shake).await {
                Some(tls) => {
                    let took = started.elapsed();
                    if let Some(m) = stats {
                        m.handshake(tls.ssl().version_str(), tls.ssl().session_reused(), took);
                    }
                    (Conn::Tls(Box::new(tls)), Some(took))
                }
                None => return,
            }
        }
    };
    // A connection the ClientHello switched to a `[[listener.sni]]` block is that block's.
    let listener = match &client {
        Conn::Tls(t) if !listener.sni.is_empty() => crate::tls::sni::policy_of(&listener, t.ssl()),
        _ => listener,
    };
    let mut session = Session {
        listener,
        worker,
        client,
        // On a plain listener, what followed the PROXY header.
        buf: early,
        peer,
        requests: 0,
        index,
        handshake_time,
        bytes: (0, 0),
        connect_time: None,
    };
    match session.listener.mode {
        ListenerMode::Http => {
            // ALPN chose h2, or the listener speaks nothing else.
            let h2 = match &session.client {
                Conn::Tls(t) => t.ssl().selected_alpn_protocol() == Some(b"h2"),
                Conn::Plain(_) => false,
            };
            if h2 || !session.listener.protocols.http1 {
                Box::pin(crate::http2::server::serve(session, BytesMut::new())).await;
            } else if let Some(preface) = session.run().await {
                Box::pin(crate::http2::server::serve(session, preface)).await;
            }
        }
        ListenerMode::Tcp => Box::pin(tcp::relay(&mut session)).await,
    }
}

/// Runs the TLS handshake under the listener's handshake timeout; a failure is logged once,
/// with its cause (the alert received or sent, the verification error when a certificate was
/// presented), and gives `None`.
#[allow(clippy::too_many_arguments)]
async fn handshake(
    ctx: &boring::ssl::SslContext,
    sock: Socket,
    early: BytesMut,
    limit: std::time::Duration,
    listener: &Listener,
    peer: SocketAddr,
    stats: Option<&crate::metrics::ListenerStats>,
    log: &crate::logging::AccessLog,
) -> Option<TlsStream> {
    let ssl = match Ssl::new(ctx) {
        Ok(ssl) => ssl,
        Err(e) => {
            warn!(listener = %listener.name, %peer, "cannot set up TLS: {e}");
            return None;
        }
    };
    let started = Instant::now();
    let result = timeout(limit, TlsStream::accept_after(ssl, sock, early)).await;
    if let (Some(m), Err(_)) = (stats, &result) {
        m.handshake_failed(None);
    }
    if let (Some(m), Ok(Err(e))) = (stats, &result) {
        m.handshake_failed(Some(e));
    }
    match result {
        Ok(Ok(tls)) => Some(tls),
        // A port probe or a load balancer's TCP check: not worth a line at info.
        Ok(Err(e @ HandshakeError::Closed)) => {
            debug!(listener = %listener.name, %peer, "TLS handshake failed: {}", e.cause("client"));
            None
        }
        Ok(Err(e)) => {
            let cause = e.cause("client").to_string();
            info!(listener = %listener.name, %peer, "TLS handshake failed: {cause}");
            let verify = match &e {
                HandshakeError::Tls(_, _, Some(why)) => format!("FAILED:{why}"),
                _ => "-".to_owned(),
            };
            log_refused_handshake(listener, peer, &verify, &cause, started.elapsed(), log);
            None
        }
        Err(_) => {
            info!(listener = %listener.name, %peer, "TLS handshake failed: timed out after {limit:?}");
            let cause = format!("timed out after {limit:?}");
            log_refused_handshake(listener, peer, "-", &cause, limit, log);
            None
        }
    }
}

/// Reads the PROXY protocol header a trusted balancer opens the connection with, within
/// `limit`.
///
/// # Return
/// The client's address it carries (`None` for a balancer's own health check) and the bytes
/// read past it, which belong to the client (its TLS handshake).
///
/// # Errors
/// Why the connection is closed: a malformed or missing header, the wrong version, a timeout
/// or the peer closing mid-header; `None` when the peer closed without sending a byte. Reads
/// are bounded: `parse` refuses as soon as a v1 line passes 107 bytes or a v2 length passes its
/// cap.
async fn proxy_header(
    sock: &mut Socket,
    version: proxy_protocol::Version,
    limit: std::time::Duration,
) -> Result<(Option<SocketAddr>, BytesMut), Option<String>> {
    let deadline = monoio::time::Instant::now() + limit;
    let mut buf = BytesMut::new();
    loop {
        match proxy_protocol::parse(&buf, version) {
            Ok(Some(header)) => {
                let _ = buf.split_to(header.len);
                return Ok((header.source, buf));
            }
            Ok(None) => {}
            Err(e) => return Err(Some(e.to_string())),
        }
        match monoio::time::timeout_at(deadline, sock.read_into(&mut buf)).await {
            Err(_) => {
                return Err(Some(format!(
                    "no complete PROXY {} header within the handshake timeout ({limit:?})",
                    version.as_str()
                )))
            }
            Ok(Err(e)) => return Err(Some(format!("reading the PROXY header failed: {e}"))),
            Ok(Ok(0)) if buf.is_empty() => return Err(None),
            Ok(Ok(0)) => {
                return Err(Some(
                    "the peer closed in the middle of the PROXY header".to_owned(),
                ))
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// During a drain, how long a connection that has sent nothing yet may still send its first
/// request.
const DRAIN_FIRST_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The access line of a connection whose handshake failed: refused (an alert), timed out, or
/// abandoned by the client.
fn log_refused_handshake(
    listener: &Listener,
    peer: SocketAddr,
    verify: &str,
    cause: &str,
    took: std::time::Duration,
    log: &crate::logging::AccessLog,
) {
    if !log.enabled() {
        return;
    }
    Access {
        event: "tls handshake failed",
        listener: &listener.name,
        sni: "",
        peer,
        request_id: None,
        method: None,
        path: None,
        version: None,
        status: None,
        tls: None,
        verify,
        dn: "-",
        cert: None,
        decision: cause,
        upstream: None,
        attempts: None,
        bytes: None,
        handshake_time: Some(took),
        connect_time: None,
        upstream_time: None,
        total_time: None,
    }
    .emit(log);
}

/// How reading a request head ended without a head.
enum HeadEnd {
    /// The client closed (or went idle) between requests: close quietly.
    Closed,
    /// Invalid, too large or truncated: answer this page and close.
    Bad(Page, &'static str),
    /// The head did not arrive in time.
    TimedOut,
    /// The HTTP/2 prior-knowledge preface (a plain listener that speaks h2): it stays in `buf`.
    Http2,
}

impl Session {
    /// Judges the client of this connection. Called once, when the first request (or the TCP
    /// relay) needs it: a connection that never sends anything costs no identity work.
    pub(crate) fn authorize(&self) -> Identity {
        let id = match &self.client {
            Conn::Tls(t) => Identity::establish(&self.listener, Some(t.ssl()), self.peer),
            Conn::Plain(_) => Identity::establish(&self.listener, None, self.peer),
        };
        if let Some(m) = self.stats() {
            m.client_auth(id.refusal.as_ref());
        }
        id
    }

    /// This connection's listener counters in this worker.
    pub(crate) fn stats(&self) -> Option<&crate::metrics::ListenerStats> {
        self.worker.metrics.listener(self.index)
    }

    /// Whether the process is draining: the current response is the connection's last.
    pub(crate) fn draining(&self) -> bool {
        self.worker.drain.started()
    }

    /// Serves HTTP/1.x requests until the connection ends; `Some` with what was read when the
    /// client opened with the HTTP/2 preface instead.
    async fn run(&mut self) -> Option<BytesMut> {
        // Judged at the first request, then kept for the connection's life (boxed: not part of
        // the task's own state before the first request).
        let mut identity: Option<Box<Identity>> = None;
        loop {
            let head = match self.read_head().await {
                Ok(h) => h,
                Err(HeadEnd::Http2) => return Some(std::mem::take(&mut self.buf)),
                Err(HeadEnd::Closed) => return None,
                Err(HeadEnd::TimedOut) => {
                    debug!(listener = %self.listener.name, peer = %self.peer, "request head timed out");
                    return None;
                }
                Err(HeadEnd::Bad(page, reason)) => {
                    let id = identity.get_or_insert_with(|| Box::new(self.authorize()));
                    self.log_refusal(id, page, reason);
                    Box::pin(self.send_page(page, false, false)).await;
                    return None;
                }
            };
            self.requests += 1;
            let id: &Identity = identity.get_or_insert_with(|| Box::new(self.authorize()));
            let raw = self.buf.split_to(head.head_len).freeze();
            self.bytes = (raw.len() as u64, 0);
            self.connect_time = None;
            let request_id = request_id::of(&head, &raw);
            if let Some(why) = self.listener.misdirected(head.host(&raw)) {
                info!(listener = %self.listener.name, peer = %self.peer, "421: {why}");
                let answer = http::render(Page::Misdirected, false, head.is_head());
                self.bytes.1 += answer.len() as u64;
                self.log_request(
                    id,
                    &head,
                    &raw,
                    Page::Misdirected.status(),
                    &why,
                    &request_id,
                    None,
                    None,
                    Instant::now(),
                );
                self.send_rendered(&answer, false).await;
                return None;
            }
            if let Some(refusal) = &id.refusal {
                let page = refusal.page();
                let reason = refusal.to_string();
                let answer = http::render(page, false, head.is_head());
                self.bytes.1 += answer.len() as u64;
                self.log_request(
                    id,
                    &head,
                    &raw,
                    page.status(),
                    &reason,
                    &request_id,
                    None,
                    None,
                    Instant::now(),
                );
                Box::pin(self.send_rendered(&answer, false)).await;
                return None;
            }
            // Boxed: between requests the connection waits in `read_head`, holding none of it.
            let keep_alive = Box::pin(forward::forward(self, id, &head, &raw, &request_id)).await;
            let limit = self.listener.limits.max_requests_per_connection;
            if !keep_alive || (limit > 0 && self.requests >= limit) || self.draining() {
                Box::pin(self.close()).await;
                return None;
            }
        }
    }

    /// Reads until a complete request head is buffered. The first request gets the head
    /// timeout from the start; later ones wait for their first byte under the keep-alive
    /// timeout, holding no read buffer meanwhile.
    async fn read_head(&mut self) -> Result<RequestHead, HeadEnd> {
        let t = self.listener.timeouts;
        let started = monoio::time::Instant::now();
        if self.buf.is_empty() {
            // Wait holding no buffer: an idle connection shrinks to its bare TLS state (no read
            // buffer parked in the kernel, none in user space).
            self.buf = BytesMut::new();
            self.client.release_buffers();
            if self.requests == 0 {
                // A new connection is idle too once a drain has gone on for a moment: a client
                // that just connected sends its first request well within it. One timer at a
                // time (each is ~750 bytes of the task's state): the grace period's replaces the
                // head timeout's, and ends no later.
                let drain = self.worker.drain.clone();
                let head_deadline = started + t.request_head;
                let drained = monoio::select! {
                    r = monoio::time::timeout_at(head_deadline, self.client.readable()) => match r {
                        Err(_) => return Err(HeadEnd::TimedOut),
                        Ok(Err(_)) => return Err(HeadEnd::Closed),
                        Ok(Ok(())) => false,
                    },
                    _ = drain.fired() => true,
                };
                if drained {
                    let grace_end = monoio::time::Instant::now() + DRAIN_FIRST_REQUEST_GRACE;
                    let wait = self.client.readable();
                    match monoio::time::timeout_at(grace_end.min(head_deadline), wait).await {
                        Err(_) if grace_end <= head_deadline => return Err(HeadEnd::Closed),
                        Err(_) => return Err(HeadEnd::TimedOut),
                        Ok(Err(_)) => return Err(HeadEnd::Closed),
                        Ok(Ok(())) => {}
                    }
                }
            } else {
                // Idle between requests: a drain closes the connection at once.
                let drain = self.worker.drain.clone();
                if drain.started() {
                    return Err(HeadEnd::Closed);
                }
                monoio::select! {
                    r = timeout(t.keepalive_idle, self.client.readable()) => {
                        if !matches!(r, Ok(Ok(()))) {
                            return Err(HeadEnd::Closed);
                        }
                    }
                    _ = drain.fired() => return Err(HeadEnd::Closed),
                }
            }
        }
        // The first request's head timeout counts from the handshake; a later one's from its
        // first byte.
        let deadline = if self.requests == 0 {
            started + t.request_head
        } else {
            monoio::time::Instant::now() + t.request_head
        };
        let limits = http::Limits {
            max_head_bytes: self.listener.limits.max_header_bytes,
        };
        // A plain listener that speaks h2 takes the prior-knowledge preface as its first bytes.
        let h2c = self.requests == 0 && self.listener.tls.is_none() && self.listener.protocols.h2;
        loop {
            let n = self.buf.len().min(crate::http2::PREFACE.len());
            let preface = h2c && self.buf[..n] == crate::http2::PREFACE[..n];
            if preface && n == crate::http2::PREFACE.len() {
                return Err(HeadEnd::Http2);
            }
            if !self.buf.is_empty() && !preface {
                match http::parse_request(&self.buf, &limits) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(e) => return Err(HeadEnd::Bad(http::status_page_for(&e), e.reason)),
                }
            }
            match monoio::time::timeout_at(deadline, self.client.read_into(&mut self.buf)).await {
                Err(_) => return Err(HeadEnd::TimedOut),
                Ok(Err(e)) => {
                    debug!(peer = %self.peer, "client read failed: {e}");
                    return Err(HeadEnd::Closed);
                }
                Ok(Ok(0)) if self.buf.is_empty() => return Err(HeadEnd::Closed),
                Ok(Ok(0)) => return Err(HeadEnd::Bad(Page::BadRequest, "client closed mid-head")),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Answers one of the built-in pages; the connection closes after it unless `keep_alive`.
    async fn send_page(&mut self, page: Page, keep_alive: bool, head_only: bool) {
        let bytes = http::render(page, keep_alive, head_only);
        self.bytes.1 += bytes.len() as u64;
        self.send_rendered(&bytes, keep_alive).await;
    }

    /// Writes a rendered page; the connection closes after it unless `keep_alive`.
    async fn send_rendered(&mut self, bytes: &[u8], keep_alive: bool) {
        let t = self.listener.timeouts.body_idle;
        if timeout(t, self.client.write_all(bytes)).await.is_ok() && !keep_alive {
            self.close().await;
        }
    }

    /// Closes as nginx's lingering close does: FIN first, then read and discard what the client
    /// still sends (an unread body) for a bounded time, so that closing with unread bytes does
    /// not reset the connection and destroy the response before the client read it.
    async fn close(&mut self) {
        const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
        const LINGER_BYTES: usize = 1 << 20;
        if timeout(LINGER_TIME, self.client.shutdown_write())
            .await
            .is_err()
        {
            return;
        }
        let deadline = monoio::time::Instant::now() + LINGER_TIME;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.buf.clear();
            match monoio::time::timeout_at(deadline, self.client.read_into(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => break,
            }
        }
    }

    /// The access line of a request whose head was invalid (there is no method or path).
    fn log_refusal(&self, id: &Identity, page: Page, reason: &str) {
        if let Some(m) = self.stats() {
            m.request(page.status(), std::time::Duration::ZERO);
        }
        if !self.worker.config.access_log.enabled() {
            return;
        }
        // The admission decision so far: the rule that admitted, or why the client is refused.
        let decision = match &id.refusal {
            Some(refusal) => format!("{refusal}; bad request: {reason}"),
            None => format!("{}; bad request: {reason}", id.admitted_by),
        };
        Access {
            status: Some(page.status()),
            decision: &decision,
            ..self.access(id, "bad request")
        }
        .emit(&self.worker.config.access_log);
    }

    /// The access line: who, what, the admission decision, the outcome and how long it took.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_request(
        &self,
        id: &Identity,
        head: &RequestHead,
        raw: &[u8],
        status: u16,
        decision: &str,
        request_id: &request_id::RequestId,
        upstream: Option<(SocketAddr, std::time::Duration)>,
        attempts: Option<usize>,
        started: Instant,
    ) {
        let total = started.elapsed();
        if let Some(m) = self.stats() {
            m.request(status, total);
        }
        if !self.worker.config.access_log.enabled() {
            return;
        }
        Access {
            request_id: Some(request_id.as_str()),
            method: Some(head.method.as_str()),
            path: Some(head.path(raw)),
            version: Some(if head.version == ::http::Version::HTTP_10 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            }),
            status: Some(status),
            decision,
            upstream: Some(upstream.map(|(addr, _)| addr)),
            attempts,
            bytes: Some(self.bytes),
            connect_time: self.connect_time,
            upstream_time: Some(upstream.map_or(std::time::Duration::ZERO, |(_, d)| d)),
            total_time: Some(total),
            ..self.access(id, "request")
        }
        .emit(&self.worker.config.access_log);
    }

    /// An access line with this connection's fields filled in and the others left out.
    pub(crate) fn access<'a>(&'a self, id: &'a Identity, event: &'static str) -> Access<'a> {
        Access {
            event,
            listener: &self.listener.name,
            sni: &self.listener.sni_label,
            peer: self.peer,
            request_id: None,
            method: None,
            path: None,
            version: None,
            status: None,
            tls: match &self.client {
                Conn::Tls(t) => Some(crate::logging::TlsFacts {
                    version: t.ssl().version_str(),
                    cipher: t
                        .ssl()
                        .current_cipher()
                        .map_or("-", |c| c.standard_name().unwrap_or(c.name())),
                    resumed: t.ssl().session_reused(),
                }),
                Conn::Plain(_) => None,
            },
            verify: &id.verify,
            dn: &id.subject,
            cert: id
                .cert
                .as_ref()
                .map(|c| (c.issuer_rfc2253(), c.serial(), c.fingerprint())),
            decision: "-",
            upstream: None,
            attempts: None,
            bytes: None,
            handshake_time: self.handshake_time,
            connect_time: None,
            upstream_time: None,
            total_time: None,
        }
    }
}

/// The size of one connection task's state: the future of [`serve`], which monoio allocates
/// once per connection and keeps for its whole life, idle or not (perf/RESULTS.md, memory).
pub fn task_size() -> usize {
    fn size<A, B, C, D, F: std::future::Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    size(serve)
}

#[cfg(test)]
mod tests {
    /// An idle connection's task is the `serve` future: its phases (handshake, forwarding, HTTP/2,
    /// the TCP relay, the closing) are boxed and it waits under one timer at a time, so that it
    /// keeps only what waiting needs: 5,248 bytes before, 2,560 after (debug build;
    /// `ci_workloads idle-connection` prints the release size).
    #[test]
    fn a_connection_task_keeps_only_what_waiting_needs() {
        let size = super::task_size();
        println!("serve future: {size} bytes");
        assert!(size <= 3072, "serve future: {size} bytes");
    }
}
