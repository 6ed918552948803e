//! HTTP/1.x on the request path: request and response heads (parsed with httparse into header
//! offsets, so a head costs one `Vec` and no per-header allocation), body framing (chunked scanner,
//! length counter), the head rewrite sent upstream and back, and nginx-style refusal pages.
//!
//! The types shared by requests and responses live here: byte spans into the caller's buffer, the
//! body framing, the parse limits and the head error. Header-name classification and the list
//! helpers shared by the parsers and the rewriter live here too, so that every place agrees on what
//! `Content-Length` or a `Connection` token is (disagreement between hops is how smuggling starts).

mod chunked;
mod pages;
mod request;
mod response;
mod rewrite;
pub mod xfcc;

pub use chunked::{
    ChunkDecoder, ChunkError, ChunkedScanner, LengthCounter, Part, ScanProgress,
    MAX_CHUNK_LINE_BYTES, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILER_BYTES,
};
pub use pages::{render, status_page_for, Page};
pub use request::{parse_request, RequestHead, TargetForm};
pub use response::{parse_response, ResponseHead};
pub(crate) use rewrite::nominated;
pub use rewrite::{rewrite_request, rewrite_response, RewriteCtx, StripSet};

use std::ops::Range;

/// Default cap on a request or response head (request line + header fields + blank line). nginx
/// allows 8 KiB per line and 32 KiB in all by default; 16 KiB holds real browser heads with large
/// cookies while keeping the per-connection read buffer small.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header fields accepted in one head (Apache's default `LimitRequestFields`). More → 431 for
/// requests, an invalid response for upstreams. The parser keeps this many slots on the stack.
pub const MAX_HEADERS: usize = 100;

/// Size limits applied while parsing a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head accepted, in bytes. Values above `u32::MAX` are treated as `u32::MAX` (spans
    /// are 32-bit).
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
        }
    }
}

impl Limits {
    /// The cap actually applied: spans are `u32` offsets, so nothing past `u32::MAX` can be parsed.
    #[inline]
    pub(crate) fn effective_max(&self) -> usize {
        self.max_head_bytes.min(u32::MAX as usize)
    }
}

/// A head the proxy refuses. `status` is what the client is answered (for upstream responses it is
/// always 502); `reason` is for the log line and is never sent to the peer. The connection must be
/// closed after a `HeadError`: the framing of whatever follows is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadError {
    /// The status to answer with: 400, 414, 431, 501 or 505 for a request head, 502 for a
    /// response head.
    pub status: u16,
    /// Short cause for the log line.
    pub reason: &'static str,
}

impl HeadError {
    #[inline]
    pub(crate) const fn new(status: u16, reason: &'static str) -> Self {
        Self { status, reason }
    }

    #[inline]
    pub(crate) const fn bad_request(reason: &'static str) -> Self {
        Self::new(400, reason)
    }

    #[inline]
    pub(crate) const fn bad_upstream(reason: &'static str) -> Self {
        Self::new(502, reason)
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for HeadError {}

/// How the body after a head is delimited. Requests never yield `Close` (a request without
/// Content-Length or Transfer-Encoding has no body, RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body follows the head.
    None,
    /// Exactly this many bytes follow (may be 0).
    Length(u64),
    /// A chunked body follows; find its end with [`ChunkedScanner`].
    Chunked,
    /// Response only: the body runs until the upstream closes; the client connection must be
    /// closed after relaying it.
    Close,
}

/// A byte range inside the buffer a head was parsed from. The caller keeps that buffer while it
/// uses the head; reading a span never panics (an out-of-range span reads as empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// A span of no bytes, for absent values.
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    /// The bytes this span covers in `buf`, or `b""` if `buf` is not the parsed buffer.
    #[inline]
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.range()).unwrap_or(&[])
    }

    /// The byte range in the parsed buffer.
    #[inline]
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Length in bytes.
    #[inline]
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// True for a span of no bytes.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Span of `sub`, which must be a sub-slice of `base` (httparse hands back sub-slices) within
    /// its first `u32::MAX` bytes; anything else yields an empty span rather than a bogus one.
    #[inline]
    pub(crate) fn of(base: &[u8], sub: &[u8]) -> Span {
        let off = (sub.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        if off <= base.len()
            && sub.len() <= base.len() - off
            && off + sub.len() <= u32::MAX as usize
        {
            Span {
                start: off as u32,
                end: (off + sub.len()) as u32,
            }
        } else {
            Span::EMPTY
        }
    }

    /// The sub-span `[from, to)` relative to this span's start, clamped to it.
    #[inline]
    pub(crate) fn slice(self, from: usize, to: usize) -> Span {
        let len = self.len();
        let to = to.min(len) as u32;
        let from = (from.min(len) as u32).min(to);
        Span {
            start: self.start + from,
            end: self.start + to,
        }
    }
}

/// One header field line: name and value (value without surrounding whitespace) as spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSpan {
    /// The header name, as received.
    pub name: Span,
    /// The value, without surrounding whitespace.
    pub value: Span,
    /// Classified once at parse time so the rewrite does not compare names again.
    pub(crate) class: HeaderClass,
}

/// Header names the parsers and the rewriters treat specially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderClass {
    Host,
    ContentLength,
    TransferEncoding,
    /// `Content_Length` / `Transfer_Encoding`: gateways such as CGI/WSGI map `_` to `-`, so these
    /// would reach an application as framing headers the proxy never looked at.
    FramingAlias,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    ProxyAuthorization,
    Expect,
    Other,
}

impl HeaderClass {
    /// Classifies by length first, then a case-insensitive compare: no allocation, and most names
    /// are rejected by the length match alone.
    #[inline]
    pub(crate) fn of(name: &[u8]) -> HeaderClass {
        let is = |lit: &str| name.eq_ignore_ascii_case(lit.as_bytes());
        match name.len() {
            2 if is("te") => HeaderClass::Te,
            4 if is("host") => HeaderClass::Host,
            6 if is("expect") => HeaderClass::Expect,
            7 if is("upgrade") => HeaderClass::Upgrade,
            7 if is("trailer") => HeaderClass::Trailer,
            10 if is("connection") => HeaderClass::Connection,
            10 if is("keep-alive") => HeaderClass::KeepAlive,
            14 if is("content-length") => HeaderClass::ContentLength,
            14 if eq_folded(name, b"content-length") => HeaderClass::FramingAlias,
            16 if is("proxy-connection") => HeaderClass::ProxyConnection,
            17 if is("transfer-encoding") => HeaderClass::TransferEncoding,
            17 if eq_folded(name, b"transfer-encoding") => HeaderClass::FramingAlias,
            19 if is("proxy-authorization") => HeaderClass::ProxyAuthorization,
            _ => HeaderClass::Other,
        }
    }
}

/// ASCII lower-casing that also reads `_` as `-`: how header names are compared against the strip
/// set and framing aliases (many application servers treat the two as the same).
#[inline]
pub(crate) fn fold(b: u8) -> u8 {
    FOLD[b as usize]
}

static FOLD: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = if b as u8 == b'_' {
            b'-'
        } else {
            (b as u8).to_ascii_lowercase()
        };
        b += 1;
    }
    table
};

/// `name` equals `folded` (already lower-case, `-` only) under [`fold`].
#[inline]
pub(crate) fn eq_folded(name: &[u8], folded: &[u8]) -> bool {
    name.len() == folded.len() && name.iter().zip(folded).all(|(&a, &b)| fold(a) == b)
}

/// Optional whitespace (RFC 9110 §5.6.3).
#[inline]
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Elements of a comma-separated field value, OWS-trimmed, empty elements skipped (RFC 9110
/// §5.6.1.2 requires recipients to tolerate them).
#[inline]
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

/// Builds a 256-entry byte-class table at compile time: a load instead of a chain of compares.
pub(crate) const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

static TCHAR: [bool; 256] = byte_table(b"!#$%&'*+-.^_`|~");

/// `tchar` (RFC 9110 §5.6.2).
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// The `Connection` tokens the heads care about (RFC 9110 §7.6.1).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Some token names another header, which the rewrite must then drop as hop-by-hop.
    pub nominates_others: bool,
}

impl ConnectionTokens {
    pub(crate) fn add(&mut self, value: &[u8]) {
        for token in list_items(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.nominates_others = true;
            }
        }
    }
}

/// Accumulates Content-Length field lines. Identical repeated values, as separate lines or as a
/// list (`5, 5`), count as one (RFC 9110 §8.6 allows a recipient to accept them); any difference, an
/// empty element, a non-digit or an overflow is an error.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ContentLength {
    pub value: Option<u64>,
}

impl ContentLength {
    pub(crate) fn add(&mut self, field: &[u8]) -> Result<(), &'static str> {
        let mut any = false;
        for item in field.split(|&b| b == b',') {
            let n = parse_decimal(trim_ows(item)).ok_or("invalid Content-Length")?;
            match self.value {
                Some(prev) if prev != n => return Err("conflicting Content-Length values"),
                _ => self.value = Some(n),
            }
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err("invalid Content-Length")
        }
    }
}

/// `1*DIGIT` as u64; `None` when empty, non-digit or overflowing.
#[inline]
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Appends the decimal form of `n` without going through `fmt` (no allocation, no formatter).
#[inline]
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or(&[]));
}

/// Appends `name: value\r\n`.
#[inline(always)]
pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(HeaderClass::of(b"HOST"), HeaderClass::Host);
        assert_eq!(
            HeaderClass::of(b"content-LENGTH"),
            HeaderClass::ContentLength
        );
        assert_eq!(
            HeaderClass::of(b"Content_Length"),
            HeaderClass::FramingAlias
        );
        assert_eq!(
            HeaderClass::of(b"transfer_encoding"),
            HeaderClass::FramingAlias
        );
        assert_eq!(HeaderClass::of(b"TE"), HeaderClass::Te);
        assert_eq!(HeaderClass::of(b"Keep-Alive"), HeaderClass::KeepAlive);
        assert_eq!(HeaderClass::of(b"Keep_Alive"), HeaderClass::Other);
        assert_eq!(HeaderClass::of(b"Hosts"), HeaderClass::Other);
        assert_eq!(HeaderClass::of(b""), HeaderClass::Other);
    }

    #[test]
    fn content_length_rules() {
        let mut cl = ContentLength::default();
        assert!(cl.add(b"5, 5").is_ok());
        assert!(cl.add(b"5").is_ok());
        assert_eq!(cl.value, Some(5));
        assert!(cl.add(b"6").is_err());
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5a",
            b"0x5",
            b"5,",
            b"5,,5",
            b" ",
            b"18446744073709551616",
        ] {
            assert!(ContentLength::default().add(bad).is_err(), "{bad:?}");
        }
        let mut max = ContentLength::default();
        assert!(max.add(b"18446744073709551615").is_ok());
        assert_eq!(max.value, Some(u64::MAX));
    }

    #[test]
    fn decimal_round_trip() {
        for n in [0, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn span_of_foreign_slice_is_empty() {
        let buf = b"hello world";
        let other = b"elsewhere";
        assert_eq!(Span::of(buf, &other[..]), Span::EMPTY);
        let s = Span::of(buf, &buf[6..]);
        assert_eq!(s.get(buf), b"world");
        assert_eq!(s.slice(1, 3).get(buf), b"or");
        assert_eq!(s.slice(4, 99).get(buf), b"d");
        assert_eq!(s.get(b"short"), b"");
    }

    #[test]
    fn fold_table() {
        for b in 0..=255u8 {
            let want = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
            assert_eq!(fold(b), want);
        }
    }

    #[test]
    fn tchar_table_matches_rfc() {
        for b in 0..=255u8 {
            let rfc = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), rfc, "{b:#x}");
        }
        assert!(is_token(b"chunked"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
    }

    #[test]
    fn list_items_trims_and_skips_empty() {
        let items: Vec<&[u8]> = list_items(b" a ,, b\t,c ,").collect();
        assert_eq!(items, vec![&b"a"[..], b"b", b"c"]);
    }
}
