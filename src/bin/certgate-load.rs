//! `certgate-load`: the mTLS load generator (see `certgate::load`). Parses the command line,
//! runs, prints the report: human-readable, or with `--json` exactly one JSON object on stdout.
//! Setup failures exit with status 2; a run that happened exits 0 whatever its errors were
//! (they are in the report).

use std::process::ExitCode;

use clap::Parser;

use certgate::load::{self, Args, Plan, Report};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match Plan::from_args(&args).and_then(load::run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certgate-load: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", report.to_json());
        print_samples(&report);
    } else {
        print!("{}", report.human());
    }
    ExitCode::SUCCESS
}

/// With `--json`, the first error of each kind goes to stderr: stdout stays one object.
fn print_samples(report: &Report) {
    for kind in load::ErrorKind::ALL {
        if let Some(sample) = &report.stats.samples[kind as usize] {
            eprintln!("certgate-load: first {} error: {sample}", kind.name());
        }
    }
}
