//! `certgate-load` against the real `certgate` binary: every mode completes exactly `--count`
//! operations without errors, resumption actually resumes (TLS 1.3 tickets and TLS 1.2), the
//! open loop keeps its rate, and failures land in the right error kind (400 pages without a
//! client certificate, TLS alerts, timeouts, refused connections). `--protocol h2` runs
//! against nginx speaking HTTP/2 (skipped, with a message, where nginx is missing).
//!
//! Every process is a child killed and reaped on drop or after a bound ([`Gate`],
//! [`run_bounded`]); everything is on loopback with fresh ports.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Upper bound on one `certgate-load` run.
const RUN_LIMIT: Duration = Duration::from_secs(90);

const ERROR_KINDS: [&str; 7] = [
    "connect",
    "handshake",
    "tls_alert",
    "http_status_non_2xx",
    "timeout",
    "io",
    "protocol",
];

/// Runs `certgate-load --json` against `addr`, trusting `ca` for the server, with `args`;
/// returns the one JSON object it printed and its stderr.
fn run_load(addr: SocketAddr, ca: &Path, args: &[&str]) -> (Value, String) {
    run_load_to(&addr.to_string(), ca, args)
}

/// [`run_load`] with `--connect target` as given (`http://...` for h2c).
fn run_load_to(target: &str, ca: &Path, args: &[&str]) -> (Value, String) {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certgate-load"))
            .arg("--connect")
            .arg(target)
            .arg("--ca")
            .arg(ca)
            .args(["--duration", "20s", "--timeout", "5s", "--json"])
            // The generator runs on the driver under test too (CERTGATE_TEST_IO).
            .args(["--io", &io_driver()])
            .args(args),
        RUN_LIMIT,
    );
    let mut lines = out.stdout.lines();
    let json = lines.next().unwrap_or_default();
    assert!(
        lines.next().is_none(),
        "stdout holds more than one line:\n{}",
        out.stdout
    );
    let v = serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.all()));
    // Any failed operation fails the run (default --max-errors 0), and nothing else does.
    let expected = if errors(&v) > 0 { 1 } else { 0 };
    assert_eq!(
        out.status.code(),
        Some(expected),
        "certgate-load exit status: {}",
        out.all()
    );
    if expected == 1 {
        assert!(out.stderr.contains("operations failed"), "{}", out.all());
    }
    (v, out.stderr)
}

/// [`run_load`] trusting `pki`'s server CA.
fn load_at(addr: SocketAddr, pki: &Pki, args: &[&str]) -> Value {
    run_load(addr, &pki.server_ca, args).0
}

/// The same with client1's certificate presented.
fn load(gate: &Gate, args: &[&str]) -> Value {
    let c = &gate.pki().client1;
    let mut all = vec![
        "--cert",
        c.cert.to_str().unwrap(),
        "--key",
        c.key.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    load_at(gate.addr(), gate.pki(), &all)
}

fn errors(v: &Value) -> u64 {
    ERROR_KINDS
        .iter()
        .map(|k| {
            v["errors"][k]
                .as_u64()
                .unwrap_or_else(|| panic!("no {k}: {v}"))
        })
        .sum()
}

/// `ops == count`, every one of them successful, and the report is self-consistent.
fn assert_clean(v: &Value, count: u64) {
    assert_eq!(v["ops"], count, "{v}");
    assert_eq!(v["ok"], count, "{v}");
    assert_eq!(errors(v), 0, "{v}");
    let lat = &v["latency_us"];
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(lat[p].as_u64().unwrap() > 0, "{p}: {v}");
    }
    assert!(lat["p50"].as_u64() <= lat["max"].as_u64(), "{v}");
    assert!(v["ops_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["duration_s"].as_f64().unwrap() > 0.0, "{v}");
}

fn ratio(v: &Value) -> f64 {
    v["resumption_ratio"].as_f64().unwrap()
}

#[test]
fn full_handshakes() {
    let gate = Gate::start(Config::new());
    let v = load(
        &gate,
        &["--mode", "full", "--count", "200", "--connections", "8"],
    );
    assert_clean(&v, 200);
    assert_eq!(v["mode"], "full");
    assert_eq!(v["connections"], 8);
    assert_eq!(v["handshakes"], 200);
    assert_eq!(v["resumed"], 0);
    // Every operation was a real request that reached the upstream.
    assert!(gate.echo().requests() >= 200, "{}", gate.echo().requests());
}

#[test]
fn resumed_handshakes_tls13_and_tls12() {
    let gate = Gate::start(Config::new());
    for version in ["1.3", "1.2"] {
        let v = load(
            &gate,
            &[
                "--mode",
                "resume",
                "--count",
                "200",
                "--connections",
                "8",
                "--threads",
                "2",
                "--tls-version",
                version,
            ],
        );
        assert_clean(&v, 200);
        assert_eq!(v["threads"], 2);
        assert_eq!(v["handshakes"], 200);
        assert!(ratio(&v) > 0.9, "TLS {version}: {v}");
    }
}

#[test]
fn handshake_only() {
    let gate = Gate::start(Config::new());
    let before = gate.echo().requests();
    let v = load(
        &gate,
        &[
            "--mode",
            "full",
            "--handshake-only",
            "--count",
            "100",
            "--connections",
            "4",
        ],
    );
    assert_clean(&v, 100);
    assert_eq!(v["handshakes"], 100);
    assert_eq!(gate.echo().requests(), before, "no request was sent");
    // A BoringSSL server sends TLS 1.3 tickets only with its first write: each slot primes its
    // session with one unmeasured request, then resumes it without requests.
    let v = load(
        &gate,
        &[
            "--mode",
            "resume",
            "--handshake-only",
            "--count",
            "100",
            "--connections",
            "4",
        ],
    );
    assert_clean(&v, 100);
    assert!(ratio(&v) > 0.9, "{v}");
    assert_eq!(
        gate.echo().requests(),
        before + 4,
        "only the priming requests"
    );
}

#[test]
fn keepalive_requests() {
    let gate = Gate::start(Config::new());
    let v = load(
        &gate,
        &[
            "--mode",
            "keepalive",
            "--count",
            "200",
            "--connections",
            "4",
        ],
    );
    assert_clean(&v, 200);
    // The connections were opened before the measurement and kept.
    assert_eq!(v["handshakes"], 0, "{v}");
    assert!(gate.echo().requests() >= 200);
}

#[test]
fn keepalive_reconnects_when_the_server_closes() {
    // Requests 250 ms apart on one connection the server closes after 100 ms idle: each one
    // finds it closed, and is sent again on a new connection without an error.
    let gate = Gate::start(Config::new().timeout("keepalive_idle", "100ms"));
    let v = load(
        &gate,
        &[
            "--mode",
            "keepalive",
            "--rate",
            "4",
            "--count",
            "4",
            "--connections",
            "1",
        ],
    );
    assert_clean(&v, 4);
    assert!(v["handshakes"].as_u64().unwrap() >= 3, "{v}");
}

#[test]
fn chunked_and_large_bodies() {
    let gate = Gate::start(Config::new());
    for path in ["/chunked/100000", "/bytes/300000"] {
        let v = load(
            &gate,
            &[
                "--mode",
                "keepalive",
                "--count",
                "20",
                "--connections",
                "2",
                "--path",
                path,
            ],
        );
        assert_clean(&v, 20);
    }
}

#[test]
fn open_loop_keeps_its_rate() {
    let gate = Gate::start(Config::new());
    // 100 operations at 200/s take about half a second, whatever the server's speed.
    let v = load(
        &gate,
        &[
            "--mode",
            "keepalive",
            "--rate",
            "200",
            "--count",
            "100",
            "--connections",
            "4",
        ],
    );
    assert_clean(&v, 100);
    let secs = v["duration_s"].as_f64().unwrap();
    assert!((0.45..5.0).contains(&secs), "{v}");
    assert_eq!(v["rate"], 200.0);
}

#[test]
fn duration_bounds_the_run() {
    let gate = Gate::start(Config::new());
    let v = load(
        &gate,
        &[
            "--mode",
            "keepalive",
            "--duration",
            "700ms",
            "--warmup",
            "200ms",
            "--connections",
            "2",
        ],
    );
    let secs = v["duration_s"].as_f64().unwrap();
    assert!((0.69..0.75).contains(&secs), "{v}");
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(errors(&v), 0, "{v}");
}

#[test]
fn server_certificate_is_verified() {
    let gate = Gate::start(Config::new());
    let c = &gate.pki().client1;
    let cert = [
        "--cert",
        c.cert.to_str().unwrap(),
        "--key",
        c.key.to_str().unwrap(),
    ];
    let base = ["--mode", "full", "--count", "5", "--connections", "1"];
    // The certificate's IP SAN matches.
    let v = load(
        &gate,
        &[&base[..], &["--server-name", "127.0.0.1"]].concat(),
    );
    assert_clean(&v, 5);
    // A name the certificate does not carry: every handshake fails, however many the
    // remembered verification could have saved.
    let (v, err) = run_load(
        gate.addr(),
        &gate.pki().server_ca,
        &[&cert[..], &base[..], &["--server-name", "other.test"]].concat(),
    );
    assert_eq!(v["errors"]["handshake"], 5, "{v}");
    assert!(err.contains("does not verify"), "{err}");
    // A trust anchor that did not issue it.
    let (v, err) = run_load(
        gate.addr(),
        &gate.pki().rogue_ca,
        &[&cert[..], &base[..]].concat(),
    );
    assert_eq!(v["errors"]["handshake"], 5, "{v}");
    assert!(err.contains("does not verify"), "{err}");
}

#[test]
fn missing_client_certificate_gets_400_pages() {
    let gate = Gate::start(Config::new());
    let v = load_at(
        gate.addr(),
        gate.pki(),
        &["--mode", "full", "--count", "20", "--connections", "4"],
    );
    assert_eq!(v["ops"], 20, "{v}");
    assert_eq!(v["ok"], 0, "{v}");
    assert_eq!(v["errors"]["http_status_non_2xx"], 20, "{v}");
    assert_eq!(errors(&v), 20, "{v}");
    // Refusals are fast: their latency must not pose as the server's.
    assert!(v["latency_us"].is_null(), "{v}");
}

#[test]
fn max_errors_sets_the_exit_status() {
    let gate = Gate::start(Config::new());
    let run = |max: &str| {
        run_bounded(
            Command::new(env!("CARGO_BIN_EXE_certgate-load"))
                .arg("--connect")
                .arg(gate.addr().to_string())
                .arg("--ca")
                .arg(&gate.pki().server_ca)
                .args(["--mode", "full", "--count", "6", "--connections", "2"])
                .args(["--timeout", "5s", "--max-errors", max]),
            RUN_LIMIT,
        )
    };
    // Six refused operations (no client certificate: 400).
    let out = run("5");
    assert_eq!(out.status.code(), Some(1), "{}", out.all());
    assert!(
        out.stdout.contains("no successful operation"),
        "{}",
        out.all()
    );
    let out = run("6");
    assert_eq!(out.status.code(), Some(0), "{}", out.all());
}

#[test]
fn refused_certificate_is_a_tls_alert() {
    let gate = Gate::start(Config::new().reject("handshake"));
    let v = load_at(
        gate.addr(),
        gate.pki(),
        &["--mode", "full", "--count", "10", "--connections", "2"],
    );
    assert_eq!(v["ops"], 10, "{v}");
    assert_eq!(v["errors"]["tls_alert"], 10, "{v}");
}

#[test]
fn silent_server_times_out_and_dead_port_is_refused() {
    let env = Env::new();
    let silent = Silent::spawn();
    let v = load_at(
        silent.addr,
        &env.pki,
        &[
            "--mode",
            "full",
            "--count",
            "4",
            "--connections",
            "2",
            "--timeout",
            "300ms",
        ],
    );
    assert_eq!(v["ops"], 4, "{v}");
    assert_eq!(v["errors"]["timeout"], 4, "{v}");

    let v = load_at(
        dead_addr(),
        &env.pki,
        &["--mode", "full", "--count", "5", "--connections", "1"],
    );
    assert_eq!(v["ops"], 5, "{v}");
    assert_eq!(v["errors"]["connect"], 5, "{v}");
}

#[test]
fn setup_errors_exit_2() {
    let env = Env::new();
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certgate-load")).args([
            "--connect",
            "127.0.0.1:9",
            "--ca",
            "/nonexistent/ca.pem",
            "--mode",
            "full",
        ]),
        RUN_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.all());
    assert!(out.stderr.contains("--ca"), "{}", out.all());
    // A key that is not the certificate's.
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certgate-load"))
            .args(["--connect", "127.0.0.1:9", "--mode", "full", "--ca"])
            .arg(&env.pki.server_ca)
            .arg("--cert")
            .arg(&env.pki.client1.cert)
            .arg("--key")
            .arg(&env.pki.client2.key),
        RUN_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.all());
    assert!(out.stderr.contains("does not match"), "{}", out.all());
}

// ---------------------------------------------------------------------------------------------
// --protocol h2, against nginx
// ---------------------------------------------------------------------------------------------

/// nginx speaking HTTP/2 on loopback, one worker, with the test PKI's server certificate:
/// - `tls`: `listen ... ssl http2`, `ssl_verify_client optional`; `/` answers 200 only to an
///   HTTP/2 request that presented a verified client certificate (426 to HTTP/1.x, 403 without
///   a certificate); `/slow/<ms>` goes to the echo upstream, which waits that long;
/// - `h2c`: `listen ... http2` without TLS (prior knowledge), GOAWAY after 100 requests per
///   connection (`keepalive_requests`), `/` answers 200 to HTTP/2 requests;
/// - `h1`: `listen ... ssl` without http2: TLS that never selects ALPN h2.
struct Nginx {
    env: Env,
    tls: SocketAddr,
    h2c: SocketAddr,
    h1: SocketAddr,
    echo: EchoServer,
    _proc: ProcGuard,
}

impl Nginx {
    /// `None` (and a message) where nginx is not installed.
    fn start() -> Option<Nginx> {
        let nginx = Path::new("/usr/sbin/nginx");
        if !nginx.exists() {
            eprintln!(
                "SKIPPED: no {} (apt-get install nginx-light)",
                nginx.display()
            );
            return None;
        }
        let env = Env::new();
        let echo = echo::spawn("127.0.0.1:0".parse().unwrap()).expect("spawn echo");
        let [tls, h2c, h1] = [free_port(), free_port(), free_port()];
        let dir = env.path("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let pki = &env.pki;
        let (cert, key, cas) = (
            pki.server.cert.display(),
            pki.server.key.display(),
            pki.client_ca_bundle.display(),
        );
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d};
    proxy_temp_path {d};
    fastcgi_temp_path {d};
    uwsgi_temp_path {d};
    scgi_temp_path {d};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{tls} ssl http2;
        ssl_verify_client optional;
        ssl_client_certificate {cas};
        ssl_verify_depth 2;
        location / {{
            if ($server_protocol != "HTTP/2.0") {{ return 426; }}
            if ($ssl_client_verify != SUCCESS) {{ return 403; }}
            return 200 "ok\n";
        }}
        location /slow/ {{
            proxy_pass http://{echo};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{h2c} http2;
        keepalive_requests 100;
        location / {{
            if ($server_protocol != "HTTP/2.0") {{ return 426; }}
            return 200 "h2c\n";
        }}
    }}
    server {{
        listen 127.0.0.1:{h1} ssl;
        location / {{ return 200 "h1\n"; }}
    }}
}}
"#,
            echo = echo.addr(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.join("error.log");
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = ProcGuard::new(child);
        for port in [tls, h2c, h1] {
            wait_port(port, &log);
        }
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Some(Nginx {
            tls: at(tls),
            h2c: at(h2c),
            h1: at(h1),
            echo,
            env,
            _proc: proc,
        })
    }

    fn ca(&self) -> PathBuf {
        self.env.pki.server_ca.clone()
    }

    /// `certgate-load --protocol h2 --mode keepalive` at the TLS listener, with client1's
    /// certificate.
    fn load(&self, args: &[&str]) -> (Value, String) {
        let c = &self.env.pki.client1;
        let mut all = vec![
            "--protocol",
            "h2",
            "--mode",
            "keepalive",
            "--cert",
            c.cert.to_str().unwrap(),
            "--key",
            c.key.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run_load(self.tls, &self.ca(), &all)
    }
}

#[test]
fn h2_streams_with_a_client_certificate() {
    let Some(nginx) = Nginx::start() else { return };
    let (v, _) = nginx.load(&[
        "--count",
        "2000",
        "--connections",
        "4",
        "--streams",
        "10",
        "--threads",
        "2",
    ]);
    // nginx answered 200 to each: HTTP/2, and the client certificate verified.
    assert_clean(&v, 2000);
    assert_eq!(v["protocol"], "h2", "{v}");
    assert_eq!(v["streams"], 10, "{v}");
    assert_eq!(v["connections"], 4, "{v}");
    // The four connections were opened before the measurement and carried every request.
    assert_eq!(v["handshakes"], 0, "{v}");
}

#[test]
fn h2_without_a_certificate_is_refused_per_request() {
    let Some(nginx) = Nginx::start() else { return };
    let (v, err) = run_load(
        nginx.tls,
        &nginx.ca(),
        &[
            "--protocol",
            "h2",
            "--mode",
            "keepalive",
            "--count",
            "50",
            "--connections",
            "2",
            "--streams",
            "5",
        ],
    );
    assert_eq!(v["ops"], 50, "{v}");
    assert_eq!(v["errors"]["http_status_non_2xx"], 50, "{v}");
    assert!(err.contains("HTTP status 403"), "{err}");
    assert!(v["latency_us"].is_null(), "{v}");
}

#[test]
fn h2_streams_run_concurrently() {
    let Some(nginx) = Nginx::start() else { return };
    // 40 requests that each take 200 ms upstream, 20 in flight (2 connections x 10 streams):
    // two waves, about 0.4 s. One stream at a time per connection would take 4 s.
    let (v, _) = nginx.load(&[
        "--count",
        "40",
        "--connections",
        "2",
        "--streams",
        "10",
        "--path",
        "/slow/200",
    ]);
    assert_clean(&v, 40);
    let secs = v["duration_s"].as_f64().unwrap();
    assert!(secs < 2.0, "{v}");
    assert!(nginx.echo.requests() >= 40, "{}", nginx.echo.requests());
}

#[test]
fn h2c_prior_knowledge_reconnects_after_goaway() {
    let Some(nginx) = Nginx::start() else { return };
    // nginx ends each connection with GOAWAY after 100 requests: 1000 requests on 2
    // connections need at least 8 new ones, and no request fails for it.
    let (v, _) = run_load_to(
        &format!("http://{}", nginx.h2c),
        &nginx.ca(),
        &[
            "--protocol",
            "h2",
            "--mode",
            "keepalive",
            "--count",
            "1000",
            "--connections",
            "2",
            "--streams",
            "4",
        ],
    );
    assert_clean(&v, 1000);
    assert!(v["handshakes"].as_u64().unwrap() >= 8, "{v}");
}

#[test]
fn h2_needs_alpn_h2() {
    let Some(nginx) = Nginx::start() else { return };
    let (v, err) = run_load(
        nginx.h1,
        &nginx.ca(),
        &[
            "--protocol",
            "h2",
            "--mode",
            "keepalive",
            "--count",
            "6",
            "--connections",
            "2",
            "--streams",
            "3",
        ],
    );
    assert_eq!(v["ops"], 6, "{v}");
    assert_eq!(v["errors"]["protocol"], 6, "{v}");
    assert!(err.contains("did not select ALPN h2"), "{err}");
}

#[test]
fn h2_setup_errors_exit_2() {
    let env = Env::new();
    for (args, says) in [
        (
            &[
                "--connect",
                "127.0.0.1:9",
                "--protocol",
                "h2",
                "--mode",
                "full",
            ][..],
            "--mode keepalive",
        ),
        (
            &[
                "--connect",
                "127.0.0.1:9",
                "--mode",
                "keepalive",
                "--streams",
                "4",
            ][..],
            "--streams",
        ),
        (
            &["--connect", "http://127.0.0.1:9", "--mode", "keepalive"][..],
            "h2c",
        ),
        (
            &[
                "--connect",
                "127.0.0.1:9",
                "--protocol",
                "h2",
                "--mode",
                "keepalive",
                "--streams",
                "0",
            ][..],
            "--streams",
        ),
    ] {
        let out = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_certgate-load"))
                .args(args)
                .arg("--ca")
                .arg(&env.pki.server_ca),
            RUN_LIMIT,
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.all());
        assert!(out.stderr.contains(says), "{args:?}: {}", out.all());
    }
}
