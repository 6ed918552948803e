//! Fixed, deterministic workloads for the CI instruction-count regression check
//! (`scripts/bench-ci.sh`, baseline in `perf/baseline.json`).
//!
//! ```text
//! ci_workloads WORKLOAD N
//!   handshakes-full N      N full TLS 1.3 mTLS handshakes, in memory
//!   handshakes-resumed N   N TLS 1.3 handshakes resuming one ticket, in memory
//!   server-first N         the server's side only of N full handshakes of a first-time client
//!                          (verified-chain cache off: the chain is verified every time)
//!   server-returning N     the server's side only of N full handshakes of a returning client
//!                          (verified-chain cache on, the chain verified before the count)
//!   server-resumed N       the server's side only of N TLS 1.3 resumptions
//!   floor-returning N      N times the public-key operations a returning client's full
//!                          handshake cannot avoid on the server: 1 ECDSA P-256 sign, 1 verify,
//!                          2 X25519 (as `openssl speed` counts them), with the same BoringSSL
//!   floor-first N          N times 1 sign, 3 verifies (the chain's two signatures too), 2 X25519
//!   floor-resumed N        N times 2 X25519
//!   head-rewrite N         N parses + rewrites of a typical request head
//!   rule-match N           N checks against 10,000 exact subject rules, hit and miss alternately
//!   identity N             N `ClientCert::from_x509` on a fixed leaf
//!   idle-connection N      bytes the server keeps per idle connection, over N connections
//! ci_workloads gen-pki     prints a fresh set of the embedded PEM fixtures (see below)
//! ```
//!
//! Only [`measured`] is counted: the script runs `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect=ci_workloads::measured`, so setup (parsing the PKI, building the TLS
//! contexts, obtaining the ticket, compiling the rules) and teardown are left out. `measured` is
//! never entered recursively (a toggle inside would switch counting off): the `server-*`
//! workloads enter it once per server step (creating the server's `Ssl`, each handshake step,
//! the write that sends the ticket, freeing the connection), the others once per run. The
//! `server-*` counts divided by the matching `floor-*` counts are the issue's "multiple of the
//! crypto floor" in instructions, which a shared machine cannot disturb (`scripts/bench-ci.sh`
//! prints them).
//!
//! A handshake here is both peers' `Ssl` objects, the handshake itself and the client reading the
//! tickets (flushed by a zero-byte server write, as certgate's first response would), between a
//! BoringSSL client and `certgate::tls::server_context` (client certificates required) over
//! in-memory pipes: no sockets, no runtime.
//!
//! Determinism. The PKI is embedded rather than generated per run (fresh keys change signature
//! lengths and the cost of variable-time ECDSA verification) and the ticket key is fixed. What
//! stays random: ECDSA signing nonces, X25519 ephemeral keys, the hello randoms, the IVs of
//! tickets and the hash seeds of the rules' `HashMap` (averaged over 128 subjects). Measured
//! spread between runs of one binary: under 0.02 % for the handshakes, up to 0.3 % for
//! rule-match, none for head-rewrite and identity (see perf/RESULTS.md).
//!
//! `idle-connection` is not an instruction count: it prints `bytes_per_connection: B`, the heap
//! (glibc `mallinfo2`, which BoringSSL and, in this example, Rust allocate from) that N
//! established server-side connections hold after their handshake, divided by N, with the
//! clients gone and the pipes' buffers freed: the BoringSSL connection and certgate's treatment
//! of it (`certgate::tls::stream::server_side`). Deterministic: allocation sizes do not depend
//! on the random values of a handshake except by a few bytes of signature.
//!
//! `CI_WORKLOADS_EXTRA_PCT=P` runs P% more iterations than asked. The script never sets it: it
//! exists to check that the regression gate trips (`CI_WORKLOADS_EXTRA_PCT=10 scripts/bench-ci.sh`
//! must fail).

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boring::asn1::Asn1Time;
use boring::hash::MessageDigest;
use boring::pkey::PKey;
use boring::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslSession, SslSessionCacheMode,
    SslStream, SslStreamBuilder, SslVerifyMode, SslVersion,
};
use boring::x509::{X509Name, X509};
use certgate::config::{Reject, VerifyMode};
use certgate::http::{parse_request, rewrite_request, Limits, RewriteCtx, StripSet};
use certgate::identity::{ClientCert, Rules};
use certgate::tls::{server_context, ServerSettings, TicketKey, TicketKeys};
use foreign_types::ForeignTypeRef;

// The `certgate` binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: ci_workloads WORKLOAD N | ci_workloads gen-pki
workloads: handshakes-full, handshakes-resumed, server-first, server-returning, server-resumed,
floor-first, floor-returning, floor-resumed, head-rewrite, rule-match, identity, idle-connection";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, n) = match args.as_slice() {
        [cmd] if cmd == "gen-pki" => return gen_pki(),
        [name, n] => match n.parse::<u64>() {
            Ok(n) => (name.as_str(), n),
            Err(_) => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let n = with_extra(n);
    match name {
        "handshakes-full" => {
            let peers = Peers::new(SslVersion::TLS1_3, 0);
            // Outside the count: one-time initialisation in BoringSSL, and a look at what was
            // negotiated.
            let client = peers.handshake(None, &mut uncounted);
            assert_eq!(client.ssl().version2(), Some(SslVersion::TLS1_3));
            assert_eq!(client.ssl().curve_name(), Some("X25519"));
            measured(&mut || {
                for _ in 0..n {
                    black_box(peers.handshake(None, &mut uncounted));
                }
            });
        }
        "handshakes-resumed" => {
            let peers = Peers::new(SslVersion::TLS1_3, 0);
            let session = peers.ticket();
            measured(&mut || {
                for _ in 0..n {
                    black_box(peers.handshake(Some(&session), &mut uncounted));
                }
            });
        }
        "server-first" | "server-returning" | "server-resumed" => {
            let cache = if name == "server-returning" { 64 } else { 0 };
            let peers = Peers::new(SslVersion::TLS1_3, cache);
            // Outside the count: BoringSSL's one-time initialisation, the ticket, and with the
            // cache the chain's first (full) verification.
            let session = peers.ticket();
            let resume = (name == "server-resumed").then_some(&session);
            for _ in 0..n {
                black_box(peers.handshake(resume, &mut measured));
            }
        }
        "floor-first" | "floor-returning" | "floor-resumed" => {
            let (signs, verifies, x25519) = match name {
                "floor-first" => (1, 3, 2),
                "floor-returning" => (1, 1, 2),
                _ => (0, 0, 2),
            };
            let floor = Floor::new();
            measured(&mut || {
                for _ in 0..n {
                    floor.run(signs, verifies, x25519);
                }
            });
        }
        "head-rewrite" => {
            let limits = Limits::default();
            let strip = StripSet::new(STRIP);
            let ctx = RewriteCtx {
                strip: &strip,
                add: ADD,
            };
            let mut out = Vec::with_capacity(2048);
            measured(&mut || {
                for _ in 0..n {
                    out.clear();
                    let head = parse_request(black_box(REQUEST), &limits)
                        .expect("valid head")
                        .expect("complete head");
                    rewrite_request(&head, REQUEST, &ctx, &mut out);
                    black_box(&out);
                }
            });
            assert!(out.starts_with(b"GET /api/v1/orders"));
        }
        "rule-match" => {
            let subjects: Vec<String> = (0..10_000)
                .map(|i| format!("CN=client.{}.local,{WIDGITS}", 10_000 - i))
                .collect();
            let rules = Rules::compile(&subjects, &[], &[]).expect("rules");
            // A lookup's cost depends on where the randomly seeded hash table put the key: one
            // subject moved the count by up to 2.4 % between runs; cycling through 64 admitted and
            // 64 refused look-alike subjects averages that out.
            let certs: Vec<ClientCert> = (0..64)
                .flat_map(|j| {
                    let i = 1 + j * 157;
                    [
                        format!("client.{i}.local"),
                        format!("client.{i}.local.evil.com"),
                    ]
                })
                .map(|cn| ClientCert::from_x509(&client_leaf(&cn)))
                .collect();
            for (k, cert) in certs.iter().enumerate() {
                assert_eq!(rules.check(cert, true).is_ok(), k % 2 == 0, "{k}");
            }
            let mut admitted = 0u64;
            measured(&mut || {
                for i in 0..n {
                    let cert = &certs[(i % 128) as usize];
                    admitted += u64::from(rules.check(black_box(cert), true).is_ok());
                }
            });
            assert_eq!(admitted, n.div_ceil(2));
        }
        "identity" => {
            let leaf = pem_cert(CLIENT1);
            measured(&mut || {
                for _ in 0..n {
                    black_box(ClientCert::from_x509(black_box(&leaf)));
                }
            });
        }
        "idle-connection" => {
            let peers = Peers::new(SslVersion::TLS1_3, 0);
            // One-time initialisation (BoringSSL's, the pools', the client's ticket slot) first.
            let warm: Vec<_> = (0..16).map(|_| peers.idle_server()).collect();
            drop(warm);
            let before = heap_in_use();
            let held: Vec<SslStream<Pipe>> = (0..n).map(|_| peers.idle_server()).collect();
            let held_bytes = heap_in_use().saturating_sub(before);
            assert!(held.iter().all(|s| s.ssl().peer_certificate().is_some()));
            println!("connections: {n}");
            println!("bytes_per_connection: {}", held_bytes / n.max(1) as usize);
            // Not part of the heap figure above: the connection task certgate keeps beside it.
            println!("task_bytes: {}", certgate::proxy::task_size());
            drop(held);
        }
        _ => {
            eprintln!("unknown workload {name:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// The only code callgrind counts (`--toggle-collect=ci_workloads::measured`): not inlined, not
/// generic, so it has exactly that symbol; entered once per run.
#[inline(never)]
fn measured(work: &mut dyn FnMut()) {
    work();
}

/// Runs `work` outside the count (the client's side of the `server-*` workloads, and every
/// side of the others, whose whole loop is in one [`measured`]).
fn uncounted(work: &mut dyn FnMut()) {
    work();
}

/// The public-key operations a handshake cannot avoid, as `openssl speed` counts them: ECDSA
/// P-256 signatures (the server's CertificateVerify) and verifications (the client's
/// CertificateVerify; for a first-time client, the chain's signatures too) of a 32-byte digest,
/// and X25519 operations (`X25519()`, the key agreement: 2 per handshake, as the issue counts).
struct Floor {
    key: boring::ec::EcKey<boring::pkey::Private>,
    public: boring::ec::EcKey<boring::pkey::Public>,
    signature: boring::ecdsa::EcdsaSig,
    digest: [u8; 32],
    /// An X25519 public value and private key.
    x25519: ([u8; 32], [u8; 32]),
}

impl Floor {
    fn new() -> Floor {
        let key = PKey::private_key_from_pem(SERVER_KEY.as_bytes())
            .and_then(|k| k.ec_key())
            .expect("server key");
        let public =
            boring::ec::EcKey::from_public_key(key.group(), key.public_key()).expect("public key");
        let digest = [7u8; 32];
        let signature = boring::ecdsa::EcdsaSig::sign(&digest, &key).expect("sign");
        let (mut x_public, mut x_private) = ([0u8; 32], [0u8; 32]);
        // SAFETY: both buffers are 32 bytes, as X25519_keypair writes.
        unsafe { boring_sys::X25519_keypair(x_public.as_mut_ptr(), x_private.as_mut_ptr()) };
        Floor {
            key,
            public,
            signature,
            digest,
            x25519: (x_public, x_private),
        }
    }

    fn run(&self, signs: u32, verifies: u32, x25519: u32) {
        for _ in 0..signs {
            let sig =
                boring::ecdsa::EcdsaSig::sign(black_box(&self.digest), &self.key).expect("sign");
            black_box(sig);
        }
        for _ in 0..verifies {
            let ok = self
                .signature
                .verify(black_box(&self.digest), &self.public)
                .expect("verify");
            assert!(ok);
        }
        let (public, private) = self.x25519;
        let mut shared = [0u8; 32];
        for _ in 0..x25519 {
            // SAFETY: 32-byte output, private key and peer value, as X25519 reads and writes.
            let ok = unsafe {
                boring_sys::X25519(
                    shared.as_mut_ptr(),
                    black_box(&private).as_ptr(),
                    black_box(&public).as_ptr(),
                )
            };
            assert_eq!(ok, 1);
        }
        black_box(shared);
    }
}

/// `n` plus `CI_WORKLOADS_EXTRA_PCT` percent (to simulate a regression).
fn with_extra(n: u64) -> u64 {
    match std::env::var("CI_WORKLOADS_EXTRA_PCT") {
        Ok(pct) => {
            let pct: u64 = pct
                .trim()
                .parse()
                .expect("CI_WORKLOADS_EXTRA_PCT: a whole number");
            let more = n * pct / 100;
            eprintln!(
                "CI_WORKLOADS_EXTRA_PCT={pct}: running {} iterations",
                n + more
            );
            n + more
        }
        Err(_) => n,
    }
}

// ---- The request head (the one in benches/head.rs) ----

const REQUEST: &[u8] = b"GET /api/v1/orders?page=2&sort=desc HTTP/1.1\r\n\
Host: app.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: session=4f1c2a9e7b3d4c5e8f9a0b1c2d3e4f5a; theme=dark; _ga=GA1.2.123456789.1700000000\r\n\
Referer: https://app.example.com/orders\r\n\
Connection: keep-alive\r\n\
X-SSL-Client-Verify: SUCCESS\r\n\
X-Forwarded-For: 203.0.113.9\r\n\
Sec-Fetch-Mode: navigate\r\n\
\r\n";

/// certgate's default identity and forwarding header names, all stripped from clients.
const STRIP: &[&str] = &[
    "X-SSL-Client-Verify",
    "X-SSL-Client-S-DN",
    "X-SSL-Client-S-DN-Legacy",
    "X-SSL-Client-I-DN",
    "X-SSL-Client-Serial",
    "X-SSL-Client-Fingerprint",
    "X-SSL-Client-SAN",
    "X-SSL-Client-Not-After",
    "X-SSL-Client-Cert",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Real-IP",
];

const ADD: &[(&str, &[u8])] = &[
    ("X-SSL-Client-Verify", b"SUCCESS"),
    (
        "X-SSL-Client-S-DN",
        b"CN=alice,OU=Engineering,O=Example Corp,C=GB",
    ),
    (
        "X-SSL-Client-I-DN",
        b"CN=Example Issuing CA,O=Example Corp,C=GB",
    ),
    ("X-SSL-Client-Serial", b"4A3F9C0D12E5B7A8"),
    (
        "X-SSL-Client-Fingerprint",
        b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ),
    (
        "X-SSL-Client-SAN",
        b"DNS:alice.example.com,email:alice@example.com",
    ),
    ("X-SSL-Client-Not-After", b"Dec 31 23:59:59 2026 GMT"),
    ("X-Forwarded-For", b"203.0.113.9"),
    ("X-Forwarded-Proto", b"https"),
];

// ---- TLS over in-memory pipes ----

use certgate_tools::memory::{pipes, Pipe, Side};

/// A client context and certgate's server context, as configured by default except for the
/// fixed ticket key and the verified-chain cache (`verify_cache` entries, 0: off).
struct Peers {
    client: SslContext,
    server: SslContext,
    /// The last session the client was given (new-session callback).
    session: Arc<Mutex<Option<SslSession>>>,
}

impl Peers {
    fn new(version: SslVersion, verify_cache: usize) -> Peers {
        let bundle = [ROOT, INT1, INT2, INT10].concat();
        let server_chain = [SERVER, INT1].concat();
        // Fixed (nginx 80-byte layout: name, HMAC key, AES-256 key), as from a key file.
        let key: Vec<u8> = (0u8..80).collect();
        let tickets = TicketKeys::fixed(vec![TicketKey::from_nginx_bytes(&key).expect("key")]);
        let server = server_context(&ServerSettings {
            cert_pem: server_chain.as_bytes(),
            key_pem: SERVER_KEY.as_bytes(),
            ca_pem: Some(bundle.as_bytes()),
            mode: VerifyMode::Required,
            reject: Reject::default(),
            verify_depth: 2,
            min_tls13: false,
            policy_tag: b"ci",
            tickets: Some(&tickets),
            session_cache_size: 20 * 1024,
            session_timeout: Duration::from_secs(300),
            verify_cache,
        })
        .expect("server context");

        let mut b = SslContextBuilder::new(SslMethod::tls()).expect("client context");
        b.set_min_proto_version(Some(version)).expect("version");
        b.set_max_proto_version(Some(version)).expect("version");
        // X25519 is used; P-256 is listed because a TLS 1.2 client must allow the server key's curve.
        b.set_curves_list("X25519:P-256").expect("curves");
        b.set_verify(SslVerifyMode::PEER);
        b.cert_store_mut()
            .add_cert(pem_cert(ROOT))
            .expect("trust root");
        b.set_certificate(&pem_cert(CLIENT1)).expect("client leaf");
        b.add_extra_chain_cert(pem_cert(INT1))
            .expect("client chain");
        let key = PKey::private_key_from_pem(CLIENT1_KEY.as_bytes()).expect("client key");
        b.set_private_key(&key).expect("client key");
        b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let session: Arc<Mutex<Option<SslSession>>> = Arc::default();
        let slot = session.clone();
        b.set_new_session_callback(move |_, s| *slot.lock().expect("slot") = Some(s));
        Peers {
            client: b.build(),
            server,
            session,
        }
    }

    /// One complete mTLS handshake; the client has also read what the server sent after it (the
    /// tickets). Panics unless the server verified the client's certificate and, with `resume`,
    /// unless both sides resumed. Every step of the server's (and only those: creating its
    /// `Ssl`, each handshake step, the write that sends the ticket, freeing it) runs through
    /// `server`: [`measured`] to count the server alone. Returns the client's stream.
    fn handshake(
        &self,
        resume: Option<&SslSession>,
        server: &mut dyn FnMut(&mut dyn FnMut()),
    ) -> SslStream<Pipe> {
        self.handshake_with(resume, server, false).0
    }

    /// [`Peers::handshake`], also handing back the server's connection when `keep`.
    fn handshake_with(
        &self,
        resume: Option<&SslSession>,
        server: &mut dyn FnMut(&mut dyn FnMut()),
        keep: bool,
    ) -> (SslStream<Pipe>, Option<SslStream<Pipe>>) {
        let (cp, sp) = pipes();
        let mut ssl = Ssl::new(&self.client).expect("client ssl");
        ssl.set_hostname("localhost").expect("sni");
        ssl.param_mut().set_host("localhost").expect("host");
        if let Some(session) = resume {
            // SAFETY: the session was made by a connection of this same client context.
            unsafe { ssl.set_session(session) }.expect("set session");
        }
        let mut client = Side::Mid(SslStreamBuilder::new(ssl, cp).setup_connect());
        let mut sp = Some(sp);
        let mut side = None;
        server(&mut || {
            let ssl = Ssl::new(&self.server).expect("server ssl");
            // As certgate's accept: the handshake configuration is shed once it completes.
            certgate::tls::stream::server_side(&ssl);
            let sp = sp.take().expect("pipe");
            side = Some(Side::Mid(SslStreamBuilder::new(ssl, sp).setup_accept()));
        });
        let mut server_side = side.expect("server side");
        let mut rounds = 0;
        while matches!(client, Side::Mid(_)) || matches!(server_side, Side::Mid(_)) {
            rounds += 1;
            assert!(rounds < 10, "handshake stalled");
            client = client.step();
            let mut next = None;
            let mut this = Some(server_side);
            server(&mut || next = this.take().map(Side::step));
            server_side = next.expect("server step");
        }
        let (mut client, server_stream) = (client.done(), server_side.done());
        // BoringSSL holds TLS 1.3 tickets back until the server first writes (in certgate, the
        // first response); a zero-byte write sends them, and the client reads them.
        // SAFETY: `server` owns a live SSL; a zero-length write reads nothing from the pointer.
        server(&mut || unsafe {
            boring_sys::SSL_write(server_stream.ssl().as_ptr(), std::ptr::null(), 0);
        });
        let server_stream = Some(server_stream);
        let mut byte = [0u8; 1];
        match client.ssl_read(&mut byte) {
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            other => panic!("client read after the handshake: {other:?}"),
        }
        let s = server_stream.as_ref().expect("server stream");
        assert!(s.ssl().peer_certificate().is_some());
        assert!(
            s.ssl().verify_result().is_ok(),
            "client certificate not verified"
        );
        if resume.is_some() {
            assert!(client.ssl().session_reused() && s.ssl().session_reused());
        }
        if keep {
            return (client, server_stream);
        }
        // Freeing the server's connection is part of its cost.
        let mut server_stream = server_stream;
        server(&mut || drop(server_stream.take()));
        (client, None)
    }

    /// The server side of a full handshake, as certgate keeps an idle connection: the client
    /// gone, the pipes' buffers freed.
    fn idle_server(&self) -> SslStream<Pipe> {
        let (client, server) = self.handshake_with(None, &mut uncounted, true);
        drop(client);
        let server = server.expect("kept");
        server.get_ref().release();
        server
    }

    /// A session from a full handshake, to resume.
    fn ticket(&self) -> SslSession {
        drop(self.handshake(None, &mut uncounted));
        let session = self.session.lock().expect("slot").take();
        session.expect("the server issued no ticket")
    }
}

/// Heap bytes in use (glibc: every arena, chunk headers included).
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.uordblks
}

/// A self-signed leaf with subject `C=FI, ST=Some-State, O=Internet Widgits Pty Ltd, CN=cn`.
fn client_leaf(cn: &str) -> X509 {
    let mut name = X509Name::builder().expect("name");
    for (field, value) in [
        ("C", "FI"),
        ("ST", "Some-State"),
        ("O", "Internet Widgits Pty Ltd"),
        ("CN", cn),
    ] {
        name.append_entry_by_text(field, value).expect("name entry");
    }
    let name = name.build();
    let key = PKey::private_key_from_pem(CLIENT1_KEY.as_bytes()).expect("key");
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::from_unix(1_420_070_400).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::from_unix(2_524_608_000).expect("time"))
        .expect("not after");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    b.build()
}

fn pem_cert(pem: &str) -> X509 {
    X509::from_pem(pem.as_bytes()).expect("PEM certificate")
}

// ---- Fixtures ----

/// Prints fresh fixtures in the form below (to replace them; then `scripts/bench-ci.sh --update`).
fn gen_pki() -> ExitCode {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = certgate_tools::pki::generate(dir.path()).expect("pki");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("read");
    let first = |pem: String| {
        let end = "-----END CERTIFICATE-----\n";
        let at = pem.find(end).expect("certificate") + end.len();
        pem[..at].to_owned()
    };
    let server_chain = read(&pki.server.cert);
    for (name, pem) in [
        ("ROOT", read(&pki.root_ca)),
        ("INT1", read(&pki.intermediate1)),
        ("INT2", read(&pki.intermediate2)),
        ("INT10", read(&pki.intermediate10)),
        ("SERVER", first(server_chain)),
        ("SERVER_KEY", read(&pki.server.key)),
        ("CLIENT1", first(read(&pki.client1.cert))),
        ("CLIENT1_KEY", read(&pki.client1.key)),
    ] {
        println!("const {name}: &str = r\"{pem}\";\n");
    }
    ExitCode::SUCCESS
}

/// The O, ST and C of the client subjects (`certgate_tools::pki::dn::CLIENT1`).
const WIDGITS: &str = "O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";

// Generated once by `certgate_tools::pki::generate` (`ci_workloads gen-pki`): Acme Root CA ->
// Intermediate 1 -> localhost (server) and client.1.local (client1); Intermediates 2 and 10 are
// only in the client CA bundle.
// BEGIN FIXTURES
const ROOT: &str = r"-----BEGIN CERTIFICATE-----
MIIBpjCCAUygAwIBAgIQfXqNVMHrvfjZ9xS7irjuozAKBggqhkjOPQQDAjAzMQsw
CQYDVQQGEwJGSTENMAsGA1UECgwEQWNtZTEVMBMGA1UEAwwMQWNtZSBSb290IENB
MB4XDTE1MDEwMTAwMDAwMFoXDTQ5MTIzMTAwMDAwMFowMzELMAkGA1UEBhMCRkkx
DTALBgNVBAoMBEFjbWUxFTATBgNVBAMMDEFjbWUgUm9vdCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABP16jVTB67342fcUu4q47qMH9+MfRMwyLnKtlmj6I0GA
1l1YdLawLwJG1xKcd91ixsPgJZS+mMAl1yDDH5iB8UejQjBAMA4GA1UdDwEB/wQE
AwIBhjAdBgNVHQ4EFgQUuVEdcrz+Tpu09yQjDgNNnaI5pA4wDwYDVR0TAQH/BAUw
AwEB/zAKBggqhkjOPQQDAgNIADBFAiEA4xqx+LHSfJTgljn1RM00YUT51zlahYf7
FxfwBN1AWacCID04lCvQf/YjEAPBmLwuckxjnX3O/ZReFycok0rgcG/Q
-----END CERTIFICATE-----
";

const INT1: &str = r"-----BEGIN CERTIFICATE-----
MIIByTCCAW+gAwIBAgIQaeFrKASCajnqc4H9X154zDAKBggqhkjOPQQDAjAzMQsw
CQYDVQQGEwJGSTENMAsGA1UECgwEQWNtZTEVMBMGA1UEAwwMQWNtZSBSb290IENB
MB4XDTE1MDEwMTAwMDAwMFoXDTQ5MTIzMTAwMDAwMFowNTELMAkGA1UEBhMCRkkx
DTALBgNVBAoMBEFjbWUxFzAVBgNVBAMMDkludGVybWVkaWF0ZSAxMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEKeFrKASCajnqc4H9X154zNNFPYzCio6XWRWrGEaw
lhH18uuRgMfot7OEAUULZej6WDiqofw3yEHdCuMFbpKY66NjMGEwHwYDVR0jBBgw
FoAUuVEdcrz+Tpu09yQjDgNNnaI5pA4wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQW
BBQXA8wRxpbujsDyNBRbPscUUJQCNDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIGjQr8jLRo/ZmUmJfNRTpQlZTgliZ5Krr/sNWsxkrcg9AiEAjHNL
XW+WANQWoyHDxwlIo51wiPxEVPk21BWV2jAuOPU=
-----END CERTIFICATE-----
";

const INT2: &str = r"-----BEGIN CERTIFICATE-----
MIIByTCCAW+gAwIBAgIQQIvj6JBWwJgQzxnbntrKnjAKBggqhkjOPQQDAjAzMQsw
CQYDVQQGEwJGSTENMAsGA1UECgwEQWNtZTEVMBMGA1UEAwwMQWNtZSBSb290IENB
MB4XDTE1MDEwMTAwMDAwMFoXDTQ5MTIzMTAwMDAwMFowNTELMAkGA1UEBhMCRkkx
DTALBgNVBAoMBEFjbWUxFzAVBgNVBAMMDkludGVybWVkaWF0ZSAyMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEAIvj6JBWwJgQzxnbntrKnrOEkfq7CAbsJM6o+z3w
QyybZzdU/p62qmsVFN+gtHIAWf8g3ddfqIf0MEJfugmjFqNjMGEwHwYDVR0jBBgw
FoAUuVEdcrz+Tpu09yQjDgNNnaI5pA4wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQW
BBSCtTeMZDnP0CDGCKfNnjS9yS8AnzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIQC24CTZak37/Op4teF85sgPojpbbVlZkklMFy4OiqBK5AIgB6Ws
lDnHqUI63a9EZI1l7maM8hUVA3CpOJ+L6ZgoulM=
-----END CERTIFICATE-----
";

const INT10: &str = r"-----BEGIN CERTIFICATE-----
MIIByjCCAXCgAwIBAgIQYBTEUMuHsVa/ngyo/nikajAKBggqhkjOPQQDAjAzMQsw
CQYDVQQGEwJGSTENMAsGA1UECgwEQWNtZTEVMBMGA1UEAwwMQWNtZSBSb290IENB
MB4XDTE1MDEwMTAwMDAwMFoXDTQ5MTIzMTAwMDAwMFowNjELMAkGA1UEBhMCRkkx
DTALBgNVBAoMBEFjbWUxGDAWBgNVBAMMD0ludGVybWVkaWF0ZSAxMDBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABGAUxFDLh7FWv54MqP54pGoGAxWf2WSW5SIdXIAt
O90ow5zCLNOdbnhRhwn6Rm8ekuJ64xekoItIrfbyWvh7xJujYzBhMB8GA1UdIwQY
MBaAFLlRHXK8/k6btPckIw4DTZ2iOaQOMA4GA1UdDwEB/wQEAwIBhjAdBgNVHQ4E
FgQUNCiFSWEmXkRzTrIp4bA1E5u7IHkwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjO
PQQDAgNIADBFAiEAxylpenmrApaaI/4/QM0x605mgg1cMiAxGI4dz8aOCQsCICrf
uoD04Dpzky8ULf+iPyadTpRz9ri1Epe9pBUUANE7
-----END CERTIFICATE-----
";

const SERVER: &str = r"-----BEGIN CERTIFICATE-----
MIICCDCCAa6gAwIBAgIQYULa+naBlXAQSjc9ZUjzyDAKBggqhkjOPQQDAjA1MQsw
CQYDVQQGEwJGSTENMAsGA1UECgwEQWNtZTEXMBUGA1UEAwwOSW50ZXJtZWRpYXRl
IDEwHhcNMTUwMTAxMDAwMDAwWhcNNDkxMjMxMDAwMDAwWjAwMQswCQYDVQQGEwJG
STENMAsGA1UECgwEQWNtZTESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAEIULa+naBlXAQSjc9ZUjzyPuNj3QsW/7AAvWszxqFuCRL
uj6rE1UVXrS+/BJnJ89C2hswi6HJ+9+v+WSUZTP2AaOBpDCBoTAfBgNVHSMEGDAW
gBQXA8wRxpbujsDyNBRbPscUUJQCNDAsBgNVHREEJTAjgglsb2NhbGhvc3SHBH8A
AAGHEAAAAAAAAAAAAAAAAAAAAAEwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoG
CCsGAQUFBwMBMB0GA1UdDgQWBBQPcusepk6PHAL/Qx6xN235aFwcpTAMBgNVHRMB
Af8EAjAAMAoGCCqGSM49BAMCA0gAMEUCIQDLa9QKkxdHCJndDtCUCSLt+qa+INoa
yW8IdKhGa6xmmwIgR6sZ4D87drEwGswcZyzmGU7x8g2pQ0+Tiu5WRpVzgKE=
-----END CERTIFICATE-----
";

const SERVER_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpBkl9AEu/aQIY5Hr
SvUTpEv62435UiEYsHRTiFvmoMahRANCAAQhQtr6doGVcBBKNz1lSPPI+42PdCxb
/sAC9azPGoW4JEu6PqsTVRVetL78Emcnz0LaGzCLocn736/5ZJRlM/YB
-----END PRIVATE KEY-----
";

const CLIENT1: &str = r"-----BEGIN CERTIFICATE-----
MIICPDCCAeKgAwIBAgIQXUPxSCID2G8hp1nSTmbFrTAKBggqhkjOPQQDAjA1MQsw
CQYDVQQGEwJGSTENMAsGA1UECgwEQWNtZTEXMBUGA1UEAwwOSW50ZXJtZWRpYXRl
IDEwHhcNMTUwMTAxMDAwMDAwWhcNNDkxMjMxMDAwMDAwWjBeMQswCQYDVQQGEwJG
STETMBEGA1UECAwKU29tZS1TdGF0ZTEhMB8GA1UECgwYSW50ZXJuZXQgV2lkZ2l0
cyBQdHkgTHRkMRcwFQYDVQQDDA5jbGllbnQuMS5sb2NhbDBZMBMGByqGSM49AgEG
CCqGSM49AwEHA0IABJ1D8UgiA9hvIadZ0k5mxa1Fs+uBj9AAX3qN260F3BDk8pFK
Kuoi3geXsnrxWgEwK4poXs4zMZejUELVfBD+mLijgaowgacwHwYDVR0jBBgwFoAU
FwPMEcaW7o7A8jQUWz7HFFCUAjQwMgYDVR0RBCswKYIRY2xpZW50MS5hY21lLnRl
c3SBFGpvaG4uZG9lQGV4YW1wbGUuY29tMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUE
DDAKBggrBgEFBQcDAjAdBgNVHQ4EFgQUUG6rSFS7nI/Si3qae3dDz/NGYtkwDAYD
VR0TAQH/BAIwADAKBggqhkjOPQQDAgNIADBFAiEA2l1nhv9vmMslxKtCVmkJY0Rf
lu80YgRqVWY7DwHafjUCIB2KCsBmX9/eafS41/OROtGTSdpy7ye9+gxFuLSwPUaO
-----END CERTIFICATE-----
";

const CLIENT1_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFtkwcRGWQzfdeofF
5yVII2bBd+I+7np52eUhIPfR1IWhRANCAASdQ/FIIgPYbyGnWdJOZsWtRbPrgY/Q
AF96jdutBdwQ5PKRSirqIt4Hl7J68VoBMCuKaF7OMzGXo1BC1XwQ/pi4
-----END PRIVATE KEY-----
";
// END FIXTURES
