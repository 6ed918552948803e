//! The configuration file as serde reads it: TOML shapes only, nothing validated yet.
//!
//! Values whose errors are reported after parsing (paths, rules, names) keep their source span,
//! so `Config::load` can name the line.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub runtime: RuntimeFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub listener: Vec<ListenerFile>,
    #[serde(default)]
    pub upstream: Vec<UpstreamFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFile {
    /// 0: one worker per CPU the process may run on.
    #[serde(default)]
    pub workers: usize,
    #[serde(default)]
    pub io: IoMode,
    /// Pin each worker to its own CPU.
    #[serde(default = "yes")]
    pub pin_workers: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    #[default]
    Auto,
    IoUring,
    Epoll,
}

impl IoMode {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::IoUring => "io_uring",
            IoMode::Epoll => "epoll",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// tracing filter, e.g. "info" or "certgate=debug"; RUST_LOG overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// One line per request.
    #[serde(default = "yes")]
    pub access: bool,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            access: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub name: Spanned<String>,
    pub listen: Spanned<String>,
    pub upstream: Spanned<String>,
    /// `http` (default): requests are parsed and forwarded; `tcp`: bytes are relayed.
    #[serde(default)]
    pub mode: ListenerMode,
    pub tls: Option<TlsFile>,
    pub client_auth: Option<ClientAuthFile>,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub headers: HeadersFile,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerMode {
    #[default]
    Http,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Leaf certificate followed by its intermediates, PEM.
    pub certificate: Spanned<String>,
    pub private_key: Spanned<String>,
    /// Lowest protocol version accepted: "1.2" or "1.3".
    pub min_version: Option<Spanned<String>>,
    /// TLS session tickets (TLS 1.2 and 1.3 resumption without server state).
    #[serde(default = "yes")]
    pub session_tickets: bool,
    /// Ticket key files in nginx's `ssl_session_ticket_key` format (48 or 80 bytes each); the
    /// first encrypts, all decrypt. Without them keys are random and rotated.
    #[serde(default)]
    pub session_ticket_keys: Vec<Spanned<String>>,
    /// How often random ticket keys are replaced; the previous two stay valid.
    pub session_ticket_rotation: Option<Spanned<String>>,
    /// TLS 1.2 session-ID cache entries shared by all workers; 0 disables it.
    pub session_cache_size: Option<u32>,
    /// Session lifetime (nginx `ssl_session_timeout`).
    pub session_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    #[default]
    Off,
    Optional,
    OptionalNoCa,
    Required,
}

impl VerifyMode {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Off => "off",
            VerifyMode::Optional => "optional",
            VerifyMode::OptionalNoCa => "optional_no_ca",
            VerifyMode::Required => "required",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    /// Complete the handshake and answer nginx's 400 pages.
    #[default]
    Http,
    /// Fail the handshake with a TLS alert.
    Handshake,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthFile {
    #[serde(default)]
    pub mode: VerifyMode,
    pub ca: Option<Spanned<String>>,
    #[serde(default = "default_verify_depth")]
    pub verify_depth: u32,
    #[serde(default)]
    pub reject: Reject,
    #[serde(default)]
    pub allow_subjects: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_issuers: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_sans: Vec<Spanned<String>>,
    /// Chains that verified are remembered (by the hash of every presented certificate, until
    /// their first notAfter, at most 5 minutes) so a returning client skips two signature
    /// checks; 0 disables.
    pub verify_cache_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub handshake: Option<Spanned<String>>,
    pub request_head: Option<Spanned<String>>,
    pub keepalive_idle: Option<Spanned<String>>,
    pub upstream_connect: Option<Spanned<String>>,
    pub upstream_read: Option<Spanned<String>>,
    /// Idle time after which a body transfer or tunnel in either direction is given up.
    pub body_idle: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Largest request head (request line + headers) accepted, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Open client connections per worker; more are closed at accept.
    pub max_connections: Option<usize>,
    /// Requests served on one client connection before it is closed (0: no limit).
    pub max_requests_per_connection: Option<u64>,
}

/// Names of the headers sent upstream; an empty string disables one. Every name here (and its
/// default) is always stripped from client requests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersFile {
    pub verify: Option<String>,
    pub subject_dn: Option<String>,
    pub subject_dn_legacy: Option<String>,
    pub issuer_dn: Option<String>,
    pub serial: Option<String>,
    pub fingerprint: Option<String>,
    pub san: Option<String>,
    pub not_after: Option<String>,
    pub cert: Option<String>,
    pub forwarded_for: Option<String>,
    pub forwarded_proto: Option<String>,
    pub real_ip: Option<String>,
    /// More request header names to remove before forwarding.
    #[serde(default)]
    pub strip: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub name: Spanned<String>,
    pub servers: Spanned<Vec<Spanned<String>>>,
    /// Idle connections kept per worker and server.
    #[serde(default = "default_keepalive")]
    pub keepalive: usize,
    /// How a server is chosen: `round_robin`, `least_conn` or `client_hash`.
    #[serde(default)]
    pub balance: super::Balance,
    /// Servers a request may be tried on, the first included (default 3).
    pub tries: Option<Spanned<usize>>,
    /// Active health checks; passive ones (`max_fails`, `fail_timeout`) are always on.
    pub health: Option<super::HealthFile>,
    /// TLS towards the servers (verification, client certificate, SNI).
    pub tls: Option<UpstreamTlsFile>,
    /// `"v2"`: a PROXY protocol v2 header opens each connection (tcp listeners only).
    pub proxy_protocol: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// Roots that verify the servers' certificates; default: the system's.
    pub ca: Option<Spanned<String>>,
    /// Verification is on unless written `verify = false`.
    #[serde(default = "yes")]
    pub verify: bool,
    /// SNI and the name verified; default: the server's host name or address.
    pub server_name: Option<String>,
    /// Client certificate presented to the servers (leaf + chain, PEM) and its key...
    pub certificate: Option<Spanned<String>>,
    pub private_key: Option<Spanned<String>>,
    /// ...or both in one PEM file (Apache `SSLProxyMachineCertificateFile`).
    pub bundle: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub session_reuse: bool,
}

fn yes() -> bool {
    true
}

fn default_log_level() -> String {
    "info".into()
}

fn default_verify_depth() -> u32 {
    1
}

fn default_keepalive() -> usize {
    32
}
