//! PROXY protocol in: behind an L4 balancer, the header names the client. Only peers in
//! `trusted_proxies` may connect; a missing, malformed or slow header closes the connection
//! with a log line. Driven with curl's `--haproxy-protocol` (v1), HAProxy's `send-proxy-v2`
//! in front of two instances sharing ticket keys, and hand-written bytes for the bad cases.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslFiletype, SslMethod};
use common::*;

/// A listener taking `version` headers from `trusted` (TOML list body).
fn behind_balancer(version: &str, trusted: &str) -> Config {
    Config::new()
        .listener_extra(&format!("proxy_protocol = \"{version}\""))
        .listener_extra(&format!("trusted_proxies = [{trusted}]"))
}

/// A TCP stream whose first write is preceded by `prefix` in the same `write` call: the PROXY
/// header and the ClientHello arrive together, as from HAProxy.
struct Prefixed {
    tcp: TcpStream,
    prefix: Option<Vec<u8>>,
}

impl Read for Prefixed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.prefix.take() {
            Some(mut first) => {
                first.extend_from_slice(buf);
                self.tcp.write_all(&first)?;
                Ok(buf.len())
            }
            None => self.tcp.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

type Client = HttpReader<boring::ssl::SslStream<Prefixed>>;

/// Opens a TCP connection and runs a real TLS handshake (BoringSSL, client1) over it, with
/// `header` sent in the same write as the ClientHello.
fn connect_after(gate: &Gate, header: &[u8]) -> Result<Client, String> {
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_ca_file(&gate.pki().server_ca)
        .map_err(|e| e.to_string())?;
    b.set_certificate_chain_file(&gate.pki().client1.cert)
        .map_err(|e| e.to_string())?;
    b.set_private_key_file(&gate.pki().client1.key, SslFiletype::PEM)
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&gate.addr(), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let stream = Prefixed {
        tcp,
        prefix: Some(header.to_vec()),
    };
    let tls = b
        .build()
        .connect("localhost", stream)
        .map_err(|e| format!("TLS handshake: {e}"))?;
    Ok(HttpReader::new(tls))
}

/// Waits until the log holds `needle` (log lines are written asynchronously).
fn wait_log(gate: &Gate, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gate.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}; log:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `bytes` on a fresh connection and returns how long the proxy took to close it
/// (panics if it answered anything or stayed open for 5 s).
fn closed_after(gate: &Gate, bytes: &[u8]) -> Duration {
    let mut tcp = TcpStream::connect(gate.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let _ = tcp.write_all(bytes);
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "the proxy answered {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
    }
    started.elapsed()
}

fn get_seen(client: &mut Client, gate: &Gate) -> Seen {
    client
        .send(&get(&gate.host(), "/who", &["X-Forwarded-For: 6.6.6.6"]))
        .unwrap();
    let r = client.response(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.seen()
}

#[test]
fn v1_header_names_the_client_in_forwarding_headers_and_access_log() {
    let gate = Gate::start(behind_balancer("v1", "\"127.0.0.1/32\""));
    let port = gate.port;

    let mut c = connect_after(
        &gate,
        format!("PROXY TCP4 192.0.2.7 127.0.0.1 56324 {port}\r\n").as_bytes(),
    )
    .unwrap();
    let seen = get_seen(&mut c, &gate);
    assert_eq!(seen.one("X-Forwarded-For"), "192.0.2.7", "{seen}");
    assert_eq!(seen.one("X-Real-IP"), "192.0.2.7", "{seen}");
    assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS");
    wait_log(&gate, "peer=192.0.2.7:56324");

    let mut c = connect_after(
        &gate,
        format!("PROXY TCP6 2001:db8::7 ::1 9 {port}\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(get_seen(&mut c, &gate).one("X-Real-IP"), "2001:db8::7");

    // UNKNOWN (a balancer's own check): the TCP peer stands.
    let mut c = connect_after(&gate, b"PROXY UNKNOWN\r\n").unwrap();
    assert_eq!(get_seen(&mut c, &gate).one("X-Real-IP"), "127.0.0.1");
}

#[test]
fn client_hash_balances_on_the_address_in_the_header() {
    let one = echo::spawn("127.0.0.1:0".parse().unwrap()).unwrap();
    let two = echo::spawn("127.0.0.1:0".parse().unwrap()).unwrap();
    // No client certificate: client_hash hashes the client's address.
    let gate = Gate::start(
        behind_balancer("v2", "\"127.0.0.1\"")
            .mode("off")
            .upstream(&[one.addr(), two.addr()])
            .upstream_extra("balance = \"client_hash\""),
    );
    let served_by = |client: SocketAddr| {
        let before = (one.requests(), two.requests());
        let header = proxy_v2(client, gate.addr());
        let mut c = connect_after(&gate, &header).unwrap();
        get_seen(&mut c, &gate);
        match (one.requests() - before.0, two.requests() - before.1) {
            (1, 0) => 1,
            (0, 1) => 2,
            other => panic!("{other:?}"),
        }
    };
    let mut used = [false; 2];
    for i in 1..=16u8 {
        let client = SocketAddr::from(([198, 51, 100, i], 40000 + u16::from(i)));
        let first = served_by(client);
        // Same address, another source port: same server.
        let again = served_by(SocketAddr::from(([198, 51, 100, i], 50000)));
        assert_eq!(first, again, "{client} moved between servers");
        used[first - 1] = true;
    }
    assert_eq!(used, [true, true], "16 clients all hashed to one server");
}

/// A v2 PROXY header for a TCP connection from `src` to `dst`, written by hand.
fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

#[test]
fn curl_haproxy_protocol_is_served_and_a_missing_header_is_refused() {
    let gate = Gate::start(behind_balancer("v1", "\"10.0.0.0/8\", \"127.0.0.1\""));
    let ok = gate
        .curl("/v1")
        .cert(&gate.pki().client1)
        .arg("--haproxy-protocol")
        .run();
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.seen().one("X-Forwarded-For"), "127.0.0.1");

    // A trusted peer that sends TLS straight away: closed, and the log says why.
    let missing = gate.curl("/none").cert(&gate.pki().client1).run();
    assert_eq!(missing.status, 0, "{missing:?}");
    wait_log(
        &gate,
        "connection closed: no PROXY protocol header: the connection starts with a TLS handshake",
    );
}

#[test]
fn untrusted_peers_are_closed_unread() {
    // 127.0.0.1 may send headers; a client on 127.0.0.7 may not, header or not.
    let gate = Gate::start(behind_balancer("v1", "\"127.0.0.1/32\""));
    let out = gate
        .curl("/spoof")
        .cert(&gate.pki().client1)
        .arg("--haproxy-protocol")
        .arg("--interface")
        .arg("127.0.0.7")
        .run();
    assert_eq!(out.status, 0, "{out:?}");
    wait_log(&gate, "peer=127.0.0.7:");
    wait_log(&gate, "the peer is not in trusted_proxies");
    assert!(!gate.log().contains("PROXY header read"), "{}", gate.log());
}

#[test]
fn malformed_headers_close_the_connection_with_a_log_line() {
    let gate = Gate::start(behind_balancer("v1", "\"127.0.0.1\""));
    let cases: [(&[u8], &str); 5] = [
        (
            b"PROXY TCP4 192.0.2.7 127.0.0.1 99999 443\r\n",
            "malformed PROXY v1 header: a port that is not a number from 0 to 65535",
        ),
        (
            b"PROXY TCP4 192.0.2.7 127.0.0.1 1 443\n",
            "malformed PROXY v1 header: the line must end with CR LF",
        ),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
            "a PROXY v2 header, but this listener expects v1",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "no PROXY protocol header: the connection starts with plain text",
        ),
        (
            &[b'P'; 1][..],
            "the peer closed in the middle of the PROXY header",
        ),
    ];
    for (bytes, why) in cases {
        if bytes == b"P" {
            // Half a header, then the peer closes its side.
            let mut tcp = TcpStream::connect(gate.addr()).unwrap();
            tcp.write_all(bytes).unwrap();
            tcp.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest);
        } else {
            closed_after(&gate, bytes);
        }
        wait_log(&gate, why);
    }
    // A balancer's TCP check connects and closes: logged, but only at debug.
    drop(TcpStream::connect(gate.addr()).unwrap());
    wait_log(&gate, "connection closed before a PROXY header");
    let line = gate
        .log()
        .lines()
        .find(|l| l.contains("connection closed before a PROXY header"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(line.contains("DEBUG"), "{line}");
    // Over 107 bytes without an end of line: refused at the bound, not read on.
    let mut long = b"PROXY TCP4 ".to_vec();
    long.extend(std::iter::repeat_n(b'1', 200));
    closed_after(&gate, &long);
    wait_log(&gate, "PROXY header too long (over 107 bytes)");
}

#[test]
fn a_slow_header_is_bounded_by_the_handshake_timeout() {
    let gate = Gate::start(behind_balancer("v2", "\"127.0.0.1\"").timeout("handshake", "1s"));
    // The first half of a v2 signature, then nothing.
    let took = closed_after(&gate, b"\r\n\r\n\0\r");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    wait_log(
        &gate,
        "no complete PROXY v2 header within the handshake timeout (1s)",
    );
}

/// TCP mode passes the client from the balancer's header on, in its own PROXY v2 header to the
/// upstream.
#[test]
fn tcp_mode_relays_the_client_address_to_the_upstream() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut fixed = [0u8; 16];
        s.read_exact(&mut fixed).unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes([fixed[14], fixed[15]]))];
        s.read_exact(&mut body).unwrap();
        (fixed, body)
    });
    let gate = Gate::start(
        behind_balancer("v1", "\"127.0.0.1\"")
            .listener_extra("mode = \"tcp\"")
            .upstream(&[up_addr])
            .upstream_extra("proxy_protocol = \"v2\""),
    );
    let port = gate.port;
    let mut c = connect_after(
        &gate,
        format!("PROXY TCP4 198.51.100.77 127.0.0.1 61000 {port}\r\n").as_bytes(),
    )
    .unwrap();
    c.send(b"hello").unwrap();
    let (fixed, body) = reader.join().unwrap();
    assert_eq!(fixed[13], 0x11, "TCP over IPv4");
    assert_eq!(&body[0..4], &[198, 51, 100, 77], "source address");
    assert_eq!(u16::from_be_bytes([body[8], body[9]]), 61000, "source port");
}

/// A plain-HTTP listener (no TLS) behind a balancer: bytes that arrive with the header, in the
/// same segment, are the client's request.
#[test]
fn plain_listener_serves_the_request_that_came_with_the_header() {
    let echo = echo::spawn("127.0.0.1:0".parse().unwrap()).unwrap();
    let env = Env::new();
    let port = free_port();
    let config = env.write(
        "certgate.toml",
        format!(
            "[runtime]\nworkers = 1\nio = {}\n\n[[listener]]\nname = \"plain\"\n\
             listen = \"127.0.0.1:{port}\"\nupstream = \"app\"\nproxy_protocol = \"v1\"\n\
             trusted_proxies = [\"127.0.0.1\"]\n\n[[upstream]]\nname = \"app\"\n\
             servers = [\"{}\"]\n",
            toml_str(&io_driver()),
            echo.addr()
        ),
    );
    let log = std::fs::File::create(env.path("certgate.log")).unwrap();
    let _proc = ProcGuard::new(
        Command::new(certgate_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP;
    let tcp = loop {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            break s;
        }
        assert!(Instant::now() < deadline, "certgate did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut c = HttpReader::new(tcp);
    let request = get("localhost", "/plain", &["Connection: close"]);
    let mut bytes = format!("PROXY TCP4 203.0.113.5 127.0.0.1 4000 {port}\r\n").into_bytes();
    bytes.extend_from_slice(&request);
    c.send(&bytes).unwrap();
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.seen();
    assert_eq!(seen.one("X-Forwarded-For"), "203.0.113.5", "{seen}");
    assert_eq!(seen.one("X-Forwarded-Proto"), "http", "{seen}");
}

// ---------------------------------------------------------------------------------------------
// Several instances behind HAProxy
// ---------------------------------------------------------------------------------------------

/// A gate behind the balancer whose ticket key file holds `key`; with `pki_from`, it serves the
/// same PKI as another gate (instances behind one balancer share certificates and CA).
fn instance(key: &[u8], pki_from: Option<&Path>) -> Gate {
    let env = Env::new();
    if let Some(src) = pki_from {
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), env.pki.dir.join(entry.file_name())).unwrap();
        }
    }
    env.write("ticket.key", key);
    Gate::start_in(
        env,
        behind_balancer("v2", "\"127.0.0.1/32\"")
            .tls_extra("session_ticket_keys = [\"ticket.key\"]"),
    )
}

/// HAProxy in TCP mode, round robin over `servers` with `send-proxy-v2`.
struct Haproxy {
    port: u16,
    _proc: ProcGuard,
}

impl Haproxy {
    fn start(env: &Env, servers: &[SocketAddr]) -> Haproxy {
        let port = free_port();
        let mut cfg = format!(
            "global\n  maxconn 100\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\n\nfrontend edge\n  bind 127.0.0.1:{port}\n  \
             default_backend certgate\n\nbackend certgate\n  balance roundrobin\n"
        );
        for (i, s) in servers.iter().enumerate() {
            // Health checks with the header too (HAProxy names its own address in them).
            cfg.push_str(&format!(
                "  server cg{i} {s} send-proxy-v2 check check-send-proxy inter 200ms\n"
            ));
        }
        let path = env.write("haproxy.cfg", cfg);
        let log = std::fs::File::create(env.path("haproxy.log")).unwrap();
        let child = Command::new("/usr/sbin/haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        let proc = ProcGuard::new(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not start: {}",
                std::fs::read_to_string(env.path("haproxy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy { port, _proc: proc }
    }
}

/// `openssl s_client` through the balancer as client1, reading a session from `sess_in` if
/// given and saving the new one to `sess_out`; returns its output.
fn s_client(port: u16, pki: &Pki, sess_in: Option<&Path>, sess_out: &Path) -> String {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-servername")
        .arg("localhost")
        .arg("-CAfile")
        .arg(&pki.server_ca)
        .arg("-verify_return_error")
        .arg("-cert")
        .arg(&pki.client1.cert)
        .arg("-key")
        .arg(&pki.client1.key)
        .arg("-ign_eof")
        .arg("-sess_out")
        .arg(sess_out);
    if let Some(s) = sess_in {
        cmd.arg("-sess_in").arg(s);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"GET /resume HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    let out = run_output(child);
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    out
}

fn run_output(mut child: std::process::Child) -> String {
    let status = wait_bounded(&mut child, Duration::from_secs(15));
    assert!(status.is_some(), "openssl s_client hung");
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut out);
    out
}

#[test]
fn haproxy_send_proxy_v2_in_front_of_two_instances_sharing_ticket_keys() {
    let key: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(29)).collect();
    let a = instance(&key, None);
    let b = instance(&key, Some(&a.pki().dir.clone()));
    let env = Env::new();
    let lb = Haproxy::start(&env, &[a.addr(), b.addr()]);

    // The client's address crosses HAProxy in the v2 header: curl binds 127.0.0.9, HAProxy
    // connects to certgate from 127.0.0.1.
    for _ in 0..2 {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--interface", "127.0.0.9"])
            .arg("--cacert")
            .arg(&a.pki().server_ca)
            .arg("--cert")
            .arg(&a.pki().client1.cert)
            .arg("--key")
            .arg(&a.pki().client1.key)
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", lb.port))
            .arg(format!("https://localhost:{}/lb", lb.port))
            .output()
            .unwrap();
        let seen = Seen::parse(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        assert_eq!(seen.one("X-Forwarded-For"), "127.0.0.9", "{seen}");
        assert_eq!(seen.one("X-Real-IP"), "127.0.0.9", "{seen}");
    }
    // Round robin: one request reached each instance, and each logged the real client.
    wait_log(&a, "peer=127.0.0.9:");
    wait_log(&b, "peer=127.0.0.9:");

    // A session from one instance resumes on the other (and back).
    let sess = env.path("session.pem");
    let first = s_client(lb.port, a.pki(), None, &sess);
    assert!(first.contains("New, TLSv1.3"), "{first}");
    for round in 0..3 {
        let next = s_client(lb.port, a.pki(), Some(&sess), &sess);
        assert!(
            next.contains("Reused, TLSv1.3"),
            "round {round}: not resumed:\n{next}\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        );
    }
    // Resumed handshakes were served by both instances, not only by the one that issued.
    for gate in [&a, &b] {
        wait_log(gate, "resumed=true");
    }
    // HAProxy's health checks (with their own header) were accepted, none refused.
    std::thread::sleep(Duration::from_millis(500));
    for gate in [&a, &b] {
        let log = gate.log();
        assert!(!log.contains("connection closed:"), "{log}");
    }
}
