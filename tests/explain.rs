//! `certgate explain`: the real binary judges certificate files against a configuration without
//! any network: admitted (exit 0, rule and headers shown), refused by a rule with the nearest rule
//! and its difference, by the issuer family, by verification (untrusted CA, expired at `--at`,
//! revoked by a CRL) with the 400 page or the alert `reject` selects, `--json`, and bad input
//! (exit 2).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ca;
use common::*;

/// Writes the configuration `c` renders into `env` and returns its path.
fn config(env: &Env, c: &Config) -> PathBuf {
    let text = c.render(free_port(), &[dead_addr()]);
    env.write(&format!("explain-{}.toml", free_port()), text)
}

fn explain(env: &Env, config: &Path, cert: &Path, extra: &[&str]) -> CommandOut {
    run_bounded(
        Command::new(certgate_bin())
            .arg("explain")
            .arg("--config")
            .arg(config)
            .arg("--cert")
            .arg(cert)
            .args(extra)
            .current_dir(env.dir.path()),
        Duration::from_secs(60),
    )
}

fn code(out: &CommandOut) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn admitted_shows_the_matching_rule_and_the_headers() {
    let env = Env::new();
    let cfg = config(
        &env,
        &Config::new()
            .mode("required")
            .allow_subjects(&[dn::CLIENT2, dn::CLIENT1])
            .allow_issuers(&[dn::INTERMEDIATE1_LEGACY]),
    );
    let out = explain(&env, &cfg, &env.pki.client1.cert, &[]);
    let text = out.all();
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("verify: ok"), "{text}");
    assert!(
        text.contains(&format!(
            "allow_subjects: matched allow_subjects[1] {:?}",
            dn::CLIENT1
        )),
        "{text}"
    );
    assert!(
        text.contains("allow_issuers: matched allow_issuers[0]"),
        "{text}"
    );
    assert!(
        text.contains(&format!("subject: {}", dn::CLIENT1)),
        "{text}"
    );
    assert!(
        text.contains(&format!("subject (legacy): {}", dn::CLIENT1_LEGACY)),
        "{text}"
    );
    assert!(
        text.contains(&format!("issuer: {}", dn::INTERMEDIATE1)),
        "{text}"
    );
    assert!(text.contains(&fingerprint(&env.pki.client1.cert)), "{text}");
    // The headers the identity code would send.
    assert!(text.contains("X-SSL-Client-Verify: SUCCESS"), "{text}");
    assert!(
        text.contains(&format!("X-SSL-Client-S-DN: {}", dn::CLIENT1)),
        "{text}"
    );
    assert!(text.contains("outcome: forwarded"), "{text}");
    assert!(text.contains("result: admitted"), "{text}");
}

#[test]
fn lookalike_is_refused_with_the_nearest_rule_and_its_difference() {
    let env = Env::new();
    let cfg = config(
        &env,
        &Config::new()
            .mode("required")
            .allow_subjects(&[dn::CLIENT2, dn::CLIENT1]),
    );
    let out = explain(&env, &cfg, &env.pki.lookalike.cert, &[]);
    let text = out.all();
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("verify: ok"), "{text}");
    assert!(
        text.contains(&format!(
            "allow_subjects: no match; nearest allow_subjects[1] {:?}: \
             CN: client.1.local.evil.com, rule has client.1.local",
            dn::CLIENT1
        )),
        "{text}"
    );
    assert!(text.contains("outcome: 403 page \"Forbidden\""), "{text}");
    assert!(text.contains("result: refused"), "{text}");
}

#[test]
fn wrong_issuer_names_the_issuer_family() {
    let env = Env::new();
    let cfg = config(
        &env,
        &Config::new()
            .mode("required")
            .allow_issuers(&[dn::INTERMEDIATE1]),
    );
    let out = explain(&env, &cfg, &env.pki.client2.cert, &[]);
    let text = out.all();
    assert_eq!(code(&out), 1, "{text}");
    assert!(
        text.contains("allow_issuers: no match; nearest allow_issuers[0]"),
        "{text}"
    );
    assert!(
        text.contains("CN: Intermediate 2, rule has Intermediate 1"),
        "{text}"
    );
    assert!(
        text.contains("reason: forbidden: issuer DN matched no allow_issuers rule"),
        "{text}"
    );
}

#[test]
fn untrusted_ca_fails_verification_with_the_page_or_alert_of_reject() {
    let env = Env::new();
    let http = config(&env, &Config::new().mode("required"));
    let out = explain(&env, &http, &env.pki.rogue.cert, &[]);
    let text = out.all();
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("verify: FAILED"), "{text}");
    assert!(text.contains("X-SSL-Client-Verify: FAILED:"), "{text}");
    assert!(
        text.contains("outcome: 400 page \"The SSL certificate error\""),
        "{text}"
    );

    let hs = config(&env, &Config::new().mode("required").reject("handshake"));
    let out = explain(&env, &hs, &env.pki.rogue.cert, &[]);
    let text = out.all();
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("outcome: TLS alert unknown_ca"), "{text}");
}

#[test]
fn at_verifies_at_that_time() {
    let env = Env::new();
    let cfg = config(&env, &Config::new().mode("required"));
    // `expired.pem` expired at the start of 2020: valid inside its validity, refused now.
    let out = explain(&env, &cfg, &env.pki.expired.cert, &[]);
    assert_eq!(code(&out), 1, "{}", out.all());
    assert!(
        out.all().contains("certificate has expired"),
        "{}",
        out.all()
    );
    let out = explain(
        &env,
        &cfg,
        &env.pki.expired.cert,
        &["--at", "2019-12-01T00:00:00Z"],
    );
    assert_eq!(code(&out), 0, "{}", out.all());
    assert!(out.all().contains("verify: ok"), "{}", out.all());

    // client1 is valid now, expired far in the future.
    let out = explain(
        &env,
        &cfg,
        &env.pki.client1.cert,
        &["--at", "2999-01-01T00:00:00Z"],
    );
    assert_eq!(code(&out), 1, "{}", out.all());
    assert!(
        out.all().contains("certificate has expired"),
        "{}",
        out.all()
    );
    let cfg = config(&env, &Config::new().mode("required").reject("handshake"));
    let out = explain(
        &env,
        &cfg,
        &env.pki.client1.cert,
        &["--at", "2999-01-01T00:00:00Z"],
    );
    assert!(
        out.all().contains("outcome: TLS alert certificate_expired"),
        "{}",
        out.all()
    );
}

#[test]
fn revoked_by_a_crl() {
    let env = Env::new();
    let (issuer, ca_pem) = ca::root("Explain CRL CA", 0x20);
    let client = |serial: u64| {
        let (stem, cn) = (format!("c{serial}"), format!("c{serial}.crl.local"));
        ca::client(&env, &stem, &cn, serial, &issuer, "").cert
    };
    let good = client(0x2001);
    let bad = client(0x2002);
    env.write("crl-ca.pem", ca_pem);
    env.write("ca.crl", ca::crl(&issuer, &[0x2002], ca::DAY));
    let text = Config::new()
        .mode("required")
        .reject("handshake")
        .client_auth_extra("crl = [\"ca.crl\"]")
        .render(free_port(), &[dead_addr()])
        .replace("pki/client-ca-bundle.pem", "crl-ca.pem");
    let cfg = env.write("crl.toml", text);

    let out = explain(&env, &cfg, &good, &[]);
    assert_eq!(code(&out), 0, "{}", out.all());
    let out = explain(&env, &cfg, &bad, &[]);
    assert_eq!(code(&out), 1, "{}", out.all());
    assert!(out.all().contains("certificate revoked"), "{}", out.all());
    assert!(
        out.all().contains("outcome: TLS alert certificate_revoked"),
        "{}",
        out.all()
    );
}

#[test]
fn json_carries_the_same_facts() {
    let env = Env::new();
    let cfg = config(
        &env,
        &Config::new()
            .mode("required")
            .allow_subjects(&[dn::CLIENT1]),
    );
    let out = explain(&env, &cfg, &env.pki.lookalike.cert, &["--json"]);
    assert_eq!(code(&out), 1, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["verify"]["ok"], true);
    assert_eq!(v["identity"]["subject"], dn::LOOKALIKE);
    assert_eq!(v["admitted"], false);
    assert_eq!(v["rules"][0]["family"], "allow_subjects");
    assert_eq!(v["rules"][0]["matched"], serde_json::Value::Null);
    assert_eq!(
        v["rules"][0]["diff"],
        "CN: client.1.local.evil.com, rule has client.1.local"
    );
    assert_eq!(v["outcome"], "403 page \"Forbidden\"");

    let out = explain(&env, &cfg, &env.pki.client1.cert, &["--json"]);
    assert_eq!(code(&out), 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["admitted"], true);
    assert_eq!(
        v["identity"]["fingerprint"],
        fingerprint(&env.pki.client1.cert)
    );
    let headers = v["headers"].as_array().expect("headers");
    assert!(headers
        .iter()
        .any(|h| h["name"] == "X-SSL-Client-Verify" && h["value"] == "SUCCESS"));
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let env = Env::new();
    let cfg = config(&env, &Config::new().mode("required"));
    let out = explain(&env, &cfg, &env.path("nope.pem"), &[]);
    assert_eq!(code(&out), 2, "{}", out.all());
    assert!(out.all().contains("--cert"), "{}", out.all());
    assert!(out.all().contains("cannot read"), "{}", out.all());

    let junk = env.write("junk.pem", "not a certificate");
    let out = explain(&env, &cfg, &junk, &[]);
    assert_eq!(code(&out), 2, "{}", out.all());
    assert!(out.all().contains("no certificate found"), "{}", out.all());

    let out = explain(&env, &cfg, &env.pki.client1.cert, &["--listener", "nosuch"]);
    assert_eq!(code(&out), 2, "{}", out.all());
    assert!(
        out.all().contains("the listeners are: public"),
        "{}",
        out.all()
    );

    let out = explain(&env, &cfg, &env.pki.client1.cert, &["--at", "tomorrow"]);
    assert_eq!(code(&out), 2, "{}", out.all());
    assert!(out.all().contains("not an RFC 3339 time"), "{}", out.all());

    let bad = env.write("bad.toml", "[runtime]\nworkers = \"x\"\n");
    let out = explain(&env, &bad, &env.pki.client1.cert, &[]);
    assert_eq!(code(&out), 2, "{}", out.all());
    assert!(out.all().contains("bad.toml:"), "{}", out.all());
}

#[test]
fn optional_no_ca_reports_the_failure_and_forwards() {
    let env = Env::new();
    let text = Config::new()
        .mode("optional_no_ca")
        .render(free_port(), &[dead_addr()])
        .replace("ca = \"pki/client-ca-bundle.pem\"\n", "");
    assert!(!text.contains("client-ca-bundle"), "{text}");
    let cfg = env.write("no-ca.toml", text);
    let out = explain(&env, &cfg, &env.pki.client1.cert, &[]);
    let all = out.all();
    assert_eq!(code(&out), 0, "{all}");
    assert!(all.contains("verify: FAILED"), "{all}");
    assert!(all.contains("X-SSL-Client-Verify: FAILED:"), "{all}");
    assert!(all.contains("outcome: forwarded"), "{all}");
}

#[test]
fn verify_depth_of_the_listener_applies() {
    let env = Env::new();
    // client1 is under Intermediate 1 under the root: one intermediate.
    let mut c = Config::new().mode("required");
    c.verify_depth = Some(1);
    let out = explain(&env, &config(&env, &c), &env.pki.client1.cert, &[]);
    assert_eq!(code(&out), 0, "{}", out.all());
    c.verify_depth = Some(0);
    let out = explain(&env, &config(&env, &c), &env.pki.client1.cert, &[]);
    assert_eq!(code(&out), 1, "{}", out.all());
    assert!(out.all().contains("verify: FAILED"), "{}", out.all());
}
