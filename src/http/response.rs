//! Upstream response heads: httparse into offsets, then the framing decision of RFC 9112 §6.3 — how
//! much body follows and whether the upstream connection can go back to the pool. The upstream is
//! trusted more than a client but not blindly: ambiguous framing would desynchronise the pooled
//! connection (response splitting), so it is refused and the client gets a 502.

use std::mem::MaybeUninit;

use http::Version;

use super::{
    is_token, list_items, trim_ows, BodyKind, ConnectionTokens, ContentLength, HeadError,
    HeaderClass, HeaderSpan, Limits, Span, MAX_HEADERS,
};

/// A parsed upstream response head. Spans index the buffer given to [`parse_response`]; the body
/// (if any) starts at `head_len`.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// `HTTP_10` or `HTTP_11`.
    pub version: Version,
    /// 100..=599.
    pub status: u16,
    /// Reason phrase as sent (may be empty; httparse also empties one containing obs-text).
    pub reason: Span,
    /// Every header field line, in order.
    pub headers: Vec<HeaderSpan>,
    /// Bytes of head, including the final blank line.
    pub head_len: usize,
    /// `None` for responses to HEAD, 1xx, 204 and 304 whatever their headers say.
    pub body: BodyKind,
    /// The upstream connection may be reused after this response's body: persistent per the
    /// version and `Connection`, the body is not close-delimited, and the status is not 101.
    pub keep_alive: bool,
    /// 1xx. For 100 and 103, relay the head and read the next one from the same buffer at
    /// `head_len`; 101 instead turns both connections into a tunnel.
    pub is_informational: bool,
    pub(crate) content_length: Option<u64>,
    pub(crate) connection_nominates: bool,
}

impl ResponseHead {
    /// The reason phrase as sent.
    #[inline]
    pub fn reason<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.reason.get(buf)
    }

    /// 101: after this head the bytes in both directions are relayed opaquely.
    #[inline]
    pub fn is_switching_protocols(&self) -> bool {
        self.status == 101
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

/// Parses the response head at the start of `buf`. `request_method_is_head`: the request was
/// HEAD, so no body follows whatever Content-Length says. `Ok(None)`: incomplete, read more (only
/// while `buf.len() < limits.max_head_bytes`). Every error has status 502.
pub fn parse_response(
    buf: &[u8],
    request_method_is_head: bool,
    limits: &Limits,
) -> Result<Option<ResponseHead>, HeadError> {
    let max = limits.effective_max();
    let window = buf.get(..max).unwrap_or(buf);

    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    // Default config: no obsolete line folding, no space before the colon.
    let config = httparse::ParserConfig::default();
    let head_len = match config.parse_response_with_uninit_headers(&mut res, window, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < max => return Ok(None),
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::bad_upstream("upstream response head too large"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::bad_upstream("too many upstream header fields"))
        }
        Err(_) => return Err(HeadError::bad_upstream("malformed upstream response head")),
    };

    let version = match res.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::bad_upstream("unsupported upstream HTTP version")),
    };
    let status = match res.code {
        Some(code @ 100..=599) => code,
        _ => return Err(HeadError::bad_upstream("invalid upstream status code")),
    };
    // httparse substitutes a static "" for a reason with obs-text; Span::of maps that to EMPTY.
    let reason = Span::of(buf, res.reason.unwrap_or_default().as_bytes());

    let mut headers = Vec::with_capacity(res.headers.len());
    let mut content_length = ContentLength::default();
    let mut saw_content_length = false;
    let mut te = TransferCodings::default();
    let mut conn = ConnectionTokens::default();

    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let class = HeaderClass::of(name);
        headers.push(HeaderSpan {
            name: Span::of(buf, name),
            value: Span::of(buf, h.value),
            class,
        });
        match class {
            HeaderClass::ContentLength => {
                saw_content_length = true;
                content_length
                    .add(h.value)
                    .map_err(HeadError::bad_upstream)?;
            }
            HeaderClass::TransferEncoding => te.add(h.value)?,
            HeaderClass::Connection => conn.add(h.value),
            _ => {}
        }
    }

    if te.present && saw_content_length {
        return Err(HeadError::bad_upstream(
            "upstream sent both Content-Length and Transfer-Encoding",
        ));
    }
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    if te.present && version == Version::HTTP_10 {
        return Err(HeadError::bad_upstream(
            "Transfer-Encoding in an HTTP/1.0 response",
        ));
    }

    let is_informational = status < 200;
    let body = if request_method_is_head || is_informational || status == 204 || status == 304 {
        BodyKind::None
    } else if te.present {
        // RFC 9112 §6.3 (4): chunked last → chunked; any other final coding → read until close.
        if te.last_is_chunked {
            BodyKind::Chunked
        } else {
            BodyKind::Close
        }
    } else if let Some(n) = content_length.value {
        BodyKind::Length(n)
    } else {
        BodyKind::Close
    };

    let persistent = if version == Version::HTTP_11 {
        !conn.close
    } else {
        conn.keep_alive && !conn.close
    };

    Ok(Some(ResponseHead {
        version,
        status,
        reason,
        headers,
        head_len,
        body,
        keep_alive: persistent && body != BodyKind::Close && status != 101,
        is_informational,
        content_length: content_length.value,
        connection_nominates: conn.nominates_others,
    }))
}

/// Transfer-Encoding lines of a response, read as one list (RFC 9110 §5.3).
#[derive(Default)]
struct TransferCodings {
    present: bool,
    last_is_chunked: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) -> Result<(), HeadError> {
        let mut any = false;
        for item in list_items(value) {
            // transfer-coding = token *( OWS ";" OWS transfer-parameter ); parameters are relayed.
            let name = trim_ows(item.split(|&b| b == b';').next().unwrap_or_default());
            if !is_token(name) {
                return Err(HeadError::bad_upstream(
                    "invalid upstream Transfer-Encoding",
                ));
            }
            if self.last_is_chunked {
                // Something after chunked: chunked twice, or not final (RFC 9112 §6.1).
                if name.eq_ignore_ascii_case(b"chunked") {
                    return Err(HeadError::bad_upstream("upstream applied chunked twice"));
                }
            }
            self.last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            any = true;
        }
        if !any {
            return Err(HeadError::bad_upstream("empty upstream Transfer-Encoding"));
        }
        self.present = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], head: bool) -> Result<Option<ResponseHead>, HeadError> {
        parse_response(raw, head, &Limits::default())
    }

    fn ok(raw: &[u8]) -> ResponseHead {
        match parse(raw, false) {
            Ok(Some(h)) => h,
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn err(raw: &[u8]) -> HeadError {
        match parse(raw, false) {
            Err(e) => e,
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn length_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        let h = ok(raw);
        assert_eq!(h.status, 200);
        assert_eq!(h.version, Version::HTTP_11);
        assert_eq!(h.reason(raw), b"OK");
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(h.head_len, raw.len() - 5);
        assert!(h.keep_alive);
        assert!(!h.is_informational);
        assert_eq!(h.header(raw, "x"), Some(&b"y"[..]));
        assert_eq!(h.headers(raw).count(), 2);
    }

    #[test]
    fn incomplete_and_too_large() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(matches!(parse(&raw[..cut], false), Ok(None)), "cut {cut}");
        }
        let limits = Limits { max_head_bytes: 16 };
        assert_eq!(parse_response(raw, false, &limits).unwrap_err().status, 502);
    }

    #[test]
    fn bodyless_statuses() {
        for code in [100, 103, 204, 304] {
            let raw = format!("HTTP/1.1 {code} X\r\nContent-Length: 10\r\n\r\n");
            let h = ok(raw.as_bytes());
            assert_eq!(h.body, BodyKind::None, "{code}");
            assert!(h.keep_alive);
            assert_eq!(h.is_informational, code < 200);
        }
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::None);
        assert_eq!(h.content_length, Some(10));
        let h = parse(b"HTTP/1.1 200 OK\r\n\r\n", true).unwrap().unwrap();
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
    }

    #[test]
    fn switching_protocols() {
        let h = ok(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(h.is_switching_protocols());
        assert!(h.is_informational);
        assert_eq!(h.body, BodyKind::None);
        assert!(!h.keep_alive);
    }

    #[test]
    fn chunked_and_close_delimited() {
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(h.keep_alive);
        let h =
            ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.body, BodyKind::Close);
        assert!(!h.keep_alive);
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(h.body, BodyKind::Close);
        let h = ok(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.body, BodyKind::Close);
        assert!(!h.keep_alive);
    }

    #[test]
    fn persistence() {
        assert!(
            !ok(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn invalid_framing() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert_eq!(err(raw).status, 502, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn transfer_coding_parameters_are_tolerated() {
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;q=1 , chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
    }

    #[test]
    fn missing_or_obs_text_reason() {
        let raw = b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(ok(raw).reason(raw), b"");
        let raw = b"HTTP/1.1 200 \xe9t\xe9\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(ok(raw).reason(raw), b"");
    }

    #[test]
    fn informational_then_final_in_one_buffer() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let first = ok(raw);
        assert!(first.is_informational);
        let rest = &raw[first.head_len..];
        let second = ok(rest);
        assert_eq!(second.status, 204);
    }
}
