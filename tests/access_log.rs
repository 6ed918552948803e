//! The access log as an operator's tools read it: `[log] access` to a file (reopened on
//! SIGUSR1, as logrotate needs) or off, `access_format` logfmt or JSON, one line per request
//! with the documented fields, and no field a client can forge, in either format.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::logfmt::*;
use common::*;
use serde_json::Value;

/// A client certificate whose CN tries to forge fields and lines.
const FORGED_CN: &str = "mallory\" status=200 verify=SUCCESS\nforged=yes status=200";

/// The subject DN of that certificate as logged: RFC 2253, whose own escaping (`\"`, `\0A`)
/// the log's quoting then wraps.
fn forged_dn() -> String {
    format!(
        "CN={}",
        FORGED_CN.replace('"', "\\\"").replace('\n', "\\0A")
    )
}

/// The file's lines, waiting (bounded) until there are `n`.
fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} lines in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gate_with_log(env: Env, format: &str) -> Gate {
    Gate::start_in(
        env,
        Config::new().file_extra(&format!(
            "\n[log]\naccess = \"access.log\"\naccess_format = \"{format}\""
        )),
    )
}

#[test]
fn json_lines_keep_a_forged_common_name_in_its_field() {
    let env = Env::new();
    let mallory = self_signed(&env, "mallory", FORGED_CN);
    let gate = gate_with_log(env, "json");
    let path = gate.env.path("access.log");
    assert_eq!(gate.curl("/").cert(&mallory).run().status, 400);
    let body = vec![b'x'; 1000];
    let ok = gate
        .curl("/x?y=1")
        .cert(&gate.pki().client1)
        .body(&body)
        .arg("--http1.1")
        .run();
    assert_eq!(ok.status, 200);
    let lines = lines(&path, 2);
    assert_eq!(lines.len(), 2, "one line per request: {lines:#?}");
    let refused: Value = serde_json::from_str(&lines[0]).expect("a JSON object per line");
    assert_eq!(refused["status"], 400, "{}", lines[0]);
    assert_eq!(refused["dn"], forged_dn(), "{}", lines[0]);
    assert!(refused.get("forged").is_none(), "{}", lines[0]);
    assert!(
        refused["verify"].as_str().unwrap().starts_with("FAILED:"),
        "{}",
        lines[0]
    );

    let ok: Value = serde_json::from_str(&lines[1]).unwrap();
    let pki = gate.pki();
    assert_eq!(ok["event"], "request");
    assert_eq!(ok["listener"], "public");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["path"], "/x?y=1");
    assert_eq!(ok["http"], "HTTP/1.1");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["verify"], "SUCCESS");
    assert_eq!(ok["dn"], dn::CLIENT1);
    assert_eq!(ok["issuer"], dn::INTERMEDIATE1);
    assert_eq!(ok["serial"], serial(&pki.client1.cert));
    assert_eq!(ok["fingerprint"], fingerprint(&pki.client1.cert));
    assert_eq!(ok["upstream"], gate.echo().addr().to_string());
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["resumed"], false);
    assert!(ok["tls"].as_str().unwrap().starts_with("TLSv1."), "{ok}");
    assert!(ok["cipher"].as_str().is_some_and(|c| !c.is_empty()), "{ok}");
    assert!(
        ok["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{ok}"
    );
    assert!(ok["time"].as_str().unwrap().ends_with('Z'), "{ok}");
    let received = ok["bytes_received"].as_u64().unwrap();
    assert!(received > 1000, "the head and the 1000-byte body: {ok}");
    assert!(ok["bytes_sent"].as_u64().unwrap() > 0, "{ok}");
    assert!(
        refused["bytes_sent"].as_u64().unwrap() > 100,
        "the 400 page: {refused}"
    );
    for d in ["handshake_ms", "connect_ms", "upstream_ms", "total_ms"] {
        assert!(ok[d].as_f64().is_some(), "{d}: {ok}");
    }
}

#[test]
fn logfmt_lines_keep_a_forged_common_name_in_its_field() {
    let env = Env::new();
    let mallory = self_signed(&env, "mallory", FORGED_CN);
    let gate = gate_with_log(env, "logfmt");
    let path = gate.env.path("access.log");
    assert_eq!(gate.curl("/").cert(&mallory).run().status, 400);
    let lines = lines(&path, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let fields = logfmt(&lines[0]);
    assert_eq!(values(&fields, "status"), ["400"], "{}", lines[0]);
    assert_eq!(values(&fields, "event"), ["request"], "{}", lines[0]);
    assert!(!has_key(&fields, "forged"), "{}", lines[0]);
    assert_eq!(values(&fields, "dn"), [forged_dn()], "{}", lines[0]);
    let verify = values(&fields, "verify");
    assert!(
        verify.len() == 1 && verify[0].starts_with("FAILED:"),
        "{}",
        lines[0]
    );
}

#[test]
fn off_writes_no_access_line_and_false_is_its_alias() {
    for off in ["\"off\"", "false"] {
        let gate = Gate::start(Config::new().file_extra(&format!("\n[log]\naccess = {off}")));
        assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
        std::thread::sleep(Duration::from_millis(200));
        let log = gate.log();
        assert!(!log.contains("certgate::access"), "{off}:\n{log}");
    }
    // `true` is "stderr": the line is in the process's log.
    let gate = Gate::start(Config::new().file_extra("\n[log]\naccess = true"));
    assert_eq!(gate.curl("/").cert(&gate.pki().client1).run().status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gate.log().contains("certgate::access") {
        assert!(Instant::now() < deadline, "{}", gate.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigusr1_reopens_the_file_after_logrotate_moved_it() {
    let gate = gate_with_log(Env::new(), "logfmt");
    let path = gate.env.path("access.log");
    let rotated = gate.env.path("access.log.1");
    let client1 = &gate.pki().client1;
    assert_eq!(gate.curl("/first").cert(client1).run().status, 200);
    lines(&path, 1);
    std::fs::rename(&path, &rotated).unwrap();
    // SAFETY: signalling the child process this test started.
    assert_eq!(unsafe { libc::kill(gate.pid() as i32, libc::SIGUSR1) }, 0);
    // The reopen happens at the next line; the signal thread may take a moment to see it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while !path.exists() {
        assert!(Instant::now() < deadline, "access.log was not reopened");
        n += 1;
        assert_eq!(
            gate.curl(&format!("/second{n}")).cert(client1).run().status,
            200
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let new = lines(&path, 1);
    assert!(new.iter().all(|l| l.contains("/second")), "{new:#?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("path=\"/first\""), "{old}");
    assert!(gate.log().contains("certgate started"));
}

#[test]
fn bad_access_settings_are_config_errors() {
    let env = Env::new();
    let text = Config::new()
        .file_extra("\n[log]\naccess_format = \"xml\"")
        .render(free_port(), &[dead_addr()]);
    let out = env.check(&env.write("a.toml", text));
    assert!(!out.status.success());
    assert!(
        out.all()
            .contains("log.access_format: \"xml\" is not a format"),
        "{}",
        out.all()
    );
    let text = Config::new()
        .file_extra("\n[log]\naccess = \"nodir/x/access.log\"")
        .render(free_port(), &[dead_addr()]);
    let out = env.check(&env.write("b.toml", text));
    assert!(!out.status.success());
    assert!(
        out.all().contains("log.access: cannot open"),
        "{}",
        out.all()
    );
}

#[test]
fn a_valid_request_id_is_kept_else_one_is_generated_and_sent_upstream() {
    let gate = gate_with_log(Env::new(), "json");
    let path = gate.env.path("access.log");
    let client1 = &gate.pki().client1;
    let cases = [
        Some("abc-123_x.y"),
        None,
        Some("not valid \"x\" status=200"),
    ];
    for (i, sent) in cases.iter().enumerate() {
        let mut curl = gate.curl("/").cert(client1);
        if let Some(v) = sent {
            curl = curl.header(&format!("X-Request-Id: {v}"));
        }
        let out = curl.run();
        assert_eq!(out.status, 200, "{out:?}");
        let upstream = out.seen().all("x-request-id");
        assert_eq!(upstream.len(), 1, "one id upstream: {upstream:?}");
        let line: Value = serde_json::from_str(&lines(&path, i + 1)[i]).unwrap();
        assert_eq!(line["request_id"], upstream[0], "{line}");
        match sent {
            Some(v) if i == 0 => assert_eq!(upstream[0], *v),
            _ => assert!(
                upstream[0].len() == 32 && upstream[0].bytes().all(|b| b.is_ascii_hexdigit()),
                "generated: {upstream:?}"
            ),
        }
    }
}

#[test]
fn a_connection_refused_in_the_handshake_gets_a_line() {
    let env = Env::new();
    let mallory = self_signed(&env, "mallory", FORGED_CN);
    let gate = Gate::start_in(
        env,
        Config::new()
            .reject("handshake")
            .file_extra("\n[log]\naccess = \"access.log\"\naccess_format = \"json\""),
    );
    let path = gate.env.path("access.log");
    let out = gate.curl("/").cert(&mallory).run();
    assert_ne!(out.status, 200, "{out:?}");
    let lines = lines(&path, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["event"], "tls handshake failed", "{line}");
    assert!(
        line["verify"].as_str().unwrap().starts_with("FAILED:"),
        "{line}"
    );
    assert!(line.get("status").is_none(), "{line}");
    assert!(line["handshake_ms"].as_f64().is_some(), "{line}");
}
