//! The client side of a run: the TLS context, one thread's slots, and what an operation does.
//!
//! Everything here runs on a thread-per-core monoio runtime: a thread owns its slots (one task
//! each) and its [`Stats`]; the only state shared between threads is the read-only [`Client`]
//! (TLS context, plan) and the `--count` claim counter. Connections go through certgate's own
//! cancel-safe [`Socket`] and BoringSSL-on-monoio [`TlsStream`], so a timeout that drops an
//! operation mid-way is harmless, and the load generator exercises the same adapter the proxy
//! serves with.
//!
//! Sessions for `--mode resume` come from the new-session callback, the only way a TLS 1.3
//! client gets them (tickets arrive after the handshake): the callback leaves the newest session
//! in the slot's sink (found through the connection's ex-data), and the slot takes it when the
//! connection ends. The server certificate chain is verified once per distinct certificate
//! (see `verify`).

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use boring::error::ErrorStack;
use boring::ex_data::Index;
use boring::pkey::PKey;
use boring::ssl::{
    Ssl, SslConnector, SslMethod, SslSession, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use bytes::BytesMut;
use monoio::net::TcpStream;

use super::args::{Mode, Plan, Protocol, TlsVersion};
use super::h2::{self as h2load, H2Conn};
use super::http::{self, ReadError, Response};
use super::report::{ErrorDetail, ErrorKind, Outcome, Stats};
use super::verify::VerifiedLeaves;
use certgate::conn::Conn;
use certgate::io::Socket;
use certgate::tls::{HandshakeError, TlsStream};

/// What every thread shares: built once, read-only afterwards (but for the claim counter).
pub struct Client {
    pub plan: Plan,
    connector: SslConnector,
    session_slot: Index<Ssl, SessionSink>,
    /// Measured operations started so far, against `--count`.
    claimed: AtomicU64,
}

impl Client {
    /// Builds the TLS context; fails with a message naming the file at fault.
    pub fn new(plan: Plan) -> Result<Client, String> {
        let tls_err = |what: String| move |e: ErrorStack| format!("{what}: {e}");
        let mut b = SslConnector::builder(SslMethod::tls())
            .map_err(tls_err("creating the TLS context".into()))?;
        if let Some(ca) = &plan.ca {
            b.set_ca_file(ca)
                .map_err(tls_err(format!("--ca {}", ca.display())))?;
        }
        if plan.protocol == Protocol::H2 {
            // http/1.1 too, as h2load and browsers do: a server that speaks only HTTP/1.1 then
            // completes the handshake (instead of a no_application_protocol alert), and the
            // run reports plainly that it did not select h2.
            b.set_alpn_protos(b"\x02h2\x08http/1.1")
                .map_err(tls_err("setting ALPN h2".into()))?;
        }
        if let Some((cert, key)) = &plan.client_cert {
            b.set_certificate_chain_file(cert)
                .map_err(tls_err(format!("--cert {}", cert.display())))?;
            let pem = std::fs::read(key).map_err(|e| format!("--key {}: {e}", key.display()))?;
            let pkey = PKey::private_key_from_pem(&pem).map_err(tls_err(format!(
                "--key {}: not a PEM private key",
                key.display()
            )))?;
            b.set_private_key(&pkey)
                .and_then(|()| b.check_private_key())
                .map_err(|_| {
                    format!(
                        "--key {} does not match --cert {}",
                        key.display(),
                        cert.display()
                    )
                })?;
        }
        let leaves = VerifiedLeaves::default();
        b.set_custom_verify_callback(SslVerifyMode::PEER, move |ssl| leaves.verify(ssl));
        b.set_curves_list(&plan.groups)
            .map_err(tls_err(format!("--groups {}", plan.groups)))?;
        let (min, max) = match plan.tls_version {
            Some(TlsVersion::V12) => (SslVersion::TLS1_2, SslVersion::TLS1_2),
            Some(TlsVersion::V13) => (SslVersion::TLS1_3, SslVersion::TLS1_3),
            None => (SslVersion::TLS1_2, SslVersion::TLS1_3),
        };
        b.set_min_proto_version(Some(min))
            .and_then(|()| b.set_max_proto_version(Some(max)))
            .map_err(tls_err("setting the TLS versions".into()))?;
        let session_slot = session_index()?;
        if plan.mode == Mode::Resume {
            // Clients never look sessions up in BoringSSL's internal cache; the callback is
            // what "caching" means for a client.
            b.set_session_cache_mode(
                SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL,
            );
            b.set_new_session_callback(move |ssl, session| {
                // A server may send several tickets; the newest wins.
                if let Some(sink) = ssl.ex_data(session_slot) {
                    *lock(sink) = Some(session);
                }
            });
        }
        Ok(Client {
            plan,
            connector: b.build(),
            session_slot,
            claimed: AtomicU64::new(0),
        })
    }

    /// Takes one of the `--count` measured operations; false once they are all taken.
    fn claim(&self) -> bool {
        match self.plan.count {
            None => true,
            Some(n) => self.claimed.fetch_add(1, Ordering::Relaxed) < n,
        }
    }

    fn out_of_count(&self) -> bool {
        self.plan
            .count
            .is_some_and(|n| self.claimed.load(Ordering::Relaxed) >= n)
    }

    /// TCP connect and TLS handshake, offering `session` if given; new sessions the server
    /// hands out go to `sink`.
    async fn connect(
        &self,
        session: Option<&SslSession>,
        sink: Option<&SessionSink>,
        out: &mut Outcome,
    ) -> Result<TlsStream, (ErrorKind, ErrorDetail)> {
        let tcp = TcpStream::connect_addr(self.plan.addr)
            .await
            .map_err(|e| (ErrorKind::Connect, ErrorDetail::Io(e)))?;
        // Requests are written whole: Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let sock = Socket::new(tcp).map_err(|e| (ErrorKind::Connect, ErrorDetail::Io(e)))?;
        let mut ssl = self
            .connector
            .configure()
            .and_then(|c| c.into_ssl(&self.plan.server_name))
            .map_err(|e| (ErrorKind::Handshake, ErrorDetail::Io(e.into())))?;
        if let Some(session) = session {
            // SAFETY: every session comes from this client's callback, i.e. from a
            // connection made with this same context.
            unsafe { ssl.set_session(session) }
                .map_err(|e| (ErrorKind::Handshake, ErrorDetail::Io(e.into())))?;
        }
        if let Some(sink) = sink {
            ssl.set_ex_data(self.session_slot, sink.clone());
        }
        let tls = TlsStream::connect(ssl, sock)
            .await
            .map_err(|e| (handshake_kind(&e), ErrorDetail::Handshake(e)))?;
        out.handshakes += 1;
        if tls.ssl().session_reused() {
            out.resumed += 1;
        }
        Ok(tls)
    }

    /// A connection for HTTP/2: TLS that negotiated ALPN h2, or plain TCP (h2c) for an
    /// `http://` target.
    pub(super) async fn connect_h2(
        &self,
        out: &mut Outcome,
    ) -> Result<Conn, (ErrorKind, ErrorDetail)> {
        if !self.plan.tls {
            let tcp = TcpStream::connect_addr(self.plan.addr)
                .await
                .map_err(|e| (ErrorKind::Connect, ErrorDetail::Io(e)))?;
            let _ = tcp.set_nodelay(true);
            let sock = Socket::new(tcp).map_err(|e| (ErrorKind::Connect, ErrorDetail::Io(e)))?;
            out.handshakes += 1;
            return Ok(Conn::Plain(sock));
        }
        let mut tls = self.connect(None, None, out).await?;
        if tls.ssl().selected_alpn_protocol() != Some(b"h2") {
            let _ = tls.shutdown_write().await;
            return Err((
                ErrorKind::Protocol,
                ErrorDetail::Static(
                    "the server did not select ALPN h2: it does not speak HTTP/2 over TLS",
                ),
            ));
        }
        Ok(Conn::Tls(Box::new(tls)))
    }

    /// `full` and `resume`: a connection of its own, one request (none if `handshake_only`),
    /// close.
    async fn connection_op(
        &self,
        slot: &mut Slot,
        handshake_only: bool,
        out: &mut Outcome,
    ) -> Result<(), (ErrorKind, ErrorDetail)> {
        let resume = self.plan.mode == Mode::Resume;
        let (offer, sink) = match resume {
            true => (slot.session.as_ref(), Some(&slot.sink)),
            false => (None, None),
        };
        let mut tls = self.connect(offer, sink, out).await?;
        let result = if handshake_only {
            // A TLS 1.2 session comes with the handshake. A TLS 1.3 ticket comes after it, and
            // BoringSSL servers send it only with their first write: without a request, the
            // slot keeps offering the session it primed itself with.
            let _ = tls.shutdown_write().await;
            out.completed = true;
            Ok(())
        } else {
            let result = self.exchange(&mut tls, &mut slot.buf).await;
            if result.is_ok() {
                out.completed = true;
                // Tell the server we are done; it may already have closed.
                let _ = tls.shutdown_write().await;
            }
            result.map_err(ExchangeError::into_error).and_then(judge)
        };
        if let Some(session) = lock(&slot.sink).take() {
            slot.session = Some(session);
        }
        result
    }

    /// `keepalive`: one request on the slot's connection, reconnecting when the server closed
    /// it (a request that finds a reused connection closed is sent once more on a new one).
    async fn request_op(
        &self,
        slot: &mut Slot,
        out: &mut Outcome,
    ) -> Result<(), (ErrorKind, ErrorDetail)> {
        if let Some(tls) = slot.conn.as_mut() {
            match self.exchange(tls, &mut slot.buf).await {
                Ok(resp) => return self.finish_request(slot, resp, out).await,
                Err(e) if e.stale() => slot.conn = None,
                Err(e) => {
                    slot.conn = None;
                    return Err(e.into_error());
                }
            }
        }
        let tls = slot.conn.insert(self.connect(None, None, out).await?);
        match self.exchange(tls, &mut slot.buf).await {
            Ok(resp) => self.finish_request(slot, resp, out).await,
            Err(e) => {
                slot.conn = None;
                Err(e.into_error())
            }
        }
    }

    async fn finish_request(
        &self,
        slot: &mut Slot,
        resp: Response,
        out: &mut Outcome,
    ) -> Result<(), (ErrorKind, ErrorDetail)> {
        out.completed = true;
        // Unasked-for bytes after the response: the connection is out of step, drop it.
        if resp.close || !slot.buf.is_empty() {
            if let Some(mut tls) = slot.conn.take() {
                let _ = tls.shutdown_write().await;
            }
        }
        judge(resp)
    }

    /// Sends the request and reads the response.
    async fn exchange(
        &self,
        tls: &mut TlsStream,
        buf: &mut BytesMut,
    ) -> Result<Response, ExchangeError> {
        tls.write_all(&self.plan.request)
            .await
            .map_err(ExchangeError::Write)?;
        buf.clear();
        http::read_response(tls, buf)
            .await
            .map_err(ExchangeError::Read)
    }

    /// Connects a slot before the measurement (`keepalive`), or primes its session (`resume`),
    /// so that measured operations are what the mode says they are.
    async fn prime(&self, slot: &mut Slot) {
        let mut scratch = Outcome::default();
        let work = async {
            match self.plan.mode {
                Mode::Full => {}
                Mode::Resume => {
                    // With a request even for `--handshake-only`: see `connection_op`.
                    let _ = self.connection_op(slot, false, &mut scratch).await;
                }
                Mode::Keepalive => {
                    if let Ok(tls) = self.connect(None, None, &mut scratch).await {
                        slot.conn = Some(tls);
                    }
                }
            }
        };
        // A failure shows up again, counted, in the measured operations.
        let _ = monoio::time::timeout(self.plan.timeout, work).await;
    }
}

/// Where the new-session callback leaves a connection's newest session for its slot (through
/// the connection's ex-data). The slot keeps one sink for all its connections.
type SessionSink = Arc<Mutex<Option<SslSession>>>;

fn lock(sink: &SessionSink) -> std::sync::MutexGuard<'_, Option<SslSession>> {
    // Nothing can panic while holding it; a poisoned lock still holds a valid value.
    sink.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ex-data index where the new-session callback finds the slot's sink; one per process.
fn session_index() -> Result<Index<Ssl, SessionSink>, String> {
    static INDEX: OnceLock<Result<Index<Ssl, SessionSink>, String>> = OnceLock::new();
    INDEX
        .get_or_init(|| Ssl::new_ex_index().map_err(|e| format!("allocating ex-data: {e}")))
        .clone()
}

enum ExchangeError {
    Write(io::Error),
    Read(ReadError),
}

impl ExchangeError {
    /// The server had closed the connection before it saw this request.
    fn stale(&self) -> bool {
        match self {
            ExchangeError::Write(_) => true,
            ExchangeError::Read(e) => e.before_response(),
        }
    }

    fn into_error(self) -> (ErrorKind, ErrorDetail) {
        match self {
            ExchangeError::Write(e) => (io_kind(&e), ErrorDetail::Io(e)),
            ExchangeError::Read(e) => {
                let kind = match &e {
                    ReadError::Io { error, .. } => io_kind(error),
                    ReadError::Eof { .. } => ErrorKind::Io,
                    ReadError::Malformed(_) => ErrorKind::Protocol,
                };
                (kind, ErrorDetail::Read(e))
            }
        }
    }
}

fn judge(resp: Response) -> Result<(), (ErrorKind, ErrorDetail)> {
    if (200..300).contains(&resp.status) {
        Ok(())
    } else {
        Err((ErrorKind::HttpStatus, ErrorDetail::Status(resp.status)))
    }
}

/// BoringSSL names received alerts `..._ALERT_...` (`TLSV1_ALERT_CERTIFICATE_REQUIRED`,
/// `SSLV3_ALERT_BAD_CERTIFICATE`...).
fn handshake_kind(e: &HandshakeError) -> ErrorKind {
    match e {
        HandshakeError::Tls(e, ..)
            if e.ssl_error().is_some_and(|stack| {
                stack
                    .errors()
                    .iter()
                    .any(|e| e.reason().is_some_and(|r| r.contains("ALERT")))
            }) =>
        {
            ErrorKind::TlsAlert
        }
        _ => ErrorKind::Handshake,
    }
}

/// After the handshake, TLS failures reach us as `InvalidData` errors carrying BoringSSL's
/// reason (a TLS 1.3 server judges the client certificate after the client's handshake ended,
/// so its refusal arrives here).
pub(super) fn io_kind(e: &io::Error) -> ErrorKind {
    let alert = e.kind() == io::ErrorKind::InvalidData
        && e.get_ref()
            .is_some_and(|inner| inner.to_string().contains("ALERT"));
    if alert {
        ErrorKind::TlsAlert
    } else {
        ErrorKind::Io
    }
}

/// One connection slot's state across operations.
#[derive(Default)]
pub struct Slot {
    /// The session the next connection offers (`resume`).
    session: Option<SslSession>,
    sink: SessionSink,
    conn: Option<TlsStream>,
    /// `--protocol h2`: the connection this slot shares with the other streams on it.
    h2: Option<Rc<H2Conn>>,
    /// Response bytes; kept across operations so its capacity is reused.
    buf: BytesMut,
}

/// Open-loop arrival times of one thread: operation `k` is due at `begin + k / rate`.
pub struct Schedule {
    begin: Instant,
    /// Nanoseconds between arrivals.
    interval_ns: f64,
    next: Cell<u64>,
}

impl Schedule {
    pub fn new(begin: Instant, rate_per_s: f64) -> Schedule {
        Schedule {
            begin,
            interval_ns: 1e9 / rate_per_s,
            next: Cell::new(0),
        }
    }

    fn take(&self) -> Instant {
        let k = self.next.get();
        self.next.set(k + 1);
        // Saturates (far past any deadline) rather than overflowing.
        self.begin + Duration::from_nanos((k as f64 * self.interval_ns) as u64)
    }
}

/// One thread's measurement phase.
pub struct Thread {
    pub client: Arc<Client>,
    /// `--rate`: when operations are due. `None`: closed loop.
    pub schedule: Option<Schedule>,
    /// Start of the measurement (end of the warm-up).
    pub t0: Instant,
    /// End of the run.
    pub deadline: Instant,
    pub stats: RefCell<Stats>,
    /// When the last slot stopped.
    pub finished: Cell<Option<Instant>>,
}

impl Thread {
    /// Connects or primes `n` connection slots concurrently (see [`Client::prime`]); with
    /// `--protocol h2`, each is `--streams` slots sharing one connection.
    pub async fn prime(client: &Arc<Client>, n: usize) -> Vec<Slot> {
        if client.plan.protocol == Protocol::H2 {
            let conns: Vec<Rc<H2Conn>> = (0..n).map(|_| Rc::default()).collect();
            let tasks: Vec<_> = conns
                .iter()
                .map(|conn| {
                    let (client, conn) = (client.clone(), conn.clone());
                    monoio::spawn(async move { h2load::prime(&client, &conn).await })
                })
                .collect();
            for t in tasks {
                t.await;
            }
            return conns
                .iter()
                .flat_map(|conn| {
                    (0..client.plan.streams).map(|_| Slot {
                        h2: Some(conn.clone()),
                        ..Slot::default()
                    })
                })
                .collect();
        }
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let client = client.clone();
                monoio::spawn(async move {
                    let mut slot = Slot::default();
                    client.prime(&mut slot).await;
                    slot
                })
            })
            .collect();
        let mut slots = Vec::with_capacity(n);
        for t in tasks {
            slots.push(t.await);
        }
        slots
    }

    /// Runs every slot until the deadline or the end of `--count`.
    pub async fn run(self: Rc<Self>, slots: Vec<Slot>) {
        let mut h2_conns: Vec<Rc<H2Conn>> = Vec::new();
        for conn in slots.iter().filter_map(|s| s.h2.as_ref()) {
            if !h2_conns.last().is_some_and(|c| Rc::ptr_eq(c, conn)) {
                h2_conns.push(conn.clone());
            }
        }
        let tasks: Vec<_> = slots
            .into_iter()
            .map(|slot| monoio::spawn(self.clone().slot_loop(slot)))
            .collect();
        for t in tasks {
            t.await;
        }
        self.finished.set(Some(Instant::now()));
        for conn in h2_conns {
            conn.close().await;
        }
    }

    async fn slot_loop(self: Rc<Self>, mut slot: Slot) {
        let client = &*self.client;
        let timeout = client.plan.timeout;
        loop {
            let due = match &self.schedule {
                Some(s) => s.take(),
                None => Instant::now(),
            };
            if due >= self.deadline || client.out_of_count() {
                break;
            }
            let measured = due >= self.t0;
            if measured && !client.claim() {
                break;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                if !wait.is_zero() {
                    monoio::time::sleep_until(monoio::time::Instant::from_std(due)).await;
                }
            }
            let started = Instant::now();
            let (limit, cut_by_end) = match started.checked_add(timeout) {
                Some(t) if t < self.deadline => (t, false),
                _ => (self.deadline, true),
            };
            let mut outcome = Outcome::default();
            let op = async {
                match client.plan.mode {
                    Mode::Full | Mode::Resume => {
                        let handshake_only = client.plan.handshake_only;
                        client
                            .connection_op(&mut slot, handshake_only, &mut outcome)
                            .await
                    }
                    Mode::Keepalive => match &slot.h2 {
                        Some(conn) => h2load::request(client, conn, &mut outcome).await,
                        None => client.request_op(&mut slot, &mut outcome).await,
                    },
                }
            };
            let result = monoio::time::timeout_at(monoio::time::Instant::from_std(limit), op).await;
            let done = Instant::now();
            match result {
                Ok(r) => outcome.error = r.err(),
                // The run ended under it: neither a success nor a failure.
                Err(_) if cut_by_end => break,
                Err(_) => {
                    // Whatever state the connection is in, it is not reusable.
                    slot.conn = None;
                    if let Some(conn) = &slot.h2 {
                        conn.abandon();
                    }
                    outcome = Outcome {
                        error: Some((
                            ErrorKind::Timeout,
                            ErrorDetail::Static("operation timed out"),
                        )),
                        ..Outcome::default()
                    };
                }
            }
            if measured {
                // Open loop: from when it was due, so queueing behind a slow server counts.
                self.stats.borrow_mut().record(outcome, done - due);
            }
        }
    }
}
