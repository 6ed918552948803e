//! `certgate check`: a good config passes; every broken one fails with a message that names the
//! config file, the offending key and (for paths) the file — and nothing ever panics.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const CONFIG: &str = "certgate.toml";

/// A valid config for `env` (nothing needs to listen for `check`).
fn good(config: &Config) -> String {
    config.render(free_port(), &["127.0.0.1:8888".parse().unwrap()])
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} not exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

fn assert_no_panic(what: &str, out: &CommandOut) {
    assert!(
        out.status.code().is_some(),
        "{what}: check was killed by a signal ({}):\n{}",
        out.status,
        out.all()
    );
    assert!(
        !out.all().contains("panicked"),
        "{what}: check panicked:\n{}",
        out.all()
    );
}

/// Runs check on `text`; asserts failure whose output names every string in `names`.
fn assert_rejected(what: &str, text: &str, names: &[&str]) {
    let env = Env::new();
    let path = env.write(CONFIG, text);
    let out = env.check(&path);
    assert_no_panic(what, &out);
    assert!(
        !out.status.success(),
        "{what}: check accepted it:\n{text}\n{}",
        out.all()
    );
    let all = out.all();
    for name in names {
        assert!(
            all.contains(name),
            "{what}: message does not name {name:?}:\n{all}"
        );
    }
}

#[test]
fn good_config_passes_from_any_working_directory() {
    let env = Env::new();
    let cfg = Config::new()
        .allow_subjects(&[dn::CLIENT1])
        .allow_issuers(&[dn::INTERMEDIATE1_LEGACY]);
    let path = env.write(CONFIG, good(&cfg));
    let out = env.check(&path);
    assert_no_panic("good", &out);
    assert!(
        out.status.success(),
        "good config refused:\n{}\n{}",
        good(&cfg),
        out.all()
    );
    assert!(
        out.stdout.contains("public"),
        "summary does not mention the listener:\n{}",
        out.all()
    );

    // Paths are relative to the config file, not to the working directory.
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .current_dir(Path::new("/")),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "check from / failed:\n{}", out.all());
}

#[test]
fn every_mode_checks() {
    for mode in ["off", "optional", "optional_no_ca", "required"] {
        let env = Env::new();
        let path = env.write(CONFIG, good(&Config::new().mode(mode)));
        let out = env.check(&path);
        assert_no_panic(mode, &out);
        assert!(out.status.success(), "mode {mode} refused:\n{}", out.all());
    }
}

#[test]
fn missing_certificate_file() {
    let text = replace_once(
        &good(&Config::new()),
        "pki/server-chain.pem",
        "pki/missing.pem",
    );
    assert_rejected(
        "missing certificate",
        &text,
        &[CONFIG, "certificate", "missing.pem"],
    );
}

#[test]
fn missing_ca_file() {
    let text = replace_once(
        &good(&Config::new()),
        "pki/client-ca-bundle.pem",
        "pki/no-ca.pem",
    );
    assert_rejected("missing ca", &text, &[CONFIG, "ca", "no-ca.pem"]);
}

#[test]
fn key_not_matching_certificate() {
    let text = replace_once(&good(&Config::new()), "pki/server.key", "pki/client1.key");
    assert_rejected("mismatched key", &text, &[CONFIG, "private_key"]);
}

#[test]
fn unknown_key_is_named() {
    let text = replace_once(&good(&Config::new()), "listen = ", "lisen = ");
    assert_rejected("unknown key", &text, &[CONFIG, "lisen"]);
    let text = replace_once(&good(&Config::new()), "mode = ", "mdoe = ");
    assert_rejected("unknown client_auth key", &text, &[CONFIG, "mdoe"]);
}

#[test]
fn invalid_rules_are_named() {
    let bad_dn = good(&Config::new().allow_subjects(&["CN"]));
    assert_rejected("DN without value", &bad_dn, &[CONFIG, "allow_subjects"]);
    let bad_regex = good(&Config::new().allow_subjects(&["~CN=(unclosed"]));
    assert_rejected("bad regex", &bad_regex, &[CONFIG, "allow_subjects"]);
    let bad_issuer = good(&Config::new().allow_issuers(&["/C=FI/CN"]));
    assert_rejected("bad issuer DN", &bad_issuer, &[CONFIG, "allow_issuers"]);
    let bad_san = good(&Config::new().allow_sans(&["nonsense"]));
    assert_rejected("SAN without kind", &bad_san, &[CONFIG, "allow_sans"]);
}

#[test]
fn undefined_upstream_is_named() {
    let text = replace_once(
        &good(&Config::new()),
        "upstream = \"app\"",
        "upstream = \"nosuch\"",
    );
    assert_rejected("undefined upstream", &text, &[CONFIG, "nosuch"]);
}

#[test]
fn bad_values_are_named() {
    let base = good(&Config::new());
    for (what, from, to, names) in [
        (
            "mode",
            "mode = \"required\"",
            "mode = \"sometimes\"",
            &["mode"][..],
        ),
        ("io", "io = ", "io = \"carrier-pigeon\"\n#", &["io"]),
        (
            "listen",
            "listen = \"127.0.0.1:",
            "listen = \"127.0.0.1:99999\"\n#",
            &["listen"],
        ),
        (
            "reject",
            "mode = \"required\"",
            "mode = \"required\"\nreject = \"sometimes\"",
            &["reject"],
        ),
    ] {
        let text = replace_once(&base, from, to);
        let mut names = names.to_vec();
        names.push(CONFIG);
        assert_rejected(what, &text, &names);
    }
    let bad_timeout = good(&Config::new().timeout("handshake", "10 parsecs"));
    assert_rejected("duration", &bad_timeout, &[CONFIG, "handshake"]);
}

#[test]
fn garbage_never_panics() {
    let env = Env::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", vec![]),
        ("binary", (0..=255u8).cycle().take(4096).collect()),
        ("not toml", b"[listener\nname = ".to_vec()),
        ("listener is a string", b"listener = \"x\"\n".to_vec()),
        ("no listeners", b"[runtime]\nworkers = 1\n".to_vec()),
        ("negative workers", b"[runtime]\nworkers = -1\n".to_vec()),
        ("huge workers", b"[runtime]\nworkers = 18446744073709551615\n".to_vec()),
        (
            "listener without tls files",
            b"[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"u\"\n[listener.tls]\n\
              [[upstream]]\nname = \"u\"\nservers = []\n"
                .to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let path = env.write(CONFIG, &bytes);
        let out = env.check(&path);
        assert_no_panic(what, &out);
        if !matches!(what, "no listeners" | "empty file") {
            assert!(!out.status.success(), "{what}: accepted:\n{}", out.all());
        }
    }
    let out = env.check(&env.path("does-not-exist.toml"));
    assert_no_panic("missing config", &out);
    assert!(!out.status.success());
    assert!(out.all().contains("does-not-exist.toml"), "{}", out.all());

    // A directory and an unreadable PEM (a directory in place of a file).
    let out = env.check(env.dir.path());
    assert_no_panic("directory as config", &out);
    assert!(!out.status.success());
    std::fs::create_dir(env.path("pki/dir.pem")).unwrap();
    let text = replace_once(&good(&Config::new()), "pki/server-chain.pem", "pki/dir.pem");
    let path = env.write(CONFIG, text);
    let out = env.check(&path);
    assert_no_panic("directory as certificate", &out);
    assert!(!out.status.success());
    // A PEM file with no certificate in it.
    env.write("pki/empty.pem", "");
    let text = replace_once(
        &good(&Config::new()),
        "pki/server-chain.pem",
        "pki/empty.pem",
    );
    let path = env.write(CONFIG, text);
    let out = env.check(&path);
    assert_no_panic("empty certificate file", &out);
    assert!(!out.status.success(), "{}", out.all());
}

/// The 1-based line of the only line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{needle:?} not on exactly one line of:\n{text}"
    );
    lines[0]
}

/// Runs check on `text`; asserts failure with `certgate.toml:<line of at>: <key>: ` followed
/// by a reason containing each of `reason`.
fn assert_refused_at(what: &str, text: &str, at: &str, key: &str, reason: &[&str]) -> String {
    let env = Env::new();
    assert_refused_in(&env, what, text, at, key, reason)
}

fn assert_refused_in(
    env: &Env,
    what: &str,
    text: &str,
    at: &str,
    key: &str,
    reason: &[&str],
) -> String {
    let path = env.write(CONFIG, text);
    let out = env.check(&path);
    assert_no_panic(what, &out);
    assert!(
        !out.status.success(),
        "{what}: check accepted it:\n{text}\n{}",
        out.all()
    );
    let all = out.all();
    let prefix = format!("{CONFIG}:{}: {key}: ", line_of(text, at));
    let Some(pos) = all.find(&prefix) else {
        panic!("{what}: no {prefix:?} in:\n{all}\nconfig:\n{text}");
    };
    let rest = &all[pos + prefix.len()..];
    for r in reason {
        assert!(rest.contains(r), "{what}: reason lacks {r:?}:\n{all}");
    }
    for code in [
        "[KEY_",
        "[BAD_",
        "[UNKNOWN_",
        "OPENSSL_internal",
        "invalid type: map",
    ] {
        assert!(!all.contains(code), "{what}: raw library error:\n{all}");
    }
    all
}

fn assert_accepted(what: &str, text: &str) -> CommandOut {
    let env = Env::new();
    let path = env.write(CONFIG, text);
    let out = env.check(&path);
    assert_no_panic(what, &out);
    assert!(
        out.status.success(),
        "{what}: refused:\n{text}\n{}",
        out.all()
    );
    out
}

#[test]
fn identity_header_names_that_break_http_are_refused() {
    let base = good(&Config::new());
    let with = |lines: &str| format!("{base}\n[listener.headers]\n{lines}\n");
    for (what, lines, at, key, reason) in [
        (
            "framing",
            "subject_dn = \"Content-Length\"",
            "Content-Length",
            "subject_dn",
            "framing",
        ),
        (
            "framing, CGI spelling",
            "serial = \"transfer_encoding\"",
            "transfer_encoding",
            "serial",
            "framing",
        ),
        (
            "host",
            "issuer_dn = \"Host\"",
            "\"Host\"",
            "issuer_dn",
            "routing",
        ),
        (
            "hop-by-hop",
            "verify = \"Connection\"",
            "\"Connection\"",
            "verify",
            "hop-by-hop",
        ),
        ("te", "san = \"TE\"", "\"TE\"", "san", "hop-by-hop"),
        (
            "upgrade",
            "cert = \"Upgrade\"",
            "Upgrade",
            "cert",
            "hop-by-hop",
        ),
        (
            "expect",
            "not_after = \"Expect\"",
            "Expect",
            "not_after",
            "hop-by-hop",
        ),
        (
            "keep-alive",
            "real_ip = \"Keep-Alive\"",
            "Keep-Alive",
            "real_ip",
            "hop-by-hop",
        ),
        (
            "pseudo",
            "subject_dn = \":authority\"",
            ":authority",
            "subject_dn",
            "pseudo-header",
        ),
        (
            "not a token",
            "subject_dn = \"X Client DN\"",
            "X Client DN",
            "subject_dn",
            "not a valid header name",
        ),
        (
            "duplicate",
            "subject_dn = \"X-Client\"\nissuer_dn = \"X-Client\"",
            "issuer_dn = ",
            "issuer_dn",
            "also the name of `subject_dn`",
        ),
        (
            "duplicate in another spelling",
            "subject_dn = \"X-Client\"\nissuer_dn = \"x_client\"",
            "x_client",
            "issuer_dn",
            "also the name of `subject_dn`",
        ),
        (
            "duplicate of another field's default",
            "san = \"X-SSL-Client-Serial\"",
            "san =",
            "san",
            "also the name of `serial`",
        ),
        (
            "strip entry not a token",
            "strip = [\"X-Ok\", \"X Bad\"]",
            "X Bad",
            "strip[1]",
            "not a valid header name",
        ),
        (
            "strip framing",
            "strip = [\"Content-Length\"]",
            "Content-Length",
            "strip[0]",
            "cannot be stripped",
        ),
    ] {
        let text = with(lines);
        assert_refused_at(
            what,
            &text,
            at,
            &format!("listener[0].headers.{key}"),
            &[reason],
        );
    }
    // Renaming stays possible, and disabling one name frees it for another field.
    assert_accepted(
        "renamed",
        &with("subject_dn = \"X-Client-DN\"\nissuer_dn = \"\"\nserial = \"X-SSL-Client-I-DN\""),
    );
}

#[test]
fn a_log_level_that_logs_nothing_is_refused() {
    let base = good(&Config::new());
    let text = replace_once(
        &base,
        "[runtime]",
        "[log]\nlevel = \"verbose\"\n\n[runtime]",
    );
    assert_refused_at(
        "verbose",
        &text,
        "verbose",
        "log.level",
        &[
            "\"verbose\" is not a level",
            "off, error, warn, info, debug, trace",
        ],
    );
    let text = replace_once(
        &base,
        "[runtime]",
        "[log]\nlevel = \"certgate=loud\"\n\n[runtime]",
    );
    assert_refused_at(
        "bad level",
        &text,
        "loud",
        "log.level",
        &["\"loud\" is not a level"],
    );
    let text = replace_once(
        &base,
        "[runtime]",
        "[log]\nlevel = \"warn,certgate::access=info\"\n\n[runtime]",
    );
    assert_accepted("directives", &text);
}

#[test]
fn zero_and_absurd_durations_are_refused() {
    for key in [
        "handshake",
        "request_head",
        "upstream_connect",
        "upstream_read",
        "body_idle",
    ] {
        let text = good(&Config::new().timeout(key, "0s"));
        assert_refused_at(
            key,
            &text,
            &format!("{key} ="),
            &format!("listener[0].timeouts.{key}"),
            &["must be longer than 0"],
        );
        let text = good(&Config::new().timeout(key, "2d"));
        assert_refused_at(
            key,
            &text,
            &format!("{key} ="),
            &format!("listener[0].timeouts.{key}"),
            &["\"2d\" is longer than the most allowed, \"1d\""],
        );
    }
    // 0 turns keep-alive off, as nginx's keepalive_timeout 0.
    assert_accepted(
        "keepalive_idle 0",
        &good(&Config::new().timeout("keepalive_idle", "0")),
    );
    for (what, line, key) in [
        (
            "session_timeout",
            "session_timeout = \"0s\"",
            "tls.session_timeout",
        ),
        (
            "rotation",
            "session_ticket_rotation = \"0s\"",
            "tls.session_ticket_rotation",
        ),
        (
            "rotation",
            "session_ticket_rotation = \"30d\"",
            "tls.session_ticket_rotation",
        ),
    ] {
        let text = good(&Config::new().tls_extra(line));
        assert_refused_at(what, &text, line, &format!("listener[0].{key}"), &[]);
    }
    for (line, key) in [
        ("interval = \"0s\"", "interval"),
        ("timeout = \"0ms\"", "timeout"),
        ("interval = \"3d\"", "interval"),
    ] {
        let text = good(
            &Config::new()
                .upstream_extra("[upstream.health]")
                .upstream_extra(line),
        );
        assert_refused_at(key, &text, line, &format!("upstream[0].health.{key}"), &[]);
    }
    let text = good(&Config::new().server_params(&["fail_timeout=0s"]));
    assert_refused_at(
        "fail_timeout",
        &text,
        "fail_timeout",
        "upstream[0].servers",
        &["max_fails=0"],
    );
}

#[test]
fn numeric_limits_are_refused_with_their_line() {
    let base = good(&Config::new());
    for (line, key, reason) in [
        (
            "max_header_bytes = 0",
            "limits.max_header_bytes",
            "0 is not from 1024 to 1048576",
        ),
        (
            "max_header_bytes = 1073741824",
            "limits.max_header_bytes",
            "not from 1024",
        ),
        (
            "max_connections = 0",
            "limits.max_connections",
            "not from 1",
        ),
    ] {
        let text = replace_once(
            &base,
            "\n[[upstream]]",
            &format!("\n[listener.limits]\n{line}\n\n[[upstream]]"),
        );
        assert_refused_at(line, &text, line, &format!("listener[0].{key}"), &[reason]);
    }
    let text = replace_once(&base, "workers = 1", "workers = 100000");
    assert_refused_at(
        "workers",
        &text,
        "workers",
        "runtime.workers",
        &["0 starts one"],
    );
    let text = replace_once(&base, "verify_depth = 2", "verify_depth = 1000");
    assert_refused_at(
        "verify_depth",
        &text,
        "verify_depth",
        "listener[0].client_auth.verify_depth",
        &["more than 32"],
    );
}

#[test]
fn structure_mistakes_name_section_line_and_fix() {
    let base = good(&Config::new());
    // A misspelt [[listener]] whose subtables are spelt right.
    let text = replace_once(&base, "[[listener]]", "[[listner]]");
    assert_refused_at(
        "listner",
        &text,
        "[[listner]]",
        "listner",
        &["unknown section `listner`, did you mean `listener`?"],
    );
    let text = replace_once(
        &base,
        "\n[[upstream]]",
        "\n[listener.timeout]\nhandshake = \"5s\"\n\n[[upstream]]",
    );
    assert_refused_at(
        "timeout",
        &text,
        "[listener.timeout]",
        "listener[0].timeout",
        &["unknown key `timeout`, did you mean `timeouts`?"],
    );
    // A subtable with no [[listener]] at all.
    let text = replace_once(&base, "[[listener]]", "[listener]");
    assert_refused_at(
        "[listener]",
        &text,
        "[listener]",
        "listener",
        &["[[listener]]"],
    );
    // Unknown values get the valid ones.
    let text = replace_once(&base, "mode = \"required\"", "mode = \"require\"");
    assert_refused_at(
        "mode",
        &text,
        "mode =",
        "listener[0].client_auth.mode",
        &["did you mean \"required\"?"],
    );
    // "10 s" says how to write it.
    let text = good(&Config::new().timeout("handshake", "10 s"));
    assert_refused_at(
        "10 s",
        &text,
        "handshake",
        "listener[0].timeouts.handshake",
        &["write it without spaces, as \"10s\""],
    );
}

#[test]
fn certificate_mistakes_are_explained() {
    let base = good(&Config::new());
    // The key of another certificate.
    let text = replace_once(&base, "pki/server.key", "pki/client1.key");
    assert_refused_at(
        "mismatch",
        &text,
        "private_key",
        "listener[0].tls.private_key",
        &["does not match the certificate (CN=localhost", "openssl"],
    );
    // The chain with the intermediate first.
    let env = Env::new();
    let chain = std::fs::read_to_string(&env.pki.server.cert).unwrap();
    let second = chain[1..].find("-----BEGIN CERTIFICATE-----").unwrap() + 1;
    env.write(
        "pki/reversed.pem",
        format!("{}{}", &chain[second..], &chain[..second]),
    );
    let text = replace_once(&base, "pki/server-chain.pem", "pki/reversed.pem");
    assert_refused_in(
        &env,
        "reversed chain",
        &text,
        "certificate",
        "listener[0].tls.certificate",
        &["wrong order", "leaf"],
    );
    // An encrypted key, as `openssl pkey -aes256` writes it.
    let out = run_bounded(
        std::process::Command::new("openssl")
            .args(["pkey", "-aes256", "-passout", "pass:secret", "-in"])
            .arg(&env.pki.server.key)
            .arg("-out")
            .arg(env.path("pki/encrypted.key")),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", out.all());
    let text = replace_once(&base, "pki/server.key", "pki/encrypted.key");
    assert_refused_in(
        &env,
        "encrypted key",
        &text,
        "private_key",
        "listener[0].tls.private_key",
        &["encrypted", "unencrypted", "openssl pkey -in"],
    );
    // Certificate and key swapped.
    let text = replace_once(&base, "pki/server-chain.pem", "pki/server.key");
    let text = replace_once(
        &text,
        "private_key = \"pki/server.key\"",
        "private_key = \"pki/server-chain.pem\"",
    );
    assert_refused_at(
        "swapped",
        &text,
        "certificate",
        "listener[0].tls.certificate",
        &["swapped"],
    );
}

#[test]
fn summary_speaks_the_config_language() {
    let out = assert_accepted("good", &good(&Config::new()));
    let io = io_driver();
    assert!(
        out.stdout.contains(&format!("io = \"{io}\"")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("client_auth.mode = \"required\""),
        "{}",
        out.stdout
    );
    for debug in ["Auto", "IoUring", "Epoll", "Required", "OptionalNoCa"] {
        assert!(!out.stdout.contains(debug), "{debug}: {}", out.stdout);
    }
}

#[test]
fn proxy_protocol_on_an_http_listener_says_what_to_change() {
    let text = good(&Config::new().upstream_extra("proxy_protocol = \"v2\""));
    assert_refused_at(
        "proxy_protocol",
        &text,
        "upstream = \"app\"",
        "listener[0].upstream",
        &["mode = \"tcp\""],
    );
}

#[test]
fn upstream_client_certificate_mistakes_are_explained() {
    let tls = |cert: &str, key: &str| {
        good(
            &Config::new()
                .upstream_extra("[upstream.tls]")
                .upstream_extra(&format!("certificate = \"{cert}\""))
                .upstream_extra(&format!("private_key = \"{key}\"")),
        )
    };
    assert_accepted("matching", &tls("pki/client1.pem", "pki/client1.key"));
    assert_refused_at(
        "mismatch",
        &tls("pki/client1.pem", "pki/client2.key"),
        "pki/client2.key",
        "upstream[0].tls.private_key",
        &["does not match the certificate (CN=client.1.local"],
    );
}

#[test]
fn min_version_and_proxy_protocol_take_the_spellings_users_write() {
    for v in ["1.2", "1.3", "TLSv1.2", "TLSv1.3", "tls1.3"] {
        let text = good(&Config::new().tls_extra(&format!("min_version = \"{v}\"")));
        assert_accepted(v, &text);
    }
    for (line, reason) in [
        (
            "min_version = \"1.4\"",
            "\"1.4\" is not a TLS version: write \"1.2\" or \"1.3\"",
        ),
        ("min_version = \"TLSv1.1\"", "TLS 1.0 and 1.1 are obsolete"),
        ("min_version = 1.3", "write it as a string: \"1.3\""),
    ] {
        let text = good(&Config::new().tls_extra(line));
        assert_refused_at(line, &text, line, "listener[0].tls.min_version", &[reason]);
    }
    let line = "proxy_protocol = \"v1\"";
    let text = good(&Config::new().upstream_extra(line));
    assert_refused_at(
        line,
        &text,
        line,
        "upstream[0].proxy_protocol",
        &["only \"v2\" is built", "write proxy_protocol = \"v2\""],
    );
}
