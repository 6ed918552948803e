//! `certgate-demo`: what `certgate demo` runs (the proxy binary execs this one, found beside it,
//! so that it never links the PKI generator). Writes a throwaway PKI and configuration, starts
//! the echo upstream and the proxy, prints the curl commands to try, and serves until SIGINT or
//! SIGTERM (SIGHUP reloads the configuration, as `certgate run` does); then removes its files.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::process::ExitCode;
use std::sync::Arc;

use certgate::config::Config;
use clap::Parser;

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
    let logging = certgate::logging::init("info");
    let demo = match certgate_tools::demo::prepare(&args.listen) {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("certgate demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", demo.text);
    let status = serve(Arc::new(demo.config), &logging);
    if let Err(e) = demo.dir.close() {
        eprintln!("certgate demo: cannot remove its directory: {e}");
    }
    status
}

/// Runs the proxy until SIGINT or SIGTERM; SIGHUP re-reads the configuration file.
fn serve(config: Arc<Config>, logging: &certgate::logging::Logging) -> ExitCode {
    let path = config.path.clone();
    let running = match certgate::runtime::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certgate demo: {e}");
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
            eprintln!("certgate demo: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    for sig in signals.forever() {
        if sig != signal_hook::consts::SIGHUP {
            tracing::info!(signal = sig, "stopping");
            break;
        }
        match Config::load(&path).map_err(|e| e.to_string()) {
            Ok(next) => {
                let level = next.log.level.clone();
                match running.reload(next) {
                    Ok(()) => {
                        if let Err(why) = logging.set_level(&level) {
                            tracing::warn!("[log] level = {level:?} not applied: {why}");
                        }
                        tracing::info!(config = %path.display(), "configuration reloaded");
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
