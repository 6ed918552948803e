//! `X-Forwarded-Client-Cert` in Envoy's format, for service meshes behind certgate
//! (`[listener.headers] xfcc`).
//!
//! One element per proxy hop, elements separated by `,`, each a `;`-separated list of
//! `Key=value` pairs: `By=<URI SAN of our certificate>` (one per URI SAN), `Hash=<SHA-256 hex of
//! the client certificate's DER>`, `Subject="<RFC 2253 DN>"` (always quoted), then one `URI=` and
//! one `DNS=` per subjectAltName of those kinds. As Envoy documents it, a value holding `,`, `;`
//! or `=` is double-quoted and a `"` inside is written `\"`. Bytes a header cannot carry
//! (controls, non-ASCII, space) are percent-encoded in SAN values; the DN is already header-safe.

use super::RequestHead;
use crate::identity::San;

/// The header's name as sent.
pub const HEADER: &str = "X-Forwarded-Client-Cert";
/// The header's name as HTTP/2 spells it.
pub const LOWER: &str = "x-forwarded-client-cert";

/// This hop's element for a verified client certificate.
pub fn element(by: &[String], hash: &str, subject: &str, sans: &[San]) -> String {
    let mut out = String::with_capacity(128 + subject.len());
    for uri in by {
        pair(&mut out, "By", &header_safe(uri), false);
    }
    pair(&mut out, "Hash", hash, false);
    pair(&mut out, "Subject", subject, true);
    for san in sans {
        if let San::Uri(uri) = san {
            pair(&mut out, "URI", &header_safe(uri), false);
        }
    }
    for san in sans {
        if let San::Dns(name) = san {
            pair(&mut out, "DNS", &header_safe(name), false);
        }
    }
    out
}

/// The value sent in `forward` mode: the client's elements as it sent them (every
/// `X-Forwarded-Client-Cert` line, in order, joined by `,`), then `ours` if the client presented
/// a verified certificate. `None` when there is neither.
pub fn forwarded(head: &RequestHead, buf: &[u8], ours: Option<&str>) -> Option<Vec<u8>> {
    let client = head
        .headers
        .iter()
        .filter(|h| h.name.get(buf).eq_ignore_ascii_case(HEADER.as_bytes()))
        .map(|h| h.value.get(buf));
    join(client, ours)
}

/// [`forwarded`] over header values however they were read (an HTTP/2 header map): the
/// client's non-empty values in order, then `ours`, joined by `,`.
pub fn join<'a>(client: impl IntoIterator<Item = &'a [u8]>, ours: Option<&str>) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for value in client {
        let value = value.trim_ascii();
        if value.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(value);
    }
    if let Some(ours) = ours {
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(ours.as_bytes());
    }
    (!out.is_empty()).then_some(out)
}

/// Appends `;key=value`, quoting as Envoy does.
fn pair(out: &mut String, key: &str, value: &str, always_quote: bool) {
    if !out.is_empty() {
        out.push(';');
    }
    out.push_str(key);
    out.push('=');
    if always_quote || value.contains([',', ';', '=', '"']) {
        out.push('"');
        out.push_str(&value.replace('"', "\\\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// `value` with every byte outside visible ASCII percent-encoded (`%` itself included, so the
/// encoding is reversible).
fn header_safe(value: &str) -> std::borrow::Cow<'_, str> {
    if value.bytes().all(|b| b.is_ascii_graphic() && b != b'%') {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_format_and_order() {
        let sans = [
            San::Dns("client.acme.test".into()),
            San::Uri("spiffe://acme.test/ns/web/sa/frontend".into()),
            San::Email("a@acme.test".into()),
            San::Dns("alt.acme.test".into()),
        ];
        let e = element(
            &["spiffe://acme.test/edge".to_owned()],
            "ab12",
            "CN=client.1.local,O=Acme,C=FI",
            &sans,
        );
        assert_eq!(
            e,
            "By=spiffe://acme.test/edge;Hash=ab12;Subject=\"CN=client.1.local,O=Acme,C=FI\";\
             URI=spiffe://acme.test/ns/web/sa/frontend;DNS=client.acme.test;DNS=alt.acme.test"
        );
        // No URI SAN of ours, none in the certificate: only Hash and Subject.
        assert_eq!(element(&[], "ab", "CN=a", &[]), "Hash=ab;Subject=\"CN=a\"");
    }

    #[test]
    fn values_are_quoted_and_escaped_as_envoy_documents() {
        let e = element(
            &[],
            "00",
            "CN=say \\\"hi\\\",O=x",
            &[San::Uri("https://a.test/p?x=1;y=\"2\"".into())],
        );
        assert_eq!(
            e,
            "Hash=00;Subject=\"CN=say \\\\\"hi\\\\\",O=x\";URI=\"https://a.test/p?x=1;y=\\\"2\\\"\""
        );
        // Bytes a header cannot carry never reach it.
        let e = element(&[], "00", "CN=a", &[San::Uri("urn:a b\r\nX: 1%".into())]);
        assert_eq!(e, "Hash=00;Subject=\"CN=a\";URI=urn:a%20b%0D%0AX:%201%25");
    }

    #[test]
    fn forward_appends_after_every_client_element() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nx-forwarded-client-cert: By=x;Hash=1\r\n\
                    Accept: */*\r\nX-Forwarded-Client-Cert:  Hash=2 \r\n\r\n";
        let head = crate::http::parse_request(
            raw,
            &crate::http::Limits {
                max_head_bytes: 8192,
            },
        )
        .unwrap()
        .unwrap();
        let v = forwarded(&head, raw, Some("Hash=3;Subject=\"CN=a\"")).unwrap();
        assert_eq!(v, b"By=x;Hash=1,Hash=2,Hash=3;Subject=\"CN=a\"");
        assert_eq!(forwarded(&head, raw, None).unwrap(), b"By=x;Hash=1,Hash=2");
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let head = crate::http::parse_request(
            raw,
            &crate::http::Limits {
                max_head_bytes: 8192,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(forwarded(&head, raw, None), None);
        assert_eq!(forwarded(&head, raw, Some("Hash=3")).unwrap(), b"Hash=3");
    }
}
