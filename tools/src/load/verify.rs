//! Server certificate verification, done once per distinct certificate.
//!
//! In a full mTLS handshake the client does about as much public-key work as the server: it
//! checks the server's CertificateVerify, verifies the server's chain (two more ECDSA
//! verifications for leaf ← intermediate ← root), signs its own CertificateVerify and runs two
//! X25519 operations. Verifying the chain on every handshake would make the load generator as
//! expensive per handshake as the server it measures, so it could not saturate a server from
//! one core of its own.
//!
//! A server presents the same certificate every time. The chain is therefore verified exactly
//! as BoringSSL would (the context's trust store, the `ssl_server` purpose, the host name or IP
//! from `--server-name`) the first time a leaf is seen; a later handshake presenting a
//! byte-identical leaf is accepted without verifying the chain again. TLS still checks the
//! CertificateVerify signature on every handshake, so the server proves each time that it
//! holds the certificate's key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use boring::ssl::{SslAlert, SslRef, SslVerifyError};
use boring::stack::Stack;
use boring::x509::{X509Ref, X509StoreContext, X509VerifyError};
use foreign_types::ForeignTypeRef;

/// Distinct verified leaves remembered; past this, further ones are verified every time.
const MAX_REMEMBERED: usize = 16;

/// The server certificates verified so far in this run.
#[derive(Default)]
pub struct VerifiedLeaves {
    /// DER of each verified leaf.
    seen: Mutex<Vec<Box<[u8]>>>,
    /// The first rejection was reported on stderr (the TLS error only says "verify failed").
    reported: AtomicBool,
}

impl VerifiedLeaves {
    /// The custom-verify callback: accepts a known leaf, otherwise verifies the chain fully.
    pub fn verify(&self, ssl: &mut SslRef) -> Result<(), SslVerifyError> {
        let leaf = ssl
            .peer_certificate()
            .ok_or(SslVerifyError::Invalid(SslAlert::BAD_CERTIFICATE))?;
        let der = leaf
            .to_der()
            .map_err(|_| SslVerifyError::Invalid(SslAlert::BAD_CERTIFICATE))?;
        if self.lock().iter().any(|d| **d == *der) {
            return Ok(());
        }
        match verify_chain(ssl, &leaf) {
            Ok(()) => {
                let mut seen = self.lock();
                if seen.len() < MAX_REMEMBERED && !seen.iter().any(|d| **d == *der) {
                    seen.push(der.into_boxed_slice());
                }
                Ok(())
            }
            Err(e) => {
                if !self.reported.swap(true, Ordering::Relaxed) {
                    eprintln!("certgate-load: the server certificate does not verify: {e}");
                }
                Err(SslVerifyError::Invalid(alert_for(e)))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<[u8]>>> {
        // Nothing panics while holding it; a poisoned list is still a valid list.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What BoringSSL's own verification does for a client (`ssl_crypto_x509_session_verify_cert_chain`):
/// the context's store, the `ssl_server` defaults, then the connection's parameters (host name).
fn verify_chain(ssl: &SslRef, leaf: &X509Ref) -> Result<(), X509VerifyError> {
    let unspecified = |_| X509VerifyError::UNSPECIFIED;
    let empty;
    let chain = match ssl.peer_cert_chain() {
        Some(chain) => chain,
        None => {
            empty = Stack::new().map_err(unspecified)?;
            &*empty
        }
    };
    let mut ctx = X509StoreContext::new().map_err(unspecified)?;
    let store = ssl.ssl_context().cert_store();
    ctx.init(store, leaf, chain, |c| {
        // SAFETY: `c` is initialised by `init` and lives through this closure; `ssl` outlives
        // it; both setters copy what they are given.
        unsafe {
            if boring_sys::X509_STORE_CTX_set_default(c.as_ptr(), c"ssl_server".as_ptr()) != 1
                || boring_sys::X509_VERIFY_PARAM_set1(
                    boring_sys::X509_STORE_CTX_get0_param(c.as_ptr()),
                    boring_sys::SSL_get0_param(ssl.as_ptr()),
                ) != 1
            {
                return Ok(Err(X509VerifyError::UNSPECIFIED));
            }
        }
        Ok(match c.verify_cert()? {
            true => Ok(()),
            false => c.verify_result(),
        })
    })
    .map_err(unspecified)?
}

fn alert_for(e: X509VerifyError) -> SslAlert {
    match e {
        X509VerifyError::CERT_HAS_EXPIRED => SslAlert::CERTIFICATE_EXPIRED,
        X509VerifyError::UNABLE_TO_GET_ISSUER_CERT
        | X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | X509VerifyError::UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | X509VerifyError::DEPTH_ZERO_SELF_SIGNED_CERT
        | X509VerifyError::SELF_SIGNED_CERT_IN_CHAIN => SslAlert::UNKNOWN_CA,
        _ => SslAlert::BAD_CERTIFICATE,
    }
}
