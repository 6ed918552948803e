//! One function per fuzz target: decode the input, run certgate's code, assert the property.
//! They live in the library (not in `fuzz_targets/`) because some properties need items that
//! are `pub(crate)` in certgate. A failed assertion is a crash that libFuzzer keeps.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::config::file::ConfigFile;
use crate::config::Config;
use crate::http::{
    parse_request, parse_response, rewrite_request, rewrite_response, ChunkDecoder, ChunkError,
    ChunkedScanner, Part,
    HeaderClass, Limits, RewriteCtx, MAX_HEADERS,
};
use crate::identity::rules::{Facts, RuleErrorKind};
use crate::identity::{header_safe, Dn, Rules, San};
use crate::proxy::proxy_protocol::{self, TlsFacts};

/// The file name configurations are parsed as. Its directory does not exist, so a relative
/// path in a fuzzed configuration can never name a real file.
const CONFIG_PATH: &str = "/nonexistent/certgate.toml";

/// The identity keys of `[listener.headers]`, in `IdentityHeaders` order.
const HEADER_KEYS: [&str; 12] = [
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

// ---------------------------------------------------------------------------------------------
// 1. Request head parse + rewrite.

/// Input: a first line of comma-separated header names (the 12 `[listener.headers]` names in
/// order, then `strip` entries; empty keeps a default), then the request bytes.
///
/// Property: after `rewrite_request`, the only header fields whose names the listener strips
/// (identity names configured or default, any case, `_` for `-`) are the ones the proxy itself
/// added, in order; and the rewritten head is one complete, valid HTTP/1.1 head.
pub fn request_rewrite(data: &[u8]) {
    let (names, request) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let Some(config) = listener_with_headers(names) else {
        return;
    };
    let listener = &config.listeners[0];
    let Ok(Some(head)) = parse_request(request, &Limits::default()) else {
        return;
    };

    let h = &listener.headers;
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
    let values: Vec<String> = (0..configured.len())
        .map(|i| format!("certgate-{i}"))
        .collect();
    let add: Vec<(&str, &[u8])> = configured
        .iter()
        .zip(&values)
        .filter_map(|(name, value)| name.as_deref().map(|n| (n, value.as_bytes())))
        .collect();
    let ctx = RewriteCtx {
        strip: &listener.strip,
        add: &add,
    };
    let mut out = Vec::new();
    rewrite_request(&head, request, &ctx, &mut out);

    let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS * 3 + 16];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "bytes after the head"),
        other => panic!("rewritten head does not parse: {other:?}\n{}", show(&out)),
    }
    // HTTP/1.1 upstream, except for an HTTP/1.0 client (its request goes on as 1.0).
    let minor = u8::from(head.version != http::Version::HTTP_10);
    assert_eq!(parsed.version, Some(minor), "wrong HTTP version");
    let kept: Vec<(&str, &[u8])> = parsed
        .headers
        .iter()
        .filter(|f| listener.strip.contains(f.name.as_bytes()))
        .map(|f| (f.name, f.value))
        .collect();
    assert_eq!(
        kept,
        add,
        "a client-sent identity header survived\nrequest:\n{}\nrewritten:\n{}",
        show(request),
        show(&out)
    );
}

/// A listener whose `[listener.headers]` come from `names`, through the real loader. `None`
/// when the loader refuses them, or for names that `check` refuses (framing, hop-by-hop and
/// `Host` names, issue 7 item 3), which cannot mean an identity header.
fn listener_with_headers(names: &[u8]) -> Option<Config> {
    let names = std::str::from_utf8(names).ok()?;
    let mut table = String::new();
    let mut strip = Vec::new();
    for (i, name) in names.split(',').enumerate().filter(|(_, n)| !n.is_empty()) {
        let name = name.trim();
        if !crate::http::is_token(name.as_bytes())
            || HeaderClass::of(name.as_bytes()) != HeaderClass::Other
        {
            return None;
        }
        match HEADER_KEYS.get(i) {
            Some(key) => table.push_str(&format!("{key} = \"{name}\"\n")),
            None => strip.push(format!("\"{name}\"")),
        }
    }
    let text = format!(
        "[[listener]]\nname = \"fuzz\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n\
         [listener.headers]\n{table}strip = [{}]\n\
         [[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n",
        strip.join(", ")
    );
    Config::parse(Path::new(CONFIG_PATH), &text).ok()
}

// ---------------------------------------------------------------------------------------------
// 2. Chunked decoder.

/// Input: a byte choosing how the body is cut into reads, then the body.
///
/// Properties: a scan consumes no more than it was given, all of it unless the body ended in
/// it, nothing once done; and where the body ends (or which error it has) does not depend on
/// how it was cut into reads. The decoder (`ChunkDecoder`, which turns an HTTP/1.1 chunked body
/// into HTTP/2 data and trailers), fed the body cut at other points, never panics, ends where the
/// scanner ends or fails with the scanner's error, leaves what follows the body in its buffer,
/// and its data is exactly the chunk payloads the scanner saw.
pub fn chunked(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = scan_in_pieces(body, |_| body.len().max(1));
    let mut cuts = Cuts::new(seed, 16);
    let cut = scan_in_pieces(body, |_| cuts.next());
    let bytewise = scan_in_pieces(body, |_| 1);
    assert_eq!(whole, cut, "seed {seed}\n{}", show(body));
    assert_eq!(whole, bytewise, "{}", show(body));

    let parts = scan_parts(body);
    assert_eq!(
        parts.as_ref().map(|p| (p.0, p.1)),
        whole.as_ref().map(|w| (w.0, w.1)),
        "advance and scan disagree\n{}",
        show(body)
    );
    let mut cuts = Cuts::new(seed.rotate_left(4), 64);
    let decoded = decode_in_pieces(body, |_| cuts.next());
    assert_eq!(decoded, parts, "decoder and scanner disagree, seed {seed}\n{}", show(body));
    let decoded = decode_in_pieces(body, |_| 1);
    assert_eq!(decoded, parts, "decoder byte by byte\n{}", show(body));
}

/// Read sizes from 1 to `max`, varying along the body (xorshift).
struct Cuts {
    state: u32,
    max: u32,
}

impl Cuts {
    fn new(seed: u8, max: u32) -> Self {
        Self {
            state: u32::from(seed) | 1,
            max,
        }
    }

    fn next(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        (self.state % self.max) as usize + 1
    }
}

/// The scanner over the whole body through `advance`: bytes of the body, whether it ended, and
/// the chunk payloads (the `Part::Data` bytes) in order.
fn scan_parts(body: &[u8]) -> Result<(usize, bool, Vec<u8>), ChunkError> {
    let mut scanner = ChunkedScanner::new();
    let mut payload = Vec::new();
    let mut at = 0;
    loop {
        let (n, part) = scanner.advance(&body[at..])?;
        assert!(n <= body.len() - at, "advance consumed more than given");
        if part == Part::Data {
            payload.extend_from_slice(&body[at..at + n]);
        }
        at += n;
        if part == Part::Done {
            assert_eq!(n, 0, "consumed after done");
            return Ok((at, true, payload));
        }
        if at == body.len() {
            // The last byte may have ended the body.
            return Ok((at, scanner.is_done(), payload));
        }
        assert!(n > 0, "advance stuck at {at}");
    }
}

/// The decoder over the body fed in pieces: bytes of the body (fed minus what is left in its
/// buffer), whether it ended, and the data it produced.
fn decode_in_pieces(
    body: &[u8],
    mut piece: impl FnMut(usize) -> usize,
) -> Result<(usize, bool, Vec<u8>), ChunkError> {
    let mut decoder = ChunkDecoder::default();
    let mut buf = bytes::BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    while fed < body.len() {
        let end = (fed + piece(fed)).min(body.len());
        buf.extend_from_slice(&body[fed..end]);
        fed = end;
        let (data, trailers) = decoder.decode(&mut buf)?;
        out.extend_from_slice(&data);
        if trailers.is_some() {
            let at = fed - buf.len();
            assert_eq!(&buf[..], &body[at..fed], "the decoder changed what follows the body");
            return Ok((at, true, out));
        }
        assert!(buf.is_empty(), "the decoder kept body bytes back");
    }
    Ok((fed, false, out))
}

fn scan_in_pieces(
    body: &[u8],
    mut piece: impl FnMut(usize) -> usize,
) -> Result<(usize, bool), ChunkError> {
    let mut scanner = ChunkedScanner::new();
    let mut at = 0;
    while at < body.len() {
        let end = (at + piece(at)).min(body.len());
        let input = &body[at..end];
        let progress = scanner.scan(input)?;
        assert!(progress.consumed <= input.len(), "consumed more than given");
        at += progress.consumed;
        if progress.done {
            assert!(scanner.is_done());
            let again = scanner.scan(&body[at..])?;
            assert_eq!(again.consumed, 0, "consumed after done");
            return Ok((at, true));
        }
        assert_eq!(
            progress.consumed,
            input.len(),
            "stopped early without an end"
        );
    }
    Ok((at, scanner.is_done()))
}

// ---------------------------------------------------------------------------------------------
// 3. Response head parser.

/// Input: a flags byte (request was HEAD, client keep-alive), then the response.
///
/// Properties: a parsed head lies inside the input; `rewrite_response` of it is a head that
/// parses again to the same status and the same body framing (a disagreement here is response
/// splitting towards the client).
pub fn response_head(data: &[u8]) {
    let Some((&flags, response)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 != 0;
    let keep_alive = flags & 2 != 0;
    let Ok(Some(head)) = parse_response(response, head_request, &Limits::default()) else {
        return;
    };
    assert!(head.head_len <= response.len(), "head past the input");
    for (name, value) in head.headers(response) {
        assert!(!name.is_empty(), "empty header name");
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n'),
            "CR or LF in a header value"
        );
    }

    let mut out = Vec::new();
    rewrite_response(&head, response, &mut out, keep_alive, &[]);
    if head.headers.len() + 1 >= MAX_HEADERS {
        return;
    }
    let limits = Limits {
        max_head_bytes: out.len() + 1,
    };
    let again = match parse_response(&out, head_request, &limits) {
        Ok(Some(again)) => again,
        other => panic!(
            "rewritten response does not parse: {other:?}\nfrom:\n{}\nrewritten:\n{}",
            show(response),
            show(&out)
        ),
    };
    assert_eq!(again.head_len, out.len(), "bytes after the head");
    assert_eq!(again.status, head.status);
    assert_eq!(
        again.body,
        head.body,
        "framing changed\nfrom:\n{}\nrewritten:\n{}",
        show(response),
        show(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. DN parser, rule compiler and matcher.

/// Input: UTF-8 lines. The first is a subject DN, the second an issuer DN; then rules, each
/// `s:` (allow_subjects), `i:` (allow_issuers) or `n:` (allow_sans) followed by the rule; `c:`
/// lines are the certificate's SANs (`dns:x`, `email:x`, `uri:x`, `ip:x`).
///
/// Properties: a parsed DN prints (RFC 2253 and legacy) to text that parses back to the same
/// DN; that printed text, as an exact rule or as an escaped `~regex`, admits the DN; the
/// compiled rules never panic, whatever the input; an exact rule admits exactly the DNs equal
/// to it.
pub fn dn_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let subject_text = lines.next().unwrap_or("");
    let issuer_text = lines.next().unwrap_or("");
    let (mut subjects, mut issuers, mut sans, mut cert_sans) = (vec![], vec![], vec![], vec![]);
    for line in lines {
        match line.split_at_checked(2) {
            Some(("s:", r)) => subjects.push(r.to_owned()),
            Some(("i:", r)) => issuers.push(r.to_owned()),
            Some(("n:", r)) => sans.push(r.to_owned()),
            Some(("c:", r)) => cert_sans.extend(san_of(r)),
            _ => subjects.push(line.to_owned()),
        }
    }

    let subject = Dn::parse(subject_text);
    let issuer = Dn::parse(issuer_text);
    for dn in [&subject, &issuer].into_iter().flatten() {
        round_trip(dn);
    }
    let rules = Rules::compile(&subjects, &issuers, &sans);

    let (Ok(subject), Ok(issuer)) = (subject, issuer) else {
        return;
    };
    let (subject_key, issuer_key) = (subject.key(), issuer.key());
    let subject_rfc2253 = header_safe(&subject.to_rfc2253()).into_owned();
    let issuer_rfc2253 = header_safe(&issuer.to_rfc2253()).into_owned();
    // As ClientCert keeps them: the UTF-8 spelling only when a value is not ASCII.
    let utf8 = |dn: &Dn| {
        dn.rdns()
            .iter()
            .flat_map(|r| r.avas())
            .any(|a| !a.value().is_ascii())
            .then(|| dn.to_string())
    };
    let (subject_utf8, issuer_utf8) = (utf8(&subject), utf8(&issuer));
    let facts = Facts {
        subject_key: &subject_key,
        issuer_key: &issuer_key,
        subject_rfc2253: &subject_rfc2253,
        issuer_rfc2253: &issuer_rfc2253,
        subject_utf8: subject_utf8.as_deref(),
        issuer_utf8: issuer_utf8.as_deref(),
        sans: &cert_sans,
        fingerprint: "",
    };

    if let Ok(rules) = &rules {
        let verdict = rules.check_facts(&facts, true);
        assert!(
            rules.check_facts(&facts, false).is_err(),
            "unverified admitted"
        );
        // Exact subject rules alone: admitted exactly when one of them is this DN.
        if !subjects.is_empty() && subjects.iter().all(|r| !r.starts_with('~')) {
            let exact = Rules::compile(&subjects, &[], &[]).expect("compiled above");
            // Each rule as the compiler reads it: OpenSSL's one-line form in certificate order.
            let equal = subjects.iter().any(|r| {
                crate::identity::rules::read_exact(r).is_ok_and(|(d, _)| d.key() == subject_key)
            });
            assert_eq!(
                exact.check_facts(&facts, true).is_ok(),
                equal,
                "{subjects:?}"
            );
        }
        let _ = verdict;
    }

    // The DN as nginx prints it, pasted into a rule, admits it: exact, legacy and regex forms.
    if subject.is_empty() {
        return;
    }
    for rule in [
        subject.to_rfc2253(),
        subject.to_legacy(),
        format!("~{}", regex::escape(&subject_rfc2253)),
    ] {
        let compiled = match Rules::compile(std::slice::from_ref(&rule), &[], &[]) {
            Ok(c) => c,
            // A DN stored most general first prints country first, which `check` refuses as
            // RFC 2253 on purpose (it is far more often a rule pasted in the wrong order); the
            // legacy form, also tried here, is the documented way to write it.
            Err(e) if matches!(e.kind, RuleErrorKind::ForwardOrder { .. }) => continue,
            Err(e) => panic!("{rule:?} does not compile: {e}"),
        };
        assert!(
            compiled.check_facts(&facts, true).is_ok(),
            "{rule:?} does not admit {subject_text:?}"
        );
    }
}

fn round_trip(dn: &Dn) {
    for printed in [dn.to_rfc2253(), dn.to_legacy()] {
        if dn.is_empty() {
            continue;
        }
        match Dn::parse(&printed) {
            Ok(again) => assert_eq!(again.key(), dn.key(), "{printed:?} parsed to another DN"),
            Err(e) => panic!("{printed:?} (printed from {dn:?}) does not parse: {e}"),
        }
    }
}

fn san_of(text: &str) -> Option<San> {
    let (kind, value) = text.split_once(':')?;
    Some(match kind {
        "dns" => San::Dns(value.to_owned()),
        "email" => San::Email(value.to_owned()),
        "uri" => San::Uri(value.to_owned()),
        "ip" => San::Ip(value.parse().ok()?),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// 5. Configuration loader.

/// Input: a configuration file. Skipped when it names an absolute path (the fuzzer must not read
/// `/dev/zero`) or an address that needs a DNS lookup (no network; and slow).
///
/// Properties: no panic; an error names the file, a line inside the text, and a reason.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = toml::from_str::<ConfigFile>(text) {
        if !safe_to_load(&file) {
            return;
        }
    }
    match Config::parse(Path::new(CONFIG_PATH), text) {
        Ok(config) => {
            assert!(!config.listeners.is_empty());
            assert!(config.runtime.workers >= 1);
            for l in &config.listeners {
                assert!(l.upstream < config.upstreams.len());
            }
            let _ = config.summary();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with(CONFIG_PATH), "{message}");
            assert!(!e.reason.trim().is_empty(), "no reason: {message}");
            if let Some(line) = e.line {
                assert!(
                    line >= 1 && line <= text.lines().count() + 1,
                    "line {line} outside the file: {message}"
                );
            }
        }
    }
}

fn safe_to_load(file: &ConfigFile) -> bool {
    let absolute = |p: &str| p.trim_start().starts_with('/');
    // The loader opens (and may create) the access-log file: never anywhere outside
    // CONFIG_PATH's directory, which does not exist.
    if let crate::config::file::AccessFile::Target(t) = &file.log.access {
        if absolute(t) {
            return false;
        }
    }
    for l in &file.listener {
        let listen = l.listen.get_ref().trim();
        let listen = match listen.strip_prefix("*:") {
            Some(port) => format!("0.0.0.0:{port}"),
            None => listen.to_owned(),
        };
        if may_resolve(&listen) {
            return false;
        }
        if let Some(t) = &l.tls {
            let mut paths: Vec<&str> = t
                .certificate
                .get_ref()
                .0
                .iter()
                .map(String::as_str)
                .collect();
            paths.extend(t.private_key.get_ref().0.iter().map(String::as_str));
            paths.extend(t.session_ticket_keys.iter().map(|p| p.get_ref().as_str()));
            if paths.iter().any(|p| absolute(p)) {
                return false;
            }
        }
        if let Some(ca) = l.client_auth.as_ref().and_then(|a| a.ca.as_ref()) {
            if absolute(ca.get_ref()) {
                return false;
            }
        }
    }
    for u in &file.upstream {
        for entry in u.servers.get_ref() {
            if entry
                .get_ref()
                .split_whitespace()
                .next()
                .is_some_and(may_resolve)
            {
                return false;
            }
        }
        if let Some(t) = &u.tls {
            let paths = [&t.ca, &t.certificate, &t.private_key, &t.bundle];
            if paths
                .iter()
                .flat_map(|p| p.iter())
                .any(|p| absolute(p.get_ref()))
            {
                return false;
            }
        }
    }
    true
}

/// Whether `to_socket_addrs` would ask the resolver: not a socket address, but `host:port`.
fn may_resolve(s: &str) -> bool {
    s.parse::<SocketAddr>().is_err()
        && s.rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

// ---------------------------------------------------------------------------------------------
// 6. PROXY protocol v2 encoding.

/// Input: flags, address bytes, then the strings (version, cipher, CN, subject DN, issuer DN,
/// verify, fingerprint) separated by 0xFF, each led by a byte that repeats it (to reach the
/// 64 KiB a header can hold).
///
/// Properties: the header is well-formed (signature, command, family, length, TLVs that tile
/// the body exactly, sub-TLVs that tile the SSL TLV); addresses and ports round-trip; every
/// identity value present is exactly the one given (a truncated DN would name someone else);
/// the SSL TLV is always there, and so is the verify result unless absurdly long.
pub fn proxy_v2(data: &[u8]) {
    if data.len() < 14 {
        return;
    }
    let (fixed, rest) = data.split_at(14);
    let flags = fixed[0];
    let v6 = flags & 0x10 != 0;
    let ip = |b: &[u8]| -> IpAddr {
        if v6 {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
    };
    let src = SocketAddr::new(ip(&fixed[1..5]), u16::from_be_bytes([fixed[9], fixed[10]]));
    let dst = SocketAddr::new(
        if flags & 0x20 != 0 {
            ip(&fixed[5..9])
        } else {
            IpAddr::V4(Ipv4Addr::new(fixed[5], fixed[6], fixed[7], fixed[8]))
        },
        u16::from_be_bytes([fixed[11], fixed[12]]),
    );
    let strings: Vec<String> = rest
        .split(|&b| b == 0xFF)
        .map(|s| match s.split_first() {
            Some((&rep, text)) => {
                let text = String::from_utf8_lossy(text);
                let mut out = text.repeat(1 + usize::from(rep) * 8);
                let mut cap = (usize::from(rep) * 300).max(text.len());
                while !out.is_char_boundary(cap.min(out.len())) {
                    cap -= 1;
                }
                out.truncate(cap.min(out.len()));
                out
            }
            None => String::new(),
        })
        .collect();
    let s = |i: usize| strings.get(i).map(String::as_str);
    let facts = TlsFacts {
        tls: flags & 1 != 0,
        cert_presented: flags & 2 != 0,
        resumed: flags & 4 != 0,
        verified: flags & 8 != 0,
        version: s(0).unwrap_or(""),
        cipher: s(1).unwrap_or(""),
        common_name: s(2),
        subject_dn: s(3),
        issuer_dn: s(4),
        verify: s(5).unwrap_or(""),
        fingerprint: s(6),
    };
    let header = proxy_protocol::header(src, dst, &facts);
    check_proxy_v2(&header, src, dst, &facts);
}

fn check_proxy_v2(h: &[u8], src: SocketAddr, dst: SocketAddr, facts: &TlsFacts<'_>) {
    assert!(h.len() >= 16, "short header");
    assert_eq!(h[..12], proxy_protocol::SIGNATURE);
    assert_eq!(h[12], 0x21, "version 2, PROXY");
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    assert_eq!(
        h.len(),
        16 + len,
        "length field {len} but {} bytes follow",
        h.len() - 16
    );
    let body = &h[16..];
    let both_v4 = src.is_ipv4() && dst.is_ipv4();
    let addr_len = if both_v4 { 12 } else { 36 };
    assert_eq!(h[13], if both_v4 { 0x11 } else { 0x21 }, "family");
    assert!(body.len() >= addr_len);
    let mapped = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let (s_ip, d_ip, ports): (IpAddr, IpAddr, &[u8]) = if both_v4 {
        let a = |o: usize| {
            IpAddr::V4(Ipv4Addr::new(
                body[o],
                body[o + 1],
                body[o + 2],
                body[o + 3],
            ))
        };
        (a(0), a(4), &body[8..12])
    } else {
        let a = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&body[o..o + 16]);
            IpAddr::V6(Ipv6Addr::from(b))
        };
        (a(0), a(16), &body[32..36])
    };
    if both_v4 {
        assert_eq!((s_ip, d_ip), (src.ip(), dst.ip()));
    } else {
        assert_eq!(
            (s_ip, d_ip),
            (IpAddr::V6(mapped(src.ip())), IpAddr::V6(mapped(dst.ip())))
        );
    }
    assert_eq!(u16::from_be_bytes([ports[0], ports[1]]), src.port());
    assert_eq!(u16::from_be_bytes([ports[2], ports[3]]), dst.port());

    let tlvs = tlvs(&body[addr_len..]);
    if !facts.tls {
        assert!(tlvs.is_empty(), "TLVs without TLS");
        return;
    }
    let find = |kind: u8| tlvs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
    let ssl = find(proxy_protocol::PP2_TYPE_SSL).expect("no PP2_TYPE_SSL");
    assert!(ssl.len() >= 5, "SSL TLV too short");
    let verify = u32::from_be_bytes([ssl[1], ssl[2], ssl[3], ssl[4]]);
    assert_eq!(verify == 0, facts.verified, "verify field");
    let subs = self::tlvs(&ssl[5..]);
    let sub = |kind: u8| subs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
    let exact = |what: &str, got: Option<&[u8]>, want: Option<&str>| {
        if let Some(got) = got {
            assert_eq!(Some(got), want.map(str::as_bytes), "{what} altered");
        }
    };
    exact(
        "version",
        sub(proxy_protocol::PP2_SUBTYPE_SSL_VERSION),
        Some(facts.version),
    );
    exact(
        "CN",
        sub(proxy_protocol::PP2_SUBTYPE_SSL_CN),
        facts.common_name,
    );
    exact(
        "cipher",
        sub(proxy_protocol::PP2_SUBTYPE_SSL_CIPHER),
        Some(facts.cipher),
    );
    exact(
        "subject DN",
        find(proxy_protocol::PP2_TYPE_CERTGATE_SUBJECT_DN),
        facts.subject_dn,
    );
    exact(
        "issuer DN",
        find(proxy_protocol::PP2_TYPE_CERTGATE_ISSUER_DN),
        facts.issuer_dn,
    );
    exact(
        "fingerprint",
        find(proxy_protocol::PP2_TYPE_CERTGATE_FINGERPRINT),
        facts.fingerprint,
    );
    exact(
        "verify",
        find(proxy_protocol::PP2_TYPE_CERTGATE_VERIFY),
        Some(facts.verify),
    );
    // Real versions, ciphers and verify results are short; room goes to them before any name.
    if facts.version.len() + facts.cipher.len() + facts.verify.len() <= 4096 {
        assert!(
            find(proxy_protocol::PP2_TYPE_CERTGATE_VERIFY).is_some(),
            "verify left out"
        );
    }
}

/// Splits TLVs that must tile `b` exactly.
fn tlvs(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 3, "truncated TLV head");
        let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
        assert!(b.len() >= 3 + len, "TLV of {len} bytes past the end");
        out.push((b[0], &b[3..3 + len]));
        b = &b[3 + len..];
    }
    out
}

/// Bytes for an assertion message.
fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(2000)]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol in: the header a trusted balancer sends, parsed before TLS.

/// Any bytes, parsed as each version: a complete header lies within the input and its bound,
/// every shorter prefix of it is merely incomplete, an incomplete input is within the bound,
/// and a refusal stands whatever follows.
pub fn proxy_in(data: &[u8]) {
    use proxy_protocol::{parse, Version, V1_MAX, V2_MAX_BODY};
    for (version, bound) in [(Version::V1, V1_MAX), (Version::V2, 16 + V2_MAX_BODY)] {
        match parse(data, version) {
            Ok(Some(h)) => {
                assert!(h.len <= data.len() && h.len <= bound, "{version:?}: {h:?}");
                assert_eq!(parse(&data[..h.len], version), Ok(Some(h)));
                for k in 0..h.len.min(256) {
                    assert_eq!(
                        parse(&data[..k], version),
                        Ok(None),
                        "{version:?} prefix {k}"
                    );
                }
            }
            Ok(None) => assert!(
                data.len() < bound,
                "{version:?}: {} bytes undecided",
                data.len()
            ),
            Err(e) => {
                let mut more = data.to_vec();
                more.extend_from_slice(b" TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
                assert!(
                    parse(&more, version).is_err(),
                    "{version:?}: {e} then accepted"
                );
            }
        }
    }
}
