//! Changing a running proxy without losing a request: `certgate reload` (validates as `check`,
//! signals the process found by `[runtime] pid_file`, waits for its answer) and SIGHUP under
//! load.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn reload(gate: &Gate, config: &Path) -> CommandOut {
    run_bounded(
        Command::new(certgate_bin())
            .arg("reload")
            .arg("--config")
            .arg(config)
            .current_dir(gate.env.dir.path()),
        Duration::from_secs(90),
    )
}

fn with_pid_file() -> Config {
    Config::new().runtime_extra("pid_file = \"certgate.pid\"")
}

/// Requests sent and failed by [`load`].
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Bounded load until `stop` (or 60 s): `threads` clients, each sending keep-alive requests as
/// `client1` and opening a new connection every fourth request. A failure is any connect,
/// write or read error, or a status other than 200.
fn load(gate: &Gate, threads: usize, stop: &AtomicBool, tally: &Tally) {
    let pki = gate.pki();
    let until = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    let mut c = match gate.try_connect(Some(&pki.client1)) {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("load: connect: {e}");
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    for _ in 0..4 {
                        n += 1;
                        let path = format!("/load/{t}/{n}");
                        let r = c
                            .send(&get(&gate.host(), &path, &[]))
                            .and_then(|()| c.response(false));
                        match r {
                            Ok(r) if r.status == 200 => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                eprintln!("load: {path}: status {}", r.status);
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("load: {path}: {e}");
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// `certgate reload`: a good file is put in force (exit 0); a file that does not validate is
/// reported as `check` reports it (exit 1) and the process is not signalled; a file the process
/// refuses (a moved listener) gives the process's reason (exit 1).
#[test]
fn reload_command_reports_the_outcome() {
    let gate = Gate::start(with_pid_file().allow_subjects(&[dn::CLIENT1]));
    let pki = gate.pki();
    assert_eq!(gate.curl("/").cert(&pki.client2).run().status, 403);
    let original = gate.config_text();

    // Good: client 2 admitted from now on.
    std::fs::write(
        &gate.config_path,
        original.replace(
            &format!("allow_subjects = [{}]", toml_str(dn::CLIENT1)),
            &format!(
                "allow_subjects = [{}, {}]",
                toml_str(dn::CLIENT1),
                toml_str(dn::CLIENT2)
            ),
        ),
    )
    .unwrap();
    assert_ne!(gate.config_text(), original, "the rule line was not found");
    let out = reload(&gate, &gate.config_path);
    assert!(out.status.success(), "{}\nlog:\n{}", out.all(), gate.log());
    assert!(
        out.all().contains("configuration reloaded"),
        "{}",
        out.all()
    );
    assert_eq!(gate.curl("/").cert(&pki.client2).run().status, 200);
    let reloads = gate.log().matches("configuration reloaded").count();
    assert_eq!(reloads, 1, "{}", gate.log());

    // Bad: printed as check prints it, nothing signalled.
    std::fs::write(&gate.config_path, format!("{original}\nbogus = 1\n")).unwrap();
    let out = reload(&gate, &gate.config_path);
    assert_eq!(out.status.code(), Some(1), "{}", out.all());
    assert!(out.all().contains("bogus"), "{}", out.all());
    assert!(out.all().contains("nothing was signalled"), "{}", out.all());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!gate.log().contains("reload failed"), "{}", gate.log());
    assert_eq!(gate.curl("/").cert(&pki.client2).run().status, 200);

    // Valid, but refused by the running process: its reason, exit 1.
    let moved = original.replace(
        &format!("127.0.0.1:{}", gate.port),
        &format!("127.0.0.1:{}", free_port()),
    );
    std::fs::write(&gate.config_path, moved).unwrap();
    let out = reload(&gate, &gate.config_path);
    assert_eq!(out.status.code(), Some(1), "{}", out.all());
    assert!(
        out.all().contains("listeners were added, removed or moved"),
        "{}",
        out.all()
    );
    // The configuration in force is still the good one.
    assert_eq!(gate.curl("/").cert(&pki.client2).run().status, 200);
}

/// Without a pid file `reload` says how to make it work; a stale one is reported.
#[test]
fn reload_without_a_running_process_fails() {
    let env = Env::new();
    let text = Config::new().render(free_port(), &[dead_addr()]);
    let path = env.write("certgate.toml", &text);
    let out = run_bounded(
        Command::new(certgate_bin())
            .arg("reload")
            .arg("--config")
            .arg(&path),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.all());
    assert!(
        out.all().contains("runtime.pid_file: not set"),
        "{}",
        out.all()
    );

    let text = with_pid_file().render(free_port(), &[dead_addr()]);
    let path = env.write("certgate.toml", &text);
    let out = run_bounded(
        Command::new(certgate_bin())
            .arg("reload")
            .arg("--config")
            .arg(&path),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.all());
    assert!(
        out.all().contains("cannot read the pid file"),
        "{}",
        out.all()
    );
}

/// Under load, ten reloads alternating two valid configurations, then a broken one: no request
/// fails, and the last valid configuration serves.
#[test]
fn reloads_under_load_lose_nothing() {
    let gate = Gate::start(with_pid_file().workers(2).allow_subjects(&[dn::CLIENT1]));
    let pki = gate.pki();
    let narrow = gate.config_text();
    let wide = narrow.replace(
        &format!("allow_subjects = [{}]", toml_str(dn::CLIENT1)),
        &format!(
            "allow_subjects = [{}, {}]",
            toml_str(dn::CLIENT1),
            toml_str(dn::CLIENT2)
        ),
    );
    assert_ne!(narrow, wide);
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    std::thread::scope(|s| {
        s.spawn(|| load(&gate, 4, &stop, &tally));
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..10 {
            let text = if i % 2 == 0 { &wide } else { &narrow };
            std::fs::write(&gate.config_path, text).unwrap();
            let out = reload(&gate, &gate.config_path);
            assert!(out.status.success(), "reload {i}: {}", out.all());
            let want = if i % 2 == 0 { 200 } else { 403 };
            assert_eq!(
                gate.curl("/").cert(&pki.client2).run().status,
                want,
                "after reload {i}"
            );
        }
        std::fs::write(&gate.config_path, format!("{wide}\n[[listener]]\n")).unwrap();
        // The broken file: signalled directly, as a plain SIGHUP would be.
        // SAFETY: kill(2) on the gate's own child.
        unsafe { libc::kill(gate.pid() as libc::pid_t, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!("reload under load: {ok} requests, {failed} failed");
    assert_eq!(failed, 0, "{ok} ok; log:\n{}", gate.log());
    assert!(ok > 100, "only {ok} requests under load");
    assert!(gate.log().contains("reload failed"), "{}", gate.log());
    // The last valid configuration (narrow, reload 9) still serves.
    assert_eq!(gate.curl("/").cert(&pki.client1).run().status, 200);
    assert_eq!(gate.curl("/").cert(&pki.client2).run().status, 403);
}
