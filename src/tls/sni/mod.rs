//! Several names on one listener: the `[[listener.sni]]` names a ClientHello (or a request's
//! Host) selects a block by, and the switch of a connection to the selected block's context in
//! the early ClientHello callback.
//!
//! Each block is a whole TLS context of its own (certificate, client CAs, verification store,
//! CRLs, session ID context). `SSL_set_SSL_CTX` moves the certificate-related state (BoringSSL's
//! `CERT`: credentials, verify store, session ID context) and `SSL_get_SSL_CTX`, from which the
//! CertificateRequest's CA names, the verify cache, ALPN and the ticket keys are read; but the
//! verify mode, its callback and the verify depth were copied into the connection at `SSL_new`
//! from the listener's context, so [`Policy::apply`] sets them on the connection again.

use std::sync::Arc;

use boring::ssl::{SslAlert, SslContext, SslRef, SslVerifyMode};
use boring::x509::{X509VerifyError, X509VerifyResult};
use foreign_types::ForeignTypeRef;

use super::crl::CrlSet;
use crate::config::Listener;

mod names;

pub use self::names::{Name, Names};

/// How a policy's client certificates are verified, set on a connection that switches to it.
pub struct Verify {
    /// The verify mode (`NONE` when client_auth is off).
    pub mode: SslVerifyMode,
    /// A failed verification still completes the handshake (judged per request).
    pub lenient: bool,
    /// A CRL past its nextUpdate is not an error (`stale_crl = "warn"`).
    pub warn_stale: bool,
    /// Intermediates allowed.
    pub depth: u32,
}

/// A block's context and what a connection needs set when it switches to it.
pub struct Policy {
    /// The block's whole context.
    pub ctx: SslContext,
    /// Its verification.
    pub verify: Verify,
    /// Its CRLs (whose current generation also carries the session ID context).
    pub crls: Option<Arc<CrlSet>>,
}

impl Policy {
    /// Moves `ssl` to this policy: context, verify mode, callback and depth, CRL generation.
    pub fn apply(&self, ssl: &mut SslRef) -> Result<(), String> {
        ssl.set_ssl_context(&self.ctx)
            .map_err(|e| format!("cannot switch to the SNI block's context: {e}"))?;
        let v = &self.verify;
        let (lenient, warn) = (v.lenient, v.warn_stale);
        ssl.set_verify_callback(v.mode, move |ok, ctx| {
            if !ok && warn && ctx.verify_result() == Err(X509VerifyError::CRL_HAS_EXPIRED) {
                ctx.set_error(X509VerifyResult::Ok(()));
                return true;
            }
            ok || lenient
        });
        ssl.set_verify_depth(v.depth);
        match &self.crls {
            Some(set) => set.prepare(ssl),
            None => Ok(()),
        }
    }
}

/// What the listener's ClientHello callback chooses among.
pub struct Router {
    /// Which name selects which block.
    pub names: Arc<Names>,
    /// The blocks, in `names`' numbering.
    pub blocks: Vec<Policy>,
    /// `unknown_sni = "reject"`: a context whose only role is to refuse the handshake with the
    /// `unrecognized_name` alert.
    pub reject: Option<SslContext>,
}

impl Router {
    /// A context for [`Router::reject`]: switching to it makes BoringSSL's servername step
    /// refuse the handshake with `unrecognized_name` (the early callback itself can only send
    /// `handshake_failure`).
    pub fn rejecting() -> Result<SslContext, boring::error::ErrorStack> {
        let mut b = boring::ssl::SslContextBuilder::new(boring::ssl::SslMethod::tls())?;
        b.set_servername_callback(|_, alert| {
            *alert = SslAlert::UNRECOGNIZED_NAME;
            Err(boring::ssl::SniError::ALERT_FATAL)
        });
        Ok(b.build())
    }

    /// Selects the block of the ClientHello's SNI and switches `ssl` to it. `Ok(false)`: no
    /// block, the listener's own policy goes on.
    pub fn route(&self, ssl: &mut SslRef) -> Result<bool, String> {
        let block = ssl
            .servername_raw(boring::ssl::NameType::HOST_NAME)
            .and_then(|sni| self.names.select(sni));
        match (block.and_then(|b| self.blocks.get(b)), &self.reject) {
            (Some(policy), _) => policy.apply(ssl).map(|()| true),
            (None, Some(reject)) => ssl
                .set_ssl_context(reject)
                .map(|()| true)
                .map_err(|e| format!("cannot refuse the unknown name: {e}")),
            (None, None) => Ok(false),
        }
    }
}

/// The block (or the listener's own policy, itself) a finished handshake on `listener` ended
/// with: the one whose context the connection was switched to.
pub fn policy_of(listener: &Arc<Listener>, ssl: &SslRef) -> Arc<Listener> {
    let ctx = ssl.ssl_context().as_ptr();
    listener
        .sni
        .iter()
        .find(|b| b.tls.as_ref().is_some_and(|t| t.as_ptr() == ctx))
        .cloned()
        .unwrap_or_else(|| listener.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_exact_and_one_label_wildcards() {
        assert_eq!(
            Name::parse("API.Acme.Test."),
            Ok(Name::Exact("api.acme.test".into()))
        );
        assert_eq!(
            Name::parse("*.partner.test"),
            Ok(Name::Wildcard(".partner.test".into()))
        );
        for (bad, want) in [
            ("", "is empty"),
            ("  ", "is empty"),
            ("*", "wildcard is only allowed"),
            ("a.*.test", "wildcard is only allowed"),
            ("*a.test", "wildcard is only allowed"),
            ("*.*.test", "wildcard is only allowed"),
            ("a..test", "empty label"),
            ("*.", "wildcard is only allowed"),
            ("*..test", "empty label"),
            ("127.0.0.1", "is an IP address"),
            ("::1", "is an IP address"),
            ("[::1]", "is an IP address"),
            ("a b.test", "not a host name"),
            ("a.test:443", "not a host name"),
        ] {
            let e = Name::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn select_matches_case_insensitively_without_port_exact_first() {
        let n = |s| Name::parse(s).unwrap();
        let names = Names::new(
            vec![
                (n("*.partner.test"), 1),
                (n("api.acme.test"), 0),
                (n("special.partner.test"), 2),
            ],
            true,
        );
        assert_eq!(names.select(b"api.acme.test"), Some(0));
        assert_eq!(names.select(b"API.ACME.TEST:8443"), Some(0));
        assert_eq!(names.select(b"api.acme.test."), Some(0));
        assert_eq!(names.select(b"x.partner.test"), Some(1));
        assert_eq!(names.select(b"special.partner.test"), Some(2));
        assert_eq!(names.select(b"a.b.partner.test"), None);
        assert_eq!(names.select(b"partner.test"), None);
        assert_eq!(names.select(b"localhost"), None);
        assert_eq!(names.select(b"127.0.0.1:443"), None);
        assert_eq!(names.select(b"[::1]:443"), None);
        assert_eq!(names.select(b"\xff"), None);
        assert_eq!(Names::default().select(b"api.acme.test"), None);
    }
}
