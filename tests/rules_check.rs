//! DN rules that cannot mean what was written: `certgate check` refuses a forward-order DN and a
//! slash-form regex with the spelling that would match, and reads OpenSSL's one-line output in
//! certificate order with a warning; the spellings it suggests pass and admit the client.

mod common;

use common::*;

const CONFIG: &str = "certgate.toml";

/// Writes `config` and runs `check` on it; returns the output and the config's text.
fn check(env: &Env, config: &Config) -> (CommandOut, String) {
    let text = config.render(free_port(), &["127.0.0.1:8888".parse().unwrap()]);
    let path = env.write(CONFIG, &text);
    (env.check(&path), text)
}

/// The 1-based line of the first line of `text` that starts with `key`.
fn line_of(text: &str, key: &str) -> usize {
    text.lines().position(|l| l.starts_with(key)).unwrap() + 1
}

fn assert_refused(config: Config, key: &str, want: &[&str]) {
    let env = Env::new();
    let (out, text) = check(&env, &config);
    let all = out.all();
    assert!(!out.status.success(), "check accepted:\n{text}\n{all}");
    assert!(!all.contains("panicked"), "{all}");
    let family = key.rsplit('.').next().unwrap().split('[').next().unwrap();
    let prefix = format!(
        "{}:{}: listener[0].{key}: ",
        env.path(CONFIG).display(),
        line_of(&text, family)
    );
    assert!(all.contains(&prefix), "no {prefix:?} in:\n{all}");
    for w in want {
        assert!(all.contains(w), "no {w:?} in:\n{all}");
    }
}

/// Asserts that check passes; returns its warnings (stderr lines).
fn passes(config: Config) -> Vec<String> {
    let env = Env::new();
    let (out, text) = check(&env, &config);
    assert!(
        out.status.success(),
        "check refused:\n{text}\n{}",
        out.all()
    );
    out.stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn forward_order_dn_is_refused_with_the_spelling_that_matches() {
    assert_refused(
        Config::new().allow_subjects(&["C=DE,O=Acme Corp,OU=Payments,CN=alice"]),
        "client_auth.allow_subjects[0]",
        &[
            "\"C=DE,O=Acme Corp,OU=Payments,CN=alice\" lists the country first: certificate DNs \
             in RFC 2253 form list the most specific part first; write \
             \"CN=alice,OU=Payments,O=Acme Corp,C=DE\" (or the legacy \
             \"/C=DE/O=Acme Corp/OU=Payments/CN=alice\")",
            // The way out for certificates that really store the country last.
            "write the legacy \"/CN=alice/OU=Payments/O=Acme Corp/C=DE\"",
        ],
    );
    assert_refused(
        Config::new().allow_issuers(&[dn::CLIENT1, "C=FI,O=Acme,CN=Intermediate 1"]),
        "client_auth.allow_issuers[1]",
        &[
            "lists the country first",
            "write \"CN=Intermediate 1,O=Acme,C=FI\"",
        ],
    );
    // The suggested spellings pass without a word.
    for rule in [
        "CN=alice,OU=Payments,O=Acme Corp,C=DE",
        "/C=DE/O=Acme Corp/OU=Payments/CN=alice",
        "/CN=alice/OU=Payments/O=Acme Corp/C=DE",
    ] {
        let warnings = passes(Config::new().allow_subjects(&[rule]));
        assert!(warnings.is_empty(), "{rule}: {warnings:?}");
    }
}

#[test]
fn slash_form_regex_is_refused_with_a_regex_that_matches() {
    assert_refused(
        Config::new().allow_subjects(&["~/C=DE/O=Acme Corp/.*"]),
        "client_auth.allow_subjects[0]",
        &[
            "\"~/C=DE/O=Acme Corp/.*\" is a regex in the legacy /C=../CN=.. form, which never \
             matches",
            "write \"~.*,O=Acme Corp,C=DE\"",
        ],
    );
    assert!(passes(Config::new().allow_subjects(&["~.*,O=Acme Corp,C=DE"])).is_empty());
}

#[test]
fn openssl_one_line_form_passes_with_a_warning_naming_the_compact_spelling() {
    let rule = "C = DE, O = Acme Corp, OU = Payments, CN = alice";
    let warnings = passes(Config::new().allow_subjects(&[rule]));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.contains(&format!(
            "listener[0].client_auth.allow_subjects[0]: {rule:?} is OpenSSL's one-line form"
        )),
        "{w}"
    );
    assert!(
        w.contains("read as \"CN=alice,OU=Payments,O=Acme Corp,C=DE\""),
        "{w}"
    );
}

/// The subject line `openssl x509 -subject` prints for client1 (OpenSSL 3:
/// `C = FI, ST = Some-State, O = Internet Widgits Pty Ltd, CN = client.1.local`), pasted as a
/// rule, admits client1 and nobody else; the warning is in the log at start.
#[test]
fn pasted_openssl_subject_admits_the_client() {
    let env = Env::new();
    let out = run_bounded(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&env.pki.client1.cert),
        std::time::Duration::from_secs(30),
    );
    let line = out.stdout.trim_end();
    let pasted = line
        .strip_prefix("subject=")
        .unwrap_or(line)
        .trim()
        .to_owned();
    assert!(pasted.starts_with("C = FI, "), "{pasted}");
    let gate = Gate::start_in(env, Config::new().allow_subjects(&[&pasted]));
    let pki = gate.pki();
    assert_eq!(
        gate.curl("/").cert(&pki.client1).run().status,
        200,
        "{}",
        gate.log()
    );
    for who in [&pki.client2, &pki.lookalike, &pki.extra_attr] {
        assert_eq!(
            gate.curl("/").cert(who).run().status,
            403,
            "{}",
            who.cert.display()
        );
    }
    let log = gate.log();
    assert!(
        log.contains("is OpenSSL's one-line form") && log.contains(&format!("{:?}", dn::CLIENT1)),
        "{log}"
    );
}
