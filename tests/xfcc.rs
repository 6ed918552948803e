//! Headers for meshes and pins: `[listener.headers] xfcc` sends Envoy's
//! `X-Forwarded-Client-Cert` (never the client's own copy unless `forward`), and
//! `allow_fingerprints` in `[client_auth]` pins exact certificates. Driven with curl.

mod common;

use common::*;

const XFCC: &str = "X-Forwarded-Client-Cert";
const FORGED: &str = "X-Forwarded-Client-Cert: By=spiffe://evil;Hash=00;Subject=\"CN=admin\"";

fn with_xfcc(mode: &str) -> Config {
    Config::new().listener_extra(&format!("headers.xfcc = \"{mode}\""))
}

/// This hop's element for `ck` as the echo saw its identity headers.
fn expected_element(gate: &Gate, ck: &CertKey, seen: &Seen) -> String {
    let mut e = format!(
        "Hash={};Subject=\"{}\"",
        fingerprint(&ck.cert),
        seen.one("X-SSL-Client-S-DN")
    );
    if ck.cert == gate.pki().spiffe.cert {
        e.push_str(&format!(";URI={}", san::SPIFFE_URI));
    }
    if ck.cert == gate.pki().client1.cert {
        e.push_str(&format!(";DNS={}", san::CLIENT1_DNS));
    }
    e
}

#[test]
fn by_default_a_client_copy_is_removed_and_none_is_sent() {
    let gate = Gate::start(Config::new());
    let out = gate
        .curl("/")
        .cert(&gate.pki().client1)
        .header(FORGED)
        .header("x_forwarded_client_cert: Hash=01")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.seen();
    assert!(seen.all(XFCC).is_empty(), "{seen}");
    assert!(seen.all("x_forwarded_client_cert").is_empty(), "{seen}");
}

#[test]
fn sanitize_set_replaces_the_client_copy_with_this_hop_in_envoy_format() {
    let gate = Gate::start(with_xfcc("sanitize_set").mode("optional"));
    for ck in [&gate.pki().client1, &gate.pki().spiffe] {
        let out = gate.curl("/").cert(ck).header(FORGED).run();
        assert_eq!(out.status, 200, "{out:?}");
        let seen = out.seen();
        assert_eq!(
            seen.all(XFCC),
            vec![expected_element(&gate, ck, &seen)],
            "{seen}"
        );
    }
    assert!(
        gate.curl("/")
            .cert(&gate.pki().client1)
            .run()
            .seen()
            .one(XFCC)
            .starts_with(&format!(
                "Hash={};Subject=\"{}\";DNS=",
                fingerprint(&gate.pki().client1.cert),
                dn::CLIENT1
            )),
        "the documented example"
    );
    // No certificate: nothing to vouch for, and the client's copy is still removed.
    let out = gate.curl("/").header(FORGED).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.seen().all(XFCC).is_empty(), "{}", out.seen());
}

#[test]
fn by_names_the_uri_sans_of_the_certificate_certgate_served() {
    let env = Env::new();
    // A server certificate with a SPIFFE ID, in place of the generated one.
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(&env.pki.server.key)
        .arg("-out")
        .arg(&env.pki.server.cert)
        .arg("-addext")
        .arg("subjectAltName=DNS:localhost,URI:spiffe://acme.test/edge,URI:urn:edge:2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served = env.pki.server.cert.clone();
    let gate = Gate::start_in(env, with_xfcc("sanitize_set"));
    let ck = &gate.pki().client1;
    let out = gate
        .curl("/")
        .cert(ck)
        .arg("--cacert")
        .arg(served.to_str().unwrap())
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.seen();
    assert_eq!(
        seen.one(XFCC),
        format!(
            "By=spiffe://acme.test/edge;By=urn:edge:2;{}",
            expected_element(&gate, ck, &seen)
        )
    );
}

#[test]
fn forward_appends_this_hop_after_the_client_elements() {
    let gate = Gate::start(with_xfcc("forward").mode("optional"));
    let ck = &gate.pki().client1;
    let out = gate
        .curl("/")
        .cert(ck)
        .header("X-Forwarded-Client-Cert: By=spiffe://mesh/a;Hash=aa")
        .header("x-forwarded-client-cert: Hash=bb")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.seen();
    assert_eq!(
        seen.all(XFCC),
        vec![format!(
            "By=spiffe://mesh/a;Hash=aa,Hash=bb,{}",
            expected_element(&gate, ck, &seen)
        )],
        "one header, the client's elements first: {seen}"
    );
    // Without a certificate the client's elements pass alone.
    let out = gate
        .curl("/")
        .header("X-Forwarded-Client-Cert: Hash=cc")
        .run();
    assert_eq!(out.seen().all(XFCC), vec!["Hash=cc".to_owned()]);
}

#[test]
fn xfcc_modes_are_checked() {
    let env = Env::new();
    let text = with_xfcc("append").render(free_port(), &[dead_addr()]);
    let path = env.write("bad.toml", &text);
    let out = env.check(&path);
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.all().contains("xfcc") && out.all().contains("sanitize_set"),
        "{}",
        out.all()
    );
}

// ---------------------------------------------------------------------------------------------
// allow_fingerprints
// ---------------------------------------------------------------------------------------------

/// `AB:CD:...`, as `openssl x509 -fingerprint -sha256` prints it.
fn openssl_style(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn allow_fingerprints_admits_only_pinned_certificates() {
    let env = Env::new();
    let pin = openssl_style(&fingerprint(&env.pki.client1.cert));
    let gate = Gate::start_in(
        env,
        Config::new().client_auth_extra(&format!("allow_fingerprints = [\"sha256:{pin}\"]")),
    );
    let ok = gate.curl("/").cert(&gate.pki().client1).run();
    assert_eq!(ok.status, 200, "{ok:?}");
    // Same CA, verified, but not pinned: refused as the other rule families refuse.
    let other = gate.curl("/").cert(&gate.pki().client2).run();
    assert_eq!(other.status, 403, "{other:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gate
        .log()
        .contains("certificate fingerprint matched no allow_fingerprints rule")
    {
        assert!(std::time::Instant::now() < deadline, "{}", gate.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        gate.log().contains("allow_fingerprints[0]"),
        "{}",
        gate.log()
    );
}

#[test]
fn allow_fingerprints_and_allow_subjects_must_both_match() {
    let env = Env::new();
    let pins = format!(
        "allow_fingerprints = [\"{}\", \"{}\"]",
        fingerprint(&env.pki.client1.cert),
        fingerprint(&env.pki.client2.cert)
    );
    let gate = Gate::start_in(
        env,
        Config::new()
            .client_auth_extra(&pins)
            .allow_subjects(&[dn::CLIENT2]),
    );
    assert_eq!(gate.curl("/").cert(&gate.pki().client2).run().status, 200);
    // Pinned, but the subject family does not match.
    assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 403);
}

#[test]
fn a_fingerprint_that_cannot_pin_is_a_config_error_with_its_line() {
    let env = Env::new();
    let sha1 = openssl_style(&"ab".repeat(20));
    let text = Config::new()
        .client_auth_extra(&format!("allow_fingerprints = [\"{sha1}\"]"))
        .render(free_port(), &[dead_addr()]);
    let line = text
        .lines()
        .position(|l| l.starts_with("allow_fingerprints"))
        .unwrap()
        + 1;
    let path = env.write("bad.toml", &text);
    let out = env.check(&path);
    assert!(!out.status.success(), "{}", out.all());
    let want = format!(
        "{}:{line}: listener[0].client_auth.allow_fingerprints[0]: ",
        path.display()
    );
    assert!(out.all().contains(&want), "{want}\n{}", out.all());
    assert!(out.all().contains("this looks like SHA-1"), "{}", out.all());
}

#[test]
fn explain_names_the_pin_or_the_certificate_fingerprint() {
    let env = Env::new();
    let fp1 = fingerprint(&env.pki.client1.cert);
    let text = Config::new()
        .client_auth_extra(&format!("allow_fingerprints = [\"sha256:{fp1}\"]"))
        .render(free_port(), &[dead_addr()]);
    let config = env.write("pins.toml", text);
    let explain = |cert: &std::path::Path| {
        run_bounded(
            std::process::Command::new(certgate_bin())
                .args(["explain", "--config"])
                .arg(&config)
                .arg("--cert")
                .arg(cert)
                .current_dir(env.dir.path()),
            std::time::Duration::from_secs(60),
        )
    };
    let ok = explain(&env.pki.client1.cert);
    assert!(ok.status.success(), "{}", ok.all());
    assert!(ok.all().contains("allow_fingerprints[0]"), "{}", ok.all());
    let refused = explain(&env.pki.client2.cert);
    assert!(!refused.status.success(), "{}", refused.all());
    let fp2 = fingerprint(&env.pki.client2.cert);
    assert!(
        refused
            .all()
            .contains(&format!("certificate has sha256:{fp2}")),
        "{}",
        refused.all()
    );
}
