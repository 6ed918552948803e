//! TCP mode: after the mTLS handshake and the rules, bytes are relayed both ways with no HTTP
//! parsing; half-closes pass through; the client's identity reaches the backend in a PROXY v2
//! header; a refused client reaches nothing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use boring::ssl::{SslConnector, SslFiletype, SslMethod};
use common::*;

/// What the backend learnt from the PROXY v2 header and the stream.
#[derive(Debug, Default)]
struct BackendView {
    src: Option<SocketAddr>,
    ssl_client_flags: u8,
    ssl_verify: u32,
    cn: Option<String>,
    subject_dn: Option<String>,
    verify: Option<String>,
    received: u64,
    received_checksum: u64,
}

fn checksum(acc: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(acc, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).unwrap();
    v
}

/// Parses a PROXY v2 header (signature, version/command, family, length, addresses, TLVs).
fn parse_proxy_v2(s: &mut TcpStream, view: &mut BackendView) {
    let head = read_exact(s, 16);
    assert_eq!(
        &head[..12],
        b"\r\n\r\n\0\r\nQUIT\n",
        "no PROXY v2 signature"
    );
    assert_eq!(head[12], 0x21, "version 2, command PROXY");
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let body = read_exact(s, len);
    let (addr_len, src) = match head[13] {
        0x11 => (
            12,
            SocketAddr::from((
                [body[0], body[1], body[2], body[3]],
                u16::from_be_bytes([body[8], body[9]]),
            )),
        ),
        other => panic!("unexpected family {other:#x}"),
    };
    view.src = Some(src);
    let mut tlvs = &body[addr_len..];
    while tlvs.len() >= 3 {
        let (kind, l) = (tlvs[0], u16::from_be_bytes([tlvs[1], tlvs[2]]) as usize);
        let value = &tlvs[3..3 + l];
        match kind {
            0x20 => {
                view.ssl_client_flags = value[0];
                view.ssl_verify = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
                let mut sub = &value[5..];
                while sub.len() >= 3 {
                    let (k, sl) = (sub[0], u16::from_be_bytes([sub[1], sub[2]]) as usize);
                    if k == 0x22 {
                        view.cn = Some(String::from_utf8_lossy(&sub[3..3 + sl]).into_owned());
                    }
                    sub = &sub[3 + sl..];
                }
            }
            0xE0 => view.subject_dn = Some(String::from_utf8_lossy(value).into_owned()),
            0xE2 => view.verify = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        tlvs = &tlvs[3 + l..];
    }
}

/// A backend for one connection: reads the PROXY header, reads the client's stream to EOF
/// (the client's half-close must arrive), then sends `reply_len` bytes back and closes.
fn spawn_backend(reply_len: usize) -> (SocketAddr, mpsc::Receiver<BackendView>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut view = BackendView::default();
        parse_proxy_v2(&mut s, &mut view);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            view.received += n as u64;
            view.received_checksum = checksum(view.received_checksum, &buf[..n]);
        }
        let reply = pattern(reply_len);
        s.write_all(&reply).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        tx.send(view).unwrap();
    });
    (addr, rx)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn tcp_gate(env: &Env, backend: SocketAddr, rules: &str) -> RawGate {
    let port = free_port();
    let text = format!(
        "[runtime]\nworkers = 1\nio = {io:?}\n\n[[listener]]\nname = \"tcp\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"backend\"\nmode = \"tcp\"\n\n[listener.tls]\ncertificate = \"pki/server-chain.pem\"\nprivate_key = \"pki/server.key\"\n\n[listener.client_auth]\nmode = \"required\"\nca = \"pki/client-ca-bundle.pem\"\nverify_depth = 2\n{rules}\n\n[[upstream]]\nname = \"backend\"\nservers = [\"{backend}\"]\nproxy_protocol = \"v2\"\n",
        io = io_driver()
    );
    RawGate::start(env, &text, port)
}

fn connect(env: &Env, port: u16, client: &CertKey) -> boring::ssl::SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_ca_file(&env.pki.server_ca).unwrap();
    b.set_certificate_chain_file(&client.cert).unwrap();
    b.set_private_key_file(&client.key, SslFiletype::PEM)
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    b.build().connect("localhost", tcp).unwrap()
}

#[test]
fn stream_relayed_intact_both_ways_with_half_close_and_proxy_v2() {
    const UP: usize = 100 << 20;
    const DOWN: usize = 100 << 20;
    let env = Env::new();
    let (backend, seen) = spawn_backend(DOWN);
    let gate = tcp_gate(&env, backend, "");
    let mut tls = connect(&env, gate.port, &env.pki.client1);
    let data = pattern(1 << 20);
    let mut sent_sum = 0u64;
    for _ in 0..UP / data.len() {
        tls.write_all(&data).unwrap();
        sent_sum = checksum(sent_sum, &data);
    }
    // Half-close: close_notify + FIN; the backend must see EOF and still answer.
    tls.shutdown().unwrap();
    let mut got = 0usize;
    let mut got_sum = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got_sum = checksum(got_sum, &buf[..n]);
                got += n;
            }
            Err(e) => panic!("read failed after {got} bytes: {e}\n{}", gate.log()),
        }
    }
    assert_eq!(got, DOWN, "{}", gate.log());
    assert_eq!(got_sum, checksum(0, &pattern(DOWN)));
    let view = seen.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(view.received, UP as u64);
    assert_eq!(view.received_checksum, sent_sum);
    assert_eq!(view.src.unwrap().ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(
        view.ssl_client_flags & 0x03,
        0x03,
        "SSL + cert on this connection"
    );
    assert_eq!(view.ssl_verify, 0);
    assert_eq!(view.cn.as_deref(), Some("client.1.local"));
    assert_eq!(view.subject_dn.as_deref(), Some(pki::dn::CLIENT1));
    assert_eq!(view.verify.as_deref(), Some("SUCCESS"));
}

#[test]
fn refused_client_reaches_no_backend() {
    let env = Env::new();
    let (backend, seen) = spawn_backend(10);
    let rule = format!("allow_subjects = [{:?}]", pki::dn::CLIENT2);
    let gate = tcp_gate(&env, backend, &rule);
    let mut tls = connect(&env, gate.port, &env.pki.client1);
    let _ = tls.write_all(b"hello");
    let mut buf = [0u8; 16];
    let n = tls.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a refused client got bytes");
    assert!(
        seen.recv_timeout(Duration::from_millis(300)).is_err(),
        "the backend was reached"
    );
    assert!(
        gate.log().contains("tcp connection refused"),
        "{}",
        gate.log()
    );
}

/// A relay ended by `body_idle` says which side went quiet: the upstream (the client had sent
/// and half-closed, the upstream never answered), the client (the upstream had answered and
/// closed, the client never closed), or both (neither sent anything).
#[test]
fn idle_timeout_names_the_side_that_went_quiet() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    // Connection i of the backend behaves as case i.
    thread::spawn(move || {
        for i in 0.. {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut buf = [0u8; 1024];
                match i {
                    // Read to the client's EOF, then never answer nor close.
                    0 => {
                        while s.read(&mut buf).is_ok_and(|n| n > 0) {}
                        thread::sleep(Duration::from_secs(10));
                    }
                    // Answer and close at once.
                    1 => {
                        s.write_all(b"pong").unwrap();
                        s.shutdown(std::net::Shutdown::Write).unwrap();
                    }
                    _ => {}
                }
                // Hold the connection until the proxy closes it.
                while s.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    });
    let port = free_port();
    let text = format!(
        "[runtime]\nworkers = 1\nio = {io:?}\n\n[[listener]]\nname = \"tcp\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"backend\"\nmode = \"tcp\"\n\n[listener.tls]\ncertificate = \"pki/server-chain.pem\"\nprivate_key = \"pki/server.key\"\n\n[listener.client_auth]\nmode = \"required\"\nca = \"pki/client-ca-bundle.pem\"\nverify_depth = 2\n\n[listener.timeouts]\nbody_idle = \"500ms\"\n\n[[upstream]]\nname = \"backend\"\nservers = [\"{backend}\"]\n",
        io = io_driver()
    );
    let gate = RawGate::start(&env, &text, port);
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !gate.log().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                gate.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    };

    // The upstream goes quiet: the client sent and half-closed.
    let mut tls = connect(&env, gate.port, &env.pki.client1);
    tls.write_all(b"ping").unwrap();
    tls.shutdown().unwrap();
    wait_for("relay ended: upstream idle too long");
    drop(tls);

    // The client goes quiet: the upstream answered and closed.
    let mut tls = connect(&env, gate.port, &env.pki.client1);
    let mut got = Vec::new();
    let _ = tls.read_to_end(&mut got);
    assert_eq!(got, b"pong");
    wait_for("relay ended: client idle too long");
    drop(tls);

    // Neither sends anything.
    let tls = connect(&env, gate.port, &env.pki.client1);
    wait_for("relay ended: client and upstream both idle too long");
    drop(tls);
    let log = gate.log();
    assert_eq!(log.matches("idle too long").count(), 3, "{log}");
}
