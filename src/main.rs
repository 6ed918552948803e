//! The `certgate` command: `run`, `check` and `demo`.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use certgate::config::Config;
use certgate::logging::Logging;
use clap::{Parser, Subcommand};

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
    /// Run the proxy in the foreground until SIGINT or SIGTERM.
    ///
    /// Signals: SIGHUP re-reads the configuration (as `nginx -s reload`; a file that does not
    /// validate changes nothing and the log says why); SIGUSR1 reopens the access-log file
    /// (logrotate); SIGINT or SIGTERM stops accepting and exits.
    ///
    /// Logs go to stderr, one line per event, with colours only when stderr is a terminal.
    /// `[log] level` sets the filter (applied again on SIGHUP); the RUST_LOG environment
    /// variable, when set, overrides it (e.g. `RUST_LOG=debug` or
    /// `RUST_LOG=info,certgate::access=off`).
    Run {
        /// Path to the TOML configuration file.
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
        Command::Run { config } => {
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
            run(Arc::new(config), &logging)
        }
        Command::Demo { listen } => demo(&listen),
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

fn run(config: Arc<Config>, logging: &Logging) -> ExitCode {
    let path = config.path.clone();
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
    let running = match certgate::runtime::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certgate: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGUSR1 {
            certgate::logging::reopen();
            continue;
        }
        if sig != signal_hook::consts::SIGHUP {
            tracing::info!(signal = sig, "stopping");
            break;
        }
        // SIGHUP: re-read the configuration, as nginx -s reload does; a bad one changes nothing.
        match Config::load(&path).map_err(|e| e.to_string()) {
            Ok(next) => {
                for w in &next.warnings {
                    tracing::warn!("{w}");
                }
                let level = next.log.level.clone();
                match running.reload(next) {
                    Ok(()) => {
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
                    }
                    Err(e) => {
                        tracing::error!("reload refused, the running configuration stays: {e}")
                    }
                }
            }
            Err(e) => tracing::error!("reload failed, the running configuration stays: {e}"),
        }
    }
    running.stop_accepting();
    ExitCode::SUCCESS
}
