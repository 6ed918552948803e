//! An HTTP/1.1 request forwarded to a `protocol = "h2"` upstream, as a stream on the worker's
//! multiplexed connection to the server (`upstream::h2`), the way Envoy translates.
//!
//! Request: the head as `forward` rewrote it (identity headers stripped and set, request id,
//! xfcc) becomes the stream's headers: `:method`, `:scheme` from the listener (`https` on TLS,
//! `http` on plain TCP), `:authority` from `Host`, `:path`; connection-specific fields (and those
//! `Connection` names) are dropped, `te` is kept only as `trailers`, `expect` is answered here
//! (certgate sends the `100 Continue` once the stream is open). The body, by `Content-Length`
//! or chunked (its trailers become HTTP/2 trailers), goes up as DATA while it arrives, the next
//! read from the client waiting for the stream's window.
//!
//! Response: the status line and the fields; the body with the server's `content-length` when
//! it gave one, else chunked to an HTTP/1.1 client (HTTP/2 trailers as chunked trailers), or
//! delimited by closing for an HTTP/1.0 one; none for `HEAD`, 204 and 304.
//!
//! Tries and timeouts as for HTTP/2 clients ([`Tries`], [`open_stream`]): a failed connect or a
//! stream refused before any of the body was taken goes to the next server. `upstream_connect`
//! bounds the connection and the wait for a stream, `upstream_read` the response headers once
//! the request is sent, `body_idle` each body read or write. Failures before the response are
//! 502 / 504 pages. Upgrade requests (WebSocket) are refused with 501: HTTP/2 has no `Upgrade`,
//! and extended CONNECT (RFC 8441) is not implemented.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode, Uri, Version};
use monoio::time::timeout;
use tracing::{debug, warn};

use super::body::{BodyError, Side};
use super::error::{Error, Kind};
use super::identity::Identity;
use super::Session;
use crate::conn::Conn;
use crate::http::{BodyKind, ChunkDecoder, Page, RequestHead};
use crate::http2::to_h2::{open_stream, retires, unprocessed, How, Opened, Tries};
use crate::upstream::h2::io_error;
use crate::upstream::Pool;

/// Most fields a rewritten request head may carry (the client's, bounded by the head size
/// limit, and those certgate adds).
const MAX_FIELDS: usize = 512;

/// What a client read takes at most before the stream's window is waited for.
const READ_CHUNK: usize = 16 * 1024;

/// How a request forwarded over HTTP/2 ended, for the access line.
pub(super) struct Done {
    /// The status sent to the client (0: none).
    pub status: u16,
    /// The server that answered (or was reached last) and the time to its answer.
    pub upstream: Option<(SocketAddr, Duration)>,
    /// Servers tried.
    pub attempts: usize,
    /// Why it failed; `None` when the response was relayed whole.
    pub error: Option<Error>,
    /// The client connection may carry another request.
    pub keep_alive: bool,
}

/// Forwards one request, `upstream_head` being its head as rewritten for the upstream, to the
/// HTTP/2 upstream `pool`, and relays the answer.
pub(super) async fn forward(
    s: &mut Session,
    id: &Identity,
    head: &RequestHead,
    raw: &Bytes,
    upstream_head: &[u8],
    pool: &Pool,
) -> Done {
    let started = Instant::now();
    let mut done = Done {
        status: 0,
        upstream: None,
        attempts: 0,
        error: None,
        keep_alive: false,
    };
    if head.upgrade {
        warn!(
            listener = %s.listener.name,
            peer = %s.peer,
            "upgrade request refused with 501: the upstream speaks HTTP/2 (protocol = \"h2\"), \
             which has no Upgrade; point upgrades at a protocol = \"http1\" upstream"
        );
        done.keep_alive = head.keep_alive && head.body == BodyKind::None && !s.draining();
        s.send_page(Page::NotImplemented, done.keep_alive, head.is_head())
            .await;
        done.status = Page::NotImplemented.status();
        return done;
    }
    let request = match h2_request(head, raw, upstream_head, s.listener.tls.is_some()) {
        Ok(r) => r,
        Err(reason) => {
            debug!(peer = %s.peer, "request not translatable to HTTP/2: {reason}");
            s.send_page(Page::BadRequest, false, head.is_head()).await;
            done.status = Page::BadRequest.status();
            return done;
        }
    };
    let key = pool.key(id.cert.as_ref().map(|c| c.fingerprint()), s.peer.ip());
    let mut tries = Tries::new(pool, key);
    let mut continued = false;
    loop {
        let (server, _active) = match tries.next() {
            Ok(x) => x,
            Err(e) => {
                done.attempts = tries.attempts;
                answer_failure(s, head, e, false, &mut done).await;
                return done;
            }
        };
        let addr = pool.server(server).addr;
        let t = s.listener.timeouts;
        let connecting = Instant::now();
        let eos = matches!(head.body, BodyKind::None | BodyKind::Length(0));
        let opened = open_stream(pool, server, &request, eos, t.upstream_connect).await;
        s.connect_time = Some(connecting.elapsed());
        let opened = match opened {
            Ok(o) => o,
            Err((kind, how)) => match tries.failed(server, kind, how) {
                None => continue,
                Some(e) => {
                    done.attempts = tries.attempts;
                    answer_failure(s, head, e, false, &mut done).await;
                    return done;
                }
            },
        };
        if head.expect_continue && !eos && !continued {
            continued = true;
            let wrote = timeout(
                t.body_idle,
                s.client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"),
            )
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            if let Err(e) = wrote {
                done.attempts = tries.attempts;
                done.error = Some(Error::new(Kind::ClientWrite(e), Some(addr)));
                return done;
            }
        }
        let result = exchange(s, head, eos, opened, started).await;
        match result {
            Ok(ex) => {
                pool.succeeded(server);
                done.attempts = tries.attempts;
                done.upstream = Some((addr, ex.answered));
                done.status = ex.status;
                done.keep_alive = ex.keep_alive;
                done.error = ex.error.map(|k| Error::new(k, Some(addr)));
                if let Some(e) = &done.error {
                    warn!(upstream = %addr, peer = %s.peer, "response body relay failed: {e}");
                }
                return done;
            }
            Err(failed) => {
                let body_done = failed.body_done;
                match tries.failed(server, failed.kind, failed.how) {
                    None => continue,
                    Some(e) => {
                        done.attempts = tries.attempts;
                        if e.reached() {
                            done.upstream = Some((addr, started.elapsed()));
                        }
                        answer_failure(s, head, e, body_done, &mut done).await;
                        return done;
                    }
                }
            }
        }
    }
}

/// Sends the page a failure before the response calls for (502, 504; 400 or 408 for a client
/// that failed its body; none when it went away).
async fn answer_failure(
    s: &mut Session,
    head: &RequestHead,
    error: Error,
    body_done: bool,
    done: &mut Done,
) {
    let page = error.page();
    let gateway = matches!(page, Some(Page::BadGateway | Page::GatewayTimeout));
    if gateway {
        warn!(listener = %s.listener.name, peer = %s.peer, "h2 upstream failed: {error}");
    }
    // As nginx: the connection goes on after a 502 or 504 when no unread body is left.
    let body_read = head.body == BodyKind::None || body_done;
    done.keep_alive = head.keep_alive && body_read && gateway && !s.draining();
    if let Some(page) = page {
        s.send_page(page, done.keep_alive, head.is_head()).await;
        done.status = page.status();
    }
    done.error = Some(error);
}

/// The end of an attempt that got a response.
struct Exchanged {
    status: u16,
    /// Time to the response headers.
    answered: Duration,
    keep_alive: bool,
    /// The relay failed after the response head went out (the connection then closes).
    error: Option<Kind>,
}

/// An attempt that failed before any response went to the client.
struct Failed {
    kind: Kind,
    how: How,
    /// The request body was read whole from the client.
    body_done: bool,
}

/// Sends the body, waits for the response headers (the server may answer before the body is
/// in), then relays the response.
async fn exchange(
    s: &mut Session,
    head: &RequestHead,
    eos: bool,
    opened: Opened,
    started: Instant,
) -> Result<Exchanged, Failed> {
    let t = s.listener.timeouts;
    let Opened {
        slot,
        response,
        send: mut up,
    } = opened;
    let taken = Cell::new(0u64);
    let mut body_done = eos;
    let mut response = pin!(response);
    let waited = {
        let mut pump = pin!(pump_body(
            &mut s.client,
            &mut s.buf,
            head.body,
            &mut up,
            t.body_idle,
            &taken
        ));
        let mut pumping = !eos;
        let mut due = (!pumping).then(|| monoio::time::Instant::now() + t.upstream_read);
        let mut sleep = pin!(monoio::time::sleep_until(
            due.unwrap_or_else(|| monoio::time::Instant::now() + t.upstream_read)
        ));
        poll_fn(|cx| {
            if pumping {
                if let Poll::Ready(r) = pump.as_mut().poll(cx) {
                    pumping = false;
                    match r {
                        Ok(()) => body_done = true,
                        Err(e) if e.side() == Some(Side::Client) => {
                            return Poll::Ready(Err(Waited::Body(e)));
                        }
                        // The server may have answered and closed its side: its response
                        // says.
                        Err(e) => debug!("request body to the h2 upstream ended: {e}"),
                    }
                    let at = monoio::time::Instant::now() + t.upstream_read;
                    due = Some(at);
                    sleep.as_mut().reset(at);
                }
            }
            if let Poll::Ready(r) = response.as_mut().poll(cx) {
                return Poll::Ready(r.map_err(Waited::Upstream));
            }
            if due.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Waited::Timeout));
            }
            Poll::Pending
        })
        .await
    };
    let resp = match waited {
        Ok(r) => r,
        Err(w) => {
            up.send_reset(h2::Reason::CANCEL);
            s.bytes.0 += taken.get();
            let (kind, retry) = match w {
                Waited::Body(e) => (Kind::RequestBody(e), false),
                Waited::Timeout => (Kind::ResponseTimeout, false),
                Waited::Upstream(e) => {
                    if retires(&e) {
                        slot.retire();
                    }
                    // Nothing of the body was taken from the client: it can go again.
                    let retry = unprocessed(&e) && taken.get() == 0;
                    (Kind::ReadResponse(io_error(e)), retry)
                }
            };
            return Err(Failed {
                kind,
                how: How {
                    retry,
                    stale: retry && slot.reused,
                    responded: false,
                },
                body_done,
            });
        }
    };
    let answered = started.elapsed();
    s.bytes.0 += taken.get();
    // Answered before the body was in (`body_done` false): the rest of it stays unread, the
    // server gets no more of it (the stream is cancelled once the response is relayed), and the
    // client connection closes after this response.
    drop(up);
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut keep_alive = head.keep_alive && body_done;
    let limit = s.listener.limits.max_requests_per_connection;
    if (limit > 0 && s.requests >= limit) || s.draining() {
        keep_alive = false;
    }
    let framing = framing(head, parts.status, &parts.headers, body.is_end_stream());
    if framing == Framing::Close {
        keep_alive = false;
    }
    let out = response_head(
        head.version,
        head.is_head(),
        parts.status,
        &parts.headers,
        framing,
        keep_alive,
    );
    let relayed = relay_response(s, out, body, framing, t.body_idle).await;
    drop(slot);
    Ok(Exchanged {
        status,
        answered,
        keep_alive: keep_alive && relayed.is_ok(),
        error: relayed.err().map(Kind::ResponseBody),
    })
}

/// Why no response headers came.
enum Waited {
    /// The client failed its request body.
    Body(BodyError),
    /// The upstream stream or connection failed.
    Upstream(h2::Error),
    /// `upstream_read` passed after the request was sent.
    Timeout,
}

/// The client's request body to the upstream stream: DATA as it arrives, chunked trailers as
/// HTTP/2 trailers. `taken` counts body bytes taken from the client.
async fn pump_body(
    client: &mut Conn,
    buf: &mut BytesMut,
    kind: BodyKind,
    up: &mut SendStream<Bytes>,
    idle: Duration,
    taken: &Cell<u64>,
) -> Result<(), BodyError> {
    match kind {
        BodyKind::None | BodyKind::Close | BodyKind::Length(0) => Ok(()),
        BodyKind::Length(mut left) => {
            while left > 0 {
                if buf.is_empty() {
                    fill(client, buf, idle).await?;
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let data = buf.split_to(n).freeze();
                left -= n as u64;
                taken.set(taken.get() + n as u64);
                send_data(up, data, left == 0, idle).await?;
            }
            Ok(())
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkDecoder::default();
            loop {
                let (data, trailers) = decoder
                    .decode(buf)
                    .map_err(|e| BodyError::Malformed(Side::Client, e))?;
                if !data.is_empty() {
                    taken.set(taken.get() + data.len() as u64);
                    send_data(up, data.freeze(), false, idle).await?;
                }
                if let Some(trailers) = trailers {
                    let sent = if trailers.is_empty() {
                        up.send_data(Bytes::new(), true)
                    } else {
                        up.send_trailers(trailers)
                    };
                    return sent.map_err(upstream_error);
                }
                fill(client, buf, idle).await?;
            }
        }
    }
}

/// Reads more of the request body; the client closing is a truncated body.
async fn fill(client: &mut Conn, buf: &mut BytesMut, idle: Duration) -> Result<(), BodyError> {
    buf.reserve(READ_CHUNK);
    match timeout(idle, client.read_into(buf)).await {
        Err(_) => Err(BodyError::Timeout(Side::Client)),
        Ok(Err(e)) => Err(BodyError::Io(Side::Client, e)),
        Ok(Ok(0)) => Err(BodyError::Truncated(Side::Client)),
        Ok(Ok(_)) => Ok(()),
    }
}

fn upstream_error(e: h2::Error) -> BodyError {
    BodyError::Io(Side::Upstream, io_error(e))
}

/// Moves `data` onto the stream as its window allows, each wait bounded by `idle`.
async fn send_data(
    up: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
) -> Result<(), BodyError> {
    if data.is_empty() {
        return match end {
            true => up.send_data(data, true).map_err(upstream_error),
            false => Ok(()),
        };
    }
    while !data.is_empty() {
        up.reserve_capacity(data.len());
        let cap = timeout(idle, poll_fn(|cx| up.poll_capacity(cx)))
            .await
            .map_err(|_| BodyError::Timeout(Side::Upstream))?;
        match cap {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => {
                let part = data.split_to(n.min(data.len()));
                up.send_data(part, end && data.is_empty())
                    .map_err(upstream_error)?;
            }
            Some(Err(e)) => return Err(upstream_error(e)),
            None => return Err(upstream_error(h2::Error::from(h2::Reason::STREAM_CLOSED))),
        }
    }
    Ok(())
}

/// How the response body is delimited for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`HEAD`, 204, 304, or the server ended the stream with its headers).
    None,
    /// The server's `content-length`.
    Length,
    /// Chunked, with the server's trailers (HTTP/1.1 clients).
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients).
    Close,
}

fn framing(head: &RequestHead, status: StatusCode, h: &HeaderMap, ended: bool) -> Framing {
    if head.is_head() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::None
    } else if h.contains_key(header::CONTENT_LENGTH) {
        Framing::Length
    } else if ended {
        Framing::None
    } else if head.version == Version::HTTP_10 {
        Framing::Close
    } else {
        Framing::Chunked
    }
}

/// The HTTP/1.1 response head for the client.
fn response_head(
    version: Version,
    head_only: bool,
    status: StatusCode,
    h: &HeaderMap,
    framing: Framing,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + h.len() * 32);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in h {
        if is_connection_specific(name) {
            continue;
        }
        // 204 and 304 carry no framing fields of a body (RFC 9110 §8.6).
        if name == header::CONTENT_LENGTH && status == StatusCode::NO_CONTENT {
            continue;
        }
        push_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Framing::Chunked => push_field(&mut out, b"transfer-encoding", b"chunked"),
        // An empty body the server ended with its headers. (A HEAD answer without a length
        // says nothing rather than a wrong zero.)
        Framing::None
            if !head_only
                && !h.contains_key(header::CONTENT_LENGTH)
                && status != StatusCode::NO_CONTENT
                && status != StatusCode::NOT_MODIFIED =>
        {
            push_field(&mut out, b"content-length", b"0");
        }
        _ => {}
    }
    if !keep_alive {
        push_field(&mut out, b"connection", b"close");
    } else if version == Version::HTTP_10 {
        push_field(&mut out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Sends the head, then the body as `framing` says, releasing the upstream's window as the
/// client takes each part.
async fn relay_response(
    s: &mut Session,
    mut out: Vec<u8>,
    mut body: RecvStream,
    framing: Framing,
    idle: Duration,
) -> Result<(), BodyError> {
    if framing == Framing::None {
        return write(s, &out, idle).await;
    }
    // The head goes with the first DATA frame when that is at hand (one TLS record).
    let mut pending = Some(std::mem::take(&mut out));
    loop {
        let next = timeout(idle, body.data())
            .await
            .map_err(|_| BodyError::Timeout(Side::Upstream))?;
        let data = match next {
            None => break,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                if let Some(head) = pending.take() {
                    // The head is owed to the client before the connection closes.
                    let _ = write(s, &head, idle).await;
                }
                return Err(upstream_error(e));
            }
        };
        let len = data.len();
        let mut wire = pending.take().unwrap_or_default();
        if framing == Framing::Chunked {
            if len == 0 {
                continue;
            }
            wire.extend_from_slice(format!("{len:x}\r\n").as_bytes());
            wire.extend_from_slice(&data);
            wire.extend_from_slice(b"\r\n");
        } else {
            wire.extend_from_slice(&data);
        }
        write(s, &wire, idle).await?;
        // The client took it: the server may send more.
        let _ = body.flow_control().release_capacity(len);
    }
    let mut wire = pending.take().unwrap_or_default();
    if framing == Framing::Chunked {
        let trailers = timeout(idle, body.trailers())
            .await
            .map_err(|_| BodyError::Timeout(Side::Upstream))?
            .map_err(upstream_error)?;
        wire.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.iter().flatten() {
            if !is_connection_specific(name) {
                push_field(&mut wire, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        wire.extend_from_slice(b"\r\n");
    }
    if !wire.is_empty() {
        write(s, &wire, idle).await?;
    }
    Ok(())
}

/// Writes to the client within `idle`, counting what went out (as the HTTP/1.1 path counts:
/// heads and framing included).
async fn write(s: &mut Session, data: &[u8], idle: Duration) -> Result<(), BodyError> {
    match timeout(idle, s.client.write_all(data)).await {
        Err(_) => Err(BodyError::Timeout(Side::Client)),
        Ok(Err(e)) => Err(BodyError::Io(Side::Client, e)),
        Ok(Ok(())) => {
            s.bytes.1 += data.len() as u64;
            Ok(())
        }
    }
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2), which an HTTP/1.1 message may carry.
fn is_connection_specific(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    )
}

/// The HTTP/2 request for the head `forward` rewrote (`rewritten`): method, `:scheme` (`https`
/// when the client came over TLS), `:authority` from `Host`, `:path` in origin form, and every
/// field but the connection-specific ones, those `Connection` names, `host`, `expect`, and `te`
/// other than `trailers`.
///
/// # Errors
/// What cannot go into an HTTP/2 request (a 400 for the client).
fn h2_request(
    head: &RequestHead,
    raw: &[u8],
    rewritten: &[u8],
    tls: bool,
) -> Result<Request<()>, &'static str> {
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(rewritten) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("the rewritten head does not parse"),
    }
    let mut nominated: Vec<HeaderName> = Vec::new();
    for f in req.headers.iter() {
        if f.name.eq_ignore_ascii_case("connection") {
            for token in f.value.split(|&b| b == b',') {
                if let Ok(n) = HeaderName::from_bytes(token.trim_ascii()) {
                    nominated.push(n);
                }
            }
        }
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut authority: Option<&[u8]> = None;
    for f in req.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| "invalid field name")?;
        if name == header::HOST {
            authority.get_or_insert(f.value);
            continue;
        }
        if is_connection_specific(&name) || name == header::EXPECT || nominated.contains(&name) {
            continue;
        }
        if name == header::TE {
            continue;
        }
        if name == header::CONTENT_LENGTH && head.body == BodyKind::Chunked {
            continue;
        }
        let value = HeaderValue::from_bytes(f.value).map_err(|_| "invalid field value")?;
        headers.append(name, value);
    }
    // `te` is hop-by-hop in HTTP/1.1 (the rewrite dropped it); HTTP/2 keeps it when it says
    // `trailers` (gRPC's servers ask for it).
    let te_trailers = head.headers.iter().any(|f| {
        f.name.get(raw).eq_ignore_ascii_case(b"te")
            && f.value
                .get(raw)
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    });
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let authority = match authority {
        Some(a) => std::str::from_utf8(a).map_err(|_| "invalid host")?,
        // HTTP/1.0 without Host: the absolute-form target's authority, else the loopback name.
        None => head
            .host
            .map(|h| h.get(raw))
            .and_then(|h| std::str::from_utf8(h).ok())
            .unwrap_or("localhost"),
    };
    let path = std::str::from_utf8(head.path(raw)).map_err(|_| "invalid path")?;
    let uri = Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| "the target or host does not make an HTTP/2 request")?;
    let mut r = Request::new(());
    *r.method_mut() = head.method.clone();
    *r.uri_mut() = uri;
    *r.headers_mut() = headers;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits};

    fn parsed(text: &str) -> (RequestHead, Bytes) {
        let limits = Limits {
            max_head_bytes: 64 * 1024,
        };
        let head = parse_request(text.as_bytes(), &limits).unwrap().unwrap();
        (head, Bytes::from(text.to_owned()))
    }

    #[test]
    fn the_h1_head_becomes_h2_pseudo_headers_without_connection_fields() {
        let text = "POST /a/b?c=1 HTTP/1.1\r\nHost: api.example:8443\r\n\
                    Connection: keep-alive, x-hop\r\nKeep-Alive: 5\r\nX-Hop: 1\r\n\
                    TE: gzip\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\
                    Cookie: a=1\r\nCookie: b=2\r\nX-Client-DN: CN=me\r\n\r\n";
        let (head, raw) = parsed(text);
        let r = h2_request(&head, &raw, &raw, true).unwrap();
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.uri().to_string(), "https://api.example:8443/a/b?c=1");
        let names: Vec<&str> = r.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["cookie", "x-client-dn"]);
        assert_eq!(r.headers().get_all("cookie").iter().count(), 2);

        let text = "GET http://other/x HTTP/1.1\r\nHost: other\r\nConnection: TE\r\n\
                    TE: deflate, trailers\r\n\r\n";
        let (head, raw) = parsed(text);
        let r = h2_request(&head, &raw, &raw, false).unwrap();
        assert_eq!(r.uri().to_string(), "http://other/x");
        assert_eq!(r.headers().get("te").unwrap(), "trailers");
    }

    #[test]
    fn response_framing_follows_the_client_version_and_the_method() {
        let h11 = parsed("GET / HTTP/1.1\r\nHost: a\r\n\r\n").0;
        let h10 = parsed("GET / HTTP/1.0\r\n\r\n").0;
        let head = parsed("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").0;
        let none = HeaderMap::new();
        let mut len = HeaderMap::new();
        len.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let ok = StatusCode::OK;
        assert_eq!(framing(&h11, ok, &none, false), Framing::Chunked);
        assert_eq!(framing(&h10, ok, &none, false), Framing::Close);
        assert_eq!(framing(&h11, ok, &len, false), Framing::Length);
        assert_eq!(framing(&h11, ok, &none, true), Framing::None);
        assert_eq!(framing(&head, ok, &len, false), Framing::None);
        assert_eq!(
            framing(&h11, StatusCode::NO_CONTENT, &none, false),
            Framing::None
        );
        let out = response_head(Version::HTTP_11, false, ok, &none, Framing::Chunked, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let out = response_head(Version::HTTP_10, false, ok, &len, Framing::Length, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n"
        );
    }
}
