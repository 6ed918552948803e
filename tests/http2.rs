//! HTTP/2 from clients: ALPN h2 on TLS, prior knowledge on a plain listener, identity on every
//! stream, refusals per stream (gRPC-shaped for gRPC calls), the h2 -> HTTP/1.1 translation and
//! its desync class refused before anything reaches the upstream, bodies both ways.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::h2raw::*;
use common::*;

/// curl over HTTP/2 (ALPN h2).
fn h2<'a>(gate: &'a Gate, path: &str) -> Curl<'a> {
    gate.curl(path).arg("--http2")
}

/// curl wrote an HTTP/2 status line.
fn is_h2(out: &CurlOut) -> bool {
    out.head.starts_with("HTTP/2 ")
}

/// A gate whose config also has a plain listener (no TLS) named `plain`; its address.
fn with_plain(config: Config, extra: &[&str]) -> (Gate, SocketAddr) {
    let port = free_port();
    let mut config = config.file_extra(&format!(
        "\n[[listener]]\nname = \"plain\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"app\""
    ));
    for line in extra {
        config = config.file_extra(line);
    }
    let gate = Gate::start(config);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "plain listener not up");
        std::thread::sleep(Duration::from_millis(20));
    }
    (gate, addr)
}

/// `nghttp` against the gate with client1's certificate; stdout and stderr.
fn nghttp(gate: &Gate, args: &[&str], urls: &[String]) -> String {
    let pki = gate.pki();
    let mut cmd = Command::new("nghttp");
    cmd.arg("--cert")
        .arg(&pki.client1.cert)
        .arg("--key")
        .arg(&pki.client1.key)
        .arg("--timeout=10")
        .args(args)
        .args(urls);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    out.all()
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/2 client: frames and HPACK literals written by hand, for what curl will not send.
// ---------------------------------------------------------------------------------------------

/// How the server answered stream 1.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// RST_STREAM with this code.
    Reset(u32),
    /// GOAWAY with this code.
    GoAway(u32),
    /// A response with this status.
    Status(u16),
    /// The connection closed or went quiet.
    Nothing,
}

/// Sends the preface, SETTINGS and `frames` on a plain h2c connection, then reads until stream 1
/// is answered.
fn raw_h2(addr: SocketAddr, frames: &[Vec<u8>]) -> Answer {
    raw_h2_events(addr, frames, false)
        .into_iter()
        .next()
        .unwrap_or(Answer::Nothing)
}

/// As [`raw_h2`]; with `to_end`, goes on reading (answering PINGs) until the server closes the
/// connection, and returns every answer seen, in order, ending with `Nothing`.
fn raw_h2_events(addr: SocketAddr, frames: &[Vec<u8>], to_end: bool) -> Vec<Answer> {
    raw_h2_session(addr, frames, to_end, true)
}

/// As [`raw_h2_events`]; `pings`: whether PINGs are answered.
fn raw_h2_session(addr: SocketAddr, frames: &[Vec<u8>], to_end: bool, pings: bool) -> Vec<Answer> {
    let mut events = Vec::new();
    let mut conn = connect(addr, frames);
    loop {
        let Ok(Some(f)) = conn.read_frame() else {
            events.push(Answer::Nothing);
            return events;
        };
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => {
                let _ = conn.send_frame(SETTINGS, ACK, 0, &[]);
            }
            RST_STREAM if f.stream == 1 => events.push(Answer::Reset(error_code(&f))),
            PING if f.flags & ACK == 0 && pings => {
                let _ = conn.send_frame(PING, ACK, 0, &f.payload);
            }
            GOAWAY => {
                events.push(Answer::GoAway(error_code(&f)));
                if !to_end {
                    return events;
                }
            }
            HEADERS if f.stream == 1 => events.push(Answer::Status(status(&f))),
            _ => {}
        }
        if !to_end && !events.is_empty() {
            return events;
        }
    }
}

/// A plain h2c connection that has sent the preface, an empty SETTINGS and `frames` (in one
/// write); reads time out after 5 s.
fn connect(addr: SocketAddr, frames: &[Vec<u8>]) -> H2Raw<TcpStream> {
    let mut conn = H2Raw::plain(addr).expect("connect");
    conn.tcp()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(settings(&[]));
    for f in frames {
        out.extend_from_slice(f);
    }
    conn.send(&out).expect("write");
    conn
}

fn error_code(f: &Frame) -> u32 {
    f.error_code()
        .unwrap_or_else(|| panic!("no error code in {f:?}"))
}

/// The `:status` of a response HEADERS frame.
fn status(f: &Frame) -> u16 {
    f.status()
        .unwrap_or_else(|| panic!("unexpected status encoding in {f:?}"))
}

/// A GET's pseudo-headers for `authority`.
fn get_fields(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
    vec![
        (b":method", b"GET".to_vec()),
        (b":scheme", b"http".to_vec()),
        (b":authority", authority.to_vec()),
        (b":path", b"/raw".to_vec()),
    ]
}

fn headers_frame(fields: &[(&[u8], Vec<u8>)], end_stream: bool) -> Vec<u8> {
    let f: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, 1, &block_bytes(&f))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

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
    assert_eq!(seen.one("x-ssl-client-s-dn"), dn::CLIENT1);
    assert_eq!(seen.one("x-forwarded-proto"), "https");
    assert_eq!(seen.one("cookie"), "a=1; b=2");
    assert!(
        seen.get("te").is_none() && seen.get("connection").is_none(),
        "{seen}"
    );
    // The response's connection-specific fields are gone: h2 would refuse them.
    assert!(
        !out.head.to_ascii_lowercase().contains("connection:"),
        "{}",
        out.head
    );
    let log = gate.log();
    assert!(
        log.lines()
            .any(|l| l.contains("HTTP/2.0") && l.contains("/h2?x=1") && l.contains("200")),
        "no HTTP/2.0 access line:\n{log}"
    );
}

#[test]
fn forged_identity_headers_are_stripped_on_every_stream() {
    let gate = Gate::start(Config::new());
    let pki = gate.pki().clone();
    let forged = [
        "X-SSL-Client-Verify: FORGED",
        "x-ssl-client-s-dn: CN=FORGED",
        "X_SSL_CLIENT_S_DN: CN=FORGED",
        "x_ssl_client_verify: FORGED",
        "X-Forwarded-For: 6.6.6.6",
        "x_real_ip: 6.6.6.6",
        "X-Innocent: kept",
    ];
    // Two requests on one connection: the second stream is stripped as well.
    let second = gate.url("/second");
    let mut c = h2(&gate, "/first").cert(&pki.client1);
    for h in forged {
        c = c.header(h);
    }
    let out = c.arg("-o").arg("/dev/null").arg(&second).run();
    assert_eq!(out.head.matches("HTTP/2 200").count(), 2, "{out:?}");
    assert_eq!(gate.echo().requests(), 2);
    let seen = out.seen();
    assert_eq!(seen.str("path"), "/second");
    for (name, value) in seen.headers() {
        assert!(
            !value.contains("FORGED") && !value.contains("6.6.6.6"),
            "forged {name}: {value} reached the upstream: {seen}"
        );
    }
    assert_eq!(seen.one("x-ssl-client-verify"), "SUCCESS");
    assert_eq!(seen.one("x-innocent"), "kept");
    assert_eq!(seen.one("x-forwarded-for"), "127.0.0.1");
}

#[test]
fn refusals_are_answered_per_stream() {
    // No certificate: the 400 page on each stream.
    let gate = Gate::start(Config::new());
    let out = h2(&gate, "/nocert").run();
    assert_eq!(out.status, 400, "{out:?}");
    assert!(is_h2(&out));
    assert!(
        out.text().contains("No required SSL certificate was sent"),
        "{}",
        out.text()
    );
    // Rules refuse client2: 403, and nothing reaches the upstream.
    let gate = Gate::start(Config::new().allow_subjects(&[dn::CLIENT1]));
    let pki = gate.pki().clone();
    let out = h2(&gate, "/rules").cert(&pki.client2).run();
    assert_eq!(out.status, 403, "{out:?}");
    let out = h2(&gate, "/rules").cert(&pki.client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(gate.echo().requests(), 1);
}

#[test]
fn grpc_calls_are_refused_the_grpc_way() {
    let gate = Gate::start(Config::new().allow_subjects(&[dn::CLIENT2]));
    // No certificate: UNAUTHENTICATED.
    let out = h2(&gate, "/pkg.Svc/Call")
        .header("content-type: application/grpc")
        .header("te: trailers")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    let head = out.head.to_ascii_lowercase();
    assert!(head.contains("grpc-status: 16"), "{head}");
    assert!(head.contains("content-type: application/grpc"), "{head}");
    // client1 is refused by the rules: PERMISSION_DENIED, seen with nghttp.
    let out = nghttp(
        &gate,
        &["-v", "-n", "-H", "content-type: application/grpc+proto"],
        &[gate.url("/pkg.Svc/Call")],
    );
    assert!(out.contains(":status: 200"), "{out}");
    assert!(out.contains("grpc-status: 7"), "{out}");
    assert!(out.contains("grpc-message: forbidden"), "{out}");
    // Trailers-only: one HEADERS frame that ends the stream, no DATA.
    assert!(out.contains("END_STREAM | END_HEADERS"), "{out}");
    assert!(!out.contains("recv DATA"), "{out}");
    assert_eq!(gate.echo().requests(), 0);
}

#[test]
fn nghttp_multiplexes_twenty_streams() {
    let gate = Gate::start(Config::new());
    let out = nghttp(&gate, &["-v", "-n", "-m", "20"], &[gate.url("/multi")]);
    assert_eq!(out.matches(":status: 200").count(), 20, "{out}");
    assert_eq!(gate.echo().requests(), 20);
    // One connection carried them all.
    let log = gate.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("HTTP/2.0") && l.contains("/multi"))
            .count(),
        20,
        "{log}"
    );
}

#[test]
fn plain_listener_takes_prior_knowledge_and_http1() {
    let (gate, plain) = with_plain(Config::new(), &[]);
    let url = format!("http://{plain}/pk");
    let out = run_bounded(
        Command::new("curl").args([
            "-sS",
            "-i",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            &url,
        ]),
        Duration::from_secs(20),
    );
    assert!(out.stdout.starts_with("HTTP/2 200"), "{out:?}");
    let body = &out.stdout[out.stdout.find("\r\n\r\n").unwrap() + 4..];
    let seen = Seen::parse(body.as_bytes()).unwrap();
    assert_eq!(seen.one("x-ssl-client-verify"), "NONE");
    assert_eq!(seen.one("x-forwarded-proto"), "http");
    // HTTP/1.1 still works on the same listener.
    let out = run_bounded(
        Command::new("curl").args(["-sS", "-i", "--max-time", "10", "--http1.1", &url]),
        Duration::from_secs(20),
    );
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "{out:?}");
    assert_eq!(gate.echo().requests(), 2);
}

#[test]
fn protocols_http1_only_makes_curl_fall_back() {
    let gate = Gate::start(Config::new().listener_extra("protocols = [\"http/1.1\"]"));
    let pki = gate.pki().clone();
    let out = h2(&gate, "/fallback").cert(&pki.client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.head.starts_with("HTTP/1.1 "), "{}", out.head);
    assert_eq!(out.seen().str("path"), "/fallback");
    // The listener's order is the preference: http/1.1 first wins over curl's h2.
    let gate = Gate::start(Config::new().listener_extra("protocols = [\"http/1.1\", \"h2\"]"));
    let out = h2(&gate, "/order").cert(&gate.pki().client1).run();
    assert!(out.head.starts_with("HTTP/1.1 200"), "{}", out.head);
    let gate = Gate::start(Config::new().listener_extra("protocols = [\"h2\"]"));
    let out = h2(&gate, "/h2-only").cert(&gate.pki().client1).run();
    assert!(out.head.starts_with("HTTP/2 200"), "{}", out.head);
}

#[test]
fn protocols_are_checked() {
    for (line, expect) in [
        (
            "protocols = []",
            "listener[0].protocols: must name at least one protocol",
        ),
        (
            "protocols = [\"h2\", \"spdy/3\"]",
            "unknown protocol \"spdy/3\"",
        ),
        ("protocols = [\"http2\"]", "HTTP/2 is \"h2\""),
        ("protocols = [\"h2\", \"h2\"]", "\"h2\" is listed twice"),
    ] {
        let env = Env::new();
        let config = Config::new()
            .listener_extra(line)
            .render(free_port(), &[dead_addr()]);
        let path = env.write("certgate.toml", &config);
        let out = env.check(&path);
        assert!(!out.status.success(), "{line}: accepted");
        let all = out.all();
        assert!(all.contains(expect), "{line}: {all}");
        // file:line: key: reason, on the line of the value.
        let line_no = config.lines().position(|l| l == line).unwrap() + 1;
        assert!(
            all.contains(&format!("certgate.toml:{line_no}: listener[0].protocols: ")),
            "{all}"
        );
    }
}

#[test]
fn http2_limits_are_checked() {
    for (line, expect) in [
        (
            "max_concurrent_streams = 0",
            "listener[0].http2.max_concurrent_streams: 0 is not from 1",
        ),
        (
            "max_frame_size = 1000",
            "listener[0].http2.max_frame_size: 1000 is not from 16384",
        ),
        (
            "initial_stream_window_size = 4294967296",
            "initial_stream_window_size: 4294967296 is not",
        ),
        (
            "max_header_list_size = 100",
            "max_header_list_size: 100 is not from 1024",
        ),
    ] {
        let env = Env::new();
        let config = Config::new()
            .file_extra("[listener.http2]")
            .file_extra(line)
            .render(free_port(), &[dead_addr()]);
        let path = env.write("certgate.toml", &config);
        let out = env.check(&path);
        assert!(!out.status.success(), "{line}: accepted");
        let line_no = config.lines().position(|l| l == line).unwrap() + 1;
        let all = out.all();
        assert!(all.contains(expect), "{line}: {all}");
        assert!(all.contains(&format!("certgate.toml:{line_no}: ")), "{all}");
    }
    let env = Env::new();
    let config = Config::new()
        .file_extra("[listener.http2]\nmax_concurrent_streams = 2\nmax_frame_size = 65536")
        .render(free_port(), &[dead_addr()]);
    let out = env.check(&env.write("certgate.toml", config));
    assert!(out.status.success(), "{}", out.all());
}

/// A desync case: what it is, its frames, the answers that refuse it.
type Case = (&'static str, Vec<Vec<u8>>, Vec<Answer>);

/// Each member of the h2 -> h1 desync class, hand-framed: the stream is refused and nothing
/// reaches the upstream.
#[test]
fn desync_vectors_never_reach_the_upstream() {
    let (gate, plain) = with_plain(Config::new(), &[]);
    let auth = format!("{plain}");
    let auth = auth.as_bytes();
    let with = |extra: &[(&'static [u8], &[u8])]| {
        let mut f = get_fields(auth);
        f.extend(extra.iter().map(|(n, v)| (*n, v.to_vec())));
        f
    };
    let reset = Answer::Reset(PROTOCOL_ERROR);
    let cases: Vec<Case> = vec![
        (
            "content-length above the DATA",
            vec![
                headers_frame(&with(&[(b"content-length", b"10")]), false),
                frame(DATA, END_STREAM, 1, b"abc"),
            ],
            vec![reset.clone()],
        ),
        (
            "content-length below the DATA",
            vec![
                headers_frame(&with(&[(b"content-length", b"2")]), false),
                frame(DATA, END_STREAM, 1, b"abcdef"),
            ],
            vec![reset.clone()],
        ),
        (
            "transfer-encoding",
            vec![headers_frame(
                &with(&[(b"transfer-encoding", b"chunked")]),
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "connection",
            vec![headers_frame(
                &with(&[(b"connection", b"keep-alive")]),
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "keep-alive",
            vec![headers_frame(&with(&[(b"keep-alive", b"timeout=5")]), true)],
            vec![reset.clone()],
        ),
        (
            "proxy-connection",
            vec![headers_frame(
                &with(&[(b"proxy-connection", b"close")]),
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "upgrade",
            vec![headers_frame(&with(&[(b"upgrade", b"websocket")]), true)],
            vec![reset.clone()],
        ),
        (
            "te: gzip",
            vec![headers_frame(&with(&[(b"te", b"gzip")]), true)],
            vec![reset.clone()],
        ),
        (
            "CR LF in a value",
            vec![headers_frame(
                &with(&[(b"x-a", b"a\r\nx-smuggled: 1")]),
                true,
            )],
            vec![
                Answer::GoAway(PROTOCOL_ERROR),
                Answer::GoAway(9),
                reset.clone(),
            ],
        ),
        (
            "NUL in a value",
            vec![headers_frame(&with(&[(b"x-a", b"a\0b")]), true)],
            vec![
                Answer::GoAway(PROTOCOL_ERROR),
                Answer::GoAway(9),
                reset.clone(),
            ],
        ),
        (
            "uppercase name",
            vec![headers_frame(&with(&[(b"X-Upper", b"1")]), true)],
            vec![
                Answer::GoAway(PROTOCOL_ERROR),
                Answer::GoAway(9),
                reset.clone(),
            ],
        ),
        (
            "space around a value",
            vec![headers_frame(&with(&[(b"x-a", b" padded")]), true)],
            vec![reset.clone()],
        ),
        (
            ":path without a slash",
            vec![headers_frame(
                &[
                    (b":method", b"GET".to_vec()),
                    (b":scheme", b"http".to_vec()),
                    (b":authority", auth.to_vec()),
                    (b":path", b"raw".to_vec()),
                ],
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "empty :path",
            vec![headers_frame(
                &[
                    (b":method", b"GET".to_vec()),
                    (b":scheme", b"http".to_vec()),
                    (b":authority", auth.to_vec()),
                    (b":path", b"".to_vec()),
                ],
                true,
            )],
            vec![reset.clone()],
        ),
        (
            ":path with a space",
            vec![headers_frame(
                &[
                    (b":method", b"GET".to_vec()),
                    (b":scheme", b"http".to_vec()),
                    (b":authority", auth.to_vec()),
                    (b":path", b"/a b HTTP/1.1\r\n".to_vec()),
                ],
                true,
            )],
            vec![reset.clone(), Answer::GoAway(PROTOCOL_ERROR)],
        ),
        (
            ":authority with userinfo",
            vec![headers_frame(
                &[
                    (b":method", b"GET".to_vec()),
                    (b":scheme", b"http".to_vec()),
                    (b":authority", b"user@evil.example".to_vec()),
                    (b":path", b"/".to_vec()),
                ],
                true,
            )],
            vec![reset.clone()],
        ),
        (
            ":authority with a space",
            vec![headers_frame(
                &[
                    (b":method", b"GET".to_vec()),
                    (b":scheme", b"http".to_vec()),
                    (b":authority", b"a b".to_vec()),
                    (b":path", b"/".to_vec()),
                ],
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "missing :method",
            vec![headers_frame(
                &[
                    (b":scheme", b"http".to_vec()),
                    (b":authority", auth.to_vec()),
                    (b":path", b"/".to_vec()),
                ],
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "missing :scheme",
            vec![headers_frame(
                &[
                    (b":method", b"GET".to_vec()),
                    (b":authority", auth.to_vec()),
                    (b":path", b"/".to_vec()),
                ],
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "missing :path",
            vec![headers_frame(
                &[
                    (b":method", b"GET".to_vec()),
                    (b":scheme", b"http".to_vec()),
                    (b":authority", auth.to_vec()),
                ],
                true,
            )],
            vec![reset.clone()],
        ),
        (
            "host differs from :authority",
            vec![headers_frame(&with(&[(b"host", b"other.example")]), true)],
            vec![Answer::Status(400)],
        ),
        (
            "CONNECT",
            vec![headers_frame(
                &[
                    (b":method", b"CONNECT".to_vec()),
                    (b":authority", b"evil.example:443".to_vec()),
                ],
                true,
            )],
            vec![Answer::Status(501), reset.clone()],
        ),
    ];
    for (what, frames, allowed) in cases {
        let got = raw_h2(plain, &frames);
        eprintln!("{what}: {got:?}");
        assert!(
            allowed.contains(&got),
            "{what}: got {got:?}, expected one of {allowed:?}"
        );
        assert_eq!(gate.echo().requests(), 0, "{what}: reached the upstream");
    }
    // The same writer, well-formed, is forwarded: the refusals above are not the writer's fault.
    let got = raw_h2(plain, &[headers_frame(&get_fields(auth), true)]);
    assert_eq!(got, Answer::Status(200));
    let got = raw_h2(
        plain,
        &[
            headers_frame(&with(&[(b"content-length", b"3")]), false),
            frame(DATA, END_STREAM, 1, b"abc"),
        ],
    );
    assert_eq!(got, Answer::Status(200));
    assert_eq!(gate.echo().requests(), 2);
}

#[test]
fn large_bodies_stream_both_ways() {
    let gate = Gate::start(Config::new());
    let pki = gate.pki().clone();
    let out = h2(&gate, "/warm").cert(&pki.client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    let baseline = gate.status_kib("VmHWM");
    // Upload: 8 MiB, far above every window, arrives whole (content-length, then chunked).
    let body = noise(8 << 20, 7);
    let out = h2(&gate, "/upload").cert(&pki.client1).body(&body).run();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.seen();
    assert_eq!(seen.u64("body_len"), body.len() as u64);
    assert_eq!(seen.str("body_sha256"), sha256_hex(&body));
    assert_eq!(seen.str("framing"), "content-length");
    let out = h2(&gate, "/upload-chunked")
        .cert(&pki.client1)
        .body(&body)
        .header("Content-Length:")
        .header("Transfer-Encoding: chunked")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.seen();
    assert_eq!(seen.u64("body_len"), body.len() as u64);
    assert_eq!(seen.str("body_sha256"), sha256_hex(&body));
    // Download: by content-length and chunked, 16 MiB each.
    let n = 16 << 20;
    for path in [format!("/bytes/{n}"), format!("/chunked/{n}")] {
        let out = h2(&gate, &path).cert(&pki.client1).run();
        assert_eq!(out.status, 200, "{path}: {}", out.stderr);
        assert!(is_h2(&out));
        assert_eq!(out.body.len(), n, "{path}");
        assert!(
            out.body
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern_byte(i as u64)),
            "{path}: corrupted"
        );
    }
    // Streamed, not buffered: the proxy's peak memory did not grow by a body's worth.
    let hwm = gate.status_kib("VmHWM");
    assert!(
        hwm < baseline + 6 * 1024,
        "peak RSS grew from {baseline} to {hwm} KiB"
    );
}

/// An HTTP/1.1 upstream that answers every request with a chunked body and trailers.
fn trailer_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nConnection: close\r\n\
                      Transfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n\
                      5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n",
                );
            });
        }
    });
    addr
}

#[test]
fn chunked_trailers_become_http2_trailers() {
    let up = trailer_upstream();
    let gate = Gate::start(Config::new().upstream(&[up]));
    let out = nghttp(&gate, &["-v"], &[gate.url("/t")]);
    assert!(out.contains(":status: 200"), "{out}");
    assert!(out.contains("hello world"), "{out}");
    // The trailers come in a HEADERS frame after the DATA, ending the stream.
    let data = out.find("recv DATA").expect(&out);
    let trailers = out.rfind("grpc-status: 0").expect(&out);
    assert!(trailers > data, "{out}");
    assert!(out.contains("grpc-message: ok"), "{out}");
    assert!(
        !out.contains("transfer-encoding") && !out.contains("connection:"),
        "{out}"
    );
}

#[test]
fn idle_connection_is_closed() {
    let (gate, plain) = with_plain(
        Config::new(),
        &["[listener.timeouts]\nrequest_head = \"1s\"\nkeepalive_idle = \"2s\""],
    );
    // No stream at all: GOAWAY once request_head has passed.
    let started = Instant::now();
    let got = raw_h2(plain, &[]);
    assert_eq!(got, Answer::GoAway(0), "{}", gate.log());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // A client that never answers the GOAWAY's PING is closed all the same.
    let started = Instant::now();
    let got = raw_h2_session(plain, &[], true, false);
    assert_eq!(got, [Answer::GoAway(0), Answer::Nothing], "{}", gate.log());
    let took = started.elapsed();
    assert!(took < Duration::from_millis(4500), "{took:?}");
    // After a stream: keepalive_idle from its end.
    let started = Instant::now();
    let auth = plain.to_string();
    let got = raw_h2_events(
        plain,
        &[headers_frame(&get_fields(auth.as_bytes()), true)],
        true,
    );
    // GOAWAY (last stream id unknown), the PING answered, GOAWAY (last stream 1), close.
    assert_eq!(
        got,
        [
            Answer::Status(200),
            Answer::GoAway(0),
            Answer::GoAway(0),
            Answer::Nothing
        ],
        "{}",
        gate.log()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn drain_sends_goaway_and_finishes_streams_in_flight() {
    let (mut gate, plain) = with_plain(Config::new(), &[]);
    let auth = plain.to_string();
    let mut fields = get_fields(auth.as_bytes());
    fields[3].1 = b"/slow/1500".to_vec();
    let client = std::thread::spawn(move || {
        let started = Instant::now();
        let events = raw_h2_events(plain, &[headers_frame(&fields, true)], true);
        (events, started.elapsed())
    });
    // Let the stream reach the upstream, then drain.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.echo().connections() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the pid of the gate's own child process.
    unsafe {
        libc::kill(gate.pid() as libc::pid_t, libc::SIGTERM);
    }
    let (events, took) = client.join().unwrap();
    // GOAWAY first, then the stream's answer, then the close.
    assert_eq!(
        events.first(),
        Some(&Answer::GoAway(0)),
        "{events:?}\n{}",
        gate.log()
    );
    assert!(
        events.contains(&Answer::Status(200)),
        "{events:?}\n{}",
        gate.log()
    );
    assert_eq!(events.last(), Some(&Answer::Nothing), "{events:?}");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    let (status, in_time) = gate.terminate(Duration::from_secs(10)).unwrap();
    assert!(in_time && status.success(), "{status:?}");
}

#[test]
fn client_reset_frees_the_upstream_at_once() {
    let (gate, plain) = with_plain(Config::new(), &[]);
    let auth = plain.to_string();
    let mut fields = get_fields(auth.as_bytes());
    fields[3].1 = b"/slow/4000".to_vec();
    let mut conn = connect(plain, &[headers_frame(&fields, true)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.echo().connections() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    conn.send_frame(RST_STREAM, 0, 1, &CANCEL.to_be_bytes())
        .unwrap();
    // The stream's access line comes at once, not when the upstream would have answered.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while !gate.log().contains("client reset the stream") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        gate.log().contains("client reset the stream"),
        "{}",
        gate.log()
    );
}

#[test]
fn expect_continue_and_head_are_answered() {
    let gate = Gate::start(Config::new());
    let pki = gate.pki().clone();
    // curl waits for 100 Continue up to --expect100-timeout: certgate answers it at once.
    let started = Instant::now();
    let out = h2(&gate, "/expect")
        .cert(&pki.client1)
        .header("Expect: 100-continue")
        .body(&[b'x'; 1000])
        .arg("--expect100-timeout")
        .arg("6")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let seen = out.seen();
    assert_eq!(seen.u64("body_len"), 1000);
    assert!(seen.get("expect").is_none(), "{seen}");
    // HEAD: the upstream's length, no body; the pooled connection serves the next request.
    let out = h2(&gate, "/bytes/100").cert(&pki.client1).arg("-I").run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.head.contains("content-length: 100"), "{}", out.head);
    let out = h2(&gate, "/after-head").cert(&pki.client1).run();
    assert_eq!(out.seen().str("path"), "/after-head");
}

#[test]
fn max_requests_per_connection_ends_with_goaway() {
    let (_gate, plain) = with_plain(
        Config::new(),
        &["[listener.limits]\nmax_requests_per_connection = 1"],
    );
    let auth = plain.to_string();
    let started = Instant::now();
    let got = raw_h2_events(
        plain,
        &[headers_frame(&get_fields(auth.as_bytes()), true)],
        true,
    );
    // The GOAWAY goes as the stream is accepted; the stream is still answered.
    assert!(got.contains(&Answer::Status(200)), "{got:?}");
    assert!(got.contains(&Answer::GoAway(0)), "{got:?}");
    assert_eq!(got.last(), Some(&Answer::Nothing), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn zero_window_client_is_reset_after_body_idle() {
    let (gate, plain) = with_plain(Config::new(), &["[listener.timeouts]\nbody_idle = \"1s\""]);
    let auth = plain.to_string();
    let mut fields = get_fields(auth.as_bytes());
    fields[3].1 = b"/bytes/1000000".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the client never lets a DATA byte through.
    let zero_window = frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]);
    let got = raw_h2_session(
        plain,
        &[zero_window, headers_frame(&fields, true)],
        true,
        true,
    );
    assert_eq!(got[0], Answer::Status(200), "{got:?}");
    assert!(got.contains(&Answer::Reset(2)), "{got:?}\n{}", gate.log());
    // (Without the body_idle bound the stream would wait for a window forever.)
    assert!(
        gate.log().contains("client idle too long"),
        "{}",
        gate.log()
    );
}

#[test]
fn grpc_calls_see_upstream_failures_as_grpc_statuses() {
    let gate = Gate::start(Config::new().upstream(&[dead_addr()]));
    let pki = gate.pki().clone();
    let out = h2(&gate, "/pkg.Svc/Call")
        .cert(&pki.client1)
        .header("content-type: application/grpc")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.head.contains("grpc-status: 14"), "{}", out.head);
    // Not a gRPC call: the 502 page.
    let out = h2(&gate, "/page").cert(&pki.client1).run();
    assert_eq!(out.status, 502, "{out:?}");
    assert!(out.text().contains("502 Bad Gateway"), "{}", out.text());
}

/// Sends `frames` on a plain h2c connection and returns stream 1's status and body.
fn raw_h2_response(addr: SocketAddr, frames: &[Vec<u8>]) -> (u16, Vec<u8>) {
    let mut conn = connect(addr, frames);
    let (mut status_code, mut body) = (0, Vec::new());
    loop {
        let f = match conn.read_frame() {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => panic!("connection ended before the response did"),
        };
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => {
                let _ = conn.send_frame(SETTINGS, ACK, 0, &[]);
            }
            HEADERS if f.stream == 1 => {
                status_code = status(&f);
                if f.flags & END_STREAM != 0 {
                    return (status_code, body);
                }
            }
            DATA if f.stream == 1 => {
                body.extend_from_slice(&f.payload);
                if f.flags & END_STREAM != 0 {
                    return (status_code, body);
                }
            }
            RST_STREAM | GOAWAY => panic!("stream refused: {f:?}"),
            _ => {}
        }
    }
}

#[test]
fn request_trailers_become_chunked_trailers() {
    let (gate, plain) = with_plain(Config::new(), &[]);
    let auth = plain.to_string();
    let mut fields = get_fields(auth.as_bytes());
    fields[0].1 = b"POST".to_vec();
    fields.push((b"te", b"trailers".to_vec()));
    let trailers = block(&[("x-checksum", "abc"), ("grpc-timeout", "1S")]);
    let (status, body) = raw_h2_response(
        plain,
        &[
            headers_frame(&fields, false),
            frame(DATA, 0, 1, b"hello "),
            frame(DATA, 0, 1, b"world"),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers),
        ],
    );
    assert_eq!(status, 200);
    let seen = Seen::parse(&body).unwrap();
    assert_eq!(seen.str("framing"), "chunked");
    assert_eq!(seen.str("body"), "hello world");
    let trailers = seen.0["trailers"].to_string();
    assert!(
        trailers.contains("x-checksum") && trailers.contains("abc"),
        "{seen}"
    );
    assert!(seen.get("te").is_none(), "{seen}");
    drop(gate);
}

#[test]
fn tcp_mode_listener_negotiates_no_alpn() {
    let gate = Gate::start(Config::new().listener_extra("mode = \"tcp\""));
    let pki = gate.pki().clone();
    // curl offers h2 but gets no ALPN answer, so the relayed bytes are HTTP/1.1 the echo reads.
    let out = h2(&gate, "/relayed").cert(&pki.client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.head.starts_with("HTTP/1.1 200"), "{}", out.head);
}

#[test]
fn header_list_over_the_limit_never_reaches_the_upstream() {
    let gate = Gate::start(
        Config::new()
            .file_extra("[listener.http2]")
            .file_extra("max_header_list_size = 4096"),
    );
    let pki = gate.pki().clone();
    let big = format!("X-Big: {}", "a".repeat(6000));
    let out = h2(&gate, "/big").cert(&pki.client1).header(&big).run();
    assert_ne!(out.status, 200, "{out:?}");
    eprintln!(
        "over the limit: status {} exit {} {}",
        out.status, out.exit, out.stderr
    );
    let out = h2(&gate, "/small")
        .cert(&pki.client1)
        .header("X-Small: a")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(gate.echo().requests(), 1);
}
