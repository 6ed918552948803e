//! `certgate-demo`: what `certgate demo` runs (the proxy binary execs this one, found beside it,
//! so that it never links the PKI generator). Writes a throwaway PKI and configuration, starts
//! the echo upstream, prints the curl commands to try and runs `certgate run` on that
//! configuration (the binary beside this one, so the demo stops, reloads and logs exactly as the
//! proxy does); the signals it receives are passed on. When the proxy exits, it removes its files.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Generate a throwaway PKI, start an echo upstream and the proxy, and print the curl commands
/// that show what certgate does.
#[derive(Parser)]
#[command(name = "certgate demo", version)]
struct Args {
    /// Address for the proxy.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let demo = match certgate_tools::demo::prepare(&args.listen) {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("certgate demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", demo.text);
    let status = serve(&demo.config.path);
    if let Err(e) = demo.dir.close() {
        eprintln!("certgate demo: cannot remove its directory: {e}");
    }
    status
}

/// Runs `certgate run --config <config>` until it exits, passing on SIGINT, SIGTERM, SIGQUIT and
/// SIGHUP. The proxy runs in its own process group, so a Ctrl-C reaches it once, through here.
fn serve(config: &Path) -> ExitCode {
    let proxy = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("certgate"),
        Err(e) => {
            eprintln!("certgate demo: cannot find the running executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGQUIT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certgate demo: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut child = match Command::new(&proxy)
        .arg("run")
        .arg("--config")
        .arg(config)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "certgate demo: cannot start {}: {e} (build it with `cargo build --release \
                 --workspace`)",
                proxy.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let pid = child.id() as libc::pid_t;
    let handle = signals.handle();
    let forward = std::thread::spawn(move || {
        for sig in signals.forever() {
            // SAFETY: kill(2) on our own child, which is not reaped before this thread ends.
            unsafe { libc::kill(pid, sig) };
        }
    });
    let status = child.wait();
    handle.close();
    let _ = forward.join();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("certgate demo: the proxy exited with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("certgate demo: cannot wait for the proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
