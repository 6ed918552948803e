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
//! gets one more try on a new connection. The decision is `error::fate`, a pure function of
//! what the attempt had done and how it failed.
//!
//! Phases: `attempt_upstreams` (choose, connect, `exchange`, retry) until a server answers; then
//! `respond` (`send_response_head`, then `relay_response`, or `body::tunnel` after a 101), or
//! `answer_failure`; then one access line, written by `forward` from the `Outcome`.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::time::timeout;
use tracing::{debug, warn};

use super::body::{self, BodyError, Side};
use super::error::{Attempt, Error, Kind};
use super::identity::Identity;
use super::request_id::{self, RequestId};
use super::retry::{send_head, Failed, Retries};
use super::Session;
use crate::http::{self, BodyKind, Page, RequestHead, ResponseHead};
use crate::upstream::balance::Active;
use crate::upstream::{Pool, UpstreamConn};

/// Forwards one request: `attempt_upstreams` until one answers, then `send_response_head` and
/// `relay_response` (or `tunnel` after a 101), or `answer_failure`; then one access line.
/// Returns whether the client connection may carry another request.
pub async fn forward(
    s: &mut Session,
    id: &Identity,
    head: &RequestHead,
    raw: &Bytes,
    request_id: &RequestId,
) -> bool {
    let started = Instant::now();
    let mut upstream_head = Vec::with_capacity(raw.len() + 1024);
    let xfcc = match s.listener.headers.xfcc {
        crate::config::XfccMode::Forward => http::xfcc::forwarded(head, raw, id.xfcc.as_deref()),
        _ => None,
    };
    let mut add: Vec<(&str, &[u8])> = Vec::with_capacity(id.headers.len() + 2);
    add.extend(id.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    if let Some(v) = &xfcc {
        add.push((http::xfcc::HEADER, v));
    }
    if request_id.generated() {
        add.push((request_id::HEADER, request_id.as_str().as_bytes()));
    }
    let ctx = http::RewriteCtx {
        strip: &s.listener.strip,
        add: &add,
    };
    http::rewrite_request(head, raw, &ctx, &mut upstream_head);
    if request_id.replaced() {
        request_id::remove_client_header(&mut upstream_head, request_id.as_str());
    }

    let pool = s.worker.pools[s.listener.upstream].clone();
    if pool.upstream().protocol == crate::config::UpstreamProtocol::H2 {
        // The upstream speaks HTTP/2: the request goes as a stream of its own.
        let done = super::to_h2::forward(s, id, head, raw, &upstream_head, &pool).await;
        let end = match done.error {
            None => End::Complete,
            Some(last) => End::Failed(Failed {
                earlier: Vec::new(),
                last,
                attempts: done.attempts,
            }),
        };
        s.log_request(
            id,
            head,
            raw,
            done.status,
            &Decision(&id.admitted_by, &end).to_string(),
            request_id,
            done.upstream,
            Some(done.attempts),
            started,
        );
        return done.keep_alive;
    }
    let (outcome, attempts) = match attempt_upstreams(s, id, &pool, head, &upstream_head).await {
        Ok(answer) => {
            let attempts = answer.attempts;
            (respond(s, head, &pool, answer, started).await, attempts)
        }
        Err(failed) => {
            let attempts = failed.attempts;
            (answer_failure(s, head, failed, started).await, attempts)
        }
    };
    s.log_request(
        id,
        head,
        raw,
        outcome.status,
        &Decision(&id.admitted_by, &outcome.end).to_string(),
        request_id,
        outcome.upstream,
        Some(attempts),
        started,
    );
    outcome.keep_alive
}

/// How a forwarded request ended: what its access line says and whether the client
/// connection goes on.
struct Outcome {
    /// The status sent to the client (0: none).
    status: u16,
    /// The server that answered (or was reached last) and the time to its answer.
    upstream: Option<(SocketAddr, Duration)>,
    end: End,
    keep_alive: bool,
}

enum End {
    /// The response was relayed whole.
    Complete,
    /// A 101 tunnel closed on both sides after these bytes (client to upstream, back).
    Tunnel(u64, u64),
    /// The request failed, after the attempts before it failed.
    Failed(Failed),
}

/// The access line's decision: what admitted the client, then how the exchange ended.
struct Decision<'a>(&'a str, &'a End);

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admitted_by = self.0;
        match self.1 {
            End::Complete => f.write_str(admitted_by),
            End::Tunnel(a, b) => write!(f, "{admitted_by}; tunnel closed after {a}+{b} bytes"),
            End::Failed(failed) => write!(f, "{admitted_by}; {failed}"),
        }
    }
}

/// An upstream's final (or 101) response head, on the connection it came from.
struct Answer<'p> {
    up: UpstreamConn,
    resp: Response,
    /// Response bytes read past the head.
    buf: BytesMut,
    /// The request counts for `least_conn` on its server until the response is relayed.
    _active: Active<'p>,
    /// Attempts made, this one included.
    attempts: usize,
}

/// Runs first: chooses servers and sends the request until one answers with a final head
/// (or a 101), as the module's retry rules allow ([`fate`]), reporting each attempt to the
/// shared passive health.
///
/// # Return
/// The answer, or every attempt's failure when none answered (the last one decides the page).
async fn attempt_upstreams<'p>(
    s: &mut Session,
    id: &Identity,
    pool: &'p Pool,
    head: &RequestHead,
    upstream_head: &[u8],
) -> Result<Answer<'p>, Failed> {
    let t = s.listener.timeouts;
    let idempotent = is_idempotent(head);
    let key = pool.key(id.cert.as_ref().map(|c| c.fingerprint()), s.peer.ip());
    let mut tries = Retries::new(pool, key);
    loop {
        let (server, active) = tries.next_server()?;
        let addr = pool.server(server).addr;
        let (checkout, connecting) = pool.checkout(addr, t.upstream_connect).await;
        s.connect_time = Some(connecting);
        let (kind, attempt) = match checkout {
            // Nothing was sent.
            Err(e) => (
                Kind::Connect(e),
                Attempt {
                    idempotent,
                    body_sent: false,
                    answered: false,
                    reused: false,
                },
            ),
            Ok(up) => match exchange(s, head, upstream_head, up).await {
                Ok((up, resp, buf)) => {
                    pool.succeeded(server);
                    return Ok(Answer {
                        up,
                        resp,
                        buf,
                        _active: active,
                        attempts: tries.attempts(),
                    });
                }
                Err((kind, attempt)) => (kind, attempt),
            },
        };
        if let Some(failed) = tries.failed(server, attempt, kind) {
            return Err(failed);
        }
    }
}

/// Runs when no upstream answered: sends the page the last failure calls for (502, 504, 400,
/// 408, or none when the client went away).
///
/// # Return
/// The outcome; the client connection goes on after a 502 or 504, as nginx's, when no unread
/// request body is left.
async fn answer_failure(
    s: &mut Session,
    head: &RequestHead,
    failed: Failed,
    started: Instant,
) -> Outcome {
    let page = failed.last.page();
    let gateway = matches!(page, Some(Page::BadGateway | Page::GatewayTimeout));
    if gateway {
        warn!(listener = %s.listener.name, peer = %s.peer, "upstream failed: {failed}");
    }
    let upstream = failed
        .last
        .server
        .filter(|_| failed.last.reached())
        .map(|a| (a, started.elapsed()));
    let keep_alive = head.keep_alive && head.body == BodyKind::None && gateway && !s.draining();
    if let Some(page) = page {
        s.send_page(page, keep_alive, head.is_head()).await;
    }
    Outcome {
        status: page.map_or(0, |p| p.status()),
        upstream,
        end: End::Failed(failed),
        keep_alive,
    }
}

/// Runs once an upstream answered: `send_response_head`, then `tunnel` for a 101 or
/// `relay_response`; a connection whose response was read whole goes back to the pool.
async fn respond(
    s: &mut Session,
    head: &RequestHead,
    pool: &Pool,
    answer: Answer<'_>,
    started: Instant,
) -> Outcome {
    let Answer {
        mut up,
        resp,
        mut buf,
        _active,
        ..
    } = answer;
    let status = resp.status;
    let upstream = Some((up.addr, started.elapsed()));
    let failed = |last: Error| Outcome {
        status,
        upstream,
        end: End::Failed(Failed {
            earlier: Vec::new(),
            last,
            attempts: 0,
        }),
        keep_alive: false,
    };

    // The client may keep the connection when it asked to, its body was read to the end and
    // the response is not delimited by closing.
    let mut keep_alive = head.keep_alive && resp.head.body != BodyKind::Close;
    let expect_refused = head.expect_continue && head.body != BodyKind::None && !resp.sent_continue;
    // The connection's last request (max_requests_per_connection; keepalive_idle = 0 sets it to
    // 1) says so, as nginx does, rather than leave the client to find the close.
    let limit = s.listener.limits.max_requests_per_connection;
    if limit > 0 && s.requests >= limit {
        keep_alive = false;
    }
    if expect_refused {
        // The body the client held back never came; the connection's framing is unknown.
        keep_alive = false;
    }
    if s.draining() {
        // The process is stopping: this response says it is the connection's last.
        keep_alive = false;
    }

    let kind = match send_response_head(s, head, &resp, &mut buf, keep_alive).await {
        Ok(kind) => kind,
        Err(e) => return failed(Error::new(Kind::ClientWrite(e), None)),
    };
    if status == 101 {
        let idle = s.listener.timeouts.body_idle;
        let from_client = std::mem::take(&mut s.buf);
        let end = match body::tunnel(&mut s.client, from_client, &mut up.conn, buf, idle).await {
            Ok((a, b)) => {
                s.bytes.0 += a;
                s.bytes.1 += b;
                End::Tunnel(a, b)
            }
            Err(e) => return failed(Error::new(Kind::Tunnel(e), None)),
        };
        return Outcome {
            status,
            upstream,
            end,
            keep_alive: false,
        };
    }
    if let Err(e) = relay_response(s, &mut up, &mut buf, kind).await {
        warn!(upstream = %up.addr, peer = %s.peer, "response body relay failed: {e}");
        return failed(Error::new(Kind::ResponseBody(e), None));
    }
    if resp.head.keep_alive && kind != BodyKind::Close && buf.is_empty() && !expect_refused {
        pool.checkin(up);
    }
    Outcome {
        status,
        upstream,
        end: End::Complete,
        keep_alive,
    }
}

/// Runs once the final (or 101) response head is in: rewrites it for the client (its
/// keep-alive decision included) and sends it, with the body when that was already read whole
/// (one TLS record, one send).
///
/// # Return
/// What is left of the body to relay; an error when writing to the client failed or timed out
/// (`body_idle`).
async fn send_response_head(
    s: &mut Session,
    head: &RequestHead,
    resp: &Response,
    buf: &mut BytesMut,
    keep_alive: bool,
) -> Result<BodyKind, std::io::Error> {
    let mut out = Vec::with_capacity(resp.head.head_len + 64);
    // HTTP/1.0 clients keep a connection only when told so.
    let http10 = head.version == ::http::Version::HTTP_10;
    let extra: &[(&str, &[u8])] = if http10 && keep_alive {
        &[("Connection", b"keep-alive")]
    } else {
        &[]
    };
    http::rewrite_response(&resp.head, &resp.raw, &mut out, keep_alive, extra);
    let mut kind = if head.is_head() {
        BodyKind::None
    } else {
        resp.head.body
    };
    if resp.head.status != 101 {
        kind = take_buffered_body(kind, buf, &mut out);
    }
    timeout(s.listener.timeouts.body_idle, s.client.write_all(&out))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))?;
    s.bytes.1 += out.len() as u64;
    Ok(kind)
}

/// Runs after `send_response_head` for a response with a body left to relay: streams it from
/// the upstream to the client.
///
/// # Return
/// `Ok` when the body was relayed whole; the error (with its side) when either side failed,
/// after which only closing the client connection is left.
async fn relay_response(
    s: &mut Session,
    up: &mut UpstreamConn,
    buf: &mut BytesMut,
    kind: BodyKind,
) -> Result<(), BodyError> {
    let idle = s.listener.timeouts.body_idle;
    let n = body::relay(&mut up.conn, Side::Upstream, buf, &mut s.client, kind, idle).await?;
    s.bytes.1 += n;
    Ok(())
}

/// A response head and what came with it.
struct Response {
    head: ResponseHead,
    raw: Bytes,
    status: u16,
    /// A 100 Continue was relayed and the request body sent after it.
    sent_continue: bool,
}

/// Sends the request (head and body) and reads the final response head, relaying 1xx
/// interims to the client.
///
/// # Return
/// The connection, the head, and response bytes already read past the head; or what failed
/// with what the attempt had done by then, for [`fate`].
async fn exchange(
    s: &mut Session,
    head: &RequestHead,
    upstream_head: &[u8],
    mut up: UpstreamConn,
) -> Result<(UpstreamConn, Response, BytesMut), (Kind, Attempt)> {
    let t = s.listener.timeouts;
    let mut attempt = Attempt {
        idempotent: is_idempotent(head),
        body_sent: false,
        answered: false,
        reused: up.reused,
    };
    send_head(
        &mut up.conn,
        upstream_head,
        head.body == BodyKind::None,
        t.upstream_read,
    )
    .await
    .map_err(|kind| (kind, attempt))?;
    let mut body_sent = head.body == BodyKind::None;
    let mut sent_continue = false;
    if !body_sent && !head.expect_continue {
        attempt.body_sent = true;
        send_body(s, head, &mut up)
            .await
            .map_err(|e| (Kind::RequestBody(e), attempt))?;
        body_sent = true;
    }
    // Grown by what arrives (a small response is one allocation of its size, not 8 KiB).
    let mut up_buf = BytesMut::new();
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
        .map_err(|kind| {
            // A 1xx came, or part of a head: the server answered something.
            attempt.answered |= !up_buf.is_empty();
            (kind, attempt)
        })?;
        attempt.answered = true;
        let raw = up_buf.split_to(resp.head_len).freeze();
        if resp.status == 101 || resp.status >= 200 {
            if !body_sent && resp.status < 300 {
                // A final answer without 100 Continue: RFC 9110 lets the client send the body
                // anyway; the upstream gave up waiting for it, so the connection closes after.
                debug!(upstream = %up.addr, "final response before 100-continue");
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
                return Err((Kind::ClientWrite(e), attempt));
            }
        }
        if resp.status == 100 && !body_sent {
            sent_continue = true;
            attempt.body_sent = true;
            send_body(s, head, &mut up)
                .await
                .map_err(|e| (Kind::RequestBody(e), attempt))?;
            body_sent = true;
        }
    }
}

/// Streams the request body from the client to the upstream.
async fn send_body(
    s: &mut Session,
    head: &RequestHead,
    up: &mut UpstreamConn,
) -> Result<(), BodyError> {
    let idle = s.listener.timeouts.body_idle;
    let n = body::relay(
        &mut s.client,
        Side::Client,
        &mut s.buf,
        &mut up.conn,
        head.body,
        idle,
    )
    .await?;
    s.bytes.0 += n;
    Ok(())
}

/// Reads until a complete response head is buffered in `buf`.
async fn read_response_head(
    up: &mut UpstreamConn,
    buf: &mut BytesMut,
    is_head: bool,
    limits: &http::Limits,
    read_timeout: Duration,
) -> Result<ResponseHead, Kind> {
    loop {
        if !buf.is_empty() {
            match http::parse_response(buf, is_head, limits) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => return Err(Kind::InvalidResponse(e)),
            }
        }
        match timeout(read_timeout, up.conn.read_into(buf)).await {
            Err(_) => return Err(Kind::ResponseTimeout),
            Ok(Err(e)) => return Err(Kind::ReadResponse(e)),
            Ok(Ok(0)) => {
                return Err(Kind::Closed {
                    mid_head: !buf.is_empty(),
                })
            }
            Ok(Ok(_)) => {}
        }
    }
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
