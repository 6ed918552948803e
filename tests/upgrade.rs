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

/// Starts `config` (which has `with_pid_file`) and waits, as an operator waits for READY, until
/// the pid file and the control socket are there: the port accepts a moment before them.
fn start(config: Config) -> Gate {
    let gate = Gate::start(config);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(gate.env.path("certgate.pid").exists() && gate.env.path("certgate.pid.sock").exists()) {
        assert!(
            Instant::now() < deadline,
            "no pid file or control socket:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gate
}

/// Requests answered, failed, retried and reset under [`load`].
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Requests sent again on a new connection because a kept-alive one was found closed before
    /// any answer (as every HTTP client does for an idempotent request).
    retried: AtomicU64,
    /// Connections reset (ECONNRESET) instead of closed.
    reset: AtomicU64,
}

fn is_reset(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ConnectionReset
        || e.to_string().to_lowercase().contains("reset")
}

/// Bounded load until `stop` (or 60 s): `threads` clients, each sending keep-alive requests as
/// `client1` and opening a new connection every fourth request. A failure is a connect error,
/// an error on a new connection, or a status other than 200; a kept-alive connection closed
/// before the request was answered is retried once on a new one.
fn load(gate: &Gate, threads: usize, stop: &AtomicBool, tally: &Tally) {
    let pki = gate.pki();
    let until = Instant::now() + Duration::from_secs(60);
    let connect = || match gate.try_connect(Some(&pki.client1)) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("load: connect: {e}");
            tally.failed.fetch_add(1, Ordering::Relaxed);
            if e.to_lowercase().contains("reset") {
                tally.reset.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
    };
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    let Some(mut c) = connect() else { continue };
                    for i in 0..4 {
                        n += 1;
                        let path = format!("/load/{t}/{n}");
                        let req = get(&gate.host(), &path, &[]);
                        let mut r = c.send(&req).and_then(|()| c.response(false));
                        if let Err(e) = &r {
                            if is_reset(e) {
                                eprintln!("load: {path}: {e}");
                                tally.reset.fetch_add(1, Ordering::Relaxed);
                            }
                            if i > 0 {
                                tally.retried.fetch_add(1, Ordering::Relaxed);
                                let Some(fresh) = connect() else { break };
                                c = fresh;
                                r = c.send(&req).and_then(|()| c.response(false));
                            }
                        }
                        match r {
                            Ok(r) if r.status == 200 => {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                                if r.header("connection") == Some("close") {
                                    break;
                                }
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
    let gate = start(with_pid_file().allow_subjects(&[dn::CLIENT1]));
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
    let gate = start(with_pid_file().workers(2).allow_subjects(&[dn::CLIENT1]));
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
    let retried = tally.retried.load(Ordering::Relaxed);
    eprintln!("reload under load: {ok} requests, {failed} failed, {retried} retried");
    assert_eq!(failed, 0, "{ok} ok; log:\n{}", gate.log());
    // A reload closes no connection: nothing needed a retry.
    assert_eq!(retried, 0, "{ok} ok; log:\n{}", gate.log());
    assert_eq!(tally.reset.load(Ordering::Relaxed), 0);
    assert!(ok > 100, "only {ok} requests under load");
    assert!(gate.log().contains("reload failed"), "{}", gate.log());
    // The last valid configuration (narrow, reload 9) still serves.
    assert_eq!(gate.curl("/").cert(&pki.client1).run().status, 200);
    assert_eq!(gate.curl("/").cert(&pki.client2).run().status, 403);
}

/// `certgate run --upgrade` under load: the new process (with another worker count) takes the
/// listening sockets over, the old one drains and exits 0; no request fails, no connection is
/// reset, and the new process serves on.
#[test]
fn upgrade_under_load_loses_nothing() {
    for workers in [3, 1] {
        let mut gate = start(with_pid_file().workers(2));
        let next = gate.env.write(
            &format!("next-{workers}.toml"),
            gate.config_text()
                .replace("workers = 2", &format!("workers = {workers}")),
        );
        let log_path = gate.env.path(&format!("next-{workers}.log"));
        let stop = AtomicBool::new(false);
        let tally = Tally::default();
        let mut next_proc = None;
        let old_pid = gate.pid();
        let mut old_gone = false;
        std::thread::scope(|s| {
            s.spawn(|| load(&gate, 4, &stop, &tally));
            std::thread::sleep(Duration::from_millis(500));
            let before = tally.ok.load(Ordering::Relaxed);
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(certgate_bin())
                .args(["run", "--upgrade", "--config"])
                .arg(&next)
                .current_dir(gate.env.dir.path())
                .env("RUST_LOG", "debug")
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            next_proc = Some(ProcGuard::new(child));
            let deadline = Instant::now() + Duration::from_secs(30);
            while !old_gone && Instant::now() < deadline {
                old_gone = exited(old_pid);
                std::thread::sleep(Duration::from_millis(20));
            }
            // Load on the new process alone for a while.
            std::thread::sleep(Duration::from_millis(700));
            stop.store(true, Ordering::Relaxed);
            assert!(tally.ok.load(Ordering::Relaxed) > before, "no progress");
        });
        let next_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(
            old_gone,
            "the old process did not exit; its log:\n{}\nthe new one's:\n{next_log}",
            gate.log()
        );
        let (status, _) = gate.terminate(Duration::from_secs(1)).unwrap();
        assert!(status.success(), "old exit {status}; log:\n{}", gate.log());
        let ok = tally.ok.load(Ordering::Relaxed);
        let failed = tally.failed.load(Ordering::Relaxed);
        let retried = tally.retried.load(Ordering::Relaxed);
        let reset = tally.reset.load(Ordering::Relaxed);
        eprintln!(
            "upgrade 2 -> {workers} workers under load: {ok} requests, {failed} failed, \
             {reset} reset, {retried} retried on a new connection"
        );
        assert_eq!(failed, 0, "old log:\n{}\nnew log:\n{next_log}", gate.log());
        assert_eq!(reset, 0, "old log:\n{}\nnew log:\n{next_log}", gate.log());
        let mut next_proc = next_proc.unwrap();
        assert!(
            next_proc.try_wait().is_none(),
            "new process died:\n{next_log}"
        );
        // The new process serves, and holds the pid file.
        assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
        let pid: u32 = std::fs::read_to_string(gate.env.path("certgate.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, next_proc.id());
        let (status, in_time) = next_proc.terminate(Duration::from_secs(10)).unwrap();
        assert!(status.success() && in_time, "{status}");
    }
}

/// Whether process `pid` (a child not reaped yet) has exited.
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
}

/// `run --upgrade` with nothing running fails and says why.
#[test]
fn upgrade_without_a_running_process_fails() {
    let env = Env::new();
    let path = env.write(
        "certgate.toml",
        with_pid_file().render(free_port(), &[dead_addr()]),
    );
    let out = run_bounded(
        Command::new(certgate_bin())
            .args(["run", "--upgrade", "--config"])
            .arg(&path),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.all());
    assert!(
        out.all().contains("cannot reach the running process"),
        "{}",
        out.all()
    );
}

/// A new process that fails after taking the sockets (here: a new listener's address is in
/// use) exits 1, and the old one serves on, then still stops cleanly.
#[test]
fn failed_upgrade_leaves_the_old_process_serving() {
    let mut gate = start(with_pid_file());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = format!(
        "\n[[listener]]\nname = \"second\"\nlisten = \"{}\"\nupstream = \"app\"\n\n\
         [listener.tls]\ncertificate = \"pki/server-chain.pem\"\nprivate_key = \"pki/server.key\"\n",
        taken.local_addr().unwrap()
    );
    let text = gate.config_text();
    let at = text.find("\n[[upstream]]").unwrap();
    let next = gate.env.write(
        "next.toml",
        format!("{}{extra}{}", &text[..at], &text[at..]),
    );
    let out = run_bounded(
        Command::new(certgate_bin())
            .args(["run", "--upgrade", "--config"])
            .arg(&next)
            .current_dir(gate.env.dir.path()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.all());
    assert!(out.all().contains("address in use"), "{}", out.all());
    for _ in 0..5 {
        assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
    }
    gate.assert_alive();
    assert!(gate.log().contains("upgrade abandoned"), "{}", gate.log());
    let (status, in_time) = gate.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        status.success() && in_time,
        "{status}; log:\n{}",
        gate.log()
    );
}
