//! Who gets in, and what the backend learns about them: verification modes, refusals (HTTP and
//! handshake), admission rules and the identity headers.

mod common;

use common::*;

const NO_CERT: &str = "No required SSL certificate was sent";
const CERT_ERROR: &str = "The SSL certificate error";

/// The identity headers that only exist when a certificate was presented.
const CERT_HEADERS: [&str; 8] = [
    "X-SSL-Client-S-DN",
    "X-SSL-Client-S-DN-Legacy",
    "X-SSL-Client-I-DN",
    "X-SSL-Client-Serial",
    "X-SSL-Client-Fingerprint",
    "X-SSL-Client-SAN",
    "X-SSL-Client-Not-After",
    "X-SSL-Client-Cert",
];

/// GET `/` as `client`; asserts that a refusal (any status but 200) never reached the upstream.
fn get_as(gate: &Gate, client: Option<&CertKey>) -> CurlOut {
    let before = gate.echo().requests();
    let mut curl = gate.curl("/");
    if let Some(ck) = client {
        curl = curl.cert(ck);
    }
    let out = curl.run();
    if out.status != 200 {
        assert_eq!(
            gate.echo().requests(),
            before,
            "a refused request (status {}) reached the upstream",
            out.status
        );
    }
    out
}

fn assert_status(gate: &Gate, client: Option<&CertKey>, status: u16, who: &str) -> CurlOut {
    let out = get_as(gate, client);
    assert_eq!(out.status, status, "{who}: {out:?}");
    out
}

#[test]
fn admitted_client_identity_reaches_the_backend_exactly() {
    let gate = Gate::start(
        Config::new()
            .allow_subjects(&[dn::CLIENT1])
            .allow_issuers(&[dn::INTERMEDIATE1_LEGACY]),
    );
    let pki = gate.pki();
    let out = gate.curl("/whoami?x=1").cert(&pki.client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.seen();

    assert_eq!(seen.str("method"), "GET");
    assert_eq!(seen.str("path"), "/whoami?x=1");
    assert_eq!(seen.one("Host"), gate.host());
    assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS");
    assert_eq!(seen.one("X-SSL-Client-S-DN"), dn::CLIENT1);
    assert_eq!(seen.one("X-SSL-Client-I-DN"), dn::INTERMEDIATE1);
    assert_eq!(seen.one("X-SSL-Client-S-DN-Legacy"), dn::CLIENT1_LEGACY);
    assert_eq!(seen.one("X-SSL-Client-Serial"), serial(&pki.client1.cert));
    assert_eq!(
        seen.one("X-SSL-Client-Fingerprint"),
        fingerprint(&pki.client1.cert)
    );
    assert_eq!(
        seen.one("X-SSL-Client-SAN"),
        format!("DNS:{}, email:{}", san::CLIENT1_DNS, san::CLIENT1_EMAIL)
    );
    let not_after = seen.one("X-SSL-Client-Not-After");
    assert!(
        not_after.contains("2049"),
        "Not-After {not_after:?} is not the end of 2049"
    );
    assert_eq!(seen.one("X-Forwarded-For"), "127.0.0.1");
    assert_eq!(seen.one("X-Real-IP"), "127.0.0.1");
    assert_eq!(seen.one("X-Forwarded-Proto"), "https");

    // nginx's $ssl_client_escaped_cert: the leaf's PEM, URL-escaped.
    let escaped = seen.one("X-SSL-Client-Cert");
    assert!(
        escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "{escaped:?}"
    );
    let pem = percent_decode(&escaped);
    let sent = boring::x509::X509::from_pem(&pem).expect("escaped PEM decodes to a certificate");
    assert_eq!(
        sent.to_der().unwrap(),
        leaf(&pki.client1.cert).to_der().unwrap()
    );
}

#[test]
fn required_without_certificate_is_400() {
    let gate = Gate::start(Config::new());
    let out = assert_status(&gate, None, 400, "no certificate");
    assert!(out.text().contains(NO_CERT), "{}", out.text());
    // The same connection-level refusal for a raw client, which then sees the connection close.
    let mut c = gate.connect(None);
    let r = c.roundtrip(&get(&gate.host(), "/", &[]));
    assert_eq!(r.status, 400);
    assert!(r.text().contains(NO_CERT), "{}", r.text());
    assert_eq!(gate.echo().requests(), 0);
}

#[test]
fn required_with_untrusted_or_expired_certificate_is_400() {
    let gate = Gate::start(Config::new());
    let pki = gate.pki();
    for (who, ck) in [("rogue CA", &pki.rogue), ("expired", &pki.expired)] {
        let out = assert_status(&gate, Some(ck), 400, who);
        assert!(out.text().contains(CERT_ERROR), "{who}: {}", out.text());
    }
    assert_eq!(gate.echo().requests(), 0);
}

#[test]
fn required_without_rules_admits_every_verified_client() {
    let gate = Gate::start(Config::new());
    let pki = gate.pki();
    for (who, ck, subject, issuer) in [
        ("client1", &pki.client1, dn::CLIENT1, dn::INTERMEDIATE1),
        ("client2", &pki.client2, dn::CLIENT2, dn::INTERMEDIATE2),
        (
            "int10",
            &pki.int10_client,
            dn::INT10_CLIENT,
            dn::INTERMEDIATE10,
        ),
        (
            "lookalike",
            &pki.lookalike,
            dn::LOOKALIKE,
            dn::INTERMEDIATE1,
        ),
    ] {
        let seen = assert_status(&gate, Some(ck), 200, who).seen();
        assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS", "{who}");
        assert_eq!(seen.one("X-SSL-Client-S-DN"), subject, "{who}");
        assert_eq!(seen.one("X-SSL-Client-I-DN"), issuer, "{who}");
    }
}

#[test]
fn issuer_rule_is_exact_not_a_prefix() {
    let gate = Gate::start(Config::new().allow_issuers(&[dn::INTERMEDIATE1_LEGACY]));
    let pki = gate.pki();
    assert_status(&gate, Some(&pki.client1), 200, "client1 (Intermediate 1)");
    assert_status(&gate, Some(&pki.client2), 403, "client2 (Intermediate 2)");
    assert_status(
        &gate,
        Some(&pki.int10_client),
        403,
        "int10 client (Intermediate 10)",
    );
    // Verification comes before rules: the rogue "Intermediate 1" is an error, not a match.
    assert_status(&gate, Some(&pki.rogue), 400, "rogue Intermediate 1");
}

#[test]
fn subject_rule_is_exact_not_a_substring() {
    let gate = Gate::start(Config::new().allow_subjects(&[dn::CLIENT1]));
    let pki = gate.pki();
    assert_status(&gate, Some(&pki.client1), 200, "client1");
    assert_status(
        &gate,
        Some(&pki.lookalike),
        403,
        "CN=client.1.local.evil.com",
    );
    assert_status(
        &gate,
        Some(&pki.extra_attr),
        403,
        "client.1.local with an extra OU",
    );
    assert_status(&gate, Some(&pki.client2), 403, "client2");
    assert_status(
        &gate,
        Some(&pki.rogue),
        400,
        "rogue CA with client1's subject",
    );
    assert_status(&gate, Some(&pki.expired), 400, "expired client1");
}

#[test]
fn subject_rule_in_legacy_form_is_the_same_rule() {
    let gate = Gate::start(Config::new().allow_subjects(&[dn::CLIENT1_LEGACY]));
    let pki = gate.pki();
    assert_status(&gate, Some(&pki.client1), 200, "client1");
    assert_status(&gate, Some(&pki.lookalike), 403, "look-alike");
    assert_status(&gate, Some(&pki.extra_attr), 403, "extra attribute");
}

#[test]
fn regex_rule_must_match_the_whole_dn() {
    let gate = Gate::start(Config::new().allow_subjects(&[
        r"~CN=client\.[0-9]+\.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI",
    ]));
    let pki = gate.pki();
    assert_status(&gate, Some(&pki.client1), 200, "client1");
    assert_status(&gate, Some(&pki.client2), 200, "client2");
    assert_status(&gate, Some(&pki.int10_client), 200, "client.10.local");
    assert_status(&gate, Some(&pki.lookalike), 403, "look-alike");
    assert_status(&gate, Some(&pki.extra_attr), 403, "extra attribute");
    drop(gate);

    // A pattern matching only a prefix of the DN admits nobody.
    let gate = Gate::start(Config::new().allow_subjects(&[r"~CN=client\.1\.local"]));
    assert_status(&gate, Some(&gate.pki().client1), 403, "prefix-only regex");
}

#[test]
fn san_rules() {
    let gate = Gate::start(Config::new().allow_sans(&[
        &format!("URI:{}", san::SPIFFE_URI),
        &format!("email:{}", san::CLIENT1_EMAIL),
    ]));
    let pki = gate.pki();
    let seen = assert_status(&gate, Some(&pki.spiffe), 200, "spiffe").seen();
    assert_eq!(
        seen.one("X-SSL-Client-SAN"),
        format!("URI:{}", san::SPIFFE_URI)
    );
    assert_status(&gate, Some(&pki.client1), 200, "client1 by e-mail");
    assert_status(&gate, Some(&pki.client2), 403, "client2 (no SAN)");
    assert_status(&gate, Some(&pki.lookalike), 403, "look-alike (no SAN)");
}

#[test]
fn every_rule_family_must_match() {
    // Subject matches for both; only client1 also has the right issuer.
    let gate = Gate::start(
        Config::new()
            .allow_subjects(&[dn::CLIENT1, dn::CLIENT2])
            .allow_issuers(&[dn::INTERMEDIATE2_LEGACY]),
    );
    let pki = gate.pki();
    assert_status(&gate, Some(&pki.client2), 200, "client2");
    assert_status(
        &gate,
        Some(&pki.client1),
        403,
        "client1 from the wrong issuer",
    );
}

#[test]
fn optional_without_certificate_is_forwarded_as_none() {
    let gate = Gate::start(Config::new().mode("optional"));
    let seen = assert_status(&gate, None, 200, "no certificate").seen();
    assert_eq!(seen.one("X-SSL-Client-Verify"), "NONE");
    for h in CERT_HEADERS {
        assert!(
            seen.all(h).is_empty(),
            "{h} sent without a certificate: {seen}"
        );
    }
    assert_eq!(seen.one("X-Forwarded-For"), "127.0.0.1");
    assert_eq!(seen.one("X-Forwarded-Proto"), "https");

    let seen = assert_status(&gate, Some(&gate.pki().client1), 200, "client1").seen();
    assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS");
    assert_eq!(seen.one("X-SSL-Client-S-DN"), dn::CLIENT1);
}

#[test]
fn optional_with_untrusted_certificate_is_400() {
    let gate = Gate::start(Config::new().mode("optional"));
    let pki = gate.pki();
    for (who, ck) in [("rogue", &pki.rogue), ("expired", &pki.expired)] {
        let out = assert_status(&gate, Some(ck), 400, who);
        assert!(out.text().contains(CERT_ERROR), "{who}: {}", out.text());
    }
}

#[test]
fn optional_no_ca_forwards_the_failure_reason() {
    let gate = Gate::start(Config::new().mode("optional_no_ca"));
    let pki = gate.pki();

    let seen = assert_status(&gate, Some(&pki.rogue), 200, "rogue").seen();
    let verify = seen.one("X-SSL-Client-Verify");
    let reason = verify
        .strip_prefix("FAILED:")
        .unwrap_or_else(|| panic!("{verify:?}"));
    assert!(!reason.trim().is_empty(), "FAILED without a reason");

    let seen = assert_status(&gate, Some(&pki.expired), 200, "expired").seen();
    let verify = seen.one("X-SSL-Client-Verify");
    assert!(
        verify.starts_with("FAILED:") && verify.to_ascii_lowercase().contains("expired"),
        "{verify:?}"
    );

    let seen = assert_status(&gate, Some(&pki.client1), 200, "client1").seen();
    assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS");

    let seen = assert_status(&gate, None, 200, "no certificate").seen();
    assert_eq!(seen.one("X-SSL-Client-Verify"), "NONE");
}

#[test]
fn off_never_reports_a_certificate() {
    let gate = Gate::start(Config::new().mode("off"));
    // curl offers the certificate only if asked; with client auth off it is never asked.
    let seen = assert_status(&gate, Some(&gate.pki().client1), 200, "client1").seen();
    for h in CERT_HEADERS {
        assert!(
            seen.all(h).is_empty(),
            "{h} sent with client auth off: {seen}"
        );
    }
    let verify = seen.all("X-SSL-Client-Verify");
    assert!(verify.is_empty() || verify == ["NONE"], "{verify:?}");
}

const REQUEST: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn handshake_reject_without_certificate_sends_certificate_required() {
    let gate = Gate::start(Config::new().reject("handshake"));
    let s = gate.s_client(None, REQUEST);
    assert!(
        s.alert("certificate required"),
        "no certificate_required alert:\n{}",
        s.output
    );
    assert!(
        !s.output.contains("HTTP/1.1"),
        "got an HTTP response:\n{}",
        s.output
    );

    // In TLS 1.3 the client's Finished goes out before the server judges it: curl then fails in
    // the handshake (35), receiving (56) or sending its request (55), whichever meets the alert.
    let out = gate.curl("/").run();
    assert!(
        matches!(out.exit, 35 | 55 | 56),
        "curl exit {}: {out:?}",
        out.exit
    );
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(gate.echo().requests(), 0);
}

#[test]
fn handshake_reject_of_untrusted_and_expired_certificates() {
    let gate = Gate::start(Config::new().reject("handshake"));
    let pki = gate.pki();
    let s = gate.s_client(Some(&pki.rogue), REQUEST);
    assert!(
        s.alert("unknown ca"),
        "rogue: no unknown_ca alert:\n{}",
        s.output
    );
    let s = gate.s_client(Some(&pki.expired), REQUEST);
    assert!(
        s.alert("certificate expired"),
        "expired: no certificate_expired alert:\n{}",
        s.output
    );
    for ck in [&pki.rogue, &pki.expired] {
        let out = gate.curl("/").cert(ck).run();
        assert_ne!(out.exit, 0, "{out:?}");
        assert_eq!(out.status, 0, "{out:?}");
    }
    assert_eq!(gate.echo().requests(), 0);

    // A good client is unaffected.
    let s = gate.s_client(Some(&pki.client1), REQUEST);
    assert!(
        s.output.contains("HTTP/1.1 200"),
        "client1 refused:\n{}",
        s.output
    );
    assert_status(&gate, Some(&pki.client1), 200, "client1");
}
