//! The responses the proxy itself sends when it refuses or fails a request, as nginx's built-in
//! pages with `certgate` where nginx prints `nginx` (clients and monitoring that match nginx's
//! wording keep working). Refusals are on the hot path of a flood, so every variant — page ×
//! keep-alive × HEAD — is rendered once, on first use, and handed out as a static `Bytes`.
//! The pages say what class of failure occurred and nothing about the rules behind it.

use std::sync::OnceLock;

use bytes::Bytes;

use super::HeadError;

/// A refusal or failure page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Page {
    /// 400, nginx's 496: the client sent no certificate.
    NoCert,
    /// 400, nginx's 495: the certificate failed verification.
    CertError,
    /// 403: authenticated, not allowed (no detail about which rule).
    Forbidden,
    /// 400.
    BadRequest,
    /// 431.
    HeaderTooLarge,
    /// 414.
    UriTooLong,
    /// 501.
    NotImplemented,
    /// 505.
    VersionNotSupported,
    /// 502.
    BadGateway,
    /// 504.
    GatewayTimeout,
    /// 500.
    InternalError,
    /// 503.
    ServiceUnavailable,
    /// 408.
    RequestTimeout,
    /// 413.
    PayloadTooLarge,
    /// 421: the request names a host another `[[listener.sni]]` policy serves than the one
    /// this connection's handshake chose; the client retries on a new connection.
    Misdirected,
}

/// What a page says: status line reason (nginx's wording), the title when it differs from
/// `<status> <reason>`, and the extra line nginx prints under the heading.
struct Text {
    status: u16,
    reason: &'static str,
    title: Option<&'static str>,
    detail: Option<&'static str>,
}

impl Page {
    /// Every page, for tests and for checking the texts once.
    pub const ALL: [Page; 15] = [
        Page::NoCert,
        Page::CertError,
        Page::Forbidden,
        Page::BadRequest,
        Page::HeaderTooLarge,
        Page::UriTooLong,
        Page::NotImplemented,
        Page::VersionNotSupported,
        Page::BadGateway,
        Page::GatewayTimeout,
        Page::InternalError,
        Page::ServiceUnavailable,
        Page::RequestTimeout,
        Page::PayloadTooLarge,
        Page::Misdirected,
    ];

    /// The status code the page is sent with.
    pub fn status(self) -> u16 {
        self.text().status
    }

    fn text(self) -> Text {
        let plain = |status, reason| Text {
            status,
            reason,
            title: None,
            detail: None,
        };
        match self {
            Page::NoCert => Text {
                status: 400,
                reason: "Bad Request",
                title: Some("400 No required SSL certificate was sent"),
                detail: Some("No required SSL certificate was sent"),
            },
            Page::CertError => Text {
                status: 400,
                reason: "Bad Request",
                title: Some("400 The SSL certificate error"),
                detail: Some("The SSL certificate error"),
            },
            Page::Forbidden => plain(403, "Forbidden"),
            Page::BadRequest => plain(400, "Bad Request"),
            Page::HeaderTooLarge => plain(431, "Request Header Fields Too Large"),
            Page::UriTooLong => plain(414, "Request-URI Too Large"),
            Page::NotImplemented => plain(501, "Not Implemented"),
            Page::VersionNotSupported => plain(505, "HTTP Version Not Supported"),
            Page::BadGateway => plain(502, "Bad Gateway"),
            Page::GatewayTimeout => plain(504, "Gateway Time-out"),
            Page::InternalError => plain(500, "Internal Server Error"),
            Page::ServiceUnavailable => plain(503, "Service Temporarily Unavailable"),
            Page::RequestTimeout => plain(408, "Request Time-out"),
            Page::PayloadTooLarge => plain(413, "Request Entity Too Large"),
            Page::Misdirected => Text {
                status: 421,
                reason: "Misdirected Request",
                title: None,
                detail: Some("This connection cannot serve this host: open a new connection to it"),
            },
        }
    }

    #[inline]
    fn index(self, keep_alive: bool, head_only: bool) -> usize {
        self as usize * 4 + usize::from(keep_alive) * 2 + usize::from(head_only)
    }
}

/// The complete response (head, and body unless `head_only`) for `page`. `keep_alive` selects
/// `Connection: keep-alive` instead of `Connection: close`; the caller must then actually keep the
/// connection, and must not ask for it after a malformed head. `head_only` for a HEAD request: same
/// headers (Content-Length of the page), no body. Cheap: a static `Bytes`, no copy, no refcount.
pub fn render(page: Page, keep_alive: bool, head_only: bool) -> Bytes {
    static RENDERED: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = RENDERED.get_or_init(|| {
        let mut all = vec![Vec::new(); Page::ALL.len() * 4];
        for page in Page::ALL {
            for keep_alive in [false, true] {
                for head_only in [false, true] {
                    if let Some(slot) = all.get_mut(page.index(keep_alive, head_only)) {
                        *slot = build(page, keep_alive, head_only);
                    }
                }
            }
        }
        all
    });
    match all.get(page.index(keep_alive, head_only)) {
        Some(bytes) => Bytes::from_static(bytes.as_slice()),
        None => Bytes::new(),
    }
}

fn build(page: Page, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let t = page.text();
    let heading = format!("{} {}", t.status, t.reason);
    let mut body = String::with_capacity(256);
    body.push_str("<html>\r\n<head><title>");
    body.push_str(t.title.unwrap_or(&heading));
    body.push_str("</title></head>\r\n<body>\r\n<center><h1>");
    body.push_str(&heading);
    body.push_str("</h1></center>\r\n");
    if let Some(detail) = t.detail {
        body.push_str("<center>");
        body.push_str(detail);
        body.push_str("</center>\r\n");
    }
    body.push_str("<hr><center>certgate</center>\r\n</body>\r\n</html>\r\n");

    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {heading}\r\nServer: certgate\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The page answering a refused head: by status, 400 for anything unexpected.
pub fn status_page_for(head_error: &HeadError) -> Page {
    match head_error.status {
        403 => Page::Forbidden,
        408 => Page::RequestTimeout,
        413 => Page::PayloadTooLarge,
        414 => Page::UriTooLong,
        431 => Page::HeaderTooLarge,
        501 => Page::NotImplemented,
        502 => Page::BadGateway,
        503 => Page::ServiceUnavailable,
        504 => Page::GatewayTimeout,
        505 => Page::VersionNotSupported,
        500..=599 => Page::InternalError,
        _ => Page::BadRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_response, BodyKind, Limits};

    #[test]
    fn no_cert_page_matches_nginx() {
        let body = "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>\r\n<hr><center>certgate</center>\r\n</body>\r\n</html>\r\n";
        let want = format!(
            "HTTP/1.1 400 Bad Request\r\nServer: certgate\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(render(Page::NoCert, false, false), want.as_bytes());
    }

    #[test]
    fn forbidden_page() {
        let got = render(Page::Forbidden, true, false);
        let text = std::str::from_utf8(&got).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.ends_with("<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>certgate</center>\r\n</body>\r\n</html>\r\n"));
    }

    #[test]
    fn cert_error_title() {
        let got = render(Page::CertError, false, false);
        let text = std::str::from_utf8(&got).unwrap();
        assert!(text.contains("<title>400 The SSL certificate error</title>"));
        assert!(text.contains("<h1>400 Bad Request</h1>"));
    }

    #[test]
    fn every_page_is_a_valid_response() {
        for page in Page::ALL {
            for keep_alive in [false, true] {
                let full = render(page, keep_alive, false);
                let head = parse_response(&full, false, &Limits::default())
                    .unwrap()
                    .unwrap();
                assert_eq!(head.status, page.status());
                assert_eq!(
                    head.body,
                    BodyKind::Length((full.len() - head.head_len) as u64),
                    "{page:?}"
                );
                assert_eq!(head.keep_alive, keep_alive);
                let head_only = render(page, keep_alive, true);
                assert_eq!(head_only, full.slice(..head.head_len));
            }
        }
    }

    #[test]
    fn statuses_and_mapping() {
        let statuses: Vec<u16> = Page::ALL.iter().map(|p| p.status()).collect();
        assert_eq!(
            statuses,
            [400, 400, 403, 400, 431, 414, 501, 505, 502, 504, 500, 503, 408, 413, 421]
        );
        let misdirected = render(Page::Misdirected, false, false);
        let text = String::from_utf8_lossy(&misdirected);
        assert!(
            text.starts_with("HTTP/1.1 421 Misdirected Request\r\n"),
            "{text}"
        );
        assert!(text.contains("open a new connection"), "{text}");
        for (status, page) in [
            (400, Page::BadRequest),
            (414, Page::UriTooLong),
            (431, Page::HeaderTooLarge),
            (501, Page::NotImplemented),
            (505, Page::VersionNotSupported),
            (502, Page::BadGateway),
            (507, Page::InternalError),
            (418, Page::BadRequest),
        ] {
            let e = HeadError {
                status,
                reason: "x",
            };
            assert_eq!(status_page_for(&e), page);
        }
    }

    #[test]
    fn rendering_is_shared() {
        let a = render(Page::BadGateway, false, false);
        let b = render(Page::BadGateway, false, false);
        assert_eq!(a.as_ptr(), b.as_ptr());
    }
}
