//! The `certgate-load` command line and its validation into a [`Plan`].
//!
//! The flags are a contract: the perf scripts call them by name, so renaming one breaks them.
//! Everything that can be checked before a socket opens is checked here (addresses resolved,
//! request bytes built once and screened for header injection), so the run itself only
//! reports network outcomes.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What one operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// New TCP connection and full mTLS handshake per operation.
    Full,
    /// New TCP connection per operation, resuming the slot's previous session.
    Resume,
    /// One connection per slot, requests back to back (HTTP/1.1 keep-alive).
    Keepalive,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resume => "resume",
            Mode::Keepalive => "keepalive",
        }
    }
}

/// The HTTP version requests are sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1, one request at a time per connection.
    H1,
    /// HTTP/2 (ALPN h2 over TLS; prior knowledge, h2c, for `http://` targets), `--streams`
    /// requests at a time per connection.
    H2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
        }
    }
}

/// The TLS version to pin, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    V12,
    #[value(name = "1.3")]
    V13,
}

/// The I/O driver of the client threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Io {
    /// io_uring where the kernel allows it, epoll otherwise.
    Auto,
    #[value(name = "io_uring")]
    IoUring,
    Epoll,
}

/// mTLS load generator for certgate (and any HTTPS server that wants client certificates).
#[derive(Parser, Debug, Clone)]
// A repeated flag overrides the earlier one, so scripts can append to a base command line.
#[command(name = "certgate-load", version, args_override_self = true)]
pub struct Args {
    /// Server address, HOST:PORT or https://HOST:PORT (TLS), or http://HOST:PORT (plain TCP,
    /// --protocol h2 only: h2c with prior knowledge). The first resolved address is used.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: String,
    /// SNI and the name the server certificate is verified against (an IP address: no SNI,
    /// verified against the certificate's IP SANs).
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
    /// PEM file of the CA(s) that issued the server certificate (required for TLS targets).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (leaf first) to present.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// full: new connection + full handshake per operation; resume: new connection resuming
    /// the previous session; keepalive: requests on persistent connections.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// HTTP version: h1 (HTTP/1.1) or h2 (HTTP/2, --mode keepalive only).
    #[arg(long, value_enum, default_value = "h1")]
    pub protocol: Protocol,
    /// --protocol h2: concurrent streams (requests in flight) on each connection.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub streams: usize,
    /// Concurrent connection slots (spread over --threads).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub connections: usize,
    /// Client threads, each with its own monoio runtime.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
    /// Measured run time (after --warmup): 500ms, 10s, 1m...
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "TIME")]
    pub duration: Duration,
    /// Stop after this many measured operations (whichever of --duration and --count first).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Open loop: total operations per second, latency measured from each operation's
    /// scheduled start (no coordinated omission). Without it: closed loop, as fast as possible.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Request target.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub path: String,
    /// Host header (default: --server-name, with the port unless it is 443).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Pin the TLS version (default: 1.2 or 1.3, as negotiated).
    #[arg(long, value_enum, value_name = "1.2|1.3")]
    pub tls_version: Option<TlsVersion>,
    /// Key-exchange groups offered, in order, `:`-separated (`X25519MLKEM768`, `X25519`...).
    #[arg(long, default_value = "X25519:P-256:P-384", value_name = "LIST")]
    pub groups: String,
    /// Unmeasured run time before the measurement starts.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "TIME")]
    pub warmup: Duration,
    /// Per-operation timeout (connect + handshake + request + response).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
    pub timeout: Duration,
    /// full/resume: handshake, then close with close_notify; no request.
    #[arg(long)]
    pub handshake_only: bool,
    /// Print one JSON object on stdout instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when more operations than this failed (the report is printed all the
    /// same). The default, 0, makes any failed operation fail the run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_errors: u64,
    /// Pin the client threads to CPU(s): one id for all, or a comma list used round-robin.
    #[arg(long, value_name = "CPU", value_delimiter = ',')]
    pub pin: Vec<usize>,
    /// I/O driver.
    #[arg(long, value_enum, default_value = "auto")]
    pub io: Io,
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// TLS (false: plain TCP, h2c).
    pub tls: bool,
    pub server_name: String,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub tls_version: Option<TlsVersion>,
    pub groups: String,
    pub mode: Mode,
    pub protocol: Protocol,
    /// Concurrent requests per connection (1 for HTTP/1.1).
    pub streams: usize,
    pub handshake_only: bool,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub count: Option<u64>,
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub pin: Vec<usize>,
    pub io: Io,
    /// The request every operation sends, built once (HTTP/1.1 bytes).
    pub request: Vec<u8>,
    /// The same request for `--protocol h2`.
    pub h2_request: http::Request<()>,
}

impl Plan {
    pub fn from_args(a: &Args) -> Result<Plan, String> {
        let (tls, hostport) = match a.connect.split_once("://") {
            None => (true, a.connect.as_str()),
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "--connect {:?}: unknown scheme {scheme:?} (use HOST:PORT, https://HOST:PORT or http://HOST:PORT)",
                    a.connect
                ))
            }
        };
        let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| format!("--connect {:?}: {e}", a.connect))?
            .next()
            .ok_or_else(|| format!("--connect {:?}: no address", a.connect))?;
        if a.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if a.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if a.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if a.timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        if a.count == Some(0) {
            return Err("--count must be at least 1".into());
        }
        if let Some(r) = a.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(format!("--rate {r}: must be a positive number"));
            }
        }
        if a.streams == 0 {
            return Err("--streams must be at least 1".into());
        }
        match a.protocol {
            Protocol::H1 if a.streams > 1 => {
                return Err("--streams applies to --protocol h2 (HTTP/1.1 sends one request at a time)".into())
            }
            Protocol::H1 if !tls => {
                return Err(format!(
                    "--connect {:?}: plain http:// targets take --protocol h2 (h2c); HTTP/1.1 load is over TLS only",
                    a.connect
                ))
            }
            Protocol::H2 if a.mode != Mode::Keepalive => {
                return Err(
                    "--protocol h2 sends requests on persistent connections: use --mode keepalive"
                        .into(),
                )
            }
            _ => {}
        }
        if tls && a.ca.is_none() {
            return Err(
                "--ca is required for a TLS target: the PEM file of the CA that issued \
                        the server certificate"
                    .into(),
            );
        }
        if !tls && a.cert.is_some() {
            return Err(format!(
                "--cert needs a TLS target; --connect {:?} is plain http://",
                a.connect
            ));
        }
        if a.handshake_only && a.mode == Mode::Keepalive {
            return Err("--handshake-only applies to --mode full and resume".into());
        }
        if !is_token_text(&a.path) || !(a.path.starts_with('/') || a.path == "*") {
            return Err(format!(
                "--path {:?}: must start with '/' and hold no spaces or control characters",
                a.path
            ));
        }
        if a.server_name.is_empty() {
            return Err("--server-name must not be empty".into());
        }
        let host = match &a.host {
            Some(h) => h.clone(),
            None if addr.port() == 443 => a.server_name.clone(),
            None => format!("{}:{}", a.server_name, addr.port()),
        };
        if host.is_empty() || !is_token_text(&host) {
            return Err(format!(
                "--host {host:?}: must be non-empty with no spaces or control characters"
            ));
        }
        let mut request = String::with_capacity(128);
        let _ = write!(
            request,
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: certgate-load/{}\r\nAccept: */*\r\n",
            a.path,
            env!("CARGO_PKG_VERSION")
        );
        if a.mode != Mode::Keepalive {
            request.push_str("Connection: close\r\n");
        }
        request.push_str("\r\n");
        let scheme = if tls { "https" } else { "http" };
        let h2_request = http::Request::get(format!("{scheme}://{host}{}", a.path))
            .header(
                http::header::USER_AGENT,
                concat!("certgate-load/", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::ACCEPT, "*/*")
            .body(())
            .map_err(|e| format!("--host {host:?} with --path {:?}: {e}", a.path))?;
        Ok(Plan {
            addr,
            tls,
            server_name: a.server_name.clone(),
            ca: a.ca.clone(),
            client_cert: a.cert.clone().zip(a.key.clone()),
            tls_version: a.tls_version,
            groups: a.groups.clone(),
            mode: a.mode,
            protocol: a.protocol,
            streams: a.streams,
            handshake_only: a.handshake_only,
            connections: a.connections,
            // A thread without a slot would only cost a runtime.
            threads: a.threads.min(a.connections),
            duration: a.duration,
            count: a.count,
            rate: a.rate,
            warmup: a.warmup,
            timeout: a.timeout,
            pin: a.pin.clone(),
            io: a.io,
            request: request.into_bytes(),
            h2_request,
        })
    }

    /// Slots run by thread `t`: the connections spread as evenly as they go.
    pub fn slots_of(&self, t: usize) -> usize {
        let base = self.connections / self.threads;
        base + usize::from(t < self.connections % self.threads)
    }
}

/// Visible ASCII only: nothing that could end a request line or a header.
fn is_token_text(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Durations as the rest of certgate writes them: `500ms`, `10s`, `2m`, `1m30s`; a bare number
/// is seconds; fractions are allowed (`1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let unit_len = rest[num_len..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like 500ms, 10s or 1m"))?;
        let unit = match &rest[num_len..num_len + unit_len] {
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("{s:?}: unknown unit {u:?} (use us, ms, s, m or h)")),
        };
        let part = Duration::try_from_secs_f64(n * unit).map_err(|e| format!("{s:?}: {e}"))?;
        total = total.saturating_add(part);
        rest = &rest[num_len + unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec![
            "certgate-load",
            "--connect",
            "127.0.0.1:8443",
            "--ca",
            "ca.pem",
            "--mode",
            "full",
        ];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_and_request() {
        let p = Plan::from_args(&args(&[])).unwrap();
        assert_eq!(p.connections, 64);
        assert_eq!(p.threads, 1);
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.server_name, "localhost");
        let req = String::from_utf8(p.request).unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\nHost: localhost:8443\r\n"));
        assert!(req.contains("Connection: close\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }

    #[test]
    fn keepalive_request_has_no_connection_close() {
        let mut a = args(&["--host", "example.test", "--path", "/x?y=1"]);
        a.mode = Mode::Keepalive;
        let p = Plan::from_args(&a).unwrap();
        let req = String::from_utf8(p.request).unwrap();
        assert!(req.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: example.test\r\n"));
        assert!(!req.contains("Connection"));
    }

    #[test]
    fn rejects_injection_and_nonsense() {
        assert!(Plan::from_args(&args(&["--path", "/a b"])).is_err());
        assert!(Plan::from_args(&args(&["--path", "/a\r\nX: y"])).is_err());
        assert!(Plan::from_args(&args(&["--path", "a"])).is_err());
        assert!(Plan::from_args(&args(&["--host", "a\nb"])).is_err());
        assert!(Plan::from_args(&args(&["--connections", "0"])).is_err());
        assert!(Plan::from_args(&args(&["--count", "0"])).is_err());
        assert!(Plan::from_args(&args(&["--rate", "0"])).is_err());
        assert!(Plan::from_args(&args(&["--rate", "NaN"])).is_err());
        let mut a = args(&["--handshake-only"]);
        a.mode = Mode::Keepalive;
        assert!(Plan::from_args(&a).is_err());
        assert!(Args::try_parse_from([
            "certgate-load",
            "--connect",
            "127.0.0.1:1",
            "--ca",
            "x",
            "--mode",
            "full",
            "--cert",
            "c.pem"
        ])
        .is_err());
    }

    #[test]
    fn h2_plans() {
        let p = Plan::from_args(&args(&[
            "--protocol",
            "h2",
            "--mode",
            "keepalive",
            "--streams",
            "10",
            "--path",
            "/x?y=1",
        ]))
        .unwrap();
        assert_eq!((p.protocol, p.streams, p.tls), (Protocol::H2, 10, true));
        assert_eq!(p.h2_request.uri(), "https://localhost:8443/x?y=1");
        assert_eq!(p.h2_request.method(), http::Method::GET);
        // h2c: http:// and no CA needed.
        let a = Args::try_parse_from([
            "certgate-load",
            "--connect",
            "http://127.0.0.1:8080/",
            "--mode",
            "keepalive",
            "--protocol",
            "h2",
            "--host",
            "app.test",
        ])
        .unwrap();
        let p = Plan::from_args(&a).unwrap();
        assert!(!p.tls);
        assert_eq!(p.addr.port(), 8080);
        assert_eq!(p.h2_request.uri(), "http://app.test/");
    }

    #[test]
    fn h2_refusals_say_what_to_do() {
        let err = |extra: &[&str]| Plan::from_args(&args(extra)).unwrap_err();
        assert!(err(&["--protocol", "h2"]).contains("--mode keepalive"));
        assert!(err(&["--streams", "2"]).contains("--protocol h2"));
        assert!(err(&["--protocol", "h2", "--streams", "0"]).contains("--streams"));
        assert!(err(&["--connect", "http://127.0.0.1:80"]).contains("--protocol h2"));
        assert!(err(&["--connect", "ftp://127.0.0.1:21"]).contains("unknown scheme"));
        let no_ca = Args::try_parse_from([
            "certgate-load",
            "--connect",
            "127.0.0.1:8443",
            "--mode",
            "keepalive",
        ])
        .unwrap();
        assert!(Plan::from_args(&no_ca)
            .unwrap_err()
            .contains("--ca is required"));
        let plain_cert = args(&[
            "--connect",
            "http://127.0.0.1:80",
            "--protocol",
            "h2",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ]);
        let mut plain_cert = plain_cert;
        plain_cert.mode = Mode::Keepalive;
        assert!(Plan::from_args(&plain_cert)
            .unwrap_err()
            .contains("--cert needs a TLS target"));
    }

    #[test]
    fn slots_spread_evenly() {
        let mut p = Plan::from_args(&args(&["--connections", "10", "--threads", "3"])).unwrap();
        assert_eq!((0..3).map(|t| p.slots_of(t)).collect::<Vec<_>>(), [4, 3, 3]);
        p = Plan::from_args(&args(&["--connections", "2", "--threads", "4"])).unwrap();
        assert_eq!(p.threads, 2);
        assert_eq!(p.slots_of(0) + p.slots_of(1), 2);
    }

    #[test]
    fn versions_and_pins() {
        let a = args(&["--tls-version", "1.3", "--pin", "1,3", "--io", "io_uring"]);
        assert_eq!(a.tls_version, Some(TlsVersion::V13));
        assert_eq!(a.pin, [1, 3]);
        assert_eq!(a.io, Io::IoUring);
    }
}
