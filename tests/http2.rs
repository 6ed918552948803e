//! HTTP/2 from clients: ALPN h2 on TLS, prior knowledge on a plain listener, identity on every
//! stream, refusals per stream (gRPC-shaped for gRPC calls), the h2 -> HTTP/1.1 translation and
//! its desync class refused before anything reaches the upstream, bodies both ways.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// curl over HTTP/2 with `client`'s certificate.
fn h2<'a>(gate: &'a Gate, path: &str) -> Curl<'a> {
    gate.curl(path).arg("--http2")
}

/// The `HTTP/2 200` status line curl writes for an h2 response.
fn is_h2(out: &CurlOut) -> bool {
    out.head.starts_with("HTTP/2 ")
}

#[test]
fn curl_http2_is_proxied_with_identity_headers() {
    let gate = Gate::start(Config::new());
    let pki = gate.pki().clone();
    let out = h2(&gate, "/h2?x=1")
        .cert(&pki.client1)
        .header("Cookie: a=1")
        .header("Cookie: b=2")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(is_h2(&out), "not HTTP/2: {}", out.head);
    let seen = out.seen();
    assert_eq!(seen.str("method"), "GET");
    assert_eq!(seen.str("path"), "/h2?x=1");
    assert_eq!(seen.str("version"), "HTTP/1.1");
    assert_eq!(
        seen.one("host"),
        format!("localhost:{}", gate.addr().port())
    );
    assert_eq!(seen.one("x-ssl-client-verify"), "SUCCESS");
    assert!(seen.one("x-ssl-client-s-dn").contains("CN="), "{seen}");
    assert_eq!(seen.one("cookie"), "a=1; b=2");
    assert!(
        seen.get("te").is_none() && seen.get("connection").is_none(),
        "{seen}"
    );
    // Access line: one per stream, as HTTP/2.0.
    let log = gate.log();
    assert!(
        log.contains("HTTP/2.0") && log.contains("/h2?x=1"),
        "no HTTP/2.0 access line:\n{log}"
    );
}

#[test]
fn protocols_http1_only_makes_curl_fall_back() {
    let gate = Gate::start(Config::new().listener_extra("protocols = [\"http/1.1\"]"));
    let pki = gate.pki().clone();
    let out = h2(&gate, "/fallback").cert(&pki.client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.head.starts_with("HTTP/1.1 "), "{}", out.head);
    assert_eq!(out.seen().str("path"), "/fallback");
}
