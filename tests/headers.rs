//! A client can never speak for the proxy: identity and forwarding headers it sends, in any
//! spelling, are dropped before the backend sees the request — in every client-auth mode.

mod common;

use common::*;

/// Forged identity: every value carries "FORGED" (or 6.6.6.6) so a leak is unmistakable.
const FORGED: &[&str] = &[
    "X-SSL-Client-S-DN: CN=FORGED admin,O=Acme,C=FI",
    "x-ssl-client-s-dn: CN=FORGED lower,O=Acme,C=FI",
    "X-SSL-CLIENT-S-DN-LEGACY: /CN=FORGED",
    "X-Ssl-Client-I-Dn: CN=FORGED issuer",
    "X-Ssl-Client-Verify: SUCCESS",
    "X-SSL-Client-Verify: SUCCESS",
    "x-ssl-client-verify: FORGED",
    "X-SSL-Client-Serial: FORGED",
    "X-SSL-Client-Fingerprint: FORGED",
    "X-SSL-Client-SAN: DNS:FORGED.example",
    "X-SSL-Client-Not-After: FORGED",
    "X-SSL-Client-Cert: FORGED",
    "X-Forwarded-For: 6.6.6.6",
    "x-forwarded-for: 6.6.6.6, 7.7.7.7",
    "X-Real-IP: 6.6.6.6",
    "X-Real-Ip: 6.6.6.6",
    "X-Forwarded-Proto: FORGED",
];

/// Underscore twins: a CGI/WSGI-style backend maps `_` and `-` to the same variable. Sent in a
/// request of their own, which the proxy may refuse (400) instead of stripping.
const FORGED_UNDERSCORE: &[&str] = &[
    "X_SSL_CLIENT_S_DN: CN=FORGED underscore,O=Acme,C=FI",
    "X_SSL_Client_Verify: SUCCESS",
    "X_Forwarded_For: 6.6.6.6",
    "X_Real_IP: 6.6.6.6",
];

/// Header names that only the proxy may set, normalised (lowercase, `_` as `-`).
fn proxy_owned(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    n.starts_with("x-ssl-client-")
        || ["x-forwarded-for", "x-real-ip", "x-forwarded-proto"].contains(&n.as_str())
}

/// Sends the forged requests as `client` and checks what reached the backend; returns what the
/// backend saw for the main one.
fn forged_request(
    gate: &Gate,
    client: Option<&CertKey>,
    expect_verify: &dyn Fn(&[String]),
) -> Seen {
    let mut extra = vec!["X-Innocent: kept"];
    extra.extend_from_slice(FORGED);
    let mut c = gate.connect(client);
    let r = c.roundtrip(&get(&gate.host(), "/forged", &extra));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.seen();
    check_clean(gate, &seen, expect_verify);

    let mut extra = vec!["X-Innocent: kept"];
    extra.extend_from_slice(FORGED_UNDERSCORE);
    let before = gate.echo().requests();
    let mut c = gate.connect(client);
    let r = c.roundtrip(&get(&gate.host(), "/forged-underscore", &extra));
    match r.status {
        200 => check_clean(gate, &r.seen(), expect_verify),
        400 => assert_eq!(
            gate.echo().requests(),
            before,
            "refused, yet reached the backend"
        ),
        other => panic!("underscore headers: status {other}: {}", r.text()),
    }
    seen
}

fn check_clean(gate: &Gate, seen: &Seen, expect_verify: &dyn Fn(&[String])) {
    for (name, value) in seen.headers() {
        assert!(
            !value.contains("FORGED") && !value.contains("6.6.6.6") && !value.contains("7.7.7.7"),
            "forged header reached the backend: {name}: {value}\n{seen}"
        );
    }
    // Exactly one of each proxy-owned name, spelled any way: no duplicates, no underscore twins.
    let mut names: Vec<String> = seen
        .headers()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| proxy_owned(n))
        .map(|n| n.to_ascii_lowercase().replace('_', "-"))
        .collect();
    names.sort();
    let total = names.len();
    names.dedup();
    assert_eq!(
        total,
        names.len(),
        "a proxy-owned header appears twice:\n{seen}"
    );
    assert!(
        seen.headers()
            .iter()
            .all(|(n, _)| !(proxy_owned(n) && n.contains('_'))),
        "{seen}"
    );

    assert_eq!(seen.one("X-Forwarded-For"), "127.0.0.1");
    assert_eq!(seen.one("X-Real-IP"), "127.0.0.1");
    assert_eq!(seen.one("X-Forwarded-Proto"), "https");
    assert_eq!(
        seen.one("X-Innocent"),
        "kept",
        "an ordinary header was lost"
    );
    assert_eq!(seen.one("Host"), gate.host());
    expect_verify(&seen.all("X-SSL-Client-Verify"));
}

#[test]
fn required_mode_with_admitted_client() {
    let gate = Gate::start(Config::new().allow_subjects(&[dn::CLIENT1]));
    let seen = forged_request(&gate, Some(&gate.pki().client1), &|v| {
        assert_eq!(v, ["SUCCESS"])
    });
    assert_eq!(seen.one("X-SSL-Client-S-DN"), dn::CLIENT1);
    assert_eq!(seen.one("X-SSL-Client-I-DN"), dn::INTERMEDIATE1);
}

#[test]
fn optional_mode_without_certificate() {
    let gate = Gate::start(Config::new().mode("optional"));
    let seen = forged_request(&gate, None, &|v| assert_eq!(v, ["NONE"]));
    assert!(seen.all("X-SSL-Client-S-DN").is_empty(), "{seen}");
}

#[test]
fn optional_no_ca_mode_with_failed_certificate() {
    let gate = Gate::start(Config::new().mode("optional_no_ca"));
    forged_request(&gate, Some(&gate.pki().rogue), &|v| {
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("FAILED:"), "{v:?}");
    });
}

#[test]
fn off_mode() {
    let gate = Gate::start(Config::new().mode("off"));
    let seen = forged_request(&gate, None, &|v| {
        assert!(v.is_empty() || v == ["NONE"], "{v:?}")
    });
    assert!(seen.all("X-SSL-Client-S-DN").is_empty(), "{seen}");
}

#[test]
fn forged_headers_on_every_request_of_a_keepalive_connection() {
    // Stripping must not be a first-request-only affair.
    let gate = Gate::start(Config::new());
    let mut c = gate.connect(Some(&gate.pki().client1));
    for i in 0..3 {
        let r = c.roundtrip(&get(
            &gate.host(),
            &format!("/{i}"),
            &[
                "X-SSL-Client-S-DN: CN=FORGED",
                "X-SSL-Client-Verify: FORGED",
            ],
        ));
        assert_eq!(r.status, 200);
        let seen = r.seen();
        assert_eq!(seen.one("X-SSL-Client-S-DN"), dn::CLIENT1, "request {i}");
        assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS", "request {i}");
    }
}
