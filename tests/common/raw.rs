//! A certgate started from raw configuration text (for configurations the `Config` builder
//! does not render: client mode, TCP mode), and plain-HTTP helpers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Env, ProcGuard};

/// A certgate started from raw config text in `env`, reaped on drop.
pub struct RawGate {
    _proc: ProcGuard,
    pub port: u16,
    log: std::path::PathBuf,
}

impl RawGate {
    pub fn start(env: &Env, text: &str, port: u16) -> Self {
        let config = env.write("raw.toml", text);
        let log = env.path("raw.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(super::certgate_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let gate = Self {
            _proc: ProcGuard::new(child),
            port,
            log,
        };
        wait_port(port, &gate.log);
        gate
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain GET through this (plain-HTTP) gate.
    pub fn get(&self, path: &str) -> (u16, String) {
        plain_get(self.port, path)
    }
}

pub fn wait_port(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} not ready; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 GET over plain TCP with `Connection: close`; returns status and body.
pub fn plain_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
