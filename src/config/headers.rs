//! `[listener.headers]`: the names of the identity headers sent upstream and the extra names
//! stripped from client requests.
//!
//! A configured name must be a valid RFC 9110 token and must not be a header that frames or
//! routes the request (`Content-Length`, `Host`, ...) or a hop-by-hop one: the backend would get
//! two of them, one holding a DN. Names are compared as the stripping compares them (ASCII case
//! folded, `_` read as `-`), so two fields cannot share one name in any spelling.

use super::file::HeadersFile;
use super::{IdentityHeaders, DEFAULT_HEADER_NAMES};
use crate::http::StripSet;

/// The keys of `[listener.headers]`, in the order of [`DEFAULT_HEADER_NAMES`].
const FIELDS: [&str; 12] = [
    "verify",
    "subject_dn",
    "subject_dn_legacy",
    "issuer_dn",
    "serial",
    "fingerprint",
    "san",
    "not_after",
    "cert",
    "forwarded_for",
    "forwarded_proto",
    "real_ip",
];

/// Headers that frame or route a request: a second copy changes what the backend parses.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Hop-by-hop headers (RFC 9110 §7.6.1, and the usual non-standard ones) and `Expect`, which
/// certgate handles itself: it never forwards them as the client sent them.
const HOP_BY_HOP: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "upgrade",
    "expect",
    "proxy-authenticate",
    "proxy-authorization",
    "http2-settings",
];

/// What validation found: the key under `headers.` it concerns and the reason.
pub(super) struct HeaderError {
    pub key: String,
    pub reason: String,
}

/// The validated names, the strip set, and warnings (`key`, reason).
pub(super) type Checked = (IdentityHeaders, StripSet, Vec<(String, String)>);

pub(super) fn identity_headers(h: &HeadersFile) -> Result<Checked, HeaderError> {
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
    let mut names: Vec<Option<String>> = Vec::with_capacity(FIELDS.len());
    // (folded name, field) of every name sent, to find two fields sharing one.
    let mut sent: Vec<(String, &str)> = Vec::new();
    // Strip the defaults even when renamed: a backend written for them must never see forgeries.
    let mut strip: Vec<String> = DEFAULT_HEADER_NAMES.iter().map(|s| s.to_string()).collect();
    // Never forwarded as the client sent it: in `forward` mode its elements are re-sent in the
    // one header certgate writes.
    strip.push(crate::http::xfcc::HEADER.to_owned());
    let mut warnings = Vec::new();
    for ((value, default), field) in configured.iter().zip(DEFAULT_HEADER_NAMES).zip(FIELDS) {
        let name = value.as_deref().unwrap_or(default).trim();
        if name.is_empty() {
            names.push(None);
            continue;
        }
        let fail = |reason: String| HeaderError {
            key: field.to_owned(),
            reason,
        };
        check_token(name).map_err(fail)?;
        let folded = fold(name);
        if FRAMING.contains(&folded.as_str()) || HOP_BY_HOP.contains(&folded.as_str()) {
            return Err(fail(format!(
                "{name:?} is a header that HTTP itself uses ({}); the backend would receive \
                 it twice, once with the client's identity: choose another name, such as \
                 {default:?}",
                if FRAMING.contains(&folded.as_str()) {
                    "message framing or routing"
                } else {
                    "hop-by-hop"
                }
            )));
        }
        if folded == "x-forwarded-client-cert" {
            return Err(fail(format!(
                "{name:?} is the header `xfcc` writes (Envoy's format): write xfcc = \
                 \"sanitize_set\" to send it, or choose another name, such as {default:?}"
            )));
        }
        if let Some((_, other)) = sent.iter().find(|(f, _)| *f == folded) {
            return Err(fail(format!(
                "{name:?} is also the name of `{other}` (names are compared ignoring case and \
                 reading `_` as `-`): each header needs its own name; write \"\" to disable one"
            )));
        }
        sent.push((folded, field));
        strip.push(name.to_owned());
        names.push(Some(name.to_owned()));
    }
    for (i, s) in h.strip.iter().enumerate() {
        let key = format!("strip[{i}]");
        let s = s.trim();
        check_token(s).map_err(|reason| HeaderError {
            key: key.clone(),
            reason,
        })?;
        let folded = fold(s);
        if FRAMING.contains(&folded.as_str()) {
            return Err(HeaderError {
                key,
                reason: format!(
                    "{s:?} cannot be stripped: certgate needs it to forward the request (it \
                     frames or routes it)"
                ),
            });
        }
        if HOP_BY_HOP.contains(&folded.as_str()) {
            warnings.push((
                key,
                format!("{s:?} is hop-by-hop: it is never forwarded anyway"),
            ));
        }
        strip.push(s.to_owned());
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
        xfcc: h.xfcc,
    };
    let refs: Vec<&str> = strip.iter().map(String::as_str).collect();
    Ok((headers, StripSet::new(&refs), warnings))
}

/// A header name as stripping compares it.
fn fold(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// RFC 9110 `token`: letters, digits and ``!#$%&'*+-.^_`|~``.
fn check_token(name: &str) -> Result<(), String> {
    if name.starts_with(':') {
        return Err(format!(
            "{name:?} is an HTTP/2 pseudo-header, not a header name"
        ));
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "{name:?} is not a valid header name: {c:?} is not allowed (letters, digits and \
             !#$%&'*+-.^_`|~ only, no spaces or colons)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut HeadersFile)) -> Result<Checked, HeaderError> {
        let mut h = HeadersFile::default();
        f(&mut h);
        identity_headers(&h)
    }

    #[test]
    fn defaults_pass() {
        let (h, strip, warnings) = with(|_| {}).ok().unwrap();
        assert_eq!(h.subject_dn.as_deref(), Some("X-SSL-Client-S-DN"));
        assert_eq!(strip.len(), 13);
        assert!(strip.contains(b"x-forwarded-client-cert"));
        assert_eq!(h.xfcc, super::super::XfccMode::Off);
        assert!(warnings.is_empty());
    }

    #[test]
    fn refusals() {
        let bad = |f: fn(&mut HeadersFile), key: &str, want: &str| {
            let e = with(f).err().unwrap();
            assert_eq!(e.key, key);
            assert!(e.reason.contains(want), "{}", e.reason);
        };
        bad(
            |h| h.subject_dn = Some("Content-Length".into()),
            "subject_dn",
            "framing",
        );
        bad(
            |h| h.subject_dn = Some("content_length".into()),
            "subject_dn",
            "framing",
        );
        bad(|h| h.serial = Some("Host".into()), "serial", "framing");
        bad(
            |h| h.cert = Some("x-forwarded-client-cert".into()),
            "cert",
            "the header `xfcc` writes",
        );
        bad(
            |h| h.verify = Some("Connection".into()),
            "verify",
            "hop-by-hop",
        );
        bad(|h| h.verify = Some("TE".into()), "verify", "hop-by-hop");
        bad(
            |h| h.verify = Some(":path".into()),
            "verify",
            "pseudo-header",
        );
        bad(
            |h| h.verify = Some("X Client".into()),
            "verify",
            "not a valid header name",
        );
        bad(
            |h| {
                h.subject_dn = Some("X-Client".into());
                h.issuer_dn = Some("x_client".into());
            },
            "issuer_dn",
            "also the name of `subject_dn`",
        );
        // A renamed field colliding with another's default.
        bad(
            |h| h.san = Some("X-SSL-Client-Serial".into()),
            "san",
            "also the name of `serial`",
        );
        bad(
            |h| h.strip = vec!["ok".into(), "a b".into()],
            "strip[1]",
            "not a valid",
        );
        bad(
            |h| h.strip = vec!["Transfer-Encoding".into()],
            "strip[0]",
            "cannot be stripped",
        );
    }

    #[test]
    fn disabled_names_do_not_collide() {
        let (h, _, _) = with(|h| {
            h.subject_dn = Some(String::new());
            h.issuer_dn = Some("X-SSL-Client-S-DN".into());
        })
        .ok()
        .unwrap();
        assert_eq!(h.subject_dn, None);
        let (_, _, warnings) = with(|h| h.strip = vec!["Upgrade".into()]).ok().unwrap();
        assert_eq!(warnings[0].0, "strip[0]");
    }
}
