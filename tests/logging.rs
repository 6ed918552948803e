//! The log as an operator reads it: access lines a client cannot forge fields into.

mod common;

use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------
// Reading the log
// ---------------------------------------------------------------------------------------------

/// One logfmt line after tracing's `<time> <LEVEL> <target>: ` prefix, as a logfmt reader
/// splits it: bare words are keys without value, quoted values are unescaped (JSON escapes).
/// Colour codes are dropped first: this reads fields, `no_colour_codes` checks the codes.
fn logfmt(line: &str) -> Vec<(String, Option<String>)> {
    let line = strip_ansi(line);
    let rest = line.split_once(": ").map_or(&line[..], |(_, r)| r);
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return out;
        }
        if chars.peek() != Some(&'=') {
            out.push((key, None));
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('u') => {
                            let hex: String = chars.by_ref().take(4).collect();
                            let code = u32::from_str_radix(&hex, 16).expect("\\u escape");
                            value.push(char::from_u32(code).expect("code point"));
                        }
                        Some(c) => value.push(c),
                        None => panic!("dangling backslash in {line:?}"),
                    },
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, Some(value)));
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// The values of `key` in a parsed line.
fn values<'a>(fields: &'a [(String, Option<String>)], key: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == key)
        .filter_map(|(_, v)| v.as_deref())
        .collect()
}

/// The log's lines that contain `needle`, waiting (bounded) until there are `n`.
fn wait_lines(log: impl Fn() -> String, needle: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = log();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} lines with {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn access_lines(gate: &Gate, n: usize) -> Vec<String> {
    wait_lines(|| gate.log(), "certgate::access", n)
}

/// A self-signed client certificate with `cn` as its common name.
fn self_signed(env: &Env, stem: &str, cn: &str) -> CertKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    CertKey {
        cert: env.write(&format!("{stem}.pem"), cert.pem()),
        key: env.write(&format!("{stem}.key"), key.serialize_pem()),
    }
}

// ---------------------------------------------------------------------------------------------
// Item 2: client-controlled values cannot forge fields
// ---------------------------------------------------------------------------------------------

#[test]
fn a_forged_common_name_stays_inside_the_dn_field() {
    let env = Env::new();
    let cn = "mallory\" status=200 verify=SUCCESS\nforged=yes status=200";
    let mallory = self_signed(&env, "mallory", cn);
    let gate = Gate::start_in(env, Config::new());
    let out = gate.curl("/").cert(&mallory).run();
    assert_eq!(out.status, 400, "{out:?}");

    let lines = access_lines(&gate, 1);
    assert_eq!(lines.len(), 1, "one request, one access line: {lines:#?}");
    let log = gate.log();
    assert!(
        !log.lines().any(|l| l.starts_with("forged=")),
        "a line was injected:\n{log}"
    );
    let fields = logfmt(&lines[0]);
    assert_eq!(values(&fields, "status"), ["400"], "{}", lines[0]);
    let verify = values(&fields, "verify");
    assert_eq!(verify.len(), 1, "{}", lines[0]);
    assert!(verify[0].starts_with("FAILED:"), "{}", lines[0]);
    assert!(values(&fields, "forged").is_empty(), "{}", lines[0]);
    let dn = values(&fields, "dn");
    assert_eq!(dn.len(), 1, "{}", lines[0]);
    assert!(
        dn[0].contains("status=200 verify=SUCCESS"),
        "the DN is logged whole: {}",
        lines[0]
    );
}

#[test]
fn the_path_and_method_are_quoted() {
    let gate = Gate::start(Config::new());
    let mut c = gate.connect(Some(&gate.pki().client1));
    let r = c.roundtrip(&get(&gate.host(), "/a\"b?x=1%20status=200", &[]));
    assert_eq!(r.status, 200);
    let lines = access_lines(&gate, 1);
    let fields = logfmt(&lines[0]);
    assert_eq!(
        values(&fields, "path"),
        ["/a\"b?x=1%20status=200"],
        "{}",
        lines[0]
    );
    assert_eq!(values(&fields, "method"), ["GET"], "{}", lines[0]);
    assert_eq!(values(&fields, "status"), ["200"], "{}", lines[0]);
    assert_eq!(values(&fields, "dn"), [dn::CLIENT1], "{}", lines[0]);
}
