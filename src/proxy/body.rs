//! Bodies and tunnels: bytes relayed between the two sides as they arrive, never buffered whole.
//! Framing is checked on the way (Content-Length counted, chunked framing scanned) so the
//! relay stops exactly at the body's end and a malformed body stops the connection.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use monoio::time::timeout;

use crate::conn::Conn;
use crate::http::{BodyKind, ChunkError, ChunkedScanner};

/// One of the two peers of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client that connected to the listener.
    Client,
    /// The upstream server.
    Upstream,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
        })
    }
}

/// How relaying a body or a tunnel failed, and on which side.
#[derive(Debug)]
pub enum BodyError {
    /// A read or write on that side failed.
    Io(Side, io::Error),
    /// That side made no progress for the idle time (a tunnel: the side still open after the
    /// other closed).
    Timeout(Side),
    /// A tunnel with both sides open in which neither sent anything for the idle time.
    BothIdle,
    /// The sender closed before the body was complete.
    Truncated(Side),
    /// Chunked framing the scanner refused.
    Malformed(Side, ChunkError),
}

impl BodyError {
    /// The side that failed; `None` when both went quiet.
    pub fn side(&self) -> Option<Side> {
        match self {
            Self::Io(s, _) | Self::Timeout(s) | Self::Truncated(s) | Self::Malformed(s, _) => {
                Some(*s)
            }
            Self::BothIdle => None,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(s, e) => write!(f, "{s} i/o error in body: {e}"),
            Self::Timeout(s) => write!(f, "{s} idle too long"),
            Self::BothIdle => f.write_str("client and upstream both idle too long"),
            Self::Truncated(s) => write!(f, "{s} closed before the body ended"),
            Self::Malformed(s, e) => write!(f, "{s} sent a malformed chunked body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(_, e) => Some(e),
            Self::Malformed(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Relays one body from `src` to `dst`. `buf` holds bytes already read from `src` (after the
/// head); bytes past the body's end (a pipelined request) are left in it.
///
/// # Return
/// The number of body bytes relayed.
pub async fn relay(
    src: &mut Conn,
    src_side: Side,
    buf: &mut BytesMut,
    dst: &mut Conn,
    kind: BodyKind,
    idle: Duration,
) -> Result<u64, BodyError> {
    let dst_side = other(src_side);
    let mut total = 0u64;
    match kind {
        BodyKind::None => {}
        BodyKind::Length(mut remaining) => {
            while remaining > 0 {
                if buf.is_empty() {
                    fill(src, src_side, buf, idle).await?;
                }
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let chunk = buf.split_to(take);
                send(dst, dst_side, &chunk, idle).await?;
                remaining -= take as u64;
                total += take as u64;
            }
        }
        BodyKind::Chunked => {
            let mut scanner = ChunkedScanner::new();
            loop {
                if buf.is_empty() {
                    fill(src, src_side, buf, idle).await?;
                }
                let progress = scanner
                    .scan(buf)
                    .map_err(|e| BodyError::Malformed(src_side, e))?;
                let chunk = buf.split_to(progress.consumed);
                if !chunk.is_empty() {
                    send(dst, dst_side, &chunk, idle).await?;
                    total += chunk.len() as u64;
                }
                if progress.done {
                    break;
                }
                if !buf.is_empty() {
                    // The scanner needs more than what is buffered to go on.
                    fill(src, src_side, buf, idle).await?;
                }
            }
        }
        BodyKind::Close => loop {
            if !buf.is_empty() {
                let chunk = buf.split();
                send(dst, dst_side, &chunk, idle).await?;
                total += chunk.len() as u64;
            }
            match timeout(idle, src.read_into(buf)).await {
                Err(_) => return Err(BodyError::Timeout(src_side)),
                Ok(Err(e)) => return Err(BodyError::Io(src_side, e)),
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
            }
        },
    }
    Ok(total)
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Upstream,
        Side::Upstream => Side::Client,
    }
}

/// Reads more from `src` into `buf`; EOF is a truncated body.
async fn fill(
    src: &mut Conn,
    side: Side,
    buf: &mut BytesMut,
    idle: Duration,
) -> Result<(), BodyError> {
    match timeout(idle, src.read_into(buf)).await {
        Err(_) => Err(BodyError::Timeout(side)),
        Ok(Err(e)) => Err(BodyError::Io(side, e)),
        Ok(Ok(0)) => Err(BodyError::Truncated(side)),
        Ok(Ok(_)) => Ok(()),
    }
}

async fn send(dst: &mut Conn, side: Side, data: &[u8], idle: Duration) -> Result<(), BodyError> {
    match timeout(idle, dst.write_all(data)).await {
        Err(_) => Err(BodyError::Timeout(side)),
        Ok(Err(e)) => Err(BodyError::Io(side, e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// Relays bytes both ways until both sides have closed, or nothing moved for `idle` (then the
/// error names the side still open after the other closed, or both when both are open). Each
/// side's EOF is passed on as a half-close. Reads are cancel-safe, so waiting on both at once
/// and acting on whichever is first loses nothing.
///
/// # Return
/// Bytes relayed (client to upstream, upstream to client).
pub async fn tunnel(
    client: &mut Conn,
    mut from_client: BytesMut,
    upstream: &mut Conn,
    mut from_upstream: BytesMut,
    idle: Duration,
) -> Result<(u64, u64), BodyError> {
    let (mut up_bytes, mut down_bytes) = (0u64, 0u64);
    // Queued TLS output (session tickets) goes out before the relay waits on anything.
    client
        .flush()
        .await
        .map_err(|e| BodyError::Io(Side::Client, e))?;
    if !from_client.is_empty() {
        send(upstream, Side::Upstream, &from_client, idle).await?;
        up_bytes += from_client.len() as u64;
    }
    if !from_upstream.is_empty() {
        send(client, Side::Client, &from_upstream, idle).await?;
        down_bytes += from_upstream.len() as u64;
    }
    let (mut client_open, mut upstream_open) = (true, true);
    while client_open || upstream_open {
        from_client.clear();
        from_upstream.clear();
        let event = {
            let a = pin!(async {
                if client_open {
                    client.read_into(&mut from_client).await
                } else {
                    std::future::pending().await
                }
            });
            let b = pin!(async {
                if upstream_open {
                    upstream.read_into(&mut from_upstream).await
                } else {
                    std::future::pending().await
                }
            });
            let mut a = a;
            let mut b = b;
            timeout(
                idle,
                poll_fn(|cx| {
                    if let Poll::Ready(r) = a.as_mut().poll(cx) {
                        return Poll::Ready((Side::Client, r));
                    }
                    if let Poll::Ready(r) = b.as_mut().poll(cx) {
                        return Poll::Ready((Side::Upstream, r));
                    }
                    Poll::Pending
                }),
            )
            .await
        };
        let (side, res) = event.map_err(|_| match (client_open, upstream_open) {
            (true, false) => BodyError::Timeout(Side::Client),
            (false, true) => BodyError::Timeout(Side::Upstream),
            _ => BodyError::BothIdle,
        })?;
        let n = res.map_err(|e| BodyError::Io(side, e))?;
        match (side, n) {
            (Side::Client, 0) => {
                client_open = false;
                let _ = upstream.shutdown_write().await;
            }
            (Side::Upstream, 0) => {
                upstream_open = false;
                let _ = client.shutdown_write().await;
            }
            (Side::Client, n) => {
                send(upstream, Side::Upstream, &from_client, idle).await?;
                up_bytes += n as u64;
            }
            (Side::Upstream, n) => {
                send(client, Side::Client, &from_upstream, idle).await?;
                down_bytes += n as u64;
            }
        }
    }
    Ok((up_bytes, down_bytes))
}
