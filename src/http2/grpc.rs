//! gRPC-shaped answers: a gRPC client reads a bare HTTP status as `INTERNAL` or `UNKNOWN`, so a
//! refused or failed gRPC call is answered as gRPC servers answer: HTTP 200 with
//! `grpc-status` and `grpc-message` in a trailers-only response (one HEADERS frame ending the
//! stream).

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::Response;

use crate::http::Page;
use crate::proxy::identity::Refusal;

/// `UNAUTHENTICATED`: no certificate, or one that failed verification.
pub const UNAUTHENTICATED: u8 = 16;
/// `PERMISSION_DENIED`: the rules refused the client.
pub const PERMISSION_DENIED: u8 = 7;
/// `UNAVAILABLE`: no upstream answered.
pub const UNAVAILABLE: u8 = 14;
/// `DEADLINE_EXCEEDED`: the upstream did not answer in time.
pub const DEADLINE_EXCEEDED: u8 = 4;
/// `INTERNAL`: a malformed request or another failure.
pub const INTERNAL: u8 = 13;
/// `UNIMPLEMENTED`.
pub const UNIMPLEMENTED: u8 = 12;

/// Whether a request is a gRPC call: `content-type: application/grpc` or `application/grpc+…`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// The gRPC status answering a refused client.
pub fn refusal_status(refusal: &Refusal) -> (u8, &'static str) {
    match refusal {
        Refusal::NoCert => (UNAUTHENTICATED, "no required client certificate was sent"),
        Refusal::CertError(_) => (
            UNAUTHENTICATED,
            "the client certificate failed verification",
        ),
        Refusal::Forbidden(_) => (PERMISSION_DENIED, "forbidden"),
    }
}

/// The gRPC status standing for one of the proxy's pages.
pub fn page_status(page: Page) -> (u8, &'static str) {
    match page {
        Page::NoCert | Page::CertError => (UNAUTHENTICATED, "client certificate refused"),
        Page::Forbidden => (PERMISSION_DENIED, "forbidden"),
        Page::BadGateway | Page::ServiceUnavailable => (UNAVAILABLE, "upstream unavailable"),
        Page::GatewayTimeout => (DEADLINE_EXCEEDED, "upstream timed out"),
        Page::RequestTimeout => (DEADLINE_EXCEEDED, "request timed out"),
        Page::NotImplemented => (UNIMPLEMENTED, "not implemented"),
        _ => (INTERNAL, "bad request"),
    }
}

/// A trailers-only response: 200, `content-type: application/grpc`, the status and message.
pub fn trailers_only(status: u8, message: &'static str) -> Response<()> {
    let mut r = Response::new(());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(u16::from(status)));
    h.insert("grpc-message", HeaderValue::from_static(message));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        for (v, yes) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC;charset=x", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_grpc(&h), yes, "{v}");
        }
    }

    #[test]
    fn trailers_only_carries_the_status() {
        let r = trailers_only(PERMISSION_DENIED, "forbidden");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "forbidden");
    }
}
