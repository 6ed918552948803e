//! Validation of one HTTP/2 request before anything of it is forwarded: the h2 -> HTTP/1.1
//! desync class (RFC 9113 §8.2 and §8.3). What the `h2` crate already refuses (connection-specific
//! fields, `te` other than `trailers`, uppercase names, CR/LF/NUL in a field, a content-length
//! that disagrees with the DATA frames, missing `:method`/`:scheme`/`:path`) is checked again
//! here where it is cheap, so the guarantee does not rest on one library's version.

use h2::Reason;
use http::header::{self, HeaderMap};
use http::{Method, Request};

use crate::http::Page;

/// Why a request is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    /// A malformed message (RFC 9113 §8.1.1): the stream is reset with this reason.
    Reset(Reason, &'static str),
    /// A well-framed request certgate will not forward: answered with this page.
    Page(Page, &'static str),
}

impl Refuse {
    /// The access log's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Reset(_, r) | Self::Page(_, r) => r,
        }
    }
}

/// What forwarding needs of a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// The body length the client declared, when it did.
    pub content_length: Option<u64>,
}

/// Fields that only mean something to one HTTP/1.x connection (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Checks one request as received from a client.
pub fn validate<B>(req: &Request<B>) -> Result<Valid, Refuse> {
    let malformed = |why| Err(Refuse::Reset(Reason::PROTOCOL_ERROR, why));
    if req.method() == Method::CONNECT {
        return Err(Refuse::Page(
            Page::NotImplemented,
            "CONNECT is not served by a gateway",
        ));
    }
    let uri = req.uri();
    match uri.scheme_str() {
        Some("https" | "http") => {}
        Some(_) => return Err(Refuse::Page(Page::BadRequest, "unsupported :scheme")),
        None => {}
    }
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    let asterisk = path == "*" && req.method() == Method::OPTIONS;
    if !(path.starts_with('/') || asterisk) {
        return malformed("malformed :path");
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return malformed("malformed :path");
    }
    let headers = req.headers();
    check_fields(headers)?;
    let host = single(headers, header::HOST, "more than one host field")?;
    match (uri.authority(), host) {
        (Some(a), _) if a.as_str().contains('@') => {
            return malformed(":authority with userinfo");
        }
        (Some(a), Some(h)) if !a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) => {
            return Err(Refuse::Page(
                Page::BadRequest,
                "host field differs from :authority",
            ));
        }
        (Some(_), _) => {}
        (None, Some(h)) if valid_host(h.as_bytes()) => {}
        (None, Some(_)) => return Err(Refuse::Page(Page::BadRequest, "invalid host field")),
        (None, None) => {
            return Err(Refuse::Page(
                Page::BadRequest,
                "no :authority and no host field",
            ))
        }
    }
    let content_length = match single(
        headers,
        header::CONTENT_LENGTH,
        "more than one content-length field",
    )? {
        None => None,
        Some(v) => match parse_length(v.as_bytes()) {
            Some(n) => Some(n),
            None => return malformed("invalid content-length"),
        },
    };
    Ok(Valid { content_length })
}

/// Every regular field: lowercase, no connection-specific field, `te` only `trailers`, no
/// CR, LF or NUL, no leading or trailing whitespace in a value.
fn check_fields(headers: &HeaderMap) -> Result<(), Refuse> {
    let malformed = |why| Err(Refuse::Reset(Reason::PROTOCOL_ERROR, why));
    for (name, value) in headers {
        let n = name.as_str();
        if n.bytes().any(|b| b.is_ascii_uppercase()) {
            return malformed("uppercase field name");
        }
        if CONNECTION_SPECIFIC.contains(&n) {
            return malformed("connection-specific field");
        }
        if name == header::TE && value.as_bytes() != b"trailers" {
            return malformed("te other than trailers");
        }
        let v = value.as_bytes();
        if v.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
            return malformed("CR, LF or NUL in a field value");
        }
        if v.first().is_some_and(|&b| b == b' ' || b == b'\t')
            || v.last().is_some_and(|&b| b == b' ' || b == b'\t')
        {
            return malformed("whitespace around a field value");
        }
    }
    Ok(())
}

/// The one value of `name`, `None` when absent; refused when it repeats with another value.
fn single<'a>(
    headers: &'a HeaderMap,
    name: header::HeaderName,
    why: &'static str,
) -> Result<Option<&'a header::HeaderValue>, Refuse> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if let Some(f) = first {
        if all.any(|v| v != f) {
            return Err(Refuse::Page(Page::BadRequest, why));
        }
    }
    Ok(first)
}

/// A content-length value: 1 to 19 digits.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `host [ ":" port ]` with a reg-name, IPv4 or bracketed IPv6 host and no userinfo.
fn valid_host(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method("GET")
            .uri(format!("https://a.example{path}"));
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn plain_request_is_valid() {
        assert_eq!(
            validate(&req("/x?y=1", &[("content-length", "3")])),
            Ok(Valid {
                content_length: Some(3)
            })
        );
    }

    #[test]
    fn connection_specific_fields_reset() {
        for (n, v) in [
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("keep-alive", "5"),
            ("proxy-connection", "x"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ] {
            assert!(
                matches!(validate(&req("/", &[(n, v)])), Err(Refuse::Reset(..))),
                "{n}"
            );
        }
        assert!(validate(&req("/", &[("te", "trailers")])).is_ok());
    }

    #[test]
    fn whitespace_and_bad_lengths_reset() {
        assert!(matches!(
            validate(&req("/", &[("x-a", " padded")])),
            Err(Refuse::Reset(..))
        ));
        assert!(matches!(
            validate(&req("/", &[("content-length", "+5")])),
            Err(Refuse::Reset(..))
        ));
        assert!(matches!(
            validate(&req(
                "/",
                &[("content-length", "1"), ("content-length", "2")]
            )),
            Err(Refuse::Page(Page::BadRequest, _))
        ));
    }

    #[test]
    fn authority_and_host_must_agree() {
        assert!(matches!(
            validate(&req("/", &[("host", "b.example")])),
            Err(Refuse::Page(Page::BadRequest, _))
        ));
        assert!(validate(&req("/", &[("host", "A.example")])).is_ok());
        let userinfo = Request::get("https://u@a.example/")
            .body(())
            .expect("request");
        assert!(matches!(validate(&userinfo), Err(Refuse::Reset(..))));
    }

    #[test]
    fn connect_is_not_served() {
        let connect = Request::builder()
            .method("CONNECT")
            .uri("a.example:443")
            .body(())
            .expect("request");
        assert!(matches!(
            validate(&connect),
            Err(Refuse::Page(Page::NotImplemented, _))
        ));
    }
}
