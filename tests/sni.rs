//! Several names on one listener (`[[listener.sni]]`): the certificate and the CertificateRequest
//! follow the SNI, each block is a whole client-auth policy with its own upstream and headers,
//! `unknown_sni = "reject"` refuses other names with `unrecognized_name`, no session resumes
//! across policies (TLS 1.3 tickets and TLS 1.2 session IDs), and a request whose Host or
//! `:authority` names another policy than its handshake's gets 421 and is never forwarded.
//! Driven with curl and openssl s_client, on the driver `CERTGATE_TEST_IO` selects.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::ca;
use common::*;

/// Block 0: `api.acme.test` and `*.partner.test`, partner clients only, its own subject header.
/// Block 1: `b.partner.test`, Acme clients (any), the listener's headers.
/// Block 2: `down.partner.test`, no client certificate, an upstream nobody listens on.
/// The listener's own policy: Acme's client1 only.
fn blocks() -> String {
    format!(
        "allow_subjects = [{:?}]\n\
         \n[[listener.sni]]\nnames = [\"api.acme.test\", \"*.partner.test\"]\n\
         [listener.sni.tls]\ncertificate = \"pki/server-sni-chain.pem\"\nprivate_key = \"pki/server-sni.key\"\n\
         [listener.sni.client_auth]\nmode = \"required\"\nca = \"pki/partner-ca.pem\"\n\
         [listener.sni.headers]\nsubject_dn = \"X-Partner-DN\"\n\
         \n[[listener.sni]]\nnames = [\"B.partner.test\"]\n\
         [listener.sni.tls]\ncertificate = \"pki/server-sni-chain.pem\"\nprivate_key = \"pki/server-sni.key\"\n\
         [listener.sni.client_auth]\nmode = \"required\"\nca = \"pki/client-ca-bundle.pem\"\nverify_depth = 2\n\
         \n[[listener.sni]]\nnames = [\"down.partner.test\"]\nupstream = \"down\"\n\
         [listener.sni.tls]\ncertificate = \"pki/server-sni-chain.pem\"\nprivate_key = \"pki/server-sni.key\"\n",
        dn::CLIENT1
    )
}

fn config() -> Config {
    Config::new()
        .client_auth_extra(&blocks())
        .file_extra(&format!(
            "\n[[upstream]]\nname = \"down\"\nservers = [\"{}\"]\ntries = 1",
            dead_addr()
        ))
}

/// curl to `https://host:port/` (resolved to the gate), as `client`: SNI is `host` unless it is
/// an address.
fn curl(gate: &Gate, host: &str, client: Option<&CertKey>, args: &[&str]) -> CurlOut {
    let dir = &gate.pki().dir;
    let (body, head) = (dir.join("curl-body"), dir.join("curl-head"));
    let port = gate.addr().port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&gate.pki().server_ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("-o")
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}"]);
    if let Some(ck) = client {
        cmd.arg("--cert").arg(&ck.cert).arg("--key").arg(&ck.key);
    }
    cmd.args(args).arg(format!("https://{host}:{port}/"));
    let out = run_bounded(&mut cmd, Duration::from_secs(20));
    CurlOut {
        exit: out.status.code().unwrap_or(-1),
        status: out.stdout.trim().parse().unwrap_or(0),
        body: std::fs::read(&body).unwrap_or_default(),
        head: String::from_utf8_lossy(&std::fs::read(&head).unwrap_or_default()).into_owned(),
        stderr: out.stderr,
    }
}

/// `openssl s_client` with SNI `servername` (none: `-noservername`), as `client`, sending one
/// request for `host`; `args` add session files and versions.
fn s_client(
    gate: &Gate,
    servername: Option<&str>,
    client: Option<&CertKey>,
    host: &str,
    args: &[&str],
) -> String {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(gate.addr().to_string())
        .arg("-CAfile")
        .arg(&gate.pki().server_ca)
        .arg("-ign_eof");
    match servername {
        Some(name) => cmd.arg("-servername").arg(name),
        None => cmd.arg("-noservername"),
    };
    if let Some(ck) = client {
        cmd.arg("-cert").arg(&ck.cert).arg("-key").arg(&ck.key);
    }
    cmd.args(args);
    let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let out = run_with_input(&mut cmd, &input);
    assert!(!out.is_empty(), "s_client printed nothing");
    out
}

fn run_with_input(cmd: &mut Command, input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut p) = out_pipe {
            let _ = p.read_to_string(&mut s);
        }
        if let Some(mut p) = err_pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    if wait_bounded(&mut child, Duration::from_secs(15)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    reader.join().unwrap_or_default()
}

/// The subject of the certificate the server sent, as s_client prints it.
fn server_subject(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("")
        .to_owned()
}

/// The CA names of the CertificateRequest, as s_client prints them.
fn ca_names(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("Acceptable client certificate CA names"))
        .skip(1)
        .take_while(|l| !l.starts_with("Requested") && !l.starts_with("Client Certificate Types"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn certificate_and_certificate_request_follow_the_sni() {
    let gate = Gate::start(config());
    let out = s_client(&gate, Some("api.acme.test"), None, "api.acme.test", &[]);
    assert!(server_subject(&out).contains("CN = api.acme.test"), "{out}");
    let names = ca_names(&out);
    assert_eq!(names.len(), 1, "{out}");
    assert!(names[0].contains("CN = Partner Root CA"), "{out}");

    // A wildcard name, in another case.
    let out = s_client(&gate, Some("X.Partner.Test"), None, "x.partner.test", &[]);
    assert!(server_subject(&out).contains("CN = api.acme.test"), "{out}");
    assert!(ca_names(&out)[0].contains("Partner Root CA"), "{out}");

    // An exact name wins over the wildcard: block 1 asks for Acme's CAs.
    let out = s_client(&gate, Some("b.partner.test"), None, "b.partner.test", &[]);
    let names = ca_names(&out);
    assert_eq!(names.len(), 4, "{out}");
    assert!(names.iter().all(|n| n.contains("O = Acme")), "{out}");

    // Other names and no SNI: the listener's own certificate and CAs.
    for sni in [Some("localhost"), Some("a.b.partner.test"), None] {
        let out = s_client(&gate, sni, None, "localhost", &[]);
        assert!(
            server_subject(&out).contains("CN = localhost"),
            "{sni:?}: {out}"
        );
        let names = ca_names(&out);
        assert_eq!(names.len(), 4, "{sni:?}: {out}");
        assert!(!out.contains("Partner Root CA"), "{sni:?}: {out}");
    }

    // A block without client_auth asks for no certificate at all (nothing inherited).
    let out = s_client(
        &gate,
        Some("down.partner.test"),
        None,
        "down.partner.test",
        &[],
    );
    assert!(server_subject(&out).contains("CN = api.acme.test"), "{out}");
    assert!(out.contains("No client certificate CA names sent"), "{out}");
    assert!(!out.contains("Requested Signature Algorithms"), "{out}");
    let out = s_client(&gate, Some("localhost"), None, "localhost", &[]);
    assert!(out.contains("Requested Signature Algorithms"), "{out}");
}

#[test]
fn each_block_is_a_whole_policy_with_its_upstream_and_headers() {
    let gate = Gate::start(config());
    let pki = gate.pki();

    // Block 0 admits the partner's client, with its own header name, and refuses Acme's.
    let r = curl(&gate, "api.acme.test", Some(&pki.partner_client), &[]);
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let seen = r.seen();
    assert_eq!(seen.one("X-Partner-DN"), dn::PARTNER_CLIENT);
    assert_eq!(seen.one("X-SSL-Client-Verify"), "SUCCESS");
    assert!(seen.get("X-SSL-Client-S-DN").is_none(), "{seen}");
    let r = curl(&gate, "api.acme.test", Some(&pki.client1), &[]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text().contains("The SSL certificate error"), "{r:?}");

    // The listener's own policy: client1 only; the partner's CA is not trusted there.
    let r = curl(&gate, "localhost", Some(&pki.client1), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.seen().one("X-SSL-Client-S-DN"), dn::CLIENT1);
    let r = curl(&gate, "localhost", Some(&pki.partner_client), &[]);
    assert_eq!(r.status, 400, "{r:?}");

    // Block 1 trusts Acme's CAs and has no rules: client2 gets in, as the listener would not
    // let it (its rule is client1's subject).
    let r = curl(&gate, "b.partner.test", Some(&pki.client2), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.seen().one("X-SSL-Client-S-DN"), dn::CLIENT2);
    let r = curl(&gate, "localhost", Some(&pki.client2), &[]);
    assert_eq!(r.status, 403, "{r:?}");

    // Block 2 forwards to its own upstream (down).
    let r = curl(&gate, "down.partner.test", None, &[]);
    assert_eq!(r.status, 502, "{r:?}");
    let r = curl(&gate, "down.partner.test", None, &["--http2"]);
    assert_eq!(r.status, 502, "{r:?}");

    // The access lines name the block; the listener's own policy's carry no sni field.
    let log = gate.log();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains("certgate::access") && l.contains(needle))
            .unwrap_or_else(|| panic!("no access line with {needle}:\n{log}"))
            .to_owned()
    };
    let l = line(dn::PARTNER_CLIENT);
    assert!(l.contains("sni=\"api.acme.test,*.partner.test\""), "{l}");
    let l = line("http=HTTP/2.0 status=502");
    assert!(l.contains("sni=\"down.partner.test\""), "{l}");
    let l = line(dn::CLIENT2);
    assert!(l.contains("sni=\"b.partner.test\""), "{l}");
    let own: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("certgate::access") && l.contains(dn::CLIENT1) && l.contains("status=200")
        })
        .collect();
    assert!(!own.is_empty(), "{log}");
    assert!(own.iter().all(|l| !l.contains(" sni=")), "{own:?}");
}

#[test]
fn a_request_naming_another_policy_gets_421_and_is_not_forwarded() {
    let gate = Gate::start(config());
    let pki = gate.pki();
    let misdirected = |r: &CurlOut, what: &str| {
        assert_eq!(r.status, 421, "{what}: {r:?}\n{}", gate.log());
        assert!(
            r.text().contains("421 Misdirected Request"),
            "{what}: {r:?}"
        );
        // The echo never answered: the body is certgate's page, not the echo's JSON.
        assert!(Seen::parse(&r.body).is_err(), "{what}: forwarded: {r:?}");
    };
    for http in ["--http1.1", "--http2"] {
        // Handshake with block 0, Host of the listener's own policy (connection coalescing).
        let r = curl(
            &gate,
            "api.acme.test",
            Some(&pki.partner_client),
            &[http, "-H", "Host: localhost"],
        );
        misdirected(&r, &format!("{http} block 0 -> default"));
        // Block 0 -> block 1.
        let r = curl(
            &gate,
            "api.acme.test",
            Some(&pki.partner_client),
            &[http, "-H", "Host: B.PARTNER.TEST:443"],
        );
        misdirected(&r, &format!("{http} block 0 -> block 1"));
        // No SNI (an address): Host must select the listener's own policy.
        let r = curl(
            &gate,
            "127.0.0.1",
            Some(&pki.client1),
            &[http, "-H", "Host: api.acme.test"],
        );
        misdirected(&r, &format!("{http} no SNI -> block 0"));
        let r = curl(&gate, "127.0.0.1", Some(&pki.client1), &[http]);
        assert_eq!(r.status, 200, "{http}: {r:?}");
        // Another name of the same block is served.
        let r = curl(
            &gate,
            "api.acme.test",
            Some(&pki.partner_client),
            &[http, "-H", "Host: z.partner.test"],
        );
        assert_eq!(r.status, 200, "{http}: {r:?}");
    }
    let log = gate.log();
    assert!(
        log.contains("misdirected: \\\"localhost\\\" is served by the listener's own policy")
            || log.contains("misdirected: \"localhost\" is served by the listener's own policy"),
        "{log}"
    );
}

#[test]
fn unknown_names_are_refused_with_unrecognized_name() {
    let gate = Gate::start(config().listener_extra("unknown_sni = \"reject\""));
    for sni in [Some("other.test"), Some("localhost"), None] {
        let out = s_client(&gate, sni, Some(&gate.pki().client1), "localhost", &[]);
        let lower = out.to_ascii_lowercase();
        assert!(
            lower.contains("alert") && lower.contains("unrecognized name"),
            "{sni:?}: {out}"
        );
        assert!(!out.contains("HTTP/1.1 200"), "{sni:?}: {out}");
    }
    let r = curl(
        &gate,
        "api.acme.test",
        Some(&gate.pki().partner_client),
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
}

/// A session from block 0 (the partner's client, verified there) offered with block 1's name
/// must not resume: block 1 verifies the same certificate against Acme's CAs and refuses it.
/// The same session offered to block 0 again does resume (the test can see resumption).
fn no_resumption_across_blocks(version: &[&str]) {
    let gate = Gate::start(config());
    let pki = gate.pki();
    let sess: PathBuf = pki.dir.join(format!("sess{}", version.join("")));
    let sess = sess.to_str().unwrap();
    let with = |extra: &[&str]| -> Vec<String> {
        version.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["-sess_out", sess]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = s_client(
        &gate,
        Some("api.acme.test"),
        Some(&pki.partner_client),
        "api.acme.test",
        &args,
    );
    assert!(first.contains("HTTP/1.1 200"), "{first}");
    assert!(first.contains("New, TLSv1."), "{first}");

    let args = with(&["-sess_in", sess]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = s_client(
        &gate,
        Some("x.partner.test"),
        Some(&pki.partner_client),
        "x.partner.test",
        &args,
    );
    assert!(again.contains("Reused, TLSv1."), "same block: {again}");
    assert!(again.contains("HTTP/1.1 200"), "{again}");

    let other = s_client(
        &gate,
        Some("b.partner.test"),
        Some(&pki.partner_client),
        "b.partner.test",
        &args,
    );
    assert!(
        other.contains("New, TLSv1."),
        "resumed across blocks: {other}"
    );
    assert!(other.contains("HTTP/1.1 400"), "{other}");
    assert!(other.contains("The SSL certificate error"), "{other}");

    // Nor into the listener's own policy.
    let own = s_client(
        &gate,
        Some("localhost"),
        Some(&pki.partner_client),
        "localhost",
        &args,
    );
    assert!(
        own.contains("New, TLSv1."),
        "resumed into the default: {own}"
    );
    assert!(own.contains("HTTP/1.1 400"), "{own}");
}

#[test]
fn tls13_tickets_do_not_resume_across_blocks() {
    no_resumption_across_blocks(&["-tls1_3"]);
}

#[test]
fn tls12_session_ids_do_not_resume_across_blocks() {
    no_resumption_across_blocks(&["-tls1_2", "-no_ticket"]);
}

#[test]
fn tls12_tickets_do_not_resume_across_blocks() {
    no_resumption_across_blocks(&["-tls1_2"]);
}

/// Each block's certificate has its expiry gauge, labelled with its names.
#[test]
fn block_certificates_have_their_expiry_gauge() {
    use std::io::{Read, Write};
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _gate = Gate::start(config().file_extra(&format!("\n[admin]\nlisten = \"{admin}\"")));
    let want = [
        "certgate_server_certificate_not_after_seconds{listener=\"public\"} ",
        "certgate_server_certificate_not_after_seconds{listener=\"public\",sni=\"api.acme.test,*.partner.test\"} ",
        "certgate_server_certificate_not_after_seconds{listener=\"public\",sni=\"down.partner.test\"} ",
    ];
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics.clear();
        if let Ok(mut c) = std::net::TcpStream::connect(admin) {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ =
                c.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
            let _ = c.read_to_string(&mut metrics);
            if want.iter().all(|w| metrics.contains(w)) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{want:?} not all in\n{metrics}");
}

#[test]
fn check_describes_the_blocks() {
    let env = Env::new();
    let text = config().render(free_port(), &[dead_addr()]);
    let path = env.write("certgate.toml", text);
    let out = env.check(&path);
    let all = out.all();
    assert!(out.status.success(), "{all}");
    for want in [
        "sni [api.acme.test,*.partner.test]: own certificate, client_auth.mode = \"required\", 0 rule(s) (a whole policy: nothing taken from [listener.client_auth]) -> upstream \"app\"",
        "sni [b.partner.test]: own certificate, client_auth.mode = \"required\"",
        "sni [down.partner.test]: own certificate, client_auth.mode = \"off\", 0 rule(s) (a whole policy: nothing taken from [listener.client_auth]) -> upstream \"down\"",
        "other names (and no SNI): the listener's own [tls] and [client_auth]",
    ] {
        assert!(all.contains(want), "{want}\n{all}");
    }
    let bad = config().client_auth_extra(
        "\n[[listener.sni]]\nnames = [\"API.acme.test\"]\n[listener.sni.tls]\ncertificate = \"pki/server-sni-chain.pem\"\nprivate_key = \"pki/server-sni.key\"",
    );
    let path = env.write("bad.toml", bad.render(free_port(), &[dead_addr()]));
    let out = env.check(&path);
    assert!(!out.status.success());
    let all = out.all();
    assert!(
        all.contains(
            ": listener[0].sni[3].names[0]: api.acme.test is already listed by listener[0].sni[0]"
        ),
        "{all}"
    );
}

/// A CA of the test's own with two clients, `good` and `bad`, and a CRL revoking `bad`: written
/// as `pki/block-ca.pem`, `pki/block.crl`, `pki/{good,bad}.pem`; the root is also appended to
/// the listener's client CA bundle. Returns (good, bad).
fn revoking_ca(env: &Env) -> (CertKey, CertKey) {
    let (root, root_pem) = ca::root("SNI CRL Root", 0x20);
    let client = |stem: &str, serial: u64| {
        let cn = format!("{stem}.sni.local");
        ca::client(env, &format!("pki/{stem}"), &cn, serial, &root, "")
    };
    let (good, bad) = (client("good", 0x2001), client("bad", 0x2002));
    let crl = ca::crl(&root, &[0x2002], ca::DAY);
    env.write("pki/block-ca.pem", &root_pem);
    env.write("pki/block.crl", crl);
    let bundle = env.pki.dir.join("client-ca-bundle.pem");
    let mut pem = std::fs::read_to_string(&bundle).unwrap();
    pem.push_str(&root_pem);
    std::fs::write(&bundle, pem).unwrap();
    (good, bad)
}

/// CRLs follow the SNI too: the listener's own CRL and a block's, each applied to its own
/// policy's handshakes (the block's with the handshake-alert style, the listener's with pages).
#[test]
fn each_policy_checks_its_own_crls() {
    let env = Env::new();
    let (good, bad) = revoking_ca(&env);
    let config = Config::new().client_auth_extra(
        "crl = [\"pki/block.crl\"]\n\
         \n[[listener.sni]]\nnames = [\"api.acme.test\"]\n\
         [listener.sni.tls]\ncertificate = \"pki/server-sni-chain.pem\"\nprivate_key = \"pki/server-sni.key\"\n\
         [listener.sni.client_auth]\nmode = \"required\"\nreject = \"handshake\"\n\
         ca = \"pki/block-ca.pem\"\ncrl = [\"pki/block.crl\"]\n\
         \n[[listener.sni]]\nnames = [\"open.partner.test\"]\n\
         [listener.sni.tls]\ncertificate = \"pki/server-sni-chain.pem\"\nprivate_key = \"pki/server-sni.key\"\n",
    );
    let gate = Gate::start_in(env, config);
    let pki = gate.pki();
    for (host, ck, want) in [
        ("localhost", &good, 200),
        ("localhost", &bad, 400),
        ("api.acme.test", &good, 200),
        ("open.partner.test", &bad, 200),
    ] {
        let r = curl(&gate, host, Some(ck), &[]);
        assert_eq!(r.status, want, "{host} {ck:?}: {r:?}\n{}", gate.log());
    }
    // The block refuses in the handshake: a revoked certificate gets the alert, not a page.
    let out = s_client(
        &gate,
        Some("api.acme.test"),
        Some(&bad),
        "api.acme.test",
        &[],
    );
    assert!(
        out.to_ascii_lowercase().contains("certificate revoked"),
        "{out}"
    );
    assert!(!out.contains("HTTP/1.1"), "{out}");
    // Without a certificate the block's handshake is refused too (required + handshake).
    let out = s_client(&gate, Some("api.acme.test"), None, "api.acme.test", &[]);
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    // Acme's client1 is not trusted by the block.
    let r = curl(&gate, "api.acme.test", Some(&pki.client1), &[]);
    assert_eq!(r.status, 0, "{r:?}");
}

/// A block's certificate list: an RSA and an ECDSA certificate, chosen by what the client can
/// verify.
#[test]
fn a_block_serves_dual_certificates() {
    let config = Config::new().mode("off").client_auth_extra(
        "\n[[listener.sni]]\nnames = [\"dual.acme.test\"]\n\
         [listener.sni.tls]\ncertificate = [\"pki/server-chain.pem\", \"pki/server-rsa-chain.pem\"]\n\
         private_key = [\"pki/server.key\", \"pki/server-rsa.key\"]\n",
    );
    let gate = Gate::start(config);
    let peer_key = |sigalgs: &str| {
        let out = s_client(
            &gate,
            Some("dual.acme.test"),
            None,
            "dual.acme.test",
            &["-sigalgs", sigalgs],
        );
        out.lines()
            .find(|l| l.contains("a:PKEY:"))
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned()
    };
    assert!(peer_key("ECDSA+SHA256").contains("id-ecPublicKey"));
    assert!(peer_key("RSA-PSS+SHA256").contains("rsaEncryption"));
}
