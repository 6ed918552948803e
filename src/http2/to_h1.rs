//! An HTTP/2 stream forwarded to an HTTP/1.1 upstream over the worker's pools (shared with the
//! HTTP/1.1 forward).
//!
//! Request: pseudo-headers become the request line and `Host`, cookies are joined with `"; "`,
//! `te` is dropped, and the body is framed by its content-length, or chunked when the client did
//! not say (its trailers then become chunked trailers). The body streams: each DATA frame's
//! window is released once its bytes are written upstream, so a slow upstream holds the client
//! back instead of filling memory.
//!
//! Response: connection-specific fields dropped; the body read by content-length, chunked
//! (decoded; its trailers become HTTP/2 trailers) or close, and sent as the client's window
//! allows, under `body_idle`: a client that never opens its window is dropped at that time.
//!
//! Retries follow the HTTP/1.1 forward's rules (`proxy::error::fate`).

use std::fmt::Write as _;
use std::future::poll_fn;
use std::io;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use monoio::time::timeout;
use tracing::warn;

use super::request::Valid;
use super::server::{refuse, send_data, Outcome, Shared};
use crate::config::XfccMode;
use crate::http::StripSet;
use crate::http::{self as h1, xfcc, BodyKind, HeaderClass, ResponseHead};
use crate::proxy::error::{Attempt, Kind};
use crate::proxy::request_id::RequestId;
use crate::proxy::retry::{send_head, Failed, Retries};
use crate::proxy::{BodyError, Side};
use crate::upstream::{Pool, UpstreamConn};

/// Largest read from the upstream at once, and so the largest DATA batch.
const READ_CHUNK: usize = 16 * 1024;

/// Forwards one validated stream, which arrived at `started`, to the listener's (HTTP/1.1)
/// upstream.
pub async fn forward(
    c: &Shared,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    valid: Valid,
    grpc: bool,
    rid: &RequestId,
    started: Instant,
) -> Outcome {
    let admitted_by = &c.identity.admitted_by;
    let (parts, mut body) = req.into_parts();
    let head_only = parts.method == Method::HEAD;
    // An empty decision logs as the connection's own (no string built per request).
    let mut out = Outcome::answered(0, String::new(), 0);

    // Whatever DATA already arrived with the HEADERS: a content-length it contradicts is found
    // here, before anything goes upstream.
    let mut first = Bytes::new();
    let mut ended = body.is_end_stream();
    if !ended {
        match poll_fn(|cx| match body.poll_data(cx) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
        })
        .await
        {
            None => {}
            Some(None) => ended = true,
            Some(Some(Ok(data))) => {
                let _ = body.flow_control().release_capacity(data.len());
                first = data;
                ended = body.is_end_stream();
            }
            Some(Some(Err(e))) => {
                respond.send_reset(e.reason().unwrap_or(Reason::PROTOCOL_ERROR));
                out.client_gone = e.is_reset() && e.is_remote();
                out.status = 400;
                out.decision = format!("{admitted_by}; reset: {e}");
                return out;
            }
        }
    }
    let length = match valid.content_length {
        Some(n) => Some(n),
        None if ended && (!first.is_empty() || expects_body(&parts.method)) => {
            Some(first.len() as u64)
        }
        None => None,
    };
    let chunked = !ended && length.is_none();
    let rewrite = Rewrite {
        strip: &c.listener.strip,
        add: &c.add_h1,
        xfcc: (c.listener.headers.xfcc == XfccMode::Forward).then_some(c.identity.xfcc.as_deref()),
        rid,
    };
    let head = request_head(&parts, &rewrite, length, chunked);
    out.bytes.0 = first.len() as u64;

    let pool = c.worker.pools[c.listener.upstream].clone();
    let sending = Sending {
        head,
        first,
        ended,
        chunked,
        idempotent: is_idempotent(&parts.method),
        head_only,
    };
    // A client waiting for 100 Continue gets it from certgate, which reads the body anyway;
    // the upstream never sees the expectation (it would wait for a 100 of its own to be read).
    if !ended && expects_continue(&parts.headers) {
        let mut interim = Response::new(());
        *interim.status_mut() = http::StatusCode::CONTINUE;
        let _ = respond.send_informational(interim);
    }
    // Awaited before the match: a future awaited in a match's scrutinee stays allocated in
    // this future's state through every arm (the relay's future beside it, ~2 KiB per stream).
    let attempted = attempt_upstreams(c, &pool, &sending, &mut body, &mut respond, &mut out).await;
    match attempted {
        Ok((up, resp, raw, buf, attempts)) => {
            out.attempts = Some(attempts);
            let addr = up.addr;
            out.upstream = Some((addr, started.elapsed()));
            out.status = resp.status;
            let relayed =
                respond_with(c, &mut respond, &pool, up, &resp, &raw, buf, head_only).await;
            match relayed {
                Ok(sent) => out.bytes.1 += sent,
                Err((sent, e)) => {
                    out.bytes.1 += sent;
                    warn!(upstream = %addr, peer = %c.peer, "HTTP/2 response relay failed: {e}");
                    respond.send_reset(Reason::INTERNAL_ERROR);
                    out.decision = format!("{admitted_by}; {e}");
                }
            }
        }
        Err(failed) => {
            out.attempts = Some(failed.attempts);
            let error = &failed.last;
            out.client_gone = error.side() == crate::proxy::Source::Client;
            let page = error.page();
            if let Some(server) = error.server.filter(|_| error.reached()) {
                out.upstream = Some((server, started.elapsed()));
            }
            if matches!(page, Some(h1::Page::BadGateway | h1::Page::GatewayTimeout)) {
                warn!(listener = %c.listener.name, peer = %c.peer, "upstream failed: {error}");
            }
            match page {
                Some(page) => {
                    out.status = page.status();
                    out.bytes.1 += refuse(&mut respond, page, grpc, head_only, c).await;
                }
                None => respond.send_reset(Reason::CANCEL),
            }
            out.decision = format!("{admitted_by}; {failed}");
        }
    }
    out
}

/// The request as it goes to every attempt.
struct Sending {
    /// The HTTP/1.1 head.
    head: Vec<u8>,
    /// Body bytes already taken from the stream.
    first: Bytes,
    /// The stream's body ended with `first`.
    ended: bool,
    /// The body goes chunked.
    chunked: bool,
    idempotent: bool,
    /// A HEAD request: no response body, whatever the head says.
    head_only: bool,
}

type Answered = (UpstreamConn, ResponseHead, Bytes, BytesMut, usize);

/// Chooses servers and sends the request until one answers with a final head, as the
/// HTTP/1.1 forward's retry rules allow ([`Retries`]).
async fn attempt_upstreams(
    c: &Shared,
    pool: &Pool,
    s: &Sending,
    body: &mut RecvStream,
    respond: &mut SendResponse<Bytes>,
    out: &mut Outcome,
) -> Result<Answered, Failed> {
    let t = c.listener.timeouts;
    let key = pool.key(
        c.identity.cert.as_ref().map(|x| x.fingerprint()),
        c.peer.ip(),
    );
    let mut tries = Retries::new(pool, key);
    loop {
        let (server, _active) = tries.next_server()?;
        let addr = pool.server(server).addr;
        let (checkout, connecting) = pool.checkout(addr, t.upstream_connect).await;
        out.connect_time = Some(connecting);
        let mut attempt = Attempt {
            idempotent: s.idempotent,
            body_sent: false,
            answered: false,
            reused: false,
        };
        let kind = match checkout {
            Err(e) => Kind::Connect(e),
            Ok(mut up) => {
                attempt.reused = up.reused;
                match exchange(c, &mut up, s, body, respond, &mut attempt, out).await {
                    Ok((resp, raw, buf)) => {
                        pool.succeeded(server);
                        return Ok((up, resp, raw, buf, tries.attempts()));
                    }
                    Err(kind) => kind,
                }
            }
        };
        if let Some(failed) = tries.failed(server, attempt, kind) {
            return Err(failed);
        }
    }
}

/// Sends the head and the body, then reads the final response head (1xx interims are not
/// relayed: HTTP/2 clients get the final answer).
async fn exchange(
    c: &Shared,
    up: &mut UpstreamConn,
    s: &Sending,
    body: &mut RecvStream,
    respond: &mut SendResponse<Bytes>,
    attempt: &mut Attempt,
    out: &mut Outcome,
) -> Result<(ResponseHead, Bytes, BytesMut), Kind> {
    let t = c.listener.timeouts;
    // The head alone (most requests) goes as it is; body bytes already in hand join it.
    let joined;
    let wire = if s.first.is_empty() && !(s.ended && s.chunked) {
        &s.head
    } else {
        let mut w = Vec::with_capacity(s.head.len() + s.first.len() + 16);
        w.extend_from_slice(&s.head);
        if !s.first.is_empty() {
            // A retry sends these again; the rest of a body never is.
            push_chunk(&mut w, &s.first, s.chunked);
        }
        if s.ended && s.chunked {
            w.extend_from_slice(b"0\r\n\r\n");
        }
        joined = w;
        &joined
    };
    send_head(&mut up.conn, wire, s.ended, t.upstream_read).await?;
    if !s.ended {
        attempt.body_sent = true;
        out.bytes.0 += send_body(c, up, body, s.chunked)
            .await
            .map_err(Kind::RequestBody)?;
    }
    // Grown by what arrives (a small response is one allocation of its size, not 8 KiB).
    let mut buf = BytesMut::new();
    let limits = h1::Limits {
        max_head_bytes: 64 * 1024,
    };
    loop {
        if !buf.is_empty() {
            match h1::parse_response(&buf, s.head_only, &limits) {
                Ok(Some(head)) => {
                    attempt.answered = true;
                    let raw = buf.split_to(head.head_len).freeze();
                    if head.status == 101 {
                        return Err(Kind::InvalidResponse(h1::HeadError::bad_upstream(
                            "101 Switching Protocols on an HTTP/2 stream",
                        )));
                    }
                    if head.is_informational {
                        continue;
                    }
                    return Ok((head, raw, buf));
                }
                Ok(None) => {}
                Err(e) => return Err(Kind::InvalidResponse(e)),
            }
        }
        // A client that resets the stream meanwhile (a cancelled call) frees the upstream
        // connection now, not when the answer comes.
        let read = monoio::select! {
            r = timeout(t.upstream_read, up.conn.read_into(&mut buf)) => r,
            r = poll_fn(|cx| respond.poll_reset(cx)) => {
                let why = match r {
                    Ok(reason) => format!("client reset the stream ({reason:?})"),
                    Err(e) => format!("client stream failed: {e}"),
                };
                return Err(Kind::ClientWrite(io::Error::new(io::ErrorKind::ConnectionReset, why)));
            }
        };
        match read {
            Err(_) => return Err(Kind::ResponseTimeout),
            Ok(Err(e)) => return Err(Kind::ReadResponse(e)),
            Ok(Ok(0)) => {
                return Err(Kind::Closed {
                    mid_head: !buf.is_empty(),
                })
            }
            Ok(Ok(_)) => attempt.answered = true,
        }
    }
}

/// Streams the rest of the request body, releasing the client's window as bytes are written
/// upstream; chunked, with the client's trailers, when `chunked`.
async fn send_body(
    c: &Shared,
    up: &mut UpstreamConn,
    body: &mut RecvStream,
    chunked: bool,
) -> Result<u64, BodyError> {
    let idle = c.listener.timeouts.body_idle;
    let client_err = |e: h2::Error| BodyError::Io(Side::Client, io::Error::other(e));
    let mut n = 0u64;
    let mut wire = Vec::new();
    loop {
        let data = match timeout(idle, body.data()).await {
            Err(_) => return Err(BodyError::Timeout(Side::Client)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(client_err(e)),
            Ok(Some(Ok(data))) => data,
        };
        let len = data.len();
        wire.clear();
        push_chunk(&mut wire, &data, chunked);
        match timeout(idle, up.conn.write_all(&wire)).await {
            Err(_) => return Err(BodyError::Timeout(Side::Upstream)),
            Ok(Err(e)) => return Err(BodyError::Io(Side::Upstream, e)),
            Ok(Ok(())) => {}
        }
        let _ = body.flow_control().release_capacity(len);
        n += len as u64;
    }
    if chunked {
        wire.clear();
        wire.extend_from_slice(b"0\r\n");
        let trailers = match timeout(idle, body.trailers()).await {
            Err(_) => return Err(BodyError::Timeout(Side::Client)),
            Ok(Err(e)) => return Err(client_err(e)),
            Ok(Ok(t)) => t,
        };
        for (name, value) in trailers.iter().flat_map(|t| t.iter()) {
            push_field(&mut wire, name.as_str().as_bytes(), value.as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        match timeout(idle, up.conn.write_all(&wire)).await {
            Err(_) => return Err(BodyError::Timeout(Side::Upstream)),
            Ok(Err(e)) => return Err(BodyError::Io(Side::Upstream, e)),
            Ok(Ok(())) => {}
        }
    }
    Ok(n)
}

/// Sends the response head and relays the body.
///
/// # Return
/// The body bytes sent and whether the upstream connection may go back to the pool; or what
/// was sent before the relay failed, and why.
#[allow(clippy::too_many_arguments)]
async fn respond_with(
    c: &Shared,
    respond: &mut SendResponse<Bytes>,
    pool: &Pool,
    up: UpstreamConn,
    resp: &ResponseHead,
    raw: &Bytes,
    mut buf: BytesMut,
    head_only: bool,
) -> Result<u64, (u64, BodyError)> {
    let idle = c.listener.timeouts.body_idle;
    let kind = if head_only { BodyKind::None } else { resp.body };
    // The upstream connection goes back to the pool as soon as the whole body is in hand, not
    // when the client has taken it: under many concurrent streams the pool then keeps up
    // instead of opening a connection per request.
    let mut up = Some(up);
    let release = |up: &mut Option<UpstreamConn>, buf: &BytesMut| {
        if let Some(conn) = up.take() {
            if resp.keep_alive && kind != BodyKind::Close && buf.is_empty() {
                pool.checkin(conn);
            }
        }
    };
    let mut r = Response::new(());
    *r.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *r.headers_mut() = response_fields(resp, raw);
    let client_err = |e: h2::Error| BodyError::Io(Side::Client, io::Error::other(e));
    let mut send = respond
        .send_response(r, kind == BodyKind::None)
        .map_err(|e| (0, client_err(e)))?;
    let mut sent = 0u64;
    match kind {
        BodyKind::None => release(&mut up, &buf),
        BodyKind::Length(mut left) => {
            while left > 0 {
                if buf.is_empty()
                    && upstream_read(&mut up, &mut buf, idle)
                        .await
                        .map_err(|e| (sent, e))?
                        == 0
                {
                    return Err((sent, BodyError::Truncated(Side::Upstream)));
                }
                let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let data = buf.split_to(take).freeze();
                left -= take as u64;
                sent += take as u64;
                if left == 0 {
                    release(&mut up, &buf);
                }
                send_data(&mut send, data, left == 0, idle)
                    .await
                    .map_err(|e| (sent, e))?;
            }
        }
        BodyKind::Chunked => {
            let mut decoder = h1::ChunkDecoder::default();
            loop {
                let (data, done) = decoder
                    .decode(&mut buf)
                    .map_err(|e| (sent, BodyError::Malformed(Side::Upstream, e)))?;
                if !data.is_empty() {
                    sent += data.len() as u64;
                    send_data(&mut send, data.freeze(), false, idle)
                        .await
                        .map_err(|e| (sent, e))?;
                }
                if let Some(trailers) = done {
                    release(&mut up, &buf);
                    if trailers.is_empty() {
                        send_data(&mut send, Bytes::new(), true, idle)
                            .await
                            .map_err(|e| (sent, e))?;
                    } else {
                        send.send_trailers(trailers)
                            .map_err(|e| (sent, client_err(e)))?;
                    }
                    break;
                }
                if upstream_read(&mut up, &mut buf, idle)
                    .await
                    .map_err(|e| (sent, e))?
                    == 0
                {
                    return Err((sent, BodyError::Truncated(Side::Upstream)));
                }
            }
        }
        BodyKind::Close => loop {
            if !buf.is_empty() {
                let data = buf.split().freeze();
                sent += data.len() as u64;
                send_data(&mut send, data, false, idle)
                    .await
                    .map_err(|e| (sent, e))?;
            }
            if upstream_read(&mut up, &mut buf, idle)
                .await
                .map_err(|e| (sent, e))?
                == 0
            {
                send_data(&mut send, Bytes::new(), true, idle)
                    .await
                    .map_err(|e| (sent, e))?;
                break;
            }
        },
    }
    Ok(sent)
}

/// Reads more of the response body into `buf`, within `idle`.
async fn upstream_read(
    up: &mut Option<UpstreamConn>,
    buf: &mut BytesMut,
    idle: Duration,
) -> Result<usize, BodyError> {
    // Released already: the body was complete (never read again).
    let Some(up) = up.as_mut() else {
        return Ok(0);
    };
    buf.reserve(READ_CHUNK);
    match timeout(idle, up.conn.read_into(buf)).await {
        Err(_) => Err(BodyError::Timeout(Side::Upstream)),
        Ok(Err(e)) => Err(BodyError::Io(Side::Upstream, e)),
        Ok(Ok(n)) => Ok(n),
    }
}

/// How a stream's fields change on their way to an HTTP/1.1 upstream.
struct Rewrite<'a> {
    /// Identity-named fields the client may not send.
    strip: &'a StripSet,
    /// The connection's identity fields, as HTTP/1.1 lines.
    add: &'a [u8],
    /// `xfcc = "forward"`: the client's XFCC elements go on, followed by ours (if any).
    xfcc: Option<Option<&'a str>>,
    rid: &'a RequestId,
}

/// The HTTP/1.1 request head, written in one pass from the stream's fields: request line,
/// `Host` from `:authority` (or the client's host field), the client's fields without the
/// connection-specific ones and without the identity-named ones (`strip`, `_` read as `-`),
/// the connection's identity fields, XFCC, the request id, cookies joined, then the framing
/// certgate chose.
fn request_head(
    parts: &http::request::Parts,
    r: &Rewrite<'_>,
    length: Option<u64>,
    chunked: bool,
) -> Vec<u8> {
    // The identity lines (an escaped PEM among them) are most of a head: sized for them.
    let mut out = Vec::with_capacity(512 + r.add.len());
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = match parts.uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => parts
            .headers
            .get(http::header::HOST)
            .map_or(&b""[..], HeaderValue::as_bytes),
    };
    push_field(&mut out, b"host", host);
    let forward_xfcc = r.xfcc.is_some();
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        match name.as_str() {
            "host" | "content-length" | "te" | "transfer-encoding" | "connection"
            | "keep-alive" | "proxy-connection" | "upgrade" | "expect" => {}
            "cookie" => cookies.push(value.as_bytes()),
            "x-request-id" if r.rid.replaced() => {}
            xfcc::LOWER if forward_xfcc => {}
            n if r.strip.contains(n.as_bytes()) => {}
            n => push_field(&mut out, n.as_bytes(), value.as_bytes()),
        }
    }
    out.extend_from_slice(r.add);
    if let Some(ours) = r.xfcc {
        // The client's elements go on, ours after them (as on HTTP/1.1).
        let joined = xfcc::join(
            parts
                .headers
                .get_all(xfcc::LOWER)
                .iter()
                .map(HeaderValue::as_bytes),
            ours,
        );
        if let Some(v) = joined.filter(|v| HeaderValue::from_bytes(v).is_ok()) {
            push_field(&mut out, xfcc::LOWER.as_bytes(), &v);
        }
    }
    if r.rid.generated() {
        push_field(&mut out, b"x-request-id", r.rid.as_str().as_bytes());
    }
    if !cookies.is_empty() {
        out.extend_from_slice(b"cookie: ");
        for (i, c) in cookies.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(c);
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = length {
        let _ = write!(Text(&mut out), "content-length: {n}\r\n");
    } else if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `fmt::Write` into a byte vector.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_chunk(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        let _ = write!(Text(out), "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// The upstream's fields for the client: connection-specific ones (and any the `connection`
/// field names) dropped; names lowercased.
fn response_fields(resp: &ResponseHead, raw: &Bytes) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(resp.headers.len());
    for h in &resp.headers {
        let name = h.name.get(raw);
        // Classified by the parser; nominated as the HTTP/1.1 rewrite reads `Connection`.
        let hop_by_hop = match h.class {
            HeaderClass::Connection
            | HeaderClass::KeepAlive
            | HeaderClass::ProxyConnection
            | HeaderClass::TransferEncoding
            | HeaderClass::Upgrade
            | HeaderClass::Te
            | HeaderClass::Trailer => true,
            HeaderClass::ContentLength => false,
            _ => resp.connection_nominates && h1::nominated(&resp.headers, raw, name),
        };
        if hop_by_hop {
            continue;
        }
        let Ok(n) = HeaderName::from_bytes(name) else {
            continue;
        };
        // A slice of the head the response arrived in: no copy per field.
        if let Ok(v) = HeaderValue::from_maybe_shared(raw.slice_ref(h.value.get(raw))) {
            map.append(n, v);
        }
    }
    map
}

/// The client sent `expect: 100-continue`.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::EXPECT)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Methods whose empty body is still announced (`content-length: 0`), as HTTP/1.1 clients do.
fn expects_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::request_id;

    #[test]
    fn response_fields_drop_connection_specific_ones() {
        let raw = Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive, x-hop, Content-Length\r\nX-Hop: 1\r\n\
              Keep-Alive: timeout=5\r\nTE: trailers\r\nContent-Type: text/plain\r\n\
              Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 3\r\n\r\n",
        );
        let limits = h1::Limits {
            max_head_bytes: 64 * 1024,
        };
        let head = h1::parse_response(&raw, false, &limits)
            .expect("valid")
            .expect("whole");
        let m = response_fields(&head, &raw);
        let names: Vec<&str> = m.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            ["server", "content-type", "set-cookie", "content-length"]
        );
        let cookies: Vec<&[u8]> = m
            .get_all("set-cookie")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
        assert_eq!(m["server"], "up");
        assert_eq!(m["content-length"], "3");
    }

    #[test]
    fn request_head_translates_pseudo_headers() {
        let req = Request::builder()
            .method("POST")
            .uri("https://a.example:8443/p?q=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("te", "trailers")
            .header("x-y", "z")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let strip = StripSet::new(&[]);
        let rid = request_id::from_client(Some(b"abc"));
        let plain = Rewrite {
            strip: &strip,
            add: b"",
            xfcc: None,
            rid: &rid,
        };
        let head = String::from_utf8(request_head(&parts, &plain, None, true)).expect("utf8");
        assert_eq!(
            head,
            "POST /p?q=1 HTTP/1.1\r\nhost: a.example:8443\r\nx-y: z\r\ncookie: a=1; b=2\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }

    /// The one-pass rewrite: identity-named fields in any spelling dropped, ours added, the
    /// client's implausible request id replaced, XFCC joined in forward mode.
    #[test]
    fn request_head_rewrites_identity_fields() {
        let req = Request::builder()
            .method("GET")
            .uri("https://a.example/")
            .header("x-ssl-client-s-dn", "CN=forged")
            .header("x_ssl_client_s_dn", "CN=forged2")
            .header("x-request-id", "bad id with spaces")
            .header("x-forwarded-client-cert", "By=a;Hash=b")
            .header("x-keep", "1")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let strip = StripSet::new(&["X-SSL-Client-S-DN"]);
        let rid = request_id::from_client(Some(b"bad id with spaces"));
        assert!(rid.replaced());
        let r = Rewrite {
            strip: &strip,
            add: b"X-SSL-Client-S-DN: CN=real\r\n",
            xfcc: Some(Some("Hash=ours")),
            rid: &rid,
        };
        let head = String::from_utf8(request_head(&parts, &r, None, false)).expect("utf8");
        assert_eq!(
            head,
            format!(
                "GET / HTTP/1.1\r\nhost: a.example\r\nx-keep: 1\r\nX-SSL-Client-S-DN: CN=real\r\n\
                 x-forwarded-client-cert: By=a;Hash=b,Hash=ours\r\nx-request-id: {}\r\n\r\n",
                rid.as_str()
            )
        );
        // Not in forward mode: the client's XFCC is a field like any other unless stripped.
        let r = Rewrite { xfcc: None, ..r };
        let head = String::from_utf8(request_head(&parts, &r, None, false)).expect("utf8");
        assert!(
            head.contains("x-forwarded-client-cert: By=a;Hash=b\r\n"),
            "{head}"
        );
        assert!(!head.contains("forged"), "{head}");
    }
}
