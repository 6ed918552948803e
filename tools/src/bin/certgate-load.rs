//! `certgate-load`: the mTLS load generator (see `certgate_tools::load`). Parses the command line,
//! runs, prints the report: human-readable, or with `--json` exactly one JSON object on stdout.
//! Setup failures exit with status 2; a run with more failed operations than `--max-errors`
//! (default 0) prints its report and exits with status 1; otherwise 0.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::process::ExitCode;

use clap::Parser;

use certgate_tools::load::{self, Args, Plan, Report};

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
    let errors = report.stats.error_total();
    if errors > args.max_errors {
        eprintln!(
            "certgate-load: {errors} of {} operations failed (--max-errors {})",
            report.stats.ops, args.max_errors
        );
        return ExitCode::FAILURE;
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
