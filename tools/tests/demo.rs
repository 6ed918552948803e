//! `certgate demo` (the proxy binary, which execs `certgate-demo` from beside itself): the
//! commands it prints do what their comments say.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::fs::{self, File};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Removes the demo's kept directory when the test ends, pass or fail.
struct RemoveDir(Option<std::path::PathBuf>);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("certgate-demo-") {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
}

#[test]
fn printed_commands_behave_as_described() {
    let work = tempfile::tempdir().unwrap();
    let out_path = work.path().join("demo.out");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let out = File::create(&out_path).unwrap();
    // certgate_bin() is target/<profile>/certgate, beside the certgate-demo Cargo built for
    // this test: the README's command, end to end.
    assert_eq!(
        certgate_bin().with_file_name("certgate-demo"),
        std::path::Path::new(env!("CARGO_BIN_EXE_certgate-demo"))
    );
    let mut demo = ProcGuard::new(
        Command::new(certgate_bin())
            .args(["demo", "--listen", &listen])
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn certgate demo"),
    );
    let read_out = || fs::read_to_string(&out_path).unwrap_or_default();

    let deadline = Instant::now() + STARTUP;
    while TcpStream::connect_timeout(&listen.parse().unwrap(), Duration::from_millis(200)).is_err()
    {
        if let Some(status) = demo.try_wait() {
            panic!("demo exited ({status}):\n{}", read_out());
        }
        assert!(
            Instant::now() < deadline,
            "demo not listening on {listen}:\n{}",
            read_out()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let text = read_out();
    let _cleanup = RemoveDir(
        text.lines()
            .find_map(|l| l.strip_prefix("certgate demo: files in "))
            .map(|d| d.trim().into()),
    );

    let commands: Vec<&str> = text.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(
        commands.len() >= 4,
        "too few curl commands printed:\n{text}"
    );
    let expected_for = |comment: &str| -> u16 {
        // The first status code the comment mentions; none means success.
        ["200", "400", "403"]
            .into_iter()
            .filter_map(|code| comment.find(code).map(|at| (at, code)))
            .min()
            .map_or(200, |(_, code)| code.parse().unwrap())
    };
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("curl ") {
            continue;
        }
        // The numbered comment above the command (a step's comment may span lines).
        let comment = lines[..i]
            .iter()
            .rev()
            .find(|l| l.starts_with("# ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
            .copied()
            .unwrap_or("");
        let expected = expected_for(comment);
        let cmd = format!("{line} -sS --max-time 10 -w '\\n%{{http_code}}'");
        let out = run_bounded(
            Command::new("sh").arg("-c").arg(&cmd),
            Duration::from_secs(20),
        );
        let status: u16 = out
            .stdout
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or(0);
        assert_eq!(status, expected, "{comment}\n{line}\n{}", out.all());
        if line.contains("-H 'X-SSL-Client-S-DN") {
            assert!(
                !out.stdout.contains("CN=admin"),
                "forged header reached the echo:\n{}",
                out.stdout
            );
            assert!(out.stdout.contains(dn::CLIENT1), "{}", out.stdout);
        }
    }
    if let Some(status) = demo.try_wait() {
        panic!("demo died ({status}):\n{}", read_out());
    }
    // Step 4 shows the issuer rule at work: its client's subject is allowed.
    let log = read_out();
    assert!(
        log.contains("issuer DN matched no allow_issuers rule"),
        "the issuer rule refused nobody:\n{log}"
    );
    // Stopping removes the demo's directory.
    let dir = _cleanup.0.clone().expect("the demo names its directory");
    assert!(dir.is_dir(), "{}", dir.display());
    let (status, in_time) = demo.terminate(Duration::from_secs(10)).expect("running");
    assert!(in_time && status.success(), "{status}:\n{}", read_out());
    assert!(!dir.exists(), "{} left behind", dir.display());
}
