//! PROXY protocol v2 headers (haproxy.org's proxy-protocol.txt, section 2.2) carrying the
//! client's address and its TLS identity to a TCP-mode upstream.
//!
//! Standard TLVs: `PP2_TYPE_SSL` (0x20) with the client flags, the verify result and the
//! `PP2_SUBTYPE_SSL_VERSION`/`_CN`/`_CIPHER` sub-TLVs. The DNs do not fit a standard type, so
//! they use the application range: 0xE0 subject DN (RFC 2253), 0xE1 issuer DN, 0xE2 the verify
//! result as in `X-SSL-Client-Verify`, 0xE3 the certificate's SHA-256 fingerprint (hex).

use std::net::{IpAddr, SocketAddr};

pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

pub const PP2_TYPE_SSL: u8 = 0x20;
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub const PP2_TYPE_CERTGATE_SUBJECT_DN: u8 = 0xE0;
pub const PP2_TYPE_CERTGATE_ISSUER_DN: u8 = 0xE1;
pub const PP2_TYPE_CERTGATE_VERIFY: u8 = 0xE2;
pub const PP2_TYPE_CERTGATE_FINGERPRINT: u8 = 0xE3;

pub const PP2_CLIENT_SSL: u8 = 0x01;
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// What the header says about the client's TLS.
#[derive(Debug, Default)]
pub struct TlsFacts<'a> {
    pub tls: bool,
    /// A certificate was presented (in this handshake or the resumed session).
    pub cert_presented: bool,
    pub resumed: bool,
    pub verified: bool,
    pub version: &'a str,
    pub cipher: &'a str,
    pub common_name: Option<&'a str>,
    pub subject_dn: Option<&'a str>,
    pub issuer_dn: Option<&'a str>,
    pub verify: &'a str,
    pub fingerprint: Option<&'a str>,
}

fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    // Values here are DNs and names: far below 64 KiB; clamp rather than corrupt the framing.
    let len = value.len().min(u16::MAX as usize - 64);
    out.push(kind);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&value[..len]);
}

/// Builds a v2 PROXY header for a TCP connection from `src` to `dst`.
pub fn header(src: SocketAddr, dst: SocketAddr, facts: &TlsFacts<'_>) -> Vec<u8> {
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
        let verify: u32 = if facts.verified { 0 } else { 1 };
        ssl.extend_from_slice(&verify.to_be_bytes());
        tlv(&mut ssl, PP2_SUBTYPE_SSL_VERSION, facts.version.as_bytes());
        if let Some(cn) = facts.common_name {
            tlv(&mut ssl, PP2_SUBTYPE_SSL_CN, cn.as_bytes());
        }
        tlv(&mut ssl, PP2_SUBTYPE_SSL_CIPHER, facts.cipher.as_bytes());
        tlv(&mut body, PP2_TYPE_SSL, &ssl);
        if let Some(dn) = facts.subject_dn {
            tlv(&mut body, PP2_TYPE_CERTGATE_SUBJECT_DN, dn.as_bytes());
        }
        if let Some(dn) = facts.issuer_dn {
            tlv(&mut body, PP2_TYPE_CERTGATE_ISSUER_DN, dn.as_bytes());
        }
        tlv(&mut body, PP2_TYPE_CERTGATE_VERIFY, facts.verify.as_bytes());
        if let Some(fp) = facts.fingerprint {
            tlv(&mut body, PP2_TYPE_CERTGATE_FINGERPRINT, fp.as_bytes());
        }
    }

    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    out.push(family); // TCP over IPv4 or IPv6
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
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
}
