//! SIGHUP reloads the configuration as `nginx -s reload` does: new connections get the new
//! rules, a broken file or a moved listener changes nothing, and the process keeps serving.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn hup(gate: &Gate) {
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(gate.pid() as i32, libc::SIGHUP) }, 0);
}

/// Waits (bounded) until the log shows `needle` `n` times.
fn wait_log(gate: &Gate, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.log().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(gate: &Gate, who: &CertKey) -> u16 {
    gate.curl("/").cert(who).run().status
}

#[test]
fn sighup_applies_new_rules_and_refuses_bad_configs() {
    let gate = Gate::start(Config::new().workers(2).allow_subjects(&[dn::CLIENT1]));
    let (c1, c2) = (&gate.pki().client1, &gate.pki().client2);
    assert_eq!(status(&gate, c1), 200);
    assert_eq!(status(&gate, c2), 403);
    // A keep-alive connection opened before the reload.
    let mut before = gate.connect(Some(c1));
    assert_eq!(before.roundtrip(&get(&gate.host(), "/", &[])).status, 200);

    let servers = [gate.echo().addr];
    let next = gate.config.clone().allow_subjects(&[dn::CLIENT2]);
    std::fs::write(&gate.config_path, next.render(gate.port, &servers)).unwrap();
    hup(&gate);
    wait_log(&gate, "configuration reloaded", 1);
    for _ in 0..4 {
        // Both workers: each picks the new configuration up at its next accept.
        assert_eq!(status(&gate, c1), 403);
        assert_eq!(status(&gate, c2), 200);
    }
    // The old connection finishes under the rules it was admitted with.
    assert_eq!(before.roundtrip(&get(&gate.host(), "/", &[])).status, 200);

    // A broken file: logged, and the running configuration stays.
    std::fs::write(&gate.config_path, "[[listener]\nbroken").unwrap();
    hup(&gate);
    wait_log(&gate, "reload failed", 1);
    assert_eq!(status(&gate, c2), 200);
    assert_eq!(status(&gate, c1), 403);

    // A moved listener needs a restart.
    let moved = next.render(free_port(), &servers);
    std::fs::write(&gate.config_path, moved).unwrap();
    hup(&gate);
    wait_log(&gate, "reload refused", 1);
    assert_eq!(status(&gate, c2), 200);
}
