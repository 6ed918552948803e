//! The validated configuration: every path read, every rule compiled and every TLS context
//! built once at load, so the request path only looks things up.
//!
//! Errors name the file, the key (with its line when the parser knows it) and the reason, as
//! `nginx -t` does.

mod duration;
pub mod file;
mod servers;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use boring::ssl::SslContext;
use toml::Spanned;

use self::file::{ConfigFile, HeadersFile, ListenerFile, UpstreamFile};
pub use self::file::{IoMode, ListenerMode, Reject, VerifyMode};
pub use self::servers::{Balance, HealthCheck, HealthFile, Server};
use crate::http::StripSet;
use crate::identity::Rules;
use crate::tls::{TicketKey, TicketKeys, UpstreamTls};

/// Default request-head limit: nginx's `large_client_header_buffers` of 4 × 8k serves larger
/// heads, but one head over 32 KiB is almost always abuse.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 16 * 1024;

/// A configuration error: where and why.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
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

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub runtime: Runtime,
    pub log: file::LogFile,
    pub listeners: Vec<Arc<Listener>>,
    pub upstreams: Vec<Arc<Upstream>>,
    /// What loading found questionable but accepted: printed by `check`, logged by `run` once
    /// logging is set up (and on reload).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Runtime {
    /// Resolved: at least 1.
    pub workers: usize,
    pub io: IoMode,
    pub pin_workers: bool,
}

pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub mode: ListenerMode,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// None: plain HTTP.
    pub tls: Option<SslContext>,
    /// The TLS context's ticket keys, for rotation.
    pub tickets: Option<Arc<TicketKeys>>,
    pub client_auth: ClientAuth,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub headers: IdentityHeaders,
    pub strip: StripSet,
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

pub struct ClientAuth {
    pub mode: VerifyMode,
    pub reject: Reject,
    pub rules: Rules,
    pub rule_count: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Duration,
    pub request_head: Duration,
    pub keepalive_idle: Duration,
    pub upstream_connect: Duration,
    pub upstream_read: Duration,
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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_requests_per_connection: u64,
}

/// Header names sent upstream; `None` when disabled.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
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

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    /// Primaries and backups in file order; a host name with several addresses gives one
    /// server per address.
    pub servers: Vec<Server>,
    pub keepalive: usize,
    pub balance: Balance,
    /// Servers a request may be tried on, the first included (nginx `proxy_next_upstream_tries`).
    pub tries: usize,
    /// `[upstream.health]`: active checks from one thread (`upstream::health`).
    pub health_check: Option<HealthCheck>,
    /// Server health shared by every worker and the checker, same order as `servers`.
    pub health: crate::upstream::health::Health,
    pub tls: Option<UpstreamTls>,
    /// Send a PROXY protocol v2 header first (tcp listeners).
    pub proxy_protocol: bool,
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
        let cx = Cx {
            path,
            text,
            warnings: std::cell::RefCell::new(Vec::new()),
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: e.span().map(|s| key_at(text, s.start)).unwrap_or_default(),
            reason: e.message().trim().to_owned(),
        })?;

        let runtime = Runtime {
            workers: match file.runtime.workers {
                0 => available_cpus(),
                n => n,
            },
            io: file.runtime.io,
            pin_workers: file.runtime.pin_workers,
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
            listeners,
            upstreams,
            warnings: cx.warnings.into_inner(),
        })
    }

    /// The short summary `certgate check` prints.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "configuration {} is valid: {} worker(s), io {:?}\n",
            self.path.display(),
            self.runtime.workers,
            self.runtime.io
        );
        for l in &self.listeners {
            let up = &self.upstreams[l.upstream];
            s.push_str(&format!(
                "  listener {:?} on {} ({}), client auth {:?}, {} rule(s) -> upstream {:?} ({} server(s))\n",
                l.name,
                l.addr,
                if l.tls.is_some() { "tls" } else { "plain http" },
                l.client_auth.mode,
                l.client_auth.rule_count,
                up.name,
                up.servers.len()
            ));
        }
        s
    }
}

/// Parsing context: the file and its text, for errors with lines.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    warnings: std::cell::RefCell<Vec<String>>,
}

impl Cx<'_> {
    /// Records a warning about `key`; loading goes on.
    fn warn(&self, key: &str, reason: &str) {
        self.warnings
            .borrow_mut()
            .push(format!("{}: {key}: {reason}", self.path.display()));
    }

    fn err<T>(&self, at: Option<&Spanned<T>>, key: &str, reason: &str) -> ConfigError {
        ConfigError {
            file: self.path.to_owned(),
            line: at.map(|s| line_of(self.text, s.span().start)),
            key: key.to_owned(),
            reason: reason.to_owned(),
        }
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
        let tls = match &u.tls {
            None => None,
            Some(t) => Some(self.upstream_tls(i, t)?),
        };
        let proxy_protocol = match &u.proxy_protocol {
            None => false,
            Some(v) if v.get_ref() == "v2" => true,
            Some(v) => {
                return Err(self.err(
                    Some(v),
                    &key("proxy_protocol"),
                    &format!("{:?} is not supported (only \"v2\")", v.get_ref()),
                ))
            }
        };
        Ok(Upstream {
            name: name.to_owned(),
            balance: u.balance,
            tries: self.tries(i, u)?,
            health_check: self.health_check(i, u)?,
            health: crate::upstream::health::Health::new(servers.len()),
            servers,
            keepalive: u.keepalive,
            tls,
            proxy_protocol,
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
        let settings = crate::tls::ClientSettings {
            ca_pem: ca.as_ref().map(|(_, b)| b.as_slice()),
            cert_pem: cert.as_deref(),
            key_pem: pkey.as_deref(),
            verify: t.verify,
        };
        UpstreamTls::new(&settings, t.server_name.clone(), t.session_reuse).map_err(|e| {
            let (at, k) = match e.part {
                crate::tls::Part::Ca => (t.ca.as_ref(), "ca"),
                crate::tls::Part::PrivateKey => {
                    (t.private_key.as_ref().or(t.bundle.as_ref()), "private_key")
                }
                crate::tls::Part::Certificate => {
                    (t.certificate.as_ref().or(t.bundle.as_ref()), "certificate")
                }
            };
            self.err(at, &key(k), &e.reason)
        })
    }

    fn listener(
        &self,
        i: usize,
        l: &ListenerFile,
        upstreams: &[Arc<Upstream>],
    ) -> Result<Listener, ConfigError> {
        let key = |k: &str| format!("listener[{i}].{k}");
        let name = l.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(self.err(Some(&l.name), &key("name"), "must not be empty"));
        }
        let addr = resolve_addr(l.listen.get_ref())
            .map_err(|r| self.err(Some(&l.listen), &key("listen"), &r))?;
        let upstream = upstreams
            .iter()
            .position(|u| u.name == l.upstream.get_ref().trim())
            .ok_or_else(|| {
                self.err(
                    Some(&l.upstream),
                    &key("upstream"),
                    &format!(
                        "no [[upstream]] named {:?} is defined",
                        l.upstream.get_ref()
                    ),
                )
            })?;

        let auth_file = l.client_auth.as_ref();
        let mode = auth_file.map(|a| a.mode).unwrap_or_default();
        let reject = auth_file.map(|a| a.reject).unwrap_or_default();
        let empty = Vec::new();
        let rule_list = |f: fn(&file::ClientAuthFile) -> &Vec<Spanned<String>>| {
            auth_file.map(f).unwrap_or(&empty)
        };
        let (subjects, issuers, sans) = (
            rule_list(|a| &a.allow_subjects),
            rule_list(|a| &a.allow_issuers),
            rule_list(|a| &a.allow_sans),
        );
        let texts =
            |v: &Vec<Spanned<String>>| v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
        let rules =
            Rules::compile(&texts(subjects), &texts(issuers), &texts(sans)).map_err(|e| {
                let family = match e.family {
                    "allow_subjects" => subjects,
                    "allow_issuers" => issuers,
                    _ => sans,
                };
                self.err(family.get(e.index), &key(&e.key()), &e.reason())
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

        let mut tickets = None;
        let tls = match &l.tls {
            None => {
                if mode != VerifyMode::Off {
                    return Err(self.err::<String>(
                        None,
                        &key("client_auth"),
                        "client certificates need TLS: add [listener.tls]",
                    ));
                }
                None
            }
            Some(t) => {
                let (cert_path, cert_pem) = self.read(&t.certificate, &key("tls.certificate"))?;
                let (key_path, key_pem) = self.read(&t.private_key, &key("tls.private_key"))?;
                let ca = match auth_file.and_then(|a| a.ca.as_ref()) {
                    Some(ca) => Some(self.read(ca, &key("client_auth.ca"))?),
                    None if matches!(mode, VerifyMode::Required | VerifyMode::Optional) => {
                        return Err(self.err::<String>(
                            None,
                            &key("client_auth.ca"),
                            "is required when mode is required or optional",
                        ))
                    }
                    None => None,
                };
                let min_tls13 = match &t.min_version {
                    None => false,
                    Some(v) => match v.get_ref().as_str() {
                        "1.2" | "TLSv1.2" => false,
                        "1.3" | "TLSv1.3" => true,
                        other => {
                            return Err(self.err(
                                Some(v),
                                &key("tls.min_version"),
                                &format!("{other:?} is not \"1.2\" or \"1.3\""),
                            ))
                        }
                    },
                };
                if t.session_tickets {
                    tickets = Some(if t.session_ticket_keys.is_empty() {
                        let every = self.duration(
                            &t.session_ticket_rotation,
                            &key("tls.session_ticket_rotation"),
                            Duration::from_secs(3600),
                        )?;
                        if every.is_zero() {
                            return Err(self.err(
                                t.session_ticket_rotation.as_ref(),
                                &key("tls.session_ticket_rotation"),
                                "must be longer than 0",
                            ));
                        }
                        TicketKeys::rotating(every)
                    } else {
                        let mut keys = Vec::new();
                        for f in &t.session_ticket_keys {
                            let k = key("tls.session_ticket_keys");
                            let (path, bytes) = self.read(f, &k)?;
                            let parsed = TicketKey::from_nginx_bytes(&bytes).map_err(|r| {
                                self.err(Some(f), &k, &format!("{}: {r}", path.display()))
                            })?;
                            keys.push(parsed);
                        }
                        TicketKeys::fixed(keys)
                    });
                }
                let session_timeout = self.duration(
                    &t.session_timeout,
                    &key("tls.session_timeout"),
                    Duration::from_secs(300),
                )?;
                let settings = crate::tls::ServerSettings {
                    cert_pem: &cert_pem,
                    key_pem: &key_pem,
                    ca_pem: ca.as_ref().map(|(_, b)| b.as_slice()),
                    mode,
                    reject,
                    verify_depth: auth_file.map(|a| a.verify_depth).unwrap_or(1),
                    min_tls13,
                    policy_tag: &policy_tag(&[subjects, issuers, sans]),
                    tickets: tickets.as_ref(),
                    session_cache_size: t.session_cache_size.unwrap_or(20 * 1024),
                    session_timeout,
                    verify_cache: auth_file
                        .and_then(|a| a.verify_cache_size)
                        .unwrap_or(10_000),
                };
                let ctx = crate::tls::server_context(&settings).map_err(|e| {
                    let (at, k, p) = match e.part {
                        crate::tls::Part::Certificate => {
                            (&t.certificate, "tls.certificate", &cert_path)
                        }
                        crate::tls::Part::PrivateKey => {
                            (&t.private_key, "tls.private_key", &key_path)
                        }
                        crate::tls::Part::Ca => match auth_file.and_then(|a| a.ca.as_ref()) {
                            Some(ca) => (ca, "client_auth.ca", &cert_path),
                            None => (&t.certificate, "tls", &cert_path),
                        },
                    };
                    let _ = p;
                    self.err(Some(at), &key(k), &e.reason)
                })?;
                Some(ctx)
            }
        };

        let timeouts = {
            let t = &l.timeouts;
            let d = Timeouts::default();
            Timeouts {
                handshake: self.duration(&t.handshake, &key("timeouts.handshake"), d.handshake)?,
                request_head: self.duration(
                    &t.request_head,
                    &key("timeouts.request_head"),
                    d.request_head,
                )?,
                keepalive_idle: self.duration(
                    &t.keepalive_idle,
                    &key("timeouts.keepalive_idle"),
                    d.keepalive_idle,
                )?,
                upstream_connect: self.duration(
                    &t.upstream_connect,
                    &key("timeouts.upstream_connect"),
                    d.upstream_connect,
                )?,
                upstream_read: self.duration(
                    &t.upstream_read,
                    &key("timeouts.upstream_read"),
                    d.upstream_read,
                )?,
                body_idle: self.duration(&t.body_idle, &key("timeouts.body_idle"), d.body_idle)?,
            }
        };
        let limits = Limits {
            max_header_bytes: l
                .limits
                .max_header_bytes
                .unwrap_or(DEFAULT_MAX_HEADER_BYTES),
            max_connections: l.limits.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_requests_per_connection: l.limits.max_requests_per_connection.unwrap_or(0),
        };
        if limits.max_header_bytes < 1024 {
            return Err(self.err::<String>(
                None,
                &key("limits.max_header_bytes"),
                "must be at least 1024",
            ));
        }
        if limits.max_connections == 0 {
            return Err(self.err::<String>(
                None,
                &key("limits.max_connections"),
                "must be at least 1",
            ));
        }
        let (headers, strip) = identity_headers(&l.headers)
            .map_err(|r: String| self.err::<String>(None, &key("headers"), &r))?;

        if l.mode == ListenerMode::Http && upstreams[upstream].proxy_protocol {
            return Err(self.err(
                Some(&l.upstream),
                &key("upstream"),
                "proxy_protocol upstreams serve mode = \"tcp\" listeners only",
            ));
        }
        Ok(Listener {
            name,
            addr,
            mode: l.mode,
            upstream,
            tls,
            tickets,
            client_auth: ClientAuth {
                mode,
                reject,
                rules,
                rule_count: subjects.len() + issuers.len() + sans.len(),
            },
            timeouts,
            limits,
            headers,
            strip,
        })
    }
}

/// The rules' texts, family by family, so that the TLS session ID context changes with them.
fn policy_tag(families: &[&Vec<Spanned<String>>]) -> Vec<u8> {
    let mut tag = Vec::new();
    for family in families {
        tag.extend_from_slice(&(family.len() as u64).to_le_bytes());
        for rule in family.iter() {
            tag.extend_from_slice(&(rule.get_ref().len() as u64).to_le_bytes());
            tag.extend_from_slice(rule.get_ref().as_bytes());
        }
    }
    tag
}

fn identity_headers(h: &HeadersFile) -> Result<(IdentityHeaders, StripSet), String> {
    let configured = [
        &h.verify,
        &h.subject_dn,
        &h.subject_dn_legacy,
        &h.issuer_dn,
        &h.serial,
        &h.fingerprint,
        &h.san,
        &h.not_after,
        &h.cert,
        &h.forwarded_for,
        &h.forwarded_proto,
        &h.real_ip,
    ];
    let mut names: Vec<Option<String>> = Vec::with_capacity(12);
    // Strip the defaults even when renamed: a backend written for them must never see forgeries.
    let mut strip: Vec<String> = DEFAULT_HEADER_NAMES.iter().map(|s| s.to_string()).collect();
    for (value, default) in configured.iter().zip(DEFAULT_HEADER_NAMES) {
        let name = value.as_deref().unwrap_or(default).trim();
        if name.is_empty() {
            names.push(None);
            continue;
        }
        if !is_token(name) {
            return Err(format!("{name:?} is not a valid header name"));
        }
        strip.push(name.to_owned());
        names.push(Some(name.to_owned()));
    }
    for s in &h.strip {
        if !is_token(s) {
            return Err(format!("strip: {s:?} is not a valid header name"));
        }
        strip.push(s.clone());
    }
    let mut it = names.into_iter();
    let mut next = || it.next().flatten();
    let headers = IdentityHeaders {
        verify: next(),
        subject_dn: next(),
        subject_dn_legacy: next(),
        issuer_dn: next(),
        serial: next(),
        fingerprint: next(),
        san: next(),
        not_after: next(),
        cert: next(),
        forwarded_for: next(),
        forwarded_proto: next(),
        real_ip: next(),
    };
    let refs: Vec<&str> = strip.iter().map(String::as_str).collect();
    Ok((headers, StripSet::new(&refs)))
}

/// RFC 9110 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/nonexistent/certgate.toml"), text)
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[runtime]\nworkers = 1\n\n[[listener]]\nlisen = \"x\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("lisen"), "{msg}");
        assert_eq!(e.key, "listener.lisen");
        assert_eq!(e.line, Some(5), "{msg}");
        assert!(msg.starts_with("/nonexistent/certgate.toml:5"), "{msg}");
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
