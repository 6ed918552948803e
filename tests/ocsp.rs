//! OCSP stapling from a file (`[listener.tls] ocsp_response`, nginx `ssl_stapling_file`): a
//! client that asks (`openssl s_client -status`) gets the response; a response that expired, is
//! for another certificate or does not verify is not stapled and is logged; a replaced file is
//! picked up without a restart and on SIGHUP; `check` reports what is stapled.
//!
//! The responses are made at test time by `openssl ocsp` acting as the CA's responder
//! (`-index`, `-rsigner`, `-reqin`/`-respout`), for a small PKI made with `openssl` too: an RSA CA
//! (its signatures all have one length, which the SIGHUP test needs), the server's leaf under
//! it, a second leaf, a delegated responder and a foreign CA.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The serial numbers of the leaves.
const SERVER_SERIAL: &str = "1001";
const OTHER_SERIAL: &str = "1002";

/// Runs `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = run_bounded(
        Command::new("openssl").args(args).current_dir(dir),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "openssl {args:?}:\n{}", out.all());
}

/// The OCSP PKI in `<env>/ocsp/`.
struct OcspPki {
    dir: PathBuf,
}

impl OcspPki {
    fn new(env: &Env) -> OcspPki {
        let dir = env.path("ocsp");
        fs::create_dir_all(&dir).unwrap();
        let pki = OcspPki { dir };
        pki.ca("ca", "OCSP Test CA");
        pki.ca("foreign-ca", "Foreign CA");
        fs::write(
            pki.dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        fs::write(
            pki.dir.join("responder.ext"),
            "extendedKeyUsage=OCSPSigning\n",
        )
        .unwrap();
        pki.leaf("server", "localhost", SERVER_SERIAL, "leaf.ext");
        pki.leaf("other", "localhost", OTHER_SERIAL, "leaf.ext");
        pki.leaf("responder", "OCSP Responder", "2001", "responder.ext");
        let chain = [
            fs::read(pki.dir.join("server.pem")).unwrap(),
            fs::read(pki.dir.join("ca.pem")).unwrap(),
        ]
        .concat();
        fs::write(pki.dir.join("server-chain.pem"), chain).unwrap();
        // The CA's database: both leaves valid; the revoked flavour revokes the server.
        // (The DNs only need to differ: openssl wants unique subjects.)
        let line = |flag: &str, revoked: &str, serial: &str| {
            format!("{flag}\t301231235959Z\t{revoked}\t{serial}\tunknown\t/CN={serial}\n")
        };
        fs::write(
            pki.dir.join("index.txt"),
            line("V", "", SERVER_SERIAL) + &line("V", "", OTHER_SERIAL),
        )
        .unwrap();
        fs::write(
            pki.dir.join("index-revoked.txt"),
            line("R", "250101000000Z,keyCompromise", SERVER_SERIAL),
        )
        .unwrap();
        pki
    }

    fn run(&self, args: &[&str]) {
        openssl(&self.dir, args);
    }

    fn ca(&self, stem: &str, cn: &str) {
        self.run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.pem"),
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ]);
    }

    fn leaf(&self, stem: &str, cn: &str, serial: &str, ext: &str) {
        self.run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
        self.run(&[
            "x509",
            "-req",
            "-in",
            &format!("{stem}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &format!("0x{serial}"),
            "-days",
            "30",
            "-extfile",
            ext,
            "-out",
            &format!("{stem}.pem"),
        ]);
    }

    /// A response about `cert` from the database `index`, signed by `signer` (a stem), valid
    /// for `validity` (`["-ndays", "1"]`), written to `ocsp/<out>`.
    fn respond(&self, cert: &str, index: &str, signer: &str, validity: &[&str], out: &str) {
        let req = format!("{out}.req");
        self.run(&[
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            &format!("{cert}.pem"),
            "-no_nonce",
            "-reqout",
            &req,
        ]);
        let (rsigner, rkey) = (format!("{signer}.pem"), format!("{signer}.key"));
        let mut args = vec![
            "ocsp", "-index", index, "-CA", "ca.pem", "-rsigner", &rsigner, "-rkey", &rkey,
            "-reqin", &req, "-respout", out,
        ];
        args.extend_from_slice(validity);
        self.run(&args);
    }

    fn good(&self, out: &str) {
        self.respond("server", "index.txt", "ca", &["-ndays", "1"], out);
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// A listener serving the OCSP PKI's server certificate with `ocsp_response = "ocsp/<file>"`.
fn config(file: &str) -> Config {
    Config::new()
        .mode("off")
        .tls_extra("certificate = \"ocsp/server-chain.pem\"")
        .tls_extra("private_key = \"ocsp/server.key\"")
        .tls_extra(&format!("ocsp_response = \"ocsp/{file}\""))
}

/// What `openssl s_client -status` prints of the server's staple (TLS 1.3, or 1.2).
fn s_client(gate: &Gate, ca: &Path, tls12: bool) -> String {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(gate.addr().to_string())
        .arg("-servername")
        .arg("localhost")
        .arg("-CAfile")
        .arg(ca)
        .arg("-verify_return_error")
        .arg("-status");
    if tls12 {
        cmd.arg("-tls1_2");
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(15));
    let text = out.all();
    assert!(
        text.contains("Verify return code: 0 (ok)"),
        "handshake failed:\n{text}\nlog:\n{}",
        gate.log()
    );
    text
}

fn stapled(out: &str) -> bool {
    out.contains("OCSP Response Status: successful")
}

/// Waits (bounded) until a TLS 1.3 client sees `want` in the staple output.
fn wait_staple(gate: &Gate, ca: &Path, want: impl Fn(&str) -> bool, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let out = s_client(gate, ca, false);
        if want(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "not seen within {limit:?}:\n{out}\nlog:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn hup(gate: &Gate) {
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(gate.pid() as i32, libc::SIGHUP) }, 0);
}

/// Waits (bounded) until the log shows `needle` `n` times.
fn wait_log(gate: &Gate, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while gate.log().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `Next Update:` line a client was shown.
fn next_update(out: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with("Next Update:"))
        .unwrap_or_else(|| panic!("no Next Update in:\n{out}"))
        .trim()
        .to_string()
}

#[test]
fn a_client_asking_gets_the_staple_in_tls13_and_tls12() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.good("server.ocsp");
    let gate = Gate::start_in(env, config("server.ocsp"));
    for tls12 in [false, true] {
        let out = s_client(&gate, &pki.ca_pem(), tls12);
        assert!(stapled(&out), "tls12={tls12}:\n{out}");
        assert!(out.contains("Cert Status: good"), "{out}");
    }
    // A client that does not ask gets no status (and is served all the same).
    let out = run_bounded(
        Command::new("openssl")
            .args(["s_client", "-connect", &gate.addr().to_string()])
            .args([
                "-servername",
                "localhost",
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(pki.ca_pem()),
        Duration::from_secs(15),
    )
    .all();
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(!out.contains("OCSP response"), "{out}");
}

#[test]
fn a_revoked_status_is_stapled_and_reported() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.respond(
        "server",
        "index-revoked.txt",
        "ca",
        &["-ndays", "1"],
        "server.ocsp",
    );
    let gate = Gate::start_in(env, config("server.ocsp"));
    let out = s_client(&gate, &pki.ca_pem(), false);
    assert!(out.contains("Cert Status: revoked"), "{out}");
    let check = gate.env.check(&gate.config_path);
    assert!(check.status.success(), "{}", check.all());
    assert!(
        check
            .stdout
            .contains("stapled, status REVOKED (since 2025-01-01 00:00:00 UTC)"),
        "{}",
        check.all()
    );
}

#[test]
fn a_delegated_responder_signed_by_the_issuer_is_accepted() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.respond(
        "server",
        "index.txt",
        "responder",
        &["-ndays", "1"],
        "server.ocsp",
    );
    let gate = Gate::start_in(env, config("server.ocsp"));
    let out = s_client(&gate, &pki.ca_pem(), false);
    assert!(stapled(&out), "{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
    let check = gate.env.check(&gate.config_path);
    assert!(
        check
            .stdout
            .contains("signed by responder \"CN=OCSP Responder\""),
        "{}",
        check.all()
    );
}

#[test]
fn a_response_for_another_certificate_is_not_stapled_and_is_logged() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.respond("other", "index.txt", "ca", &["-ndays", "1"], "server.ocsp");
    let gate = Gate::start_in(env, config("server.ocsp"));
    let out = s_client(&gate, &pki.ca_pem(), false);
    assert!(!stapled(&out), "{out}");
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    let log = gate.log();
    assert!(
        log.contains("listener[0].tls.ocsp_response")
            && log.contains("NOT stapled: the response is for another certificate")
            && log.contains(&format!("serial {SERVER_SERIAL}")),
        "{log}"
    );
}

#[test]
fn a_response_that_does_not_verify_is_not_stapled_and_is_logged() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    // Names our certificate, but signed by another CA (which sends its own certificate along).
    let one_day = ["-ndays", "1"];
    pki.respond("server", "index.txt", "foreign-ca", &one_day, "server.ocsp");
    // The same without the certificate: nothing to verify the signature with.
    let bare = ["-ndays", "1", "-resp_no_certs"];
    pki.respond("server", "index.txt", "foreign-ca", &bare, "bare.ocsp");
    // Signed by a certificate of the issuer that is not an OCSP signer ("other", a server).
    pki.respond("server", "index.txt", "other", &one_day, "no-eku.ocsp");
    let gate = Gate::start_in(env, config("server.ocsp"));
    for tls12 in [false, true] {
        let out = s_client(&gate, &pki.ca_pem(), tls12);
        assert!(out.contains("OCSP response: no response sent"), "{out}");
    }
    assert!(
        gate.log().contains(
            "NOT stapled: it is signed by responder \"CN=Foreign CA\", whose certificate \
             the issuer did not sign"
        ),
        "{}",
        gate.log()
    );

    let port = free_port();
    for (file, why) in [
        (
            "bare.ocsp",
            "its signature does not verify with the issuer's key",
        ),
        (
            "no-eku.ocsp",
            "whose certificate lacks the OCSP signing extended key usage",
        ),
    ] {
        let path = gate
            .env
            .write("other.toml", config(file).render(port, &[dead_addr()]));
        let out = gate.env.check(&path);
        assert!(out.status.success(), "{}", out.all());
        assert!(out.stderr.contains(why), "{file}: {}", out.all());
        assert!(out.stdout.contains("NOT stapled"), "{file}: {}", out.all());
    }
}

#[test]
fn a_response_that_expires_stops_being_stapled_and_is_logged() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    // Valid for a minute (openssl ocsp cannot make one already expired).
    pki.respond("server", "index.txt", "ca", &["-nmin", "1"], "server.ocsp");
    let made = Instant::now();
    let gate = Gate::start_in(env, config("server.ocsp"));
    assert!(stapled(&s_client(&gate, &pki.ca_pem(), false)));
    std::thread::sleep(Duration::from_secs(62).saturating_sub(made.elapsed()));
    let out = s_client(&gate, &pki.ca_pem(), false);
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    let out = s_client(&gate, &pki.ca_pem(), true);
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    wait_log(&gate, "the stapled response expired", 1);
    // Loaded expired (check, and a restart): refused with the reason, and the server runs.
    let check = gate.env.check(&gate.config_path);
    assert!(check.status.success(), "{}", check.all());
    assert!(
        check
            .stderr
            .contains("NOT stapled: the response expired at"),
        "{}",
        check.all()
    );
    assert!(
        check.stdout.contains("ocsp_response")
            && check
                .stdout
                .contains("NOT stapled: the response expired at"),
        "{}",
        check.all()
    );
}

#[test]
fn a_replaced_file_is_stapled_without_restart() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.respond("other", "index.txt", "ca", &["-ndays", "1"], "foreign.ocsp");
    fs::copy(pki.dir.join("foreign.ocsp"), pki.dir.join("server.ocsp")).unwrap();
    pki.good("good.ocsp");
    let gate = Gate::start_in(env, config("server.ocsp"));
    assert!(!stapled(&s_client(&gate, &pki.ca_pem(), false)));

    // As a cron job does: write aside, rename over.
    fs::rename(pki.dir.join("good.ocsp"), pki.dir.join("server.ocsp")).unwrap();
    let out = wait_staple(&gate, &pki.ca_pem(), stapled, Duration::from_secs(15));
    assert!(out.contains("Cert Status: good"), "{out}");
    wait_log(&gate, "stapling the new response", 1);

    // A broken replacement is refused with a warning; the good response stays stapled.
    fs::write(pki.dir.join("server.ocsp"), b"not a response").unwrap();
    wait_log(
        &gate,
        "the new response is NOT stapled: not a DER OCSP response",
        1,
    );
    assert!(stapled(&s_client(&gate, &pki.ca_pem(), true)));
}

#[test]
fn sighup_rereads_the_file() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.good("server.ocsp");
    pki.respond("server", "index.txt", "ca", &["-ndays", "2"], "later.ocsp");
    let gate = Gate::start_in(env, config("server.ocsp"));
    let first = next_update(&s_client(&gate, &pki.ca_pem(), false));

    // Same length (an RSA signature has one size), same inode, same mtime: the file poll
    // cannot tell, only a re-read on reload can.
    let path = pki.dir.join("server.ocsp");
    let later = fs::read(pki.dir.join("later.ocsp")).unwrap();
    assert_eq!(later.len(), fs::metadata(&path).unwrap().len() as usize);
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, &later).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(next_update(&s_client(&gate, &pki.ca_pem(), false)), first);

    hup(&gate);
    wait_log(&gate, "configuration reloaded", 1);
    let second = next_update(&s_client(&gate, &pki.ca_pem(), false));
    assert_ne!(second, first, "{}", gate.log());
}

#[test]
fn the_staple_expiry_is_a_metric() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.good("server.ocsp");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gate = Gate::start_in(
        env,
        config("server.ocsp").file_extra(&format!("\n[admin]\nlisten = \"{admin}\"")),
    );
    // A connection, so that a worker has taken the configuration the gauges are read from.
    assert!(stapled(&s_client(&gate, &pki.ca_pem(), false)));
    let body = scrape(admin);
    let line = body
        .lines()
        .find(|l| l.starts_with("certgate_ocsp_staple_next_update_seconds{listener=\"public\"}"))
        .unwrap_or_else(|| panic!("no gauge:\n{body}"));
    let value: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 86_400 - 120..=now + 86_400 + 5).contains(&value),
        "{line}"
    );
    drop(gate);
}

#[test]
fn check_reports_the_staple_and_names_the_line_of_an_unusable_file() {
    let env = Env::new();
    let pki = OcspPki::new(&env);
    pki.good("server.ocsp");
    let port = free_port();
    let write = |cfg: Config| env.write("certgate.toml", cfg.render(port, &[dead_addr()]));

    let out = env.check(&write(config("server.ocsp")));
    assert!(out.status.success(), "{}", out.all());
    assert!(
        out.stdout.contains("ocsp_response ")
            && out
                .stdout
                .contains("server.ocsp: stapled, status good, thisUpdate ")
            && out.stdout.contains("nextUpdate ")
            && out.stdout.contains("signed by the issuer"),
        "{}",
        out.all()
    );

    // Missing file: an error on its line, saying what to do.
    let path = write(config("missing.ocsp"));
    let line = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("ocsp_response"))
        .unwrap()
        + 1;
    let out = env.check(&path);
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.stderr.contains(&format!(
            "certgate.toml:{line}: listener[0].tls.ocsp_response: cannot read "
        )) && out.stderr.contains("openssl ocsp -respout"),
        "{}",
        out.all()
    );

    // Garbage: valid configuration, a warning on the line, nothing stapled.
    fs::write(pki.dir.join("garbage.ocsp"), b"\x30\x03\x0a\x01").unwrap();
    let out = env.check(&write(config("garbage.ocsp")));
    assert!(out.status.success(), "{}", out.all());
    assert!(
        out.stderr.contains(&format!(
            "certgate.toml:{line}: listener[0].tls.ocsp_response: "
        )) && out.stderr.contains("NOT stapled: not a DER OCSP response"),
        "{}",
        out.all()
    );

    // With two certificates: refused.
    let two = Config::new()
        .mode("off")
        .tls_extra("certificate = [\"ocsp/server-chain.pem\", \"pki/server-rsa-chain.pem\"]")
        .tls_extra("private_key = [\"ocsp/server.key\", \"pki/server-rsa.key\"]")
        .tls_extra("ocsp_response = \"ocsp/server.ocsp\"");
    let out = env.check(&write(two));
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.stderr
            .contains("ocsp_response: is not supported with several certificates"),
        "{}",
        out.all()
    );

    // A chain without the issuer: the response cannot be checked.
    let leaf_only = Config::new()
        .mode("off")
        .tls_extra("certificate = \"ocsp/server.pem\"")
        .tls_extra("private_key = \"ocsp/server.key\"")
        .tls_extra("ocsp_response = \"ocsp/server.ocsp\"");
    let out = env.check(&write(leaf_only));
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.stderr
            .contains("append the intermediate that signed it"),
        "{}",
        out.all()
    );
}
