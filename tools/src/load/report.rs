//! Counting outcomes and printing the result.
//!
//! Each client thread keeps its own [`Stats`] (no sharing on the hot path); the threads' stats
//! are merged once at the end. Latencies go into an HdrHistogram in microseconds (3 significant
//! digits, up to an hour), so percentiles are exact to 0.1% at any scale. The report prints
//! either for people or as exactly one JSON object for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Why an operation failed. `HttpStatus` operations completed (a response was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be established.
    Connect,
    /// The TLS handshake failed locally or the peer closed during it.
    Handshake,
    /// The peer sent a TLS alert (e.g. it refused the client certificate).
    TlsAlert,
    /// A response arrived with a status outside 2xx.
    HttpStatus,
    /// The operation did not finish within `--timeout`.
    Timeout,
    /// Reading or writing failed after the handshake, or the peer closed mid-response.
    Io,
    /// The response was not valid HTTP (HTTP/2: a protocol error, or no ALPN h2).
    Protocol,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::TlsAlert,
        ErrorKind::HttpStatus,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Protocol,
    ];

    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::TlsAlert => "tls_alert",
            ErrorKind::HttpStatus => "http_status_non_2xx",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
        }
    }
}

/// What one operation did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub error: Option<(ErrorKind, ErrorDetail)>,
    /// Handshakes completed during the operation (keep-alive: reconnections).
    pub handshakes: u32,
    /// Of those, resumed ones.
    pub resumed: u32,
    /// The operation ran to its end (a response read, or a handshake-only close): its latency
    /// is meaningful.
    pub completed: bool,
}

/// What went wrong, kept as it came (formatted only for the first failure of each kind, which
/// the report shows as a sample): an error storm costs no string formatting.
#[derive(Debug)]
pub enum ErrorDetail {
    Static(&'static str),
    Status(u16),
    Io(std::io::Error),
    Handshake(certgate::tls::HandshakeError),
    Read(super::http::ReadError),
    /// An HTTP/2 failure: a reset, a GOAWAY, a protocol error or the connection lost.
    H2(String),
}

impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorDetail::Static(s) => f.write_str(s),
            ErrorDetail::Status(code) => write!(f, "HTTP status {code}"),
            ErrorDetail::Io(e) => e.fmt(f),
            ErrorDetail::Handshake(e) => e.fmt(f),
            ErrorDetail::Read(e) => e.fmt(f),
            ErrorDetail::H2(e) => write!(f, "HTTP/2: {e}"),
        }
    }
}

/// Counters and latencies of one thread, or of the whole run once merged.
#[derive(Debug, Clone)]
pub struct Stats {
    pub ops: u64,
    pub ok: u64,
    pub errors: [u64; ErrorKind::ALL.len()],
    pub handshakes: u64,
    pub resumed: u64,
    /// Latency in microseconds of successful operations (a refusal is often much faster than
    /// the real work and would flatter the percentiles).
    pub latency: Histogram<u64>,
    /// The first failure of each kind, for diagnosis.
    pub samples: [Option<String>; ErrorKind::ALL.len()],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ops: 0,
            ok: 0,
            errors: [0; ErrorKind::ALL.len()],
            handshakes: 0,
            resumed: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            samples: Default::default(),
        }
    }
}

impl Stats {
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.ops += 1;
        self.handshakes += u64::from(outcome.handshakes);
        self.resumed += u64::from(outcome.resumed);
        if outcome.completed && outcome.error.is_none() {
            let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latency.saturating_record(us.max(1));
        }
        match outcome.error {
            None => self.ok += 1,
            Some((kind, detail)) => {
                let i = kind as usize;
                self.errors[i] += 1;
                if self.samples[i].is_none() {
                    self.samples[i] = Some(detail.to_string());
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.ops += other.ops;
        self.ok += other.ok;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (a, b) in self.samples.iter_mut().zip(&other.samples) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub mode: &'static str,
    pub handshake_only: bool,
    /// `h1` or `h2`.
    pub protocol: &'static str,
    pub connections: usize,
    /// Concurrent requests per connection (HTTP/2 streams; 1 for HTTP/1.1).
    pub streams: usize,
    pub threads: usize,
    pub rate: Option<f64>,
    /// The measured time: from the end of the warm-up to the last completion (`--count`) or
    /// the end of `--duration`.
    pub elapsed: Duration,
    pub stats: Stats,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Report {
    pub fn ops_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// Resumed handshakes over all handshakes of the measured operations.
    pub fn resumption_ratio(&self) -> f64 {
        if self.stats.handshakes == 0 {
            0.0
        } else {
            self.stats.resumed as f64 / self.stats.handshakes as f64
        }
    }

    /// Percentiles of the successful operations; `None` when none succeeded.
    pub fn latency(&self) -> Option<Latency> {
        let h = &self.stats.latency;
        if h.is_empty() {
            return None;
        }
        Some(Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }

    /// What the operations counted.
    pub fn unit(&self) -> &'static str {
        match self.mode {
            "keepalive" => "requests",
            _ => "handshakes",
        }
    }

    pub fn to_json(&self) -> Value {
        let mut errors = Map::new();
        for kind in ErrorKind::ALL {
            errors.insert(kind.name().into(), self.stats.errors[kind as usize].into());
        }
        let latency = self.latency().map(
            |l| json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max}),
        );
        json!({
            "mode": self.mode,
            "handshake_only": self.handshake_only,
            "protocol": self.protocol,
            "connections": self.connections,
            "streams": self.streams,
            "threads": self.threads,
            "rate": self.rate,
            "duration_s": self.elapsed.as_secs_f64(),
            "ops": self.stats.ops,
            "ops_per_s": self.ops_per_s(),
            "ok": self.stats.ok,
            "errors": errors,
            "handshakes": self.stats.handshakes,
            "resumed": self.stats.resumed,
            "resumption_ratio": self.resumption_ratio(),
            "latency_us": latency,
        })
    }

    pub fn human(&self) -> String {
        let mut o = String::new();
        let s = &self.stats;
        let loop_kind = match self.rate {
            Some(r) => format!("open loop at {r}/s"),
            None => "closed loop".into(),
        };
        let streams = match self.protocol {
            "h2" => format!(" over HTTP/2, {} streams each,", self.streams),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "mode {}{}, {} connections{streams} on {} thread(s), {}, {:.2} s measured",
            self.mode,
            if self.handshake_only {
                " (handshake only)"
            } else {
                ""
            },
            self.connections,
            self.threads,
            loop_kind,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            o,
            "  {:<10} {:>10}   {:.1} {}/s",
            "operations",
            s.ops,
            self.ops_per_s(),
            self.unit()
        );
        let _ = writeln!(o, "  {:<10} {:>10}", "ok", s.ok);
        let _ = writeln!(o, "  {:<10} {:>10}", "errors", s.error_total());
        for kind in ErrorKind::ALL {
            let n = s.errors[kind as usize];
            if n > 0 {
                let sample = s.samples[kind as usize].as_deref().unwrap_or_default();
                let _ = writeln!(o, "    {:<20} {:>8}   e.g. {sample}", kind.name(), n);
            }
        }
        let _ = writeln!(
            o,
            "  {:<10} {:>10}   of {} handshakes ({:.1}%)",
            "resumed",
            s.resumed,
            s.handshakes,
            100.0 * self.resumption_ratio()
        );
        match self.latency() {
            Some(l) => {
                let _ = writeln!(
                    o,
                    "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                    l.p50, l.p90, l.p99, l.p999, l.max
                );
            }
            None => {
                let _ = writeln!(o, "  latency    no successful operation");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stats: Stats) -> Report {
        Report {
            mode: "resume",
            handshake_only: false,
            protocol: "h1",
            connections: 4,
            streams: 1,
            threads: 2,
            rate: None,
            elapsed: Duration::from_secs(2),
            stats,
        }
    }

    #[test]
    fn records_merge_and_serialise() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 1..=100u64 {
            let outcome = Outcome {
                handshakes: 1,
                resumed: u32::from(i % 4 != 0),
                completed: true,
                error: (i % 10 == 0).then_some((ErrorKind::HttpStatus, ErrorDetail::Status(400))),
            };
            let target = if i % 2 == 0 { &mut a } else { &mut b };
            target.record(outcome, Duration::from_micros(i * 10));
        }
        b.record(
            Outcome {
                error: Some((ErrorKind::Timeout, ErrorDetail::Static("timed out"))),
                ..Outcome::default()
            },
            Duration::from_secs(5),
        );
        a.merge(&b);
        let r = report(a);
        assert_eq!(r.stats.ops, 101);
        assert_eq!(r.stats.ok, 90);
        assert_eq!(r.stats.error_total(), 11);
        assert_eq!(r.ops_per_s(), 50.5);
        let v = r.to_json();
        assert_eq!(v["ops"], 101);
        assert_eq!(v["errors"]["http_status_non_2xx"], 10);
        assert_eq!(v["errors"]["timeout"], 1);
        assert_eq!(v["errors"]["connect"], 0);
        assert_eq!(v["resumed"], 75);
        assert_eq!(v["resumption_ratio"], 0.75);
        // Neither the timed-out operation nor the refused ones (every tenth, the slowest of
        // each ten) count: max is the slowest successful response.
        assert_eq!(v["latency_us"]["max"], 990);
        let p50 = v["latency_us"]["p50"].as_u64().unwrap();
        assert!((485..=495).contains(&p50), "{p50}");
        let text = r.human();
        assert!(text.contains("e.g. HTTP status 400"), "{text}");
        assert!(text.contains("e.g. timed out"), "{text}");
    }

    #[test]
    fn empty_run_has_zeros() {
        let r = report(Stats::default());
        assert_eq!(r.latency(), None);
        assert_eq!(r.resumption_ratio(), 0.0);
        assert!(r.to_json()["latency_us"].is_null());
    }

    #[test]
    fn failed_operations_have_no_latency() {
        let mut s = Stats::default();
        for _ in 0..5 {
            let outcome = Outcome {
                handshakes: 1,
                completed: true,
                error: Some((ErrorKind::HttpStatus, ErrorDetail::Status(403))),
                ..Outcome::default()
            };
            s.record(outcome, Duration::from_micros(70));
        }
        let r = report(s);
        assert_eq!(r.latency(), None);
        assert!(
            r.human().contains("no successful operation"),
            "{}",
            r.human()
        );
    }
}
