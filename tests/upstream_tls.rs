//! Upstream TLS and client mode: certgate verifies the upstream's certificate and name, sends
//! the configured SNI, presents its own client certificate, and a plain listener in front turns
//! local plain HTTP into mTLS (seed 003's requirement D) — against a Rust TLS upstream that
//! records what it saw, against a second certgate, and against nginx in both roles.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use boring::ssl::{NameType, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use common::*;

/// What the TLS upstream saw on one connection.
#[derive(Clone, Debug, Default)]
struct Seen {
    sni: Option<String>,
    client_dn: Option<String>,
    resumed: bool,
}

/// A TLS upstream (BoringSSL, std threads) that answers every request with 200 and records the
/// SNI, the client certificate's subject and whether the session was resumed.
struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl TlsUpstream {
    fn spawn(pki: &Pki, require_client_cert: bool) -> Self {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_certificate_chain_file(&pki.server.cert).unwrap();
        b.set_private_key_file(&pki.server.key, SslFiletype::PEM)
            .unwrap();
        if require_client_cert {
            b.set_ca_file(&pki.client_ca_bundle).unwrap();
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
            b.set_verify_depth(3);
        }
        b.set_session_id_context(b"tls-upstream").unwrap();
        let acceptor = Arc::new(b.build());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let tcp = match listener.accept() {
                    Ok((tcp, _)) => tcp,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let acceptor = acceptor.clone();
                let seen = seen2.clone();
                thread::spawn(move || {
                    let Ok(mut tls) = acceptor.accept(tcp) else {
                        return;
                    };
                    let record = Seen {
                        sni: tls.ssl().servername(NameType::HOST_NAME).map(str::to_owned),
                        client_dn: tls.ssl().peer_certificate().map(|c| {
                            c.subject_name()
                                .entries()
                                .map(|e| e.data().as_utf8().unwrap().to_string())
                                .collect::<Vec<_>>()
                                .join("/")
                        }),
                        resumed: tls.ssl().session_reused(),
                    };
                    seen.lock().unwrap().push(record.clone());
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match tls.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let body =
                                format!("sni={:?} client_dn={:?}", record.sni, record.client_dn);
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if tls.write_all(resp.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A client-mode config: plain listener on `port`, upstream `server` over TLS.
fn client_mode(port: u16, server: SocketAddr, tls: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\nio = {io:?}\n\n[[listener]]\nname = \"local\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"partner\"\n\n[[upstream]]\nname = \"partner\"\nservers = [\"{server}\"]\n\n[upstream.tls]\n{tls}\n",
        io = io_driver()
    )
}

#[test]
fn client_mode_injects_the_client_certificate_and_sends_sni() {
    let env = Env::new();
    let up = TlsUpstream::spawn(&env.pki, true);
    let port = free_port();
    let tls = "ca = \"pki/server-ca.pem\"\nserver_name = \"localhost\"\ncertificate = \"pki/client1.pem\"\nprivate_key = \"pki/client1.key\"";
    let gate = RawGate::start(&env, &client_mode(port, up.addr, tls), port);
    for _ in 0..3 {
        let (status, body) = gate.get("/");
        assert_eq!(status, 200, "{body}\n{}", gate.log());
        assert!(body.contains("client.1.local"), "{body}");
    }
    let seen = up.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.sni.as_deref() == Some("localhost")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s
        .client_dn
        .as_deref()
        .unwrap_or("")
        .contains("client.1.local")));
}

#[test]
fn upstream_sessions_are_resumed() {
    let env = Env::new();
    let up = TlsUpstream::spawn(&env.pki, true);
    let port = free_port();
    // keepalive = 0: every request opens a new upstream connection, which must resume.
    let text = client_mode(
        port,
        up.addr,
        "ca = \"pki/server-ca.pem\"\nserver_name = \"localhost\"\nbundle = \"pki/client1-bundle.pem\"",
    )
    .replace("servers = [", "keepalive = 0\nservers = [");
    let bundle = [
        std::fs::read(&env.pki.client1.cert).unwrap(),
        std::fs::read(&env.pki.client1.key).unwrap(),
    ]
    .concat();
    env.write("pki/client1-bundle.pem", bundle);
    let gate = RawGate::start(&env, &text, port);
    for _ in 0..4 {
        assert_eq!(gate.get("/").0, 200, "{}", gate.log());
    }
    let seen = up.seen();
    assert!(seen.len() >= 4, "{seen:?}");
    assert!(
        seen[1..].iter().any(|s| s.resumed),
        "no upstream session resumed: {seen:?}"
    );
}

#[test]
fn wrong_name_or_untrusted_upstream_is_502() {
    let env = Env::new();
    let up = TlsUpstream::spawn(&env.pki, false);
    for (tls, why) in [
        (
            "ca = \"pki/server-ca.pem\"\nserver_name = \"api.partner.test\"",
            "wrong name",
        ),
        (
            "ca = \"pki/rogue-ca.pem\"\nserver_name = \"localhost\"",
            "untrusted CA",
        ),
        (
            "ca = \"pki/server-ca.pem\"",
            "IP not in the certificate's SANs is fine: 127.0.0.1 is",
        ),
    ] {
        let port = free_port();
        let gate = RawGate::start(&env, &client_mode(port, up.addr, tls), port);
        let (status, body) = gate.get("/");
        if why.starts_with("IP") {
            assert_eq!(status, 200, "{why}: {body}\n{}", gate.log());
            continue;
        }
        assert_eq!(status, 502, "{why}: {body}");
        let log = gate.log();
        assert!(
            log.contains("certificate verif") || log.contains("CERTIFICATE_VERIFY_FAILED"),
            "{why}: log names no verification failure:\n{log}"
        );
    }
}

#[test]
fn seed_003_chain_client_mode_to_mtls_gate() {
    // certgate (mTLS required, DN rule) -> echo
    let inner = Gate::start(Config::new().allow_subjects(&[pki::dn::CLIENT1]));
    // certgate (client mode: plain in, mTLS out with the injected certificate) -> inner
    let env = Env::new();
    for f in ["server-ca.pem", "client1.pem", "client1.key"] {
        std::fs::copy(inner.pki().dir.join(f), env.pki.dir.join(f)).unwrap();
    }
    let port = free_port();
    let tls = "ca = \"pki/server-ca.pem\"\nserver_name = \"localhost\"\ncertificate = \"pki/client1.pem\"\nprivate_key = \"pki/client1.key\"";
    let outer = RawGate::start(&env, &client_mode(port, inner.addr(), tls), port);
    let (status, body) = outer.get("/hello");
    assert_eq!(
        status,
        200,
        "{body}\nouter:\n{}\ninner:\n{}",
        outer.log(),
        inner.log()
    );
    let seen = Seen2::parse(body.as_bytes()).unwrap();
    assert_eq!(seen.one("X-SSL-Client-S-DN"), pki::dn::CLIENT1);
    assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS");
}

use common::Seen as Seen2;

// ----- nginx interop -------------------------------------------------------------------------

fn nginx() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// nginx running `conf` (an http{} body) from a prefix in `env`, stopped on drop.
struct Nginx {
    _proc: ProcGuard,
}

impl Nginx {
    fn start(env: &Env, http_body: &str, port: u16) -> Option<Self> {
        let Some(bin) = nginx() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is not installed (scripts/deps.sh installs it)"
            );
            eprintln!("nginx not installed: skipping");
            return None;
        };
        let prefix = env.path("nginx");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\nevents {{ worker_connections 256; }}\nhttp {{\naccess_log off;\nclient_body_temp_path {p}/body;\nproxy_temp_path {p}/proxy;\nfastcgi_temp_path {p}/fcgi;\nuwsgi_temp_path {p}/uwsgi;\nscgi_temp_path {p}/scgi;\n{http_body}\n}}\n",
            p = prefix.display()
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let guard = ProcGuard::new(child);
        wait_port(port, &prefix.join("logs/error.log"));
        Some(Self { _proc: guard })
    }
}

#[test]
fn certgate_client_mode_against_nginx_ssl_verify_client_on() {
    let env = Env::new();
    let nginx_port = free_port();
    let d = env.pki.dir.display();
    let body = format!(
        "server {{\n listen 127.0.0.1:{nginx_port} ssl;\n ssl_certificate {d}/server-chain.pem;\n ssl_certificate_key {d}/server.key;\n ssl_client_certificate {d}/client-ca-bundle.pem;\n ssl_verify_client on;\n ssl_verify_depth 2;\n location / {{ return 200 \"dn=$ssl_client_s_dn verify=$ssl_client_verify sni=$ssl_server_name\"; }}\n}}"
    );
    let Some(_nginx) = Nginx::start(&env, &body, nginx_port) else {
        return;
    };
    let port = free_port();
    let tls = "ca = \"pki/server-ca.pem\"\nserver_name = \"localhost\"\ncertificate = \"pki/client1.pem\"\nprivate_key = \"pki/client1.key\"";
    let up: SocketAddr = ([127, 0, 0, 1], nginx_port).into();
    let gate = RawGate::start(&env, &client_mode(port, up, tls), port);
    let (status, body) = gate.get("/");
    assert_eq!(status, 200, "{body}\n{}", gate.log());
    assert!(body.contains(&format!("dn={}", pki::dn::CLIENT1)), "{body}");
    assert!(body.contains("verify=SUCCESS"), "{body}");
    assert!(body.contains("sni=localhost"), "{body}");
}

#[test]
fn nginx_proxy_ssl_certificate_against_certgate() {
    let gate = Gate::start(Config::new().allow_subjects(&[pki::dn::CLIENT1]));
    let env = Env::new();
    let nginx_port = free_port();
    let d = gate.pki().dir.display();
    let body = format!(
        "server {{\n listen 127.0.0.1:{nginx_port};\n location / {{\n  proxy_pass https://127.0.0.1:{gp};\n  proxy_ssl_certificate {d}/client1.pem;\n  proxy_ssl_certificate_key {d}/client1.key;\n  proxy_ssl_trusted_certificate {d}/server-ca.pem;\n  proxy_ssl_verify on;\n  proxy_ssl_name localhost;\n  proxy_ssl_server_name on;\n  proxy_set_header X-SSL-Client-S-DN \"CN=forged by nginx\";\n }}\n}}",
        gp = gate.addr().port()
    );
    let Some(_nginx) = Nginx::start(&env, &body, nginx_port) else {
        return;
    };
    let (status, body) = plain_get(nginx_port, "/via-nginx");
    assert_eq!(status, 200, "{body}\n{}", gate.log());
    let seen = Seen2::parse(body.as_bytes()).unwrap();
    // The DN of nginx's injected certificate, never the header nginx tried to set.
    assert_eq!(
        seen.all("X-SSL-Client-S-DN"),
        vec![pki::dn::CLIENT1.to_string()]
    );
}

#[test]
fn server_host_name_is_the_default_sni_and_verified_name() {
    let env = Env::new();
    let up = TlsUpstream::spawn(&env.pki, false);
    let port = free_port();
    let text = client_mode(port, up.addr, "ca = \"pki/server-ca.pem\"").replace(
        &format!("\"{}\"", up.addr),
        &format!("\"localhost:{}\"", up.addr.port()),
    );
    let gate = RawGate::start(&env, &text, port);
    let (status, body) = gate.get("/");
    assert_eq!(status, 200, "{body}\n{}", gate.log());
    assert!(
        up.seen()
            .iter()
            .all(|s| s.sni.as_deref() == Some("localhost")),
        "{:?}",
        up.seen()
    );
}
