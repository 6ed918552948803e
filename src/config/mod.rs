//! The validated configuration: every path read, every rule compiled and every TLS context
//! built once at load, so the request path only looks things up.
//!
//! Errors name the file, the key (with its line when the parser knows it) and the reason, as
//! `nginx -t` does.

mod duration;
pub mod file;
mod headers;
mod http2;
mod ocsp;
mod pem;
mod servers;
mod sni;
mod tree;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use boring::ssl::SslContext;
use toml::Spanned;

use self::file::{ConfigFile, ListenerFile, UpstreamFile};
pub use self::file::{
    IoMode, ListenerMode, ProxyProtocol, Reject, TlsVersion, UpstreamProtocol, VerifyMode, XfccMode,
};
pub use self::http2::{Http2, Http2File, Protocols};
pub use self::servers::{Balance, HealthCheck, HealthFile, Server};
pub use self::sni::{SniFile, SniTlsFile, UnknownSni};
use crate::http::StripSet;
use crate::identity::rules::Family;
use crate::identity::Rules;
use crate::proxy::proxy_protocol::Cidr;
use crate::tls::{TicketKey, TicketKeys, UpstreamTls};

/// Default request-head limit: nginx's `large_client_header_buffers` of 4 × 8k serves larger
/// heads, but one head over 32 KiB is almost always abuse.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Default open client connections per worker (`limits.max_connections`); more are closed at
/// accept.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16 * 1024;
/// Intermediate CAs allowed between a client certificate and a trusted CA (nginx's default).
pub const DEFAULT_VERIFY_DEPTH: u32 = 1;
/// Verified client chains remembered per listener.
pub const DEFAULT_VERIFY_CACHE_SIZE: usize = 10_000;
/// TLS 1.2 session-ID cache entries shared by all workers (about what nginx's
/// `ssl_session_cache shared:SSL:5m` holds).
pub const DEFAULT_SESSION_CACHE_SIZE: u32 = 20 * 1024;
/// Session lifetime (nginx's `ssl_session_timeout` default).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(300);
/// How often CRL files are checked for a change.
pub const DEFAULT_CRL_REFRESH: Duration = Duration::from_secs(30);
/// How often random ticket keys are replaced.
pub const DEFAULT_TICKET_ROTATION: Duration = Duration::from_secs(3600);
/// Idle connections kept per worker and server.
pub const DEFAULT_KEEPALIVE: usize = 32;
/// The largest request head a listener may accept: larger buffers per connection only help
/// abuse (nginx's largest usual `large_client_header_buffers` is far below).
pub const MAX_MAX_HEADER_BYTES: usize = 1024 * 1024;
/// The longest a timeout that bounds one I/O wait may be: beyond a day it is a typo, and a
/// connection would hold its resources for that long.
pub const MAX_IO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// More connections per worker than this is a typo (each needs a file descriptor and memory).
pub const MAX_CONNECTIONS: usize = 1 << 20;
/// More workers than this is a typo: 0 means one per CPU.
pub const MAX_WORKERS: usize = 1024;
/// Longest client chain: deeper PKIs than this do not exist in practice.
pub const MAX_VERIFY_DEPTH: u32 = 32;
/// Largest verified-chain cache per listener.
pub const MAX_VERIFY_CACHE: usize = 1 << 20;
/// Largest idle-connection pool per worker and server.
pub const MAX_KEEPALIVE: usize = 100_000;
/// The longest TLS session lifetime (RFC 8446 §4.6.1: 7 days).
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A certificate chain and its private key, PEM, as read from their files.
type PemPair = (Vec<u8>, Vec<u8>);

/// A configuration error: where and why.
#[derive(Debug)]
pub struct ConfigError {
    /// The configuration file the error is in.
    pub file: PathBuf,
    /// 1-based line of the offending value, when the parser or a span knows it.
    pub line: Option<usize>,
    /// The key, with its table index (`listener[0].tls.certificate`); empty when the whole file
    /// is concerned.
    pub key: String,
    /// What is wrong and, where there is one, the fix.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// A validated configuration: every value checked, defaults filled in, TLS contexts and rules
/// built. Produced by [`Config::load`] at start and on each reload; workers share it read-only.
#[derive(Debug)]
pub struct Config {
    /// The file it was loaded from; relative paths in it were resolved against its directory.
    pub path: PathBuf,
    /// `[runtime]`, resolved.
    pub runtime: Runtime,
    /// `[log]`, as written (the filter is checked when logging starts).
    pub log: file::LogFile,
    /// `[log] access` and `access_format`, resolved.
    pub access_log: crate::logging::AccessLog,
    /// `[admin] listen`: where the metrics and health endpoints are served, if anywhere.
    pub admin: Option<SocketAddr>,
    /// The listeners, in file order.
    pub listeners: Vec<Arc<Listener>>,
    /// The upstreams, in file order; `Listener::upstream` indexes this.
    pub upstreams: Vec<Arc<Upstream>>,
    /// What loading found questionable but accepted: printed by `check`, logged by `run` once
    /// logging is set up (and on reload).
    pub warnings: Vec<String>,
}

/// `[runtime]`, resolved: how many workers start and on which driver.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Resolved: at least 1.
    pub workers: usize,
    /// The I/O driver requested (`auto` is resolved when the workers start).
    pub io: IoMode,
    /// Pin worker `i` to the `i`-th CPU the process may run on.
    pub pin_workers: bool,
    /// How long a drain waits for connections in progress before closing them.
    pub shutdown_timeout: Duration,
    /// The pid file, resolved against the configuration's directory.
    pub pid_file: Option<PathBuf>,
}

/// `[runtime] shutdown_timeout` when not set.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// One validated `[[listener]]`: its socket address, TLS context, client-certificate policy and
/// limits.
pub struct Listener {
    /// Unique name, shown in log lines.
    pub name: String,
    /// The address bound (one `SO_REUSEPORT` socket per worker).
    pub addr: SocketAddr,
    /// HTTP proxying or a TCP relay.
    pub mode: ListenerMode,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// None: plain HTTP.
    pub tls: Option<SslContext>,
    /// The TLS context's ticket keys, for rotation.
    pub tickets: Option<Arc<TicketKeys>>,
    /// The CRLs client certificates are checked against, refreshed in the background.
    pub crls: Option<Arc<crate::tls::crl::CrlSet>>,
    /// Client-certificate mode, rejection style and compiled rules.
    pub client_auth: ClientAuth,
    /// Per-phase time limits.
    pub timeouts: Timeouts,
    /// Size and count limits.
    pub limits: Limits,
    /// Identity header names sent upstream.
    pub headers: IdentityHeaders,
    /// Request headers removed before forwarding: every identity header name (default or
    /// configured) and `headers.strip`.
    pub strip: StripSet,
    /// `proxy_protocol` and `trusted_proxies`: the header every connection must open with.
    pub proxy_in: Option<ProxyIn>,
    /// The protocols spoken (`protocols`): ALPN on TLS, the h2 preface on plain TCP.
    pub protocols: Protocols,
    /// `[listener.http2]`.
    pub http2: Http2,
    /// `[[listener.sni]]`: each block as a listener of its own (this one's address, mode,
    /// timeouts, limits and protocols; its own certificate, client-auth policy, upstream and
    /// headers), in file order. Empty on a block.
    pub sni: Vec<Arc<Listener>>,
    /// The names that select the blocks, shared by the listener and its blocks.
    pub sni_names: Arc<crate::tls::sni::Names>,
    /// Which block of its listener this is; None: the listener's own policy.
    pub sni_block: Option<usize>,
    /// A block's names, comma-separated, for the log; empty for the listener's own policy.
    pub sni_label: String,
    /// What a ClientHello naming no block gets.
    pub unknown_sni: UnknownSni,
}

/// What a listener's blocks take from it.
struct ListenerParts {
    name: String,
    addr: SocketAddr,
    mode: ListenerMode,
    upstream: usize,
    alpn: &'static [u8],
    tickets: Option<Arc<TicketKeys>>,
    timeouts: Timeouts,
    limits: Limits,
    proxy_in: Option<ProxyIn>,
    protocols: Protocols,
    http2: Http2,
    names: Arc<crate::tls::sni::Names>,
    unknown_sni: UnknownSni,
}

impl Listener {
    /// Why a request whose authority (Host or `:authority`) is `host` must not be served on a
    /// connection whose handshake chose this policy: it names another block (or a block, on
    /// the listener's own policy, or the reverse). Only on listeners where some policy asks for
    /// client certificates, so an identity never serves another policy's names.
    pub fn misdirected(&self, host: Option<&[u8]>) -> Option<String> {
        if self.sni_names.is_empty() || !self.sni_names.verifying {
            return None;
        }
        let host = host?;
        let wanted = self.sni_names.select(host);
        if wanted == self.sni_block {
            return None;
        }
        let shown = String::from_utf8_lossy(host);
        let handshake = match self.sni_block {
            Some(_) => format!("the SNI block {:?}", self.sni_label),
            None => "the listener's own policy".to_owned(),
        };
        Some(match wanted {
            Some(b) => format!(
                "misdirected: {shown:?} is served by [[listener.sni]] block {b}, the handshake \
                 chose {handshake}"
            ),
            None => format!(
                "misdirected: {shown:?} is served by the listener's own policy, the handshake \
                 chose {handshake}"
            ),
        })
    }
}

/// A listener behind an L4 balancer: every connection opens with a PROXY protocol header, and
/// only the balancers may connect.
#[derive(Debug, Clone)]
pub struct ProxyIn {
    /// The header version the balancers send.
    pub version: file::ProxyVersion,
    /// The peers allowed to connect (and to name the client); any other is closed unread.
    pub trusted: Vec<Cidr>,
}

impl ProxyIn {
    /// Whether `peer` may send the header.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(peer))
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("tls", &self.tls.is_some())
            .field("client_auth", &self.client_auth.mode)
            .finish()
    }
}

/// A listener's client-certificate policy, checked after every handshake by `proxy::identity`.
pub struct ClientAuth {
    /// Whether a certificate is requested and must verify.
    pub mode: VerifyMode,
    /// Rejection by handshake alert or by 400 page.
    pub reject: Reject,
    /// `allow_subjects`, `allow_issuers` and `allow_sans`, compiled for matching.
    pub rules: Rules,
    /// How many rules were written, all families together (0: any verified certificate is
    /// admitted); shown at start.
    pub rule_count: usize,
}

/// A listener's time limits, each more than 0 and at most [`MAX_IO_TIMEOUT`]; the defaults are in
/// `Default`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP accept to the end of the TLS handshake.
    pub handshake: Duration,
    /// First byte to the end of the request head (slowloris bound).
    pub request_head: Duration,
    /// Wait for the next request on a kept-alive client connection; zero turns keep-alive off.
    pub keepalive_idle: Duration,
    /// TCP connect plus upstream TLS handshake to one server.
    pub upstream_connect: Duration,
    /// Wait for the upstream's response head once the request is sent.
    pub upstream_read: Duration,
    /// No progress either way on a body or a tunnel for this long ends it.
    pub body_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // nginx: client_header_timeout 60s, keepalive_timeout 75s, proxy_connect_timeout 60s,
        // proxy_read_timeout 60s. A TLS handshake that takes 10 s is not a client worth waiting
        // for, and a slowloris head gets less time than nginx gives it.
        Self {
            handshake: Duration::from_secs(10),
            request_head: Duration::from_secs(20),
            keepalive_idle: Duration::from_secs(75),
            upstream_connect: Duration::from_secs(5),
            upstream_read: Duration::from_secs(60),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// A listener's size and count limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head in bytes; larger ones get 431 (1024 to [`MAX_MAX_HEADER_BYTES`]).
    pub max_header_bytes: usize,
    /// Open client connections per worker; more are closed at accept.
    pub max_connections: usize,
    /// Requests served on one client connection before it is closed; 0: no limit.
    pub max_requests_per_connection: u64,
}

/// Header names sent upstream; `None` when disabled.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Carries the verify result (`SUCCESS`, `NONE`, `FAILED:reason`).
    pub verify: Option<String>,
    /// Carries the subject DN, RFC 2253 form.
    pub subject_dn: Option<String>,
    /// Carries the subject DN, legacy `/C=../CN=..` form.
    pub subject_dn_legacy: Option<String>,
    /// Carries the issuer DN, RFC 2253 form.
    pub issuer_dn: Option<String>,
    /// Carries the serial number, uppercase hex.
    pub serial: Option<String>,
    /// Carries the SHA-256 fingerprint, lowercase hex.
    pub fingerprint: Option<String>,
    /// Carries the subject alternative names.
    pub san: Option<String>,
    /// Carries the notAfter date, as nginx's `$ssl_client_v_end`.
    pub not_after: Option<String>,
    /// Carries the URL-escaped PEM certificate.
    pub cert: Option<String>,
    /// Carries the client address appended to the client's list.
    pub forwarded_for: Option<String>,
    /// Carries `https` or `http`.
    pub forwarded_proto: Option<String>,
    /// Carries the client address.
    pub real_ip: Option<String>,
    /// `X-Forwarded-Client-Cert`: removed, set, or kept and appended to.
    pub xfcc: XfccMode,
}

/// The defaults, in the order they are sent.
pub const DEFAULT_HEADER_NAMES: [&str; 12] = [
    "X-SSL-Client-Verify",
    "X-SSL-Client-S-DN",
    "X-SSL-Client-S-DN-Legacy",
    "X-SSL-Client-I-DN",
    "X-SSL-Client-Serial",
    "X-SSL-Client-Fingerprint",
    "X-SSL-Client-SAN",
    "X-SSL-Client-Not-After",
    "X-SSL-Client-Cert",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Real-IP",
];

/// One validated `[[upstream]]`: its servers, balancing, pool size, health and TLS.
#[derive(Debug)]
pub struct Upstream {
    /// Unique name, shown in log lines.
    pub name: String,
    /// Primaries and backups in file order; a host name with several addresses gives one
    /// server per address.
    pub servers: Vec<Server>,
    /// Idle connections kept per worker and server (at most [`MAX_KEEPALIVE`]).
    pub keepalive: usize,
    /// How a server is chosen for each request or connection.
    pub balance: Balance,
    /// Servers a request may be tried on, the first included (nginx `proxy_next_upstream_tries`).
    pub tries: usize,
    /// `[upstream.health]`: active checks from one thread (`upstream::health`).
    pub health_check: Option<HealthCheck>,
    /// Server health shared by every worker and the checker, same order as `servers`.
    pub health: crate::upstream::health::Health,
    /// TLS towards the servers; `None`: plain TCP.
    pub tls: Option<UpstreamTls>,
    /// Send a PROXY protocol v2 header first (tcp listeners).
    pub proxy_protocol: bool,
    /// HTTP/1.1 or HTTP/2 towards the servers.
    pub protocol: UpstreamProtocol,
    /// Set when a reload replaced this upstream: its health checks stop.
    pub retired: std::sync::atomic::AtomicBool,
}

impl Config {
    /// Reads, parses and validates `path`; builds TLS contexts and compiled rules.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            key: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as the content of `path` (relative paths resolve against its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let tree = tree::Tree::parse(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: e.span().map(|s| key_at(text, s.start)).unwrap_or_default(),
            reason: e.message().trim().to_owned(),
        })?;
        let cx = Cx {
            path,
            text,
            tree,
            warnings: std::cell::RefCell::new(Vec::new()),
        };
        cx.tree.check_sections().map_err(|m| ConfigError {
            file: path.to_owned(),
            line: Some(line_of(text, m.span.start)),
            key: m.key,
            reason: m.reason,
        })?;
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            ConfigError {
                file: path.to_owned(),
                line: at.map(|o| line_of(text, o)),
                key: at
                    .and_then(|o| cx.tree.path_at(o))
                    .or_else(|| at.map(|o| key_at(text, o)))
                    .unwrap_or_default(),
                reason: tree::humanize(e.message()),
            }
        })?;
        check_log_level(&file.log.level).map_err(|r| cx.err::<String>(None, "log.level", &r))?;
        let access_log = cx.access_log(&file.log)?;
        let admin = cx.admin(&file.admin)?;
        if file.runtime.workers > MAX_WORKERS {
            return Err(cx.err::<String>(
                None,
                "runtime.workers",
                &format!(
                    "{} is more than {MAX_WORKERS}; 0 starts one worker per CPU",
                    file.runtime.workers
                ),
            ));
        }

        let runtime = Runtime {
            workers: match file.runtime.workers {
                0 => available_cpus(),
                n => n,
            },
            io: file.runtime.io,
            pin_workers: file.runtime.pin_workers,
            shutdown_timeout: cx.timeout(
                &file.runtime.shutdown_timeout,
                "runtime.shutdown_timeout",
                DEFAULT_SHUTDOWN_TIMEOUT,
                MAX_IO_TIMEOUT,
            )?,
            pid_file: match &file.runtime.pid_file {
                Some(p) if p.get_ref().trim().is_empty() => {
                    return Err(cx.err(
                        Some(p),
                        "runtime.pid_file",
                        "must not be empty: remove the key to write no pid file",
                    ))
                }
                Some(p) => Some(cx.resolve(p.get_ref())),
                None => None,
            },
        };

        let mut upstreams = Vec::with_capacity(file.upstream.len());
        for (i, u) in file.upstream.iter().enumerate() {
            upstreams.push(Arc::new(cx.upstream(i, u, &upstreams)?));
        }

        if file.listener.is_empty() {
            return Err(cx.err::<String>(None, "listener", "no [[listener]] is defined"));
        }
        let mut listeners: Vec<Arc<Listener>> = Vec::with_capacity(file.listener.len());
        for (i, l) in file.listener.iter().enumerate() {
            let listener = cx.listener(i, l, &upstreams)?;
            if let Some(other) = listeners.iter().find(|o| o.name == listener.name) {
                return Err(cx.err(
                    Some(&l.name),
                    &format!("listener[{i}].name"),
                    &format!("a listener named {:?} is already defined", other.name),
                ));
            }
            if listeners.iter().any(|o| o.addr == listener.addr) {
                return Err(cx.err(
                    Some(&l.listen),
                    &format!("listener[{i}].listen"),
                    &format!("{} is already used by another listener", listener.addr),
                ));
            }
            listeners.push(Arc::new(listener));
        }

        Ok(Config {
            path: path.to_owned(),
            runtime,
            log: file.log,
            access_log,
            admin,
            listeners,
            upstreams,
            warnings: cx.warnings.into_inner(),
        })
    }

    /// The short summary `certgate check` prints.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "configuration {} is valid: {} worker(s), io = \"{}\"\n",
            self.path.display(),
            self.runtime.workers,
            self.runtime.io.as_str()
        );
        for l in &self.listeners {
            let up = &self.upstreams[l.upstream];
            s.push_str(&format!(
                "  listener {:?} on {} ({}), client_auth.mode = \"{}\", {} rule(s) -> upstream {:?} ({} server(s))\n",
                l.name,
                l.addr,
                if l.tls.is_some() { "tls" } else { "plain http" },
                l.client_auth.mode.as_str(),
                l.client_auth.rule_count,
                up.name,
                up.servers.len()
            ));
            for b in &l.sni {
                let bup = &self.upstreams[b.upstream];
                s.push_str(&format!(
                    "    sni [{}]: own certificate, client_auth.mode = \"{}\", {} rule(s) (a whole \
                     policy: nothing taken from [listener.client_auth]) -> upstream {:?}\n",
                    b.sni_label,
                    b.client_auth.mode.as_str(),
                    b.client_auth.rule_count,
                    bup.name
                ));
                if let Some(crls) = &b.crls {
                    for line in crls.describe() {
                        s.push_str(&format!("      {line}\n"));
                    }
                }
                if let Some(ocsp) = b.tls.as_deref().and_then(crate::tls::ocsp::of) {
                    s.push_str(&format!("      {}\n", ocsp.describe()));
                }
            }
            if !l.sni.is_empty() {
                s.push_str(match l.unknown_sni {
                    UnknownSni::Reject => {
                        "    other names (and no SNI): refused with the unrecognized_name alert\n"
                    }
                    UnknownSni::Default => {
                        "    other names (and no SNI): the listener's own [tls] and [client_auth]\n"
                    }
                });
            }
            if let Some(p) = &l.proxy_in {
                let from: Vec<String> = p.trusted.iter().map(Cidr::to_string).collect();
                s.push_str(&format!(
                    "    PROXY {} header required first, only from {}\n",
                    p.version.as_str(),
                    from.join(", ")
                ));
            }
            if let Some(crls) = &l.crls {
                for line in crls.describe() {
                    s.push_str(&format!("    {line}\n"));
                }
            }
            if let Some(ocsp) = l.tls.as_deref().and_then(crate::tls::ocsp::of) {
                s.push_str(&format!("    {}\n", ocsp.describe()));
            }
            if let Some(crls) = up.tls.as_ref().and_then(|t| t.crls()) {
                for line in crls.describe() {
                    s.push_str(&format!("    upstream {:?} {line}\n", up.name));
                }
            }
        }
        s
    }
}

/// A listener's (or block's) server TLS: context, ticket keys, CRLs, and how a connection
/// switched to it verifies.
type ServerTls = (
    SslContext,
    Option<Arc<TicketKeys>>,
    Option<Arc<crate::tls::crl::CrlSet>>,
    crate::tls::sni::Verify,
);

/// What differs when `server_tls` builds an SNI block's context, or a listener's with blocks.
#[derive(Default)]
struct Scope {
    /// Added to the session ID context: a block's names, so no session crosses blocks.
    tag: Vec<u8>,
    /// A block's ticket keys: its listener's (None: read from the `[tls]` table).
    tickets: Option<Option<Arc<TicketKeys>>>,
    /// The listener's blocks, switched to in its ClientHello callback.
    router: Option<crate::tls::sni::Router>,
}

/// Parsing context: the file, its text and its tree, for errors with lines.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    tree: tree::Tree<'a>,
    warnings: std::cell::RefCell<Vec<String>>,
}

impl Cx<'_> {
    /// `[log] access` and `access_format`.
    fn access_log(&self, log: &file::LogFile) -> Result<crate::logging::AccessLog, ConfigError> {
        use crate::logging::{AccessFormat, AccessTarget};
        let target = match &log.access {
            file::AccessFile::Bool(true) => AccessTarget::Stderr,
            file::AccessFile::Bool(false) => AccessTarget::Off,
            file::AccessFile::Target(t) => match t.as_str() {
                "stderr" => AccessTarget::Stderr,
                "off" => AccessTarget::Off,
                "" => {
                    return Err(self.err::<String>(
                        None,
                        "log.access",
                        "empty: write \"stderr\", \"off\" or the path of a file",
                    ))
                }
                path => AccessTarget::File(self.resolve(path)),
            },
        };
        let format = match log.access_format.as_deref() {
            None | Some("logfmt") => AccessFormat::Logfmt,
            Some("json") => AccessFormat::Json,
            Some(other) => {
                return Err(self.err::<String>(
                    None,
                    "log.access_format",
                    &format!("{other:?} is not a format: write \"logfmt\" or \"json\""),
                ))
            }
        };
        if let AccessTarget::File(path) = &target {
            if let Err(e) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                return Err(self.err::<String>(
                    None,
                    "log.access",
                    &format!("cannot open {} for appending: {e}", path.display()),
                ));
            }
        }
        Ok(crate::logging::AccessLog { target, format })
    }

    /// `[admin] listen`: an address; a warning when it is not loopback.
    fn admin(&self, admin: &file::AdminFile) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &admin.listen else {
            return Ok(None);
        };
        let addr = resolve_addr(listen).map_err(|r| {
            self.err::<String>(
                None,
                "admin.listen",
                &format!("{r}; write e.g. \"127.0.0.1:9901\""),
            )
        })?;
        if !addr.ip().is_loopback() {
            self.warn(
                "admin.listen",
                &format!(
                    "{addr} is not a loopback address: anyone who reaches it reads the metrics; \
                     bind it to 127.0.0.1 or ::1 unless a firewall guards it"
                ),
            );
        }
        Ok(Some(addr))
    }

    /// Records a warning about `key`; loading goes on.
    fn warn(&self, key: &str, reason: &str) {
        let at = match self.line_of_key(key) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        };
        self.warnings
            .borrow_mut()
            .push(format!("{at}: {key}: {reason}"));
    }

    /// An error about `key`, on the line of `at`, or else on the line where `key` (or the
    /// table that would hold it) is written.
    fn err<T>(&self, at: Option<&Spanned<T>>, key: &str, reason: &str) -> ConfigError {
        ConfigError {
            file: self.path.to_owned(),
            line: at
                .map(|s| line_of(self.text, s.span().start))
                .or_else(|| self.line_of_key(key)),
            key: key.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn line_of_key(&self, key: &str) -> Option<usize> {
        self.tree.span_of(key).map(|s| line_of(self.text, s.start))
    }

    /// A duration that bounds a wait: more than zero and at most `max`.
    fn timeout(
        &self,
        at: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = self.duration(at, key, default)?;
        if d.is_zero() {
            return Err(self.err(
                at.as_ref(),
                key,
                &format!(
                    "must be longer than 0 (0 would fail every wait at once); the default is {}",
                    duration::show(default)
                ),
            ));
        }
        if d > max {
            return Err(self.err(
                at.as_ref(),
                key,
                &format!(
                    "{} is longer than the most allowed, {}",
                    duration::show(d),
                    duration::show(max)
                ),
            ));
        }
        Ok(d)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            return p.to_owned();
        }
        self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
    }

    /// Reads a file a key names, with an error naming the key.
    fn read(&self, at: &Spanned<String>, key: &str) -> Result<(PathBuf, Vec<u8>), ConfigError> {
        let path = self.resolve(at.get_ref());
        match std::fs::read(&path) {
            Ok(bytes) => Ok((path, bytes)),
            Err(e) => Err(self.err(
                Some(at),
                key,
                &format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    fn duration(
        &self,
        at: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match at {
            None => Ok(default),
            Some(s) => duration::parse(s.get_ref()).map_err(|r| self.err(Some(s), key, &r)),
        }
    }

    fn upstream(
        &self,
        i: usize,
        u: &UpstreamFile,
        seen: &[Arc<Upstream>],
    ) -> Result<Upstream, ConfigError> {
        let key = |k: &str| format!("upstream[{i}].{k}");
        let name = u.name.get_ref().trim();
        if name.is_empty() {
            return Err(self.err(Some(&u.name), &key("name"), "must not be empty"));
        }
        if seen.iter().any(|s| s.name == name) {
            return Err(self.err(
                Some(&u.name),
                &key("name"),
                &format!("an upstream named {name:?} is already defined"),
            ));
        }
        let servers = self.servers(i, u)?;
        let keepalive = u.keepalive.unwrap_or(DEFAULT_KEEPALIVE);
        if keepalive > MAX_KEEPALIVE {
            return Err(self.err::<String>(
                None,
                &key("keepalive"),
                &format!(
                    "{keepalive} is more than {MAX_KEEPALIVE} idle connections per worker and \
                     server (0 keeps none; the default is {DEFAULT_KEEPALIVE})"
                ),
            ));
        }
        let tls = match &u.tls {
            None => None,
            Some(t) => Some(self.upstream_tls(i, t)?),
        };
        let protocol = u
            .protocol
            .as_ref()
            .map_or_else(Default::default, |p| *p.get_ref());
        if protocol == UpstreamProtocol::H2 && u.proxy_protocol.is_some() {
            return Err(self.err(
                u.protocol.as_ref(),
                &key("protocol"),
                "\"h2\" cannot follow a PROXY protocol header (proxy_protocol is for tcp \
                 listeners, which relay bytes): remove proxy_protocol, or write \"http1\"",
            ));
        }
        Ok(Upstream {
            name: name.to_owned(),
            balance: u.balance,
            tries: self.tries(i, u)?,
            health_check: self.health_check(i, u)?,
            health: crate::upstream::health::Health::new(servers.len()),
            servers,
            keepalive,
            tls,
            proxy_protocol: u.proxy_protocol == Some(ProxyProtocol::V2),
            protocol,
            retired: Default::default(),
        })
    }

    fn upstream_tls(
        &self,
        i: usize,
        t: &file::UpstreamTlsFile,
    ) -> Result<UpstreamTls, ConfigError> {
        let key = |k: &str| format!("upstream[{i}].tls.{k}");
        let ca = match &t.ca {
            Some(ca) => Some(self.read(ca, &key("ca"))?),
            None => None,
        };
        let (cert, pkey) = match (&t.bundle, &t.certificate, &t.private_key) {
            (Some(b), None, None) => {
                let (_, pem) = self.read(b, &key("bundle"))?;
                (Some(pem.clone()), Some(pem))
            }
            (Some(b), _, _) => {
                return Err(self.err(
                    Some(b),
                    &key("bundle"),
                    "give either bundle or certificate + private_key, not both",
                ))
            }
            (None, Some(c), Some(k)) => (
                Some(self.read(c, &key("certificate"))?.1),
                Some(self.read(k, &key("private_key"))?.1),
            ),
            (None, Some(c), None) => {
                return Err(self.err(Some(c), &key("private_key"), "is required with certificate"))
            }
            (None, None, Some(k)) => {
                return Err(self.err(Some(k), &key("certificate"), "is required with private_key"))
            }
            (None, None, None) => (None, None),
        };
        if !t.verify {
            self.warn(
                &key("verify"),
                "false: the upstream's certificate is not checked",
            );
        }
        if let (Some(ca_at), Some((_, pem))) = (&t.ca, &ca) {
            pem::cas(pem).map_err(|r| self.err(Some(ca_at), &key("ca"), &r))?;
        }
        if let (Some(c), Some(k)) = (&cert, &pkey) {
            pem::identity(c, k).map_err(|(which, r)| match which {
                pem::Which::Certificate => match &t.bundle {
                    Some(b) => self.err(Some(b), &key("bundle"), &r),
                    None => self.err(t.certificate.as_ref(), &key("certificate"), &r),
                },
                pem::Which::PrivateKey => match &t.bundle {
                    Some(b) => self.err(Some(b), &key("bundle"), &r),
                    None => self.err(t.private_key.as_ref(), &key("private_key"), &r),
                },
            })?;
        }
        let crls = match t.crl.first() {
            None => None,
            Some(first) if t.ca.is_none() || !t.verify => {
                return Err(self.err(
                    Some(first),
                    &key("crl"),
                    "CRLs are checked against the CAs of ca, and need verify = true: add ca",
                ))
            }
            Some(_) => Some(self.crls(&key, &t.crl, t.crl_check, t.stale_crl, &t.crl_refresh)?),
        };
        let ciphers = self.ciphers(&key("ciphers"), t.ciphers.as_ref(), false)?;
        let groups = self.groups(&key("groups"), t.groups.as_deref())?;
        let settings = crate::tls::ClientSettings {
            ca_pem: ca.as_ref().map(|(_, b)| b.as_slice()),
            cert_pem: cert.as_deref(),
            key_pem: pkey.as_deref(),
            verify: t.verify,
            crls: crls.as_ref(),
            ciphers: ciphers.as_deref(),
            groups: groups.as_deref(),
        };
        let tls =
            UpstreamTls::new(&settings, t.server_name.clone(), t.session_reuse).map_err(|e| {
                if let crate::tls::Part::Crl(n) = e.part {
                    let reason = e.reason.replace("client_auth.ca", &key("ca"));
                    return self.err(t.crl.get(n), &key("crl"), &reason);
                }
                let (at, k) = match e.part {
                    crate::tls::Part::Ca => (t.ca.as_ref(), "ca"),
                    crate::tls::Part::PrivateKey | crate::tls::Part::MoreKey(_) => {
                        (t.private_key.as_ref().or(t.bundle.as_ref()), "private_key")
                    }
                    crate::tls::Part::Certificate
                    | crate::tls::Part::Crl(_)
                    | crate::tls::Part::MoreCertificate(_) => {
                        (t.certificate.as_ref().or(t.bundle.as_ref()), "certificate")
                    }
                };
                self.err(at, &key(k), &pem::explain(&e.reason))
            })?;
        if let Some(set) = tls.crls() {
            for line in set.describe().iter().filter(|l| l.contains("STALE")) {
                self.warn(&key("crl"), line);
            }
        }
        Ok(tls)
    }

    fn listener(
        &self,
        i: usize,
        l: &ListenerFile,
        upstreams: &[Arc<Upstream>],
    ) -> Result<Listener, ConfigError> {
        let base = format!("listener[{i}]");
        let key = |k: &str| format!("{base}.{k}");
        let name = l.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(self.err(Some(&l.name), &key("name"), "must not be empty"));
        }
        let addr = resolve_addr(l.listen.get_ref())
            .map_err(|r| self.err(Some(&l.listen), &key("listen"), &r))?;
        let upstream = self.upstream_named(&key("upstream"), &l.upstream, upstreams)?;
        let client_auth = self.client_auth(&base, l.client_auth.as_ref())?;
        let protocols = self.protocols(i, l.protocols.as_ref())?;
        // A TCP relay negotiates no application protocol: the bytes are the upstream's to read.
        let alpn: &'static [u8] = match l.mode {
            ListenerMode::Http => protocols.alpn(),
            ListenerMode::Tcp => b"",
        };
        let timeouts = self.timeouts(i, &l.timeouts)?;
        let limits = self.limits(i, &l.limits, &timeouts)?;
        let (headers, strip) = self.headers(&base, &l.headers)?;
        let http2 = self.http2(i, &l.http2, limits.max_header_bytes)?;
        self.check_upstream(&key("upstream"), &l.upstream, l.mode, &upstreams[upstream])?;
        let proxy_in = self.proxy_in(i, l)?;
        let unknown_sni = l
            .unknown_sni
            .as_ref()
            .map_or_else(Default::default, |u| *u.get_ref());
        let mut parts = ListenerParts {
            name,
            addr,
            mode: l.mode,
            upstream,
            alpn,
            tickets: None,
            timeouts,
            limits,
            proxy_in,
            protocols,
            http2,
            names: Arc::default(),
            unknown_sni,
        };
        let mut blocks = Vec::with_capacity(l.sni.len());
        let (tls, crls) = match &l.tls {
            None if client_auth.mode != VerifyMode::Off => {
                return Err(self.err::<String>(
                    None,
                    &key("client_auth"),
                    "client certificates need TLS: add [listener.tls]",
                ))
            }
            None if l.client_auth.as_ref().is_some_and(|a| !a.crl.is_empty()) => {
                return Err(self.err::<String>(
                    None,
                    &key("client_auth.crl"),
                    "CRLs apply to client certificates, which need TLS: add [listener.tls]",
                ))
            }
            None if !l.sni.is_empty() => {
                return Err(self.err::<String>(
                    None,
                    &key("sni"),
                    "[[listener.sni]] blocks are chosen by the TLS ClientHello: add [listener.tls] (its \
                     certificate serves the names no block lists)",
                ))
            }
            None if l.unknown_sni.is_some() => {
                return Err(self.err(
                    l.unknown_sni.as_ref(),
                    &key("unknown_sni"),
                    "only applies to a TLS listener with [[listener.sni]] blocks: remove it",
                ))
            }
            None => (None, None),
            Some(t) => {
                parts.tickets = self.session_tickets(&base, t)?;
                parts.names = Arc::new(self.sni_names(i, l)?);
                let mut policies = Vec::with_capacity(l.sni.len());
                for (j, b) in l.sni.iter().enumerate() {
                    let (block, policy) =
                        self.sni_block(i, j, b, t, &l.headers, &parts, upstreams)?;
                    blocks.push(Arc::new(block));
                    policies.push(policy);
                }
                if l.sni.is_empty() && unknown_sni == UnknownSni::Reject {
                    return Err(self.err(
                        l.unknown_sni.as_ref(),
                        &key("unknown_sni"),
                        "\"reject\" with no [[listener.sni]] block would refuse every \
                         handshake: add the blocks, or remove unknown_sni",
                    ));
                }
                let router = if l.sni.is_empty() {
                    None
                } else {
                    let reject = match unknown_sni {
                        UnknownSni::Reject => Some(
                            crate::tls::sni::Router::rejecting()
                                .map_err(|e| self.err::<String>(None, &key("tls"), &e.to_string()))?,
                        ),
                        UnknownSni::Default => None,
                    };
                    Some(crate::tls::sni::Router {
                        names: parts.names.clone(),
                        blocks: policies,
                        reject,
                    })
                };
                let scope = Scope {
                    tag: Vec::new(),
                    tickets: Some(parts.tickets.clone()),
                    router,
                };
                let (ctx, _, crls, _) = self.server_tls(
                    &base,
                    t,
                    l.client_auth.as_ref(),
                    &client_auth,
                    alpn,
                    scope,
                )?;
                (Some(ctx), crls)
            }
        };
        Ok(Listener {
            name: parts.name,
            addr: parts.addr,
            mode: parts.mode,
            upstream,
            tls,
            tickets: parts.tickets,
            crls,
            client_auth,
            timeouts,
            limits,
            headers,
            strip,
            proxy_in: parts.proxy_in,
            protocols,
            http2,
            sni: blocks,
            sni_names: parts.names,
            sni_block: None,
            sni_label: String::new(),
            unknown_sni,
        })
    }

    /// The index of the `[[upstream]]` named at `at`.
    fn upstream_named(
        &self,
        key: &str,
        at: &Spanned<String>,
        upstreams: &[Arc<Upstream>],
    ) -> Result<usize, ConfigError> {
        upstreams
            .iter()
            .position(|u| u.name == at.get_ref().trim())
            .ok_or_else(|| {
                self.err(
                    Some(at),
                    key,
                    &format!("no [[upstream]] named {:?} is defined", at.get_ref()),
                )
            })
    }

    /// Whether a listener (or block) of `mode` can forward to `up`.
    fn check_upstream(
        &self,
        key: &str,
        at: &Spanned<String>,
        mode: ListenerMode,
        up: &Upstream,
    ) -> Result<(), ConfigError> {
        if mode == ListenerMode::Http && up.proxy_protocol {
            return Err(self.err(
                Some(at),
                key,
                &format!(
                    "upstream {:?} sends a PROXY protocol header (proxy_protocol = \"v2\"), \
                     which only a mode = \"tcp\" listener can use: write mode = \"tcp\" here, \
                     or use an upstream without proxy_protocol",
                    up.name
                ),
            ));
        }
        if mode == ListenerMode::Tcp && up.protocol == UpstreamProtocol::H2 {
            return Err(self.err(
                Some(at),
                key,
                &format!(
                    "upstream {:?} speaks HTTP/2 (protocol = \"h2\"), but a mode = \"tcp\" \
                     listener relays bytes, not requests: use an upstream without protocol = \
                     \"h2\", or remove mode = \"tcp\"",
                    up.name
                ),
            ));
        }
        Ok(())
    }

    /// `proxy_protocol` and `trusted_proxies` of `listener[i]`. Both or neither: a header
    /// accepted from anyone would let any client name any address (nginx and HAProxy do accept
    /// it from anyone; trusting everyone here is written out as "0.0.0.0/0", "::/0").
    fn proxy_in(&self, i: usize, l: &ListenerFile) -> Result<Option<ProxyIn>, ConfigError> {
        let key = |k: &str| format!("listener[{i}].{k}");
        let (version, list) = match (&l.proxy_protocol, &l.trusted_proxies) {
            (None, None) => return Ok(None),
            (Some(v), None) => {
                return Err(self.err(
                    Some(v),
                    &key("proxy_protocol"),
                    "needs trusted_proxies, the balancers allowed to send the header (others \
                     are refused): e.g. trusted_proxies = [\"10.0.0.0/8\"]; to accept it from \
                     anyone, as nginx does, write trusted_proxies = [\"0.0.0.0/0\", \"::/0\"]",
                ))
            }
            (None, Some(list)) => {
                return Err(self.err(
                    Some(list),
                    &key("trusted_proxies"),
                    "only applies with proxy_protocol = \"v1\" or \"v2\" (the client address \
                     comes from the PROXY header the balancer sends): add proxy_protocol, or \
                     remove trusted_proxies",
                ))
            }
            (Some(v), Some(list)) => (*v.get_ref(), list),
        };
        if list.get_ref().is_empty() {
            return Err(self.err(
                Some(list),
                &key("trusted_proxies"),
                "is empty, so every connection would be refused: list the balancers' \
                 addresses, e.g. [\"10.0.0.0/8\"]",
            ));
        }
        let mut trusted = Vec::with_capacity(list.get_ref().len());
        for (n, entry) in list.get_ref().iter().enumerate() {
            let cidr = Cidr::parse(entry.get_ref())
                .map_err(|r| self.err(Some(entry), &key(&format!("trusted_proxies[{n}]")), &r))?;
            trusted.push(cidr);
        }
        Ok(Some(ProxyIn { version, trusted }))
    }

    /// `[listener.client_auth]` of `listener[i]`: the verify mode and the compiled rules.
    fn client_auth(
        &self,
        base: &str,
        auth: Option<&file::ClientAuthFile>,
    ) -> Result<ClientAuth, ConfigError> {
        let key = |k: &str| format!("{base}.{k}");
        let mode = auth.map(|a| a.mode).unwrap_or_default();
        let reject = auth.map(|a| a.reject).unwrap_or_default();
        let texts = |f: Family| -> Vec<String> {
            rules_of(auth, f)
                .iter()
                .map(|s| s.get_ref().clone())
                .collect()
        };
        let rules = Rules::compile(
            &texts(Family::Subjects),
            &texts(Family::Issuers),
            &texts(Family::Sans),
        )
        .and_then(|r| r.with_fingerprints(&texts(Family::Fingerprints)))
        .map_err(|e| {
            self.err(
                rules_of(auth, e.family).get(e.index),
                &key(&e.key()),
                &e.reason(),
            )
        })?;
        for w in rules.warnings() {
            self.warn(&key(&w.key()), &w.reason());
        }
        if mode == VerifyMode::Off && !rules.is_empty() {
            return Err(self.err::<String>(
                None,
                &key("client_auth.mode"),
                "allow_* rules need client certificates: set mode to required, optional or optional_no_ca",
            ));
        }
        Ok(ClientAuth {
            mode,
            reject,
            rules,
            rule_count: FAMILIES.iter().map(|f| rules_of(auth, *f).len()).sum(),
        })
    }

    /// `[listener.tls]` of `listener[i]`: the server context (certificate, client CAs,
    /// verification, resumption) and its ticket keys.
    fn server_tls(
        &self,
        base: &str,
        t: &file::TlsFile,
        auth_file: Option<&file::ClientAuthFile>,
        auth: &ClientAuth,
        alpn: &'static [u8],
        scope: Scope,
    ) -> Result<ServerTls, ConfigError> {
        let key = |k: &str| format!("{base}.{k}");
        let pairs = self.identities(base, t)?;
        let ca = self.client_ca(base, auth_file, auth.mode)?;
        let tickets = match scope.tickets {
            Some(shared) => shared,
            None => self.session_tickets(base, t)?,
        };
        let session_timeout = self.session_timeout(base, t)?;
        let (verify_depth, verify_cache) = self.verification(base, auth_file)?;
        // A block's protocol settings are its listener's, already checked (and warned about).
        let warned = self.warnings.borrow().len();
        let min_tls13 = t.min_version.unwrap_or_default() == TlsVersion::Tls13;
        let ciphers = self.ciphers(&key("tls.ciphers"), t.ciphers.as_ref(), min_tls13)?;
        let groups = self.groups(&key("tls.groups"), t.groups.as_deref())?;
        let sigalgs = self.signature_algorithms(base, t, auth.mode)?;
        if scope.router.is_none() && !scope.tag.is_empty() {
            self.warnings.borrow_mut().truncate(warned);
        }
        let mut tag = policy_tag(auth_file);
        tag.extend_from_slice(&scope.tag);
        let (cert_pem, key_pem) = &pairs[0];
        let ocsp = self.ocsp_stapler(&key("tls.ocsp_response"), t, cert_pem, pairs.len())?;
        let settings = crate::tls::ServerSettings {
            cert_pem,
            key_pem,
            ca_pem: ca.as_deref(),
            mode: auth.mode,
            reject: auth.reject,
            verify_depth,
            min_tls13,
            policy_tag: &tag,
            tickets: tickets.as_ref(),
            session_cache_size: t.session_cache_size.unwrap_or(DEFAULT_SESSION_CACHE_SIZE),
            session_timeout,
            verify_cache,
        };
        let more: Vec<(&[u8], &[u8])> = pairs[1..]
            .iter()
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
            .collect();
        let handshake = crate::tls::Handshake {
            more_identities: &more,
            ciphers: ciphers.as_deref(),
            groups: groups.as_deref(),
            verify_algorithms: sigalgs.as_deref(),
            ocsp: ocsp.as_ref(),
        };
        let crls = self.crl_settings(base, auth_file, auth.mode)?;
        let stale = crls.as_ref().map(|c| c.stale);
        let verify = crate::tls::verify_of(&settings, stale);
        let (ctx, crls) =
            crate::tls::sni_context(&settings, &handshake, crls.as_ref(), alpn, scope.router)
                .map_err(|e| {
                    use crate::tls::Part;
                    if let Part::Crl(n) = e.part {
                        let at = auth_file.and_then(|a| a.crl.get(n));
                        return self.err(at, &key("client_auth.crl"), &e.reason);
                    }
                    let (at, k) = match e.part {
                        Part::Certificate | Part::Crl(_) | Part::MoreCertificate(_) => {
                            (&t.certificate, "tls.certificate")
                        }
                        Part::PrivateKey | Part::MoreKey(_) => (&t.private_key, "tls.private_key"),
                        Part::Ca => match auth_file.and_then(|a| a.ca.as_ref()) {
                            Some(ca) => {
                                return self.err(
                                    Some(ca),
                                    &key("client_auth.ca"),
                                    &pem::explain(&e.reason),
                                )
                            }
                            None => (&t.certificate, "tls"),
                        },
                    };
                    let reason = match e.part {
                        Part::MoreCertificate(n) => {
                            format!(
                                "{}: {}",
                                t.certificate.get_ref().0[n + 1],
                                pem::explain(&e.reason)
                            )
                        }
                        Part::MoreKey(n) => {
                            format!(
                                "{}: {}",
                                t.private_key.get_ref().0[n + 1],
                                pem::explain(&e.reason)
                            )
                        }
                        _ => pem::explain(&e.reason),
                    };
                    self.err(Some(at), &key(k), &reason)
                })?;
        if let Some(set) = &crls {
            for line in set.describe().iter().filter(|l| l.contains("STALE")) {
                self.warn(&key("client_auth.crl"), line);
            }
            if set.check() == crate::tls::crl::CrlCheck::Chain {
                for ca in set.cas_without_crl() {
                    self.warn(
                        &key("client_auth.crl"),
                        &format!(
                            "no CRL from CA \"{ca}\": with crl_check = \"chain\" every client \
                             whose chain holds it is refused; add its CRL, or write crl_check = \
                             \"leaf\""
                        ),
                    );
                }
            }
        }
        Ok((ctx, tickets, crls, verify))
    }

    /// `tls.certificate` and `tls.private_key` of `listener[i]`: one file each, or two lists
    /// of the same length paired in order; every file read and each pair checked.
    fn identities(&self, base: &str, t: &file::TlsFile) -> Result<Vec<PemPair>, ConfigError> {
        let key = |k: &str| format!("{base}.tls.{k}");
        let (certs, keys) = (&t.certificate.get_ref().0, &t.private_key.get_ref().0);
        if certs.len() != keys.len() {
            return Err(self.err(
                Some(&t.private_key),
                &key("private_key"),
                &format!(
                    "{} certificate files but {} private keys: give one key per certificate, \
                     in the same order",
                    certs.len(),
                    keys.len()
                ),
            ));
        }
        let mut pairs = Vec::with_capacity(certs.len());
        for (cert, pkey) in certs.iter().zip(keys) {
            let at_cert = Spanned::new(t.certificate.span(), cert.clone());
            let at_key = Spanned::new(t.private_key.span(), pkey.clone());
            let (_, cert_pem) = self.read(&at_cert, &key("certificate"))?;
            let (_, key_pem) = self.read(&at_key, &key("private_key"))?;
            let several = certs.len() > 1;
            let named = |file: &str, r: String| if several { format!("{file}: {r}") } else { r };
            pem::identity(&cert_pem, &key_pem).map_err(|(which, r)| match which {
                pem::Which::Certificate => {
                    self.err(Some(&at_cert), &key("certificate"), &named(cert, r))
                }
                pem::Which::PrivateKey => {
                    self.err(Some(&at_key), &key("private_key"), &named(pkey, r))
                }
            })?;
            pairs.push((cert_pem, key_pem));
        }
        Ok(pairs)
    }

    /// A `ciphers` value: the TLS 1.2 list, with a warning for TLS 1.3 names (fixed by
    /// BoringSSL) and for a list on a TLS 1.3-only listener.
    fn ciphers(
        &self,
        key: &str,
        at: Option<&Spanned<String>>,
        min_tls13: bool,
    ) -> Result<Option<String>, ConfigError> {
        let Some(at) = at else { return Ok(None) };
        let c = crate::tls::algorithms::ciphers(at.get_ref())
            .map_err(|r| self.err(Some(at), key, &r))?;
        if !c.tls13_ignored.is_empty() {
            self.warn(
                key,
                &format!(
                    "{} ignored: BoringSSL's TLS 1.3 suites are fixed ({}, all always offered); \
                     this list sets the TLS 1.2 suites only",
                    c.tls13_ignored.join(", "),
                    crate::tls::algorithms::TLS13_SUITES.join(", ")
                ),
            );
        }
        if !c.exclusions_ignored.is_empty() {
            self.warn(
                key,
                &format!(
                    "{} ignored: BoringSSL has no such suites, so they exclude nothing",
                    c.exclusions_ignored.join(", ")
                ),
            );
        }
        if min_tls13 {
            self.warn(
                key,
                "has no effect with min_version = \"1.3\": it sets the TLS 1.2 suites only",
            );
        }
        Ok(Some(c.tls12))
    }

    /// A `groups` list, in BoringSSL's `:`-separated form.
    fn groups(
        &self,
        key: &str,
        entries: Option<&[Spanned<String>]>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(entries) = entries else {
            return Ok(None);
        };
        let names: Vec<&str> = entries.iter().map(|e| e.get_ref().as_str()).collect();
        crate::tls::algorithms::groups(&names)
            .map(Some)
            .map_err(|(n, r)| match entries.get(n) {
                Some(at) => self.err(Some(at), key, &r),
                None => self.err::<String>(None, key, &r),
            })
    }

    /// `tls.signature_algorithms` of `listener[i]`: the schemes client signatures are verified
    /// with; a warning for SHA-1 ones and when no client certificate is requested.
    fn signature_algorithms(
        &self,
        base: &str,
        t: &file::TlsFile,
        mode: VerifyMode,
    ) -> Result<Option<Vec<u16>>, ConfigError> {
        let key = format!("{base}.tls.signature_algorithms");
        let Some(entries) = &t.signature_algorithms else {
            return Ok(None);
        };
        if entries.is_empty() {
            return Err(self.err::<String>(
                None,
                &key,
                "is empty: list at least one scheme, or remove the key for the default \
                 (ed25519, ECDSA P-256/P-384, RSA-PSS and RSA PKCS#1 with SHA-256/384/512)",
            ));
        }
        let mut codes = Vec::with_capacity(entries.len());
        for e in entries {
            let code = crate::tls::algorithms::signature_scheme(e.get_ref())
                .map_err(|r| self.err(Some(e), &key, &r))?;
            if crate::tls::algorithms::is_sha1(code) {
                self.warn(
                    &key,
                    &format!(
                        "{:?} accepts SHA-1 signatures, which can be forged (SHAttered, \
                         SHA-1 is a Shambles); remove it unless an old client needs it",
                        e.get_ref()
                    ),
                );
            }
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        if mode == VerifyMode::Off {
            self.warn(
                &key,
                "has no effect with client_auth mode = \"off\": it lists what client \
                 certificates may sign with",
            );
        }
        Ok(Some(codes))
    }

    /// `client_auth.crl`, `crl_check`, `stale_crl` and `crl_refresh` of `listener[i]`; None
    /// without CRLs.
    fn crl_settings(
        &self,
        base: &str,
        auth_file: Option<&file::ClientAuthFile>,
        mode: VerifyMode,
    ) -> Result<Option<crate::tls::crl::CrlSettings>, ConfigError> {
        let key = |k: &str| format!("{base}.client_auth.{k}");
        let Some(a) = auth_file.filter(|a| !a.crl.is_empty()) else {
            return Ok(None);
        };
        if mode == VerifyMode::Off {
            return Err(self.err(
                a.crl.first(),
                &key("crl"),
                "CRLs need client certificates: set mode = \"required\" (or \"optional\", \
                 \"optional_no_ca\"), or remove crl",
            ));
        }
        if a.ca.is_none() {
            return Err(self.err(
                a.crl.first(),
                &key("crl"),
                "CRLs are checked against the CAs of client_auth.ca: add ca",
            ));
        }
        self.crls(&key, &a.crl, a.crl_check, a.stale_crl, &a.crl_refresh)
            .map(Some)
    }

    /// The CRL settings common to listeners and upstreams; `key` names a key of the table.
    fn crls(
        &self,
        key: &dyn Fn(&str) -> String,
        crl: &[Spanned<String>],
        check: file::CrlCheck,
        stale: file::StaleCrl,
        refresh: &Option<Spanned<String>>,
    ) -> Result<crate::tls::crl::CrlSettings, ConfigError> {
        use crate::tls::crl::{CrlCheck, CrlSettings, StaleCrl};
        let every = self.duration(refresh, &key("crl_refresh"), DEFAULT_CRL_REFRESH)?;
        if every < Duration::from_secs(1) {
            return Err(self.err(
                refresh.as_ref(),
                &key("crl_refresh"),
                &format!(
                    "must be at least \"1s\" (the CRL files are checked for a change this \
                     often; the default is \"{}\")",
                    duration::show(DEFAULT_CRL_REFRESH)
                ),
            ));
        }
        Ok(CrlSettings {
            files: crl.iter().map(|f| self.resolve(f.get_ref())).collect(),
            check: match check {
                file::CrlCheck::Leaf => CrlCheck::Leaf,
                file::CrlCheck::Chain => CrlCheck::Chain,
            },
            stale: match stale {
                file::StaleCrl::Refuse => StaleCrl::Refuse,
                file::StaleCrl::Warn => StaleCrl::Warn,
            },
            refresh: every,
        })
    }

    /// `client_auth.ca` of `listener[i]`, read and checked; required by the modes that verify.
    fn client_ca(
        &self,
        base: &str,
        auth_file: Option<&file::ClientAuthFile>,
        mode: VerifyMode,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        let key = format!("{base}.client_auth.ca");
        match auth_file.and_then(|a| a.ca.as_ref()) {
            Some(ca) => {
                let (_, pem) = self.read(ca, &key)?;
                pem::cas(&pem).map_err(|r| self.err(Some(ca), &key, &r))?;
                Ok(Some(pem))
            }
            None if matches!(mode, VerifyMode::Required | VerifyMode::Optional) => {
                Err(self.err::<String>(None, &key, "is required when mode is required or optional"))
            }
            None => Ok(None),
        }
    }

    /// The ticket keys of `listener[i]`: from `session_ticket_keys`, or random and rotated;
    /// None when `session_tickets = false`.
    fn session_tickets(
        &self,
        base: &str,
        t: &file::TlsFile,
    ) -> Result<Option<Arc<TicketKeys>>, ConfigError> {
        if !t.session_tickets {
            return Ok(None);
        }
        if t.session_ticket_keys.is_empty() {
            let k = format!("{base}.tls.session_ticket_rotation");
            let every = self.timeout(
                &t.session_ticket_rotation,
                &k,
                DEFAULT_TICKET_ROTATION,
                MAX_IO_TIMEOUT,
            )?;
            if every < Duration::from_secs(1) {
                return Err(self.err(
                    t.session_ticket_rotation.as_ref(),
                    &k,
                    &format!(
                        "must be at least \"1s\" (every rotation makes older tickets useless \
                         sooner; the default is \"{}\")",
                        duration::show(DEFAULT_TICKET_ROTATION)
                    ),
                ));
            }
            return Ok(Some(TicketKeys::rotating(every)));
        }
        let k = format!("{base}.tls.session_ticket_keys");
        let mut keys = Vec::new();
        for f in &t.session_ticket_keys {
            let (path, bytes) = self.read(f, &k)?;
            let parsed = TicketKey::from_nginx_bytes(&bytes)
                .map_err(|r| self.err(Some(f), &k, &format!("{}: {r}", path.display())))?;
            keys.push(parsed);
        }
        Ok(Some(TicketKeys::fixed(keys)))
    }

    /// `tls.session_timeout` of `listener[i]`.
    fn session_timeout(&self, base: &str, t: &file::TlsFile) -> Result<Duration, ConfigError> {
        let k = format!("{base}.tls.session_timeout");
        let session_timeout = self.duration(&t.session_timeout, &k, DEFAULT_SESSION_TIMEOUT)?;
        if session_timeout < Duration::from_secs(1) || session_timeout > MAX_SESSION_TIMEOUT {
            return Err(self.err(
                t.session_timeout.as_ref(),
                &k,
                &format!(
                    "must be from \"1s\" to \"7d\" (RFC 8446's longest session lifetime), not \
                     {}; to turn resumption off write session_tickets = false and \
                     session_cache_size = 0",
                    duration::show(session_timeout)
                ),
            ));
        }
        Ok(session_timeout)
    }

    /// `client_auth.verify_depth` and `client_auth.verify_cache_size` of `listener[i]`.
    fn verification(
        &self,
        base: &str,
        auth_file: Option<&file::ClientAuthFile>,
    ) -> Result<(u32, usize), ConfigError> {
        let key = |k: &str| format!("{base}.client_auth.{k}");
        let verify_depth = auth_file
            .and_then(|a| a.verify_depth)
            .unwrap_or(DEFAULT_VERIFY_DEPTH);
        if verify_depth > MAX_VERIFY_DEPTH {
            return Err(self.err::<String>(
                None,
                &key("verify_depth"),
                &format!(
                    "{verify_depth} is more than {MAX_VERIFY_DEPTH} (intermediate CAs between a \
                     client certificate and a trusted CA; nginx's default is \
                     {DEFAULT_VERIFY_DEPTH})"
                ),
            ));
        }
        let verify_cache = auth_file
            .and_then(|a| a.verify_cache_size)
            .unwrap_or(DEFAULT_VERIFY_CACHE_SIZE);
        if verify_cache > MAX_VERIFY_CACHE {
            return Err(self.err::<String>(
                None,
                &key("verify_cache_size"),
                &format!(
                    "{verify_cache} is more than {MAX_VERIFY_CACHE} entries (0 turns the cache \
                     off; the default is {DEFAULT_VERIFY_CACHE_SIZE})"
                ),
            ));
        }
        Ok((verify_depth, verify_cache))
    }

    /// `[listener.timeouts]` of `listener[i]`.
    fn timeouts(&self, i: usize, t: &file::TimeoutsFile) -> Result<Timeouts, ConfigError> {
        let key = |k: &str| format!("listener[{i}].timeouts.{k}");
        let d = Timeouts::default();
        let io = |at: &Option<Spanned<String>>, k: &str, default: Duration| {
            self.timeout(at, &key(k), default, MAX_IO_TIMEOUT)
        };
        // keepalive_idle = 0 turns keep-alive off, as nginx's `keepalive_timeout 0`.
        let keepalive_idle =
            self.duration(&t.keepalive_idle, &key("keepalive_idle"), d.keepalive_idle)?;
        if keepalive_idle > MAX_IO_TIMEOUT {
            return Err(self.err(
                t.keepalive_idle.as_ref(),
                &key("keepalive_idle"),
                &format!(
                    "{} is longer than the most allowed, {} (0 turns keep-alive off)",
                    duration::show(keepalive_idle),
                    duration::show(MAX_IO_TIMEOUT)
                ),
            ));
        }
        Ok(Timeouts {
            handshake: io(&t.handshake, "handshake", d.handshake)?,
            request_head: io(&t.request_head, "request_head", d.request_head)?,
            keepalive_idle,
            upstream_connect: io(&t.upstream_connect, "upstream_connect", d.upstream_connect)?,
            upstream_read: io(&t.upstream_read, "upstream_read", d.upstream_read)?,
            body_idle: io(&t.body_idle, "body_idle", d.body_idle)?,
        })
    }

    /// `[listener.limits]` of `listener[i]`; `keepalive_idle = 0` allows one request per
    /// connection.
    fn limits(
        &self,
        i: usize,
        l: &file::LimitsFile,
        timeouts: &Timeouts,
    ) -> Result<Limits, ConfigError> {
        let key = |k: &str| format!("listener[{i}].limits.{k}");
        let max_header_bytes = l.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
        if !(1024..=MAX_MAX_HEADER_BYTES).contains(&max_header_bytes) {
            return Err(self.err::<String>(
                None,
                &key("max_header_bytes"),
                &format!(
                    "{max_header_bytes} is not from 1024 to {MAX_MAX_HEADER_BYTES} (bytes of a \
                     request head; the default is {DEFAULT_MAX_HEADER_BYTES})"
                ),
            ));
        }
        let max_connections = l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=MAX_CONNECTIONS).contains(&max_connections) {
            return Err(self.err::<String>(
                None,
                &key("max_connections"),
                &format!(
                    "{max_connections} is not from 1 to {MAX_CONNECTIONS} (connections per \
                     worker; the default is {DEFAULT_MAX_CONNECTIONS})"
                ),
            ));
        }
        let max_requests_per_connection = if timeouts.keepalive_idle.is_zero() {
            1
        } else {
            l.max_requests_per_connection.unwrap_or(0)
        };
        Ok(Limits {
            max_header_bytes,
            max_connections,
            max_requests_per_connection,
        })
    }

    /// `[listener.headers]` of `listener[i]`: the identity header names and the strip set.
    fn headers(
        &self,
        base: &str,
        h: &file::HeadersFile,
    ) -> Result<(IdentityHeaders, StripSet), ConfigError> {
        let key = |k: &str| format!("{base}.headers.{k}");
        let (headers, strip, warnings) = headers::identity_headers(h)
            .map_err(|e| self.err::<String>(None, &key(&e.key), &e.reason))?;
        for (k, reason) in warnings {
            self.warn(&key(&k), &reason);
        }
        Ok((headers, strip))
    }
}

/// The rule families in the order they are compiled and tagged.
const FAMILIES: [Family; 4] = [
    Family::Subjects,
    Family::Issuers,
    Family::Sans,
    Family::Fingerprints,
];

/// The rules of one family as written (none without `[listener.client_auth]`).
fn rules_of(auth: Option<&file::ClientAuthFile>, family: Family) -> &[Spanned<String>] {
    match (auth, family) {
        (None, _) => &[],
        (Some(a), Family::Subjects) => &a.allow_subjects,
        (Some(a), Family::Issuers) => &a.allow_issuers,
        (Some(a), Family::Sans) => &a.allow_sans,
        (Some(a), Family::Fingerprints) => &a.allow_fingerprints,
    }
}

/// The rules' texts, family by family, so that the TLS session ID context changes with them.
fn policy_tag(auth: Option<&file::ClientAuthFile>) -> Vec<u8> {
    let mut tag = Vec::new();
    for family in FAMILIES {
        let rules = rules_of(auth, family);
        tag.extend_from_slice(&(rules.len() as u64).to_le_bytes());
        for rule in rules {
            tag.extend_from_slice(&(rule.get_ref().len() as u64).to_le_bytes());
            tag.extend_from_slice(rule.get_ref().as_bytes());
        }
    }
    tag
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `[log] level`: comma-separated directives, each a level or `target=level` (the
/// `tracing-subscriber` `EnvFilter` syntax). A bare word that is not a level is valid for
/// `EnvFilter` (it names a target) but then almost nothing is logged, so it is refused.
fn check_log_level(filter: &str) -> Result<(), String> {
    let levels = LOG_LEVELS.join(", ");
    let is_level = |s: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s.trim()));
    if filter.trim().is_empty() {
        return Err(format!(
            "is empty: write a level ({levels}), or target=level directives such as \"info,certgate=debug\""
        ));
    }
    for directive in split_directives(filter) {
        let directive = directive.trim();
        if directive.is_empty() {
            continue;
        }
        match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() && is_level(level) => {}
            Some((_, level)) => {
                return Err(format!(
                    "{directive:?}: {:?} is not a level; the levels are {levels}",
                    level.trim()
                ))
            }
            None if is_level(directive) => {}
            None => {
                return Err(format!(
                    "{directive:?} is not a level; the levels are {levels} (or target=level, \
                     such as \"certgate=debug\")"
                ))
            }
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(|_| ())
        .map_err(|e| format!("{filter:?} is not a valid filter: {e}"))
}

/// Splits a filter at commas outside `[...]` (span field filters hold commas).
fn split_directives(filter: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in filter.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&filter[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&filter[start..]);
    out
}

fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let s2 = s.strip_prefix("*:").map(|p| format!("0.0.0.0:{p}"));
    let target = s2.as_deref().unwrap_or(s);
    match target.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address")),
        Err(e) => Err(format!("{s:?} is not an address:port ({e})")),
    }
}

/// The dotted key written at `offset` (`listener.client_auth.mode`), from the line's `key =` and
/// the table header above it; empty when the line has no key.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = match line.split_once('=') {
        Some((k, _)) => k.trim().trim_matches('"'),
        None => return String::new(),
    };
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// CPUs this process may run on (its affinity mask), at least 1.
pub fn available_cpus() -> usize {
    core_affinity::get_core_ids()
        .map(|ids| ids.len())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "INFO",
            "warn,certgate=debug",
            "certgate::access=off",
            "off",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["verbose", "", "certgate=loud", "info,chatty", "=debug"] {
            let e = check_log_level(bad).unwrap_err();
            assert!(
                e.contains("off, error, warn, info, debug, trace"),
                "{bad}: {e}"
            );
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/nonexistent/certgate.toml"), text)
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[runtime]\nworkers = 1\n\n[[listener]]\nlisen = \"x\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("lisen"), "{msg}");
        assert_eq!(e.key, "listener[0].lisen");
        assert_eq!(e.line, Some(5), "{msg}");
        assert!(msg.starts_with("/nonexistent/certgate.toml:5"), "{msg}");
    }

    #[test]
    fn keepalive_idle_zero_turns_keep_alive_off() {
        let text = |t: &str| {
            format!(
                "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n\
                 [listener.timeouts]\nkeepalive_idle = \"{t}\"\n\
                 [[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n"
            )
        };
        let c = parse(&text("0s")).unwrap();
        assert_eq!(c.listeners[0].limits.max_requests_per_connection, 1);
        let c = parse(&text("5s")).unwrap();
        assert_eq!(c.listeners[0].limits.max_requests_per_connection, 0);
        let e = parse(&text("2d")).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("listener[0].timeouts.keepalive_idle", Some(6))
        );
    }

    #[test]
    fn proxy_protocol_needs_trusted_proxies_with_valid_blocks() {
        let text = |extra: &str| {
            format!(
                "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n\
                 {extra}\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n"
            )
        };
        let c = parse(&text(
            "proxy_protocol = \"v2\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
        ))
        .unwrap();
        let p = c.listeners[0].proxy_in.as_ref().unwrap();
        assert_eq!(p.version, file::ProxyVersion::V2);
        assert!(
            c.summary()
                .contains("PROXY v2 header required first, only from 10.0.0.0/8, ::1/128"),
            "{}",
            c.summary()
        );
        assert!(p.trusts("10.1.2.3".parse().unwrap()));
        assert!(p.trusts("::1".parse().unwrap()));
        assert!(!p.trusts("192.0.2.1".parse().unwrap()));
        assert!(parse(&text("")).unwrap().listeners[0].proxy_in.is_none());

        let bad = |extra: &str, key: &str, line: usize, want: &str| {
            let e = parse(&text(extra)).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{e}");
            assert!(e.reason.contains(want), "{e}");
        };
        bad(
            "proxy_protocol = \"v1\"",
            "listener[0].proxy_protocol",
            5,
            "needs trusted_proxies",
        );
        bad(
            "trusted_proxies = [\"10.0.0.0/8\"]",
            "listener[0].trusted_proxies",
            5,
            "only applies with proxy_protocol",
        );
        bad(
            "proxy_protocol = \"v2\"\ntrusted_proxies = []",
            "listener[0].trusted_proxies",
            6,
            "is empty",
        );
        bad(
            "proxy_protocol = \"v2\"\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n]",
            "listener[0].trusted_proxies[1]",
            8,
            "write \"10.0.0.0/8\"",
        );
        bad(
            "proxy_protocol = \"v3\"\ntrusted_proxies = [\"::1\"]",
            "listener[0].proxy_protocol",
            5,
            "\"v1\" (HAProxy send-proxy) or \"v2\"",
        );
    }

    #[test]
    fn undefined_upstream_is_an_error() {
        let e = parse(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"nope\"\n\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "listener[0].upstream");
        assert_eq!(e.line, Some(4));
        assert!(e.reason.contains("nope"));
    }

    #[test]
    fn missing_certificate_names_key() {
        let e = parse(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n[listener.tls]\ncertificate = \"missing.pem\"\nprivate_key = \"k.pem\"\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "listener[0].tls.certificate");
        assert!(
            e.reason.contains("/nonexistent/missing.pem"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn plain_listener_without_client_auth_is_valid() {
        let c = parse(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n",
        )
        .unwrap();
        assert!(c.listeners[0].tls.is_none());
        assert_eq!(
            c.listeners[0].headers.verify.as_deref(),
            Some("X-SSL-Client-Verify")
        );
    }
}
