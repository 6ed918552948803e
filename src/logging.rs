//! Logging: the access line, whose client-controlled values are quoted so that a logfmt reader
//! cannot be fooled by them.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

/// A value a client controls (a DN, a path, a reason that embeds one), written as a logfmt
/// quoted string: `"` and `\` are escaped, line breaks and other control characters are
/// written as `\n`, `\r`, `\t` or `\u00XX` (JSON's escapes, which logfmt readers decode), as
/// are Unicode line separators and bidirectional overrides. Bytes that are not UTF-8 (only a
/// request target can hold them) are written as `%XX`, as in a URL. Whatever the value holds,
/// it stays one field of one line.
pub struct Quoted<'a>(pub &'a [u8]);

impl<'a> Quoted<'a> {
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
    pub listener: &'a str,
    pub peer: SocketAddr,
    pub method: Option<&'a str>,
    /// The request's path, as received.
    pub path: Option<&'a [u8]>,
    pub status: Option<u16>,
    /// `SUCCESS`, `NONE` or `FAILED:<reason>`.
    pub verify: &'a str,
    /// The client's subject DN, `-` when none.
    pub dn: &'a str,
    /// The admission decision (the rule that admitted, or why not) and how the exchange ended.
    pub decision: &'a str,
    /// The upstream server; `Some(None)` logs `upstream="-"`.
    pub upstream: Option<Option<SocketAddr>>,
    pub upstream_time: Option<Duration>,
    pub total_time: Option<Duration>,
}

impl Access<'_> {
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
