//! Logging: the subscriber (stderr; colour only on a terminal; a `[log] level` that SIGHUP can
//! change unless `RUST_LOG` overrides it) and the access line, whose client-controlled values
//! are quoted so that a logfmt reader cannot be fooled by them.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

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

/// What one access line reports; every HTTP request and every TCP connection writes one
/// (target `certgate::access`). The field set lives here alone, so that another output format
/// renders the same value. Fields that do not apply are `None` and left out.
pub struct Access<'a> {
    /// The line's message: `request`, `bad request`, `tcp connection`, `tcp connection refused`.
    pub event: &'static str,
    /// The listener's name.
    pub listener: &'a str,
    /// The client's address (from the TCP connection).
    pub peer: SocketAddr,
    /// The request method, as received.
    pub method: Option<&'a str>,
    /// The request's path, as received.
    pub path: Option<&'a [u8]>,
    /// The status sent to the client.
    pub status: Option<u16>,
    /// `SUCCESS`, `NONE` or `FAILED:<reason>`.
    pub verify: &'a str,
    /// The client's subject DN, `-` when none.
    pub dn: &'a str,
    /// The admission decision (the rule that admitted, or why not) and how the exchange ended.
    pub decision: &'a str,
    /// The upstream server; `Some(None)` logs `upstream="-"`.
    pub upstream: Option<Option<SocketAddr>>,
    /// From the start of forwarding (request head read) until the upstream's response head
    /// arrived; zero when no server answered.
    pub upstream_time: Option<Duration>,
    /// From the start of forwarding (request head read) until the response was relayed.
    pub total_time: Option<Duration>,
}

impl Access<'_> {
    /// Writes the line at info level, target `certgate::access`.
    pub fn emit(&self) {
        let upstream = self.upstream.map(|u| match u {
            Some(addr) => addr.to_string(),
            None => "-".to_owned(),
        });
        tracing::info!(
            target: "certgate::access",
            listener = %self.listener,
            peer = %self.peer,
            method = self.method.map(|m| display(Quoted::str(m))),
            path = self.path.map(|p| display(Quoted(p))),
            status = self.status,
            verify = %Quoted::str(self.verify),
            dn = %Quoted::str(self.dn),
            decision = %Quoted::str(self.decision),
            upstream = upstream.as_deref().map(display),
            upstream_ms = self.upstream_time.map(|d| display(Millis(d))),
            total_ms = self.total_time.map(|d| display(Millis(d))),
            "{}",
            self.event
        );
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
