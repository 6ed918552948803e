//! `certgate demo` runs the `certgate-demo` binary found beside the running `certgate` (the
//! proxy never links the demo's PKI generator); without it, the error names the build command.
//! The demo itself is tested end to end in `tools/tests/demo.rs`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A copy of the `certgate` binary alone in a fresh directory (a symlink would not do: the
/// running executable's path is the link's target).
fn lone_certgate(dir: &Path) -> PathBuf {
    let copy = dir.join("certgate");
    fs::copy(env!("CARGO_BIN_EXE_certgate"), &copy).unwrap();
    copy
}

fn demo(certgate: &Path, listen: &str) -> CommandOut {
    run_bounded(
        Command::new(certgate).args(["demo", "--listen", listen]),
        Duration::from_secs(30),
    )
}

#[test]
fn demo_execs_certgate_demo_beside_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let certgate = lone_certgate(dir.path());
    // A stand-in that shows how it was called: its arguments, and that it replaced the
    // certgate process rather than running as its child.
    let tool = certgate.with_file_name("certgate-demo");
    fs::write(
        &tool,
        "#!/bin/sh\necho \"args: $*\"\necho \"parent: $(cat /proc/$PPID/comm)\"\nexit 7\n",
    )
    .unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();

    let listen = format!("127.0.0.1:{}", free_port());
    let out = demo(&certgate, &listen);
    assert_eq!(out.status.code(), Some(7), "{}", out.all());
    assert!(
        out.stdout.contains(&format!("args: --listen {listen}\n")),
        "{}",
        out.all()
    );
    assert!(!out.stdout.contains("parent: certgate"), "{}", out.all());
}

#[test]
fn demo_without_certgate_demo_names_the_build_command() {
    let dir = tempfile::tempdir().unwrap();
    let certgate = lone_certgate(dir.path());
    let out = demo(&certgate, &format!("127.0.0.1:{}", free_port()));
    assert!(!out.status.success(), "{}", out.all());
    let missing = certgate.with_file_name("certgate-demo");
    assert!(
        out.stderr
            .contains(&format!("{} not found", missing.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("build it with `cargo build --release --workspace`"),
        "{}",
        out.stderr
    );
}
