//! The log as an operator reads it: access lines a client cannot forge fields into, no colour
//! codes in a file, a `[log] level` that SIGHUP changes (unless RUST_LOG overrides it), and
//! handshake failures that name their real cause once.

mod common;

use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::logfmt::*;
use common::*;

// ---------------------------------------------------------------------------------------------
// Reading the log
// ---------------------------------------------------------------------------------------------

/// The fields of one logfmt line after tracing's `<time> <LEVEL> <target>: ` prefix. Colour
/// codes are dropped first: this reads fields, `no_colour_codes` checks the codes.
fn fields(line: &str) -> Vec<(String, Option<String>)> {
    let line = strip_ansi(line);
    logfmt(line.split_once(": ").map_or(&line[..], |(_, r)| r))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// The log's lines that contain `needle`, waiting (bounded) until there are `n`.
fn wait_lines(log: impl Fn() -> String, needle: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = log();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} lines with {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn access_lines(gate: &Gate, n: usize) -> Vec<String> {
    wait_lines(|| gate.log(), "certgate::access", n)
}

// ---------------------------------------------------------------------------------------------
// Item 2: client-controlled values cannot forge fields
// ---------------------------------------------------------------------------------------------

#[test]
fn a_forged_common_name_stays_inside_the_dn_field() {
    let env = Env::new();
    let cn = "mallory\" status=200 verify=SUCCESS\nforged=yes status=200";
    let mallory = self_signed(&env, "mallory", cn);
    let gate = Gate::start_in(env, Config::new());
    let out = gate.curl("/").cert(&mallory).run();
    assert_eq!(out.status, 400, "{out:?}");

    let lines = access_lines(&gate, 1);
    assert_eq!(lines.len(), 1, "one request, one access line: {lines:#?}");
    let log = gate.log();
    assert!(
        !log.lines().any(|l| l.starts_with("forged=")),
        "a line was injected:\n{log}"
    );
    let fields = fields(&lines[0]);
    assert_eq!(values(&fields, "status"), ["400"], "{}", lines[0]);
    let verify = values(&fields, "verify");
    assert_eq!(verify.len(), 1, "{}", lines[0]);
    assert!(verify[0].starts_with("FAILED:"), "{}", lines[0]);
    assert!(!has_key(&fields, "forged"), "{}", lines[0]);
    let dn = values(&fields, "dn");
    assert_eq!(dn.len(), 1, "{}", lines[0]);
    assert!(
        dn[0].contains("status=200 verify=SUCCESS"),
        "the DN is logged whole: {}",
        lines[0]
    );
}

#[test]
fn the_path_and_method_are_quoted() {
    let gate = Gate::start(Config::new());
    let mut c = gate.connect(Some(&gate.pki().client1));
    let r = c.roundtrip(&get(&gate.host(), "/a\"b?x=1%20status=200", &[]));
    assert_eq!(r.status, 200);
    let lines = access_lines(&gate, 1);
    let fields = fields(&lines[0]);
    assert_eq!(
        values(&fields, "path"),
        ["/a\"b?x=1%20status=200"],
        "{}",
        lines[0]
    );
    assert_eq!(values(&fields, "method"), ["GET"], "{}", lines[0]);
    assert_eq!(values(&fields, "status"), ["200"], "{}", lines[0]);
    assert_eq!(values(&fields, "dn"), [dn::CLIENT1], "{}", lines[0]);
}

// ---------------------------------------------------------------------------------------------
// Item 12: no ANSI colour codes unless stderr is a terminal
// ---------------------------------------------------------------------------------------------

#[test]
fn no_colour_codes_in_a_log_file() {
    let gate = Gate::start(Config::new());
    assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
    access_lines(&gate, 1);
    let log = gate.log();
    assert!(!log.contains("\x1b["), "ANSI codes in the log:\n{log:?}");
}

// ---------------------------------------------------------------------------------------------
// Item 11: `[log] level` on SIGHUP, and RUST_LOG over it
// ---------------------------------------------------------------------------------------------

/// A `certgate run` started with a chosen `[log] level` and RUST_LOG (the [`Gate`] always sets
/// RUST_LOG, which would hide what these tests look at).
struct Leveled {
    env: Env,
    port: u16,
    echo: EchoServer,
    config_path: PathBuf,
    log_path: PathBuf,
    proc: ProcGuard,
}

impl Leveled {
    fn start(level: &str, rust_log: Option<&str>) -> Leveled {
        let env = Env::new();
        let echo = echo::spawn("127.0.0.1:0".parse().unwrap()).expect("spawn echo");
        let port = free_port();
        let config_path = env.write("certgate.toml", Self::config(port, echo.addr(), level));
        let log_path = env.path("certgate.log");
        let log = File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certgate"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(env.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(v) = rust_log {
            cmd.env("RUST_LOG", v);
        }
        let proc = ProcGuard::new(cmd.spawn().expect("spawn certgate"));
        let run = Leveled {
            env,
            port,
            echo,
            config_path,
            log_path,
            proc,
        };
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect_timeout(&run.addr(), Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "not listening:\n{}", run.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        run
    }

    fn config(port: u16, echo: SocketAddr, level: &str) -> String {
        format!(
            "{}\n[log]\nlevel = {}\n",
            Config::new().render(port, &[echo]),
            toml_str(level)
        )
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    fn request(&self) {
        let mut c = TlsClient::connect(
            self.addr(),
            &self.env.pki.server_ca,
            Some(&self.env.pki.client1),
        )
        .unwrap();
        let host = format!("localhost:{}", self.port);
        assert_eq!(c.roundtrip(&get(&host, "/", &[])).status, 200);
    }

    /// Rewrites the configuration with `level` and sends SIGHUP.
    fn reload(&self, level: &str) {
        let text = Self::config(self.port, self.echo.addr(), level);
        std::fs::write(&self.config_path, text).unwrap();
        // SAFETY: signalling our own child process.
        assert_eq!(
            unsafe { libc::kill(self.proc.id() as i32, libc::SIGHUP) },
            0
        );
    }
}

#[test]
fn sighup_applies_a_new_log_level() {
    let run = Leveled::start("warn", None);
    run.request();
    // The request is answered after its access line would have been written.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !run.log().contains("certgate::access"),
        "an access line at level warn:\n{}",
        run.log()
    );

    run.reload("info");
    let reloaded = wait_lines(|| run.log(), "configuration reloaded", 1);
    assert!(reloaded[0].contains("log_level=\"info\""), "{reloaded:?}");
    run.request();
    wait_lines(|| run.log(), "certgate::access", 1);
}

#[test]
fn rust_log_keeps_overriding_the_level_and_says_so() {
    let run = Leveled::start("warn", Some("info"));
    run.request();
    wait_lines(|| run.log(), "certgate::access", 1);
    wait_lines(|| run.log(), "RUST_LOG=\"info\" overrides [log] level", 1);

    run.reload("error");
    let reloaded = wait_lines(|| run.log(), "configuration reloaded", 1);
    assert!(
        reloaded[0].contains("not applied: RUST_LOG=\"info\" overrides it"),
        "{reloaded:?}"
    );
    run.request();
    wait_lines(|| run.log(), "certgate::access", 2);
}

// ---------------------------------------------------------------------------------------------
// Item 13: handshake failures name their real cause, once
// ---------------------------------------------------------------------------------------------

/// The log's handshake failure lines, once there are `n`; none may repeat the prefix or blame
/// a certificate verification that did not happen.
fn handshake_failures(gate: &Gate, n: usize) -> Vec<String> {
    let log = || {
        // The harness's readiness probe connects and closes without a byte: not a failure
        // this test looks at.
        let text = gate.log();
        let lines = text
            .lines()
            .filter(|l| !l.contains("without sending anything"));
        lines.collect::<Vec<_>>().join("\n")
    };
    let lines = wait_lines(log, "TLS handshake failed", n);
    for l in &lines {
        assert_eq!(l.matches("TLS handshake failed").count(), 1, "{l}");
        assert!(!l.contains("verification context"), "{l}");
        assert!(!l.contains('['), "raw BoringSSL codes: {l}");
    }
    lines
}

/// curl that trusts another CA than the server's.
fn curl_untrusting(gate: &Gate, extra: &[&str]) -> CommandOut {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&gate.pki().rogue_ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", gate.port))
        .args(extra)
        .arg(gate.url("/"));
    run_bounded(&mut cmd, Duration::from_secs(20))
}

#[test]
fn a_client_that_does_not_trust_the_server_ca_is_logged_as_such() {
    let gate = Gate::start(Config::new());
    for (i, extra) in [&[][..], &["--tls-max", "1.2"][..]].into_iter().enumerate() {
        let out = curl_untrusting(&gate, extra);
        assert!(!out.status.success(), "{out:?}");
        let lines = handshake_failures(&gate, i + 1);
        assert!(
            lines[i].contains("TLS handshake failed: client sent alert unknown_ca"),
            "{extra:?}: {}",
            lines[i]
        );
    }
}

#[test]
fn garbage_and_plain_http_are_named() {
    let gate = Gate::start(Config::new());
    let send = |bytes: &[u8]| {
        let mut s = TcpStream::connect(gate.addr()).unwrap();
        s.write_all(bytes).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        // Until the server closes.
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    };
    send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let lines = handshake_failures(&gate, 1);
    assert!(
        lines[0].contains("client sent plain HTTP, not TLS"),
        "{}",
        lines[0]
    );
    send(&noise(300, 7));
    let lines = handshake_failures(&gate, 2);
    assert!(
        lines[1].contains("client did not send a TLS handshake"),
        "{}",
        lines[1]
    );
    // A ClientHello cut short, then the client goes away.
    let mut s = TcpStream::connect(gate.addr()).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(s);
    let lines = handshake_failures(&gate, 3);
    assert!(
        lines[2].contains("client closed the connection during the handshake"),
        "{}",
        lines[2]
    );
}

#[test]
fn a_handshake_timeout_is_a_timeout() {
    let gate = Gate::start(Config::new().timeout("handshake", "300ms"));
    let mut s = TcpStream::connect(gate.addr()).unwrap();
    s.write_all(b"\x16\x03\x01").unwrap();
    let lines = handshake_failures(&gate, 1);
    assert!(
        lines[0].contains("TLS handshake failed: timed out after 300ms"),
        "{}",
        lines[0]
    );
}

#[test]
fn refusals_at_the_handshake_name_the_certificate_problem() {
    let gate = Gate::start(Config::new().reject("handshake"));
    // A client certificate from a CA the listener does not know.
    let out = gate.curl("/").cert(&gate.pki().rogue).run();
    assert_eq!(out.status, 0, "{out:?}");
    let lines = handshake_failures(&gate, 1);
    assert!(
        lines[0].contains("client certificate verification failed: ")
            && lines[0].contains("; sent alert "),
        "{}",
        lines[0]
    );
    // No client certificate at all.
    let out = gate.curl("/").run();
    assert_eq!(out.status, 0, "{out:?}");
    let lines = handshake_failures(&gate, 2);
    assert!(
        lines[1].contains("client sent no certificate; sent alert certificate_required"),
        "{}",
        lines[1]
    );
    // The untrusted-server case names no certificate verification even here.
    let out = curl_untrusting(&gate, &[]);
    assert!(!out.status.success(), "{out:?}");
    let lines = handshake_failures(&gate, 3);
    assert!(
        lines[2].contains("client sent alert unknown_ca"),
        "{}",
        lines[2]
    );
}

// ---------------------------------------------------------------------------------------------
// Item 14: help
// ---------------------------------------------------------------------------------------------

fn help(sub: &str) -> String {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_certgate")).args([sub, "--help"]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[test]
fn run_help_explains_config_signals_and_logging() {
    let text = help("run");
    for needle in [
        "Path to the TOML configuration file",
        "SIGHUP",
        "SIGTERM",
        "SIGINT",
        "stderr",
        "RUST_LOG",
        "[log] level",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let text = help("check");
    assert!(
        text.contains("Path to the TOML configuration file"),
        "{text}"
    );
}
