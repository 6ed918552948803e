//! The verified-chain cache may only spare work, never admit what a full verification refuses:
//! a different chain (expired copy, rogue CA with the same subject) is verified in full, a
//! failure is never remembered as success, and a cached chain stops being trusted at its
//! notAfter.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

const CERT_ERROR: &str = "The SSL certificate error";

#[test]
fn lookalike_chains_are_verified_in_full_after_a_hit() {
    let gate = Gate::start(Config::new());
    for _ in 0..3 {
        assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
    }
    // Same subject DN as client1, other bytes: expired, or under a CA impersonating
    // Intermediate 1. Neither may ride on client1's cache entry.
    for (ck, what) in [
        (&gate.pki().expired, "expired"),
        (&gate.pki().rogue, "rogue"),
    ] {
        for _ in 0..2 {
            let out = gate.curl("/").cert(ck).run();
            assert_eq!(out.status, 400, "{what}: {}", out.text());
            assert!(out.text().contains(CERT_ERROR), "{what}");
        }
    }
    assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
}

#[test]
fn failures_are_never_cached_as_success() {
    // optional_no_ca completes the handshake for a failing chain: the result must stay FAILED.
    let gate = Gate::start(Config::new().mode("optional_no_ca"));
    for _ in 0..3 {
        let out = gate.curl("/").cert(&gate.pki().rogue).run();
        assert_eq!(out.status, 200);
        assert!(out.seen().one("X-SSL-Client-Verify").starts_with("FAILED:"));
    }
}

/// A CA and a client certificate under it that expires `lifetime` from now.
fn short_lived(env: &Env, lifetime: Duration) -> CertKey {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "Short CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "short.local");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::minutes(5);
    leaf.not_after = now + time::Duration::try_from(lifetime).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_cert = leaf.signed_by(&key, &issuer).unwrap();

    // The listener trusts the short CA too.
    let bundle = env.pki.dir.join("client-ca-bundle.pem");
    let mut pem = std::fs::read_to_string(&bundle).unwrap();
    pem.push_str(&ca_cert.pem());
    std::fs::write(&bundle, pem).unwrap();
    CertKey {
        cert: env.write("pki/short.pem", leaf_cert.pem()),
        key: env.write("pki/short.key", key.serialize_pem()),
    }
}

#[test]
fn a_cached_chain_is_not_trusted_past_its_not_after() {
    let env = Env::new();
    let short = short_lived(&env, Duration::from_secs(3));
    let born = Instant::now();
    let gate = Gate::start_in(env, Config::new());
    let out = gate.curl("/").cert(&short).run();
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(
        gate.curl("/").cert(&short).run().status,
        200,
        "served from the cache"
    );
    // Bounded wait past notAfter (3 s from creation, second granularity).
    let wait = Duration::from_secs(5).saturating_sub(born.elapsed());
    std::thread::sleep(wait);
    let out = gate.curl("/").cert(&short).run();
    assert_eq!(
        out.status,
        400,
        "expired chain admitted from the cache: {}",
        out.text()
    );
    assert!(out.text().contains(CERT_ERROR));
}
