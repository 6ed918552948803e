//! The admin endpoint (`[admin] listen`): `/metrics` (OpenMetrics text exposition), `/healthz`
//! (the process is alive) and `/ready` (200 once every worker listens, 503 before and while
//! draining). A thread of its own with blocking I/O, one connection at a time: it serves a
//! scraper and a load balancer's probe, not clients, and takes no worker's time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tracing::{debug, warn};

/// How long one admin exchange may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// Binds `addr` and serves it on a thread for the life of the process.
///
/// # Errors
/// The address cannot be bound, or the thread cannot start.
pub fn start(addr: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("[admin] listen = \"{addr}\": cannot listen: {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("certgate-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => {
                        if let Err(e) = serve(c) {
                            debug!("admin request failed: {e}");
                        }
                    }
                    Err(e) => {
                        warn!("admin accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    Ok(local)
}

/// Reads one request head and answers it; the connection closes after.
fn serve(mut c: TcpStream) -> io::Result<()> {
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut c,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
                false,
            );
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let head_only = method == b"HEAD";
    if method != b"GET" && !head_only {
        return respond(
            &mut c,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
            head_only,
        );
    }
    match path {
        b"/metrics" => respond(
            &mut c,
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            &crate::metrics::render(),
            head_only,
        ),
        b"/healthz" => respond(&mut c, "200 OK", "text/plain", "ok\n", head_only),
        b"/ready" if crate::metrics::ready() => {
            respond(&mut c, "200 OK", "text/plain", "ready\n", head_only)
        }
        b"/ready" => respond(
            &mut c,
            "503 Service Unavailable",
            "text/plain",
            "not ready\n",
            head_only,
        ),
        _ => respond(
            &mut c,
            "404 Not Found",
            "text/plain",
            "not found: try /metrics, /healthz or /ready\n",
            head_only,
        ),
    }
}

fn respond(
    c: &mut TcpStream,
    status: &str,
    ty: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ty}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    c.write_all(&out)?;
    c.flush()
}
