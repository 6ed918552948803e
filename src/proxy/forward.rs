//! Forward: one admitted request to the upstream and its response back.
//!
//! The request head is rewritten (identity headers stripped and set, hop-by-hop removed), the
//! body streamed, the response head relayed after 1xx interims, the response body streamed.
//!
//! Tries, as nginx's `proxy_next_upstream error timeout` with `proxy_next_upstream_tries`: a
//! request goes to another server (never one it already tried) when
//! - no connection could be made (refused, timed out, TLS failed): nothing was sent, so any
//!   request may go elsewhere;
//! - for idempotent methods, the server closed or reset the connection before any response
//!   byte while nothing of a request body had been sent (a kept-alive connection closed as
//!   idle is the common case).
//!
//! Never after part of a body was streamed, after a response began, or after a response
//! timeout. At most `tries` attempts count, each failing server reported to the shared passive
//! health. A kept-alive connection found closed is neither counted against its server (the
//! keep-alive race is not a fault) nor against `tries`; when no other server is left, that server
//! gets one more try on a new connection.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::time::timeout;
use tracing::{debug, warn};

use super::body::{self, BodyError, Side};
use super::Session;
use crate::http::{self, BodyKind, Page, RequestHead, ResponseHead};
use crate::upstream::balance::Tried;
use crate::upstream::{ConnectError, UpstreamConn};

/// How a forwarded request failed, and so what the client gets.
enum Failure {
    /// Nothing usable came from the upstream: 502 (if nothing was sent to the client yet).
    BadGateway(String),
    /// The upstream did not connect or answer in time: 504.
    Timeout(String),
    /// The client's request body was malformed or truncated: 400, or just close.
    Client(String, Option<Page>),
    /// The response was under way when something broke: only closing is left.
    Abort(String),
}

impl Failure {
    /// The same failure, its reason prefixed with the earlier tries' reasons.
    fn after(self, earlier: &[String]) -> Failure {
        if earlier.is_empty() {
            return self;
        }
        let with = |r: String| format!("{}; then {r}", earlier.join("; then "));
        match self {
            Self::BadGateway(r) => Self::BadGateway(with(r)),
            Self::Timeout(r) => Self::Timeout(with(r)),
            Self::Client(r, p) => Self::Client(with(r), p),
            Self::Abort(r) => Self::Abort(with(r)),
        }
    }

    fn reason(&self) -> &str {
        match self {
            Self::BadGateway(r) | Self::Timeout(r) | Self::Client(r, _) | Self::Abort(r) => r,
        }
    }
}

/// What a failed attempt says about its server, and whether the request may go to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Closed or reset before any response byte, with nothing of a request body sent: an
    /// idempotent request may be sent again. `pooled`: on a kept-alive connection, which the
    /// server may simply have closed as idle, so not counted against it.
    Unanswered { pooled: bool },
    /// The server failed (counted against it), and the request cannot be sent again.
    Failed,
    /// Nothing to hold against the server: the client failed, or the response was invalid or
    /// already under way.
    Final,
}

/// Forwards one request. Returns whether the client connection may carry another request.
pub async fn forward(s: &mut Session, head: &RequestHead, raw: &Bytes) -> bool {
    let started = Instant::now();
    let mut upstream_head = Vec::with_capacity(raw.len() + 1024);
    let add: Vec<(&str, &[u8])> = s
        .identity
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let ctx = http::RewriteCtx {
        strip: &s.listener.strip,
        add: &add,
    };
    http::rewrite_request(head, raw, &ctx, &mut upstream_head);
    let http10 = head.version == ::http::Version::HTTP_10;
    if http10 {
        // An HTTP/1.0 client cannot read a chunked response: asking the upstream in 1.0 too
        // makes it answer with a length or a close (nginx's proxy_http_version 1.0 default).
        if let Some(end) = upstream_head.iter().position(|&b| b == b'\n') {
            if upstream_head[..end].ends_with(b" HTTP/1.1\r") {
                upstream_head[end - 2] = b'0';
            }
        }
    }

    let pool = s.worker.pools[s.listener.upstream].clone();
    let t = s.listener.timeouts;
    let idempotent = is_idempotent(head);
    let key = pool.key(
        s.identity.cert.as_ref().map(|c| c.fingerprint()),
        s.peer.ip(),
    );
    let mut tried = Tried::default();
    let mut tries_left = pool.tries();
    // A server whose kept-alive connection was found closed: one more try on a new connection
    // when no other server is left.
    let mut stale: Option<usize> = None;
    // The last failure, answered when no try is left; the earlier ones, for the log.
    let mut last: Option<(Failure, Option<std::net::SocketAddr>)> = None;
    let mut earlier: Vec<String> = Vec::new();
    let (mut up, resp, up_buf, _active) = loop {
        let server = match pool.choose(&key, &tried) {
            Some(i) => i,
            None => match stale.take() {
                Some(i) => {
                    pool.discard_idle(pool.server(i).addr);
                    i
                }
                None => {
                    let (failure, addr) = last.take().unwrap_or_else(|| {
                        (Failure::BadGateway("no server is available".into()), None)
                    });
                    return fail(s, head, raw, started, failure.after(&earlier), addr).await;
                }
            },
        };
        tried.insert(server);
        let addr = pool.server(server).addr;
        let active = pool.begin(server);
        let up = match pool.checkout(addr, t.upstream_connect).await {
            Ok(up) => up,
            Err(e) => {
                // Nothing was sent: any request may go to another server.
                pool.failed(server);
                tries_left = tries_left.saturating_sub(1);
                let failure = match e {
                    ConnectError::Timeout => Failure::Timeout(format!("{addr}: connect timed out")),
                    ConnectError::Refused(e) => Failure::BadGateway(format!("{addr}: {e}")),
                    other => Failure::BadGateway(format!("{addr}: {other}")),
                };
                if tries_left == 0 {
                    if let Some((f, _)) = last.take() {
                        earlier.push(f.reason().to_owned());
                    }
                    return fail(s, head, raw, started, failure.after(&earlier), None).await;
                }
                debug!(
                    upstream = %addr,
                    "upstream attempt failed: {}; trying another server",
                    failure.reason()
                );
                if let Some((f, _)) = last.replace((failure, None)) {
                    earlier.push(f.reason().to_owned());
                }
                continue;
            }
        };
        let pooled = up.reused;
        match exchange(s, head, &upstream_head, up).await {
            Ok((up, resp, buf)) => {
                pool.succeeded(server);
                break (up, resp, buf, active);
            }
            Err((failure, fate)) => {
                let again = match fate {
                    Fate::Unanswered { pooled: true } => {
                        stale = Some(server);
                        idempotent
                    }
                    Fate::Unanswered { pooled: false } => {
                        pool.failed(server);
                        tries_left = tries_left.saturating_sub(1);
                        idempotent && tries_left > 0
                    }
                    Fate::Failed => {
                        pool.failed(server);
                        false
                    }
                    Fate::Final => false,
                };
                if !again {
                    if let Some((f, _)) = last.take() {
                        earlier.push(f.reason().to_owned());
                    }
                    return fail(s, head, raw, started, failure.after(&earlier), Some(addr)).await;
                }
                debug!(
                    upstream = %addr,
                    pooled,
                    "upstream attempt failed: {}; trying again",
                    failure.reason()
                );
                if let Some((f, _)) = last.replace((failure, Some(addr))) {
                    earlier.push(f.reason().to_owned());
                }
            }
        }
    };
    let upstream_time = started.elapsed();
    let addr = up.addr;
    let status = resp.status;

    // The client may keep the connection when it asked to, its body was read to the end and
    // the response is not delimited by closing.
    let mut client_keep_alive = head.keep_alive && resp.head.body != BodyKind::Close;
    let expect_refused = head.expect_continue && head.body != BodyKind::None && !resp.sent_continue;
    // The connection's last request (max_requests_per_connection; keepalive_idle = 0 sets it to
    // 1) says so, as nginx does, rather than leave the client to find the close.
    let limit = s.listener.limits.max_requests_per_connection;
    if limit > 0 && s.requests >= limit {
        client_keep_alive = false;
    }
    if expect_refused {
        // The body the client held back never came; the connection's framing is unknown.
        client_keep_alive = false;
    }

    let mut out = Vec::with_capacity(resp.head.head_len + 64);
    // HTTP/1.0 clients keep a connection only when told so.
    let extra: &[(&str, &[u8])] = if http10 && client_keep_alive {
        &[("Connection", b"keep-alive")]
    } else {
        &[]
    };
    http::rewrite_response(&resp.head, &resp.raw, &mut out, client_keep_alive, extra);
    let mut up_buf = up_buf;
    let mut kind = if head.is_head() {
        BodyKind::None
    } else {
        resp.head.body
    };
    if resp.head.status != 101 {
        // A body already read whole goes out with the head: one TLS record, one send.
        kind = take_buffered_body(kind, &mut up_buf, &mut out);
    }
    if let Err(e) = timeout(t.body_idle, s.client.write_all(&out))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        s.log_request(
            head,
            raw,
            status,
            &format!("client write failed: {e}"),
            Some((addr, upstream_time)),
            started,
        );
        return false;
    }

    if resp.head.status == 101 {
        let from_client = std::mem::take(&mut s.buf);
        let res = body::tunnel(
            &mut s.client,
            from_client,
            &mut up.conn,
            up_buf,
            t.body_idle,
        )
        .await;
        let decision = match res {
            Ok((a, b)) => format!(
                "{}; tunnel closed after {a}+{b} bytes",
                s.identity.admitted_by
            ),
            Err(e) => format!("{}; tunnel ended: {e}", s.identity.admitted_by),
        };
        s.log_request(
            head,
            raw,
            status,
            &decision,
            Some((addr, upstream_time)),
            started,
        );
        return false;
    }

    let relayed = body::relay(
        &mut up.conn,
        Side::Upstream,
        &mut up_buf,
        &mut s.client,
        kind,
        t.body_idle,
    )
    .await;
    let decision = &s.identity.admitted_by;
    match relayed {
        Ok(_) => {
            s.log_request(
                head,
                raw,
                status,
                decision,
                Some((addr, upstream_time)),
                started,
            );
            if resp.head.keep_alive
                && kind != BodyKind::Close
                && up_buf.is_empty()
                && !expect_refused
            {
                pool.checkin(up);
            }
            client_keep_alive
        }
        Err(e) => {
            warn!(upstream = %addr, peer = %s.peer, "response body relay failed: {e}");
            s.log_request(
                head,
                raw,
                status,
                &format!("{decision}; response aborted: {e}"),
                Some((addr, upstream_time)),
                started,
            );
            false
        }
    }
}

/// A response head and what came with it.
struct Response {
    head: ResponseHead,
    raw: Bytes,
    status: u16,
    /// A 100 Continue was relayed and the request body sent after it.
    sent_continue: bool,
}

/// Sends the request (head and body) and reads the final response head. Returns the
/// connection, the head, and response bytes already read past the head.
async fn exchange(
    s: &mut Session,
    head: &RequestHead,
    upstream_head: &[u8],
    mut up: UpstreamConn,
) -> Result<(UpstreamConn, Response, BytesMut), (Failure, Fate)> {
    let t = s.listener.timeouts;
    let reused = up.reused;
    let addr = up.addr;
    match timeout(t.upstream_read, up.conn.write_all(upstream_head)).await {
        Err(_) => {
            return Err((
                Failure::Timeout(format!("{addr}: writing the request timed out")),
                Fate::Failed,
            ))
        }
        Ok(Err(e)) => {
            return Err((
                Failure::BadGateway(format!("{addr}: writing the request failed: {e}")),
                Fate::Unanswered { pooled: reused },
            ))
        }
        Ok(Ok(())) => {}
    }
    let mut body_sent = head.body == BodyKind::None;
    let mut sent_continue = false;
    if !body_sent && !head.expect_continue {
        send_body(s, head, &mut up)
            .await
            .map_err(|f| body_fate(f, reused))?;
        body_sent = true;
    }
    // A 1xx came: the server answered something.
    let mut interim = false;
    let mut up_buf = BytesMut::with_capacity(8 * 1024);
    let limits = http::Limits {
        max_head_bytes: 64 * 1024,
    };
    loop {
        let resp = read_response_head(
            &mut up,
            &mut up_buf,
            head.is_head(),
            &limits,
            t.upstream_read,
        )
        .await
        .map_err(|f| {
            let answered = interim || !up_buf.is_empty();
            let body_touched = head.body != BodyKind::None && body_sent;
            let fate = match &f {
                _ if answered => Fate::Final,
                Failure::BadGateway(_) if !body_touched => Fate::Unanswered { pooled: reused },
                // A kept-alive connection may have been closed as idle: not the server's fault.
                Failure::BadGateway(_) if reused => Fate::Final,
                Failure::BadGateway(_) | Failure::Timeout(_) => Fate::Failed,
                _ => Fate::Final,
            };
            (f, fate)
        })?;
        interim = true;
        let raw = up_buf.split_to(resp.head_len).freeze();
        if resp.status == 101 || resp.status >= 200 {
            if !body_sent && resp.status < 300 {
                // A final answer without 100 Continue: RFC 9110 lets the client send the body
                // anyway; the upstream gave up waiting for it, so the connection closes after.
                debug!(upstream = %addr, "final response before 100-continue");
            }
            let status = resp.status;
            return Ok((
                up,
                Response {
                    head: resp,
                    raw,
                    status,
                    sent_continue,
                },
                up_buf,
            ));
        }
        // 1xx interim: relay it (100 only to a client that asked for it; none to HTTP/1.0
        // clients, RFC 9110 §15.2), without its connection-level headers.
        let http10 = head.version == ::http::Version::HTTP_10;
        if !http10 && (resp.status != 100 || head.expect_continue) {
            let mut interim = Vec::with_capacity(raw.len());
            http::rewrite_response(&resp, &raw, &mut interim, true, &[]);
            if let Err(e) = s.client.write_all(&interim).await {
                return Err((
                    Failure::Abort(format!("client write failed: {e}")),
                    Fate::Final,
                ));
            }
        }
        if resp.status == 100 && !body_sent {
            sent_continue = true;
            send_body(s, head, &mut up)
                .await
                .map_err(|f| body_fate(f, reused))?;
            body_sent = true;
        }
    }
}

/// A failed request body is never sent again; it counts against the server when its side
/// failed, except a close on a kept-alive connection (possibly closed as idle meanwhile).
fn body_fate(f: Failure, reused: bool) -> (Failure, Fate) {
    let fate = match f {
        Failure::Timeout(_) => Fate::Failed,
        Failure::BadGateway(_) if !reused => Fate::Failed,
        Failure::BadGateway(_) | Failure::Client(..) | Failure::Abort(_) => Fate::Final,
    };
    (f, fate)
}

async fn send_body(
    s: &mut Session,
    head: &RequestHead,
    up: &mut UpstreamConn,
) -> Result<(), Failure> {
    let idle = s.listener.timeouts.body_idle;
    match body::relay(
        &mut s.client,
        Side::Client,
        &mut s.buf,
        &mut up.conn,
        head.body,
        idle,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(match (&e, e.side()) {
            (BodyError::Malformed(..), _) => Failure::Client(e.to_string(), Some(Page::BadRequest)),
            (BodyError::Timeout(_), Side::Client) => {
                Failure::Client(e.to_string(), Some(Page::RequestTimeout))
            }
            (_, Side::Client) => Failure::Client(e.to_string(), None),
            (BodyError::Timeout(_), Side::Upstream) => Failure::Timeout(e.to_string()),
            (_, Side::Upstream) => Failure::BadGateway(e.to_string()),
        }),
    }
}

async fn read_response_head(
    up: &mut UpstreamConn,
    buf: &mut BytesMut,
    is_head: bool,
    limits: &http::Limits,
    read_timeout: std::time::Duration,
) -> Result<ResponseHead, Failure> {
    let addr = up.addr;
    loop {
        if !buf.is_empty() {
            match http::parse_response(buf, is_head, limits) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure::BadGateway(format!(
                        "{addr}: invalid response: {}",
                        e.reason
                    )))
                }
            }
        }
        match timeout(read_timeout, up.conn.read_into(buf)).await {
            Err(_) => return Err(Failure::Timeout(format!("{addr}: no response in time"))),
            Ok(Err(e)) => {
                return Err(Failure::BadGateway(format!(
                    "{addr}: reading the response failed: {e}"
                )))
            }
            Ok(Ok(0)) => {
                return Err(Failure::BadGateway(format!(
                    "{addr}: upstream closed the connection {}",
                    if buf.is_empty() {
                        "before responding"
                    } else {
                        "mid-head"
                    }
                )))
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Answers a failed forward and logs it. Returns whether the client connection may go on.
async fn fail(
    s: &mut Session,
    head: &RequestHead,
    raw: &[u8],
    started: Instant,
    failure: Failure,
    upstream: Option<std::net::SocketAddr>,
) -> bool {
    let (page, reason) = match failure {
        Failure::BadGateway(r) => (Some(Page::BadGateway), r),
        Failure::Timeout(r) => (Some(Page::GatewayTimeout), r),
        Failure::Client(r, page) => (page, r),
        Failure::Abort(r) => (None, r),
    };
    let status = page.map_or(0, |p| p.status());
    if matches!(page, Some(Page::BadGateway | Page::GatewayTimeout)) {
        warn!(listener = %s.listener.name, peer = %s.peer, "upstream failed: {reason}");
    }
    let up = upstream.map(|a| (a, started.elapsed()));
    s.log_request(
        head,
        raw,
        status,
        &format!("{}; {reason}", s.identity.admitted_by),
        up,
        started,
    );
    // As nginx: after a 502/504 the client may go on, when no unread request body is left.
    let keep_alive = head.keep_alive
        && head.body == BodyKind::None
        && matches!(page, Some(Page::BadGateway | Page::GatewayTimeout));
    if let Some(page) = page {
        s.send_page(page, keep_alive, head.is_head()).await;
    }
    keep_alive
}

/// Moves a response body that is already complete in `buf` behind the head in `out`; returns
/// what is left to relay (`None` when the body was taken).
fn take_buffered_body(kind: BodyKind, buf: &mut BytesMut, out: &mut Vec<u8>) -> BodyKind {
    match kind {
        BodyKind::Length(n) if buf.len() as u64 >= n => {
            let body = buf.split_to(n as usize);
            out.extend_from_slice(&body);
            BodyKind::None
        }
        BodyKind::Chunked => match http::ChunkedScanner::new().scan(buf) {
            Ok(p) if p.done => {
                let body = buf.split_to(p.consumed);
                out.extend_from_slice(&body);
                BodyKind::None
            }
            // Incomplete or malformed: the relay reads on, or reports the error.
            _ => kind,
        },
        _ => kind,
    }
}

fn is_idempotent(head: &RequestHead) -> bool {
    use ::http::Method;
    matches!(
        head.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}
