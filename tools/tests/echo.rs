//! The echo upstream on its own, over plain TCP: the witness the proxy tests rely on must itself
//! be right.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn client(echo: &EchoServer) -> HttpReader<TcpStream> {
    let tcp = TcpStream::connect_timeout(&echo.addr(), Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    HttpReader::new(tcp)
}

fn roundtrip(c: &mut HttpReader<TcpStream>, req: &[u8]) -> Response {
    c.send(req).unwrap();
    c.response(req.starts_with(b"HEAD ")).unwrap()
}

fn spawn() -> EchoServer {
    echo::spawn("127.0.0.1:0".parse().unwrap()).unwrap()
}

#[test]
fn describes_requests_and_keeps_connections_alive() {
    let echo = spawn();
    let mut c = client(&echo);
    for k in 1..=3u64 {
        let r = roundtrip(
            &mut c,
            &get("h", "/a?b=c", &["X-Mixed-Case: v1", "x-dup: 1", "X-Dup: 2"]),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let seen = r.seen();
        assert_eq!(seen.str("method"), "GET");
        assert_eq!(seen.str("path"), "/a?b=c");
        assert_eq!(seen.str("version"), "HTTP/1.1");
        assert_eq!(seen.u64("request_no_on_conn"), k);
        assert_eq!(seen.u64("conn_id"), 1);
        assert_eq!(
            seen.headers(),
            vec![
                ("Host".to_string(), "h".to_string()),
                ("X-Mixed-Case".to_string(), "v1".to_string()),
                ("x-dup".to_string(), "1".to_string()),
                ("X-Dup".to_string(), "2".to_string()),
            ]
        );
    }
    assert_eq!(echo.connections(), 1);
    assert_eq!(echo.requests(), 3);
}

#[test]
fn reads_content_length_and_chunked_bodies() {
    let echo = spawn();
    let mut c = client(&echo);
    let r = roundtrip(&mut c, &post("h", "/", &[], b"hello world"));
    let seen = r.seen();
    assert_eq!(seen.str("framing"), "content-length");
    assert_eq!(seen.u64("body_len"), 11);
    assert_eq!(seen.str("body"), "hello world");
    assert_eq!(seen.str("body_sha256"), sha256_hex(b"hello world"));

    let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n";
    let seen = roundtrip(&mut c, chunked).seen();
    assert_eq!(seen.str("framing"), "chunked");
    assert_eq!(seen.str("body"), "hello world");
    assert_eq!(seen.0["trailers"], serde_json::json!([["X-Trailer", "t"]]));
    assert_eq!(seen.u64("request_no_on_conn"), 2);
}

#[test]
fn refuses_what_it_cannot_frame() {
    for bad in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    ] {
        let echo = spawn();
        let mut c = client(&echo);
        let r = roundtrip(&mut c, bad);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(r.header("x-echo-error").is_some());
        assert_eq!(echo.requests(), 0);
        assert_eq!(echo.errors(), 1);
        c.closes_within(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn special_paths() {
    let echo = spawn();
    let mut c = client(&echo);

    let r = roundtrip(&mut c, &get("h", "/status/418", &[]));
    assert_eq!(r.status, 418);
    assert_eq!(r.seen().str("path"), "/status/418");

    for code in [204, 304] {
        let r = roundtrip(&mut c, &get("h", &format!("/status/{code}"), &[]));
        assert_eq!(r.status, code);
        assert!(r.body.is_empty());
    }

    let r = roundtrip(&mut c, &get("h", "/bytes/70000", &[]));
    assert_eq!(r.header("content-length"), Some("70000"));
    assert_eq!(r.body, pattern(70000));

    let r = roundtrip(&mut c, &get("h", "/chunked/70000", &[]));
    assert!(r.chunked);
    assert_eq!(r.body, pattern(70000));

    let r = roundtrip(&mut c, b"HEAD /bytes/10 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.header("content-length"), Some("10"));
    assert!(r.body.is_empty());
    // Nothing stray after the HEAD response: the next request parses.
    assert_eq!(roundtrip(&mut c, &get("h", "/", &[])).status, 200);

    let r = roundtrip(&mut c, &get("h", "/slow/50", &[]));
    assert_eq!(r.status, 200);

    let r = roundtrip(&mut c, &get("h", "/close", &[]));
    assert_eq!(r.header("connection"), Some("close"));
    c.closes_within(Duration::from_secs(5)).unwrap();
    assert_eq!(echo.connections(), 1);
}

#[test]
fn expect_100_continue_and_upgrade() {
    let echo = spawn();
    let mut c = client(&echo);
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        .unwrap();
    let interim = c.response(false).unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"abc").unwrap();
    assert_eq!(c.response(false).unwrap().seen().str("body"), "abc");

    c.send(&get(
        "h",
        "/ws",
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ],
    ))
    .unwrap();
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 101);
    // RFC 6455 section 1.3's example.
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    c.send(b"ping").unwrap();
    assert_eq!(c.read_n(4).unwrap(), b"ping");
    let big = noise(200_000, 7);
    c.send(&big).unwrap();
    assert_eq!(c.read_n(big.len()).unwrap(), big);
}

#[test]
fn stop_closes_open_connections() {
    let echo = spawn();
    let mut c = client(&echo);
    assert_eq!(roundtrip(&mut c, &get("h", "/", &[])).status, 200);
    echo.stop();
    c.closes_within(Duration::from_secs(5)).unwrap();
}
