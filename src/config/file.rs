//! The configuration file as serde reads it: TOML shapes only, nothing validated yet.
//!
//! Values whose errors are reported after parsing (paths, rules, names) keep their source span,
//! so `Config::load` can name the line.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole configuration file: `[runtime]`, `[log]`, then any number of `[[listener]]` and
/// `[[upstream]]` tables. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[runtime]`: workers and the I/O driver.
    #[serde(default)]
    pub runtime: RuntimeFile,
    /// `[log]`: log filter and access log.
    #[serde(default)]
    pub log: LogFile,
    /// `[admin]`: the metrics and health endpoint.
    #[serde(default)]
    pub admin: AdminFile,
    /// `[[listener]]`: each address clients connect to, in file order.
    #[serde(default)]
    pub listener: Vec<ListenerFile>,
    /// `[[upstream]]`: each named group of servers listeners forward to.
    #[serde(default)]
    pub upstream: Vec<UpstreamFile>,
}

/// `[runtime]`: how many workers run and on which I/O driver.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFile {
    /// 0: one worker per CPU the process may run on.
    #[serde(default)]
    pub workers: usize,
    /// The I/O driver every worker runs on (default `auto`).
    #[serde(default)]
    pub io: IoMode,
    /// Pin each worker to its own CPU.
    #[serde(default = "yes")]
    pub pin_workers: bool,
    /// How long a drain (SIGTERM, SIGQUIT, SIGINT, an upgrade) waits for connections to finish.
    #[serde(default)]
    pub shutdown_timeout: Option<Spanned<String>>,
    /// Where `run` writes its process id (and `reload`, `run --upgrade` find it).
    #[serde(default)]
    pub pid_file: Option<Spanned<String>>,
}

/// `runtime.io`: the monoio driver the workers run on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    /// io_uring when the kernel allows it, else epoll (with a log line saying why).
    #[default]
    Auto,
    /// io_uring only; start fails if the kernel refuses it.
    IoUring,
    /// epoll only (monoio's legacy driver).
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

/// `[log]`: the tracing filter and whether each request is logged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// tracing filter, e.g. "info" or "certgate=debug"; RUST_LOG overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// The access log: `"stderr"`, `"off"` or a file path (`true` and `false` are aliases of
    /// `"stderr"` and `"off"`).
    #[serde(default)]
    pub access: AccessFile,
    /// `"logfmt"` (default) or `"json"`.
    pub access_format: Option<String>,
}

/// `[log] access` as written: a bool (the older form) or a target.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AccessFile {
    /// `true` (stderr) or `false` (off).
    Bool(bool),
    /// `"stderr"`, `"off"` or a file path.
    Target(String),
}

impl Default for AccessFile {
    fn default() -> Self {
        Self::Bool(true)
    }
}

/// `[admin]`: where `/metrics`, `/healthz` and `/ready` are served (off unless set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// `address:port`, e.g. `"127.0.0.1:9901"`.
    pub listen: Option<String>,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            access: AccessFile::default(),
            access_format: None,
        }
    }
}

/// `[[listener]]`: one address, its TLS and client-certificate policy, and the upstream it forwards
/// to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// Unique name, used in log lines and error messages.
    pub name: Spanned<String>,
    /// Socket address to bind, `host:port` (e.g. `0.0.0.0:8443`).
    pub listen: Spanned<String>,
    /// Name of the `[[upstream]]` requests are forwarded to.
    pub upstream: Spanned<String>,
    /// `http` (default): requests are parsed and forwarded; `tcp`: bytes are relayed.
    #[serde(default)]
    pub mode: ListenerMode,
    /// `[listener.tls]`: server certificate and sessions; absent, the listener speaks plain HTTP.
    pub tls: Option<TlsFile>,
    /// `[listener.client_auth]`: client-certificate verification and the allow rules.
    pub client_auth: Option<ClientAuthFile>,
    /// `[listener.timeouts]`: per-phase time limits.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    /// `[listener.limits]`: sizes and counts that bound one worker's exposure.
    #[serde(default)]
    pub limits: LimitsFile,
    /// `[listener.headers]`: names of the identity headers sent upstream.
    #[serde(default)]
    pub headers: HeadersFile,
    /// A PROXY protocol header (`"v1"` or `"v2"`) opens every connection, sent by an L4
    /// balancer in `trusted_proxies` (nginx `listen ... proxy_protocol`).
    pub proxy_protocol: Option<Spanned<ProxyVersion>>,
    /// The peers allowed to send that header, CIDR blocks or addresses (nginx
    /// `set_real_ip_from`); required with `proxy_protocol`.
    #[serde(default)]
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    /// `protocols`: `h2` and/or `http/1.1`, in ALPN preference order (default both, h2 first).
    pub protocols: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[listener.http2]`: HTTP/2 limits.
    #[serde(default)]
    pub http2: super::http2::Http2File,
    /// `[[listener.sni]]`: names served with their own certificate and client-auth policy.
    #[serde(default)]
    pub sni: Vec<super::sni::SniFile>,
    /// What a ClientHello naming no `[[listener.sni]]` block gets: `"default"` (the listener's
    /// own `[tls]` and `[client_auth]`) or `"reject"` (the `unrecognized_name` alert).
    pub unknown_sni: Option<Spanned<super::sni::UnknownSni>>,
}

/// `listener.mode`: what happens after the handshake and the rules.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerMode {
    /// Requests are parsed, rewritten with the identity headers and forwarded (HTTP/1.1).
    #[default]
    Http,
    /// Bytes are relayed both ways, unparsed; the identity can travel in a PROXY v2 header.
    Tcp,
}

/// `[listener.tls]`: the server side of the handshake.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Leaf certificate followed by its intermediates, PEM; or a list of such files (an RSA
    /// and an ECDSA certificate, as nginx's repeated `ssl_certificate`).
    pub certificate: Spanned<Paths>,
    /// Path to the PEM private key of `certificate`; a list, in the same order, with a list.
    pub private_key: Spanned<Paths>,
    /// Lowest protocol version accepted (default: TLS 1.2).
    pub min_version: Option<TlsVersion>,
    /// TLS 1.2 cipher suites, OpenSSL syntax (nginx `ssl_ciphers`).
    pub ciphers: Option<Spanned<String>>,
    /// Key-agreement groups, most preferred first (nginx `ssl_ecdh_curve`).
    pub groups: Option<Vec<Spanned<String>>>,
    /// Signature schemes accepted from clients and advertised in the CertificateRequest.
    pub signature_algorithms: Option<Vec<Spanned<String>>>,
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
    /// DER OCSP response stapled for `certificate` (nginx `ssl_stapling_file`), re-read when
    /// the file changes.
    pub ocsp_response: Option<Spanned<String>>,
}

/// `client_auth.mode`: whether a client certificate is asked for and must verify (nginx
/// `ssl_verify_client`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// No certificate is requested.
    #[default]
    Off,
    /// A certificate is requested; if one is sent it must verify against `ca`.
    Optional,
    /// A certificate is requested and passed upstream without verification against `ca` (nginx
    /// `optional_no_ca`).
    OptionalNoCa,
    /// A certificate that verifies against `ca` is required.
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

/// `client_auth.reject`: how a client whose certificate is missing or fails verification is turned
/// away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    /// Complete the handshake and answer nginx's 400 pages.
    #[default]
    Http,
    /// Fail the handshake with a TLS alert.
    Handshake,
}

/// `[listener.client_auth]`: client-certificate verification and the allow rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthFile {
    /// Whether a certificate is requested and must verify (default `off`).
    #[serde(default)]
    pub mode: VerifyMode,
    /// PEM roots and intermediates that client certificates are verified against (nginx
    /// `ssl_client_certificate`).
    pub ca: Option<Spanned<String>>,
    /// Longest chain accepted, intermediates counted (default 1, as nginx `ssl_verify_depth`).
    pub verify_depth: Option<u32>,
    /// Handshake alert or nginx-style 400 page (default `http`).
    #[serde(default)]
    pub reject: Reject,
    /// Allowed subject DNs: exact, in RFC 2253 (`CN=a,O=b`) or legacy (`/O=b/CN=a`) form, or a
    /// whole-match regex after `~`. One entry of each non-empty family must match.
    #[serde(default)]
    pub allow_subjects: Vec<Spanned<String>>,
    /// Allowed issuer DNs of the leaf certificate, same syntax as `allow_subjects`.
    #[serde(default)]
    pub allow_issuers: Vec<Spanned<String>>,
    /// Allowed subject alternative names, `kind:value` with kind `dns`, `email`, `uri` or `ip`;
    /// `*` is a wildcard, a value starting with `~` a whole-match regex.
    #[serde(default)]
    pub allow_sans: Vec<Spanned<String>>,
    /// Pinned certificates: SHA-256 of the leaf's DER, `sha256:AB:CD:..` or hex (Envoy
    /// `verify_certificate_hash`).
    #[serde(default)]
    pub allow_fingerprints: Vec<Spanned<String>>,
    /// Chains that verified are remembered (by the hash of every presented certificate, until
    /// their first notAfter, at most 5 minutes) so a returning client skips two signature
    /// checks; 0 disables.
    pub verify_cache_size: Option<usize>,
    /// CRL files (PEM, several CRLs each if wanted, or DER) client certificates are checked
    /// against (nginx `ssl_crl`); re-read when they change.
    #[serde(default)]
    pub crl: Vec<Spanned<String>>,
    /// Which certificates of a client's chain need a CRL (default `leaf`).
    #[serde(default)]
    pub crl_check: CrlCheck,
    /// What a CRL past its nextUpdate does (default `refuse`).
    #[serde(default)]
    pub stale_crl: StaleCrl,
    /// How often the CRL files are checked for a change (default "30s").
    pub crl_refresh: Option<Spanned<String>>,
}

/// `client_auth.crl_check`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrlCheck {
    /// The leaf needs its issuer's CRL.
    #[default]
    Leaf,
    /// Every certificate of the chain needs its issuer's CRL (nginx).
    Chain,
}

/// `client_auth.stale_crl`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCrl {
    /// Refuse clients whose chain needs a CRL past its nextUpdate.
    #[default]
    Refuse,
    /// Keep applying it, with a warning per refresh.
    Warn,
}

/// `[listener.timeouts]`: durations written `"500ms"`, `"10s"`, `"1m30s"`; more than 0, at most one
/// day.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// TCP accept to the end of the TLS handshake (default 10s).
    pub handshake: Option<Spanned<String>>,
    /// Whole request head, first byte to the blank line (default 20s; slowloris).
    pub request_head: Option<Spanned<String>>,
    /// Wait for the next request on a kept-alive client connection (default 75s; `"0s"` turns
    /// keep-alive off).
    pub keepalive_idle: Option<Spanned<String>>,
    /// TCP connect (and upstream TLS handshake) to one server (default 5s).
    pub upstream_connect: Option<Spanned<String>>,
    /// Wait for the upstream's response head once the request is sent (default 60s).
    pub upstream_read: Option<Spanned<String>>,
    /// Idle time after which a body transfer or tunnel in either direction is given up.
    pub body_idle: Option<Spanned<String>>,
}

/// `[listener.limits]`: bounds on one client's and one worker's use.
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
    /// `X-SSL-Client-Verify`: `SUCCESS`, `NONE` or `FAILED:reason` (nginx `$ssl_client_verify`).
    pub verify: Option<String>,
    /// `X-SSL-Client-S-DN`: subject DN in RFC 4514 form (nginx `$ssl_client_s_dn`).
    pub subject_dn: Option<String>,
    /// `X-SSL-Client-S-DN-Legacy`: subject DN in OpenSSL `/C=../CN=..` form (nginx
    /// `$ssl_client_s_dn_legacy`).
    pub subject_dn_legacy: Option<String>,
    /// `X-SSL-Client-I-DN`: issuer DN in RFC 4514 form (nginx `$ssl_client_i_dn`).
    pub issuer_dn: Option<String>,
    /// `X-SSL-Client-Serial`: serial number in uppercase hex (nginx `$ssl_client_serial`).
    pub serial: Option<String>,
    /// `X-SSL-Client-Fingerprint`: lowercase hex SHA-256 of the DER certificate (nginx's
    /// `$ssl_client_fingerprint` is SHA-1).
    pub fingerprint: Option<String>,
    /// `X-SSL-Client-SAN`: the subject alternative names (`DNS:a, email:b`), values
    /// percent-escaped.
    pub san: Option<String>,
    /// `X-SSL-Client-Not-After`: the certificate's expiry (nginx `$ssl_client_v_end`).
    pub not_after: Option<String>,
    /// `X-SSL-Client-Cert`: the PEM certificate, URL-encoded (nginx `$ssl_client_escaped_cert`).
    pub cert: Option<String>,
    /// `X-Forwarded-For`: the client address appended to the list the client sent.
    pub forwarded_for: Option<String>,
    /// `X-Forwarded-Proto`: `https` or `http`, the listener's scheme.
    pub forwarded_proto: Option<String>,
    /// `X-Real-IP`: the client's address.
    pub real_ip: Option<String>,
    /// More request header names to remove before forwarding.
    #[serde(default)]
    pub strip: Vec<String>,
    /// `X-Forwarded-Client-Cert` in Envoy's format (Envoy `forward_client_cert_details`).
    #[serde(default)]
    pub xfcc: XfccMode,
}

/// `[[upstream]]`: a named group of servers, how one is chosen and how the proxy talks to them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// Unique name listeners refer to with `upstream = "..."`.
    pub name: Spanned<String>,
    /// `host:port` entries, each optionally followed by `weight=N`, `max_fails=N`,
    /// `fail_timeout=T`, `backup` or `down` (nginx `server` parameters).
    pub servers: Spanned<Vec<Spanned<String>>>,
    /// Idle connections kept per worker and server.
    pub keepalive: Option<usize>,
    /// How a server is chosen: `round_robin`, `least_conn` or `client_hash`.
    #[serde(default)]
    pub balance: super::Balance,
    /// Servers a request may be tried on, the first included (default 3).
    pub tries: Option<Spanned<usize>>,
    /// Active health checks; passive ones (`max_fails`, `fail_timeout`) are always on.
    pub health: Option<super::HealthFile>,
    /// TLS towards the servers (verification, client certificate, SNI).
    pub tls: Option<UpstreamTlsFile>,
    /// A PROXY protocol header opens each connection (tcp listeners only).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// What the proxy speaks to the servers: `http1` (the default) or `h2`.
    pub protocol: Option<Spanned<UpstreamProtocol>>,
}

/// `[upstream.tls]`: TLS from the proxy to the servers.
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
    /// Path to the PEM private key of `certificate`.
    pub private_key: Option<Spanned<String>>,
    /// ...or both in one PEM file (Apache `SSLProxyMachineCertificateFile`).
    pub bundle: Option<Spanned<String>>,
    /// Resume TLS sessions to the servers (default on; nginx `proxy_ssl_session_reuse`).
    #[serde(default = "yes")]
    pub session_reuse: bool,
    /// CRL files the servers' chains are checked against (nginx `proxy_ssl_crl`); needs `ca`.
    #[serde(default)]
    pub crl: Vec<Spanned<String>>,
    /// Which certificates of a server's chain need a CRL (default `leaf`).
    #[serde(default)]
    pub crl_check: CrlCheck,
    /// What a CRL past its nextUpdate does (default `refuse`).
    #[serde(default)]
    pub stale_crl: StaleCrl,
    /// How often the CRL files are checked for a change (default "30s").
    pub crl_refresh: Option<Spanned<String>>,
    /// TLS 1.2 cipher suites offered, OpenSSL syntax (nginx `proxy_ssl_ciphers`).
    pub ciphers: Option<Spanned<String>>,
    /// Key-agreement groups offered, most preferred first.
    pub groups: Option<Vec<Spanned<String>>>,
}

/// A path, or a list of paths (`certificate = ["rsa.pem", "ecdsa.pem"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths(pub Vec<String>);

impl Paths {
    /// The first path (the only one in the single-file form).
    pub fn first(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }
}

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PathsVisitor;
        impl<'de> Visitor<'de> for PathsVisitor {
            type Value = Paths;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file path, or a list of file paths")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Paths, E> {
                Ok(Paths(vec![v.to_owned()]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Paths, A::Error> {
                let mut paths = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    paths.push(p);
                }
                if paths.is_empty() {
                    return Err(de::Error::custom(
                        "the list is empty: give at least one file",
                    ));
                }
                Ok(Paths(paths))
            }
        }
        d.deserialize_any(PathsVisitor)
    }
}

fn yes() -> bool {
    true
}

fn default_log_level() -> String {
    "info".into()
}

/// `tls.min_version`: the lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl Keyword for TlsVersion {
    const EXPECTING: &'static str = "a TLS version, \"1.2\" or \"1.3\"";

    /// `1.3`, `TLSv1.3` (OpenSSL's and nginx's spelling) or `tls1.3`, in any case.
    fn from_word(word: &str) -> Result<Self, String> {
        let lower = word.trim().to_ascii_lowercase();
        let number = lower
            .strip_prefix("tlsv")
            .or_else(|| lower.strip_prefix("tls"))
            .unwrap_or(&lower);
        match number {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            "1.0" | "1.1" | "1" => Err(format!(
                "{word:?} is not accepted: TLS 1.0 and 1.1 are obsolete (RFC 8996); write \"1.2\" \
                 or \"1.3\""
            )),
            _ => Err(format!(
                "{word:?} is not a TLS version: write \"1.2\" or \"1.3\" (\"TLSv1.2\", \
                 \"TLSv1.3\", \"tls1.2\" and \"tls1.3\" also work)"
            )),
        }
    }
}

/// `proxy_protocol`: the PROXY protocol header sent to the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// The binary header (haproxy's `send-proxy-v2`), with the client's identity in TLVs.
    V2,
}

impl Keyword for ProxyProtocol {
    const EXPECTING: &'static str = "a PROXY protocol version, \"v2\"";

    fn from_word(word: &str) -> Result<Self, String> {
        match word {
            "v2" => Ok(ProxyProtocol::V2),
            "v1" => Err(
                "\"v1\" is not supported: only \"v2\" is built (the binary header, which also \
                 carries the client certificate's identity); write proxy_protocol = \"v2\""
                    .into(),
            ),
            _ => Err(format!("{word:?} is not supported (only \"v2\")")),
        }
    }
}

/// `[listener.headers] xfcc`: what happens to `X-Forwarded-Client-Cert`. The client's copy is
/// never forwarded unless `forward`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XfccMode {
    /// The client's copy is removed and none is sent (Envoy's default, `SANITIZE`).
    #[default]
    Off,
    /// The client's copy is removed; this hop's element is sent for a verified certificate
    /// (Envoy `SANITIZE_SET`).
    SanitizeSet,
    /// The client's elements are kept and this hop's is appended after them (Envoy
    /// `APPEND_FORWARD`): only for clients that are themselves trusted proxies.
    Forward,
}

/// `[[listener]] proxy_protocol`: the PROXY protocol version the balancer sends.
pub use crate::proxy::proxy_protocol::Version as ProxyVersion;

impl Keyword for ProxyVersion {
    const EXPECTING: &'static str = "a PROXY protocol version, \"v1\" or \"v2\"";

    fn from_word(word: &str) -> Result<Self, String> {
        match word {
            "v1" => Ok(ProxyVersion::V1),
            "v2" => Ok(ProxyVersion::V2),
            _ => Err(format!(
                "{word:?} is not a PROXY protocol version: write \"v1\" (HAProxy send-proxy) or \"v2\" (send-proxy-v2)"
            )),
        }
    }
}

/// `[[upstream]] protocol`: HTTP/1.1 or HTTP/2 towards the servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, one request at a time per pooled connection (the default).
    #[default]
    Http1,
    /// HTTP/2: over `[upstream.tls]` with ALPN `h2`, else h2c with prior knowledge; streams
    /// multiplexed on one connection per worker and server.
    H2,
}

impl Keyword for UpstreamProtocol {
    const EXPECTING: &'static str = "an upstream protocol, \"http1\" or \"h2\"";

    fn from_word(word: &str) -> Result<Self, String> {
        match word {
            "http1" => Ok(Self::Http1),
            "h2" => Ok(Self::H2),
            "http/1.1" | "http1.1" | "HTTP/1.1" => Err(format!("write \"http1\" for {word:?}")),
            "http2" | "h2c" | "HTTP/2" | "http/2" => Err(format!(
                "write \"h2\" for {word:?} (h2 runs over TLS when [upstream.tls] is given, \
                 cleartext h2c with prior knowledge otherwise)"
            )),
            _ => Err(format!(
                "{word:?} is not an upstream protocol: write \"http1\" or \"h2\""
            )),
        }
    }
}

impl<'de> Deserialize<'de> for UpstreamProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeywordVisitor(std::marker::PhantomData))
    }
}

/// A value written as one of a few words, parsed by serde with a message that lists them.
trait Keyword: Sized {
    /// What serde says it expected on a value of another type.
    const EXPECTING: &'static str;
    fn from_word(word: &str) -> Result<Self, String>;

    /// An unquoted number (`min_version = 1.3`): refused, with the quoted spelling when quoting
    /// it would do.
    fn from_number(n: f64) -> Result<Self, String> {
        let word = n.to_string();
        Self::from_word(&word)?;
        Err(format!("write it as a string: \"{word}\""))
    }
}

struct KeywordVisitor<T>(std::marker::PhantomData<T>);

impl<T: Keyword> Visitor<'_> for KeywordVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_word(v).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_number(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_number(v as f64).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeywordVisitor(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for ProxyVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeywordVisitor(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for ProxyProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeywordVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_versions_take_the_spellings_users_write() {
        for (word, v) in [
            ("1.2", TlsVersion::Tls12),
            ("1.3", TlsVersion::Tls13),
            ("TLSv1.2", TlsVersion::Tls12),
            ("TLSv1.3", TlsVersion::Tls13),
            ("tls1.3", TlsVersion::Tls13),
            ("TLS1.2", TlsVersion::Tls12),
        ] {
            assert_eq!(TlsVersion::from_word(word), Ok(v), "{word}");
        }
        for word in ["1.4", "TLSv1.1", "1.0", "", "v1.3", "SSLv3"] {
            let e = TlsVersion::from_word(word).unwrap_err();
            assert!(e.contains("\"1.2\" or \"1.3\""), "{word}: {e}");
        }
        assert_eq!(
            TlsVersion::from_number(1.3),
            Err("write it as a string: \"1.3\"".into())
        );
    }

    #[test]
    fn proxy_protocol_is_v2_only() {
        assert_eq!(ProxyProtocol::from_word("v2"), Ok(ProxyProtocol::V2));
        let e = ProxyProtocol::from_word("v1").unwrap_err();
        assert!(e.contains("only \"v2\" is built"), "{e}");
        let e = ProxyProtocol::from_word("yes").unwrap_err();
        assert!(e.contains("only \"v2\""), "{e}");
    }

    #[test]
    fn upstream_protocol_is_http1_or_h2() {
        assert_eq!(
            UpstreamProtocol::from_word("http1"),
            Ok(UpstreamProtocol::Http1)
        );
        assert_eq!(UpstreamProtocol::from_word("h2"), Ok(UpstreamProtocol::H2));
        let e = UpstreamProtocol::from_word("h2c").unwrap_err();
        assert!(e.contains("write \"h2\""), "{e}");
        let e = UpstreamProtocol::from_word("http/1.1").unwrap_err();
        assert!(e.contains("write \"http1\""), "{e}");
        let e = UpstreamProtocol::from_word("spdy").unwrap_err();
        assert!(e.contains("\"http1\" or \"h2\""), "{e}");
    }

    #[test]
    fn serde_reports_keyword_errors_on_the_value() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[allow(dead_code)]
            v: TlsVersion,
        }
        let e = toml::from_str::<T>("v = \"1.9\"\n").unwrap_err();
        assert!(e.message().contains("\"1.9\" is not a TLS version"), "{e}");
        assert_eq!(e.span(), Some(4..9));
        let e = toml::from_str::<T>("v = true\n").unwrap_err();
        assert!(e.message().contains("\"1.2\" or \"1.3\""), "{e}");
    }
}
