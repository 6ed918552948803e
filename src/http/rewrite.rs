//! The heads the proxy writes: the request sent upstream and the response sent back to the client.
//! Both are re-serialised from the parsed spans (never copied as a block) so that only fields the
//! proxy has checked reach the other side: hop-by-hop fields are dropped (RFC 9110 §7.6.1), forged
//! identity headers are stripped in every spelling, and the caller's identity headers are appended.
//! Bodies are relayed verbatim, so Content-Length / Transfer-Encoding are kept as the client sent
//! them (a repeated identical Content-Length is collapsed to one line).

use http::{StatusCode, Version};

use super::{
    eq_folded, fold, list_items, push_decimal, push_header, HeaderClass, HeaderSpan, RequestHead,
    ResponseHead,
};

/// Header names a client must not be able to set: the proxy's identity headers and forwarding
/// headers. Built once at config load; matched ASCII case-insensitively with `_` read as `-`
/// (`x_ssl_client_verify` reaches a CGI/WSGI application as the same variable as
/// `X-SSL-Client-Verify`), on every occurrence.
#[derive(Clone, Debug, Default)]
pub struct StripSet {
    names: Vec<StripName>,
    /// Bit `len % 64` set for every name length: most headers are rejected on length alone.
    lengths: u64,
}

#[derive(Clone, Debug)]
struct StripName {
    /// Folded (lower case, `-`), so a lookup folds only the candidate.
    folded: Box<[u8]>,
    /// [`tail_signature`] of the name: identity names share their `x-ssl-client-` prefix and
    /// often a length with common headers, but rarely their last eight bytes.
    tail: u64,
}

impl StripSet {
    /// A set of the `names`, compared case-insensitively.
    pub fn new(names: &[&str]) -> Self {
        let mut set = StripSet::default();
        for name in names {
            let folded: Box<[u8]> = name.bytes().map(fold).collect();
            if !set.names.iter().any(|n| n.folded == folded) {
                set.lengths |= 1u64 << (folded.len() % 64);
                let tail = tail_signature(&folded);
                set.names.push(StripName { folded, tail });
            }
        }
        set
    }

    /// Whether `name` is in the set. No allocation: a length filter, a compare of the folded last
    /// eight bytes, and only then a full folded compare.
    #[inline]
    pub fn contains(&self, name: &[u8]) -> bool {
        if self.lengths & (1u64 << (name.len() % 64)) == 0 {
            return false;
        }
        let tail = tail_signature(name);
        self.names
            .iter()
            .any(|n| n.tail == tail && n.folded.len() == name.len() && eq_folded(name, &n.folded))
    }

    /// Number of names in the set.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name is stripped.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The last (up to) eight bytes of `name`, folded, packed into a u64.
#[inline]
fn tail_signature(name: &[u8]) -> u64 {
    let tail = name.get(name.len().saturating_sub(8)..).unwrap_or_default();
    tail.iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(fold(b)))
}

/// What the caller decided for this request.
#[derive(Clone, Copy, Debug)]
pub struct RewriteCtx<'a> {
    /// Client headers to drop (the configured identity/forwarding names).
    pub strip: &'a StripSet,
    /// Headers appended after the client's, in order, verbatim: identity headers, X-Forwarded-For…
    /// Names must be tokens and values free of CR, LF and NUL (checked in debug builds only).
    pub add: &'a [(&'a str, &'a [u8])],
}

/// Writes the request head for the upstream into `out` (appending).
///
/// Request line: method, origin-form path (an absolute-form target is reduced to its path; `Host`
/// carries the authority), and the version: `HTTP/1.1`, or `HTTP/1.0` for an HTTP/1.0 client, which
/// cannot read a chunked response (asking the upstream in 1.0 makes it answer with a length or a
/// close, as nginx's `proxy_http_version 1.0` default does). Then `Host` first (RFC 9110 §7.2; for an HTTP/1.0 request
/// without one, an empty `Host:` unless `ctx.add` has a Host), then the client's fields
/// in order except: hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
/// Upgrade, Proxy-Authorization, and any field named by a Connection token — never Host,
/// Content-Length or Transfer-Encoding, which would change the framing of a verbatim body), `Expect`
/// from an HTTP/1.0 client (it must be ignored, and the upstream must not answer it with a 1xx that
/// the 1.0 client cannot take), and anything in `ctx.strip`. `Expect: 100-continue` from an HTTP/1.1
/// client is forwarded so the upstream can refuse early; relay its 100. Then `ctx.add`, then for an
/// upgrade `Connection: upgrade` and the client's `Upgrade` field(s), then the blank line.
pub fn rewrite_request(head: &RequestHead, buf: &[u8], ctx: &RewriteCtx<'_>, out: &mut Vec<u8>) {
    let added: usize = ctx.add.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(head.head_len + added + 32);

    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path(buf));
    let http10 = head.version == Version::HTTP_10;
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    match head.host {
        Some(host) => push_header(out, b"Host", host.get(buf)),
        // HTTP/1.0 without Host: an upstream may well require one (HTTP/1.1 servers do); an
        // empty value is RFC 9112 §3.2's way to say "no authority", unless the caller supplies a
        // Host.
        None if !ctx.add.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) => {
            push_header(out, b"Host", b"")
        }
        None => {}
    }

    let mut wrote_length = false;
    for h in &head.headers {
        let name = h.name.get(buf);
        match h.class {
            HeaderClass::Host
            | HeaderClass::Connection
            | HeaderClass::KeepAlive
            | HeaderClass::ProxyConnection
            | HeaderClass::Te
            | HeaderClass::Trailer
            | HeaderClass::Upgrade
            | HeaderClass::ProxyAuthorization
            // Rejected by the parser; never forward one if a head is built some other way.
            | HeaderClass::FramingAlias => continue,
            HeaderClass::Expect if http10 => continue,
            HeaderClass::ContentLength => {
                push_content_length(out, &mut wrote_length, head.content_length);
                continue;
            }
            HeaderClass::TransferEncoding => {}
            HeaderClass::Expect | HeaderClass::Other => {
                if ctx.strip.contains(name)
                    || (head.connection_nominates && nominated(&head.headers, buf, name))
                {
                    continue;
                }
            }
        }
        push_header(out, name, h.value.get(buf));
    }

    push_added(out, ctx.add);

    if head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        for h in head
            .headers
            .iter()
            .filter(|h| h.class == HeaderClass::Upgrade)
        {
            push_header(out, b"Upgrade", h.value.get(buf));
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the response head for the client into `out` (appending).
///
/// Status line `HTTP/1.1 <code> <reason>` (the upstream's reason, or the canonical one if it sent
/// none). The upstream's fields in order except hop-by-hop ones (Connection, Keep-Alive,
/// Proxy-Connection, TE, Trailer, Upgrade unless 101, and Connection-named fields other than
/// Content-Length / Transfer-Encoding). Then `extra` verbatim (e.g. `Connection: keep-alive` for a
/// kept-alive HTTP/1.0 client, which needs it explicitly). Then `Connection: upgrade` for a 101, or
/// `Connection: close` when `client_keep_alive` is false (never on other 1xx heads).
///
/// The caller decides `client_keep_alive`: false when the request said close, when the response
/// body is `BodyKind::Close` (the client learns the end of the body from the close), or when the
/// proxy is going to close anyway. Body framing is relayed verbatim: a chunked response to an
/// HTTP/1.0 client would need de-chunking, which this function does not do.
pub fn rewrite_response(
    head: &ResponseHead,
    buf: &[u8],
    out: &mut Vec<u8>,
    client_keep_alive: bool,
    extra: &[(&str, &[u8])],
) {
    let added: usize = extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(head.head_len + added + 48);

    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(head.status));
    out.push(b' ');
    let reason = head.reason(buf);
    if reason.is_empty() {
        let canonical = StatusCode::from_u16(head.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        out.extend_from_slice(canonical.as_bytes());
    } else {
        out.extend_from_slice(reason);
    }
    out.extend_from_slice(b"\r\n");

    let switching = head.is_switching_protocols();
    let mut wrote_length = false;
    for h in &head.headers {
        let name = h.name.get(buf);
        match h.class {
            HeaderClass::Connection
            | HeaderClass::KeepAlive
            | HeaderClass::ProxyConnection
            | HeaderClass::Te
            | HeaderClass::Trailer => continue,
            HeaderClass::Upgrade if !switching => continue,
            HeaderClass::ContentLength => {
                push_content_length(out, &mut wrote_length, head.content_length);
                continue;
            }
            HeaderClass::TransferEncoding | HeaderClass::Upgrade => {}
            _ => {
                if head.connection_nominates && nominated(&head.headers, buf, name) {
                    continue;
                }
            }
        }
        push_header(out, name, h.value.get(buf));
    }

    push_added(out, extra);

    if switching {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if !client_keep_alive && !head.is_informational {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a `Connection` field of this head lists `name` (RFC 9110 §7.6.1).
pub(crate) fn nominated(headers: &[HeaderSpan], buf: &[u8], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.class == HeaderClass::Connection)
        .any(|h| list_items(h.value.get(buf)).any(|t| t.eq_ignore_ascii_case(name)))
}

/// One `Content-Length` line with the validated value, however many the peer sent.
#[inline]
fn push_content_length(out: &mut Vec<u8>, wrote: &mut bool, value: Option<u64>) {
    if let (false, Some(n)) = (*wrote, value) {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
        *wrote = true;
    }
}

#[inline]
fn push_added(out: &mut Vec<u8>, add: &[(&str, &[u8])]) {
    for (name, value) in add {
        debug_assert!(super::is_token(name.as_bytes()), "bad header name {name:?}");
        debug_assert!(
            !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
            "CR/LF/NUL in value of {name}"
        );
        push_header(out, name.as_bytes(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, parse_response, Limits};

    const IDENTITY: &[&str] = &[
        "X-SSL-Client-Verify",
        "X-SSL-Client-S-DN",
        "X-SSL-Client-S-DN-Legacy",
        "X-SSL-Client-I-DN",
        "X-SSL-Client-Serial",
        "X-SSL-Client-Fingerprint",
        "X-SSL-Client-SAN",
        "X-SSL-Client-Not-After",
        "X-SSL-Client-Cert",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Real-IP",
    ];

    fn request(raw: &[u8], add: &[(&str, &[u8])]) -> String {
        let head = parse_request(raw, &Limits::default()).unwrap().unwrap();
        let strip = StripSet::new(IDENTITY);
        let mut out = Vec::new();
        rewrite_request(&head, raw, &RewriteCtx { strip: &strip, add }, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn response(raw: &[u8], head_req: bool, keep: bool, extra: &[(&str, &[u8])]) -> String {
        let head = parse_response(raw, head_req, &Limits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        rewrite_response(&head, raw, &mut out, keep, extra);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strip_set_matching() {
        let s = StripSet::new(IDENTITY);
        assert_eq!(s.len(), IDENTITY.len());
        assert!(s.contains(b"x-ssl-client-verify"));
        assert!(s.contains(b"X_SSL_CLIENT_VERIFY"));
        assert!(s.contains(b"x-ssl_client-Verify"));
        assert!(s.contains(b"X-Real-Ip"));
        assert!(!s.contains(b"X-SSL-Client-Verify2"));
        assert!(!s.contains(b"X-SSL-Client-Verif"));
        assert!(!s.contains(b"X-SSL-Client-Verifx"));
        assert!(!s.contains(b""));
        assert!(StripSet::new(&["A_b", "a-B"]).len() == 1);
        assert!(StripSet::default().is_empty());
        assert!(!StripSet::default().contains(b"x"));
    }

    #[test]
    fn strips_forged_identity_and_appends() {
        let raw = b"GET /p HTTP/1.1\r\nHost: app\r\nX-SSL-Client-Verify: SUCCESS\r\nAccept: */*\r\nx_ssl_client_s_dn: CN=admin\r\nX-Forwarded-For: 1.2.3.4\r\nX-SSL-CLIENT-VERIFY: SUCCESS\r\n\r\n";
        let out = request(
            raw,
            &[
                ("X-SSL-Client-Verify", b"NONE"),
                ("X-Forwarded-For", b"10.0.0.1"),
            ],
        );
        assert_eq!(
            out,
            "GET /p HTTP/1.1\r\nHost: app\r\nAccept: */*\r\nX-SSL-Client-Verify: NONE\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
        );
    }

    #[test]
    fn drops_hop_by_hop_and_connection_named() {
        let raw = b"POST / HTTP/1.1\r\nConnection: keep-alive, X-Secret, transfer-encoding, HOST, content-length\r\nHost: a\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic x\r\nX-Secret: 1\r\nX-Kept: 2\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
        let out = request(raw, &[]);
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: a\r\nX-Kept: 2\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        );
    }

    #[test]
    fn http10_request() {
        let raw = b"POST /x HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi";
        let out = request(raw, &[("Host", b"upstream")]);
        assert_eq!(
            out,
            "POST /x HTTP/1.0\r\nContent-Length: 2\r\nHost: upstream\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let raw =
            b"GET http://a.example/admin?x=1 HTTP/1.1\r\nHost: A.example\r\nAccept: x\r\n\r\n";
        assert_eq!(
            request(raw, &[]),
            "GET /admin?x=1 HTTP/1.1\r\nHost: a.example\r\nAccept: x\r\n\r\n"
        );
        let raw = b"GET /x HTTP/1.0\r\n\r\n";
        assert_eq!(request(raw, &[]), "GET /x HTTP/1.0\r\nHost: \r\n\r\n");
        let raw = b"GET http://a.example HTTP/1.0\r\n\r\n";
        assert_eq!(
            request(raw, &[]),
            "GET / HTTP/1.0\r\nHost: a.example\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_request() {
        let raw = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let out = request(raw, &[("X-SSL-Client-Verify", b"SUCCESS")]);
        assert_eq!(
            out,
            "GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nX-SSL-Client-Verify: SUCCESS\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn rewritten_request_reparses() {
        let raw = b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-SSL-Client-Cert: forged\r\n\r\nabc";
        let out = request(raw, &[("X-SSL-Client-Cert", b"-----BEGIN%20CERT")]);
        let again = parse_request(out.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(again.body, crate::http::BodyKind::Length(3));
        assert_eq!(
            again.header(out.as_bytes(), "x-ssl-client-cert"),
            Some(&b"-----BEGIN%20CERT"[..])
        );
        assert_eq!(again.headers.len(), 3);
    }

    #[test]
    fn response_basic() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            response(raw, false, true, &[]),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
        );
        assert_eq!(
            response(raw, false, false, &[]),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            response(raw, false, true, &[("Connection", b"keep-alive")]),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn response_keeps_framing_even_if_connection_named() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\nUpgrade: h2\r\n\r\n";
        assert_eq!(
            response(raw, false, true, &[]),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_reason_and_status_line() {
        let raw = b"HTTP/1.0 404\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            response(raw, false, true, &[]),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        );
        let raw = b"HTTP/1.1 299 Custom Thing\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            response(raw, false, true, &[]),
            "HTTP/1.1 299 Custom Thing\r\nContent-Length: 0\r\n\r\n"
        );
        let raw = b"HTTP/1.1 299\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            response(raw, false, true, &[]),
            "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn response_informational_and_upgrade() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(
            response(raw, false, false, &[]),
            "HTTP/1.1 100 Continue\r\n\r\n"
        );
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert_eq!(
            response(raw, false, false, &[]),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn response_to_head_keeps_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Length: 1234\r\n\r\n";
        assert_eq!(
            response(raw, true, true, &[]),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        );
    }
}
