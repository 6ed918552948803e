//! The names `[[listener.sni]]` blocks are selected by, matched against an SNI value or a
//! request's authority. Pure (no TLS types), so the fuzz build compiles it too.

use std::net::IpAddr;

/// One name of a block: exact, or a leading wildcard standing for exactly one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// `api.acme.test`, lowercase.
    Exact(String),
    /// `*.partner.test`: the suffix `.partner.test`, lowercase.
    Wildcard(String),
}

impl Name {
    /// Parses one `names` entry; the error says what is wrong and what to write.
    pub fn parse(text: &str) -> Result<Name, String> {
        let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Err(
                "is empty: write a host name such as \"api.example.com\" or a wildcard \
                        such as \"*.example.com\""
                    .into(),
            );
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "{text:?} is an IP address: clients do not send addresses in SNI (RFC 6066), so \
                 it could never select this block; connections to an address get the \
                 listener's own [listener.tls]"
            ));
        }
        let (wild, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        if rest.contains('*') || (!wild && name.starts_with('*')) {
            return Err(format!(
                "{text:?}: a wildcard is only allowed as the whole first label (\"*.example.com\", \
                 which matches one label: \"a.example.com\" but not \"a.b.example.com\" nor \
                 \"example.com\")"
            ));
        }
        for label in rest.split('.') {
            if label.is_empty() {
                return Err(format!("{text:?} has an empty label (two dots in a row?)"));
            }
            if label.len() > 63
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "{text:?} is not a host name: labels are letters, digits, '-' and '_', at \
                     most 63 each (write internationalized names in their xn-- form)"
                ));
            }
        }
        Ok(if wild {
            Name::Wildcard(format!(".{rest}"))
        } else {
            Name::Exact(name)
        })
    }

    /// Whether `host` (lowercase, no port, no trailing dot) is this name.
    fn matches(&self, host: &str) -> bool {
        match self {
            Name::Exact(n) => n == host,
            Name::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Exact(n) => f.write_str(n),
            Name::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// The names of a listener's blocks, each with its block's index.
#[derive(Debug, Default)]
pub struct Names {
    entries: Vec<(Name, usize)>,
    /// Some policy of the listener (its own or a block's) asks for client certificates: a
    /// request naming another policy than its handshake's is then refused (421).
    pub verifying: bool,
}

impl Names {
    /// A table from `(name, block)` pairs, already checked for duplicates.
    pub fn new(entries: Vec<(Name, usize)>, verifying: bool) -> Self {
        Self { entries, verifying }
    }

    /// No blocks.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry equal to `name` (a duplicate), if any.
    pub fn find(&self, name: &Name) -> Option<usize> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| *b)
    }

    /// The block `host` selects (an SNI value or a request's authority: case-insensitive, port
    /// and trailing dot ignored); None: the listener's own policy. An exact name wins over a
    /// wildcard, as in nginx.
    pub fn select(&self, host: &[u8]) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let host = host_of(host)?;
        self.entries
            .iter()
            .find(|(n, _)| matches!(n, Name::Exact(_)) && n.matches(&host))
            .or_else(|| self.entries.iter().find(|(n, _)| n.matches(&host)))
            .map(|(_, b)| *b)
    }
}

/// The host of an authority (`Name:8443` -> `name`); None for an IP literal or non-UTF-8 bytes.
fn host_of(authority: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(authority).ok()?.trim();
    if s.starts_with('[') {
        return None;
    }
    let host = match s.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}
