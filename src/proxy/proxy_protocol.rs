//! PROXY protocol v2 headers (haproxy.org's proxy-protocol.txt, section 2.2) carrying the
//! client's address and its TLS identity to a TCP-mode upstream.
//!
//! Standard TLVs: `PP2_TYPE_SSL` (0x20) with the client flags, the verify result and the
//! `PP2_SUBTYPE_SSL_VERSION`/`_CN`/`_CIPHER` sub-TLVs. The DNs do not fit a standard type, so
//! they use the application range: 0xE0 subject DN (RFC 2253), 0xE1 issuer DN, 0xE2 the verify
//! result as in `X-SSL-Client-Verify`, 0xE3 the certificate's SHA-256 fingerprint (hex).

use std::net::{IpAddr, SocketAddr};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// TLV type of the TLS block: client flags, verify result, then the sub-TLVs below.
pub const PP2_TYPE_SSL: u8 = 0x20;
/// Sub-TLV of `PP2_TYPE_SSL`: the TLS version, e.g. `TLSv1.3`.
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
/// Sub-TLV of `PP2_TYPE_SSL`: the certificate's common name, UTF-8.
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
/// Sub-TLV of `PP2_TYPE_SSL`: the cipher suite name.
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
/// certgate's TLV (application range): subject DN, RFC 2253, escaped as in `X-SSL-Client-S-DN`.
pub const PP2_TYPE_CERTGATE_SUBJECT_DN: u8 = 0xE0;
/// certgate's TLV: issuer DN, RFC 2253.
pub const PP2_TYPE_CERTGATE_ISSUER_DN: u8 = 0xE1;
/// certgate's TLV: verify result as in `X-SSL-Client-Verify`.
pub const PP2_TYPE_CERTGATE_VERIFY: u8 = 0xE2;
/// certgate's TLV: SHA-256 fingerprint of the certificate, lowercase hex.
pub const PP2_TYPE_CERTGATE_FINGERPRINT: u8 = 0xE3;

/// Client flag: the connection used TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// Client flag: a certificate was presented in this connection's handshake.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// Client flag: a certificate was presented in the session (possibly resumed).
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// What the header says about the client's TLS.
#[derive(Debug, Default)]
pub struct TlsFacts<'a> {
    /// The client connection used TLS (false on a plain listener: no `PP2_TYPE_SSL` is sent).
    pub tls: bool,
    /// A certificate was presented (in this handshake or the resumed session).
    pub cert_presented: bool,
    /// The session was resumed rather than fully negotiated.
    pub resumed: bool,
    /// The certificate verified; the header's verify field is then 0.
    pub verified: bool,
    /// The negotiated protocol, e.g. `TLSv1.3`.
    pub version: &'a str,
    /// The negotiated cipher suite, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher: &'a str,
    /// The subject's common name, if it has one.
    pub common_name: Option<&'a str>,
    /// The subject DN, RFC 2253, header-safe.
    pub subject_dn: Option<&'a str>,
    /// The issuer DN, RFC 2253, header-safe.
    pub issuer_dn: Option<&'a str>,
    /// `SUCCESS`, `NONE` or `FAILED:<reason>`.
    pub verify: &'a str,
    /// SHA-256 fingerprint, lowercase hex.
    pub fingerprint: Option<&'a str>,
}

/// Most bytes after the 16-byte preamble: the length field has 16 bits.
const MAX_BODY: usize = u16::MAX as usize;

/// Appends one TLV. Callers reserve room first (see [`header`]), so `value` always fits.
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    if let Ok(len) = u16::try_from(value.len()) {
        out.push(kind);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(value);
    }
}

/// Builds a v2 PROXY header for a TCP connection from `src` to `dst`.
///
/// The whole body must fit the 16-bit length. Values are never cut (a cut DN would name someone
/// else): one that does not fit is left out whole. Room goes first to the SSL TLV's fixed part,
/// the version and the cipher, then the verify result, the fingerprint, the CN, the subject DN
/// and last the issuer DN. Real certificates come nowhere near the limit.
pub fn header<'a>(src: SocketAddr, dst: SocketAddr, facts: &TlsFacts<'a>) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x11
        }
        (s, d) => {
            body.extend_from_slice(&to_v6(s).octets());
            body.extend_from_slice(&to_v6(d).octets());
            0x21
        }
    };
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());

    if facts.tls {
        // The SSL TLV's head, client flags and verify field always fit (body is <= 36 bytes).
        let mut room = MAX_BODY - body.len() - 3 - 5;
        let mut fit = |value: Option<&'a str>| -> Option<&'a [u8]> {
            let value = value?.as_bytes();
            let need = 3 + value.len();
            if need > room {
                return None;
            }
            room -= need;
            Some(value)
        };
        let version = fit(Some(facts.version));
        let cipher = fit(Some(facts.cipher));
        let verify = fit(Some(facts.verify));
        let fingerprint = fit(facts.fingerprint);
        let common_name = fit(facts.common_name);
        let subject_dn = fit(facts.subject_dn);
        let issuer_dn = fit(facts.issuer_dn);

        let mut ssl = Vec::with_capacity(128);
        let mut client = PP2_CLIENT_SSL;
        if facts.cert_presented {
            client |= if facts.resumed {
                PP2_CLIENT_CERT_SESS
            } else {
                PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
            };
        }
        ssl.push(client);
        let verified: u32 = if facts.verified { 0 } else { 1 };
        ssl.extend_from_slice(&verified.to_be_bytes());
        let sub = [
            (PP2_SUBTYPE_SSL_VERSION, version),
            (PP2_SUBTYPE_SSL_CN, common_name),
            (PP2_SUBTYPE_SSL_CIPHER, cipher),
        ];
        for (kind, value) in sub {
            if let Some(value) = value {
                tlv(&mut ssl, kind, value);
            }
        }
        tlv(&mut body, PP2_TYPE_SSL, &ssl);
        let top = [
            (PP2_TYPE_CERTGATE_SUBJECT_DN, subject_dn),
            (PP2_TYPE_CERTGATE_ISSUER_DN, issuer_dn),
            (PP2_TYPE_CERTGATE_VERIFY, verify),
            (PP2_TYPE_CERTGATE_FINGERPRINT, fingerprint),
        ];
        for (kind, value) in top {
            if let Some(value) = value {
                tlv(&mut body, kind, value);
            }
        }
    }

    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    out.push(family); // TCP over IPv4 or IPv6
                      // At most MAX_BODY by the reservation above.
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_layout() {
        let facts = TlsFacts {
            tls: true,
            cert_presented: true,
            verified: true,
            version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            common_name: Some("client.1.local"),
            subject_dn: Some("CN=client.1.local,C=FI"),
            verify: "SUCCESS",
            ..Default::default()
        };
        let h = header(
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:443".parse().unwrap(),
            &facts,
        );
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len);
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert_eq!(&h[20..24], &[10, 0, 0, 2]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 5000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 443);
        // First TLV: PP2_TYPE_SSL with client flags and verify = 0.
        assert_eq!(h[28], PP2_TYPE_SSL);
        assert_eq!(
            h[31],
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
        );
        assert_eq!(&h[32..36], &[0, 0, 0, 0]);
        let text = String::from_utf8_lossy(&h);
        assert!(text.contains("CN=client.1.local,C=FI"));
    }

    #[test]
    fn mixed_families_use_ipv6() {
        let h = header(
            "[::1]:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            &TlsFacts::default(),
        );
        assert_eq!(h[13], 0x21);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 36);
    }

    /// TLVs of `b`, which they must tile exactly.
    fn tlvs(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert!(b.len() >= 3, "truncated TLV");
            let len = u16::from_be_bytes([b[1], b[2]]) as usize;
            assert!(b.len() >= 3 + len, "TLV past the end");
            out.push((b[0], b[3..3 + len].to_vec()));
            b = &b[3 + len..];
        }
        out
    }

    /// Found by fuzzing (fuzz/proxy_v2): DNs adding up to more than 64 KiB overflowed the 16-bit
    /// length, and a long value was cut, which would name another identity. A value that does
    /// not fit is now left out whole; the rest is intact and the header well-formed.
    #[test]
    fn oversized_identity_values_are_left_out_not_cut() {
        let subject = "CN=a,".repeat(9000) + "O=b";
        let issuer = "CN=ca,".repeat(8000) + "C=FI";
        let facts = TlsFacts {
            tls: true,
            cert_presented: true,
            verified: true,
            version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            common_name: Some("a"),
            subject_dn: Some(&subject),
            issuer_dn: Some(&issuer),
            verify: "SUCCESS",
            fingerprint: Some("ab"),
            ..Default::default()
        };
        let h = header(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            &facts,
        );
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len, "length field matches the body");
        let found = tlvs(&h[28..]);
        let value = |kind: u8| {
            found
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            value(PP2_TYPE_CERTGATE_SUBJECT_DN),
            Some(subject.into_bytes())
        );
        assert_eq!(value(PP2_TYPE_CERTGATE_ISSUER_DN), None, "left out whole");
        assert_eq!(value(PP2_TYPE_CERTGATE_VERIFY), Some(b"SUCCESS".to_vec()));
        assert_eq!(value(PP2_TYPE_CERTGATE_FINGERPRINT), Some(b"ab".to_vec()));
        assert!(value(PP2_TYPE_SSL).is_some());

        // One value alone over 64 KiB: left out, never cut to a prefix.
        let huge = "CN=x,".repeat(14000);
        let h = header(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
            &TlsFacts {
                tls: true,
                subject_dn: Some(&huge),
                verify: "SUCCESS",
                ..Default::default()
            },
        );
        let found = tlvs(&h[28..]);
        assert!(found
            .iter()
            .all(|(k, _)| *k != PP2_TYPE_CERTGATE_SUBJECT_DN));
        assert!(found.iter().any(|(k, _)| *k == PP2_TYPE_CERTGATE_VERIFY));
    }
}
