//! Client-side TLS towards upstreams: verify the upstream's certificate and name, present
//! certgate's own client certificate (nginx `proxy_ssl_certificate`, Apache
//! `SSLProxyMachineCertificateFile`), send SNI, and resume sessions across connections.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use boring::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslSession, SslSessionCacheMode, SslVerifyMode,
    SslVersion,
};
use boring::x509::store::X509StoreBuilder;
use boring::x509::X509;

use super::crl::{CrlSet, CrlSettings, StaleCrl};
use super::server::{fail, set_identity, ContextError, Part};

/// What an upstream's TLS needs; files are already read.
pub struct ClientSettings<'a> {
    /// Trusted roots for the upstream's certificate; None: the system's.
    pub ca_pem: Option<&'a [u8]>,
    /// Client certificate chain and key (both may come from one bundle).
    pub cert_pem: Option<&'a [u8]>,
    /// The PEM private key of `cert_pem`.
    pub key_pem: Option<&'a [u8]>,
    /// Verify the servers' certificates and names; false only when written `verify = false`.
    pub verify: bool,
    /// CRLs the servers' chains are checked against (needs `ca_pem` and `verify`).
    pub crls: Option<&'a CrlSettings>,
    /// TLS 1.2 cipher list, OpenSSL syntax, checked by [`super::algorithms::ciphers`]; None:
    /// the default.
    pub ciphers: Option<&'a str>,
    /// Key-agreement groups, `:`-separated, checked by [`super::algorithms::groups`]; None:
    /// the default (X25519MLKEM768 first).
    pub groups: Option<&'a str>,
}

/// An upstream's TLS: the context, the name to send and verify, and resumable sessions.
pub struct UpstreamTls {
    ctx: SslContext,
    /// SNI and verified name; None: the server's host name, or for a server given as an
    /// address, that address verified as an IP SAN (and no SNI).
    pub server_name: Option<String>,
    /// Whether the servers' certificates are verified.
    pub verify: bool,
    sessions: Option<Sessions>,
    crls: Option<Arc<CrlSet>>,
}

/// A connection's server, and the CRL generation its handshake verified under.
#[derive(Clone, Copy)]
struct Peer {
    addr: SocketAddr,
    crl_tag: [u8; 32],
}

/// The last session per server, with the tag of the CRL generation it was verified under.
type SessionStore = Arc<Mutex<HashMap<SocketAddr, (SslSession, [u8; 32])>>>;

/// Resumable sessions per server, and the ex_data slot naming a connection's server.
struct Sessions {
    store: SessionStore,
    index: boring::ex_data::Index<Ssl, Peer>,
}

impl UpstreamTls {
    /// Whether certgate presents a client certificate to the servers.
    pub fn presents_certificate(&self) -> bool {
        self.ctx.certificate().is_some()
    }

    /// The CRLs the servers' chains are checked against, for the refresh thread.
    pub fn crls(&self) -> Option<&Arc<CrlSet>> {
        self.crls.as_ref()
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .field("session_reuse", &self.sessions.is_some())
            .finish()
    }
}

impl UpstreamTls {
    /// Builds the context (TLS 1.2 at least, the given roots or the system's, the client
    /// certificate); with `session_reuse`, sessions are kept per server address for resumption.
    /// Fails naming the input (certificate, key or CA) that BoringSSL refused.
    pub fn new(
        s: &ClientSettings<'_>,
        server_name: Option<String>,
        session_reuse: bool,
    ) -> Result<Self, ContextError> {
        let internal = |e: boring::error::ErrorStack| fail(Part::Certificate, e.to_string());
        let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(internal)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(internal)?;
        // Also: no SHA-1 signature accepted from the servers, nor made for them.
        super::algorithms::apply(&mut b, s.ciphers, s.groups, None).map_err(internal)?;
        if s.verify {
            b.set_verify(SslVerifyMode::PEER);
            match s.ca_pem {
                Some(pem) => {
                    let cas = X509::stack_from_pem(pem)
                        .map_err(|e| fail(Part::Ca, format!("not PEM certificates: {e}")))?;
                    if cas.is_empty() {
                        return Err(fail(Part::Ca, "no certificate found in the file"));
                    }
                    let mut store = X509StoreBuilder::new().map_err(internal)?;
                    for ca in &cas {
                        store
                            .add_cert(ca)
                            .map_err(|e| fail(Part::Ca, e.to_string()))?;
                    }
                    b.set_verify_cert_store(store.build()).map_err(internal)?;
                }
                None => b.set_default_verify_paths().map_err(internal)?,
            }
        } else {
            b.set_verify(SslVerifyMode::NONE);
        }
        let crls = match (s.crls, s.ca_pem) {
            (Some(c), Some(pem)) if s.verify => {
                let cas = X509::stack_from_pem(pem)
                    .map_err(|e| fail(Part::Ca, format!("not PEM certificates: {e}")))?;
                let set = CrlSet::load(c, cas, b"certgate/upstream", 0)
                    .map_err(|e| fail(Part::Crl(e.index), e.reason))?;
                if c.stale == StaleCrl::Warn {
                    b.set_verify_callback(SslVerifyMode::PEER, |ok, ctx| {
                        if !ok
                            && ctx.verify_result()
                                == Err(boring::x509::X509VerifyError::CRL_HAS_EXPIRED)
                        {
                            ctx.set_error(Ok(()));
                            return true;
                        }
                        ok
                    });
                }
                Some(Arc::new(set))
            }
            _ => None,
        };
        if let Some(pem) = s.cert_pem {
            // A bundle holds both: the key is then read from the same file.
            set_identity(&mut b, pem, s.key_pem.unwrap_or(pem))?;
        }
        let sessions = if session_reuse {
            let store: SessionStore = Arc::default();
            let index = peer_index()?;
            let slot = store.clone();
            b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
            // TLS 1.3 tickets arrive after the handshake: only this callback sees them.
            b.set_new_session_callback(move |ssl, session| {
                if let Some(peer) = ssl.ex_data(index) {
                    if let Ok(mut map) = slot.lock() {
                        map.insert(peer.addr, (session, peer.crl_tag));
                    }
                }
            });
            Some(Sessions { store, index })
        } else {
            b.set_session_cache_mode(SslSessionCacheMode::OFF);
            None
        };
        Ok(Self {
            ctx: b.build(),
            server_name,
            verify: s.verify,
            sessions,
            crls,
        })
    }

    /// A client `Ssl` for a new connection to `addr`: SNI, the name to verify, and the last
    /// session to resume.
    pub fn ssl_for(
        &self,
        addr: SocketAddr,
        host: Option<&str>,
    ) -> Result<Ssl, boring::error::ErrorStack> {
        let mut ssl = Ssl::new(&self.ctx)?;
        match self.server_name.as_deref().or(host) {
            Some(name) => {
                if name.parse::<IpAddr>().is_err() {
                    ssl.set_hostname(name)?;
                }
                if self.verify {
                    let param = ssl.param_mut();
                    match name.parse::<IpAddr>() {
                        Ok(ip) => param.set_ip(ip)?,
                        Err(_) => param.set_host(name)?,
                    }
                }
            }
            None if self.verify => ssl.param_mut().set_ip(addr.ip())?,
            None => {}
        }
        let crl_tag = match &self.crls {
            Some(c) => c.prepare_client(&mut ssl).map_err(|e| {
                tracing::error!("upstream TLS: {e}");
                boring::error::ErrorStack::get()
            })?,
            None => [0; 32],
        };
        if let Some(Sessions { store, index }) = &self.sessions {
            ssl.set_ex_data(*index, Peer { addr, crl_tag });
            // A session verified under other CRLs is not resumed: the server's chain is
            // checked against the current ones.
            let session = store
                .lock()
                .ok()
                .and_then(|m| m.get(&addr).filter(|(_, t)| *t == crl_tag).cloned());
            if let Some((session, _)) = session {
                // SAFETY: the session was made by this same context.
                unsafe { ssl.set_session(&session)? };
            }
        }
        Ok(ssl)
    }
}

impl UpstreamTls {
    /// As [`UpstreamTls::ssl_for`], offering ALPN `h2` alone (`protocol = "h2"`): a server
    /// that does not select it is refused after the handshake ([`selected_h2`]).
    pub fn ssl_for_h2(
        &self,
        addr: SocketAddr,
        host: Option<&str>,
    ) -> Result<Ssl, boring::error::ErrorStack> {
        let mut ssl = self.ssl_for(addr, host)?;
        ssl.set_alpn_protos(ALPN_H2)?;
        Ok(ssl)
    }

    /// Whether the handshake of `ssl` selected ALPN `h2`.
    pub fn selected_h2(ssl: &boring::ssl::SslRef) -> bool {
        ssl.selected_alpn_protocol() == Some(b"h2".as_slice())
    }
}

/// ALPN `h2` in wire format (RFC 7301: length-prefixed names).
const ALPN_H2: &[u8] = b"\x02h2";

/// The ex_data slot carrying a connection's upstream address to the new-session callback.
fn peer_index() -> Result<boring::ex_data::Index<Ssl, Peer>, ContextError> {
    static INDEX: std::sync::OnceLock<Option<boring::ex_data::Index<Ssl, Peer>>> =
        std::sync::OnceLock::new();
    INDEX
        .get_or_init(|| Ssl::new_ex_index().ok())
        .ok_or_else(|| fail(Part::Certificate, "cannot allocate an ex_data index"))
}
