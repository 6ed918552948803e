//! Revocation with CRLs: a revoked client is refused in each reject mode (and reported failed in
//! optional_no_ca), a CRL changed on disk applies without a restart or SIGHUP, a broken update
//! keeps the previous list, stale CRLs are refused or warned about, `crl_check = "chain"` needs a
//! CRL from every CA, and neither resumption nor the verified-chain cache ever admits a
//! certificate after its revocation.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boring::ssl::{SslFiletype, SslMethod, SslVersion};
use common::ca;
use common::resuming::ResumingClient;
use common::*;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};

const CERT_ERROR: &str = "The SSL certificate error";
const REQUEST: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// A root, an intermediate under it, and two clients under the intermediate: `good` (serial
/// 0x1001) and `bad` (serial 0x1002, the one the tests revoke). The listener trusts the root and
/// the intermediate.
struct Pki {
    root_pem: String,
    root: Issuer<'static, KeyPair>,
    int: Issuer<'static, KeyPair>,
    /// An impostor of the intermediate: same name, another key.
    impostor: Issuer<'static, KeyPair>,
    int_serial: u64,
    good: CertKey,
    bad: CertKey,
}

const GOOD: u64 = 0x1001;
const BAD: u64 = 0x1002;

impl Pki {
    /// A server certificate for `localhost` under the intermediate, with the chain.
    fn server(&self, env: &Env, serial: u64) -> CertKey {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.serial_number = Some(SerialNumber::from(serial));
        let cert = p.signed_by(&key, &self.int).unwrap();
        let int_pem = std::fs::read_to_string(&self.good.cert).unwrap();
        let int_pem = &int_pem[int_pem.find("-----END CERTIFICATE-----").unwrap() + 26..];
        CertKey {
            cert: env.write("pki/upstream.pem", cert.pem() + int_pem),
            key: env.write("pki/upstream.key", key.serialize_pem()),
        }
    }

    fn new(env: &Env) -> Pki {
        let (root, root_pem) = ca::root("CRL Test Root", 0x10);

        let int_serial = 0x11;
        let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let int_params = ca::ca_params("CRL Test Intermediate", int_serial);
        let int_cert = int_params.signed_by(&int_key, &root).unwrap();
        let int = Issuer::new(int_params, int_key);

        let imp_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let impostor = Issuer::new(ca::ca_params("CRL Test Intermediate", 0x12), imp_key);

        let client = |stem: &str, serial| {
            let cn = format!("{stem}.crl.local");
            ca::client(
                env,
                &format!("pki/{stem}"),
                &cn,
                serial,
                &int,
                &int_cert.pem(),
            )
        };
        let (good, bad) = (client("good", GOOD), client("bad", BAD));
        // The listener trusts this root and intermediate too.
        let bundle = env.pki.dir.join("client-ca-bundle.pem");
        let mut pem = std::fs::read_to_string(&bundle).unwrap();
        pem.push_str(&root_pem);
        pem.push_str(&int_cert.pem());
        std::fs::write(&bundle, pem).unwrap();
        Pki {
            root_pem,
            root,
            int,
            impostor,
            int_serial,
            good,
            bad,
        }
    }
}

/// Replaces `rel` in `env` atomically (write aside, rename), as a CRL publisher does.
fn publish(env: &Env, rel: &str, contents: &str) {
    let tmp = env.write(&format!("{rel}.tmp"), contents);
    std::fs::rename(tmp, env.path(rel)).unwrap();
}

/// A gate with a fresh [`Pki`] whose intermediate's CRL, `pki/int.crl`, revokes `revoked`, run
/// with `config` and that CRL.
fn gate_revoking(revoked: &[u64], config: Config) -> (Gate, Pki) {
    let env = Env::new();
    let pki = Pki::new(&env);
    env.write("pki/int.crl", ca::crl(&pki.int, revoked, ca::DAY));
    let gate = start(env, config.client_auth_extra("crl = [\"pki/int.crl\"]"));
    (gate, pki)
}

fn start(env: Env, config: Config) -> Gate {
    Gate::start_in(env, config)
}

fn status(gate: &Gate, ck: &CertKey) -> u16 {
    gate.curl("/").cert(ck).run().status
}

/// Waits until `ck` gets `want`, at most `limit`.
fn wait_status(gate: &Gate, ck: &CertKey, want: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = status(gate, ck);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got}, not {want}, after {limit:?}; log:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_revoked_client_is_refused_in_each_reject_mode() {
    // reject = "http": nginx's 400 page; the other client of the same CA is admitted.
    let (gate, pki) = gate_revoking(&[BAD], Config::new());
    assert_eq!(status(&gate, &pki.good), 200, "{}", gate.log());
    let out = gate.curl("/").cert(&pki.bad).run();
    assert_eq!(out.status, 400);
    assert!(out.text().contains(CERT_ERROR), "{}", out.text());
    assert!(gate.log().contains("certificate revoked"), "{}", gate.log());
    // A client of a CA that has no CRL in the list is refused too.
    assert_eq!(status(&gate, &gate.pki().client1), 400);
    drop(gate);

    // reject = "handshake": the certificate_revoked alert.
    let (gate, pki) = gate_revoking(&[BAD], Config::new().reject("handshake"));
    let s = gate.s_client(Some(&pki.bad), REQUEST);
    assert!(
        s.alert("certificate revoked"),
        "no certificate_revoked alert:\n{}",
        s.output
    );
    assert_eq!(status(&gate, &pki.good), 200);
    drop(gate);

    // optional_no_ca: forwarded, marked as failed.
    let (gate, pki) = gate_revoking(&[BAD], Config::new().mode("optional_no_ca"));
    let out = gate.curl("/").cert(&pki.bad).run();
    assert_eq!(out.status, 200);
    assert_eq!(
        out.seen().one("X-SSL-Client-Verify"),
        "FAILED:certificate revoked"
    );
    let out = gate.curl("/").cert(&pki.good).run();
    assert_eq!(out.seen().one("X-SSL-Client-Verify"), "SUCCESS");
}

#[test]
fn a_crl_changed_on_disk_applies_without_sighup_and_the_cache_forgets() {
    let (gate, pki) = gate_revoking(
        &[],
        Config::new()
            .workers(2)
            .client_auth_extra("crl_refresh = \"1s\""),
    );
    // Several times: the chain is in the verified-chain cache.
    for _ in 0..4 {
        assert_eq!(status(&gate, &pki.bad), 200, "{}", gate.log());
    }
    publish(
        &gate.env,
        "pki/int.crl",
        &ca::crl(&pki.int, &[BAD], ca::DAY),
    );
    wait_status(&gate, &pki.bad, 400, Duration::from_secs(8));
    for _ in 0..4 {
        assert_eq!(status(&gate, &pki.bad), 400);
        assert_eq!(status(&gate, &pki.good), 200);
    }
    assert!(gate.log().contains("CRL file reloaded"), "{}", gate.log());
    // And back: un-revoking applies too.
    publish(&gate.env, "pki/int.crl", &ca::crl(&pki.int, &[], ca::DAY));
    wait_status(&gate, &pki.bad, 200, Duration::from_secs(8));
}

#[test]
fn sighup_rereads_the_crls() {
    let (gate, pki) = gate_revoking(&[], Config::new().client_auth_extra("crl_refresh = \"1h\""));
    assert_eq!(status(&gate, &pki.bad), 200);
    publish(
        &gate.env,
        "pki/int.crl",
        &ca::crl(&pki.int, &[BAD], ca::DAY),
    );
    std::thread::sleep(Duration::from_millis(1500));
    // No refresh for an hour: still admitted until the SIGHUP.
    assert_eq!(status(&gate, &pki.bad), 200);
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(gate.pid() as i32, libc::SIGHUP) }, 0);
    wait_status(&gate, &pki.bad, 400, Duration::from_secs(8));
    assert_eq!(status(&gate, &pki.good), 200);
}

#[test]
fn a_broken_or_forged_update_keeps_the_previous_list() {
    let env = Env::new();
    let pki = Pki::new(&env);
    env.write("pki/int.crl", ca::crl(&pki.int, &[BAD], ca::DAY));
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gate = start(
        env,
        Config::new()
            .client_auth_extra("crl = [\"pki/int.crl\"]")
            .client_auth_extra("crl_refresh = \"1s\"")
            .file_extra(&format!("\n[admin]\nlisten = \"{admin}\"")),
    );
    assert_eq!(status(&gate, &pki.bad), 400);
    let errors_metric = |scrape: &str| -> Option<u64> {
        scrape
            .lines()
            .find(|l| l.starts_with("certgate_crl_load_errors_total{") && l.contains("int.crl"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let before = scrape(admin);
    assert_eq!(errors_metric(&before), Some(0), "{before}");
    assert!(
        before.contains("certgate_crl_next_update_seconds{") && before.contains("int.crl"),
        "{before}"
    );
    // Half-written garbage, then a CRL (revoking nothing) signed by an impostor's key.
    for (contents, logged) in [
        (
            "-----BEGIN X509 CRL-----\nMIIB\n".to_string(),
            "CRL file not reloaded",
        ),
        (
            ca::crl(&pki.impostor, &[], ca::DAY),
            "signature does not verify",
        ),
    ] {
        publish(&gate.env, "pki/int.crl", &contents);
        let deadline = Instant::now() + Duration::from_secs(8);
        while !gate.log().contains(logged) {
            assert!(
                Instant::now() < deadline,
                "not logged: {logged}\n{}",
                gate.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(status(&gate, &pki.bad), 400, "{}", gate.log());
        assert_eq!(status(&gate, &pki.good), 200);
    }
    assert!(gate.log().contains("previous list stays in force"));
    // Both failed re-reads are counted where an operator's alerting sees them.
    let after = scrape(admin);
    assert!(errors_metric(&after) >= Some(2), "{after}");
}

#[test]
fn stale_crls_are_refused_or_warned_about() {
    let env = Env::new();
    let pki = Pki::new(&env);
    env.write("pki/int.crl", ca::crl(&pki.int, &[BAD], -ca::HOUR));
    let gate = start(
        env,
        Config::new().client_auth_extra("crl = [\"pki/int.crl\"]"),
    );
    // Refuse (default): even the client the list does not revoke.
    assert_eq!(status(&gate, &pki.good), 400, "{}", gate.log());
    assert_eq!(status(&gate, &pki.bad), 400);
    drop(gate);

    let env = Env::new();
    let pki = Pki::new(&env);
    env.write("pki/int.crl", ca::crl(&pki.int, &[BAD], -ca::HOUR));
    let gate = start(
        env,
        Config::new()
            .client_auth_extra("crl = [\"pki/int.crl\"]")
            .client_auth_extra("stale_crl = \"warn\"")
            .client_auth_extra("crl_refresh = \"1s\""),
    );
    assert_eq!(status(&gate, &pki.good), 200, "{}", gate.log());
    assert_eq!(status(&gate, &pki.bad), 400);
    let deadline = Instant::now() + Duration::from_secs(8);
    while !gate.log().contains("past its nextUpdate and still applied") {
        assert!(Instant::now() < deadline, "no warning:\n{}", gate.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_crl_going_stale_while_running_refuses_resumption_too() {
    let env = Env::new();
    let pki = Pki::new(&env);
    env.write("pki/int.crl", ca::crl(&pki.int, &[], 3));
    let gate = start(
        env,
        Config::new()
            .client_auth_extra("crl = [\"pki/int.crl\"]")
            .client_auth_extra("crl_refresh = \"1s\""),
    );
    let client = ResumingClient::new(&gate.pki().server_ca, &pki.good, SslVersion::TLS1_3);
    assert_eq!(client.get(gate.addr()).1.status, 200);
    std::thread::sleep(Duration::from_secs(5));
    let (resumed, resp) = client.get(gate.addr());
    assert!(!resumed, "resumed under a stale CRL");
    assert_eq!(resp.status, 400);
}

#[test]
fn chain_needs_a_crl_from_every_ca_leaf_only_the_issuers() {
    // The status the good client gets from a gate with the intermediate's CRL (revoking nobody)
    // and the root's (revoking the intermediate when `root_revokes_int`) on disk, `crls` of them
    // configured, and `crl_check = "chain"` when `chain`.
    let good_status = |root_revokes_int: bool, crls: &str, chain: bool| {
        let env = Env::new();
        let pki = Pki::new(&env);
        let revoked: &[u64] = if root_revokes_int {
            &[pki.int_serial]
        } else {
            &[]
        };
        env.write("pki/int.crl", ca::crl(&pki.int, &[], ca::DAY));
        env.write("pki/root.crl", ca::crl(&pki.root, revoked, ca::DAY));
        let mut config = Config::new().client_auth_extra(crls);
        if chain {
            config = config.client_auth_extra("crl_check = \"chain\"");
        }
        let gate = start(env, config);
        (status(&gate, &pki.good), gate.log())
    };
    let both = "crl = [\"pki/int.crl\", \"pki/root.crl\"]";
    // The root's CRL revokes the intermediate; the intermediate's revokes nobody.
    // leaf: only the intermediate's CRL is consulted.
    let (got, log) = good_status(true, both, false);
    assert_eq!(got, 200, "{log}");
    let (got, log) = good_status(true, both, true);
    assert_eq!(got, 400, "{log}");

    // chain without the root's CRL: refused (nginx's behaviour); with it, admitted.
    let (got, log) = good_status(false, "crl = [\"pki/int.crl\"]", true);
    assert_eq!(got, 400, "{log}");
    let (got, log) = good_status(false, both, true);
    assert_eq!(got, 200, "{log}");
}

fn resumption_never_outlives_revocation(version: SslVersion) {
    let (gate, pki) = gate_revoking(
        &[],
        Config::new()
            .workers(2)
            .client_auth_extra("crl_refresh = \"1s\""),
    );
    let client = ResumingClient::new(&gate.pki().server_ca, &pki.bad, version);
    let (resumed, resp) = client.get(gate.addr());
    assert!(!resumed);
    assert_eq!(resp.status, 200);
    let mut reused = false;
    for _ in 0..4 {
        let (resumed, resp) = client.get(gate.addr());
        assert_eq!(resp.status, 200);
        reused |= resumed;
    }
    assert!(
        reused,
        "the client never resumed: the test would prove nothing"
    );
    // Sessions made under an unchanged list still resume after an unrelated refresh tick.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        client.get(gate.addr()).0,
        "no resumption without a CRL change"
    );

    publish(
        &gate.env,
        "pki/int.crl",
        &ca::crl(&pki.int, &[BAD], ca::DAY),
    );
    wait_status(&gate, &pki.bad, 400, Duration::from_secs(8));
    let (resumed, resp) = client.get(gate.addr());
    assert!(!resumed, "a session made before the revocation resumed");
    assert_eq!(resp.status, 400, "{}", resp.text());
    // Later sessions were made under the new list: they carry the failed verification.
    for _ in 0..3 {
        let (_, resp) = client.get(gate.addr());
        assert_eq!(resp.status, 400, "{}", resp.text());
        assert!(resp.text().contains(CERT_ERROR));
    }
}

#[test]
fn tls13_tickets_never_resume_past_revocation() {
    resumption_never_outlives_revocation(SslVersion::TLS1_3);
}

#[test]
fn tls12_session_ids_never_resume_past_revocation() {
    resumption_never_outlives_revocation(SslVersion::TLS1_2);
}

#[test]
fn check_reports_each_crl_and_refuses_unusable_ones() {
    let env = Env::new();
    let pki = Pki::new(&env);
    env.write("pki/int.crl", ca::crl(&pki.int, &[BAD, GOOD], ca::DAY));
    env.write("pki/old.crl", ca::crl(&pki.root, &[], -ca::HOUR));
    let port = free_port();
    let write = |extra: &[&str]| {
        let mut c = Config::new();
        for l in extra {
            c = c.client_auth_extra(l);
        }
        env.write("certgate.toml", c.render(port, &[dead_addr()]))
    };
    let cfg = write(&["crl = [\"pki/int.crl\", \"pki/old.crl\"]"]);
    let out = env.check(&cfg);
    assert!(out.status.success(), "{}", out.all());
    assert!(out.stdout.contains("crl "), "{}", out.all());
    assert!(
        out.stdout
            .contains("issuer \"CN=CRL Test Intermediate\", 2 revoked, next update 20"),
        "{}",
        out.all()
    );
    assert!(out.all().contains("STALE"), "{}", out.all());

    // DER is read too.
    let pem = std::fs::read_to_string(env.path("pki/int.crl")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    env.write("pki/int.der", boring::base64::decode_block(&b64).unwrap());
    let cfg = write(&["crl = [\"pki/int.der\"]"]);
    let out = env.check(&cfg);
    assert!(out.status.success(), "{}", out.all());
    assert!(out.stdout.contains("2 revoked"), "{}", out.all());

    for (contents, reason) in [
        ("not a crl".to_string(), "not a CRL"),
        (
            ca::crl(&pki.impostor, &[], ca::DAY),
            "signature does not verify",
        ),
    ] {
        env.write("pki/x.crl", contents);
        let cfg = write(&["crl = [\"pki/int.crl\", \"pki/x.crl\"]"]);
        let out = env.check(&cfg);
        assert!(!out.status.success());
        assert!(
            out.stderr.contains("certgate.toml:")
                && out.stderr.contains(": listener[0].client_auth.crl: ")
                && out.stderr.contains("x.crl")
                && out.stderr.contains(reason),
            "{}",
            out.all()
        );
    }
    // A CRL from a CA the listener does not trust.
    let other_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let other = Issuer::new(ca::ca_params("Stranger CA", 0x99), other_key);
    env.write("pki/x.crl", ca::crl(&other, &[], ca::DAY));
    let out = env.check(&write(&["crl = [\"pki/x.crl\"]"]));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("not among the CAs of client_auth.ca"),
        "{}",
        out.all()
    );
    // chain: the CAs without a CRL are named.
    let out = env.check(&write(&[
        "crl = [\"pki/int.crl\"]",
        "crl_check = \"chain\"",
    ]));
    assert!(out.status.success(), "{}", out.all());
    assert!(
        out.stderr.contains("warning")
            && out.stderr.contains("no CRL from CA \"CN=CRL Test Root\"")
            && !out
                .stderr
                .contains("no CRL from CA \"CN=CRL Test Intermediate\""),
        "{}",
        out.all()
    );
    let out = env.check(&write(&["crl = [\"pki/int.crl\"]", "crl_refresh = \"0s\""]));
    assert!(!out.status.success());
    assert!(out.stderr.contains("crl_refresh"), "{}", out.all());
}

/// A TLS upstream answering 200 and closing; records whether each session was resumed.
struct TlsServer {
    addr: SocketAddr,
    resumed: Arc<Mutex<Vec<bool>>>,
}

impl TlsServer {
    fn spawn(server: &CertKey) -> TlsServer {
        use std::io::{Read, Write};
        let mut b = boring::ssl::SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_certificate_chain_file(&server.cert).unwrap();
        b.set_private_key_file(&server.key, SslFiletype::PEM)
            .unwrap();
        b.set_session_id_context(b"crl-upstream").unwrap();
        let acceptor = Arc::new(b.build());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let resumed: Arc<Mutex<Vec<bool>>> = Arc::default();
        let seen = resumed.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let Ok(mut tls) = acceptor.accept(tcp) else {
                    continue;
                };
                seen.lock().unwrap().push(tls.ssl().session_reused());
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                let _ = tls.shutdown();
            }
        });
        TlsServer { addr, resumed }
    }
}

#[test]
fn an_upstream_whose_certificate_is_revoked_is_refused() {
    const SERVER: u64 = 0x2001;
    let env = Env::new();
    let pki = Pki::new(&env);
    let server = TlsServer::spawn(&pki.server(&env, SERVER));
    // The CAs that sign the CRLs are in ca.
    let int_pem = std::fs::read_to_string(&pki.good.cert).unwrap();
    let int_pem = &int_pem[int_pem.find("-----END CERTIFICATE-----").unwrap() + 26..];
    env.write("pki/crl-root.pem", pki.root_pem.clone() + int_pem);
    env.write("pki/int.crl", ca::crl(&pki.int, &[], ca::DAY));
    let gate = start(
        env,
        Config::new()
            .upstream(&[server.addr])
            .upstream_extra("[upstream.tls]")
            .upstream_extra("ca = \"pki/crl-root.pem\"")
            .upstream_extra("server_name = \"localhost\"")
            .upstream_extra("crl = [\"pki/int.crl\"]")
            .upstream_extra("crl_refresh = \"1s\""),
    );
    for _ in 0..3 {
        assert_eq!(status(&gate, &gate.pki().client1), 200, "{}", gate.log());
    }
    assert!(
        server.resumed.lock().unwrap().iter().any(|r| *r),
        "certgate never resumed towards the upstream: the test would prove nothing"
    );
    publish(
        &gate.env,
        "pki/int.crl",
        &ca::crl(&pki.int, &[SERVER], ca::DAY),
    );
    wait_status(&gate, &gate.pki().client1, 502, Duration::from_secs(8));
    let n = server.resumed.lock().unwrap().len();
    for _ in 0..3 {
        assert_eq!(status(&gate, &gate.pki().client1), 502);
    }
    // No handshake completed since: a resumed session would have skipped the check.
    assert_eq!(server.resumed.lock().unwrap().len(), n);
}
