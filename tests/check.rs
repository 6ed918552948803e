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
