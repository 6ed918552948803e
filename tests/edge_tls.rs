//! The edge handshake: every client key type (Ed25519, ECDSA P-256/P-384, RSA with PKCS#1 and
//! PSS) admitted with its identity, wrong signatures refused, no SHA-1 either way, the
//! CertificateRequest advertising exactly what is accepted; ciphers, groups and the hybrid
//! post-quantum X25519MLKEM768 first (listener and upstream side); RSA + ECDSA certificates on
//! one listener, chosen by the client's signature algorithms; and `check` on those keys.
//!
//! Clients are real: curl and `openssl s_client` (OpenSSL 3.0, which has no ML-KEM) and a
//! BoringSSL client for what OpenSSL cannot offer.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use boring::pkey::Id;
use boring::ssl::{SslAcceptor, SslConnector, SslConnectorBuilder, SslFiletype, SslMethod};
use boring::x509::X509;
use common::*;

const CERT_ERROR: &str = "The SSL certificate error";
const NO_CERT: &str = "No required SSL certificate was sent";

/// The CertificateRequest's schemes by default, as OpenSSL prints them: every client key
/// type, no SHA-1.
const DEFAULT_REQUESTED: &str = "ed25519:ECDSA+SHA256:ECDSA+SHA384:RSA-PSS+SHA256:\
RSA-PSS+SHA384:RSA-PSS+SHA512:RSA+SHA256:RSA+SHA384:RSA+SHA512";

/// `openssl s_client` against the gate with extra arguments; its whole output (the connection
/// is closed after the handshake: stdin is empty).
fn s_client(gate: &Gate, args: &[&str]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(gate.addr().to_string())
        .arg("-servername")
        .arg("localhost")
        .arg("-CAfile")
        .arg(&gate.pki().server_ca)
        .args(args)
        .stdin(std::process::Stdio::null());
    run_bounded(&mut cmd, Duration::from_secs(15)).all()
}

/// The value of the s_client output line starting with `label`.
fn line<'a>(out: &'a str, label: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
}

/// What a BoringSSL client saw of a handshake, and the response to `GET /`.
#[derive(Debug)]
struct Seen {
    group: Option<String>,
    cipher: String,
    server_key: Id,
    status: u16,
}

/// Handshake with a BoringSSL client tuned by `tune`, then `GET /` as `client`.
fn boring_get(
    gate: &Gate,
    client: Option<&CertKey>,
    tune: impl FnOnce(&mut SslConnectorBuilder),
) -> Result<Seen, String> {
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_ca_file(&gate.pki().server_ca)
        .map_err(|e| e.to_string())?;
    if let Some(ck) = client {
        b.set_certificate_chain_file(&ck.cert)
            .map_err(|e| e.to_string())?;
        b.set_private_key_file(&ck.key, SslFiletype::PEM)
            .map_err(|e| e.to_string())?;
    }
    tune(&mut b);
    let tcp = std::net::TcpStream::connect(gate.addr()).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tls = b
        .build()
        .connect("localhost", tcp)
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let ssl = tls.ssl();
    let group = ssl.curve_name().map(str::to_owned);
    let cipher = ssl
        .current_cipher()
        .map(|c| c.name().to_owned())
        .unwrap_or_default();
    let server_key = ssl
        .peer_certificate()
        .and_then(|c| c.public_key().ok())
        .map(|k| k.id())
        .ok_or("no server certificate")?;
    let mut http = HttpReader::new(tls);
    let resp = http
        .roundtrip(&get(&gate.host(), "/", &["Connection: close"]))
        .status;
    Ok(Seen {
        group,
        cipher,
        server_key,
        status: resp,
    })
}

/// A copy of `ck` whose leaf carries a corrupted signature (its last byte flipped), written
/// next to the PKI as `<stem>.pem`; the key is the original's.
fn with_bad_signature(gate: &Gate, ck: &CertKey, stem: &str) -> CertKey {
    let pem = std::fs::read(&ck.cert).unwrap();
    let chain = X509::stack_from_pem(&pem).unwrap();
    let mut der = chain[0].to_der().unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let bad = X509::from_der(&der).unwrap();
    let mut out = bad.to_pem().unwrap();
    for c in &chain[1..] {
        out.extend(c.to_pem().unwrap());
    }
    let path = gate.pki().dir.join(format!("{stem}.pem"));
    std::fs::write(&path, out).unwrap();
    CertKey {
        cert: path,
        key: ck.key.clone(),
    }
}

/// The key types of the test PKI's clients, with their subject DN.
fn key_types(pki: &Pki) -> Vec<(&'static str, CertKey, &'static str)> {
    vec![
        ("ECDSA P-256", pki.client1.clone(), dn::CLIENT1),
        ("ECDSA P-384", pki.client_p384.clone(), dn::CLIENT_P384),
        ("Ed25519", pki.client_ed25519.clone(), dn::CLIENT_ED25519),
        ("RSA", pki.client_rsa.clone(), dn::CLIENT_RSA),
    ]
}

// ---------------------------------------------------------------------------------------------
// Every client key type, and no weak signatures
// ---------------------------------------------------------------------------------------------

#[test]
fn every_client_key_type_gets_in_with_its_identity_over_tls12_and_tls13() {
    let gate = Gate::start(Config::new());
    for (what, ck, subject) in key_types(gate.pki()) {
        for version in ["--tlsv1.3", "--tls-max"] {
            let mut curl = gate.curl("/").cert(&ck);
            curl = if version == "--tls-max" {
                curl.arg("--tls-max").arg("1.2")
            } else {
                curl.arg(version)
            };
            let out = curl.run();
            assert_eq!(out.status, 200, "{what} {version}: {out:?}");
            let seen = out.seen();
            assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS", "{what}");
            assert_eq!(seen.one("X-SSL-Client-S-DN"), subject, "{what} {version}");
        }
    }
}

#[test]
fn rsa_clients_sign_with_pkcs1_or_pss_as_the_listener_allows() {
    // (listener's only scheme, the other one, their OpenSSL names); TLS 1.2, where an RSA
    // client may sign with either.
    for (scheme, mine, other) in [
        ("rsa_pkcs1_sha256", "RSA+SHA256", "RSA-PSS+SHA256"),
        ("rsa_pss_rsae_sha256", "RSA-PSS+SHA256", "RSA+SHA256"),
    ] {
        let gate =
            Gate::start(Config::new().tls_extra(&format!("signature_algorithms = [\"{scheme}\"]")));
        let rsa = &gate.pki().client_rsa;
        // A client signing with the listener's scheme gets in; its CertificateRequest lists
        // that scheme alone.
        let out = s_client_get(&gate, rsa, &["-tls1_2", "-client_sigalgs", mine]);
        assert_eq!(
            line(&out, "Requested Signature Algorithms:"),
            Some(mine),
            "{out}"
        );
        assert!(
            out.contains("HTTP/1.1 200 OK"),
            "{scheme}, client {mine}: {out}"
        );
        assert!(out.contains(dn::CLIENT_RSA), "{out}");
        // One that can sign only with the other scheme sends no certificate: the 400 page.
        let out = s_client_get(&gate, rsa, &["-tls1_2", "-client_sigalgs", other]);
        assert!(
            out.contains("HTTP/1.1 400 Bad Request"),
            "{scheme}, client {other}: {out}"
        );
        assert!(out.contains(NO_CERT), "{out}");
        // curl, whatever it prefers, signs with what is asked.
        let ok = gate.curl("/").cert(rsa).arg("--tls-max").arg("1.2").run();
        assert_eq!(ok.status, 200, "{scheme}: {ok:?}");
        assert_eq!(ok.seen().one("X-SSL-Client-S-DN"), dn::CLIENT_RSA);
    }
    // TLS 1.3 allows only PSS for a CertificateVerify.
    let gate = Gate::start(Config::new());
    let rsa = &gate.pki().client_rsa;
    let out = s_client_get(
        &gate,
        rsa,
        &["-tls1_3", "-client_sigalgs", "RSA-PSS+SHA256"],
    );
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
}

/// `openssl s_client` as `ck` sending `GET /` (and reading until the server closes); its whole
/// output, the response included.
fn s_client_get(gate: &Gate, ck: &CertKey, args: &[&str]) -> String {
    use std::process::Stdio;
    let req = gate.pki().dir.join("s_client-request.txt");
    std::fs::write(&req, get(&gate.host(), "/", &["Connection: close"])).unwrap();
    let out_path = gate.pki().dir.join("s_client-out.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = spawn_retrying(
        Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(gate.addr().to_string())
            .arg("-servername")
            .arg("localhost")
            .arg("-CAfile")
            .arg(&gate.pki().server_ca)
            .arg("-cert")
            .arg(&ck.cert)
            .arg("-key")
            .arg(&ck.key)
            .arg("-ign_eof")
            .args(args)
            .stdin(std::fs::File::open(&req).unwrap())
            .stdout(out.try_clone().unwrap())
            .stderr(Stdio::from(out)),
    );
    wait_bounded(&mut child, Duration::from_secs(15)).expect("s_client did not finish");
    std::fs::read_to_string(&out_path).unwrap()
}

#[test]
fn a_wrong_signature_of_each_key_type_is_refused() {
    let gate = Gate::start(Config::new());
    for (what, ck, _) in key_types(gate.pki()) {
        let stem = format!("bad-{}", what.replace(' ', "-").to_lowercase());
        let bad = with_bad_signature(&gate, &ck, &stem);
        let before = gate.echo().requests();
        let out = gate.curl("/").cert(&bad).run();
        assert_eq!(out.status, 400, "{what}: {out:?}");
        assert!(out.text().contains(CERT_ERROR), "{what}: {out:?}");
        assert_eq!(
            gate.echo().requests(),
            before,
            "{what} reached the upstream"
        );
    }
    // The same through the handshake: the alert names the signature failure.
    let gate = Gate::start(Config::new().reject("handshake"));
    for (what, ck, _) in key_types(gate.pki()) {
        let stem = format!("bad-hs-{}", what.replace(' ', "-").to_lowercase());
        let bad = with_bad_signature(&gate, &ck, &stem);
        let out = gate.curl("/").cert(&bad).run();
        assert_eq!(out.status, 0, "{what}: {out:?}");
        assert_eq!(gate.echo().requests(), 0, "{what} reached the upstream");
    }
}

#[test]
fn certificate_request_lists_exactly_the_accepted_schemes_and_no_sha1() {
    let gate = Gate::start(Config::new());
    for version in ["-tls1_2", "-tls1_3"] {
        let out = s_client(&gate, &[version]);
        let requested = line(&out, "Requested Signature Algorithms:")
            .unwrap_or_else(|| panic!("{version}: no CertificateRequest seen:\n{out}"));
        assert_eq!(requested, DEFAULT_REQUESTED, "{version}");
        assert!(!requested.contains("SHA1"), "{version}: {requested}");
    }
    // An override is advertised as written, and a key type left out is not accepted.
    let gate = Gate::start(
        Config::new().tls_extra("signature_algorithms = [\"ed25519\", \"ECDSA+SHA256\"]"),
    );
    let out = s_client(&gate, &["-tls1_2"]);
    assert_eq!(
        line(&out, "Requested Signature Algorithms:"),
        Some("ed25519:ECDSA+SHA256"),
        "{out}"
    );
    let pki = gate.pki();
    for ck in [&pki.client_ed25519, &pki.client1] {
        assert_eq!(gate.curl("/").cert(ck).run().status, 200, "{ck:?}");
    }
    // OpenSSL's client has nothing to sign with for these: it sends no certificate.
    for ck in [&pki.client_rsa, &pki.client_p384] {
        let out = gate.curl("/").cert(ck).run();
        assert_eq!(out.status, 400, "{ck:?}: {out:?}");
        assert!(out.text().contains(NO_CERT), "{ck:?}: {out:?}");
    }
}

#[test]
fn the_server_never_signs_with_sha1() {
    let gate = Gate::start(Config::new().mode("off"));
    // A TLS 1.2 client that offers SHA-1 schemes only.
    let out = s_client(
        &gate,
        &[
            "-tls1_2",
            "-sigalgs",
            "ECDSA+SHA1:RSA+SHA1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
    );
    assert!(
        out.contains("alert handshake failure") || out.contains("no shared"),
        "{out}"
    );
    assert!(!out.contains("Peer signing digest: SHA1"), "{out}");
    // The same client with SHA-256 too gets it.
    let out = s_client(
        &gate,
        &[
            "-tls1_2",
            "-sigalgs",
            "ECDSA+SHA1:ECDSA+SHA256",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
    );
    assert_eq!(line(&out, "Peer signing digest:"), Some("SHA256"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Ciphers, groups and post-quantum key agreement
// ---------------------------------------------------------------------------------------------

#[test]
fn x25519mlkem768_is_preferred_and_clients_without_it_still_connect() {
    let gate = Gate::start(Config::new());
    let pki = gate.pki().clone();
    let seen = boring_get(&gate, Some(&pki.client1), |b| {
        b.set_curves_list("X25519MLKEM768:X25519:P-256").unwrap();
    })
    .unwrap();
    assert_eq!(seen.group.as_deref(), Some("X25519MLKEM768"), "{seen:?}");
    assert_eq!(seen.status, 200);
    // A client listing X25519 first but also offering the hybrid still gets the hybrid.
    let seen = boring_get(&gate, Some(&pki.client1), |b| {
        b.set_curves_list("X25519:X25519MLKEM768").unwrap();
    })
    .unwrap();
    assert_eq!(seen.group.as_deref(), Some("X25519MLKEM768"), "{seen:?}");
    // OpenSSL 3.0 has no ML-KEM: X25519 alone, then P-256 alone.
    for (groups, temp) in [("X25519", "X25519"), ("P-256", "ECDH, prime256v1")] {
        let out = s_client(&gate, &["-groups", groups]);
        let key = line(&out, "Server Temp Key:").unwrap_or_else(|| panic!("{groups}: {out}"));
        assert!(key.starts_with(temp), "{groups}: {key}");
    }
    let out = gate
        .curl("/")
        .cert(&pki.client1)
        .arg("--curves")
        .arg("X25519")
        .run();
    assert_eq!(out.status, 200, "{out:?}");
}

#[test]
fn listener_groups_and_ciphers_are_what_is_negotiated() {
    let gate = Gate::start(
        Config::new()
            .tls_extra("groups = [\"P-384\"]")
            .tls_extra("ciphers = \"ECDHE-ECDSA-CHACHA20-POLY1305:TLS_AES_128_GCM_SHA256\""),
    );
    // (In TLS 1.2 the client must also list the curve of the server's ECDSA key, P-256.)
    let out = s_client(&gate, &["-tls1_2", "-groups", "P-256:P-384"]);
    assert_eq!(
        line(&out, "Server Temp Key:"),
        Some("ECDH, secp384r1, 384 bits"),
        "{out}"
    );
    assert!(
        out.contains("Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"),
        "{out}"
    );
    // No group in common, or no TLS 1.2 cipher in common: refused.
    let out = s_client(&gate, &["-groups", "X25519"]);
    assert!(out.contains("alert handshake failure"), "{out}");
    let out = s_client(
        &gate,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    );
    assert!(out.contains("alert handshake failure"), "{out}");
    // TLS 1.3 suites are BoringSSL's: AES-256-GCM still works there.
    let out = s_client(
        &gate,
        &[
            "-tls1_3",
            "-groups",
            "P-384",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384",
        ],
    );
    assert!(out.contains("Cipher is TLS_AES_256_GCM_SHA384"), "{out}");
}

/// A TLS upstream (BoringSSL; TLS 1.2 only with `tls12`, so that ciphers count) answering 200
/// with the group and cipher it negotiated.
struct TlsUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TlsUpstream {
    fn spawn(pki: &Pki, groups: &str, tls12: bool) -> TlsUpstream {
        Self::spawn_with(&pki.server, None, groups, tls12)
    }

    /// With `server` as its certificate, and signing only with `sigalgs` when given.
    fn spawn_with(
        server: &CertKey,
        sigalgs: Option<&str>,
        groups: &str,
        tls12: bool,
    ) -> TlsUpstream {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_certificate_chain_file(&server.cert).unwrap();
        b.set_private_key_file(&server.key, SslFiletype::PEM)
            .unwrap();
        if let Some(list) = sigalgs {
            b.set_sigalgs_list(list).unwrap();
        }
        if tls12 {
            b.set_max_proto_version(Some(boring::ssl::SslVersion::TLS1_2))
                .unwrap();
        }
        b.set_curves_list(groups).unwrap();
        let acceptor = Arc::new(b.build());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((tcp, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let acceptor = acceptor.clone();
                thread::spawn(move || {
                    let Ok(tls) = acceptor.accept(tcp) else {
                        return;
                    };
                    let body = format!(
                        "group={} cipher={}",
                        tls.ssl().curve_name().unwrap_or("-"),
                        tls.ssl().current_cipher().map_or("-", |c| c.name())
                    );
                    let mut http = HttpReader::new(tls);
                    let mut head = Vec::new();
                    // Bodiless requests: each head is answered once complete.
                    while let Ok(bytes) = http.read_some() {
                        if bytes.is_empty() {
                            break;
                        }
                        head.extend_from_slice(&bytes);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if http.send(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        TlsUpstream { addr, stop }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn upstream_groups_and_ciphers_are_offered_to_the_servers() {
    let env = Env::new();
    let up = TlsUpstream::spawn(&env.pki, "X25519MLKEM768:X25519:P-384", false);
    // Defaults: the hybrid group first.
    let gate = Gate::start_in(
        env,
        Config::new()
            .upstream(&[up.addr])
            .upstream_extra("[upstream.tls]\nca = \"pki/server-ca.pem\""),
    );
    let out = gate.curl("/").cert(&gate.pki().client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(
        out.text().starts_with("group=X25519MLKEM768 "),
        "{}",
        out.text()
    );
    drop(gate);

    let env = Env::new();
    let up = TlsUpstream::spawn(&env.pki, "X25519MLKEM768:X25519:P-384", true);
    let gate = Gate::start_in(
        env,
        Config::new().upstream(&[up.addr]).upstream_extra(
            // (TLS 1.2: the groups must hold the curve of the server's ECDSA key, P-256.)
            "[upstream.tls]\nca = \"pki/server-ca.pem\"\ngroups = [\"P-384\", \"P-256\"]\n\
             ciphers = \"ECDHE-ECDSA-CHACHA20-POLY1305\"",
        ),
    );
    let out = gate.curl("/").cert(&gate.pki().client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        out.text(),
        "group=P-384 cipher=ECDHE-ECDSA-CHACHA20-POLY1305"
    );
}

#[test]
fn an_upstream_signing_only_with_sha1_is_refused() {
    for (sigalgs, status) in [("RSA+SHA1", 502), ("RSA+SHA1:RSA-PSS+SHA256", 200)] {
        let env = Env::new();
        let up = TlsUpstream::spawn_with(&env.pki.server_rsa, Some(sigalgs), "X25519", true);
        let gate = Gate::start_in(
            env,
            Config::new()
                .upstream(&[up.addr])
                .upstream_extra("[upstream.tls]\nca = \"pki/server-ca.pem\""),
        );
        let out = gate.curl("/").cert(&gate.pki().client1).run();
        assert_eq!(
            out.status, status,
            "upstream signing with {sigalgs}: {out:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Dual certificates
// ---------------------------------------------------------------------------------------------

/// A listener serving two certificates, in `order` ("rsa" / "ecdsa"); no client certificates.
fn dual_config(order: [&str; 2]) -> Config {
    let pick = |stem: &str| match stem {
        "rsa" => ("pki/server-rsa-chain.pem", "pki/server-rsa.key"),
        _ => ("pki/server-chain.pem", "pki/server.key"),
    };
    let (c0, k0) = pick(order[0]);
    let (c1, k1) = pick(order[1]);
    Config::new()
        .mode("off")
        .tls_extra(&format!("certificate = [\"{c0}\", \"{c1}\"]"))
        .tls_extra(&format!("private_key = [\"{k0}\", \"{k1}\"]"))
}

#[test]
fn dual_certificates_follow_the_client_signature_algorithms() {
    use boring::ssl::SslSignatureAlgorithm as S;
    const RSA: [S; 2] = [S::RSA_PSS_RSAE_SHA256, S::RSA_PKCS1_SHA256];
    const ECDSA: [S; 1] = [S::ECDSA_SECP256R1_SHA256];
    for order in [["ecdsa", "rsa"], ["rsa", "ecdsa"]] {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let gate =
            Gate::start(dual_config(order).file_extra(&format!("\n[admin]\nlisten = \"{admin}\"")));
        // The expiry gauge still reports the listener's (first) certificate (the series appear
        // once the workers are up).
        let gauge = "server_certificate_not_after_seconds{listener=\"public\"}";
        let mut metrics = admin_metrics(admin);
        for _ in 0..50 {
            if metrics.contains(gauge) {
                break;
            }
            thread::sleep(Duration::from_millis(100));
            metrics = admin_metrics(admin);
        }
        assert!(metrics.contains(gauge), "{metrics}");
        for (tls12, only, expect) in [
            (false, &RSA[..], Id::RSA),
            (true, &RSA[..], Id::RSA),
            (false, &ECDSA[..], Id::EC),
            (true, &ECDSA[..], Id::EC),
        ] {
            let seen = boring_get(&gate, None, |b| {
                b.set_verify_algorithm_prefs(only).unwrap();
                if tls12 {
                    b.set_max_proto_version(Some(boring::ssl::SslVersion::TLS1_2))
                        .unwrap();
                }
            })
            .unwrap_or_else(|e| panic!("{order:?} tls12={tls12} {only:?}: {e}\n{}", gate.log()));
            assert_eq!(seen.server_key, expect, "{order:?} tls12={tls12}: {seen:?}");
            assert_eq!(seen.status, 200);
        }
        // A client accepting both gets the first pair of the list.
        let first = if order[0] == "rsa" { Id::RSA } else { Id::EC };
        let seen = boring_get(&gate, None, |_| {}).unwrap();
        assert_eq!(seen.server_key, first, "{order:?}");
        // TLS 1.2 with RSA key exchange suites only: the RSA certificate.
        let seen = boring_get(&gate, None, |b| {
            b.set_max_proto_version(Some(boring::ssl::SslVersion::TLS1_2))
                .unwrap();
            b.set_cipher_list("ECDHE-RSA-AES128-GCM-SHA256").unwrap();
        })
        .unwrap();
        assert_eq!(seen.server_key, Id::RSA, "{order:?}: {seen:?}");
        assert_eq!(seen.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
        // And with OpenSSL's client.
        for (sigalgs, bits) in [
            ("RSA-PSS+SHA256:RSA+SHA256", "2048"),
            ("ECDSA+SHA256", "256"),
        ] {
            let out = s_client(&gate, &["-sigalgs", sigalgs]);
            assert_eq!(
                line(&out, "Server public key is"),
                Some(format!("{bits} bit").as_str()),
                "{order:?} {sigalgs}: {out}"
            );
        }
    }
}

/// The admin endpoint's `/metrics` body (retried while it starts).
fn admin_metrics(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    for _ in 0..100 {
        if let Ok(mut c) = std::net::TcpStream::connect(addr) {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = write!(
                c,
                "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
            );
            let mut body = String::new();
            let _ = c.read_to_string(&mut body);
            return body;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("admin endpoint {addr} never answered");
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

/// `certgate check` on `config` (with a dead upstream): its exit code, its output, and the line
/// of the config holding `needle`.
fn check(config: Config, needle: &str) -> (i32, String, usize) {
    let env = Env::new();
    let text = config.render(free_port(), &[dead_addr()]);
    let line = text
        .lines()
        .position(|l| l.contains(needle))
        .map_or(0, |n| n + 1);
    let path = env.write("certgate.toml", &text);
    let out = env.check(&path);
    (out.status.code().unwrap_or(-1), out.all(), line)
}

#[test]
fn check_refuses_unknown_names_and_lists_the_valid_ones() {
    for (extra, upstream, key, reason, valid) in [
        (
            "ciphers = \"ECDHE-ECDSA-AES128-GCM-SHA256:RC4-FOO\"",
            false,
            "listener[0].tls.ciphers",
            "\"RC4-FOO\" is not a cipher BoringSSL knows; valid TLS 1.2 names:",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
        (
            "groups = [\"X25519\", \"X448\"]",
            false,
            "listener[0].tls.groups",
            "\"X448\" is not a key-agreement group BoringSSL knows; valid names:",
            "X25519MLKEM768",
        ),
        (
            "signature_algorithms = [\"ed25519\", \"rsa_pss_pss_sha256\"]",
            false,
            "listener[0].tls.signature_algorithms",
            "\"rsa_pss_pss_sha256\" is not a signature scheme BoringSSL knows; valid names:",
            "rsa_pss_rsae_sha256",
        ),
        (
            "groups = [\"secp256k1\"]",
            true,
            "upstream[0].tls.groups",
            "\"secp256k1\" is not a key-agreement group BoringSSL knows; valid names:",
            "P-256",
        ),
        (
            "ciphers = \"DES-CBC3-SHA:NOPE\"",
            true,
            "upstream[0].tls.ciphers",
            "\"NOPE\" is not a cipher BoringSSL knows",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
    ] {
        let config = if upstream {
            Config::new().upstream_extra(&format!("[upstream.tls]\nverify = false\n{extra}"))
        } else {
            Config::new().tls_extra(extra)
        };
        let needle = extra.split(" =").next().unwrap();
        let needle = if needle == "groups" && !upstream {
            "X448"
        } else {
            needle
        };
        let (code, out, line) = check(config, needle);
        assert_eq!(code, 1, "{extra}: {out}");
        assert!(
            out.contains(&format!("certgate.toml:{line}: {key}: {reason}")),
            "{extra}: want line {line} {key}: {reason}\n{out}"
        );
        assert!(out.contains(valid), "{extra}: {out}");
    }
}

#[test]
fn check_warns_about_tls13_suites_and_sha1_schemes_but_accepts_them() {
    let (code, out, line) = check(
        Config::new()
            .tls_extra("ciphers = \"TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256\""),
        "ciphers",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "certgate.toml:{line}: listener[0].tls.ciphers: TLS_AES_128_GCM_SHA256 ignored: \
             BoringSSL's TLS 1.3 suites are fixed"
        )),
        "{out}"
    );
    let (code, out, _) = check(
        Config::new()
            .tls_extra("signature_algorithms = [\"rsa_pkcs1_sha256\", \"rsa_pkcs1_sha1\"]"),
        "signature_algorithms",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("listener[0].tls.signature_algorithms: \"rsa_pkcs1_sha1\" accepts SHA-1"),
        "{out}"
    );
    // nginx's default ssl_ciphers: the exclusions of suites BoringSSL lacks are dropped.
    let (code, out, line) = check(
        Config::new().tls_extra("ciphers = \"HIGH:!aNULL:!MD5\""),
        "ciphers",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "certgate.toml:{line}: listener[0].tls.ciphers: !aNULL, !MD5 ignored: BoringSSL has \
             no such suites"
        )),
        "{out}"
    );
}

#[test]
fn check_pairs_certificates_with_keys() {
    let (code, out, line) = check(
        Config::new()
            .tls_extra("certificate = [\"pki/server-chain.pem\", \"pki/server-rsa-chain.pem\"]")
            .tls_extra("private_key = [\"pki/server.key\"]"),
        "private_key",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "certgate.toml:{line}: listener[0].tls.private_key: 2 certificate files but 1 \
             private keys: give one key per certificate, in the same order"
        )),
        "{out}"
    );
    // Keys swapped between the two pairs: the second pair's key is named.
    let (code, out, line) = check(
        Config::new()
            .tls_extra("certificate = [\"pki/server-chain.pem\", \"pki/server-rsa-chain.pem\"]")
            .tls_extra("private_key = [\"pki/server.key\", \"pki/server.key\"]"),
        "private_key",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "certgate.toml:{line}: listener[0].tls.private_key: pki/server.key:"
        )),
        "{out}"
    );
    // Both lists right: accepted.
    let (code, out, _) = check(dual_config(["rsa", "ecdsa"]), "certificate");
    assert_eq!(code, 0, "{out}");
}
