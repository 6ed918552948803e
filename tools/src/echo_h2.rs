//! A small, real HTTP/2 upstream (h2c, prior knowledge): the witness of the tests that forward
//! to `protocol = "h2"` upstreams. The `h2` crate over certgate's own connection type, on a
//! monoio runtime of its own thread.
//!
//! Every stream is answered with a JSON description of what arrived, as [`crate::echo`] does:
//!
//! ```json
//! {"method":"POST","scheme":"https","authority":"localhost:8443","path":"/x?y=1",
//!  "headers":[["x-ssl-client-verify","SUCCESS"]],"trailers":[["x-t","1"]],
//!  "body_len":5,"body_sha256":"2cf2…","conn_id":1,"stream_no_on_conn":3}
//! ```
//!
//! The answer carries `content-length` and `x-echo-conn: <conn_id>`. Special paths (the query
//! string is ignored):
//!
//! | path            | answer                                                                |
//! |-----------------|-----------------------------------------------------------------------|
//! | `/status/<c>`   | status `c` with the JSON body (none for 204 and 304)                  |
//! | `/stream/<n>`   | `n` bytes of [`crate::echo::pattern_byte`], without `content-length`, then trailers `x-echo-bytes: <n>` |
//! | `/trailers`     | the JSON body without `content-length`, then trailer `x-echo-trailer: yes` |
//! | `/empty`        | 200 with no body, the stream ended with the headers (no length)       |
//! | `/slow/<ms>`    | waits `ms` milliseconds (at most 120 s), then the JSON answer         |
//! | `/reset-after/<n>` | `n` bytes without `content-length`, then RST_STREAM INTERNAL_ERROR |
//! | `/hold/<ms>`    | waits `ms` milliseconds before reading the request body, then the JSON answer |
//! | `/early/<c>`    | status `c` with body `early\n` at once, without reading the request body |

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use certgate::conn::Conn;
use certgate::http2::io::PollConn;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, Request, Response, StatusCode};

use crate::echo::pattern_byte;

/// A running HTTP/2 echo server; dropping it stops the thread.
pub struct EchoH2 {
    /// The address it listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicU64,
    streams: AtomicU64,
}

impl EchoH2 {
    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Streams answered so far.
    pub fn streams(&self) -> u64 {
        self.shared.streams.load(Ordering::SeqCst)
    }
}

impl Drop for EchoH2 {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Binds `127.0.0.1:0` and serves until dropped.
///
/// # Errors
/// Binding or starting the thread failed.
pub fn spawn() -> io::Result<EchoH2> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // The runtime's accept must not block its thread.
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared::default());
    let run = shared.clone();
    let handle = thread::Builder::new()
        .name("echo-h2".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            if let Ok(mut rt) = rt {
                rt.block_on(accept_loop(listener, run));
            }
        })?;
    Ok(EchoH2 {
        addr,
        shared,
        handle: Some(handle),
    })
}

async fn accept_loop(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let Ok(listener) = monoio::net::TcpListener::from_std(listener) else {
        return;
    };
    while let Ok((s, _)) = listener.accept().await {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let conn_id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let shared = shared.clone();
        monoio::spawn(async move {
            let Ok(socket) = certgate::io::Socket::new(s) else {
                return;
            };
            let conn = Conn::Plain(socket);
            let Ok(mut h) = h2::server::handshake(PollConn::new(conn, BytesMut::new())).await
            else {
                return;
            };
            let mut stream_no = 0;
            while let Some(Ok((req, respond))) = h.accept().await {
                stream_no += 1;
                let shared = shared.clone();
                monoio::spawn(async move {
                    answer(req, respond, conn_id, stream_no).await;
                    shared.streams.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
    }
}

async fn answer(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn_id: u64,
    stream_no: u64,
) {
    let (parts, mut body) = req.into_parts();
    if let Some(code) = parts
        .uri
        .path()
        .strip_prefix("/early/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        let mut head = Response::new(());
        *head.status_mut() = code;
        head.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(6));
        if let Ok(mut tx) = respond.send_response(head, false) {
            let _ = tx.send_data(Bytes::from_static(b"early\n"), true);
        }
        return;
    }
    if let Some(ms) = parts
        .uri
        .path()
        .strip_prefix("/hold/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        monoio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    }
    let mut sha = boring::sha::Sha256::new();
    let mut len = 0u64;
    while let Some(d) = body.data().await {
        let Ok(d) = d else { return };
        sha.update(&d);
        len += d.len() as u64;
        let _ = body.flow_control().release_capacity(d.len());
    }
    let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
    let pairs = |h: &HeaderMap| -> Vec<[String; 2]> {
        h.iter()
            .map(|(n, v)| {
                [
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                ]
            })
            .collect()
    };
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "scheme": parts.uri.scheme_str(),
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "path": parts.uri.path_and_query().map(|p| p.as_str()),
        "headers": pairs(&parts.headers),
        "trailers": pairs(&trailers),
        "body_len": len,
        "body_sha256": hex(&sha.finish()),
        "conn_id": conn_id,
        "stream_no_on_conn": stream_no,
    });
    let json = Bytes::from(format!("{json}\n"));
    let path = parts.uri.path();
    let mut head = Response::new(());
    head.headers_mut()
        .insert("x-echo-conn", http::HeaderValue::from(conn_id));
    let number = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    if let Some(n) = number("/stream/") {
        let Ok(mut tx) = respond.send_response(head, false) else {
            return;
        };
        let mut sent = 0u64;
        while sent < n {
            let part = (n - sent).min(16 * 1024);
            let data: Vec<u8> = (sent..sent + part).map(pattern_byte).collect();
            if send(&mut tx, Bytes::from(data), false).await.is_err() {
                return;
            }
            sent += part;
        }
        let mut t = HeaderMap::new();
        t.insert("x-echo-bytes", http::HeaderValue::from(n));
        let _ = tx.send_trailers(t);
        return;
    }
    if let Some(n) = number("/reset-after/") {
        let Ok(mut tx) = respond.send_response(head, false) else {
            return;
        };
        let data: Vec<u8> = (0..n).map(pattern_byte).collect();
        if send(&mut tx, Bytes::from(data), false).await.is_ok() {
            monoio::time::sleep(Duration::from_millis(50)).await;
            tx.send_reset(h2::Reason::INTERNAL_ERROR);
        }
        return;
    }
    if path == "/empty" {
        let _ = respond.send_response(head, true);
        return;
    }
    if let Some(ms) = number("/slow/") {
        monoio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    }
    let status = number("/status/")
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    *head.status_mut() = status;
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        let _ = respond.send_response(head, true);
        return;
    }
    let trailers = path == "/trailers";
    if !trailers {
        head.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(json.len()),
        );
    }
    let head_only = parts.method == http::Method::HEAD;
    let Ok(mut tx) = respond.send_response(head, head_only) else {
        return;
    };
    if head_only {
        return;
    }
    if send(&mut tx, json, !trailers).await.is_err() {
        return;
    }
    if trailers {
        let mut t = HeaderMap::new();
        t.insert("x-echo-trailer", http::HeaderValue::from_static("yes"));
        let _ = tx.send_trailers(t);
    }
}

async fn send(tx: &mut h2::SendStream<Bytes>, mut data: Bytes, end: bool) -> Result<(), h2::Error> {
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        match poll_fn(|cx| tx.poll_capacity(cx)).await {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => {
                let part = data.split_to(n.min(data.len()));
                tx.send_data(part, end && data.is_empty())?;
            }
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(h2::Reason::STREAM_CLOSED)),
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
