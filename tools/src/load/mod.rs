//! `certgate-load`: an mTLS load generator.
//!
//! wrk and h2load cannot present client certificates, and curl loops or `openssl s_time`
//! saturate long before a fast server does, so certgate ships its own. It measures the three
//! costs that matter for a mutual-TLS edge: full handshakes (`--mode full`), resumed handshakes
//! (`--mode resume`) and requests on persistent connections (`--mode keepalive`), over HTTP/1.1
//! or, with `--protocol h2`, over HTTP/2 with `--streams` requests in flight per connection
//! (`h2`; h2load cannot present a client certificate either).
//!
//! Design, in the order a run goes:
//! - [`args`]: the command line (a contract with the perf scripts), validated into a [`Plan`];
//!   the request bytes are built once.
//! - One `client::Client`: the BoringSSL context, built once and shared by every thread. It
//!   verifies the server's chain once per distinct certificate (`verify`), so the client's
//!   share of a full handshake stays well under the server's.
//! - `--threads` threads, each optionally pinned (`--pin`), each with its own monoio runtime
//!   (io_uring, or epoll where the kernel refuses it) and one task per connection slot. A
//!   thread's counters are its own; they are merged at the end.
//! - A priming phase (keep-alive connections opened, resumable sessions obtained) that every
//!   thread finishes before the clock starts, then `--warmup`, then the measurement, bounded by
//!   `--duration` and `--count`, whichever ends first. Each operation is bounded by
//!   `--timeout`.
//! - Closed loop by default; with `--rate`, an open loop in which each operation's latency runs
//!   from when it was due, not from when a slot got to it, so a stalling server shows up as
//!   latency instead of hiding as lower throughput (coordinated omission).
//! - [`report`]: counts, error kinds and HdrHistogram percentiles, for people or as one JSON
//!   object.
//!
//! Network input never panics the tool: every failure is an error kind in the report.

pub mod args;
mod client;
mod h2;
pub mod http;
pub mod report;
mod verify;

use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

pub use self::args::{Args, Mode, Plan, Protocol};
pub use self::report::{ErrorKind, Report, Stats};

use self::args::Io;
use self::client::{Client, Schedule, Thread};
use certgate::config::IoMode;
use certgate::runtime::{choose_driver, Driver};

/// io_uring submission queue entries per client thread (monoio submits early when it fills).
const RING_ENTRIES: u32 = 1024;

/// Runs the plan and returns its report. Errors are setup failures (unreadable certificate,
/// unusable `--pin`, no runtime), never network outcomes.
pub fn run(plan: Plan) -> Result<Report, String> {
    let driver = choose_driver(match plan.io {
        Io::Auto => IoMode::Auto,
        Io::IoUring => IoMode::IoUring,
        Io::Epoll => IoMode::Epoll,
    })
    .map_err(|e| e.to_string())?;
    let cores = pin_targets(&plan.pin)?;
    let client = Arc::new(Client::new(plan)?);
    let plan = &client.plan;

    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut starts = Vec::with_capacity(plan.threads);
    let mut handles = Vec::with_capacity(plan.threads);
    for t in 0..plan.threads {
        let (start_tx, start_rx) = mpsc::channel::<Instant>();
        starts.push(start_tx);
        let client = client.clone();
        let ready = ready_tx.clone();
        let core = (!cores.is_empty()).then(|| cores[t % cores.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("certgate-load-{t}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        let _ = ready.send(Err(format!("cannot pin a thread to CPU {}", core.id)));
                        return None;
                    }
                }
                thread_main(t, driver, client, ready, start_rx)
            })
            .map_err(|e| format!("spawning a client thread: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);

    // Every thread primed its slots: the clock starts for all at once.
    let mut failure = None;
    for _ in 0..plan.threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some("a client thread died".to_string())),
        }
    }
    let begin = Instant::now();
    if failure.is_none() {
        for s in &starts {
            let _ = s.send(begin);
        }
    }
    drop(starts);
    let t0 = begin + plan.warmup;
    let deadline = t0 + plan.duration;

    let mut stats = Stats::default();
    let mut last = None::<Instant>;
    for h in handles {
        match h.join() {
            Ok(Some((s, finished))) => {
                stats.merge(&s);
                last = last.max(Some(finished));
            }
            Ok(None) => {}
            Err(_) => failure = failure.or(Some("a client thread panicked".to_string())),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // A run that did its `--count` ends with its last operation; any other at the deadline.
    let counted_out = plan.count.is_some_and(|n| stats.ops >= n);
    let end = match last {
        Some(t) if counted_out => t.min(deadline),
        _ => deadline,
    };
    Ok(Report {
        mode: plan.mode.as_str(),
        handshake_only: plan.handshake_only,
        protocol: plan.protocol.as_str(),
        connections: plan.connections,
        streams: plan.streams,
        threads: plan.threads,
        rate: plan.rate,
        elapsed: end.saturating_duration_since(t0),
        stats,
    })
}

/// One client thread: runtime, priming, then (once every thread is ready) the measurement.
fn thread_main(
    t: usize,
    driver: Driver,
    client: Arc<Client>,
    ready: mpsc::Sender<Result<(), String>>,
    start: mpsc::Receiver<Instant>,
) -> Option<(Stats, Instant)> {
    match driver {
        Driver::IoUring => match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .enable_timer()
            .build()
        {
            Ok(mut rt) => drive(&mut rt, t, client, ready, start),
            Err(e) => {
                let _ = ready.send(Err(format!("io_uring runtime: {e}")));
                None
            }
        },
        Driver::Epoll => match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(mut rt) => drive(&mut rt, t, client, ready, start),
            Err(e) => {
                let _ = ready.send(Err(format!("epoll runtime: {e}")));
                None
            }
        },
    }
}

fn drive<D: monoio::Driver>(
    rt: &mut monoio::Runtime<D>,
    t: usize,
    client: Arc<Client>,
    ready: mpsc::Sender<Result<(), String>>,
    start: mpsc::Receiver<Instant>,
) -> Option<(Stats, Instant)> {
    let n = client.plan.slots_of(t);
    let slots = rt.block_on(Thread::prime(&client, n));
    let _ = ready.send(Ok(()));
    // Hung up, so that the main thread sees it if another thread dies before reporting.
    drop(ready);
    // The main thread hangs up instead of sending when another thread failed.
    let begin = start.recv().ok()?;
    let plan = &client.plan;
    let t0 = begin + plan.warmup;
    let thread = Rc::new(Thread {
        schedule: plan
            .rate
            .map(|r| Schedule::new(begin, r / plan.threads as f64)),
        t0,
        deadline: t0 + plan.duration,
        stats: Default::default(),
        finished: Default::default(),
        client: client.clone(),
    });
    rt.block_on(thread.clone().run(slots));
    let finished = thread.finished.get().unwrap_or_else(Instant::now);
    let stats = thread.stats.take();
    Some((stats, finished))
}

/// The cores named by `--pin`, checked against the ones this process may run on.
fn pin_targets(pin: &[usize]) -> Result<Vec<core_affinity::CoreId>, String> {
    if pin.is_empty() {
        return Ok(Vec::new());
    }
    let available = core_affinity::get_core_ids().unwrap_or_default();
    pin.iter()
        .map(|&id| {
            available
                .iter()
                .copied()
                .find(|c| c.id == id)
                .ok_or_else(|| {
                    let ids: Vec<String> = available.iter().map(|c| c.id.to_string()).collect();
                    format!(
                        "--pin {id}: not a CPU this process may use ({})",
                        ids.join(",")
                    )
                })
        })
        .collect()
}
