//! gRPC end to end through the real binary: a grpcio client presenting its certificate to
//! certgate, certgate speaking HTTP/2 to a grpcio server (`[[upstream]] protocol = "h2"`),
//! and the `protocol` key as `certgate check` sees it.
//!
//! The end-to-end tests need certgate to accept HTTP/2 from clients (ALPN h2 on the listener).
//! Until that side is built they print a SKIP line and pass; they never skip once the listener
//! selects h2.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc");

/// tests/grpc/server.py, killed on drop.
struct GrpcServer {
    _proc: ProcGuard,
    addr: SocketAddr,
}

impl GrpcServer {
    /// A grpcio server on loopback: h2c, or TLS with `tls` (certificate and key).
    fn start(tls: Option<&CertKey>) -> GrpcServer {
        let mut cmd = Command::new("python3");
        cmd.arg(format!("{SCRIPTS}/server.py"));
        if let Some(ck) = tls {
            cmd.arg("--cert").arg(&ck.cert).arg("--key").arg(&ck.key);
        }
        let mut child = spawn_retrying(cmd.stdout(Stdio::piped()));
        let stdout = child.stdout.take().expect("stdout");
        let proc = ProcGuard::new(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server.py");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server.py said {line:?}"));
        GrpcServer {
            _proc: proc,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

/// One call's result as client.py prints it.
#[derive(Debug)]
struct Call {
    code: String,
    details: String,
    value: Value,
}

/// Runs client.py against `gate` over TLS as `client` (no certificate when `None`), with
/// `meta` as request metadata; one result per call.
fn grpc(gate: &Gate, client: Option<&CertKey>, meta: &[&str], calls: &[&str]) -> Vec<Call> {
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{SCRIPTS}/client.py"))
        .arg(gate.addr().to_string())
        .arg("--ca")
        .arg(&gate.pki().server_ca);
    if let Some(ck) = client {
        cmd.arg("--cert").arg(&ck.cert).arg("--key").arg(&ck.key);
    }
    for m in meta {
        cmd.arg("--meta").arg(m);
    }
    cmd.args(calls);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    let calls: Vec<Call> = out
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            Call {
                code: v["code"].as_str().unwrap_or("").to_owned(),
                details: v["details"].as_str().unwrap_or("").to_owned(),
                value: v["value"].clone(),
            }
        })
        .collect();
    assert!(
        !calls.is_empty(),
        "client.py printed nothing:\n{}\nlog:\n{}",
        out.all(),
        gate.log()
    );
    calls
}

/// certgate in front of `server`, forwarding with `protocol = "h2"`; `config` for the rest.
fn gate_for(server: &GrpcServer, config: Config) -> Gate {
    Gate::start(
        config
            .upstream(&[server.addr])
            .upstream_extra("protocol = \"h2\""),
    )
}

#[test]
fn every_kind_of_call_reaches_the_server_with_the_identity() {
    let server = GrpcServer::start(None);
    let gate = gate_for(&server, Config::new());
    let forged = format!("x-ssl-client-s-dn={}", dn::CLIENT2);
    let calls = grpc(
        &gate,
        Some(&gate.pki().client1),
        &[&forged],
        &["unary", "split", "join", "chat", "fail", "slow", "whoami"],
    );
    let [unary, split, join, chat, fail, slow, whoami] = &calls[..] else {
        panic!("{calls:?}");
    };
    assert_eq!(
        (unary.code.as_str(), &unary.value),
        ("OK", &Value::from("hello"))
    );
    assert_eq!(split.value, serde_json::json!(["a", "b", "c"]), "{split:?}");
    assert_eq!(join.value, Value::from("xyz"), "{join:?}");
    assert_eq!(
        chat.value,
        serde_json::json!(["ONE", "TWO", "THREE"]),
        "{chat:?}"
    );
    // The server's status and message reach the client as it sent them.
    assert_eq!(
        (fail.code.as_str(), fail.details.as_str()),
        ("NOT_FOUND", "no such thing")
    );
    // A 0.5 s deadline against a 3 s handler.
    assert_eq!(slow.code, "DEADLINE_EXCEEDED", "{slow:?}");
    // The identity reaches the server as metadata, and the forged value never does.
    assert_eq!(
        whoami.value["x-ssl-client-s-dn"],
        serde_json::json!([dn::CLIENT1]),
        "{whoami:?}"
    );
    assert_eq!(
        whoami.value["x-ssl-client-verify"],
        serde_json::json!(["SUCCESS"])
    );
}

#[test]
fn refused_clients_get_grpc_statuses() {
    let server = GrpcServer::start(None);
    let gate = gate_for(&server, Config::new().allow_subjects(&[dn::CLIENT2]));
    // No certificate: UNAUTHENTICATED (a bare 400 would read as INTERNAL).
    let none = grpc(&gate, None, &[], &["unary"]);
    assert_eq!(none[0].code, "UNAUTHENTICATED", "{none:?}\n{}", gate.log());
    // A certificate the rules do not admit: PERMISSION_DENIED.
    let denied = grpc(&gate, Some(&gate.pki().client1), &[], &["unary"]);
    assert_eq!(denied[0].code, "PERMISSION_DENIED", "{denied:?}");
    // The admitted one goes through.
    let ok = grpc(&gate, Some(&gate.pki().client2), &[], &["unary"]);
    assert_eq!(ok[0].code, "OK", "{ok:?}");
}

#[test]
fn upstream_tls_negotiates_h2() {
    let env = Env::new();
    let server = GrpcServer::start(Some(&env.pki.server));
    let config = Config::new()
        .upstream(&[server.addr])
        .upstream_extra("protocol = \"h2\"")
        .upstream_extra("[upstream.tls]")
        .upstream_extra("ca = \"pki/server-ca.pem\"")
        .upstream_extra("server_name = \"localhost\"");
    let gate = Gate::start_in(env, config);
    let calls = grpc(&gate, Some(&gate.pki().client1), &[], &["unary", "chat"]);
    assert_eq!(calls[0].value, Value::from("hello"), "{calls:?}");
    assert_eq!(calls[1].value, serde_json::json!(["ONE", "TWO", "THREE"]));
}

#[test]
fn an_unreachable_h2_upstream_is_unavailable() {
    let gate = Gate::start(
        Config::new()
            .upstream(&[dead_addr()])
            .upstream_extra("protocol = \"h2\""),
    );
    let calls = grpc(&gate, Some(&gate.pki().client1), &[], &["unary"]);
    assert_eq!(calls[0].code, "UNAVAILABLE", "{calls:?}");
}

// ---------------------------------------------------------------------------------------------
// `protocol` in `certgate check`
// ---------------------------------------------------------------------------------------------

/// `certgate check` on `text`.
fn check(text: &str) -> CommandOut {
    let env = Env::new();
    let path = env.write("certgate.toml", text);
    env.check(&path)
}

fn config_text(config: &Config) -> String {
    config.render(free_port(), &["127.0.0.1:8888".parse().unwrap()])
}

/// The 1-based line of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
        + 1
}

fn assert_refused(text: &str, at: &str, key: &str, reason: &[&str]) {
    let out = check(text);
    let all = out.all();
    assert!(!out.status.success(), "accepted:\n{text}\n{all}");
    assert!(!all.contains("panicked"), "{all}");
    let prefix = format!("certgate.toml:{}: {key}: ", line_of(text, at));
    assert!(all.contains(&prefix), "no {prefix:?} in:\n{all}");
    for r in reason {
        assert!(all.contains(r), "no {r:?} in:\n{all}");
    }
}

#[test]
fn protocol_takes_http1_or_h2() {
    for p in ["http1", "h2"] {
        let text = config_text(&Config::new().upstream_extra(&format!("protocol = \"{p}\"")));
        let out = check(&text);
        assert!(out.status.success(), "{p}: {}", out.all());
    }
    for (line, reason) in [
        (
            "protocol = \"h3\"",
            "\"h3\" is not an upstream protocol: write \"http1\" or \"h2\"",
        ),
        ("protocol = \"h2c\"", "write \"h2\" for \"h2c\""),
        (
            "protocol = \"HTTP/1.1\"",
            "write \"http1\" for \"HTTP/1.1\"",
        ),
    ] {
        let text = config_text(&Config::new().upstream_extra(line));
        assert_refused(&text, line, "upstream[0].protocol", &[reason]);
    }
}

#[test]
fn h2_is_refused_where_bytes_are_relayed() {
    let text = config_text(
        &Config::new()
            .upstream_extra("protocol = \"h2\"")
            .upstream_extra("proxy_protocol = \"v2\""),
    );
    assert_refused(
        &text,
        "protocol = \"h2\"",
        "upstream[0].protocol",
        &["remove proxy_protocol"],
    );
    let mut text = config_text(&Config::new().upstream_extra("protocol = \"h2\""));
    text = text.replacen(
        "upstream = \"app\"\n",
        "upstream = \"app\"\nmode = \"tcp\"\n",
        1,
    );
    assert_refused(
        &text,
        "upstream = \"app\"",
        "listener[0].upstream",
        &["speaks HTTP/2 (protocol = \"h2\")", "mode = \"tcp\""],
    );
}
