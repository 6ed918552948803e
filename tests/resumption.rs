//! Session resumption: TLS 1.3 tickets and TLS 1.2 session IDs work whichever worker a client
//! reconnects to, nginx-format ticket key files let separate instances resume each other's
//! sessions, a session never crosses client-auth policies, and a resumed session yields the same
//! identity headers and passes through the same rules as a full handshake.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use boring::ssl::SslVersion;
use common::resuming::ResumingClient;
use common::*;

const IDENTITY: [&str; 6] = [
    "X-SSL-Client-Verify",
    "X-SSL-Client-S-DN",
    "X-SSL-Client-I-DN",
    "X-SSL-Client-Serial",
    "X-SSL-Client-Fingerprint",
    "X-SSL-Client-Cert",
];

fn identity(resp: &Response) -> Vec<String> {
    let seen = resp.seen();
    IDENTITY.iter().map(|h| seen.one(h)).collect()
}

fn resumes_across_workers(version: SslVersion) {
    let gate = Gate::start(Config::new().workers(2).allow_subjects(&[pki::dn::CLIENT1]));
    let client = ResumingClient::new(&gate.pki().server_ca, &gate.pki().client1, version);
    let (resumed, first) = client.get(gate.addr());
    assert!(!resumed);
    assert_eq!(first.status, 200);
    let want = identity(&first);
    assert_eq!(want[0], "SUCCESS");
    let mut reused = 0;
    for _ in 0..12 {
        let (resumed, resp) = client.get(gate.addr());
        assert_eq!(resp.status, 200, "{}", resp.text());
        // A resumed session carries the same identity and passed the same rules.
        assert_eq!(identity(&resp), want);
        reused += resumed as usize;
    }
    // Both workers accept (SO_REUSEPORT spreads 12 connections over them): all must resume.
    assert_eq!(reused, 12, "log:\n{}", gate.log());
}

#[test]
fn tls13_tickets_resume_across_workers() {
    resumes_across_workers(SslVersion::TLS1_3);
}

#[test]
fn tls12_session_ids_resume_across_workers() {
    resumes_across_workers(SslVersion::TLS1_2);
}

/// A gate whose ticket key file holds `key`; with `pki_from`, it also serves the same PKI as
/// another gate (instances behind one balancer share certificates and CA).
fn gate_with_key(key: &[u8], pki_from: Option<&Path>, config: Config) -> Gate {
    let env = Env::new();
    if let Some(src) = pki_from {
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), env.pki.dir.join(entry.file_name())).unwrap();
        }
    }
    env.write("ticket.key", key);
    Gate::start_in(
        env,
        config.tls_extra("session_ticket_keys = [\"ticket.key\"]"),
    )
}

fn carry_session(from: &ResumingClient, to: &ResumingClient) {
    *to.session.lock().unwrap() = from.session.lock().unwrap().clone();
}

#[test]
fn nginx_ticket_key_files_let_instances_resume_each_other() {
    let key: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37)).collect();
    let a = gate_with_key(&key, None, Config::new());
    let shared = a.pki().dir.clone();
    let b = gate_with_key(&key, Some(&shared), Config::new());
    let c = gate_with_key(
        &(0..48u8).collect::<Vec<u8>>(),
        Some(&shared),
        Config::new(),
    );

    let client = ResumingClient::new(&a.pki().server_ca, &a.pki().client1, SslVersion::TLS1_3);
    let (_, first) = client.get(a.addr());
    assert_eq!(first.status, 200);
    let want = identity(&first);

    let to_b = ResumingClient::new(&a.pki().server_ca, &a.pki().client1, SslVersion::TLS1_3);
    carry_session(&client, &to_b);
    let (resumed, resp) = to_b.get(b.addr());
    assert!(
        resumed,
        "B must resume A's ticket (same key file); log:\n{}",
        b.log()
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(identity(&resp), want);

    let to_c = ResumingClient::new(&a.pki().server_ca, &a.pki().client1, SslVersion::TLS1_3);
    carry_session(&client, &to_c);
    let (resumed, resp) = to_c.get(c.addr());
    assert!(!resumed, "C holds another key: a full handshake");
    assert_eq!(resp.status, 200);
}

#[test]
fn a_session_never_crosses_client_auth_policies() {
    let key: Vec<u8> = (0..80u8).collect();
    let permissive = gate_with_key(&key, None, Config::new());
    let shared = permissive.pki().dir.clone();
    let strict = gate_with_key(
        &key,
        Some(&shared),
        Config::new().allow_subjects(&[pki::dn::CLIENT2]),
    );
    let ca = &permissive.pki().server_ca;
    let client = ResumingClient::new(ca, &permissive.pki().client1, SslVersion::TLS1_3);
    let (_, first) = client.get(permissive.addr());
    assert_eq!(first.status, 200);

    let other = ResumingClient::new(ca, &permissive.pki().client1, SslVersion::TLS1_3);
    carry_session(&client, &other);
    let (resumed, resp) = other.get(strict.addr());
    assert!(
        !resumed,
        "a session made under one policy resumed under another"
    );
    assert_eq!(
        resp.status, 403,
        "client.1 is not allowed by the strict listener"
    );
}

/// A client that completes the handshake and sends nothing still gets a ticket (BoringSSL
/// holds tickets until the server's first write; certgate flushes them before idling).
#[test]
fn a_silent_client_gets_a_ticket() {
    let gate = Gate::start(Config::new());
    let client = ResumingClient::new(
        &gate.pki().server_ca,
        &gate.pki().client1,
        SslVersion::TLS1_3,
    );
    let tcp = TcpStream::connect_timeout(&gate.addr(), Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut tls = client
        .connector
        .connect("localhost", tcp)
        .expect("handshake");
    // Reading processes post-handshake messages; nothing else arrives, so it times out.
    let mut buf = [0u8; 16];
    let _ = std::io::Read::read(&mut tls, &mut buf);
    assert!(
        client.session.lock().unwrap().is_some(),
        "no session ticket arrived"
    );
    drop(tls);
    let (resumed, resp) = client.get(gate.addr());
    assert!(resumed);
    assert_eq!(resp.status, 200);
}
