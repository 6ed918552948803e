//! Integration-test harness: a fresh PKI and config per test, the built `certgate` binary as a
//! child process ([`certgate_bin`]; the tools' tests in `tools/tests/` include this file too) (killed and reaped on drop), an echo upstream, and three kinds of client —
//! `curl`, `openssl s_client` (to read TLS alerts) and a BoringSSL client for raw HTTP/1.1.
//!
//! Every test gets its own temporary directory and its own ports. The I/O driver written into
//! `[runtime] io` comes from `CERTGATE_TEST_IO` (`io_uring` | `epoll`; default `auto`).
//!
//! When a test panics, dropping its [`Gate`] prints the proxy's log (stdout + stderr) and the
//! config it ran with, so the failure explains itself.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslStream};
use serde_json::Value;

#[allow(unused_imports)]
pub use certgate_tools::echo::{self, pattern_byte, EchoServer};
#[allow(unused_imports)]
pub use certgate_tools::pki::{self, dn, san, CertKey, Pki};

pub mod ca;
pub mod h2raw;
pub mod logfmt;
mod raw;
pub mod resuming;
#[allow(unused_imports)]
pub use raw::*;

/// How long the proxy may take to start listening.
pub const STARTUP: Duration = Duration::from_secs(10);
/// Default bound on a single client read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Ports, environment
// ---------------------------------------------------------------------------------------------

/// A loopback port nobody listens on right now, never handed out twice in this process. It is
/// taken below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default), so
/// that no outgoing connection of a concurrent test (they get ephemeral ports) can take it
/// between this check and the proxy's bind; certgate refuses a port in use, rightly.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    let seed = RandomState::new();
    for i in 0..10_000u64 {
        let port = 20_000 + (seed.hash_one(i) % 12_000) as u16;
        if !given.lock().unwrap().insert(port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999 after 10,000 attempts");
}

/// An address where nothing listens (connections are refused).
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The `certgate` binary. Cargo builds it for this package's tests; the tools' tests
/// (`tools/tests/`, which include this harness) take the one the workspace build left in the
/// same target directory, and refuse it when it is missing or older than the proxy's sources.
pub fn certgate_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_certgate") {
        return PathBuf::from(bin);
    }
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test>-<hash> -> target/<profile>/certgate
        let exe = std::env::current_exe().expect("current_exe");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary in target/<profile>/deps")
            .join("certgate");
        let build = "build it first: `cargo build --workspace` (add --release for release tests; \
                     scripts/test.sh builds every member)";
        let built = fs::metadata(&bin)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e}; {build}", bin.display()));
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")); // tools/
        let root = manifest.parent().unwrap_or(manifest);
        let sources = [root.join("src"), root.join("Cargo.toml")];
        if let Some(newer) = sources.iter().find_map(|p| newer_than(p, built)) {
            panic!(
                "{} is older than {}; {build}",
                bin.display(),
                newer.display()
            );
        }
        bin
    })
    .clone()
}

/// A Rust source or Cargo.toml under `path` (or `path` itself) modified after `time`.
fn newer_than(path: &Path, time: std::time::SystemTime) -> Option<PathBuf> {
    let meta = fs::metadata(path).ok()?;
    if meta.is_dir() {
        return fs::read_dir(path)
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| newer_than(&e.path(), time));
    }
    let source = path.extension().is_some_and(|e| e == "rs") || path.ends_with("Cargo.toml");
    (source && meta.modified().ok()? > time).then(|| path.to_owned())
}

/// `[runtime] io` for this run: `CERTGATE_TEST_IO`, default `auto`.
pub fn io_driver() -> String {
    match std::env::var("CERTGATE_TEST_IO") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => "auto".to_string(),
    }
}

/// A temporary directory with a freshly generated PKI in `pki/`.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    counter: AtomicU64,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("certgate-test-")
            .tempdir()
            .expect("tempdir");
        let pki = pki::generate(&dir.path().join("pki")).expect("generate PKI");
        Env {
            dir,
            pki,
            counter: AtomicU64::new(0),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `contents` to `rel` inside the directory.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        fs::write(&path, contents).expect("write file");
        path
    }

    /// A fresh file name inside the directory (for curl outputs and such).
    pub fn scratch(&self, stem: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        self.path(&format!("{stem}-{n}"))
    }

    /// Runs `certgate check --config <config>`.
    pub fn check(&self, config: &Path) -> CommandOut {
        run_bounded(
            Command::new(certgate_bin())
                .arg("check")
                .arg("--config")
                .arg(config)
                .current_dir(self.dir.path()),
            Duration::from_secs(30),
        )
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// Exit status and output of a finished command.
#[derive(Debug)]
pub struct CommandOut {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOut {
    /// stdout followed by stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Spawns `cmd`, trying again for a moment on ETXTBSY: a binary a test has just copied can still
/// be open for writing in a child that another test thread forked meanwhile.
pub fn spawn_retrying(cmd: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    }
}

/// Runs a command to completion, killing it after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> CommandOut {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = spawn_retrying(
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap()),
    );
    let status = wait_bounded(&mut child, limit)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {limit:?}"));
    CommandOut {
        status,
        stdout: String::from_utf8_lossy(&fs::read(out_path).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(err_path).unwrap_or_default()).into_owned(),
    }
}

/// Waits for `child` at most `limit`; on timeout kills and reaps it and returns `None`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => write!(out, "\\u{:04X}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Where the listener sends requests.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// An echo server the [`Gate`] spawns and owns.
    Echo,
    /// Fixed server addresses.
    Addrs(Vec<SocketAddr>),
}

/// One scenario's configuration; [`Config::render`] turns it into `certgate.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    pub workers: u32,
    pub mode: String,
    pub reject: Option<String>,
    pub verify_depth: Option<u32>,
    pub allow_subjects: Vec<String>,
    pub allow_issuers: Vec<String>,
    pub allow_sans: Vec<String>,
    pub timeouts: Vec<(String, String)>,
    pub upstream: Upstream,
    /// Extra `key = value` lines for `[listener.tls]`.
    pub tls_extra: Vec<String>,
    /// Parameters after each server address, by position (`"weight=3 backup"`).
    pub server_params: Vec<String>,
    /// Extra lines after `servers` in `[[upstream]]` (keys, then tables such as
    /// `[upstream.health]`).
    pub upstream_extra: Vec<String>,
    /// Extra `key = value` lines for `[runtime]`.
    pub runtime_extra: Vec<String>,
    /// Extra `key = value` lines for `[listener.client_auth]`.
    pub client_auth_extra: Vec<String>,
    /// Lines appended at the end of the file (top-level tables such as `[admin]` or `[log]`).
    pub file_extra: Vec<String>,
    /// Extra `key = value` lines for `[[listener]]` itself (`protocols = [...]`).
    pub listener_extra: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 1,
            mode: "required".into(),
            reject: None,
            verify_depth: Some(2),
            allow_subjects: vec![],
            allow_issuers: vec![],
            allow_sans: vec![],
            timeouts: vec![],
            upstream: Upstream::Echo,
            tls_extra: vec![],
            server_params: vec![],
            upstream_extra: vec![],
            runtime_extra: vec![],
            client_auth_extra: vec![],
            file_extra: vec![],
            listener_extra: vec![],
        }
    }
}

impl Config {
    /// `mode = "required"`, no rules, one worker, an echo upstream.
    pub fn new() -> Self {
        Self::default()
    }
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.into();
        self
    }
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }
    pub fn reject(mut self, how: &str) -> Self {
        self.reject = Some(how.into());
        self
    }
    pub fn allow_subjects(mut self, rules: &[&str]) -> Self {
        self.allow_subjects = rules.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn allow_issuers(mut self, rules: &[&str]) -> Self {
        self.allow_issuers = rules.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn allow_sans(mut self, rules: &[&str]) -> Self {
        self.allow_sans = rules.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn timeout(mut self, key: &str, value: &str) -> Self {
        self.timeouts.push((key.into(), value.into()));
        self
    }
    pub fn tls_extra(mut self, line: &str) -> Self {
        self.tls_extra.push(line.into());
        self
    }
    pub fn upstream(mut self, addrs: &[SocketAddr]) -> Self {
        self.upstream = Upstream::Addrs(addrs.to_vec());
        self
    }
    /// Parameters for the servers given to [`Config::upstream`], in the same order
    /// (`&["weight=1", "weight=3", "backup"]`; `""` for none).
    pub fn server_params(mut self, params: &[&str]) -> Self {
        self.server_params = params.iter().map(|s| s.to_string()).collect();
        self
    }
    /// A line appended to `[runtime]`.
    pub fn runtime_extra(mut self, line: &str) -> Self {
        self.runtime_extra.push(line.into());
        self
    }
    /// A line appended to `[listener.client_auth]`.
    pub fn client_auth_extra(mut self, line: &str) -> Self {
        self.client_auth_extra.push(line.into());
        self
    }
    /// A line appended to `[[upstream]]` (`balance = "least_conn"`, `[upstream.health]`, ...).
    pub fn upstream_extra(mut self, line: &str) -> Self {
        self.upstream_extra.push(line.into());
        self
    }

    /// A line in `[[listener]]` itself, before its tables (`protocols = ["h2"]`).
    pub fn listener_extra(mut self, line: &str) -> Self {
        self.listener_extra.push(line.into());
        self
    }

    /// A line appended at the end of the file (`[admin]`, `listen = "..."`).
    pub fn file_extra(mut self, line: &str) -> Self {
        self.file_extra.push(line.into());
        self
    }

    /// The TOML text, listening on `127.0.0.1:port` and forwarding to `servers`. Paths are
    /// relative to the config file, which lives next to the `pki/` directory.
    pub fn render(&self, port: u16, servers: &[SocketAddr]) -> String {
        let mut t = String::new();
        writeln!(
            t,
            "[runtime]\nworkers = {}\nio = {}",
            self.workers,
            toml_str(&io_driver())
        )
        .unwrap();
        for line in &self.runtime_extra {
            writeln!(t, "{line}").unwrap();
        }
        writeln!(t).unwrap();
        writeln!(
            t,
            "[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"app\""
        )
        .unwrap();
        for line in &self.listener_extra {
            writeln!(t, "{line}").unwrap();
        }
        writeln!(t).unwrap();
        writeln!(t, "[listener.tls]").unwrap();
        // A `certificate` line in tls_extra (with its `private_key`) replaces the default pair.
        if !self.tls_extra.iter().any(|l| l.starts_with("certificate")) {
            writeln!(
                t,
                "certificate = \"pki/server-chain.pem\"\nprivate_key = \"pki/server.key\""
            )
            .unwrap();
        }
        for line in &self.tls_extra {
            writeln!(t, "{line}").unwrap();
        }
        writeln!(t).unwrap();
        writeln!(t, "[listener.client_auth]\nmode = {}", toml_str(&self.mode)).unwrap();
        if self.mode != "off" {
            writeln!(t, "ca = \"pki/client-ca-bundle.pem\"").unwrap();
            if let Some(depth) = self.verify_depth {
                writeln!(t, "verify_depth = {depth}").unwrap();
            }
        }
        if let Some(reject) = &self.reject {
            writeln!(t, "reject = {}", toml_str(reject)).unwrap();
        }
        for line in &self.client_auth_extra {
            writeln!(t, "{line}").unwrap();
        }
        for (key, rules) in [
            ("allow_subjects", &self.allow_subjects),
            ("allow_issuers", &self.allow_issuers),
            ("allow_sans", &self.allow_sans),
        ] {
            if !rules.is_empty() {
                writeln!(t, "{key} = {}", toml_list(rules)).unwrap();
            }
        }
        if !self.timeouts.is_empty() {
            writeln!(t, "\n[listener.timeouts]").unwrap();
            for (k, v) in &self.timeouts {
                writeln!(t, "{k} = {}", toml_str(v)).unwrap();
            }
        }
        let servers: Vec<String> = servers
            .iter()
            .enumerate()
            .map(|(i, a)| match self.server_params.get(i) {
                Some(p) if !p.is_empty() => format!("{a} {p}"),
                _ => a.to_string(),
            })
            .collect();
        writeln!(
            t,
            "\n[[upstream]]\nname = \"app\"\nservers = {}",
            toml_list(&servers)
        )
        .unwrap();
        for line in &self.upstream_extra {
            writeln!(t, "{line}").unwrap();
        }
        for line in &self.file_extra {
            writeln!(t, "{line}").unwrap();
        }
        t
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test
// ---------------------------------------------------------------------------------------------

/// A child process that is terminated and reaped on drop.
pub struct ProcGuard {
    child: Option<Child>,
}

impl ProcGuard {
    pub fn new(child: Child) -> Self {
        ProcGuard { child: Some(child) }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then up to `grace` for it to exit; SIGKILL after that. Returns the exit status
    /// and whether it exited within the grace period.
    pub fn terminate(&mut self, grace: Duration) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, true));
        }
        // SAFETY: kill(2) on the pid of our own unreaped child; it cannot have been recycled.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        match wait_bounded(&mut child, grace) {
            Some(status) => Some((status, true)),
            None => child.wait().ok().map(|s| (s, false)),
        }
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// A running `certgate run` with its config, PKI, log and (by default) echo upstream.
pub struct Gate {
    pub env: Env,
    pub port: u16,
    pub config: Config,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    echo: Option<EchoServer>,
    proc: ProcGuard,
}

impl Gate {
    /// Starts a proxy for `config` in a fresh [`Env`].
    pub fn start(config: Config) -> Gate {
        Gate::start_in(Env::new(), config)
    }

    /// Starts a proxy for `config` in `env`; waits until its port accepts TCP.
    pub fn start_in(env: Env, config: Config) -> Gate {
        let (echo, servers) = match &config.upstream {
            Upstream::Echo => {
                let echo = echo::spawn("127.0.0.1:0".parse().unwrap()).expect("spawn echo");
                let addr = echo.addr();
                (Some(echo), vec![addr])
            }
            Upstream::Addrs(addrs) => (None, addrs.clone()),
        };
        let port = free_port();
        let config_path = env.write("certgate.toml", config.render(port, &servers));
        let log_path = env.path("certgate.log");
        let log = File::create(&log_path).expect("create log");
        let child = Command::new(certgate_bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(env.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn certgate");
        let mut gate = Gate {
            env,
            port,
            config,
            config_path,
            log_path,
            echo,
            proc: ProcGuard::new(child),
        };
        gate.wait_ready();
        gate
    }

    fn wait_ready(&mut self) {
        let addr = self.addr();
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.proc.try_wait() {
                panic!(
                    "certgate exited during startup ({status}); config:\n{}\nlog:\n{}",
                    self.config_text(),
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "certgate did not accept TCP on {addr} within {STARTUP:?}; config:\n{}\nlog:\n{}",
                    self.config_text(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`...).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pki(&self) -> &Pki {
        &self.env.pki
    }

    /// The echo upstream (panics if the gate was started with fixed upstream addresses).
    pub fn echo(&self) -> &EchoServer {
        self.echo.as_ref().expect("this gate has no echo upstream")
    }

    /// The `Host` a client sends: `localhost:<port>`.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// The proxy's stdout + stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    pub fn config_text(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    /// SIGTERM; returns the exit status and whether it exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<(ExitStatus, bool)> {
        self.proc.terminate(grace)
    }

    /// Panics if the proxy process has died.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.proc.try_wait() {
            panic!("certgate died ({status}); log:\n{}", self.log());
        }
    }

    /// A curl request builder for `path`.
    pub fn curl(&self, path: &str) -> Curl<'_> {
        Curl {
            gate: self,
            path: path.into(),
            cert: None,
            headers: vec![],
            args: vec![],
            data: None,
        }
    }

    /// A TLS connection as `client` (no client certificate when `None`); panics on failure.
    pub fn connect(&self, client: Option<&CertKey>) -> TlsClient {
        self.try_connect(client)
            .unwrap_or_else(|e| panic!("TLS connect: {e}\nlog:\n{}", self.log()))
    }

    pub fn try_connect(&self, client: Option<&CertKey>) -> Result<TlsClient, String> {
        TlsClient::connect(self.addr(), &self.pki().server_ca, client)
    }

    /// `openssl s_client` as `client`, sending `input` and reading until the server closes.
    /// Only the leaf of the client certificate is sent; the listener's CA bundle holds the
    /// intermediates.
    pub fn s_client(&self, client: Option<&CertKey>, input: &str) -> SClient {
        let out_path = self.env.scratch("s_client");
        let mut cmd = Command::new("openssl");
        cmd.arg("s_client")
            .arg("-connect")
            .arg(self.addr().to_string())
            .arg("-servername")
            .arg("localhost")
            .arg("-CAfile")
            .arg(&self.pki().server_ca)
            .arg("-verify_return_error")
            .arg("-ign_eof");
        if let Some(ck) = client {
            cmd.arg("-cert").arg(&ck.cert).arg("-key").arg(&ck.key);
        }
        let out = File::create(&out_path).unwrap();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn openssl s_client");
        {
            let mut stdin = child.stdin.take().unwrap();
            let _ = stdin.write_all(input.as_bytes());
        }
        let status = wait_bounded(&mut child, Duration::from_secs(15));
        let output = String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned();
        SClient {
            timed_out: status.is_none(),
            output,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let exit = self.proc.terminate(Duration::from_secs(5));
        if thread::panicking() {
            eprintln!(
                "---- certgate config ({}) ----\n{}\n---- certgate log (exit: {:?}) ----\n{}\n----",
                self.config_path.display(),
                self.config_text(),
                exit,
                self.log()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------------

/// A curl invocation against a [`Gate`].
pub struct Curl<'a> {
    gate: &'a Gate,
    path: String,
    cert: Option<CertKey>,
    headers: Vec<String>,
    args: Vec<String>,
    data: Option<PathBuf>,
}

impl Curl<'_> {
    /// Present `ck` as the client certificate.
    pub fn cert(mut self, ck: &CertKey) -> Self {
        self.cert = Some(ck.clone());
        self
    }

    /// Adds a request header (`"Name: value"`).
    pub fn header(mut self, h: &str) -> Self {
        self.headers.push(h.into());
        self
    }

    /// POSTs `body` (from a file, sent verbatim).
    pub fn body(mut self, body: &[u8]) -> Self {
        let path = self.gate.env.scratch("curl-body");
        fs::write(&path, body).unwrap();
        self.data = Some(path);
        self
    }

    /// Extra raw curl arguments.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn run(self) -> CurlOut {
        let body_path = self.gate.env.scratch("curl-out");
        let head_path = self.gate.env.scratch("curl-head");
        let mut cmd = Command::new("curl");
        cmd.arg("-sS")
            .arg("--max-time")
            .arg("10")
            .arg("--connect-timeout")
            .arg("5")
            .arg("--cacert")
            .arg(&self.gate.pki().server_ca)
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", self.gate.port))
            .arg("-o")
            .arg(&body_path)
            .arg("-D")
            .arg(&head_path)
            .arg("-w")
            .arg("%{http_code}");
        if let Some(ck) = &self.cert {
            cmd.arg("--cert").arg(&ck.cert).arg("--key").arg(&ck.key);
        }
        for h in &self.headers {
            cmd.arg("-H").arg(h);
        }
        if let Some(data) = &self.data {
            cmd.arg("--data-binary").arg(format!("@{}", data.display()));
        }
        // curl offers ALPN h2 first: the suite runs once that way (HTTP/2 streams translated to
        // HTTP/1.1) and once with CERTGATE_TEST_CURL_HTTP=1.1 (the HTTP/1.1 path), unless the
        // test chose a version itself.
        let chose = self.args.iter().any(|a| a.starts_with("--http"));
        if !chose && std::env::var("CERTGATE_TEST_CURL_HTTP").as_deref() == Ok("1.1") {
            cmd.arg("--http1.1");
        }
        cmd.args(&self.args).arg(self.gate.url(&self.path));
        let out = run_bounded(&mut cmd, Duration::from_secs(20));
        CurlOut {
            exit: out.status.code().unwrap_or(-1),
            status: out.stdout.trim().parse().unwrap_or(0),
            body: fs::read(&body_path).unwrap_or_default(),
            head: String::from_utf8_lossy(&fs::read(&head_path).unwrap_or_default()).into_owned(),
            stderr: out.stderr,
        }
    }
}

/// What curl got.
#[derive(Debug)]
pub struct CurlOut {
    /// curl's exit code (0 on success; 35 handshake failure; 56 receive failure).
    pub exit: i32,
    /// HTTP status; 0 when there was no response.
    pub status: u16,
    pub body: Vec<u8>,
    /// The response header block(s) as received.
    pub head: String,
    pub stderr: String,
}

impl CurlOut {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The echo's description of the request it received.
    pub fn seen(&self) -> Seen {
        Seen::parse(&self.body).unwrap_or_else(|e| panic!("{e}; curl: {self:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// openssl s_client
// ---------------------------------------------------------------------------------------------

/// Combined output of an `openssl s_client` run.
#[derive(Debug)]
pub struct SClient {
    pub output: String,
    pub timed_out: bool,
}

impl SClient {
    /// Whether the output reports a received alert whose description contains `what`
    /// (e.g. "certificate required", "unknown ca", "certificate expired").
    pub fn alert(&self, what: &str) -> bool {
        let out = self.output.to_ascii_lowercase();
        out.lines().any(|l| l.contains("alert") && l.contains(what))
    }
}

// ---------------------------------------------------------------------------------------------
// The echo's view of a request
// ---------------------------------------------------------------------------------------------

/// The JSON the echo upstream answered with: what actually reached the backend.
#[derive(Debug, Clone)]
pub struct Seen(pub Value);

impl Seen {
    pub fn parse(body: &[u8]) -> Result<Seen, String> {
        serde_json::from_slice(body).map(Seen).map_err(|e| {
            format!(
                "not an echo response ({e}): {:?}",
                String::from_utf8_lossy(body)
            )
        })
    }

    /// Headers in received order, names as received.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.0["headers"]
            .as_array()
            .expect("headers array")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_string(),
                    pair[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Every value of header `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The single value of `name`; panics when absent or repeated.
    pub fn one(&self, name: &str) -> String {
        let all = self.all(name);
        assert_eq!(
            all.len(),
            1,
            "expected exactly one {name} header, got {all:?}; {self}"
        );
        all.into_iter().next().unwrap()
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    pub fn str(&self, field: &str) -> String {
        self.0[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field} in {self}"))
            .to_string()
    }

    pub fn u64(&self, field: &str) -> u64 {
        self.0[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no number {field} in {self}"))
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            serde_json::to_string_pretty(&self.0).unwrap_or_default()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates and encodings
// ---------------------------------------------------------------------------------------------

/// A self-signed client certificate (ECDSA P-256) whose only subject attribute is the common
/// name `cn`, written as `{stem}.pem` and `{stem}.key` in `env`: no CA trusts it.
pub fn self_signed(env: &Env, stem: &str, cn: &str) -> CertKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    CertKey {
        cert: env.write(&format!("{stem}.pem"), cert.pem()),
        key: env.write(&format!("{stem}.key"), key.serialize_pem()),
    }
}

/// The first certificate (the leaf) of a PEM file.
pub fn leaf(path: &Path) -> boring::x509::X509 {
    let pem = fs::read(path).unwrap();
    boring::x509::X509::stack_from_pem(&pem)
        .unwrap()
        .into_iter()
        .next()
        .expect("a certificate")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the leaf's DER, lowercase hex without colons.
pub fn fingerprint(path: &Path) -> String {
    let der = leaf(path).to_der().unwrap();
    hex(&boring::hash::hash(boring::hash::MessageDigest::sha256(), &der).unwrap())
}

/// The leaf's serial number, uppercase hex.
pub fn serial(path: &Path) -> String {
    leaf(path)
        .serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_ascii_uppercase()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&boring::sha::sha256(data))
}

/// Decodes `%XX` escapes (nothing else: `+` stays `+`). Panics on a malformed escape.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3).expect("truncated %-escape")).unwrap();
            out.push(u8::from_str_radix(h, 16).expect("bad %-escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The deterministic `/bytes/<n>` body.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n as u64).map(pattern_byte).collect()
}

/// `n` pseudo-random bytes (xorshift64*), deterministic for a seed.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TLS
// ---------------------------------------------------------------------------------------------

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was chunked on the wire.
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn seen(&self) -> Seen {
        Seen::parse(&self.body).unwrap_or_else(|e| panic!("{e}; status {}", self.status))
    }
}

/// Buffered HTTP/1.x response reader over any byte stream.
pub struct HttpReader<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> HttpReader<S> {
    pub fn new(stream: S) -> Self {
        HttpReader {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = loop {
            match self.stream.read(&mut tmp) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn eof(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::UnexpectedEof, format!("EOF in {what}"))
    }

    /// A line without its terminator (CRLF, or a lenient bare LF).
    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > 1024 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "line over 1 MiB",
                ));
            }
            if self.fill()? == 0 {
                return Err(Self::eof("a line"));
            }
        }
    }

    /// Exactly `n` bytes.
    pub fn read_n(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(Self::eof("a body"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Whatever is buffered, or the next read's worth.
    pub fn read_some(&mut self) -> io::Result<Vec<u8>> {
        if self.buf.is_empty() {
            self.fill()?;
        }
        Ok(std::mem::take(&mut self.buf))
    }

    fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// One response (an interim 1xx is returned as a response of its own). `head_only`: the
    /// request was HEAD, so there is no body whatever the headers say.
    pub fn response(&mut self, head_only: bool) -> io::Result<Response> {
        let status_line = loop {
            let line = self.line()?;
            if !line.is_empty() {
                break line;
            }
        };
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let reason = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad header line {line:?}"),
                )
            })?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
        };
        if head_only || status < 200 || status == 204 || status == 304 {
            return Ok(resp);
        }
        let te = resp
            .header_all("transfer-encoding")
            .join(",")
            .to_ascii_lowercase();
        if te.split(',').any(|t| t.trim() == "chunked") {
            resp.chunked = true;
            loop {
                let line = self.line()?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {line:?}"),
                    )
                })?;
                if size == 0 {
                    while !self.line()?.is_empty() {}
                    break;
                }
                let data = self.read_n(size)?;
                resp.body.extend_from_slice(&data);
                if !self.line()?.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunk without CRLF",
                    ));
                }
            }
        } else if let Some(cl) = resp.header("content-length") {
            let n: usize = cl.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {cl:?}"),
                )
            })?;
            resp.body = self.read_n(n)?;
        } else {
            resp.body = self.read_to_eof()?;
        }
        Ok(resp)
    }

    /// Whether the peer closes the connection (EOF or reset) before `limit` with no further
    /// bytes. Returns the unexpected bytes otherwise.
    pub fn closes_within(&mut self, limit: Duration) -> Result<(), String>
    where
        S: HasTcp,
    {
        if !self.buf.is_empty() {
            return Err(format!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        let deadline = Instant::now() + limit;
        let _ = self
            .stream
            .tcp()
            .set_read_timeout(Some(Duration::from_millis(100)));
        let result = loop {
            match self.fill() {
                Ok(0) => break Ok(()),
                Ok(_) => {
                    break Err(format!(
                        "unexpected bytes: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        break Err(format!("connection still open after {limit:?}"));
                    }
                }
                Err(_) => break Ok(()), // reset or TLS-level close: closed all the same
            }
        };
        let _ = self.stream.tcp().set_read_timeout(Some(READ_TIMEOUT));
        result
    }
}

/// Access to the TCP socket under a stream, for timeouts.
pub trait HasTcp {
    fn tcp(&self) -> &TcpStream;
}

impl HasTcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl HasTcp for SslStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref()
    }
}

/// A BoringSSL client connection to the proxy.
pub type TlsClient = HttpReader<SslStream<TcpStream>>;

impl HttpReader<SslStream<TcpStream>> {
    /// Connects to `addr` with SNI `localhost`, verifying the server against `server_ca`, and
    /// presenting `client` (certificate chain file + key) if given.
    pub fn connect(
        addr: SocketAddr,
        server_ca: &Path,
        client: Option<&CertKey>,
    ) -> Result<TlsClient, String> {
        let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
        b.set_ca_file(server_ca).map_err(|e| e.to_string())?;
        if let Some(ck) = client {
            b.set_certificate_chain_file(&ck.cert)
                .map_err(|e| e.to_string())?;
            b.set_private_key_file(&ck.key, SslFiletype::PEM)
                .map_err(|e| e.to_string())?;
        }
        let connector = b.build();
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("TCP connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let tls = connector
            .connect("localhost", tcp)
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(HttpReader::new(tls))
    }

    /// Sends `req`, panicking on a write error.
    pub fn send_all(&mut self, req: &[u8]) {
        self.send(req)
            .unwrap_or_else(|e| panic!("write request: {e}"));
    }

    /// Sends `req` and reads one final response (panics on error).
    pub fn roundtrip(&mut self, req: &[u8]) -> Response {
        self.send_all(req);
        let head_only = req.starts_with(b"HEAD ");
        self.response(head_only)
            .unwrap_or_else(|e| panic!("read response: {e}"))
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.get_ref().set_read_timeout(Some(t)).unwrap();
    }

    /// Half-closes nothing: shuts the TCP connection down in both directions.
    pub fn shutdown(&self) {
        let _ = self.stream.get_ref().shutdown(Shutdown::Both);
    }
}

/// `GET <path>` with `Host` and the extra header lines (each without CRLF).
pub fn get(host: &str, path: &str, extra: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// An HTTP/1.1 request with a `Content-Length` body.
pub fn post(host: &str, path: &str, extra: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// The `/metrics` text of the admin endpoint at `addr` (the whole response, head included).
pub fn scrape(addr: SocketAddr) -> String {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// Misbehaving upstreams
// ---------------------------------------------------------------------------------------------

/// An upstream that accepts connections and never answers; holds them until dropped.
pub struct Silent {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Silent {
    pub fn spawn() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (s, a) = (Arc::clone(&stop), Arc::clone(&accepted));
        let handle = thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                a.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        Silent {
            addr,
            stop,
            accepted,
            handle: Some(handle),
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
