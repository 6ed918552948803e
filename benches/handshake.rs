//! Handshake cost: a complete mutual-TLS handshake between a BoringSSL client and certgate's
//! server context (`certgate::tls::server_context`, client certificates required), entirely in
//! memory: two `SslStream`s over in-memory pipes, pumped in turn until both sides are done. No
//! sockets, no runtime: what is timed is the TLS work of both peers (and creating their `Ssl`s).
//!
//! ECDSA P-256 certificates from `certgate_tools::pki::generate` (client chain: leaf <- Intermediate 1
//! <- root, server chain: leaf <- Intermediate 1), X25519, AES-128-GCM. Each iteration is one
//! connection: full (certificates sent and verified both ways) or resumed (a ticket or, for TLS
//! 1.2, a session ID from an earlier connection; resumption is asserted). After the handshake the
//! client reads once so that it also processes the tickets the server sent.

use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boring::pkey::PKey;
use boring::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSession,
    SslSessionCacheMode, SslStream, SslStreamBuilder, SslVerifyMode, SslVersion,
};
use boring::x509::X509;
use certgate::config::{Reject, VerifyMode};
use certgate::tls::{server_context, ServerSettings, TicketKeys};
use certgate_tools::pki::Pki;
use criterion::{criterion_group, criterion_main, Criterion};
use foreign_types::ForeignTypeRef;

use certgate_tools::memory::{pipes, Pipe, Side};

/// How the client resumes.
#[derive(Clone, Copy)]
enum Resumption {
    Tickets,
    /// TLS 1.2 only: the client refuses tickets, so the server's session cache is used.
    SessionIds,
}

/// A client context and certgate's server context as a default listener builds it (random
/// rotating ticket keys, 20 Ki-session cache, 5-minute sessions) with `mode = required`.
struct Peers {
    client: SslContext,
    server: SslContext,
    /// The last session the client was given (new-session callback).
    session: Arc<Mutex<Option<SslSession>>>,
}

impl Peers {
    fn new(pki: &Pki, version: SslVersion, resumption: Resumption) -> Peers {
        let read = |p: &Path| std::fs::read(p).expect("read PKI file");
        let tickets = TicketKeys::rotating(Duration::from_secs(3600));
        let server = server_context(&ServerSettings {
            cert_pem: &read(&pki.server.cert),
            key_pem: &read(&pki.server.key),
            ca_pem: Some(&read(&pki.client_ca_bundle)),
            mode: VerifyMode::Required,
            reject: Reject::default(),
            verify_depth: 2,
            min_tls13: false,
            policy_tag: b"bench",
            tickets: Some(&tickets),
            session_cache_size: 20 * 1024,
            session_timeout: Duration::from_secs(300),
            verify_cache: 0,
        })
        .expect("server context");

        let mut b = SslContextBuilder::new(SslMethod::tls()).expect("client context");
        b.set_min_proto_version(Some(version)).expect("version");
        b.set_max_proto_version(Some(version)).expect("version");
        // X25519 is used; P-256 is listed because a TLS 1.2 client must allow the server key's curve.
        b.set_curves_list("X25519:P-256").expect("curves");
        b.set_verify(SslVerifyMode::PEER);
        for root in X509::stack_from_pem(&read(&pki.server_ca)).expect("server CA") {
            b.cert_store_mut().add_cert(root).expect("trust root");
        }
        let mut chain = X509::stack_from_pem(&read(&pki.client1.cert))
            .expect("client chain")
            .into_iter();
        b.set_certificate(&chain.next().expect("client leaf"))
            .expect("client leaf");
        for ca in chain {
            b.add_extra_chain_cert(ca).expect("client chain");
        }
        let key = PKey::private_key_from_pem(&read(&pki.client1.key)).expect("client key");
        b.set_private_key(&key).expect("client key");
        if let Resumption::SessionIds = resumption {
            b.set_options(SslOptions::NO_TICKET);
        }
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

    /// One complete mTLS handshake; the client has also read what the server sent after it (TLS
    /// 1.3 tickets). Panics unless the server verified the client's certificate and, with
    /// `resume`, unless both sides resumed.
    fn handshake(&self, resume: Option<&SslSession>) -> (SslStream<Pipe>, SslStream<Pipe>) {
        let (cp, sp) = pipes();
        let mut ssl = Ssl::new(&self.client).expect("client ssl");
        ssl.set_hostname("localhost").expect("sni");
        ssl.param_mut().set_host("localhost").expect("host");
        if let Some(session) = resume {
            // SAFETY: the session was made by a connection of this same client context.
            unsafe { ssl.set_session(session) }.expect("set session");
        }
        let mut client = Side::Mid(SslStreamBuilder::new(ssl, cp).setup_connect());
        let ssl = Ssl::new(&self.server).expect("server ssl");
        let mut server = Side::Mid(SslStreamBuilder::new(ssl, sp).setup_accept());
        let mut rounds = 0;
        while matches!(client, Side::Mid(_)) || matches!(server, Side::Mid(_)) {
            rounds += 1;
            assert!(rounds < 10, "handshake stalled");
            client = client.step();
            server = server.step();
        }
        let (mut client, server) = (client.done(), server.done());
        // BoringSSL holds TLS 1.3 tickets back until the server first writes (in certgate, the
        // first response); a zero-byte write sends them, and the client reads them.
        // SAFETY: `server` owns a live SSL; a zero-length write reads nothing from the pointer.
        unsafe { boring_sys::SSL_write(server.ssl().as_ptr(), std::ptr::null(), 0) };
        let mut byte = [0u8; 1];
        match client.ssl_read(&mut byte) {
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            other => panic!("client read after the handshake: {other:?}"),
        }
        assert!(server.ssl().peer_certificate().is_some());
        assert!(
            server.ssl().verify_result().is_ok(),
            "client certificate not verified"
        );
        if resume.is_some() {
            assert!(
                client.ssl().session_reused() && server.ssl().session_reused(),
                "not resumed"
            );
        }
        (client, server)
    }

    /// A session from a full handshake, to resume.
    fn session(&self) -> SslSession {
        drop(self.handshake(None));
        let session = self.session.lock().expect("slot").take();
        session.expect("no session from the server")
    }
}

fn handshakes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = certgate_tools::pki::generate(dir.path()).expect("pki");
    let mut group = c.benchmark_group("handshake");
    for (version, label) in [(SslVersion::TLS1_3, "tls13"), (SslVersion::TLS1_2, "tls12")] {
        let peers = Peers::new(&pki, version, Resumption::Tickets);
        let (client, _) = peers.handshake(None);
        assert_eq!(client.ssl().version2(), Some(version));
        assert_eq!(client.ssl().curve_name(), Some("X25519"));
        group.bench_function(format!("{label}_full"), |b| {
            b.iter(|| black_box(peers.handshake(None)))
        });
        let session = peers.session();
        group.bench_function(format!("{label}_resumed_ticket"), |b| {
            b.iter(|| black_box(peers.handshake(Some(&session))))
        });
    }
    let peers = Peers::new(&pki, SslVersion::TLS1_2, Resumption::SessionIds);
    let session = peers.session();
    group.bench_function("tls12_resumed_session_id", |b| {
        b.iter(|| black_box(peers.handshake(Some(&session))))
    });
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
