//! The process as an operator sees it: several workers serve concurrent clients, and SIGTERM
//! stops it promptly and cleanly.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn two_workers_serve_concurrent_clients() {
    let gate = Gate::start(Config::new().workers(2));
    let pki = gate.pki();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let gate = &gate;
                s.spawn(move || {
                    let mut c = gate.connect(Some(&pki.client1));
                    for i in 0..4 {
                        let path = format!("/t{t}/r{i}");
                        let r = c.roundtrip(&get(&gate.host(), &path, &[]));
                        assert_eq!(r.status, 200, "{path}");
                        let seen = r.seen();
                        assert_eq!(seen.str("path"), path);
                        assert_eq!(seen.one("X-SSL-Client-S-DN"), dn::CLIENT1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("client thread panicked");
        }
    });
    assert_eq!(gate.echo().requests(), 64);
}

#[test]
fn sigterm_stops_the_proxy_cleanly() {
    let mut gate = Gate::start(Config::new().workers(2));
    assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
    // An idle keep-alive connection must not hold the shutdown up forever.
    let _idle = gate.connect(Some(&gate.pki().client1));
    let (status, in_time) = gate
        .terminate(Duration::from_secs(10))
        .expect("process was running");
    assert!(in_time, "certgate ignored SIGTERM for 10 s");
    assert!(
        status.success(),
        "certgate exited with {status} on SIGTERM; log:\n{}",
        gate.log()
    );
    assert!(!gate.log().contains("panicked"), "log:\n{}", gate.log());
    let refused = std::net::TcpStream::connect_timeout(&gate.addr(), Duration::from_secs(1));
    assert!(refused.is_err(), "port still accepting after exit");
}

/// A second process on a listener's address fails at start with "address in use", as nginx
/// does, and the first keeps every connection: SO_REUSEPORT stays between certgate's workers.
#[test]
fn second_process_on_the_address_is_refused() {
    let gate = Gate::start(Config::new().workers(2).allow_subjects(&[dn::CLIENT1]));
    // Same address, looser rules: were it to join, it would admit client 2.
    let loose = gate.env.write(
        "loose.toml",
        gate.config_text()
            .replace(dn::CLIENT1, "~.*")
            .replace("workers = 2", "workers = 1"),
    );
    assert_ne!(loose, gate.config_path);
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("run")
            .arg("--config")
            .arg(&loose),
        Duration::from_secs(20),
    );
    assert!(
        !out.status.success(),
        "a second process started on {}:\n{}",
        gate.addr(),
        out.all()
    );
    assert!(out.all().contains("address in use"), "{}", out.all());
    // `certgate demo` on the same address fails the same way.
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_certgate")).args([
            "demo",
            "--listen",
            &gate.addr().to_string(),
        ]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "demo started:\n{}", out.all());
    assert!(out.all().contains("address in use"), "{}", out.all());
    // Every connection still reaches the first process's configuration.
    for i in 0..10 {
        let r = gate.curl("/").cert(&gate.pki().client2).run();
        assert_eq!(r.status, 403, "request {i}");
    }
}
