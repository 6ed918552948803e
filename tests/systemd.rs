//! systemd: the notify protocol (`Type=notify`) driven through a `NOTIFY_SOCKET` the test binds,
//! and the files of `dist/`: the example configuration passes `check`, the unit file verifies.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn dist(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(file)
}

/// The next notification, with up to `limit` to wait.
fn next(sock: &UnixDatagram, limit: Duration) -> String {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within {limit:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// READY=1 once the port accepts; RELOADING=1 with MONOTONIC_USEC then READY=1 around a
/// SIGHUP; STOPPING=1 on SIGTERM; exit 0.
#[test]
fn notify_protocol() {
    let env = Env::new();
    let notify = env.path("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let port = free_port();
    let config = env.write(
        "certgate.toml",
        Config::new().workers(2).render(port, &[dead_addr()]),
    );
    let log = std::fs::File::create(env.path("certgate.log")).unwrap();
    let child = Command::new(certgate_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut proc = ProcGuard::new(child);
    let log = || std::fs::read_to_string(env.path("certgate.log")).unwrap_or_default();

    let ready = next(&sock, Duration::from_secs(30));
    assert_eq!(ready.trim(), "READY=1", "log:\n{}", log());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok(),
        "READY=1 before the port accepts"
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(proc.id() as libc::pid_t, libc::SIGHUP) };
    let reloading = next(&sock, Duration::from_secs(10));
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines.first(), Some(&"RELOADING=1"), "{reloading:?}");
    let usec = lines
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC (systemd 253+ needs it): {reloading:?}"));
    let usec: u64 = usec.parse().expect("MONOTONIC_USEC is a number");
    // CLOCK_MONOTONIC, as systemd compares it: within a minute of ours.
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let ours = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    assert!(ours >= usec && ours - usec < 60_000_000, "{usec} vs {ours}");
    assert_eq!(next(&sock, Duration::from_secs(10)).trim(), "READY=1");

    // A reload that fails still ends with READY=1 (the old configuration serves).
    std::fs::write(&config, "[runtime]\nbogus = 1\n").unwrap();
    unsafe { libc::kill(proc.id() as libc::pid_t, libc::SIGHUP) };
    assert!(next(&sock, Duration::from_secs(10)).starts_with("RELOADING=1"));
    assert_eq!(next(&sock, Duration::from_secs(10)).trim(), "READY=1");

    unsafe { libc::kill(proc.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(next(&sock, Duration::from_secs(10)).trim(), "STOPPING=1");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = proc.try_wait() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status}; log:\n{}", log());
}

/// `dist/certgate.toml` passes `check` once the files it names exist.
#[test]
fn dist_example_configuration_passes_check() {
    let env = Env::new();
    let text = std::fs::read_to_string(dist("certgate.toml")).unwrap();
    let config = env.write("certgate.toml", &text);
    let pki = &env.pki;
    std::fs::create_dir_all(env.path("tls")).unwrap();
    for (rel, from) in [
        ("tls/server-chain.pem", &pki.server.cert),
        ("tls/server.key", &pki.server.key),
        ("tls/client-ca.pem", &pki.client_ca_bundle),
    ] {
        assert!(
            text.contains(rel),
            "dist/certgate.toml no longer names {rel}"
        );
        env.write(rel, std::fs::read(from).unwrap());
    }
    let out = env.check(&config);
    assert!(out.status.success(), "{}", out.all());
    assert!(!out.all().contains("warning"), "{}", out.all());
}

/// `dist/certgate.service` verifies with `systemd-analyze verify` (where it is installed): no
/// unknown key, no bad value; and it keeps what the README promises.
#[test]
fn dist_unit_file_verifies() {
    let unit = std::fs::read_to_string(dist("certgate.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/usr/local/bin/certgate reload --config /etc/certgate/certgate.toml",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=certgate",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line:?}");
    }
    assert!(unit.lines().any(|l| l.starts_with("LimitNOFILE=")));
    let verify = Command::new("systemd-analyze").arg("--version").output();
    if !verify.is_ok_and(|o| o.status.success()) {
        eprintln!("systemd-analyze not installed: unit file not verified");
        return;
    }
    let env = Env::new();
    let path = env.write(
        "certgate.service",
        unit.replace(
            "/usr/local/bin/certgate",
            &certgate_bin().display().to_string(),
        ),
    );
    let out = run_bounded(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", out.all());
    assert_eq!(out.all().trim(), "", "systemd-analyze verify complained");
}
