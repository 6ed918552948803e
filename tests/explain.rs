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

/// A listener with `[[listener.sni]]` blocks whose rules differ, each admitting or refusing
/// client1 (its own policy admits only the SPIFFE client):
/// block 0 `api.acme.test`, `vip.partner.test`: client1 only;
/// block 1 `*.partner.test`: client2 only;
/// block 2 `b2b.example`: the partner CA's clients, refused at the handshake otherwise.
fn sni_config(env: &Env, extra: &str) -> PathBuf {
    let block = |names: &str, auth: &str| {
        format!(
            "\n[[listener.sni]]\nnames = {names}\n\
             [listener.sni.tls]\ncertificate = \"pki/server-sni-chain.pem\"\n\
             private_key = \"pki/server-sni.key\"\n\
             [listener.sni.client_auth]\nmode = \"required\"\n{auth}\n"
        )
    };
    let bundle = "ca = \"pki/client-ca-bundle.pem\"\n";
    let blocks = [
        block(
            "[\"api.acme.test\", \"vip.partner.test\"]",
            &format!("{bundle}allow_subjects = [{:?}]", dn::CLIENT1),
        ),
        block(
            "[\"*.partner.test\"]",
            &format!("{bundle}allow_subjects = [{:?}]", dn::CLIENT2),
        ),
        block(
            "[\"b2b.example\"]",
            "ca = \"pki/partner-ca.pem\"\nreject = \"handshake\"",
        ),
    ]
    .concat();
    // The listener's own rule first: the blocks' tables follow it.
    let own = format!("allow_subjects = [{:?}]\n", dn::SPIFFE);
    let mut c = Config::new()
        .mode("required")
        .client_auth_extra(&(own + &blocks));
    if !extra.is_empty() {
        c = c.listener_extra(extra);
    }
    config(env, &c)
}

#[test]
fn the_sni_chooses_the_block_whose_policy_judges() {
    let env = Env::new();
    let cfg = sni_config(&env, "");
    let client1 = &env.pki.client1.cert;
    let run = |cert: &Path, sni: Option<&str>| {
        let args: Vec<&str> = sni.map(|s| vec!["--sni", s]).unwrap_or_default();
        let out = explain(&env, &cfg, cert, &args);
        (code(&out), out.all())
    };

    // Block 0 admits client1, by its exact names, in any case.
    for sni in ["api.acme.test", "VIP.Partner.Test"] {
        let (code, text) = run(client1, Some(sni));
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains(&format!(
                "policy: [[listener.sni]] block 0 (names api.acme.test,vip.partner.test), \
                 selected by SNI {sni:?}"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "allow_subjects: matched allow_subjects[0] {:?}",
                dn::CLIENT1
            )),
            "{text}"
        );
        assert!(text.contains("result: admitted"), "{text}");
    }

    // Block 1's wildcard (one label) refuses client1 by its own rule.
    let (code, text) = run(client1, Some("x.partner.test"));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("policy: [[listener.sni]] block 1 (names *.partner.test)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "allow_subjects: no match; nearest allow_subjects[0] {:?}",
            dn::CLIENT2
        )),
        "{text}"
    );
    assert!(text.contains("outcome: 403 page \"Forbidden\""), "{text}");
    // ... and admits client2, which block 0 refuses.
    let (code, text) = run(&env.pki.client2.cert, Some("x.partner.test"));
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&env.pki.client2.cert, Some("api.acme.test"));
    assert_eq!(code, 1, "{text}");

    // Block 2 verifies against its own CA: client1 fails with the alert, the partner's client
    // passes.
    let (code, text) = run(client1, Some("b2b.example"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("policy: [[listener.sni]] block 2"), "{text}");
    assert!(text.contains("outcome: TLS alert unknown_ca"), "{text}");
    let (code, text) = run(&env.pki.partner_client.cert, Some("b2b.example"));
    assert_eq!(code, 0, "{text}");

    // Other names and no SNI: the listener's own policy, which admits only the SPIFFE client.
    let (code, text) = run(client1, Some("a.b.partner.test"));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "policy: the listener's own [listener.client_auth]: SNI \"a.b.partner.test\" names \
             no [[listener.sni]] block"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("nearest allow_subjects[0] {:?}", dn::SPIFFE)),
        "{text}"
    );
    let (code, text) = run(client1, None);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("policy: the listener's own [listener.client_auth]: no SNI"),
        "{text}"
    );
    let (code, text) = run(&env.pki.spiffe.cert, None);
    assert_eq!(code, 0, "{text}");

    // --json names the SNI and the policy.
    let out = explain(&env, &cfg, client1, &["--sni", "x.partner.test", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["sni"], "x.partner.test");
    assert!(
        v["policy"].as_str().unwrap().contains("block 1"),
        "{}",
        out.stdout
    );
    assert_eq!(v["admitted"], false);
}

#[test]
fn unknown_sni_reject_refuses_other_names_before_any_certificate() {
    let env = Env::new();
    let cfg = sni_config(&env, "unknown_sni = \"reject\"");
    let client1 = &env.pki.client1.cert;
    for args in [&["--sni", "a.b.partner.test"][..], &[]] {
        let out = explain(&env, &cfg, client1, args);
        let text = out.all();
        assert_eq!(code(&out), 1, "{text}");
        assert!(
            text.contains("outcome: TLS alert unrecognized_name"),
            "{text}"
        );
        assert!(text.contains("verify: not reached"), "{text}");
        assert!(text.contains("rules: not reached"), "{text}");
        assert!(!text.contains("headers ("), "{text}");
    }
    let out = explain(&env, &cfg, client1, &["--sni", "api.acme.test"]);
    assert_eq!(code(&out), 0, "{}", out.all());
}
