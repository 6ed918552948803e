//! Client-side timeouts: a client that stalls (before the handshake, in the middle of a request
//! head, or idle between requests) is disconnected after the configured time, not never.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// How long the proxy took to close `c`; panics if it is still open after `limit`.
fn time_to_close<S: std::io::Read + std::io::Write + HasTcp>(
    c: &mut HttpReader<S>,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    c.closes_within(limit).unwrap_or_else(|e| panic!("{e}"));
    start.elapsed()
}

#[test]
fn stalled_handshake_is_dropped() {
    let gate = Gate::start(Config::new().timeout("handshake", "500ms"));
    let tcp = TcpStream::connect(gate.addr()).unwrap();
    let mut c = HttpReader::new(tcp);
    let took = time_to_close(&mut c, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(300),
        "closed after {took:?}, before the timeout"
    );
}

#[test]
fn stalled_request_head_is_dropped() {
    let gate = Gate::start(Config::new().timeout("request_head", "500ms"));
    let mut c = gate.connect(Some(&gate.pki().client1));
    c.send_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", gate.host()).as_bytes());
    let start = Instant::now();
    // A 408 before closing is fine; silence is fine; staying open is not.
    c.set_read_timeout(Duration::from_secs(5));
    match c.response(false) {
        Ok(r) => assert_eq!(r.status, 408, "{r:?}"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "request head stalled for 5 s with request_head = 500ms and the connection is open"
        ),
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "gave up after {took:?}, before the timeout"
    );
    assert_eq!(gate.echo().requests(), 0);
}

#[test]
fn idle_keepalive_connection_is_closed() {
    let gate = Gate::start(Config::new().timeout("keepalive_idle", "500ms"));
    let mut c = gate.connect(Some(&gate.pki().client1));
    assert_eq!(c.roundtrip(&get(&gate.host(), "/", &[])).status, 200);
    let took = time_to_close(&mut c, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(300),
        "closed after {took:?}, before the timeout"
    );
}

#[test]
fn active_keepalive_connection_outlives_the_idle_timeout() {
    let gate = Gate::start(Config::new().timeout("keepalive_idle", "1s"));
    let mut c = gate.connect(Some(&gate.pki().client1));
    // 2.5 s of traffic in total, never idle for more than ~250 ms.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        assert_eq!(
            c.roundtrip(&get(&gate.host(), "/", &[])).status,
            200,
            "request {n}"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(n >= 5);
}
