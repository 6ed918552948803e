//! HTTP/1.1 clients in front of a `protocol = "h2"` upstream: certgate translates each request
//! into an HTTP/2 stream and the answer back into HTTP/1.1. The witness is the h2c echo of
//! `certgate_tools::echo_h2`, which answers with what reached it (pseudo-headers, fields, body
//! digest, trailers, connection and stream number); the clients are `curl --http1.1` and the
//! raw TLS client.

mod common;

use std::time::Duration;

use certgate_tools::echo_h2::{self, EchoH2};
use common::*;

/// certgate (mTLS required, HTTP/1.1 only on the listener) in front of `server`, forwarding
/// with `protocol = "h2"`.
fn gate_for(server: &EchoH2, config: Config) -> Gate {
    Gate::start(
        config
            .upstream(&[server.addr])
            .upstream_extra("protocol = \"h2\""),
    )
}

fn echo() -> EchoH2 {
    echo_h2::spawn().expect("spawn the h2 echo")
}

fn client(gate: &Gate) -> TlsClient {
    gate.connect(Some(&gate.pki().client1))
}

fn sha256_hex(data: &[u8]) -> String {
    boring::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a raw response (head and chunked body) up to the end of its trailer section.
fn raw_chunked(c: &mut TlsClient) -> String {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n0\r\n") {
            if text[end + 5..].contains("\r\n\r\n") || text[end + 5..].starts_with("\r\n") {
                return text;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        got.extend(c.read_some().expect("read"));
    }
}

#[test]
fn curl_over_http1_reaches_the_h2_server_with_the_identity_and_no_forgery() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let out = gate
        .curl("/path/here?q=1")
        .cert(&gate.pki().client1)
        .arg("--http1.1")
        .header("X-SSL-Client-S-DN: CN=FORGED admin,O=Acme,C=FI")
        .header("x_ssl_client_verify: FORGED")
        .header("TE: trailers")
        .header("X-Plain: kept")
        .run();
    assert_eq!(out.status, 200, "{out:?}\n{}", gate.log());
    assert!(out.head.starts_with("HTTP/1.1 200"), "{}", out.head);
    let seen = out.seen();
    assert_eq!(seen.str("method"), "GET");
    assert_eq!(seen.str("scheme"), "https");
    assert_eq!(seen.str("authority"), gate.host());
    assert_eq!(seen.str("path"), "/path/here?q=1");
    assert_eq!(seen.one("x-ssl-client-s-dn"), dn::CLIENT1);
    assert_eq!(seen.one("x-ssl-client-verify"), "SUCCESS");
    assert_eq!(seen.one("x-plain"), "kept");
    assert_eq!(seen.one("te"), "trailers");
    for gone in ["host", "connection", "x_ssl_client_verify"] {
        assert_eq!(seen.get(gone), None, "{gone}: {seen}");
    }
    // The server's content-length reached the client.
    let len = out.body.len().to_string();
    assert!(
        out.head
            .to_ascii_lowercase()
            .contains(&format!("content-length: {len}")),
        "{}",
        out.head
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn bodies_stream_both_ways_in_both_framings_with_trailers() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let host = gate.host();
    let mut c = client(&gate);

    // Content-Length up, 1 MiB: more than any window, so it streams.
    let body: Vec<u8> = (0..1u64 << 20).map(pattern_byte).collect();
    let r = c.roundtrip(&post(&host, "/up", &[], &body));
    assert_eq!(r.status, 200);
    let seen = r.seen();
    assert_eq!(seen.u64("body_len"), 1 << 20);
    assert_eq!(seen.str("body_sha256"), sha256_hex(&body));
    assert_eq!(seen.one("content-length"), (1u64 << 20).to_string());

    // Chunked up, its trailers as HTTP/2 trailers; no transfer-encoding reaches HTTP/2.
    let req = format!(
        "POST /chunked HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\
         TE: trailers\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"
    );
    let r = c.roundtrip(req.as_bytes());
    assert_eq!(r.status, 200);
    let seen = r.seen();
    assert_eq!(seen.u64("body_len"), 11);
    assert_eq!(seen.str("body_sha256"), sha256_hex(b"hello world"));
    assert_eq!(seen.get("transfer-encoding"), None, "{seen}");
    assert_eq!(seen.0["trailers"], serde_json::json!([["x-sum", "11"]]));

    // Down without content-length: chunked to the client, the server's trailers as chunked
    // trailers.
    let r = c.roundtrip(&get(&host, "/stream/300000", &[]));
    assert_eq!(r.status, 200);
    assert!(r.chunked, "{:?}", r.headers);
    let want: Vec<u8> = (0..300_000u64).map(pattern_byte).collect();
    assert!(r.body == want, "the body differs ({} bytes)", r.body.len());
    c.send_all(&get(&host, "/trailers", &[]));
    let raw = raw_chunked(&mut c);
    assert!(raw.contains("transfer-encoding: chunked\r\n"), "{raw}");
    assert!(
        raw.ends_with("\r\n0\r\nx-echo-trailer: yes\r\n\r\n"),
        "{raw}"
    );

    // All of it on the one client connection and the one upstream connection.
    let r = c.roundtrip(&get(&host, "/last", &[]));
    assert_eq!(r.seen().u64("conn_id"), 1);
    assert_eq!(server.connections(), 1);
}

#[test]
fn keep_alive_requests_are_streams_of_one_upstream_connection() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let host = gate.host();
    let mut c = client(&gate);
    for i in 1..=4u64 {
        let r = c.roundtrip(&get(&host, &format!("/n/{i}"), &[]));
        assert_eq!(r.status, 200, "request {i}");
        let seen = r.seen();
        assert_eq!(seen.str("path"), format!("/n/{i}"));
        assert_eq!(seen.u64("conn_id"), 1);
        assert_eq!(seen.u64("stream_no_on_conn"), i);
        assert_eq!(r.header("connection"), None, "{:?}", r.headers);
    }
    // HEAD: the server's headers, no body.
    let head = format!("HEAD /h HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let r = c.roundtrip(head.as_bytes());
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    // 204 and 304: no body, no framing.
    for code in [204, 304] {
        let r = c.roundtrip(&get(&host, &format!("/status/{code}"), &[]));
        assert_eq!(r.status, code);
        assert!(r.body.is_empty());
        assert_eq!(r.header("transfer-encoding"), None);
    }
    // A stream ended with its headers: an empty body, delimited.
    let r = c.roundtrip(&get(&host, "/empty", &[]));
    assert_eq!((r.status, r.header("content-length")), (200, Some("0")));
    // Still the same connections after all of them.
    let r = c.roundtrip(&get(&host, "/again", &[]));
    assert_eq!(r.seen().u64("stream_no_on_conn"), 9);
    assert_eq!(server.connections(), 1);
    assert_eq!(server.streams(), 9);
}

#[test]
fn an_http10_client_gets_a_close_delimited_body() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let mut c = client(&gate);
    let req = format!("GET /stream/5000 HTTP/1.0\r\nHost: {}\r\n\r\n", gate.host());
    let r = c.roundtrip(req.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("connection"), Some("close"));
    let want: Vec<u8> = (0..5000u64).map(pattern_byte).collect();
    assert!(r.body == want, "{} bytes", r.body.len());
}

#[test]
fn expect_100_continue_is_answered_once_the_stream_is_open() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let mut c = client(&gate);
    let head = format!(
        "PUT /x HTTP/1.1\r\nHost: {}\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        gate.host()
    );
    c.send_all(head.as_bytes());
    let interim = c.response(false).unwrap();
    assert_eq!(interim.status, 100);
    c.send_all(b"data");
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 200);
    let seen = r.seen();
    assert_eq!(seen.u64("body_len"), 4);
    assert_eq!(seen.get("expect"), None, "{seen}");
}

#[test]
fn an_unreachable_upstream_is_502_and_a_slow_one_504() {
    let gate = Gate::start(
        Config::new()
            .upstream(&[dead_addr()])
            .upstream_extra("protocol = \"h2\""),
    );
    let mut c = client(&gate);
    let r = c.roundtrip(&get(&gate.host(), "/", &[]));
    assert_eq!(r.status, 502);
    // The connection goes on after a gateway error, as after HTTP/1.1 ones.
    let r = c.roundtrip(&get(&gate.host(), "/", &[]));
    assert_eq!(r.status, 502);

    let server = echo();
    let gate = gate_for(&server, Config::new().timeout("upstream_read", "500ms"));
    let started = std::time::Instant::now();
    let out = gate
        .curl("/slow/3000")
        .cert(&gate.pki().client1)
        .arg("--http1.1")
        .run();
    assert_eq!(out.status, 504, "{out:?}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    // A fast one on the same upstream connection still answers.
    let out = gate
        .curl("/slow/10")
        .cert(&gate.pki().client1)
        .arg("--http1.1")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
}

#[test]
fn upgrade_requests_are_refused_with_501() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let mut c = client(&gate);
    let r = c.roundtrip(&get(
        &gate.host(),
        "/ws",
        &[
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ],
    ));
    assert_eq!(r.status, 501);
    assert_eq!(server.streams(), 0);
    assert!(
        gate.log().contains("upgrade request refused with 501"),
        "{}",
        gate.log()
    );
}

#[test]
fn an_answer_before_the_body_ends_is_relayed_and_the_connection_closes() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let mut c = client(&gate);
    // 10 MiB announced, 64 KiB sent: the server answers without reading it.
    let head = format!(
        "POST /early/413 HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        gate.host(),
        10 << 20
    );
    c.send_all(head.as_bytes());
    c.send_all(&vec![b'x'; 64 * 1024]);
    let r = c.response(false).unwrap();
    assert_eq!((r.status, &r.body[..]), (413, &b"early\n"[..]));
    assert_eq!(r.header("connection"), Some("close"));
    c.closes_within(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_client_body_that_stalls_is_cut_after_body_idle() {
    let server = echo();
    let gate = gate_for(&server, Config::new().timeout("body_idle", "500ms"));
    let mut c = client(&gate);
    let head = format!(
        "POST /x HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\nonly-this",
        gate.host()
    );
    c.send_all(head.as_bytes());
    let started = std::time::Instant::now();
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 408, "{:?}", r.headers);
    assert!(started.elapsed() < Duration::from_secs(3));
    c.closes_within(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_dead_server_is_skipped_for_the_next_and_the_access_line_says_so() {
    let server = echo();
    let gate = Gate::start(
        Config::new()
            .upstream(&[dead_addr(), server.addr])
            .upstream_extra("protocol = \"h2\""),
    );
    let mut c = client(&gate);
    for i in 0..2 {
        let r = c.roundtrip(&get(&gate.host(), &format!("/try/{i}"), &[]));
        assert_eq!(r.status, 200, "request {i}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let want = format!("upstream={}", server.addr);
    loop {
        let log = gate.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("certgate::access") && l.contains("/try/"))
            .collect();
        if lines.len() == 2 {
            assert!(
                lines
                    .iter()
                    .all(|l| l.contains("status=200") && l.contains(&want)),
                "{lines:#?}"
            );
            // Round robin puts one of the two on the dead server first.
            assert!(lines.iter().any(|l| l.contains("attempts=2")), "{lines:#?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn concurrent_clients_are_multiplexed_on_one_upstream_connection() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let mut c = client(&gate);
            let host = gate.host();
            std::thread::spawn(move || {
                let r = c.roundtrip(&get(&host, &format!("/slow/300?c={i}"), &[]));
                assert_eq!(r.status, 200);
                r.seen().u64("conn_id")
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 1);
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(server.streams(), 4);
}

#[test]
fn a_response_cut_by_the_server_is_not_completed_for_the_client() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let mut c = client(&gate);
    c.send_all(&get(&gate.host(), "/reset-after/1000", &[]));
    // The head and the 1000 bytes as one chunk, then the connection closes without the last
    // chunk: the client sees a truncated body, never a complete one.
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match c.read_some() {
            Ok(b) if !b.is_empty() => got.extend(b),
            _ => break,
        }
        assert!(std::time::Instant::now() < deadline);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(text.contains("\r\n3e8\r\n"), "{text}");
    assert!(!text.contains("\r\n0\r\n"), "{text}");
    assert!(
        gate.log().contains("response body relay failed"),
        "{}",
        gate.log()
    );
}

#[test]
fn a_server_that_does_not_read_holds_the_client_back_instead_of_certgate_buffering() {
    let server = echo();
    let gate = gate_for(&server, Config::new());
    let mut c = client(&gate);
    // Far more than the socket buffers on the way hold: the upload can only finish once the
    // server reads, which it starts doing after 2 s.
    const SIZE: u64 = 32 << 20;
    let body: Vec<u8> = (0..SIZE).map(pattern_byte).collect();
    let started = std::time::Instant::now();
    c.send_all(&post(&gate.host(), "/hold/2000", &[], &body));
    let sent_after = started.elapsed();
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 200);
    let seen = r.seen();
    assert_eq!(seen.u64("body_len"), SIZE);
    assert_eq!(seen.str("body_sha256"), sha256_hex(&body));
    assert!(
        sent_after >= Duration::from_millis(1500),
        "the upload finished after {sent_after:?}, before the server read anything: buffered"
    );
}
