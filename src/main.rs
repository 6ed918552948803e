//! The `certgate` command: `run`, `check` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use certgate::config::Config;

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
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a configuration (like `nginx -t`).
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Generate a throwaway PKI, start an echo upstream and the proxy on 127.0.0.1:8443, and
    /// print the curl commands that show what certgate does.
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
            init_logging(&config.log.level);
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            run(Arc::new(config))
        }
        Command::Demo { listen } => {
            init_logging("info");
            match certgate::demo::prepare(&listen) {
                Ok(demo) => {
                    println!("{}", demo.text);
                    let status = run(Arc::new(demo.config));
                    if let Err(e) = demo.dir.close() {
                        eprintln!("certgate demo: cannot remove its directory: {e}");
                    }
                    status
                }
                Err(e) => {
                    eprintln!("certgate demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(config: Arc<Config>) -> ExitCode {
    let path = config.path.clone();
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
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certgate: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    for sig in signals.forever() {
        if sig != signal_hook::consts::SIGHUP {
            tracing::info!(signal = sig, "stopping");
            break;
        }
        // SIGHUP: re-read the configuration, as nginx -s reload does; a bad one changes nothing.
        match Config::load(&path).map_err(|e| e.to_string()) {
            Ok(next) => match warn_then(next, |next| running.reload(next)) {
                Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
                Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
            },
            Err(e) => tracing::error!("reload failed, the running configuration stays: {e}"),
        }
    }
    running.stop_accepting();
    ExitCode::SUCCESS
}

/// Logs a freshly loaded configuration's warnings, then hands it on.
fn warn_then<T>(config: Config, then: impl FnOnce(Config) -> T) -> T {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    then(config)
}
