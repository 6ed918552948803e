//! Upstream servers as one worker sees them: which server takes the next request (`balance`,
//! with this worker's balancing state), and the idle keep-alive connections this worker keeps to
//! each. Only server health (`health`: failure counts, active-check verdicts) is shared between
//! workers, through atomics in the configuration's `Upstream`.

pub mod balance;
pub mod h2;
pub mod health;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;

use self::balance::{Active, Avail, Balancer, Key, Tried};
use crate::config::{Server, Upstream};
use crate::conn::Conn;
use crate::io::Socket;
use crate::metrics::{ServerStats, WorkerStats};
use crate::tls::{HandshakeError, TlsStream, UpstreamTls};

/// An idle connection older than this is closed rather than reused: servers commonly close
/// idle keep-alive connections after 60 s or more, and racing them costs a retry.
const POOL_IDLE_MAX: Duration = Duration::from_secs(30);

/// Why no connection to an upstream server could be had. All but `Setup` are the server's side.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connect failed (refused, unreachable...).
    Refused(io::Error),
    /// The TCP connect and the TLS handshake did not finish within `upstream_connect`.
    Timeout,
    /// The TLS handshake with the upstream failed (untrusted certificate, wrong name...).
    Tls(HandshakeError),
    /// certgate could not set up the connection's TLS (its own side).
    Setup(boring::error::ErrorStack),
    /// `protocol = "h2"` over TLS: the server's handshake did not select ALPN `h2`.
    NoH2,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "connect failed: {e}"),
            Self::Timeout => f.write_str("connect timed out"),
            Self::Tls(e) => write!(f, "upstream TLS failed: {}", e.cause("server")),
            Self::Setup(e) => write!(f, "cannot set up upstream TLS: {e}"),
            Self::NoH2 => f.write_str(
                "the server did not select ALPN h2 (protocol = \"h2\"): it does not speak \
                 HTTP/2 over TLS; enable HTTP/2 on it, or write protocol = \"http1\"",
            ),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Refused(e) => Some(e),
            Self::Timeout | Self::NoH2 => None,
            Self::Tls(e) => Some(e),
            Self::Setup(e) => Some(e),
        }
    }
}

/// A connection checked out of the pool or newly made.
pub struct UpstreamConn {
    /// The connection, plain or TLS.
    pub conn: Conn,
    /// The server it is connected to.
    pub addr: SocketAddr,
    /// Came from the pool: the server may have closed it meanwhile, so a failure before any
    /// response byte may be retried on a fresh connection.
    pub reused: bool,
}

/// One worker's view of one upstream.
pub struct Pool {
    upstream: Arc<Upstream>,
    balancer: Balancer,
    /// Idle connections to each server, with when they went idle (coarse clock).
    idle: RefCell<HashMap<SocketAddr, Vec<(Conn, Duration)>>>,
    /// This worker's counters of each server, same order as the servers.
    stats: Vec<Arc<ServerStats>>,
    /// `protocol = "h2"`: this worker's multiplexed connections to each server.
    h2: h2::Conns,
}

impl Pool {
    /// An empty pool for `upstream`, with its balancer.
    pub fn new(upstream: Arc<Upstream>) -> Self {
        let stats = upstream
            .servers
            .iter()
            .map(|_| Arc::new(ServerStats::default()))
            .collect();
        Self::with_stats(upstream, stats)
    }

    /// An empty pool for `upstream` counting into the worker's metrics.
    pub fn with_metrics(upstream: Arc<Upstream>, metrics: &WorkerStats) -> Self {
        let stats = upstream
            .servers
            .iter()
            .map(|s| metrics.server(&upstream.name, s.addr))
            .collect();
        Self::with_stats(upstream, stats)
    }

    fn with_stats(upstream: Arc<Upstream>, stats: Vec<Arc<ServerStats>>) -> Self {
        Self {
            balancer: Balancer::new(&upstream.servers, upstream.balance),
            upstream,
            idle: RefCell::new(HashMap::new()),
            stats,
            h2: h2::Conns::default(),
        }
    }

    /// The upstream this pool serves.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// `protocol = "h2"`: this worker's HTTP/2 connections to the servers.
    pub fn h2(&self) -> &h2::Conns {
        &self.h2
    }

    /// The counters of server `i`; `i` must be in range.
    pub fn stats(&self, i: usize) -> &ServerStats {
        &self.stats[i]
    }

    /// Publishes the idle count of `addr` to the metrics.
    fn count_idle(&self, addr: SocketAddr, n: usize) {
        if let Some(i) = self.upstream.servers.iter().position(|s| s.addr == addr) {
            self.stats[i].idle.set(n as u64);
        }
    }

    /// The upstream's name, for log lines.
    pub fn name(&self) -> &str {
        &self.upstream.name
    }

    /// The index of the server for the next try of a request: the balance method's choice
    /// among the servers not in `tried`, primaries before backups, healthy before down (all
    /// down: tried anyway, as nginx). None when every server has been tried.
    pub fn choose(&self, key: &Key, tried: &Tried) -> Option<usize> {
        // The clock is read only for a server with failures counted: without any, neither
        // the verdict nor the failure window depends on the time.
        let clock = std::cell::Cell::new(0);
        let now = || {
            if clock.get() == 0 {
                clock.set(health::now());
            }
            clock.get()
        };
        let (servers, health) = (&self.upstream.servers, &self.upstream.health);
        let choice = self.balancer.choose(key, tried, |i| {
            let h = &health[i];
            if h.active_down() {
                Avail::CheckFailed
            } else if h.fails() > 0
                && h.passive_down(now(), servers[i].max_fails, servers[i].fail_timeout)
            {
                Avail::Failed
            } else {
                Avail::Up
            }
        })?;
        let i = choice.index;
        if choice.despite_down {
            health[i].trial(now());
        } else if health[i].fails() > 0 {
            health[i].picked(now(), servers[i].fail_timeout);
        }
        Some(i)
    }

    /// The `client_hash` key of a client (the default key for the other methods: hashing it
    /// would be wasted).
    pub fn key(&self, fingerprint: Option<&str>, ip: std::net::IpAddr) -> Key {
        match self.upstream.balance {
            crate::config::Balance::ClientHash => Key::new(fingerprint, Some(ip)),
            _ => Key::default(),
        }
    }

    /// The `i`-th server of the upstream, as [`Balancer::choose`](balance::Balancer::choose)
    /// indexes them; `i` must be in range.
    pub fn server(&self, i: usize) -> &Server {
        &self.upstream.servers[i]
    }

    /// Tries a request gets (nginx `proxy_next_upstream_tries`).
    pub fn tries(&self) -> usize {
        self.upstream.tries
    }

    /// A request starts on server `i`; it counts for `least_conn` until the guard drops.
    pub fn begin(&self, i: usize) -> Active<'_> {
        self.balancer.begin(i)
    }

    /// Server `i` failed a request (connect error, reset or close before any response byte,
    /// timeout): counted against it for every worker.
    pub fn failed(&self, i: usize) {
        let s = &self.upstream.servers[i];
        self.balancer.failed(i);
        if self.upstream.health[i].failed(health::now(), s.max_fails) {
            tracing::warn!(
                upstream = %self.upstream.name,
                "server {} marked down for {:?} after {} failed request(s)",
                s.addr,
                s.fail_timeout,
                s.max_fails
            );
        }
    }

    /// Server `i` answered a request.
    pub fn succeeded(&self, i: usize) {
        self.upstream.health[i].succeeded();
    }

    /// Closes this worker's idle connections to `addr` (one was found closed by the server).
    pub fn discard_idle(&self, addr: SocketAddr) {
        self.idle.borrow_mut().remove(&addr);
        self.count_idle(addr, 0);
    }

    /// An idle connection to `addr` that is still usable, or a new one; with the time spent
    /// connecting (zero for a pooled connection, as nginx's `$upstream_connect_time`: no clock
    /// is read for a reuse).
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> (Result<UpstreamConn, ConnectError>, Duration) {
        if let Some(conn) = self.take_idle(addr) {
            let up = UpstreamConn {
                conn,
                addr,
                reused: true,
            };
            return (Ok(up), Duration::ZERO);
        }
        let host = self
            .upstream
            .servers
            .iter()
            .find(|s| s.addr == addr)
            .and_then(|s| s.host_name());
        let connecting = std::time::Instant::now();
        let conn = connect(addr, host, connect_timeout, self.upstream.tls.as_ref()).await;
        let took = connecting.elapsed();
        let up = conn.map(|conn| UpstreamConn {
            conn,
            addr,
            reused: false,
        });
        (up, took)
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        let mut found = None;
        let now = crate::clock::coarse();
        while let Some((mut conn, since)) = list.pop() {
            if now.saturating_sub(since) < POOL_IDLE_MAX && conn.is_reusable() {
                found = Some(conn);
                break;
            }
        }
        let n = list.len();
        drop(idle);
        self.count_idle(addr, n);
        found
    }

    /// Keeps a connection whose last response was read completely.
    pub fn checkin(&self, c: UpstreamConn) {
        if self.upstream.keepalive == 0 {
            return;
        }
        let mut conn = c.conn;
        conn.park_idle();
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(c.addr).or_default();
        if list.len() >= self.upstream.keepalive {
            // Drop the oldest: it is the likeliest to be closed by the server.
            list.remove(0);
        }
        list.push((conn, crate::clock::coarse()));
        let n = list.len();
        drop(idle);
        self.count_idle(c.addr, n);
    }

    /// Idle connections kept to `addr` (for tests and metrics).
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.borrow().get(&addr).map_or(0, Vec::len)
    }
}

/// Opens a connection to `addr`, with the upstream's TLS when it has one; the timeout covers
/// the TCP connect and the TLS handshake together.
///
/// `host` is the server's name as configured, when it has one: the SNI and verified name unless
/// `[upstream.tls] server_name` says otherwise.
pub async fn connect(
    addr: SocketAddr,
    host: Option<&str>,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> Result<Conn, ConnectError> {
    connect_as(addr, host, timeout, tls, false).await
}

/// [`connect`], offering ALPN `h2` alone over TLS when `h2` is set (and refusing a server that
/// does not select it, [`ConnectError::NoH2`]).
pub async fn connect_as(
    addr: SocketAddr,
    host: Option<&str>,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
    h2: bool,
) -> Result<Conn, ConnectError> {
    let deadline = monoio::time::Instant::now() + timeout;
    let stream = match monoio::time::timeout_at(deadline, TcpStream::connect_addr(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Refused(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let sock = Socket::new(stream).map_err(ConnectError::Refused)?;
    let Some(tls) = tls else {
        return Ok(Conn::Plain(sock));
    };
    let ssl = match h2 {
        true => tls.ssl_for_h2(addr, host),
        false => tls.ssl_for(addr, host),
    }
    .map_err(ConnectError::Setup)?;
    match monoio::time::timeout_at(deadline, TlsStream::connect(ssl, sock)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Ok(t)) if h2 && !UpstreamTls::selected_h2(t.ssl()) => Err(ConnectError::NoH2),
        Ok(Ok(t)) => Ok(Conn::Tls(Box::new(t))),
        Ok(Err(e)) => Err(ConnectError::Tls(e)),
    }
}
