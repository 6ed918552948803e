//! The configuration file as serde reads it: TOML shapes only, nothing validated yet.
//!
//! Values whose errors are reported after parsing (paths, rules, names) keep their source span,
//! so `Config::load` can name the line.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
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
    /// Lowest protocol version accepted (default: TLS 1.2).
    pub min_version: Option<TlsVersion>,
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
    pub verify_depth: Option<u32>,
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

/// `tls.min_version`: the lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    #[default]
    Tls12,
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
