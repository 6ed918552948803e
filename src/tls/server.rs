//! Server-side TLS contexts: certificate, key and client-certificate policy, built once at load
//! and shared (read-only) by every worker.

use boring::hash::{hash, MessageDigest};
use boring::pkey::PKey;
use boring::ssl::{
    SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVerifyMode, SslVersion,
};
use boring::x509::store::X509StoreBuilder;
use boring::x509::{X509VerifyError, X509VerifyResult, X509};

use std::sync::Arc;
use std::time::Duration;

use foreign_types::ForeignType;

use boring::ssl::SslSessionCacheMode;

use super::crl::{CrlSet, CrlSettings, StaleCrl};
use super::sni::{Router, Verify};
use super::tickets::TicketKeys;
use super::verify_cache::VerifiedChains;
use crate::config::{Reject, VerifyMode};

/// What a listener's TLS needs; files are already read.
pub struct ServerSettings<'a> {
    /// The server certificate chain, leaf first, PEM.
    pub cert_pem: &'a [u8],
    /// The PEM private key of the leaf.
    pub key_pem: &'a [u8],
    /// Trusted roots and intermediates for client certificates, PEM; the configuration requires
    /// it when `mode` is `required` or `optional`.
    pub ca_pem: Option<&'a [u8]>,
    /// Whether a client certificate is requested and must verify.
    pub mode: VerifyMode,
    /// Refuse failing clients in the handshake (alert) or after it (400 page).
    pub reject: Reject,
    /// Intermediates allowed between the client certificate and a trusted CA (nginx
    /// `ssl_verify_depth`).
    pub verify_depth: u32,
    /// Accept TLS 1.3 only (otherwise 1.2 and 1.3).
    pub min_tls13: bool,
    /// Identifies the admission rules, so a session made under other rules is never resumed.
    pub policy_tag: &'a [u8],
    /// Ticket keys; None disables session tickets.
    pub tickets: Option<&'a Arc<TicketKeys>>,
    /// Session-ID cache entries (TLS 1.2), shared by all workers; 0 disables the cache.
    pub session_cache_size: u32,
    /// Lifetime of a session, cached or in a ticket.
    pub session_timeout: Duration,
    /// Entries of the verified-chain cache; 0 verifies every chain in full.
    pub verify_cache: usize,
}

/// A listener's algorithm choices and further certificates; `Default` is certgate's defaults
/// (see [`super::algorithms`]) and the one certificate of [`ServerSettings`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Handshake<'a> {
    /// Further certificate chains and keys (PEM), served besides `ServerSettings`' pair (an
    /// RSA and an ECDSA certificate, as nginx's repeated `ssl_certificate`): each handshake
    /// gets the first pair, in order and `ServerSettings`' first, whose key can sign with a
    /// scheme the client offers (and, in TLS 1.2, suits a cipher both support).
    pub more_identities: &'a [(&'a [u8], &'a [u8])],
    /// TLS 1.2 cipher list, OpenSSL syntax, checked by [`super::algorithms::ciphers`].
    pub ciphers: Option<&'a str>,
    /// Key-agreement groups, `:`-separated, checked by [`super::algorithms::groups`].
    pub groups: Option<&'a str>,
    /// Schemes a client certificate's signature is verified with, and that the
    /// CertificateRequest advertises.
    pub verify_algorithms: Option<&'a [u16]>,
    /// The OCSP response stapled for the certificate of [`ServerSettings`] (only without
    /// `more_identities`: the staple goes to the connection's own credential).
    pub ocsp: Option<&'a Arc<super::ocsp::Stapler>>,
}

/// Which input a context error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The server certificate (also used for errors of BoringSSL itself).
    Certificate,
    /// The private key, or its mismatch with the certificate.
    PrivateKey,
    /// The client CA file.
    Ca,
    /// Entry `n` of the CRL list.
    Crl(usize),
    /// The certificate of pair `n` of [`Handshake::more_identities`].
    MoreCertificate(usize),
    /// The private key of pair `n` of [`Handshake::more_identities`].
    MoreKey(usize),
}

/// A TLS context that could not be built: which input, and BoringSSL's reason.
#[derive(Debug)]
pub struct ContextError {
    /// The input concerned, so the error can name its configuration key.
    pub part: Part,
    /// BoringSSL's reason, as text.
    pub reason: String,
}

/// Sets a context's own certificate chain (leaf first) and private key, checking they match.
pub(super) fn set_identity(
    b: &mut SslContextBuilder,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(), ContextError> {
    let chain = X509::stack_from_pem(cert_pem).map_err(|e| {
        fail(
            Part::Certificate,
            format!("not a PEM certificate chain: {e}"),
        )
    })?;
    let mut chain = chain.into_iter();
    let leaf = chain
        .next()
        .ok_or_else(|| fail(Part::Certificate, "no certificate found in the file"))?;
    b.set_certificate(&leaf)
        .map_err(|e| fail(Part::Certificate, e.to_string()))?;
    for extra in chain {
        b.add_extra_chain_cert(extra)
            .map_err(|e| fail(Part::Certificate, e.to_string()))?;
    }
    let key = PKey::private_key_from_pem(key_pem)
        .map_err(|e| fail(Part::PrivateKey, format!("not a PEM private key: {e}")))?;
    b.set_private_key(&key)
        .map_err(|e| fail(Part::PrivateKey, e.to_string()))?;
    b.check_private_key().map_err(|_| {
        fail(
            Part::PrivateKey,
            "the private key does not match the certificate",
        )
    })
}

/// Adds a certificate chain (leaf first) and its key as one more credential of a server
/// context, signing with [`super::algorithms::DEFAULT_SIGN`]. The error says whether the key
/// (true) or the certificate is at fault.
fn add_credential(
    b: &mut SslContextBuilder,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(), (bool, String)> {
    let chain = X509::stack_from_pem(cert_pem)
        .map_err(|e| (false, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err((false, "no certificate found in the file".into()));
    }
    let key = PKey::private_key_from_pem(key_pem)
        .map_err(|e| (true, format!("not a PEM private key: {e}")))?;
    let mut ders = Vec::with_capacity(chain.len());
    for c in &chain {
        ders.push(c.to_der().map_err(|e| (false, e.to_string()))?);
    }
    let sign = super::algorithms::DEFAULT_SIGN;
    // SAFETY: the credential and buffers are owned here and released before returning (the
    // context keeps its own references); every pointer passed is live for the call.
    unsafe {
        let cred = boring_sys::SSL_CREDENTIAL_new_x509();
        if cred.is_null() {
            return Err((false, boring::error::ErrorStack::get().to_string()));
        }
        let mut bufs: Vec<*mut boring_sys::CRYPTO_BUFFER> = ders
            .iter()
            .map(|d| boring_sys::CRYPTO_BUFFER_new(d.as_ptr(), d.len(), std::ptr::null_mut()))
            .collect();
        let result = if bufs.iter().any(|p| p.is_null())
            || boring_sys::SSL_CREDENTIAL_set1_cert_chain(cred, bufs.as_mut_ptr(), bufs.len()) != 1
        {
            Err((false, boring::error::ErrorStack::get().to_string()))
        } else if boring_sys::SSL_CREDENTIAL_set1_private_key(cred, key.as_ptr()) != 1 {
            let _ = boring::error::ErrorStack::get();
            Err((
                true,
                "the private key does not match the certificate".into(),
            ))
        } else if boring_sys::SSL_CREDENTIAL_set1_signing_algorithm_prefs(
            cred,
            sign.as_ptr(),
            sign.len(),
        ) != 1
            || boring_sys::SSL_CTX_add1_credential(b.as_ptr(), cred) != 1
        {
            Err((false, boring::error::ErrorStack::get().to_string()))
        } else {
            Ok(())
        };
        for p in bufs.into_iter().filter(|p| !p.is_null()) {
            boring_sys::CRYPTO_BUFFER_free(p);
        }
        boring_sys::SSL_CREDENTIAL_free(cred);
        result
    }
}

fn part_of(key: bool, cert: Part, private_key: Part) -> Part {
    if key {
        private_key
    } else {
        cert
    }
}

pub(super) fn fail(part: Part, reason: impl Into<String>) -> ContextError {
    ContextError {
        part,
        reason: reason.into(),
    }
}

/// Builds a listener's TLS context from `s`: certificate and key, client verification and the
/// verified-chain cache, session tickets and session-ID cache with an ID context of `policy_tag`,
/// TLS 1.2 or 1.3 at least. Runs at load and on reload, never on a connection.
pub fn server_context(s: &ServerSettings<'_>) -> Result<SslContext, ContextError> {
    server_context_with_crls(s, None, ALPN_HTTP1).map(|(ctx, _)| ctx)
}

/// ALPN offering HTTP/1.1 only (wire format).
pub const ALPN_HTTP1: &[u8] = b"\x08http/1.1";

/// As [`server_context`], with client certificates also checked against CRLs (`crls`, which
/// needs `mode` other than off and a CA file), and ALPN choosing from `alpn` (wire format, in
/// the listener's order of preference). The returned [`CrlSet`] is refreshed by its
/// owner; each new connection takes its current generation in the ClientHello callback.
pub fn server_context_with_crls(
    s: &ServerSettings<'_>,
    crls: Option<&CrlSettings>,
    alpn: &'static [u8],
) -> Result<(SslContext, Option<Arc<CrlSet>>), ContextError> {
    listener_context(s, &Handshake::default(), crls, alpn)
}

/// As [`server_context_with_crls`], with the algorithms and further certificates of `h`.
pub fn listener_context(
    s: &ServerSettings<'_>,
    h: &Handshake<'_>,
    crls: Option<&CrlSettings>,
    alpn: &'static [u8],
) -> Result<(SslContext, Option<Arc<CrlSet>>), ContextError> {
    sni_context(s, h, crls, alpn, None)
}

/// As [`listener_context`]; with `sni`, the ClientHello callback first switches a connection
/// whose SNI names a block to that block's context (see [`super::sni`]).
pub fn sni_context(
    s: &ServerSettings<'_>,
    h: &Handshake<'_>,
    crls: Option<&CrlSettings>,
    alpn: &'static [u8],
    sni: Option<Router>,
) -> Result<(SslContext, Option<Arc<CrlSet>>), ContextError> {
    let internal = |e: boring::error::ErrorStack| fail(Part::Certificate, e.to_string());
    let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(internal)?;
    let min = if s.min_tls13 {
        SslVersion::TLS1_3
    } else {
        SslVersion::TLS1_2
    };
    b.set_min_proto_version(Some(min)).map_err(internal)?;
    super::algorithms::apply(&mut b, h.ciphers, h.groups, h.verify_algorithms).map_err(internal)?;
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE | SslOptions::NO_RENEGOTIATION);
    // Buffers of idle connections are given back to the allocator.
    b.set_mode(SslMode::RELEASE_BUFFERS);

    if h.more_identities.is_empty() {
        set_identity(&mut b, s.cert_pem, s.key_pem)?;
    } else {
        add_credential(&mut b, s.cert_pem, s.key_pem).map_err(|(key, reason)| {
            fail(part_of(key, Part::Certificate, Part::PrivateKey), reason)
        })?;
        for (n, (cert, key)) in h.more_identities.iter().enumerate() {
            add_credential(&mut b, cert, key).map_err(|(key, reason)| {
                fail(
                    part_of(key, Part::MoreCertificate(n), Part::MoreKey(n)),
                    reason,
                )
            })?;
        }
        // The context's own certificate, without its key, is never served (BoringSSL skips an
        // incomplete one): it only reports the first pair to `SslContextRef::certificate`
        // (the expiry metric).
        let first = X509::stack_from_pem(s.cert_pem).map_err(internal)?;
        if let Some(leaf) = first.first() {
            b.set_certificate(leaf).map_err(internal)?;
        }
    }
    // The listener's preference among what the client offers; nothing in common: no ALPN,
    // and the connection speaks HTTP/1.1 as it would without ALPN (as nginx does).
    b.set_alpn_select_callback(move |_, client| {
        boring::ssl::select_next_proto(alpn, client).ok_or(boring::ssl::AlpnError::NOACK)
    });
    if let Some(stapler) = h.ocsp {
        super::ocsp::install(&mut b, stapler.clone()).map_err(internal)?;
    }

    let mut sid_ctx = Vec::with_capacity(256);
    sid_ctx.extend_from_slice(b"certgate/1");
    sid_ctx.push(s.mode as u8);
    sid_ctx.push(s.reject as u8);
    sid_ctx.extend_from_slice(&s.verify_depth.to_le_bytes());
    sid_ctx.extend_from_slice(s.policy_tag);

    let mut trusted = Vec::new();
    if s.mode != VerifyMode::Off {
        let mut store = X509StoreBuilder::new().map_err(internal)?;
        if let Some(pem) = s.ca_pem {
            let cas = X509::stack_from_pem(pem)
                .map_err(|e| fail(Part::Ca, format!("not PEM certificates: {e}")))?;
            if cas.is_empty() {
                return Err(fail(Part::Ca, "no certificate found in the file"));
            }
            for ca in &cas {
                sid_ctx.extend_from_slice(&ca.digest(MessageDigest::sha256()).map_err(internal)?);
                store
                    .add_cert(ca)
                    .map_err(|e| fail(Part::Ca, e.to_string()))?;
                // Acceptable CA names sent in the CertificateRequest, as nginx does.
                b.add_client_ca(ca)
                    .map_err(|e| fail(Part::Ca, e.to_string()))?;
            }
            trusted = cas;
        }
        b.set_verify_cert_store(store.build()).map_err(internal)?;
        b.set_verify_depth(s.verify_depth);
        // With CRLs, each CRL generation has its own cache (see `install_crls`).
        if s.verify_cache > 0 && crls.is_none() {
            let cache = Arc::new(VerifiedChains::new(s.verify_cache));
            b.set_cert_verify_callback(move |ctx| cache.verify(ctx));
        }
        match (s.mode, s.reject) {
            // TLS itself refuses: no certificate -> certificate_required, bad ones -> their alert.
            (VerifyMode::Required, Reject::Handshake) => {
                b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT)
            }
            (VerifyMode::Optional, Reject::Handshake) => b.set_verify(SslVerifyMode::PEER),
            // The handshake completes whatever the certificate; the verify result is kept in
            // the session and judged per request, as nginx does.
            _ => b.set_verify_callback(SslVerifyMode::PEER, |_, _| true),
        }
    }
    // Resumption. The context is shared by every worker, so BoringSSL's session cache (behind
    // its lock) and the ticket keys serve a client whichever worker it reconnects to.
    match s.tickets {
        Some(keys) => keys.install(&mut b),
        None => {
            b.set_options(SslOptions::NO_TICKET);
        }
    }
    if s.session_cache_size == 0 {
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
    } else {
        b.set_session_cache_mode(SslSessionCacheMode::SERVER);
        b.set_session_cache_size(s.session_cache_size);
    }
    let secs = u32::try_from(s.session_timeout.as_secs())
        .unwrap_or(u32::MAX)
        .max(1);
    // SAFETY: plain setters on the context being built; the pool lives for the process.
    unsafe {
        boring_sys::SSL_CTX_set_timeout(b.as_ptr(), secs);
        // One ticket per full handshake, not BoringSSL's two: clients resume with one, and each
        // ticket costs a session serialisation and its encryption.
        boring_sys::SSL_CTX_set_num_tickets(b.as_ptr(), 1);
        // Received certificates are interned: the intermediates every client sends are held
        // once, not once per connection.
        boring_sys::SSL_CTX_set0_buffer_pool(b.as_ptr(), buffer_pool());
    }
    // A session made under one client-auth policy never resumes under another.
    let digest = hash(MessageDigest::sha256(), &sid_ctx).map_err(internal)?;
    b.set_session_id_context(&digest).map_err(internal)?;
    let set = match crls {
        Some(c) if s.mode != VerifyMode::Off => {
            let set = CrlSet::load(c, trusted, &digest, s.verify_cache)
                .map_err(|e| fail(Part::Crl(e.index), e.reason))?;
            let set = Arc::new(set);
            install_crls(&mut b, &set, s, c.stale);
            Some(set)
        }
        _ => None,
    };
    // The early ClientHello callback: the SNI block's context first, then the CRL generation
    // of the policy the connection ends up with.
    match (sni, &set) {
        (Some(router), own) => {
            let own = own.clone();
            b.set_select_certificate_callback(move |mut hello| {
                let ssl = hello.ssl_mut();
                let switched = router.route(ssl).map_err(|e| {
                    tracing::error!("TLS handshake refused: {e}");
                    boring::ssl::SelectCertError::ERROR
                })?;
                match &own {
                    Some(set) if !switched => set.prepare(ssl).map_err(|e| {
                        tracing::error!("TLS handshake refused: {e}");
                        boring::ssl::SelectCertError::ERROR
                    }),
                    _ => Ok(()),
                }
            });
        }
        (None, Some(set)) => {
            let on_hello = set.clone();
            b.set_select_certificate_callback(move |mut hello| {
                on_hello.prepare(hello.ssl_mut()).map_err(|e| {
                    tracing::error!("TLS handshake refused: {e}");
                    boring::ssl::SelectCertError::ERROR
                })
            });
        }
        (None, None) => {}
    }
    Ok((b.build(), set))
}

/// How a connection switched to a context built from `s` must verify client certificates
/// (what `SSL_new` copied from the listener's context, see [`super::sni`]).
pub fn verify_of(s: &ServerSettings<'_>, crls: Option<StaleCrl>) -> Verify {
    let mode = match (s.mode, s.reject) {
        (VerifyMode::Off, _) => SslVerifyMode::NONE,
        (VerifyMode::Required, Reject::Handshake) => {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        }
        _ => SslVerifyMode::PEER,
    };
    Verify {
        mode,
        lenient: !matches!(
            (s.mode, s.reject),
            (
                VerifyMode::Required | VerifyMode::Optional,
                Reject::Handshake
            )
        ),
        warn_stale: crls == Some(StaleCrl::Warn),
        depth: s.verify_depth,
    }
}

/// Hooks a CRL set into a context (each ClientHello takes the current generation, store and
/// session ID context, in the callback `sni_context` installs): verification goes through its cache, and with `stale_crl = "warn"` a
/// CRL past its nextUpdate is not an error.
fn install_crls(
    b: &mut SslContextBuilder,
    set: &Arc<CrlSet>,
    s: &ServerSettings<'_>,
    stale: StaleCrl,
) {
    let on_verify = set.clone();
    b.set_cert_verify_callback(move |ctx| on_verify.verify(ctx));
    // The handshake-rejecting modes refuse on a failure; the others let the handshake complete
    // with the error recorded, judged per request.
    let lenient = !matches!(
        (s.mode, s.reject),
        (
            VerifyMode::Required | VerifyMode::Optional,
            Reject::Handshake
        )
    );
    let warn = stale == StaleCrl::Warn;
    let mode = match (s.mode, s.reject) {
        (VerifyMode::Required, Reject::Handshake) => {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        }
        _ => SslVerifyMode::PEER,
    };
    b.set_verify_callback(mode, move |ok, ctx| {
        if !ok && warn && ctx.verify_result() == Err(X509VerifyError::CRL_HAS_EXPIRED) {
            ctx.set_error(X509VerifyResult::Ok(()));
            return true;
        }
        ok || lenient
    });
}

/// The process-wide pool of received certificate buffers (never freed: contexts keep pointers).
fn buffer_pool() -> *mut boring_sys::CRYPTO_BUFFER_POOL {
    struct Pool(*mut boring_sys::CRYPTO_BUFFER_POOL);
    // SAFETY: a CRYPTO_BUFFER_POOL is internally locked and may be used from any thread.
    unsafe impl Send for Pool {}
    unsafe impl Sync for Pool {}
    static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
    // SAFETY: allocation only; a null pool (out of memory) means "no pool" to BoringSSL.
    POOL.get_or_init(|| Pool(unsafe { boring_sys::CRYPTO_BUFFER_POOL_new() }))
        .0
}
