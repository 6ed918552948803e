//! DN strings outside the ASCII comfort zone: a PKI made with the openssl CLI, subjects with
//! non-ASCII (`CN=Jürgen Müller`) and control characters. The DN headers and the PROXY v2 DN
//! TLVs must be what nginx and `openssl x509 -nameopt RFC2253` print (non-ASCII escaped byte by
//! byte), and rules keep matching whichever spelling the operator wrote.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use boring::ssl::{SslConnector, SslFiletype, SslMethod};
use common::*;

const JURGEN_DN: &str = r"CN=J\C3\BCrgen M\C3\BCller,O=Acme,C=FI";
const JURGEN_LEGACY: &str = r"/C=FI/O=Acme/CN=J\xC3\xBCrgen M\xC3\xBCller";
const ALAND_DN: &str = r"CN=\C3\85land CA,O=Acme,C=FI";
/// The control-character subject, as `-subj` gets it.
const CTRL_SUBJ: &str = "/C=FI/O=Acme/CN=line1\nline2\x7f\x01end";

/// Client certificates under a CA named `CN=Åland CA,O=Acme,C=FI`, made with the openssl CLI;
/// the CA is added to the listener's CA bundle.
struct Unicode {
    jurgen: CertKey,
    ctrl: CertKey,
}

fn openssl(args: &[&str]) -> String {
    let out = run_bounded(Command::new("openssl").args(args), Duration::from_secs(30));
    assert!(out.status.success(), "openssl {args:?}:\n{}", out.all());
    out.stdout
}

fn unicode_pki(env: &Env) -> Unicode {
    let dir = env.path("unicode");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-utf8", "-days", "3650"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    ca.extend(["-subj", "/C=FI/O=Acme/CN=\u{c5}land CA"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(&ca);
    let ext = p("client.ext");
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    let client = |stem: &str, subj: &str| {
        let (key, csr, pem) = (
            p(&format!("{stem}.key")),
            p(&format!("{stem}.csr")),
            p(&format!("{stem}.pem")),
        );
        let mut req = vec![
            "req", "-new", "-utf8", "-keyout", &key, "-out", &csr, "-subj", subj,
        ];
        req.extend(ec);
        openssl(&req);
        openssl(&[
            "x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-out", &pem, "-days",
            "365", "-extfile", &ext,
        ]);
        CertKey {
            cert: PathBuf::from(pem),
            key: PathBuf::from(key),
        }
    };
    let u = Unicode {
        jurgen: client("jurgen", "/C=FI/O=Acme/CN=J\u{fc}rgen M\u{fc}ller"),
        ctrl: client("ctrl", CTRL_SUBJ),
    };
    let mut bundle = std::fs::read(&env.pki.client_ca_bundle).unwrap();
    bundle.extend(std::fs::read(&ca_pem).unwrap());
    std::fs::write(&env.pki.client_ca_bundle, bundle).unwrap();
    u
}

/// `openssl x509 -noout -<which> -nameopt <opt>`, without the `subject=` prefix.
fn openssl_name(cert: &Path, which: &str, nameopt: &str) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        which,
        "-nameopt",
        nameopt,
    ]);
    let out = out.trim_end_matches('\n');
    out.split_once('=').map(|(_, v)| v.to_owned()).unwrap()
}

fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// The DN headers certgate sends for `client`: subject, subject legacy, issuer.
fn certgate_dns(gate: &Gate, client: &CertKey) -> [String; 3] {
    let out = gate.curl("/").cert(client).run();
    assert_eq!(out.status, 200, "{out:?}");
    let seen = out.seen();
    [
        "X-SSL-Client-S-DN",
        "X-SSL-Client-S-DN-Legacy",
        "X-SSL-Client-I-DN",
    ]
    .map(|h| seen.one(h))
}

#[test]
fn dn_headers_are_what_openssl_prints() {
    let env = Env::new();
    let u = unicode_pki(&env);
    let gate = Gate::start_in(env, Config::new());
    let [s, legacy, i] = certgate_dns(&gate, &u.jurgen);
    assert_eq!(s, JURGEN_DN);
    assert_eq!(legacy, JURGEN_LEGACY);
    assert_eq!(i, ALAND_DN);
    for client in [&u.jurgen, &u.ctrl] {
        let got = certgate_dns(&gate, client);
        let want = [
            openssl_name(&client.cert, "-subject", "RFC2253"),
            // X509_NAME_oneline, which is nginx's $ssl_client_s_dn_legacy.
            openssl_name(&client.cert, "-subject", "compat"),
            openssl_name(&client.cert, "-issuer", "RFC2253"),
        ];
        assert_eq!(got, want, "{}", client.cert.display());
        assert!(got.iter().all(|v| printable_ascii(v)), "{got:?}");
    }
    let [s, legacy, _] = certgate_dns(&gate, &u.ctrl);
    assert_eq!(s, r"CN=line1\0Aline2\7F\01end,O=Acme,C=FI");
    assert_eq!(legacy, r"/C=FI/O=Acme/CN=line1\x0Aline2\x7F\x01end");
}

/// nginx 1.22 beside certgate, same server certificate and client CAs: `$ssl_client_s_dn`,
/// `$ssl_client_s_dn_legacy` and `$ssl_client_i_dn` are certgate's three DN headers.
#[test]
fn dn_headers_match_nginx_byte_for_byte() {
    let nginx = Path::new("/usr/sbin/nginx");
    if !nginx.exists() {
        eprintln!(
            "SKIPPED: no {} (apt-get install nginx-light)",
            nginx.display()
        );
        return;
    }
    let env = Env::new();
    let u = unicode_pki(&env);
    let port = free_port();
    let dir = env.path("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let pki = &env.pki;
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  \
         proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  \
         scgi_temp_path {d};\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    \
         ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_client_certificate {};\n    \
         ssl_verify_client on;\n    ssl_verify_depth 2;\n    location / {{ return 200 \
         \"$ssl_client_s_dn\\n$ssl_client_s_dn_legacy\\n$ssl_client_i_dn\\n\"; }}\n  }}\n}}\n",
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.client_ca_bundle.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.join("error.log");
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _nginx = ProcGuard::new(child);
    wait_port(port, &log);

    let ca_pem = pki.server_ca.clone();
    let gate = Gate::start_in(env, Config::new());
    for client in [&u.jurgen, &u.ctrl, &gate.pki().client1] {
        let out = run_bounded(
            Command::new("curl")
                .args(["-sS", "--max-time", "10", "--cacert"])
                .arg(&ca_pem)
                .arg("--resolve")
                .arg(format!("localhost:{port}:127.0.0.1"))
                .arg("--cert")
                .arg(&client.cert)
                .arg("--key")
                .arg(&client.key)
                .arg(format!("https://localhost:{port}/")),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "curl to nginx: {}", out.all());
        let theirs: Vec<&str> = out.stdout.lines().collect();
        let ours = certgate_dns(&gate, client);
        assert_eq!(
            ours.as_slice(),
            theirs.as_slice(),
            "{}",
            client.cert.display()
        );
    }
}

#[test]
fn rules_match_either_spelling_of_non_ascii() {
    // Subject exact in UTF-8, issuer regex in nginx's escaped spelling...
    let env = Env::new();
    let u = unicode_pki(&env);
    let other = env.pki.client1.clone();
    let gate = Gate::start_in(
        env,
        Config::new()
            .allow_subjects(&["CN=J\u{fc}rgen M\u{fc}ller,O=Acme,C=FI"])
            .allow_issuers(&[r"~CN=\\C3\\85land CA,O=Acme,C=FI"]),
    );
    assert_eq!(
        gate.curl("/").cert(&u.jurgen).run().status,
        200,
        "{}",
        gate.log()
    );
    assert_eq!(gate.curl("/").cert(&u.ctrl).run().status, 403);
    assert_eq!(gate.curl("/").cert(&other).run().status, 403);
    drop(gate);

    // ... and the other way round: subject exact as nginx prints it, issuer regex in UTF-8.
    let env = Env::new();
    let u = unicode_pki(&env);
    let gate = Gate::start_in(
        env,
        Config::new()
            .allow_subjects(&[JURGEN_DN])
            .allow_issuers(&["~CN=\u{c5}land CA,.*"]),
    );
    assert_eq!(
        gate.curl("/").cert(&u.jurgen).run().status,
        200,
        "{}",
        gate.log()
    );
    assert_eq!(gate.curl("/").cert(&u.ctrl).run().status, 403);
}

/// The PROXY v2 header a TCP-mode upstream receives: its TLVs by type (the `PP2_TYPE_SSL`
/// sub-TLVs flattened in).
fn proxy_v2_tlvs(s: &mut TcpStream) -> HashMap<u8, Vec<u8>> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n");
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
    s.read_exact(&mut body).unwrap();
    let mut out = HashMap::new();
    let walk = |mut tlvs: &[u8], out: &mut HashMap<u8, Vec<u8>>| {
        while tlvs.len() >= 3 {
            let len = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
            out.insert(tlvs[0], tlvs[3..3 + len].to_vec());
            tlvs = &tlvs[3 + len..];
        }
    };
    assert_eq!(head[13], 0x11, "IPv4");
    walk(&body[12..], &mut out);
    if let Some(ssl) = out.get(&0x20).cloned() {
        walk(&ssl[5..], &mut out);
    }
    out
}

#[test]
fn proxy_v2_dn_tlvs_are_escaped_like_the_headers() {
    let env = Env::new();
    let u = unicode_pki(&env);
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr: SocketAddr = backend.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        if let Ok((mut s, _)) = backend.accept() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = tx.send(proxy_v2_tlvs(&mut s));
        }
    });
    let port = free_port();
    let text = format!(
        "[runtime]\nworkers = 1\nio = {io:?}\n\n[[listener]]\nname = \"tcp\"\n\
         listen = \"127.0.0.1:{port}\"\nupstream = \"backend\"\nmode = \"tcp\"\n\n\
         [listener.tls]\ncertificate = \"pki/server-chain.pem\"\nprivate_key = \"pki/server.key\"\n\n\
         [listener.client_auth]\nmode = \"required\"\nca = \"pki/client-ca-bundle.pem\"\n\n\
         [[upstream]]\nname = \"backend\"\nservers = [\"{backend_addr}\"]\nproxy_protocol = \"v2\"\n",
        io = io_driver()
    );
    let gate = RawGate::start(&env, &text, port);
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_ca_file(&env.pki.server_ca).unwrap();
    b.set_certificate_chain_file(&u.jurgen.cert).unwrap();
    b.set_private_key_file(&u.jurgen.key, SslFiletype::PEM)
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = b.build().connect("localhost", tcp).unwrap();
    let _ = tls.write_all(b"x");
    let tlvs = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no PROXY header: {e}\n{}", gate.log()));
    let text = |t: u8| String::from_utf8(tlvs.get(&t).cloned().unwrap_or_default()).unwrap();
    assert_eq!(text(0xE0), JURGEN_DN);
    assert_eq!(text(0xE1), ALAND_DN);
    // PP2_SUBTYPE_SSL_CN is the value itself, as HAProxy sends it: binary-safe, length-framed.
    assert_eq!(text(0x22), "J\u{fc}rgen M\u{fc}ller");
}
