//! Client request heads: httparse over the read buffer, then the RFC 9110/9112 checks a gateway
//! needs before it may forward anything — one framing (Content-Length or chunked, never both, never
//! ambiguous), one Host, a request target of a form the upstream will read the same way. The head
//! keeps offsets into the caller's buffer: one `Vec` per request, nothing per header.

use std::mem::MaybeUninit;

use http::{Method, Version};

use super::{
    byte_table, is_token, list_items, BodyKind, ConnectionTokens, ContentLength, HeadError,
    HeaderClass, HeaderSpan, Limits, Span, MAX_HEADERS,
};

/// The form of the request target (RFC 9112 §3.2). The authority form exists only for CONNECT,
/// which a gateway does not serve (refused with 501).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`; `host` then names the target's authority.
    Absolute,
    /// `*`, OPTIONS only.
    Asterisk,
}

/// A parsed, validated request head. Spans index the buffer given to [`parse_request`]; the body
/// (if any) starts at `head_len`.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// The request method; any valid token is accepted (`CONNECT` is refused with 501).
    pub method: Method,
    /// The request target exactly as received.
    pub target: Span,
    /// Origin, absolute or asterisk form (RFC 9112 §3.2).
    pub target_form: TargetForm,
    /// Origin-form part of the target: the target itself for origin- and asterisk-form, the
    /// path-and-query after the authority for absolute-form (empty when the URI has no path; read
    /// it with [`RequestHead::path`], which gives `/` then). Route and authorise on this, never on
    /// `target`: `http://h/admin` and `/admin` are the same resource.
    pub path: Span,
    /// `HTTP_10` or `HTTP_11`.
    pub version: Version,
    /// Every header field line, in order.
    pub headers: Vec<HeaderSpan>,
    /// Bytes of head, including the final blank line.
    pub head_len: usize,
    /// How the body is framed: none, `Content-Length` or chunked.
    pub body: BodyKind,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// HTTP/1.1 with `Expect: 100-continue` (ignored for HTTP/1.0, RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// HTTP/1.1 with a `Connection: upgrade` token and an `Upgrade` header (e.g. WebSocket).
    pub upgrade: bool,
    /// The authority: the Host header value, or for an absolute-form target its authority (a Host
    /// header, if sent, must then be equal). `None` only for HTTP/1.0 without Host.
    pub host: Option<Span>,
    pub(crate) content_length: Option<u64>,
    pub(crate) connection_nominates: bool,
}

impl RequestHead {
    /// The request target as received.
    #[inline]
    pub fn target<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.target.get(buf)
    }

    /// Origin-form path and query; `/` for an absolute-form target without a path.
    #[inline]
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        match self.path.get(buf) {
            b"" => b"/",
            path => path,
        }
    }

    /// The `Host` header's value, if one was sent.
    #[inline]
    pub fn host<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.host.map(|s| s.get(buf))
    }

    /// True for `HEAD`, whose response has no body whatever its headers say.
    #[inline]
    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// All header fields as `(name, value)`, in received order.
    #[inline]
    pub fn headers<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.headers
            .iter()
            .map(|h| (h.name.get(buf), h.value.get(buf)))
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.get(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.get(buf))
    }
}

/// Parses and validates the request head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more (only while `buf.len() < limits.max_head_bytes`; at the limit
/// the head is refused with 431, or 414 when even the request line is incomplete). Bytes after
/// `head_len` are left alone (body or pipelined requests).
///
/// Accepted leniencies, both from httparse and both harmless because the head is re-serialised
/// before it goes upstream: empty lines before the request line, bare LF line ends in the head.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    let max = limits.effective_max();
    // Never look past the limit: bounds the work on a client trickling a huge head.
    let window = buf.get(..max).unwrap_or(buf);

    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(window, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < max => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(too_large(window)),
        Err(e) => return Err(parse_error(e, window)),
    };

    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::new(505, "unsupported HTTP version")),
    };
    let http11 = version == Version::HTTP_11;

    let method_bytes = req.method.unwrap_or_default().as_bytes();
    let method =
        Method::from_bytes(method_bytes).map_err(|_| HeadError::bad_request("invalid method"))?;
    if method == Method::CONNECT {
        return Err(HeadError::new(501, "CONNECT is not served by a gateway"));
    }

    let target_str = req.path.unwrap_or_default();
    if target_str.is_empty() {
        return Err(HeadError::bad_request("empty request target"));
    }
    let target = Span::of(buf, target_str.as_bytes());

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut host: Option<Span> = None;
    let mut content_length = ContentLength::default();
    let mut saw_content_length = false;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut conn = ConnectionTokens::default();
    let mut expect_continue = false;
    let mut has_upgrade_header = false;

    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let class = HeaderClass::of(name);
        let value = h.value;
        headers.push(HeaderSpan {
            name: Span::of(buf, name),
            value: Span::of(buf, value),
            class,
        });
        match class {
            HeaderClass::Host => {
                if host.is_some() {
                    return Err(HeadError::bad_request("more than one Host header"));
                }
                if !is_authority(value) {
                    return Err(HeadError::bad_request("invalid Host header"));
                }
                host = Some(Span::of(buf, value));
            }
            HeaderClass::ContentLength => {
                saw_content_length = true;
                content_length.add(value).map_err(HeadError::bad_request)?;
            }
            // Several lines would form a list (`chunked` + `chunked`); only one is accepted.
            HeaderClass::TransferEncoding if transfer_encoding.is_some() => {
                return Err(HeadError::bad_request("repeated Transfer-Encoding header"));
            }
            HeaderClass::TransferEncoding => transfer_encoding = Some(value),
            HeaderClass::FramingAlias => {
                return Err(HeadError::bad_request(
                    "underscore variant of a framing header",
                ));
            }
            HeaderClass::Connection => conn.add(value),
            HeaderClass::Expect => {
                expect_continue |=
                    list_items(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"))
            }
            HeaderClass::Upgrade => has_upgrade_header = true,
            _ => {}
        }
    }

    let body = match (transfer_encoding, saw_content_length) {
        (Some(_), true) => {
            return Err(HeadError::bad_request(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (Some(_), false) if !http11 => {
            return Err(HeadError::bad_request(
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        (Some(te), false) => check_transfer_encoding(te)?,
        (None, _) => content_length
            .value
            .map_or(BodyKind::None, BodyKind::Length),
    };

    // RFC 9112 §3.2: required in HTTP/1.1 even when the target carries the authority.
    if http11 && host.is_none() {
        return Err(HeadError::bad_request("HTTP/1.1 request without Host"));
    }
    let (target_form, path, host) = match target_str.as_bytes() {
        [b'/', ..] => (TargetForm::Origin, target, host),
        b"*" if method == Method::OPTIONS => (TargetForm::Asterisk, target, host),
        b"*" => return Err(HeadError::bad_request("asterisk target without OPTIONS")),
        _ => {
            let (authority, path) = split_absolute(target, buf)?;
            if let Some(header) = host {
                if !header.get(buf).eq_ignore_ascii_case(authority.get(buf)) {
                    return Err(HeadError::bad_request(
                        "Host header differs from the target authority",
                    ));
                }
            }
            (TargetForm::Absolute, path, Some(authority))
        }
    };

    Ok(Some(RequestHead {
        method,
        target,
        target_form,
        path,
        version,
        headers,
        head_len,
        body,
        keep_alive: if http11 {
            !conn.close
        } else {
            conn.keep_alive && !conn.close
        },
        expect_continue: http11 && expect_continue,
        upgrade: http11 && conn.upgrade && has_upgrade_header,
        host,
        content_length: content_length.value,
        connection_nominates: conn.nominates_others,
    }))
}

/// Only `chunked`, alone, is accepted: the body is forwarded verbatim, so the upstream must frame
/// it exactly as the proxy did, and any other coding (or a list) is where implementations differ.
/// Anything else is refused with 400, as a smuggling attempt: RFC 9112 §6.1 allows 501 for an
/// unknown coding, but a gateway cannot tell `xchunked` from an attack, and one status for every
/// framing refusal keeps the rule simple to audit.
fn check_transfer_encoding(value: &[u8]) -> Result<BodyKind, HeadError> {
    // httparse has trimmed surrounding whitespace already.
    if value.eq_ignore_ascii_case(b"chunked") {
        Ok(BodyKind::Chunked)
    } else if is_token(value) {
        Err(HeadError::bad_request("unsupported transfer coding"))
    } else {
        Err(HeadError::bad_request("invalid Transfer-Encoding"))
    }
}

/// Splits an absolute-form target (`http` or `https` only) into authority and path-and-query.
fn split_absolute(target: Span, buf: &[u8]) -> Result<(Span, Span), HeadError> {
    let bytes = target.get(buf);
    let scheme_len = bytes
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::bad_request("invalid request target"))?;
    let scheme = bytes.get(..scheme_len).unwrap_or_default();
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        return Err(HeadError::bad_request("invalid request target"));
    }
    let after_scheme = bytes.get(scheme_len..).unwrap_or_default();
    if !after_scheme.starts_with(b"://") {
        return Err(HeadError::bad_request("invalid request target"));
    }
    let auth_start = scheme_len + 3;
    let rest = bytes.get(auth_start..).unwrap_or_default();
    let auth_len = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = target.slice(auth_start, auth_start + auth_len);
    let path = target.slice(auth_start + auth_len, bytes.len());
    // userinfo (`user@host`) is refused by is_authority: RFC 9110 §4.2.4 deprecates it and it is a
    // classic way to make two parsers see different hosts.
    if authority.is_empty() || !is_authority(authority.get(buf)) {
        return Err(HeadError::bad_request("invalid target authority"));
    }
    // `http://h?q` has no path to put in front of the query; nobody sends it, refuse.
    if !matches!(path.get(buf), [] | [b'/', ..]) {
        return Err(HeadError::bad_request("invalid request target"));
    }
    Ok((authority, path))
}

/// `uri-host [ ":" port ]` characters (RFC 3986 reg-name, IP literals, pct-encoding). No `@`, `/`
/// or whitespace, so the value cannot smuggle a userinfo or path into whatever reads it. Empty is
/// allowed for the Host header (RFC 9112 §3.2).
fn is_authority(value: &[u8]) -> bool {
    static AUTHORITY: [bool; 256] = byte_table(b"-._~!$&'()*+,;=:%[]");
    value.iter().all(|&b| AUTHORITY[b as usize])
}

/// The head hit the size limit before it ended: 414 if the request line itself is unfinished (as
/// nginx answers), else 431.
fn too_large(window: &[u8]) -> HeadError {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    if window.get(start..).unwrap_or_default().contains(&b'\n') {
        HeadError::new(431, "request head too large")
    } else {
        HeadError::new(414, "request line too long")
    }
}

fn parse_error(e: httparse::Error, window: &[u8]) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::new(431, "too many header fields"),
        httparse::Error::Version if looks_like_http_version(window) => {
            HeadError::new(505, "unsupported HTTP version")
        }
        httparse::Error::Version => HeadError::bad_request("malformed request line"),
        httparse::Error::Token => HeadError::bad_request("malformed request line"),
        // A line starting with SP/HTAB (obsolete folding) fails here: not a token character.
        httparse::Error::HeaderName => HeadError::bad_request("invalid header name"),
        httparse::Error::HeaderValue => HeadError::bad_request("invalid header value"),
        httparse::Error::NewLine => HeadError::bad_request("invalid line ending"),
        httparse::Error::Status => HeadError::bad_request("malformed request"),
    }
}

/// Whether the request line is well formed up to a version `HTTP/<digit>...` that is not 1.0/1.1.
fn looks_like_http_version(window: &[u8]) -> bool {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let line = window.get(start..).unwrap_or_default();
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Exactly `method SP target SP version`: `GET /a b HTTP/1.1` is malformed, not a version issue.
    let mut parts = line.split(|&b| b == b' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(version), None) => {
            matches!(version.strip_prefix(b"HTTP/"), Some([d, ..]) if d.is_ascii_digit())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request(raw, &Limits::default())
    }

    fn ok(raw: &[u8]) -> RequestHead {
        match parse(raw) {
            Ok(Some(h)) => h,
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn status(raw: &[u8]) -> u16 {
        match parse(raw) {
            Err(e) => e.status,
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nBODY";
        let h = ok(raw);
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.target(raw), b"/a?b=c");
        assert_eq!(h.path(raw), b"/a?b=c");
        assert_eq!(h.target_form, TargetForm::Origin);
        assert_eq!(h.version, Version::HTTP_11);
        assert_eq!(h.head_len, raw.len() - 4);
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert!(!h.upgrade);
        assert_eq!(h.host(raw), Some(&b"example.com"[..]));
        let all: Vec<_> = h.headers(raw).collect();
        assert_eq!(
            all,
            vec![(&b"Host"[..], &b"example.com"[..]), (b"Accept", b"*/*")]
        );
        assert_eq!(h.header(raw, "accept"), Some(&b"*/*"[..]));
        assert_eq!(h.header(raw, "missing"), None);
    }

    #[test]
    fn incomplete_until_blank_line() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(
                matches!(parse(&raw[..cut]), Ok(None)),
                "cut at {cut} should be incomplete"
            );
        }
        assert_eq!(ok(raw).body, BodyKind::Length(3));
    }

    #[test]
    fn size_limits() {
        let limits = Limits { max_head_bytes: 64 };
        let long_line = [b"GET /".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(parse_request(&long_line, &limits).unwrap_err().status, 414);
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.extend_from_slice(&[b'v'; 100]);
        assert_eq!(parse_request(&big, &limits).unwrap_err().status, 431);
        // Exactly at the limit and still incomplete: it can no longer fit.
        assert_eq!(parse_request(&big[..64], &limits).unwrap_err().status, 431);
        assert!(matches!(parse_request(&big[..63], &limits), Ok(None)));
        // A complete head within the limit is fine even if the buffer holds more (body bytes).
        let mut with_body = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 200\r\n\r\n".to_vec();
        with_body.extend_from_slice(&[b'x'; 200]);
        assert_eq!(
            parse_request(&with_body, &limits).unwrap().unwrap().body,
            BodyKind::Length(200)
        );
    }

    #[test]
    fn too_many_headers() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let limits = Limits {
            max_head_bytes: 1 << 20,
        };
        assert_eq!(parse_request(&raw, &limits).unwrap_err().status, 431);
        // MAX_HEADERS exactly is fine.
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS - 1 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&raw, &limits).unwrap().unwrap().headers.len(),
            MAX_HEADERS
        );
    }

    #[test]
    fn versions() {
        assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").version, Version::HTTP_10);
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTX/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / FOO\r\n\r\n"), 400);
        // HTTP/0.9 style: no version at all.
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
    }

    #[test]
    fn malformed_request_lines() {
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        // Empty target: two spaces.
        assert_eq!(status(b"GET  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            501
        );
    }

    #[test]
    fn header_syntax_rejected_by_httparse() {
        // Obsolete line folding (RFC 9112 §5.2): continuation line starts with SP or HTAB.
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
        // NUL, bare CR, DEL in values.
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"),
            400
        );
        // Whitespace before the colon, empty name, bad name characters.
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n"),
            400
        );
        // CR not followed by LF at the end of the head.
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\rX"), 400);
    }

    #[test]
    fn bare_lf_head_is_accepted() {
        // RFC 9112 §2.2 lets a recipient accept LF; harmless since the head is re-serialised.
        let h = ok(b"GET / HTTP/1.1\nHost: a\n\n");
        assert_eq!(h.head_len, 24);
    }

    #[test]
    fn value_whitespace_is_trimmed_and_obs_text_kept() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX:  \t v\xe9 \t\r\nEmpty:\r\n\r\n";
        let h = ok(raw);
        assert_eq!(h.header(raw, "x"), Some(&b"v\xe9"[..]));
        assert_eq!(h.header(raw, "empty"), Some(&b""[..]));
    }

    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.host, None);
        let raw = b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n";
        assert_eq!(ok(raw).host(raw), Some(&b"[::1]:8443"[..]));
        // Empty Host is allowed by RFC 9112 §3.2.
        let raw = b"GET / HTTP/1.1\r\nHost:\r\n\r\n";
        assert_eq!(ok(raw).host(raw), Some(&b""[..]));
    }

    #[test]
    fn absolute_and_asterisk_targets() {
        let raw = b"GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
        let h = ok(raw);
        assert_eq!(h.target_form, TargetForm::Absolute);
        assert_eq!(h.path(raw), b"/p?q");
        assert_eq!(h.host(raw), Some(&b"Example.com:8080"[..]));
        let raw = b"GET HTTPS://h HTTP/1.0\r\n\r\n";
        let h = ok(raw);
        assert_eq!(h.path(raw), b"/");
        assert_eq!(h.host(raw), Some(&b"h"[..]));
        assert_eq!(status(b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://a/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        let raw = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(raw);
        assert_eq!(h.target_form, TargetForm::Asterisk);
        assert_eq!(h.path(raw), b"*");
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, close\r\n\r\n").keep_alive);
        assert!(
            !ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: CLOSE\r\n\r\n")
                .keep_alive
        );
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn expect_and_upgrade() {
        assert!(
            ok(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(
            !ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n").expect_continue);
        let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(ok(ws).upgrade);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade);
        assert!(
            !ok(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade
        );
    }

    #[test]
    fn content_length_framing() {
        let h = |cl: &str| {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{cl}\r\n\r\n");
            parse(raw.as_bytes())
        };
        assert_eq!(
            h("Content-Length: 0").unwrap().unwrap().body,
            BodyKind::Length(0)
        );
        assert_eq!(
            h("Content-Length: 5, 5").unwrap().unwrap().body,
            BodyKind::Length(5)
        );
        assert_eq!(
            h("Content-Length: 5\r\ncontent-length: 5")
                .unwrap()
                .unwrap()
                .body,
            BodyKind::Length(5)
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 5, 6",
            "Content-Length: -1",
            "Content-Length: +1",
            "Content-Length: 1e3",
            "Content-Length: ",
            "Content-Length: 99999999999999999999",
            "Content_Length: 5",
            "Transfer_Encoding: chunked",
        ] {
            assert_eq!(h(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn transfer_encoding_framing() {
        let h = |te: &str| {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{te}\r\n\r\n");
            parse(raw.as_bytes())
        };
        assert_eq!(
            h("Transfer-Encoding: chunked").unwrap().unwrap().body,
            BodyKind::Chunked
        );
        assert_eq!(
            h("transfer-encoding: \t ChunKed \t").unwrap().unwrap().body,
            BodyKind::Chunked
        );
        for (bad, code) in [
            ("Transfer-Encoding: gzip, chunked", 400),
            ("Transfer-Encoding: chunked, chunked", 400),
            ("Transfer-Encoding: chunked;q=1", 400),
            ("Transfer-Encoding: chunked,", 400),
            ("Transfer-Encoding: ", 400),
            ("Transfer-Encoding: \"chunked\"", 400),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                400,
            ),
            ("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked", 400),
            ("Transfer-Encoding: chunked\r\nContent-Length: 5", 400),
            ("Content-Length: 5\r\nTransfer-Encoding: chunked", 400),
            ("Transfer-Encoding: chunkedx", 400),
            ("Transfer-Encoding: gzip", 400),
            ("Transfer-Encoding: identity", 400),
        ] {
            assert_eq!(h(bad).unwrap_err().status, code, "{bad}");
        }
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn extension_and_long_methods() {
        let raw = b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(ok(raw).method.as_str(), "PROPFIND");
        let raw = b"AVERYLONGEXTENSIONMETHODNAME / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(ok(raw).method.as_str(), "AVERYLONGEXTENSIONMETHODNAME");
        assert!(ok(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").is_head());
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let raw = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(raw);
        assert_eq!(h.target(raw), b"/");
        assert_eq!(h.head_len, raw.len());
    }

    #[test]
    fn never_panics_on_garbage() {
        // Every prefix and every single-byte corruption of a valid head parses or errors cleanly.
        let raw = b"POST http://a/x HTTP/1.1\r\nHost: a\r\nConnection: upgrade, x\r\nUpgrade: y\r\nTransfer-Encoding: chunked\r\n\r\n";
        for cut in 0..=raw.len() {
            let _ = parse(&raw[..cut]);
        }
        for i in 0..raw.len() {
            for b in [0u8, b' ', b'\t', b'\r', b'\n', b':', b',', b'/', 0xff] {
                let mut m = raw.to_vec();
                m[i] = b;
                let _ = parse(&m);
            }
        }
    }
}
