//! Upstream pools end to end: weights and backups, retries to another server, passive and
//! active health (a server killed and brought back), `client_hash` stickiness, `least_conn`
//! against a slow server, the tries bound, and the configuration errors `certgate check` gives.
//!
//! Which server answered is read from each upstream's own request counter (the echo's
//! `requests()`, or the test servers' counters here), so no assertion depends on response
//! contents. Health-check requests count there too; tests that enable checks allow for them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn echo_any() -> EchoServer {
    echo::spawn("127.0.0.1:0".parse().unwrap()).expect("spawn echo")
}

/// Requests each server has answered.
fn counts(servers: &[&EchoServer]) -> Vec<u64> {
    servers.iter().map(|s| s.requests()).collect()
}

/// The index of the one server that answered exactly one request between two snapshots.
fn served_by(before: &[u64], after: &[u64]) -> usize {
    let moved: Vec<usize> = (0..before.len())
        .filter(|&i| after[i] != before[i])
        .collect();
    assert_eq!(moved.len(), 1, "before {before:?}, after {after:?}");
    assert_eq!(
        after[moved[0]] - before[moved[0]],
        1,
        "{before:?} -> {after:?}"
    );
    moved[0]
}

/// The proxy's log without ANSI colour codes.
fn plain_log(gate: &Gate) -> String {
    let log = gate.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Log lines that contain every one of `parts`.
fn log_lines(gate: &Gate, parts: &[&str]) -> usize {
    plain_log(gate)
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// Waits until a log line contains every one of `parts`; returns how long that took.
fn wait_for_log(gate: &Gate, parts: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if log_lines(gate, parts) > 0 {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!(
                "no log line with {parts:?} within {limit:?}; log:\n{}",
                plain_log(gate)
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn weights_and_backup_are_honoured() {
    let (a, b, c) = (echo_any(), echo_any(), echo_any());
    let gate = Gate::start(
        Config::new()
            .upstream(&[a.addr(), b.addr(), c.addr()])
            .server_params(&["weight=1", "weight=3", "backup"]),
    );
    let mut client = gate.connect(Some(&gate.pki().client1));
    for i in 0..400 {
        let r = client.roundtrip(&get(&gate.host(), &format!("/w/{i}"), &[]));
        assert_eq!(r.status, 200, "request {i}");
    }
    let n = counts(&[&a, &b, &c]);
    // Smooth weighted round robin on one worker is exact; allow a little anyway.
    assert!(
        n[0].abs_diff(100) <= 4,
        "weight 1 got {} of 400: {n:?}",
        n[0]
    );
    assert!(
        n[1].abs_diff(300) <= 4,
        "weight 3 got {} of 400: {n:?}",
        n[1]
    );
    assert_eq!(
        n[2], 0,
        "the backup served while the primaries were up: {n:?}"
    );

    // Every primary gone: the backup takes everything, and no request fails.
    a.stop();
    b.stop();
    for i in 0..50 {
        let r = client.roundtrip(&get(&gate.host(), &format!("/b/{i}"), &[]));
        assert_eq!(r.status, 200, "request {i} with the primaries down");
    }
    assert_eq!(c.requests(), 50);
}

#[test]
fn passive_health_shared_by_workers_ejects_a_dead_server() {
    // Default max_fails=1 fail_timeout=10s: after one failed attempt no worker tries the dead
    // server again for 10 s. Four workers that kept their own failure counts would try it up
    // to four times.
    let (a, b) = (echo_any(), echo_any());
    let gate = Gate::start(Config::new().workers(4).upstream(&[a.addr(), b.addr()]));
    let mut clients: Vec<TlsClient> = (0..8)
        .map(|_| gate.connect(Some(&gate.pki().client1)))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.roundtrip(&get(&gate.host(), "/warm", &[])).status,
            200,
            "{i}"
        );
    }
    let dead = b.addr();
    b.stop();
    for round in 0..20 {
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c.roundtrip(&get(&gate.host(), &format!("/r/{round}"), &[]));
            assert_eq!(r.status, 200, "round {round}, client {i}");
        }
    }
    let attempts = log_lines(&gate, &["upstream attempt failed", &dead.to_string()]);
    assert!(
        (1..=2).contains(&attempts),
        "{attempts} failed attempts on the dead server in 160 requests; log:\n{}",
        plain_log(&gate)
    );
    assert_eq!(
        log_lines(&gate, &[&format!("server {dead} marked down for 10s")]),
        1,
        "{}",
        plain_log(&gate)
    );
}

#[test]
fn killed_server_is_retried_ejected_by_health_check_and_readmitted() {
    const INTERVAL: Duration = Duration::from_millis(200);
    const FAILS: u32 = 2;
    let a = echo_any();
    let b = echo_any();
    let dead = b.addr();
    // max_fails=0: no passive accounting, so only the active check ejects the server.
    let gate = Gate::start(
        Config::new()
            .upstream(&[a.addr(), dead])
            .server_params(&["max_fails=0", "max_fails=0"])
            .upstream_extra("")
            .upstream_extra("[upstream.health]")
            .upstream_extra("path = \"/healthz\"")
            .upstream_extra("interval = \"200ms\"")
            .upstream_extra("timeout = \"500ms\"")
            .upstream_extra(&format!("fails = {FAILS}"))
            .upstream_extra("passes = 1"),
    );
    let mut clients: Vec<TlsClient> = (0..4)
        .map(|_| gate.connect(Some(&gate.pki().client1)))
        .collect();
    let mut sent = 0;
    let mut run = |clients: &mut Vec<TlsClient>, n: usize, what: &str| {
        for i in 0..n {
            let c = &mut clients[i % 4];
            let r = c.roundtrip(&get(&gate.host(), &format!("/{what}/{i}"), &[]));
            assert_eq!(
                r.status,
                200,
                "{what} request {i}; log:\n{}",
                plain_log(&gate)
            );
            sent += 1;
        }
    };
    run(&mut clients, 40, "before");
    assert!(b.requests() >= 20, "b served {} of 40", b.requests());

    // Kill b between requests; keep the load going while the check notices.
    b.stop();
    let killed = Instant::now();
    let down_line = format!("server {dead} marked down by health check");
    let mut ejected_after = None;
    while killed.elapsed() < Duration::from_secs(5) {
        run(&mut clients, 4, "during");
        if log_lines(&gate, &[&down_line]) > 0 {
            ejected_after = Some(killed.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let ejected_after = ejected_after.unwrap_or_else(|| {
        panic!(
            "the dead server was never marked down; log:\n{}",
            plain_log(&gate)
        )
    });
    eprintln!("dead server ejected {ejected_after:?} after it was killed");
    // interval × fails, plus one interval of phase and some scheduling slack.
    let bound = INTERVAL * (FAILS + 1) + Duration::from_millis(500);
    assert!(
        ejected_after <= bound,
        "ejected after {ejected_after:?}, bound {bound:?}"
    );
    assert!(
        log_lines(&gate, &["upstream attempt failed", &dead.to_string()]) >= 1,
        "the dead server was never tried before the check ejected it (max_fails=0)"
    );

    // Ejected: no request tries it any more.
    let attempts = log_lines(&gate, &["upstream attempt failed", &dead.to_string()]);
    let a_before = a.requests();
    run(&mut clients, 100, "ejected");
    assert_eq!(
        log_lines(&gate, &["upstream attempt failed", &dead.to_string()]),
        attempts,
        "requests still tried the ejected server; log:\n{}",
        plain_log(&gate)
    );
    assert!(a.requests() - a_before >= 100);

    // Back on the same port: one passed check readmits it, and traffic returns.
    let b2 = echo::spawn(dead).expect("rebind the dead server's address");
    let up_after = wait_for_log(
        &gate,
        &[&format!("server {dead} marked up by health check")],
        Duration::from_secs(5),
    );
    assert!(
        up_after <= INTERVAL * 2 + Duration::from_millis(800),
        "{up_after:?}"
    );
    let (a_before, b_before) = (a.requests(), b2.requests());
    run(&mut clients, 100, "readmitted");
    let (a_got, b_got) = (a.requests() - a_before, b2.requests() - b_before);
    eprintln!("readmitted {up_after:?} after the restart; then a {a_got}, b {b_got}");
    // Round robin again: about 50 each (health checks add a couple to each).
    assert!(
        b_got >= 45,
        "the readmitted server got {b_got} of 100 (a got {a_got})"
    );
    assert!(a_got <= 60, "a got {a_got} of 100 (b got {b_got})");
    assert!(sent >= 240);
}

#[test]
fn client_hash_sticks_to_a_certificate() {
    let servers = [echo_any(), echo_any(), echo_any()];
    let refs: Vec<&EchoServer> = servers.iter().collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr()).collect();
    let gate = Gate::start(
        Config::new()
            .workers(2)
            .upstream(&addrs)
            .upstream_extra("balance = \"client_hash\""),
    );
    let pki = gate.pki().clone();
    let land = |client: &CertKey, n: usize| -> Vec<usize> {
        (0..n)
            .map(|i| {
                let before = counts(&refs);
                let mut c = gate.connect(Some(client));
                let r = c.roundtrip(&get(&gate.host(), &format!("/h/{i}"), &[]));
                assert_eq!(r.status, 200);
                served_by(&before, &counts(&refs))
            })
            .collect()
    };
    let one = land(&pki.client1, 20);
    assert!(one.iter().all(|&s| s == one[0]), "client1 moved: {one:?}");
    let two = land(&pki.client2, 20);
    assert!(two.iter().all(|&s| s == two[0]), "client2 moved: {two:?}");

    // client1's server goes away: client1 moves to one other server and stays there; a client
    // of another server does not move.
    let [s0, s1, s2] = servers;
    let mut alive: Vec<Option<EchoServer>> = vec![Some(s0), Some(s1), Some(s2)];
    if let Some(s) = alive[one[0]].take() {
        s.stop();
    }
    let refs: Vec<&EchoServer> = alive.iter().flatten().collect();
    let index_of = |i: usize| -> usize {
        // Index among the remaining servers -> index among all three.
        (0..3).filter(|&k| k != one[0]).nth(i).unwrap()
    };
    let land_alive = |client: &CertKey, n: usize| -> Vec<usize> {
        (0..n)
            .map(|i| {
                let before = counts(&refs);
                let mut c = gate.connect(Some(client));
                let r = c.roundtrip(&get(&gate.host(), &format!("/m/{i}"), &[]));
                assert_eq!(r.status, 200, "request {i}; log:\n{}", plain_log(&gate));
                index_of(served_by(&before, &counts(&refs)))
            })
            .collect()
    };
    let moved = land_alive(&pki.client1, 10);
    assert!(
        moved.iter().all(|&s| s == moved[0]),
        "client1 after the loss: {moved:?}"
    );
    assert_ne!(moved[0], one[0]);
    if two[0] != one[0] {
        let still = land_alive(&pki.client2, 10);
        assert!(
            still.iter().all(|&s| s == two[0]),
            "client2 moved although its server is up: {still:?}, was {}",
            two[0]
        );
    }
}

/// An HTTP/1.1 upstream that answers every request after `delay`, counting them.
struct SlowServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl SlowServer {
    fn spawn(delay: Duration) -> SlowServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        thread::spawn(move || {
            while let Ok((mut conn, _)) = listener.accept() {
                let counter = Arc::clone(&counter);
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            thread::sleep(delay);
                            counter.fetch_add(1, Ordering::SeqCst);
                            let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow";
                            if conn.write_all(resp).is_err() {
                                return;
                            }
                        }
                        match conn.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                });
            }
        });
        SlowServer { addr, requests }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

#[test]
fn least_conn_sends_most_requests_to_the_fast_server() {
    let slow = SlowServer::spawn(Duration::from_millis(300));
    let fast = echo_any();
    let gate = Gate::start(
        Config::new()
            .upstream(&[slow.addr, fast.addr()])
            .upstream_extra("balance = \"least_conn\""),
    );
    let host = gate.host();
    let clients: Vec<TlsClient> = (0..6)
        .map(|_| gate.connect(Some(&gate.pki().client1)))
        .collect();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let host = host.clone();
            thread::spawn(move || {
                for i in 0..25 {
                    let r = c.roundtrip(&get(&host, &format!("/lc/{i}"), &[]));
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    let (s, f) = (slow.requests(), fast.requests());
    eprintln!("least_conn: slow server {s}, fast server {f}");
    assert_eq!(s + f, 150);
    // Round robin would give the slow server 75; least_conn gives it one request at a time
    // only while the fast one is busy too.
    assert!(s <= 30, "the slow server got {s} of 150 (fast {f})");
}

/// An upstream that reads a request head and closes without answering.
struct Closer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl Closer {
    fn spawn() -> Closer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        thread::spawn(move || {
            while let Ok((mut conn, _)) = listener.accept() {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut tmp) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        });
        Closer { addr, accepted }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

#[test]
fn idempotent_requests_go_elsewhere_after_a_close_and_others_do_not() {
    let closer = Closer::spawn();
    let echo = echo_any();
    // max_fails=0 keeps the closing server in rotation.
    let gate = Gate::start(
        Config::new()
            .upstream(&[closer.addr, echo.addr()])
            .server_params(&["max_fails=0", ""]),
    );
    let client1 = gate.pki().client1.clone();
    for i in 0..6 {
        let out = gate.curl(&format!("/get/{i}")).cert(&client1).run();
        assert_eq!(out.status, 200, "GET {i}: {out:?}");
    }
    assert!(closer.accepted() >= 1, "the closing server was never tried");
    let (before_closer, before_echo) = (closer.accepted(), echo.requests());
    let mut bad = 0;
    for i in 0..6 {
        let out = gate
            .curl(&format!("/post/{i}"))
            .cert(&client1)
            .body(b"not to be sent twice")
            .run();
        match out.status {
            200 => assert_eq!(out.seen().str("body"), "not to be sent twice"),
            502 => bad += 1,
            s => panic!("POST {i}: status {s}: {out:?}"),
        }
    }
    let to_closer = closer.accepted() - before_closer;
    assert!(to_closer >= 1, "no POST reached the closing server");
    assert_eq!(bad, to_closer, "a POST the server closed on was sent again");
    assert_eq!(echo.requests() - before_echo, 6 - to_closer);
}

#[test]
fn refused_connections_go_elsewhere_for_any_method() {
    let echo = echo_any();
    let gate = Gate::start(
        Config::new()
            .upstream(&[dead_addr(), echo.addr()])
            .server_params(&["max_fails=0", ""]),
    );
    let client1 = gate.pki().client1.clone();
    for i in 0..4 {
        let out = gate
            .curl(&format!("/post/{i}"))
            .cert(&client1)
            .body(b"payload")
            .run();
        assert_eq!(out.status, 200, "POST {i}: {out:?}");
        assert_eq!(out.seen().str("body"), "payload");
    }
    assert!(log_lines(&gate, &["upstream attempt failed", "trying another server"]) >= 1);
}

#[test]
fn tries_bound_the_attempts() {
    let (d1, d2) = (dead_addr(), dead_addr());
    let echo = echo_any();
    let gate = Gate::start(
        Config::new()
            .upstream(&[d1, d2, echo.addr()])
            .server_params(&["max_fails=0", "max_fails=0", "max_fails=0"])
            .upstream_extra("tries = 2"),
    );
    // Round robin starts with d1, then d2 (the first try excluded): two tries, both refused.
    let out = gate.curl("/").cert(&gate.pki().client1).run();
    assert_eq!(out.status, 502, "{out:?}");
    assert_eq!(echo.requests(), 0);
    let log = plain_log(&gate);
    let line = log
        .lines()
        .find(|l| l.contains("certgate::access") && l.contains("status=502"))
        .unwrap_or_else(|| panic!("no access line; log:\n{log}"));
    assert!(
        line.contains(&d1.to_string()) && line.contains(&d2.to_string()),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------------------------

/// Writes `text` as the config and runs `certgate check`; returns its output (it must fail).
fn check_fails(env: &Env, text: &str) -> String {
    let path = env.write("bad.toml", text);
    let out = env.check(&path);
    assert!(
        !out.status.success(),
        "check passed:\n{text}\n{}",
        out.all()
    );
    out.all()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
        + 1
}

#[test]
fn bad_server_entries_name_the_key_and_line() {
    let env = Env::new();
    let addr = dead_addr();
    for (params, reason) in [
        ("weight=0", "weight=0"),
        ("weight=x", "weight=x"),
        ("max_conns=10", "unknown parameter \"max_conns=10\""),
        ("fail_timeout=soon", "fail_timeout"),
        ("max_fails=-1", "max_fails=-1"),
    ] {
        let text = Config::new()
            .upstream(&[addr])
            .server_params(&[params])
            .render(free_port(), &[addr]);
        let line = line_of(&text, "servers = ");
        let out = check_fails(&env, &text);
        assert!(
            out.contains(&format!("bad.toml:{line}: upstream[0].servers: ")),
            "{params}: {out}"
        );
        assert!(out.contains(reason), "{params}: {out}");
    }

    let text = Config::new()
        .upstream(&[addr])
        .render(free_port(), &[addr])
        .replace(&addr.to_string(), "no-such-host.invalid:80");
    let line = line_of(&text, "servers = ");
    let out = check_fails(&env, &text);
    assert!(
        out.contains(&format!("bad.toml:{line}: upstream[0].servers: ")),
        "{out}"
    );
    assert!(out.contains("no-such-host.invalid:80"), "{out}");
}

#[test]
fn bad_pool_keys_name_the_key_and_line() {
    let env = Env::new();
    let addr = dead_addr();
    for (extra, key, reason) in [
        (
            &["balance = \"random\""][..],
            "upstream[0].balance",
            "unknown value \"random\" (valid: round_robin, least_conn, client_hash)",
        ),
        (&["tries = 0"][..], "upstream[0].tries", "at least 1"),
        (
            &["[upstream.health]", "path = \"healthz\""][..],
            "upstream[0].health.path",
            "must start with /",
        ),
        (
            &["[upstream.health]", "interval = \"0s\""][..],
            "upstream[0].health.interval",
            "longer than 0",
        ),
        (
            &["[upstream.health]", "passes = 0"][..],
            "upstream[0].health.passes",
            "at least 1",
        ),
        (
            &["[upstream.health]", "rise = 2"][..],
            "upstream[0].health.rise",
            "unknown key `rise`",
        ),
    ] {
        let mut config = Config::new().upstream(&[addr]);
        for line in extra {
            config = config.upstream_extra(line);
        }
        let text = config.render(free_port(), &[addr]);
        let last = extra[extra.len() - 1];
        let line = line_of(&text, last);
        let out = check_fails(&env, &text);
        assert!(
            out.contains(&format!("bad.toml:{line}: {key}: ")),
            "{extra:?}: {out}"
        );
        assert!(out.contains(reason), "{extra:?}: {out}");
    }
}

#[test]
fn a_full_pool_configuration_checks() {
    let env = Env::new();
    let servers = [dead_addr(), dead_addr(), dead_addr()];
    let text = Config::new()
        .upstream(&servers)
        .server_params(&["weight=2 max_fails=3 fail_timeout=30s", "", "backup"])
        .upstream_extra("balance = \"least_conn\"")
        .upstream_extra("tries = 2")
        .upstream_extra("keepalive = 8")
        .upstream_extra("[upstream.health]")
        .upstream_extra("path = \"/healthz\"")
        .upstream_extra("interval = \"2s\"")
        .upstream_extra("timeout = \"1s\"")
        .upstream_extra("fails = 3")
        .upstream_extra("passes = 2")
        .render(free_port(), &servers);
    let path = env.write("good.toml", &text);
    let out = env.check(&path);
    assert!(out.status.success(), "{}\n{text}", out.all());
    // localhost resolves to at least one address: a host name is accepted.
    let text = text.replacen("127.0.0.1", "localhost", 1);
    let path = env.write("good-name.toml", &text);
    let out = env.check(&path);
    assert!(out.status.success(), "{}\n{text}", out.all());
}

#[test]
fn tcp_mode_uses_the_pool_too() {
    // A TCP-mode listener picks servers with the same balancer and health: the dead server is
    // tried once, marked down, and every connection is relayed to the live one.
    let echo = echo_any();
    let dead = dead_addr();
    let env = Env::new();
    let port = free_port();
    let text = Config::new()
        .upstream(&[dead, echo.addr()])
        .render(port, &[dead, echo.addr()])
        .replacen(
            "upstream = \"app\"\n",
            "upstream = \"app\"\nmode = \"tcp\"\n",
            1,
        );
    let gate = RawGate::start(&env, &text, port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for i in 0..6 {
        let mut c = TlsClient::connect(addr, &env.pki.server_ca, Some(&env.pki.client1))
            .unwrap_or_else(|e| panic!("connect {i}: {e}"));
        let r = c.roundtrip(&get(
            "localhost",
            &format!("/tcp/{i}"),
            &["Connection: close"],
        ));
        assert_eq!(r.status, 200, "connection {i}; log:\n{}", gate.log());
    }
    assert_eq!(echo.requests(), 6);
    assert!(
        gate.log().contains(&format!("server {dead} marked down")),
        "{}",
        gate.log()
    );
}
