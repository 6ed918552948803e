//! How forwarding a request fails, typed until it is logged (as pingora-error's `Error` with its
//! `ErrorSource`): what failed, with the cause from below (`ConnectError`, `BodyError`,
//! `HeadError`, `io::Error`), on which side (the client, the upstream, certgate itself), and the
//! server it concerns. The page the client gets, whether the request may go to another server
//! ([`fate`]), the access-log reason (`Display`) and the metrics label all follow from the value;
//! text is made only when it is logged.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use super::body::{BodyError, Side};
use crate::http::{HeadError, Page};
use crate::upstream::ConnectError;

/// Which side an error came from (pingora's `ErrorSource`: downstream, upstream, internal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client: it sent something invalid, went quiet or went away.
    Client,
    /// The upstream server: it refused, failed, answered nonsense or not in time.
    Upstream,
    /// certgate itself (setting up TLS failed).
    Internal,
}

/// What failed while forwarding one request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Kind {
    /// Every server was tried, or none is usable.
    NoServer,
    /// No connection to the server could be made.
    Connect(ConnectError),
    /// Writing the request head to the server failed.
    SendHead(io::Error),
    /// Writing the request head to the server took longer than `upstream_read`.
    SendTimeout,
    /// Relaying the request body failed, on the side the `BodyError` names.
    RequestBody(BodyError),
    /// The server's response head did not parse.
    InvalidResponse(HeadError),
    /// Reading the server's response head failed (a reset, typically).
    ReadResponse(io::Error),
    /// The server closed the connection before its response head was complete.
    Closed {
        /// Part of a head had arrived.
        mid_head: bool,
    },
    /// No response head within `upstream_read`.
    ResponseTimeout,
    /// Writing an interim response or the response head to the client failed (or timed out).
    ClientWrite(io::Error),
    /// Relaying the response body failed after its head was sent.
    ResponseBody(BodyError),
    /// An upgraded connection (101) ended otherwise than by both sides closing.
    Tunnel(BodyError),
}

/// A failed forward: what failed and the server it concerns (when one was tried).
#[derive(Debug)]
pub struct Error {
    /// What failed.
    pub kind: Kind,
    /// The server last tried, if any (logged as `upstream=`).
    pub server: Option<SocketAddr>,
}

impl Error {
    /// An error of `kind` concerning `server`.
    pub fn new(kind: Kind, server: Option<SocketAddr>) -> Self {
        Self { kind, server }
    }

    /// The side that failed.
    pub fn side(&self) -> Source {
        match &self.kind {
            Kind::Connect(ConnectError::Setup(_)) => Source::Internal,
            Kind::NoServer
            | Kind::Connect(_)
            | Kind::SendHead(_)
            | Kind::SendTimeout
            | Kind::InvalidResponse(_)
            | Kind::ReadResponse(_)
            | Kind::Closed { .. }
            | Kind::ResponseTimeout => Source::Upstream,
            Kind::ClientWrite(_) => Source::Client,
            Kind::RequestBody(e) | Kind::ResponseBody(e) | Kind::Tunnel(e) => match e.side() {
                Some(Side::Upstream) => Source::Upstream,
                // Both sides idle: the client's session ended (nginx's `proxy_timeout`).
                Some(Side::Client) | None => Source::Client,
            },
        }
    }

    /// The page the client is answered, or `None` when only closing is left (the client went
    /// away, or the response is already under way).
    pub fn page(&self) -> Option<Page> {
        match &self.kind {
            Kind::Connect(ConnectError::Timeout) | Kind::SendTimeout | Kind::ResponseTimeout => {
                Some(Page::GatewayTimeout)
            }
            Kind::NoServer
            | Kind::Connect(_)
            | Kind::SendHead(_)
            | Kind::InvalidResponse(_)
            | Kind::ReadResponse(_)
            | Kind::Closed { .. } => Some(Page::BadGateway),
            Kind::RequestBody(e) => match (e, e.side()) {
                (BodyError::Malformed(..), _) => Some(Page::BadRequest),
                (BodyError::Timeout(_), Some(Side::Client)) => Some(Page::RequestTimeout),
                (BodyError::Timeout(_), Some(Side::Upstream)) => Some(Page::GatewayTimeout),
                (_, Some(Side::Upstream)) => Some(Page::BadGateway),
                (_, Some(Side::Client) | None) => None,
            },
            Kind::ClientWrite(_) | Kind::ResponseBody(_) | Kind::Tunnel(_) => None,
        }
    }

    /// Whether the server was reached: the access line names it (a failed connect does not).
    pub fn reached(&self) -> bool {
        !matches!(self.kind, Kind::NoServer | Kind::Connect(_))
    }

    /// A short stable name for metrics: `<side>_<what>`.
    pub fn label(&self) -> &'static str {
        match &self.kind {
            Kind::NoServer => "upstream_no_server",
            Kind::Connect(ConnectError::Refused(_)) => "upstream_connect_refused",
            Kind::Connect(ConnectError::Timeout) => "upstream_connect_timeout",
            Kind::Connect(ConnectError::Tls(_)) => "upstream_tls_handshake",
            Kind::Connect(ConnectError::Setup(_)) => "internal_tls_setup",
            Kind::Connect(ConnectError::NoH2) => "upstream_no_h2",
            Kind::SendHead(_) => "upstream_send_failed",
            Kind::SendTimeout => "upstream_send_timeout",
            Kind::InvalidResponse(_) => "upstream_invalid_response",
            Kind::ReadResponse(_) => "upstream_read_failed",
            Kind::Closed { .. } => "upstream_closed",
            Kind::ResponseTimeout => "upstream_response_timeout",
            Kind::ClientWrite(_) => "client_write_failed",
            Kind::RequestBody(e) => match (e.side(), e) {
                (_, BodyError::Malformed(..)) => "client_malformed_body",
                (Some(Side::Client), BodyError::Timeout(_)) => "client_body_timeout",
                (Some(Side::Client), _) => "client_body_failed",
                (_, BodyError::Timeout(_)) => "upstream_body_timeout",
                _ => "upstream_body_failed",
            },
            Kind::ResponseBody(e) => match e.side() {
                Some(Side::Upstream) => "upstream_response_aborted",
                _ => "client_response_aborted",
            },
            Kind::Tunnel(e) => match e {
                BodyError::Timeout(Side::Client) => "client_tunnel_idle",
                BodyError::Timeout(Side::Upstream) => "upstream_tunnel_idle",
                BodyError::BothIdle => "tunnel_idle",
                _ if e.side() == Some(Side::Upstream) => "upstream_tunnel_failed",
                _ => "client_tunnel_failed",
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(addr) = self.server {
            write!(f, "{addr}: ")?;
        }
        match &self.kind {
            Kind::NoServer => f.write_str("no server is available"),
            Kind::Connect(e) => e.fmt(f),
            Kind::SendHead(e) => write!(f, "writing the request failed: {e}"),
            Kind::SendTimeout => f.write_str("writing the request timed out"),
            Kind::RequestBody(e) => e.fmt(f),
            Kind::InvalidResponse(e) => write!(f, "invalid response: {}", e.reason),
            Kind::ReadResponse(e) => write!(f, "reading the response failed: {e}"),
            Kind::Closed { mid_head: false } => {
                f.write_str("upstream closed the connection before responding")
            }
            Kind::Closed { mid_head: true } => {
                f.write_str("upstream closed the connection mid-head")
            }
            Kind::ResponseTimeout => f.write_str("no response in time"),
            Kind::ClientWrite(e) => write!(f, "client write failed: {e}"),
            Kind::ResponseBody(e) => write!(f, "response aborted: {e}"),
            Kind::Tunnel(e) => write!(f, "tunnel ended: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Connect(e) => Some(e),
            Kind::SendHead(e) | Kind::ReadResponse(e) | Kind::ClientWrite(e) => Some(e),
            Kind::RequestBody(e) | Kind::ResponseBody(e) | Kind::Tunnel(e) => Some(e),
            _ => None,
        }
    }
}

/// What a failed attempt means for its server and for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Nothing of the request reached the server's application (no connection, or a close
    /// before any response byte with nothing of a body sent): counted against the server, and
    /// another server may take the request if a try is left.
    Retry,
    /// As `Retry`, but on a kept-alive connection the server may simply have closed as idle:
    /// not counted against it, no try used up; when no other server is left, it gets one more
    /// try on a new connection.
    Stale,
    /// The server failed (counted against it); the request is not sent again.
    Failed,
    /// Nothing to hold against the server (the client failed, the response was invalid or under
    /// way, or a kept-alive connection closed once the request could no longer be sent again);
    /// the request is not sent again.
    Final,
}

/// What an attempt had done when it failed, for [`fate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// GET, HEAD, OPTIONS, PUT, DELETE, TRACE.
    pub idempotent: bool,
    /// Some of a request body was sent to the server.
    pub body_sent: bool,
    /// Response bytes (an interim response or part of a head) arrived from the server.
    pub answered: bool,
    /// The connection came from the keep-alive pool.
    pub reused: bool,
}

/// The retry decision (README, "Retries"; nginx's `proxy_next_upstream error timeout`): a pure
/// function of what the attempt had done and how it failed.
pub fn fate(a: Attempt, kind: &Kind) -> Fate {
    // Closed or reset before any response byte, with nothing of a body sent.
    let unanswered = || match (a.reused, a.idempotent) {
        (true, true) => Fate::Stale,
        (true, false) => Fate::Final,
        (false, true) => Fate::Retry,
        (false, false) => Fate::Failed,
    };
    match kind {
        // Nothing was sent: any request may go elsewhere.
        Kind::Connect(_) => Fate::Retry,
        Kind::SendTimeout => Fate::Failed,
        Kind::SendHead(_) => unanswered(),
        Kind::RequestBody(e) => match (e.side(), e) {
            (Some(Side::Upstream), BodyError::Timeout(_)) => Fate::Failed,
            // A kept-alive connection may have been closed as idle: not the server's fault.
            (Some(Side::Upstream), _) if !a.reused => Fate::Failed,
            _ => Fate::Final,
        },
        Kind::ReadResponse(_) | Kind::Closed { .. } | Kind::InvalidResponse(_) => {
            if a.answered {
                Fate::Final
            } else if !a.body_sent {
                unanswered()
            } else if a.reused {
                Fate::Final
            } else {
                Fate::Failed
            }
        }
        // nginx retries idempotent requests on read timeouts; certgate answers 504 rather than
        // send a slow request to a second server.
        Kind::ResponseTimeout if a.answered => Fate::Final,
        Kind::ResponseTimeout => Fate::Failed,
        Kind::NoServer | Kind::ClientWrite(_) | Kind::ResponseBody(_) | Kind::Tunnel(_) => {
            Fate::Final
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset() -> io::Error {
        io::ErrorKind::ConnectionReset.into()
    }

    /// Every row of the README's retry rules, and the cases around them.
    #[test]
    fn retry_rules() {
        use Fate::*;
        // (case, idempotent, body sent, answered, reused, kind, fate)
        let rows: Vec<(&str, bool, bool, bool, bool, Kind, Fate)> = vec![
            // No connection could be made: any method, any body may go elsewhere.
            (
                "connect refused, GET",
                true,
                false,
                false,
                false,
                Kind::Connect(ConnectError::Refused(reset())),
                Retry,
            ),
            (
                "connect refused, POST",
                false,
                false,
                false,
                false,
                Kind::Connect(ConnectError::Refused(reset())),
                Retry,
            ),
            (
                "connect timed out, POST",
                false,
                false,
                false,
                false,
                Kind::Connect(ConnectError::Timeout),
                Retry,
            ),
            // Idempotent, closed or reset before any response byte, no body sent.
            (
                "GET closed before responding",
                true,
                false,
                false,
                false,
                Kind::Closed { mid_head: false },
                Retry,
            ),
            (
                "GET reset before responding",
                true,
                false,
                false,
                false,
                Kind::ReadResponse(reset()),
                Retry,
            ),
            (
                "PUT head write reset",
                true,
                false,
                false,
                false,
                Kind::SendHead(reset()),
                Retry,
            ),
            // ... on a kept-alive connection: the idle-close race, not held against the server.
            (
                "GET closed on a kept-alive connection",
                true,
                false,
                false,
                true,
                Kind::Closed { mid_head: false },
                Stale,
            ),
            (
                "GET head write reset, kept-alive",
                true,
                false,
                false,
                true,
                Kind::SendHead(reset()),
                Stale,
            ),
            // Not idempotent, reached the server: never again.
            (
                "POST closed before responding",
                false,
                false,
                false,
                false,
                Kind::Closed { mid_head: false },
                Failed,
            ),
            (
                "POST closed, kept-alive",
                false,
                false,
                false,
                true,
                Kind::Closed { mid_head: false },
                Final,
            ),
            (
                "POST head write reset",
                false,
                false,
                false,
                false,
                Kind::SendHead(reset()),
                Failed,
            ),
            // Part of a body was streamed: never again.
            (
                "PUT closed after its body",
                true,
                true,
                false,
                false,
                Kind::Closed { mid_head: false },
                Failed,
            ),
            (
                "PUT closed after its body, kept-alive",
                true,
                true,
                false,
                true,
                Kind::Closed { mid_head: false },
                Final,
            ),
            (
                "PUT body write reset",
                true,
                true,
                false,
                false,
                Kind::RequestBody(BodyError::Io(Side::Upstream, reset())),
                Failed,
            ),
            (
                "PUT body write reset, kept-alive",
                true,
                true,
                false,
                true,
                Kind::RequestBody(BodyError::Io(Side::Upstream, reset())),
                Final,
            ),
            (
                "PUT body write timed out",
                true,
                true,
                false,
                true,
                Kind::RequestBody(BodyError::Timeout(Side::Upstream)),
                Failed,
            ),
            // Response bytes arrived: never again, not held against the server.
            (
                "GET closed mid-head",
                true,
                false,
                true,
                false,
                Kind::Closed { mid_head: true },
                Final,
            ),
            (
                "GET invalid response",
                true,
                false,
                true,
                false,
                Kind::InvalidResponse(HeadError {
                    status: 502,
                    reason: "x",
                }),
                Final,
            ),
            (
                "GET closed after a 100",
                true,
                true,
                true,
                false,
                Kind::ReadResponse(reset()),
                Final,
            ),
            // upstream_read timeout: 504, no second server.
            (
                "GET no response in time",
                true,
                false,
                false,
                false,
                Kind::ResponseTimeout,
                Failed,
            ),
            (
                "GET no response in time, kept-alive",
                true,
                false,
                false,
                true,
                Kind::ResponseTimeout,
                Failed,
            ),
            (
                "GET timeout after a 100",
                true,
                true,
                true,
                false,
                Kind::ResponseTimeout,
                Final,
            ),
            (
                "GET head write timed out",
                true,
                false,
                false,
                false,
                Kind::SendTimeout,
                Failed,
            ),
            // The client failed: nothing to hold against the server.
            (
                "PUT client body truncated",
                true,
                true,
                false,
                false,
                Kind::RequestBody(BodyError::Truncated(Side::Client)),
                Final,
            ),
            (
                "PUT client body idle",
                true,
                true,
                false,
                false,
                Kind::RequestBody(BodyError::Timeout(Side::Client)),
                Final,
            ),
            (
                "GET client gone",
                true,
                false,
                true,
                false,
                Kind::ClientWrite(reset()),
                Final,
            ),
            (
                "GET response aborted",
                true,
                false,
                true,
                false,
                Kind::ResponseBody(BodyError::Truncated(Side::Upstream)),
                Final,
            ),
        ];
        for (case, idempotent, body_sent, answered, reused, kind, want) in rows {
            let a = Attempt {
                idempotent,
                body_sent,
                answered,
                reused,
            };
            assert_eq!(fate(a, &kind), want, "{case}");
        }
    }

    #[test]
    fn pages_and_sides_follow_from_the_error() {
        let cases: Vec<(Kind, Option<Page>, Source)> = vec![
            (Kind::NoServer, Some(Page::BadGateway), Source::Upstream),
            (
                Kind::Connect(ConnectError::Timeout),
                Some(Page::GatewayTimeout),
                Source::Upstream,
            ),
            (
                Kind::Connect(ConnectError::Refused(reset())),
                Some(Page::BadGateway),
                Source::Upstream,
            ),
            (
                Kind::ResponseTimeout,
                Some(Page::GatewayTimeout),
                Source::Upstream,
            ),
            (
                Kind::Closed { mid_head: false },
                Some(Page::BadGateway),
                Source::Upstream,
            ),
            (
                Kind::RequestBody(BodyError::Malformed(
                    Side::Client,
                    crate::http::ChunkError::InvalidSize,
                )),
                Some(Page::BadRequest),
                Source::Client,
            ),
            (
                Kind::RequestBody(BodyError::Timeout(Side::Client)),
                Some(Page::RequestTimeout),
                Source::Client,
            ),
            (
                Kind::RequestBody(BodyError::Truncated(Side::Client)),
                None,
                Source::Client,
            ),
            (
                Kind::RequestBody(BodyError::Timeout(Side::Upstream)),
                Some(Page::GatewayTimeout),
                Source::Upstream,
            ),
            (
                Kind::RequestBody(BodyError::Truncated(Side::Upstream)),
                Some(Page::BadGateway),
                Source::Upstream,
            ),
            (Kind::ClientWrite(reset()), None, Source::Client),
            (
                Kind::Tunnel(BodyError::Timeout(Side::Upstream)),
                None,
                Source::Upstream,
            ),
        ];
        for (kind, page, source) in cases {
            let e = Error::new(kind, None);
            assert_eq!(e.page(), page, "{e}");
            assert_eq!(e.side(), source, "{e}");
            assert!(
                e.label().starts_with(match source {
                    Source::Client => "client_",
                    Source::Upstream => "upstream_",
                    Source::Internal => "internal_",
                }),
                "{}",
                e.label()
            );
        }
    }

    #[test]
    fn the_reason_names_the_server_and_the_cause() {
        let addr: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let e = Error::new(Kind::Closed { mid_head: false }, Some(addr));
        assert_eq!(
            e.to_string(),
            "192.0.2.1:80: upstream closed the connection before responding"
        );
        let e = Error::new(Kind::Tunnel(BodyError::Timeout(Side::Upstream)), Some(addr));
        assert_eq!(
            e.to_string(),
            "192.0.2.1:80: tunnel ended: upstream idle too long"
        );
    }
}
