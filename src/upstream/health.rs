//! Server health shared by every worker: passive accounting of failed requests (always on, with
//! nginx's `max_fails` / `fail_timeout` semantics) and active checks (`[upstream.health]`).
//!
//! The state is a handful of atomics per server in [`Health`], which lives in the `Arc`'d
//! [`Upstream`] of the configuration: workers read it on every pick and write it when a request
//! fails or succeeds; the one checker thread per checked upstream writes the active verdict.
//! Races between workers are benign: each field is a self-contained fact, and the worst outcome
//! of two workers failing at once is one failure counted a moment earlier or later.
//!
//! Passive, as nginx's round robin (`ngx_http_upstream_free_round_robin_peer`): a failure sets
//! `fails += 1` and `accessed = checked = now`. The server is out while `fails >= max_fails` and
//! `now - checked <= fail_timeout`. The first pick after `fail_timeout` has passed moves `checked`
//! to now; if that request succeeds (`accessed < checked`), `fails` is reset, otherwise the
//! server is out for another `fail_timeout`. Failures therefore accumulate until a success comes
//! more than `fail_timeout` after the last failure.
//!
//! Active: a server starts up; `fails` consecutive failed checks mark it down, `passes`
//! consecutive passed checks mark it up again (and clear its passive failures: it was just seen
//! working). A check passes when the server answers `GET <path>` with a 2xx or 3xx status line
//! within `timeout`. Checks use the same connect as requests (so upstream TLS applies).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::{debug, error, info, warn};

use crate::config::{HealthCheck, Upstream};

/// Longest status line a health check waits for.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Nanoseconds on a process-wide monotonic clock; never 0, so 0 can mean "never".
pub fn now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One server's shared state.
#[derive(Debug, Default)]
pub struct PeerHealth {
    /// Failed requests counted since the last reset.
    fails: AtomicU32,
    /// When the last failure happened.
    accessed: AtomicU64,
    /// When the failure window was last (re)started: at a failure, or at the first pick after
    /// `fail_timeout` passed.
    checked: AtomicU64,
    /// Marked down by the active check.
    active_down: AtomicBool,
}

impl PeerHealth {
    /// Out by passive accounting: `max_fails` failures and the last within `fail_timeout`.
    pub fn passive_down(&self, now: u64, max_fails: u32, fail_timeout: Duration) -> bool {
        max_fails > 0
            && self.fails.load(Relaxed) >= max_fails
            && now.saturating_sub(self.checked.load(Relaxed)) <= nanos(fail_timeout)
    }

    /// True while active health checks hold the server down (`fails` failed checks in a row, until
    /// `passes` pass).
    pub fn active_down(&self) -> bool {
        self.active_down.load(Relaxed)
    }

    /// The server was chosen by the balancer: once `fail_timeout` has passed since the window
    /// started, this request is the trial that decides whether the failures are forgotten.
    pub fn picked(&self, now: u64, fail_timeout: Duration) {
        if now.saturating_sub(self.checked.load(Relaxed)) > nanos(fail_timeout) {
            self.checked.store(now, Relaxed);
        }
    }

    /// The server was chosen although it is down (every server was): a trial as after
    /// `fail_timeout`, so that a success clears the failures.
    pub fn trial(&self, now: u64) {
        self.checked.store(now, Relaxed);
    }

    /// A request failed on this server. Returns true when this failure marked it down.
    pub fn failed(&self, now: u64, max_fails: u32) -> bool {
        let before = self
            .fails
            .fetch_update(Relaxed, Relaxed, |f| Some(f.saturating_add(1)))
            .unwrap_or(u32::MAX);
        self.accessed.store(now, Relaxed);
        self.checked.store(now, Relaxed);
        max_fails > 0 && before.saturating_add(1) == max_fails
    }

    /// A request got a response from this server.
    pub fn succeeded(&self) {
        // Read before written: no store to this line, shared by the workers, per request.
        if self.fails.load(Relaxed) != 0 && self.accessed.load(Relaxed) < self.checked.load(Relaxed)
        {
            self.fails.store(0, Relaxed);
        }
    }

    /// Failures counted now (for tests and metrics).
    pub fn fails(&self) -> u32 {
        self.fails.load(Relaxed)
    }

    fn set_active_down(&self, down: bool) {
        self.active_down.store(down, Relaxed);
        if !down {
            self.fails.store(0, Relaxed);
        }
    }
}

/// Every server's shared state, same order as `Upstream::servers`.
#[derive(Debug, Default)]
pub struct Health {
    peers: Vec<PeerHealth>,
}

impl Health {
    /// A table for `servers` servers, all up.
    pub fn new(servers: usize) -> Self {
        Self {
            peers: (0..servers).map(|_| PeerHealth::default()).collect(),
        }
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True for an upstream without servers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

impl std::ops::Index<usize> for Health {
    type Output = PeerHealth;

    fn index(&self, i: usize) -> &PeerHealth {
        &self.peers[i]
    }
}

/// Starts the active checks of `upstream` on a thread of their own, if it has
/// `[upstream.health]`. The thread runs for the life of the process.
pub fn start_checks(upstream: &Arc<Upstream>) -> io::Result<()> {
    let Some(check) = upstream.health_check.clone() else {
        return Ok(());
    };
    let upstream = Arc::clone(upstream);
    std::thread::Builder::new()
        .name("certgate-health".into())
        .spawn(move || {
            // A small epoll runtime: a handful of sockets every interval need nothing more.
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => rt.block_on(run(upstream, check)),
                Err(e) => error!(
                    upstream = %upstream.name,
                    "cannot start the health checks: {e}; servers stay up"
                ),
            }
        })?;
    Ok(())
}

/// Checks every server of the upstream (but those configured `down`), each on its own
/// schedule, forever.
async fn run(upstream: Arc<Upstream>, check: HealthCheck) {
    let check = Arc::new(check);
    let tasks: Vec<_> = (0..upstream.servers.len())
        .filter(|&i| !upstream.servers[i].down)
        .map(|i| monoio::spawn(watch(Arc::clone(&upstream), Arc::clone(&check), i)))
        .collect();
    for t in tasks {
        t.await;
    }
}

/// One server's checks: every `interval`, a verdict; `fails` / `passes` in a row flip it.
async fn watch(upstream: Arc<Upstream>, check: Arc<HealthCheck>, i: usize) {
    let server = &upstream.servers[i];
    let state = &upstream.health[i];
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: certgate-health-check\r\nConnection: close\r\n\r\n",
        check.path, server.name
    );
    let mut verdicts = Verdicts::default();
    let mut next = monoio::time::Instant::now();
    loop {
        if upstream.retired.load(std::sync::atomic::Ordering::Relaxed) {
            // A reload replaced this upstream; its successor has its own checks.
            return;
        }
        let result = match monoio::time::timeout(
            check.timeout,
            probe(&upstream, server.addr, request.as_bytes(), check.timeout),
        )
        .await
        {
            Err(_) => Err(format!("no status line within {:?}", check.timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(status)) if (200..400).contains(&status) => Ok(status),
            Ok(Ok(status)) => Err(format!("status {status}")),
        };
        let passed = result.is_ok();
        match verdicts.record(passed, &check, state.active_down()) {
            Some(true) => {
                state.set_active_down(true);
                warn!(
                    upstream = %upstream.name,
                    "server {} marked down by health check: {} failed check(s) in a row, last: {}",
                    server.addr,
                    check.fails,
                    result.as_ref().err().map_or("", String::as_str)
                );
            }
            Some(false) => {
                state.set_active_down(false);
                info!(
                    upstream = %upstream.name,
                    "server {} marked up by health check: {} passed check(s) in a row",
                    server.addr,
                    check.passes
                );
            }
            None => match &result {
                Ok(status) => debug!(server = %server.addr, status, "health check passed"),
                Err(e) => debug!(server = %server.addr, "health check failed: {e}"),
            },
        }
        next += check.interval;
        let now = monoio::time::Instant::now();
        if next < now {
            // A check that took longer than the interval: start the next one right away.
            next = now;
        }
        monoio::time::sleep_until(next).await;
    }
}

/// Consecutive results of one server's checks.
#[derive(Debug, Default)]
struct Verdicts {
    fails: u32,
    passes: u32,
}

impl Verdicts {
    /// Records one result; returns the new `down` state when it changes.
    fn record(&mut self, passed: bool, check: &HealthCheck, down: bool) -> Option<bool> {
        if passed {
            self.fails = 0;
            self.passes = self.passes.saturating_add(1);
            (down && self.passes >= check.passes).then_some(false)
        } else {
            self.passes = 0;
            self.fails = self.fails.saturating_add(1);
            (!down && self.fails >= check.fails).then_some(true)
        }
    }
}

/// Connects, sends the check request and returns the response's status code.
async fn probe(
    upstream: &Upstream,
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<u16, String> {
    let host = upstream
        .servers
        .iter()
        .find(|s| s.addr == addr)
        .and_then(|s| s.host_name());
    let mut conn = super::connect(addr, host, timeout, upstream.tls.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    conn.write_all(request)
        .await
        .map_err(|e| format!("sending the check failed: {e}"))?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(status) = status_line(&buf)? {
            return Ok(status);
        }
        if buf.len() > MAX_STATUS_LINE {
            return Err(format!(
                "no status line in the first {MAX_STATUS_LINE} bytes"
            ));
        }
        match conn.read_into(&mut buf).await {
            Ok(0) => return Err("closed before responding".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the response failed: {e}")),
        }
    }
}

/// The status code of a complete `HTTP/1.x NNN ...` line at the start of `buf`; None while the
/// line is incomplete.
fn status_line(buf: &[u8]) -> Result<Option<u16>, String> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let bad = || {
        format!(
            "not an HTTP/1.x status line: {:?}",
            String::from_utf8_lossy(line)
        )
    };
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    match rest {
        [minor, b' ', a, b, c, tail @ ..]
            if minor.is_ascii_digit()
                && [a, b, c].iter().all(|d| d.is_ascii_digit())
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            Ok(Some(
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'),
            ))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn max_fails_within_fail_timeout_marks_down_for_fail_timeout() {
        let h = PeerHealth::default();
        let ft = Duration::from_secs(10);
        let t0 = 100 * S;
        assert!(!h.passive_down(t0, 2, ft));
        assert!(!h.failed(t0, 2));
        assert!(!h.passive_down(t0, 2, ft), "one failure of two");
        assert!(h.failed(t0 + S, 2), "the second failure marks it down");
        assert!(h.passive_down(t0 + S, 2, ft));
        assert!(
            h.passive_down(t0 + 11 * S, 2, ft),
            "down for fail_timeout after the last"
        );
        assert!(!h.passive_down(t0 + 11 * S + 1, 2, ft));
        // The trial after fail_timeout succeeds: failures are forgotten.
        h.picked(t0 + 12 * S, ft);
        h.succeeded();
        assert_eq!(h.fails(), 0);
    }

    #[test]
    fn a_failed_trial_keeps_it_down_another_fail_timeout() {
        let h = PeerHealth::default();
        let ft = Duration::from_secs(10);
        h.failed(S, 1);
        h.picked(12 * S, ft);
        assert!(!h.failed(12 * S, 1), "already counted as down once");
        assert!(h.passive_down(20 * S, 1, ft));
        assert!(!h.passive_down(23 * S, 1, ft));
    }

    #[test]
    fn successes_within_fail_timeout_do_not_forgive() {
        // nginx: failures accumulate until a success comes after fail_timeout.
        let h = PeerHealth::default();
        let ft = Duration::from_secs(10);
        h.failed(S, 3);
        h.picked(2 * S, ft);
        h.succeeded();
        assert_eq!(h.fails(), 1);
        h.failed(3 * S, 3);
        assert!(h.failed(4 * S, 3));
        assert!(h.passive_down(5 * S, 3, ft));
    }

    #[test]
    fn max_fails_zero_disables_accounting() {
        let h = PeerHealth::default();
        for _ in 0..10 {
            assert!(!h.failed(S, 0));
        }
        assert!(!h.passive_down(S, 0, Duration::from_secs(10)));
    }

    #[test]
    fn active_up_clears_passive_failures() {
        let h = PeerHealth::default();
        h.failed(S, 1);
        h.set_active_down(true);
        assert!(h.active_down());
        h.set_active_down(false);
        assert!(!h.active_down());
        assert!(!h.passive_down(S, 1, Duration::from_secs(10)));
    }

    #[test]
    fn fails_and_passes_in_a_row() {
        let check = HealthCheck {
            fails: 3,
            passes: 2,
            ..HealthCheck::default()
        };
        let mut v = Verdicts::default();
        assert_eq!(v.record(false, &check, false), None);
        assert_eq!(v.record(false, &check, false), None);
        assert_eq!(v.record(true, &check, false), None, "a pass breaks the run");
        assert_eq!(v.record(false, &check, false), None);
        assert_eq!(v.record(false, &check, false), None);
        assert_eq!(v.record(false, &check, false), Some(true));
        assert_eq!(v.record(true, &check, true), None);
        assert_eq!(v.record(false, &check, true), None);
        assert_eq!(v.record(true, &check, true), None);
        assert_eq!(v.record(true, &check, true), Some(false));
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(
            status_line(b"HTTP/1.0 302\r\nLocation: /\r\n"),
            Ok(Some(302))
        );
        assert_eq!(
            status_line(b"HTTP/1.1 503 Service Unavailable\n"),
            Ok(Some(503))
        );
        assert_eq!(status_line(b"HTTP/1.1 200 O"), Ok(None));
        assert!(status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(status_line(b"HTTP/1.1 20 OK\r\n").is_err());
        assert!(status_line(b"HTTP/1.1 2000 OK\r\n").is_err());
        assert!(status_line(b"HTTP/2 200\r\n").is_err());
    }
}
