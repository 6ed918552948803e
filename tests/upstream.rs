//! The proxy's side towards the backend: errors a user sees as 502/504, and upstream connections
//! that end between requests.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn upstream_down_is_502() {
    let gate = Gate::start(Config::new().upstream(&[dead_addr()]));
    for _ in 0..2 {
        let out = gate.curl("/").cert(&gate.pki().client1).run();
        assert_eq!(out.status, 502, "{out:?}");
    }
    // The client connection survives a 502 and can try again.
    let mut c = gate.connect(Some(&gate.pki().client1));
    assert_eq!(c.roundtrip(&get(&gate.host(), "/", &[])).status, 502);
    assert_eq!(c.roundtrip(&get(&gate.host(), "/", &[])).status, 502);
}

#[test]
fn upstream_that_never_answers_is_504_after_upstream_read() {
    let silent = Silent::spawn();
    let gate = Gate::start(
        Config::new()
            .upstream(&[silent.addr])
            .timeout("upstream_read", "500ms"),
    );
    let start = Instant::now();
    let out = gate.curl("/").cert(&gate.pki().client1).run();
    let took = start.elapsed();
    assert_eq!(out.status, 504, "{out:?}");
    assert!(
        took < Duration::from_secs(5),
        "504 took {took:?} with upstream_read = 500ms"
    );
    assert!(
        took >= Duration::from_millis(400),
        "504 after only {took:?}: timeout not honoured"
    );
    assert!(silent.accepted() >= 1);
}

#[test]
fn slow_upstream_within_upstream_read_is_served() {
    let gate = Gate::start(Config::new().timeout("upstream_read", "5s"));
    let out = gate.curl("/slow/700").cert(&gate.pki().client1).run();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.seen().str("path"), "/slow/700");
}

#[test]
fn upstream_closing_after_a_response_does_not_break_the_client_connection() {
    let gate = Gate::start(Config::new());
    let mut c = gate.connect(Some(&gate.pki().client1));
    let first = c.roundtrip(&get(&gate.host(), "/close", &[]));
    assert_eq!(first.status, 200);
    let first_conn = first.seen().u64("conn_id");
    for i in 0..3 {
        let r = c.roundtrip(&get(&gate.host(), &format!("/after-close/{i}"), &[]));
        assert_eq!(r.status, 200, "request {i} after the upstream closed");
        assert_ne!(
            r.seen().u64("conn_id"),
            first_conn,
            "a closed upstream connection was reused"
        );
    }
}

#[test]
fn upstream_stopped_then_restarted_is_served_again() {
    // Pooled connections die with the upstream; the proxy must not hand them out as healthy
    // forever. The first request after the restart may fail (502) at most once.
    let echo = echo::spawn("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = echo.addr();
    let gate = Gate::start(Config::new().upstream(&[addr]));
    let client1 = gate.pki().client1.clone();
    assert_eq!(gate.curl("/").cert(&client1).run().status, 200);
    echo.stop();
    assert_eq!(gate.curl("/").cert(&client1).run().status, 502);
    let echo = echo::spawn(addr).expect("rebind the upstream address");
    let mut c = gate.connect(Some(&client1));
    let mut statuses = vec![];
    for _ in 0..3 {
        statuses.push(c.roundtrip(&get(&gate.host(), "/", &[])).status);
    }
    assert_eq!(
        statuses[1..],
        [200, 200],
        "statuses after restart: {statuses:?}"
    );
    assert!(echo.requests() >= 2);
}
