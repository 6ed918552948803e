//! The admin endpoint as an operator's scraper and load balancer see it: `/metrics` parses with
//! the Prometheus project's own OpenMetrics parser (Python `prometheus_client`) and its counters
//! move as expected after known requests and refusals; `/healthz` and `/ready` answer.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Parses an exposition with `prometheus_client.openmetrics.parser` and prints one sample a line:
/// `name{k="v",...} value`, labels sorted. Exits non-zero when the text does not parse.
const PARSER: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, float(s.value)))
"#;

/// Samples of a scrape, by `name{labels}`.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PARSER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (with `pip install prometheus-client`) is needed by this test");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the exposition does not parse (or prometheus_client is missing: \
             `pip install prometheus-client`): {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut samples = BTreeMap::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let (k, v) = line.rsplit_once(' ').unwrap();
            samples.insert(k.to_owned(), v.parse::<f64>().unwrap());
        }
        Scrape(samples)
    }

    fn get(&self, key: &str) -> f64 {
        match self.0.get(key) {
            Some(v) => *v,
            None => panic!(
                "no sample {key}; samples:\n{}",
                self.0.keys().cloned().collect::<Vec<_>>().join("\n")
            ),
        }
    }
}

/// A GET on the admin endpoint: status and body.
fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("admin connect");
    c.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn admin_config(config: Config) -> (Config, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (
        config.file_extra(&format!("\n[admin]\nlisten = \"{addr}\"")),
        addr,
    )
}

/// Waits (bounded) until `/ready` answers 200.
fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = c.set_read_timeout(Some(READ_TIMEOUT));
            let _ = c.write_all(b"GET /ready HTTP/1.1\r\n\r\n");
            let mut out = String::new();
            let _ = c.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "/ready never answered 200");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const L: &str = "listener=\"public\"";

/// A scrape once the start-up probes (connections that close without a byte, at least one)
/// were all accepted and closed.
fn settled_probes(admin: SocketAddr) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin_get(admin, "/metrics");
        assert_eq!(status, 200, "{body}");
        let s = Scrape::parse(&body);
        let closed = s.get(&format!(
            "certgate_tls_handshake_failures_total{{{L},reason=\"closed\"}}"
        ));
        let accepted = s.get(&format!("certgate_connections_accepted_total{{{L}}}"));
        let active = s.get(&format!("certgate_connections_active{{{L}}}"));
        if (accepted >= 1.0 && closed == accepted && active == 0.0) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scrape once no connection is open and at least `closed` handshakes ended with the client
/// closing (the counters are the workers' own: the last ones land as connections end).
fn settled(admin: SocketAddr, closed: f64) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin_get(admin, "/metrics");
        assert_eq!(status, 200, "{body}");
        let s = Scrape::parse(&body);
        let c = s.get(&format!(
            "certgate_tls_handshake_failures_total{{{L},reason=\"closed\"}}"
        ));
        let active = s.get(&format!("certgate_connections_active{{{L}}}"));
        if (c >= closed && active == 0.0) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn health_and_ready_answer_and_unknown_paths_are_404() {
    let (config, admin) = admin_config(Config::new().workers(2));
    let _gate = Gate::start(config);
    wait_ready(admin);
    assert_eq!(admin_get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(admin_get(admin, "/ready").0, 200);
    assert_eq!(admin_get(admin, "/nope").0, 404);
}

#[test]
fn counters_move_after_known_requests_and_refusals() {
    let (config, admin) = admin_config(
        Config::new()
            .workers(2)
            .allow_subjects(&["CN=client.1.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI"]),
    );
    let gate = Gate::start(config);
    wait_ready(admin);
    // The harness's own probe connections: counted, then left out by taking differences, once
    // each has been accepted and seen closing (the kernel may hold one in the accept queue a
    // moment after the port answered).
    let before = settled_probes(admin);
    let closed_before = before.get(&format!(
        "certgate_tls_handshake_failures_total{{{L},reason=\"closed\"}}"
    ));
    let accepted_before = before.get(&format!("certgate_connections_accepted_total{{{L}}}"));
    let pki = gate.pki();
    for _ in 0..3 {
        assert_eq!(gate.curl("/").cert(&pki.client1).run().status, 200);
    }
    assert_eq!(gate.curl("/").run().status, 400, "no certificate");
    assert_eq!(gate.curl("/").cert(&pki.rogue).run().status, 400, "rogue");
    assert_eq!(
        gate.curl("/").cert(&pki.client2).run().status,
        403,
        "client2"
    );
    // A TCP connection that closes without a handshake: a failed handshake, reason "closed".
    drop(TcpStream::connect(gate.addr()).unwrap());

    let echo = gate.echo().addr();
    let up = format!("server=\"{echo}\",upstream=\"app\"");
    let l = L;
    let s = settled(admin, closed_before + 1.0);
    assert_eq!(
        s.get(&format!("certgate_connections_accepted_total{{{l}}}")) - accepted_before,
        7.0
    );
    assert_eq!(s.get(&format!("certgate_connections_active{{{l}}}")), 0.0);
    let handshakes: f64 = ["full", "resumed"]
        .iter()
        .flat_map(|r| ["TLSv1.2", "TLSv1.3"].map(|v| (*r, v)))
        .map(|(r, v)| {
            s.get(&format!(
                "certgate_tls_handshakes_total{{{l},result=\"{r}\",version=\"{v}\"}}"
            ))
        })
        .sum();
    assert_eq!(handshakes, 6.0);
    for (outcome, n) in [
        ("admitted", 3.0),
        ("no_certificate", 1.0),
        ("certificate_error", 1.0),
        ("forbidden_subject", 1.0),
        ("forbidden_san", 0.0),
    ] {
        assert_eq!(
            s.get(&format!(
                "certgate_client_auth_total{{{l},outcome=\"{outcome}\"}}"
            )),
            n,
            "{outcome}"
        );
    }
    assert_eq!(
        s.get(&format!("certgate_requests_total{{class=\"2xx\",{l}}}")),
        3.0
    );
    assert_eq!(
        s.get(&format!("certgate_requests_total{{class=\"4xx\",{l}}}")),
        3.0
    );
    assert_eq!(
        s.get(&format!("certgate_request_duration_seconds_count{{{l}}}")),
        6.0
    );
    assert_eq!(
        s.get(&format!(
            "certgate_tls_handshake_duration_seconds_count{{{l}}}"
        )),
        6.0
    );
    assert_eq!(
        s.get(&format!("certgate_upstream_requests_total{{{up}}}")),
        3.0
    );
    assert_eq!(
        s.get(&format!("certgate_upstream_connect_failures_total{{{up}}}")),
        0.0
    );
    assert_eq!(s.get(&format!("certgate_upstream_server_up{{{up}}}")), 1.0);
    // client1's chain verifies once, then hits twice; the rogue and client2 chains miss.
    assert_eq!(
        s.get("certgate_verify_cache_lookups_total{result=\"hit\"}"),
        2.0
    );
    assert_eq!(
        s.get("certgate_verify_cache_lookups_total{result=\"miss\"}"),
        3.0
    );
    // The server certificate's notAfter: in the future, within the test PKI's lifetime.
    let not_after = s.get(&format!(
        "certgate_server_certificate_not_after_seconds{{{l}}}"
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(not_after > now, "{not_after} <= {now}");
    // No label holds a DN, a path or a peer address.
    for key in s.0.keys() {
        assert!(
            !key.contains("CN=") && !key.contains("127.0.0.1:") || key.contains(&up),
            "unbounded label: {key}"
        );
    }
}

#[test]
fn connect_failures_and_retries_are_counted_by_server() {
    let dead = dead_addr();
    let (config, admin) = admin_config(Config::new().upstream(&[dead]));
    let gate = Gate::start(config);
    wait_ready(admin);
    assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 502);
    let (_, body) = admin_get(admin, "/metrics");
    let s = Scrape::parse(&body);
    let up = format!("server=\"{dead}\",upstream=\"app\"");
    assert_eq!(
        s.get(&format!("certgate_upstream_requests_total{{{up}}}")),
        1.0
    );
    assert_eq!(
        s.get(&format!("certgate_upstream_connect_failures_total{{{up}}}")),
        1.0
    );
    assert_eq!(
        s.get("certgate_requests_total{class=\"5xx\",listener=\"public\"}"),
        1.0
    );
}

#[test]
fn a_public_admin_address_is_warned_about() {
    let env = Env::new();
    let port = free_port();
    let text = Config::new()
        .file_extra(&format!("\n[admin]\nlisten = \"0.0.0.0:{}\"", free_port()))
        .render(port, &[dead_addr()]);
    let path = env.write("certgate.toml", text);
    let out = env.check(&path);
    assert!(out.status.success(), "{}", out.all());
    assert!(
        out.all().contains("admin.listen") && out.all().contains("not a loopback address"),
        "{}",
        out.all()
    );
    let text = Config::new()
        .file_extra("\n[admin]\nlisten = \"nowhere\"")
        .render(port, &[dead_addr()]);
    let path = env.write("bad.toml", text);
    let out = env.check(&path);
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.all().contains(":admin.listen:") || out.all().contains(": admin.listen:"),
        "{}",
        out.all()
    );
}

#[test]
fn an_admin_address_in_use_stops_the_start() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = Config::new()
        .file_extra(&format!("\n[admin]\nlisten = \"{addr}\""))
        .render(free_port(), &[dead_addr()]);
    let path = env.write("certgate.toml", text);
    let out = run_bounded(
        Command::new(certgate_bin())
            .arg("run")
            .arg("--config")
            .arg(&path),
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "{}", out.all());
    assert!(
        out.all()
            .contains(&format!("[admin] listen = \"{addr}\": cannot listen")),
        "{}",
        out.all()
    );
}
