//! Stopping without losing a request: SIGTERM, SIGQUIT and SIGINT drain (the listeners close at
//! once, requests in flight finish with `Connection: close`, idle keep-alive connections
//! close), `[runtime] shutdown_timeout` bounds the drain, and a second SIGTERM stops at once.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn signal(gate: &Gate, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of the gate's own unreaped child.
    unsafe {
        libc::kill(gate.pid() as libc::pid_t, sig);
    }
}

/// Waits up to `limit` for the gate's process to exit; its status and how long it took.
fn exit_within(gate: &mut Gate, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some((status, _)) = gate.terminate_if_exited() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "certgate still runs {limit:?} after the signal; log:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

trait Exited {
    fn terminate_if_exited(&mut self) -> Option<(std::process::ExitStatus, bool)>;
}

impl Exited for Gate {
    fn terminate_if_exited(&mut self) -> Option<(std::process::ExitStatus, bool)> {
        // `terminate` returns at once, without a signal, when the process already exited.
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .filter(|stat| stat.split_whitespace().nth(2) != Some("Z"))
            .map_or_else(|| self.terminate(Duration::from_secs(1)), |_| None)
    }
}

/// The bug this fixes: a SIGTERM during a 3 s upstream response gave the client an empty reply.
/// Now the response arrives whole, says `Connection: close`, an idle keep-alive connection is
/// closed at once, nothing new is accepted, and the process exits 0 once the response is done.
#[test]
fn sigterm_lets_the_response_in_flight_finish() {
    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGINT, "SIGINT"),
    ] {
        let mut gate = Gate::start(Config::new().workers(2));
        let pki = gate.pki();
        let mut idle = gate.connect(Some(&pki.client1));
        assert_eq!(
            idle.roundtrip(&get(&gate.host(), "/first", &[])).status,
            200
        );
        let mut slow = gate.connect(Some(&pki.client1));
        slow.send_all(&get(&gate.host(), "/slow/3000", &[]));
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        signal(&gate, sig);

        // The idle keep-alive connection is closed, well before the slow response ends.
        idle.closes_within(Duration::from_millis(1500))
            .unwrap_or_else(|e| panic!("{name}: idle keep-alive connection: {e}"));
        assert!(started.elapsed() < Duration::from_millis(2000), "{name}");
        // New connections are refused.
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            gate.try_connect(Some(&pki.client1)).is_err(),
            "{name}: a new connection was accepted during the drain"
        );

        let r = slow
            .response(false)
            .unwrap_or_else(|e| panic!("{name}: the response in flight was lost: {e}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.seen().str("path"), "/slow/3000", "{name}");
        assert_eq!(r.header("connection"), Some("close"), "{name}");
        slow.closes_within(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{name}: after the last response: {e}"));

        let (status, took) = exit_within(&mut gate, Duration::from_secs(10));
        assert!(
            status.success(),
            "{name}: exit {status}; log:\n{}",
            gate.log()
        );
        assert!(
            took < Duration::from_secs(3),
            "{name}: exit {took:?} after the last connection closed"
        );
        assert!(!gate.log().contains("panicked"), "{}", gate.log());
    }
}

/// Every response in flight finishes, each with `Connection: close`, however long the others
/// take.
#[test]
fn every_response_in_flight_finishes_with_close() {
    let mut gate = Gate::start(Config::new());
    let pki = gate.pki();
    let mut slow = gate.connect(Some(&pki.client1));
    slow.send_all(&get(&gate.host(), "/slow/2000", &[]));
    let mut busy = gate.connect(Some(&pki.client1));
    busy.send_all(&get(&gate.host(), "/slow/1000", &[]));
    // Connected, nothing sent yet: one sends its request just after the signal, one never.
    let mut late = gate.connect(Some(&pki.client1));
    let mut silent = gate.connect(Some(&pki.client1));
    std::thread::sleep(Duration::from_millis(300));
    signal(&gate, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let r = late.roundtrip(&get(&gate.host(), "/late", &[]));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    silent
        .closes_within(Duration::from_millis(1800))
        .expect("a connection that sends nothing is closed after the grace");
    let r = busy.response(false).expect("response in flight");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let r = slow.response(false).expect("response in flight");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let (status, _) = exit_within(&mut gate, Duration::from_secs(10));
    assert!(status.success(), "exit {status}; log:\n{}", gate.log());
}

/// `[runtime] shutdown_timeout` bounds the drain: what is still open then is closed, exit 0.
#[test]
fn shutdown_timeout_bounds_the_drain() {
    let mut gate = Gate::start(Config::new().runtime_extra("shutdown_timeout = \"1s\""));
    let pki = gate.pki();
    let mut slow = gate.connect(Some(&pki.client1));
    slow.send_all(&get(&gate.host(), "/slow/20000", &[]));
    std::thread::sleep(Duration::from_millis(300));
    signal(&gate, libc::SIGTERM);
    let (status, took) = exit_within(&mut gate, Duration::from_secs(8));
    assert!(status.success(), "exit {status}; log:\n{}", gate.log());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "exited after {took:?} with shutdown_timeout = 1s"
    );
    assert!(slow.response(false).is_err(), "the 20 s response completed");
    assert!(
        gate.log().contains("shutdown_timeout"),
        "the log does not say why connections were closed:\n{}",
        gate.log()
    );
}

/// A second SIGTERM (or SIGINT) during the drain stops at once.
#[test]
fn second_signal_stops_at_once() {
    for second in [libc::SIGTERM, libc::SIGINT] {
        let mut gate = Gate::start(Config::new());
        let pki = gate.pki();
        let mut slow = gate.connect(Some(&pki.client1));
        slow.send_all(&get(&gate.host(), "/slow/20000", &[]));
        std::thread::sleep(Duration::from_millis(300));
        signal(&gate, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            gate.terminate_if_exited().is_none(),
            "exited on the first signal"
        );
        signal(&gate, second);
        let (status, took) = exit_within(&mut gate, Duration::from_secs(5));
        assert!(status.success(), "exit {status}; log:\n{}", gate.log());
        assert!(
            took < Duration::from_secs(2),
            "{took:?} after the second signal"
        );
    }
}

/// `shutdown_timeout` is checked as the other timeouts are.
#[test]
fn shutdown_timeout_is_validated() {
    let env = Env::new();
    let text = Config::new()
        .runtime_extra("shutdown_timeout = \"0s\"")
        .render(free_port(), &[dead_addr()]);
    let path = env.write("bad.toml", text);
    let out = env.check(&path);
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.all()
            .contains("runtime.shutdown_timeout: must be longer than 0"),
        "{}",
        out.all()
    );
}

/// A TCP-mode relay goes on during the drain until `shutdown_timeout`, then is closed; exit 0.
#[test]
fn tcp_relay_gets_the_deadline() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    // A byte echo as the upstream.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in backend.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let env = Env::new();
    let port = free_port();
    let text = format!(
        "[runtime]\nworkers = 1\nio = {io}\nshutdown_timeout = \"1500ms\"\n\n[[listener]]\n\
         name = \"tcp\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"backend\"\nmode = \"tcp\"\n\n\
         [listener.tls]\ncertificate = \"pki/server-chain.pem\"\nprivate_key = \"pki/server.key\"\n\n\
         [listener.client_auth]\nmode = \"required\"\nca = \"pki/client-ca-bundle.pem\"\n\
         verify_depth = 2\n\n[[upstream]]\nname = \"backend\"\nservers = [\"{backend_addr}\"]\n",
        io = toml_str(&io_driver())
    );
    let config = env.write("certgate.toml", text);
    let log = std::fs::File::create(env.path("certgate.log")).unwrap();
    let child = Command::new(certgate_bin())
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut proc = ProcGuard::new(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        match TlsClient::connect(addr, &env.pki.server_ca, Some(&env.pki.client1)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no listener: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    client.send_all(b"ping");
    assert_eq!(client.read_n(4).unwrap(), b"ping");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(proc.id() as libc::pid_t, libc::SIGTERM) };
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    client.send_all(b"pong");
    assert_eq!(
        client
            .read_n(4)
            .expect("the relay stopped before the deadline"),
        b"pong"
    );
    client
        .closes_within(Duration::from_secs(4))
        .expect("the relay is closed at shutdown_timeout");
    let closed = signalled.elapsed();
    assert!(
        closed >= Duration::from_millis(1300),
        "closed after {closed:?}, before shutdown_timeout"
    );
    let (status, in_time) = proc.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success() && in_time, "{status}");
}
