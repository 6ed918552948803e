//! Admission-rule costs per connection: exact subject rules at 1, 100 and 10,000 entries (hit
//! and miss), a regex rule, and extracting the identity (`ClientCert::from_x509`) from a typical
//! leaf.

use std::hint::black_box;

use boring::asn1::{Asn1Integer, Asn1Time};
use boring::bn::BigNum;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::PKey;
use boring::x509::extension::SubjectAlternativeName;
use boring::x509::{X509Name, X509};
use certgate::identity::{ClientCert, Rules};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn name(entries: &[(&str, &str)]) -> X509Name {
    let mut b = X509Name::builder().expect("name builder");
    for (field, value) in entries {
        b.append_entry_by_text(field, value).expect("name entry");
    }
    b.build()
}

/// A typical client leaf: P-256 key, three-RDN subject and issuer, a few SANs.
fn leaf(cn: &str) -> X509 {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_slice(&[0x1a, 0x2b, 0x3c, 0x4d, 0x5e]).expect("bn");
    b.set_serial_number(&Asn1Integer::from_bn(&serial).expect("serial"))
        .expect("serial");
    b.set_subject_name(&name(&[("C", "FI"), ("O", "Acme"), ("CN", cn)]))
        .expect("subject");
    b.set_issuer_name(&name(&[
        ("C", "FI"),
        ("O", "Acme"),
        ("CN", "Intermediate 1"),
    ]))
    .expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(365).expect("time"))
        .expect("not after");
    let san = SubjectAlternativeName::new()
        .dns("api.acme.test")
        .email("john.doe@example.com")
        .uri("spiffe://acme.test/ns/prod/sa/web")
        .ip("10.0.0.1")
        .build(&b.x509v3_context(None, None))
        .expect("san");
    b.append_extension(&san).expect("append");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    b.build()
}

fn subject_rules(n: usize) -> Rules {
    // The hit is the last rule, so nothing favours it.
    let subjects: Vec<String> = (0..n)
        .map(|i| format!("CN=client.{}.local,O=Acme,C=FI", n - 1 - i))
        .collect();
    Rules::compile(&subjects, &[], &[]).expect("rules")
}

fn exact_subjects(c: &mut Criterion) {
    let hit = ClientCert::from_x509(&leaf("client.0.local"));
    let miss = ClientCert::from_x509(&leaf("client.0.local.evil.com"));
    let mut group = c.benchmark_group("exact_subject");
    for n in [1, 100, 10_000] {
        let rules = subject_rules(n);
        group.bench_with_input(BenchmarkId::new("hit", n), &rules, |b, rules| {
            b.iter(|| rules.check(black_box(&hit), true).is_ok())
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &rules, |b, rules| {
            b.iter(|| rules.check(black_box(&miss), true).is_ok())
        });
    }
    group.finish();
}

fn regex_subject(c: &mut Criterion) {
    let rules = Rules::compile(
        &["~CN=client\\.\\d+\\.local,O=Acme,C=FI".to_owned()],
        &[],
        &[],
    )
    .expect("rules");
    let hit = ClientCert::from_x509(&leaf("client.0.local"));
    let miss = ClientCert::from_x509(&leaf("client.0.local.evil.com"));
    let mut group = c.benchmark_group("regex_subject");
    group.bench_function("hit", |b| {
        b.iter(|| rules.check(black_box(&hit), true).is_ok())
    });
    group.bench_function("miss", |b| {
        b.iter(|| rules.check(black_box(&miss), true).is_ok())
    });
    group.finish();
}

fn identity_extraction(c: &mut Criterion) {
    let x509 = leaf("client.0.local");
    c.bench_function("client_cert_from_x509", |b| {
        b.iter(|| ClientCert::from_x509(black_box(&x509)))
    });
    let cert = ClientCert::from_x509(&x509);
    c.bench_function("escaped_pem", |b| b.iter(|| black_box(&cert).escaped_pem()));
}

criterion_group!(benches, exact_subjects, regex_subject, identity_extraction);
criterion_main!(benches);
