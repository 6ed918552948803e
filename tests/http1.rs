//! HTTP/1.1 through the proxy: persistent connections, bodies in both framings, interim and
//! body-less responses, upgrades, and the request-smuggling vectors that must be refused.

mod common;

use std::time::Duration;

use common::*;

fn gate() -> Gate {
    Gate::start(Config::new())
}

fn client(gate: &Gate) -> TlsClient {
    gate.connect(Some(&gate.pki().client1))
}

#[test]
fn keepalive_connection_serves_many_requests_over_few_upstream_connections() {
    let gate = gate();
    let mut c = client(&gate);
    const N: u64 = 8;
    for i in 0..N {
        let r = c.roundtrip(&get(&gate.host(), &format!("/req/{i}"), &[]));
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.seen().str("path"), format!("/req/{i}"));
    }
    let upstream = gate.echo().connections();
    assert!(
        upstream <= 2,
        "{N} requests took {upstream} upstream connections: no pooling"
    );

    // A second client connection (same worker) reuses the pool too.
    let mut c2 = client(&gate);
    for i in 0..4 {
        assert_eq!(
            c2.roundtrip(&get(&gate.host(), &format!("/second/{i}"), &[]))
                .status,
            200
        );
    }
    let upstream = gate.echo().connections();
    assert!(
        upstream <= 2,
        "{} requests took {upstream} upstream connections",
        N + 4
    );
    assert_eq!(gate.echo().requests(), N + 4);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let gate = gate();
    let mut c = client(&gate);
    let mut burst = get(&gate.host(), "/first", &[]);
    burst.extend(post(&gate.host(), "/second", &[], b"body-of-second"));
    burst.extend(get(&gate.host(), "/third", &[]));
    c.send_all(&burst);
    let first = c.response(false).unwrap().seen();
    let second = c.response(false).unwrap().seen();
    let third = c.response(false).unwrap().seen();
    assert_eq!(first.str("path"), "/first");
    assert_eq!(second.str("path"), "/second");
    assert_eq!(second.str("body"), "body-of-second");
    assert_eq!(third.str("path"), "/third");
}

#[test]
fn http10_request_is_answered_and_closed() {
    let gate = gate();
    let mut c = client(&gate);
    let r = c.roundtrip(format!("GET /old HTTP/1.0\r\nHost: {}\r\n\r\n", gate.host()).as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.seen().str("path"), "/old");
    c.closes_within(Duration::from_secs(5))
        .expect("HTTP/1.0 without keep-alive must close");
}

#[test]
fn chunked_request_body_arrives_decoded() {
    let gate = gate();
    let mut c = client(&gate);
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n1;name=value\r\n,\r\nA\r\n big world\r\n0\r\n\r\n",
        gate.host()
    );
    let r = c.roundtrip(req.as_bytes());
    assert_eq!(r.status, 200);
    let seen = r.seen();
    assert_eq!(seen.str("body"), "hello, big world");
    assert_eq!(seen.u64("body_len"), 16);
    // And the connection is still in sync for the next request.
    assert_eq!(
        c.roundtrip(&get(&gate.host(), "/after", &[]))
            .seen()
            .str("path"),
        "/after"
    );
}

#[test]
fn response_bodies_pass_intact_in_both_framings() {
    let gate = gate();
    let mut c = client(&gate);
    for path in ["/chunked/300000", "/bytes/300000", "/chunked/1", "/bytes/0"] {
        let n: usize = path.rsplit('/').next().unwrap().parse().unwrap();
        let r = c.roundtrip(&get(&gate.host(), path, &[]));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body.len(), n, "{path}");
        assert!(
            r.body == pattern(n),
            "{path}: body differs from the upstream's"
        );
    }
    // 16 MiB download.
    c.set_read_timeout(Duration::from_secs(60));
    let n = 16 << 20;
    let r = c.roundtrip(&get(&gate.host(), &format!("/bytes/{n}"), &[]));
    assert_eq!(r.body.len(), n);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&pattern(n)));
}

/// Streams `body` as the request body, chunked (in uneven chunks) or with Content-Length.
fn upload(gate: &Gate, body: &[u8], chunked: bool) -> Seen {
    let mut c = client(gate);
    c.set_read_timeout(Duration::from_secs(120));
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    c.send_all(
        format!(
            "PUT /big HTTP/1.1\r\nHost: {}\r\n{framing}\r\n\r\n",
            gate.host()
        )
        .as_bytes(),
    );
    let sizes = [1 << 20, 65_536, 1, 333_333, 16_384];
    let mut offset = 0;
    let mut i = 0;
    while offset < body.len() {
        let len = sizes[i % sizes.len()].min(body.len() - offset);
        i += 1;
        let piece = &body[offset..offset + len];
        if chunked {
            c.send_all(format!("{len:x}\r\n").as_bytes());
            c.send_all(piece);
            c.send_all(b"\r\n");
        } else {
            c.send_all(piece);
        }
        offset += len;
    }
    if chunked {
        c.send_all(b"0\r\n\r\n");
    }
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.seen()
}

#[test]
fn large_uploads_pass_intact() {
    let gate = gate();
    let body = noise(64 << 20, 0x5eed);
    let digest = sha256_hex(&body);
    for chunked in [false, true] {
        let seen = upload(&gate, &body, chunked);
        assert_eq!(seen.u64("body_len"), body.len() as u64, "chunked={chunked}");
        assert_eq!(
            seen.str("body_sha256"),
            digest,
            "chunked={chunked}: body corrupted"
        );
    }
}

#[test]
fn expect_100_continue() {
    let gate = gate();
    let mut c = client(&gate);
    c.set_read_timeout(Duration::from_secs(5));
    c.send_all(
        format!(
            "POST /expect HTTP/1.1\r\nHost: {}\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
            gate.host()
        )
        .as_bytes(),
    );
    let interim = c
        .response(false)
        .expect("no 100 Continue while the client waits for it");
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send_all(b"hello world");
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.seen().str("body"), "hello world");

    // A client that does not wait sends the body at once; it may or may not see a 100 first.
    c.send_all(&post(
        &gate.host(),
        "/eager",
        &["Expect: 100-continue"],
        b"eager",
    ));
    let mut r = c.response(false).unwrap();
    if r.status == 100 {
        r = c.response(false).unwrap();
    }
    assert_eq!(r.status, 200);
    assert_eq!(r.seen().str("body"), "eager");
}

#[test]
fn head_204_and_304_have_no_body() {
    let gate = gate();
    let mut c = client(&gate);
    let head = format!("HEAD /bytes/1000 HTTP/1.1\r\nHost: {}\r\n\r\n", gate.host());
    let head_json = format!("HEAD / HTTP/1.1\r\nHost: {}\r\n\r\n", gate.host());
    for (what, req) in [
        ("HEAD /bytes/1000", head.into_bytes()),
        ("HEAD /", head_json.into_bytes()),
        ("204", get(&gate.host(), "/status/204", &[])),
        ("304", get(&gate.host(), "/status/304", &[])),
    ] {
        let r = c.roundtrip(&req);
        if what.starts_with("HEAD") {
            assert_eq!(r.status, 200, "{what}");
        } else {
            assert_eq!(r.status.to_string(), what);
            assert!(r.header("transfer-encoding").is_none(), "{what}: {r:?}");
        }
        // Any stray body bytes would be parsed as the next response's status line.
        let next = c.roundtrip(&get(&gate.host(), "/next", &[]));
        assert_eq!(next.status, 200, "after {what}");
        assert_eq!(next.seen().str("path"), "/next", "after {what}");
    }
}

#[test]
fn upgrade_tunnel_echoes_bytes() {
    let gate = gate();
    let mut c = client(&gate);
    c.send_all(&get(
        &gate.host(),
        "/ws",
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ],
    ));
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 101, "{r:?}");
    assert!(
        r.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{r:?}"
    );
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    c.send_all(b"ping");
    assert_eq!(c.read_n(4).unwrap(), b"ping");
    let big = noise(1 << 20, 42);
    c.send_all(&big);
    assert!(
        c.read_n(big.len()).unwrap() == big,
        "tunnel corrupted 1 MiB"
    );
    c.send_all(b"still there?");
    assert_eq!(c.read_n(12).unwrap(), b"still there?");
}

#[test]
fn request_head_size_limit() {
    let gate = gate();
    // 16 KiB of headers is ordinary (cookies, tokens).
    let mut c = client(&gate);
    let cookie = format!("Cookie: {}", "c".repeat(16 * 1024));
    assert_eq!(c.roundtrip(&get(&gate.host(), "/", &[&cookie])).status, 200);

    for (what, extra) in [
        (
            "one 64 KiB header",
            vec![format!("X-Big: {}", "a".repeat(64 * 1024))],
        ),
        (
            "1000 headers of 64 bytes",
            (0..1000)
                .map(|i| format!("X-H{i}: {}", "b".repeat(56)))
                .collect(),
        ),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut c = client(&gate);
        let r = c.roundtrip(&get(&gate.host(), "/", &extra));
        assert_eq!(r.status, 431, "{what}: {}", r.text());
    }
    assert_eq!(gate.echo().requests(), 1);
}

#[test]
fn smuggling_vectors_are_refused_and_close_the_connection() {
    let gate = gate();
    let h = gate.host();
    let vectors: Vec<(&str, String)> = vec![
        ("CL + TE", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX")),
        ("TE + CL", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX")),
        ("two differing CLs", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")),
        ("CL list", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5, 6\r\n\r\nhello!")),
        ("negative CL", format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: -1\r\n\r\n")),
        ("TE chunked, identity", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n")),
        ("TE xchunked", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n")),
        ("TE with space before colon", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n")),
        ("obs-fold", format!("GET / HTTP/1.1\r\nHost: {h}\r\nX-Folded: a\r\n b\r\n\r\n")),
        ("obs-fold TE", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n")),
        ("bad chunk size", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")),
        ("overflowing chunk size", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n")),
        ("bare LF after chunk size", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n")),
        ("bare LF after chunk data", format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n")),
    ];
    // Every vector is tried, and every failure reported together.
    let mut failures = Vec::new();
    for (what, req) in &vectors {
        let mut c = client(&gate);
        c.set_read_timeout(Duration::from_secs(5));
        c.send_all(req.as_bytes());
        let r = match c.response(false) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{what}: no response: {e}"));
                continue;
            }
        };
        if r.status != 400 {
            failures.push(format!("{what}: status {} instead of 400", r.status));
        }
        if r.header("x-echo-error").is_some() {
            failures.push(format!("{what}: reached the upstream, which refused it"));
        }
        if let Err(e) = c.closes_within(Duration::from_secs(5)) {
            failures.push(format!(
                "{what}: connection not closed after the refusal: {e}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "smuggling vectors not refused properly:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        gate.echo().requests(),
        0,
        "a smuggling vector reached the upstream as a request"
    );
    assert_eq!(
        gate.echo().errors(),
        0,
        "the upstream received a malformed request"
    );
    gate.curl("/").cert(&gate.pki().client1).run();
    assert_eq!(
        gate.echo().requests(),
        1,
        "the proxy no longer serves after the vectors"
    );
}

/// A body several times larger than any buffer passes with the proxy's memory bounded: bodies
/// are streamed, never held whole.
#[test]
fn huge_upload_streams_with_bounded_memory() {
    const TOTAL: usize = 1 << 30;
    let gate = gate();
    let before = gate.status_kib("VmHWM");
    let mut c = client(&gate);
    c.set_read_timeout(Duration::from_secs(300));
    c.send_all(
        format!(
            "PUT /huge HTTP/1.1\r\nHost: {}\r\nContent-Length: {TOTAL}\r\n\r\n",
            gate.host()
        )
        .as_bytes(),
    );
    let piece = noise(1 << 20, 0xb0d1);
    let mut hasher = boring::hash::Hasher::new(boring::hash::MessageDigest::sha256()).unwrap();
    for _ in 0..TOTAL / piece.len() {
        c.send_all(&piece);
        hasher.update(&piece).unwrap();
    }
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.seen();
    assert_eq!(seen.u64("body_len"), TOTAL as u64);
    let digest: String = hasher
        .finish()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(seen.str("body_sha256"), digest);
    let grown = gate.status_kib("VmHWM").saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "peak RSS grew by {grown} KiB while streaming {} MiB",
        TOTAL >> 20
    );
}

/// The last request a connection may carry gets `Connection: close` on its response, then the
/// close (nginx's keepalive_requests, and keepalive_timeout 0).
#[test]
fn last_request_of_a_connection_says_close() {
    let gate = Gate::start(Config::new().timeout("keepalive_idle", "0s"));
    let mut c = client(&gate);
    let r = c.roundtrip(&get(&gate.host(), "/one", &[]));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"), "{:?}", r.headers);
    c.set_read_timeout(Duration::from_secs(5));
    c.send(&get(&gate.host(), "/two", &[])).ok();
    assert!(c.response(false).is_err(), "a second request was served");
    assert_eq!(gate.echo().requests(), 1);
}
