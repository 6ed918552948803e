//! A small, real HTTP/1.1 upstream: the demo's backend and the integration tests' witness.
//!
//! [`spawn`] binds a listener and answers every request with a JSON description of what arrived,
//! so a test can assert exactly which headers the proxy forwarded (names as received, in order)
//! and that the body passed intact:
//!
//! ```json
//! {"method":"POST","path":"/x?y=1","version":"HTTP/1.1",
//!  "headers":[["Host","localhost:8443"],["X-SSL-Client-Verify","SUCCESS"]],
//!  "trailers":[],"framing":"chunked","body_len":5,"body_sha256":"2cf2…","body":"hello",
//!  "conn_id":1,"request_no_on_conn":3,"peer":"127.0.0.1:40112"}
//! ```
//!
//! `body` is present only for bodies up to [`BODY_ECHO_LIMIT`] bytes (lossy UTF-8). `framing` is
//! how the body was delimited on the wire (`none`, `content-length` or `chunked`).
//!
//! It speaks HTTP/1.1 properly: persistent connections (the default for 1.1, opt-in for 1.0),
//! `Content-Length` and chunked request bodies (decoded, trailers recorded), and
//! `Expect: 100-continue`. Special paths (the query string is ignored for routing):
//!
//! | path            | answer                                                                |
//! |-----------------|-----------------------------------------------------------------------|
//! | `/status/<c>`   | status `c` with the JSON body (no body for 1xx, 204 and 304)          |
//! | `/bytes/<n>`    | `n` bytes of [`pattern_byte`] with `Content-Length`                   |
//! | `/chunked/<n>`  | the same `n` bytes, chunked (chunks of varying size)                  |
//! | `/close`        | the JSON answer with `Connection: close`, then closes                 |
//! | `/slow/<ms>`    | waits `ms` milliseconds (at most 120 s), then the JSON answer         |
//! | `/ws`           | `101 Switching Protocols` (`Upgrade: websocket`), then echoes raw bytes until EOF |
//!
//! Requests it cannot frame (conflicting lengths, unknown transfer coding, malformed chunks) get
//! a `400` carrying an `X-Echo-Error` header and the connection is closed, so a test can tell
//! the echo's refusal apart from the proxy's. Each response carries `X-Echo-Conn: <conn_id>`.
//! Every answered request counts in [`EchoServer::requests`]; refusals count in
//! [`EchoServer::errors`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bodies up to this size are echoed back verbatim (lossy UTF-8) in the `body` field.
pub const BODY_ECHO_LIMIT: usize = 64 * 1024;

/// Largest request head (request line + header section) the echo accepts.
const MAX_HEAD: usize = 1024 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;
/// Upper bound on `/slow/<ms>`.
const MAX_SLOW: Duration = Duration::from_secs(120);
/// An idle connection is closed after this long without a byte.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Byte `i` of the deterministic body served by `/bytes/<n>` and `/chunked/<n>`.
///
/// The period (251) is prime, so a dropped, duplicated or shifted segment changes the content.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// A running echo server. Dropping it (or calling [`EchoServer::stop`]) stops accepting, closes
/// every open connection and joins the accept thread.
#[derive(Debug)]
pub struct EchoServer {
    /// The address it listens on (with the actual port when spawned on port 0).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl EchoServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Requests answered so far (including 101 and the special paths; not the 400 refusals).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests refused with `400` + `X-Echo-Error` so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::SeqCst)
    }

    /// Stops the server: no new connections, open ones are shut down.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let wake = match self.addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
            SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
            a => a,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let open = std::mem::take(&mut *lock(&self.shared.open));
        for stream in open.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let _ = handle.join();
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Binds `addr` (port 0 picks a free port) and serves until stopped; one thread per connection.
pub fn spawn(addr: SocketAddr) -> io::Result<EchoServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let accept_shared = Arc::clone(&shared);
    let handle = thread::Builder::new()
        .name(format!("echo-accept-{}", addr.port()))
        .spawn(move || accept_loop(listener, accept_shared))?;
    Ok(EchoServer {
        addr,
        shared,
        handle: Some(handle),
    })
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                // EMFILE and friends: back off briefly rather than spin.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let conn_id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.open).insert(conn_id, clone);
        }
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("echo-conn-{conn_id}"))
            .spawn(move || {
                let _ = serve(stream, conn_id, &conn_shared);
                if let Some(s) = lock(&conn_shared.open).remove(&conn_id) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            });
        if spawned.is_err() {
            if let Some(s) = lock(&shared.open).remove(&conn_id) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A connection with its read buffer; `buf[pos..]` is received but unconsumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Conn {
    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes; `Ok(0)` is EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + 64 * 1024, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.buf.truncate(start + *n.as_ref().unwrap_or(&0));
        n
    }

    fn fill_or_eof(&mut self, what: &str) -> Result<(), Refusal> {
        match self.fill() {
            Ok(0) => Err(Refusal::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed in {what}"),
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(Refusal::Io(e)),
        }
    }

    /// A CRLF-terminated line, without the CRLF. A bare LF is a framing error.
    fn line(&mut self, what: &str) -> Result<Vec<u8>, Refusal> {
        loop {
            if let Some(i) = self.available().iter().position(|&b| b == b'\n') {
                let avail = self.available();
                if i == 0 || avail[i - 1] != b'\r' {
                    return Err(Refusal::Bad(format!("bare LF in {what}")));
                }
                let line = avail[..i - 1].to_vec();
                self.consume(i + 1);
                return Ok(line);
            }
            if self.available().len() > MAX_LINE {
                return Err(Refusal::Bad(format!("{what} longer than {MAX_LINE} bytes")));
            }
            self.fill_or_eof(what)?;
        }
    }
}

/// Why a request is not answered normally.
enum Refusal {
    /// Answer 400 with `X-Echo-Error` and close.
    Bad(String),
    /// The connection is unusable; just close it.
    Io(io::Error),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Refusal::Io(e)
    }
}

struct Head {
    method: String,
    target: String,
    minor: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Comma-separated tokens of every `name` header, lowercased.
    fn tokens(&self, name: &str) -> Vec<String> {
        self.values(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn keep_alive(&self) -> bool {
        let conn = self.tokens("connection");
        if self.minor >= 1 {
            !conn.iter().any(|t| t == "close")
        } else {
            conn.iter().any(|t| t == "keep-alive")
        }
    }

    fn version(&self) -> &'static str {
        if self.minor >= 1 {
            "HTTP/1.1"
        } else {
            "HTTP/1.0"
        }
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

impl Framing {
    fn name(&self) -> &'static str {
        match self {
            Framing::None => "none",
            Framing::Length(_) => "content-length",
            Framing::Chunked => "chunked",
        }
    }
}

fn framing(head: &Head) -> Result<Framing, Refusal> {
    let te = head.tokens("transfer-encoding");
    let has_cl = head.values("content-length").next().is_some();
    if !te.is_empty() {
        if te.last().map(String::as_str) != Some("chunked") {
            return Err(Refusal::Bad(format!(
                "transfer-encoding {te:?} does not end in chunked"
            )));
        }
        if has_cl {
            return Err(Refusal::Bad(
                "both transfer-encoding and content-length".into(),
            ));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for v in head.values("content-length") {
        let v = v.trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Refusal::Bad(format!("invalid content-length {v:?}")));
        }
        let n: u64 = v
            .parse()
            .map_err(|_| Refusal::Bad(format!("content-length {v:?}")))?;
        if length.is_some_and(|l| l != n) {
            return Err(Refusal::Bad("conflicting content-length values".into()));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::None, Framing::Length))
}

fn read_head(conn: &mut Conn) -> Result<Option<Head>, Refusal> {
    loop {
        if !conn.available().is_empty() {
            let mut storage = vec![httparse::EMPTY_HEADER; 1024];
            let mut req = httparse::Request::new(&mut storage);
            match req.parse(conn.available()) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Head {
                        method: req.method.unwrap_or_default().to_string(),
                        target: req.path.unwrap_or_default().to_string(),
                        minor: req.version.unwrap_or(1),
                        headers: req
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    conn.consume(n);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {
                    if conn.available().len() > MAX_HEAD {
                        return Err(Refusal::Bad(format!("request head over {MAX_HEAD} bytes")));
                    }
                }
                Err(e) => return Err(Refusal::Bad(format!("unparsable request head: {e}"))),
            }
        }
        match conn.fill()? {
            0 if conn.available().is_empty() => return Ok(None),
            0 => {
                return Err(Refusal::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in request head",
                )))
            }
            _ => {}
        }
    }
}

/// What was received as a request body.
struct Body {
    len: u64,
    sha: boring::sha::Sha256,
    sample: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Body {
    fn new() -> Self {
        Body {
            len: 0,
            sha: boring::sha::Sha256::new(),
            sample: Vec::new(),
            trailers: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        self.sha.update(data);
        let room = (BODY_ECHO_LIMIT + 1).saturating_sub(self.sample.len());
        self.sample.extend_from_slice(&data[..data.len().min(room)]);
    }
}

fn read_exact_body(conn: &mut Conn, mut remaining: u64, body: &mut Body) -> Result<(), Refusal> {
    while remaining > 0 {
        if conn.available().is_empty() {
            conn.fill_or_eof("request body")?;
        }
        let n = conn
            .available()
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        body.push(&conn.available()[..n]);
        conn.consume(n);
        remaining -= n as u64;
    }
    Ok(())
}

fn read_chunked_body(conn: &mut Conn, body: &mut Body) -> Result<(), Refusal> {
    loop {
        let line = conn.line("chunk-size line")?;
        let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_str = std::str::from_utf8(size_part)
            .map_err(|_| Refusal::Bad("non-ASCII chunk size".into()))?;
        if size_str.is_empty()
            || size_str.len() > 16
            || !size_str.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Refusal::Bad(format!("bad chunk size {size_str:?}")));
        }
        let size = u64::from_str_radix(size_str, 16)
            .map_err(|_| Refusal::Bad(format!("bad chunk size {size_str:?}")))?;
        if size == 0 {
            loop {
                let line = conn.line("trailer section")?;
                if line.is_empty() {
                    return Ok(());
                }
                let text = String::from_utf8_lossy(&line);
                let Some((name, value)) = text.split_once(':') else {
                    return Err(Refusal::Bad(format!("bad trailer line {text:?}")));
                };
                body.trailers
                    .push((name.to_string(), value.trim().to_string()));
            }
        }
        read_exact_body(conn, size, body)?;
        if !conn.line("chunk data terminator")?.is_empty() {
            return Err(Refusal::Bad("chunk data not followed by CRLF".into()));
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves one connection until EOF, error, `Connection: close` or stop.
fn serve(stream: TcpStream, conn_id: u64, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        pos: 0,
    };
    let mut request_no = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let result = read_head(&mut conn).and_then(|head| match head {
            None => Ok(false),
            Some(head) => {
                request_no += 1;
                respond(&mut conn, head, conn_id, request_no, &peer, shared)
            }
        });
        match result {
            Ok(true) => continue,
            Ok(false) => break,
            Err(Refusal::Io(e)) => return Err(e),
            Err(Refusal::Bad(why)) => {
                shared.errors.fetch_add(1, Ordering::SeqCst);
                let body = format!("echo refused the request: {why}\n");
                let why = why.replace(['\r', '\n'], " ");
                let msg = format!(
                    "HTTP/1.1 400 Bad Request\r\nX-Echo-Error: {why}\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.stream.write_all(msg.as_bytes());
                break;
            }
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
    Ok(())
}

/// Answers one request. `Ok(true)`: the connection stays open for the next one.
fn respond(
    conn: &mut Conn,
    head: Head,
    conn_id: u64,
    request_no: u64,
    peer: &str,
    shared: &Shared,
) -> Result<bool, Refusal> {
    let framing = framing(&head)?;
    let expects_continue = head.minor >= 1
        && head
            .values("expect")
            .any(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    if expects_continue && !matches!(framing, Framing::None | Framing::Length(0)) {
        conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Body::new();
    match framing {
        Framing::None => {}
        Framing::Length(n) => read_exact_body(conn, n, &mut body)?,
        Framing::Chunked => read_chunked_body(conn, &mut body)?,
    }

    let path = head
        .target
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let is_head = head.method.eq_ignore_ascii_case("HEAD");
    let mut keep_alive = head.keep_alive();
    let describe = || {
        let sample = &body.sample[..body.sample.len().min(BODY_ECHO_LIMIT)];
        let mut v = serde_json::json!({
            "method": head.method,
            "path": head.target,
            "version": head.version(),
            "headers": head.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "trailers": body.trailers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "framing": framing.name(),
            "body_len": body.len,
            "body_sha256": hex(&body.sha.clone().finish()),
            "conn_id": conn_id,
            "request_no_on_conn": request_no,
            "peer": peer,
        });
        if body.len as usize <= BODY_ECHO_LIMIT {
            v["body"] = String::from_utf8_lossy(sample).into_owned().into();
        }
        let mut text = v.to_string();
        text.push('\n');
        text.into_bytes()
    };

    let number = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    let mut status = 200u16;
    let mut streamed: Option<(u64, bool)> = None; // (length, chunked)
    let mut json = None;

    if let Some(code) = number("/status/").filter(|c| (100..=999).contains(c)) {
        status = code as u16;
        if !(status < 200 || status == 204 || status == 304) {
            json = Some(describe());
        }
    } else if let Some(n) = number("/bytes/") {
        streamed = Some((n, false));
    } else if let Some(n) = number("/chunked/") {
        streamed = Some((n, true));
    } else if path == "/close" {
        keep_alive = false;
        json = Some(describe());
    } else if let Some(ms) = number("/slow/") {
        let deadline = Instant::now() + Duration::from_millis(ms).min(MAX_SLOW);
        while Instant::now() < deadline {
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(5).min(deadline - Instant::now()));
        }
        json = Some(describe());
    } else if path == "/ws" {
        return upgrade(conn, &head, shared);
    } else {
        json = Some(describe());
    }

    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nX-Echo-Conn: {conn_id}\r\n",
        reason(status)
    );
    match (&json, streamed) {
        (Some(json), _) => {
            out += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                json.len()
            );
        }
        (None, Some((n, false))) => {
            out += &format!("Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n");
        }
        (None, Some((_, true))) if head.minor >= 1 => {
            out += "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n";
        }
        (None, Some((_, true))) => {
            // An HTTP/1.0 client cannot take chunks: delimit by closing.
            out += "Content-Type: application/octet-stream\r\n";
            keep_alive = false;
        }
        (None, None) => {}
    }
    out += if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    };

    // Counted before writing, so a client that has read the response sees it counted.
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let mut w = io::BufWriter::with_capacity(64 * 1024, &conn.stream);
    w.write_all(out.as_bytes())?;
    if !is_head {
        if let Some(json) = &json {
            w.write_all(json)?;
        } else if let Some((n, chunked)) = streamed {
            write_pattern(&mut w, n, chunked && head.minor >= 1)?;
        }
    }
    w.flush()?;
    Ok(keep_alive)
}

fn write_pattern(w: &mut impl Write, n: u64, chunked: bool) -> io::Result<()> {
    const SIZES: [u64; 6] = [1, 10, 100, 1000, 10_000, 16_384];
    let mut buf = Vec::with_capacity(16_384);
    let mut offset = 0u64;
    let mut i = 0;
    while offset < n {
        let len = if chunked {
            SIZES[i % SIZES.len()]
        } else {
            16_384
        }
        .min(n - offset);
        i += 1;
        buf.clear();
        buf.extend((offset..offset + len).map(pattern_byte));
        if chunked {
            write!(w, "{len:x}\r\n")?;
            w.write_all(&buf)?;
            w.write_all(b"\r\n")?;
        } else {
            w.write_all(&buf)?;
        }
        offset += len;
    }
    if chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

/// `/ws`: `101`, then a raw byte echo until the client half-closes.
fn upgrade(conn: &mut Conn, head: &Head, shared: &Shared) -> Result<bool, Refusal> {
    if !head.tokens("upgrade").iter().any(|t| t == "websocket") {
        let body = "upgrade: websocket required\n";
        let msg = format!(
            "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        shared.requests.fetch_add(1, Ordering::SeqCst);
        conn.stream.write_all(msg.as_bytes())?;
        return Ok(head.keep_alive());
    }
    let mut out = String::from(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    if let Some(key) = head.values("sec-websocket-key").next() {
        let mut input = key.trim().as_bytes().to_vec();
        input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        let accept = boring::base64::encode_block(&boring::sha::sha1(&input));
        out += &format!("Sec-WebSocket-Accept: {accept}\r\n");
    }
    out += "\r\n";
    shared.requests.fetch_add(1, Ordering::SeqCst);
    conn.stream.write_all(out.as_bytes())?;

    // Bytes that arrived right behind the request head belong to the tunnel.
    let early = conn.available().to_vec();
    conn.consume(early.len());
    conn.stream.write_all(&early)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match conn.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        conn.stream.write_all(&buf[..n])?;
    }
    let _ = conn.stream.shutdown(Shutdown::Write);
    Ok(false)
}
