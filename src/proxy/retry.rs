//! The attempts of one request to an HTTP/1.1 upstream, shared by the HTTP/1.1 forward and by
//! HTTP/2 streams forwarded to HTTP/1.1 (`http2::to_h1`): which server comes next, and whether a
//! failed attempt goes again, as [`fate`] decides (nginx's `proxy_next_upstream` defaults). Each
//! failure is reported to the shared passive health and counted in the server's metrics.
//!
//! (HTTP/2 upstreams retry streams, not connections, by rules of their own: `http2::to_h2::Tries`.)

use std::fmt;
use std::time::Duration;

use monoio::time::timeout;

use tracing::debug;

use super::error::{fate, Attempt, Error, Fate, Kind};
use crate::conn::Conn;
use crate::upstream::balance::{Active, Key, Tried};
use crate::upstream::Pool;

/// Every failed attempt of a request, the last one deciding the answer.
#[derive(Debug)]
pub struct Failed {
    /// The failures that were retried, in order.
    pub earlier: Vec<Error>,
    /// The failure that ended the request.
    pub last: Error,
    /// Attempts made (0: no server to try).
    pub attempts: usize,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.earlier {
            write!(f, "{e}; then ")?;
        }
        self.last.fmt(f)
    }
}

/// Sends an attempt's request head (with any body bytes already joined to it). When nothing
/// follows it, it is handed to the kernel and not awaited (see [`Conn::hand_over`]): the write
/// ends while the response is awaited, under that read's timeout, which saves a wake-up and a
/// timer per request. Otherwise it is written within `limit`.
pub async fn send_head(
    conn: &mut Conn,
    head: &[u8],
    nothing_follows: bool,
    limit: Duration,
) -> Result<(), Kind> {
    let handed = match nothing_follows {
        true => conn.hand_over(head),
        false => None,
    };
    match handed {
        Some(started) => started.map_err(Kind::SendHead),
        None => match timeout(limit, conn.write_all(head)).await {
            Err(_) => Err(Kind::SendTimeout),
            Ok(written) => written.map_err(Kind::SendHead),
        },
    }
}

/// The failure of an attempt on `server` (either upstream protocol), counted in the server's
/// metrics when no connection could be made.
pub(crate) fn attempt_failed(pool: &Pool, server: usize, kind: Kind) -> Error {
    if matches!(kind, Kind::Connect(_)) {
        pool.stats(server).connect_failures.inc();
    }
    Error::new(kind, Some(pool.server(server).addr))
}

/// One request's way through the servers of a pool.
pub struct Retries<'p> {
    pool: &'p Pool,
    key: Key,
    tried: Tried,
    tries_left: usize,
    /// A server whose kept-alive connection was found closed: one more try on a new connection
    /// when no other server is left.
    stale: Option<usize>,
    failures: Vec<Error>,
    attempts: usize,
}

impl<'p> Retries<'p> {
    /// The first attempt of a request whose balancing key is `key`.
    pub fn new(pool: &'p Pool, key: Key) -> Self {
        Self {
            pool,
            key,
            tried: Tried::default(),
            tries_left: pool.tries(),
            stale: None,
            failures: Vec::new(),
            attempts: 0,
        }
    }

    /// Attempts made so far, the current one included.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// The next server to try, counted as a request to it (and for `least_conn` while the
    /// guard lives).
    ///
    /// # Errors
    /// No server is left: every failure so far, or `NoServer` when none was tried.
    pub fn next_server(&mut self) -> Result<(usize, Active<'p>), Failed> {
        let pool = self.pool;
        let server = match pool.choose(&self.key, &self.tried) {
            Some(i) => i,
            None => match self.stale.take() {
                Some(i) => {
                    pool.discard_idle(pool.server(i).addr);
                    i
                }
                None => {
                    let mut earlier = std::mem::take(&mut self.failures);
                    let last = earlier
                        .pop()
                        .unwrap_or_else(|| Error::new(Kind::NoServer, None));
                    return Err(Failed {
                        earlier,
                        last,
                        attempts: self.attempts,
                    });
                }
            },
        };
        self.tried.insert(server);
        self.attempts += 1;
        pool.stats(server).requests.inc();
        Ok((server, pool.begin(server)))
    }

    /// Records the failure of the attempt on `server`: how far it went and why it ended.
    ///
    /// # Return
    /// `None` when the request goes again (call [`Retries::next_server`]); otherwise every failure,
    /// this one last.
    pub fn failed(&mut self, server: usize, attempt: Attempt, kind: Kind) -> Option<Failed> {
        let pool = self.pool;
        let error = attempt_failed(pool, server, kind);
        let again = match fate(attempt, &error.kind) {
            Fate::Stale => {
                self.stale = Some(server);
                true
            }
            Fate::Retry => {
                pool.failed(server);
                self.tries_left = self.tries_left.saturating_sub(1);
                self.tries_left > 0
            }
            Fate::Failed => {
                pool.failed(server);
                false
            }
            Fate::Final => false,
        };
        if !again {
            return Some(Failed {
                earlier: std::mem::take(&mut self.failures),
                last: error,
                attempts: self.attempts,
            });
        }
        pool.stats(server).retries.inc();
        let next = match error.kind {
            Kind::Connect(_) => "trying another server",
            _ => "trying again",
        };
        debug!(
            upstream = %pool.server(server).addr,
            pooled = attempt.reused,
            "upstream attempt failed: {error}; {next}"
        );
        self.failures.push(error);
        None
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::upstream::ConnectError;

    /// A pool of `servers` placeholder servers (never contacted); `extra` lines end its
    /// `[[upstream]]` table.
    fn pool(servers: usize, extra: &str) -> Pool {
        let list: Vec<String> = (1..=servers)
            .map(|i| format!("\"127.0.0.{i}:9\""))
            .collect();
        let text = format!(
            "[[listener]]\nname = \"t\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n\n\
             [[upstream]]\nname = \"app\"\nservers = [{}]\n{extra}\n",
            list.join(", ")
        );
        let config = Config::parse(Path::new("/nonexistent/certgate.toml"), &text).unwrap();
        Pool::new(Arc::clone(&config.upstreams[0]))
    }

    fn attempt(idempotent: bool, body_sent: bool, reused: bool) -> Attempt {
        Attempt {
            idempotent,
            body_sent,
            answered: false,
            reused,
        }
    }

    /// An idempotent request's connect to `server` was refused, and it goes again.
    fn retried(tries: &mut Retries<'_>, server: usize) {
        let failed = tries.failed(server, attempt(true, false, false), refused());
        assert!(failed.is_none(), "{failed:?}");
    }

    fn refused() -> Kind {
        Kind::Connect(ConnectError::Refused(
            io::ErrorKind::ConnectionRefused.into(),
        ))
    }

    #[test]
    fn connect_failures_move_on_to_each_server_then_end_with_all_of_them() {
        let pool = pool(2, "");
        let mut tries = Retries::new(&pool, Key::default());
        let (a, _) = tries.next_server().expect("first");
        retried(&mut tries, a);
        let (b, _) = tries.next_server().expect("second");
        assert_ne!(a, b, "the server that failed is not tried again");
        retried(&mut tries, b);
        let failed = tries.next_server().err().expect("no server left");
        assert_eq!(failed.attempts, 2);
        assert_eq!(failed.earlier.len(), 1);
        assert_eq!(failed.earlier[0].server, Some(pool.server(a).addr));
        assert_eq!(failed.last.server, Some(pool.server(b).addr));
        assert_eq!(pool.stats(a).connect_failures.get(), 1);
        assert_eq!(pool.stats(a).requests.get(), 1);
        assert_eq!(pool.stats(a).retries.get(), 1);
        let text = failed.to_string();
        assert!(text.contains("; then "), "{text}");
    }

    #[test]
    fn tries_bound_the_attempts() {
        let pool = pool(3, "tries = 2");
        let mut tries = Retries::new(&pool, Key::default());
        let (a, _) = tries.next_server().expect("first");
        retried(&mut tries, a);
        let (b, _) = tries.next_server().expect("second");
        let failed = tries
            .failed(b, attempt(true, false, false), refused())
            .expect("two tries used");
        assert_eq!((failed.attempts, failed.earlier.len()), (2, 1));
        assert_eq!(pool.stats(b).retries.get(), 0);
    }

    #[test]
    fn a_request_whose_body_went_up_is_not_sent_again() {
        let pool = pool(2, "");
        let mut tries = Retries::new(&pool, Key::default());
        let (a, _) = tries.next_server().expect("first");
        let failed = tries
            .failed(
                a,
                attempt(false, true, false),
                Kind::Closed { mid_head: false },
            )
            .expect("not retried");
        assert_eq!(failed.attempts, 1);
        assert!(failed.earlier.is_empty());
    }

    #[test]
    fn a_stale_pooled_connection_gets_one_more_try_on_the_same_server_when_none_is_left() {
        let pool = pool(1, "");
        let mut tries = Retries::new(&pool, Key::default());
        let (a, _) = tries.next_server().expect("first");
        // A kept-alive connection closed before any byte of the answer: not the server's fault.
        assert!(tries
            .failed(
                a,
                attempt(true, false, true),
                Kind::Closed { mid_head: false }
            )
            .is_none());
        let (again, _) = tries
            .next_server()
            .expect("the same server, on a new connection");
        assert_eq!(again, a);
        retried(&mut tries, a);
        let failed = tries.next_server().err().expect("no server left");
        assert_eq!((failed.attempts, failed.earlier.len()), (2, 1));
    }

    #[test]
    fn no_server_to_try_is_no_server() {
        let pool = pool(1, "");
        let mut tries = Retries::new(&pool, Key::default());
        tries.tried.insert(0);
        let failed = tries.next_server().err().expect("nothing left");
        assert_eq!(failed.attempts, 0);
        assert!(matches!(failed.last.kind, Kind::NoServer));
    }
}
