//! Logging: the subscriber (stderr; colour only on a terminal; a `[log] level` that SIGHUP can
//! change unless `RUST_LOG` overrides it) and the access line (stderr or a file, logfmt or
//! JSON), whose client-controlled values are quoted so that no reader can be fooled by them.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt as tfmt, reload, EnvFilter, Registry};

/// The environment variable that overrides `[log] level`.
const RUST_LOG: &str = "RUST_LOG";

/// The installed subscriber's filter, kept so a reload can change the level.
pub struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG`'s value when it is set (and valid): it wins over `[log] level`.
    env: Option<String>,
}

/// Installs the process's subscriber: human-readable lines on stderr, ANSI colours only when
/// stderr is a terminal (and `NO_COLOR` is unset), filtered by `RUST_LOG` when it is set, by
/// `level` otherwise. Call once.
pub fn init(level: &str) -> Logging {
    let mut env = std::env::var(RUST_LOG)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut env_error = None;
    let filter = match env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => filter,
        Some(Err(e)) => {
            env_error = Some(e.to_string());
            env = None;
            level_filter(level)
        }
        None => level_filter(level),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::registry()
        .with(filter)
        .with(tfmt::layer().with_writer(std::io::stderr).with_ansi(ansi))
        .init();
    if let Some(e) = env_error {
        tracing::warn!("RUST_LOG is not a valid filter ({e}); using [log] level = {level:?}");
    }
    Logging { handle, env }
}

fn level_filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

impl Logging {
    /// Applies a reloaded `[log] level`, unless `RUST_LOG` overrides it.
    ///
    /// # Errors
    /// Why the level was not applied (`RUST_LOG` is set, or the level is not a filter).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if let Some(env) = &self.env {
            return Err(format!("RUST_LOG={env:?} overrides it"));
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())
    }

    /// `RUST_LOG`'s value when it overrides `[log] level`.
    pub fn overridden_by(&self) -> Option<&str> {
        self.env.as_deref()
    }
}

/// A value a client controls (a DN, a path, a reason that embeds one), written as a logfmt
/// quoted string: `"` and `\` are escaped, line breaks and other control characters are
/// written as `\n`, `\r`, `\t` or `\u00XX` (JSON's escapes, which logfmt readers decode), as
/// are Unicode line separators and bidirectional overrides. Bytes that are not UTF-8 (only a
/// request target can hold them) are written as `%XX`, as in a URL. Whatever the value holds,
/// it stays one field of one line.
pub struct Quoted<'a>(pub &'a [u8]);

impl<'a> Quoted<'a> {
    /// Quotes a string the same way.
    pub fn str(s: &'a str) -> Self {
        Quoted(s.as_bytes())
    }
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut plain = 0;
            for (i, c) in valid.char_indices() {
                let escape = match c {
                    '"' => Some("\\\""),
                    '\\' => Some("\\\\"),
                    '\n' => Some("\\n"),
                    '\r' => Some("\\r"),
                    '\t' => Some("\\t"),
                    _ => None,
                };
                if escape.is_none() && !needs_code(c) {
                    continue;
                }
                f.write_str(&valid[plain..i])?;
                match escape {
                    Some(e) => f.write_str(e)?,
                    None => write!(f, "\\u{:04x}", u32::from(c))?,
                }
                plain = i + c.len_utf8();
            }
            f.write_str(&valid[plain..])?;
            for b in chunk.invalid() {
                write!(f, "%{b:02X}")?;
            }
        }
        f.write_char('"')
    }
}

/// Characters written as `\uXXXX`: controls (C0, DEL, C1), line and paragraph separators, and
/// the bidirectional formatting characters that can make a line read other than it is.
fn needs_code(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Milliseconds with three decimals.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0.as_secs_f64() * 1e3)
    }
}

/// Where access lines go (`[log] access`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    /// No access log.
    Off,
    /// stderr, with the other log lines (logfmt lines go through the subscriber, so `RUST_LOG`
    /// can filter target `certgate::access`).
    Stderr,
    /// Appended to this file, reopened after SIGUSR1 ([`reopen`]).
    File(PathBuf),
}

/// How access lines are written (`[log] access_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// `key=value` pairs; every value a client controls is a quoted string.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// `[log] access` and `access_format`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// Where lines go.
    pub target: AccessTarget,
    /// Their format.
    pub format: AccessFormat,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            target: AccessTarget::Stderr,
            format: AccessFormat::Logfmt,
        }
    }
}

impl AccessLog {
    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.target != AccessTarget::Off
    }
}

/// Bumped by [`reopen`]: each worker reopens its access-log file at its next line.
static REOPEN: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's access-log file: the reopen generation it was opened at, its path, the file.
    static FILE: RefCell<Option<(u64, PathBuf, File)>> = const { RefCell::new(None) };
}

/// Makes every worker reopen its access-log file before its next line (SIGUSR1, after
/// logrotate moved the file).
pub fn reopen() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

/// Appends one line to `path` through this thread's handle, reopened when [`reopen`] was
/// called or the path changed (a reload). A line is one `write`, so lines of several workers
/// never interleave (O_APPEND).
fn append(path: &Path, line: &[u8]) {
    let generation = REOPEN.load(Ordering::Relaxed);
    FILE.with(|f| {
        let mut f = f.borrow_mut();
        let stale = match &*f {
            Some((g, p, _)) => *g != generation || p != path,
            None => true,
        };
        if stale {
            *f = match OpenOptions::new().create(true).append(true).open(path) {
                Ok(file) => Some((generation, path.to_owned(), file)),
                Err(e) => {
                    tracing::warn!("cannot open the access log {}: {e}", path.display());
                    None
                }
            };
        }
        if let Some((_, _, file)) = &mut *f {
            if let Err(e) = file.write_all(line) {
                tracing::warn!("cannot write the access log {}: {e}", path.display());
            }
        }
    });
}

/// The connection's TLS facts for the access line.
#[derive(Debug, Clone, Copy)]
pub struct TlsFacts<'a> {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: &'a str,
    /// The cipher suite's standard name.
    pub cipher: &'a str,
    /// The session was resumed.
    pub resumed: bool,
}

/// What one access line reports; every HTTP request and every TCP connection writes one
/// (target `certgate::access`). The field set lives here alone, so that both output formats
/// render the same value. Fields that do not apply are `None` and left out.
pub struct Access<'a> {
    /// The line's message: `request`, `bad request`, `tcp connection`, `tcp connection refused`.
    pub event: &'static str,
    /// The listener's name.
    pub listener: &'a str,
    /// The `[[listener.sni]]` block the handshake chose (its names); empty, and not logged, for
    /// the listener's own policy.
    pub sni: &'a str,
    /// The client's address (from the TCP connection).
    pub peer: SocketAddr,
    /// The request's id: the client's valid `X-Request-Id`, else one generated (sent upstream).
    pub request_id: Option<&'a str>,
    /// The request method, as received.
    pub method: Option<&'a str>,
    /// The request's path, as received.
    pub path: Option<&'a [u8]>,
    /// `HTTP/1.1`, `HTTP/1.0`.
    pub version: Option<&'static str>,
    /// The status sent to the client.
    pub status: Option<u16>,
    /// The TLS session, on a TLS listener.
    pub tls: Option<TlsFacts<'a>>,
    /// `SUCCESS`, `NONE` or `FAILED:<reason>`.
    pub verify: &'a str,
    /// The client's subject DN, `-` when none.
    pub dn: &'a str,
    /// The client certificate's issuer DN, serial and SHA-256 fingerprint, when one was sent.
    pub cert: Option<(&'a str, &'a str, &'a str)>,
    /// The admission decision (the rule that admitted, or why not) and how the exchange ended.
    pub decision: &'a str,
    /// The upstream server; `Some(None)` logs `upstream="-"`.
    pub upstream: Option<Option<SocketAddr>>,
    /// Attempts made upstream (retries included).
    pub attempts: Option<usize>,
    /// Bytes received from the client and sent to it for this request (heads and bodies).
    pub bytes: Option<(u64, u64)>,
    /// The last upstream connect's duration (zero for a pooled connection).
    pub connect_time: Option<Duration>,
    /// The TLS handshake's duration.
    pub handshake_time: Option<Duration>,
    /// From the start of forwarding (request head read) until the upstream's response head
    /// arrived; zero when no server answered.
    pub upstream_time: Option<Duration>,
    /// From the start of forwarding (request head read) until the response was relayed.
    pub total_time: Option<Duration>,
}

/// One field's value: a client may control `Str` (always quoted); `Bare` is written as is in
/// logfmt (numbers, addresses, names from the configuration) and quoted in JSON unless it is a
/// number.
enum Val<'a> {
    Str(&'a [u8]),
    Bare(String),
    Num(String),
}

impl Access<'_> {
    fn fields(&self) -> Vec<(&'static str, Val<'_>)> {
        let mut v = Vec::with_capacity(24);
        v.push(("listener", Val::Bare(self.listener.to_owned())));
        if !self.sni.is_empty() {
            v.push(("sni", Val::Str(self.sni.as_bytes())));
        }
        v.push(("peer", Val::Bare(self.peer.to_string())));
        if let Some(id) = self.request_id {
            v.push(("request_id", Val::Str(id.as_bytes())));
        }
        if let Some(m) = self.method {
            v.push(("method", Val::Str(m.as_bytes())));
        }
        if let Some(p) = self.path {
            v.push(("path", Val::Str(p)));
        }
        if let Some(h) = self.version {
            v.push(("http", Val::Bare(h.to_owned())));
        }
        if let Some(s) = self.status {
            v.push(("status", Val::Num(s.to_string())));
        }
        if let Some(t) = &self.tls {
            v.push(("tls", Val::Bare(t.version.to_owned())));
            v.push(("cipher", Val::Bare(t.cipher.to_owned())));
            v.push(("resumed", Val::Num(t.resumed.to_string())));
        }
        v.push(("verify", Val::Str(self.verify.as_bytes())));
        v.push(("dn", Val::Str(self.dn.as_bytes())));
        if let Some((issuer, serial, fingerprint)) = self.cert {
            v.push(("issuer", Val::Str(issuer.as_bytes())));
            v.push(("serial", Val::Str(serial.as_bytes())));
            v.push(("fingerprint", Val::Str(fingerprint.as_bytes())));
        }
        v.push(("decision", Val::Str(self.decision.as_bytes())));
        if let Some(u) = self.upstream {
            let u = u.map_or_else(|| "\"-\"".to_owned(), |a| a.to_string());
            v.push(("upstream", Val::Bare(u)));
        }
        if let Some(n) = self.attempts {
            v.push(("attempts", Val::Num(n.to_string())));
        }
        if let Some((received, sent)) = self.bytes {
            v.push(("bytes_received", Val::Num(received.to_string())));
            v.push(("bytes_sent", Val::Num(sent.to_string())));
        }
        let ms = |d: Duration| Val::Num(Millis(d).to_string());
        if let Some(d) = self.handshake_time {
            v.push(("handshake_ms", ms(d)));
        }
        if let Some(d) = self.connect_time {
            v.push(("connect_ms", ms(d)));
        }
        if let Some(d) = self.upstream_time {
            v.push(("upstream_ms", ms(d)));
        }
        if let Some(d) = self.total_time {
            v.push(("total_ms", ms(d)));
        }
        v
    }

    /// The fields as logfmt (`key=value ...`), without the time and the event.
    pub fn logfmt(&self) -> String {
        let mut out = String::with_capacity(256);
        for (i, (k, v)) in self.fields().iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = match v {
                Val::Str(s) => write!(out, "{k}={}", Quoted(s)),
                Val::Bare(s) | Val::Num(s) => write!(out, "{k}={s}"),
            };
        }
        out
    }

    /// The line as one JSON object (with `time` and `event`), without the newline.
    pub fn json(&self, time: SystemTime) -> String {
        let mut out = String::with_capacity(320);
        let _ = write!(
            out,
            "{{\"time\":\"{}\",\"event\":{}",
            Rfc3339(time),
            Quoted::str(self.event)
        );
        for (k, v) in self.fields() {
            let _ = match v {
                Val::Str(s) => write!(out, ",\"{k}\":{}", Quoted(s)),
                Val::Bare(s) => write!(out, ",\"{k}\":{}", Quoted::str(s.trim_matches('"'))),
                Val::Num(s) => write!(out, ",\"{k}\":{s}"),
            };
        }
        out.push('}');
        out
    }

    /// Writes the line where `[log] access` says, in its format.
    pub fn emit(&self, log: &AccessLog) {
        match (&log.target, log.format) {
            (AccessTarget::Off, _) => {}
            (AccessTarget::Stderr, AccessFormat::Logfmt) => {
                tracing::info!(target: "certgate::access", "{} {}", self.event, self.logfmt());
            }
            (AccessTarget::Stderr, AccessFormat::Json) => {
                let mut line = self.json(SystemTime::now());
                line.push('\n');
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            (AccessTarget::File(path), format) => {
                let now = SystemTime::now();
                let mut line = match format {
                    AccessFormat::Json => self.json(now),
                    AccessFormat::Logfmt => {
                        format!(
                            "time={} event={} {}",
                            Rfc3339(now),
                            Quoted::str(self.event),
                            self.logfmt()
                        )
                    }
                };
                line.push('\n');
                append(path, line.as_bytes());
            }
        }
    }
}

/// POSIX seconds as UTC calendar fields: year, month, day, hour, minute, second (Howard
/// Hinnant's civil_from_days). Shared by every place that prints a time.
pub fn civil(posix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = posix.div_euclid(86_400);
    let secs = posix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
}

/// A time as RFC 3339 UTC with milliseconds (`2026-01-31T23:59:59.123Z`).
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (year, month, day, h, m, s) = civil(i64::try_from(d.as_secs()).unwrap_or(0));
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            d.subsec_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &[u8]) -> String {
        Quoted(v).to_string()
    }

    #[test]
    fn plain_values_are_only_wrapped() {
        assert_eq!(q(b"CN=alice,O=Acme"), r#""CN=alice,O=Acme""#);
        assert_eq!(q(b""), r#""""#);
        assert_eq!(q("CN=Jürgen".as_bytes()), "\"CN=Jürgen\"");
    }

    #[test]
    fn quotes_backslashes_and_line_breaks_are_escaped() {
        assert_eq!(
            q(b"CN=mallory\" status=200 verify=SUCCESS\nx\\y\r\t"),
            r#""CN=mallory\" status=200 verify=SUCCESS\nx\\y\r\t""#
        );
    }

    #[test]
    fn control_and_invisible_characters_are_coded() {
        assert_eq!(q(b"a\x1b[31mb\x00\x7f"), r#""a\u001b[31mb\u0000\u007f""#);
        assert_eq!(
            q("x\u{85}\u{2028}\u{202e}y".as_bytes()),
            r#""x\u0085\u2028\u202ey""#
        );
    }

    fn sample<'a>(dn: &'a str) -> Access<'a> {
        Access {
            event: "request",
            listener: "edge",
            sni: "",
            peer: "127.0.0.1:5555".parse().unwrap(),
            request_id: Some("r1"),
            method: Some("GET"),
            path: Some(b"/a b"),
            version: Some("HTTP/1.1"),
            status: Some(403),
            tls: None,
            verify: "SUCCESS",
            dn,
            cert: None,
            decision: "forbidden",
            upstream: Some(None),
            attempts: None,
            bytes: None,
            connect_time: None,
            handshake_time: None,
            upstream_time: None,
            total_time: Some(Duration::from_micros(1500)),
        }
    }

    #[test]
    fn logfmt_and_json_keep_a_forged_dn_in_its_field() {
        let forged = "CN=mallory status=200 verify=SUCCESS\"\nx";
        let line = sample(forged).logfmt();
        assert!(!line.contains('\n'));
        assert!(
            line.contains(r#"dn="CN=mallory status=200 verify=SUCCESS\"\nx""#),
            "{line}"
        );
        assert!(line.contains("status=403 "), "{line}");
        let json = sample(forged).json(UNIX_EPOCH + Duration::from_millis(86_400_000 + 5));
        assert!(
            json.starts_with(r#"{"time":"1970-01-02T00:00:00.005Z","event":"request""#),
            "{json}"
        );
        assert!(
            json.contains(r#""status":403"#) && json.contains(r#""upstream":"-""#),
            "{json}"
        );
        assert!(
            json.contains(r#""dn":"CN=mallory status=200 verify=SUCCESS\"\nx""#),
            "{json}"
        );
    }

    #[test]
    fn rfc3339_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_709_164_800 + 3_661); // 2024-02-29
        assert_eq!(Rfc3339(t).to_string(), "2024-02-29T01:01:01.000Z");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_percent_coded() {
        assert_eq!(q(b"/a\xffb\xc3"), r#""/a%FFb%C3""#);
    }

    /// Whatever a value holds, the result is one token a logfmt reader takes whole: no raw line
    /// break, and every `"` inside is escaped.
    #[test]
    fn any_value_stays_one_field() {
        let mut all = Vec::new();
        for b in 0..=255u8 {
            all.extend_from_slice(&[b, b'"', b' ', b'=']);
        }
        let out = q(&all);
        assert!(!out.contains('\n') && !out.contains('\r'));
        let inner = &out[1..out.len() - 1];
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => assert!(chars.next().is_some()),
                c => assert!(c != '"' && !c.is_control(), "{c:?} in {out}"),
            }
        }
    }
}
