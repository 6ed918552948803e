//! The `certgate` command: `run`, `check`, `explain` and `demo`.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod explain;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::{Duration, Instant};

use certgate::config::Config;
use certgate::logging::Logging;
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "certgate", version, about = "A mutual-TLS edge proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy in the foreground until SIGTERM, SIGQUIT or SIGINT.
    ///
    /// Signals: SIGHUP re-reads the configuration (as `nginx -s reload`; a file that does not
    /// validate changes nothing and the log says why). SIGTERM, SIGQUIT and SIGINT drain: no new
    /// connection is accepted, requests in progress finish (their response says
    /// `Connection: close`), idle connections close, and after `[runtime] shutdown_timeout`
    /// what remains is closed; exit 0. A second SIGTERM or SIGINT during the drain stops at
    /// once. SIGUSR1 reopens the access-log file (logrotate).
    ///
    /// Logs go to stderr, one line per event, with colours only when stderr is a terminal.
    /// `[log] level` sets the filter (applied again on SIGHUP); the RUST_LOG environment
    /// variable, when set, overrides it (e.g. `RUST_LOG=debug` or
    /// `RUST_LOG=info,certgate::access=off`).
    Run {
        /// Path to the TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Zero-downtime restart or binary upgrade: take the listening sockets over from the
        /// certgate running with the same `[runtime] pid_file` (through `<pid_file>.sock`),
        /// start serving on them, then let that process drain as on SIGQUIT.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration as `check` does, then make the running process (found by
    /// `[runtime] pid_file`) re-read it, and wait for its answer: exit 0 once the new
    /// configuration is in force, 1 with the reason when it was refused or nothing runs.
    Reload {
        /// Path to the TOML configuration file the running process was started with.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a configuration (like `nginx -t`): exit 0 and print a summary, or print the
    /// errors (file:line: key: reason) and exit non-zero.
    Check {
        /// Path to the TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Show what a listener would do with a client certificate, without any network: the
    /// verify result (CA set, verify depth, CRLs, time), the certificate's identity, the rule
    /// that matched in each family (or the nearest one and how it differs), the headers sent
    /// upstream and the outcome. Exit 0 admitted, 1 refused, 2 error.
    Explain {
        /// Path to the TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The client certificate, PEM, leaf first, then its chain.
        #[arg(long)]
        cert: PathBuf,
        /// The listener, by name (default: the first with TLS).
        #[arg(long)]
        listener: Option<String>,
        /// The server name the client sends (SNI): the [[listener.sni]] block it selects judges
        /// the certificate, as in the handshake (default: no SNI, the listener's own policy).
        #[arg(long)]
        sni: Option<String>,
        /// Verify at this RFC 3339 time instead of now (e.g. 2030-01-31T12:00:00Z).
        #[arg(long)]
        at: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate a throwaway PKI, start an echo upstream and the proxy on 127.0.0.1:8443, and
    /// print the curl commands that show what certgate does.
    ///
    /// Runs the `certgate-demo` binary found next to this one (built by
    /// `cargo build --release --workspace`, as scripts/demo.sh does).
    Demo {
        /// Address for the proxy.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("certgate: warning: {w}");
                }
                print!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("certgate: {e}");
                eprintln!("certgate: configuration check failed");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, upgrade } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("certgate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let logging = certgate::logging::init(&config.log.level);
            if let Some(env) = logging.overridden_by() {
                tracing::info!("RUST_LOG={env:?} overrides [log] level");
            }
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            run(Arc::new(config), &logging, upgrade)
        }
        Command::Reload { config } => reload(&config),
        Command::Demo { listen } => demo(&listen),
        Command::Explain {
            config,
            cert,
            listener,
            sni,
            at,
            json,
        } => explain::run(&explain::Args {
            config,
            cert,
            listener,
            sni,
            at,
            json,
        }),
    }
}

/// How long `certgate reload` waits for the running process to answer.
const RELOAD_ANSWER: Duration = Duration::from_secs(60);

/// `certgate reload`: validates as `check`, signals the running process, waits for its answer.
fn reload(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("certgate: {e}");
            eprintln!("certgate: configuration check failed; nothing was signalled");
            return ExitCode::FAILURE;
        }
    };
    for w in &config.warnings {
        eprintln!("certgate: warning: {w}");
    }
    let Some(pid_file) = &config.runtime.pid_file else {
        eprintln!(
            "certgate: {}: runtime.pid_file: not set, so the running process cannot be found; \
             set it (e.g. pid_file = \"/run/certgate/certgate.pid\"), start certgate with it, \
             or send SIGHUP yourself",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    match certgate::control::reload(pid_file, RELOAD_ANSWER) {
        Ok(status) => {
            let same = |a: &std::path::Path, b: &std::path::Path| {
                std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
            };
            if !same(&status.config, path) {
                eprintln!(
                    "certgate: warning: the running process re-read {}, not {}",
                    status.config.display(),
                    path.display()
                );
            }
            match status.failure {
                None => {
                    println!(
                        "certgate: configuration reloaded (generation {})",
                        status.generation
                    );
                    ExitCode::SUCCESS
                }
                Some(why) => {
                    eprintln!("certgate: reload refused, the running configuration stays: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("certgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `certgate demo`: replaces this process with `certgate-demo`, from the directory of the
/// running executable (as git finds its subcommands), so that the proxy itself never links the
/// PKI generator and the other tools. Returns only when that fails.
fn demo(listen: &str) -> ExitCode {
    use std::os::unix::process::CommandExt;

    let tool = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("certgate-demo"),
        Err(e) => {
            eprintln!("certgate demo: cannot find the running executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let e = std::process::Command::new(&tool)
        .arg("--listen")
        .arg(listen)
        .exec();
    if e.kind() == std::io::ErrorKind::NotFound {
        eprintln!(
            "certgate demo: {} not found: the demo is a separate binary of the workspace; \
             build it with `cargo build --release --workspace` (scripts/demo.sh does)",
            tool.display()
        );
    } else {
        eprintln!("certgate demo: cannot run {}: {e}", tool.display());
    }
    ExitCode::FAILURE
}

fn run(config: Arc<Config>, logging: &Logging, upgrade: bool) -> ExitCode {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};

    let path = config.path.clone();
    let pid_file = config.runtime.pid_file.clone();
    // Before the workers start, so that a signal sent as soon as the port answers is handled.
    let mut signals =
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("certgate: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
    let handover = if upgrade {
        let Some(p) = &pid_file else {
            eprintln!(
                "certgate: {}: runtime.pid_file: --upgrade finds the running process by its \
                 pid_file; set one (the running process must have been started with it)",
                path.display()
            );
            return ExitCode::FAILURE;
        };
        match certgate::control::take_over(&certgate::control::socket_path(p)) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("certgate: --upgrade: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let (handover, inherited) = match handover {
        Some(mut h) => {
            let sockets = std::mem::take(&mut h.sockets);
            tracing::info!(sockets = sockets.len(), "took over the listening sockets");
            (Some(h), sockets)
        }
        None => (None, Vec::new()),
    };
    // The admin endpoint first: a bad address stops the start before any worker accepts.
    if let Some(addr) = config.admin {
        match certgate::admin::start(addr) {
            Ok(a) => {
                tracing::info!(addr = %a, "admin endpoint listening (/metrics, /healthz, /ready)")
            }
            Err(e) => {
                eprintln!("certgate: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let running = match certgate::runtime::start_with(config, inherited) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    if handover.is_some() {
        // Until the old process has drained, the sockets are its too: never shut them down.
        running
            .shared
            .store(true, std::sync::atomic::Ordering::Release);
    }
    if let Some(p) = &pid_file {
        // The control socket for the next upgrade; this process drains once one took over.
        let offered =
            certgate::control::Offer::bind(&certgate::control::socket_path(p)).and_then(|offer| {
                offer.serve(running.listening(), running.shared.clone(), || {
                    // SAFETY: kill(2) to this process, with a signal signal-hook handles.
                    unsafe { libc::kill(libc::getpid(), SIGQUIT) };
                })
            });
        if let Err(e) = offered {
            tracing::warn!(
                "no control socket next to {}: `run --upgrade` cannot take over: {e}",
                p.display()
            );
        }

        let written = certgate::control::write_pid(p).and_then(|()| {
            certgate::control::write_status(
                p,
                &certgate::control::ReloadStatus {
                    generation: 0,
                    failure: None,
                    config: path.clone(),
                },
            )
        });
        if let Err(e) = written {
            eprintln!(
                "certgate: runtime.pid_file: cannot write {}: {e}",
                p.display()
            );
            running.drain();
            return ExitCode::FAILURE;
        }
    }
    if let Some(h) = handover {
        // The old process drains from here on; this one serves.
        if let Err(e) = h.ready() {
            tracing::warn!("the previous process did not hear that this one is ready: {e}");
        }
    }
    notify(&[NotifyState::Ready]);
    let mut stop = SIGTERM;
    let mut generation = 0u64;
    for sig in signals.forever() {
        if sig == SIGUSR1 {
            certgate::logging::reopen();
            continue;
        }
        if sig != SIGHUP {
            stop = sig;
            break;
        }
        // SIGHUP: re-read the configuration, as nginx -s reload does; a bad one changes nothing.
        let mut reloading = vec![NotifyState::Reloading];
        reloading.extend(NotifyState::monotonic_usec_now().ok());
        notify(&reloading);
        generation += 1;
        let failure = reload_once(&path, &running, logging).err();
        if let Some(p) = &pid_file {
            let status = certgate::control::ReloadStatus {
                generation,
                failure,
                config: path.clone(),
            };
            if let Err(e) = certgate::control::write_status(p, &status) {
                tracing::warn!(
                    "cannot record the reload's outcome next to {}: {e}",
                    p.display()
                );
            }
        }
        notify(&[NotifyState::Ready]);
    }
    notify(&[NotifyState::Stopping]);
    let limit = running.config().runtime.shutdown_timeout;
    tracing::info!(
        signal = stop,
        shutdown_timeout = ?limit,
        "draining: no new connections; waiting for those open to finish"
    );
    certgate::metrics::set_draining();
    running.drain();
    let deadline = Instant::now() + limit;
    loop {
        if running.wait(deadline.min(Instant::now() + Duration::from_millis(50))) {
            tracing::info!("drained; exiting");
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                "shutdown_timeout ({limit:?}) passed: closing the connections still open"
            );
            break;
        }
        if signals.pending().any(|s| s == SIGINT || s == SIGTERM) {
            tracing::warn!("second signal: closing the connections still open");
            break;
        }
    }
    if let Some(p) = &pid_file {
        certgate::control::remove_pid(p);
    }
    ExitCode::SUCCESS
}

/// One SIGHUP: loads the file again and puts it in force; the error says why not.
fn reload_once(
    path: &std::path::Path,
    running: &certgate::runtime::Running,
    logging: &Logging,
) -> Result<(), String> {
    let next = match Config::load(path) {
        Ok(next) => next,
        Err(e) => {
            tracing::error!("reload failed, the running configuration stays: {e}");
            return Err(e.to_string());
        }
    };
    for w in &next.warnings {
        tracing::warn!("{w}");
    }
    let level = next.log.level.clone();
    if let Err(e) = running.reload(next) {
        tracing::error!("reload refused, the running configuration stays: {e}");
        return Err(e);
    }
    // The new level first, so that this line obeys it.
    match logging.set_level(&level) {
        Ok(()) => tracing::info!(
            config = %path.display(),
            log_level = level,
            "configuration reloaded"
        ),
        Err(why) => tracing::info!(
            config = %path.display(),
            "configuration reloaded; [log] level = {level:?} not applied: {why}"
        ),
    }
    Ok(())
}

/// Tells systemd (`Type=notify`, `$NOTIFY_SOCKET`) about a state change; without systemd,
/// nothing happens.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}
