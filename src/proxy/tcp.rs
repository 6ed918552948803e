//! TCP mode (as Ghostunnel): after the handshake and the rules, bytes are relayed both ways to
//! an upstream server (plain or TLS), with no HTTP parsing. Half-closes pass through, the idle
//! timeout applies, and the client's identity can precede the stream as a PROXY v2 header.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::warn;

use super::body;
use super::error::{Error, Kind};
use super::identity::Identity;
use super::proxy_protocol::{self, TlsFacts};
use super::Session;
use crate::conn::Conn;
use crate::logging::Access;
use crate::upstream;
use crate::upstream::balance::Tried;

/// Relays one admitted connection; refuses (closes) one that is not admitted.
pub async fn relay(s: &mut Session) {
    let started = Instant::now();
    let id = s.authorize();
    if let Some(refusal) = &id.refusal {
        // There is no HTTP to answer in: the refusal is the close, the reason is in the log.
        Access {
            decision: &refusal.to_string(),
            ..s.access(&id, "tcp connection refused")
        }
        .emit(&s.worker.config.access_log);
        let _ = s.client.shutdown_write().await;
        return;
    }
    let pool = s.worker.pools[s.listener.upstream].clone();
    let up_cfg = &s.worker.config.upstreams[s.listener.upstream];
    let t = s.listener.timeouts;
    // The balancer's pick, then other servers (never one twice), at most `tries` in all; each
    // failed connect counts against its server's shared health (nginx stream's
    // `proxy_next_upstream` on connect errors).
    let key = pool.key(id.cert.as_ref().map(|c| c.fingerprint()), s.peer.ip());
    let mut tried = Tried::default();
    let mut upstream = None;
    let mut last_error = Error::new(Kind::NoServer, None);
    for _ in 0..pool.tries() {
        let Some(i) = pool.choose(&key, &tried) else {
            break;
        };
        tried.insert(i);
        let server = pool.server(i);
        let addr = server.addr;
        match upstream::connect(
            addr,
            server.host_name(),
            t.upstream_connect,
            up_cfg.tls.as_ref(),
        )
        .await
        {
            Ok(c) => {
                pool.succeeded(i);
                // Counts for least_conn while the relay lasts.
                upstream = Some((addr, c, pool.begin(i)));
                break;
            }
            Err(e) => {
                pool.failed(i);
                warn!(listener = %s.listener.name, upstream = %addr, "tcp upstream failed: {e}");
                last_error = Error::new(Kind::Connect(e), Some(addr));
            }
        }
    }
    let Some((addr, mut up, _active)) = upstream else {
        log(s, &id, None, &format!("no upstream: {last_error}"), started);
        return;
    };
    if up_cfg.proxy_protocol {
        let header = proxy_header(s, &id);
        if let Err(e) = up.write_all(&header).await {
            log(
                s,
                &id,
                Some(addr),
                &format!("PROXY header not sent: {e}"),
                started,
            );
            return;
        }
    }
    let pending = std::mem::take(&mut s.buf);
    let res = body::tunnel(
        &mut s.client,
        pending,
        &mut up,
        Default::default(),
        t.body_idle,
    )
    .await;
    let outcome = match res {
        Ok((a, b)) => format!("{}; relayed {a} bytes up, {b} down", id.admitted_by),
        Err(e) => format!("{}; relay ended: {e}", id.admitted_by),
    };
    log(s, &id, Some(addr), &outcome, started);
}

fn proxy_header(s: &Session, id: &Identity) -> Vec<u8> {
    let local = s.client.local_addr().unwrap_or(s.listener.addr);
    let cert = id.cert.as_ref();
    let cn_type = crate::identity::AttrType::from_name("CN");
    let cn = match (cert, &cn_type) {
        (Some(c), Some(t)) => c.subject().values_of(t).last().map(str::to_owned),
        _ => None,
    };
    let (version, cipher, resumed) = match &s.client {
        Conn::Tls(t) => (
            t.ssl().version_str(),
            t.ssl().current_cipher().map_or("", |c| c.name()),
            t.ssl().session_reused(),
        ),
        Conn::Plain(_) => ("", "", false),
    };
    let facts = TlsFacts {
        tls: matches!(s.client, Conn::Tls(_)),
        cert_presented: cert.is_some(),
        resumed,
        verified: id.verified,
        version,
        cipher,
        common_name: cn.as_deref(),
        subject_dn: cert.map(|c| c.subject_rfc2253()),
        issuer_dn: cert.map(|c| c.issuer_rfc2253()),
        verify: &id.verify,
        fingerprint: cert.map(|c| c.fingerprint()),
    };
    proxy_protocol::header(s.peer, local, &facts)
}

fn log(s: &Session, id: &Identity, upstream: Option<SocketAddr>, outcome: &str, started: Instant) {
    Access {
        decision: outcome,
        upstream: Some(upstream),
        total_time: Some(started.elapsed()),
        ..s.access(id, "tcp connection")
    }
    .emit(&s.worker.config.access_log);
}
