//! PROXY protocol v2 headers (haproxy.org's proxy-protocol.txt, section 2.2) carrying the
//! client's address and its TLS identity to a TCP-mode upstream.
//!
//! Standard TLVs: `PP2_TYPE_SSL` (0x20) with the client flags, the verify result and the
//! `PP2_SUBTYPE_SSL_VERSION`/`_CN`/`_CIPHER` sub-TLVs. The DNs do not fit a standard type, so
//! they use the application range: 0xE0 subject DN (RFC 2253), 0xE1 issuer DN, 0xE2 the verify
//! result as in `X-SSL-Client-Verify`, 0xE3 the certificate's SHA-256 fingerprint (hex).
//!
//! And the other way: [`parse`] reads the v1 or v2 header a trusted L4 balancer sends before
//! the client's bytes (section 2.1 and 2.2), a pure function over bytes so it can be fuzzed;
//! [`Cidr`] is one `trusted_proxies` entry.

use std::fmt;
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

// ---------------------------------------------------------------------------------------------
// Reading: the header a trusted L4 balancer (HAProxy `send-proxy`/`send-proxy-v2`, nginx
// `proxy_protocol on`, AWS NLB, IPVS with a PROXY module) puts before the client's bytes.
// ---------------------------------------------------------------------------------------------

/// The PROXY protocol version a listener expects (`[[listener]] proxy_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text header, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (HAProxy `send-proxy`).
    V1,
    /// The binary header (HAProxy `send-proxy-v2`).
    V2,
}

impl Version {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// Longest v1 header, `\r\n` included (proxy-protocol.txt, section 2.1).
pub const V1_MAX: usize = 107;
/// Most bytes accepted after a v2 header's 16-byte preamble: the addresses (at most 216 bytes,
/// for AF_UNIX) and TLVs. Balancers send a few hundred at most; the 16-bit field allows 64 KiB,
/// which a peer could use to make every connection hold a large buffer.
pub const V2_MAX_BODY: usize = 4096;
/// The first bytes of a v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length: the client's own bytes start here.
    pub len: usize,
    /// The client's address, `None` when the header carries none (v1 `UNKNOWN`, v2 `LOCAL` as
    /// sent by a balancer's health check, or a family other than TCP over IPv4/IPv6): the
    /// connection's own peer then stands.
    pub source: Option<SocketAddr>,
}

/// Why the bytes at the head of a connection are not a valid header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// No header at all: the bytes start as something else (shown).
    Missing(&'static str),
    /// The other version's header than the listener expects.
    WrongVersion(Version),
    /// A v1 line longer than 107 bytes, or a v2 body over [`V2_MAX_BODY`].
    TooLong(usize),
    /// A v1 line that does not follow the grammar (what is wrong).
    BadV1(&'static str),
    /// A v2 header with a bad version, command, or addresses shorter than their family needs.
    BadV2(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Missing(what) => write!(
                f,
                "no PROXY protocol header: the connection starts with {what} (is the balancer \
                 set to send one, e.g. HAProxy `send-proxy-v2`?)"
            ),
            HeaderError::WrongVersion(got) => write!(
                f,
                "a PROXY {} header, but this listener expects {}",
                got.as_str(),
                match got {
                    Version::V1 => "v2",
                    Version::V2 => "v1",
                }
            ),
            HeaderError::TooLong(n) => write!(f, "PROXY header too long (over {n} bytes)"),
            HeaderError::BadV1(why) => write!(f, "malformed PROXY v1 header: {why}"),
            HeaderError::BadV2(why) => write!(f, "malformed PROXY v2 header: {why}"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Parses the header at the start of `buf`, which holds what the connection sent so far.
///
/// # Return
/// `Ok(None)` if `buf` is a valid beginning but incomplete (read more and call again);
/// `Ok(Some(header))` once complete (`header.len` bytes belong to it).
///
/// # Errors
/// As soon as the bytes cannot begin a valid header of version `expected`; the verdict never
/// changes with more bytes. A pure function over bytes: no input makes it panic.
pub fn parse(buf: &[u8], expected: Version) -> Result<Option<Header>, HeaderError> {
    let v1 = starts_like(buf, V1_PREFIX);
    let v2 = starts_like(buf, &SIGNATURE);
    match (expected, v1, v2) {
        (Version::V1, true, _) => parse_v1(buf),
        (Version::V2, _, true) => parse_v2(buf),
        (Version::V1, _, true) if !buf.is_empty() => Err(HeaderError::WrongVersion(Version::V2)),
        (Version::V2, true, _) if !buf.is_empty() => Err(HeaderError::WrongVersion(Version::V1)),
        _ if buf.is_empty() => Ok(None),
        _ => Err(HeaderError::Missing(describe_start(buf))),
    }
}

/// `buf` and `prefix` agree on their common length.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

/// What a connection without a header starts with, for the log line.
fn describe_start(buf: &[u8]) -> &'static str {
    match buf.first() {
        Some(0x16) => "a TLS handshake",
        Some(b'A'..=b'Z') => "plain text (an HTTP request?)",
        _ => "unknown bytes",
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::TooLong(V1_MAX));
        }
        if window
            .iter()
            .any(|&b| !(b == b'\r' || (b' '..=b'~').contains(&b)))
        {
            return Err(HeaderError::BadV1("a byte that is not printable ASCII"));
        }
        if window.len() >= 2 && window[..window.len() - 1].contains(&b'\r') {
            return Err(HeaderError::BadV1("a lone CR inside the line"));
        }
        return Ok(None);
    };
    if end == 0 || window[end - 1] != b'\r' {
        return Err(HeaderError::BadV1("the line must end with CR LF"));
    }
    let line = &window[..end - 1];
    if line.iter().any(|&b| !(b' '..=b'~').contains(&b)) {
        return Err(HeaderError::BadV1("a byte that is not printable ASCII"));
    }
    // Printable ASCII: valid UTF-8.
    let line = std::str::from_utf8(line).map_err(|_| HeaderError::BadV1("not ASCII"))?;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let len = end + 1;
    let family = fields.next().unwrap_or("");
    let want_v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        // The rest of the line is to be ignored.
        "UNKNOWN" => return Ok(Some(Header { len, source: None })),
        _ => {
            return Err(HeaderError::BadV1(
                "the protocol must be TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(HeaderError::BadV1(
            "expected exactly: source address, destination address, source port, destination port, separated by single spaces",
        ));
    };
    let ip = |s: &str| -> Result<IpAddr, HeaderError> {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| HeaderError::BadV1("an address that does not parse"))?;
        if ip.is_ipv4() != want_v4 {
            return Err(HeaderError::BadV1(
                "an address of the other family than TCP4/TCP6 says",
            ));
        }
        Ok(ip)
    };
    let port = |s: &str| -> Result<u16, HeaderError> {
        let ok = !s.is_empty()
            && s.len() <= 5
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        ok.then(|| s.parse::<u16>().ok())
            .flatten()
            .ok_or(HeaderError::BadV1(
                "a port that is not a number from 0 to 65535",
            ))
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    ip(dst)?;
    port(dport)?;
    Ok(Some(Header {
        len,
        source: Some(source),
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let Some(fixed) = buf.get(..16) else {
        // A prefix of the signature so far; check the version byte once it arrives.
        return Ok(None);
    };
    let version_command = fixed[12];
    if version_command >> 4 != 2 {
        return Err(HeaderError::BadV2("the version is not 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(HeaderError::BadV2("the command is neither LOCAL nor PROXY")),
    };
    let family = fixed[13];
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if body_len > V2_MAX_BODY {
        return Err(HeaderError::TooLong(16 + V2_MAX_BODY));
    }
    let need = match family {
        0x11 => 12,
        0x21 => 36,
        _ => 0,
    };
    if body_len < need {
        return Err(HeaderError::BadV2(
            "the length is too short for the address family",
        ));
    }
    let Some(body) = buf.get(16..16 + body_len) else {
        return Ok(None);
    };
    let len = 16 + body_len;
    if local {
        return Ok(Some(Header { len, source: None }));
    }
    let source = match family {
        // TCP over IPv4: src, dst, sport, dport.
        0x11 => {
            let ip: [u8; 4] = body[0..4].try_into().unwrap_or_default();
            let port = u16::from_be_bytes([body[8], body[9]]);
            Some(SocketAddr::new(IpAddr::from(ip), port))
        }
        // TCP over IPv6.
        0x21 => {
            let ip: [u8; 16] = body[0..16].try_into().unwrap_or_default();
            let port = u16::from_be_bytes([body[32], body[33]]);
            Some(SocketAddr::new(IpAddr::from(ip), port))
        }
        // UNSPEC, UDP or AF_UNIX: no TCP client address to use.
        _ => None,
    };
    Ok(Some(Header { len, source }))
}

/// One `trusted_proxies` entry: an address block in CIDR notation, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a /32 or /128).
    ///
    /// # Errors
    /// A reason a person understands, with the fix where there is one.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| {
            format!("{addr:?} is not an IP address (write a block as \"10.0.0.0/8\" or \"fd00::/8\", one address as \"10.1.2.3\")")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => n,
                _ => {
                    return Err(format!(
                        "{p:?} is not a prefix length: after \"/\" write a number from 0 to {max}"
                    ))
                }
            },
        };
        let masked = mask(network, prefix);
        if masked != network {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix: write \"{masked}/{prefix}\" \
                 (or /{max} for the one address)"
            ));
        }
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` is in the block; an IPv4-mapped IPv6 address (a dual-stack socket's view
    /// of an IPv4 peer) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `ip` with the bits past `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(std::net::Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(std::net::Ipv6Addr::from(bits & m))
        }
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

    fn v1(s: &[u8]) -> Result<Option<Header>, HeaderError> {
        parse(s, Version::V1)
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n\x16\x03\x01";
        let h = v1(line).unwrap().unwrap();
        assert_eq!(h.len, line.len() - 3, "the client's bytes are left");
        assert_eq!(h.source, Some("192.0.2.7:56324".parse().unwrap()));
        let h = v1(b"PROXY TCP6 2001:db8::7 ::1 1 65535\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("[2001:db8::7]:1".parse().unwrap()));
        let h = v1(b"PROXY UNKNOWN whatever\r\n").unwrap().unwrap();
        assert_eq!((h.len, h.source), (24, None));
        // The longest valid line is exactly 107 bytes.
        let max = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        let mut long = max.to_vec();
        long.splice(14..14, std::iter::repeat_n(b'f', V1_MAX - max.len()));
        assert_eq!(long.len(), V1_MAX);
        assert_eq!(v1(&long).unwrap().unwrap().len, V1_MAX);
    }

    #[test]
    fn v1_every_prefix_is_incomplete_not_an_error() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n";
        for n in 0..line.len() {
            assert_eq!(v1(&line[..n]), Ok(None), "prefix of {n} bytes");
        }
    }

    #[test]
    fn v1_refusals() {
        let bad = |s: &[u8], want: &str| {
            let e = v1(s).unwrap_err().to_string();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(s));
        };
        bad(
            b"\x16\x03\x01\x02\x00",
            "no PROXY protocol header: the connection starts with a TLS handshake",
        );
        bad(b"GET / HTTP/1.1\r\n", "plain text");
        bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CR LF");
        bad(
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            "TCP4, TCP6 or UNKNOWN",
        );
        bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "exactly");
        bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "exactly");
        bad(b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "exactly");
        bad(b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "does not parse");
        bad(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "other family");
        bad(b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n", "other family");
        bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port");
        bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "port");
        bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "port");
        bad(b"PROXY TCP4 1.2.3.4\x00", "printable");
        bad(b"PROXY TCP4 1.2\r3.4", "lone CR");
        bad(&[b"PROXY ".as_slice(), &[b'x'; 200]].concat(), "too long");
        bad(&SIGNATURE, "expects v1");
    }

    fn v2(fam: u8, body: &[u8], cmd: u8) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v2_reads_what_header_writes() {
        let facts = TlsFacts {
            tls: true,
            verify: "SUCCESS",
            ..Default::default()
        };
        for (src, dst) in [
            ("192.0.2.7:56324", "10.0.0.1:443"),
            ("[2001:db8::7]:9", "[::1]:443"),
        ] {
            let mut bytes = header(src.parse().unwrap(), dst.parse().unwrap(), &facts);
            let len = bytes.len();
            bytes.extend_from_slice(b"\x16\x03\x01");
            let h = parse(&bytes, Version::V2).unwrap().unwrap();
            assert_eq!(h.len, len);
            assert_eq!(h.source, Some(src.parse().unwrap()));
            for n in 0..len {
                assert_eq!(parse(&bytes[..n], Version::V2), Ok(None), "prefix of {n}");
            }
        }
    }

    #[test]
    fn v2_local_and_other_families_carry_no_address() {
        let h = parse(&v2(0x00, &[], 0), Version::V2).unwrap().unwrap();
        assert_eq!((h.len, h.source), (16, None));
        // LOCAL with addresses (HAProxy health checks may send them): still none used.
        let h = parse(&v2(0x11, &[0; 12], 0), Version::V2).unwrap().unwrap();
        assert_eq!(h.source, None);
        // AF_UNIX stream, 216 bytes of paths.
        let h = parse(&v2(0x31, &[0; 216], 1), Version::V2)
            .unwrap()
            .unwrap();
        assert_eq!((h.len, h.source), (232, None));
    }

    #[test]
    fn v2_refusals() {
        let bad = |s: &[u8], want: &str| {
            let e = parse(s, Version::V2).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        let mut wrong_version = v2(0x11, &[0; 12], 1);
        wrong_version[12] = 0x11;
        bad(&wrong_version, "version is not 2");
        bad(&v2(0x11, &[0; 12], 2), "neither LOCAL nor PROXY");
        bad(&v2(0x11, &[0; 11], 1), "too short");
        bad(&v2(0x21, &[0; 35], 1), "too short");
        bad(&v2(0x11, &vec![0; V2_MAX_BODY + 1], 1), "too long");
        bad(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "expects v2");
        bad(b"\r\n\r\n\0\r\nQUIX", "no PROXY protocol header");
        bad(b"\x16\x03\x01", "TLS handshake");
        // The cap is checked on the preamble: no waiting for 64 KiB that will be refused.
        bad(&v2(0x11, &vec![0; 60000], 1)[..16], "too long");
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()), "v4-mapped");
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("::1").unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        let bad = |s: &str, want: &str| {
            let e = Cidr::parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        };
        bad("10.0.0.0/33", "from 0 to 32");
        bad("10.0.0.0/+8", "not a prefix length");
        bad("fd00::/129", "from 0 to 128");
        bad("10.0.0.1/8", "write \"10.0.0.0/8\"");
        bad("10.0.0/8", "not an IP address");
        bad("localhost", "not an IP address");
    }

    #[test]
    fn parse_keeps_its_properties_on_odd_input() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8).collect();
            if seed & 1 == 0 && !bytes.is_empty() {
                let n = bytes.len().min(16);
                bytes[..n].copy_from_slice(&v2(0x21, &[0; 36], 1)[..n]);
            }
            if seed & 2 == 0 {
                bytes.splice(0..0, b"PROXY TCP4 ".iter().copied());
            }
            properties(&bytes);
        }
        for seed in [
            b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n\x16".as_slice(),
            b"PROXY UNKNOWN\r\n",
            b"PROXY TCP4 1.2\r3",
            &v2(0x11, &[7; 12], 1),
            &v2(0x00, &[], 0),
        ] {
            properties(seed);
        }
    }

    /// What fuzz/proxy_in checks: a complete header lies within the input and its bound, every
    /// shorter prefix is merely incomplete, an undecided input is within the bound, and a
    /// refusal stands whatever follows.
    fn properties(data: &[u8]) {
        for (version, bound) in [(Version::V1, V1_MAX), (Version::V2, 16 + V2_MAX_BODY)] {
            match parse(data, version) {
                Ok(Some(h)) => {
                    assert!(h.len <= data.len() && h.len <= bound, "{version:?}: {h:?}");
                    assert_eq!(parse(&data[..h.len], version), Ok(Some(h)));
                    for k in 0..h.len {
                        assert_eq!(parse(&data[..k], version), Ok(None), "prefix {k}");
                    }
                }
                Ok(None) => assert!(data.len() < bound),
                Err(e) => {
                    let mut more = data.to_vec();
                    more.extend_from_slice(b" TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
                    assert!(parse(&more, version).is_err(), "{version:?}: {e}");
                }
            }
        }
    }
}
