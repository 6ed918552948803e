//! Metrics: per-worker counters, merged on scrape into the OpenMetrics text exposition that
//! Prometheus scrapes (`prometheus-client` encodes it; nothing is hand-formatted).
//!
//! Each worker owns its [`WorkerStats`]: plain atomics that only that worker's thread writes
//! (a `Relaxed` load and store, no read-modify-write, so no cache line is contended on the
//! request path). The admin thread reads them with `Relaxed` loads when scraped and sums the
//! workers. Process-wide values that change rarely (ticket key rotations, CRL loads, draining)
//! live in the [`global`] state. Labels are bounded: listener, upstream and server names as
//! configured, and fixed enumerations; never a DN, a path or a peer address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::proxy::identity::{Forbidden, Refusal};
use crate::tls::stream::Alert;
use crate::tls::HandshakeError;

/// A counter (or gauge) written by one thread only.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` (wrapping: a gauge goes down by adding `n.wrapping_neg()`).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtracts one (gauges).
    #[inline]
    pub fn dec(&self) {
        self.add(u64::MAX);
    }

    /// Sets the value (gauges).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds (seconds) of the duration histograms' buckets; the last bucket is +Inf.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A duration histogram written by one thread.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; BUCKETS.len() + 1],
    sum_micros: Counter,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].inc();
        self.sum_micros
            .add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
}

/// TLS versions, as labelled.
pub const VERSIONS: [&str; 3] = ["TLSv1.2", "TLSv1.3", "other"];

/// Why a handshake failed, as labelled.
pub const HANDSHAKE_FAILURES: [&str; 8] = [
    "no_certificate",
    "unknown_ca",
    "expired",
    "revoked",
    "bad_certificate",
    "timeout",
    "protocol_error",
    "closed",
];

/// Client-auth outcomes, as labelled.
pub const AUTH_OUTCOMES: [&str; 8] = [
    "admitted",
    "no_certificate",
    "certificate_error",
    "forbidden_no_certificate",
    "forbidden_subject",
    "forbidden_issuer",
    "forbidden_san",
    "forbidden_fingerprint",
];

/// Status classes, as labelled (`none`: the client got no response).
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// One listener's counters in one worker.
#[derive(Debug, Default)]
pub struct ListenerStats {
    accepted: Counter,
    active: Counter,
    /// By version, then full (0) or resumed (1).
    handshakes: [[Counter; 2]; VERSIONS.len()],
    handshake_failures: [Counter; HANDSHAKE_FAILURES.len()],
    client_auth: [Counter; AUTH_OUTCOMES.len()],
    requests: [Counter; STATUS_CLASSES.len()],
    handshake_seconds: Histogram,
    request_seconds: Histogram,
}

impl ListenerStats {
    /// A connection was accepted; it counts as active until `closed`.
    pub fn accepted(&self) {
        self.accepted.inc();
        self.active.inc();
    }

    /// An accepted connection ended.
    pub fn closed(&self) {
        self.active.dec();
    }

    /// A handshake succeeded.
    pub fn handshake(&self, version: &str, resumed: bool, took: Duration) {
        let v = match version {
            "TLSv1.2" => 0,
            "TLSv1.3" => 1,
            _ => 2,
        };
        self.handshakes[v][usize::from(resumed)].inc();
        self.handshake_seconds.observe(took);
    }

    /// A handshake failed (`None`: timed out).
    pub fn handshake_failed(&self, e: Option<&HandshakeError>) {
        self.handshake_failures[handshake_failure(e)].inc();
    }

    /// The client-auth verdict of a connection.
    pub fn client_auth(&self, refusal: Option<&Refusal>) {
        let i = match refusal {
            None => 0,
            Some(Refusal::NoCert) => 1,
            Some(Refusal::CertError(_)) => 2,
            Some(Refusal::Forbidden(Forbidden::NoCert)) => 3,
            Some(Refusal::Forbidden(Forbidden::Rule(r))) => match r {
                crate::identity::Refuse::Subject => 4,
                crate::identity::Refuse::Issuer => 5,
                crate::identity::Refuse::San => 6,
                crate::identity::Refuse::Fingerprint => 7,
                crate::identity::Refuse::Unverified => 2,
            },
        };
        self.client_auth[i].inc();
    }

    /// A request ended with `status` (0: no response) after `took`.
    pub fn request(&self, status: u16, took: Duration) {
        let i = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.requests[i].inc();
        self.request_seconds.observe(took);
    }
}

/// The index in [`HANDSHAKE_FAILURES`] of a failed handshake (`None`: timed out).
fn handshake_failure(e: Option<&HandshakeError>) -> usize {
    match e {
        None => 5,
        Some(HandshakeError::Closed | HandshakeError::Eof | HandshakeError::Io(_)) => 7,
        Some(HandshakeError::Tls(_, alert, _)) => match alert {
            // certificate_required (TLS 1.3) or no_certificate.
            Some(Alert::Sent(116 | 41)) => 0,
            Some(Alert::Sent(48)) => 1,
            Some(Alert::Sent(45)) => 2,
            Some(Alert::Sent(44)) => 3,
            Some(Alert::Sent(42 | 43 | 46)) => 4,
            _ => 6,
        },
    }
}

/// One upstream server's counters in one worker.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Requests sent to the server (each attempt).
    pub requests: Counter,
    /// Connections that could not be made.
    pub connect_failures: Counter,
    /// Attempts that failed and were tried again (on this or another server).
    pub retries: Counter,
    /// Idle pooled connections held now.
    pub idle: Counter,
}

/// Everything one worker counts. Only that worker's thread writes it.
#[derive(Debug)]
pub struct WorkerStats {
    listeners: Box<[ListenerStats]>,
    servers: Mutex<Vec<(String, SocketAddr, Arc<ServerStats>)>>,
}

impl WorkerStats {
    /// The counters of listener `index` (listeners keep their order across reloads); `None`
    /// out of range.
    pub fn listener(&self, index: usize) -> Option<&ListenerStats> {
        self.listeners.get(index)
    }

    /// The counters of server `addr` of upstream `upstream`, kept across reloads. Called when a
    /// worker builds its pools (at start and after a reload), never per request.
    pub fn server(&self, upstream: &str, addr: SocketAddr) -> Arc<ServerStats> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, s)) = servers.iter().find(|(u, a, _)| u == upstream && *a == addr) {
            return s.clone();
        }
        let s = Arc::new(ServerStats::default());
        servers.push((upstream.to_owned(), addr, s.clone()));
        s
    }
}

/// One CRL file's state, reported by whoever loads CRLs through [`crl_loaded`].
#[derive(Debug, Clone)]
struct CrlState {
    listener: String,
    file: String,
    next_update: Option<i64>,
    last_load: Option<i64>,
    errors: u64,
}

/// The process's metrics state.
pub struct Global {
    workers: Mutex<Vec<Arc<WorkerStats>>>,
    config: ArcSwapOption<Config>,
    listening: AtomicUsize,
    draining: AtomicBool,
    ticket_rotations: AtomicU64,
    crls: Mutex<Vec<CrlState>>,
    verify_cache: Mutex<Vec<Arc<[Counter; 2]>>>,
}

/// The process's metrics state.
pub fn global() -> &'static Global {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    GLOBAL.get_or_init(|| Global {
        workers: Mutex::new(Vec::new()),
        config: ArcSwapOption::empty(),
        listening: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
        ticket_rotations: AtomicU64::new(0),
        crls: Mutex::new(Vec::new()),
        verify_cache: Mutex::new(Vec::new()),
    })
}

/// The counters of worker `id` (the same across reloads); records `config` as the one in
/// force, for the labels and gauges read at scrape. Called when a worker takes a configuration.
pub fn worker(id: usize, config: &Arc<Config>) -> Arc<WorkerStats> {
    let g = global();
    g.config.store(Some(config.clone()));
    let mut workers = g.workers.lock().unwrap_or_else(|p| p.into_inner());
    while workers.len() <= id {
        workers.push(Arc::new(WorkerStats {
            listeners: (0..config.listeners.len())
                .map(|_| ListenerStats::default())
                .collect(),
            servers: Mutex::new(Vec::new()),
        }));
    }
    workers[id].clone()
}

/// A worker listens on all its sockets: `/ready` answers 200 once every worker did.
pub fn worker_listening() {
    global().listening.fetch_add(1, Relaxed);
}

/// The process is draining: `/ready` answers 503 from now on. For the shutdown path.
pub fn set_draining() {
    global().draining.store(true, Relaxed);
}

/// Whether every worker listens and the process is not draining.
pub fn ready() -> bool {
    let g = global();
    let workers = g
        .config
        .load()
        .as_ref()
        .map_or(usize::MAX, |c| c.runtime.workers);
    !g.draining.load(Relaxed) && g.listening.load(Relaxed) >= workers
}

thread_local! {
    /// This thread's verified-chain cache hits and misses, registered in [`Global`] at first use.
    static VERIFY_CACHE: Arc<[Counter; 2]> = {
        let c = Arc::new([Counter::default(), Counter::default()]);
        global()
            .verify_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c.clone());
        c
    };
}

/// A verified-chain cache lookup (`hit` or miss), counted by the calling thread.
pub fn verify_cache(hit: bool) {
    VERIFY_CACHE.with(|c| c[usize::from(!hit)].inc());
}

/// A ticket key was rotated.
pub fn ticket_key_rotated() {
    global().ticket_rotations.fetch_add(1, Relaxed);
}

/// The hook for CRL loading: call after every attempt to load CRL file `file` (its name as
/// configured, a bounded label) of listener (or upstream) `listener`. `Ok(next_update)` is a
/// successful load with the CRL's nextUpdate (Unix seconds, if it has one); `Err(())` a failed
/// one (the previous list stays in force). Exposed as `certgate_crl_next_update_seconds`,
/// `certgate_crl_last_load_seconds` and `certgate_crl_load_errors_total`.
#[allow(clippy::result_unit_err)]
pub fn crl_loaded(listener: &str, file: &str, result: Result<Option<i64>, ()>) {
    let mut crls = global().crls.lock().unwrap_or_else(|p| p.into_inner());
    let i = match crls
        .iter()
        .position(|c| c.listener == listener && c.file == file)
    {
        Some(i) => i,
        None => {
            crls.push(CrlState {
                listener: listener.to_owned(),
                file: file.to_owned(),
                next_update: None,
                last_load: None,
                errors: 0,
            });
            crls.len() - 1
        }
    };
    let c = &mut crls[i];
    match result {
        Ok(next) => {
            c.next_update = next;
            c.last_load = Some(unix_now());
        }
        Err(()) => c.errors += 1,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

type Labels = Vec<(&'static str, String)>;

/// One metric's merged values, encoded by prometheus-client.
#[derive(Debug)]
struct Series {
    kind: MetricType,
    rows: Vec<(Labels, Value)>,
}

#[derive(Debug)]
enum Value {
    Int(u64),
    Gauge(i64),
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

impl Series {
    fn new(kind: MetricType) -> Self {
        Self {
            kind,
            rows: Vec::new(),
        }
    }

    fn add(&mut self, labels: Labels, v: Value) {
        self.rows.push((labels, v));
    }
}

impl EncodeMetric for Series {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.rows {
            let mut e = encoder.encode_family(labels)?;
            match v {
                Value::Int(n) if self.kind == MetricType::Counter => {
                    e.encode_counter::<NoLabelSet, _, u64>(n, None)?
                }
                Value::Int(n) => e.encode_gauge(&i64::try_from(*n).unwrap_or(i64::MAX))?,
                Value::Gauge(n) => e.encode_gauge(n)?,
                Value::Histogram {
                    sum,
                    count,
                    buckets,
                } => e.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

fn sum<'a>(stats: impl Iterator<Item = &'a Counter>) -> u64 {
    stats.fold(0u64, |a, c| a.wrapping_add(c.get()))
}

fn histogram<'a>(hs: impl Iterator<Item = &'a Histogram> + Clone) -> Value {
    let mut buckets: Vec<(f64, u64)> = BUCKETS
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .map(|b| (b, 0))
        .collect();
    let mut sum_micros = 0u64;
    for h in hs {
        for (b, c) in buckets.iter_mut().zip(&h.buckets) {
            b.1 += c.get();
        }
        sum_micros = sum_micros.wrapping_add(h.sum_micros.get());
    }
    let count = buckets.iter().map(|b| b.1).sum();
    Value::Histogram {
        sum: sum_micros as f64 / 1e6,
        count,
        buckets,
    }
}

/// The Prometheus text exposition of every metric, the workers merged.
pub fn render() -> String {
    let g = global();
    let workers: Vec<Arc<WorkerStats>> =
        g.workers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let config = g.config.load_full();
    let mut registry = Registry::with_prefix("certgate");

    let listener_names: Vec<String> = match &config {
        Some(c) => c.listeners.iter().map(|l| l.name.clone()).collect(),
        None => Vec::new(),
    };
    let mut accepted = Series::new(MetricType::Counter);
    let mut active = Series::new(MetricType::Gauge);
    let mut handshakes = Series::new(MetricType::Counter);
    let mut failures = Series::new(MetricType::Counter);
    let mut auth = Series::new(MetricType::Counter);
    let mut requests = Series::new(MetricType::Counter);
    let mut hs_seconds = Series::new(MetricType::Histogram);
    let mut req_seconds = Series::new(MetricType::Histogram);
    for (i, name) in listener_names.iter().enumerate() {
        let ls: Vec<&ListenerStats> = workers.iter().filter_map(|w| w.listener(i)).collect();
        let l = || vec![("listener", name.clone())];
        accepted.add(l(), Value::Int(sum(ls.iter().map(|s| &s.accepted))));
        active.add(l(), Value::Gauge(sum(ls.iter().map(|s| &s.active)) as i64));
        for (v, version) in VERSIONS.iter().enumerate() {
            for (r, result) in ["full", "resumed"].iter().enumerate() {
                let mut labels = l();
                labels.push(("version", (*version).to_owned()));
                labels.push(("result", (*result).to_owned()));
                handshakes.add(
                    labels,
                    Value::Int(sum(ls.iter().map(|s| &s.handshakes[v][r]))),
                );
            }
        }
        for (r, reason) in HANDSHAKE_FAILURES.iter().enumerate() {
            let mut labels = l();
            labels.push(("reason", (*reason).to_owned()));
            failures.add(
                labels,
                Value::Int(sum(ls.iter().map(|s| &s.handshake_failures[r]))),
            );
        }
        for (o, outcome) in AUTH_OUTCOMES.iter().enumerate() {
            let mut labels = l();
            labels.push(("outcome", (*outcome).to_owned()));
            auth.add(
                labels,
                Value::Int(sum(ls.iter().map(|s| &s.client_auth[o]))),
            );
        }
        for (c, class) in STATUS_CLASSES.iter().enumerate() {
            let mut labels = l();
            labels.push(("class", (*class).to_owned()));
            requests.add(labels, Value::Int(sum(ls.iter().map(|s| &s.requests[c]))));
        }
        hs_seconds.add(l(), histogram(ls.iter().map(|s| &s.handshake_seconds)));
        req_seconds.add(l(), histogram(ls.iter().map(|s| &s.request_seconds)));
    }
    registry.register("connections_accepted", "Connections accepted", accepted);
    registry.register("connections_active", "Connections open now", active);
    registry.register(
        "tls_handshakes",
        "Completed TLS handshakes by version and result (full or resumed)",
        handshakes,
    );
    registry.register(
        "tls_handshake_failures",
        "Failed TLS handshakes by reason",
        failures,
    );
    registry.register(
        "client_auth",
        "Client-certificate verdicts by outcome (one per connection that sent a request)",
        auth,
    );
    registry.register("requests", "Requests by status class", requests);
    registry.register(
        "tls_handshake_duration_seconds",
        "Duration of successful TLS handshakes",
        hs_seconds,
    );
    registry.register(
        "request_duration_seconds",
        "Duration of forwarded requests, from request head to end of response",
        req_seconds,
    );

    // Upstream servers, merged over workers by (upstream, server).
    let mut servers: Vec<(String, SocketAddr, [u64; 4])> = Vec::new();
    for w in &workers {
        for (u, a, s) in w.servers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let v = [
                s.requests.get(),
                s.connect_failures.get(),
                s.retries.get(),
                s.idle.get(),
            ];
            match servers.iter_mut().find(|(su, sa, _)| su == u && sa == a) {
                Some((_, _, t)) => {
                    for (t, v) in t.iter_mut().zip(v) {
                        *t = t.wrapping_add(v);
                    }
                }
                None => servers.push((u.clone(), *a, v)),
            }
        }
    }
    let mut up_requests = Series::new(MetricType::Counter);
    let mut up_connect = Series::new(MetricType::Counter);
    let mut up_retries = Series::new(MetricType::Counter);
    let mut up_idle = Series::new(MetricType::Gauge);
    for (u, a, v) in &servers {
        let l = || vec![("upstream", u.clone()), ("server", a.to_string())];
        up_requests.add(l(), Value::Int(v[0]));
        up_connect.add(l(), Value::Int(v[1]));
        up_retries.add(l(), Value::Int(v[2]));
        up_idle.add(l(), Value::Gauge(v[3] as i64));
    }
    registry.register(
        "upstream_requests",
        "Attempts sent to upstream servers",
        up_requests,
    );
    registry.register(
        "upstream_connect_failures",
        "Connections to upstream servers that could not be made",
        up_connect,
    );
    registry.register(
        "upstream_retries",
        "Failed attempts that were tried again",
        up_retries,
    );
    registry.register(
        "upstream_idle_connections",
        "Idle pooled connections to upstream servers",
        up_idle,
    );

    let mut healthy = Series::new(MetricType::Gauge);
    let mut not_after = Series::new(MetricType::Gauge);
    let mut staple_until = Series::new(MetricType::Gauge);
    if let Some(c) = &config {
        let now = crate::upstream::health::now();
        for u in &c.upstreams {
            for (i, s) in u.servers.iter().enumerate() {
                let h = &u.health[i];
                let up = !h.active_down() && !h.passive_down(now, s.max_fails, s.fail_timeout);
                healthy.add(
                    vec![("upstream", u.name.clone()), ("server", s.addr.to_string())],
                    Value::Gauge(i64::from(up)),
                );
            }
        }
        for l in &c.listeners {
            if let Some(t) = l.tls.as_ref().and_then(|ctx| cert_not_after(ctx)) {
                not_after.add(vec![("listener", l.name.clone())], Value::Gauge(t));
            }
            let stapler = l.tls.as_deref().and_then(crate::tls::ocsp::of);
            if let Some(s) = stapler.and_then(|o| o.current()) {
                staple_until.add(
                    vec![("listener", l.name.clone())],
                    Value::Gauge(s.next_update),
                );
            }
            for b in &l.sni {
                if let Some(t) = b.tls.as_ref().and_then(|ctx| cert_not_after(ctx)) {
                    let labels = vec![("listener", l.name.clone()), ("sni", b.sni_label.clone())];
                    not_after.add(labels, Value::Gauge(t));
                }
                let stapler = b.tls.as_deref().and_then(crate::tls::ocsp::of);
                if let Some(s) = stapler.and_then(|o| o.current()) {
                    let labels = vec![("listener", l.name.clone()), ("sni", b.sni_label.clone())];
                    staple_until.add(labels, Value::Gauge(s.next_update));
                }
            }
        }
    }
    registry.register(
        "upstream_server_up",
        "1 while the server is considered healthy, 0 while marked down",
        healthy,
    );
    registry.register(
        "server_certificate_not_after_seconds",
        "notAfter of the listener's server certificate, and of each SNI block's (Unix time)",
        not_after,
    );
    registry.register(
        "ocsp_staple_next_update_seconds",
        "nextUpdate of the OCSP response the listener staples (Unix time); absent while none is",
        staple_until,
    );

    let mut rotations = Series::new(MetricType::Counter);
    rotations.add(Vec::new(), Value::Int(g.ticket_rotations.load(Relaxed)));
    registry.register(
        "ticket_key_rotations",
        "Session ticket key rotations",
        rotations,
    );

    let caches = g
        .verify_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut cache = Series::new(MetricType::Counter);
    for (i, result) in ["hit", "miss"].iter().enumerate() {
        cache.add(
            vec![("result", (*result).to_owned())],
            Value::Int(sum(caches.iter().map(|c| &c[i]))),
        );
    }
    registry.register(
        "verify_cache_lookups",
        "Verified-chain cache lookups by result (hit: the chain verified before)",
        cache,
    );

    let mut crls = g.crls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // The CRL sets of the configuration in force report their files' state themselves.
    if let Some(config) = g.config.load_full() {
        let listeners = config
            .listeners
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.crls.clone()?)));
        let upstreams = config
            .upstreams
            .iter()
            .filter_map(|u| Some((u.name.clone(), u.tls.as_ref()?.crls()?.clone())));
        for (owner, set) in listeners.chain(upstreams) {
            for f in set.status() {
                crls.push(CrlState {
                    listener: owner.clone(),
                    file: f.path.display().to_string(),
                    next_update: f.next_update,
                    last_load: f
                        .loaded
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .and_then(|d| i64::try_from(d.as_secs()).ok()),
                    errors: f.errors,
                });
            }
        }
    }
    let mut next_update = Series::new(MetricType::Gauge);
    let mut last_load = Series::new(MetricType::Gauge);
    let mut crl_errors = Series::new(MetricType::Counter);
    for c in &crls {
        let l = || vec![("listener", c.listener.clone()), ("file", c.file.clone())];
        if let Some(t) = c.next_update {
            next_update.add(l(), Value::Gauge(t));
        }
        if let Some(t) = c.last_load {
            last_load.add(l(), Value::Gauge(t));
        }
        crl_errors.add(l(), Value::Int(c.errors));
    }
    registry.register(
        "crl_next_update_seconds",
        "nextUpdate of the CRL in force (Unix time)",
        next_update,
    );
    registry.register(
        "crl_last_load_seconds",
        "Time of the last successful load of the CRL file (Unix time)",
        last_load,
    );
    registry.register(
        "crl_load_errors",
        "Failed loads of the CRL file",
        crl_errors,
    );

    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// The notAfter of a context's certificate, in Unix seconds.
fn cert_not_after(ctx: &boring::ssl::SslContextRef) -> Option<i64> {
    let cert = ctx.certificate()?;
    let epoch = boring::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_single_writer_and_wrap_as_gauges() {
        let c = Counter::default();
        c.inc();
        c.inc();
        c.dec();
        assert_eq!(c.get(), 1);
        c.dec();
        c.dec();
        assert_eq!(c.get() as i64, -1);
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let Value::Histogram {
            count,
            buckets,
            sum,
        } = histogram([&h].into_iter())
        else {
            panic!("not a histogram");
        };
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.001, 1));
        assert_eq!(buckets[2], (0.005, 1));
        assert_eq!(buckets[BUCKETS.len()], (f64::INFINITY, 1));
        assert!((sum - 60.0035).abs() < 1e-6);
    }

    #[test]
    fn ticket_rotations_and_crl_loads_reach_the_exposition() {
        let keys = crate::tls::TicketKeys::rotating(Duration::from_secs(3600));
        let before = global().ticket_rotations.load(Relaxed);
        keys.rotate();
        assert_eq!(global().ticket_rotations.load(Relaxed), before + 1);
        crl_loaded("edge", "int1.crl", Ok(Some(1_900_000_000)));
        crl_loaded("edge", "int1.crl", Err(()));
        let text = render();
        assert!(
            text.contains(
                "certgate_crl_next_update_seconds{listener=\"edge\",file=\"int1.crl\"} 1900000000"
            ),
            "{text}"
        );
        assert!(
            text.contains("certgate_crl_load_errors_total{listener=\"edge\",file=\"int1.crl\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("certgate_ticket_key_rotations_total "),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn status_classes_and_handshake_failures() {
        let l = ListenerStats::default();
        l.request(204, Duration::ZERO);
        l.request(503, Duration::ZERO);
        l.request(0, Duration::ZERO);
        assert_eq!(l.requests[1].get(), 1);
        assert_eq!(l.requests[4].get(), 1);
        assert_eq!(l.requests[5].get(), 1);
        assert_eq!(HANDSHAKE_FAILURES[handshake_failure(None)], "timeout");
        assert_eq!(
            HANDSHAKE_FAILURES[handshake_failure(Some(&HandshakeError::Eof))],
            "closed"
        );
    }
}
