//! The test PKI itself, checked with an independent implementation (the `openssl` CLI): if these
//! fail, every client-auth test result is meaningless.

use std::path::Path;
use std::process::Command;

use certgate_tools::pki::{self, dn, san};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `openssl verify` of a leaf (first cert of `file`) with the rest of `file` as untrusted chain.
fn verify(ca: &Path, file: &Path, purpose: &str) -> (bool, String) {
    openssl(&[
        "verify",
        "-CAfile",
        p(ca),
        "-untrusted",
        p(file),
        "-purpose",
        purpose,
        p(file),
    ])
}

fn field(file: &Path, what: &str) -> String {
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        p(file),
        "-noout",
        what,
        "-nameopt",
        "RFC2253",
    ]);
    assert!(ok, "{text}");
    text.trim().to_string()
}

#[test]
fn chains_verify_exactly_where_intended() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path()).unwrap();
    let bundle = &pki.client_ca_bundle;

    for (name, ck) in [
        ("client1", &pki.client1),
        ("client2", &pki.client2),
        ("lookalike", &pki.lookalike),
        ("extra_attr", &pki.extra_attr),
        ("int10_client", &pki.int10_client),
        ("spiffe", &pki.spiffe),
    ] {
        let (ok, text) = verify(bundle, &ck.cert, "sslclient");
        assert!(ok, "{name} must verify against the bundle: {text}");
    }

    let (ok, text) = verify(bundle, &pki.expired.cert, "sslclient");
    assert!(
        !ok && text.contains("expired"),
        "expired must fail as expired: {text}"
    );

    let (ok, text) = verify(bundle, &pki.rogue.cert, "sslclient");
    assert!(!ok, "rogue must not verify: {text}");

    let (ok, text) = verify(&pki.server_ca, &pki.server.cert, "sslserver");
    assert!(ok, "server chain must verify against server-ca: {text}");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        p(&pki.server.cert),
        "-noout",
        "-checkhost",
        "localhost",
    ]);
    assert!(ok && text.contains("does match"), "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        p(&pki.server.cert),
        "-noout",
        "-checkip",
        "127.0.0.1",
    ]);
    assert!(ok && text.contains("does match"), "{text}");
}

#[test]
fn names_are_the_documented_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path()).unwrap();

    assert_eq!(
        field(&pki.client1.cert, "-subject"),
        format!("subject={}", dn::CLIENT1)
    );
    assert_eq!(
        field(&pki.client1.cert, "-issuer"),
        format!("issuer={}", dn::INTERMEDIATE1)
    );
    assert_eq!(
        field(&pki.client2.cert, "-subject"),
        format!("subject={}", dn::CLIENT2)
    );
    assert_eq!(
        field(&pki.client2.cert, "-issuer"),
        format!("issuer={}", dn::INTERMEDIATE2)
    );
    assert_eq!(
        field(&pki.lookalike.cert, "-subject"),
        format!("subject={}", dn::LOOKALIKE)
    );
    assert_eq!(
        field(&pki.extra_attr.cert, "-subject"),
        format!("subject={}", dn::EXTRA_ATTR)
    );
    assert_eq!(
        field(&pki.expired.cert, "-subject"),
        format!("subject={}", dn::CLIENT1)
    );
    assert_eq!(
        field(&pki.rogue.cert, "-subject"),
        format!("subject={}", dn::CLIENT1)
    );
    assert_eq!(
        field(&pki.rogue.cert, "-issuer"),
        format!("issuer={}", dn::INTERMEDIATE1)
    );
    assert_eq!(
        field(&pki.int10_client.cert, "-issuer"),
        format!("issuer={}", dn::INTERMEDIATE10)
    );
    assert_eq!(
        field(&pki.spiffe.cert, "-issuer"),
        format!("issuer={}", dn::INTERMEDIATE2)
    );
    assert_eq!(
        field(&pki.rogue_ca, "-subject"),
        format!("subject={}", dn::INTERMEDIATE1)
    );
    assert_eq!(
        field(&pki.root_ca, "-subject"),
        format!("subject={}", dn::ROOT)
    );

    // The legacy one-line form as OpenSSL prints it by default.
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        p(&pki.client1.cert),
        "-noout",
        "-subject",
        "-nameopt",
        "compat",
    ]);
    assert!(ok, "{text}");
    assert_eq!(text.trim(), format!("subject={}", dn::CLIENT1_LEGACY));

    let (ok, text) = openssl(&[
        "x509",
        "-in",
        p(&pki.client1.cert),
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("DNS:{}", san::CLIENT1_DNS)),
        "{text}"
    );
    assert!(
        text.contains(&format!("email:{}", san::CLIENT1_EMAIL)),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        p(&pki.spiffe.cert),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(
        ok && text.contains(&format!("URI:{}", san::SPIFFE_URI)),
        "{text}"
    );
}

#[test]
fn keys_match_certificates_and_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path()).unwrap();
    for ck in [
        &pki.server,
        &pki.client1,
        &pki.client2,
        &pki.rogue,
        &pki.expired,
        &pki.spiffe,
    ] {
        let (ok, cert_pub) = openssl(&["x509", "-in", p(&ck.cert), "-noout", "-pubkey"]);
        assert!(ok, "{cert_pub}");
        let (ok, key_pub) = openssl(&["pkey", "-in", p(&ck.key), "-pubout"]);
        assert!(ok, "{key_pub}");
        assert_eq!(
            cert_pub,
            key_pub,
            "{} does not match {}",
            ck.key.display(),
            ck.cert.display()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&ck.key).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is readable by others",
                ck.key.display()
            );
        }
    }
    // A second generation never reuses keys.
    let dir2 = tempfile::tempdir().unwrap();
    let again = pki::generate(dir2.path()).unwrap();
    assert_ne!(
        std::fs::read(&pki.client1.key).unwrap(),
        std::fs::read(&again.client1.key).unwrap()
    );
}
