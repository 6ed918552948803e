//! The facts of a client certificate that a connection needs: the identity the admission rules
//! look at, and the values sent upstream as headers (nginx's `$ssl_client_*` variables).
//!
//! A [`ClientCert`] is built once per connection, right after the handshake. Everything rules and
//! headers need is computed then, so each use is free; the escaped PEM is the exception, computed
//! on demand because it is the costliest and its header is often disabled.
//!
//! No header-bound string can split or end a header: a DN value or SAN may carry CR, LF or NUL
//! (via escapes, or a sloppy CA). The DN strings are printable ASCII, control characters and
//! non-ASCII bytes escaped as nginx does (`CN=J\C3\BCrgen`: raw UTF-8 in a header is read
//! differently by every backend); the other values go through [`header_safe`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use boring::hash::MessageDigest;
use boring::x509::{X509Ref, X509};

use super::dn::{Dn, DnKey};

/// One subjectAltName entry of a kind we use; other GeneralName kinds are skipped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum San {
    /// `dNSName`.
    Dns(String),
    /// `rfc822Name`, an email address.
    Email(String),
    /// `uniformResourceIdentifier`, e.g. a SPIFFE ID.
    Uri(String),
    /// `iPAddress`, v4 or v6.
    Ip(IpAddr),
}

impl San {
    /// The prefix OpenSSL prints for this kind (`DNS`, `email`, `URI`, `IP`).
    pub fn kind(&self) -> &'static str {
        match self {
            San::Dns(_) => "DNS",
            San::Email(_) => "email",
            San::Uri(_) => "URI",
            San::Ip(_) => "IP",
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(v) | San::Email(v) | San::Uri(v) => write!(f, "{}:{v}", self.kind()),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// The identity facts of a client's leaf certificate.
#[derive(Clone)]
pub struct ClientCert {
    x509: X509,
    subject: Dn,
    issuer: Dn,
    subject_key: DnKey,
    issuer_key: DnKey,
    subject_rfc2253: String,
    subject_legacy: String,
    issuer_rfc2253: String,
    issuer_legacy: String,
    /// `subject.to_string()` (non-ASCII as UTF-8) when it differs from `subject_rfc2253`.
    subject_utf8: Option<String>,
    issuer_utf8: Option<String>,
    serial: String,
    fingerprint: String,
    sans: Vec<San>,
    not_after: String,
}

impl ClientCert {
    /// Extracts everything from the leaf. Never fails: a field that cannot be read is empty.
    pub fn from_x509(leaf: &X509Ref) -> ClientCert {
        let subject = Dn::from_x509_name(leaf.subject_name());
        let issuer = Dn::from_x509_name(leaf.issuer_name());
        ClientCert {
            x509: leaf.to_owned(),
            subject_key: subject.key(),
            issuer_key: issuer.key(),
            subject_rfc2253: header_safe(&subject.to_rfc2253()).into_owned(),
            subject_legacy: header_safe(&subject.to_legacy()).into_owned(),
            issuer_rfc2253: header_safe(&issuer.to_rfc2253()).into_owned(),
            issuer_legacy: header_safe(&issuer.to_legacy()).into_owned(),
            subject_utf8: utf8_form(&subject),
            issuer_utf8: utf8_form(&issuer),
            subject,
            issuer,
            serial: serial_hex(leaf),
            fingerprint: fingerprint_hex(leaf),
            sans: sans(leaf),
            not_after: header_safe(&leaf.not_after().to_string()).into_owned(),
        }
    }

    /// The leaf certificate itself.
    pub fn x509(&self) -> &X509Ref {
        &self.x509
    }

    /// The parsed subject DN, for exact rules and the legacy form.
    pub fn subject(&self) -> &Dn {
        &self.subject
    }

    /// The parsed issuer DN of the leaf certificate.
    pub fn issuer(&self) -> &Dn {
        &self.issuer
    }

    /// `subject().key()`, computed once for the rules' hash lookups.
    pub fn subject_key(&self) -> &DnKey {
        &self.subject_key
    }

    /// `issuer().key()`, computed once for the rules' hash lookups.
    pub fn issuer_key(&self) -> &DnKey {
        &self.issuer_key
    }

    /// As nginx's `$ssl_client_s_dn`, e.g. `CN=client.1.local,O=Acme,C=FI`; non-ASCII escaped
    /// byte by byte (`CN=J\C3\BCrgen`), so the value is printable ASCII.
    pub fn subject_rfc2253(&self) -> &str {
        &self.subject_rfc2253
    }

    /// The subject in RFC 2253 form with non-ASCII kept as UTF-8 (`CN=Jürgen`), when it has any
    /// (`None` when it would equal [`ClientCert::subject_rfc2253`]). `~` rules try both.
    pub fn subject_utf8(&self) -> Option<&str> {
        self.subject_utf8.as_deref()
    }

    /// As [`ClientCert::subject_utf8`], for the issuer.
    pub fn issuer_utf8(&self) -> Option<&str> {
        self.issuer_utf8.as_deref()
    }

    /// As nginx's `$ssl_client_s_dn_legacy`, e.g. `/C=FI/O=Acme/CN=client.1.local`.
    pub fn subject_legacy(&self) -> &str {
        &self.subject_legacy
    }

    /// As nginx's `$ssl_client_i_dn`.
    pub fn issuer_rfc2253(&self) -> &str {
        &self.issuer_rfc2253
    }

    /// As nginx's `$ssl_client_i_dn_legacy`.
    pub fn issuer_legacy(&self) -> &str {
        &self.issuer_legacy
    }

    /// As nginx's `$ssl_client_serial`: uppercase hex, two digits per byte (`1A2B`, `00` for
    /// zero), `-` prefix if negative.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Lowercase hex SHA-256 of the DER, no separators.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// DNS, email, URI and IP subjectAltNames, in certificate order.
    pub fn sans(&self) -> &[San] {
        &self.sans
    }

    /// As nginx's `$ssl_client_v_end`, e.g. `Sep 12 21:37:41 2034 GMT`.
    pub fn not_after(&self) -> &str {
        &self.not_after
    }

    /// The `X-SSL-Client-SAN` value: `DNS:api.acme.test, email:john.doe@example.com,
    /// URI:spiffe://acme.test/x, IP:10.0.0.1`. In values, `%`, `,` and control characters are
    /// percent-escaped, so splitting on `, ` and percent-decoding each value is exact.
    pub fn san_header(&self) -> String {
        let mut out = String::with_capacity(self.sans.len() * 32);
        for (i, san) in self.sans.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(san.kind());
            out.push(':');
            match san {
                San::Dns(v) | San::Email(v) | San::Uri(v) => {
                    percent_escape(v, &mut out, |b| {
                        b == b'%' || b == b',' || b.is_ascii_control()
                    });
                }
                San::Ip(ip) => {
                    let _ = write!(out, "{ip}");
                }
            }
        }
        out
    }

    /// The leaf PEM URL-escaped as nginx's `$ssl_client_escaped_cert`: everything but RFC 3986
    /// unreserved characters (`A-Za-z0-9-._~`) is percent-encoded, newlines included. Empty if
    /// the certificate cannot be encoded.
    pub fn escaped_pem(&self) -> String {
        let Ok(pem) = self.x509.to_pem() else {
            return String::new();
        };
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        // Byte-wise into a Vec: this runs once per connection, and `write!` per escaped byte
        // cost several times the whole encoding.
        let mut out = Vec::with_capacity(pem.len() + pem.len() / 4);
        for &b in &pem {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
        }
        // Only ASCII was pushed.
        String::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("subject", &self.subject_rfc2253)
            .field("issuer", &self.issuer_rfc2253)
            .field("serial", &self.serial)
            .field("fingerprint", &self.fingerprint)
            .field("sans", &self.sans)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The RFC 2253 text with non-ASCII kept, if the name has non-ASCII at all.
fn utf8_form(dn: &Dn) -> Option<String> {
    let any = dn
        .rdns()
        .iter()
        .flat_map(|r| r.avas())
        .any(|a| !a.value().is_ascii());
    any.then(|| dn.to_string())
}

/// Makes a string safe as an HTTP header value: ASCII control characters (CR, LF, NUL and the
/// rest of 0x00-0x1F, 0x7F) are percent-escaped (`%0D`, `%0A`, `%00`...). Everything else,
/// non-ASCII UTF-8 included, is kept, so ordinary values are exactly what nginx would send.
pub fn header_safe(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b.is_ascii_control()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    percent_escape(s, &mut out, |b| b.is_ascii_control());
    Cow::Owned(out)
}

/// Appends `s` to `out`, writing ASCII bytes selected by `escape` as `%XX`. Only ASCII is ever
/// selected, so UTF-8 sequences stay intact.
fn percent_escape(s: &str, out: &mut String, escape: impl Fn(u8) -> bool) {
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| b.is_ascii() && escape(b)) {
        out.push_str(&rest[..i]);
        let _ = write!(out, "%{:02X}", rest.as_bytes()[i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// Formatted like OpenSSL's `i2a_ASN1_INTEGER`, which nginx uses: whole bytes, uppercase.
fn serial_hex(leaf: &X509Ref) -> String {
    let Ok(bn) = leaf.serial_number().to_bn() else {
        return String::new();
    };
    let bytes = bn.to_vec();
    let mut out = String::with_capacity(bytes.len() * 2 + 2);
    if bn.is_negative() {
        out.push('-');
    }
    if bytes.is_empty() {
        out.push_str("00");
    }
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

fn fingerprint_hex(leaf: &X509Ref) -> String {
    let Ok(digest) = leaf.digest(MessageDigest::sha256()) else {
        return String::new();
    };
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn sans(leaf: &X509Ref) -> Vec<San> {
    let Some(names) = leaf.subject_alt_names() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|gn| {
            if let Some(v) = gn.dnsname() {
                Some(San::Dns(v.to_owned()))
            } else if let Some(v) = gn.email() {
                Some(San::Email(v.to_owned()))
            } else if let Some(v) = gn.uri() {
                Some(San::Uri(v.to_owned()))
            } else if let Some(ip) = gn.ipaddress() {
                match *ip {
                    [a, b, c, d] => Some(San::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))),
                    _ => <[u8; 16]>::try_from(ip)
                        .ok()
                        .map(|v6| San::Ip(IpAddr::V6(Ipv6Addr::from(v6)))),
                }
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_support::*;

    #[test]
    fn typical_leaf() {
        let x509 = typical_cert(&[
            "dns:api.acme.test",
            "email:john.doe@example.com",
            "uri:spiffe://acme.test/x",
            "ip:10.0.0.1",
            "ip:2001:db8::1",
            "rid:1.2.3.4",
        ]);
        let c = ClientCert::from_x509(&x509);
        assert_eq!(c.subject_rfc2253(), "CN=client.1.local,O=Acme,C=FI");
        assert_eq!(c.subject_legacy(), "/C=FI/O=Acme/CN=client.1.local");
        assert_eq!(c.issuer_rfc2253(), "CN=Intermediate 1,O=Acme,C=FI");
        assert_eq!(c.issuer_legacy(), "/C=FI/O=Acme/CN=Intermediate 1");
        assert_eq!(
            c.subject(),
            &Dn::parse("/C=FI/O=Acme/CN=client.1.local").unwrap()
        );
        assert_eq!(c.subject_key(), &c.subject().key());
        assert_eq!(c.issuer_key(), &c.issuer().key());
        assert_eq!(c.serial(), "1A2B");
        assert_eq!(c.not_after(), "Sep 12 21:37:41 2034 GMT");
        assert_eq!(
            c.sans(),
            [
                San::Dns("api.acme.test".into()),
                San::Email("john.doe@example.com".into()),
                San::Uri("spiffe://acme.test/x".into()),
                San::Ip("10.0.0.1".parse().unwrap()),
                San::Ip("2001:db8::1".parse().unwrap()),
            ]
        );
        assert_eq!(
            c.san_header(),
            "DNS:api.acme.test, email:john.doe@example.com, URI:spiffe://acme.test/x, \
             IP:10.0.0.1, IP:2001:db8::1"
        );
        let der_sha = boring::hash::hash(MessageDigest::sha256(), &x509.to_der().unwrap()).unwrap();
        let want: String = der_sha.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(c.fingerprint(), want);
        assert_eq!(c.fingerprint().len(), 64);
        assert!(format!("{c:?}").contains("client.1.local"));
    }

    #[test]
    fn escaped_pem_is_url_escaped() {
        let x509 = typical_cert(&[]);
        let c = ClientCert::from_x509(&x509);
        let escaped = c.escaped_pem();
        assert!(
            escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
            "{escaped}"
        );
        assert!(
            escaped.ends_with("-----END%20CERTIFICATE-----%0A"),
            "{escaped}"
        );
        assert!(escaped
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        // Decoding gives the PEM back.
        let mut decoded = Vec::new();
        let mut bytes = escaped.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                decoded.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                decoded.push(b);
            }
        }
        assert_eq!(decoded, x509.to_pem().unwrap());
        assert!(c.sans().is_empty());
        assert_eq!(c.san_header(), "");
    }

    #[test]
    fn multi_valued_rdns_and_odd_names() {
        let subject = der_name(&[
            &[(C, PRINTABLE, b"FI")],
            &[(O, UTF8, b"Acme, Inc")],
            &[(CN, UTF8, b"j\xc3\xbcrgen"), (UID, UTF8, b"u+1")],
        ]);
        let issuer = der_name(&[&[(CN, UTF8, b"Intermediate 10")]]);
        let x509 = make_cert(&subject, &issuer, &[], &[0x00, 0x05], 2_041_709_861);
        let c = ClientCert::from_x509(&x509);
        assert_eq!(c.subject().rdns().len(), 3);
        assert_eq!(c.subject().rdns()[2].avas().len(), 2);
        assert_eq!(
            c.subject_rfc2253(),
            "UID=u\\+1+CN=j\\C3\\BCrgen,O=Acme\\, Inc,C=FI"
        );
        assert_eq!(
            c.subject_legacy(),
            "/C=FI/O=Acme, Inc/CN=j\\xC3\\xBCrgen+UID=u\\+1"
        );
        assert_eq!(
            c.subject_utf8(),
            Some("UID=u\\+1+CN=j\u{fc}rgen,O=Acme\\, Inc,C=FI")
        );
        assert_eq!(c.issuer_utf8(), None);
        assert_eq!(
            c.subject(),
            &Dn::parse("CN=j\u{fc}rgen+UID=u\\+1,O=Acme\\, Inc,C=FI").unwrap()
        );
        assert_eq!(c.issuer_rfc2253(), "CN=Intermediate 10");
        assert_eq!(c.serial(), "05");
    }

    #[test]
    fn header_values_never_carry_cr_lf_nul() {
        let subject = der_name(&[&[(CN, UTF8, "evil\r\nX-Injected: 1\0\x7f\u{fc}".as_bytes())]]);
        let x509 = make_cert(
            &subject,
            &subject,
            &["dns:a\r\nb", "uri:spiffe://x/a,b%c", "email:\0@x"],
            &[0],
            2_041_709_861,
        );
        let c = ClientCert::from_x509(&x509);
        for v in [
            c.subject_rfc2253(),
            c.subject_legacy(),
            c.issuer_rfc2253(),
            c.issuer_legacy(),
            c.serial(),
            c.fingerprint(),
            c.not_after(),
            &c.san_header(),
            &c.escaped_pem(),
        ] {
            assert!(!v.bytes().any(|b| b.is_ascii_control()), "{v:?}");
        }
        for v in [
            c.subject_rfc2253(),
            c.subject_legacy(),
            c.issuer_rfc2253(),
            c.issuer_legacy(),
        ] {
            assert!(v.bytes().all(|b| (b' '..=b'~').contains(&b)), "{v:?}");
        }
        assert_eq!(
            c.subject_rfc2253(),
            "CN=evil\\0D\\0AX-Injected: 1\\00\\7F\\C3\\BC"
        );
        assert_eq!(
            c.subject_legacy(),
            "/CN=evil\\x0D\\x0AX-Injected: 1\\x00\\x7F\\xC3\\xBC"
        );
        assert_eq!(
            c.subject_utf8(),
            Some("CN=evil\\0D\\0AX-Injected: 1\\00\\7F\u{fc}")
        );
        assert_eq!(
            c.san_header(),
            "DNS:a%0D%0Ab, URI:spiffe://x/a%2Cb%25c, email:%00@x"
        );
        assert_eq!(c.serial(), "00");
    }

    #[test]
    fn header_safe_escapes_only_controls() {
        assert!(matches!(header_safe("CN=Jürgen, O=a%b"), Cow::Borrowed(_)));
        assert_eq!(header_safe("a\r\nb\0c\x7fd\te"), "a%0D%0Ab%00c%7Fd%09e");
        assert_eq!(header_safe("ü\nü"), "ü%0Aü");
    }
}
